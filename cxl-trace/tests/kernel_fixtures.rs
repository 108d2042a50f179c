//! The probes' view of every kernel of the VM matrix, without booting it: each kernel's
//! tracefs formats and BTF prototypes, captured in the test bed (`doctor --capture`, committed
//! under `tests/fixtures/kernels/<release>/`), decoded by the same code the tool runs at
//! start-up, against what is known of that kernel.

use std::path::{Path, PathBuf};

use cxl_trace::{
    model::rare::RareDecoder,
    model::rare::RARE,
    probe::{
        check_migration_entry_format, facts::Facts, fault_layout, fork_layout, migrate_layout,
        reason_drift, signature,
    },
};
use cxl_trace_common::{raw, HookArgs};

fn kernels() -> Vec<(PathBuf, Facts)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernels");
    let mut v: Vec<(PathBuf, Facts)> = std::fs::read_dir(&root)
        .expect("fixtures/kernels")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let f = Facts::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, f)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn series(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The matrix the suite boots: 6.1, 6.12 and the newest (7.3 at the time of writing).
#[test]
fn every_matrix_series_has_a_fixture() {
    let have: Vec<(u32, u32)> = kernels().iter().map(|(_, f)| series(&f.release)).collect();
    for want in [(6, 1), (6, 12)] {
        assert!(have.contains(&want), "no fixture of {want:?}: {have:?}");
    }
    assert!(
        have.iter().any(|s| *s >= (7, 0)),
        "no 7.x fixture: {have:?}"
    );
    for (p, f) in kernels() {
        assert_eq!(
            p.file_name().and_then(|n| n.to_str()),
            Some(f.release.as_str()),
            "a fixture's directory is its release"
        );
    }
}

#[test]
fn tracepoint_layouts_decode_on_every_kernel() {
    for (_, f) in kernels() {
        let r = &f.release;
        let v = series(r);
        let fault = fault_layout(&f.format("exceptions", "page_fault_user").expect("fault"))
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        assert_eq!(
            (fault.address, fault.ip, fault.error_code),
            (8, 16, 24),
            "{r}"
        );
        let fork = fork_layout(&f.format("sched", "sched_process_fork").expect("fork"))
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        // `__data_loc` comms from 6.18 moved child_pid from 44 to 20.
        let want_pid = if v >= (6, 18) { 20 } else { 44 };
        assert_eq!(fork.child_pid, want_pid, "{r}");
        let end = f.format("migrate", "mm_migrate_pages").expect("end");
        let m = migrate_layout(
            &end,
            &f.format("migrate", "mm_migrate_pages_start")
                .expect("start"),
        )
        .unwrap_or_else(|e| panic!("{r}: {e}"));
        // `large_folio_split` (6.7) pushed mode and reason 8 bytes on.
        let (mode, reason) = if v >= (6, 7) { (56, 60) } else { (48, 52) };
        assert_eq!((m.mode, m.reason), (mode, reason), "{r}");
        assert_eq!(reason_drift(&end), None, "{r}: migrate_reason renumbered");
        let reasons = &end.symbols["reason"];
        assert_eq!(reasons.get(&8).map(String::as_str), Some("demotion"), "{r}");
        assert_eq!(
            reasons.get(&9).map(String::as_str),
            (v >= (6, 11)).then_some("damon"),
            "{r}: MR_DAMON is new in 6.11"
        );
        let alloc = f.format("kmem", "mm_page_alloc").expect("alloc");
        assert_eq!(alloc.offset("pfn", 8), Ok(8), "{r}");
    }
}

#[test]
fn migration_entry_tracepoints_where_the_kernel_has_them() {
    for (_, f) in kernels() {
        let r = &f.release;
        // Every kernel of the matrix has them (6.1 included).
        let has = f.format("migrate", "set_migration_pte").is_ok();
        assert!(has, "{r}: no migrate:set_migration_pte");
        {
            for (cat, name, entry) in [
                ("migrate", "set_migration_pte", "pte"),
                ("migrate", "remove_migration_pte", "pte"),
                ("thp", "set_migration_pmd", "pmd"),
                ("thp", "remove_migration_pmd", "pmd"),
            ] {
                let fmt = f.format(cat, name).expect("format");
                check_migration_entry_format(&fmt, entry).unwrap_or_else(|e| panic!("{r}: {e}"));
            }
        }
    }
}

#[test]
fn rare_tracepoints_decode_where_present() {
    for (_, f) in kernels() {
        let formats = RARE
            .iter()
            .map(|s| f.format(s.category, s.name).ok())
            .collect();
        let sizes = RareDecoder::new(formats).sizes();
        for (i, s) in RARE.iter().enumerate() {
            let present = f.format(s.category, s.name).is_ok();
            assert_eq!(
                sizes[i] > 0,
                present,
                "{}: {}:{} size {}",
                f.release,
                s.category,
                s.name,
                sizes[i]
            );
            assert!(sizes[i] as usize <= raw::DATA);
        }
        // The CXL drivers were loaded when the capture was taken; 6.1's cxl_core has no
        // event or poison tracepoints yet (seen: none on 6.1, all four on 6.12 and 7.3).
        assert_eq!(
            f.format("cxl", "cxl_poison").is_ok(),
            series(&f.release) >= (6, 12),
            "{}: cxl:cxl_poison",
            f.release
        );
    }
}

#[test]
fn hook_arguments_follow_each_kernels_prototypes() {
    for (_, f) in kernels() {
        let r = &f.release;
        let v = series(r);
        let (args, drift) = signature::resolve_all(
            |func| f.prototypes.get(func).cloned(),
            |sym| f.kallsyms.contains(sym),
        );
        // demote_folio_list gained `memcg` as its third parameter after 6.12 (seen on 7.3
        // and on 6.18).
        let demote_ret = if v > (6, 12) { 3 } else { 2 };
        assert_eq!((args.demote_pgdat, args.demote_ret), (1, demote_ret), "{r}");
        let mut want = HookArgs::DEFAULT;
        want.demote_ret = demote_ret;
        if v < (6, 11) {
            // Before 6.11: no migrate_misplaced_folio_prepare, and folio_isolate_lru
            // returned 0 on success (an int), which the hook must not read as a bool.
            assert!(
                !f.kallsyms.contains("migrate_misplaced_folio_prepare"),
                "{r}"
            );
            let why = drift
                .get("folio_isolate_lru")
                .map(String::as_str)
                .unwrap_or("");
            assert!(why.contains("returns `int`"), "{r}: {why:?}");
            want.isolate_ret = args.isolate_ret;
        } else {
            assert!(drift.is_empty(), "{r}: {drift:?}");
        }
        assert_eq!(args, want, "{r}");
        for spec in signature::HOOKS {
            let name = spec.name_in(|s| f.kallsyms.contains(s));
            let optional = name == "migrate_misplaced_folio_prepare" && v < (6, 11);
            assert!(
                optional || f.kallsyms.contains(name),
                "{r}: {name} not in kallsyms"
            );
        }
    }
}

#[test]
fn vmstat_names_the_tool_compares() {
    for (_, f) in kernels() {
        let r = &f.release;
        for k in [
            "pgmigrate_success",
            "pgmigrate_fail",
            "pgdemote_kswapd",
            "pgdemote_direct",
            "numa_hint_faults",
            "pgpromote_success",
            "pgpromote_candidate",
        ] {
            assert!(f.vmstat.contains(k), "{r}: no {k}");
        }
        // Proactive reclaim has its own counter after 6.12 (seen on 7.3); before, it is in
        // pgdemote_direct. pgdemote_khugepaged is missing on 6.1.
        assert_eq!(
            f.vmstat.contains("pgdemote_proactive"),
            series(r) > (6, 12),
            "{r}"
        );
        assert_eq!(
            f.vmstat.contains("pgdemote_khugepaged"),
            series(r) >= (6, 12),
            "{r}"
        );
    }
}

/// Where a large folio keeps its order, from each kernel's struct layout in BTF: the
/// `_folio_order` byte (17 bytes into the first tail page) on 6.1, the low byte of `_flags_1`
/// from 6.6; the tail word is `compound_head` up to 6.12 and `compound_info` on 7.3, at the
/// same place (6.18 still has `compound_head`).
#[test]
fn folio_order_byte_from_each_kernels_struct_layout() {
    use cxl_trace::probe::facts::folio_order_offset;
    for (_, f) in kernels() {
        let r = &f.release;
        let v = series(r);
        assert!(f.layout.contains("sizeof.page 64"), "{r}: {}", f.layout);
        let want = if v >= (6, 6) { 0 } else { 17 };
        assert_eq!(folio_order_offset(&f.layout), want, "{r}: {}", f.layout);
        let tail_word = if v >= (7, 0) {
            "page.compound_info 8"
        } else {
            "page.compound_head 8"
        };
        assert!(f.layout.contains(tail_word), "{r}: {}", f.layout);
        // The decision hook counts only PGPROMOTE_CANDIDATE; 7.3 also has the _NRL item,
        // which it moves inside the same decision.
        let item = |m: &str| {
            cxl_trace::probe::facts::layout_value(&f.layout, &format!("node_stat_item.{m}"))
        };
        assert!(item("PGPROMOTE_CANDIDATE").is_some(), "{r}");
        assert_eq!(
            item("PGPROMOTE_CANDIDATE_NRL").is_some(),
            f.vmstat.contains("pgpromote_candidate_nrl"),
            "{r}"
        );
    }
    assert_eq!(folio_order_offset(""), u32::MAX);
    assert_eq!(
        folio_order_offset("sizeof.page 64\nfolio._flags_1 64\npage.compound_head 16\n"),
        u32::MAX,
        "a tail word moved: no size rather than a wrong one"
    );
}

/// A record of `f` with `values` written at its fields' offsets (native byte order), and a
/// `__data_loc` string for each of `strings` after the fixed fields.
fn record(
    f: &cxl_trace::model::tracefs::Format,
    values: &[(&str, u64)],
    bytes: &[(&str, &[u8])],
    strings: &[(&str, &str)],
) -> Vec<u8> {
    let end = f
        .fields
        .values()
        .map(|x| (x.offset + x.size) as usize)
        .max()
        .unwrap_or(0);
    let mut data = vec![0u8; end];
    for (name, v) in values {
        let fl = &f.fields[*name];
        let (o, n) = (fl.offset as usize, fl.size as usize);
        data[o..o + n].copy_from_slice(&v.to_ne_bytes()[..n]);
    }
    for (name, b) in bytes {
        let fl = &f.fields[*name];
        let o = fl.offset as usize;
        data[o..o + b.len()].copy_from_slice(b);
    }
    for (name, s) in strings {
        let Some(fl) = f.fields.get(*name) else {
            continue;
        };
        let at = data.len();
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        let loc = (((s.len() + 1) as u32) << 16) | at as u32;
        let o = fl.offset as usize;
        data[o..o + 4].copy_from_slice(&loc.to_ne_bytes());
    }
    data
}

fn decode_one(
    f: &Facts,
    id: u16,
    data: Vec<u8>,
) -> std::collections::BTreeMap<String, cxl_trace::model::rare::FieldValue> {
    let formats = RARE
        .iter()
        .map(|s| f.format(s.category, s.name).ok())
        .collect();
    let r = cxl_trace::model::event::RawRecord {
        ts_ns: 1,
        pid: 1,
        cpu: 0,
        tp: id,
        data,
    };
    RareDecoder::new(formats)
        .decode(&r)
        .unwrap_or_else(|| panic!("{}: tracepoint {id} decodes", f.release))
        .fields
}

/// RAS and CXL events decode to names on every kernel that has them, with each kernel's own
/// tables from its print format: severities, flags, poison sources, UUIDs, memory failure
/// types and results.
#[test]
fn ras_and_cxl_events_decode_to_names_on_every_kernel() {
    use cxl_trace::model::rare::FieldValue::Str;
    let s = |x: &str| Str(x.to_string());
    for (_, f) in kernels() {
        let mf = f
            .format("ras", "memory_failure_event")
            .expect("every matrix kernel has ras:memory_failure_event");
        let got = decode_one(
            &f,
            raw::MEMORY_FAILURE,
            record(
                &mf,
                &[("pfn", 0x12345), ("type", 13), ("result", 3)],
                &[],
                &[],
            ),
        );
        assert_eq!(got["type"], s("dirty LRU page"), "{}", f.release);
        assert_eq!(got["result"], s("Recovered"), "{}", f.release);
        let Ok(gm) = f.format("cxl", "cxl_general_media") else {
            continue;
        };
        let uuid: [u8; 16] = *b"\xfb\xcd\x0a\x77\xc2\x60\x41\x7f\x85\xa9\x08\x8b\x16\x21\xeb\xa6";
        let got = decode_one(
            &f,
            raw::CXL_GENERAL_MEDIA,
            record(
                &gm,
                &[
                    ("log", 2),
                    ("hdr_flags", (1 << 2) | (1 << 3)),
                    ("descriptor", 1),
                    ("type", 0),
                    ("transaction_type", 4),
                    ("dpa", 0x4000_0000),
                ],
                &[("hdr_uuid", &uuid)],
                &[
                    ("memdev", "mem0"),
                    ("host", "0000:0d:00.0"),
                    ("region_name", "region0"),
                ],
            ),
        );
        assert_eq!(got["log"], s("Failure"), "{}", f.release);
        assert_eq!(
            got["hdr_flags"],
            s("PERMANENT_CONDITION|MAINTENANCE_NEEDED"),
            "{}",
            f.release
        );
        assert_eq!(got["descriptor"], s("UNCORRECTABLE_EVENT"), "{}", f.release);
        assert_eq!(got["type"], s("ECC Error"), "{}", f.release);
        assert_eq!(
            got["transaction_type"],
            s("Host Inject Poison"),
            "{}",
            f.release
        );
        assert_eq!(got["dpa_flags"], s("none"), "{}", f.release);
        assert_eq!(
            got["hdr_uuid"],
            s("fbcd0a77-c260-417f-85a9-088b1621eba6"),
            "{}",
            f.release
        );
        assert_eq!(got["memdev"], s("mem0"), "{}", f.release);
        let poison = f
            .format("cxl", "cxl_poison")
            .expect("poison beside general media");
        let got = decode_one(
            &f,
            raw::CXL_POISON,
            record(
                &poison,
                &[
                    ("trace_type", 0),
                    ("source", 3),
                    ("flags", 0),
                    ("dpa", 0x1000),
                ],
                &[("uuid", &uuid)],
                &[("memdev", "mem0"), ("region", "region0")],
            ),
        );
        assert_eq!(got["trace_type"], s("List"), "{}", f.release);
        assert_eq!(got["source"], s("Injected"), "{}", f.release);
        assert_eq!(
            got["uuid"],
            s("fbcd0a77-c260-417f-85a9-088b1621eba6"),
            "{}",
            f.release
        );
        let module = f.format("cxl", "cxl_memory_module").expect("module events");
        let got = decode_one(
            &f,
            raw::CXL_MEMORY_MODULE,
            record(
                &module,
                &[
                    ("log", 3),
                    ("event_type", 3),
                    ("health_status", 1),
                    ("media_status", 0),
                ],
                &[],
                &[("memdev", "mem0")],
            ),
        );
        assert_eq!(got["log"], s("Fatal"), "{}", f.release);
        assert_eq!(got["event_type"], s("Temperature Change"), "{}", f.release);
        assert_eq!(
            got["health_status"],
            s("MAINTENANCE_NEEDED"),
            "{}",
            f.release
        );
        assert_eq!(got["media_status"], s("Normal"), "{}", f.release);
    }
}

/// The kernel side's fixed reads: `int sig` of `signal:signal_generate` at the offset the
/// SIGBUS filter reads, and the migrate reasons that wake the reader at once, on every kernel.
#[test]
fn sigbus_filter_and_urgent_reasons_match_every_kernel() {
    use cxl_trace::model::event::MigrateReason;
    for (_, f) in kernels() {
        let fmt = f
            .format("signal", "signal_generate")
            .unwrap_or_else(|e| panic!("{}: signal:signal_generate: {e}", f.release));
        let sig = fmt.fields.get("sig").expect("sig field");
        assert_eq!(
            (sig.offset as usize, sig.size),
            (raw::SIGNAL_SIG_OFFSET, 4),
            "{}",
            f.release
        );
        assert!(fmt.fields.contains_key("pid"), "{}: pid", f.release);
    }
    assert_eq!(
        MigrateReason::from_raw(cxl_trace_common::MR_MEMORY_FAILURE),
        MigrateReason::MemoryFailure
    );
    assert_eq!(
        MigrateReason::from_raw(cxl_trace_common::MR_MEMORY_HOTPLUG),
        MigrateReason::MemoryHotplug
    );
}
