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

mod property;
