//! Capability probes: minimal programs of each attach kind, loaded (and attached) by
//! `cxl-trace doctor` to learn what this kernel and these privileges allow. They do nothing.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, raw_tracepoint},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext},
};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn cap_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn cap_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

#[fentry(function = "handle_mm_fault")]
pub fn cap_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[kprobe]
pub fn cap_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
