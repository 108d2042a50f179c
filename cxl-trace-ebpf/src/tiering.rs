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
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::{LruHashMap, PerCpuArray},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use cxl_trace_common::{decision_stage, isolate, kind, DemoteBatchEvent, PromoteDecisionEvent};

use crate::{
    shared::KERNEL_LAYOUT,
    shared::{arg_at, current_ids, emit, header, kprobe_arg, HOOK_ARGS},
};

/// A decision or prepare in progress on a thread: candidate pages counted so far and the
/// arguments a kretprobe cannot see.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Step {
    candidate_pages: i64,
    src_nid: i32,
    target: i32,
    isolate: u32,
    _pad: u32,
    pgdat: u64,
}

impl Step {
    const fn new(src_nid: i32, target: i32, pgdat: u64) -> Self {
        Self {
            candidate_pages: 0,
            src_nid,
            target,
            isolate: isolate::NOT_CALLED,
            _pad: 0,
            pgdat,
        }
    }
}

/// A step in progress on this CPU and the thread that runs it (0: none).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    tid: u32,
    _pad: u32,
    step: Step,
}

/// The decision in progress, one slot per CPU. `should_numa_migrate_memory` and
/// `migrate_misplaced_folio_prepare` run under the page table lock (no sleeping, no moving to
/// another CPU), and the hooks inside them, `mod_node_page_state` and `folio_isolate_lru`,
/// run far more often outside them (every page move_pages, compaction or reclaim isolates,
/// every node counter update): a per-CPU slot answers "not in a decision" without a hash
/// lookup. The thread is checked anyway, so a slot left by a thread that did move is ignored.
#[map]
static DECIDING: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// The prepare in progress, one slot per CPU (see `DECIDING`).
#[map]
static PREPARING: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// The demotion batch in progress (kprobe form only), by thread.
#[map]
static DEMOTING: LruHashMap<u32, Step> = LruHashMap::with_max_entries(1_024, 0);

fn begin_here(map: &PerCpuArray<Slot>, step: Step) {
    let (_, tid) = current_ids();
    if let Some(slot) = map.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, from a successful lookup; no other program writes it while
        // this one runs on this CPU.
        unsafe { *slot = Slot { tid, _pad: 0, step } };
    }
}

/// This CPU's slot if this thread runs its step; the common case (no step) costs no helper
/// call.
#[inline(always)]
fn mine(map: &PerCpuArray<Slot>) -> Option<*mut Slot> {
    let slot = map.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, from a successful lookup.
    let busy = unsafe { (*slot).tid };
    (busy != 0 && busy == current_ids().1).then_some(slot)
}

/// This CPU's step if this thread runs it, freed.
fn take_here(map: &PerCpuArray<Slot>) -> Option<Step> {
    let slot = mine(map)?;
    // SAFETY: this thread's slot on this CPU, from `mine`.
    unsafe {
        (*slot).tid = 0;
        Some((*slot).step)
    }
}

/// This CPU's step if this thread runs one.
#[inline(always)]
fn here(map: &PerCpuArray<Slot>) -> Option<*mut Step> {
    // SAFETY: the field pointer stays inside the map value `mine` found.
    mine(map).map(|slot| unsafe { &raw mut (*slot).step })
}

fn begin(map: &LruHashMap<u32, Step>, step: Step) {
    let (_, tid) = current_ids();
    let _ = map.insert(&tid, &step, 0);
}

/// Removes and returns this thread's step.
fn take(map: &LruHashMap<u32, Step>) -> Option<Step> {
    let (_, tid) = current_ids();
    // SAFETY: this thread's own entry, copied out before it is removed.
    let step = map.get_ptr(&tid).map(|s| unsafe { *s });
    let _ = map.remove(&tid);
    step
}

#[fentry(function = "should_numa_migrate_memory")]
pub fn should_migrate_entry(_ctx: FEntryContext) -> u32 {
    begin_here(&DECIDING, Step::new(0, 0, 0));
    0
}

#[kprobe]
pub fn should_migrate_kprobe(ctx: ProbeContext) -> u32 {
    let a = HOOK_ARGS.load();
    let arg = |n| kprobe_arg(&ctx, n) as i32;
    begin_here(
        &DECIDING,
        Step::new(arg(a.should_src_nid), arg(a.should_dst_cpu), 0),
    );
    0
}

#[fentry(function = "mod_node_page_state")]
pub fn node_stat_mod(ctx: FEntryContext) -> u32 {
    let a = HOOK_ARGS.load();
    count_candidates(
        arg_at(&ctx, a.node_stat_item),
        arg_at(&ctx, a.node_stat_delta) as i64,
    );
    0
}

#[kprobe]
pub fn node_stat_mod_kprobe(ctx: ProbeContext) -> u32 {
    let a = HOOK_ARGS.load();
    count_candidates(
        kprobe_arg(&ctx, a.node_stat_item),
        kprobe_arg(&ctx, a.node_stat_delta) as i64,
    );
    0
}

#[inline(always)]
fn count_candidates(item: u64, delta: i64) {
    let want = HOOK_ARGS.load().promote_candidate_item;
    if want != u16::MAX && item != u64::from(want) {
        return;
    }
    if let Some(step) = here(&DECIDING) {
        // SAFETY: this thread's step in this CPU's slot.
        unsafe { (*step).candidate_pages += delta };
    }
}

#[fexit(function = "should_numa_migrate_memory")]
pub fn should_migrate_exit(ctx: FExitContext) -> u32 {
    let cand = take_here(&DECIDING).map_or(0, |s| s.candidate_pages);
    let a = HOOK_ARGS.load();
    emit_decision(
        decision_stage::SHOULD_MIGRATE,
        (arg_at(&ctx, a.should_ret) & 1) as i32,
        arg_at(&ctx, a.should_src_nid) as i32,
        arg_at(&ctx, a.should_dst_cpu) as i32,
        cand,
        isolate::NOT_CALLED,
    );
    0
}

#[kretprobe]
pub fn should_migrate_kretprobe(ctx: RetProbeContext) -> u32 {
    let Some(step) = take_here(&DECIDING) else {
        return 0;
    };
    emit_decision(
        decision_stage::SHOULD_MIGRATE,
        (ctx.ret::<u64>() & 1) as i32,
        step.src_nid,
        step.target,
        step.candidate_pages,
        isolate::NOT_CALLED,
    );
    0
}

#[fentry(function = "migrate_misplaced_folio_prepare")]
pub fn prepare_entry(_ctx: FEntryContext) -> u32 {
    begin_here(&PREPARING, Step::new(-1, 0, 0));
    0
}

#[kprobe]
pub fn prepare_kprobe(ctx: ProbeContext) -> u32 {
    begin_here(
        &PREPARING,
        Step::new(
            -1,
            kprobe_arg(&ctx, HOOK_ARGS.load().prepare_node) as i32,
            0,
        ),
    );
    0
}

#[fexit(function = "folio_isolate_lru")]
pub fn isolate_exit(ctx: FExitContext) -> u32 {
    isolated(arg_at(&ctx, HOOK_ARGS.load().isolate_ret) & 1 != 0);
    0
}

#[kretprobe]
pub fn isolate_kretprobe(ctx: RetProbeContext) -> u32 {
    isolated(ctx.ret::<u64>() & 1 != 0);
    0
}

#[inline(always)]
fn isolated(ok: bool) {
    if let Some(step) = here(&PREPARING) {
        // SAFETY: this thread's step in this CPU's slot.
        unsafe { (*step).isolate = if ok { isolate::OK } else { isolate::FAILED } };
    }
}

#[fexit(function = "migrate_misplaced_folio_prepare")]
pub fn prepare_exit(ctx: FExitContext) -> u32 {
    let iso = take_here(&PREPARING).map_or(isolate::NOT_CALLED, |s| s.isolate);
    let a = HOOK_ARGS.load();
    emit_decision(
        decision_stage::PREPARE,
        arg_at(&ctx, a.prepare_ret) as i32,
        -1,
        arg_at(&ctx, a.prepare_node) as i32,
        0,
        iso,
    );
    0
}

#[kretprobe]
pub fn prepare_kretprobe(ctx: RetProbeContext) -> u32 {
    let Some(step) = take_here(&PREPARING) else {
        return 0;
    };
    emit_decision(
        decision_stage::PREPARE,
        ctx.ret::<u64>() as i32,
        -1,
        step.target,
        0,
        step.isolate,
    );
    0
}

#[inline(always)]
fn emit_decision(
    stage: u32,
    result: i32,
    src_nid: i32,
    target: i32,
    candidate_pages: i64,
    iso: u32,
) {
    let (pid, tid) = current_ids();
    emit(
        kind::PROMOTE_DECISION,
        PromoteDecisionEvent {
            hdr: header(kind::PROMOTE_DECISION, pid, tid),
            stage,
            result,
            src_nid,
            target,
            candidate_pages,
            isolate: iso,
            _reserved: 0,
        },
    );
}

/// Most node ids searched in `node_data[]`.
const MAX_NODES: u32 = 64;

#[fexit(function = "demote_folio_list")]
pub fn demote_folio_list_exit(ctx: FExitContext) -> u32 {
    let a = HOOK_ARGS.load();
    demoted(
        arg_at(&ctx, a.demote_pgdat),
        arg_at(&ctx, a.demote_ret) as u32,
    );
    0
}

#[kprobe]
pub fn demote_folio_list_kprobe(ctx: ProbeContext) -> u32 {
    begin(
        &DEMOTING,
        Step::new(-1, 0, kprobe_arg(&ctx, HOOK_ARGS.load().demote_pgdat)),
    );
    0
}

#[kretprobe]
pub fn demote_folio_list_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(step) = take(&DEMOTING) {
        demoted(step.pgdat, ctx.ret::<u64>() as u32);
    }
    0
}

/// `demote_folio_list(list, pgdat)` returned `nr_succeeded`.
#[inline(always)]
fn demoted(pgdat: u64, nr_succeeded: u32) {
    let (pid, tid) = current_ids();
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
}
