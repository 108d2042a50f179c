//! Overhead on the traced workload, side by side with bpftrace, and the ring buffer's
//! accounting under overload.
//!
//! Overhead: the project's fault-bound program (`cxl-trace-workload touch`: map, touch, unmap;
//! 500k faults a run) timed with no tracer, with `cxl-trace record`, `cxl-trace top --no-tui`,
//! bpftrace doing the equivalent work with in-kernel aggregation (a count per pid and a
//! histogram of the error code on the same two tracepoints), and bpftrace with empty programs
//! on those tracepoints (the physical limit: what attaching anything at all costs). Modes run in
//! rounds, in a rotating order; each mode's figure is the median of its runs, and the cost per
//! fault is (median - median without tracer) / faults.
//!
//! Accounting: the same program on both CPUs with a 1 MiB ring buffer, then with the reader
//! stopped so the ring overflows: every record the kernel submitted (produced) must be received
//! (or have arrived before the window opened), and every fault is received or dropped.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{bench::Row, root, step};

const FAULT_PAGES: &str = "100000";
const FAULT_ROUNDS: &str = "5";

/// A tracer mode.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Record,
    Top,
    Bpftrace,
    BpftraceEmpty,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::None,
        Mode::Record,
        Mode::Top,
        Mode::Bpftrace,
        Mode::BpftraceEmpty,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::None => "no tracer",
            Mode::Record => "cxl-trace record",
            Mode::Top => "cxl-trace top --no-tui",
            Mode::Bpftrace => "bpftrace count per pid + hist",
            Mode::BpftraceEmpty => "bpftrace empty programs",
        }
    }
}

const BPFTRACE_WORK: &str = "tracepoint:exceptions:page_fault_user, tracepoint:exceptions:page_fault_kernel { @faults[pid] = count(); @code = hist(args->error_code); }";
const BPFTRACE_EMPTY: &str =
    "tracepoint:exceptions:page_fault_user, tracepoint:exceptions:page_fault_kernel { }";

/// Waits until `child` prints a line containing `needle` on stderr, or on stdout when it is
/// piped (bpftrace says "Attaching N probes..." there); the rest is drained in the background.
fn wait_ready(child: &mut Child, needle: &str) -> Result<()> {
    let out: Box<dyn std::io::Read + Send> = match child.stdout.take() {
        Some(o) => Box::new(o),
        None => Box::new(child.stderr.take().context("stderr")?),
    };
    let mut lines = BufReader::new(out).lines();
    let t0 = Instant::now();
    for line in lines.by_ref() {
        let line = line.context("reading the tracer's output")?;
        if line.contains(needle) {
            std::thread::spawn(move || for _ in lines {});
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    bail!("the tracer never printed {needle:?}")
}

fn start(mode: Mode, dir: &std::path::Path, n: usize) -> Result<Option<Child>> {
    let bin = root().join("target/release/cxl-trace");
    let mut c = match mode {
        Mode::None => return Ok(None),
        Mode::Record => {
            let mut c = Command::new(&bin);
            c.args(["record", "--force", "-o"])
                .arg(dir.join(format!("bench-{n}.cxlt")));
            c
        }
        Mode::Top => {
            let mut c = Command::new(&bin);
            c.args(["top", "--no-tui", "--interval", "1"]);
            c
        }
        Mode::Bpftrace | Mode::BpftraceEmpty => {
            let mut c = Command::new("bpftrace");
            c.arg("-e").arg(if mode == Mode::Bpftrace {
                BPFTRACE_WORK
            } else {
                BPFTRACE_EMPTY
            });
            c
        }
    };
    let bpftrace = matches!(mode, Mode::Bpftrace | Mode::BpftraceEmpty);
    let mut child = c
        .stdout(if bpftrace {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if bpftrace {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .spawn()
        .with_context(|| format!("cannot start {}", mode.name()))?;
    let needle = if bpftrace { "Attaching" } else { "privileges:" };
    wait_ready(&mut child, needle)?;
    // bpftrace prints "Attaching" just before attaching.
    sleep(Duration::from_millis(500));
    Ok(Some(child))
}

fn stop(child: Option<Child>) {
    if let Some(mut c) = child {
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
        let _ = c.wait();
    }
}

/// One run of the fault-bound program: (seconds, faults).
fn fault_run() -> Result<(f64, u64)> {
    let t0 = Instant::now();
    let out = Command::new(root().join("target/release/cxl-trace-workload"))
        .args(["touch", "--pages", FAULT_PAGES, "--rounds", FAULT_ROUNDS])
        .output()
        .context("cannot start the workload")?;
    let s = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "the workload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("workload JSON")?;
    Ok((
        s,
        v["minflt"].as_u64().unwrap_or(0) + v["majflt"].as_u64().unwrap_or(0),
    ))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The overhead table rows.
pub fn overhead(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    if Command::new("bpftrace").arg("--version").output().is_err() {
        bail!("bpftrace is missing (cargo xtask setup installs it)");
    }
    let (rounds, per_round) = if quick { (3, 2) } else { (6, 3) };
    step(&format!(
        "overhead: {rounds} rounds x {per_round} runs of {}x{} page faults per mode, modes rotated",
        FAULT_ROUNDS, FAULT_PAGES
    ));
    let dir = tempfile_dir()?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    let mut faults = 0u64;
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let i = (k + round) % Mode::ALL.len();
            let mode = Mode::ALL[i];
            let child = start(mode, &dir, round)?;
            let mut err = None;
            for _ in 0..per_round {
                match fault_run() {
                    Ok((s, f)) => {
                        times[i].push(s);
                        faults = faults.max(f);
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
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    let base = medians[0];
    let per_fault = |m: f64| (m - base) / faults.max(1) as f64 * 1e9;
    rows.push(Row {
        name: format!("workload, no tracer ({faults} faults)"),
        value: base * 1e3,
        unit: "ms",
        target: None,
        note: format!("median of {} runs", times[0].len()),
    });
    let bpftrace = per_fault(medians[3]);
    for (i, mode) in Mode::ALL.iter().enumerate().skip(1) {
        let ns = per_fault(medians[i]);
        let pct = (medians[i] / base - 1.0) * 100.0;
        let cxl = matches!(mode, Mode::Record | Mode::Top);
        rows.push(Row {
            name: format!("added per fault: {}", mode.name()),
            value: ns,
            unit: "ns/fault",
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

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cxlt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).context("bench temp dir")?;
    Ok(d)
}

/// Overload: two fault-bound programs at once into a 1 MiB ring buffer; the tool's counts
/// must add up (every record the kernel submitted is received), and say how many were lost.
pub fn accounting(rows: &mut Vec<Row>) -> Result<()> {
    step("ring buffer under overload: 1 MiB ring, two fault-bound programs at once");
    let bin = root().join("target/release/cxl-trace");
    let w = root().join("target/release/cxl-trace-workload");
    let script = format!(
        "{w} touch --pages 200000 --rounds 5 >/dev/null & {w} touch --pages 200000 --rounds 5 >/dev/null; wait",
        w = w.display()
    );
    let out = Command::new(&bin)
        .args([
            "top",
            "--no-tui",
            "--ringbuf-mib",
            "1",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .context("cannot start cxl-trace")?;
    let summary: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .context("no summary line")?;
    let t = tally(&summary);
    let secs = summary["t"].as_f64().unwrap_or(1.0);
    rows.push(Row {
        name: "ring buffer 1 MiB, 2 fault-bound programs: received".into(),
        value: t.received as f64 / secs / 1e6,
        unit: "M events/s",
        target: None,
        note: format!(
            "received {}, dropped {}, produced {} ({})",
            t.received,
            t.dropped,
            t.produced,
            t.verdict(t.adds_up)
        ),
    });
    if !t.adds_up {
        bail!("ring buffer accounting: produced != received (+ outside the window): {summary}");
    }
    Ok(())
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
}

/// Footprint: `top --no-tui` and `record` under a steady fault load for `secs`: RSS after the
/// first tenth, at the end, and the peak (VmHWM).
pub fn footprint(rows: &mut Vec<Row>, secs: u64) -> Result<()> {
    step(&format!(
        "footprint: top and record for {secs} s under a steady fault load"
    ));
    let bin = root().join("target/release/cxl-trace");
    let w = root().join("target/release/cxl-trace-workload");
    let load = format!(
        "while :; do {} touch --pages 10000 >/dev/null; sleep 0.05; done",
        w.display()
    );
    let dir = tempfile_dir()?;
    for (name, args) in [
        ("top --no-tui", vec!["top", "--no-tui"]),
        ("record", vec!["record", "--force", "-o", "FILE"]),
    ] {
        let file = dir.join("footprint.cxlt");
        let mut c = Command::new(&bin);
        for a in &args {
            if *a == "FILE" {
                c.arg(&file);
            } else {
                c.arg(a);
            }
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start cxl-trace")?;
        wait_ready(&mut child, "privileges:")?;
        let mut gen = Command::new("sh").arg("-c").arg(&load).spawn()?;
        let t0 = Instant::now();
        let f0 = pgfault();
        sleep(Duration::from_secs((secs / 10).max(3)));
        let early = status_kib(child.id(), "VmRSS:").unwrap_or(0);
        let events0 = t0.elapsed();
        sleep(Duration::from_secs(secs).saturating_sub(events0));
        let late = status_kib(child.id(), "VmRSS:").unwrap_or(0);
        let rate = (pgfault() - f0) as f64 / t0.elapsed().as_secs_f64();
        let peak = status_kib(child.id(), "VmHWM:").unwrap_or(0);
        let _ = gen.kill();
        let _ = gen.wait();
        let _ = Command::new("pkill")
            .args(["-f", "cxl-trace-workload touch --pages 10000"])
            .status();
        stop(Some(child));
        rows.push(Row {
            name: format!("peak RSS, {name}, {secs} s of faults"),
            value: peak as f64 / 1024.0,
            unit: "MiB",
            target: Some(("<", 64.0)),
            note: format!(
                "{:.0}k faults/s; RSS {:.1} MiB after {:.0} s, {:.1} MiB at the end ({:+.1} MiB)",
                rate / 1e3,
                early as f64 / 1024.0,
                events0.as_secs_f64(),
                late as f64 / 1024.0,
                (late as f64 - early as f64) / 1024.0
            ),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// pgfault of /proc/vmstat.
fn pgfault() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("pgfault ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Beyond capacity: the reader stopped (SIGSTOP) while a fault-bound program runs, so the 1 MiB
/// ring fills and the kernel side drops; after SIGCONT the counts must still add up exactly.
pub fn overflow(rows: &mut Vec<Row>) -> Result<()> {
    step("ring buffer beyond capacity: reader stopped while 500k faults are made");
    let bin = root().join("target/release/cxl-trace");
    let mut child = Command::new(&bin)
        .args(["top", "--no-tui", "--ringbuf-mib", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start cxl-trace")?;
    let out = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .find(|v| v["type"] == "summary")
    });
    wait_ready(&mut child, "privileges:")?;
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let run = fault_run();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let _ = child.wait();
    let (_, faults) = run?;
    let summary = reader.join().ok().flatten().context("no summary line")?;
    let t = tally(&summary);
    let ok = t.dropped > 0 && t.adds_up;
    rows.push(Row {
        name: "ring buffer 1 MiB, reader stopped: dropped".into(),
        value: t.dropped as f64,
        unit: "events",
        target: None,
        note: format!(
            "{faults} faults made; received {} + dropped {} = {}; produced {}: {}",
            t.received,
            t.dropped,
            t.received + t.dropped,
            t.produced,
            t.verdict(ok)
        ),
    });
    if !ok {
        bail!("overflow accounting: {summary}");
    }
    Ok(())
}

/// The counts of a `top` summary that must add up.
struct Tally {
    received: u64,
    dropped: u64,
    /// Records the kernel submitted (read after the final drain).
    produced: u64,
    /// Received before the window opened.
    before: u64,
    /// Submitted after the final drain (outside the window).
    after: u64,
    /// Every submitted record was received (or fell outside the window, at most 16).
    adds_up: bool,
}

impl Tally {
    /// How the counts add up, or that they do not.
    fn verdict(&self, ok: bool) -> String {
        if ok {
            format!(
                "produced = received + {} before + {} after the window",
                self.before, self.after
            )
        } else {
            "ACCOUNTING MISMATCH".into()
        }
    }
}

/// The kernel counts what it submitted (produced) and what found the ring full (dropped);
/// everything submitted is received, or arrived before the window opened, or after its end.
fn tally(summary: &Value) -> Tally {
    let received = summary["events"]["received"].as_u64().unwrap_or(0);
    let produced: Option<u64> = summary["produced"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum());
    let before = summary["before_window"].as_u64().unwrap_or(0);
    let after = produced.map_or(0, |p| p.saturating_sub(received + before));
    Tally {
        received,
        dropped: summary["drops"]["total"].as_u64().unwrap_or(0),
        produced: produced.unwrap_or(0),
        before,
        after,
        adds_up: produced.is_some_and(|p| p >= received + before && after <= 16),
    }
}
