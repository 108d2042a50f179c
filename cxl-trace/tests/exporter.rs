//! The exporter against a real Prometheus (Debian's package, installed by `cargo xtask setup`):
//! Prometheus scrapes it with native histograms on, and what it stored is compared with the
//! exporter's own `/metrics` and with /proc/vmstat. Plus the HTTP surface, `promtool check
//! metrics`, and the fleet files in `deploy/` (`promtool check rules`/`test rules`,
//! `systemd-analyze verify`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{require_root, wait_for_stderr_line, CXL_TRACE, WORKLOAD};
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 GET; returns (status, headers, body).
fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split + 4..].to_vec())
}

fn text_metrics(port: u16) -> String {
    let (status, _, body) = get(port, "/metrics", None);
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}

/// The sum of every series of a metric in Prometheus text.
fn sum_of(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_exporter(port: u16) -> Killed {
    let mut c = Command::new(CXL_TRACE)
        .args([
            "exporter",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "0.5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let line = wait_for_stderr_line(&mut c, "serving");
    assert!(line.contains("serving"), "the exporter did not start");
    Killed(c)
}

fn vmstat() -> std::collections::BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn start_prometheus(dir: &Path, port: u16, target: u16) -> Killed {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: cxl-trace\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let c = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=native-histograms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus (Debian's package; `cargo xtask setup` installs it)");
    Killed(c)
}

/// An instant query's vector.
fn query(port: u16, promql: &str) -> Vec<Value> {
    query_params(port, promql, "")
}

fn query_params(port: u16, promql: &str, extra: &str) -> Vec<Value> {
    let q = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
    let (status, _, body) = get(port, &format!("/api/v1/query?query={q}{extra}"), None);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "{promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// An instant query at time `at` (Unix s).
fn query_at(port: u16, promql: &str, at: f64) -> Vec<Value> {
    query_params(port, promql, &format!("&time={at}"))
}

/// When Prometheus took its latest sample of a series (Unix s), read from its
/// `timestamp()`.
fn last_sample_time(port: u16, series: &str) -> f64 {
    scalar(&query(port, &format!("timestamp({series})"))).expect("a sample")
}

fn scalar(v: &[Value]) -> Option<f64> {
    v.first()?["value"][1].as_str()?.parse().ok()
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The privileged tests here one at a time: each compares system-wide counts.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Succeeded migrated pages in Prometheus text.
fn succeeded(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("cxl_trace_migrated_pages_total{") && l.contains("result=\"succeeded\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Prometheus scrapes the exporter (protobuf, native histograms); after a workload its stored
/// counters equal the exporter's own and /proc/vmstat's.
#[test]
fn prometheus_scrapes_what_vmstat_counts() {
    if !require_root("prometheus_scrapes_what_vmstat_counts") {
        return;
    }
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let (xp, pp) = (free_port(), free_port());
    let exporter = start_exporter(xp);
    let _prom = start_prometheus(dir.path(), pp, xp);
    wait_until("prometheus to be ready", 60, || {
        TcpStream::connect(("127.0.0.1", pp)).is_ok()
            && scalar(&query(pp, "up{job=\"cxl-trace\"}")) == Some(1.0)
    });
    // The window: /proc/vmstat now, and the exporter's counters one interval later (the
    // faults of that half second, Prometheus' own included, are the tolerance below).
    let vm0 = vmstat();
    std::thread::sleep(Duration::from_millis(700));
    let before = text_metrics(xp);
    let faults0 = sum_of(&before, "cxl_trace_page_faults_total");
    let ok0 = succeeded(&before);
    // Work: faults, then compaction (migrations the exporter and vmstat both count).
    let out = Command::new(WORKLOAD)
        .args(["touch", "--pages", "30000"])
        .output()
        .expect("workload");
    assert!(out.status.success());
    std::fs::write("/proc/sys/vm/compact_memory", "1").expect("compact");
    // Settled: two exporter intervals, then a scrape after them.
    std::thread::sleep(Duration::from_millis(3500));
    let text = text_metrics(xp);
    // vmstat at once: the window ends within an interval of the exporter's (the Prometheus
    // wait below would add its own faults and whatever else runs on the machine).
    let vm1 = vmstat();
    let ours_faults = sum_of(&text, "cxl_trace_page_faults_total");
    let ours_ok = succeeded(&text);
    // Migrations have settled, so Prometheus' latest sample is exactly the served value;
    // faults go on system-wide (Prometheus itself faults), so its latest is at least it.
    let mut prom_ok = -1.0;
    wait_until("prometheus to store the settled values", 20, || {
        prom_ok = scalar(&query(
            pp,
            "sum(cxl_trace_migrated_pages_total{result=\"succeeded\"}) or vector(0)",
        ))
        .unwrap_or(-1.0);
        let faults = scalar(&query(pp, "sum(cxl_trace_page_faults_total)")).unwrap_or(0.0);
        prom_ok == ours_ok && faults >= ours_faults
    });
    // (Queried while the exporter runs: its series go stale when it stops.)
    // The histograms arrived as native ones: histogram_count() reads only those.
    let native = query(pp, "histogram_count(cxl_trace_pingpong_residency_seconds)");
    assert_eq!(native.len(), 1, "no native histogram stored: {native:?}");
    // What the exporter says about itself.
    assert_eq!(
        scalar(&query(pp, "sum(cxl_trace_events_dropped_total)")),
        Some(0.0)
    );
    assert!(scalar(&query(pp, "process_resident_memory_bytes")).unwrap() > 1e6);
    let at = last_sample_time(
        pp,
        "cxl_trace_migrated_pages_total{reason=\"compaction\",result=\"succeeded\"}",
    );
    drop(exporter);
    let d = |k: &str| vm1[k] - vm0[k];
    assert_eq!(prom_ok, ours_ok, "stored vs served migrations");
    assert_eq!(
        (ours_ok - ok0) as u64,
        d("pgmigrate_success"),
        "migrations vs pgmigrate_success"
    );
    let pgfault = d("pgfault") as f64;
    let faults = ours_faults - faults0;
    assert!(faults >= 30000.0, "faults {faults}");
    assert!(
        (faults - pgfault).abs() / pgfault < 0.05,
        "faults {faults} vs pgfault {pgfault}"
    );
    // increase() over every sample, evaluated at the last one: the migration series existed
    // from 0 before the compaction, so nothing is extrapolated and it is exact. Faults were
    // already counting at the first scrape, so their increase() extrapolates towards the
    // range's start: close to, not equal to, the counter.
    let inc = scalar(&query_at(
        pp,
        "sum(increase(cxl_trace_migrated_pages_total{result=\"succeeded\"}[1h]))",
        at,
    ))
    .unwrap();
    assert_eq!(inc, ours_ok - ok0, "increase() of the migrations");
    assert_eq!(
        inc as u64,
        d("pgmigrate_success"),
        "increase() vs pgmigrate_success"
    );
    let inc = scalar(&query_at(
        pp,
        "sum(increase(cxl_trace_page_faults_total[1h]))",
        at,
    ))
    .unwrap();
    assert!(
        inc > 0.0 && (inc - faults).abs() / faults < 0.5,
        "increase {inc} vs {faults}"
    );
}

#[test]
fn the_http_surface_negotiates_and_answers() {
    if !require_root("the_http_surface_negotiates_and_answers") {
        return;
    }
    let _one = serial();
    let port = free_port();
    let exporter = start_exporter(port);
    wait_until("the first metrics", 20, || {
        get(port, "/healthz", None).0 == 200
    });
    let (_, head, body) = get(port, "/", None);
    assert!(head.contains("text/html"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("/metrics"));
    let (_, head, body) = get(
        port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with(b"# EOF\n"));
    let (_, head, _) = get(
        port,
        "/metrics",
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
    );
    assert!(head.contains("encoding=delimited"), "{head}");
    assert_eq!(get(port, "/nope", None).0, 404);
    // promtool lints the text exposition (names, units, help, _total).
    let text = text_metrics(port);
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every thread, the HTTP server's included, runs without capabilities.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", exporter.0.id())).unwrap();
    let mut threads = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let cap = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .unwrap_or("?");
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        assert_eq!(
            cap,
            "0000000000000000",
            "thread {} keeps capabilities",
            name.trim()
        );
        threads += 1;
    }
    assert!(threads >= 2, "no server thread");
    // SIGTERM ends it cleanly.
    let pid = exporter.0.id() as i32;
    // SAFETY: kill sends a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut exporter = exporter;
    let status = exporter.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let out = Command::new(CXL_TRACE)
        .args(["exporter", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on"),
        "{out:?}"
    );
}

fn deploy(name: &str) -> PathBuf {
    Path::new(DEPLOY).join(name)
}

fn tool_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run the checker");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_fleet_files_pass_their_checkers() {
    tool_ok(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(deploy("prometheus.yml")),
    );
    tool_ok(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(deploy("cxl-trace.rules.yml")),
    );
    tool_ok(Command::new("promtool").current_dir(DEPLOY).args([
        "test",
        "rules",
        "cxl-trace.rules.test.yml",
    ]));
    // verify wants ExecStart's binary to exist: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("cxl-trace-exporter.service"))
        .unwrap()
        .replace("/usr/local/bin/cxl-trace", CXL_TRACE);
    let path = dir.path().join("cxl-trace-exporter.service");
    std::fs::write(&path, unit).unwrap();
    tool_ok(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// 50 scrapers for a minute while faults stream: no record dropped, `/healthz` (the event
/// loop's rebuilds) never stale, RSS flat. Timings are the bench's (`cargo xtask bench`).
#[test]
fn fifty_scrapers_for_a_minute() {
    use std::sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    };
    if !require_root("fifty_scrapers_for_a_minute") {
        return;
    }
    let _one = serial();
    let port = free_port();
    let exporter = start_exporter(port);
    let pid = exporter.0.id();
    wait_until("the first metrics", 20, || {
        get(port, "/healthz", None).0 == 200
    });
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..50 {
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        threads.push(std::thread::spawn(move || {
            let accept = [
                None,
                Some("application/openmetrics-text;version=1.0.0"),
                Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"),
            ][i % 3];
            while !stop.load(Ordering::Relaxed) {
                let (status, _, body) = get(port, "/metrics", accept);
                assert_eq!(status, 200);
                assert!(!body.is_empty());
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let faulting = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut faults = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(WORKLOAD)
                    .args(["touch", "--pages", "20000"])
                    .output()
                    .expect("workload");
                assert!(out.status.success());
                faults += 20000;
            }
            faults
        })
    };
    let mut rss = Vec::new();
    let mut unhealthy = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let (status, _, body) = get(port, "/healthz", None);
        if status != 200 {
            unhealthy.push(format!(
                "{:.1}s: {}",
                start.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&body).trim()
            ));
        }
        rss.push(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a scraper failed");
    }
    let faults = faulting.join().expect("the workload failed");
    std::thread::sleep(Duration::from_millis(1200));
    let text = text_metrics(port);
    let scraped = scrapes.load(Ordering::Relaxed);
    eprintln!(
        "{scraped} scrapes in 60 s, {faults} workload faults, RSS {} -> {} KiB",
        rss[0],
        rss[rss.len() - 1]
    );
    assert!(unhealthy.is_empty(), "healthz not ok: {unhealthy:?}");
    assert!(scraped > 500, "only {scraped} scrapes");
    assert!(faults >= 100_000, "only {faults} faults");
    assert_eq!(
        sum_of(&text, "cxl_trace_events_dropped_total"),
        0.0,
        "records dropped"
    );
    assert!(sum_of(&text, "cxl_trace_page_faults_total") >= faults as f64);
    // Flat: the second half's peak within 10% (and 4 MiB) of the first half's.
    let half = rss.len() / 2;
    let first = *rss[..half].iter().max().unwrap();
    let second = *rss[half..].iter().max().unwrap();
    assert!(
        second <= first + first / 10 + 4096,
        "RSS grew: first half peak {first} KiB, second half peak {second} KiB"
    );
}
