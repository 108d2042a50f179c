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

use crate::{step, table::Row, target_dir};

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
    /// `top --fault-counts-only`: a per-CPU counter per fault, no record; what in-kernel
    /// pre-aggregation of fault counts would cost at best.
    CountOnly,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::None,
        Mode::Record,
        Mode::Top,
        Mode::Bpftrace,
        Mode::BpftraceEmpty,
        Mode::CountOnly,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::None => "no tracer",
            Mode::Record => "cxl-trace record",
            Mode::Top => "cxl-trace top --no-tui",
            Mode::Bpftrace => "bpftrace count per pid + hist",
            Mode::BpftraceEmpty => "bpftrace empty programs",
            Mode::CountOnly => "cxl-trace top, fault counts only (per-CPU counter, no records)",
        }
    }
}

/// A program whose run time the tracers add to, and bpftrace's equivalent of cxl-trace on
/// the tracepoints that program fires.
pub(crate) struct Target {
    /// What one unit of work is ("fault", "migrated page").
    unit: &'static str,
    /// bpftrace with in-kernel aggregation: a count per pid and a histogram.
    bpftrace_work: &'static str,
    /// bpftrace with empty programs on the same tracepoints: the physical floor.
    bpftrace_empty: &'static str,
    /// One run: (seconds, units of work).
    run: fn() -> Result<(f64, u64)>,
    /// How the work is described in the table.
    what: String,
    /// Whether `Mode::CountOnly` means anything for this program (it only changes faults).
    count_only: bool,
}

/// The fault-bound program: map, touch, unmap.
pub(crate) fn fault_target() -> Target {
    Target {
        unit: "fault",
        bpftrace_work: "tracepoint:exceptions:page_fault_user, tracepoint:exceptions:page_fault_kernel { @faults[pid] = count(); @code = hist(args->error_code); }",
        bpftrace_empty: "tracepoint:exceptions:page_fault_user, tracepoint:exceptions:page_fault_kernel { }",
        run: fault_run,
        what: format!("{FAULT_ROUNDS}x{FAULT_PAGES} page faults (map, touch, unmap)"),
        count_only: true,
    }
}

const PINGPONG_MIB: &str = "32";
const PINGPONG_ROUNDS: &str = "4";

/// The migration-bound program: move_pages(2) of 32 MiB between two nodes and back, 4 times.
/// bpftrace attaches to the hooks cxl-trace uses on that path: the batch start and end
/// tracepoints, the page allocator's, and per folio either `move_to_new_folio` (fentry/fexit,
/// `fentry` true, as cxl-trace does where the kernel allows it) or the migration-entry
/// tracepoints (cxl-trace's fallback).
pub(crate) fn migration_target(fentry: bool) -> Target {
    Target {
        unit: "migrated page",
        bpftrace_work: if fentry {
            "tracepoint:migrate:mm_migrate_pages_start { @batches[pid] = count(); } \
tracepoint:migrate:mm_migrate_pages { @pages[pid] = sum(args->succeeded); @batch = hist(args->succeeded); } \
kfunc:move_to_new_folio { @start[tid] = nsecs; } \
kretfunc:move_to_new_folio { @copy_ns = hist(nsecs - @start[tid]); delete(@start[tid]); @folios[pid] = count(); } \
tracepoint:kmem:mm_page_alloc { @alloc[pid] = count(); }"
        } else {
            "tracepoint:migrate:mm_migrate_pages_start { @batches[pid] = count(); } \
tracepoint:migrate:mm_migrate_pages { @pages[pid] = sum(args->succeeded); @batch = hist(args->succeeded); } \
tracepoint:migrate:set_migration_pte { @unmapped[pid] = count(); } \
tracepoint:migrate:remove_migration_pte { @remapped[pid] = count(); @order = hist(args->order); } \
tracepoint:kmem:mm_page_alloc { @alloc[pid] = count(); }"
        },
        bpftrace_empty: if fentry {
            "tracepoint:migrate:mm_migrate_pages_start, tracepoint:migrate:mm_migrate_pages, \
tracepoint:kmem:mm_page_alloc { } kfunc:move_to_new_folio { } kretfunc:move_to_new_folio { }"
        } else {
            "tracepoint:migrate:mm_migrate_pages_start, tracepoint:migrate:mm_migrate_pages, \
tracepoint:migrate:set_migration_pte, tracepoint:migrate:remove_migration_pte, tracepoint:kmem:mm_page_alloc { }"
        },
        run: pingpong_run,
        what: format!(
            "move_pages(2) of {PINGPONG_MIB} MiB node 0 -> 1 -> 0, {PINGPONG_ROUNDS} times{}",
            if fentry { "" } else { " (tracepoints only)" }
        ),
        count_only: false,
    }
}

/// Waits until `child` prints a line containing `needle` on stderr, or on stdout when it is
/// piped (bpftrace says "Attaching N probes..." there); the rest is drained in the background.
fn wait_ready(child: &mut Child, needle: &str) -> Result<()> {
    let out: Box<dyn std::io::Read + Send> = match child.stdout.take() {
        Some(o) => Box::new(o),
        None => Box::new(child.stderr.take().context("stderr")?),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let needle_owned = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if !seen && line.contains(&needle_owned) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => Ok(()),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the tracer never printed {needle:?} (120 s)")
        }
    }
}

fn start(mode: Mode, target: &Target, dir: &std::path::Path, n: usize) -> Result<Option<Child>> {
    let bin = target_dir().join("release/cxl-trace");
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
        Mode::CountOnly => {
            let mut c = Command::new(&bin);
            c.args(["top", "--no-tui", "--interval", "1", "--fault-counts-only"]);
            c
        }
        Mode::Bpftrace | Mode::BpftraceEmpty => {
            let mut c = Command::new("bpftrace");
            c.arg("-e").arg(if mode == Mode::Bpftrace {
                target.bpftrace_work
            } else {
                target.bpftrace_empty
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
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        eprintln!("xtask: the tracer ignored SIGINT for 60 s; killing it");
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Runs the project's workload with `args`: its JSON line and the wall time it took. A run
/// that takes over 10 minutes is killed.
fn workload(args: &[&str]) -> Result<(Value, f64)> {
    let t0 = Instant::now();
    let child = Command::new(target_dir().join("release/cxl-trace-workload"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the workload")?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send((out, t0.elapsed().as_secs_f64()));
    });
    let Ok((out, s)) = rx.recv_timeout(Duration::from_secs(600)) else {
        // SAFETY: kill(2) on the workload we spawned; the waiting thread reaps it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        bail!("the workload {args:?} did not finish in 10 minutes");
    };
    let out = out.context("waiting for the workload")?;
    if !out.status.success() {
        bail!(
            "the workload failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("workload JSON")?;
    Ok((v, s))
}

/// One run of the fault-bound program: (seconds, faults).
fn fault_run() -> Result<(f64, u64)> {
    let (v, s) = workload(&["touch", "--pages", FAULT_PAGES, "--rounds", FAULT_ROUNDS])?;
    Ok((s, own_faults(&v)))
}

/// The page faults the workload counted for itself (getrusage: minor + major).
fn own_faults(v: &Value) -> u64 {
    v["minflt"].as_u64().unwrap_or(0) + v["majflt"].as_u64().unwrap_or(0)
}

/// The JSON lines of a tracer's (and its command's) stdout.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// One run of the migration-bound program: (seconds of the moves, pages migrated).
fn pingpong_run() -> Result<(f64, u64)> {
    let (v, _) = workload(&[
        "pingpong",
        "--mib",
        PINGPONG_MIB,
        "--a",
        "0",
        "--b",
        "1",
        "--rounds",
        PINGPONG_ROUNDS,
    ])?;
    let secs = v["seconds"].as_f64().context("workload JSON: seconds")?;
    Ok((secs, v["pgmigrate_success"].as_u64().unwrap_or(0)))
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

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cxlt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).context("bench temp dir")?;
    Ok(d)
}

/// Overload: two fault-bound programs at once into a 1 MiB ring buffer; the tool's counts
/// must add up (every record the kernel submitted is received), and say how many were lost.
pub fn accounting(rows: &mut Vec<Row>) -> Result<()> {
    step("ring buffer under overload: 1 MiB ring, two fault-bound programs at once");
    let bin = target_dir().join("release/cxl-trace");
    let w = target_dir().join("release/cxl-trace-workload");
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
    let summary: Value = json_lines(&out.stdout)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .context("no summary line")?;
    let t = tally(&summary);
    let secs = summary["t"].as_f64().unwrap_or(1.0);
    rows.push(Row {
        name: "ring buffer 1 MiB, 2 fault-bound programs: received".into(),
        value: t.received as f64 / secs / 1e6,
        unit: "M events/s".into(),
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
    let bin = target_dir().join("release/cxl-trace");
    let w = target_dir().join("release/cxl-trace-workload");
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
            unit: "MiB".into(),
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

/// Records the ring-buffer benchmark's program writes per getpgid(2) (`RING_BENCH_BATCH`).
const RING_BENCH_BATCH: f64 = cxl_trace_common::RING_BENCH_BATCH as f64;

/// Ring-buffer throughput: `top --no-tui --ring-bench` with a `ring_mib` ring while the
/// workload calls getpgid(2) at a paced rate, each call writing `RING_BENCH_BATCH` fault
/// records through the real `emit` (a page fault costs microseconds, so faults alone cannot
/// reach these rates on two cores). The offered rate doubles from 250k records/s until the
/// generator saturates or drops have been seen twice. At every rate the kernel's counts must
/// add up exactly: calls x batch + the workload's own page faults = received + dropped.
pub fn ring_sweep(rows: &mut Vec<Row>, quick: bool, ring_mib: u32) -> Result<()> {
    let secs = if quick { 2.0 } else { 5.0 };
    step(&format!(
        "ring buffer throughput: offered rates from 250k records/s up, {secs} s each, {ring_mib} MiB ring"
    ));
    let mut best: Option<f64> = None;
    let mut lossy = 0;
    let mut offered = 250e3;
    while offered <= 64e6 && lossy < 2 {
        let r = ring_run(ring_mib, offered, 1, secs)?;
        rows.push(r.row(format!(
            "ring buffer {ring_mib} MiB, {:.2} M records/s offered",
            offered / 1e6
        )));
        if r.dropped == 0 {
            best = Some(best.map_or(r.achieved, |b: f64| b.max(r.achieved)));
        } else {
            lossy += 1;
        }
        if r.achieved < 0.8 * offered {
            // The generator (one core of syscalls) is saturated; higher offers change nothing.
            break;
        }
        offered *= 2.0;
    }
    // Beyond: one generator thread per CPU, unpaced, so the reader has to share a CPU with
    // a producer that never sleeps.
    let r = ring_run(ring_mib, 1e9, 2, secs)?;
    rows.push(r.row(format!(
        "ring buffer {ring_mib} MiB, 2 unpaced generator threads (both CPUs)"
    )));
    rows.push(Row {
        name: format!("ring buffer {ring_mib} MiB: highest rate drained with zero drops"),
        value: best.unwrap_or(0.0) / 1e6,
        unit: "M events/s".into(),
        target: Some((">", 1.0)),
        note: if lossy == 0 {
            "no drops at any rate the generator reached".into()
        } else {
            "drops beyond it, every one counted".into()
        },
    });
    Ok(())
}

/// One ring-buffer run: what was generated, received and dropped.
struct RingRun {
    expected: u64,
    received: u64,
    dropped: u64,
    /// Records generated per second.
    achieved: f64,
    secs: f64,
    calls: u64,
    own_faults: u64,
}

impl RingRun {
    fn row(&self, name: String) -> Row {
        Row {
            name,
            value: self.received as f64 / self.secs / 1e6,
            unit: "M received/s".into(),
            target: None,
            note: format!(
                "generated {:.2} M/s: {} calls x {} + {} own faults = {}; received {} + dropped {} = {} ({:.1}% dropped); exact",
                self.achieved / 1e6,
                self.calls,
                cxl_trace_common::RING_BENCH_BATCH,
                self.own_faults,
                self.expected,
                self.received,
                self.dropped,
                self.received + self.dropped,
                self.dropped as f64 * 100.0 / self.expected.max(1) as f64
            ),
        }
    }
}

/// `top --no-tui --ring-bench` around the getpgid generator; fails unless every generated
/// record was received or counted as dropped.
fn ring_run(ring_mib: u32, offered: f64, threads: u32, secs: f64) -> Result<RingRun> {
    let out = Command::new(target_dir().join("release/cxl-trace"))
        .args([
            "top",
            "--no-tui",
            "--interval",
            "1",
            "--ring-bench",
            "--ringbuf-mib",
        ])
        .arg(ring_mib.to_string())
        .arg("--")
        .arg(target_dir().join("release/cxl-trace-workload"))
        .args([
            "getpgid",
            "--rate",
            &format!("{}", offered / RING_BENCH_BATCH),
            "--seconds",
            &format!("{secs}"),
            "--threads",
            &threads.to_string(),
        ])
        .stderr(Stdio::null())
        .output()
        .context("cannot start cxl-trace")?;
    let lines = json_lines(&out.stdout);
    let summary = lines
        .iter()
        .find(|v| v["type"] == "summary")
        .context("no summary line")?;
    let load = lines
        .iter()
        .find(|v| v.get("calls").is_some())
        .context("the workload printed no result")?;
    let calls = load["calls"].as_u64().unwrap_or(0);
    let own_faults = own_faults(load);
    let wsecs = load["seconds"].as_f64().unwrap_or(secs);
    let t = tally(summary);
    let expected = calls * cxl_trace_common::RING_BENCH_BATCH + own_faults;
    // The workload reads its fault count just before printing; the few faults of printing
    // and exiting come after.
    let seen = t.received + t.dropped;
    if !(t.adds_up && seen >= expected && seen - expected <= 64) {
        bail!("ring buffer accounting at {offered} records/s: {expected} generated, {seen} received + dropped: {summary}");
    }
    Ok(RingRun {
        expected,
        received: t.received,
        dropped: t.dropped,
        achieved: calls as f64 * RING_BENCH_BATCH / wsecs,
        secs: wsecs,
        calls,
        own_faults,
    })
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
    let bin = target_dir().join("release/cxl-trace");
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
        unit: "events".into(),
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
