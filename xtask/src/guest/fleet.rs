//! The exporter in the guest, scraped by a real Prometheus (Debian's, on the host root the
//! guest mounts). The exporter runs alone through a promotion and a demotion; Prometheus
//! starts after them (its memory would take part in the node-0 memory the work uses) and
//! scrapes the exporter's counters, which count from the exporter's start. What Prometheus stored is
//! compared with the kernel's own promotion and demotion counters over the exporter's window,
//! and the latency histogram gives finite quantiles.

use super::*;
use std::{
    collections::BTreeMap,
    process::{Child, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

const EXPORTER_PORT: u16 = 9464;
const PROM_PORT: u16 = 9090;

/// The exporter, running; /proc/vmstat when its window opened.
pub(crate) struct Fleet {
    exporter: Child,
    vm0: BTreeMap<String, u64>,
}

fn spawn(name: &str, cmd: &mut Command) -> Result<Child> {
    let out = fs::File::create(format!("/results/{name}.out"))?;
    let err = out.try_clone()?;
    cmd.stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

fn wait_http(port: u16, path: &str, what: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(180);
    while !matches!(crate::scrape::get(port, path, None), Ok((200, _))) {
        if Instant::now() > end {
            bail!("{what} did not answer {path} within 180 s");
        }
        sleep(Duration::from_millis(500));
    }
    Ok(())
}

pub(crate) fn start_fleet() -> Result<Fleet> {
    // The guest's init brings no interface up: loopback is enough for both.
    sh(Command::new("ip").args(["link", "set", "lo", "up"])).context("bringing up lo")?;
    let exporter = spawn(
        "exporter",
        Command::new(bin("cxl-trace")).args([
            "exporter",
            "--promotion-decisions",
            "always",
            "--listen",
            &format!("127.0.0.1:{EXPORTER_PORT}"),
        ]),
    )?;
    wait_http(EXPORTER_PORT, "/healthz", "the exporter")?;
    let vm0 = vmstat()?;
    say("the exporter is running");
    Ok(Fleet { exporter, vm0 })
}

fn start_prometheus() -> Result<Child> {
    let dir = "/tmp/prometheus";
    fs::create_dir_all(dir)?;
    fs::write(
        format!("{dir}/prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cxl-trace\n    static_configs:\n      - targets: ['127.0.0.1:{EXPORTER_PORT}']\n"
        ),
    )?;
    let prometheus = spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={dir}/prometheus.yml"))
            .arg(format!("--storage.tsdb.path={dir}/data"))
            .arg(format!("--web.listen-address=127.0.0.1:{PROM_PORT}"))
            .arg("--enable-feature=native-histograms")
            .stdin(Stdio::null()),
    )?;
    wait_http(PROM_PORT, "/-/ready", "prometheus")?;
    let end = Instant::now() + Duration::from_secs(120);
    while query("up{job=\"cxl-trace\"}")? != Some(1.0) {
        if Instant::now() > end {
            bail!("prometheus did not scrape the exporter within 120 s");
        }
        sleep(Duration::from_millis(500));
    }
    say("prometheus scrapes the exporter");
    Ok(prometheus)
}

fn query(promql: &str) -> Result<Option<f64>> {
    let q = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
    let (status, body) = crate::scrape::get(PROM_PORT, &format!("/api/v1/query?query={q}"), None)?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    if status != 200 {
        bail!("{promql}: {v}");
    }
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok()))
}

/// Waits for Prometheus to hold the exporter's settled values, then checks them against
/// /proc/vmstat over the exporter's window.
pub(crate) fn check_fleet(c: &mut Checks, f: Fleet) -> Result<()> {
    let vm1 = vmstat()?;
    let prometheus = start_prometheus()?;
    // Settled: the exporter's next rebuilds after vm1, then scrapes after them.
    sleep(Duration::from_secs(4));
    let d = |k: &str| {
        vm1.get(k)
            .unwrap_or(&0)
            .saturating_sub(*f.vm0.get(k).unwrap_or(&0))
    };
    let sum = |m: &str| -> Result<u64> {
        Ok(query(&format!("sum({m}) or vector(0)"))?.unwrap_or(f64::NAN) as u64)
    };
    c.eq(
        "prometheus: promotions by numa_balancing vs pgpromote_success",
        sum("cxl_trace_promoted_pages_total{cause=\"numa_balancing\"}")?,
        d("pgpromote_success"),
    );
    c.eq(
        "prometheus: demotions by kswapd vs pgdemote_kswapd",
        sum("cxl_trace_demoted_pages_total{cause=\"kswapd\"}")?,
        d("pgdemote_kswapd"),
    );
    c.eq(
        "prometheus: demotions by direct/proactive reclaim vs pgdemote_direct+proactive",
        sum("cxl_trace_demoted_pages_total{cause=\"direct\"}")?,
        d("pgdemote_direct") + d("pgdemote_proactive"),
    );
    c.eq(
        "prometheus: migrated pages vs pgmigrate_success",
        sum("cxl_trace_migrated_pages_total{result=\"succeeded\"}")?,
        d("pgmigrate_success"),
    );
    for rank in ["fast", "slow"] {
        let q = query(&format!(
            "histogram_quantile(0.99, sum(cxl_trace_fault_latency_seconds{{tier_rank=\"{rank}\"}}))"
        ))?;
        c.truth(
            &format!("prometheus: p99 fault latency of the {rank} tier (native histogram)"),
            format!("{q:?} s"),
            q.is_some_and(f64::is_finite),
        );
    }
    c.eq(
        "prometheus: records dropped",
        sum("cxl_trace_events_dropped_total")?,
        0,
    );
    for (name, mut child) in [("exporter", f.exporter), ("prometheus", prometheus)] {
        signal(&child, libc::SIGTERM);
        let st = child.wait()?;
        c.truth(
            &format!("{name} stops on SIGTERM"),
            st.to_string(),
            st.success(),
        );
    }
    Ok(())
}
