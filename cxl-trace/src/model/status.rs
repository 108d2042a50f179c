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
