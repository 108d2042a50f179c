//! `cxl-trace stat`'s summary as text: one human-readable page, the `perf stat` of tiering.
//! Each count the kernel also keeps has the `/proc/vmstat` delta beside it, marked `≠` where
//! they differ; fault counts of a filtered run are the tool's only (the kernel's are
//! system-wide).

use crate::model::schema::{Percentiles, Window};

/// One line of the table: what, the tool's count, the kernel's (name and delta).
struct Row {
    indent: usize,
    label: String,
    tool: u64,
    kernel: Option<(String, u64)>,
}

fn row(indent: usize, label: impl Into<String>, tool: u64) -> Row {
    Row {
        indent,
        label: label.into(),
        tool,
        kernel: None,
    }
}

impl Row {
    fn vs(mut self, w: &Window, counters: &[&str]) -> Self {
        let present: Vec<&&str> = counters
            .iter()
            .filter(|c| w.vmstat_delta.contains_key(**c))
            .collect();
        if !present.is_empty() {
            let sum = present.iter().map(|c| w.vmstat_delta[**c]).sum();
            let name = present.iter().map(|c| **c).collect::<Vec<_>>().join("+");
            self.kernel = Some((name, sum));
        }
        self
    }
}

/// Thousands separated, as `perf stat` prints counts.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v} ns"),
        10_000..=9_999_999 => format!("{:.1} us", v as f64 / 1e3),
        _ => format!("{:.2} ms", v as f64 / 1e6),
    }
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ns(p.p50),
        ns(p.p90),
        ns(p.p99),
        ns(p.p99_9),
        ns(p.max)
    )
}

/// The summary of a run over `scope` (`all processes`, `ls -l and descendants`, ...).
/// `tool_cpu_s`: cxl-trace's own CPU time over the run (start-up left out), when known.
pub fn to_text(w: &Window, scope: &str, tool_cpu_s: Option<f64>) -> String {
    let system_wide = scope == "all processes";
    let (table, differ) = table(&rows(w, system_wide));
    let mut out = format!("\n cxl-trace stat: {scope}, {:.2} s\n\n{table}\n", w.t);
    out += &latency(w);
    if let Some(cpu) = tool_cpu_s {
        let share = if w.t > 0.0 { cpu / w.t * 100.0 } else { 0.0 };
        out += &format!(" cxl-trace's own CPU: {cpu:.2} s ({share:.1}% of one core)\n");
    }
    if differ {
        out += " ≠: the kernel counted otherwise (see docs/accuracy.md)\n";
    }
    if !system_wide {
        out += " page faults and hint faults are this scope's; migrations are system-wide\n";
    }
    out
}

/// The counts, with the kernel's where it keeps one (fault counts only system-wide).
fn rows(w: &Window, system_wide: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let faults = row(0, "page faults", w.faults.total);
    rows.push(if system_wide {
        faults.vs(w, &["pgfault"])
    } else {
        faults
    });
    for (tier, n) in &w.faults.by_tier {
        rows.push(row(2, format!("on {tier}"), *n));
    }
    rows.push(row(0, "pages migrated", w.migrations.pages_succeeded).vs(w, &["pgmigrate_success"]));
    for (reason, c) in &w.migrations.by_reason {
        rows.push(row(
            2,
            format!("reason {}", reason.name()),
            c.pages_succeeded,
        ));
    }
    rows.push(
        row(0, "pages failed to migrate", w.migrations.pages_failed).vs(w, &["pgmigrate_fail"]),
    );
    let promo = &w.migrations.promotions;
    rows.push(row(0, "pages promoted", promo.pages).vs(w, &["pgpromote_success"]));
    for (cause, n) in &promo.by_cause {
        rows.push(row(2, format!("by {}", cause.name()), *n));
    }
    let demo = &w.migrations.demotions;
    rows.push(row(0, "pages demoted", demo.pages).vs(
        w,
        &[
            "pgdemote_kswapd",
            "pgdemote_direct",
            "pgdemote_khugepaged",
            "pgdemote_proactive",
        ],
    ));
    for (cause, n) in &demo.by_cause {
        let r = row(2, format!("by {}", cause.name()), *n);
        rows.push(match cause.name().as_str() {
            "kswapd" => r.vs(w, &["pgdemote_kswapd"]),
            "khugepaged" => r.vs(w, &["pgdemote_khugepaged"]),
            "direct" => r.vs(w, &["pgdemote_direct", "pgdemote_proactive"]),
            _ => r,
        });
    }
    for (pair, n) in &w.migrations.tier_pairs {
        rows.push(row(2, format!("pages {pair}"), *n));
    }
    let hints = row(0, "NUMA hint faults", w.numa_hint_faults.total);
    if w.numa_hint_faults.avail.available {
        rows.push(if system_wide {
            hints.vs(w, &["numa_hint_faults"])
        } else {
            hints
        });
    }
    if w.promotion_decisions.avail.available {
        rows.push(row(
            0,
            "promotion refusals",
            w.promotion_decisions.refused_total,
        ));
        for (cause, n) in &w.promotion_decisions.refused {
            rows.push(row(2, format!("by {}", cause.name()), *n));
        }
    }
    rows.push(row(
        0,
        format!("ping-pong bounces ({})", w.pingpong.unit),
        w.pingpong.bounces,
    ));
    rows.push(row(0, "events received", w.events.received));
    rows.push(row(0, "events dropped", w.drops.total));

    rows
}

/// The rows as aligned text; whether any differs from the kernel's.
fn table(rows: &[Row]) -> (String, bool) {
    let mut out = format!(" {:>16} {:>16}\n", "counted", "kernel");
    let mut differ = false;
    for r in rows {
        let (kernel, mark, name) = match &r.kernel {
            Some((name, k)) => {
                let d = *k != r.tool;
                differ |= d;
                (
                    grouped(*k),
                    if d { "≠" } else { " " },
                    format!("  ({name})"),
                )
            }
            None => (String::new(), " ", String::new()),
        };
        out += &format!(
            " {:>16} {:>16} {mark} {}{}{name}\n",
            grouped(r.tool),
            kernel,
            " ".repeat(r.indent),
            r.label
        );
    }
    (out, differ)
}

/// Fault latency percentiles per tier and class, or why they are unavailable.
fn latency(w: &Window) -> String {
    let mut out = String::new();
    match (
        w.fault_latency.avail.available,
        &w.fault_latency.avail.reason,
    ) {
        (true, _) => {
            for (tier, l) in &w.fault_latency.by_tier {
                out += &format!(" fault latency on {tier}: {}\n", percentiles(&l.all));
                for (class, p) in &l.by_class {
                    out += &format!("   {:<11} {}\n", class.name(), percentiles(p));
                }
            }
        }
        (false, why) => {
            out += &format!(
                " fault latency: unavailable: {}\n",
                crate::model::status::reason_in_short("", why.as_deref().unwrap_or("unknown"))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden recording's summary: each count with the kernel's beside it where the kernel
    /// has one, differences marked, thousands grouped.
    #[test]
    fn counts_beside_the_kernels() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recordings/v1-small.cxlt");
        let mut w = crate::model::playback::summarize(&path, 5).expect("golden recording");
        w.vmstat_delta.insert("pgmigrate_success".into(), 990);
        w.vmstat_delta.insert("pgfault".into(), 4000);
        let t = to_text(&w, "all processes", Some(0.5));
        assert!(t.contains("cxl-trace stat: all processes"), "{t}");
        let line = |label: &str| {
            t.lines()
                .find(|l| l.trim_end().ends_with(label) || l.contains(&format!("{label}  (")))
                .unwrap_or_else(|| panic!("no {label} in\n{t}"))
                .to_string()
        };
        let faults = line("page faults");
        assert!(
            faults.contains("3,159") && faults.contains("4,000"),
            "{faults}"
        );
        assert!(
            faults.contains('≠') && faults.contains("(pgfault)"),
            "{faults}"
        );
        let migrated = line("pages migrated");
        assert!(
            migrated.contains("990") && !migrated.contains('≠'),
            "{migrated}"
        );
        assert!(t.contains("cxl-trace's own CPU: 0.50 s"), "{t}");
        assert!(t.contains("≠: the kernel counted otherwise"), "{t}");
        let scoped = to_text(&w, "ls and descendants", None);
        assert!(
            !line_of(&scoped, "page faults").contains("pgfault"),
            "{scoped}"
        );
        assert!(scoped.contains("migrations are system-wide"), "{scoped}");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(12), "12");
    }

    fn line_of(t: &str, label: &str) -> String {
        t.lines()
            .find(|l| l.contains(label))
            .unwrap_or_default()
            .to_string()
    }
}
