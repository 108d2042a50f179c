//! A live run: [`setup`] attaches the probes and opens the window, [`run`] is the event loop,
//! and a [`Sink`] is where the run goes: JSON lines ([`lines`]), a recording ([`recorder`]) or
//! the dashboard (in the tui layer, above this one).

pub mod blast;
pub mod child;
pub mod clock;
pub mod lines;
pub mod privs;
pub mod recorder;
pub mod setup;

use std::{path::Path, time::Duration};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc::UnboundedReceiver,
    time::Instant,
};

use crate::{
    error::{Error, Result},
    model::{
        aggregate::{drops_since, Aggregator, Drops, Totals},
        event::{decode, Comm, Event},
        fault_counts::FaultTracker,
        kernel_latency::{LatencyTracker, TierSlots},
        schema::{Errors, LineKind, LogEntry, Start, Window},
        tiers::TierMap,
        topology::{topology_change, Topology},
    },
    probe::{Ring, Tracer},
};
use child::{exit_code, wait_child};
use clock::monotonic_ns;
pub use setup::Live;

/// What the event loop needs to know besides the probes.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Seconds per interval.
    pub interval_s: f64,
    /// Stop after this many seconds.
    pub duration_s: Option<f64>,
    /// Stop when this process exits (`--pid`).
    pub pid: Option<u32>,
    /// Processes listed in the JSON windows.
    pub top: usize,
    /// A command was given after `--` (the run's exit code is its).
    pub command: bool,
    /// The ring buffer's size, for the advice when records were dropped.
    pub ringbuf_mib: u32,
}

/// One interval as the event loop hands it to a sink.
pub struct Tick<'a> {
    /// When it ended, CLOCK_MONOTONIC ns.
    pub now_ns: u64,
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Its length, s.
    pub interval_s: f64,
    /// What it aggregated.
    pub totals: &'a Totals,
    /// Records dropped in it.
    pub dropped: &'a Drops,
    /// Records dropped since the start.
    pub dropped_total: &'a Drops,
    /// The topology, when it changed in this interval.
    pub topology: Option<&'a Topology>,
    /// Blast radii settled in this interval (logged in the aggregator too).
    pub blast: &'a [crate::model::schema::BlastRadius],
    /// The aggregator (whole run so far).
    pub agg: &'a Aggregator,
    /// The probes.
    pub tracer: &'a Tracer,
    /// Records that did not decode, since the start.
    pub decode_errors: u64,
}

/// The end of a run as the event loop hands it to a sink.
pub struct Finish<'a> {
    /// When it ended, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
    /// Its length, s.
    pub t_s: f64,
    /// The whole run.
    pub summary: &'a Window,
    /// The aggregator.
    pub agg: &'a Aggregator,
    /// Records dropped over the run.
    pub dropped: &'a Drops,
    /// The command's exit code.
    pub exit_code: Option<i32>,
}

/// Where a run's events and intervals go.
pub trait Sink {
    /// Input the sink reads while the run goes (keys, for the dashboard).
    type Input: Send + 'static;

    /// The input channel, taken once at the start; `None` for sinks without input.
    fn take_input(&mut self) -> Option<UnboundedReceiver<Self::Input>> {
        None
    }
    /// The run has started. `Ok(false)` ends it (the reader went away).
    fn start(&mut self, _start: &Start) -> Result<bool> {
        Ok(true)
    }
    /// A raw record the run counts (after the window and the filters).
    fn record(&mut self, _raw: &[u8]) {}
    /// Why the sink cannot go on (a recording's disk failed), checked between intervals.
    fn failure(&mut self) -> Option<Error> {
        None
    }
    /// An interval ended. `Ok(false)` ends the run.
    fn interval(&mut self, tick: &Tick) -> Result<bool>;
    /// Input arrived. `Ok(false)` ends the run.
    fn input(&mut self, _input: Self::Input) -> Result<bool> {
        Ok(true)
    }
    /// The run ended; `open`: the sink had not ended it.
    fn finish(self, end: &Finish, open: bool) -> Result<()>;
}

/// Counters of the read side.
#[derive(Debug, Default)]
struct ReadStats {
    decode_errors: u64,
    before_window: u64,
}

/// The event loop's state between intervals.
struct Loop {
    agg: Aggregator,
    topo: Topology,
    rs: ReadStats,
    start_ns: u64,
    last_ns: u64,
    drops_start: Drops,
    drops_last: Drops,
    skip_pid: Option<u32>,
    blast: blast::Watch,
    /// Faults counted in the kernel (the live modes), from the window's baseline.
    faults: Option<FaultTracker>,
    /// Fault latency in the kernel's histograms, and the tier slots they are placed by.
    latency: Option<(LatencyTracker, TierSlots)>,
    /// The topology changed: the kernel's tier tables are to be replaced.
    retier: bool,
}

impl Loop {
    fn new(
        tracer: &Tracer,
        topo: Topology,
        start_ns: u64,
        drops_start: Drops,
        skip_pid: Option<u32>,
        reader: blast::ProcReader,
        kernel: &setup::KernelStart,
    ) -> Self {
        let tiers = TierMap::from_topology(&topo);
        let slots = TierSlots::new(&tiers);
        Self {
            agg: Aggregator::with_context(tiers, tracer.rare.clone(), tracer.availability.clone()),
            topo,
            rs: ReadStats::default(),
            start_ns,
            last_ns: start_ns,
            drops_last: drops_start.clone(),
            drops_start,
            skip_pid,
            blast: blast::Watch::new(reader, tracer.rare.clone()),
            faults: kernel.faults.as_ref().map(FaultTracker::new),
            latency: kernel
                .latency
                .as_deref()
                .map(|b| (LatencyTracker::new(b), slots)),
            retier: false,
        }
    }

    /// Folds in what the kernel counted since the last interval. A process's name is read
    /// from /proc while it lives (it may have exec'd since it took its slot), else the name it
    /// had then.
    fn kernel_faults(&mut self, tracer: &Tracer) {
        if let (Some((lt, slots)), Some(read)) = (self.latency.as_mut(), tracer.fault_latency()) {
            match read {
                Ok(now) => lt.advance(&now, slots, self.agg.latency_mut()),
                Err(e) => log::warn!("{e}"),
            }
        }
        let Some(ft) = self.faults.as_mut() else {
            return;
        };
        match tracer.fault_counts() {
            Some(Ok(snap)) => {
                let mut d = ft.advance(&snap);
                // The name now (a live process), else the one it exited with, else the one it
                // had at its first fault (a fork's, before its exec).
                for (pid, (comm, _)) in d.by_pid.iter_mut() {
                    if let Ok(name) = std::fs::read(format!("/proc/{pid}/comm")) {
                        *comm = Comm::from_bytes(name.strip_suffix(b"\n").unwrap_or(&name));
                    } else if let Some(name) = tracer.exit_comm(*pid) {
                        *comm = Comm(name);
                    }
                }
                self.agg.ingest_fault_delta(&d, self.skip_pid);
            }
            Some(Err(e)) => log::warn!("{e}"),
            None => {}
        }
    }

    /// After an interval: new tier tables for the kernel when the topology changed (when
    /// the new pfn table does not fit, the old one stays and pages of new memory count in
    /// the unknown tier), the fault slots of processes that have all exited freed, and the
    /// run's per-process table bounded (the busiest `keep` rows stay).
    fn after_interval(&mut self, tracer: &mut Tracer, keep: usize) {
        if std::mem::take(&mut self.retier) {
            if let Some((_, slots)) = self.latency.as_mut() {
                // The aggregator's tiers, built from the new topology in `interval`.
                let tm = self.agg.tiers();
                match crate::model::kernel_latency::pfn_ranges(tm) {
                    Some(ranges) => {
                        let new = TierSlots::new(tm);
                        match tracer.set_tier_tables(&new, &ranges) {
                            Ok(()) => *slots = new,
                            Err(e) => log::warn!("{e}"),
                        }
                    }
                    None => log::warn!(
                        "the new memory layout has more pfn ranges than the kernel's table holds: faults on new memory count in the unknown tier"
                    ),
                }
            }
        }
        self.free_fault_slots(tracer);
        // The run's per-process table stays bounded under process churn; the busiest
        // `keep` rows and every per-name sum stay exact.
        self.agg.fold_exited(alive, keep);
    }

    /// Lets the kernel hand over the fault slots of processes that have all exited.
    fn free_fault_slots(&mut self, tracer: &mut Tracer) {
        let Some(ft) = self.faults.as_mut() else {
            return;
        };
        let gone = ft.releasable(alive);
        if gone.is_empty() {
            return;
        }
        match tracer.release_fault_slots(&gone) {
            Ok(()) => ft.released(&gone),
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Drains every record currently in the ring buffer into the aggregator (and the sink:
    /// exactly the records the aggregator counts).
    fn drain<S: Sink>(&mut self, ring: &mut Ring, sink: &mut S) {
        while let Some(item) = ring.0.next() {
            match decode(&item) {
                Ok(ev) if ev.ts_ns() < self.start_ns => self.rs.before_window += 1,
                // cxl-trace's own faults while it spawns the command (see `spawn_followed`).
                Ok(Event::Fault(f)) if Some(f.pid) == self.skip_pid => {}
                Ok(ev) => {
                    self.agg.ingest(&ev);
                    self.blast.event(&ev, self.agg.tiers());
                    sink.record(&item);
                }
                Err(e) => {
                    self.rs.decode_errors += 1;
                    if self.rs.decode_errors == 1 {
                        log::warn!("undecodable record: {e}");
                    }
                }
            }
        }
        // Who had pages where a memory error struck, read while it is still true.
        self.blast.read_pending(monotonic_ns);
    }

    /// Ends an interval: re-reads the topology (a change is logged and used from now on),
    /// then hands the interval to the sink.
    fn interval<S: Sink>(&mut self, tracer: &Tracer, sink: &mut S, last: bool) -> Result<bool> {
        let now = monotonic_ns();
        let blast = self.blast.settle(now, last);
        for b in &blast {
            self.agg.log(LogEntry::Blast(b.clone()));
        }
        self.kernel_faults(tracer);
        let drops = tracer.drops();
        let live = Topology::live();
        let changed = match topology_change(&self.topo, &live) {
            Some(change) => {
                self.agg.set_tiers(TierMap::from_topology(&live));
                self.retier = true;
                self.agg.log(LogEntry::Topology(change));
                self.topo = live;
                true
            }
            None => false,
        };
        let totals = self.agg.end_interval();
        let tick = Tick {
            now_ns: now,
            t_s: (now - self.start_ns) as f64 / 1e9,
            interval_s: (now - self.last_ns) as f64 / 1e9,
            totals: &totals,
            dropped: &drops_since(&drops, &self.drops_last),
            dropped_total: &drops_since(&drops, &self.drops_start),
            topology: changed.then_some(&self.topo),
            blast: &blast,
            agg: &self.agg,
            tracer,
            decode_errors: self.rs.decode_errors,
        };
        let open = sink.interval(&tick);
        self.drops_last = drops;
        self.last_ns = now;
        open
    }
}

/// Whether process `pid` still exists (its /proc directory).
pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs the event loop until `--duration`, the command's or `--pid`'s exit, a signal, or the
/// sink ends it; returns the exit code (the command's when one was given, else 0).
pub async fn run<S: Sink>(live: Live, mut sink: S, cfg: &RunConfig) -> Result<i32> {
    let start = live.start_line(cfg.interval_s);
    let Live {
        mut tracer,
        mut ring,
        mut child,
        start_ns,
        vm_start,
        drops_start,
        topology,
        skip_pid,
        proc_reader,
        kernel_start,
        ..
    } = live;
    let mut input = sink.take_input();
    let mut open = sink.start(&start)?;
    let mut lp = Loop::new(
        &tracer,
        topology,
        start_ns,
        drops_start,
        skip_pid,
        proc_reader,
        &kernel_start,
    );
    let Timers {
        mut ticker,
        mut poll,
        deadline,
        mut sigterm,
        mut sigint,
    } = Timers::new(cfg)?;
    let mut signals_seen = 0u32;
    let mut code = 0;
    while open {
        if let Some(failed) = sink.failure() {
            // A full disk or an I/O error: stop at once rather than trace into nothing. The
            // command after -- is ended as on a second Ctrl-C; dropping the tracer on return
            // detaches every program; the file reads back up to its last complete chunk.
            end_child(child.take()).await;
            return Err(failed);
        }
        tokio::select! {
            _ = poll.tick() => lp.drain(ring.get_mut(), &mut sink),
            guard = ring.readable_mut() => {
                let mut g = guard.map_err(|e| Error::Runtime(format!("polling the ring buffer: {e}")))?;
                lp.drain(g.get_inner_mut(), &mut sink);
                g.clear_ready();
            }
            _ = ticker.tick() => {
                lp.drain(ring.get_mut(), &mut sink);
                open = lp.interval(&tracer, &mut sink, false)?;
                lp.after_interval(&mut tracer, cfg.top);
                if let Some(pid) = cfg.pid {
                    if !alive(pid) {
                        eprintln!("cxl-trace: process {pid} exited");
                        break;
                    }
                }
            }
            status = wait_child(&mut child) => {
                code = match status {
                    Ok(s) => exit_code(s),
                    Err(e) => {
                        eprintln!("cxl-trace: waiting for the command failed: {e}");
                        1
                    }
                };
                child = None;
                break;
            }
            msg = next_input(&mut input) => {
                let Some(msg) = msg else {
                    // The input thread ended (terminal gone): keep tracing without keys.
                    input = None;
                    continue;
                };
                if !sink.input(msg)? {
                    break;
                }
            }
            _ = sleep_until_opt(deadline) => break,
            sig = async { tokio::select! { _ = sigint.recv() => libc::SIGINT, _ = sigterm.recv() => libc::SIGTERM } } => {
                signals_seen += 1;
                if !pass_on(child.as_ref(), signals_seen, sig) {
                    break;
                }
            }
        }
    }
    // Stopped by --duration or a second signal: end the command too.
    if let Some(c) = end_child(child.take()).await {
        code = c;
    }
    // Everything the kernel submitted before this point is in the ring buffer now.
    lp.drain(ring.get_mut(), &mut sink);
    // A last, partial interval, unless the run ended right on a tick with nothing new.
    // Open incidents settle in it: their fates are read now.
    let partial = lp.agg.interval().events > 0
        || lp.blast.is_open()
        || monotonic_ns().saturating_sub(lp.last_ns) >= 1_000_000;
    if open && partial {
        open = lp.interval(&tracer, &mut sink, true)?;
    }
    finish(lp, &tracer, &vm_start, sink, open, cfg, code)?;
    Ok(code)
}

/// Ends the command, if it still runs; its exit code.
async fn end_child(child: Option<tokio::process::Child>) -> Option<i32> {
    let mut c = child?;
    let _ = c.start_kill();
    Some(match c.wait().await {
        Ok(s) => exit_code(s),
        Err(_) => 1,
    })
}

/// The event loop's clocks and signals.
struct Timers {
    /// One tick per interval.
    ticker: tokio::time::Interval,
    /// The kernel side wakes us only once the ring holds 1/32 of its size (see the eBPF
    /// `submit_flags`); below that, records are collected on this timer.
    poll: tokio::time::Interval,
    /// `--duration`.
    deadline: Option<Instant>,
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
}

impl Timers {
    fn new(cfg: &RunConfig) -> Result<Self> {
        let period = Duration::from_secs_f64(cfg.interval_s);
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            ticker,
            poll,
            deadline: cfg
                .duration_s
                .map(|d| Instant::now() + Duration::from_secs_f64(d)),
            sigterm: signal(SignalKind::terminate())
                .map_err(|e| Error::Runtime(format!("SIGTERM handler: {e}")))?,
            sigint: signal(SignalKind::interrupt())
                .map_err(|e| Error::Runtime(format!("SIGINT handler: {e}")))?,
        })
    }
}

/// The first signal with a command is passed on, and the run waits for the command to exit;
/// false: end the run now.
fn pass_on(child: Option<&tokio::process::Child>, seen: u32, sig: i32) -> bool {
    match (child, seen) {
        (Some(c), 1) => {
            if let Some(pid) = c.id() {
                // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
                unsafe { libc::kill(pid as libc::pid_t, sig) };
            }
            true
        }
        _ => false,
    }
}

/// The whole run's window, handed to the sink; then what the user must know on stderr.
fn finish<S: Sink>(
    lp: Loop,
    tracer: &Tracer,
    vm_start: &crate::model::vmstat::Vmstat,
    sink: S,
    open: bool,
    cfg: &RunConfig,
    code: i32,
) -> Result<()> {
    let end_ns = monotonic_ns();
    let t_s = (end_ns - lp.start_ns) as f64 / 1e9;
    let vm_end = crate::model::vmstat::read()?;
    let dropped = drops_since(&tracer.drops(), &lp.drops_start);
    let (field_read, follow_map_full) = tracer.errors();
    let exit_code = cfg.command.then_some(code);
    let mut summary = lp.agg.window(
        LineKind::Summary,
        t_s,
        t_s,
        lp.agg.run(),
        &dropped,
        &vm_end.delta(vm_start),
        cfg.top,
    );
    summary.produced = Some(tracer.produced());
    let skipped = tracer.skipped_runs();
    summary.kernel_skipped_runs = Some(skipped.clone());
    summary.errors = Some(Errors {
        decode: lp.rs.decode_errors,
        field_read,
        follow_map_full,
    });
    summary.before_window = Some(lp.rs.before_window);
    summary.exit_code = exit_code;
    let finished = sink.finish(
        &Finish {
            end_ns,
            t_s,
            summary: &summary,
            agg: &lp.agg,
            dropped: &dropped,
            exit_code,
        },
        open,
    );
    if !skipped.is_empty() {
        eprintln!(
            "cxl-trace: warning: the kernel skipped {} program runs (its recursion guard: {}); events of those runs are neither received nor counted as dropped",
            skipped.values().sum::<u64>(),
            skipped
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if dropped.total() > 0 {
        eprintln!(
            "cxl-trace: warning: {} events were dropped (ring buffer full); counts are incomplete, try --ringbuf-mib {}",
            dropped.total(),
            (cfg.ringbuf_mib * 4).min(1024)
        );
    }
    finished
}

/// The next input from the sink's channel; never resolves without one.
async fn next_input<T>(input: &mut Option<UnboundedReceiver<T>>) -> Option<T> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
