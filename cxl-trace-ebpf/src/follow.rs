//! The follow filter: `sched:sched_process_fork` adds children of followed processes to the
//! `FOLLOW` map, `sched:sched_process_exit` removes a process when its leader exits.

use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
    Global,
};
use cxl_trace_common::{config_flags, fault_agg, stat, ForkLayout, COMM_LEN};

use crate::shared::{bump, current_ids, flag, FOLLOW};

#[unsafe(no_mangle)]
static FORK_LAYOUT: Global<ForkLayout> = Global::new(ForkLayout::DEFAULT);

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if !flag(config_flags::FILTER) {
        return 0;
    }
    let (pid, _) = current_ids();
    // SAFETY: read-only lookup of a u8 value.
    if unsafe { FOLLOW.get(&pid) }.is_none() {
        return 0;
    }
    let off = FORK_LAYOUT.load().child_pid as usize;
    // SAFETY: offset from this kernel's tracefs format of sched_process_fork.
    let child = match unsafe { ctx.read_at::<i32>(off) } {
        Ok(child) => child as u32,
        Err(_) => {
            bump(stat::READ_ERRORS);
            return 0;
        }
    };
    // A new thread has the tgid of its parent (already followed); inserting its tid is harmless
    // and removed again when it exits.
    if FOLLOW.insert(&child, &1, 0).is_err() {
        bump(stat::FOLLOW_FULL);
    }
    0
}

/// The thread name each process had when it exited (the live modes, whose fault slots keep
/// the name a process had at its first fault: before its exec, for a forked child).
#[map]
static EXIT_COMM: LruHashMap<u32, [u8; COMM_LEN]> =
    LruHashMap::with_max_entries(fault_agg::EXIT_COMMS, 0);

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let (pid, tid) = current_ids();
    if flag(config_flags::FAULT_AGG) && pid == tid {
        if let Ok(comm) = bpf_get_current_comm() {
            let _ = EXIT_COMM.insert(&pid, &comm, 0);
        }
    }
    if !flag(config_flags::FILTER) {
        return 0;
    }
    // Every task was inserted under its own id by the fork hook (a process under its pid, a
    // thread under its tid), so each exiting task removes exactly its own entry.
    let _ = FOLLOW.remove(&tid);
    0
}
