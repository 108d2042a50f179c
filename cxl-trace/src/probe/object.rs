//! The embedded BPF object: loading it with this kernel's layouts, and checking that every
//! program, map and global userspace names exists in it.

use aya::{Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;
use cxl_trace_common::{
    Config, FaultLayout, ForkLayout, HookArgs, KernelLayout, MigrateLayout, RawLayout,
    CONFIG_GLOBAL, EVENTS_MAP, FAULT_LAYOUT_GLOBAL, FOLLOW_MAP, FORK_LAYOUT_GLOBAL,
    HOOK_ARGS_GLOBAL, KERNEL_LAYOUT_GLOBAL, MIGRATE_LAYOUT_GLOBAL, RAW_LAYOUT_GLOBAL, STATS_MAP,
};

use crate::{
    error::{Error, Result},
    model::rare::RARE,
    probe::{
        attach::{flatten_error, Hook, CAP_PROGRAMS},
        faults::{ALLOC_TP, FAULT_TPS, HOOK_FAULT, HOOK_NUMA_FAULT},
        migrate::{HOOK_FOLIO, MIGRATE_TPS, MIGRATION_PTE_TPS},
        process::{FOLLOW_TPS, RING_BENCH_TP},
        tiering::{HOOK_CANDIDATES, HOOK_DECISION, HOOK_DEMOTE, HOOK_ISOLATE, HOOK_PREPARE},
    },
};

/// The eBPF object built by build.rs (empty when built without bpf-linker).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cxl-trace"));

/// Whether this binary carries its eBPF programs.
pub fn has_bpf_object() -> bool {
    !BPF_OBJECT.is_empty()
}

/// Every function hook.
pub(crate) const FN_HOOKS: [Hook<'static>; 8] = [
    HOOK_FAULT,
    HOOK_NUMA_FAULT,
    HOOK_FOLIO,
    HOOK_DECISION,
    HOOK_CANDIDATES,
    HOOK_PREPARE,
    HOOK_ISOLATE,
    HOOK_DEMOTE,
];

/// Everything the programs read from their globals, for one kernel.
pub(crate) struct Globals {
    pub(crate) config: Config,
    pub(crate) fault: FaultLayout,
    pub(crate) fork: ForkLayout,
    pub(crate) migrate: MigrateLayout,
    pub(crate) kernel: KernelLayout,
    pub(crate) raw: RawLayout,
    pub(crate) hook_args: HookArgs,
}

/// [`load`], and where the programs read the thread name straight from the current task
/// (`task_struct.comm` found in BTF), a check that the verifier accepts it: it is asked to
/// verify the fault program; if it refuses, the object is loaded again with the name read
/// through `bpf_get_current_comm` (slower, accepted everywhere), and the user told.
pub(crate) fn load_checked(
    g: &mut Globals,
    ringbuf_bytes: u32,
    btf: Option<&aya::Btf>,
    warnings: &mut Vec<String>,
) -> Result<Ebpf> {
    let mut ebpf = load(g, ringbuf_bytes, btf)?;
    if g.kernel.task_comm == u32::MAX {
        return Ok(ebpf);
    }
    let Ok(prog) =
        crate::probe::attach::program::<aya::programs::TracePoint>(&mut ebpf, FAULT_TPS[0].program)
    else {
        // A program missing from the object is reported where it is attached.
        return Ok(ebpf);
    };
    if let Err(e) = prog.load().map_err(|e| flatten_error(&e)) {
        warnings.push(format!(
            "the verifier refused reading thread names from the task ({e}); they are read with bpf_get_current_comm, about 45 ns more per event"
        ));
        g.kernel.task_comm = u32::MAX;
        ebpf = load(g, ringbuf_bytes, btf)?;
    }
    Ok(ebpf)
}

/// Loads the object with `g` in its globals and a ring buffer of `ringbuf_bytes`. `btf` is
/// the kernel's BTF where the caller parsed it already (the loader would otherwise parse its
/// own copy if the object needed relocating).
pub(crate) fn load(g: &Globals, ringbuf_bytes: u32, btf: Option<&aya::Btf>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    if let Some(btf) = btf {
        loader.btf(btf);
    }
    loader
        .override_global(CONFIG_GLOBAL, &g.config, true)
        .override_global(FAULT_LAYOUT_GLOBAL, &g.fault, true)
        .override_global(FORK_LAYOUT_GLOBAL, &g.fork, true)
        .override_global(MIGRATE_LAYOUT_GLOBAL, &g.migrate, true)
        .override_global(KERNEL_LAYOUT_GLOBAL, &g.kernel, true)
        .override_global(RAW_LAYOUT_GLOBAL, &g.raw, true)
        .override_global(HOOK_ARGS_GLOBAL, &g.hook_args, true)
        .map_max_entries(EVENTS_MAP, ringbuf_bytes)
        .load(BPF_OBJECT)
        .map_err(|e| Error::Load(flatten_error(&e)))
}

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
