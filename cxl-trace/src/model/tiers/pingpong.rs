//! Ping-pong: pages that come back to the tier they left within the window.

use crate::{
    model::hist::{new_histogram, percentiles, FastMap, MAX_LATENCY_NS},
    model::schema::{self},
};
use hdrhistogram::Histogram;

/// Last tier move of a page, keyed by (mapping, index), which survive migration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastMove {
    ts_ns: u64,
    promoted: bool,
    /// The process the page belongs to, when known (the task of a promotion fault).
    owner: Option<u32>,
}

/// Ping-pong: folios demoted and promoted again (or the reverse) within a window.
#[derive(Clone, Debug)]
pub struct PingPong {
    /// Bounces, in folios (a THP counts once).
    pub bounces: u64,
    /// Base pages of the bounced folios whose size is known.
    pub pages: u64,
    /// Bounced folios whose size is not known (the `move_to_new_folio` path).
    pub unknown_size: u64,
    /// Time a page stayed before bouncing back, ns.
    pub residency: Histogram<u64>,
    /// Bounces by owning process.
    pub by_pid: FastMap<u32, u64>,
}

impl Default for PingPong {
    fn default() -> Self {
        Self {
            bounces: 0,
            pages: 0,
            unknown_size: 0,
            residency: new_histogram(),
            by_pid: FastMap::default(),
        }
    }
}

impl PingPong {
    /// Adds another window.
    pub fn merge(&mut self, o: &PingPong) {
        self.bounces += o.bounces;
        self.pages += o.pages;
        self.unknown_size += o.unknown_size;
        let _ = self.residency.add(&o.residency);
        for (p, n) in &o.by_pid {
            *self.by_pid.entry(*p).or_default() += n;
        }
    }

    /// The window document's `pingpong`.
    pub fn to_model(&self, window_s: f64, table_full: u64) -> schema::PingPong {
        let mut top: Vec<(&u32, &u64)> = self.by_pid.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        schema::PingPong {
            bounces: self.bounces,
            unit: "folios".into(),
            // Base pages where every bounced folio's size is known, else null (the per-folio
            // hook does not report sizes; the migration-entry tracepoints do).
            pages: (self.unknown_size == 0).then_some(self.pages),
            folios_of_unknown_size: self.unknown_size,
            window_s,
            residency_ns: percentiles(&self.residency),
            top_processes: top
                .into_iter()
                .take(10)
                .map(|(p, n)| schema::PidBounces {
                    pid: *p,
                    bounces: *n,
                })
                .collect(),
            table_full,
        }
    }
}

/// The page table of the ping-pong detector: bounded, so memory stays flat.
#[derive(Clone, Debug)]
pub struct PingPongTracker {
    last: FastMap<(u64, u64), LastMove>,
    /// Bounce window, ns.
    pub window_ns: u64,
    /// Most pages remembered.
    pub capacity: usize,
    /// Moves not remembered because the table was full.
    pub table_full: u64,
}

impl PingPongTracker {
    /// A tracker with a bounce window and a page capacity.
    pub fn new(window_ns: u64, capacity: usize) -> Self {
        Self {
            last: FastMap::default(),
            window_ns,
            capacity,
            table_full: 0,
        }
    }

    /// Notes a promotion or demotion of the folio (mapping, index) of `pages` base pages (when
    /// known) at `ts_ns` by task `pid`; counts a bounce into `pp` when it reverses the folio's
    /// last move within the window.
    pub fn observe(
        &mut self,
        pp: &mut PingPong,
        key: (u64, u64),
        ts_ns: u64,
        promoted: bool,
        pid: Option<u32>,
        pages: Option<u64>,
    ) {
        if key.0 == 0 {
            return;
        }
        let owner_now = if promoted { pid } else { None };
        if let Some(prev) = self.last.get_mut(&key) {
            let dt = ts_ns.saturating_sub(prev.ts_ns);
            if prev.promoted != promoted && dt <= self.window_ns {
                pp.bounces += 1;
                match pages {
                    Some(n) => pp.pages += n,
                    None => pp.unknown_size += 1,
                }
                let _ = pp.residency.record(dt.clamp(1, MAX_LATENCY_NS));
                if let Some(owner) = owner_now.or(prev.owner) {
                    *pp.by_pid.entry(owner).or_default() += 1;
                }
            }
            *prev = LastMove {
                ts_ns,
                promoted,
                owner: owner_now.or(prev.owner),
            };
            return;
        }
        if self.last.len() >= self.capacity {
            // Forget moves older than the window before refusing new pages.
            let horizon = ts_ns.saturating_sub(self.window_ns);
            self.last.retain(|_, m| m.ts_ns >= horizon);
            if self.last.len() >= self.capacity {
                self.table_full += 1;
                return;
            }
        }
        self.last.insert(
            key,
            LastMove {
                ts_ns,
                promoted,
                owner: owner_now,
            },
        );
    }

    /// Pages remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no page is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}
