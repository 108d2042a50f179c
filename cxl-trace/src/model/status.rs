//! The state of a run's setup as its outputs report it: which probes are live, and what
//! privileges the run kept.

use serde::{Deserialize, Serialize};

/// Live or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Attached (or, for a capability, available).
    Live,
    /// Not attached; `reason` says why.
    Unavailable,
}

/// The state of one probe or capability, as `doctor` and the dashboard report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeStatus {
    /// e.g. `tracepoint:exceptions:page_fault_user`.
    pub name: String,
    /// Live or unavailable.
    pub status: Status,
    /// Why it is unavailable, or a detail when live.
    pub reason: String,
}

impl ProbeStatus {
    /// A live probe.
    pub fn live(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Live,
            reason: detail.into(),
        }
    }

    /// An unavailable probe.
    pub fn unavailable(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Unavailable,
            reason: reason.into(),
        }
    }

    /// Whether it is live.
    pub fn is_live(&self) -> bool {
        self.status == Status::Live
    }
}

/// What was dropped, for the start line, the recording's header and the user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Privileges {
    /// uid after the drop.
    pub uid: u32,
    /// Capabilities left in the effective set of every thread (0 once dropped).
    pub capabilities: u32,
    /// no_new_privs is set.
    pub no_new_privs: bool,
    /// One line for people.
    pub summary: String,
}

/// What a probe gives the user: the capability lost when it is unavailable.
pub fn feature_of(probe: &str) -> String {
    let func = probe.rsplit(':').next().unwrap_or(probe);
    let f = match func {
        "handle_mm_fault" => "fault latency",
        "task_numa_fault" => "NUMA hint faults",
        "move_to_new_folio" => "per-folio copy time",
        "should_numa_migrate_memory"
        | "migrate_misplaced_folio_prepare"
        | "folio_isolate_lru"
        | "mod_node_page_state" => "promotion refusal causes",
        "demote_folio_list" => "demotion batches",
        "memory_failure_event" => "memory failure events",
        "mce_record" => "machine check events",
        "cxl_general_media" | "cxl_dram" | "cxl_memory_module" | "cxl_poison" => {
            "CXL device events and poison"
        }
        "signal_generate" => "SIGBUS kills (blast radius fates)",
        "sched_move_numa" | "sched_stick_numa" | "sched_swap_numa" => "NUMA task placement",
        "mm_vmscan_kswapd_wake" => "kswapd wake-ups",
        "set_migration_pte"
        | "remove_migration_pte"
        | "set_migration_pmd"
        | "remove_migration_pmd" => "per-folio moves (migration entries)",
        _ => return probe.to_string(),
    };
    f.to_string()
}

/// A reason in the words a user needs, the same for every probe it applies to: the probe's
/// own name is left out, and the hook refusal of a kernel without fentry or kprobes is said
/// once, briefly.
pub fn reason_in_short(probe: &str, reason: &str) -> String {
    let eperm = reason.contains("Operation not permitted") || reason.contains("EPERM");
    if reason.contains("fentry/fexit") && eperm && reason.contains("no kprobes") {
        let short = "this kernel refuses fentry (EPERM) and has no kprobes";
        // A reason that only cites the refusal ("per-folio moves come from ... (fentry:...)")
        // keeps its own words.
        let head = reason.split(" (").next().unwrap_or(reason);
        return if head.contains("fentry") || head.contains("fexit") {
            short.into()
        } else {
            format!("{head} ({short})")
        };
    }
    let tp = probe
        .strip_prefix("tracepoint:")
        .unwrap_or(probe)
        .to_string();
    if let Some(rest) = reason.strip_prefix(&format!("no {tp} tracepoint: ")) {
        return rest.to_string();
    }
    if reason == format!("this kernel has no {tp} tracepoint") {
        return "this kernel has no such tracepoint".into();
    }
    reason.to_string()
}

/// Unavailable probes grouped by what the user loses: (capabilities lost, why, probes).
/// Groups come in the order of their first probe; capabilities are listed once.
pub fn lost(statuses: &[ProbeStatus]) -> Vec<(Vec<String>, String, usize)> {
    let mut groups: Vec<(Vec<String>, String, usize)> = Vec::new();
    for s in statuses.iter().filter(|s| !s.is_live()) {
        let why = reason_in_short(&s.name, &s.reason);
        let feature = feature_of(&s.name);
        let i = match groups.iter().position(|g| g.1 == why) {
            Some(i) => i,
            None => {
                groups.push((Vec::new(), why, 0));
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        if !g.0.contains(&feature) {
            g.0.push(feature);
        }
        g.2 += 1;
    }
    groups
}

/// The grouped lines `top`, `record` and `doctor` print: `fault latency, NUMA hint faults:
/// unavailable: this kernel refuses fentry (EPERM) and has no kprobes (4 probes)`.
pub fn lost_lines(statuses: &[ProbeStatus]) -> Vec<String> {
    lost(statuses)
        .into_iter()
        .map(|(features, why, n)| {
            let probes = if n == 1 {
                String::new()
            } else {
                format!(" ({n} probes)")
            };
            format!("{}: unavailable: {why}{probes}", features.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod lost_tests {
    use super::*;

    /// The development host's refusals: nine hooks refused for one reason become one line
    /// naming what is lost; tracepoints absent for one cause share a line; a reason nobody
    /// else has keeps its own.
    #[test]
    fn refusals_grouped_by_what_is_lost() {
        let hook = "fentry/fexit: BPF_PROG_LOAD refused: the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1); kprobe: this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices; CONFIG_KPROBES is off)";
        let mut s: Vec<ProbeStatus> = [
            "fentry:handle_mm_fault",
            "fexit:handle_mm_fault",
            "fentry:task_numa_fault",
            "fentry:move_to_new_folio",
            "fexit:move_to_new_folio",
            "fentry:should_numa_migrate_memory",
            "fexit:should_numa_migrate_memory",
            "fentry:demote_folio_list",
            "fexit:demote_folio_list",
        ]
        .iter()
        .map(|n| ProbeStatus::unavailable(*n, hook))
        .collect();
        s.insert(
            0,
            ProbeStatus::live("tracepoint:exceptions:page_fault_user", "attached"),
        );
        for tp in ["cxl_dram", "cxl_poison"] {
            s.push(ProbeStatus::unavailable(
                format!("tracepoint:cxl:{tp}"),
                format!("no cxl:{tp} tracepoint: module cxl_core is not loaded (no CXL devices or drivers)"),
            ));
        }
        s.push(ProbeStatus::unavailable(
            "tracepoint:mce:mce_record",
            "this kernel has no mce:mce_record tracepoint",
        ));
        s.push(ProbeStatus::unavailable(
            "tracepoint:ras:memory_failure_event",
            "this kernel has no ras:memory_failure_event tracepoint",
        ));
        s.push(ProbeStatus::unavailable("tracepoint:x:y", "odd"));
        assert_eq!(
            reason_in_short(
                "",
                &format!("per-folio moves come from the migration-entry tracepoints, which have no copy time (fentry:move_to_new_folio: {hook})")
            ),
            "per-folio moves come from the migration-entry tracepoints, which have no copy time (this kernel refuses fentry (EPERM) and has no kprobes)"
        );
        assert_eq!(
            lost_lines(&s),
            [
                "fault latency, NUMA hint faults, per-folio copy time, promotion refusal causes, demotion batches: unavailable: this kernel refuses fentry (EPERM) and has no kprobes (9 probes)",
                "CXL device events and poison: unavailable: module cxl_core is not loaded (no CXL devices or drivers) (2 probes)",
                "machine check events, memory failure events: unavailable: this kernel has no such tracepoint (2 probes)",
                "tracepoint:x:y: unavailable: odd",
            ]
        );
        assert!(lost_lines(&s[..1]).is_empty(), "all live: nothing to say");
    }
}
