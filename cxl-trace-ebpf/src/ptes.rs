//! Per-folio migration from tracepoints alone, for kernels that refuse a hook on
//! `move_to_new_folio` (no fentry, no kprobes):
//!
//! - `migrate:set_migration_pte` / `thp:set_migration_pmd` fire when a mapping of a folio is
//!   replaced by a migration entry, which encodes the source pfn;
//! - `migrate:remove_migration_pte` / `thp:remove_migration_pmd` fire when the entry is
//!   replaced by a real mapping again: of the destination folio, or of the source when it
//!   stayed.
//!
//! Both run on the migrating thread, so the pair is matched by (thread, address). One event is
//! sent per folio: the remaps of its other mappings (other processes, other subpages of a
//! PTE-mapped large folio) follow each other on the same thread and are skipped. Nothing is
//! sent outside a migration batch (THP splits also unmap and remap through migration entries).
//! Decoding the entries into pfns is left to userspace, which knows the architecture.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use cxl_trace_common::{kind, stat, MigrationPteEvent};

use crate::{
    migrate::BATCH_REASON,
    shared::{bump, current_ids, emit, header, now},
};

/// Field offsets, the same in every kernel that has these tracepoints (checked against tracefs
/// by userspace before attaching): `unsigned long addr` at 8, the entry (`pte` or `pmd`) at
/// 16, `int order` at 24 (PTE events only).
const ADDR: usize = 8;
const ENTRY: usize = 16;
const ORDER: usize = 24;
/// Order of a PMD-mapped folio on x86_64 (2 MiB).
const PMD_ORDER: u32 = 9;
/// x86_64 page table bits: the pfn field and the bits that make a PROT_NONE entry (whose pfn is
/// stored inverted, the L1TF mitigation).
const PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const PROTNONE: u64 = 1 << 8;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct MapKey {
    tid: u32,
    _pad: u32,
    addr: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Unmapped {
    entry: u64,
    ts: u64,
}

/// Migration entries written and not yet removed, by (thread, address).
#[map]
static UNMAPPED: LruHashMap<MapKey, Unmapped> = LruHashMap::with_max_entries(65_536, 0);

/// First pfn of the last folio reported by each thread (to skip its other mappings).
#[map]
static LAST_FOLIO: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4_096, 0);

#[tracepoint]
pub fn set_migration_pte(ctx: TracePointContext) -> u32 {
    on_set(&ctx);
    0
}

#[tracepoint]
pub fn set_migration_pmd(ctx: TracePointContext) -> u32 {
    on_set(&ctx);
    0
}

#[tracepoint]
pub fn remove_migration_pte(ctx: TracePointContext) -> u32 {
    // SAFETY: `order` is at 24 in remove_migration_pte's format (checked by userspace).
    match unsafe { ctx.read_at::<i32>(ORDER) } {
        Ok(order) => on_remove(&ctx, order.clamp(0, 31) as u32, 0),
        Err(_) => bump(stat::READ_ERRORS),
    }
    0
}

#[tracepoint]
pub fn remove_migration_pmd(ctx: TracePointContext) -> u32 {
    on_remove(&ctx, PMD_ORDER, 1);
    0
}

#[inline(always)]
fn read_pair(ctx: &TracePointContext) -> Option<(u64, u64)> {
    // SAFETY: `addr` and the entry are at 8 and 16 in the four formats (checked by userspace);
    // read_at goes through bpf_probe_read and fails cleanly.
    let r = unsafe { (ctx.read_at::<u64>(ADDR), ctx.read_at::<u64>(ENTRY)) };
    match r {
        (Ok(a), Ok(e)) => Some((a, e)),
        _ => {
            bump(stat::READ_ERRORS);
            None
        }
    }
}

#[inline(always)]
fn on_set(ctx: &TracePointContext) {
    let (_, tid) = current_ids();
    if BATCH_REASON.get_ptr(&tid).is_none() {
        return;
    }
    let Some((addr, entry)) = read_pair(ctx) else {
        return;
    };
    let key = MapKey { tid, _pad: 0, addr };
    let _ = UNMAPPED.insert(&key, &Unmapped { entry, ts: now() }, 0);
}

#[inline(always)]
fn on_remove(ctx: &TracePointContext, order: u32, pmd: u32) {
    let (pid, tid) = current_ids();
    let reason = match BATCH_REASON.get_ptr(&tid) {
        // SAFETY: this thread's own entry, from a successful lookup.
        Some(r) => unsafe { *r },
        None => return,
    };
    let Some((addr, new_entry)) = read_pair(ctx) else {
        return;
    };
    let key = MapKey { tid, _pad: 0, addr };
    let (old_entry, unmapped_ns) = match UNMAPPED.get_ptr(&key) {
        // SAFETY: as above.
        Some(u) => unsafe { ((*u).entry, now().saturating_sub((*u).ts)) },
        None => (u64::MAX, 0),
    };
    let _ = UNMAPPED.remove(&key);
    // The folio's first pfn: folios are naturally aligned.
    let raw = if new_entry & (PRESENT | PROTNONE) == PROTNONE {
        !new_entry
    } else {
        new_entry
    };
    let pfn = (raw & PFN_MASK) >> 12;
    let first = pfn & !((1u64 << (order & 31)) - 1);
    if let Some(last) = LAST_FOLIO.get_ptr(&tid) {
        // SAFETY: as above.
        if unsafe { *last } == first {
            return;
        }
    }
    let _ = LAST_FOLIO.insert(&tid, &first, 0);
    emit(
        kind::MIGRATION_PTE,
        MigrationPteEvent {
            hdr: header(kind::MIGRATION_PTE, pid, tid),
            addr,
            old_entry,
            new_entry,
            unmapped_ns,
            order,
            reason,
            pmd,
            _reserved: 0,
        },
    );
}
