//! Why NUMA balancing did or did not migrate a page, and demotion batches per source node.
//!
//! - `should_numa_migrate_memory` (fentry/fexit) is the decision. In tiering mode a folio on a
//!   slow node first has to be hot enough (its hint-fault latency under the threshold); a hot one
//!   is counted in its target node's `pgpromote_candidate` (via `mod_node_page_state`, the only
//!   node counter the decision touches) and then passes the promotion rate limiter or not. So a
//!   refusal with candidate pages is the rate limit, one without is the threshold (or, outside
//!   tiering, the placement heuristics).
//! - `migrate_misplaced_folio_prepare` (fentry/fexit) refuses an approved folio when the target
//!   node is short of free memory, when `folio_isolate_lru` fails (fexit, seen only inside a
//!   prepare of the same thread), or for shared executable file folios (-EACCES).
//! - `demote_folio_list` (fexit) returns the pages demoted from the node being reclaimed; its
//!   pgdat pointer is turned into a node id by finding it in `node_data[]`.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, fexit, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext},
};
use cxl_trace_common::{decision_stage, isolate, kind, DemoteBatchEvent, PromoteDecisionEvent};

use crate::{
    shared::{current_ids, emit, header, raw_arg},
    tiering::KERNEL_LAYOUT,
};

/// Candidate pages counted so far by the decision in progress, by thread.
#[map]
static DECIDING: LruHashMap<u32, i64> = LruHashMap::with_max_entries(4_096, 0);

/// `isolate::*` of the prepare in progress, by thread.
#[map]
static PREPARING: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4_096, 0);

#[fentry(function = "should_numa_migrate_memory")]
pub fn should_migrate_entry(_ctx: FEntryContext) -> u32 {
    let (_, tid) = current_ids();
    let _ = DECIDING.insert(tid, 0, 0);
    0
}

#[fentry(function = "mod_node_page_state")]
pub fn node_stat_mod(ctx: FEntryContext) -> u32 {
    let (_, tid) = current_ids();
    if let Some(cand) = DECIDING.get_ptr_mut(tid) {
        let delta = raw_arg(&ctx, 2) as i64;
        // SAFETY: this thread's own entry, from a successful lookup; only this thread writes it.
        unsafe { *cand += delta };
    }
    0
}

#[fexit(function = "should_numa_migrate_memory")]
pub fn should_migrate_exit(ctx: FExitContext) -> u32 {
    let (pid, tid) = current_ids();
    let candidate_pages = match DECIDING.get_ptr(tid) {
        // SAFETY: as above.
        Some(c) => unsafe { *c },
        None => 0,
    };
    let _ = DECIDING.remove(tid);
    emit(
        kind::PROMOTE_DECISION,
        PromoteDecisionEvent {
            hdr: header(kind::PROMOTE_DECISION, pid, tid),
            stage: decision_stage::SHOULD_MIGRATE,
            result: (raw_arg(&ctx, 4) & 1) as i32,
            src_nid: raw_arg(&ctx, 2) as i32,
            target: raw_arg(&ctx, 3) as i32,
            candidate_pages,
            isolate: isolate::NOT_CALLED,
            _reserved: 0,
        },
    );
    0
}

#[fentry(function = "migrate_misplaced_folio_prepare")]
pub fn prepare_entry(_ctx: FEntryContext) -> u32 {
    let (_, tid) = current_ids();
    let _ = PREPARING.insert(tid, isolate::NOT_CALLED, 0);
    0
}

#[fexit(function = "folio_isolate_lru")]
pub fn isolate_exit(ctx: FExitContext) -> u32 {
    let (_, tid) = current_ids();
    if let Some(st) = PREPARING.get_ptr_mut(tid) {
        let ok = raw_arg(&ctx, 1) & 1 != 0;
        // SAFETY: this thread's own entry, from a successful lookup.
        unsafe { *st = if ok { isolate::OK } else { isolate::FAILED } };
    }
    0
}

#[fexit(function = "migrate_misplaced_folio_prepare")]
pub fn prepare_exit(ctx: FExitContext) -> u32 {
    let (pid, tid) = current_ids();
    let iso = match PREPARING.get_ptr(tid) {
        // SAFETY: as above.
        Some(s) => unsafe { *s },
        None => isolate::NOT_CALLED,
    };
    let _ = PREPARING.remove(tid);
    emit(
        kind::PROMOTE_DECISION,
        PromoteDecisionEvent {
            hdr: header(kind::PROMOTE_DECISION, pid, tid),
            stage: decision_stage::PREPARE,
            result: raw_arg(&ctx, 3) as i32,
            src_nid: -1,
            target: raw_arg(&ctx, 2) as i32,
            candidate_pages: 0,
            isolate: iso,
            _reserved: 0,
        },
    );
    0
}

/// Most node ids searched in `node_data[]`.
const MAX_NODES: u32 = 64;

#[fexit(function = "demote_folio_list")]
pub fn demote_folio_list_exit(ctx: FExitContext) -> u32 {
    let (pid, tid) = current_ids();
    let pgdat = raw_arg(&ctx, 1);
    let nr_succeeded = raw_arg(&ctx, 2) as u32;
    let l = KERNEL_LAYOUT.load();
    let mut src_nid = -1i32;
    if l.node_data_addr != 0 {
        for i in 0..MAX_NODES {
            if i >= l.nr_node_ids {
                break;
            }
            let slot = (l.node_data_addr + 8 * u64::from(i)) as *const u64;
            // SAFETY: `node_data` is the kernel's array of pgdat pointers at the address
            // kallsyms gave, with at least nr_node_ids entries; the read fails cleanly.
            if unsafe { bpf_probe_read_kernel(slot) } == Ok(pgdat) {
                src_nid = i as i32;
                break;
            }
        }
    }
    emit(
        kind::DEMOTE_BATCH,
        DemoteBatchEvent {
            hdr: header(kind::DEMOTE_BATCH, pid, tid),
            src_nid,
            nr_succeeded,
        },
    );
    0
}
