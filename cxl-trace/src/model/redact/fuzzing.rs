//! The harness of the `redact` fuzz target (`cxl-trace/fuzz`), kept in the library so the unit
//! tests replay every saved input through the same code.
//!
//! Any bytes become a stream of records of every kind (a kind byte, then the record's bytes,
//! zero-padded); the stream is redacted and both streams are aggregated. Checked: no panic; the
//! redacted record keeps its length and kind; every field obeys its rule (kept fields unchanged,
//! dropped ones zero, identities zero exactly when they were zero, names kernel-thread or
//! hashed); the plain and redacted aggregates agree on every count, names aside.

use std::mem::offset_of;

use cxl_trace_common::{kind, raw, RawTpEvent};
use serde_json::Value;

use super::{rule_of, Action, Key, Redactor, HEADER_FIELDS};
use crate::{
    model::aggregate::{Aggregator, Drops},
    model::event::decode,
    model::rare::RareDecoder,
    model::tiers::{Availability, TierMap},
    model::topology::PfnMap,
    model::tracefs::parse_format,
};

/// A raw tracepoint format with every kind of field the raw rules know.
const FORMAT: &str = "name: fuzz_tp
ID: 1
format:
\\tfield:unsigned short common_type;\\toffset:0;\\tsize:2;\\tsigned:0;
\\tfield:int common_pid;\\toffset:4;\\tsize:4;\\tsigned:1;
\\tfield:u64 pfn;\\toffset:8;\\tsize:8;\\tsigned:0;
\\tfield:u64 ip;\\toffset:16;\\tsize:8;\\tsigned:0;
\\tfield:u64 serial;\\toffset:24;\\tsize:8;\\tsigned:0;
\\tfield:char comm[16];\\toffset:32;\\tsize:16;\\tsigned:0;
\\tfield:__data_loc char[] memdev;\\toffset:48;\\tsize:4;\\tsigned:0;
\\tfield:__data_loc char[] label;\\toffset:52;\\tsize:4;\\tsigned:0;
\\tfield:int nid;\\toffset:56;\\tsize:4;\\tsigned:1;
";

fn decoder() -> RareDecoder {
    let f = parse_format(FORMAT).ok();
    RareDecoder::new(vec![f; raw::NR])
}

/// Node 0 (tier 4) holds pfns 0..1000, node 1 (tier 72) pfns 1000..2000 (also the unit
/// tests' two-tier machine).
pub fn two_tier_map() -> TierMap {
    TierMap {
        pfns: PfnMap {
            pages_per_block: 1000,
            blocks: [(0, 0), (1, 1)].into_iter().collect(),
        },
        node_tier: [(0, 4), (1, 72)].into_iter().collect(),
        pte: crate::model::pte::PteFormat::x86_64(false),
        regions: Vec::new(),
    }
}

/// Splits `data` into records: a kind byte (taken modulo the kinds plus one), then as many bytes as the
/// kind's struct, zero-padded at the end of the input.
pub fn records(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() && out.len() < 4096 {
        // 0 and MAX are kinds no record has: redaction must leave them out.
        let k = u16::from(data[at]) % (kind::MAX + 1);
        at += 1;
        let size = rule_of(k).map_or(24, |r| r.size);
        let mut rec = vec![0u8; size];
        let n = size.min(data.len() - at);
        rec[..n].copy_from_slice(&data[at..at + n]);
        at += n;
        rec[16..18].copy_from_slice(&k.to_le_bytes());
        if k == kind::RAW_TP {
            // A length within the data, as the kernel side writes it.
            let len = u16::from_le_bytes([rec[26], rec[27]]) % (raw::DATA as u16 + 1);
            rec[26..28].copy_from_slice(&len.to_le_bytes());
            rec.truncate(offset_of!(RawTpEvent, data) + usize::from(len));
        }
        out.push(rec);
    }
    out
}

fn summary(recs: &[Vec<u8>]) -> Value {
    let mut agg = Aggregator::with_context(two_tier_map(), decoder(), Availability::default());
    for r in recs {
        if let Ok(e) = decode(r) {
            agg.ingest(&e);
        }
    }
    agg.end_interval();
    let w = agg.window(
        crate::model::schema::LineKind::Summary,
        1.0,
        1.0,
        agg.run(),
        &Drops::default(),
        &Default::default(),
        10,
    );
    // Compared as JSON: every member but the names redaction changes by design.
    let mut v = serde_json::to_value(w).unwrap_or_default();
    strip_names(&mut v);
    v
}

fn strip_names(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("comm");
            // The event log shows raw fields, which redaction changes by design.
            m.remove("events_log");
            m.values_mut().for_each(strip_names);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_names),
        _ => {}
    }
}

/// Checks one field of a redacted record against its rule.
fn check_field(plain: &[u8], red: &[u8], off: usize, len: usize, action: Action) {
    let (Some(a), Some(b)) = (plain.get(off..off + len), red.get(off..off + len)) else {
        return;
    };
    match action {
        Action::Keep => assert_eq!(a, b, "a kept field changed"),
        Action::Drop => assert!(b.iter().all(|&x| x == 0), "a dropped field is not zero"),
        Action::Id => assert_eq!(
            a.iter().all(|&x| x == 0),
            b.iter().all(|&x| x == 0),
            "an identity became zero or stopped being zero"
        ),
        Action::Name => {
            let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
            let name = String::from_utf8_lossy(&b[..end]);
            let hashed = name.len() == 15
                && name.starts_with('h')
                && name[1..].chars().all(|c| c.is_ascii_hexdigit());
            assert!(
                end == 0 || hashed || super::is_kernel_thread(&name),
                "name {name:?} is neither a kernel thread nor a hash"
            );
        }
        Action::Index | Action::Page | Action::RawData => {}
    }
}

/// The fuzz target: redacts the records `data` makes and checks the invariants (panics on a
/// broken one, as a fuzz target should). Returns the number of records.
pub fn redact_invariants(data: &[u8]) -> usize {
    let plain = records(data);
    let mut r = Redactor::new(Key::from_bytes(*b"fuzzing-key-0001"), &decoder());
    let mut red = Vec::with_capacity(plain.len());
    for p in &plain {
        let mut rec = p.clone();
        let kept = r.record(&mut rec);
        let k = u16::from_le_bytes([p[16], p[17]]);
        assert_eq!(kept, rule_of(k).is_some(), "kind {k}: kept {kept}");
        if !kept {
            continue;
        }
        assert_eq!(rec.len(), p.len(), "redaction changed a record's length");
        if let Some(rule) = rule_of(k) {
            for f in HEADER_FIELDS.iter().chain(rule.fields) {
                check_field(p, &rec, f.offset, f.len, f.action);
            }
        }
        assert_eq!(
            decode(p).is_ok(),
            decode(&rec).is_ok(),
            "decodability changed"
        );
        red.push(rec);
    }
    assert_eq!(summary(&plain), summary(&red), "a derived result changed");
    plain.len()
}
