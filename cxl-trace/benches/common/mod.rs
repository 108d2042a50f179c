//! Synthetic but realistic inputs for the benchmarks: a two-tier machine and a stream of
//! faults (timed, on both tiers, log-spread latencies), migrations with their folios, and
//! hundreds of processes.

#![allow(dead_code, reason = "each bench uses part of it")]

use cxl_trace::{
    model::event::{
        Comm, Event, FaultLatency, FolioMigrate, MigrateBatch, MigrateReason, MigrateStart,
    },
    model::tiers::TierMap,
    model::topology::PfnMap,
};

/// Node 0 (tier 4) holds pfns 0..2^20, node 1 (tier 22, CXL) 2^20..2^21.
pub fn tier_map() -> TierMap {
    TierMap {
        pfns: PfnMap {
            pages_per_block: 1 << 20,
            blocks: [(0, 0), (1, 1)].into_iter().collect(),
        },
        node_tier: [(0, 4), (1, 22)].into_iter().collect(),
        pte: cxl_trace::model::pte::PteFormat::x86_64(false),
        regions: Vec::new(),
    }
}

/// A small deterministic generator (xorshift), so runs compare like with like.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Log-uniform between 2^lo and 2^hi.
    pub fn log_spread(&mut self, lo: u32, hi: u32) -> u64 {
        let bits = lo + (self.next() % u64::from(hi - lo)) as u32;
        (1u64 << bits) + self.next() % (1u64 << bits)
    }
}

fn comm(s: &str) -> Comm {
    let mut c = [0u8; 16];
    c[..s.len().min(15)].copy_from_slice(&s.as_bytes()[..s.len().min(15)]);
    Comm(c)
}

/// One second of a busy tiered machine: `faults` timed faults spread over `procs` processes
/// and both tiers, plus a promotion and a demotion batch of 64 folios each.
pub fn second(rng: &mut Rng, t0: u64, faults: u64, procs: u32) -> Vec<Event> {
    let mut out = Vec::with_capacity(faults as usize + 140);
    for i in 0..faults {
        let pid = 1000 + (rng.next() % u64::from(procs)) as u32;
        let slow = rng.next().is_multiple_of(4);
        let pfn = if slow { (1 << 20) + i } else { i };
        out.push(Event::FaultLatency(FaultLatency {
            ts_ns: t0 + i,
            pid,
            tid: pid,
            cpu: (i % 2) as u16,
            comm: comm(&format!("worker-{}", pid % 97)),
            address: 0x7f00_0000_0000 + i * 4096,
            latency_ns: rng.log_spread(9, 22),
            alloc_pfn: Some(pfn),
            ret: 0,
            flags: 1 << (rng.next() % 3),
            numa_node: None,
            retries: 0,
        }));
    }
    for (tid, reason, up) in [
        (7u32, MigrateReason::NumaMisplaced, true),
        (8, MigrateReason::Demotion, false),
    ] {
        out.push(Event::MigrateStart(MigrateStart {
            ts_ns: t0,
            pid: tid,
            tid,
            cpu: 0,
            mode: 0,
            reason,
            comm: comm(if up { "membench" } else { "kswapd0" }),
        }));
        for f in 0..64u64 {
            let (src, dst) = if up {
                ((1 << 20) + f, f)
            } else {
                (f, (1 << 20) + f)
            };
            out.push(Event::FolioMigrate(FolioMigrate {
                ts_ns: t0 + f,
                pid: tid,
                tid,
                cpu: 0,
                src_pfn: Some(src),
                dst_pfn: Some(dst),
                mapping: 0xffff_8880_0000_0001,
                index: rng.next() % 4096,
                copy_ns: Some(rng.log_spread(10, 16)),
                pages: Some(1),
                rc: 0,
                reason: Some(reason),
            }));
        }
        out.push(Event::Migrate(MigrateBatch {
            ts_ns: t0 + 100_000,
            pid: tid,
            tid,
            cpu: 0,
            succeeded: 64,
            failed: 0,
            thp_succeeded: 0,
            thp_failed: 0,
            thp_split: 0,
            large_folio_split: 0,
            mode: 0,
            reason,
            comm: comm(if up { "membench" } else { "kswapd0" }),
        }));
    }
    out
}
