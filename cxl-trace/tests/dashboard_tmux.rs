//! The dashboard as a user meets it, in a real terminal (tmux): `cxl-trace top` as root while
//! a fault-heavy program runs (the screen shows its faults, `?` opens help, `q` leaves a clean
//! shell with the terminal restored), and `cxl-trace replay` of a recording driven by its keys
//! (pause, step, seek; any user), and of a two-tier recording from the VM (its latency
//! histogram and churn).

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

/// A tmux session that is killed when it goes out of scope, so that a failed assertion leaves
/// no dashboard running behind it.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Starts `cmd` in a detached 160x48 tmux session named `session`.
#[must_use = "the session is killed when this guard is dropped"]
fn start(session: &str, cmd: &str) -> Session {
    tmux(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "160",
        "-y",
        "48",
        cmd,
    ]);
    Session(session.to_string())
}

/// Opens help (`?`, waits for `help_text`), closes it, quits with `q` and returns the screen
/// after the program exited: it must have exited 0 and left the alternate screen (`gone` is
/// no longer shown).
fn help_then_quit(session: &str, marker: &str, help_text: &str, gone: &str) -> String {
    tmux(&["send-keys", "-t", session, "?"]);
    let help = wait_for(session, help_text, Duration::from_secs(5));
    assert!(help.contains(help_text), "help overlay:\n{help}");
    tmux(&["send-keys", "-t", session, "x"]);
    tmux(&["send-keys", "-t", session, "q"]);
    let after = wait_for(session, marker, Duration::from_secs(15));
    tmux(&["kill-session", "-t", session]);
    assert!(
        after.contains(&format!("{marker} 0")),
        "q exits 0:\n{after}"
    );
    assert!(
        !after.contains(gone),
        "alternate screen left behind:\n{after}"
    );
    after
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
    let _guard = start(&session, &cmd);
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
    // Where the kernel gives no latency (this development host refuses fentry), the panel
    // shows what is available instead: the fault rate over time, in all and by kind.
    if busy.contains("Fault latency: unavailable") {
        for needle in [
            "latency unavailable:",
            "instead, faults per second",
            "all:",
            "user:",
        ] {
            assert!(busy.contains(needle), "{needle} missing:\n{busy}");
        }
    }
    assert!(busy.contains("Migration churn"), "{busy}");
    // The dashboard turns the kernel's BPF statistics on: the header shows the programs'
    // share of a CPU, a percentage, not "off".
    let bpf = busy
        .split("bpf ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    assert!(
        bpf.ends_with('%'),
        "bpf share in the header: {bpf:?}\n{busy}"
    );

    // Back on the normal screen: the dashboard is gone, the summary line is there.
    let after = help_then_quit(&session, marker, "this help", "q quit");
    assert!(after.contains("events,"), "summary line missing:\n{after}");
}

/// The replay header's position: `REPLAY 3.1s at 1x`.
fn replay_t(screen: &str) -> Option<f64> {
    let rest = &screen[screen.find("REPLAY ")? + 7..];
    rest[..rest.find('s')?].parse().ok()
}

/// Waits until the replay position satisfies `ok`; returns the last capture.
fn wait_t(session: &str, ok: impl Fn(f64) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let s = capture(session);
        if replay_t(&s).is_some_and(&ok) || t0.elapsed() > Duration::from_secs(10) {
            return s;
        }
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn replay_in_tmux_pauses_steps_and_seeks() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/recordings/v1-timed.cxlt"
    );
    let session = format!("cxltrace-replay-{}", std::process::id());
    let marker = "CXLTRACE_EXITED";
    let cmd = format!("{CXL_TRACE} replay {file} --speed 0.25; echo {marker} $?; sleep 60");
    let _guard = start(&session, &cmd);
    let first = wait_for(&session, "REPLAY", Duration::from_secs(20));
    assert!(first.contains("space pause"), "replay footer:\n{first}");
    // At a quarter of real time, the first interval (about 1 s) shows after about 4 s: pause
    // before it does.
    tmux(&["send-keys", "-t", &session, " "]);
    let paused = wait_for(&session, "[PAUSED]", Duration::from_secs(5));
    assert!(paused.contains("[PAUSED]"), "{paused}");
    let t_paused = replay_t(&paused).expect("position shown");
    sleep(Duration::from_millis(1500));
    assert_eq!(
        replay_t(&capture(&session)),
        Some(t_paused),
        "paused means paused"
    );

    // One step: one interval (about a second) further, still paused.
    tmux(&["send-keys", "-t", &session, "."]);
    let stepped = wait_t(&session, |t| t > t_paused);
    let t1 = replay_t(&stepped).expect("position");
    assert!(t1 > t_paused && t1 < t_paused + 2.5, "{t_paused} -> {t1}");
    assert!(stepped.contains("[PAUSED]"), "{stepped}");

    // The end: every fault of the recording is counted in the whole-run window.
    tmux(&["send-keys", "-t", &session, "G"]);
    let end = wait_for(&session, "[END]", Duration::from_secs(10));
    assert!(end.contains("[END]"), "{end}");
    let t_end = replay_t(&end).expect("position");
    assert!(t_end > 5.0, "the fixture covers 6 s, at {t_end}");
    assert!(
        end.contains("Fault latency") && end.contains("Migration churn"),
        "{end}"
    );

    // Back to the start, then quit.
    tmux(&["send-keys", "-t", &session, "g"]);
    let start = wait_t(&session, |t| t == 0.0);
    assert_eq!(replay_t(&start), Some(0.0), "{start}");
    let help = help_then_quit(&session, marker, "step one interval", "REPLAY");
    assert!(help.contains(marker));
}

/// The counts written on the latency bars: the row above the bucket labels (`█3877█ ██94██`).
fn bar_counts(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    // The bucket labels: the last line of the left panel with times and no bar in it.
    let Some(i) = lines
        .iter()
        .rposition(|l| l.contains("us ") && l.starts_with('│') && !l.contains('█'))
    else {
        return Vec::new();
    };
    let Some(row) = i.checked_sub(1).and_then(|j| lines.get(j)) else {
        return Vec::new();
    };
    // The left panel only: up to its closing border.
    let left = row.split('│').nth(1).unwrap_or("");
    left.split(|c: char| !c.is_ascii_alphanumeric() && c != '.')
        .filter(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// A recording from the two-tier VM guest (7.3, fentry available) at its end: the latency
/// histogram of the fast tier has several non-empty bars, both tiers are listed, the churn
/// panel shows promotions and demotions between them. The screen is kept in
/// `target/dashboard-two-tier.txt` (the README's capture comes from there).
#[test]
fn replay_of_a_two_tier_recording_shows_the_histogram_and_churn() {
    // From the repository's root, so that the footer shows the path a reader has.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let file = "cxl-trace/tests/fixtures/recordings/two-tier.cxlt";
    let session = format!("cxltrace-two-tier-{}", std::process::id());
    let marker = "CXLTRACE_EXITED";
    let cmd = format!("cd {root} && {CXL_TRACE} replay {file}; echo {marker} $?; sleep 60");
    let _guard = start(&session, &cmd);
    let first = wait_for(&session, "REPLAY", Duration::from_secs(20));
    assert!(first.contains("REPLAY"), "{first}");
    tmux(&["send-keys", "-t", &session, "G"]);
    let end = wait_for(&session, "[END]", Duration::from_secs(10));
    // The end is drawn once the last interval is in.
    sleep(Duration::from_millis(500));
    let end = if end.contains("[END]") {
        capture(&session)
    } else {
        end
    };
    let counts = bar_counts(&end);
    assert!(
        counts.len() > 1,
        "more than one non-empty bar, got {counts:?}:\n{end}"
    );
    for needle in [
        "tier4: node0",
        "tier72: node1",
        "bars: log height",
        "tier4->tier72",
        "tier72->tier4",
        "promoted by cause: numa_balancing",
    ] {
        assert!(end.contains(needle), "{needle} missing:\n{end}");
    }
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-two-tier.txt");
    let _ = std::fs::write(out, &end);
    let help = help_then_quit(&session, marker, "log scale", "REPLAY");
    assert!(help.contains(marker));
}
