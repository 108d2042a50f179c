//! `cxl-trace top`: the event loop. On a terminal it drives the dashboard (`crate::tui`);
//! with `--no-tui`, or when stdout is not a terminal, it prints one JSON object per interval.
//!
//! Lines: one `{"type":"start"}` with the live probes, one `{"type":"interval"}` per interval,
//! one `{"type":"summary"}` with the whole run at the end. See README "JSON output".

use std::{io::IsTerminal, path::Path, process::ExitStatus, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::Instant,
};

use crate::{
    cli::TopOpts,
    cmd::record::{RecordSpec, Recorder},
    error::{Error, Result},
    model::aggregate::{Aggregator, Drops},
    model::event::{decode, Event},
    model::recording::{ChunkKind, Header},
    model::schema::{
        BlockCount, Errors, LineKind, LogEntry, NodeAdded, Start, TopologyChange, SCHEMA_VERSION,
    },
    model::tiers::TierMap,
    model::topology::Topology,
    model::vmstat::{self, Vmstat},
    probe::{ProbeStatus, Ring, TraceConfig, Tracer},
    tui::{
        header_info, spawn_input,
        state::{Action, Dashboard, Msg, Sample},
        Screen,
    },
};

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

fn emit<T: serde::Serialize>(v: &T) -> Result<bool> {
    crate::output::write_stdout(crate::model::schema::to_line(v)?.as_bytes())
}

/// The dashboard and its terminal, when `top` runs with one.
struct Ui {
    dash: Dashboard,
    screen: Screen,
    /// The tool's CPU time at the last interval, s.
    cpu_last: f64,
    /// BPF run time at the last interval, ns.
    bpf_last: Option<u64>,
}

/// CPU time (user + system) this process used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The next key or resize from the input thread; never resolves without one.
async fn next_input(input: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Msg>>) -> Option<Msg> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Counters of the read side.
#[derive(Debug, Default)]
struct ReadStats {
    decode_errors: u64,
    before_window: u64,
    /// cxl-trace's own pid when following a command: its faults while spawning are not the
    /// command's. System-wide runs count cxl-trace like any other process.
    skip_pid: Option<u32>,
}

/// Drains every record currently in the ring buffer into the aggregator (and the recording:
/// exactly the records the aggregator counts).
fn drain(
    ring: &mut Ring,
    agg: &mut Aggregator,
    start_ns: u64,
    rs: &mut ReadStats,
    rec: &mut Option<Recorder>,
) {
    let me = rs.skip_pid;
    while let Some(item) = ring.0.next() {
        match decode(&item) {
            Ok(ev) if ev.ts_ns() < start_ns => rs.before_window += 1,
            // cxl-trace's own faults while it spawns the command (see `spawn_followed`).
            Ok(Event::Fault(f)) if Some(f.pid) == me => {}
            Ok(ev) => {
                agg.ingest(&ev);
                if let Some(r) = rec.as_mut() {
                    r.event(&item);
                }
            }
            Err(e) => {
                rs.decode_errors += 1;
                if rs.decode_errors == 1 {
                    log::warn!("undecodable record: {e}");
                }
            }
        }
    }
}

/// The error that ends a run whose recording could not be written (`what`: the file and why).
fn recording_stopped(what: impl std::fmt::Display) -> Error {
    Error::Runtime(format!(
        "recording stopped: {what}; the file reads back up to its last complete chunk"
    ))
}

/// Drops counted since `before`, per kind.
pub(crate) fn drops_since(now: &Drops, before: &Drops) -> Drops {
    Drops {
        by_kind: now
            .by_kind
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(before.by_kind.get(k).copied().unwrap_or(0)),
                )
            })
            .collect(),
    }
}

/// Adds `pid` and its current descendants to the follow set.
fn follow_tree(tracer: &mut Tracer, pid: u32) -> Result<()> {
    let mut stack = vec![pid];
    let mut seen = 0usize;
    while let Some(p) = stack.pop() {
        tracer.follow(p)?;
        seen += 1;
        if seen > cxl_trace_common::FOLLOW_MAX as usize {
            break;
        }
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    Ok(())
}

/// Starts `cmd` so that it is followed from its first instruction: cxl-trace follows itself
/// for the duration of the spawn, so the in-kernel fork hook adds the child before it runs,
/// then stops following itself (its own events are discarded by the reader).
fn spawn_followed(cmd: &[String], tracer: &mut Tracer) -> Result<tokio::process::Child> {
    let Some((prog, args)) = cmd.split_first() else {
        return Err(Error::Usage("no command given after --".into()));
    };
    let me = std::process::id();
    tracer.follow(me)?;
    let spawned = tokio::process::Command::new(prog)
        .args(args)
        .kill_on_drop(true)
        .spawn();
    let unfollowed = tracer.unfollow(me);
    let child = spawned.map_err(|e| Error::Spawn {
        cmd: cmd.join(" "),
        source: e,
    })?;
    unfollowed?;
    Ok(child)
}

/// Shell-style exit code of a finished command.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

async fn wait_child(child: &mut Option<tokio::process::Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Re-reads the topology; on a change (memory hotplug, a CXL region onlined) switches the
/// aggregator to it and logs what changed.
/// Re-reads the topology; true when it changed (and the aggregator now uses the new one).
fn refresh_topology(agg: &mut Aggregator, current: &mut Topology) -> bool {
    let now = Topology::live();
    if let Some(change) = topology_change(current, &now) {
        agg.set_tiers(TierMap::from_topology(&now));
        agg.log(LogEntry::Topology(change));
        *current = now;
        return true;
    }
    false
}

/// What changed between two topologies (nodes, tiers, memory blocks), as a log entry.
pub fn topology_change(old: &Topology, new: &Topology) -> Option<TopologyChange> {
    let ids = |t: &Topology| t.nodes.iter().map(|n| n.id).collect::<Vec<_>>();
    let blocks = |t: &Topology| t.nodes.iter().map(|n| n.memory_blocks.len()).sum::<usize>();
    if ids(old) == ids(new) && old.tiers == new.tiers && blocks(old) == blocks(new) {
        return None;
    }
    let nodes_added = new
        .nodes
        .iter()
        .filter(|n| !old.nodes.iter().any(|o| o.id == n.id))
        .map(|n| NodeAdded {
            node: n.id,
            tier: n.tier,
            cxl: n.cxl,
            mem_total_kib: n.mem_total_kib,
        })
        .collect();
    let nodes_removed = old
        .nodes
        .iter()
        .filter(|o| !new.nodes.iter().any(|n| n.id == o.id))
        .map(|o| o.id)
        .collect();
    Some(TopologyChange {
        event: "topology_changed".into(),
        class: "hotplug".into(),
        nodes_added,
        nodes_removed,
        memory_blocks: BlockCount {
            before: blocks(old),
            after: blocks(new),
        },
        tiers: new.tiers.clone(),
    })
}

fn print_probes(statuses: &[ProbeStatus], warnings: &[String]) {
    let live: Vec<&str> = statuses
        .iter()
        .filter(|s| s.is_live())
        .map(|s| s.name.as_str())
        .collect();
    eprintln!("cxl-trace: live probes: {}", live.join(", "));
    for s in statuses.iter().filter(|s| !s.is_live()) {
        eprintln!("cxl-trace: unavailable: {}: {}", s.name, s.reason);
    }
    for w in warnings {
        eprintln!("cxl-trace: warning: {w}");
    }
}

/// Runs `top`. Returns the exit code: the command's when one was given, else 0.
pub async fn run(opts: TopOpts) -> Result<i32> {
    session(opts, None).await
}

/// A snapshot chunk: vmstat, per-node meminfo, cumulative drops and produced counts, and the
/// topology when it changed.
fn snapshot(
    t_s: f64,
    vm: &Vmstat,
    tracer: &Tracer,
    drops: &Drops,
    topo: Option<&Topology>,
) -> Value {
    let mut v = json!({
        "t": t_s,
        "vmstat": vm.0,
        "meminfo": crate::cmd::record::node_meminfo(),
        "drops": drops.by_kind,
        "produced": tracer.produced(),
    });
    if let (Some(t), Value::Object(m)) = (topo, &mut v) {
        m.insert(
            "topology".into(),
            serde_json::to_value(t).unwrap_or(Value::Null),
        );
    }
    v
}

/// The event loop of `top`, and of `record` when `record` is given: then nothing goes to
/// stdout (it belongs to the command) and every counted record is written to the recording.
pub async fn session(opts: TopOpts, record: Option<RecordSpec>) -> Result<i32> {
    let recording = record.is_some();
    let tui = !recording && !opts.no_tui && std::io::stdout().is_terminal();
    if let Some(pid) = opts.trace.pid {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Error::NoSuchProcess(pid));
        }
    }
    let filter = opts.trace.pid.is_some() || !opts.trace.command.is_empty();
    let cgroup = opts
        .trace
        .cgroup
        .as_deref()
        .map(crate::session::filter::resolve_cgroup)
        .transpose()?;
    let comm = match opts.trace.comm.as_deref() {
        None => None,
        Some(name) => {
            let (bytes, cut) = crate::session::filter::comm_bytes(name)?;
            if cut {
                eprintln!(
                    "cxl-trace: note: --comm {name}: thread names are at most 15 bytes; matching {:?}",
                    String::from_utf8_lossy(&bytes[..15])
                );
            }
            Some(bytes)
        }
    };
    let mut tracer = Tracer::start(&TraceConfig {
        filter,
        cgroup,
        comm,
        ringbuf_bytes: opts.trace.ringbuf_mib << 20,
        prefer_kprobes: opts.trace.kprobes,
        functions: !opts.trace.tracepoints_only,
        ring_bench: opts.trace.ring_bench,
        fault_counts_only: opts.trace.fault_counts_only,
        // Only the dashboard shows the programs' run time; the statistics cost two clock
        // reads per program run, so nothing else pays for them.
        bpf_stats: tui && !opts.trace.no_bpf_stats,
        ..TraceConfig::default()
    })?;
    // The window opens once everything is attached, before anyone is told so: a user (or a
    // test) that starts its workload on the "live probes" line must not lose its first events.
    let start_ns = monotonic_ns();
    let vm_start = vmstat::read()?;
    // The drop counters' baseline belongs to the same instant: drops between here and the
    // event loop (while the start line is printed, or the process is stopped) count.
    let drops_start = tracer.drops();
    print_probes(&tracer.statuses, &tracer.warnings);
    let ring = tracer
        .take_ring()
        .ok_or_else(|| Error::Runtime("ring buffer already taken".into()))?;
    // SAFETY: `Ring` owns the ring buffer map and its fd; the fd stays open and unchanged until
    // the AsyncFd (which owns the Ring) is dropped, and `as_raw_fd` always returns that fd.
    let mut ring = unsafe { AsyncFd::register_with_interest(Ring(ring), Interest::READABLE) }
        .map_err(|e| Error::Runtime(format!("cannot poll the ring buffer: {e}")))?;

    if let Some(pid) = opts.trace.pid {
        follow_tree(&mut tracer, pid)?;
    }
    let mut child = None;
    if !opts.trace.command.is_empty() {
        child = Some(spawn_followed(&opts.trace.command, &mut tracer)?);
    }
    // Everything privileged is done: the probes are attached, the recording is open, the
    // command is started. Before any other thread exists, drop what is left.
    let privileges =
        crate::session::privs::drop_after_attach(record.as_ref().map(|r| &r.file), child.is_some());
    eprintln!("cxl-trace: privileges: {}", privileges.summary);

    let scope = match (&opts.trace.pid, &opts.trace.cgroup, &opts.trace.comm) {
        (Some(p), _, _) => format!("pid {p} and descendants"),
        (_, Some(c), _) => format!("cgroup {c} and below"),
        (_, _, Some(c)) => format!("threads named {c}"),
        _ if !opts.trace.command.is_empty() => {
            format!("{} and descendants", opts.trace.command.join(" "))
        }
        _ => "all processes".to_string(),
    };
    let mut topo = Topology::live();
    let version = env!("CARGO_PKG_VERSION");
    let kernel = crate::probe::caps::read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let start_line = Start {
        schema_version: SCHEMA_VERSION,
        kind: LineKind::Start,
        version: version.to_string(),
        kernel: kernel.clone(),
        interval_s: opts.interval,
        probes: tracer.statuses.clone(),
        warnings: tracer.warnings.clone(),
        tiers: topo.tiers.clone(),
        settings: topo.settings.clone(),
        pid: opts
            .trace
            .pid
            .or_else(|| child.as_ref().and_then(|c: &tokio::process::Child| c.id())),
        scope: scope.clone(),
        privileges: Some(privileges.clone()),
        replay_of: None,
    };
    let (mut ui, mut input) = if tui {
        let mut header = header_info(
            &kernel,
            &topo,
            &tracer.statuses,
            tracer.availability.latency.clone(),
            scope.clone(),
        );
        header.bpf_stats = tracer.bpf_run_ns().is_some();
        let mut ui = Ui {
            dash: Dashboard::new(header),
            screen: Screen::enter()?,
            cpu_last: cpu_seconds(),
            bpf_last: tracer.bpf_run_ns(),
        };
        ui.screen.draw(&ui.dash)?;
        (Some(ui), Some(spawn_input()))
    } else {
        (None, None)
    };
    let mut open = if ui.is_some() || recording {
        true
    } else {
        emit(&start_line)?
    };
    let mut rec = match record {
        None => None,
        Some(spec) => {
            let header = Header {
                tool_version: version.to_string(),
                kernel: kernel.clone(),
                boot_id: crate::probe::caps::read_trimmed("/proc/sys/kernel/random/boot_id")
                    .unwrap_or_default(),
                hostname: crate::probe::caps::read_trimmed("/proc/sys/kernel/hostname")
                    .unwrap_or_default(),
                command_line: std::env::args().collect(),
                target_command: opts.trace.command.clone(),
                scope: scope.clone(),
                start_unix_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                start_monotonic_ns: start_ns,
                interval_s: opts.interval,
                probes: tracer.statuses.clone(),
                availability: tracer.availability.clone(),
                topology: topo.clone(),
                rare: tracer.rare.clone(),
                redacted: false,
                kernel_ips: false,
                privileges: Some(privileges.clone()),
            };
            let mut r = spec.start(header)?;
            r.json(
                ChunkKind::Snapshot,
                start_ns,
                &snapshot(0.0, &vm_start, &tracer, &Drops::default(), None),
            );
            Some(r)
        }
    };

    let mut agg = Aggregator::with_context(
        TierMap::from_topology(&topo),
        tracer.rare.clone(),
        tracer.availability.clone(),
    );
    let mut rs = ReadStats {
        skip_pid: filter.then(std::process::id),
        ..ReadStats::default()
    };
    let period = Duration::from_secs_f64(opts.interval);
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = opts
        .trace
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Error::Runtime(format!("SIGTERM handler: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Error::Runtime(format!("SIGINT handler: {e}")))?;
    let mut signals_seen = 0u32;
    let mut code = 0;
    let mut last_ns = start_ns;
    let mut vm_last = vm_start.clone();
    let mut drops_last = drops_start.clone();

    let mut topo_state = std::mem::take(&mut topo);
    let emit_interval = |agg: &mut Aggregator,
                         topo_state: &mut Topology,
                         tracer: &Tracer,
                         vm_last: &mut Vmstat,
                         drops_last: &mut Drops,
                         last_ns: &mut u64,
                         ui: &mut Option<Ui>,
                         rec: &mut Option<Recorder>|
     -> Result<bool> {
        let now = monotonic_ns();
        let drops = tracer.drops();
        let changed = refresh_topology(agg, topo_state);
        let iv = agg.end_interval();
        let dropped = drops_since(&drops, drops_last);
        let interval_s = (now - *last_ns) as f64 / 1e9;
        let out = match ui {
            Some(ui) => {
                let mut sample = Sample::from_totals(&iv, interval_s, dropped.total());
                let cpu = cpu_seconds();
                sample.tool_cpu_s = (cpu - ui.cpu_last).max(0.0);
                ui.cpu_last = cpu;
                if let Some(b) = tracer.bpf_run_ns() {
                    sample.bpf_run_ns = b.saturating_sub(ui.bpf_last.unwrap_or(b));
                    ui.bpf_last = Some(b);
                }
                ui.dash.update(Msg::Sample(Box::new(sample)));
                ui.screen.draw(&ui.dash)?;
                Ok(true)
            }
            None if rec.is_some() => {
                let vm = vmstat::read()?;
                let t = (now - start_ns) as f64 / 1e9;
                let cumulative = drops_since(&drops, &drops_start);
                if let Some(r) = rec.as_mut() {
                    let snap =
                        snapshot(t, &vm, tracer, &cumulative, changed.then_some(&*topo_state));
                    r.json(ChunkKind::Snapshot, now, &snap);
                    r.show_progress(t, cumulative.total());
                }
                *vm_last = vm;
                Ok(true)
            }
            // Only the JSON lines carry vmstat deltas; the dashboard does not read them.
            None => {
                let vm = vmstat::read()?;
                let line = agg.window(
                    LineKind::Interval,
                    (now - start_ns) as f64 / 1e9,
                    interval_s,
                    &iv,
                    &dropped,
                    &vm.delta(vm_last),
                    opts.top,
                );
                *vm_last = vm;
                emit(&line)
            }
        };
        *drops_last = drops;
        *last_ns = now;
        out
    };

    // The kernel side wakes us only once the ring holds 1/32 of its size (see the eBPF
    // `submit_flags`); below that, records are collected on this timer.
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while open {
        if let Some(failed) = rec.as_mut().and_then(Recorder::failure) {
            // A full disk or an I/O error: stop at once rather than trace into nothing. The
            // command after -- is ended as on a second Ctrl-C; dropping the tracer on return
            // detaches every program; the file reads back up to its last complete chunk.
            if let Some(mut c) = child.take() {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
            if rec.as_ref().is_some_and(|r| r.progress) {
                eprintln!();
            }
            return Err(recording_stopped(failed));
        }
        tokio::select! {
            _ = poll.tick() => {
                drain(ring.get_mut(), &mut agg, start_ns, &mut rs, &mut rec);
            }
            guard = ring.readable_mut() => {
                let mut g = guard.map_err(|e| Error::Runtime(format!("polling the ring buffer: {e}")))?;
                drain(g.get_inner_mut(), &mut agg, start_ns, &mut rs, &mut rec);
                g.clear_ready();
            }
            _ = ticker.tick() => {
                drain(ring.get_mut(), &mut agg, start_ns, &mut rs, &mut rec);
                open = emit_interval(&mut agg, &mut topo_state, &tracer, &mut vm_last, &mut drops_last, &mut last_ns, &mut ui, &mut rec)?;
                if let Some(pid) = opts.trace.pid {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
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
                if let Some(ui) = ui.as_mut() {
                    if ui.dash.update(msg) == Action::Quit {
                        break;
                    }
                    ui.screen.draw(&ui.dash)?;
                }
            }
            _ = sleep_until_opt(deadline) => break,
            sig = async { tokio::select! { _ = sigint.recv() => libc::SIGINT, _ = sigterm.recv() => libc::SIGTERM } } => {
                signals_seen += 1;
                match (&child, signals_seen) {
                    // First signal with a command: pass it on and wait for the command to exit.
                    (Some(c), 1) => {
                        if let Some(pid) = c.id() {
                            // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
                            unsafe { libc::kill(pid as libc::pid_t, sig) };
                        }
                    }
                    _ => break,
                }
            }
        }
    }

    if let Some(mut c) = child.take() {
        // Stopped by --duration or a second signal: end the command too.
        let _ = c.start_kill();
        code = match c.wait().await {
            Ok(s) => exit_code(s),
            Err(_) => 1,
        };
    }
    // Everything the kernel submitted before this point is in the ring buffer now.
    drain(ring.get_mut(), &mut agg, start_ns, &mut rs, &mut rec);
    // A last, partial interval, unless the run ended right on a tick with nothing new.
    let partial = agg.interval().events > 0 || monotonic_ns().saturating_sub(last_ns) >= 1_000_000;
    if open && partial {
        open = emit_interval(
            &mut agg,
            &mut topo_state,
            &tracer,
            &mut vm_last,
            &mut drops_last,
            &mut last_ns,
            &mut ui,
            &mut rec,
        )?;
    }
    // Leave the alternate screen before anything else is printed.
    let was_tui = ui.is_some();
    drop(ui);
    let end_ns = monotonic_ns();
    let vm_end = vmstat::read()?;
    let drops_total = drops_since(&tracer.drops(), &drops_start);
    let (read_errors, follow_full) = tracer.errors();
    let mut summary = agg.window(
        LineKind::Summary,
        (end_ns - start_ns) as f64 / 1e9,
        (end_ns - start_ns) as f64 / 1e9,
        agg.run(),
        &drops_total,
        &vm_end.delta(&vm_start),
        opts.top,
    );
    {
        summary.produced = Some(tracer.produced());
        let skipped = tracer.skipped_runs();
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
        summary.kernel_skipped_runs = Some(skipped);
        summary.errors = Some(Errors {
            decode: rs.decode_errors,
            field_read: read_errors,
            follow_map_full: follow_full,
        });
        summary.before_window = Some(rs.before_window);
        if !opts.trace.command.is_empty() {
            summary.exit_code = Some(code);
        }
    }
    if let Some(mut r) = rec.take() {
        // Counts only, no names: the file's summary is recomputed from its events by readers,
        // and a redacted recording must not carry the live run's process names.
        let end = json!({
            "t": (end_ns - start_ns) as f64 / 1e9,
            "events": r.writer.events,
            "faults_total": agg.run().faults.total,
            "pages_migrated": agg.run().migrations.total().pages_succeeded,
            "drops_total": drops_total.total(),
            "exit_code": (!opts.trace.command.is_empty()).then_some(code),
        });
        r.json(ChunkKind::End, end_ns, &end);
        let (events, path) = (r.writer.events, r.path.clone());
        if r.progress {
            eprintln!();
        }
        if let Some(f) = r.failure() {
            return Err(recording_stopped(f));
        }
        // The last chunk, then the data on the device: an error here is the recording's too.
        r.writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_data())
            .map_err(|e| recording_stopped(format!("{}: {e}", path.display())))?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        eprintln!(
            "cxl-trace: recorded {events} events in {:.1} s to {} ({size} bytes, {:.2} bytes/event): {} faults, {} pages migrated, {} dropped",
            (end_ns - start_ns) as f64 / 1e9,
            path.display(),
            size as f64 / events.max(1) as f64,
            agg.run().faults.total,
            agg.run().migrations.total().pages_succeeded,
            drops_total.total()
        );
    } else if was_tui {
        eprintln!(
            "cxl-trace: {:.1} s, {} events, {} faults, {} pages migrated, {} dropped",
            (end_ns - start_ns) as f64 / 1e9,
            agg.run().events,
            agg.run().faults.total,
            agg.run().migrations.total().pages_succeeded,
            drops_total.total()
        );
    } else if open {
        emit(&summary)?;
    }
    if drops_total.total() > 0 {
        eprintln!(
            "cxl-trace: warning: {} events were dropped (ring buffer full); counts are incomplete, try --ringbuf-mib {}",
            drops_total.total(),
            (opts.trace.ringbuf_mib * 4).min(1024)
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::{Node, Tier};
    use std::collections::BTreeMap;

    fn topo(nodes: &[(u32, u32, usize)]) -> Topology {
        let mut t = Topology::default();
        for &(id, tier, blocks) in nodes {
            t.nodes.push(Node {
                id,
                tier: Some(tier),
                memory_blocks: (0..blocks as u64).collect(),
                ..Node::default()
            });
        }
        let mut tiers: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(id, tier, _) in nodes {
            tiers.entry(tier).or_default().push(id);
        }
        t.tiers = tiers
            .into_iter()
            .map(|(id, nodes)| Tier { id, nodes })
            .collect();
        t
    }

    #[test]
    fn topology_changes_are_reported_once() {
        let before = topo(&[(0, 4, 8)]);
        assert_eq!(topology_change(&before, &before.clone()), None);
        let after = topo(&[(0, 4, 8), (1, 22, 4)]);
        let change = topology_change(&before, &after).expect("a node appeared");
        assert_eq!(change.event, "topology_changed");
        assert_eq!(change.nodes_added[0].node, 1);
        assert_eq!(change.nodes_added[0].tier, Some(22));
        assert_eq!(change.memory_blocks.after, 12);
        let offlined = topo(&[(0, 4, 6)]);
        let change = topology_change(&before, &offlined).expect("blocks went away");
        assert_eq!(change.memory_blocks.before, 8);
        assert!(change.nodes_removed.is_empty());
    }
}
