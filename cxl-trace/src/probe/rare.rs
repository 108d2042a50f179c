//! Rare tracepoints: NUMA task placement, kswapd wake-ups, memory errors and CXL device events.

use crate::{
    model::rare::RARE,
    probe::attach::{Attach, TpSpec},
};

/// Attaches every rare tracepoint this kernel has; says why a CXL one is missing.
pub(crate) fn attach(at: &mut Attach) {
    for r in &RARE {
        let tp = TpSpec {
            program: r.program,
            category: r.category,
            name: r.name,
        };
        let mut st = at.tracepoint(&tp);
        if r.category == "cxl" && !st.is_live() && !at.tracefs.has_event("cxl", r.name) {
            st.reason = format!(
                "no cxl:{} tracepoint: module cxl_core is not loaded (no CXL devices or drivers)",
                r.name
            );
        }
        at.statuses.push(st);
    }
}
