//! Page migrations: the batch tracepoints (every migration, its reason and counts), per-folio
//! moves from `move_to_new_folio` where function hooks are allowed, else from the
//! migration-entry tracepoints (no copy time then).

use cxl_trace_common::MigrateLayout;

use crate::{
    model::{tiers::Availability, tracefs::Format},
    probe::{
        attach::{tp_name, unavailable_reason, Attach, FnHooks, Hook, TpSpec},
        ProbeStatus,
    },
};

pub(crate) const MIGRATE_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "mm_migrate_pages_start",
        category: "migrate",
        name: "mm_migrate_pages_start",
    },
    TpSpec {
        program: "mm_migrate_pages",
        category: "migrate",
        name: "mm_migrate_pages",
    },
];

/// The per-folio fallback: the migration-entry tracepoints, PTE and PMD, set and remove. The
/// `set_` halves give the source pfn; the `remove_` halves emit.
pub(crate) const MIGRATION_PTE_TPS: [TpSpec; 4] = [
    TpSpec {
        program: "set_migration_pte",
        category: "migrate",
        name: "set_migration_pte",
    },
    TpSpec {
        program: "remove_migration_pte",
        category: "migrate",
        name: "remove_migration_pte",
    },
    TpSpec {
        program: "set_migration_pmd",
        category: "thp",
        name: "set_migration_pmd",
    },
    TpSpec {
        program: "remove_migration_pmd",
        category: "thp",
        name: "remove_migration_pmd",
    },
];

pub(crate) const HOOK_FOLIO: Hook<'static> = Hook {
    func: "move_to_new_folio",
    tracing: (
        Some("move_to_new_folio_entry"),
        Some("move_to_new_folio_exit"),
    ),
    kprobe: (
        Some("move_to_new_folio_kprobe"),
        Some("move_to_new_folio_kretprobe"),
    ),
};

/// Per-folio moves with their copy time.
pub(crate) fn attach_folio_hook(
    at: &mut Attach,
    hooks: &FnHooks,
    avail: &mut Availability,
    vmemmap_known: bool,
) {
    let note = (!vmemmap_known)
        .then_some("no vmemmap_base in /proc/kallsyms: assuming the fixed 4-level vmemmap");
    let st = at.hook(hooks, HOOK_FOLIO, note);
    avail.folio = unavailable_reason(&st);
    at.statuses.extend(st);
}

/// Without the folio hook, per-folio moves from the migration entries (PTE and PMD); the copy
/// time stays unavailable.
pub(crate) fn attach_entry_fallback(at: &mut Attach, avail: &mut Availability) {
    avail.copy = avail.folio.clone();
    let Some(why) = avail.folio.clone() else {
        return;
    };
    let mut st: Vec<ProbeStatus> = MIGRATION_PTE_TPS
        .iter()
        .map(|tp| {
            let entry = if tp.category == "thp" { "pmd" } else { "pte" };
            match at
                .tracefs
                .format(tp.category, tp.name)
                .and_then(|f| check_migration_entry_format(&f, entry))
            {
                Ok(()) => at.tracepoint(tp),
                Err(e) => ProbeStatus::unavailable(tp_name(tp), e),
            }
        })
        .collect();
    // The PTE pair is what matters; PMD-mapped THPs are a bonus.
    if st[..2].iter().all(ProbeStatus::is_live) {
        avail.folio = None;
        avail.copy = Some(format!(
            "per-folio moves come from the migration-entry tracepoints, which have no copy time ({why})"
        ));
        if !st[2..].iter().all(ProbeStatus::is_live) {
            at.warnings.push(
                "PMD-mapped THP moves are not seen per folio (thp:*_migration_pmd unavailable)"
                    .into(),
            );
        }
    } else {
        avail.folio = Some(format!(
            "{why}; fallback {}",
            unavailable_reason(&st[..2]).unwrap_or_default()
        ));
    }
    at.statuses.append(&mut st);
}

/// Offsets for the migration programs from the tracefs formats of `mm_migrate_pages` and
/// `mm_migrate_pages_start`.
pub fn migrate_layout(end: &Format, start: &Format) -> std::result::Result<MigrateLayout, String> {
    Ok(MigrateLayout {
        succeeded: end.offset("succeeded", 8)?,
        failed: end.offset("failed", 8)?,
        thp_succeeded: end.offset("thp_succeeded", 8)?,
        thp_failed: end.offset("thp_failed", 8)?,
        thp_split: end.offset("thp_split", 8)?,
        large_folio_split: end
            .offset("large_folio_split", 8)
            .unwrap_or(MigrateLayout::ABSENT),
        mode: end.offset("mode", 4)?,
        reason: end.offset("reason", 4)?,
        start_mode: start.offset("mode", 4)?,
        start_reason: start.offset("reason", 4)?,
    })
}

/// A warning when the kernel numbers `enum migrate_reason` differently from this build
/// (read from the `reason` table of the `mm_migrate_pages` print format).
pub fn reason_drift(f: &Format) -> Option<String> {
    let drift = crate::model::event::MigrateReason::numbering_drift(f.symbols.get("reason")?);
    (!drift.is_empty()).then(|| {
        format!(
            "migration reasons are numbered differently on this kernel ({}): those reasons are misnamed",
            drift.join("; ")
        )
    })
}

/// Checks a migration-entry tracepoint's format against the fixed offsets the programs read:
/// `addr` at 8 and the entry (`pte`/`pmd`) at 16, 8 bytes each, and a 4-byte `order` at 24
/// for the PTE events.
pub fn check_migration_entry_format(f: &Format, entry: &str) -> std::result::Result<(), String> {
    let want = |name: &str, off: u32, size: u32| match f.offset(name, size) {
        Ok(o) if o == off => Ok(()),
        Ok(o) => Err(format!(
            "{}: field `{name}` at {o}, the program reads it at {off}",
            f.name
        )),
        Err(e) => Err(e),
    };
    want("addr", 8, 8)?;
    want(entry, 16, 8)?;
    if entry == "pte" {
        want("order", 24, 4)?;
    }
    Ok(())
}
