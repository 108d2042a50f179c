//! The ring buffer: throughput against offered load, and what overflowing it does to the counts.

use super::*;
use std::{
    io::BufReader,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{bail, Result};

use crate::{step, table::Row, target_dir};

/// Records the ring-buffer benchmark's program writes per getpgid(2) (`RING_BENCH_BATCH`).
pub(crate) const RING_BENCH_BATCH: f64 = cxl_trace_common::RING_BENCH_BATCH as f64;

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
pub(crate) struct RingRun {
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
    pub(crate) fn row(&self, name: String) -> Row {
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
pub(crate) fn ring_run(ring_mib: u32, offered: f64, threads: u32, secs: f64) -> Result<RingRun> {
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
    let summary = crate::lines::summary(&String::from_utf8_lossy(&out.stdout))?;
    let load = workload_result(&out.stdout)?;
    let calls = load.calls.unwrap_or(0);
    let own_faults = load.own_faults();
    let wsecs = load.seconds.unwrap_or(secs);
    let t = tally(&summary);
    let expected = calls * cxl_trace_common::RING_BENCH_BATCH + own_faults;
    // The workload reads its fault count just before printing; the few faults of printing
    // and exiting come after.
    let seen = t.received + t.dropped;
    if !(t.adds_up && seen >= expected && seen - expected <= 64) {
        bail!("ring buffer accounting at {offered} records/s: {expected} generated, {seen} received + dropped: {summary:?}");
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
pub(crate) fn pgfault() -> u64 {
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
        .args(["top", "--no-tui", "--fault-events", "--ringbuf-mib", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start cxl-trace")?;
    let out = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
            .find_map(|l| crate::lines::summary_line(&l))
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
        bail!("overflow accounting: {summary:?}");
    }
    Ok(())
}

/// The counts of a `top` summary that must add up.
pub(crate) struct Tally {
    pub(crate) received: u64,
    pub(crate) dropped: u64,
    /// Records the kernel submitted (read after the final drain).
    pub(crate) produced: u64,
    /// Received before the window opened.
    pub(crate) before: u64,
    /// Submitted after the final drain (outside the window).
    pub(crate) after: u64,
    /// Every submitted record was received (or fell outside the window, at most 16).
    pub(crate) adds_up: bool,
}

impl Tally {
    /// How the counts add up, or that they do not.
    pub(crate) fn verdict(&self, ok: bool) -> String {
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
pub(crate) fn tally(summary: &Window) -> Tally {
    let received = summary.events.received;
    let produced: Option<u64> = summary.produced.as_ref().map(|m| m.values().sum());
    let before = summary.before_window.unwrap_or(0);
    let after = produced.map_or(0, |p| p.saturating_sub(received + before));
    Tally {
        received,
        dropped: summary.drops.total,
        produced: produced.unwrap_or(0),
        before,
        after,
        adds_up: produced.is_some_and(|p| p >= received + before && after <= 16),
    }
}
