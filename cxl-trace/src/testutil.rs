//! Builders shared by the unit tests of the pure modules.

use crate::{
    model::event::{Comm, FaultLatency},
    model::tiers::TierMap,
};

/// A thread name.
pub fn comm(s: &str) -> Comm {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    Comm(c)
}

/// Node 0 in tier 4 holds pfns 0..1000, node 1 in tier 72 pfns 1000..2000.
pub fn two_tier_map() -> TierMap {
    crate::model::redact::fuzzing::two_tier_map()
}

/// A timed fault of pid/tid 1 with the given latency, flags and page location.
pub fn timed_fault(
    latency_ns: u64,
    flags: u32,
    alloc_pfn: Option<u64>,
    numa_node: Option<u32>,
) -> FaultLatency {
    FaultLatency {
        ts_ns: 0,
        pid: 1,
        tid: 1,
        cpu: 0,
        comm: Comm::default(),
        address: 0,
        latency_ns,
        alloc_pfn,
        ret: 0,
        flags,
        numa_node,
        retries: 0,
    }
}
