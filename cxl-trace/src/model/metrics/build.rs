//! The families and how a run's totals fill them.

use std::collections::BTreeMap;

use super::{from_hdr, tier_rank, Family, Kind, Unit, Value};
use crate::model::{
    aggregate::Totals,
    event::{FaultKind, MigrateReason},
    rare::{RareClass, RareEvent, RARE},
    schema::{ReasonCounts, Window},
    status::ProbeStatus,
    tiers::{tier_label, Direction},
    topology::Topology,
};

/// The tool's own health, read when the metrics are built.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Records the kernel submitted, by kind, since attach.
    pub produced: BTreeMap<String, u64>,
    /// Records the kernel could not submit (ring buffer full), by kind, since the start.
    pub dropped: BTreeMap<String, u64>,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// The programs' run time, ns, when the kernel's BPF statistics are on.
    pub bpf_run_ns: Option<u64>,
    /// This process's user + system CPU time, s.
    pub cpu_s: Option<f64>,
    /// Its resident set, bytes.
    pub rss_bytes: Option<u64>,
    /// When it started, Unix s.
    pub start_time_s: Option<f64>,
    /// Every probe, live or not.
    pub probes: Vec<ProbeStatus>,
    /// cxl-trace's version.
    pub version: String,
    /// `uname -r`.
    pub kernel: String,
}

/// What the metrics are built from.
pub struct Input<'a> {
    /// The run so far.
    pub totals: &'a Totals,
    /// The run so far as the summary document (decisions, hint faults, wake-ups, ping-pong).
    pub window: &'a Window,
    /// The machine's memory now.
    pub topology: &'a Topology,
    /// The tool itself.
    pub health: &'a Health,
    /// Process names that get their own series (see [`comm_labels`]).
    pub comms: &'a [String],
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Every family, empty; `n_comms` > 0 adds the per-process-name ones.
pub(super) fn families(n_comms: usize) -> Vec<Family> {
    use Kind::{Counter as C, Gauge as G, Histogram as H};
    let sec = Some(Unit::Seconds);
    let by = Some(Unit::Bytes);
    let mut f = vec![
        Family::new("cxl_trace_page_faults", C, None, &["kind"], "Page faults seen by the fault tracepoints, by access kind (user and kernel mode)."),
        Family::new("cxl_trace_page_faults_by_mode", C, None, &["mode"], "Page faults by the mode they were taken in (user or kernel)."),
        Family::new("cxl_trace_fault_latency", H, sec, &["tier", "tier_rank", "class"], "Page fault latency by the tier of the page the fault left mapped and the fault class (needs the latency probe)."),
        Family::new("cxl_trace_migrated_pages", C, None, &["reason", "result"], "Base pages the kernel migrated, by migration reason, succeeded or failed (mm_migrate_pages)."),
        Family::new("cxl_trace_migration_batches", C, None, &["reason"], "migrate_pages() calls, by reason."),
        Family::new("cxl_trace_promoted_pages", C, None, &["cause", "from_tier", "to_tier", "from_rank", "to_rank"], "Pages moved to a faster tier, by cause and tier pair."),
        Family::new("cxl_trace_demoted_pages", C, None, &["cause", "from_tier", "to_tier", "from_rank", "to_rank"], "Pages moved to a slower tier, by cause and tier pair (tiers unknown when the per-folio probe is off)."),
        Family::new("cxl_trace_promotion_approvals", C, None, &[], "NUMA balancing promotion decisions that let a page move."),
        Family::new("cxl_trace_promotion_refusals", C, None, &["cause"], "NUMA balancing promotion decisions that kept a page where it was, by cause (rate_limit, threshold, ...)."),
        Family::new("cxl_trace_pingpong_bounces", C, None, &[], "Folios that came back to the tier they had left within the ping-pong window."),
        Family::new("cxl_trace_pingpong_residency", H, sec, &[], "How long a bounced page stayed before it came back."),
        Family::new("cxl_trace_numa_hint_faults", C, None, &["node"], "NUMA hinting faults, by the node of the faulting CPU."),
        Family::new("cxl_trace_numa_hint_fault_pages", C, None, &["node"], "Pages of NUMA hinting faults, by the node of the faulting CPU."),
        Family::new("cxl_trace_kswapd_wakeups", C, None, &["node"], "kswapd wake-ups, by node."),
        Family::new("cxl_trace_ras_events", C, None, &["event", "severity"], "Memory errors, machine checks, CXL device records and poison, by tracepoint and severity."),
        Family::new("cxl_trace_memory_tiers", G, None, &[], "Memory tiers on this machine."),
        Family::new("cxl_trace_node_memory", G, by, &["node", "tier", "tier_rank", "cxl"], "Memory of each NUMA node."),
        Family::new("cxl_trace_tier_memory", G, by, &["tier", "tier_rank"], "Memory of each tier."),
        Family::new("cxl_trace_node_access_latency", G, sec, &["node", "access_class", "op"], "HMAT/CDAT access latency of each node from its best initiators."),
        Family::new("cxl_trace_node_access_bandwidth_bytes_per_second", G, None, &["node", "access_class", "op"], "HMAT/CDAT access bandwidth of each node from its best initiators."),
        Family::new("cxl_trace_numa_balancing_mode", G, None, &[], "kernel.numa_balancing (2: memory tiering)."),
        Family::new("cxl_trace_demotion_enabled", G, None, &[], "/sys/kernel/mm/numa/demotion_enabled (1: reclaim demotes)."),
        Family::new("cxl_trace_events_received", C, None, &[], "Records read from the ring buffer and counted."),
        Family::new("cxl_trace_events_dropped", C, None, &["kind"], "Records the kernel could not submit because the ring buffer was full, by kind."),
        Family::new("cxl_trace_records_produced", C, None, &["kind"], "Records the eBPF programs submitted, by kind."),
        Family::new("cxl_trace_decode_errors", C, None, &[], "Records that did not decode."),
        Family::new("cxl_trace_bpf_run", C, sec, &[], "Run time of cxl-trace's eBPF programs (only with --bpf-stats)."),
        Family::new("cxl_trace_probe_up", G, None, &["probe"], "1 when the probe is attached, 0 when not (doctor says why)."),
        Family::new("cxl_trace_build_info", G, None, &["version", "kernel"], "Always 1: the version of cxl-trace and the kernel it traces."),
        Family::new("process_cpu_seconds", C, None, &[], "User and system CPU time of the exporter."),
        Family::new("process_resident_memory", G, by, &[], "Resident memory of the exporter."),
        Family::new("process_start_time", G, sec, &[], "When the exporter started, since the Unix epoch."),
    ];
    if n_comms > 0 {
        f.push(Family::new(
            "cxl_trace_process_page_faults",
            C,
            None,
            &["comm"],
            "Page faults of the busiest process names (--process-labels).",
        ));
        f.push(Family::new(
            "cxl_trace_process_promoted_pages",
            C,
            None,
            &["comm"],
            "Pages the busiest process names' migrations promoted.",
        ));
        f.push(Family::new(
            "cxl_trace_process_demoted_pages",
            C,
            None,
            &["comm"],
            "Pages the busiest process names' reclaim demoted.",
        ));
    }
    f
}

/// The process names to label, sticky: `current` keeps every name it has, and gains the
/// busiest others until it holds `n`. A name never loses its series, so counters stay
/// monotonic and the cardinality stays at most `n`.
pub fn comm_labels(totals: &Totals, current: &mut Vec<String>, n: usize) {
    if current.len() >= n {
        return;
    }
    let mut by_comm: BTreeMap<String, u64> = BTreeMap::new();
    for row in totals.rows_by_name() {
        *by_comm.entry(row.comm.as_string()).or_default() += row.faults.total;
    }
    let mut ranked: Vec<(String, u64)> = by_comm.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (c, _) in ranked {
        if current.len() >= n {
            break;
        }
        if !current.contains(&c) {
            current.push(c);
        }
    }
}

/// Builds every family from a run's totals.
pub fn build(i: &Input) -> Vec<Family> {
    let mut out = families(i.comms.len());
    let tiers: Vec<u32> = i.topology.tiers.iter().map(|t| t.id).collect();
    for f in &mut out {
        fill(f, i, &tiers);
    }
    out
}

/// Every migration reason this build knows, from 0 (so `increase()` sees a reason's first
/// batch), and any other the kernel reported.
fn every_reason(t: &Totals) -> BTreeMap<MigrateReason, ReasonCounts> {
    let mut all: BTreeMap<MigrateReason, ReasonCounts> = (0..=9)
        .map(|v| (MigrateReason::from_raw(v), ReasonCounts::default()))
        .collect();
    for (r, c) in &t.migrations.by_reason {
        all.insert(*r, c.clone());
    }
    all
}

fn tier_labels(tiers: &[u32], t: Option<u32>) -> [String; 2] {
    [tier_label(t), tier_rank(tiers, t)]
}

fn fill(f: &mut Family, i: &Input, tiers: &[u32]) {
    let t = i.totals;
    let w = i.window;
    match f.name {
        "cxl_trace_page_faults" => {
            for (k, n) in FaultKind::ALL.iter().zip(t.faults.by_kind) {
                f.count(&[s(k.name())], n);
            }
        }
        "cxl_trace_page_faults_by_mode" => {
            f.count(&[s("user")], t.faults.user);
            f.count(&[s("kernel")], t.faults.kernel);
        }
        "cxl_trace_fault_latency" => {
            for ((tier, class), h) in &t.tiers.latency.by {
                let sum = t.tiers.latency.sum_ns.get(&(*tier, *class)).copied();
                let [tl, rank] = tier_labels(tiers, *tier);
                f.push(&[tl, rank, s(class.name())], Value::Hist(from_hdr(h, sum)));
            }
        }
        "cxl_trace_migrated_pages" => {
            for (r, c) in every_reason(t) {
                f.count(&[r.name(), s("succeeded")], c.pages_succeeded);
                f.count(&[r.name(), s("failed")], c.pages_failed);
            }
        }
        "cxl_trace_migration_batches" => {
            for (r, c) in every_reason(t) {
                f.count(&[r.name()], c.batches);
            }
        }
        "cxl_trace_promoted_pages" | "cxl_trace_demoted_pages" => {
            let want = if f.name == "cxl_trace_promoted_pages" {
                Direction::Promotion
            } else {
                Direction::Demotion
            };
            for ((dir, cause, (src, dst)), n) in &t.tiers.moves.flows {
                if *dir == want {
                    let [ft, fr] = tier_labels(tiers, *src);
                    let [tt, tr] = tier_labels(tiers, *dst);
                    f.count(&[cause.name(), ft, tt, fr, tr], *n);
                }
            }
        }
        "cxl_trace_promotion_approvals" => {
            if w.promotion_decisions.avail.available {
                f.count(&[], w.promotion_decisions.approved);
            }
        }
        "cxl_trace_promotion_refusals" => {
            for (c, n) in &w.promotion_decisions.refused {
                f.count(&[c.to_string()], *n);
            }
        }
        "cxl_trace_pingpong_bounces" => f.count(&[], w.pingpong.bounces),
        "cxl_trace_pingpong_residency" => {
            let h = &t.tiers.pingpong.residency;
            f.push(&[], Value::Hist(from_hdr(h, None)));
        }
        "cxl_trace_numa_hint_faults" | "cxl_trace_numa_hint_fault_pages" => {
            let pages = f.name.ends_with("pages");
            for (node, row) in &w.numa_hint_faults.by_node {
                f.count(&[s(node)], if pages { row.pages } else { row.faults });
            }
        }
        "cxl_trace_kswapd_wakeups" => {
            for (node, n) in &w.events_log.kswapd_wakes_by_node {
                f.count(&[s(node)], *n);
            }
        }
        "cxl_trace_ras_events" => {
            // Every known pair from 0, then what was seen (an `unknown` severity included).
            let mut all: BTreeMap<(String, &str), u64> = BTreeMap::new();
            for spec in RARE.iter().filter(|r| r.class == RareClass::Ras) {
                for sev in RareEvent::severities(spec.name) {
                    all.insert((format!("{}:{}", spec.category, spec.name), sev), 0);
                }
            }
            for ((event, sev), n) in &t.tiers.rare.by_severity {
                *all.entry((event.clone(), sev)).or_default() += n;
            }
            for ((event, sev), n) in all {
                f.count(&[event, s(sev)], n);
            }
        }
        _ => fill_machine(f, i, tiers),
    }
}

/// The topology, the tool's health and the per-name families.
fn fill_machine(f: &mut Family, i: &Input, tiers: &[u32]) {
    let topo = i.topology;
    let h = i.health;
    match f.name {
        "cxl_trace_memory_tiers" => f.gauge(&[], topo.tiers.len() as f64),
        "cxl_trace_node_memory" => {
            for n in &topo.nodes {
                let [tl, rank] = tier_labels(tiers, n.tier);
                f.gauge(
                    &[s(n.id), tl, rank, s(n.cxl)],
                    n.mem_total_kib as f64 * 1024.0,
                );
            }
        }
        "cxl_trace_tier_memory" => {
            for t in &topo.tiers {
                let kib: u64 = topo
                    .nodes
                    .iter()
                    .filter(|n| n.tier == Some(t.id))
                    .map(|n| n.mem_total_kib)
                    .sum();
                let [tl, rank] = tier_labels(tiers, Some(t.id));
                f.gauge(&[tl, rank], kib as f64 * 1024.0);
            }
        }
        "cxl_trace_node_access_latency" | "cxl_trace_node_access_bandwidth_bytes_per_second" => {
            let latency = f.name.ends_with("latency");
            for n in &topo.nodes {
                for a in &n.access {
                    let (r, w) = if latency {
                        (a.read_latency_ns, a.write_latency_ns)
                    } else {
                        (a.read_bandwidth_mbps, a.write_bandwidth_mbps)
                    };
                    // The kernel's access attributes are ns and MB/s.
                    let scale = if latency { 1e-9 } else { 1e6 };
                    for (op, v) in [("read", r), ("write", w)] {
                        if let Some(v) = v {
                            f.gauge(&[s(n.id), s(a.class), s(op)], v as f64 * scale);
                        }
                    }
                }
            }
        }
        "cxl_trace_numa_balancing_mode" => {
            if let Some(m) = topo.settings.numa_balancing {
                f.gauge(&[], f64::from(m));
            }
        }
        "cxl_trace_demotion_enabled" => {
            if let Some(d) = topo.settings.demotion_enabled {
                f.gauge(&[], if d { 1.0 } else { 0.0 });
            }
        }
        _ => fill_health(f, i, h),
    }
}

fn fill_health(f: &mut Family, i: &Input, h: &Health) {
    match f.name {
        "cxl_trace_events_received" => f.count(&[], i.totals.events),
        "cxl_trace_events_dropped" => {
            for (k, n) in &h.dropped {
                f.count(std::slice::from_ref(k), *n);
            }
        }
        "cxl_trace_records_produced" => {
            for (k, n) in &h.produced {
                f.count(std::slice::from_ref(k), *n);
            }
        }
        "cxl_trace_decode_errors" => f.count(&[], h.decode_errors),
        "cxl_trace_bpf_run" => {
            if let Some(ns) = h.bpf_run_ns {
                f.push(&[], Value::Float(ns as f64 * 1e-9));
            }
        }
        "cxl_trace_probe_up" => {
            for p in &h.probes {
                f.gauge(
                    std::slice::from_ref(&p.name),
                    if p.is_live() { 1.0 } else { 0.0 },
                );
            }
        }
        "cxl_trace_build_info" => f.gauge(&[h.version.clone(), h.kernel.clone()], 1.0),
        "process_cpu_seconds" => {
            if let Some(c) = h.cpu_s {
                f.push(&[], Value::Float(c));
            }
        }
        "process_resident_memory" => {
            if let Some(r) = h.rss_bytes {
                f.gauge(&[], r as f64);
            }
        }
        "process_start_time" => {
            if let Some(t) = h.start_time_s {
                f.gauge(&[], t);
            }
        }
        name => fill_comms(f, i, name),
    }
}

fn fill_comms(f: &mut Family, i: &Input, name: &str) {
    let pick: fn(&crate::model::aggregate::ProcRow) -> u64 = match name {
        "cxl_trace_process_page_faults" => |r| r.faults.total,
        "cxl_trace_process_promoted_pages" => |r| r.promoted,
        "cxl_trace_process_demoted_pages" => |r| r.demoted,
        _ => return,
    };
    let mut by: BTreeMap<&str, u64> = i.comms.iter().map(|c| (c.as_str(), 0)).collect();
    for row in i.totals.rows_by_name() {
        let c = row.comm.as_string();
        if let Some(v) = by.get_mut(c.as_str()) {
            *v += pick(row);
        }
    }
    for (c, v) in by {
        f.count(&[s(c)], v);
    }
}
