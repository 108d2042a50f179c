//! The dashboard as a user meets it: `cxl-trace top` in a real terminal (tmux), as root, while
//! a fault-heavy program runs; the screen shows its faults, `?` opens help, `q` leaves a clean
//! shell with the terminal restored.

mod common;

use std::{
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (installed by `cargo xtask setup`)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn capture(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Waits until the pane shows `needle`; returns the last capture.
fn wait_for(session: &str, needle: &str, timeout: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let s = capture(session);
        if s.contains(needle) || t0.elapsed() > timeout {
            return s;
        }
        sleep(Duration::from_millis(200));
    }
}

/// The workload's row in the process table: its fault count.
fn workload_faults(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains("cxl-trace-workl"))?;
    let cells: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|s| !s.is_empty())
        .collect();
    let i = cells
        .iter()
        .position(|c| c.starts_with("cxl-trace-workl"))?;
    let v = cells.get(i + 1)?;
    match v.strip_suffix('k') {
        Some(k) => k.parse::<f64>().ok().map(|x| (x * 1000.0) as u64),
        None => v.parse().ok(),
    }
}

#[test]
fn top_in_tmux_shows_faults_and_quits_cleanly() {
    if !require_root("top_in_tmux_shows_faults_and_quits_cleanly") {
        return;
    }
    let session = format!("cxltrace-test-{}", std::process::id());
    let marker = "CXLTRACE_EXITED";
    let cmd = format!("{CXL_TRACE} top --interval 0.5; echo {marker} $?; sleep 60");
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "48",
        &cmd,
    ]);
    let first = wait_for(&session, "q quit", Duration::from_secs(20));
    assert!(
        first.contains("q quit"),
        "dashboard did not appear:\n{first}"
    );

    let out = Command::new(WORKLOAD)
        .args(["touch", "--pages", "100000"])
        .output()
        .expect("workload");
    assert!(out.status.success());
    // Two intervals for the faults to show up.
    sleep(Duration::from_millis(1500));
    let busy = wait_for(&session, "cxl-trace-workl", Duration::from_secs(10));
    let faults = workload_faults(&busy);
    assert!(
        faults.is_some_and(|n| n >= 100_000),
        "workload row should show >= 100k faults, got {faults:?}:\n{busy}"
    );
    assert!(busy.contains("Fault latency"), "{busy}");
    assert!(busy.contains("Migration churn"), "{busy}");

    tmux(&["send-keys", "-t", &session, "?"]);
    let help = wait_for(&session, "this help", Duration::from_secs(5));
    assert!(help.contains("this help"), "help overlay:\n{help}");
    tmux(&["send-keys", "-t", &session, "x"]);
    tmux(&["send-keys", "-t", &session, "q"]);
    let after = wait_for(&session, marker, Duration::from_secs(15));
    tmux(&["kill-session", "-t", &session]);
    assert!(
        after.contains(&format!("{marker} 0")),
        "q should exit with status 0:\n{after}"
    );
    // Back on the normal screen: the dashboard is gone, the summary line is there.
    assert!(
        !after.contains("q quit"),
        "alternate screen left behind:\n{after}"
    );
    assert!(after.contains("events,"), "summary line missing:\n{after}");
}
