//! The blast radius of a memory error or an offline: who had memory there, and what became
//! of them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who had pages where a memory error struck or memory went offline, read when the tool saw
/// the event, and what became of each once it had settled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BlastRadius {
    /// Always `blast_radius`.
    pub event: String,
    /// The event that opened it (`ras:memory_failure_event`, `cxl:cxl_poison`,
    /// `memory_offline`, ...).
    pub cause: String,
    /// CLOCK_MONOTONIC ns of that event.
    pub ts_ns: u64,
    /// Events of the same node folded into it while it was open (the first included).
    pub events: u64,
    /// What was struck.
    pub scope: BlastScope,
    /// How long after the event the holders were read, ms (an offline may have moved pages
    /// already: see `moved_before_sample`).
    pub sampled_after_ms: f64,
    /// How long after the event their fate was read, ms.
    pub settled_after_ms: f64,
    /// Pages migrated off the node for this cause between the event and the sample.
    pub moved_before_sample: u64,
    /// Processes with pages on the node, most pages first (at most 32).
    pub holders: Vec<Holder>,
    /// Holders left out of the list.
    pub holders_left_out: u64,
    /// Pages on the node by cgroup (every holder, listed or not).
    pub cgroups: BTreeMap<String, u64>,
    /// Processes whose memory map could not be read (another user's, without privileges).
    pub unreadable: u64,
    /// How it was measured.
    pub method: String,
}

/// The memory a blast radius concerns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BlastScope {
    /// Node of the page, or the node that went offline.
    pub node: Option<u32>,
    /// Its tier.
    pub tier: Option<u32>,
    /// The page frame struck, for a memory error with an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfn: Option<u64>,
    /// The cgroup the struck page was charged to (`/proc/kpagecgroup`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cgroup: Option<String>,
}

/// A process with pages on the struck node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Its name (hashed in a redacted recording).
    pub comm: String,
    /// Its cgroup (v2 path; hashed in a redacted recording).
    pub cgroup: String,
    /// Pages (4 KiB) on the node when read.
    pub pages: u64,
    /// Its cgroup is the one the struck page was charged to.
    pub page_cgroup: bool,
    /// What became of it.
    pub fate: Fate,
    /// Pages on the node when its fate was read (absent once it is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_after: Option<u64>,
}

/// What became of a holder.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Sent SIGBUS (a memory error kill) and gone.
    Killed,
    /// Sent SIGBUS and still running (it handled the signal).
    Signalled,
    /// Gone without a SIGBUS seen.
    Exited,
    /// Still running with fewer pages on the node: pages were moved off it.
    Migrated,
    /// Still running with its pages where they were.
    #[default]
    Unaffected,
}

impl Fate {
    /// The name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Killed => "killed (SIGBUS)",
            Self::Signalled => "sent SIGBUS, still running",
            Self::Exited => "exited",
            Self::Migrated => "pages migrated",
            Self::Unaffected => "unaffected",
        }
    }
}
