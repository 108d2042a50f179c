//! Page migration batches: `migrate:mm_migrate_pages_start` and `migrate:mm_migrate_pages`.
//! Offsets come from tracefs (the `reason` field moved from 52 to 60 in 6.7).

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext, Global,
};
use cxl_trace_common::{kind, stat, MigrateEvent, MigrateLayout, MigrateStartEvent, COMM_LEN};

use crate::{
    shared::{bump, current_ids, emit, header},
    tiering::BATCH_REASON,
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
    emit(
        kind::MIGRATE_START,
        MigrateStartEvent {
            hdr: header(kind::MIGRATE_START, pid, tid),
            mode,
            reason,
            comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        },
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
            comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        },
    );
    Ok(())
}
