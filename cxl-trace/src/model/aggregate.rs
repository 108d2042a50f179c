//! Aggregation of decoded events (pure, no I/O): fault counts per mode, kind and process;
//! migration batches per reason with batch latency. Everything merges, so interval totals
//! add up to run totals.

use std::collections::BTreeMap;

use crate::{
    model::event::{
        Comm, Event, Fault, FaultKind, FaultMode, FolioMigrate, MigrateBatch, MigrateReason,
    },
    model::rare::RareDecoder,
    model::schema::{self, LineKind, LogEntry, Percentiles},
    model::tiers::{
        cause, fold_folio, Availability, BatchFolios, Direction, PingPongTracker, TierMap,
        TierTotals,
    },
};
use hdrhistogram::Histogram;

/// Highest latency the histograms track: 10 s in ns.
pub const MAX_LATENCY_NS: u64 = 10_000_000_000;

/// A latency histogram with the project's standard bounds (1 ns to 10 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig
    // <= 5), checked by the `histogram_bounds_are_valid` test; no runtime input reaches this.
    #[allow(
        clippy::expect_used,
        reason = "constant arguments, validated by a unit test"
    )]
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

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

/// Percentiles of a histogram (all zero when empty).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        max: h.max(),
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
            let r = self.processes.entry(*pid).or_default();
            r.comm = row.comm;
            r.faults.merge(&row.faults);
            r.pages_migrated += row.pages_migrated;
            r.hint_faults += row.hint_faults;
            r.promoted += row.promoted;
            r.demoted += row.demoted;
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
/// The hash map of the per-event paths: std's SipHash costs a fifth of the time of folding
/// a folio move; foldhash (randomly seeded per process) a fraction of it.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{Comm, MigrateStart};

    fn json(w: schema::Window) -> serde_json::Value {
        serde_json::to_value(w).expect("a window serialises")
    }

    fn fault(pid: u32, mode: FaultMode, code: u64) -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"proc");
        Event::Fault(Fault {
            ts_ns: 1,
            pid,
            tid: pid,
            cpu: 0,
            comm: Comm(comm),
            mode,
            address: 0,
            ip: 0,
            error_code: code,
        })
    }

    fn batch(tid: u32, ts: u64, reason: u32, ok: u64, failed: u64) -> Event {
        Event::Migrate(MigrateBatch {
            ts_ns: ts,
            pid: tid,
            tid,
            cpu: 0,
            comm: Comm::default(),
            succeeded: ok,
            failed,
            thp_succeeded: 0,
            thp_failed: 0,
            thp_split: 0,
            large_folio_split: 0,
            mode: 0,
            reason: MigrateReason::from_raw(reason),
        })
    }

    fn start(tid: u32, ts: u64, reason: u32) -> Event {
        Event::MigrateStart(MigrateStart {
            ts_ns: ts,
            pid: tid,
            tid,
            cpu: 0,
            comm: Comm::default(),
            mode: 0,
            reason: MigrateReason::from_raw(reason),
        })
    }

    #[test]
    fn empty_window_is_all_zero() {
        let mut a = Aggregator::new();
        let iv = a.end_interval();
        let v = json(window(
            LineKind::Interval,
            1.0,
            1.0,
            &iv,
            &Drops::default(),
            &BTreeMap::new(),
            10,
        ));
        assert_eq!(v["faults"]["total"], 0);
        assert_eq!(v["drops"]["total"], 0);
        assert_eq!(v["migrations"]["batch_latency_ns"]["count"], 0);
        assert_eq!(v["processes"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn counts_faults_by_mode_kind_and_process() {
        let mut a = Aggregator::new();
        for _ in 0..3 {
            a.ingest(&fault(10, FaultMode::User, 6));
        }
        a.ingest(&fault(10, FaultMode::Kernel, 2));
        a.ingest(&fault(20, FaultMode::User, 7));
        let iv = a.end_interval();
        assert_eq!(iv.faults.total, 5);
        assert_eq!(iv.faults.user, 4);
        assert_eq!(iv.faults.kernel, 1);
        assert_eq!(iv.faults.by_kind[1], 4, "write_not_present");
        assert_eq!(iv.faults.by_kind[2], 1, "write_protection");
        let top = iv.top_processes(1);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].pid, 10);
        assert_eq!(top[0].faults, 4);
        assert_eq!(top[0].kernel, 1);
        assert_eq!(top[0].comm, "proc");
    }

    #[test]
    fn intervals_add_up_to_run() {
        let mut a = Aggregator::new();
        a.ingest(&fault(1, FaultMode::User, 0));
        let first = a.end_interval();
        a.ingest(&fault(1, FaultMode::User, 0));
        a.ingest(&fault(2, FaultMode::Kernel, 0));
        let second = a.end_interval();
        assert_eq!(first.faults.total, 1);
        assert_eq!(second.faults.total, 2);
        assert_eq!(a.run().faults.total, 3);
        assert_eq!(a.run().processes[&1].faults.total, 2);
        assert_eq!(a.interval().faults.total, 0);
    }

    #[test]
    fn migrations_by_reason_with_latency() {
        let mut a = Aggregator::new();
        a.ingest(&start(7, 1_000, 0));
        a.ingest(&batch(7, 4_000, 0, 100, 2));
        a.ingest(&batch(8, 5_000, 3, 50, 0)); // start not seen: counted, no latency
        let iv = a.end_interval();
        let c = &iv.migrations.by_reason[&MigrateReason::Compaction];
        assert_eq!((c.batches, c.pages_succeeded, c.pages_failed), (1, 100, 2));
        assert_eq!(iv.migrations.total().pages_succeeded, 150);
        assert_eq!(iv.migrations.batch_latency.len(), 1);
        assert!(iv
            .migrations
            .batch_latency
            .equivalent(iv.migrations.batch_latency.max(), 3_000));
        let v = json(window(
            LineKind::Interval,
            0.0,
            1.0,
            &iv,
            &Drops::default(),
            &BTreeMap::new(),
            5,
        ));
        assert_eq!(
            v["migrations"]["by_reason"]["compaction"]["pages_failed"],
            2
        );
        assert_eq!(v["migrations"]["by_reason"]["syscall"]["batches"], 1);
        assert_eq!(v["migrations"]["pages_succeeded"], 150);
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut a = Aggregator::new();
        a.ingest(&start(1, 0, 0));
        a.ingest(&batch(1, u64::MAX, 0, 1, 0));
        a.ingest(&start(2, 5, 0));
        a.ingest(&batch(2, 5, 0, 1, 0)); // zero duration
        let iv = a.end_interval();
        assert_eq!(iv.migrations.batch_latency.len(), 2);
        assert!(iv.migrations.batch_latency.max() >= MAX_LATENCY_NS);
        assert_eq!(iv.migrations.batch_latency.min(), 1);
    }

    fn folio(tid: u32, ts: u64, src_pfn: u64, dst_pfn: u64, key: (u64, u64)) -> Event {
        Event::FolioMigrate(crate::model::event::FolioMigrate {
            ts_ns: ts,
            pid: tid,
            tid,
            cpu: 0,
            src_pfn: Some(src_pfn),
            dst_pfn: Some(dst_pfn),
            mapping: key.0,
            index: key.1,
            copy_ns: Some(500),
            pages: None,
            rc: 0,
            reason: None,
        })
    }

    /// Node 0 (tier 4) holds pfns 0..1000, node 1 (tier 72) pfns 1000..2000.
    fn two_tiers() -> Aggregator {
        Aggregator::with_context(
            crate::testutil::two_tier_map(),
            RareDecoder::default(),
            Availability::default(),
        )
    }

    /// The x86_64 migration entry pointing to `pfn`: `(~pfn << 14 >> 5) | (type 30 << 59)`.
    fn migration_entry(pfn: u64) -> u64 {
        ((!pfn) << 14 >> 5) | (30 << 59)
    }

    fn pte_event(tid: u32, ts: u64, old: Option<u64>, new_pfn: u64) -> Event {
        Event::MigrationPte(crate::model::event::MigrationPte {
            ts_ns: ts,
            pid: tid,
            tid,
            cpu: 0,
            addr: 0x7f00_0000_0000 + ts * 4096,
            old_entry: old.map(migration_entry),
            new_entry: (new_pfn << 12) | 0x67,
            unmapped_ns: 10,
            order: 0,
            reason: Some(MigrateReason::Syscall),
            pmd: false,
        })
    }

    #[test]
    fn migration_pte_events_attribute_batches_without_copy_time() {
        let mut a = two_tiers();
        a.ingest(&start(7, 0, 3));
        a.ingest(&pte_event(7, 1, Some(10), 1010));
        a.ingest(&pte_event(7, 2, Some(11), 1011));
        // Stayed where it was: not a move.
        a.ingest(&pte_event(7, 3, Some(12), 12));
        a.ingest(&batch(7, 10, 3, 2, 1));
        let iv = a.end_interval();
        let m = &iv.tiers.moves;
        assert_eq!(m.pairs.get(&(Some(4), Some(72))), Some(&2));
        assert_eq!((m.folios, m.folio_failures, m.unmapped_pfns), (2, 1, 0));
        assert_eq!(m.copy_latency.len(), 0, "no copy time from the fallback");
        assert_eq!(m.exact_batches, 1);
    }

    #[test]
    fn batches_are_attributed_to_tier_pairs_by_their_folios() {
        let mut a = two_tiers();
        // A demotion batch of 3 folios, 514 pages (one is a THP): all tier4 -> tier72.
        a.ingest(&start(9, 0, 8));
        for i in 0..3 {
            a.ingest(&folio(9, 10 + i, 5 + i, 1005 + i, (0xa1, i)));
        }
        let mut demote = batch(9, 100, 8, 514, 0);
        if let Event::Migrate(m) = &mut demote {
            m.comm = Comm(*b"kswapd0\0\0\0\0\0\0\0\0\0");
        }
        a.ingest(&demote);
        // The same page comes back by NUMA balancing 1 us later: a promotion and a bounce.
        a.ingest(&start(10, 1_000, 5));
        a.ingest(&folio(10, 1_100, 1005, 7, (0xa1, 0)));
        a.ingest(&batch(10, 1_200, 5, 1, 0));
        // A syscall batch without folio events (hook absent): unattributed.
        a.ingest(&batch(11, 2_000, 3, 16, 0));
        let iv = a.end_interval();
        let m = &iv.tiers.moves;
        assert_eq!(m.demotions.get(&schema::Cause::Kswapd), Some(&514));
        assert_eq!(m.promotions.get(&schema::Cause::NumaBalancing), Some(&1));
        assert_eq!(m.pairs.get(&(Some(4), Some(72))), Some(&514));
        assert_eq!(m.pairs.get(&(Some(72), Some(4))), Some(&1));
        assert_eq!(m.unattributed, 16);
        assert_eq!((m.exact_batches, m.apportioned_batches), (2, 0));
        assert_eq!(iv.tiers.pingpong.bounces, 1);
        assert_eq!(iv.tiers.pingpong.by_pid.get(&10), Some(&1));
        // Per process: the reclaimer demoted, the faulting task promoted; the unattributed
        // syscall batch moved nothing up or down.
        assert_eq!(
            (iv.processes[&9].promoted, iv.processes[&9].demoted),
            (0, 514)
        );
        assert_eq!(
            (iv.processes[&10].promoted, iv.processes[&10].demoted),
            (1, 0)
        );
        assert_eq!(
            (iv.processes[&11].promoted, iv.processes[&11].demoted),
            (0, 0)
        );
        let v = json(a.window(
            LineKind::Interval,
            0.0,
            1.0,
            &iv,
            &Drops::default(),
            &BTreeMap::new(),
            5,
        ));
        assert_eq!(
            v["migrations"]["promotions"]["by_cause"]["numa_balancing"],
            1
        );
        assert_eq!(v["migrations"]["tier_pairs"]["tier4->tier72"], 514);
        assert_eq!(v["pingpong"]["bounces"], 1);
        assert_eq!(v["migrations"]["per_folio"]["folios"], 4);
    }

    #[test]
    fn fault_latency_is_tagged_with_the_tier_of_the_page() {
        let mut a = two_tiers();
        let f = |pfn: Option<u64>, node: Option<u32>, flags: u32| {
            Event::FaultLatency(crate::testutil::timed_fault(2_000, flags, pfn, node))
        };
        use cxl_trace_common::fault_flags::{ALLOC, NUMA_HINT};
        a.ingest(&f(Some(1500), None, ALLOC)); // new page on node 1
        a.ingest(&f(None, Some(0), NUMA_HINT)); // hint fault, page now on node 0
        a.ingest(&f(None, None, 0)); // minor fault on a page of unknown node
        a.ingest(&f(Some(999_999), None, ALLOC)); // pfn outside every block
        let iv = a.end_interval();
        let by = &iv.tiers.latency.count_by_tier;
        assert_eq!(by.get(&Some(72)), Some(&1));
        assert_eq!(by.get(&Some(4)), Some(&1));
        assert_eq!(by.get(&None), Some(&2));
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let h = new_histogram();
        assert_eq!(h.high(), MAX_LATENCY_NS);
        assert_eq!(h.sigfig(), 3);
    }

    #[test]
    fn drops_sum() {
        let mut d = Drops::default();
        d.by_kind.insert("fault_user".into(), 3);
        d.by_kind.insert("migrate".into(), 4);
        assert_eq!(d.total(), 7);
    }
}
