//! Rare events (RAS, CXL, hotplug): counts and the bounded event log.

use super::*;
use std::collections::BTreeMap;

use crate::{
    model::rare::{RareClass, RareEvent},
    model::schema::{self, LogEntry},
};

/// Rare events: counts, kswapd wake-ups per node and a short log.
#[derive(Clone, Debug, Default)]
pub struct RareCounts {
    /// By `category:name`.
    pub by_event: BTreeMap<String, u64>,
    /// RAS events by `category:name` and [`RareEvent::severity`].
    pub by_severity: BTreeMap<(String, &'static str), u64>,
    /// kswapd wake-ups by node.
    pub kswapd_wakes: BTreeMap<u32, u64>,
    /// Event log (RAS events and topology changes; NUMA task moves are only counted).
    pub log: Vec<LogEntry>,
    /// Entries not logged because the log was full.
    pub log_dropped: u64,
}

/// Most log entries kept per window.
pub const LOG_MAX: usize = 256;

impl RareCounts {
    /// Adds a decoded rare event.
    pub fn add(&mut self, e: &RareEvent, tiers: &TierMap) {
        *self
            .by_event
            .entry(format!("{}:{}", e.spec.category, e.spec.name))
            .or_default() += 1;
        if e.spec.class == RareClass::Ras {
            *self
                .by_severity
                .entry((format!("{}:{}", e.spec.category, e.spec.name), e.severity()))
                .or_default() += 1;
        }
        match e.spec.class {
            RareClass::Kswapd => {
                if let Some(n) = e.node(&tiers.pfns) {
                    *self.kswapd_wakes.entry(n).or_default() += 1;
                }
            }
            RareClass::Ras => {
                self.log_entry(LogEntry::Ras(tiers.ras_entry(e)));
            }
            RareClass::NumaTask => {}
        }
    }

    /// Adds a log entry (bounded).
    pub fn log_entry(&mut self, v: LogEntry) {
        if self.log.len() < LOG_MAX {
            self.log.push(v);
        } else {
            self.log_dropped += 1;
        }
    }

    /// Adds another window (the log keeps the newest entries).
    pub fn merge(&mut self, o: &RareCounts) {
        add_counts(&mut self.by_event, &o.by_event);
        add_counts(&mut self.kswapd_wakes, &o.kswapd_wakes);
        add_counts(&mut self.by_severity, &o.by_severity);
        for v in &o.log {
            self.log_entry(v.clone());
        }
        self.log_dropped += o.log_dropped;
    }

    /// The window document's `events_log`.
    pub fn to_model(&self) -> schema::EventsLog {
        let numa = |name: &str| self.by_event.get(name).copied().unwrap_or(0);
        schema::EventsLog {
            numa_task: schema::NumaTask {
                moves: numa("sched:sched_move_numa"),
                swaps: numa("sched:sched_swap_numa"),
                sticks: numa("sched:sched_stick_numa"),
            },
            kswapd_wakes_by_node: self.kswapd_wakes.clone(),
            counts: self.by_event.clone(),
            log: self.log.clone(),
            log_dropped: self.log_dropped,
        }
    }
}
