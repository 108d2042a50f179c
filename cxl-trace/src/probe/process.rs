//! Following processes (fork and exit, which keep the in-kernel follow set) and the
//! ring-buffer benchmark's synthetic source.

use cxl_trace_common::ForkLayout;

use crate::{
    error::{Error, Result},
    model::tracefs::Format,
    probe::attach::{Attach, TpSpec},
};

pub(crate) const FOLLOW_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "sched_process_fork",
        category: "sched",
        name: "sched_process_fork",
    },
    TpSpec {
        program: "sched_process_exit",
        category: "sched",
        name: "sched_process_exit",
    },
];
/// The ring-buffer benchmark's source (`--ring-bench`).
pub(crate) const RING_BENCH_TP: TpSpec = TpSpec {
    program: "ring_bench",
    category: "syscalls",
    name: "sys_enter_getpgid",
};

/// The follow tracepoints; without them a filtered run cannot start. `required`: the run
/// follows processes (else they are attached only to report them).
pub(crate) fn attach_follow(at: &mut Attach, required: bool) -> Result<()> {
    for tp in &FOLLOW_TPS {
        let st = at.tracepoint(tp);
        if required && !st.is_live() {
            return Err(Error::NoProbes(format!(
                "following a process needs {}: {}",
                st.name, st.reason
            )));
        }
        at.statuses.push(st);
    }
    Ok(())
}

/// The benchmark's source; the benchmark cannot run without it.
pub(crate) fn attach_ring_bench(at: &mut Attach) -> Result<()> {
    let st = at.tracepoint(&RING_BENCH_TP);
    if !st.is_live() {
        return Err(Error::NoProbes(format!(
            "the ring-buffer benchmark needs {}: {}",
            st.name, st.reason
        )));
    }
    at.statuses.push(st);
    Ok(())
}

/// Offsets for the fork program from the tracefs format.
pub fn fork_layout(f: &Format) -> std::result::Result<ForkLayout, String> {
    Ok(ForkLayout {
        child_pid: f.offset("child_pid", 4)?,
        _reserved: 0,
    })
}
