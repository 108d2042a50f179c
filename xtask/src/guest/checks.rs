//! What a scenario checks: named checks, cxl-trace's counts against /proc/vmstat and bpftrace.

use super::*;
use std::collections::BTreeMap;

use cxl_trace::model::schema::{Moves, Percentiles, ReasonCounts};

/// Checks collected over a scenario, printed as one table.
#[derive(Default)]
pub(crate) struct Checks {
    rows: Vec<(String, String, String, bool)>,
}

impl Checks {
    pub(crate) fn eq(&mut self, what: &str, tool: u64, kernel: u64) {
        self.rows.push((
            what.into(),
            tool.to_string(),
            kernel.to_string(),
            tool == kernel,
        ));
    }

    /// Exact, unless the kernel skipped `skipped` runs of the batch program (its recursion
    /// guard; reported by the tool): then each hides at most one batch of 512 pages.
    pub(crate) fn eq_batches(&mut self, what: &str, tool: u64, kernel: u64, skipped: u64) {
        if skipped == 0 {
            return self.eq(what, tool, kernel);
        }
        self.rows.push((
            format!("{what} (the kernel skipped {skipped} batch runs)"),
            tool.to_string(),
            kernel.to_string(),
            tool <= kernel && kernel - tool <= skipped * 512,
        ));
    }

    pub(crate) fn within(&mut self, what: &str, tool: u64, kernel: u64, pct: f64) {
        let ok = (tool as f64 - kernel as f64).abs() <= kernel as f64 * pct / 100.0;
        self.rows.push((
            format!("{what} (within {pct}%)"),
            tool.to_string(),
            kernel.to_string(),
            ok,
        ));
    }

    pub(crate) fn truth(&mut self, what: &str, detail: String, ok: bool) {
        self.rows.push((what.into(), detail, "-".into(), ok));
    }

    pub(crate) fn print(&self) -> bool {
        let w = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(10)
            .max(10);
        println!(
            "{:<w$}  {:>14}  {:>14}  verdict",
            "counter", "cxl-trace", "kernel"
        );
        for (what, tool, kernel, ok) in &self.rows {
            println!(
                "{what:<w$}  {tool:>14}  {kernel:>14}  {}",
                if *ok { "ok" } else { "MISMATCH" }
            );
        }
        self.rows.iter().all(|r| r.3)
    }
}

/// A /proc/vmstat delta of a window (0 when the kernel has no such counter).
pub(crate) fn vm(s: &Window, counter: &str) -> u64 {
    s.vmstat_delta.get(counter).copied().unwrap_or(0)
}

/// The batches of one migration reason (zero when none happened).
pub(crate) fn by_reason(s: &Window, r: MigrateReason) -> ReasonCounts {
    s.migrations.by_reason.get(&r).cloned().unwrap_or_default()
}

/// Pages moved for one cause.
pub(crate) fn by_cause(m: &Moves, c: Cause) -> u64 {
    m.by_cause.get(&c).copied().unwrap_or(0)
}

/// Promotions refused for one cause.
pub(crate) fn refused(s: &Window, c: RefusalCause) -> u64 {
    s.promotion_decisions.refused.get(&c).copied().unwrap_or(0)
}

/// Pages moved from tier `a` to tier `b`.
pub(crate) fn tier_pair(s: &Window, a: u64, b: u64) -> u64 {
    s.migrations
        .tier_pairs
        .get(&format!("tier{a}->tier{b}"))
        .copied()
        .unwrap_or(0)
}

/// Fault latency of all classes in tier `t` (all zero without it).
pub(crate) fn tier_latency(s: &Window, t: u64) -> Percentiles {
    s.fault_latency
        .by_tier
        .get(&format!("tier{t}"))
        .map(|l| l.all)
        .unwrap_or_default()
}

/// The kernel's `enum migrate_reason` numbers of the tool's reason names.
pub(crate) const REASONS: &[(&str, u32)] = &[
    ("compaction", 0),
    ("memory_failure", 1),
    ("memory_hotplug", 2),
    ("syscall", 3),
    ("mempolicy_mbind", 4),
    ("numa_misplaced", 5),
    ("contig_range", 6),
    ("longterm_pin", 7),
    ("demotion", 8),
    ("damon", 9),
];

pub(crate) const BPFTRACE_MIGRATE: &str = "tracepoint:migrate:mm_migrate_pages { @ok[args->reason] = sum(args->succeeded); @fail[args->reason] = sum(args->failed); }";

/// `@name` map of bpftrace's JSON output: reason number -> value.
pub(crate) fn bpftrace_map(out: &str, name: &str) -> BTreeMap<u32, u64> {
    /// A line of `bpftrace -f json`, as far as it is read: maps of integer keys.
    #[derive(serde::Deserialize)]
    struct BtLine {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        data: BTreeMap<String, BTreeMap<String, u64>>,
    }
    out.lines()
        .filter_map(|l| serde_json::from_str::<BtLine>(l).ok())
        .filter(|l| l.kind == "map")
        .filter_map(|mut l| l.data.remove(name))
        .flat_map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
        })
        .collect()
}

/// Common checks: exact migration totals against vmstat and per-reason sums against bpftrace.
pub(crate) fn check_migrations(c: &mut Checks, s: &Window, bt: &str, expect: &[&str]) {
    let skipped = batch_runs_skipped(s);
    c.eq_batches(
        "pgmigrate_success",
        s.migrations.pages_succeeded,
        vm(s, "pgmigrate_success"),
        skipped,
    );
    c.eq_batches(
        "pgmigrate_fail",
        s.migrations.pages_failed,
        vm(s, "pgmigrate_fail"),
        skipped,
    );
    let ok = bpftrace_map(bt, "@ok");
    let fail = bpftrace_map(bt, "@fail");
    for (name, num) in REASONS {
        let counts = MigrateReason::from_name(name).map(|r| by_reason(s, r));
        let tool_ok = counts.as_ref().map_or(0, |x| x.pages_succeeded);
        let tool_fail = counts.as_ref().map_or(0, |x| x.pages_failed);
        let bt_ok = ok.get(num).copied().unwrap_or(0);
        let bt_fail = fail.get(num).copied().unwrap_or(0);
        if expect.contains(name) || tool_ok + bt_ok + tool_fail + bt_fail > 0 {
            c.eq(&format!("{name} pages (bpftrace)"), tool_ok, bt_ok);
            c.eq(&format!("{name} failed (bpftrace)"), tool_fail, bt_fail);
        }
        if expect.contains(name) {
            c.truth(
                &format!("{name} happened"),
                tool_ok.to_string(),
                tool_ok > 0,
            );
        }
    }
    c.eq("drops", s.drops.total, 0);
    // Runs the kernel's recursion guard skipped are lost without a drop: shown for diagnosis.
    say(&format!(
        "program runs skipped by the kernel: {:?}",
        s.kernel_skipped_runs.clone().unwrap_or_default()
    ));
}

/// Demotions by direct and by proactive reclaim (memory.reclaim): one counter up to 6.13,
/// `pgdemote_direct` and `pgdemote_proactive` after (the tool's cause `direct` is both).
pub(crate) fn pgdemote_direct(s: &Window) -> u64 {
    vm(s, "pgdemote_direct") + vm(s, "pgdemote_proactive")
}

/// Runs of the batch-end program the kernel skipped in the session (`kernel_skipped_runs`).
pub(crate) fn batch_runs_skipped(s: &Window) -> u64 {
    s.kernel_skipped_runs
        .as_ref()
        .and_then(|m| m.get("mm_migrate_pages").copied())
        .unwrap_or(0)
}
