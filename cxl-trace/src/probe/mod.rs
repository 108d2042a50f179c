//! The only module that touches aya: privilege and capability checks, loading the embedded
//! BPF object, attaching probe families with a status for each, and the ring buffer.
//!
//! One file per probe family ([`faults`], [`migrate`], [`tiering`], [`rare`], [`process`]),
//! holding its programs and how they attach; [`layout`] reads what the programs need to know
//! about this kernel; [`attach`] attaches in the best form the kernel allows; [`object`] is
//! the embedded BPF object.

pub mod attach;
pub mod caps;
pub mod facts;
pub mod faults;
pub mod layout;
pub mod migrate;
pub mod object;
pub mod process;
pub mod rare;
pub mod signature;
pub mod tiering;
pub mod tracefs;

use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, RawFd},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    Btf, Ebpf,
};
use cxl_trace_common::{raw, stat, Kind, RawLayout, EVENTS_MAP, FOLLOW_MAP, STATS_MAP};

pub use crate::model::status::{ProbeStatus, Status};
pub use attach::flatten_error;
pub use faults::fault_layout;
pub use migrate::{check_migration_entry_format, migrate_layout, reason_drift};
pub use object::{has_bpf_object, missing_from_bpf_object};
pub use process::fork_layout;

use crate::{
    error::{Error, Result},
    model::{
        aggregate::Drops,
        rare::{RareDecoder, RARE},
        tiers::Availability,
    },
};
use attach::{Attach, FnHooks};
use tracefs::Tracefs;

/// What to attach.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Page fault exceptions.
    pub faults: bool,
    /// Migration batches.
    pub migrations: bool,
    /// Only emit events of followed processes (and their descendants).
    pub filter: bool,
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ringbuf_bytes: u32,
    /// Also try every attach kind (tp_btf, raw tracepoint, fentry, kprobe): `doctor`.
    pub probe_attach_kinds: bool,
    /// Function hooks where allowed: fault latency, NUMA hinting faults, per-folio migration.
    pub functions: bool,
    /// Rare tracepoints: NUMA task placement, kswapd wake-ups, RAS and CXL events.
    pub rare: bool,
    /// Attach the function hooks as kprobe/kretprobe even where fentry/fexit would work.
    pub prefer_kprobes: bool,
    /// Only faults of tasks in this cgroup v2 subtree.
    pub cgroup: Option<crate::model::filter::CgroupFilter>,
    /// Only faults of threads with this name.
    pub comm: Option<[u8; cxl_trace_common::COMM_LEN]>,
    /// The ring-buffer benchmark's source: synthetic fault records on `getpgid(2)`.
    pub ring_bench: bool,
    /// Faults are counted in the kernel (per CPU, per process), no record per fault: the
    /// live modes.
    pub fault_agg: bool,
    /// Timed faults go into per-tier histograms in the kernel, placed by these tables (the
    /// live modes, where the pfn table fits); `None`: a record per timed fault.
    pub latency_agg: Option<(
        crate::model::kernel_latency::TierSlots,
        cxl_trace_common::PfnRanges,
    )>,
    /// Turn on the kernel's BPF run-time statistics (the tool's own CPU share).
    pub bpf_stats: bool,
    /// Attach the promotion-decision hooks; `Err`: why not (shown as their status).
    pub decisions: std::result::Result<(), String>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            faults: true,
            migrations: true,
            filter: false,
            ringbuf_bytes: 16 << 20,
            probe_attach_kinds: false,
            functions: true,
            rare: true,
            prefer_kprobes: false,
            cgroup: None,
            comm: None,
            ring_bench: false,
            fault_agg: false,
            latency_agg: None,
            bpf_stats: true,
            decisions: Ok(()),
        }
    }
}

/// Loaded and attached programs with their maps. Dropping it detaches everything.
pub struct Tracer {
    /// Keeps the kernel's BPF run-time statistics on while held (`None`: refused).
    bpf_stats: Option<std::os::fd::OwnedFd>,
    /// Keeps the programs (and so their links) alive.
    _ebpf: Ebpf,
    /// Per-probe status, in attach order.
    pub statuses: Vec<ProbeStatus>,
    /// Warnings that did not stop tracing (e.g. RLIMIT_MEMLOCK).
    pub warnings: Vec<String>,
    /// Which derived measurements are available, and why not.
    pub availability: Availability,
    /// Decoder for the rare tracepoints, with this kernel's formats.
    pub rare: RareDecoder,
    ring: Option<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    fault_agg: Option<faults::FaultAggMaps>,
    latency_agg: Option<faults::LatencyAggMaps>,
    follow: BpfHashMap<MapData, u32, u8>,
}

/// Raises RLIMIT_MEMLOCK; returns a warning when the kernel refuses (not fatal: kernels
/// >= 5.11 charge BPF memory to the memory cgroup instead).
pub fn raise_memlock() -> Option<String> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit that lives across the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    if rc == 0 {
        None
    } else {
        Some(format!(
            "setrlimit(RLIMIT_MEMLOCK) refused ({}); not needed on kernels >= 5.11, which charge BPF memory to the memory cgroup",
            std::io::Error::last_os_error()
        ))
    }
}

impl Tracer {
    /// Checks privileges, loads the object with this kernel's offsets and attaches what `cfg`
    /// asks for. A probe that cannot attach is reported unavailable and the rest runs; it is an
    /// error only when nothing at all could be attached.
    pub fn start(cfg: &TraceConfig) -> Result<Self> {
        caps::require_bpf_privileges()?;
        if !has_bpf_object() {
            return Err(Error::NoEbpfObject);
        }
        let mut warnings: Vec<String> = raise_memlock().into_iter().collect();
        let tracefs = Tracefs::locate_or_mount()?;
        let mut statuses = Vec::new();
        let formats = layout::read_formats(&tracefs, cfg, &mut statuses, &mut warnings)?;
        let syms = caps::kallsyms(attach::KALLSYMS);
        // The kernel's BTF, parsed once for the prototypes, struct layouts and enum values
        // (only where function hooks are wanted: tracepoints need none of it).
        let kbtf = cfg.functions.then(|| signature::btf::load().ok()).flatten();
        let facts = facts::struct_layout(kbtf.as_ref());
        let rare = RareDecoder::new(
            RARE.iter()
                .map(|r| tracefs.format(r.category, r.name).ok())
                .collect(),
        );
        let (hook_args, drift) = layout::hook_args_of(cfg.functions, &syms, kbtf.as_ref(), &facts);
        let task_comm = kbtf
            .as_ref()
            .and_then(|b| signature::btf::member_offset(b, "task_struct", "comm"));
        // Freed before aya parses the same BTF again: both at once made the start-up peak.
        drop(kbtf);
        let mut globals = object::Globals {
            config: layout::config(cfg),
            fault: formats
                .fault
                .unwrap_or(cxl_trace_common::FaultLayout::DEFAULT),
            fork: formats
                .fork
                .unwrap_or(cxl_trace_common::ForkLayout::DEFAULT),
            migrate: formats
                .migrate
                .unwrap_or(cxl_trace_common::MigrateLayout::DEFAULT),
            kernel: cxl_trace_common::KernelLayout {
                task_comm: task_comm.unwrap_or(u32::MAX),
                ..layout::kernel_layout(&tracefs, &syms, &facts)
            },
            raw: RawLayout {
                size: if cfg.rare { rare.sizes() } else { [0; raw::NR] },
                _reserved: [0; 1],
            },
            hook_args,
        };
        // Parsed once (several MB, tens of MB in memory): the function hooks and doctor's
        // attach-kind probes use it, and the loader's relocations if the object needs any.
        let btf = if cfg.functions || cfg.probe_attach_kinds {
            Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {}", flatten_error(&e)))
        } else {
            Err("not loaded".into())
        };
        let mut at = Attach {
            ebpf: object::load_checked(
                &mut globals,
                cfg.ringbuf_bytes,
                btf.as_ref().ok(),
                &mut warnings,
            )?,
            tracefs: &tracefs,
            statuses,
            warnings,
        };
        if formats.fault.is_some() {
            at.tracepoints(&faults::FAULT_TPS);
        }
        // The exit hook also keeps the names processes exit with, for the live modes.
        if cfg.filter || cfg.probe_attach_kinds || cfg.fault_agg {
            process::attach_follow(&mut at, cfg.filter)?;
        }
        let migrations = cfg.migrations && formats.migrate.is_some();
        if migrations {
            at.tracepoints(&migrate::MIGRATE_TPS);
        }
        if cfg.ring_bench {
            process::attach_ring_bench(&mut at)?;
        }
        let mut availability = match cfg.functions {
            false => Availability::none("function hooks disabled (--tracepoints-only)"),
            true => {
                let hooks = FnHooks {
                    btf: &btf,
                    syms: &syms,
                    drift: &drift,
                    prefer_kprobes: cfg.prefer_kprobes,
                };
                attach_functions(cfg, migrations, &mut at, &hooks, &globals.kernel)
            }
        };
        if migrations {
            migrate::attach_entry_fallback(&mut at, &mut availability);
        }
        if cfg.rare {
            rare::attach(&mut at);
        }
        if cfg.probe_attach_kinds {
            let st = attach::probe_attach_kinds(&mut at.ebpf, &btf);
            at.statuses.extend(st);
        }
        // The kernel's BTF is freed before the ring buffer is mapped (its 16 MiB data area
        // is mapped twice and counts twice in RSS), and the freed heap goes back to the system:
        // together they made a start-up peak of 105 MiB.
        drop(btf);
        // SAFETY: malloc_trim only releases free memory of glibc's heap; no pointer we hold
        // is affected.
        unsafe { libc::malloc_trim(0) };
        Self::with_maps(cfg, at, availability, rare)
    }
}

/// Every function hook `cfg` asks for, family by family; what they make available.
fn attach_functions(
    cfg: &TraceConfig,
    migrations: bool,
    at: &mut Attach,
    hooks: &FnHooks,
    k: &cxl_trace_common::KernelLayout,
) -> Availability {
    let mut a = Availability::none("not requested");
    if cfg.faults {
        faults::attach_hooks(at, hooks, &mut a);
    }
    if migrations {
        migrate::attach_folio_hook(at, hooks, &mut a, k.vmemmap_base_addr != 0);
        match &cfg.decisions {
            Ok(()) => tiering::attach_decisions(at, hooks, &mut a),
            Err(why) => tiering::skip_decisions(at, &mut a, why),
        }
        tiering::attach_demotions(at, hooks, &mut a, hooks.syms, k.node_data_addr != 0);
    }
    a
}

impl Tracer {
    /// The tracer over an attached object: fails when nothing at all is live.
    fn with_maps(
        cfg: &TraceConfig,
        at: Attach,
        availability: Availability,
        rare: RareDecoder,
    ) -> Result<Self> {
        let Attach {
            mut ebpf,
            statuses,
            warnings,
            ..
        } = at;
        if !statuses.iter().any(ProbeStatus::is_live) {
            let why: Vec<String> = statuses
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect();
            return Err(Error::NoProbes(why.join("; ")));
        }
        let ring = take_map(&mut ebpf, EVENTS_MAP, RingBuf::try_from)?;
        let stats = take_map(&mut ebpf, STATS_MAP, PerCpuArray::try_from)?;
        let follow = take_map(&mut ebpf, FOLLOW_MAP, BpfHashMap::try_from)?;
        let fault_agg = cfg
            .fault_agg
            .then(|| faults::FaultAggMaps::take(&mut ebpf))
            .transpose()?;
        // Only where the timing hooks are live (else the histograms stay empty).
        let latency_agg = match &cfg.latency_agg {
            Some((slots, ranges)) if availability.latency.is_none() => {
                let mut m = faults::LatencyAggMaps::take(&mut ebpf)?;
                m.set_tables(slots, ranges)?;
                Some(m)
            }
            _ => None,
        };
        Ok(Self {
            bpf_stats: if cfg.bpf_stats {
                aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
            } else {
                None
            },
            _ebpf: ebpf,
            statuses,
            warnings,
            availability,
            rare,
            ring: Some(ring),
            stats,
            follow,
            fault_agg,
            latency_agg,
        })
    }

    /// Total run time of this tool's loaded programs, in ns (`None` when the kernel's BPF
    /// statistics could not be enabled).
    pub fn bpf_run_ns(&self) -> Option<u64> {
        self.bpf_stats.as_ref()?;
        Some(
            self._ebpf
                .programs()
                .filter_map(|(_, p)| p.info().ok())
                .map(|i| i.run_time().as_nanos() as u64)
                .sum(),
        )
    }

    /// Runs the kernel skipped, by program name: its per-program recursion guard drops a run
    /// when the program is already running on that CPU (an interrupt, or a preempted run), and
    /// nothing of that run reaches the ring buffer or the drop counters. From `bpf_prog_info`
    /// (`recursion_misses`, Linux 5.12+), which aya 0.14 does not expose.
    pub fn skipped_runs(&self) -> BTreeMap<String, u64> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        self._ebpf
            .programs()
            .filter_map(|(name, p)| {
                let fd = p.fd().ok()?.as_fd().as_raw_fd();
                let n = recursion_misses(fd)?;
                (n > 0).then(|| (name.to_string(), n))
            })
            .collect()
    }

    /// The faults counted in the kernel so far (`None`: faults arrive as records).
    pub fn fault_counts(&self) -> Option<Result<crate::model::fault_counts::FaultSnapshot>> {
        self.fault_agg.as_ref().map(faults::FaultAggMaps::read)
    }

    /// The kernel's fault-latency histograms (`None`: timed faults arrive as records).
    pub fn fault_latency(&self) -> Option<Result<Vec<cxl_trace_common::LatHist>>> {
        self.latency_agg.as_ref().map(faults::LatencyAggMaps::read)
    }

    /// Hands the kernel new tier tables (the topology changed).
    pub fn set_tier_tables(
        &mut self,
        slots: &crate::model::kernel_latency::TierSlots,
        ranges: &cxl_trace_common::PfnRanges,
    ) -> Result<()> {
        match self.latency_agg.as_mut() {
            Some(m) => m.set_tables(slots, ranges),
            None => Ok(()),
        }
    }

    /// The thread name process `pid` exited with (the live modes), if the kernel saw it.
    pub fn exit_comm(&self, pid: u32) -> Option<[u8; cxl_trace_common::COMM_LEN]> {
        self.fault_agg.as_ref()?.exit_comm(pid)
    }

    /// Lets the kernel hand over per-process fault slots whose holders all exited.
    pub fn release_fault_slots(&mut self, slots: &[(u32, Vec<(u32, u32)>)]) -> Result<()> {
        match self.fault_agg.as_mut() {
            Some(m) => m.release(slots),
            None => Ok(()),
        }
    }

    /// Takes the ring buffer (to wrap it in the async reactor).
    pub fn take_ring(&mut self) -> Option<RingBuf<MapData>> {
        self.ring.take()
    }

    /// Adds a process to the follow set (its children are added by the fork hook).
    pub fn follow(&mut self, pid: u32) -> Result<()> {
        self.follow
            .insert(&pid, &1, 0)
            .map_err(|e| Error::Runtime(format!("cannot follow pid {pid}: {}", flatten_error(&e))))
    }

    /// Removes a process from the follow set.
    pub fn unfollow(&mut self, pid: u32) -> Result<()> {
        self.follow.remove(&pid).map_err(|e| {
            Error::Runtime(format!("cannot unfollow pid {pid}: {}", flatten_error(&e)))
        })
    }

    /// Sum over CPUs of one stat slot.
    fn stat(&self, idx: u32) -> u64 {
        self.stats
            .get(&idx, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Cumulative drops per event kind since attach.
    pub fn drops(&self) -> Drops {
        Drops {
            by_kind: self.per_kind(stat::DROPPED),
        }
    }

    /// Cumulative records submitted per event kind since attach.
    pub fn produced(&self) -> BTreeMap<String, u64> {
        self.per_kind(stat::PRODUCED)
    }

    /// One counter per kind, from the slots that start at `base`.
    fn per_kind(&self, base: u32) -> BTreeMap<String, u64> {
        Kind::ALL
            .iter()
            .map(|k| (k.name().to_string(), self.stat(base + u32::from(*k as u16))))
            .collect()
    }

    /// Field reads that failed in the kernel, and forks not followed because the map was full.
    pub fn errors(&self) -> (u64, u64) {
        (self.stat(stat::READ_ERRORS), self.stat(stat::FOLLOW_FULL))
    }
}

/// A ring buffer the async reactor can poll.
pub struct Ring(pub RingBuf<MapData>);

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Takes a map out of the object as its concrete type.
pub(crate) fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &str,
    conv: impl FnOnce(aya::maps::Map) -> std::result::Result<T, aya::maps::MapError>,
) -> Result<T> {
    ebpf.take_map(name)
        .ok_or_else(|| Error::Load(format!("map {name} missing from the object")))
        .and_then(|m| conv(m).map_err(|e| Error::Load(flatten_error(&e))))
}

/// `recursion_misses` of a loaded program, from its fdinfo (kernel 5.12 and later; aya's
/// `ProgramInfo` has run time and count but not this field).
fn recursion_misses(fd: std::os::fd::RawFd) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    fdinfo_value(&text, "recursion_misses")
}

/// One `key:\tvalue` line of an fdinfo file, as a number.
fn fdinfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

#[cfg(test)]
mod tests;
