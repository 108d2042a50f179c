//! The property: a redacted stream reports exactly what the plain one does.

use super::*;

/// Node 0 (tier 4) holds pfns 0..1000, node 1 (tier 72) pfns 1000..2000.
fn two_tier_header() -> Header {
    let mut h = Header {
        hostname: "alice-laptop".into(),
        command_line: vec!["cxl-trace".into(), "record".into()],
        target_command: vec!["secretapp".into(), "--password".into()],
        scope: "secretapp --password and descendants".into(),
        interval_s: 1.0,
        ..Header::default()
    };
    h.topology.memory_block_bytes = 1000 * 4096;
    h.topology.nodes = vec![
        Node {
            id: 0,
            tier: Some(4),
            memory_blocks: vec![0],
            ..Node::default()
        },
        Node {
            id: 1,
            tier: Some(72),
            memory_blocks: vec![1],
            ..Node::default()
        },
    ];
    h
}

/// One generated event; pfns below 1000 are on the fast tier, from 1000 on the slow one.
#[derive(Clone, Debug)]
enum Gen {
    Fault {
        pid: u32,
        name: usize,
        user: bool,
    },
    Timed {
        pid: u32,
        name: usize,
        latency: u64,
        pfn: u64,
    },
    Batch {
        pid: u32,
        name: usize,
        reason: u32,
        pages: u64,
        folios: Vec<(u64, u64, usize, u64)>,
    },
    Pte {
        pid: u32,
        name: usize,
        reason: u32,
        moves: Vec<(u64, u64, u64)>,
    },
}

const NAMES: [&str; 7] = [
    "kswapd0",
    "kswapd1",
    "khugepaged",
    "alice-app",
    "bob",
    "kcompactd0",
    "secretapp",
];
const MAPPINGS: [u64; 3] = [
    0xffff_8880_0000_1001,
    0xffff_8880_0000_2001,
    0xffff_8880_0000_3003,
];

fn gen_event() -> impl Strategy<Value = Gen> {
    let pfn = 0u64..2000;
    prop_oneof![
        (1u32..5, 0..NAMES.len(), any::<bool>()).prop_map(|(pid, name, user)| Gen::Fault {
            pid,
            name,
            user
        }),
        (1u32..5, 0..NAMES.len(), 1u64..5_000_000, pfn.clone()).prop_map(
            |(pid, name, latency, pfn)| Gen::Timed {
                pid,
                name,
                latency,
                pfn
            }
        ),
        (
            1u32..5,
            0..NAMES.len(),
            prop_oneof![Just(8u32), Just(5u32), Just(0u32), Just(3u32)],
            0u64..64,
            prop::collection::vec((pfn.clone(), pfn.clone(), 0..MAPPINGS.len(), 0u64..4), 0..6),
        )
            .prop_map(|(pid, name, reason, pages, folios)| Gen::Batch {
                pid,
                name,
                reason,
                pages,
                folios
            }),
        (
            1u32..5,
            0..NAMES.len(),
            prop_oneof![Just(8u32), Just(5u32)],
            prop::collection::vec((pfn.clone(), pfn, 0u64..4), 0..6),
        )
            .prop_map(|(pid, name, reason, moves)| Gen::Pte {
                pid,
                name,
                reason,
                moves
            }),
    ]
}

/// x86_64 encodings, written independently of the decoder.
fn swap_entry(pfn: u64) -> u64 {
    ((!pfn) << 14 >> 5) | (1 << 59)
}
fn present_pte(pfn: u64) -> u64 {
    (pfn << 12) | 1
}

fn batch_start(ts: u64, pid: u32, reason: u32, name: usize) -> Vec<u8> {
    as_bytes(&MigrateStartEvent {
        hdr: hdr(kind::MIGRATE_START, ts, pid),
        mode: 0,
        reason,
        comm: comm(NAMES[name]),
    })
    .to_vec()
}

fn batch_end(ts: u64, pid: u32, reason: u32, name: usize, succeeded: u64, failed: u64) -> Vec<u8> {
    as_bytes(&MigrateEvent {
        hdr: hdr(kind::MIGRATE, ts, pid),
        succeeded,
        failed,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 0,
        reason,
        comm: comm(NAMES[name]),
    })
    .to_vec()
}

fn records(events: &[Gen]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut ts = 1_000_000u64;
    for e in events {
        ts += 1_000_000;
        match e {
            Gen::Fault { pid, name, user } => out.push(
                as_bytes(&FaultEvent {
                    hdr: hdr(
                        if *user {
                            kind::FAULT_USER
                        } else {
                            kind::FAULT_KERNEL
                        },
                        ts,
                        *pid,
                    ),
                    address: 0x7f00_0000_0000 + ts,
                    ip: 0x5555_0000_0000 + ts,
                    error_code: 6,
                    comm: comm(NAMES[*name]),
                })
                .to_vec(),
            ),
            Gen::Timed {
                pid,
                name,
                latency,
                pfn,
            } => out.push(
                as_bytes(&FaultLatencyEvent {
                    hdr: hdr(kind::FAULT_LATENCY, ts, *pid),
                    address: 0x7f00_0000_0000 + ts,
                    latency_ns: *latency,
                    alloc_pfn: *pfn,
                    ret: 0,
                    flags: 2,
                    numa_node: u32::MAX,
                    retries: 0,
                    comm: comm(NAMES[*name]),
                })
                .to_vec(),
            ),
            Gen::Batch {
                pid,
                name,
                reason,
                pages,
                folios,
            } => {
                out.push(batch_start(ts, *pid, *reason, *name));
                for (src, dst, m, index) in folios {
                    ts += 1000;
                    out.push(
                        as_bytes(&FolioMigrateEvent {
                            hdr: hdr(kind::FOLIO_MIGRATE, ts, *pid),
                            src_pfn: *src,
                            dst_pfn: *dst,
                            mapping: MAPPINGS[*m],
                            index: *index,
                            copy_ns: 700,
                            rc: 0,
                            reason: *reason,
                        })
                        .to_vec(),
                    );
                }
                ts += 1000;
                out.push(batch_end(ts, *pid, *reason, *name, *pages, pages % 3));
            }
            Gen::Pte {
                pid,
                name,
                reason,
                moves,
            } => {
                out.push(batch_start(ts, *pid, *reason, *name));
                for (src, dst, page) in moves {
                    ts += 1000;
                    out.push(
                        as_bytes(&MigrationPteEvent {
                            hdr: hdr(kind::MIGRATION_PTE, ts, *pid),
                            addr: 0x7f00_0000_0000 + page * 4096 + 0x10,
                            old_entry: swap_entry(*src),
                            new_entry: present_pte(*dst),
                            unmapped_ns: 900,
                            order: 0,
                            reason: *reason,
                            pmd: 0,
                            _reserved: 0,
                        })
                        .to_vec(),
                    );
                }
                ts += 1000;
                out.push(batch_end(ts, *pid, *reason, *name, moves.len() as u64, 0));
            }
        }
    }
    out
}

/// Writes a recording of `recs` (a snapshot every 50 records), through `r`.
fn write(path: &Path, recs: &[Vec<u8>], mut r: Redactor) {
    let mut h = two_tier_header();
    r.header(&mut h);
    let Ok(f) = std::fs::File::create(path) else {
        panic!("create")
    };
    let Ok(mut w) = Writer::new(std::io::BufWriter::new(f), &h) else {
        panic!("writer")
    };
    let snap = |t: u64| json!({"t": t as f64, "vmstat": {"pgdemote_kswapd": t * 10}, "drops": {}});
    let mut t = 0;
    let _ = w.json(ChunkKind::Snapshot, 0, &snap(0));
    for (i, rec) in recs.iter().enumerate() {
        let mut rec = rec.clone();
        if r.record(&mut rec) {
            let _ = w.event(&rec);
        }
        if i % 50 == 49 {
            t += 1;
            let _ = w.json(ChunkKind::Snapshot, t, &snap(t));
        }
    }
    let _ = w.json(ChunkKind::Snapshot, t + 1, &snap(t + 1));
    let _ = w.json(ChunkKind::End, t + 1, &json!({"t": (t + 1) as f64}));
    let _ = w.finish();
}

/// The report without what redaction is meant to change: names, the host, the file name.
fn normalised(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("comm");
                m.remove("host");
                m.remove("file");
                for x in m.values_mut() {
                    strip(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn report(path: &Path) -> Value {
    match crate::model::playback::summarize(path, 10) {
        Ok(v) => serde_json::to_value(v).expect("serialises"),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn check_equal_reports(events: &[Gen]) -> (Value, Value) {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("tempdir")
    };
    let recs = records(events);
    let (plain, red) = (dir.path().join("plain.cxlt"), dir.path().join("red.cxlt"));
    write(&plain, &recs, Redactor::plain(false));
    write(
        &red,
        &recs,
        Redactor::new(Key::from_bytes(KEY), &RareDecoder::default()),
    );
    let (a, b) = (report(&plain), report(&red));
    // Nothing personal in the redacted file, header and decompressed events alike.
    let Ok(mut reader) = crate::model::recording::open(&red) else {
        panic!("open")
    };
    let mut all = serde_json::to_vec(&reader.header).unwrap_or_default();
    while let Ok(Some(c)) = reader.next_chunk() {
        if let crate::model::recording::Chunk::Events(rs) = c {
            rs.iter().for_each(|r| all.extend_from_slice(r));
        }
    }
    for secret in ["alice", "bob", "secretapp", "--password"] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} leaked"
        );
    }
    (normalised(a), normalised(b))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn a_redacted_stream_reports_exactly_what_the_plain_one_does(
        events in prop::collection::vec(gen_event(), 1..300)
    ) {
        let (a, b) = check_equal_reports(&events);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn demotion_causes_and_ping_pong_survive_redaction() {
    // kswapd and a direct reclaimer demote; NUMA balancing promotes the same pages back.
    let mut events = Vec::new();
    for round in 0..3 {
        events.push(Gen::Batch {
            pid: 1,
            name: 0,
            reason: 8,
            pages: 2,
            folios: vec![(10 + round, 1010 + round, 0, 1), (20, 1020, 1, 1)],
        });
        events.push(Gen::Batch {
            pid: 2,
            name: 3,
            reason: 8,
            pages: 1,
            folios: vec![(30, 1030, 2, 0)],
        });
        events.push(Gen::Batch {
            pid: 3,
            name: 4,
            reason: 5,
            pages: 3,
            folios: vec![(1010, 10, 0, 1), (1020, 20, 1, 1), (1030, 30, 2, 0)],
        });
        events.push(Gen::Pte {
            pid: 1,
            name: 0,
            reason: 8,
            moves: vec![(40, 1040, 2)],
        });
        events.push(Gen::Pte {
            pid: 3,
            name: 4,
            reason: 5,
            moves: vec![(1040, 40, 2)],
        });
    }
    let (a, b) = check_equal_reports(&events);
    assert_eq!(a, b);
    let demotions = &a["migrations"]["demotions"];
    let promotions = &a["migrations"]["promotions"];
    let text = format!("{demotions} {promotions}");
    assert!(text.contains("kswapd") && text.contains("direct"), "{text}");
    let bounces = a["pingpong"]["bounces"].as_u64().unwrap_or(0);
    assert!(bounces >= 12, "ping-pong on both paths: {}", a["pingpong"]);
}

#[test]
fn the_fuzz_harness_holds_on_random_streams() {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut total = 0;
    for len in [0, 1, 25, 100, 5000, 60_000] {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        total += fuzzing::redact_invariants(&b);
    }
    assert!(total > 100, "the harness made records: {total}");
}
