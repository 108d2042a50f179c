//! Userspace hot path: ring-buffer records decoded and folded into the aggregator, per event
//! (target, issue 8: 20 million events per second per core or more), and recordings: writing
//! (delta coding + zstd), and reading back a file into the aggregator (target, issue 6: 10
//! million events per second on one core). `target/bench/recording.json` gets the bytes per
//! event of the benchmark's recording.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cxl_trace::{
    model::aggregate::Aggregator,
    model::event::{as_bytes, decode},
    model::rare::RareDecoder,
    model::recording::{Chunk, ChunkKind, Header, Reader, Snapshot, Writer},
    model::tiers::Availability,
};
use cxl_trace_common::{
    kind, EventHeader, FaultEvent, FaultLatencyEvent, FolioMigrateEvent, MigrateEvent,
    MigrateStartEvent,
};

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

/// `N` per-folio migration records as `move_pages` between two tiers produces them: 16384
/// pages moved back and forth (every move a promotion or a demotion, so every page ping-pongs),
/// in batches of 512 framed by their start and end records.
fn folio_records() -> Vec<Vec<u8>> {
    const PAGES: u64 = 16_384;
    const BATCH: u64 = 512;
    let mut out = Vec::with_capacity(N + 2 * N / BATCH as usize);
    let comm = *b"pingpong\0\0\0\0\0\0\0\0";
    let mut ts = 0u64;
    let mut h = |k: u16| {
        ts += 1_000;
        EventHeader {
            ts_ns: ts,
            pid: 4242,
            tid: 4242,
            kind: k,
            cpu: 0,
            _reserved: 0,
        }
    };
    let mut n = 0u64;
    while (n as usize) < N {
        let round = n / PAGES;
        let (from, to) = (round % 2, (round + 1) % 2);
        out.push(
            as_bytes(&MigrateStartEvent {
                hdr: h(kind::MIGRATE_START),
                mode: 3,
                reason: 3,
                comm,
            })
            .to_vec(),
        );
        for _ in 0..BATCH {
            let page = n % PAGES;
            out.push(
                as_bytes(&FolioMigrateEvent {
                    hdr: h(kind::FOLIO_MIGRATE),
                    src_pfn: (from << 20) | page,
                    dst_pfn: (to << 20) | page,
                    mapping: 0xffff_8880_1234_0001,
                    index: page,
                    copy_ns: 900 + page % 700,
                    rc: 0,
                    reason: 3,
                })
                .to_vec(),
            );
            n += 1;
        }
        out.push(
            as_bytes(&MigrateEvent {
                hdr: h(kind::MIGRATE),
                succeeded: BATCH,
                failed: 0,
                thp_succeeded: 0,
                thp_failed: 0,
                thp_split: 0,
                large_folio_split: 0,
                mode: 3,
                reason: 3,
                comm,
            })
            .to_vec(),
        );
    }
    out
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
    let folios = folio_records();
    let mut agg = Aggregator::with_context(
        common::tier_map(),
        RareDecoder::default(),
        Availability::default(),
    );
    g.bench_function("decode_aggregate_folio_pingpong", |b| {
        b.iter(|| {
            for rec in &folios {
                if let Ok(e) = decode(black_box(rec)) {
                    agg.ingest(&e);
                }
            }
            let _ = agg.end_interval();
        })
    });
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

    // Recordings: a fault-heavy stream with a snapshot every 50k events (about once a second
    // at 50k faults/s), as `record` writes it, shaped like the real ones: runs of 1..512 faults
    // by one thread on one CPU from one instruction over consecutive pages, 0.2..2 us apart,
    // between runs a jump elsewhere (the records above are too regular to compress honestly).
    // Real recordings on this machine: 2.5 (200k faults) to 4.2 (11k) bytes per event.
    let size = size_of::<FaultEvent>();
    let mut rng = common::Rng::new(11);
    let mut buf = Vec::with_capacity(N * size);
    let (mut ts, mut left) = (1u64 << 40, 0u64);
    let mut run = (0u32, 0u16, 0u64, 0u64, 0u64, kind::FAULT_USER);
    for _ in 0..N {
        if left == 0 {
            left = rng.log_spread(0, 9);
            let pid = 4000 + (rng.next() % 6) as u32;
            run = (
                pid,
                (rng.next() % 2) as u16,
                0x7f00_0000_0000 + (rng.next() % (1 << 18)) * 4096,
                0x5555_0000_1000 + (rng.next() % 64) * 16,
                [4, 6, 6, 6, 7, 0x14][(rng.next() % 6) as usize],
                if rng.next().is_multiple_of(20) {
                    kind::FAULT_KERNEL
                } else {
                    kind::FAULT_USER
                },
            );
            ts += rng.log_spread(10, 16);
        }
        left -= 1;
        ts += rng.log_spread(8, 11);
        run.2 += 4096;
        let e = FaultEvent {
            hdr: EventHeader {
                ts_ns: ts,
                pid: run.0,
                tid: run.0,
                kind: run.5,
                cpu: run.1,
                _reserved: 0,
            },
            address: run.2,
            ip: run.3,
            error_code: run.4,
            comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
        };
        buf.extend_from_slice(as_bytes(&e));
    }
    let write = |buf: &[u8]| -> Vec<u8> {
        let Ok(mut w) = Writer::new(Vec::new(), &Header::default()) else {
            return Vec::new();
        };
        for (i, rec) in buf.chunks_exact(size).enumerate() {
            let _ = w.event(rec);
            if i % 50_000 == 49_999 {
                let snap = Snapshot {
                    t: i as f64,
                    ..Snapshot::default()
                };
                let _ = w.json(ChunkKind::Snapshot, 0, &snap);
            }
        }
        w.finish().unwrap_or_default()
    };
    let file = write(&buf);
    let _ = std::fs::create_dir_all("../target/bench");
    /// What xtask's bench table reads.
    #[derive(serde::Serialize)]
    struct RecordingSize {
        events: usize,
        bytes: usize,
        bytes_per_event: f64,
    }
    let size = RecordingSize {
        events: N,
        bytes: file.len(),
        bytes_per_event: file.len() as f64 / N as f64,
    };
    if let Ok(text) = serde_json::to_string(&size) {
        let _ = std::fs::write("../target/bench/recording.json", text);
    }
    let mut g = c.benchmark_group("recording");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("write_fault", |b| b.iter(|| write(black_box(&buf)).len()));
    let mut agg = Aggregator::with_context(
        common::tier_map(),
        RareDecoder::default(),
        Availability::default(),
    );
    g.bench_function("read_aggregate_fault", |b| {
        b.iter(|| {
            let Ok(mut r) = Reader::new(black_box(&file[..])) else {
                return;
            };
            while let Ok(Some(chunk)) = r.next_chunk() {
                if let Chunk::Events(recs) = chunk {
                    for rec in &recs {
                        if let Ok(e) = decode(rec) {
                            agg.ingest(&e);
                        }
                    }
                }
            }
            let _ = agg.end_interval();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
