//! `cxl-trace exporter`: a headless live run whose totals are served as Prometheus metrics.
//!
//! The event loop rebuilds the metric families once an interval and swaps them into a shared
//! slot; an HTTP server on its own thread ([`http`]) encodes the latest families per scrape.
//! Scrapers never touch the aggregator, so any number of them cannot stall the ring buffer's
//! reader: the reader's only shared step is swapping one `Arc` under a mutex.

mod http;

use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    cli::ExporterOpts,
    error::{Error, Result},
    model::{
        metrics::{build, comm_labels, Family, Health, Input},
        schema::{LineKind, Start},
        topology::Topology,
    },
    session::{self, Finish, Live, RunConfig, Sink, Tick},
};

/// What the event loop publishes and the server reads.
#[derive(Debug)]
pub struct Published {
    /// The latest families (empty until the first interval).
    pub families: Arc<Vec<Family>>,
    /// When they were built.
    pub at: Instant,
    /// The run has ended.
    pub done: bool,
}

/// The slot shared between the event loop and the server.
pub type Slot = Arc<Mutex<Published>>;

/// The sink: rebuilds the families each interval.
struct Exporter {
    slot: Slot,
    comms: Vec<String>,
    process_labels: usize,
    topology: Topology,
    health: Health,
}

impl Exporter {
    fn publish(&self, families: Vec<Family>, done: bool) {
        // A poisoned lock means the server thread panicked mid-read; the data is still whole.
        let mut p = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        p.families = Arc::new(families);
        p.at = Instant::now();
        p.done = done;
    }
}

/// This process's resident set, bytes (`/proc/self/statm`).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

impl Sink for Exporter {
    type Input = ();

    fn start(&mut self, start: &Start) -> Result<bool> {
        self.health.probes = start.probes.clone();
        self.health.version = start.version.clone();
        self.health.kernel = start.kernel.clone();
        Ok(true)
    }

    fn interval(&mut self, tick: &Tick) -> Result<bool> {
        if let Some(t) = tick.topology {
            self.topology = t.clone();
        }
        let run = tick.agg.run();
        let window = tick.agg.window(
            LineKind::Summary,
            tick.t_s,
            tick.t_s,
            run,
            tick.dropped_total,
            &Default::default(),
            0,
        );
        comm_labels(run, &mut self.comms, self.process_labels);
        self.health.produced = tick.tracer.produced();
        self.health.dropped = tick.dropped_total.by_kind.clone();
        self.health.decode_errors = tick.decode_errors;
        self.health.bpf_run_ns = tick.tracer.bpf_run_ns();
        self.health.cpu_s = session::clock::own_cpu_s();
        self.health.rss_bytes = rss_bytes();
        let families = build(&Input {
            totals: run,
            window: &window,
            topology: &self.topology,
            health: &self.health,
            comms: &self.comms,
        });
        self.publish(families, false);
        Ok(true)
    }

    fn finish(self, _end: &Finish, _open: bool) -> Result<()> {
        let mut p = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        p.done = true;
        Ok(())
    }
}

/// Runs the exporter until a signal, `--duration` or the command's exit.
pub async fn run(opts: ExporterOpts) -> Result<i32> {
    // Bound before attaching (a busy port fails at once) and while still privileged.
    let listener = std::net::TcpListener::bind(opts.listen)
        .map_err(|e| Error::Runtime(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    let live = Live::open(&opts.trace, None, opts.bpf_stats, true)?;
    let slot: Slot = Arc::new(Mutex::new(Published {
        families: Arc::new(Vec::new()),
        at: Instant::now(),
        done: false,
    }));
    let health = Health {
        start_time_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64()),
        ..Default::default()
    };
    let sink = Exporter {
        slot: slot.clone(),
        comms: Vec::new(),
        process_labels: usize::from(opts.process_labels),
        topology: live.topology.clone(),
        health,
    };
    // Started after the privileges were dropped: the thread inherits what is left.
    let server = http::Server::start(listener, slot, opts.interval)?;
    eprintln!("cxl-trace: exporter serving http://{addr}/metrics");
    let cfg = RunConfig {
        interval_s: opts.interval,
        duration_s: opts.trace.duration,
        pid: opts.trace.pid,
        top: 0,
        command: !opts.trace.command.is_empty(),
        ringbuf_mib: opts.trace.ringbuf_mib,
    };
    let code = session::run(live, sink, &cfg).await;
    server.stop();
    code
}
