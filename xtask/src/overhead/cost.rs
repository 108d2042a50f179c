//! The cost of tracing, side by side: each tracer mode against no tracer and bpftrace, in rotated rounds.

use super::*;
use std::process::Command;

use anyhow::{bail, Result};

use crate::{step, table::Row};

/// The overhead table rows for `target`.
pub fn overhead(rows: &mut Vec<Row>, target: &Target, quick: bool) -> Result<()> {
    if Command::new("bpftrace").arg("--version").output().is_err() {
        bail!("bpftrace is missing (cargo xtask setup installs it)");
    }
    let (rounds, per_round) = if quick { (3, 2) } else { (6, 3) };
    step(&format!(
        "overhead: {rounds} rounds x {per_round} runs of {} per mode, modes rotated",
        target.what
    ));
    let dir = tempfile_dir()?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    let mut units: Vec<u64> = Vec::new();
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let i = (k + round) % Mode::ALL.len();
            let mode = Mode::ALL[i];
            if mode == Mode::CountOnly && !target.count_only {
                continue;
            }
            step(&format!("  round {round}: {}", mode.name()));
            let child = start(mode, target, &dir, round)?;
            let mut err = None;
            for _ in 0..per_round {
                match (target.run)() {
                    Ok((s, n)) => {
                        times[i].push(s);
                        units.push(n);
                    }
                    Err(e) => err = Some(e),
                }
            }
            stop(child);
            if let Some(e) = err {
                return Err(e);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut per_run: Vec<f64> = units.iter().map(|&u| u as f64).collect();
    let work = median(&mut per_run).max(1.0);
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let base = medians[0];
    let per_unit = |m: f64| (m - base) / work * 1e9;
    let unit = target.unit;
    rows.push(Row {
        name: format!("{}, no tracer ({work:.0} {unit}s a run)", target.what),
        value: base * 1e3,
        unit: "ms".into(),
        target: None,
        note: format!(
            "median of {} runs; {:.0} ns per {unit}",
            times[0].len(),
            base / work * 1e9
        ),
    });
    let bpftrace = per_unit(medians[3]);
    for (i, mode) in Mode::ALL.iter().enumerate().skip(1) {
        if times[i].is_empty() {
            continue;
        }
        let ns = per_unit(medians[i]);
        let pct = (medians[i] / base - 1.0) * 100.0;
        let cxl = matches!(mode, Mode::Record | Mode::Top);
        rows.push(Row {
            name: format!("added per {unit}: {}", mode.name()),
            value: ns,
            unit: format!("ns/{unit}").into(),
            target: if cxl {
                Some(("<", bpftrace.max(0.0)))
            } else {
                None
            },
            note: format!(
                "{pct:+.1}% of the run time{}",
                if cxl {
                    format!(
                        "; ratio to bpftrace {:.2} (target <= 1 and < 5% of run time)",
                        ns / bpftrace
                    )
                } else {
                    String::new()
                }
            ),
        });
    }
    Ok(())
}

pub(crate) fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cxlt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).context("bench temp dir")?;
    Ok(d)
}
