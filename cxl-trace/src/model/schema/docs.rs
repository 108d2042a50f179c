//! The other documents: the start line, `doctor`, `topology` and `diff`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LineKind;
use crate::{
    model::status::Privileges,
    model::status::ProbeStatus,
    model::topology::{Settings, Tier, Topology},
};

/// The first line of `top --no-tui`, `record`'s log and `replay --no-tui`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Start {
    /// Version of this schema.
    pub schema_version: u32,
    /// Always `start`.
    #[serde(rename = "type")]
    pub kind: LineKind,
    /// cxl-trace version (of the recorder, for a replay).
    pub version: String,
    /// `uname -r` of the traced kernel.
    pub kernel: String,
    /// Interval length, s.
    pub interval_s: f64,
    /// Every probe, live or not, with the reason.
    pub probes: Vec<ProbeStatus>,
    /// Warnings of the set-up (empty for a replay: they went to the recorder's stderr).
    pub warnings: Vec<String>,
    /// Memory tiers, fastest first.
    pub tiers: Vec<Tier>,
    /// Tiering settings.
    pub settings: Settings,
    /// The followed process (`--pid`, or the started command), if any.
    pub pid: Option<u32>,
    /// Whose faults are counted.
    pub scope: String,
    /// What the tracer kept after attaching (the recorder's, for a replay).
    pub privileges: Option<Privileges>,
    /// For a replay: the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

/// `doctor --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Doctor {
    /// Version of this schema.
    pub schema_version: u32,
    /// `uname -r`.
    pub kernel: String,
    /// Privileges, BTF, tracefs, the eBPF object, ring buffer, RLIMIT_MEMLOCK.
    pub capabilities: Vec<ProbeStatus>,
    /// Every program and attach kind, attached for real.
    pub probes: Vec<ProbeStatus>,
    /// Every tracepoint the tool uses, present or absent.
    pub tracepoints: Vec<ProbeStatus>,
    /// Tiering settings by name, as the kernel prints them.
    pub settings: BTreeMap<String, String>,
    /// Memory tiers and their node lists.
    pub tiers: Vec<DoctorTier>,
    /// CXL memory devices.
    pub cxl: DoctorCxl,
}

/// One memory tier as `doctor` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoctorTier {
    /// `memory_tierN`.
    pub tier: String,
    /// Its node list, as the kernel prints it.
    pub nodes: String,
}

/// CXL memory devices as `doctor` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoctorCxl {
    /// `/sys/bus/cxl` exists.
    pub bus: bool,
    /// Memory devices.
    pub memdevs: Vec<String>,
}

/// `topology --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyDoc {
    /// Version of this schema.
    pub schema_version: u32,
    /// The topology.
    #[serde(flatten)]
    pub topology: Topology,
}

/// One recording of a `diff`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiffRun {
    /// Path.
    pub file: String,
    /// `uname -r` of the recorded kernel.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Length, s.
    pub seconds: f64,
    /// Recorded intervals.
    pub intervals: usize,
    /// Events read.
    pub events: u64,
    /// Records dropped.
    pub drops: u64,
    /// Tiering settings.
    pub settings: Settings,
}

/// A configuration difference between the runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigDiff {
    /// What differs.
    pub what: String,
    /// Base value.
    pub base: String,
    /// New value.
    pub new: String,
}

/// A percentage that can be infinite (a metric only the new run has is `"new"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Pct {
    /// A finite percentage.
    Finite(f64),
    /// `new`, `gone`, or another word for what a number cannot say.
    Word(String),
}

/// One compared measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiffRow {
    /// `p99:tier=slow:class=all`, `promotions`, `migrated:reason=compaction`, ...
    pub id: String,
    /// `latency`, `rate` or `per_gb`.
    pub group: String,
    /// Unit of `base` and `new`.
    pub unit: String,
    /// Base value.
    pub base: f64,
    /// New value.
    pub new: f64,
    /// 95% interval of the base value (latency only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ci: Option<(f64, f64)>,
    /// 95% interval of the new value (latency only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_ci: Option<(f64, f64)>,
    /// How significance was judged.
    pub method: String,
    /// Change, percent.
    pub change_pct: Pct,
    /// Lower end of the change's interval, percent.
    pub change_lo_pct: Pct,
    /// Upper end, percent.
    pub change_hi_pct: Pct,
    /// The interval excludes no change and the effect is at least `min_effect_pct`.
    pub significant: bool,
}

/// The methods used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiffMethods {
    /// For latency percentiles.
    pub latency: String,
    /// For rates.
    pub rate: String,
}

/// One `--fail-on` condition and whether it was crossed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailOnResult {
    /// The condition as given.
    pub spec: String,
    /// Crossed by at least one row.
    pub crossed: bool,
    /// The rows that crossed it.
    pub by: Vec<String>,
}

/// `diff --format json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiffDoc {
    /// Version of this schema.
    pub schema_version: u32,
    /// The base run.
    pub base: DiffRun,
    /// The new run.
    pub new: DiffRun,
    /// Configuration differences (the first place to look).
    pub config_differences: Vec<ConfigDiff>,
    /// Drops, truncated files, unavailable measurements.
    pub warnings: Vec<String>,
    /// Smallest change called significant, percent.
    pub min_effect_pct: f64,
    /// The methods used.
    pub methods: DiffMethods,
    /// Compared measurements.
    pub rows: Vec<DiffRow>,
    /// `--fail-on` conditions.
    pub fail_on: Vec<FailOnResult>,
}

/// One row of `export --format jsonl` (and, flattened, of `--format csv`): a decoded event, a
/// rare tracepoint decoded with the recording's formats, or one it could not decode.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExportRow<'e> {
    /// A decoded event (`type` names its kind), borrowed: an export serialises each event once.
    Event(&'e crate::model::event::Event),
    /// A rare tracepoint, decoded.
    Rare(RareRow),
    /// A rare tracepoint this recording has no format for.
    Raw(RawRow),
}

/// A rare tracepoint in an export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RareRow {
    /// Always `rare`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event.
    #[serde(flatten)]
    pub entry: super::RasEntry,
    /// Process id of the task it fired in.
    pub pid: u32,
    /// CPU.
    pub cpu: u16,
}

/// A rare tracepoint that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RawRow {
    /// Always `raw`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CLOCK_MONOTONIC, ns.
    pub ts_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Tracepoint id (the recording's numbering of rare tracepoints).
    pub tp: u16,
}
