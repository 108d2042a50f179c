//! The ring-buffer benchmark's event source, attached only with the hidden `--ring-bench`:
//! every `getpgid(2)` of a followed process writes `RING_BENCH_BATCH` fault records through the
//! same `emit` as the real fault programs, so the userspace drain, decode and aggregation see
//! the real record at a rate the benchmark controls (a page fault costs microseconds; this
//! costs only the ring's reservation and submit).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use cxl_trace_common::{kind, FaultEvent, RING_BENCH_BATCH};

use crate::shared::{current_ids, emit, followed, header};

#[tracepoint]
pub fn ring_bench(_ctx: TracePointContext) -> u32 {
    let (pid, tid) = current_ids();
    if !followed(pid) {
        return 0;
    }
    for i in 0..RING_BENCH_BATCH {
        emit(
            kind::FAULT_USER,
            FaultEvent {
                hdr: header(kind::FAULT_USER, pid, tid),
                address: 0x7f00_0000_0000 + (i << 12),
                ip: 0x40_1000,
                error_code: 6,
                comm: *b"ring-bench\0\0\0\0\0\0",
            },
        );
    }
    0
}
