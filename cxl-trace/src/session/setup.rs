//! Setting a run up: the probes attached, the window opened, the command started, the
//! privileges dropped. What the run's outputs say about it (its start line, a recording's
//! header) is built from here.

use std::fs::File;

use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    cli::TraceArgs,
    error::{Error, Result},
    model::{
        aggregate::Drops,
        filter,
        recording::Header,
        schema::{LineKind, Start, SCHEMA_VERSION},
        status::{Privileges, ProbeStatus},
        topology::Topology,
        vmstat::{self, Vmstat},
    },
    probe::{caps::read_trimmed, Ring, TraceConfig, Tracer},
    session::{
        child::{follow_tree, spawn_followed},
        clock::monotonic_ns,
    },
};

/// A run, attached and ready for its event loop.
pub struct Live {
    /// The attached probes.
    pub tracer: Tracer,
    /// Their ring buffer, polled by the event loop.
    pub ring: AsyncFd<Ring>,
    /// The command started after `--`.
    pub child: Option<tokio::process::Child>,
    /// The window opened here (CLOCK_MONOTONIC ns): earlier records are not counted.
    pub start_ns: u64,
    /// /proc/vmstat when the window opened.
    pub vm_start: Vmstat,
    /// The drop counters when the window opened.
    pub drops_start: Drops,
    /// What was dropped after attaching.
    pub privileges: Privileges,
    /// What is traced, in words.
    pub scope: String,
    /// The topology at the start.
    pub topology: Topology,
    /// The running kernel's release.
    pub kernel: String,
    /// cxl-trace's own pid when following a command: its faults while spawning are not the
    /// command's. System-wide runs count cxl-trace like any other process.
    pub skip_pid: Option<u32>,
    /// What the kernel had aggregated when the window opened.
    pub kernel_start: KernelStart,
    /// The pid followed (`--pid`, or the command's).
    pub pid: Option<u32>,
    /// Reads blast radii (opened with privileges).
    pub proc_reader: crate::session::blast::ProcReader,
}

impl Live {
    /// Attaches the probes `t` asks for, follows `--pid` or starts the command, then drops
    /// privileges (keeping `output` writable). `bpf_stats`: turn on the kernel's run-time
    /// statistics (two clock reads per program run, so only the dashboard asks). `counts`:
    /// the run shows counts, not single faults, so the kernel may count faults itself (unless
    /// `--fault-events`); a recording keeps every fault.
    pub fn open(
        t: &TraceArgs,
        output: Option<&File>,
        bpf_stats: bool,
        counts: bool,
    ) -> Result<Live> {
        if let Some(pid) = t.pid {
            if !super::alive(pid) {
                return Err(Error::NoSuchProcess(pid));
            }
        }
        let follows = t.pid.is_some() || !t.command.is_empty();
        let fault_agg = counts && !t.fault_events && !t.ring_bench;
        let latency_agg = fault_agg.then(latency_tables).flatten();
        let mut tracer = Tracer::start(&TraceConfig {
            filter: follows,
            cgroup: t
                .cgroup
                .as_deref()
                .map(filter::resolve_cgroup)
                .transpose()?,
            comm: comm_filter(t.comm.as_deref())?,
            ringbuf_bytes: t.ringbuf_mib << 20,
            prefer_kprobes: t.kprobes,
            functions: !t.tracepoints_only,
            ring_bench: t.ring_bench,
            fault_agg,
            latency_agg,
            bpf_stats: bpf_stats && !t.no_bpf_stats,
            decisions: decision_hooks(t.promotion_decisions),
            ..TraceConfig::default()
        })?;
        // The window opens once everything is attached, before anyone is told so: a user (or
        // a test) that starts its workload on the "live probes" line must not lose its first
        // events. The drop counters' baseline belongs to the same instant.
        let start_ns = monotonic_ns();
        let vm_start = vmstat::read()?;
        let drops_start = tracer.drops();
        let faults_start = tracer.fault_counts().transpose()?;
        let latency_start = tracer.fault_latency().transpose()?;
        print_probes(&tracer.statuses, &tracer.warnings);
        let ring = tracer
            .take_ring()
            .ok_or_else(|| Error::Runtime("ring buffer already taken".into()))?;
        // SAFETY: `Ring` owns the ring buffer map and its fd; the fd stays open and unchanged
        // until the AsyncFd (which owns the Ring) is dropped, and `as_raw_fd` always returns
        // that fd.
        let ring = unsafe { AsyncFd::register_with_interest(Ring(ring), Interest::READABLE) }
            .map_err(|e| Error::Runtime(format!("cannot poll the ring buffer: {e}")))?;
        if let Some(pid) = t.pid {
            follow_tree(&mut tracer, pid)?;
        }
        let child = match t.command.is_empty() {
            true => None,
            false => Some(spawn_followed(&t.command, &mut tracer)?),
        };
        // Everything privileged is done: the probes are attached, the recording is open, the
        // command is started. Before any other thread exists, drop what is left.
        let (proc_reader, helper) = crate::session::blast::ProcReader::open();
        let mut privileges = crate::session::privs::drop_after_attach(output, child.is_some());
        privileges.summary = format!("{}; {helper}", privileges.summary);
        eprintln!("cxl-trace: privileges: {}", privileges.summary);
        let pid = t.pid.or_else(|| child.as_ref().and_then(|c| c.id()));
        Ok(Live {
            tracer,
            ring,
            child,
            start_ns,
            vm_start,
            drops_start,
            privileges,
            scope: scope(t),
            topology: Topology::live(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            skip_pid: follows.then(std::process::id),
            kernel_start: KernelStart {
                faults: faults_start,
                latency: latency_start,
            },
            pid,
            proc_reader,
        })
    }

    /// The run's start line.
    pub fn start_line(&self, interval_s: f64) -> Start {
        Start {
            schema_version: SCHEMA_VERSION,
            kind: LineKind::Start,
            version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: self.kernel.clone(),
            interval_s,
            probes: self.tracer.statuses.clone(),
            warnings: self.tracer.warnings.clone(),
            tiers: self.topology.tiers.clone(),
            settings: self.topology.settings.clone(),
            pid: self.pid,
            scope: self.scope.clone(),
            privileges: Some(self.privileges.clone()),
            replay_of: None,
        }
    }

    /// A recording's header for this run.
    pub fn header(&self, interval_s: f64, target_command: &[String]) -> Header {
        Header {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: self.kernel.clone(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
            command_line: std::env::args().collect(),
            target_command: target_command.to_vec(),
            scope: self.scope.clone(),
            start_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            start_monotonic_ns: self.start_ns,
            interval_s,
            probes: self.tracer.statuses.clone(),
            availability: self.tracer.availability.clone(),
            topology: self.topology.clone(),
            rare: self.tracer.rare.clone(),
            redacted: false,
            kernel_ips: false,
            privileges: Some(self.privileges.clone()),
        }
    }
}

/// `--comm NAME` as the kernel compares it (15 bytes and a NUL); says so when it is cut.
fn comm_filter(name: Option<&str>) -> Result<Option<[u8; cxl_trace_common::COMM_LEN]>> {
    let Some(name) = name else { return Ok(None) };
    let (bytes, cut) = filter::comm_bytes(name)?;
    if cut {
        eprintln!(
            "cxl-trace: note: --comm {name}: thread names are at most 15 bytes; matching {:?}",
            String::from_utf8_lossy(&bytes[..15])
        );
    }
    Ok(Some(bytes))
}

/// What is traced, in words.
fn scope(t: &TraceArgs) -> String {
    match (&t.pid, &t.cgroup, &t.comm) {
        (Some(p), _, _) => format!("pid {p} and descendants"),
        (_, Some(c), _) => format!("cgroup {c} and below"),
        (_, _, Some(c)) => format!("threads named {c}"),
        _ if !t.command.is_empty() => format!("{} and descendants", t.command.join(" ")),
        _ => "all processes".to_string(),
    }
}

fn print_probes(statuses: &[ProbeStatus], warnings: &[String]) {
    let live: Vec<&str> = statuses
        .iter()
        .filter(|s| s.is_live())
        .map(|s| s.name.as_str())
        .collect();
    eprintln!("cxl-trace: live probes: {}", live.join(", "));
    // What the user loses, once per cause; `doctor --verbose` has each probe's reason.
    for l in crate::model::status::lost_lines(statuses) {
        eprintln!("cxl-trace: {l}");
    }
    for w in warnings {
        eprintln!("cxl-trace: warning: {w}");
    }
}

/// Whether to attach the promotion-decision hooks, and why not.
fn decision_hooks(when: crate::cli::DecisionHooks) -> std::result::Result<(), String> {
    let mode = read_trimmed("/proc/sys/kernel/numa_balancing").and_then(|v| v.parse::<u32>().ok());
    decide_decision_hooks(when, mode)
}

/// [`decision_hooks`] for a `kernel.numa_balancing` value (pure).
pub(crate) fn decide_decision_hooks(
    when: crate::cli::DecisionHooks,
    mode: Option<u32>,
) -> std::result::Result<(), String> {
    use crate::cli::DecisionHooks;
    match (when, mode) {
        (DecisionHooks::Always, _) => Ok(()),
        (DecisionHooks::Never, _) => Err("--promotion-decisions never".into()),
        (DecisionHooks::Auto, Some(m)) if m & 2 != 0 => Ok(()),
        (DecisionHooks::Auto, m) => Err(format!(
            "kernel.numa_balancing is {} at the start (no tiering mode, so no promotion decisions); left off, they would run on every page-state change; --promotion-decisions always attaches them",
            m.map_or_else(|| "unreadable".to_string(), |m| m.to_string())
        )),
    }
}

/// What the kernel had aggregated when the window opened (the live modes).
#[derive(Clone, Debug, Default)]
pub struct KernelStart {
    /// Fault counters (`None`: faults come as records).
    pub faults: Option<crate::model::fault_counts::FaultSnapshot>,
    /// Fault-latency histograms (`None`: timed faults come as records).
    pub latency: Option<Vec<cxl_trace_common::LatHist>>,
}

/// The tier tables the kernel needs to put timed faults in per-tier histograms, from the
/// topology now; `None` when its pfn table would not fit (then a record per timed fault).
pub(crate) fn latency_tables() -> Option<(
    crate::model::kernel_latency::TierSlots,
    cxl_trace_common::PfnRanges,
)> {
    use crate::model::{kernel_latency, tiers::TierMap};
    let tm = TierMap::from_topology(&Topology::live());
    kernel_latency::pfn_ranges(&tm).map(|r| (kernel_latency::TierSlots::new(&tm), r))
}

#[cfg(test)]
mod decision_tests {
    use super::decide_decision_hooks;
    use crate::cli::DecisionHooks::{Always, Auto, Never};

    #[test]
    fn decision_hooks_follow_the_tiering_bit() {
        assert!(decide_decision_hooks(Auto, Some(2)).is_ok());
        assert!(decide_decision_hooks(Auto, Some(3)).is_ok());
        let off = decide_decision_hooks(Auto, Some(1)).expect_err("mode 1 has no tiering");
        assert!(off.contains("kernel.numa_balancing is 1"), "{off}");
        assert!(decide_decision_hooks(Auto, None).is_err());
        assert!(decide_decision_hooks(Always, Some(0)).is_ok());
        assert!(decide_decision_hooks(Never, Some(2)).is_err());
    }
}
