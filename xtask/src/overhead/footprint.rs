//! Exact accounting (produced = received + dropped) and the tool's own footprint over time.

use super::*;
use std::{
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{step, table::Row, target_dir};

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
    let summary = crate::lines::summary(&String::from_utf8_lossy(&out.stdout))?;
    let t = tally(&summary);
    let secs = summary.t;
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
        bail!("ring buffer accounting: produced != received (+ outside the window): {summary:?}");
    }
    Ok(())
}

pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
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
