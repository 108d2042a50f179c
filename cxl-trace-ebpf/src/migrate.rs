//! Page migrations: the batch tracepoints `migrate:mm_migrate_pages_start` and
//! `migrate:mm_migrate_pages` (offsets from tracefs: the `reason` field moved from 52 to 60 in
//! 6.7), and where the kernel allows function hooks, per-folio moves: fentry/fexit
//! `move_to_new_folio` gives source and destination pfn, the page's identity (mapping, index)
//! and the copy time; the reason comes from the batch in progress on the thread. Without the
//! hooks, `ptes.rs` sees per-folio moves in the migration entries.
//!
//! Struct pages become pfns through the vmemmap: `pfn = (page - vmemmap) / sizeof(struct page)`,
//! with the vmemmap base read from the kernel's `vmemmap_base` variable when it is randomised.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
    Global,
};
use cxl_trace_common::{
    folio_size, kind, stat, FolioMigrateEvent, KernelLayout, MigrateEvent, MigrateLayout,
    MigrateStartEvent, COPY_UNKNOWN, MR_MEMORY_FAILURE, MR_MEMORY_HOTPLUG,
};

use crate::shared::{
    arg_at, bump, current_comm, current_ids, emit, emit_with, header, header_at, kprobe_arg, now,
    HOOK_ARGS, KERNEL_LAYOUT, NONE,
};

#[unsafe(no_mangle)]
static MIGRATE_LAYOUT: Global<MigrateLayout> = Global::new(MigrateLayout::DEFAULT);

// Migrations are not filtered by process: kswapd, kcompactd and NUMA balancing work on
// behalf of others, and the totals must agree with /proc/vmstat.

#[tracepoint]
pub fn mm_migrate_pages_start(ctx: TracePointContext) -> u32 {
    let layout = MIGRATE_LAYOUT.load();
    // SAFETY: offsets from this kernel's tracefs format of mm_migrate_pages_start.
    let read = unsafe {
        (
            ctx.read_at::<u32>(layout.start_mode as usize),
            ctx.read_at::<u32>(layout.start_reason as usize),
        )
    };
    let (Ok(mode), Ok(reason)) = read else {
        bump(stat::READ_ERRORS);
        return 0;
    };
    let (pid, tid) = current_ids();
    // The per-folio hook reads the reason of the batch in progress on this thread.
    let _ = BATCH_REASON.insert(&tid, &reason, 0);
    emit_with(
        kind::MIGRATE_START,
        MigrateStartEvent {
            hdr: header(kind::MIGRATE_START, pid, tid),
            mode,
            reason,
            comm: current_comm(),
        },
        reason == MR_MEMORY_FAILURE || reason == MR_MEMORY_HOTPLUG,
    );
    0
}

#[tracepoint]
pub fn mm_migrate_pages(ctx: TracePointContext) -> u32 {
    match try_mm_migrate_pages(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(stat::READ_ERRORS);
            0
        }
    }
}

#[inline(always)]
fn read_u64(ctx: &TracePointContext, off: u32) -> Result<u64, i64> {
    if off == MigrateLayout::ABSENT {
        return Ok(0);
    }
    // SAFETY: offsets from this kernel's tracefs format of mm_migrate_pages; absent fields
    // were filtered out above.
    unsafe { ctx.read_at::<u64>(off as usize) }.map_err(i64::from)
}

#[inline(always)]
fn try_mm_migrate_pages(ctx: &TracePointContext) -> Result<(), i64> {
    let l = MIGRATE_LAYOUT.load();
    let succeeded = read_u64(ctx, l.succeeded)?;
    let failed = read_u64(ctx, l.failed)?;
    let thp_succeeded = read_u64(ctx, l.thp_succeeded)?;
    let thp_failed = read_u64(ctx, l.thp_failed)?;
    let thp_split = read_u64(ctx, l.thp_split)?;
    let large_folio_split = read_u64(ctx, l.large_folio_split)?;
    // SAFETY: offsets from this kernel's tracefs format.
    let mode = unsafe { ctx.read_at::<u32>(l.mode as usize) }.map_err(i64::from)?;
    // SAFETY: as above.
    let reason = unsafe { ctx.read_at::<u32>(l.reason as usize) }.map_err(i64::from)?;
    let (pid, tid) = current_ids();
    let _ = BATCH_REASON.remove(&tid);
    emit(
        kind::MIGRATE,
        MigrateEvent {
            hdr: header(kind::MIGRATE, pid, tid),
            succeeded,
            failed,
            thp_succeeded,
            thp_failed,
            thp_split,
            large_folio_split,
            mode,
            reason,
            comm: current_comm(),
        },
    );
    Ok(())
}

/// `move_to_new_folio` in progress on this CPU.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FolioStart {
    start_ns: u64,
    dst: u64,
    src: u64,
    /// The thread that entered (0: the slot is free).
    tid: u32,
    _pad: u32,
}

/// `move_to_new_folio` entry, one slot per CPU: a per-CPU array costs a fraction of a hash
/// insert on the per-folio path. A thread that sleeps in the copy and resumes elsewhere, or
/// whose slot another thread took meanwhile, finds no matching entry (thread and source folio):
/// its copy time is then unknown (`COPY_UNKNOWN`), never another folio's.
#[map]
static FOLIO_START: PerCpuArray<FolioStart> = PerCpuArray::with_max_entries(1, 0);

/// The kernel's `vmemmap_base`, read once (it is set at boot and never changes).
#[map]
static VMEMMAP_BASE: Array<u64> = Array::with_max_entries(1, 0);

/// `enum migrate_reason` of the batch in progress by thread (set and cleared by migrate.rs).
#[map]
pub static BATCH_REASON: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4_096, 0);

#[fentry(function = "move_to_new_folio")]
pub fn move_to_new_folio_entry(ctx: FEntryContext) -> u32 {
    let a = HOOK_ARGS.load();
    folio_enter(arg_at(&ctx, a.folio_dst), arg_at(&ctx, a.folio_src));
    0
}

#[fexit(function = "move_to_new_folio")]
pub fn move_to_new_folio_exit(ctx: FExitContext) -> u32 {
    // The verifier types the folio arguments as BTF pointers and refuses the arithmetic that
    // turns them into pfns; read them as plain numbers instead.
    let a = HOOK_ARGS.load();
    folio_exit(
        arg_at(&ctx, a.folio_dst),
        arg_at(&ctx, a.folio_src),
        arg_at(&ctx, a.folio_ret) as i32,
    );
    0
}

#[kprobe]
pub fn move_to_new_folio_kprobe(ctx: ProbeContext) -> u32 {
    let a = HOOK_ARGS.load();
    folio_enter(kprobe_arg(&ctx, a.folio_dst), kprobe_arg(&ctx, a.folio_src));
    0
}

#[kretprobe]
pub fn move_to_new_folio_kretprobe(ctx: RetProbeContext) -> u32 {
    let rc = ctx.ret::<u64>() as i32;
    let (_, tid) = current_ids();
    let (dst, src) = match FOLIO_START.get_ptr(0) {
        // SAFETY: this CPU's slot, from a successful lookup; only read.
        Some(s) if unsafe { (*s).tid } == tid => unsafe { ((*s).dst, (*s).src) },
        // Another thread's entry, or none: the arguments are lost with it.
        _ => return 0,
    };
    folio_exit(dst, src, rc);
    0
}

/// Entry of `move_to_new_folio(dst, src, mode)`; a kretprobe does not see the arguments, so
/// they are kept here (and they identify the entry for fexit).
#[inline(always)]
fn folio_enter(dst: u64, src: u64) {
    let (_, tid) = current_ids();
    if let Some(slot) = FOLIO_START.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, from a successful lookup; programs on one CPU do not run
        // concurrently with each other for the same hook, and the write is a plain store.
        unsafe {
            *slot = FolioStart {
                start_ns: now(),
                dst,
                src,
                tid,
                _pad: 0,
            }
        };
    }
}

/// The kernel's `vmemmap_base`, from the cache or read once into it; `None` when unreadable.
#[inline(always)]
fn vmemmap_base(addr: u64) -> Option<u64> {
    let slot = VMEMMAP_BASE.get_ptr_mut(0)?;
    // SAFETY: the single slot of an array map, from a successful lookup.
    let cached = unsafe { *slot };
    if cached != 0 {
        return Some(cached);
    }
    // SAFETY: reads the kernel's `vmemmap_base` variable at the address kallsyms gave;
    // bpf_probe_read_kernel fails cleanly if it is not readable.
    let v = unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()?;
    // SAFETY: the array slot from the lookup above; racing CPUs store the same value.
    unsafe { *slot = v };
    Some(v)
}

/// pfn of a `struct page`/`struct folio` pointer.
#[inline(always)]
fn pfn_of(page: u64, l: &KernelLayout, vmemmap: u64) -> u64 {
    if l.page_struct_size == 0 || page < vmemmap {
        return NONE;
    }
    (page - vmemmap) / l.page_struct_size
}

/// Size code of a large folio: `order + 1` when its order byte reads as plausible (1 to 20,
/// and both folios aligned to it, as every folio is), else [`folio_size::LARGE`].
#[inline(always)]
fn large_folio_size(named: u64, src_pfn: u64, dst_pfn: u64, l: &KernelLayout) -> u32 {
    let at = named + l.page_struct_size + u64::from(l.folio_order_offset);
    // SAFETY: a byte of the first tail page of a large folio; bpf_probe_read_kernel fails
    // cleanly.
    let Ok(order) = (unsafe { bpf_probe_read_kernel(at as *const u8) }) else {
        return folio_size::LARGE;
    };
    let order = u64::from(order);
    let mask = (1u64 << (order & 31)) - 1;
    let aligned = |pfn: u64| pfn != NONE && pfn & mask == 0;
    if (1..=20).contains(&order) && aligned(src_pfn) && aligned(dst_pfn) {
        order as u32 + 1
    } else {
        folio_size::LARGE
    }
}

/// Return of `move_to_new_folio` (0 on success).
#[inline(always)]
fn folio_exit(dst: u64, src: u64, rc: i32) {
    let (pid, tid) = current_ids();
    let l = KERNEL_LAYOUT.load();
    let vmemmap = if l.vmemmap_base_addr != 0 {
        match vmemmap_base(l.vmemmap_base_addr) {
            Some(v) => v,
            None => {
                bump(stat::READ_ERRORS);
                return;
            }
        }
    } else {
        l.vmemmap
    };
    // On success the destination carries the page's mapping and index; on failure the
    // source still does.
    let named = if rc == 0 { dst } else { src };
    // SAFETY: `named` is a struct folio pointer argument of move_to_new_folio; `mapping` and
    // `index` are at 24 and 32 in struct page/folio on every 64-bit kernel since 4.x (so one
    // read of both); bpf_probe_read_kernel fails cleanly.
    let [mapping, index] =
        unsafe { bpf_probe_read_kernel((named + 24) as *const [u64; 2]) }.unwrap_or([0, 0]);
    let t = now();
    let copy_ns = match FOLIO_START.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, from a successful lookup. It is this folio's entry only if
        // the thread and the source folio match; it is freed once used.
        Some(s) => unsafe {
            if (*s).tid == tid && (*s).src == src {
                (*s).tid = 0;
                t.saturating_sub((*s).start_ns)
            } else {
                COPY_UNKNOWN
            }
        },
        None => COPY_UNKNOWN,
    };
    let reason = match BATCH_REASON.get_ptr(&tid) {
        // SAFETY: this thread's own entry, from a successful lookup.
        Some(r) => unsafe { *r },
        None => u32::MAX,
    };
    // A large folio's first tail page has bit 0 set in its second word (`PageTail`), and the
    // rest names the head: its address (`compound_head`, and `compound_info` without a mask)
    // or a mask that the tail's own address ANDs down to the head (`compound_info` with HVO
    // and a power-of-2 struct page, 7.x). The `struct page` after a small folio is never a
    // tail of it.
    let tail = named + l.page_struct_size;
    let size = if l.folio_order_offset == u32::MAX || l.page_struct_size == 0 {
        // A kernel whose struct page layout is not known to hold: no size, never a wrong one.
        folio_size::UNKNOWN
    } else {
        // SAFETY: the word after `named`'s struct page; bpf_probe_read_kernel fails cleanly.
        match unsafe { bpf_probe_read_kernel((tail + 8) as *const u64) } {
            Ok(info) if info & 1 == 1 && (info == named | 1 || tail & info == named) => {
                large_folio_size(
                    named,
                    pfn_of(src, &l, vmemmap),
                    pfn_of(dst, &l, vmemmap),
                    &l,
                )
            }
            Ok(_) => folio_size::SMALL,
            Err(_) => folio_size::UNKNOWN,
        }
    };
    let reason = folio_size::pack(reason, size);
    emit(
        kind::FOLIO_MIGRATE,
        FolioMigrateEvent {
            hdr: header_at(kind::FOLIO_MIGRATE, pid, tid, t),
            src_pfn: pfn_of(src, &l, vmemmap),
            dst_pfn: pfn_of(dst, &l, vmemmap),
            mapping,
            index,
            copy_ns,
            rc,
            reason,
        },
    );
}
