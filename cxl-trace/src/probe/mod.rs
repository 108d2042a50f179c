//! The only module that touches aya: privilege and capability checks, loading the embedded
//! BPF object, attaching probe families with a status for each, and the ring buffer.

pub mod caps;
pub mod facts;
pub mod signature;

pub use crate::model::status::{ProbeStatus, Status};
use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd, RawFd},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FEntry, FExit, KProbe, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use aya_obj::btf::BtfKind;
use cxl_trace_common::{
    config_flags, kind, raw, stat, Config, FaultLayout, ForkLayout, HookArgs, KernelLayout,
    MigrateLayout, RawLayout, CONFIG_GLOBAL, EVENTS_MAP, FAULT_LAYOUT_GLOBAL, FOLLOW_MAP,
    FORK_LAYOUT_GLOBAL, HOOK_ARGS_GLOBAL, KERNEL_LAYOUT_GLOBAL, MIGRATE_LAYOUT_GLOBAL,
    RAW_LAYOUT_GLOBAL, STATS_MAP,
};

use crate::{
    error::{Error, Result},
    model::aggregate::Drops,
    model::rare::{RareDecoder, RARE},
    model::tiers::Availability,
    model::tracefs::{Format, Tracefs},
};

/// The eBPF object built by build.rs (empty when built without bpf-linker).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cxl-trace"));

/// Whether this binary carries its eBPF programs.
pub fn has_bpf_object() -> bool {
    !BPF_OBJECT.is_empty()
}

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
    /// Faults are only counted per CPU in the kernel, no records (a benchmark's what-if).
    pub fault_counts_only: bool,
    /// Turn on the kernel's BPF run-time statistics (the tool's own CPU share).
    pub bpf_stats: bool,
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
            fault_counts_only: false,
            bpf_stats: true,
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
    follow: BpfHashMap<MapData, u32, u8>,
}

/// Names of event kinds, for drop reports.
pub fn kind_name(k: u16) -> &'static str {
    match k {
        kind::FAULT_USER => "fault_user",
        kind::FAULT_KERNEL => "fault_kernel",
        kind::MIGRATE_START => "migrate_start",
        kind::MIGRATE => "migrate",
        kind::FAULT_LATENCY => "fault_latency",
        kind::FOLIO_MIGRATE => "folio_migrate",
        kind::NUMA_FAULT => "numa_fault",
        kind::RAW_TP => "rare",
        kind::PROMOTE_DECISION => "promote_decision",
        kind::DEMOTE_BATCH => "demote_batch",
        kind::MIGRATION_PTE => "migration_pte",
        _ => "other",
    }
}

/// One line from an error and its sources, cut to a readable length (verifier logs are long).
pub fn flatten_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    let s = s.replace('\n', " ");
    // aya appends "Verifier output: <log>"; an empty log is noise.
    let s = match s.trim_end().strip_suffix("Verifier output:") {
        Some(head) => head.trim_end().trim_end_matches('.').to_string(),
        None => s,
    };
    const MAX: usize = 240;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
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

/// Offsets for the fault programs from the tracefs format.
pub fn fault_layout(f: &Format) -> std::result::Result<FaultLayout, String> {
    Ok(FaultLayout {
        address: f.offset("address", 8)?,
        ip: f.offset("ip", 8)?,
        error_code: f.offset("error_code", 8)?,
        _reserved: 0,
    })
}

/// Offsets for the fork program from the tracefs format.
pub fn fork_layout(f: &Format) -> std::result::Result<ForkLayout, String> {
    Ok(ForkLayout {
        child_pid: f.offset("child_pid", 4)?,
        _reserved: 0,
    })
}

/// Offsets for the migration programs from the tracefs formats of `mm_migrate_pages` and
/// `mm_migrate_pages_start`.
pub fn migrate_layout(end: &Format, start: &Format) -> std::result::Result<MigrateLayout, String> {
    Ok(MigrateLayout {
        succeeded: end.offset("succeeded", 8)?,
        failed: end.offset("failed", 8)?,
        thp_succeeded: end.offset("thp_succeeded", 8)?,
        thp_failed: end.offset("thp_failed", 8)?,
        thp_split: end.offset("thp_split", 8)?,
        large_folio_split: end
            .offset("large_folio_split", 8)
            .unwrap_or(MigrateLayout::ABSENT),
        mode: end.offset("mode", 4)?,
        reason: end.offset("reason", 4)?,
        start_mode: start.offset("mode", 4)?,
        start_reason: start.offset("reason", 4)?,
    })
}

/// A tracepoint program and where it attaches.
/// The kernel symbols the hooks need: the hooked functions and the variables they read.
pub(crate) const KALLSYMS: &[&str] = &[
    "vmemmap_base",
    "handle_mm_fault",
    "task_numa_fault",
    "move_to_new_folio",
    "node_data",
    "should_numa_migrate_memory",
    "mod_node_page_state",
    "migrate_misplaced_folio_prepare",
    "folio_isolate_lru",
    "demote_folio_list",
    "demote_page_list",
];

pub(crate) struct TpSpec {
    pub(crate) program: &'static str,
    pub(crate) category: &'static str,
    pub(crate) name: &'static str,
}

pub(crate) const FAULT_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "page_fault_user",
        category: "exceptions",
        name: "page_fault_user",
    },
    TpSpec {
        program: "page_fault_kernel",
        category: "exceptions",
        name: "page_fault_kernel",
    },
];
pub(crate) const FOLLOW_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "sched_process_fork",
        category: "sched",
        name: "sched_process_fork",
    },
    TpSpec {
        program: "sched_process_exit",
        category: "sched",
        name: "sched_process_exit",
    },
];
pub(crate) const MIGRATE_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "mm_migrate_pages_start",
        category: "migrate",
        name: "mm_migrate_pages_start",
    },
    TpSpec {
        program: "mm_migrate_pages",
        category: "migrate",
        name: "mm_migrate_pages",
    },
];

/// The per-folio fallback: the migration-entry tracepoints, PTE and PMD, set and remove. The
/// `set_` halves give the source pfn; the `remove_` halves emit.
pub(crate) const MIGRATION_PTE_TPS: [TpSpec; 4] = [
    TpSpec {
        program: "set_migration_pte",
        category: "migrate",
        name: "set_migration_pte",
    },
    TpSpec {
        program: "remove_migration_pte",
        category: "migrate",
        name: "remove_migration_pte",
    },
    TpSpec {
        program: "set_migration_pmd",
        category: "thp",
        name: "set_migration_pmd",
    },
    TpSpec {
        program: "remove_migration_pmd",
        category: "thp",
        name: "remove_migration_pmd",
    },
];

/// Checks a migration-entry tracepoint's format against the fixed offsets the programs read:
/// A warning when the kernel numbers `enum migrate_reason` differently from this build
/// (read from the `reason` table of the `mm_migrate_pages` print format).
pub fn reason_drift(f: &Format) -> Option<String> {
    let drift = crate::model::event::MigrateReason::numbering_drift(f.symbols.get("reason")?);
    (!drift.is_empty()).then(|| {
        format!(
            "migration reasons are numbered differently on this kernel ({}): those reasons are misnamed",
            drift.join("; ")
        )
    })
}

/// `addr` at 8 and the entry (`pte`/`pmd`) at 16, 8 bytes each, and a 4-byte `order` at 24
/// for the PTE events.
pub fn check_migration_entry_format(f: &Format, entry: &str) -> std::result::Result<(), String> {
    let want = |name: &str, off: u32, size: u32| match f.offset(name, size) {
        Ok(o) if o == off => Ok(()),
        Ok(o) => Err(format!(
            "{}: field `{name}` at {o}, the program reads it at {off}",
            f.name
        )),
        Err(e) => Err(e),
    };
    want("addr", 8, 8)?;
    want(entry, 16, 8)?;
    if entry == "pte" {
        want("order", 24, 4)?;
    }
    Ok(())
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
        let mut warnings = Vec::new();
        if let Some(w) = raise_memlock() {
            warnings.push(w);
        }
        let tracefs = Tracefs::locate_or_mount()?;

        // Read the layouts first: a family whose format cannot be read is unavailable.
        let mut statuses = Vec::new();
        let fault_layout = if cfg.faults {
            match tracefs
                .format("exceptions", "page_fault_user")
                .and_then(|f| fault_layout(&f))
            {
                Ok(l) => Some(l),
                Err(e) => {
                    for tp in &FAULT_TPS {
                        statuses.push(ProbeStatus::unavailable(tp_name(tp), e.clone()));
                    }
                    None
                }
            }
        } else {
            None
        };
        let fork_layout = match tracefs
            .format("sched", "sched_process_fork")
            .and_then(|f| fork_layout(&f))
        {
            Ok(l) => Some(l),
            Err(e) if cfg.filter => {
                return Err(Error::NoProbes(format!(
                    "following a process needs sched:sched_process_fork: {e}"
                )))
            }
            Err(_) => None,
        };
        let migrate_layout = if cfg.migrations {
            match tracefs
                .format("migrate", "mm_migrate_pages")
                .and_then(|end| {
                    if let Some(w) = reason_drift(&end) {
                        warnings.push(w);
                    }
                    migrate_layout(&end, &tracefs.format("migrate", "mm_migrate_pages_start")?)
                }) {
                Ok(l) => Some(l),
                Err(e) => {
                    for tp in &MIGRATE_TPS {
                        statuses.push(ProbeStatus::unavailable(tp_name(tp), e.clone()));
                    }
                    None
                }
            }
        } else {
            None
        };

        let mut flags = 0;
        if cfg.filter {
            flags |= config_flags::FILTER;
        }
        if cfg.cgroup.is_some() {
            flags |= config_flags::CGROUP;
        }
        if cfg.comm.is_some() {
            flags |= config_flags::COMM;
        }
        if cfg.fault_counts_only {
            flags |= config_flags::NO_FAULT_EVENTS;
        }
        let config = Config {
            flags,
            cgroup_level: cfg.cgroup.map_or(0, |c| c.level),
            cgroup_id: cfg.cgroup.map_or(0, |c| c.id),
            comm: cfg.comm.unwrap_or([0; cxl_trace_common::COMM_LEN]),
            wake_bytes: cfg.ringbuf_bytes / 32,
            _reserved: 0,
        };
        let syms = caps::kallsyms(KALLSYMS);
        let alloc = tracefs.format("kmem", "mm_page_alloc");
        // The kernel's BTF, parsed once for the prototypes, struct layouts and enum values
        // (only where function hooks are wanted: tracepoints need none of it).
        let kbtf = if cfg.functions {
            signature::btf::load().ok()
        } else {
            None
        };
        let layout = facts::struct_layout(kbtf.as_ref());
        let kernel_layout = KernelLayout {
            vmemmap_base_addr: syms.get("vmemmap_base").copied().unwrap_or(0),
            alloc_pfn: alloc
                .as_ref()
                .ok()
                .and_then(|f| f.offset("pfn", 8).ok())
                .unwrap_or(KernelLayout::DEFAULT.alloc_pfn),
            alloc_gfp: alloc
                .as_ref()
                .ok()
                .and_then(|f| f.fields.get("gfp_flags").map(|x| x.offset))
                .unwrap_or(KernelLayout::DEFAULT.alloc_gfp),
            node_data_addr: syms.get("node_data").copied().unwrap_or(0),
            nr_node_ids: crate::model::topology::possible_nodes().min(64),
            page_struct_size: facts::layout_value(&layout, "sizeof.page")
                .map_or(KernelLayout::DEFAULT.page_struct_size, u64::from),
            folio_order_offset: folio_order_offset(&layout),
            ..KernelLayout::DEFAULT
        };
        let rare = RareDecoder::new(
            RARE.iter()
                .map(|r| tracefs.format(r.category, r.name).ok())
                .collect(),
        );
        let raw_layout = RawLayout {
            size: if cfg.rare { rare.sizes() } else { [0; raw::NR] },
            _reserved: [0; 2],
        };
        let (mut hook_args, drift) = if cfg.functions {
            hook_args(&syms, kbtf.as_ref())
        } else {
            (HookArgs::DEFAULT, BTreeMap::new())
        };
        hook_args.promote_candidate_item =
            facts::layout_value(&layout, "node_stat_item.PGPROMOTE_CANDIDATE")
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(u16::MAX);
        let fl = fault_layout.unwrap_or(FaultLayout::DEFAULT);
        let kl = fork_layout.unwrap_or(ForkLayout::DEFAULT);
        let ml = migrate_layout.unwrap_or(MigrateLayout::DEFAULT);
        let mut ebpf = EbpfLoader::new()
            .override_global(CONFIG_GLOBAL, &config, true)
            .override_global(FAULT_LAYOUT_GLOBAL, &fl, true)
            .override_global(FORK_LAYOUT_GLOBAL, &kl, true)
            .override_global(MIGRATE_LAYOUT_GLOBAL, &ml, true)
            .override_global(KERNEL_LAYOUT_GLOBAL, &kernel_layout, true)
            .override_global(RAW_LAYOUT_GLOBAL, &raw_layout, true)
            .override_global(HOOK_ARGS_GLOBAL, &hook_args, true)
            .map_max_entries(EVENTS_MAP, cfg.ringbuf_bytes)
            .load(BPF_OBJECT)
            .map_err(|e| Error::Load(flatten_error(&e)))?;

        if fault_layout.is_some() {
            for tp in &FAULT_TPS {
                statuses.push(attach_tracepoint(&mut ebpf, &tracefs, tp));
            }
        }
        if cfg.filter || cfg.probe_attach_kinds {
            for tp in &FOLLOW_TPS {
                let st = attach_tracepoint(&mut ebpf, &tracefs, tp);
                if cfg.filter && !st.is_live() {
                    return Err(Error::NoProbes(format!(
                        "following a process needs {}: {}",
                        st.name, st.reason
                    )));
                }
                statuses.push(st);
            }
        }
        if migrate_layout.is_some() {
            for tp in &MIGRATE_TPS {
                statuses.push(attach_tracepoint(&mut ebpf, &tracefs, tp));
            }
        }
        if cfg.ring_bench {
            let st = attach_tracepoint(&mut ebpf, &tracefs, &RING_BENCH_TP);
            if !st.is_live() {
                return Err(Error::NoProbes(format!(
                    "the ring-buffer benchmark needs {}: {}",
                    st.name, st.reason
                )));
            }
            statuses.push(st);
        }
        let mut availability = Availability::none("not requested");
        // Parsed once (several MB): the function hooks and doctor's attach-kind probes use it.
        let btf = if cfg.functions || cfg.probe_attach_kinds {
            Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {}", flatten_error(&e)))
        } else {
            Err("not loaded".into())
        };
        if cfg.functions {
            let hooks = FnHooks {
                btf: &btf,
                syms: &syms,
                drift: &drift,
                prefer_kprobes: cfg.prefer_kprobes,
            };
            if cfg.faults {
                let st = hooks.attach(&mut ebpf, HOOK_FAULT, None);
                availability.latency = unavailable_reason(&st);
                statuses.extend(st);
                if availability.latency.is_none() {
                    // Names the node of pages allocated during a fault.
                    statuses.push(attach_tracepoint(&mut ebpf, &tracefs, &ALLOC_TP));
                }
                let st = hooks.attach(&mut ebpf, HOOK_NUMA_FAULT, None);
                availability.numa = unavailable_reason(&st);
                statuses.extend(st);
            }
            if cfg.migrations && migrate_layout.is_some() {
                let vmemmap_note = if kernel_layout.vmemmap_base_addr != 0 {
                    None
                } else {
                    Some("no vmemmap_base in /proc/kallsyms: assuming the fixed 4-level vmemmap")
                };
                let st = hooks.attach(&mut ebpf, HOOK_FOLIO, vmemmap_note);
                availability.folio = unavailable_reason(&st);
                statuses.extend(st);

                // Promotion decisions: the decision plus the candidate counter, then the
                // prepare plus isolation. Each part is only worth having whole.
                let mut parts = hooks.attach(&mut ebpf, HOOK_DECISION, None);
                if parts.iter().all(ProbeStatus::is_live) {
                    for (hook, note) in [
                        (
                            HOOK_CANDIDATES,
                            Some(
                                "pgpromote_candidate pages of a decision (rate limit vs threshold)",
                            ),
                        ),
                        (HOOK_PREPARE, None),
                        (HOOK_ISOLATE, None),
                    ] {
                        parts.extend(hooks.attach(&mut ebpf, hook, note));
                    }
                }
                availability.decision = unavailable_reason(&parts);
                statuses.extend(parts);
                let st = hooks.attach(
                    &mut ebpf,
                    Hook {
                        func: signature::spec(HOOK_DEMOTE.func)
                            .map_or(HOOK_DEMOTE.func, |h| h.name_in(|n| syms.contains_key(n))),
                        ..HOOK_DEMOTE
                    },
                    (kernel_layout.node_data_addr == 0)
                        .then_some("no node_data in /proc/kallsyms: source nodes unknown"),
                );
                availability.demote = unavailable_reason(&st);
                statuses.extend(st);
            }
        } else {
            availability = Availability::none("function hooks disabled (--tracepoints-only)");
        }
        if cfg.migrations && migrate_layout.is_some() {
            availability.copy = availability.folio.clone();
            if let Some(why) = availability.folio.clone() {
                // No hook on move_to_new_folio: per-folio moves from the migration entries.
                let mut st: Vec<ProbeStatus> = MIGRATION_PTE_TPS
                    .iter()
                    .map(|tp| {
                        let entry = if tp.category == "thp" { "pmd" } else { "pte" };
                        match tracefs
                            .format(tp.category, tp.name)
                            .and_then(|f| check_migration_entry_format(&f, entry))
                        {
                            Ok(()) => attach_tracepoint(&mut ebpf, &tracefs, tp),
                            Err(e) => ProbeStatus::unavailable(tp_name(tp), e),
                        }
                    })
                    .collect();
                // The PTE pair is what matters; PMD-mapped THPs are a bonus.
                if st[..2].iter().all(ProbeStatus::is_live) {
                    availability.folio = None;
                    availability.copy = Some(format!(
                        "per-folio moves come from the migration-entry tracepoints, which have no copy time ({why})"
                    ));
                    if !st[2..].iter().all(ProbeStatus::is_live) {
                        warnings.push(
                            "PMD-mapped THP moves are not seen per folio (thp:*_migration_pmd unavailable)".into(),
                        );
                    }
                } else {
                    availability.folio = Some(format!(
                        "{why}; fallback {}",
                        unavailable_reason(&st[..2]).unwrap_or_default()
                    ));
                }
                statuses.append(&mut st);
            }
        }
        if cfg.rare {
            for r in &RARE {
                let tp = TpSpec {
                    program: r.program,
                    category: r.category,
                    name: r.name,
                };
                let mut st = attach_tracepoint(&mut ebpf, &tracefs, &tp);
                if r.category == "cxl" && !st.is_live() && !tracefs.has_event("cxl", r.name) {
                    st.reason = format!(
                        "no cxl:{} tracepoint: module cxl_core is not loaded (no CXL devices or drivers)",
                        r.name
                    );
                }
                statuses.push(st);
            }
        }
        if cfg.probe_attach_kinds {
            statuses.extend(probe_attach_kinds(&mut ebpf, &btf));
        }
        if !statuses.iter().any(ProbeStatus::is_live) {
            let why: Vec<String> = statuses
                .iter()
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect();
            return Err(Error::NoProbes(why.join("; ")));
        }

        let ring = ebpf
            .take_map(EVENTS_MAP)
            .ok_or_else(|| Error::Load(format!("map {EVENTS_MAP} missing from the object")))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| Error::Load(flatten_error(&e))))?;
        let stats = ebpf
            .take_map(STATS_MAP)
            .ok_or_else(|| Error::Load(format!("map {STATS_MAP} missing from the object")))
            .and_then(|m| PerCpuArray::try_from(m).map_err(|e| Error::Load(flatten_error(&e))))?;
        let follow = ebpf
            .take_map(FOLLOW_MAP)
            .ok_or_else(|| Error::Load(format!("map {FOLLOW_MAP} missing from the object")))
            .and_then(|m| BpfHashMap::try_from(m).map_err(|e| Error::Load(flatten_error(&e))))?;
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
        let mut by_kind = BTreeMap::new();
        for k in 1..kind::MAX {
            by_kind.insert(
                kind_name(k).to_string(),
                self.stat(stat::DROPPED + u32::from(k)),
            );
        }
        Drops { by_kind }
    }

    /// Cumulative records submitted per event kind since attach.
    pub fn produced(&self) -> BTreeMap<String, u64> {
        (1..kind::MAX)
            .map(|k| {
                (
                    kind_name(k).to_string(),
                    self.stat(stat::PRODUCED + u32::from(k)),
                )
            })
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

/// The ring-buffer benchmark's source (`--ring-bench`).
pub(crate) const RING_BENCH_TP: TpSpec = TpSpec {
    program: "ring_bench",
    category: "syscalls",
    name: "sys_enter_getpgid",
};

pub(crate) const ALLOC_TP: TpSpec = TpSpec {
    program: "mm_page_alloc",
    category: "kmem",
    name: "mm_page_alloc",
};

/// `None` when every status is live, else the first reason.
fn unavailable_reason(sts: &[ProbeStatus]) -> Option<String> {
    sts.iter()
        .find(|s| !s.is_live())
        .map(|s| format!("{}: {}", s.name, s.reason))
}

const HOOK_FAULT: Hook<'static> = Hook {
    func: "handle_mm_fault",
    tracing: (Some("handle_mm_fault_entry"), Some("handle_mm_fault_exit")),
    kprobe: (
        Some("handle_mm_fault_kprobe"),
        Some("handle_mm_fault_kretprobe"),
    ),
};
const HOOK_NUMA_FAULT: Hook<'static> = Hook {
    func: "task_numa_fault",
    tracing: (Some("task_numa_fault"), None),
    kprobe: (Some("task_numa_fault_kprobe"), None),
};
const HOOK_FOLIO: Hook<'static> = Hook {
    func: "move_to_new_folio",
    tracing: (
        Some("move_to_new_folio_entry"),
        Some("move_to_new_folio_exit"),
    ),
    kprobe: (
        Some("move_to_new_folio_kprobe"),
        Some("move_to_new_folio_kretprobe"),
    ),
};
const HOOK_DECISION: Hook<'static> = Hook {
    func: "should_numa_migrate_memory",
    tracing: (Some("should_migrate_entry"), Some("should_migrate_exit")),
    kprobe: (
        Some("should_migrate_kprobe"),
        Some("should_migrate_kretprobe"),
    ),
};
const HOOK_CANDIDATES: Hook<'static> = Hook {
    func: "mod_node_page_state",
    tracing: (Some("node_stat_mod"), None),
    kprobe: (Some("node_stat_mod_kprobe"), None),
};
const HOOK_PREPARE: Hook<'static> = Hook {
    func: "migrate_misplaced_folio_prepare",
    tracing: (Some("prepare_entry"), Some("prepare_exit")),
    kprobe: (Some("prepare_kprobe"), Some("prepare_kretprobe")),
};
const HOOK_ISOLATE: Hook<'static> = Hook {
    func: "folio_isolate_lru",
    tracing: (None, Some("isolate_exit")),
    kprobe: (None, Some("isolate_kretprobe")),
};
const HOOK_DEMOTE: Hook<'static> = Hook {
    func: "demote_folio_list",
    tracing: (None, Some("demote_folio_list_exit")),
    kprobe: (
        Some("demote_folio_list_kprobe"),
        Some("demote_folio_list_kretprobe"),
    ),
};

/// Every function hook.
const FN_HOOKS: [Hook<'static>; 8] = [
    HOOK_FAULT,
    HOOK_NUMA_FAULT,
    HOOK_FOLIO,
    HOOK_DECISION,
    HOOK_CANDIDATES,
    HOOK_PREPARE,
    HOOK_ISOLATE,
    HOOK_DEMOTE,
];

/// Programs the capability probes of `doctor` load.
const CAP_PROGRAMS: [&str; 3] = ["cap_tp_btf", "cap_raw_tp", "cap_fentry"];

/// Every program, map and global userspace names that the embedded BPF object lacks (empty
/// when they all exist): a renamed program would otherwise surface only as a probe that never
/// attaches on some machine.
pub fn missing_from_bpf_object() -> std::result::Result<Vec<String>, String> {
    if BPF_OBJECT.is_empty() {
        return Err("this build carries no BPF object (built without bpf-linker)".into());
    }
    let obj = aya_obj::Object::parse(BPF_OBJECT).map_err(|e| flatten_error(&e))?;
    let mut programs: Vec<&str> = FAULT_TPS
        .iter()
        .chain(&FOLLOW_TPS)
        .chain(&MIGRATE_TPS)
        .chain(&MIGRATION_PTE_TPS)
        .chain([&RING_BENCH_TP, &ALLOC_TP])
        .map(|t| t.program)
        .collect();
    programs.extend(RARE.iter().map(|r| r.program));
    for h in FN_HOOKS {
        programs.extend(
            [h.tracing.0, h.tracing.1, h.kprobe.0, h.kprobe.1]
                .into_iter()
                .flatten(),
        );
    }
    programs.extend(CAP_PROGRAMS);
    let mut missing: Vec<String> = programs
        .into_iter()
        .filter(|p| !obj.programs.contains_key(*p))
        .map(|p| format!("program {p}"))
        .collect();
    for m in [EVENTS_MAP, STATS_MAP, FOLLOW_MAP] {
        if !obj.maps.contains_key(m) {
            missing.push(format!("map {m}"));
        }
    }
    let btf = obj.btf.as_ref().ok_or("the BPF object has no BTF")?;
    for g in [
        CONFIG_GLOBAL,
        FAULT_LAYOUT_GLOBAL,
        FORK_LAYOUT_GLOBAL,
        MIGRATE_LAYOUT_GLOBAL,
        KERNEL_LAYOUT_GLOBAL,
        RAW_LAYOUT_GLOBAL,
        HOOK_ARGS_GLOBAL,
    ] {
        if btf.id_by_type_name_kind(g, BtfKind::Var).is_err() {
            missing.push(format!("global {g}"));
        }
    }
    Ok(missing)
}

/// A function hook: its programs in each form. A hook is attached whole in one form, since the
/// entry half of one form keeps state the exit half of another does not read.
#[derive(Clone, Copy, Debug)]
struct Hook<'a> {
    func: &'a str,
    /// (fentry program, fexit program).
    tracing: (Option<&'a str>, Option<&'a str>),
    /// (kprobe program, kretprobe program).
    kprobe: (Option<&'a str>, Option<&'a str>),
}

/// Attaches function hooks: fentry/fexit when the kernel allows them, else kprobe/kretprobe.
struct FnHooks<'a> {
    btf: &'a std::result::Result<Btf, String>,
    syms: &'a std::collections::HashMap<String, u64>,
    /// Hooked functions whose prototype no longer has what their programs read, and why.
    drift: &'a BTreeMap<&'static str, String>,
    /// Skip fentry/fexit (`--kprobes`).
    prefer_kprobes: bool,
}

/// Where every hook finds its arguments on the running kernel, from the prototypes in its
/// BTF, and the hooks whose prototype drifted. Without BTF (no fentry either; kprobes read the
/// registers) the 6.12 positions are assumed, and said so where the hook attaches.
fn hook_args(
    syms: &std::collections::HashMap<String, u64>,
    btf: Option<&btf_rs::Btf>,
) -> (HookArgs, BTreeMap<&'static str, String>) {
    let Some(btf) = btf else {
        return (HookArgs::DEFAULT, BTreeMap::new());
    };
    signature::resolve_all(
        |f| signature::btf::signature(btf, f).ok(),
        |n| syms.contains_key(n),
    )
}

/// Where a large folio keeps its order on this kernel: from the struct layout in its BTF,
/// else from the release (checked up to 6.12).
fn folio_order_offset(layout: &str) -> u32 {
    if layout.is_empty() {
        KernelLayout::folio_order_offset_for(
            &caps::read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        )
    } else {
        facts::folio_order_offset(layout)
    }
}

/// What an attached program must be detached with if its partner fails.
enum Attached {
    Entry(String, aya::programs::fentry::FEntryLinkId),
    Exit(String, aya::programs::fexit::FExitLinkId),
    Probe(String, aya::programs::kprobe::KProbeLinkId),
}

impl FnHooks<'_> {
    /// Attaches `hook` in the best form available; one status per program of the hook, named
    /// after the form that is live, or after the preferred form with every form's refusal.
    fn attach(&self, ebpf: &mut Ebpf, hook: Hook<'_>, note: Option<&str>) -> Vec<ProbeStatus> {
        let func = hook.func;
        let names = |entry: &str, exit: &str| -> Vec<String> {
            let mut v = Vec::new();
            if hook.tracing.0.is_some() || hook.kprobe.0.is_some() {
                v.push(format!("{entry}:{func}"));
            }
            if hook.tracing.1.is_some() || hook.kprobe.1.is_some() {
                v.push(format!("{exit}:{func}"));
            }
            v
        };
        if !self.syms.contains_key(func) {
            let why = format!(
                "no symbol {func} in /proc/kallsyms (inlined or renamed, e.g. .isra/.constprop)"
            );
            return names("fentry", "fexit")
                .into_iter()
                .map(|n| ProbeStatus::unavailable(n, why.clone()))
                .collect();
        }
        if let Some(why) = self.drift.get(func) {
            return names("fentry", "fexit")
                .into_iter()
                .map(|n| ProbeStatus::unavailable(n, why.clone()))
                .collect();
        }
        let mut refusals = Vec::new();
        if self.prefer_kprobes {
            refusals.push("fentry/fexit: not tried (--kprobes)".to_string());
        } else {
            match self.attach_tracing(ebpf, hook) {
                Ok(()) => {
                    return names("fentry", "fexit")
                        .into_iter()
                        .map(|n| ProbeStatus::live(n, note.unwrap_or("attached")))
                        .collect()
                }
                Err(e) => refusals.push(format!("fentry/fexit: {e}")),
            }
        }
        match self.attach_kprobes(ebpf, hook) {
            Ok(()) => names("kprobe", "kretprobe")
                .into_iter()
                .map(|n| ProbeStatus::live(n, note.unwrap_or("attached")))
                .collect(),
            Err(e) => {
                refusals.push(format!("kprobe: {e}"));
                let why = refusals.join("; ");
                names("fentry", "fexit")
                    .into_iter()
                    .map(|n| ProbeStatus::unavailable(n, why.clone()))
                    .collect()
            }
        }
    }

    fn attach_tracing(&self, ebpf: &mut Ebpf, hook: Hook<'_>) -> std::result::Result<(), String> {
        let func = hook.func;
        let btf = self.btf.as_ref().map_err(Clone::clone)?;
        btf.id_by_type_name_kind(func, BtfKind::Func).map_err(|_| {
            format!("no BTF FUNC {func} in the kernel's BTF (inlined, or built without it)")
        })?;
        let mut done = Vec::new();
        let r = (|| -> std::result::Result<(), String> {
            if let Some(prog) = hook.tracing.0 {
                let p: &mut FEntry = program(ebpf, prog)?;
                p.load(func, btf)
                    .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
                let link = p
                    .attach()
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Entry(prog.to_string(), link));
            }
            if let Some(prog) = hook.tracing.1 {
                let p: &mut FExit = program(ebpf, prog)?;
                p.load(func, btf).map_err(|e| {
                    log::debug!("fexit:{func}: {e:?}");
                    format!("BPF_PROG_LOAD refused: {}", flatten_error(&e))
                })?;
                let link = p
                    .attach()
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Exit(prog.to_string(), link));
            }
            Ok(())
        })();
        if r.is_err() {
            detach_all(ebpf, done);
        }
        r
    }

    fn attach_kprobes(&self, ebpf: &mut Ebpf, hook: Hook<'_>) -> std::result::Result<(), String> {
        if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            return Err("this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices; CONFIG_KPROBES is off)".into());
        }
        let mut done = Vec::new();
        let r = (|| -> std::result::Result<(), String> {
            for prog in [hook.kprobe.0, hook.kprobe.1].into_iter().flatten() {
                let p: &mut KProbe = program(ebpf, prog)?;
                p.load()
                    .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
                let link = p
                    .attach(hook.func, 0)
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Probe(prog.to_string(), link));
            }
            Ok(())
        })();
        if r.is_err() {
            detach_all(ebpf, done);
        }
        r
    }
}

/// Detaches the halves of a hook that did attach when another half did not.
fn detach_all(ebpf: &mut Ebpf, done: Vec<Attached>) {
    for a in done {
        let r = match a {
            Attached::Entry(prog, link) => program::<FEntry>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
            Attached::Exit(prog, link) => program::<FExit>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
            Attached::Probe(prog, link) => program::<KProbe>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
        };
        if let Err(e) = r {
            log::warn!("could not detach a half-attached hook: {e}");
        }
    }
}

fn tp_name(tp: &TpSpec) -> String {
    format!("tracepoint:{}:{}", tp.category, tp.name)
}

/// The program `name` of the object as its concrete type (`TracePoint`, `FEntry`, ...).
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> std::result::Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| flatten_error(&e))
}

fn attach_tracepoint(ebpf: &mut Ebpf, tracefs: &Tracefs, tp: &TpSpec) -> ProbeStatus {
    let name = tp_name(tp);
    if !tracefs.has_event(tp.category, tp.name) {
        return ProbeStatus::unavailable(
            name,
            format!("this kernel has no {}:{} tracepoint", tp.category, tp.name),
        );
    }
    let result = (|| -> std::result::Result<(), String> {
        let prog: &mut TracePoint = program(ebpf, tp.program)?;
        prog.load()
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        prog.attach(tp.category, tp.name)
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        Ok(())
    })();
    match result {
        Ok(()) => ProbeStatus::live(name, "attached"),
        Err(e) => ProbeStatus::unavailable(name, e),
    }
}

/// Tries each attach kind with a do-nothing program, then detaches it.
fn probe_attach_kinds(ebpf: &mut Ebpf, btf: &std::result::Result<Btf, String>) -> Vec<ProbeStatus> {
    let mut out = Vec::new();

    let tp_btf = (|| -> std::result::Result<(), String> {
        let btf = btf.as_ref().map_err(Clone::clone)?;
        let prog: &mut BtfTracePoint = program(ebpf, CAP_PROGRAMS[0])?;
        prog.load("sched_process_fork", btf)
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach()
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:tp_btf",
        tp_btf,
        "BTF tracepoint on sched_process_fork",
    ));

    let raw = (|| -> std::result::Result<(), String> {
        let prog: &mut aya::programs::RawTracePoint = program(ebpf, CAP_PROGRAMS[1])?;
        prog.load()
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach("sched_process_fork")
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:raw_tracepoint",
        raw,
        "raw tracepoint on sched_process_fork",
    ));

    let fentry = (|| -> std::result::Result<(), String> {
        let btf = btf.as_ref().map_err(Clone::clone)?;
        let prog: &mut FEntry = program(ebpf, CAP_PROGRAMS[2])?;
        prog.load("handle_mm_fault", btf)
            .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach()
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:fentry/fexit",
        fentry,
        "fentry on handle_mm_fault",
    ));

    let kprobe = (|| -> std::result::Result<(), String> {
        let prog: &mut KProbe = program(ebpf, "cap_kprobe")?;
        prog.load()
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog.attach("handle_mm_fault", 0).map_err(|e| {
            let pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
            if pmu {
                format!("attach refused: {}", flatten_error(&e))
            } else {
                format!(
                    "kprobes are not built into this kernel (no kprobe PMU, CONFIG_KPROBES unset): {}",
                    flatten_error(&e)
                )
            }
        })?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:kprobe/kretprobe",
        kprobe,
        "kprobe on handle_mm_fault",
    ));
    out
}

fn result_status(name: &str, r: std::result::Result<(), String>, detail: &str) -> ProbeStatus {
    match r {
        Ok(()) => ProbeStatus::live(name, format!("{detail}: loaded and attached")),
        Err(e) => ProbeStatus::unavailable(name, e),
    }
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
