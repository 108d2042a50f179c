//! Where the suite's time goes: every phase (setup, lints, builds, tests, each guest on each
//! kernel) is timed and the table printed at the end of every run, passed or failed, so a
//! regression in time shows in every CI log beside the verdict.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// One timed phase.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Phase {
    pub(crate) name: String,
    pub(crate) took: Duration,
    /// "ok", "FAILED", "skipped: why", ...
    pub(crate) outcome: String,
}

static PHASES: Mutex<Vec<Phase>> = Mutex::new(Vec::new());

/// Records a phase that took `took`.
pub(crate) fn record(name: impl Into<String>, took: Duration, outcome: impl Into<String>) {
    let p = Phase {
        name: name.into(),
        took,
        outcome: outcome.into(),
    };
    if let Ok(mut v) = PHASES.lock() {
        v.push(p);
    }
}

/// Runs `f` as the phase `name`; its result passes through.
pub(crate) fn time<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let t0 = Instant::now();
    let r = f();
    record(name, t0.elapsed(), if r.is_ok() { "ok" } else { "FAILED" });
    r
}

/// Every phase recorded so far, in order.
pub(crate) fn all() -> Vec<Phase> {
    PHASES.lock().map(|v| v.clone()).unwrap_or_default()
}

/// The table: one row per phase with its seconds and share of `total`, then the total.
pub(crate) fn table(phases: &[Phase], total: Duration) -> String {
    let width = phases
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("phase".len());
    let mut out = format!(
        "{:<width$}  {:>8}  {:>6}  outcome\n",
        "phase", "seconds", "share"
    );
    let whole = total.as_secs_f64().max(f64::EPSILON);
    for p in phases {
        let s = p.took.as_secs_f64();
        out.push_str(&format!(
            "{:<width$}  {:>8.0}  {:>5.1}%  {}\n",
            p.name,
            s,
            100.0 * s / whole,
            p.outcome
        ));
    }
    // Summary rows (no outcome: the guests' wall clock) repeat time the other rows count.
    let counted: f64 = phases
        .iter()
        .filter(|p| !p.outcome.is_empty())
        .map(|p| p.took.as_secs_f64())
        .sum();
    let note = if counted > whole {
        format!("(the rows add up to {counted:.0} s: guests and downloads overlap other phases)")
    } else {
        format!("(the rows add up to {counted:.0} s; the rest is the suite's own bookkeeping)")
    };
    out.push_str(&format!(
        "{:<width$}  {:>8.0}  {:>5.1}%  {note}\n",
        "total", whole, 100.0
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_each_phase_with_its_share_and_the_total() {
        let phases = vec![
            Phase {
                name: "setup".into(),
                took: Duration::from_secs(30),
                outcome: "ok".into(),
            },
            Phase {
                name: "guest cxl on 7.3.4+deb13-amd64".into(),
                took: Duration::from_secs(60),
                outcome: "FAILED".into(),
            },
        ];
        let t = table(&phases, Duration::from_secs(100));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("phase "), "{t}");
        assert!(
            lines[1].contains("setup") && lines[1].contains(" 30 ") && lines[1].contains("30.0%")
        );
        assert!(
            lines[2].contains("60.0%") && lines[2].ends_with("FAILED"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("total") && lines[3].contains("100"),
            "{t}"
        );
        assert!(lines[3].contains("add up to 90 s; the rest"), "{t}");
        let over = table(&phases, Duration::from_secs(50));
        assert!(over.contains("add up to 90 s: guests"), "{over}");
    }
}
