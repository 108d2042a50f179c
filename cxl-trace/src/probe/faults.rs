//! Page faults: the exception tracepoints (every fault, its kind and address) and, where
//! function hooks are allowed, fault latency (`handle_mm_fault`) and NUMA hinting faults
//! (`task_numa_fault`), with the page allocation tracepoint naming the node of pages
//! allocated during a fault.

use cxl_trace_common::FaultLayout;

use crate::{
    model::{tiers::Availability, tracefs::Format},
    probe::attach::{unavailable_reason, Attach, FnHooks, Hook, TpSpec},
};

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
/// The node of pages allocated during a fault.
pub(crate) const ALLOC_TP: TpSpec = TpSpec {
    program: "mm_page_alloc",
    category: "kmem",
    name: "mm_page_alloc",
};

pub(crate) const HOOK_FAULT: Hook<'static> = Hook {
    func: "handle_mm_fault",
    tracing: (Some("handle_mm_fault_entry"), Some("handle_mm_fault_exit")),
    kprobe: (
        Some("handle_mm_fault_kprobe"),
        Some("handle_mm_fault_kretprobe"),
    ),
};
pub(crate) const HOOK_NUMA_FAULT: Hook<'static> = Hook {
    func: "task_numa_fault",
    tracing: (Some("task_numa_fault"), None),
    kprobe: (Some("task_numa_fault_kprobe"), None),
};

/// Fault latency, the allocation tracepoint with it, and NUMA hinting faults.
pub(crate) fn attach_hooks(at: &mut Attach, hooks: &FnHooks, avail: &mut Availability) {
    let st = at.hook(hooks, HOOK_FAULT, None);
    avail.latency = unavailable_reason(&st);
    at.statuses.extend(st);
    if avail.latency.is_none() {
        let st = at.tracepoint(&ALLOC_TP);
        at.statuses.push(st);
    }
    let st = at.hook(hooks, HOOK_NUMA_FAULT, None);
    avail.numa = unavailable_reason(&st);
    at.statuses.extend(st);
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
