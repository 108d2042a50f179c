//! Tiering decisions: why NUMA balancing promoted a page or refused to
//! (`should_numa_migrate_memory`, the candidate counter, the prepare and the isolation), and
//! reclaim's demotion batches (`demote_folio_list`, `demote_page_list` before 6.2).

use std::collections::HashMap;

use crate::{
    model::tiers::Availability,
    probe::{
        attach::{unavailable_reason, Attach, FnHooks, Hook},
        signature, ProbeStatus,
    },
};

pub(crate) const HOOK_DECISION: Hook<'static> = Hook {
    func: "should_numa_migrate_memory",
    tracing: (Some("should_migrate_entry"), Some("should_migrate_exit")),
    kprobe: (
        Some("should_migrate_kprobe"),
        Some("should_migrate_kretprobe"),
    ),
};
pub(crate) const HOOK_CANDIDATES: Hook<'static> = Hook {
    func: "mod_node_page_state",
    tracing: (Some("node_stat_mod"), None),
    kprobe: (Some("node_stat_mod_kprobe"), None),
};
pub(crate) const HOOK_PREPARE: Hook<'static> = Hook {
    func: "migrate_misplaced_folio_prepare",
    tracing: (Some("prepare_entry"), Some("prepare_exit")),
    kprobe: (Some("prepare_kprobe"), Some("prepare_kretprobe")),
};
pub(crate) const HOOK_ISOLATE: Hook<'static> = Hook {
    func: "folio_isolate_lru",
    tracing: (None, Some("isolate_exit")),
    kprobe: (None, Some("isolate_kretprobe")),
};
pub(crate) const HOOK_DEMOTE: Hook<'static> = Hook {
    func: "demote_folio_list",
    tracing: (None, Some("demote_folio_list_exit")),
    kprobe: (
        Some("demote_folio_list_kprobe"),
        Some("demote_folio_list_kretprobe"),
    ),
};

/// Promotion decisions: the decision plus the candidate counter, then the prepare plus the
/// isolation. Each part is only worth having whole.
pub(crate) fn attach_decisions(at: &mut Attach, hooks: &FnHooks, avail: &mut Availability) {
    let mut parts = at.hook(hooks, HOOK_DECISION, None);
    if parts.iter().all(ProbeStatus::is_live) {
        for (hook, note) in [
            (
                HOOK_CANDIDATES,
                Some("pgpromote_candidate pages of a decision (rate limit vs threshold)"),
            ),
            (HOOK_PREPARE, None),
            (HOOK_ISOLATE, None),
        ] {
            parts.extend(at.hook(hooks, hook, note));
        }
    }
    avail.decision = unavailable_reason(&parts);
    at.statuses.extend(parts);
}

/// The promotion-decision hooks left off, each with `why`.
pub(crate) fn skip_decisions(at: &mut Attach, avail: &mut Availability, why: &str) {
    for hook in [HOOK_DECISION, HOOK_CANDIDATES, HOOK_PREPARE, HOOK_ISOLATE] {
        at.statuses
            .push(ProbeStatus::unavailable(format!("hook:{}", hook.func), why));
    }
    avail.decision = Some(format!("not attached: {why}"));
}

/// Demotion batches, on the function this kernel has.
pub(crate) fn attach_demotions(
    at: &mut Attach,
    hooks: &FnHooks,
    avail: &mut Availability,
    syms: &HashMap<String, u64>,
    node_data_known: bool,
) {
    let hook = Hook {
        func: signature::spec(HOOK_DEMOTE.func)
            .map_or(HOOK_DEMOTE.func, |h| h.name_in(|n| syms.contains_key(n))),
        ..HOOK_DEMOTE
    };
    let note = (!node_data_known).then_some("no node_data in /proc/kallsyms: source nodes unknown");
    let st = at.hook(hooks, hook, note);
    avail.demote = unavailable_reason(&st);
    at.statuses.extend(st);
}
