//! One interval in compact form: what the dashboard keeps per interval, and what the
//! Perfetto writer and `diff` read from a recording's intervals.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use crate::model::{
    aggregate::{FaultCounts, Totals},
    event::FaultClass,
    rare::FieldValue,
    schema::{Cause, LogEntry, RefusalCause},
    tiers::add_counts,
};

/// Per-process rows kept per sample (the busiest).
pub const PROCS_PER_SAMPLE: usize = 64;

/// A latency histogram key: (tier, class).
pub type LatKey = (Option<u32>, FaultClass);

/// Per-process counts of one sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// Thread name.
    pub comm: String,
    /// Faults.
    pub faults: u64,
    /// NUMA hinting faults.
    pub hint_faults: u64,
    /// Pages promoted by migrations this process performed (NUMA balancing runs in the
    /// faulting task).
    pub promoted: u64,
    /// Pages demoted by migrations this process performed (as a reclaimer: kswapd, direct).
    pub demoted: u64,
    /// Ping-pong bounces of pages this process promoted back.
    pub pingpong: u64,
}

/// Pages moving between tiers and why: one interval, or summed over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Churn {
    /// Pages promoted by cause.
    pub promotions: BTreeMap<Cause, u64>,
    /// Pages demoted by cause.
    pub demotions: BTreeMap<Cause, u64>,
    /// Pages by (source tier, destination tier).
    pub pairs: BTreeMap<(Option<u32>, Option<u32>), u64>,
    /// Pages migrated by reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Pages migrated, all reasons.
    pub migrated: u64,
    /// Pages that failed to migrate.
    pub failed: u64,
    /// Promotion refusals by cause.
    pub refused: BTreeMap<RefusalCause, u64>,
    /// Ping-pong bounces.
    pub bounces: u64,
    /// NUMA hinting faults.
    pub hint_faults: u64,
}

impl Churn {
    /// The churn of one interval's totals.
    pub fn of(t: &Totals) -> Self {
        let total = t.migrations.total();
        Self {
            promotions: t.tiers.moves.promotions.clone(),
            demotions: t.tiers.moves.demotions.clone(),
            pairs: t.tiers.moves.pairs.clone(),
            by_reason: t
                .migrations
                .by_reason
                .iter()
                .map(|(r, c)| (r.name(), c.pages_succeeded))
                .collect(),
            migrated: total.pages_succeeded,
            failed: total.pages_failed,
            refused: t.tiers.decisions.refused.clone(),
            bounces: t.tiers.pingpong.bounces,
            hint_faults: t.tiers.hints.total(),
        }
    }

    /// Adds another interval.
    pub fn add(&mut self, o: &Churn) {
        add_counts(&mut self.promotions, &o.promotions);
        add_counts(&mut self.demotions, &o.demotions);
        add_counts(&mut self.pairs, &o.pairs);
        add_counts(&mut self.by_reason, &o.by_reason);
        add_counts(&mut self.refused, &o.refused);
        self.migrated += o.migrated;
        self.failed += o.failed;
        self.bounces += o.bounces;
        self.hint_faults += o.hint_faults;
    }

    /// Pages promoted, all causes.
    pub fn promoted(&self) -> u64 {
        self.promotions.values().sum()
    }

    /// Pages demoted, all causes.
    pub fn demoted(&self) -> u64 {
        self.demotions.values().sum()
    }
}

/// One interval, as the dashboard keeps it.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds covered.
    pub interval_s: f64,
    /// Events aggregated.
    pub events: u64,
    /// Faults (exception tracepoints): in all, by mode and by access kind.
    pub faults: FaultCounts,
    /// Records dropped by the kernel side.
    pub drops: u64,
    /// Pages moving between tiers and why.
    pub churn: Churn,
    /// CPU time the tool used, seconds.
    pub tool_cpu_s: f64,
    /// BPF program run time, ns (0 when BPF stats are off).
    pub bpf_run_ns: u64,
    /// Latency histograms (recorded buckets).
    pub latency: BTreeMap<LatKey, Buckets>,
    /// Migration batch latency (recorded buckets).
    pub batch_latency: Buckets,
    /// Ping-pong residency (recorded buckets).
    pub residency: Buckets,
    /// Busiest processes.
    pub procs: HashMap<u32, ProcSample>,
    /// Event log entries (RAS, hotplug, topology).
    pub log: Vec<String>,
}

/// The recorded buckets of a histogram: (value, count) pairs.
pub type Buckets = Vec<(u64, u64)>;

fn recorded(h: &Histogram<u64>) -> Buckets {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn record_into(b: &Buckets, into: &mut Histogram<u64>) {
    for &(value, count) in b {
        // Values came out of a histogram with the same bounds, so they fit.
        let _ = into.record_n(value, count);
    }
}

impl Sample {
    /// Builds a sample from an interval's totals.
    pub fn from_totals(t: &Totals, interval_s: f64, drops: u64) -> Self {
        let mut latency = BTreeMap::new();
        for (k, h) in &t.tiers.latency.by {
            if !h.is_empty() {
                latency.insert(*k, recorded(h));
            }
        }
        let mut rows: Vec<(&u32, &crate::model::aggregate::ProcRow)> = t.processes.iter().collect();
        rows.sort_by(|a, b| {
            let w = |r: &crate::model::aggregate::ProcRow| r.faults.total + r.promoted + r.demoted;
            w(b.1).cmp(&w(a.1)).then(a.0.cmp(b.0))
        });
        let procs = rows
            .into_iter()
            .take(PROCS_PER_SAMPLE)
            .map(|(pid, r)| {
                (
                    *pid,
                    ProcSample {
                        comm: r.comm.as_string(),
                        faults: r.faults.total,
                        hint_faults: r.hint_faults,
                        promoted: r.promoted,
                        demoted: r.demoted,
                        pingpong: t.tiers.pingpong.by_pid.get(pid).copied().unwrap_or(0),
                    },
                )
            })
            .collect();
        Self {
            interval_s,
            events: t.events,
            faults: t.faults.clone(),
            drops,
            churn: Churn::of(t),
            tool_cpu_s: 0.0,
            bpf_run_ns: 0,
            latency,
            batch_latency: recorded(&t.migrations.batch_latency),
            residency: recorded(&t.tiers.pingpong.residency),
            procs,
            log: t.tiers.rare.log.iter().map(log_line).collect(),
        }
    }
}

/// One event log entry as a line of text.
pub fn log_line(e: &LogEntry) -> String {
    let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    match e {
        LogEntry::Ras(r) => {
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|(k, v)| match v {
                    FieldValue::Int(x) => format!("{k}={x}"),
                    // Addresses as the kernel prints them.
                    FieldValue::UInt(x) if is_address(k) => format!("{k}={x:#x}"),
                    FieldValue::UInt(x) => format!("{k}={x}"),
                    FieldValue::Str(x) if x.contains(' ') => format!("{k}=\"{x}\""),
                    FieldValue::Str(x) => format!("{k}={x}"),
                })
                .collect();
            let place = match (&r.placement, r.pfn) {
                (Some(p), _) => format!(" ({p})"),
                (None, Some(pfn)) if !r.fields.contains_key("pfn") => format!(" pfn={pfn:#x}"),
                (None, _) => String::new(),
            };
            format!(
                "{} node={} tier={}{place} {}",
                r.event,
                opt(r.node),
                opt(r.tier),
                fields.join(" ")
            )
            .trim_end()
            .to_string()
        }
        LogEntry::Topology(t) => {
            let added: Vec<String> = t
                .nodes_added
                .iter()
                .map(|n| format!("{}(tier {})", n.node, opt(n.tier)))
                .collect();
            let removed: Vec<String> = t.nodes_removed.iter().map(u32::to_string).collect();
            format!(
                "{} nodes_added={} nodes_removed={} memory_blocks={}->{}",
                t.event,
                list(&added),
                list(&removed),
                t.memory_blocks.before,
                t.memory_blocks.after
            )
        }
        LogEntry::Blast(b) => {
            let shown: Vec<String> = b.holders.iter().take(3).map(holder_line).collect();
            let more = b.holders.len().saturating_sub(3) as u64 + b.holders_left_out;
            format!(
                "{} of {} node={} tier={}{}{}: {} holders{}{}",
                b.event,
                b.cause,
                opt(b.scope.node),
                opt(b.scope.tier),
                b.scope
                    .pfn
                    .map_or(String::new(), |p| format!(" pfn={p:#x}")),
                b.scope
                    .page_cgroup
                    .as_ref()
                    .map_or(String::new(), |c| format!(" page_cgroup={c}")),
                b.holders.len() as u64 + b.holders_left_out,
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(": {}", shown.join("; "))
                },
                if more > 0 {
                    format!("; {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}

/// One holder of a blast radius: `comm[pid] N pages (cgroup) -> fate`.
pub fn holder_line(h: &crate::model::schema::Holder) -> String {
    let after = match (h.fate, h.pages_after) {
        (crate::model::schema::Fate::Migrated, Some(a)) => format!(", {a} left"),
        _ => String::new(),
    };
    format!(
        "{}[{}] {} pages{} in {} -> {}{after}",
        h.comm,
        h.pid,
        h.pages,
        if h.page_cgroup {
            " (the page's cgroup)"
        } else {
            ""
        },
        h.cgroup,
        h.fate.name()
    )
}

/// Fields that hold addresses (shown in hex).
fn is_address(field: &str) -> bool {
    matches!(
        field,
        "pfn" | "hpa" | "dpa" | "addr" | "hpa_alias0" | "dpa_length"
    )
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}
