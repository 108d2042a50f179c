//! The output API: every machine-readable document and line cxl-trace writes, as types.
//!
//! Producers build these values and serialise them; readers (`report`, `diff`, the xtask VM
//! checks) deserialise them. `cxl-trace schema [COMMAND]` prints their JSON Schema. A change
//! here is a change of the API: bump [`SCHEMA_VERSION`] when a member changes meaning or goes
//! away (adding an optional member does not need it), and review the snapshot diff.
//!
//! Pure: no I/O, no aya, no tokio.

use std::{borrow::Cow, collections::BTreeMap};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::event::{MigrateReason, Verdict};

mod blast;
mod docs;
mod window;

pub use blast::*;
pub use docs::*;
pub use window::*;

/// Version of the output schema, in every document and line as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// What a JSON line or document is (its `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// The first line of a headless run: what is traced and how.
    Start,
    /// One interval.
    Interval,
    /// The whole run, last line of a headless run.
    Summary,
    /// The whole run of a recording (`report --format json`).
    Report,
}

/// Percentiles of a histogram (all zero when empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest value.
    pub max: u64,
}

/// Whether a measurement was made, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Avail {
    /// Whether the hooks that feed it were live.
    pub available: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Default for Avail {
    fn default() -> Self {
        Self::from_reason(None)
    }
}

impl Avail {
    /// Available when there is no reason against it.
    pub fn from_reason(reason: Option<&str>) -> Self {
        Self {
            available: reason.is_none(),
            reason: reason.map(str::to_string),
        }
    }
}

/// Why pages moved between tiers: the migration reason, with demotions split by who reclaimed
/// (`kswapd`, `khugepaged`, else `direct`: direct and proactive reclaim) and NUMA balancing,
/// mbind and hotplug under short names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// NUMA balancing (tiering promotion included).
    NumaBalancing,
    /// Demotion by kswapd.
    Kswapd,
    /// Demotion by khugepaged.
    Khugepaged,
    /// Demotion by direct or proactive (`memory.reclaim`) reclaim.
    Direct,
    /// mbind.
    Mbind,
    /// Memory hotplug.
    Hotplug,
    /// Any other migration reason.
    Other(MigrateReason),
}

impl Cause {
    /// The name in every output.
    pub fn name(self) -> String {
        match self {
            Self::NumaBalancing => "numa_balancing".into(),
            Self::Kswapd => "kswapd".into(),
            Self::Khugepaged => "khugepaged".into(),
            Self::Direct => "direct".into(),
            Self::Mbind => "mbind".into(),
            Self::Hotplug => "hotplug".into(),
            Self::Other(r) => r.name(),
        }
    }

    /// From [`Cause::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "numa_balancing" => Self::NumaBalancing,
            "kswapd" => Self::Kswapd,
            "khugepaged" => Self::Khugepaged,
            "direct" => Self::Direct,
            "mbind" => Self::Mbind,
            "hotplug" => Self::Hotplug,
            other => Self::Other(MigrateReason::from_name(other)?),
        })
    }
}

/// Why NUMA balancing did not promote a folio.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCause {
    /// Not hot enough (tiering mode, slow node).
    Threshold,
    /// The promotion rate limit was reached.
    RateLimit,
    /// The target node is short of free pages.
    TargetFull,
    /// The folio could not be isolated from its LRU.
    Isolation,
    /// A shared executable file folio.
    SharedExec,
    /// The placement heuristics said no (normal NUMA balancing).
    Placement,
}

impl RefusalCause {
    /// Every cause, in the order shown.
    pub const ALL: [RefusalCause; 6] = [
        Self::Threshold,
        Self::RateLimit,
        Self::TargetFull,
        Self::Isolation,
        Self::SharedExec,
        Self::Placement,
    ];

    /// The name in every output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::RateLimit => "rate_limit",
            Self::TargetFull => "target_full",
            Self::Isolation => "isolation",
            Self::SharedExec => "shared_exec",
            Self::Placement => "placement",
        }
    }

    /// The refusal a verdict stands for, if it is one; `placement` when a threshold refusal
    /// came from a fast node (normal NUMA balancing, not tiering).
    pub fn of(v: Verdict, placement: bool) -> Option<Self> {
        Some(match v {
            Verdict::RefusedThreshold if placement => Self::Placement,
            Verdict::RefusedThreshold => Self::Threshold,
            Verdict::RefusedRateLimit => Self::RateLimit,
            Verdict::RefusedTargetFull => Self::TargetFull,
            Verdict::RefusedIsolation => Self::Isolation,
            Verdict::RefusedSharedExec => Self::SharedExec,
            Verdict::Approved | Verdict::Prepared => return None,
        })
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A string-named enum's schema: a string, one of `names` or matching `pattern`.
fn named_schema(description: &str, names: &[&str], pattern: Option<&str>) -> Schema {
    let mut any = vec![Schema::from(serde_json::Map::from_iter([
        ("type".to_string(), "string".into()),
        (
            "enum".to_string(),
            names.iter().map(|n| serde_json::Value::from(*n)).collect(),
        ),
    ]))];
    if let Some(p) = pattern {
        any.push(Schema::from(serde_json::Map::from_iter([
            ("type".to_string(), "string".into()),
            ("pattern".to_string(), p.into()),
        ])));
    }
    Schema::from(serde_json::Map::from_iter([
        ("description".to_string(), description.into()),
        (
            "anyOf".to_string(),
            any.into_iter().map(serde_json::Value::from).collect(),
        ),
    ]))
}

impl Serialize for Cause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Cause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Cause::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown cause `{s}`")))
    }
}

impl JsonSchema for Cause {
    fn schema_name() -> Cow<'static, str> {
        "Cause".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut names = vec![
            "numa_balancing",
            "kswapd",
            "khugepaged",
            "direct",
            "mbind",
            "hotplug",
        ];
        names.extend(MigrateReason::NAMES);
        named_schema(
            "Why pages moved between tiers",
            &names,
            Some(MigrateReason::UNKNOWN_PATTERN),
        )
    }
}

impl Serialize for MigrateReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for MigrateReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        MigrateReason::from_name(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown migrate reason `{s}`")))
    }
}

impl JsonSchema for MigrateReason {
    fn schema_name() -> Cow<'static, str> {
        "MigrateReason".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        named_schema(
            "The kernel's `enum migrate_reason`",
            &MigrateReason::NAMES,
            Some(MigrateReason::UNKNOWN_PATTERN),
        )
    }
}

/// A line of `top --no-tui` or `replay --no-tui`: the start line, then windows.
///
/// Read by its `type` (not as an untagged enum: serde's untagged buffering cannot read the
/// integer-keyed maps of a window, such as `kswapd_wakes_by_node`).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Line {
    /// The first line.
    Start(Box<Start>),
    /// An interval, or the summary (the last line).
    Window(Box<Window>),
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        let kind = v
            .get("type")
            .cloned()
            .ok_or_else(|| D::Error::missing_field("type"))?;
        match serde_json::from_value::<LineKind>(kind).map_err(D::Error::custom)? {
            LineKind::Start => serde_json::from_value(v)
                .map(|s| Line::Start(Box::new(s)))
                .map_err(D::Error::custom),
            _ => serde_json::from_value(v)
                .map(|w| Line::Window(Box::new(w)))
                .map_err(D::Error::custom),
        }
    }
}

/// What `cxl-trace schema COMMAND` describes: the JSON a command writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Document {
    /// `top --no-tui` (and `record`'s start line): JSON lines, a [`Start`] then [`Window`]s.
    Top,
    /// `replay --no-tui`: the same lines as `top`.
    Replay,
    /// `report --format json`: one [`Window`] of type `report`.
    Report,
    /// `export --format jsonl`: one [`ExportRow`] per line.
    Export,
    /// `diff --format json`.
    Diff,
    /// `doctor --json`.
    Doctor,
    /// `topology --json`.
    Topology,
}

impl Document {
    /// Every document.
    pub const ALL: [Document; 7] = [
        Self::Top,
        Self::Replay,
        Self::Report,
        Self::Export,
        Self::Diff,
        Self::Doctor,
        Self::Topology,
    ];

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Top => "top",
            Self::Replay => "replay",
            Self::Report => "report",
            Self::Export => "export",
            Self::Diff => "diff",
            Self::Doctor => "doctor",
            Self::Topology => "topology",
        }
    }

    /// The JSON Schema of what the command writes (one line's, for line-based output).
    pub fn schema(self) -> Schema {
        let mut s = match self {
            Self::Top | Self::Replay => schemars::schema_for!(Line),
            Self::Report => schemars::schema_for!(Window),
            Self::Export => schemars::schema_for!(ExportRow<'static>),
            Self::Diff => schemars::schema_for!(DiffDoc),
            Self::Doctor => schemars::schema_for!(Doctor),
            Self::Topology => schemars::schema_for!(TopologyDoc),
        };
        s.insert(
            "$id".into(),
            format!("cxl-trace/{}/v{SCHEMA_VERSION}", self.name()).into(),
        );
        s
    }
}

/// A document as indented JSON with a final newline.
pub fn to_pretty<T: Serialize>(v: &T) -> crate::error::Result<String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| crate::error::Error::Runtime(format!("JSON: {e}")))
}

/// One JSON line with its newline.
pub fn to_line<T: Serialize>(v: &T) -> crate::error::Result<String> {
    serde_json::to_string(v)
        .map(|s| s + "\n")
        .map_err(|e| crate::error::Error::Runtime(format!("JSON: {e}")))
}

/// Counts by a key, every key of `all` present (zero when not seen).
pub fn dense<K: Ord + Copy>(all: &[K], counts: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    all.iter()
        .map(|k| (*k, counts.get(k).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each enum's names are written in two places (a match and a list, or serde's renaming
    /// and `name`): they must agree, and every name must read back.
    #[test]
    fn names_agree_and_read_back() {
        for (i, n) in MigrateReason::NAMES.iter().enumerate() {
            let r = MigrateReason::from_raw(u32::try_from(i).expect("small"));
            assert_eq!(r.name(), *n);
            assert_eq!(MigrateReason::from_name(n), Some(r));
        }
        assert_eq!(
            MigrateReason::from_name("reason_42"),
            Some(MigrateReason::Unknown(42))
        );
        for c in RefusalCause::ALL {
            let json = serde_json::to_value(c).expect("serialises");
            assert_eq!(json, c.name());
        }
        for r in (0..12).map(MigrateReason::from_raw) {
            for c in [Cause::NumaBalancing, Cause::Kswapd, Cause::Other(r)] {
                assert_eq!(Cause::from_name(&c.name()), Some(c));
            }
        }
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    /// A window with integer-keyed maps (kswapd wake-ups and hint faults by node) reads back
    /// as a line: serde's untagged buffering could not, and the VM checks lost every summary
    /// of a run that woke kswapd.
    #[test]
    fn windows_with_integer_keyed_maps_read_back_as_lines() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recordings/v1-small.cxlt");
        let mut w = crate::model::playback::summarize(&path, 5).expect("golden recording");
        w.kind = LineKind::Summary;
        w.events_log.kswapd_wakes_by_node.insert(0, 2);
        w.numa_hint_faults.by_node.insert(-1, Default::default());
        let text = to_line(&w).expect("serialises");
        let back: Line = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, Line::Window(Box::new(w)));
        let bad: Result<Line, _> = serde_json::from_str(r#"{"type": "nonsense"}"#);
        assert!(bad.is_err());
        let untyped: Result<Line, _> = serde_json::from_str(r#"{"t": 1}"#);
        assert!(untyped.is_err());
    }
}
