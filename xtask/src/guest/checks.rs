//! What a scenario checks: named checks, cxl-trace's counts against /proc/vmstat and bpftrace.

use super::*;
use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::Value;

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

pub(crate) fn get(v: &Value, path: &str) -> u64 {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
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
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("map"))
        .filter_map(|v| v.get("data")?.get(name).cloned())
        .filter_map(|m| m.as_object().cloned())
        .flat_map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn summary(out: &str) -> Result<Value> {
    out.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("type").and_then(Value::as_str) == Some("summary"))
        .context("cxl-trace printed no summary line")
}

/// Common checks: exact migration totals against vmstat and per-reason sums against bpftrace.
pub(crate) fn check_migrations(c: &mut Checks, s: &Value, bt: &str, expect: &[&str]) {
    c.eq(
        "pgmigrate_success",
        get(s, "migrations.pages_succeeded"),
        get(s, "vmstat_delta.pgmigrate_success"),
    );
    c.eq(
        "pgmigrate_fail",
        get(s, "migrations.pages_failed"),
        get(s, "vmstat_delta.pgmigrate_fail"),
    );
    let ok = bpftrace_map(bt, "@ok");
    let fail = bpftrace_map(bt, "@fail");
    for (name, num) in REASONS {
        let tool_ok = get(s, &format!("migrations.by_reason.{name}.pages_succeeded"));
        let tool_fail = get(s, &format!("migrations.by_reason.{name}.pages_failed"));
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
    c.eq("drops", get(s, "drops.total"), 0);
    // Runs the kernel's recursion guard skipped are lost without a drop: shown for diagnosis.
    say(&format!(
        "program runs skipped by the kernel: {}",
        s["kernel_skipped_runs"]
    ));
}

/// Demotions by direct and by proactive reclaim (memory.reclaim): one counter up to 6.13,
/// `pgdemote_direct` and `pgdemote_proactive` after (the tool's cause `direct` is both).
pub(crate) fn pgdemote_direct(s: &Value) -> u64 {
    get(s, "vmstat_delta.pgdemote_direct") + get(s, "vmstat_delta.pgdemote_proactive")
}
