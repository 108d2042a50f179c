//! The window document: one `interval` line of `top`/`replay`, and the whole-run `summary`
//! (`top`, `record`, `replay`) and `report`, which are the same type with more members.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Avail, Cause, LineKind, Percentiles, RefusalCause};
use crate::{
    model::event::{FaultClass, FaultKind, MigrateReason},
    model::rare::{FieldValue, RareClass},
    model::status::Privileges,
    model::status::ProbeStatus,
    model::topology::{Tier, Topology},
};

/// One window of counts: an interval, or a whole run (`summary`, `report`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// Version of this schema ([`super::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// `interval`, `summary` or `report`.
    #[serde(rename = "type")]
    pub kind: LineKind,
    /// Seconds since the start at the end of the window.
    pub t: f64,
    /// Length of the window, s.
    pub interval_s: f64,
    /// Records received from the kernel.
    pub events: Events,
    /// Page faults.
    pub faults: Faults,
    /// Page migrations, promotions and demotions.
    pub migrations: Migrations,
    /// Records the kernel could not hand over (ring buffer full).
    pub drops: Drops,
    /// `/proc/vmstat` counters over the window (differences).
    pub vmstat_delta: BTreeMap<String, u64>,
    /// Processes with the most faults.
    pub processes: Vec<Process>,
    /// Fault latency by tier and class.
    pub fault_latency: FaultLatency,
    /// NUMA hinting faults by node.
    pub numa_hint_faults: HintFaults,
    /// Why NUMA balancing promoted a page or not.
    pub promotion_decisions: PromotionDecisions,
    /// Demotion batches by source node.
    pub demotion_batches: DemotionBatches,
    /// Folios moved back and forth between tiers.
    pub pingpong: PingPong,
    /// NUMA task moves, kswapd wake-ups and the log of rare events.
    pub events_log: EventsLog,
    /// Whole run only, live: records the programs produced (received + dropped), by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced: Option<BTreeMap<String, u64>>,
    /// Whole run only, live: program runs the kernel skipped (its recursion guard), by program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_skipped_runs: Option<BTreeMap<String, u64>>,
    /// Whole run only, live: records or fields that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Errors>,
    /// Whole run only, live: records timestamped before the first window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_window: Option<u64>,
    /// Whole run only, live with `-- CMD`: the command's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whole run of a recording (`replay`, `report`): where and how it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// Whole run of a recording: the topology at its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// Whole run of a recording: every probe, live or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Vec<ProbeStatus>>,
    /// Whole run of a recording: the file and how much of it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingInfo>,
}

/// Records received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Events {
    /// Records received and counted.
    pub received: u64,
}

/// Page faults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Faults {
    /// All faults.
    pub total: u64,
    /// Taken in user mode.
    pub user: u64,
    /// Taken in kernel mode.
    pub kernel: u64,
    /// By access kind (from the x86 error code).
    pub by_kind: BTreeMap<FaultKind, u64>,
    /// Timed faults by tier of the page (needs the fault-exit hook).
    #[serde(default)]
    pub by_tier: BTreeMap<String, u64>,
}

/// Counts of migration batches (`migrate:mm_migrate_pages`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReasonCounts {
    /// Batches.
    pub batches: u64,
    /// Pages migrated.
    pub pages_succeeded: u64,
    /// Pages that failed.
    pub pages_failed: u64,
    /// THPs migrated.
    pub thp_succeeded: u64,
    /// THPs failed.
    pub thp_failed: u64,
    /// THPs split.
    pub thp_split: u64,
}

/// Pages moved between tiers in one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Moves {
    /// Pages.
    pub pages: u64,
    /// Pages by cause.
    pub by_cause: BTreeMap<Cause, u64>,
}

/// Page migrations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Migrations {
    /// Batches.
    pub batches: u64,
    /// Pages migrated.
    pub pages_succeeded: u64,
    /// Pages that failed.
    pub pages_failed: u64,
    /// By the kernel's reason.
    pub by_reason: BTreeMap<MigrateReason, ReasonCounts>,
    /// Start-to-end time of batches whose start was seen, ns.
    pub batch_latency_ns: Percentiles,
    /// Pages moved to a faster tier.
    pub promotions: Moves,
    /// Pages moved to a slower tier.
    pub demotions: Moves,
    /// Pages by `source->destination` tier (`tierN` or `unknown`).
    pub tier_pairs: BTreeMap<String, u64>,
    /// Pages moved within one tier.
    pub lateral_pages: u64,
    /// Pages of batches with no per-folio information (tiers unknown).
    pub unattributed_pages: u64,
    /// Per-folio moves.
    pub per_folio: PerFolio,
}

/// Per-folio moves (`move_to_new_folio`, or the migration-entry tracepoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PerFolio {
    /// Whether per-folio moves were seen, and why not.
    #[serde(flatten)]
    pub avail: Avail,
    /// Folios moved.
    pub folios: u64,
    /// Folio moves that failed.
    pub failures: u64,
    /// Batches whose folios all went between one pair of tiers.
    pub exact_batches: u64,
    /// Batches split across tier pairs in proportion to their folios.
    pub apportioned_batches: u64,
    /// Folios whose pfn is in no known memory block.
    pub unmapped_pfns: u64,
    /// Copy time per folio, ns, or why it is not measured.
    pub copy_ns: CopyTime,
}

/// Copy time per folio, or why it is not measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CopyTime {
    /// Measured.
    Measured(Percentiles),
    /// Not measured (`available` is false).
    Unavailable(Avail),
}

impl Default for CopyTime {
    fn default() -> Self {
        Self::Measured(Percentiles::default())
    }
}

/// Records the kernel could not put into the ring buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Drops {
    /// All kinds.
    pub total: u64,
    /// By record kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// One process's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Process {
    /// Process id (tgid).
    pub pid: u32,
    /// Most recent thread name (hashed in redacted recordings).
    pub comm: String,
    /// Faults.
    pub faults: u64,
    /// In user mode.
    pub user: u64,
    /// In kernel mode.
    pub kernel: u64,
    /// Pages of its migrations.
    pub pages_migrated: u64,
    /// NUMA hinting faults.
    pub hint_faults: u64,
    /// Pages promoted on its faults.
    pub promoted: u64,
    /// Pages demoted.
    pub demoted: u64,
    /// Ping-pong bounces of its folios.
    pub pingpong: u64,
}

/// Latency of one tier: every class merged, and each class seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TierLatency {
    /// All classes.
    pub all: Percentiles,
    /// By class.
    #[serde(flatten)]
    pub by_class: BTreeMap<FaultClass, Percentiles>,
}

/// Fault latency (`handle_mm_fault` entry to exit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultLatency {
    /// Whether it was measured, and why not.
    #[serde(flatten)]
    pub avail: Avail,
    /// By tier of the page (`tierN` or `unknown`), ns.
    pub by_tier: BTreeMap<String, TierLatency>,
    /// Faults that needed retries.
    pub retried: u64,
    /// Faults from get_user_pages.
    pub gup: u64,
}

/// NUMA hinting faults of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HintNode {
    /// Faults.
    pub faults: u64,
    /// Pages covered.
    pub pages: u64,
    /// Faults that migrated the page.
    pub migrated: u64,
    /// Faults whose migration failed.
    pub failed: u64,
    /// Faults on a page local to the CPU.
    pub local: u64,
}

/// NUMA hinting faults (`task_numa_fault`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HintFaults {
    /// Whether they were seen, and why not.
    #[serde(flatten)]
    pub avail: Avail,
    /// All.
    pub total: u64,
    /// On pages local to the CPU.
    pub local: u64,
    /// By node of the page (`-1`: none).
    pub by_node: BTreeMap<i32, HintNode>,
}

/// Outcomes of NUMA balancing's promotion decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PromotionDecisions {
    /// Whether they were seen, and why not.
    #[serde(flatten)]
    pub avail: Avail,
    /// `should_numa_migrate_memory` said migrate.
    pub approved: u64,
    /// All refusals.
    pub refused_total: u64,
    /// Refusals by cause (every cause present).
    pub refused: BTreeMap<RefusalCause, u64>,
    /// `migrate_misplaced_folio_prepare` succeeded.
    pub prepared: u64,
    /// Pages counted in `pgpromote_candidate` (equals the vmstat delta).
    pub candidate_pages: i64,
}

/// Demoted pages of one source node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DemoteNode {
    /// Pages.
    pub pages: u64,
    /// Tier of the node.
    pub tier: String,
}

/// Demotion batches (`demote_folio_list`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DemotionBatches {
    /// Whether they were seen, and why not.
    #[serde(flatten)]
    pub avail: Avail,
    /// Batches.
    pub batches: u64,
    /// Pages.
    pub pages: u64,
    /// By source node (`nodeN`, or `unknown`).
    pub by_source_node: BTreeMap<String, DemoteNode>,
}

/// Bounces of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PidBounces {
    /// Process id.
    pub pid: u32,
    /// Bounces.
    pub bounces: u64,
}

/// Folios moved back within the window after a move between tiers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PingPong {
    /// Bounces.
    pub bounces: u64,
    /// Unit of `bounces`: always `folios`.
    pub unit: String,
    /// Base pages, where every bounced folio's size is known; else null.
    pub pages: Option<u64>,
    /// Bounced folios whose size is not known.
    pub folios_of_unknown_size: u64,
    /// A move back within this many seconds is a bounce.
    pub window_s: f64,
    /// Time spent in a tier before moving back, ns.
    pub residency_ns: Percentiles,
    /// The processes with the most bounces (at most 10).
    pub top_processes: Vec<PidBounces>,
    /// Moves not tracked because the table was full.
    pub table_full: u64,
}

/// NUMA balancing's task placement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NumaTask {
    /// `sched_move_numa`.
    pub moves: u64,
    /// `sched_swap_numa`.
    pub swaps: u64,
    /// `sched_stick_numa`.
    pub sticks: u64,
}

/// Rare events: counts, kswapd wake-ups per node and a bounded log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsLog {
    /// NUMA task placement.
    pub numa_task: NumaTask,
    /// kswapd wake-ups by node.
    pub kswapd_wakes_by_node: BTreeMap<u32, u64>,
    /// Every rare event by `category:name`.
    pub counts: BTreeMap<String, u64>,
    /// RAS, CXL and hotplug events (at most 256 per window).
    pub log: Vec<LogEntry>,
    /// Entries left out because the log was full.
    pub log_dropped: u64,
}

impl Window {
    /// Leaves out why a measurement is unavailable, keeping whether it is: interval lines say
    /// it once per run, in the start line's probes (and the summary), not once a second.
    pub fn drop_reasons(&mut self) {
        self.fault_latency.avail.reason = None;
        self.numa_hint_faults.avail.reason = None;
        self.promotion_decisions.avail.reason = None;
        self.demotion_batches.avail.reason = None;
        self.migrations.per_folio.avail.reason = None;
        if let CopyTime::Unavailable(a) = &mut self.migrations.per_folio.copy_ns {
            a.reason = None;
        }
    }
}

impl EventsLog {
    /// The RAS and CXL tracepoints of the log.
    pub fn ras(&self) -> impl Iterator<Item = &RasEntry> {
        self.log.iter().filter_map(|e| match e {
            LogEntry::Ras(r) => Some(r),
            _ => None,
        })
    }

    /// The blast radii of the log.
    pub fn blasts(&self) -> impl Iterator<Item = &super::BlastRadius> {
        self.log.iter().filter_map(|e| match e {
            LogEntry::Blast(b) => Some(b),
            _ => None,
        })
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LogEntry {
    /// A RAS or CXL tracepoint.
    Ras(RasEntry),
    /// Nodes, tiers or memory blocks changed (memory hotplug).
    Topology(TopologyChange),
    /// Who had pages where a memory error struck or memory went offline.
    Blast(super::BlastRadius),
}

/// A RAS or CXL tracepoint in the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RasEntry {
    /// `category:name` of the tracepoint.
    pub event: String,
    /// Its class.
    pub class: RareClass,
    /// CLOCK_MONOTONIC, ns.
    pub ts_ns: u64,
    /// Node of its node id, pfn or physical address.
    pub node: Option<u32>,
    /// Tier of that node.
    pub tier: Option<u32>,
    /// The page frame of its physical address (`pfn`, or `hpa`/`addr` >> 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfn: Option<u64>,
    /// Where an address without a node lies: in a CXL region but not system RAM (its devdax
    /// reserve, or memory not onlined), or not mapped to a host address at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// Its fields, decoded with the kernel's format.
    pub fields: BTreeMap<String, FieldValue>,
}

/// A node added to the topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAdded {
    /// Node id.
    pub node: u32,
    /// Its tier.
    pub tier: Option<u32>,
    /// Backed by a CXL device.
    pub cxl: bool,
    /// MemTotal, KiB.
    pub mem_total_kib: u64,
}

/// Memory blocks before and after.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockCount {
    /// Before.
    pub before: usize,
    /// After.
    pub after: usize,
}

/// A change of the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyChange {
    /// Always `topology_changed`.
    pub event: String,
    /// Always `hotplug`.
    pub class: String,
    /// Nodes that appeared.
    pub nodes_added: Vec<NodeAdded>,
    /// Nodes that went away.
    pub nodes_removed: Vec<u32>,
    /// Memory blocks before and after.
    pub memory_blocks: BlockCount,
    /// The tiers after the change.
    pub tiers: Vec<Tier>,
}

/// Records or fields that could not be read (live runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Errors {
    /// Records that did not decode.
    pub decode: u64,
    /// Kernel reads (`bpf_probe_read`) that failed.
    pub field_read: u64,
    /// Children not followed because the follow map was full.
    pub follow_map_full: u64,
}

/// Where and how a recording was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Host {
    /// Host name (hashed when redacted).
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// Boot id.
    pub boot_id: String,
    /// cxl-trace version that recorded.
    pub tool_version: String,
    /// Its command line (hashed when redacted).
    pub command_line: Vec<String>,
    /// The traced command (hashed when redacted).
    pub target_command: Vec<String>,
    /// Whose faults were recorded.
    pub scope: String,
    /// Start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Names and addresses were hashed or zeroed.
    pub redacted: bool,
    /// What the recorder kept after attaching.
    pub privileges: Option<Privileges>,
}

/// The recording file and how much of it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordingInfo {
    /// Path as given.
    pub file: String,
    /// Format version of the file.
    pub format_version: u16,
    /// Events read.
    pub events: u64,
    /// Records that did not decode.
    pub undecodable: u64,
    /// The file ends inside a chunk (cut off).
    pub truncated: bool,
    /// The recorder wrote its end chunk.
    pub clean_end: bool,
    /// Exit status of the recorded command, if any.
    pub exit_code: Option<i32>,
    /// CLOCK_MONOTONIC at the start of the recording, ns (event times are on this clock).
    #[serde(default)]
    pub start_monotonic_ns: u64,
}
