//! Tests of the parent module.

use super::*;
use crate::model::tracefs::parse_format;
use cxl_trace_common::{FaultLayout, MigrateLayout};

#[test]
fn layouts_from_fixtures() {
    let f18 = |n: &str| {
        parse_format(
            &std::fs::read_to_string(format!("tests/fixtures/tracefs/6.18/{n}.format"))
                .expect("fixture"),
        )
        .expect("parse")
    };
    let f66 = |n: &str| {
        parse_format(
            &std::fs::read_to_string(format!("tests/fixtures/tracefs/6.6/{n}.format"))
                .expect("fixture"),
        )
        .expect("parse")
    };
    let start = f18("mm_migrate_pages_start");
    let new = migrate_layout(&f18("mm_migrate_pages"), &start).expect("6.18");
    assert_eq!(new, MigrateLayout::DEFAULT);
    let old = migrate_layout(&f66("mm_migrate_pages"), &start).expect("6.6");
    assert_eq!(old.reason, 52);
    assert_eq!(old.mode, 48);
    assert_eq!(old.large_folio_split, MigrateLayout::ABSENT);
    assert_eq!(
        fork_layout(&f18("sched_process_fork"))
            .expect("fork")
            .child_pid,
        20
    );
    assert_eq!(
        fork_layout(&f66("sched_process_fork"))
            .expect("fork")
            .child_pid,
        44
    );
    assert_eq!(
        fault_layout(&f18("page_fault_user")).expect("fault"),
        FaultLayout::DEFAULT
    );
}

#[test]
fn migration_entry_formats_are_checked() {
    let f = |n: &str| {
        parse_format(
            &std::fs::read_to_string(format!("tests/fixtures/tracefs/6.18/{n}.format"))
                .expect("fixture"),
        )
        .expect("parse")
    };
    let pte = f("remove_migration_pte");
    check_migration_entry_format(&pte, "pte").expect("6.18 pte");
    check_migration_entry_format(&f("set_migration_pmd"), "pmd").expect("6.18 pmd");
    // A kernel that moved a field is refused with the reason.
    let mut moved = pte.clone();
    if let Some(o) = moved.fields.get_mut("order") {
        o.offset = 28;
    }
    let e = check_migration_entry_format(&moved, "pte").expect_err("moved order");
    assert!(e.contains("`order` at 28"), "{e}");
    assert!(check_migration_entry_format(&f("set_migration_pmd"), "pte").is_err());
}

#[test]
fn fdinfo_lines_are_read_by_key() {
    let text = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t17\nverified_insns:\t211\n";
    assert_eq!(fdinfo_value(text, "recursion_misses"), Some(17));
    assert_eq!(fdinfo_value(text, "verified_insns"), Some(211));
    assert_eq!(fdinfo_value(text, "missing"), None);
}

#[test]
fn flatten_cuts_long_errors() {
    let e = std::io::Error::other("x".repeat(1000));
    let s = flatten_error(&e);
    assert!(s.len() < 300);
    assert!(s.ends_with("..."));
}
