//! The self-description at the start of a recording.

use serde::{Deserialize, Serialize};

use crate::{
    model::rare::RareDecoder,
    model::status::{Privileges, ProbeStatus},
    model::tiers::Availability,
    model::topology::Topology,
};

/// Everything needed to read a recording elsewhere, after a reboot into another kernel:
/// where and how it was taken, what was live, the machine's topology and settings, and the
/// tracepoint formats that decode the raw-captured events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// cxl-trace version that wrote it.
    pub tool_version: String,
    /// `uname -r` of the traced kernel.
    pub kernel: String,
    /// /proc/sys/kernel/random/boot_id: two recordings of one boot share it.
    pub boot_id: String,
    /// Host name (hashed under `--redact`).
    pub hostname: String,
    /// cxl-trace's own command line (hashed under `--redact`).
    pub command_line: Vec<String>,
    /// The traced command after `--`, if any (hashed under `--redact`).
    pub target_command: Vec<String>,
    /// Whose faults were recorded (`all processes`, `pid 42 and descendants`, ...).
    pub scope: String,
    /// Wall clock at the start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// CLOCK_MONOTONIC at the start (the clock of event timestamps), ns.
    pub start_monotonic_ns: u64,
    /// Snapshot period, s.
    pub interval_s: f64,
    /// Every probe, live or not, with the reason.
    pub probes: Vec<ProbeStatus>,
    /// Which derived measurements were available, and why not.
    pub availability: Availability,
    /// Topology and settings at the start (later changes come in snapshots).
    pub topology: Topology,
    /// Formats of the raw-captured tracepoints, to decode them anywhere.
    pub rare: RareDecoder,
    /// Process names, command lines and host name are hashed; addresses are zeroed.
    pub redacted: bool,
    /// Kernel instruction pointers were kept (`--kernel-ips`); otherwise they are zero.
    pub kernel_ips: bool,
    /// What the recorder kept after attaching (absent in recordings of 0.1.0 before it).
    pub privileges: Option<Privileges>,
}
