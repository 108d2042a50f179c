//! Decoding of the rare tracepoints the kernel side captures raw (pure): NUMA task placement,
//! kswapd wake-ups, memory failures, machine checks and CXL device events. Each record is read
//! with the field list of its tracefs format, so one decoder serves every kernel version.

use std::collections::BTreeMap;

use cxl_trace_common::raw;
use serde::Serialize;

use crate::{model::event::RawRecord, model::topology::PfnMap, model::tracefs::Format};

/// One raw-captured tracepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RareSpec {
    /// `raw::*` id.
    pub id: u16,
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Tracefs category.
    pub category: &'static str,
    /// Tracefs event name.
    pub name: &'static str,
    /// What it is, for the event log.
    pub class: RareClass,
}

/// Families of rare events.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RareClass {
    /// NUMA balancing moved, swapped or failed to place a task.
    NumaTask,
    /// kswapd woken on a node (pressure on that node).
    Kswapd,
    /// Memory failure, machine check, CXL device error or poison.
    Ras,
}

macro_rules! spec {
    ($id:expr, $cat:literal, $name:literal, $class:ident) => {
        RareSpec {
            id: $id,
            program: $name,
            category: $cat,
            name: $name,
            class: RareClass::$class,
        }
    };
}

/// Every raw-captured tracepoint, indexed by id.
pub const RARE: [RareSpec; raw::NR] = [
    spec!(raw::SCHED_MOVE_NUMA, "sched", "sched_move_numa", NumaTask),
    spec!(raw::SCHED_STICK_NUMA, "sched", "sched_stick_numa", NumaTask),
    spec!(raw::SCHED_SWAP_NUMA, "sched", "sched_swap_numa", NumaTask),
    spec!(raw::KSWAPD_WAKE, "vmscan", "mm_vmscan_kswapd_wake", Kswapd),
    spec!(raw::MEMORY_FAILURE, "ras", "memory_failure_event", Ras),
    spec!(raw::MCE_RECORD, "mce", "mce_record", Ras),
    spec!(raw::CXL_GENERAL_MEDIA, "cxl", "cxl_general_media", Ras),
    spec!(raw::CXL_DRAM, "cxl", "cxl_dram", Ras),
    spec!(raw::CXL_MEMORY_MODULE, "cxl", "cxl_memory_module", Ras),
    spec!(raw::CXL_POISON, "cxl", "cxl_poison", Ras),
    spec!(raw::SIGNAL_GENERATE, "signal", "signal_generate", Ras),
];

/// A decoded field value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum FieldValue {
    /// Signed integer.
    Int(i64),
    /// Unsigned integer.
    UInt(u64),
    /// String (char arrays and `__data_loc char[]`), or hex for other byte arrays.
    Str(String),
}

impl FieldValue {
    /// As an unsigned integer, if it is one (negative values are not).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::UInt(v) => Some(*v),
            Self::Int(v) => u64::try_from(*v).ok(),
            Self::Str(_) => None,
        }
    }
}

/// A decoded rare event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RareEvent {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// The tracepoint.
    pub spec: RareSpec,
    /// Fields by name (common fields left out).
    pub fields: BTreeMap<String, FieldValue>,
}

impl RareEvent {
    fn num(&self, name: &str) -> Option<u64> {
        self.fields.get(name).and_then(FieldValue::as_u64)
    }

    /// How bad it is, for counting: a CXL record's event log (`informational`, `warning`,
    /// `failure`, `fatal`), `poison` for a poison list entry, an MCE's `uncorrected` or
    /// `corrected` (status bit 61), `uncorrectable` for a memory failure, `sigbus` for the
    /// signal, `none` for the events that are not errors.
    pub fn severity(&self) -> &'static str {
        match self.spec.name {
            "cxl_general_media" | "cxl_dram" | "cxl_memory_module" => match self.num("log") {
                Some(0) => "informational",
                Some(1) => "warning",
                Some(2) => "failure",
                Some(3) => "fatal",
                _ => "unknown",
            },
            "cxl_poison" => "poison",
            "mce_record" => match self.num("status") {
                Some(s) if s & (1 << 61) != 0 => "uncorrected",
                Some(_) => "corrected",
                None => "unknown",
            },
            "memory_failure_event" => "uncorrectable",
            "signal_generate" => "sigbus",
            _ => "none",
        }
    }

    /// Every value [`RareEvent::severity`] can take for the tracepoint `name`, so a counter
    /// can start at 0 before the first event (Prometheus' `increase()` cannot see the first
    /// increment of a series that appears with it).
    pub fn severities(name: &str) -> &'static [&'static str] {
        match name {
            "cxl_general_media" | "cxl_dram" | "cxl_memory_module" => {
                &["informational", "warning", "failure", "fatal"]
            }
            "cxl_poison" => &["poison"],
            "mce_record" => &["uncorrected", "corrected"],
            "memory_failure_event" => &["uncorrectable"],
            "signal_generate" => &["sigbus"],
            _ => &[],
        }
    }

    /// The node the event concerns: its `nid`/`dst_nid` field, or the node of its pfn or
    /// physical address (memory failure pfn, CXL hpa, MCE addr) through `pfns`.
    pub fn node(&self, pfns: &PfnMap) -> Option<u32> {
        if let Some(n) = self.num("nid").or_else(|| self.num("dst_nid")) {
            return u32::try_from(n).ok();
        }
        pfns.node_of(self.pfn()?)
    }

    /// The page frame of its physical address: `pfn`, or `hpa`/`addr` >> 12 (an `hpa` of
    /// all ones is the kernel's "no host address").
    pub fn pfn(&self) -> Option<u64> {
        self.num("pfn")
            .or_else(|| self.num("hpa").filter(|a| *a != u64::MAX).map(|a| a >> 12))
            .or_else(|| self.num("addr").map(|a| a >> 12))
    }

    /// Whether it names a host physical address field that says "none" (all ones).
    pub fn unmapped(&self) -> bool {
        self.num("hpa") == Some(u64::MAX)
    }

    /// For the event log, without the tier ([`crate::model::tiers::TierMap::ras_entry`] adds it).
    pub fn to_model(&self, pfns: &PfnMap) -> crate::model::schema::RasEntry {
        crate::model::schema::RasEntry {
            event: format!("{}:{}", self.spec.category, self.spec.name),
            class: self.spec.class,
            ts_ns: self.ts_ns,
            node: self.node(pfns),
            tier: None,
            pfn: self.pfn(),
            placement: None,
            fields: self.fields.clone(),
        }
    }
}

/// Decodes raw records with the formats of the running kernel.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RareDecoder {
    formats: Vec<Option<Format>>,
}

/// Bytes of `data` at `off..off + size`, if present.
fn slice(data: &[u8], off: u32, size: u32) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    data.get(start..end)
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A 16-byte UUID field: `uuid_t`, or the `char uuid[16]` the CXL poison event prints with
/// `%pU`.
fn is_uuid(name: &str, f: &crate::model::tracefs::Field) -> bool {
    f.size == 16 && (f.ctype.contains("uuid_t") || name.ends_with("uuid"))
}

/// A UUID as the kernel's `%pU` prints it: the bytes in order, 8-4-4-4-12.
fn uuid(b: &[u8]) -> String {
    let hex = |r: std::ops::Range<usize>| {
        b.get(r)
            .unwrap_or_default()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

/// A number with its name, as the print format of this kernel shows it: the
/// `__print_symbolic` name, or the `__print_flags` bits joined by `|` (`none` for 0); a value
/// the table lacks keeps its number beside `unknown`.
fn named(format: &Format, field: &str, value: FieldValue) -> FieldValue {
    let raw = match &value {
        FieldValue::UInt(v) => *v,
        FieldValue::Int(v) => *v as u64,
        FieldValue::Str(_) => return value,
    };
    if let Some(table) = format.symbols.get(field) {
        let key = match value {
            FieldValue::Int(v) => v,
            _ => i64::try_from(raw).unwrap_or(i64::MAX),
        };
        return FieldValue::Str(
            table
                .get(&key)
                .cloned()
                .unwrap_or_else(|| format!("unknown ({key})")),
        );
    }
    if let Some(bits) = format.flags.get(field) {
        if raw == 0 {
            return FieldValue::Str("none".into());
        }
        let mut names: Vec<String> = bits
            .iter()
            .filter(|(mask, _)| *mask != 0 && raw & mask == *mask)
            .map(|(_, n)| n.clone())
            .collect();
        let known = bits.iter().fold(0, |m, (mask, _)| m | mask);
        if raw & !known != 0 {
            names.push(format!("{:#x}", raw & !known));
        }
        return FieldValue::Str(names.join("|"));
    }
    value
}

impl RareDecoder {
    /// `formats[id]` is the format of `RARE[id]`, when the kernel has the tracepoint.
    pub fn new(formats: Vec<Option<Format>>) -> Self {
        Self { formats }
    }

    /// The formats, indexed by `raw::*` id.
    pub fn formats(&self) -> &[Option<Format>] {
        &self.formats
    }

    /// Bytes the kernel side should copy per tracepoint: the end of the last field, at most
    /// `raw::DATA`; 0 for tracepoints without a format.
    pub fn sizes(&self) -> [u32; raw::NR] {
        let mut out = [0u32; raw::NR];
        for (i, f) in self.formats.iter().enumerate().take(raw::NR) {
            if let Some(f) = f {
                let end = f
                    .fields
                    .values()
                    .map(|fl| fl.offset.saturating_add(fl.size))
                    .max()
                    .unwrap_or(0);
                // __data_loc strings live after the fixed fields: keep the whole buffer then.
                let dynamic = f.fields.values().any(|fl| fl.ctype.contains("__data_loc"));
                out[i] = if dynamic {
                    raw::DATA as u32
                } else {
                    end.min(raw::DATA as u32)
                };
            }
        }
        out
    }

    /// Decodes a record; `None` for an unknown id or a kernel without that format.
    pub fn decode(&self, r: &RawRecord) -> Option<RareEvent> {
        let spec = *RARE.get(usize::from(r.tp))?;
        let format = self.formats.get(usize::from(r.tp))?.as_ref()?;
        let mut fields = BTreeMap::new();
        for (name, f) in &format.fields {
            if name.starts_with("common_") {
                continue;
            }
            let Some(bytes) = slice(&r.data, f.offset, f.size) else {
                continue;
            };
            let value = if is_uuid(name, f) {
                FieldValue::Str(uuid(bytes))
            } else if f.ctype.contains("__data_loc") {
                // u32: offset in the low half, length in the high half.
                let Ok(loc) = <[u8; 4]>::try_from(bytes) else {
                    continue;
                };
                let loc = u32::from_ne_bytes(loc);
                match slice(&r.data, loc & 0xffff, loc >> 16) {
                    Some(s) => FieldValue::Str(text(s)),
                    None => continue,
                }
            } else if f.ctype.contains("char") && f.size > 8 {
                FieldValue::Str(text(bytes))
            } else if matches!(f.size, 1 | 2 | 4 | 8) {
                let mut buf = [0u8; 8];
                buf[..bytes.len()].copy_from_slice(bytes);
                let u = u64::from_ne_bytes(buf);
                if f.signed {
                    let shift = 64 - 8 * f.size;
                    FieldValue::Int(((u << shift) as i64) >> shift)
                } else {
                    FieldValue::UInt(u)
                }
            } else {
                FieldValue::Str(bytes.iter().map(|b| format!("{b:02x}")).collect())
            };
            fields.insert(name.clone(), named(format, name, value));
        }
        Some(RareEvent {
            ts_ns: r.ts_ns,
            spec,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tracefs::parse_format;

    const KSWAPD: &str = "name: mm_vmscan_kswapd_wake
ID: 500
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int nid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int zid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int order;\toffset:16;\tsize:4;\tsigned:1;

print fmt: \"nid=%d order=%d\", REC->nid, REC->order
";

    const POISON: &str = "name: cxl_poison
ID: 600
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] memdev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:u64 hpa;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int neg;\toffset:24;\tsize:4;\tsigned:1;

print fmt: \"memdev=%s\", __get_str(memdev)
";

    fn decoder() -> RareDecoder {
        let mut formats = vec![None; raw::NR];
        formats[usize::from(raw::KSWAPD_WAKE)] = Some(parse_format(KSWAPD).expect("format"));
        formats[usize::from(raw::CXL_POISON)] = Some(parse_format(POISON).expect("format"));
        RareDecoder::new(formats)
    }

    #[test]
    fn sizes_follow_the_formats() {
        let s = decoder().sizes();
        assert_eq!(s[usize::from(raw::KSWAPD_WAKE)], 20);
        assert_eq!(
            s[usize::from(raw::CXL_POISON)],
            raw::DATA as u32,
            "dynamic strings need the whole buffer"
        );
        assert_eq!(s[usize::from(raw::MCE_RECORD)], 0, "absent tracepoint");
    }

    #[test]
    fn decodes_numbers_and_data_loc_strings() {
        let d = decoder();
        let mut data = vec![0u8; 20];
        data[8..12].copy_from_slice(&1i32.to_ne_bytes());
        data[16..20].copy_from_slice(&3i32.to_ne_bytes());
        let ev = d
            .decode(&RawRecord {
                ts_ns: 1,
                pid: 0,
                cpu: 0,
                tp: raw::KSWAPD_WAKE,
                data,
            })
            .expect("decoded");
        assert_eq!(ev.fields.get("nid"), Some(&FieldValue::Int(1)));
        assert_eq!(ev.fields.get("order"), Some(&FieldValue::Int(3)));
        assert!(!ev.fields.contains_key("common_pid"));
        assert_eq!(ev.node(&PfnMap::default()), Some(1));

        let mut data = vec![0u8; 40];
        let loc: u32 = (5 << 16) | 32;
        data[8..12].copy_from_slice(&loc.to_ne_bytes());
        data[16..24].copy_from_slice(&(0x1_2345_6000u64).to_ne_bytes());
        data[24..28].copy_from_slice(&(-5i32).to_ne_bytes());
        data[32..37].copy_from_slice(b"mem0\0");
        let ev = d
            .decode(&RawRecord {
                ts_ns: 1,
                pid: 0,
                cpu: 0,
                tp: raw::CXL_POISON,
                data,
            })
            .expect("decoded");
        assert_eq!(
            ev.fields.get("memdev"),
            Some(&FieldValue::Str("mem0".into()))
        );
        assert_eq!(ev.fields.get("neg"), Some(&FieldValue::Int(-5)));
        let pfns = PfnMap {
            pages_per_block: 32768,
            blocks: [(0x12_3456 / 32768, 2)].into_iter().collect(),
        };
        assert_eq!(
            ev.node(&pfns),
            Some(2),
            "hpa mapped through the memory blocks"
        );
    }

    #[test]
    fn bad_records_do_not_panic() {
        let d = decoder();
        // Unknown id, absent format, too short, and a __data_loc pointing outside the record.
        for (tp, data) in [
            (99u16, vec![0u8; 8]),
            (raw::MCE_RECORD, vec![0u8; 8]),
            (raw::KSWAPD_WAKE, vec![0u8; 4]),
            (raw::CXL_POISON, {
                let mut v = vec![0u8; 16];
                v[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
                v
            }),
        ] {
            let ev = d.decode(&RawRecord {
                ts_ns: 0,
                pid: 0,
                cpu: 0,
                tp,
                data,
            });
            if let Some(ev) = ev {
                assert!(!ev.fields.contains_key("memdev"));
            }
        }
    }
}
