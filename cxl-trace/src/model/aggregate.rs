//! Aggregation of decoded events (pure, no I/O): fault counts per mode, kind and process;
//! migration batches per reason with batch latency. Everything merges, so interval totals
//! add up to run totals.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::{
    model::event::{
        Comm, Event, Fault, FaultKind, FaultMode, FolioMigrate, MigrateBatch, MigrateReason,
    },
    model::hist::{new_histogram, percentiles, FastMap, MAX_LATENCY_NS},
    model::rare::RareDecoder,
    model::schema::{self, LineKind, LogEntry},
    model::tiers::{
        cause, fold_folio, Availability, BatchFolios, Direction, PingPongTracker, TierMap,
        TierTotals,
    },
};

/// Page fault counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// All faults.
    pub total: u64,
    /// Taken in user mode.
    pub user: u64,
    /// Taken in kernel mode.
    pub kernel: u64,
    /// By access kind, indexed like [`FaultKind::ALL`].
    pub by_kind: [u64; FaultKind::ALL.len()],
}

impl FaultCounts {
    fn add(&mut self, f: &Fault) {
        self.total += 1;
        match f.mode {
            FaultMode::User => self.user += 1,
            FaultMode::Kernel => self.kernel += 1,
        }
        let k = f.kind();
        if let Some(i) = FaultKind::ALL.iter().position(|&x| x == k) {
            self.by_kind[i] += 1;
        }
    }

    /// Adds counters the kernel aggregated (see [`crate::model::fault_counts`]).
    pub fn add_counters(&mut self, c: &[u64; cxl_trace_common::fault_agg::COUNTERS]) {
        for (i, (_, user, kernel)) in crate::model::fault_counts::split(c).enumerate() {
            self.user += user;
            self.kernel += kernel;
            self.total += user + kernel;
            self.by_kind[i] += user + kernel;
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, o: &FaultCounts) {
        self.total += o.total;
        self.user += o.user;
        self.kernel += o.kernel;
        for (a, b) in self.by_kind.iter_mut().zip(o.by_kind) {
            *a += b;
        }
    }

    /// The window document's `faults` (`by_tier` is filled in with the tiers).
    pub fn to_model(&self) -> schema::Faults {
        schema::Faults {
            total: self.total,
            user: self.user,
            kernel: self.kernel,
            by_kind: FaultKind::ALL.iter().copied().zip(self.by_kind).collect(),
            by_tier: BTreeMap::new(),
        }
    }
}

/// Counts of one migration reason (the output type, accumulated here).
pub use crate::model::schema::ReasonCounts;

impl ReasonCounts {
    fn add(&mut self, m: &MigrateBatch) {
        self.batches += 1;
        self.pages_succeeded += m.succeeded;
        self.pages_failed += m.failed;
        self.thp_succeeded += m.thp_succeeded;
        self.thp_failed += m.thp_failed;
        self.thp_split += m.thp_split;
    }

    fn merge(&mut self, o: &ReasonCounts) {
        self.batches += o.batches;
        self.pages_succeeded += o.pages_succeeded;
        self.pages_failed += o.pages_failed;
        self.thp_succeeded += o.thp_succeeded;
        self.thp_failed += o.thp_failed;
        self.thp_split += o.thp_split;
    }
}

/// Migration batches.
#[derive(Clone, Debug)]
pub struct MigrationCounts {
    /// Per reason.
    pub by_reason: BTreeMap<MigrateReason, ReasonCounts>,
    /// Start-to-end latency of batches whose start was seen, ns.
    pub batch_latency: Histogram<u64>,
}

impl Default for MigrationCounts {
    fn default() -> Self {
        Self {
            by_reason: BTreeMap::new(),
            batch_latency: new_histogram(),
        }
    }
}

impl MigrationCounts {
    /// Sum over reasons.
    pub fn total(&self) -> ReasonCounts {
        let mut t = ReasonCounts::default();
        for r in self.by_reason.values() {
            t.merge(r);
        }
        t
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, o: &MigrationCounts) {
        for (reason, c) in &o.by_reason {
            self.by_reason.entry(*reason).or_default().merge(c);
        }
        // Both histograms have the same bounds, so adding cannot fail; ignore the impossible.
        let _ = self.batch_latency.add(&o.batch_latency);
    }

    /// The window document's `migrations` (the tier members are filled in with the tiers).
    pub fn to_model(&self) -> schema::Migrations {
        let t = self.total();
        schema::Migrations {
            batches: t.batches,
            pages_succeeded: t.pages_succeeded,
            pages_failed: t.pages_failed,
            by_reason: self
                .by_reason
                .iter()
                .map(|(r, c)| (*r, c.clone()))
                .collect(),
            batch_latency_ns: percentiles(&self.batch_latency),
            ..Default::default()
        }
    }
}

/// Per-process counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcRow {
    /// Most recent thread name seen.
    pub comm: Comm,
    /// Faults.
    pub faults: FaultCounts,
    /// Pages this process migrated (as the task doing the migration).
    pub pages_migrated: u64,
    /// NUMA hinting faults of this process.
    pub hint_faults: u64,
    /// Pages this process's migrations moved to a faster tier.
    pub promoted: u64,
    /// Pages this process's migrations moved to a slower tier (as a reclaimer).
    pub demoted: u64,
}

/// Everything counted over some window.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Events aggregated.
    pub events: u64,
    /// Faults.
    pub faults: FaultCounts,
    /// Migrations.
    pub migrations: MigrationCounts,
    /// Per process (tgid).
    pub processes: FastMap<u32, ProcRow>,
    /// Exited processes folded by name to bound the run's table (see [`rows`]).
    pub exited: FastMap<Comm, ProcRow>,
    /// Tier attribution.
    pub tiers: TierTotals,
}

impl Totals {
    /// Adds another window.
    pub fn merge(&mut self, o: &Totals) {
        self.events += o.events;
        self.faults.merge(&o.faults);
        self.migrations.merge(&o.migrations);
        for (pid, row) in &o.processes {
            self.processes.entry(*pid).or_default().add(row);
        }
        for (comm, row) in &o.exited {
            self.exited.entry(*comm).or_default().add(row);
        }
        self.tiers.merge(&o.tiers);
    }

    /// The `n` processes with the most faults (ties broken by pid).
    pub fn top_processes(&self, n: usize) -> Vec<schema::Process> {
        let mut rows: Vec<(&u32, &ProcRow)> = self.processes.iter().collect();
        rows.sort_by(|a, b| b.1.faults.total.cmp(&a.1.faults.total).then(a.0.cmp(b.0)));
        rows.into_iter()
            .take(n)
            .map(|(pid, r)| schema::Process {
                pid: *pid,
                comm: r.comm.as_string(),
                faults: r.faults.total,
                user: r.faults.user,
                kernel: r.faults.kernel,
                pages_migrated: r.pages_migrated,
                hint_faults: r.hint_faults,
                promoted: r.promoted,
                demoted: r.demoted,
                pingpong: self.tiers.pingpong.by_pid.get(pid).copied().unwrap_or(0),
            })
            .collect()
    }
}

/// A migration batch in progress on a thread.
#[derive(Clone, Debug, Default)]
struct Pending {
    /// Start time, when its start was seen.
    start: Option<u64>,
    /// Its successful folio moves by tier pair.
    folios: BatchFolios,
}

/// Default ping-pong window: a page that comes back within a minute bounced.
pub const PINGPONG_WINDOW_NS: u64 = 60_000_000_000;
/// Pages the ping-pong detector remembers (about 40 bytes each).
pub const PINGPONG_CAPACITY: usize = 1 << 20;

/// Folds events into an interval window and a run total.
#[derive(Debug)]
pub struct Aggregator {
    interval: Totals,
    run: Totals,
    /// Migration batches in progress by tid, waiting for their end.
    pending: FastMap<u32, Pending>,
    /// Node and tier lookup (refreshed on hotplug).
    tiers: TierMap,
    /// Rare event decoder.
    rare: RareDecoder,
    /// Which hooks are live.
    avail: Availability,
    pingpong: PingPongTracker,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self {
            interval: Totals::default(),
            run: Totals::default(),
            pending: FastMap::default(),
            tiers: TierMap::default(),
            rare: RareDecoder::default(),
            avail: Availability::default(),
            pingpong: PingPongTracker::new(PINGPONG_WINDOW_NS, PINGPONG_CAPACITY),
        }
    }
}

/// At most this many unmatched batch starts are kept (a start whose end was lost must not
/// grow the table forever).
const MAX_PENDING_STARTS: usize = 65_536;

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// An aggregator that attributes to the tiers of `tiers`, decodes rare events with `rare`
    /// and reports `avail`.
    pub fn with_context(tiers: TierMap, rare: RareDecoder, avail: Availability) -> Self {
        Self {
            tiers,
            rare,
            avail,
            ..Self::default()
        }
    }

    /// New topology (memory hotplug).
    pub fn set_tiers(&mut self, tiers: TierMap) {
        self.tiers = tiers;
    }

    /// The topology in use.
    pub fn tiers(&self) -> &TierMap {
        &self.tiers
    }

    /// Adds an entry to the interval's event log (e.g. a topology change).
    pub fn log(&mut self, entry: LogEntry) {
        self.interval.tiers.rare.log_entry(entry);
    }

    /// The window document of `totals`, with the tier members.
    #[allow(
        clippy::too_many_arguments,
        reason = "one window line has that many parts"
    )]
    pub fn window(
        &self,
        kind: LineKind,
        t_s: f64,
        interval_s: f64,
        totals: &Totals,
        drops: &Drops,
        vmstat_delta: &BTreeMap<String, u64>,
        top_n: usize,
    ) -> schema::Window {
        let mut w = window(kind, t_s, interval_s, totals, drops, vmstat_delta, top_n);
        w.faults.by_tier = totals
            .tiers
            .latency
            .count_by_tier
            .iter()
            .map(|(t, n)| (crate::model::tiers::tier_label(*t), *n))
            .collect();
        totals
            .tiers
            .moves
            .fill(&mut w.migrations, &self.avail.folio, &self.avail.copy);
        totals.tiers.fill(
            &mut w,
            &self.avail,
            &self.tiers,
            self.pingpong.window_ns as f64 / 1e9,
            self.pingpong.table_full,
        );
        if kind == LineKind::Interval {
            w.drop_reasons();
        }
        w
    }

    /// Folds one event in.
    pub fn ingest(&mut self, ev: &Event) {
        self.interval.events += 1;
        match ev {
            Event::Fault(f) => {
                self.interval.faults.add(f);
                let row = self.interval.processes.entry(f.pid).or_default();
                row.comm = f.comm;
                row.faults.add(f);
            }
            Event::MigrateStart(s) => {
                if self.pending.len() >= MAX_PENDING_STARTS {
                    self.pending.clear();
                }
                self.pending.insert(
                    s.tid,
                    Pending {
                        start: Some(s.ts_ns),
                        folios: BatchFolios::default(),
                    },
                );
            }
            Event::FolioMigrate(f) => self.folio(f),
            Event::MigrationPte(m) => {
                let f = self.tiers.pte.folio(m);
                self.folio(&f);
            }
            Event::FaultLatency(f) => {
                let node = f
                    .numa_node
                    .or_else(|| f.alloc_pfn.and_then(|p| self.tiers.pfns.node_of(p)));
                let tier = node.and_then(|n| self.tiers.tier(n));
                self.interval.tiers.latency.record(f, tier);
            }
            Event::NumaFault(n) => {
                self.interval.tiers.hints.add(n);
                self.interval
                    .processes
                    .entry(n.pid)
                    .or_default()
                    .hint_faults += 1;
            }
            Event::Decision(d) => {
                self.interval.tiers.decisions.add(d, &self.tiers);
            }
            Event::Demote(d) => self.interval.tiers.demote.add(d),
            Event::Raw(r) => {
                if let Some(e) = self.rare.decode(r) {
                    self.interval.tiers.rare.add(&e, &self.tiers);
                }
            }
            Event::Migrate(m) => {
                self.interval
                    .migrations
                    .by_reason
                    .entry(m.reason)
                    .or_default()
                    .add(m);
                let pending = self.pending.remove(&m.tid).unwrap_or_default();
                if let Some(start) = pending.start {
                    let lat = m.ts_ns.saturating_sub(start).clamp(1, MAX_LATENCY_NS);
                    let _ = self.interval.migrations.batch_latency.record(lat);
                }
                let why = cause(m.reason, &m.comm);
                let moves = &mut self.interval.tiers.moves;
                let (parts, exact) = pending.folios.split(m.succeeded);
                // Pages of this batch moved up and down a tier, for the migrating process.
                let (mut up, mut down) = (0, 0);
                if parts.is_empty() {
                    moves.add(None, None, m.succeeded, m.reason, why);
                } else {
                    if exact {
                        moves.exact_batches += 1;
                    } else {
                        moves.apportioned_batches += 1;
                    }
                    for ((src, dst), pages) in parts {
                        match moves.add(src, dst, pages, m.reason, why) {
                            Some(Direction::Promotion) => up += pages,
                            Some(Direction::Demotion) => down += pages,
                            _ => {}
                        }
                    }
                }
                if up + down > 0 {
                    let row = self.interval.processes.entry(m.pid).or_default();
                    row.promoted += up;
                    row.demoted += down;
                }
                if m.succeeded > 0 {
                    let row = self.interval.processes.entry(m.pid).or_default();
                    row.comm = m.comm;
                    row.pages_migrated += m.succeeded;
                }
            }
        }
    }

    /// Folds in faults counted in the kernel over the interval (the live modes), leaving out
    /// `skip_pid`'s (cxl-trace's own while it spawns the command).
    pub fn ingest_fault_delta(
        &mut self,
        d: &crate::model::fault_counts::FaultDelta,
        skip_pid: Option<u32>,
    ) {
        let mut totals = d.totals;
        if let Some((_, own)) = skip_pid.and_then(|p| d.by_pid.get(&p)) {
            for (t, o) in totals.iter_mut().zip(own) {
                *t = t.saturating_sub(*o);
            }
        }
        self.interval.faults.add_counters(&totals);
        for (pid, (comm, c)) in &d.by_pid {
            if Some(*pid) == skip_pid {
                continue;
            }
            let row = self.interval.processes.entry(*pid).or_default();
            row.comm = *comm;
            row.faults.add_counters(c);
        }
    }

    /// One folio moved: its tier pair, ping-pong, and its share of the batch in progress.
    fn folio(&mut self, f: &FolioMigrate) {
        let iv = &mut self.interval.tiers;
        if let Some(pair) = fold_folio(
            f,
            &self.tiers,
            &mut iv.moves,
            &mut iv.pingpong,
            &mut self.pingpong,
        ) {
            if self.pending.len() >= MAX_PENDING_STARTS && !self.pending.contains_key(&f.tid) {
                self.pending.clear();
            }
            let p = self.pending.entry(f.tid).or_default();
            *p.folios.pairs.entry(pair).or_default() += 1;
        }
    }

    /// The current interval's fault-latency table (for latencies the kernel aggregated).
    pub fn latency_mut(&mut self) -> &mut crate::model::tiers::LatencyTable {
        &mut self.interval.tiers.latency
    }

    /// The current interval's totals.
    pub fn interval(&self) -> &Totals {
        &self.interval
    }

    /// Ends the interval: folds it into the run totals and returns it.
    pub fn end_interval(&mut self) -> Totals {
        let iv = std::mem::take(&mut self.interval);
        self.run.merge(&iv);
        iv
    }

    /// Totals of all ended intervals.
    pub fn run(&self) -> &Totals {
        &self.run
    }
}

/// Drops counted since `before`, per kind.
pub fn drops_since(now: &Drops, before: &Drops) -> Drops {
    Drops {
        by_kind: now
            .by_kind
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(before.by_kind.get(k).copied().unwrap_or(0)),
                )
            })
            .collect(),
    }
}

/// Kernel-side counters that come with a window: drops per event kind name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Records the kernel could not put into the ring buffer, by kind name.
    pub by_kind: BTreeMap<String, u64>,
}

impl Drops {
    /// Sum over kinds.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

/// The counts of a window without the tier members (left at their defaults).
pub fn window(
    kind: LineKind,
    t_s: f64,
    interval_s: f64,
    totals: &Totals,
    drops: &Drops,
    vmstat_delta: &BTreeMap<String, u64>,
    top_n: usize,
) -> schema::Window {
    schema::Window {
        schema_version: schema::SCHEMA_VERSION,
        kind,
        t: round3(t_s),
        interval_s: round3(interval_s),
        events: schema::Events {
            received: totals.events,
        },
        faults: totals.faults.to_model(),
        migrations: totals.migrations.to_model(),
        drops: schema::Drops {
            total: drops.total(),
            by_kind: drops.by_kind.clone(),
        },
        vmstat_delta: vmstat_delta.clone(),
        processes: totals.top_processes(top_n),
        fault_latency: Default::default(),
        numa_hint_faults: Default::default(),
        promotion_decisions: Default::default(),
        demotion_batches: Default::default(),
        pingpong: Default::default(),
        events_log: Default::default(),
        produced: None,
        kernel_skipped_runs: None,
        errors: None,
        before_window: None,
        exit_code: None,
        host: None,
        topology: None,
        probes: None,
        recording: None,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

mod rows;
pub use rows::PROCESS_ROWS;

#[cfg(test)]
mod tests;
