//! The cost of tracing, side by side: each tracer mode against no tracer and bpftrace, in
//! rotated rounds, measured three ways in the same rounds: wall clock of the traced program,
//! the kernel's own BPF statistics (run time and run count of every program, turned on only
//! for one extra run per round), and the tracer's CPU time (its userspace and system time).

use super::*;
use std::{collections::BTreeMap, process::Command};

use anyhow::{bail, Result};

use crate::{step, table::Row};

/// What one mode measured over its rounds.
#[derive(Default)]
struct Measured {
    /// Wall clock of each run, s.
    wall: Vec<f64>,
    /// Per round: ns per run of the program that ran most (the fault or folio program).
    hot_ns_per_run: Vec<f64>,
    /// Its name.
    hot_name: String,
    /// Per round: BPF ns of every program of the tracer, per unit of work.
    bpf_ns_per_unit: Vec<f64>,
    /// Per round: the tracer's CPU time (user + system) per unit of work, ns.
    cpu_ns_per_unit: Vec<f64>,
}

/// (name, run time ns, run count) of every loaded BPF program, by id.
fn bpf_programs() -> BTreeMap<u32, (String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(std::result::Result::ok)
        .map(|p| {
            (
                p.id(),
                (
                    p.name_as_str().unwrap_or("?").to_string(),
                    p.run_time().as_nanos() as u64,
                    p.run_count(),
                ),
            )
        })
        .collect()
}

/// One run with the kernel's BPF statistics on: (hottest program's name, its ns per run, BPF
/// ns of all programs that ran, units of work).
fn stats_run(target: &Target) -> Result<Option<(String, f64, f64, u64)>> {
    let before = bpf_programs();
    let on = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow::anyhow!("cannot turn on BPF statistics: {e}"))?;
    let run = (target.run)();
    drop(on);
    let (_, units) = run?;
    let after = bpf_programs();
    let mut total = 0u64;
    let mut hot: Option<(String, u64, u64)> = None;
    for (id, (name, t, n)) in after {
        let (t0, n0) = before.get(&id).map_or((0, 0), |(_, t, n)| (*t, *n));
        let (dt, dn) = (t.saturating_sub(t0), n.saturating_sub(n0));
        if dn == 0 {
            continue;
        }
        total += dt;
        if hot.as_ref().is_none_or(|h| dn > h.2) {
            hot = Some((name, dt, dn));
        }
    }
    Ok(hot.map(|(name, t, n)| (name, t as f64 / n as f64, total as f64, units)))
}

/// CPU time (user + system) of a process so far, ns (`/proc/PID/stat`, clock ticks).
fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// The overhead table rows for `target`.
pub fn overhead(rows: &mut Vec<Row>, target: &Target, quick: bool) -> Result<()> {
    if Command::new("bpftrace").arg("--version").output().is_err() {
        bail!("bpftrace is missing (cargo xtask setup installs it)");
    }
    let (rounds, per_round) = if quick { (3, 2) } else { (6, 3) };
    step(&format!(
        "overhead: {rounds} rounds x ({per_round} timed runs + 1 with BPF statistics) of {} per mode, modes rotated",
        target.what
    ));
    let dir = tempfile_dir()?;
    let mut m: Vec<Measured> = (0..Mode::ALL.len()).map(|_| Measured::default()).collect();
    let mut units: Vec<u64> = Vec::new();
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let i = (k + round) % Mode::ALL.len();
            let mode = Mode::ALL[i];
            if mode == Mode::TopEvents && !target.count_only {
                continue;
            }
            step(&format!("  round {round}: {}", mode.name()));
            let child = start(mode, target, &dir, round)?;
            let pid = child.as_ref().map(Child::id);
            let mut err = None;
            let cpu0 = pid.and_then(cpu_ns);
            let mut round_units = 0;
            for _ in 0..per_round {
                match (target.run)() {
                    Ok((s, n)) => {
                        m[i].wall.push(s);
                        units.push(n);
                        round_units += n;
                    }
                    Err(e) => err = Some(e),
                }
            }
            if let (Some(a), Some(b)) = (cpu0, pid.and_then(cpu_ns)) {
                m[i].cpu_ns_per_unit
                    .push(b.saturating_sub(a) as f64 / round_units.max(1) as f64);
            }
            if mode != Mode::None && err.is_none() {
                match stats_run(target) {
                    Ok(Some((name, per_run, total, n))) => {
                        m[i].hot_name = name;
                        m[i].hot_ns_per_run.push(per_run);
                        m[i].bpf_ns_per_unit.push(total / n.max(1) as f64);
                    }
                    Ok(None) => {}
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
    wall_rows(rows, target, &mut m, work);
    bpf_rows(rows, target, &mut m);
    Ok(())
}

/// Index of a mode in `Mode::ALL`.
fn ix(mode: Mode) -> usize {
    Mode::ALL.iter().position(|&x| x == mode).unwrap_or(0)
}

/// The wall-clock rows: cost per unit = (median - median without tracer) / units.
fn wall_rows(rows: &mut Vec<Row>, target: &Target, m: &mut [Measured], work: f64) {
    let medians: Vec<f64> = m.iter_mut().map(|x| median(&mut x.wall)).collect();
    let base = medians[0];
    let per_unit = |v: f64| (v - base) / work * 1e9;
    let unit = target.unit;
    rows.push(Row {
        name: format!("{}, no tracer ({work:.0} {unit}s a run)", target.what),
        value: base * 1e3,
        unit: "ms".into(),
        target: None,
        note: format!(
            "median of {} runs; {:.0} ns per {unit}",
            m[0].wall.len(),
            base / work * 1e9
        ),
    });
    let bpftrace = per_unit(medians[ix(Mode::Bpftrace)]);
    for (i, mode) in Mode::ALL.iter().enumerate().skip(1) {
        if m[i].wall.is_empty() {
            continue;
        }
        let ns = per_unit(medians[i]);
        let pct = (medians[i] / base - 1.0) * 100.0;
        let cpu = median(&mut m[i].cpu_ns_per_unit);
        rows.push(Row {
            name: format!("wall clock added per {unit}: {}", mode.name()),
            value: ns,
            unit: format!("ns/{unit}").into(),
            target: None,
            note: format!(
                "{pct:+.1}% of the run time; ratio to bpftrace {:.2}; the tracer's own CPU {:.0} ns per {unit}",
                ns / bpftrace,
                cpu
            ),
        });
    }
}

/// The BPF-statistics rows: ns per run of the hottest program and BPF ns per unit of work,
/// medians over rounds, with ratios to bpftrace's equivalent measured in the same rounds.
fn bpf_rows(rows: &mut Vec<Row>, target: &Target, m: &mut [Measured]) {
    let unit = target.unit;
    let per_run: Vec<f64> = m
        .iter_mut()
        .map(|x| median(&mut x.hot_ns_per_run))
        .collect();
    let per_unit: Vec<f64> = m
        .iter_mut()
        .map(|x| median(&mut x.bpf_ns_per_unit))
        .collect();
    let (bt_run, bt_unit) = (per_run[ix(Mode::Bpftrace)], per_unit[ix(Mode::Bpftrace)]);
    for (i, mode) in Mode::ALL.iter().enumerate().skip(1) {
        if m[i].hot_ns_per_run.is_empty() {
            continue;
        }
        // The targets: the live mode at half bpftrace's cost per run on the fault path,
        // `record` at most bpftrace's; per migrated page, 0.7 of bpftrace's BPF time.
        let bound = match (*mode, target.count_only) {
            (Mode::Top, true) => Some(0.5),
            (Mode::Record, true) => Some(1.0),
            (Mode::Top | Mode::Record, false) => Some(0.7),
            _ => None,
        };
        let (value, ratio, name) = if target.count_only {
            (
                per_run[i],
                per_run[i] / bt_run,
                format!("BPF ns per run of the fault program: {}", mode.name()),
            )
        } else {
            (
                per_unit[i],
                per_unit[i] / bt_unit,
                format!("BPF ns per {unit}, all programs: {}", mode.name()),
            )
        };
        rows.push(Row {
            name,
            value,
            unit: "ns".into(),
            target: bound.map(|b| ("<", b * if target.count_only { bt_run } else { bt_unit })),
            note: format!(
                "median of {} rounds; ratio to bpftrace {ratio:.2}{}; hottest program {} ({:.0} ns per run); all programs {:.0} ns per {unit}",
                m[i].hot_ns_per_run.len(),
                bound.map_or(String::new(), |b| format!(" (target <= {b})")),
                m[i].hot_name,
                per_run[i],
                per_unit[i],
            ),
        });
    }
}

pub(crate) fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cxlt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).context("bench temp dir")?;
    Ok(d)
}

/// The cost of one record through the ring buffer, from the kernel's statistics of the ring
/// benchmark's program (a batch of `RING_BENCH_BATCH` fault records per run, written by the
/// same `emit` as the fault programs): what any per-event path pays at least, per event.
pub fn record_floor(rows: &mut Vec<Row>) -> Result<()> {
    step("overhead: the ring buffer's cost per record (the ring benchmark's program, BPF statistics)");
    let mut child = Command::new(crate::target_dir().join("release/cxl-trace"))
        .args(["top", "--no-tui", "--interval", "1", "--ring-bench", "--"])
        .arg(crate::target_dir().join("release/cxl-trace-workload"))
        .args(["getpgid", "--rate", "20000", "--seconds", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start cxl-trace --ring-bench")?;
    wait_ready(&mut child, "privileges:")?;
    sleep(Duration::from_secs(1));
    let before = bpf_programs();
    let on = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow::anyhow!("cannot turn on BPF statistics: {e}"))?;
    sleep(Duration::from_secs(3));
    let after = bpf_programs();
    drop(on);
    let _ = child.wait();
    let (t, n) = after
        .iter()
        .filter(|(_, (name, _, _))| name == "ring_bench")
        .map(|(id, (_, t, n))| {
            let (t0, n0) = before.get(id).map_or((0, 0), |(_, t, n)| (*t, *n));
            (t.saturating_sub(t0), n.saturating_sub(n0))
        })
        .fold((0, 0), |(a, b), (t, n)| (a + t, b + n));
    if n == 0 {
        bail!("the ring benchmark's program did not run");
    }
    let per_record = t as f64 / n as f64 / cxl_trace_common::RING_BENCH_BATCH as f64;
    rows.push(Row {
        name: "BPF ns per record through the ring buffer (reserve, header, write, submit, counter)"
            .into(),
        value: per_record,
        unit: "ns".into(),
        target: None,
        note: format!(
            "{n} runs of {} records each; the least a record per event costs over the empty program",
            cxl_trace_common::RING_BENCH_BATCH
        ),
    });
    Ok(())
}
