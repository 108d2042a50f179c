//! Rare tracepoints: NUMA task placement, kswapd wake-ups, memory errors and CXL device events.

use cxl_trace_common::raw;

use crate::{
    model::rare::RARE,
    probe::{
        attach::{Attach, TpSpec},
        ProbeStatus,
    },
};

/// Attaches every rare tracepoint this kernel has; says why a CXL one is missing.
pub(crate) fn attach(at: &mut Attach) {
    for r in &RARE {
        let tp = TpSpec {
            program: r.program,
            category: r.category,
            name: r.name,
        };
        if r.id == raw::SIGNAL_GENERATE {
            if let Some(why) = signal_layout_differs(at) {
                at.statuses.push(ProbeStatus::unavailable(
                    format!("tracepoint:{}:{}", r.category, r.name),
                    why,
                ));
                continue;
            }
        }
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

/// Why the SIGBUS filter cannot run here: the kernel side reads `int sig` at a fixed offset.
fn signal_layout_differs(at: &Attach) -> Option<String> {
    let f = match at.tracefs.format("signal", "signal_generate") {
        Ok(f) => f,
        Err(e) => return Some(format!("no signal:signal_generate format: {e}")),
    };
    match f.fields.get("sig") {
        Some(s) if s.offset as usize == raw::SIGNAL_SIG_OFFSET && s.size == 4 => None,
        Some(s) => Some(format!(
            "signal:signal_generate has `sig` at offset {} (size {}), the SIGBUS filter reads offset {}",
            s.offset,
            s.size,
            raw::SIGNAL_SIG_OFFSET
        )),
        None => Some("signal:signal_generate has no `sig` field".to_string()),
    }
}
