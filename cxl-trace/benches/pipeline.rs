//! Userspace hot path: ring-buffer records decoded and folded into the aggregator, per event.
//! Target (issue 8): 20 million events per second per core or more.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cxl_trace::{
    aggregate::Aggregator,
    event::{as_bytes, decode},
    rare::RareDecoder,
    tiers::Availability,
};
use cxl_trace_common::{kind, EventHeader, FaultEvent, FaultLatencyEvent};

const N: usize = 100_000;

fn hdr(k: u16, i: u64) -> EventHeader {
    EventHeader {
        ts_ns: i,
        pid: 1000 + (i % 300) as u32,
        tid: 1000 + (i % 300) as u32,
        kind: k,
        cpu: (i % 2) as u16,
        _reserved: 0,
    }
}

/// `N` records laid out back to back as the ring buffer hands them over.
fn records(timed: bool) -> (Vec<u8>, usize) {
    let mut rng = common::Rng::new(7);
    let mut buf = Vec::new();
    let size;
    if timed {
        size = size_of::<FaultLatencyEvent>();
        for i in 0..N as u64 {
            let e = FaultLatencyEvent {
                hdr: hdr(kind::FAULT_LATENCY, i),
                address: 0x7f00_0000_0000 + i * 4096,
                latency_ns: rng.log_spread(9, 22),
                alloc_pfn: if i % 4 == 0 { (1 << 20) + i } else { i },
                ret: 0,
                flags: 1,
                numa_node: u32::MAX,
                retries: 0,
                comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            };
            buf.extend_from_slice(as_bytes(&e));
        }
    } else {
        size = size_of::<FaultEvent>();
        for i in 0..N as u64 {
            let e = FaultEvent {
                hdr: hdr(kind::FAULT_USER, i),
                address: 0x7f00_0000_0000 + i * 4096,
                ip: 0x5555_0000_1000,
                error_code: 0x6,
                comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            };
            buf.extend_from_slice(as_bytes(&e));
        }
    }
    (buf, size)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N as u64));
    for (name, timed) in [
        ("decode_aggregate_fault", false),
        ("decode_aggregate_timed_fault", true),
    ] {
        let (buf, size) = records(timed);
        let mut agg = Aggregator::with_context(
            common::tier_map(),
            RareDecoder::default(),
            Availability::default(),
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                for rec in buf.chunks_exact(size) {
                    if let Ok(e) = decode(black_box(rec)) {
                        agg.ingest(&e);
                    }
                }
                let _ = agg.end_interval();
            })
        });
    }
    let (buf, size) = records(false);
    g.bench_function("decode_only_fault", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for rec in buf.chunks_exact(size) {
                n += u64::from(decode(black_box(rec)).is_ok());
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
