//! Rare tracepoints (NUMA task placement, kswapd wake-ups, RAS, CXL device events) captured as
//! raw records and decoded in userspace with the offsets of their tracefs format: their fields
//! differ between kernel versions and they fire seldom, so copying the record is cheaper in
//! code and correctness than one decoder per kernel here.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
    EbpfContext as _, Global,
};
use cxl_trace_common::{kind, raw, stat, RawLayout, RawTpEvent};

use crate::shared::{bump, current_ids, header};

#[unsafe(no_mangle)]
static RAW_LAYOUT: Global<RawLayout> = Global::new(RawLayout::DEFAULT);

#[inline(always)]
fn capture(ctx: &TracePointContext, tp: u16) -> u32 {
    let sizes = RAW_LAYOUT.load();
    let Some(&size) = sizes.size.get(usize::from(tp)) else {
        return 0;
    };
    // The verifier needs the copy length bounded by the buffer.
    let len = (size as usize).min(raw::DATA);
    if len == 0 {
        return 0;
    }
    let Some(mut entry) = crate::shared::EVENTS.reserve::<RawTpEvent>(0) else {
        bump(stat::DROPPED + u32::from(kind::RAW_TP));
        return 0;
    };
    let (pid, tid) = current_ids();
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points to a reserved, exclusively owned ring buffer record of the size of
    // RawTpEvent; fields are written through raw pointers before submit, and the copy of at
    // most raw::DATA bytes from the tracepoint record stays inside `data`.
    let rc = unsafe {
        core::ptr::addr_of_mut!((*ev).hdr).write(header(kind::RAW_TP, pid, tid));
        core::ptr::addr_of_mut!((*ev).tp).write(tp);
        core::ptr::addr_of_mut!((*ev).len).write(len as u16);
        core::ptr::addr_of_mut!((*ev)._reserved).write(0);
        bpf_probe_read_kernel(
            core::ptr::addr_of_mut!((*ev).data).cast(),
            len as u32,
            ctx.as_ptr().cast_const(),
        )
    };
    if rc != 0 {
        bump(stat::READ_ERRORS);
        entry.discard(0);
        return 0;
    }
    // Memory errors and kills wake the reader at once (see `emit_with`); the frequent
    // ones (kswapd wake-ups, NUMA task moves) wait for the batch.
    entry.submit(if tp >= raw::FIRST_URGENT {
        u64::from(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP)
    } else {
        crate::shared::submit_flags()
    });
    bump(stat::PRODUCED + u32::from(kind::RAW_TP));
    0
}

macro_rules! raw_tracepoints {
    ($($prog:ident => $id:expr),* $(,)?) => {$(
        #[tracepoint]
        pub fn $prog(ctx: TracePointContext) -> u32 {
            capture(&ctx, $id)
        }
    )*};
}

raw_tracepoints! {
    sched_move_numa => raw::SCHED_MOVE_NUMA,
    sched_stick_numa => raw::SCHED_STICK_NUMA,
    sched_swap_numa => raw::SCHED_SWAP_NUMA,
    mm_vmscan_kswapd_wake => raw::KSWAPD_WAKE,
    memory_failure_event => raw::MEMORY_FAILURE,
    mce_record => raw::MCE_RECORD,
    cxl_general_media => raw::CXL_GENERAL_MEDIA,
    cxl_dram => raw::CXL_DRAM,
    cxl_memory_module => raw::CXL_MEMORY_MODULE,
    cxl_poison => raw::CXL_POISON,
}

/// `signal:signal_generate`, SIGBUS only: the kill of a process whose page has a memory
/// error. Every other signal returns before the copy.
#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    // SAFETY: a 4-byte read inside the tracepoint record; userspace attaches this program
    // only when the kernel's format has `int sig` at this offset.
    match unsafe { ctx.read_at::<i32>(raw::SIGNAL_SIG_OFFSET) } {
        Ok(raw::SIGBUS) => capture(&ctx, raw::SIGNAL_GENERATE),
        _ => 0,
    }
}
