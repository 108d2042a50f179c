//! What the programs need to know about this kernel before they load: tracepoint field
//! offsets from tracefs, symbol addresses, struct layouts and hooked functions' argument
//! positions from BTF.

use std::collections::{BTreeMap, HashMap};

use cxl_trace_common::{
    config_flags, Config, FaultLayout, ForkLayout, HookArgs, KernelLayout, MigrateLayout,
};

use crate::{
    error::{Error, Result},
    probe::tracefs::Tracefs,
    probe::{
        attach::{tp_name, TpSpec},
        caps, facts,
        faults::{fault_layout, FAULT_TPS},
        migrate::{migrate_layout, reason_drift, MIGRATE_TPS},
        process::fork_layout,
        signature, ProbeStatus, TraceConfig,
    },
};

/// Where every hook finds its arguments on the running kernel, from the prototypes in its
/// BTF, and the hooks whose prototype drifted. Without BTF (no fentry either; kprobes read the
/// registers) the 6.12 positions are assumed, and said so where the hook attaches.
pub(crate) fn hook_args(
    syms: &HashMap<String, u64>,
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
pub(crate) fn folio_order_offset(layout: &str) -> u32 {
    if layout.is_empty() {
        KernelLayout::folio_order_offset_for(
            &caps::read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        )
    } else {
        facts::folio_order_offset(layout)
    }
}

/// The tracepoint layouts of this kernel; `None` for a family whose format cannot be read.
pub(crate) struct Formats {
    pub(crate) fault: Option<FaultLayout>,
    pub(crate) fork: Option<ForkLayout>,
    pub(crate) migrate: Option<MigrateLayout>,
}

/// Reads the layouts first: a family whose format cannot be read is unavailable (said in
/// `statuses`), and a filtered run cannot start without the fork tracepoint.
pub(crate) fn read_formats(
    tracefs: &Tracefs,
    cfg: &TraceConfig,
    statuses: &mut Vec<ProbeStatus>,
    warnings: &mut Vec<String>,
) -> Result<Formats> {
    let mut unavailable = |tps: &[TpSpec], e: &str| {
        for tp in tps {
            statuses.push(ProbeStatus::unavailable(tp_name(tp), e));
        }
    };
    let fault = match cfg.faults {
        false => None,
        true => match tracefs
            .format("exceptions", "page_fault_user")
            .and_then(|f| fault_layout(&f))
        {
            Ok(l) => Some(l),
            Err(e) => {
                unavailable(&FAULT_TPS, &e);
                None
            }
        },
    };
    let fork = match tracefs
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
    let migrate = match cfg.migrations {
        false => None,
        true => match tracefs
            .format("migrate", "mm_migrate_pages")
            .and_then(|end| {
                warnings.extend(reason_drift(&end));
                migrate_layout(&end, &tracefs.format("migrate", "mm_migrate_pages_start")?)
            }) {
            Ok(l) => Some(l),
            Err(e) => {
                unavailable(&MIGRATE_TPS, &e);
                None
            }
        },
    };
    Ok(Formats {
        fault,
        fork,
        migrate,
    })
}

/// Addresses and struct layouts the hooks read, from kallsyms, tracefs and BTF (`layout`:
/// the struct layout facts, empty without BTF).
pub(crate) fn kernel_layout(
    tracefs: &Tracefs,
    syms: &HashMap<String, u64>,
    layout: &str,
) -> KernelLayout {
    let alloc = tracefs.format("kmem", "mm_page_alloc");
    KernelLayout {
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
        page_struct_size: facts::layout_value(layout, "sizeof.page")
            .map_or(KernelLayout::DEFAULT.page_struct_size, u64::from),
        folio_order_offset: folio_order_offset(layout),
        ..KernelLayout::DEFAULT
    }
}

/// What the programs filter on and how they wake the reader.
pub(crate) fn config(cfg: &TraceConfig) -> Config {
    let mut flags = 0;
    for (on, flag) in [
        (cfg.filter, config_flags::FILTER),
        (cfg.cgroup.is_some(), config_flags::CGROUP),
        (cfg.comm.is_some(), config_flags::COMM),
        (cfg.fault_agg, config_flags::FAULT_AGG),
        (cfg.latency_agg.is_some(), config_flags::LATENCY_AGG),
    ] {
        if on {
            flags |= flag;
        }
    }
    Config {
        flags,
        cgroup_level: cfg.cgroup.map_or(0, |c| c.level),
        cgroup_id: cfg.cgroup.map_or(0, |c| c.id),
        comm: cfg.comm.unwrap_or([0; cxl_trace_common::COMM_LEN]),
        wake_bytes: cfg.ringbuf_bytes / 32,
        _reserved: 0,
    }
}

/// Where every hook finds its arguments (`HookArgs::DEFAULT` without function hooks), with
/// the node_stat_item number of the promotion-candidate counter.
pub(crate) fn hook_args_of(
    functions: bool,
    syms: &HashMap<String, u64>,
    kbtf: Option<&btf_rs::Btf>,
    layout: &str,
) -> (HookArgs, BTreeMap<&'static str, String>) {
    let (mut args, drift) = match functions {
        true => hook_args(syms, kbtf),
        false => (HookArgs::DEFAULT, BTreeMap::new()),
    };
    args.promote_candidate_item = facts::layout_value(layout, "node_stat_item.PGPROMOTE_CANDIDATE")
        .and_then(|v| u16::try_from(v).ok())
        .unwrap_or(u16::MAX);
    (args, drift)
}
