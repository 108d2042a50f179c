use std::path::Path;

use cxl_trace_common::{
    kind, raw, EventHeader, FaultEvent, FaultLatencyEvent, FolioMigrateEvent, MigrateEvent,
    MigrateStartEvent, MigrationPteEvent, RawTpEvent,
};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::{
    model::event::{as_bytes, decode, Event},
    model::recording::{ChunkKind, Writer},
    model::topology::Node,
    model::tracefs::parse_format,
};

const KEY: [u8; 16] = *b"0123456789abcdef";

fn comm(s: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

fn hdr(k: u16, ts: u64, pid: u32) -> EventHeader {
    EventHeader {
        ts_ns: ts,
        pid,
        tid: pid,
        kind: k,
        cpu: 1,
        _reserved: 0,
    }
}

#[test]
fn the_table_names_every_byte_of_every_record_kind_once() {
    for k in 1..kind::MAX {
        let rule = rule_of(k).unwrap_or_else(|| panic!("kind {k} has no redaction rule"));
        let mut end = 0;
        for f in HEADER_FIELDS.iter().chain(rule.fields) {
            assert_eq!(f.offset, end, "{}.{}: gap or overlap", rule.name, f.name);
            end = f.offset + f.len;
        }
        assert_eq!(
            end, rule.size,
            "{}: fields do not cover the struct",
            rule.name
        );
    }
}

#[test]
fn the_documented_table_is_the_code_table() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recording-format.md"),
    )
    .unwrap_or_default();
    assert!(
        doc.contains(&markdown_table()),
        "docs/recording-format.md must carry this table verbatim:\n{}",
        markdown_table()
    );
}

#[test]
fn kernel_threads_keep_their_names_and_others_are_hashed_consistently() {
    let r = Redactor::new(Key::from_bytes(KEY), &RareDecoder::default());
    for k in [
        "kswapd0",
        "kcompactd1",
        "khugepaged",
        "kdamond.0",
        "migration/3",
    ] {
        assert_eq!(&r.name(&comm(k))[..k.len()], k.as_bytes(), "{k}");
    }
    let a = r.name(&comm("alice-secret"));
    let text = String::from_utf8_lossy(&a[..15]).to_string();
    assert!(
        text.starts_with('h') && text[1..].chars().all(|c| c.is_ascii_hexdigit()),
        "{text}"
    );
    assert_eq!(
        a,
        r.name(b"alice-secret\0\0\0\0"),
        "NUL padding does not matter"
    );
    assert_ne!(a, r.name(&comm("alice-secreu")));
    let other = Redactor::new(
        Key::from_bytes(*b"fedcba9876543210"),
        &RareDecoder::default(),
    );
    assert_ne!(
        a,
        other.name(&comm("alice-secret")),
        "another key, another hash"
    );
    assert_eq!(r.name(&[0u8; 16]), [0u8; 16], "no name stays no name");
}

#[test]
fn the_key_comes_from_the_kernel_and_differs_each_time() {
    let (a, b) = (Key::random(), Key::random());
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("getrandom failed")
    };
    assert_ne!(a.0, b.0);
    assert_eq!(format!("{a:?}"), "Key(..)", "the key is never printed");
}

#[test]
fn identities_are_hashed_never_zeroed_and_stay_distinct() {
    let mut r = Redactor::new(Key::from_bytes(KEY), &RareDecoder::default());
    let folio = |mapping: u64, index: u64| FolioMigrateEvent {
        hdr: hdr(kind::FOLIO_MIGRATE, 1, 7),
        src_pfn: 10,
        dst_pfn: 1010,
        mapping,
        index,
        copy_ns: 500,
        rc: 0,
        reason: 8,
    };
    let mut out = Vec::new();
    for (m, i) in [
        (0xffff_8880_1234_5001, 3),
        (0xffff_8880_9999_0001, 3),
        (0xffff_8880_1234_5001, 4),
    ] {
        let mut rec = as_bytes(&folio(m, i)).to_vec();
        assert!(r.record(&mut rec));
        let Ok(Event::FolioMigrate(f)) = decode(&rec) else {
            panic!("folio")
        };
        assert_ne!(f.mapping, m, "mapping is hashed");
        assert_ne!(f.mapping, 0, "never zeroed");
        assert_eq!(
            (f.src_pfn, f.dst_pfn, f.copy_ns),
            (Some(10), Some(1010), Some(500))
        );
        out.push((f.mapping, f.index));
    }
    assert_ne!(out[0], out[1], "two mappings sharing an index stay apart");
    assert_ne!(out[0], out[2]);
    assert_eq!(out[0].0, out[2].0, "one mapping stays one mapping");
    let mut again = as_bytes(&folio(0xffff_8880_1234_5001, 3)).to_vec();
    assert!(r.record(&mut again));
    let Ok(Event::FolioMigrate(f)) = decode(&again) else {
        panic!("folio")
    };
    assert_eq!((f.mapping, f.index), out[0], "consistent within the file");

    let pte = |addr: u64| MigrationPteEvent {
        hdr: hdr(kind::MIGRATION_PTE, 1, 7),
        addr,
        old_entry: 1,
        new_entry: 2,
        unmapped_ns: 3,
        order: 0,
        reason: 8,
        pmd: 0,
        _reserved: 0,
    };
    let page = |addr: u64, r: &mut Redactor| {
        let mut rec = as_bytes(&pte(addr)).to_vec();
        assert!(r.record(&mut rec));
        let Ok(Event::MigrationPte(m)) = decode(&rec) else {
            panic!("pte")
        };
        m.addr
    };
    let a = page(0x7f00_dead_b123, &mut r);
    assert_eq!(a & 0xfff, 0, "the page offset is dropped");
    assert_ne!(a >> 12, 0x0007_f00d_eadb, "the page number is hashed");
    assert_eq!(a, page(0x7f00_dead_bfff, &mut r), "same page, same key");
    assert_ne!(a, page(0x7f00_dead_c000, &mut r), "next page, another key");
}

#[test]
fn faults_lose_addresses_and_ips_and_user_names() {
    let mut r = Redactor::new(Key::from_bytes(KEY), &RareDecoder::default());
    let f = FaultEvent {
        hdr: hdr(kind::FAULT_USER, 5, 1),
        address: 0x7f00_dead_b000,
        ip: 0x5555_0000_1234,
        error_code: 6,
        comm: comm("secret-name"),
    };
    let mut rec = as_bytes(&f).to_vec();
    assert!(r.record(&mut rec));
    let Ok(Event::Fault(d)) = decode(&rec) else {
        panic!("fault")
    };
    assert_eq!((d.address, d.ip, d.error_code), (0, 0, 6));
    assert!(!d.comm.as_string().contains("secret"));
    // A plain recording keeps user addresses but zeroes kernel IPs unless asked.
    let mut plain = Redactor::plain(false);
    let k = FaultEvent {
        hdr: hdr(kind::FAULT_KERNEL, 5, 1),
        ip: 0xffff_ffff_8100_1234,
        ..f
    };
    let mut rec = as_bytes(&k).to_vec();
    assert!(plain.record(&mut rec));
    let Ok(Event::Fault(d)) = decode(&rec) else {
        panic!("fault")
    };
    assert_eq!((d.address, d.ip), (0x7f00_dead_b000, 0));
    let mut rec = as_bytes(&k).to_vec();
    assert!(Redactor::plain(true).record(&mut rec));
    let Ok(Event::Fault(d)) = decode(&rec) else {
        panic!("fault")
    };
    assert_eq!(d.ip, 0xffff_ffff_8100_1234);
}

#[test]
fn unknown_and_short_records_are_left_out_under_redaction() {
    let mut r = Redactor::new(Key::from_bytes(KEY), &RareDecoder::default());
    let mut unknown = as_bytes(&hdr(99, 1, 1)).to_vec();
    assert!(!r.record(&mut unknown));
    let mut short = as_bytes(&hdr(kind::FAULT_USER, 1, 1)).to_vec();
    assert!(!r.record(&mut short));
    assert_eq!(r.stats.left_out, 2);
}

const MCE: &str = "name: mce_record
ID: 100
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:u64 addr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:u64 ip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u64 ppin;\toffset:24;\tsize:8;\tsigned:0;
\tfield:char comm[16];\toffset:32;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] memdev;\toffset:48;\tsize:4;\tsigned:0;
\tfield:__data_loc char[] label;\toffset:52;\tsize:4;\tsigned:0;
";

#[test]
fn raw_tracepoints_are_redacted_field_by_field_and_still_decode() {
    let Ok(f) = parse_format(MCE) else {
        panic!("format")
    };
    let mut formats = vec![None; raw::NR];
    formats[usize::from(raw::MCE_RECORD)] = Some(f);
    let rare = RareDecoder::new(formats);
    let mut e = RawTpEvent {
        hdr: hdr(kind::RAW_TP, 9, 3),
        tp: raw::MCE_RECORD,
        len: 80,
        _reserved: 0,
        data: [0; raw::DATA],
    };
    e.data[4..8].copy_from_slice(&3i32.to_ne_bytes());
    e.data[8..16].copy_from_slice(&0x1_2345_6000u64.to_ne_bytes());
    e.data[16..24].copy_from_slice(&0xffff_ffff_8100_0000u64.to_ne_bytes());
    e.data[24..32].copy_from_slice(&0xabcdu64.to_ne_bytes());
    e.data[32..38].copy_from_slice(b"secret");
    // memdev "mem0" at 60, label "alice" at 64.
    e.data[48..52].copy_from_slice(&((5u32 << 16) | 60).to_ne_bytes());
    e.data[52..56].copy_from_slice(&((6u32 << 16) | 65).to_ne_bytes());
    e.data[60..64].copy_from_slice(b"mem0");
    e.data[65..70].copy_from_slice(b"alice");
    e.data[75] = 0x77; // a byte no field names
    let mut r = Redactor::new(Key::from_bytes(KEY), &rare);
    let mut rec = as_bytes(&e).to_vec();
    rec.truncate(offset_of!(RawTpEvent, data) + 80);
    assert!(r.record(&mut rec));
    let Ok(Event::Raw(raw_rec)) = decode(&rec) else {
        panic!("raw")
    };
    let Some(ev) = rare.decode(&raw_rec) else {
        panic!("decode")
    };
    let get = |n: &str| ev.fields.get(n).cloned();
    use crate::model::rare::FieldValue;
    assert_eq!(
        get("addr"),
        Some(FieldValue::UInt(0x1_2345_6000)),
        "physical addresses stay"
    );
    assert_eq!(get("ip"), Some(FieldValue::UInt(0)));
    assert!(matches!(get("ppin"), Some(FieldValue::UInt(v)) if v != 0xabcd && v != 0));
    assert!(matches!(get("comm"), Some(FieldValue::Str(s)) if s.starts_with('h')));
    assert_eq!(get("memdev"), Some(FieldValue::Str("mem0".into())));
    assert_eq!(get("label"), Some(FieldValue::Str(String::new())));
    assert_eq!(raw_rec.data[75], 0, "unnamed bytes are dropped");
    assert!(!raw_rec.data.windows(5).any(|w| w == b"alice"));
}

#[test]
fn headers_lose_host_command_lines_and_serials() {
    let r = Redactor::new(Key::from_bytes(KEY), &RareDecoder::default());
    let mut h = Header {
        hostname: "alice-laptop".into(),
        boot_id: "1234-5678".into(),
        command_line: [
            "/home/alice/bin/cxl-trace",
            "record",
            "-o",
            "/home/alice/x.cxlt",
            "--redact",
            "--comm",
            "secretapp",
        ]
        .map(String::from)
        .to_vec(),
        target_command: vec!["/home/alice/app".into(), "--token=s3cr3t".into()],
        scope: "threads named secretapp".into(),
        ..Header::default()
    };
    h.topology
        .cxl
        .memdevs
        .push(crate::model::topology::CxlMemdev {
            name: "mem0".into(),
            serial: Some("0xdeadbeef".into()),
            ..Default::default()
        });
    r.header(&mut h);
    let text = serde_json::to_string(&h).unwrap_or_default();
    for secret in [
        "alice",
        "1234-5678",
        "secretapp",
        "s3cr3t",
        "deadbeef",
        "x.cxlt",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(h.redacted);
    assert_eq!(h.command_line[1], "record");
    assert_eq!(h.command_line[4], "--redact");
    assert!(h.scope.starts_with("threads named h"));
    assert_eq!(h.topology.cxl.memdevs[0].name, "mem0");
}

// --- the property: a redacted stream reports exactly what the plain one does ---------------

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
