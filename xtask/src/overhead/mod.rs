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
use cxl_trace::model::schema::Window;

use crate::target_dir;

mod cost;
pub use cost::*;
mod footprint;
pub use footprint::*;
mod ring;
pub use ring::*;

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
    /// `top --no-tui --fault-events`: a record per fault, as before faults were counted in
    /// the kernel.
    TopEvents,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::None,
        Mode::Record,
        Mode::Top,
        Mode::Bpftrace,
        Mode::BpftraceEmpty,
        Mode::TopEvents,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::None => "no tracer",
            Mode::Record => "cxl-trace record",
            Mode::Top => "cxl-trace top --no-tui",
            Mode::Bpftrace => "bpftrace count per pid",
            Mode::BpftraceEmpty => "bpftrace empty programs",
            Mode::TopEvents => "cxl-trace top --no-tui --fault-events (a record per fault)",
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
    /// Whether `Mode::TopEvents` means anything for this program (it only changes faults).
    count_only: bool,
}

/// The fault-bound program: map, touch, unmap.
pub(crate) fn fault_target() -> Target {
    Target {
        unit: "fault",
        bpftrace_work: "tracepoint:exceptions:page_fault_user, tracepoint:exceptions:page_fault_kernel { @faults[pid] = count(); }",
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
        Mode::TopEvents => {
            let mut c = Command::new(&bin);
            c.args(["top", "--no-tui", "--interval", "1", "--fault-events"]);
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
fn workload(args: &[&str]) -> Result<(WorkloadResult, f64)> {
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
    let v: WorkloadResult = serde_json::from_slice(&out.stdout).context("workload JSON")?;
    Ok((v, s))
}

/// One run of the fault-bound program: (seconds, faults).
fn fault_run() -> Result<(f64, u64)> {
    let (v, s) = workload(&["touch", "--pages", FAULT_PAGES, "--rounds", FAULT_ROUNDS])?;
    Ok((s, v.own_faults()))
}

/// The result line `cxl-trace-workload` prints, as far as the benchmarks read it (each
/// command prints the members that apply to it).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct WorkloadResult {
    /// getpgid(2) calls made (`getpgid`).
    pub(crate) calls: Option<u64>,
    /// Seconds of the measured part.
    pub(crate) seconds: Option<f64>,
    /// Its own minor faults (getrusage).
    pub(crate) minflt: u64,
    /// Its own major faults.
    pub(crate) majflt: u64,
    /// pgmigrate_success over the moves (`pingpong`).
    pub(crate) pgmigrate_success: u64,
}

impl WorkloadResult {
    /// The page faults the workload counted for itself (getrusage: minor + major).
    pub(crate) fn own_faults(&self) -> u64 {
        self.minflt + self.majflt
    }
}

/// The workload's result line in a tracer's (and its command's) stdout.
pub(crate) fn workload_result(stdout: &[u8]) -> Result<WorkloadResult> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains("\"calls\""))
        .find_map(|l| serde_json::from_str::<WorkloadResult>(l).ok())
        .context("the workload printed no result")
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
    let secs = v.seconds.context("workload JSON: seconds")?;
    Ok((secs, v.pgmigrate_success))
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
