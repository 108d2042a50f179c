//! The typed contents of a recording's snapshot and end chunks (JSON inside the chunk).
//!
//! Every member has a default, so recordings written by older versions (or with members
//! added later) read back; members a reader does not know are ignored.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::topology::Topology;

/// Per-node meminfo: node name (`node0`) → field (`MemFree`) → KiB.
pub type NodeMeminfo = BTreeMap<String, BTreeMap<String, u64>>;

/// A periodic snapshot: written at the start and once per interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Snapshot {
    /// Seconds since the start of the recording.
    pub t: f64,
    /// /proc/vmstat, whole.
    pub vmstat: BTreeMap<String, u64>,
    /// Per-node meminfo.
    pub meminfo: NodeMeminfo,
    /// Records dropped since the start, per kind (cumulative).
    pub drops: BTreeMap<String, u64>,
    /// Records the kernel side produced since the start, per kind (cumulative).
    pub produced: BTreeMap<String, u64>,
    /// The topology, when it changed since the previous snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// Blast radii settled in the interval this snapshot ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blast: Vec<crate::model::schema::BlastRadius>,
}

/// The end chunk of a recording that finished cleanly: counts only, no names (a redacted
/// recording must not carry the live run's process names; readers recompute the rest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct End {
    /// Length of the run, s.
    pub t: f64,
    /// Records written.
    pub events: u64,
    /// Faults counted.
    pub faults_total: u64,
    /// Pages migrated.
    pub pages_migrated: u64,
    /// Records dropped.
    pub drops_total: u64,
    /// The command's exit code, when one was given after `--`.
    pub exit_code: Option<i32>,
    /// Program runs the kernel skipped (its recursion guard), by program: their events are
    /// neither in the file nor counted as dropped. Absent when none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kernel_skipped_runs: BTreeMap<String, u64>,
}
