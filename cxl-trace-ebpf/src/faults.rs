//! Page faults: the exception tracepoints `exceptions:page_fault_user` and
//! `exceptions:page_fault_kernel` (every fault), and where the kernel allows function hooks,
//! fault latency (fentry/fexit `handle_mm_fault`, `VM_FAULT_RETRY` folded into one fault;
//! `kmem:mm_page_alloc` remembers the movable page allocated during a fault, whose pfn names
//! the node in userspace) and NUMA hinting faults (fentry `task_numa_fault`).

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
    EbpfContext as _, Global,
};
use cxl_trace_common::{
    config_flags, fault_agg, fault_class_index, fault_flags, fault_kind_index, kind, lat_agg,
    latency_bucket, stat, FaultEvent, FaultLatencyEvent, FaultLayout, FaultTotals, LatHist,
    NumaFaultEvent, PfnRanges, SlotPage,
};

use crate::shared::{
    arg_at, bump, current_comm, current_ids, emit, flag, followed, header, header_at, kprobe_arg,
    now, HOOK_ARGS, KERNEL_LAYOUT, NONE,
};

#[unsafe(no_mangle)]
static FAULT_LAYOUT: Global<FaultLayout> = Global::new(FaultLayout::DEFAULT);

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    handle(&ctx, kind::FAULT_USER)
}

#[tracepoint]
pub fn page_fault_kernel(ctx: TracePointContext) -> u32 {
    handle(&ctx, kind::FAULT_KERNEL)
}

#[inline(always)]
fn handle(ctx: &TracePointContext, kind: u16) -> u32 {
    match try_handle(ctx, kind) {
        Ok(()) => 0,
        Err(_) => {
            bump(stat::READ_ERRORS);
            0
        }
    }
}

#[inline(always)]
fn try_handle(ctx: &TracePointContext, kind: u16) -> Result<(), i64> {
    let (pid, tid) = current_ids();
    if !followed(pid) {
        return Ok(());
    }
    let layout = FAULT_LAYOUT.load();
    if flag(config_flags::FAULT_AGG) {
        let code = error_code(ctx, layout.error_code)?;
        count(pid, kind, code);
        return Ok(());
    }
    // SAFETY: the offsets come from this kernel's tracefs format file for the tracepoint, so
    // each read stays inside the tracepoint's record. At the offsets every kernel so far has
    // (8, 16, 24) they are direct loads from the context, which the verifier bounds-checks
    // (no helper call on the hottest path); else bpf_probe_read_kernel checks the access, in
    // one call when the fields are consecutive.
    let (address, ip, error_code) = unsafe {
        if layout.address == 8 && layout.ip == 16 && layout.error_code == 24 {
            let p = ctx.as_ptr() as *const u64;
            (
                core::ptr::read_volatile(p.add(1)),
                core::ptr::read_volatile(p.add(2)),
                core::ptr::read_volatile(p.add(3)),
            )
        } else if layout.ip == layout.address.wrapping_add(8)
            && layout.error_code == layout.ip.wrapping_add(8)
        {
            let f = ctx
                .read_at::<[u64; 3]>(layout.address as usize)
                .map_err(i64::from)?;
            (f[0], f[1], f[2])
        } else {
            (
                ctx.read_at::<u64>(layout.address as usize)
                    .map_err(i64::from)?,
                ctx.read_at::<u64>(layout.ip as usize).map_err(i64::from)?,
                ctx.read_at::<u64>(layout.error_code as usize)
                    .map_err(i64::from)?,
            )
        }
    };
    let comm = current_comm();
    emit(
        kind,
        FaultEvent {
            hdr: header(kind, pid, tid),
            address,
            ip,
            error_code,
            comm,
        },
    );
    Ok(())
}

/// Per-process fault counts per CPU, for the live modes: slot `pid % SLOTS`, in pages of
/// `SLOTS_PER_PAGE` (userspace reads a page per lookup).
#[map]
static PROC_FAULTS: PerCpuArray<SlotPage> = PerCpuArray::with_max_entries(fault_agg::PAGES, 0);

/// Every fault counted, by mode and kind, and those no slot took: the exact totals.
#[map]
static FAULT_TOTALS: PerCpuArray<FaultTotals> = PerCpuArray::with_max_entries(1, 0);

/// Per slot, the exited process whose slot may be taken over (set by userspace).
#[map]
static FAULT_RELEASE: PerCpuArray<u32> = PerCpuArray::with_max_entries(fault_agg::SLOTS, 0);

/// The error code of a fault tracepoint's record. The offset is 24 on every kernel so far:
/// then a direct load from the context (no helper call), else a checked read.
#[inline(always)]
fn error_code(ctx: &TracePointContext, off: u32) -> Result<u64, i64> {
    if off == 24 {
        // SAFETY: a tracepoint program may load from its context (the raw record) at a
        // constant, aligned offset inside the record; the verifier checks the bounds, and
        // this kernel's format file put `error_code` (8 bytes) at 24.
        Ok(unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(24) as *const u64) })
    } else {
        // SAFETY: the offset comes from this kernel's format file; the helper checks the read.
        unsafe { ctx.read_at::<u64>(off as usize) }.map_err(i64::from)
    }
}

/// Counts one fault of `pid` in the kernel (no record): the totals, and the process's slot.
/// The arrays are per CPU and a BPF program is not preempted by another run of itself on its
/// CPU (the recursion guard skips such runs), so plain increments do not race.
#[inline(always)]
fn count(pid: u32, kind: u16, code: u64) {
    let mode = if kind == kind::FAULT_USER {
        0
    } else {
        fault_agg::KINDS
    };
    let i = (mode + fault_kind_index(code)) & (fault_agg::COUNTERS - 1);
    let Some(t) = FAULT_TOTALS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's entry of a per-CPU array, from a successful lookup.
    let t = unsafe { &mut *t };
    t.counts[i] += 1;
    let own = pid % fault_agg::SLOTS;
    let page = PROC_FAULTS.get_ptr_mut(own / fault_agg::SLOTS_PER_PAGE);
    let (Some(page), true) = (page, pid != 0) else {
        t.other[i] += 1;
        return;
    };
    // SAFETY: as above.
    let slot = unsafe { &mut (*page).slots[(own % fault_agg::SLOTS_PER_PAGE) as usize] };
    if slot.pid != pid {
        let released = match FAULT_RELEASE.get_ptr_mut(own) {
            // SAFETY: as above.
            Some(r) if slot.pid != 0 && unsafe { *r } == slot.pid => {
                // SAFETY: as above.
                unsafe { *r = 0 };
                true
            }
            _ => false,
        };
        if slot.pid != 0 && !released {
            t.other[i] += 1;
            return;
        }
        slot.pid = pid;
        slot.comm = current_comm();
        slot.counts = [0; fault_agg::COUNTERS];
    }
    slot.counts[i] += 1;
}

/// A fault in progress on a thread.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FaultState {
    start_ns: u64,
    alloc_pfn: u64,
    address: u64,
    flags: u32,
    numa_node: u32,
    retries: u32,
    _pad: u32,
}

#[map]
static FAULT_STATE: LruHashMap<u32, FaultState> = LruHashMap::with_max_entries(16_384, 0);

const VM_FAULT_RETRY: u32 = 0x400;
const VM_FAULT_MAJOR: u32 = 0x4;
const GFP_MOVABLE: u32 = 0x08;
const TNF_MIGRATED: i32 = 0x01;
const TNF_FAULT_LOCAL: i32 = 0x08;
const TNF_MIGRATE_FAIL: i32 = 0x10;

#[fentry(function = "handle_mm_fault")]
pub fn handle_mm_fault_entry(ctx: FEntryContext) -> u32 {
    let a = HOOK_ARGS.load();
    fault_enter(arg_at(&ctx, a.fault_address), arg_at(&ctx, a.fault_regs));
    0
}

#[fexit(function = "handle_mm_fault")]
pub fn handle_mm_fault_exit(ctx: FExitContext) -> u32 {
    fault_exit(arg_at(&ctx, HOOK_ARGS.load().fault_ret) as u32);
    0
}

#[kprobe]
pub fn handle_mm_fault_kprobe(ctx: ProbeContext) -> u32 {
    let a = HOOK_ARGS.load();
    fault_enter(
        kprobe_arg(&ctx, a.fault_address),
        kprobe_arg(&ctx, a.fault_regs),
    );
    0
}

#[kretprobe]
pub fn handle_mm_fault_kretprobe(ctx: RetProbeContext) -> u32 {
    fault_exit(ctx.ret::<u64>() as u32);
    0
}

/// Entry of `handle_mm_fault(vma, address, flags, regs)`: starts a fault, or folds a retry
/// round into the one in progress.
#[inline(always)]
fn fault_enter(address: u64, regs: u64) {
    let (pid, tid) = current_ids();
    if !followed(pid) {
        return;
    }
    if let Some(st) = FAULT_STATE.get_ptr_mut(&tid) {
        // SAFETY: a pointer from a successful lookup in an LRU hash map of this thread's
        // key; only this thread writes its own entry, and it is not running anything else.
        let st = unsafe { &mut *st };
        if st.flags & fault_flags::RETRY_PENDING != 0 {
            st.flags &= !fault_flags::RETRY_PENDING;
            st.retries += 1;
            return;
        }
    }
    let st = FaultState {
        start_ns: now(),
        alloc_pfn: NONE,
        address,
        flags: if regs == 0 { fault_flags::GUP } else { 0 },
        numa_node: u32::MAX,
        retries: 0,
        _pad: 0,
    };
    let _ = FAULT_STATE.insert(&tid, &st, 0);
}

/// Return of `handle_mm_fault` with its `vm_fault_t`.
#[inline(always)]
fn fault_exit(ret: u32) {
    let (pid, tid) = current_ids();
    let Some(st) = FAULT_STATE.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: as in fault_enter: this thread's own entry.
    let st = unsafe { &mut *st };
    if ret & VM_FAULT_MAJOR != 0 {
        // I/O done in a round that then asked for a retry still makes the fault major.
        st.flags |= fault_flags::MAJOR;
    }
    if ret & VM_FAULT_RETRY != 0 {
        st.flags |= fault_flags::RETRY_PENDING;
        return;
    }
    let t = now();
    if flag(config_flags::LATENCY_AGG) {
        count_latency(st, ret, t.saturating_sub(st.start_ns));
        let _ = FAULT_STATE.remove(&tid);
        return;
    }
    let ev = FaultLatencyEvent {
        hdr: header_at(kind::FAULT_LATENCY, pid, tid, t),
        address: st.address,
        latency_ns: t.saturating_sub(st.start_ns),
        alloc_pfn: st.alloc_pfn,
        ret,
        flags: st.flags,
        numa_node: st.numa_node,
        retries: st.retries,
        comm: current_comm(),
    };
    let _ = FAULT_STATE.remove(&tid);
    emit(kind::FAULT_LATENCY, ev);
}

/// Fault-latency histograms per tier slot and class, for the live modes.
#[map]
static FAULT_LAT: PerCpuArray<LatHist> =
    PerCpuArray::with_max_entries(lat_agg::TIER_SLOTS * lat_agg::CLASSES, 0);

/// Node to tier slot (userspace fills it from the topology, and again when it changes).
#[map]
static NODE_TIER: Array<u32> = Array::with_max_entries(lat_agg::NODES, 0);

/// The pfn ranges of each node's online memory (userspace fills it).
#[map]
static PFN_RANGES: Array<PfnRanges> = Array::with_max_entries(1, 0);

/// The node of `pfn`, from the ranges userspace gave.
#[inline(always)]
fn node_of_pfn(pfn: u64) -> u32 {
    let Some(t) = PFN_RANGES.get_ptr(0) else {
        return u32::MAX;
    };
    // SAFETY: a pointer from a successful lookup into a one-entry array; only read.
    let t = unsafe { &*t };
    let len = t.len as usize;
    for i in 0..lat_agg::RANGES {
        if i >= len {
            break;
        }
        let r = &t.ranges[i];
        if pfn >= r.start && pfn < r.end {
            return r.node;
        }
    }
    u32::MAX
}

/// Adds one timed fault to the histogram of its tier and class (no record).
#[inline(always)]
fn count_latency(st: &FaultState, ret: u32, latency_ns: u64) {
    let node = if st.numa_node != u32::MAX {
        st.numa_node
    } else if st.alloc_pfn != NONE {
        node_of_pfn(st.alloc_pfn)
    } else {
        u32::MAX
    };
    let tier = match NODE_TIER.get(node) {
        Some(&t) if t < lat_agg::TIER_SLOTS => t,
        _ => lat_agg::UNKNOWN_TIER,
    };
    let class = fault_class_index(st.flags, ret);
    let Some(h) = FAULT_LAT.get_ptr_mut(tier * lat_agg::CLASSES + class) else {
        return;
    };
    // SAFETY: this CPU's entry of a per-CPU array, from a successful lookup; a program run
    // is not interrupted by another run of itself on its CPU.
    let h = unsafe { &mut *h };
    let ns = if latency_ns > lat_agg::MAX_NS {
        lat_agg::MAX_NS
    } else {
        latency_ns
    };
    h.n += 1;
    h.sum_ns += ns;
    if st.retries > 0 {
        h.retried += 1;
    }
    if st.flags & fault_flags::GUP != 0 {
        h.gup += 1;
    }
    if let Some(c) = h.counts.get_mut(latency_bucket(ns)) {
        *c += 1;
    }
}

/// Remembers the movable page allocated by a fault in progress (page tables and kernel
/// allocations are not movable, user data pages are).
#[tracepoint]
pub fn mm_page_alloc(ctx: TracePointContext) -> u32 {
    let (_, tid) = current_ids();
    let Some(st) = FAULT_STATE.get_ptr_mut(&tid) else {
        return 0;
    };
    let l = KERNEL_LAYOUT.load();
    // SAFETY: offsets from this kernel's tracefs format of kmem:mm_page_alloc.
    let read = unsafe {
        (
            ctx.read_at::<u64>(l.alloc_pfn as usize),
            ctx.read_at::<u32>(l.alloc_gfp as usize),
        )
    };
    let (Ok(pfn), Ok(gfp)) = read else {
        bump(stat::READ_ERRORS);
        return 0;
    };
    if gfp & GFP_MOVABLE != 0 {
        // SAFETY: this thread's own entry, from a successful lookup.
        let st = unsafe { &mut *st };
        st.alloc_pfn = pfn;
        st.flags |= fault_flags::ALLOC;
    }
    0
}

#[fentry(function = "task_numa_fault")]
pub fn task_numa_fault(ctx: FEntryContext) -> u32 {
    let a = HOOK_ARGS.load();
    numa_fault(
        arg_at(&ctx, a.numa_last_cpupid) as i32,
        arg_at(&ctx, a.numa_mem_node) as i32,
        arg_at(&ctx, a.numa_pages) as i32,
        arg_at(&ctx, a.numa_flags) as i32,
    );
    0
}

#[kprobe]
pub fn task_numa_fault_kprobe(ctx: ProbeContext) -> u32 {
    let a = HOOK_ARGS.load();
    let arg = |n| kprobe_arg(&ctx, n) as i32;
    numa_fault(
        arg(a.numa_last_cpupid),
        arg(a.numa_mem_node),
        arg(a.numa_pages),
        arg(a.numa_flags),
    );
    0
}

/// `task_numa_fault(last_cpupid, mem_node, pages, flags)`.
#[inline(always)]
fn numa_fault(last_cpupid: i32, mem_node: i32, pages: i32, flags: i32) {
    let (pid, tid) = current_ids();
    if !followed(pid) {
        return;
    }
    if let Some(st) = FAULT_STATE.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry, from a successful lookup.
        let st = unsafe { &mut *st };
        st.flags |= fault_flags::NUMA_HINT;
        if flags & TNF_MIGRATED != 0 {
            st.flags |= fault_flags::NUMA_MIGRATED;
        }
        if flags & TNF_MIGRATE_FAIL != 0 {
            st.flags |= fault_flags::NUMA_MIGRATE_FAIL;
        }
        if flags & TNF_FAULT_LOCAL != 0 {
            st.flags |= fault_flags::NUMA_LOCAL;
        }
        st.numa_node = mem_node as u32;
    }
    emit(
        kind::NUMA_FAULT,
        NumaFaultEvent {
            hdr: header(kind::NUMA_FAULT, pid, tid),
            mem_node,
            pages,
            flags,
            last_cpupid,
        },
    );
}
