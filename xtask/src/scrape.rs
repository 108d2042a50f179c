//! The exporter under scrape load (`cargo xtask bench --only exporter`): 50 concurrent
//! scrapers against the release binary while a workload faults, beside the same exporter
//! with no scraper, in one run. Reports scrape latency (median, p99), the exporter's CPU per
//! scrape and both CPU shares; the suite's load test checks the drops and the RSS.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{bench::cpu_s, step, table::Row, target_dir};

const SCRAPERS: usize = 50;
const PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// One HTTP/1.1 GET on loopback: the status and the body.
pub(crate) fn get(port: u16, path: &str, accept: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let status = String::from_utf8_lossy(&raw[..split])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, raw[split + 4..].to_vec()))
}

/// One scrape; the time to the whole response.
fn scrape(port: u16, accept: Option<&str>) -> Result<Duration> {
    let t = Instant::now();
    let (status, _) = get(port, "/metrics", accept)?;
    if status != 200 {
        bail!("scrape failed: {status}");
    }
    Ok(t.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn exporter(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    step(&format!(
        "exporter: {SCRAPERS} scrapers for {} s while faults stream, beside no scrapers",
        window.as_secs()
    ));
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(target_dir().join("release/cxl-trace"))
        .args(["exporter", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the exporter")?;
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(30);
    while scrape(port, None).is_err() {
        if Instant::now() > end {
            let _ = child.kill();
            bail!("the exporter did not answer within 30 s");
        }
        sleep(Duration::from_millis(200));
    }
    let result = measure(pid, port, window);
    let _ = child.kill();
    let _ = child.wait();
    let m = result?;
    rows.push(Row {
        name: "exporter: scrape latency, 50 scrapers, median".into(),
        value: m.p50_ms,
        unit: "ms".into(),
        target: None,
        note: format!(
            "{} scrapes in {} s, text, OpenMetrics and protobuf",
            m.scrapes,
            window.as_secs()
        ),
    });
    rows.push(Row {
        name: "exporter: scrape latency, 50 scrapers, p99".into(),
        value: m.p99_ms,
        unit: "ms".into(),
        target: None,
        note: String::new(),
    });
    rows.push(Row {
        name: "exporter: CPU, faults streaming, no scraper".into(),
        value: m.idle_pct,
        unit: "% of a core".into(),
        target: None,
        note: "the same exporter, the window before the scrapers".into(),
    });
    rows.push(Row {
        name: "exporter: CPU, faults streaming, 50 scrapers".into(),
        value: m.load_pct,
        unit: "% of a core".into(),
        target: None,
        note: format!("{:.0} µs of CPU per scrape", m.us_per_scrape),
    });
    Ok(())
}

struct Measured {
    scrapes: usize,
    p50_ms: f64,
    p99_ms: f64,
    idle_pct: f64,
    load_pct: f64,
    us_per_scrape: f64,
}

fn measure(pid: u32, port: u16, window: Duration) -> Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let faulting = {
        let stop = stop.clone();
        let workload = target_dir().join("release/cxl-trace-workload");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new(&workload)
                    .args(["touch", "--pages", "20000"])
                    .output();
            }
        })
    };
    // Faults only, then faults and scrapers: two windows of one run.
    sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_s(pid).context("the exporter exited")?, Instant::now());
    sleep(window);
    let (c1, t1) = (cpu_s(pid).context("the exporter exited")?, Instant::now());
    let idle_pct = (c1 - c0) / (t1 - t0).as_secs_f64() * 100.0;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let go = Arc::new(AtomicBool::new(true));
    let scrapers: Vec<_> = (0..SCRAPERS)
        .map(|i| {
            let (lat, go) = (lat.clone(), go.clone());
            std::thread::spawn(move || {
                let accept = [
                    None,
                    Some("application/openmetrics-text;version=1.0.0"),
                    Some(PROTOBUF),
                ][i % 3];
                while go.load(Ordering::Relaxed) {
                    if let Ok(d) = scrape(port, accept) {
                        if let Ok(mut l) = lat.lock() {
                            l.push(d.as_secs_f64() * 1e3);
                        }
                    }
                }
            })
        })
        .collect();
    let (c2, t2) = (cpu_s(pid).context("the exporter exited")?, Instant::now());
    sleep(window);
    let (c3, t3) = (cpu_s(pid).context("the exporter exited")?, Instant::now());
    go.store(false, Ordering::Relaxed);
    for s in scrapers {
        let _ = s.join();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = faulting.join();
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let load_pct = (c3 - c2) / (t3 - t2).as_secs_f64() * 100.0;
    let extra_cpu_s =
        ((c3 - c2) - (c1 - c0) * (t3 - t2).as_secs_f64() / (t1 - t0).as_secs_f64()).max(0.0);
    Ok(Measured {
        scrapes: l.len(),
        p50_ms: percentile(&l, 0.5),
        p99_ms: percentile(&l, 0.99),
        idle_pct,
        load_pct,
        us_per_scrape: extra_cpu_s * 1e6 / l.len().max(1) as f64,
    })
}
