//! Page migrations: the batch tracepoints (every migration, its reason and counts), per-folio
//! moves from `move_to_new_folio` where function hooks are allowed, else from the
//! migration-entry tracepoints (no copy time then).

use crate::{
    model::tiers::Availability,
    probe::{
        attach::{tp_name, unavailable_reason, Attach, FnHooks, Hook, TpSpec},
        layout::check_migration_entry_format,
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
