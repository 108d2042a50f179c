//! `cargo xtask bench`: the performance figures the issues set targets for, measured in one
//! invocation on this machine and written as a table (stdout) and JSON (`target/bench/`).
//!
//! - criterion benchmarks of the pure parts (`cxl-trace/benches`): dashboard frame draw and
//!   update, ring-buffer record decode + aggregation throughput;
//! - `top`'s own CPU use on an idle system, in steady state (start-up excluded), both as JSON
//!   lines and as the dashboard in a 160x48 tmux terminal;
//! - overhead per fault next to bpftrace, ring-buffer accounting under overload, and RSS under
//!   a steady load ([`crate::overhead`]);
//! - overhead per migrated page next to bpftrace, in the two-node VM (`vm::bench_migration`:
//!   this host has one NUMA node, so move_pages has nowhere to move pages to);
//! - the exporter under 50 concurrent scrapers ([`crate::scrape`]): scrape latency and CPU;
//! - ring-buffer throughput: a synthetic source (`--ring-bench`) at doubling rates, the highest
//!   rate drained with zero drops, and exact counts beyond it.
//!
//! These machines are shared and noisy: criterion reports medians with their confidence
//! interval, and the idle figure is a ratio of CPU time to wall time over the same window.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, run, step, table::Row, target_dir};

/// Criterion's estimates of one benchmark (`new/estimates.json`), as far as they are read.
#[derive(serde::Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(serde::Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(serde::Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

/// Criterion's `new/benchmark.json`: the throughput, when the benchmark declared one.
#[derive(serde::Deserialize, Default)]
struct Benchmark {
    #[serde(default)]
    throughput: Option<Throughput>,
}

#[derive(serde::Deserialize)]
enum Throughput {
    Elements(u64),
    #[serde(other)]
    Other,
}

/// Criterion's median (ns per iteration) and its 95% interval for one benchmark.
fn estimate(dir: &Path) -> Result<(f64, f64, f64, Option<u64>)> {
    let est: Estimates = serde_json::from_str(
        &fs::read_to_string(dir.join("new/estimates.json"))
            .with_context(|| format!("no criterion estimates in {}", dir.display()))?,
    )
    .with_context(|| format!("criterion estimates in {}", dir.display()))?;
    let bench: Benchmark = fs::read_to_string(dir.join("new/benchmark.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let elements = match bench.throughput {
        Some(Throughput::Elements(n)) => Some(n),
        _ => None,
    };
    let m = est.median;
    Ok((
        m.point_estimate,
        m.confidence_interval.lower_bound,
        m.confidence_interval.upper_bound,
        elements,
    ))
}

fn criterion(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    step("criterion: dashboard and pipeline benchmarks");
    let mut c = cargo();
    c.args([
        "bench",
        "-p",
        "cxl-trace",
        "--bench",
        "dashboard",
        "--bench",
        "pipeline",
        "--",
    ]);
    if quick {
        c.args(["--warm-up-time", "1", "--measurement-time", "2"]);
    }
    run(&mut c)?;
    let base = target_dir().join("criterion");
    let draw = |id: &str| base.join("dashboard").join(id);
    for (id, what, target) in [
        (
            "draw_160x48_window3",
            "frame draw 160x48, full state, last 10 s",
            Some(2.0),
        ),
        (
            "draw_160x48_window9",
            "frame draw 160x48, full state, whole run",
            Some(2.0),
        ),
        (
            "draw_80x24_window3",
            "frame draw 80x24, full state, last 10 s",
            Some(2.0),
        ),
        (
            "update_one_interval_full_history",
            "dashboard update per interval (600 s history)",
            None,
        ),
    ] {
        let (med, lo, hi, _) = estimate(&draw(id))?;
        rows.push(Row {
            name: what.into(),
            value: med / 1e6,
            unit: "ms".into(),
            target: target.map(|t| ("<", t)),
            note: format!("median, 95% CI {:.3}..{:.3} ms", lo / 1e6, hi / 1e6),
        });
    }
    for (id, what, target) in [
        (
            "decode_aggregate_fault",
            "decode + aggregate, fault records",
            Some(20.0),
        ),
        (
            "decode_aggregate_timed_fault",
            "decode + aggregate, timed-fault records",
            Some(20.0),
        ),
        (
            "decode_aggregate_folio_pingpong",
            "decode + aggregate, folio moves, every page bouncing",
            None,
        ),
        ("decode_only_fault", "decode only, fault records", None),
        (
            "../recording/write_fault",
            "recording write (delta + zstd), fault records",
            None,
        ),
        (
            "../recording/read_aggregate_fault",
            "recording read + decode + aggregate, fault records",
            Some(10.0),
        ),
    ] {
        let (med, lo, hi, n) = estimate(&base.join("pipeline").join(id))?;
        let n = n.unwrap_or(1) as f64;
        rows.push(Row {
            name: what.into(),
            value: n / med * 1e3,
            unit: "M events/s/core".into(),
            target: target.map(|t| (">", t)),
            note: format!("median; 95% CI {:.1}..{:.1}", n / hi * 1e3, n / lo * 1e3),
        });
    }
    recording_size(rows)
}

/// What the pipeline bench measured of the recording format (`target/bench/recording.json`).
#[derive(serde::Deserialize)]
struct RecordingSize {
    events: u64,
    bytes: u64,
    bytes_per_event: f64,
}

/// Bytes per fault record in a recording.
fn recording_size(rows: &mut Vec<Row>) -> Result<()> {
    let rec: RecordingSize = fs::read(target_dir().join("bench/recording.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .context("target/bench/recording.json (written by the pipeline bench)")?;
    rows.push(Row {
        name: "recording size, fault records".into(),
        value: rec.bytes_per_event,
        unit: "bytes/event".into(),
        target: Some(("<", 8.0)),
        note: format!("{} events in {} bytes", rec.events, rec.bytes),
    });
    Ok(())
}

/// CPU time of all threads of a process, in seconds: the sum of their schedstat run times (ns
/// precision), else utime + stime (clock ticks).
pub(crate) fn cpu_s(pid: u32) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    let mut any = false;
    for t in tasks.flatten() {
        if let Some(v) = fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            ns += v;
            any = true;
        }
    }
    if any {
        return Some(ns as f64 / 1e9);
    }
    ticks_s(pid)
}

/// utime + stime of a process, in seconds.
fn ticks_s(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

/// CPU share of a core used by `pid` between `settle` and `settle + window`.
fn steady_cpu(pid: u32, settle: Duration, window: Duration) -> Result<f64> {
    sleep(settle);
    let (c0, t0) = (cpu_s(pid).context("the tool exited early")?, Instant::now());
    sleep(window);
    let c1 = cpu_s(pid).context("the tool exited before the window ended")?;
    Ok((c1 - c0) / t0.elapsed().as_secs_f64() * 100.0)
}

fn idle_cpu(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let bin = target_dir().join("release/cxl-trace");
    let (settle, window) = (
        Duration::from_secs(4),
        Duration::from_secs(if quick { 8 } else { 30 }),
    );
    let dur = (settle + window + Duration::from_secs(3))
        .as_secs()
        .to_string();
    step(&format!(
        "idle CPU of `top`: steady state over {} s, JSON lines and dashboard (160x48 tmux)",
        window.as_secs()
    ));
    let mut child = Command::new(&bin)
        .args(["top", "--no-tui", "--interval", "1", "--duration", &dur])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start cxl-trace")?;
    let json_pct = steady_cpu(child.id(), settle, window);
    let _ = child.kill();
    let _ = child.wait();
    rows.push(Row {
        name: "top --no-tui, idle system".into(),
        value: json_pct?,
        unit: "% of a core".into(),
        target: Some(("<", 1.0)),
        note: "1 s interval; start-up excluded".into(),
    });

    let session = "cxlt-bench";
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .output();
    run(Command::new("tmux").args([
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "160",
        "-y",
        "48",
        &format!("exec {} top --duration {dur}", bin.display()),
    ]))?;
    let pid = String::from_utf8_lossy(
        &Command::new("tmux")
            .args(["list-panes", "-t", session, "-F", "#{pane_pid}"])
            .output()?
            .stdout,
    )
    .trim()
    .parse::<u32>()
    .context("tmux pane pid")?;
    let tui_pct = steady_cpu(pid, settle, window);
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .output();
    rows.push(Row {
        name: "top dashboard 160x48, idle system".into(),
        value: tui_pct?,
        unit: "% of a core".into(),
        target: Some(("<", 1.0)),
        note: "1 s interval, redraw per interval; start-up excluded".into(),
    });
    Ok(())
}

/// Parts of the bench.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// criterion: dashboard, pipeline, recordings.
    Criterion,
    /// `top`'s idle CPU.
    Idle,
    /// Overhead per fault next to bpftrace.
    Overhead,
    /// Overhead per migrated page next to bpftrace, in the two-node VM.
    Migration,
    /// Ring buffer accounting under overload.
    Accounting,
    /// RSS under a steady load.
    Footprint,
    /// The exporter under 50 concurrent scrapers.
    Exporter,
}

pub fn bench(quick: bool, only: &[Part]) -> Result<()> {
    let want = |p: Part| only.is_empty() || only.contains(&p);
    if !crate::is_root() {
        bail!("the benchmark attaches BPF programs: run it as root");
    }
    crate::build(true)?;
    let mut rows = Vec::new();
    if want(Part::Criterion) {
        criterion(&mut rows, quick)?;
    }
    if want(Part::Idle) {
        idle_cpu(&mut rows, quick)?;
    }
    if want(Part::Overhead) {
        crate::overhead::overhead(&mut rows, &crate::overhead::fault_target(), quick)?;
        crate::overhead::record_floor(&mut rows)?;
    }
    if want(Part::Migration) {
        crate::vm::bench_migration(&mut rows, quick)?;
    }
    if want(Part::Accounting) {
        crate::overhead::ring_sweep(&mut rows, quick, 16)?;
        crate::overhead::ring_sweep(&mut rows, quick, 1)?;
        crate::overhead::accounting(&mut rows)?;
        crate::overhead::overflow(&mut rows)?;
    }
    if want(Part::Exporter) {
        crate::scrape::exporter(&mut rows, quick)?;
    }
    if want(Part::Footprint) {
        crate::overhead::footprint(&mut rows, if quick { 20 } else { 600 })?;
    }

    let m = crate::table::Machine::this();
    println!(
        "\ncxl-trace bench on {} ({} CPUs, {} GiB, kernel {})",
        m.cpu, m.cpus, m.mem_gib, m.kernel
    );
    println!(
        "{:<52} {:>12} {:<16} {:>10} {:>7}  note",
        "measure", "value", "unit", "target", ""
    );
    for r in &rows {
        let target = r
            .target
            .map(|(op, b)| format!("{op} {b}"))
            .unwrap_or_default();
        println!(
            "{:<52} {:>12.3} {:<16} {:>10} {:>7}  {}",
            r.name,
            r.value,
            r.unit,
            target,
            r.verdict(),
            r.note
        );
    }
    let out = crate::table::latest_json(&m, quick, &rows)?;
    let dir = target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    let path = dir.join("latest.json");
    fs::write(&path, out)?;
    step(&format!("results written to {}", path.display()));
    Ok(())
}
