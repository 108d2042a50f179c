//! The rows of `export`: every event as one typed row (JSON lines), and the same rows as CSV
//! columns.

use serde_json::Value;

use crate::model::{
    event::Event,
    recording::Header,
    schema::{ExportRow, RareRow, RawRow},
    tiers::TierMap,
};

/// Columns of `export --format csv`; fields of an event that are not here go to `extra`.
pub const CSV_COLUMNS: &[&str] = &[
    "ts_ns",
    "type",
    "pid",
    "tid",
    "cpu",
    "comm",
    "address",
    "ip",
    "error_code",
    "latency_ns",
    "alloc_pfn",
    "ret",
    "flags",
    "numa_node",
    "retries",
    "src_pfn",
    "dst_pfn",
    "mapping",
    "index",
    "copy_ns",
    "rc",
    "reason",
    "mode",
    "succeeded",
    "failed",
    "thp_succeeded",
    "thp_failed",
    "thp_split",
    "large_folio_split",
    "mem_node",
    "pages",
    "addr",
    "old_entry",
    "new_entry",
    "unmapped_ns",
    "order",
    "pmd",
    "event",
];

/// One event as an export row (`type` names the kind; rare tracepoints decoded).
pub fn export_row<'e>(e: &'e Event, h: &Header, tiers: &TierMap) -> ExportRow<'e> {
    match e {
        Event::Raw(r) => match h.rare.decode(r) {
            Some(re) => ExportRow::Rare(RareRow {
                kind: "rare".into(),
                entry: tiers.ras_entry(&re),
                pid: r.pid,
                cpu: r.cpu,
            }),
            None => ExportRow::Raw(RawRow {
                kind: "raw".into(),
                ts_ns: r.ts_ns,
                pid: r.pid,
                tp: r.tp,
            }),
        },
        other => ExportRow::Event(other),
    }
}

/// An export row as a JSON object, for the CSV columns and the Perfetto arguments.
pub fn event_json(e: &Event, h: &Header, tiers: &TierMap) -> Value {
    serde_json::to_value(export_row(e, h, tiers)).unwrap_or(Value::Null)
}

pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}
