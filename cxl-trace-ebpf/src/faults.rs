//! Page fault exceptions: `exceptions:page_fault_user` and `exceptions:page_fault_kernel`.

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext, Global,
};
use cxl_trace_common::{config_flags, kind, stat, FaultEvent, FaultLayout, COMM_LEN};

use crate::shared::{bump, current_ids, emit, flag, followed, header};

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
    if flag(config_flags::NO_FAULT_EVENTS) {
        bump(stat::PRODUCED + u32::from(kind));
        return Ok(());
    }
    let layout = FAULT_LAYOUT.load();
    // SAFETY: the offsets come from this kernel's tracefs format file for the tracepoint, so
    // each read stays inside the tracepoint's record; bpf_probe_read_kernel checks the access.
    // The three fields are consecutive on every kernel so far: then one read (one helper call
    // per fault instead of three, on the hottest path).
    let (address, ip, error_code) = unsafe {
        if layout.ip == layout.address.wrapping_add(8)
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
    let comm = bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]);
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
