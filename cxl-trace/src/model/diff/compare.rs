//! Two profiles lined up: configuration first, then latency percentiles per tier and class,
//! then rates, each with its significance; `--fail-on` conditions evaluated; the result as
//! the schema's diff document.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{
    error::{Error, Result},
    model::{
        diff::{
            profile::Profile,
            stats::{self, Change},
        },
        schema::{DiffDoc, DiffMethods, DiffRow, DiffRun, FailOnResult, Pct},
        topology::Settings,
    },
};

/// Percentiles compared: (label, quantile).
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// Count metrics, with what they count.
pub const COUNTS: [(&str, &str); 8] = [
    ("faults", "faults"),
    ("promotions", "pages promoted"),
    ("demotions", "pages demoted"),
    ("migrated", "pages migrated"),
    ("migration_failed", "pages that failed to migrate"),
    ("refused", "promotions refused"),
    ("pingpong", "ping-pong bounces (folios)"),
    ("hint_faults", "NUMA hinting faults"),
];

/// One compared measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `p99:tier=slow:class=all`, `promotions`, `migrated:reason=compaction`, ...
    pub id: String,
    /// `latency`, `rate` or `per_gb`.
    pub group: &'static str,
    /// Unit of `base` and `new`.
    pub unit: &'static str,
    /// Base run.
    pub base: f64,
    /// New run.
    pub new: f64,
    /// 95% interval of the base value (latency only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ci: Option<(f64, f64)>,
    /// 95% interval of the new value (latency only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_ci: Option<(f64, f64)>,
    /// The change and its significance.
    pub change: Change,
    /// How significance was judged.
    pub method: &'static str,
}

pub use crate::model::schema::ConfigDiff;

/// The whole comparison.
#[derive(Debug, Serialize)]
pub struct Diff {
    /// Configuration differences.
    pub config: Vec<ConfigDiff>,
    /// Warnings (drops, truncated files, unavailable measurements).
    pub warnings: Vec<String>,
    /// Compared measurements.
    pub rows: Vec<Row>,
    /// Minimum effect for significance, percent.
    pub min_effect_pct: f64,
}

pub const QUANTILE_METHOD: &str =
    "order-statistic 99% CIs (binomial ranks), significant if disjoint";
pub const RATE_METHOD: &str =
    "bootstrap over recorded intervals (2000 resamples), 95% CI of the ratio";

fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(x) => format!("{x:?}").trim_matches('"').to_string(),
        None => "n/a".into(),
    }
}

/// The configuration differences that explain many "regressions".
pub fn config_diffs(b: &Profile, n: &Profile) -> Vec<ConfigDiff> {
    let (hb, hn) = (&b.header, &n.header);
    let (sb, sn) = (&hb.topology.settings, &hn.topology.settings);
    let tiers = |p: &Profile| {
        let mut tiers: Vec<String> = p
            .header
            .topology
            .tiers
            .iter()
            .map(|t| {
                let kib: u64 = t
                    .nodes
                    .iter()
                    .filter_map(|id| p.header.topology.nodes.iter().find(|x| x.id == *id))
                    .map(|x| x.mem_total_kib)
                    .sum();
                format!(
                    "{}: {} node(s), {} MiB",
                    p.label(Some(t.id)),
                    t.nodes.len(),
                    kib / 1024
                )
            })
            .collect();
        tiers.sort();
        tiers.join("; ")
    };
    let live = |p: &Profile| -> BTreeSet<String> {
        p.header
            .probes
            .iter()
            .filter(|s| s.is_live())
            .map(|s| s.name.clone())
            .collect()
    };
    let mut out = Vec::new();
    let mut check = |what: &str, base: String, new: String| {
        if base != new {
            out.push(ConfigDiff {
                what: what.into(),
                base,
                new,
            });
        }
    };
    check("kernel", hb.kernel.clone(), hn.kernel.clone());
    /// A setting compared by name, and how to show it.
    type Setting = (&'static str, fn(&Settings) -> String);
    let settings: [Setting; 4] = [
        ("numa_balancing", |s| show(&s.numa_balancing)),
        ("numa_balancing_promote_rate_limit_MBps", |s| {
            show(&s.promote_rate_limit_mbps)
        }),
        ("demotion_enabled", |s| show(&s.demotion_enabled)),
        ("hot_threshold_ms", |s| show(&s.hot_threshold_ms)),
    ];
    for (what, value) in settings {
        check(what, value(sb), value(sn));
    }
    check("memory tiers", tiers(b), tiers(n));
    let (lb, ln) = (live(b), live(n));
    if lb != ln {
        let only = |a: &BTreeSet<String>, z: &BTreeSet<String>| {
            let v: Vec<&str> = a.difference(z).map(String::as_str).collect();
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        check(
            "probes live only in one run",
            only(&lb, &ln),
            only(&ln, &lb),
        );
    }
    check("scope", hb.scope.clone(), hn.scope.clone());
    check(
        "cxl-trace version",
        hb.tool_version.clone(),
        hn.tool_version.clone(),
    );
    check(
        "interval_s",
        format!("{}", hb.interval_s),
        format!("{}", hn.interval_s),
    );
    out
}

/// Lines the two runs up.
pub fn compare(b: &Profile, n: &Profile, min_effect_pct: f64) -> Diff {
    let mut rows = latency_rows(b, n, min_effect_pct);
    rows.extend(rate_rows(b, n, min_effect_pct));
    Diff {
        config: config_diffs(b, n),
        warnings: warnings(b, n),
        rows,
        min_effect_pct,
    }
}

/// What limits the comparison: drops, cut files, few intervals, no latency.
fn warnings(b: &Profile, n: &Profile) -> Vec<String> {
    let mut warnings = Vec::new();
    for p in [b, n] {
        if p.drops > 0 {
            warnings.push(format!(
                "{}: {} events were dropped: its numbers may be incomplete",
                p.path, p.drops
            ));
        }
        if p.summary.recording.as_ref().is_some_and(|r| r.truncated) {
            warnings.push(format!(
                "{}: cut off (crash or kill): compared up to its last complete chunk",
                p.path
            ));
        }
        if p.dt.len() < 5 {
            warnings.push(format!(
                "{}: only {} recorded intervals: rate intervals are wide",
                p.path,
                p.dt.len()
            ));
        }
        let fl = &p.summary.fault_latency.avail;
        if !fl.available {
            warnings.push(format!(
                "{}: no fault latency ({})",
                p.path,
                fl.reason.as_deref().unwrap_or("unavailable")
            ));
        }
    }
    warnings.dedup();
    warnings
}

/// Latency percentiles of every (tier, class) both runs measured, and ping-pong residency.
fn latency_rows(b: &Profile, n: &Profile, min_effect_pct: f64) -> Vec<Row> {
    let mut rows = Vec::new();
    // Latency: every (tier, class) both runs measured.
    let keys: BTreeSet<&(String, String)> = b
        .latency
        .keys()
        .filter(|k| n.latency.contains_key(*k))
        .collect();
    for key in keys {
        let (hb, hn) = (&b.latency[key], &n.latency[key]);
        for (label, q) in PERCENTILES {
            let id = format!("{label}:tier={}:class={}", key.0, key.1);
            rows.extend(quantile_row(id, hb, hn, q, min_effect_pct));
        }
    }
    rows.extend(quantile_row(
        "pingpong_residency_p50".into(),
        &b.residency,
        &n.residency,
        0.5,
        min_effect_pct,
    ));
    rows
}

/// A latency row: quantile `q` of both histograms with their intervals, when both have data.
fn quantile_row(
    id: String,
    base: &hdrhistogram::Histogram<u64>,
    new: &hdrhistogram::Histogram<u64>,
    q: f64,
    min_effect_pct: f64,
) -> Option<Row> {
    let (eb, en, change) = stats::compare_quantiles(base, new, q, min_effect_pct)?;
    Some(Row {
        id,
        group: "latency",
        unit: "ns",
        base: eb.value,
        new: en.value,
        base_ci: Some((eb.lo, eb.hi)),
        new_ci: Some((en.lo, en.hi)),
        change,
        method: QUANTILE_METHOD,
    })
}

/// Rates per second of the main counts and of every qualified series either run has, and per
/// GB touched where the runs touched different amounts of memory.
fn rate_rows(b: &Profile, n: &Profile, min_effect_pct: f64) -> Vec<Row> {
    let mut rows = Vec::new();
    // Rates: the main counts, then every qualified series either run has.
    let mut ids: Vec<String> = COUNTS.iter().map(|(id, _)| id.to_string()).collect();
    let qualified: BTreeSet<&String> = b
        .series
        .keys()
        .chain(n.series.keys())
        .filter(|k| k.contains(':'))
        .collect();
    ids.extend(qualified.into_iter().cloned());
    let (gb, gn) = (b.gb_touched(), n.gb_touched());
    for id in &ids {
        let (xb, xn) = (b.series(id), n.series(id));
        let (rb, rn, change) = stats::compare_rates((&xb, &b.dt), (&xn, &n.dt), min_effect_pct);
        rows.push(Row {
            id: id.clone(),
            group: "rate",
            unit: "/s",
            base: rb,
            new: rn,
            base_ci: None,
            new_ci: None,
            change,
            method: RATE_METHOD,
        });
        // Per GB touched: where the two runs touched different amounts of memory.
        if id != "faults" && !id.starts_with("hint") {
            let (rb, rn, change) = stats::compare_rates((&xb, &gb), (&xn, &gn), min_effect_pct);
            if rb > 0.0 || rn > 0.0 {
                rows.push(Row {
                    id: format!("{id}:per_gb"),
                    group: "per_gb",
                    unit: "/GB",
                    base: rb,
                    new: rn,
                    base_ci: None,
                    new_ci: None,
                    change,
                    method: RATE_METHOD,
                });
            }
        }
    }
    rows
}

/// One `--fail-on` condition: `METRIC[:KEY=VALUE]...:(+|-)N%`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailOn {
    /// As given.
    pub spec: String,
    /// Metric (`p99`, `promotions`, ...).
    pub metric: String,
    /// Qualifiers (`tier=slow`, `class=minor`, `reason=compaction`, `cause=rate_limit`).
    pub quals: Vec<(String, String)>,
    /// Signed threshold, percent.
    pub pct: f64,
}

/// Parses a `--fail-on` spec.
pub fn parse_fail_on(spec: &str) -> std::result::Result<FailOn, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad =
        |why: &str| format!("--fail-on {spec}: {why} (like p99:tier=slow:+10% or promotions:-20%)");
    if spec.trim().is_empty() {
        return Err(bad("empty"));
    }
    let [metric, quals @ .., threshold] = parts.as_slice() else {
        return Err(bad("needs METRIC:±N%"));
    };
    let known_metric = PERCENTILES.iter().any(|(p, _)| p == metric)
        || COUNTS.iter().any(|(c, _)| c == metric)
        || *metric == "pingpong_residency_p50";
    if !known_metric {
        let all: Vec<&str> = PERCENTILES
            .iter()
            .map(|(p, _)| *p)
            .chain(COUNTS.iter().map(|(c, _)| *c))
            .collect();
        return Err(bad(&format!(
            "unknown metric `{metric}`; one of {}",
            all.join(", ")
        )));
    }
    let t = threshold
        .strip_suffix('%')
        .ok_or_else(|| bad("the threshold ends in %"))?;
    if !(t.starts_with('+') || t.starts_with('-')) {
        return Err(bad("the threshold has a sign: + for a rise, - for a fall"));
    }
    let pct: f64 = t
        .parse()
        .map_err(|_| bad("the threshold is not a number"))?;
    if !pct.is_finite() || pct == 0.0 {
        return Err(bad("the threshold is a non-zero finite percentage"));
    }
    let mut q = Vec::new();
    for kv in quals {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(&format!("`{kv}` is not KEY=VALUE")))?;
        if !["tier", "class", "reason", "cause", "pair"].contains(&k) {
            return Err(bad(&format!(
                "unknown qualifier `{k}`; one of tier, class, reason, cause, pair"
            )));
        }
        q.push((k.to_string(), v.to_string()));
    }
    Ok(FailOn {
        spec: spec.to_string(),
        metric: metric.to_string(),
        quals: q,
        pct,
    })
}

impl FailOn {
    /// Whether a row is one this condition watches.
    pub fn matches(&self, r: &Row) -> bool {
        if r.group == "per_gb" {
            return false;
        }
        let mut parts = r.id.split(':');
        if parts.next() != Some(self.metric.as_str()) {
            return false;
        }
        let quals: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let is_latency = PERCENTILES.iter().any(|(p, _)| *p == self.metric);
        // Latency rows: tier given or any; class given or `all`.
        if is_latency {
            let class = self
                .quals
                .iter()
                .find(|(k, _)| k == "class")
                .map_or("all", |(_, v)| v.as_str());
            return quals.contains(&("class", class))
                && self
                    .quals
                    .iter()
                    .filter(|(k, _)| k != "class")
                    .all(|(k, v)| quals.contains(&(k.as_str(), v.as_str())));
        }
        // Counts: exactly the qualifiers given.
        quals.len() == self.quals.len()
            && self
                .quals
                .iter()
                .all(|(k, v)| quals.contains(&(k.as_str(), v.as_str())))
    }

    /// Whether a row crosses the threshold significantly.
    pub fn crossed(&self, r: &Row) -> bool {
        r.change.significant
            && if self.pct > 0.0 {
                r.change.pct >= self.pct
            } else {
                r.change.pct <= self.pct
            }
    }
}

/// The verdict of every `--fail-on`: (spec, rows watched, rows crossed).
pub fn evaluate<'a>(d: &'a Diff, conds: &[FailOn]) -> Result<Vec<(String, Vec<&'a Row>)>> {
    let mut out = Vec::new();
    for c in conds {
        let watched: Vec<&Row> = d.rows.iter().filter(|r| c.matches(r)).collect();
        if watched.is_empty() {
            let latency = PERCENTILES.iter().any(|(p, _)| *p == c.metric);
            return Err(Error::Usage(format!(
                "--fail-on {}: no such measurement in both recordings{}",
                c.spec,
                if latency {
                    " (fault latency per tier and class is measured only where fentry or kprobes work; see the warnings)"
                } else {
                    ""
                }
            )));
        }
        let crossed = watched.into_iter().filter(|r| c.crossed(r)).collect();
        out.push((c.spec.clone(), crossed));
    }
    Ok(out)
}

fn run_doc(p: &Profile) -> DiffRun {
    DiffRun {
        file: p.path.clone(),
        kernel: p.header.kernel.clone(),
        hostname: p.header.hostname.clone(),
        seconds: p.seconds(),
        intervals: p.dt.len(),
        events: p.events(),
        drops: p.drops,
        settings: p.header.topology.settings.clone(),
    }
}

/// A percentage for JSON, which has no infinity: a metric only the new run has is `new`.
fn pct_doc(x: f64) -> Pct {
    if x.is_finite() {
        Pct::Finite(x)
    } else {
        Pct::Word(pct_str(x))
    }
}

/// The same content as the JSON document.
pub fn to_doc(b: &Profile, n: &Profile, d: &Diff, verdicts: &[(String, Vec<&Row>)]) -> DiffDoc {
    DiffDoc {
        schema_version: crate::model::schema::SCHEMA_VERSION,
        base: run_doc(b),
        new: run_doc(n),
        config_differences: d.config.clone(),
        warnings: d.warnings.clone(),
        min_effect_pct: d.min_effect_pct,
        methods: DiffMethods {
            latency: QUANTILE_METHOD.into(),
            rate: RATE_METHOD.into(),
        },
        rows: d
            .rows
            .iter()
            .map(|r| DiffRow {
                id: r.id.clone(),
                group: r.group.into(),
                unit: r.unit.into(),
                base: r.base,
                new: r.new,
                base_ci: r.base_ci,
                new_ci: r.new_ci,
                method: r.method.into(),
                change_pct: pct_doc(r.change.pct),
                change_lo_pct: pct_doc(r.change.lo_pct),
                change_hi_pct: pct_doc(r.change.hi_pct),
                significant: r.change.significant,
            })
            .collect(),
        fail_on: verdicts
            .iter()
            .map(|(spec, rows)| FailOnResult {
                spec: spec.clone(),
                crossed: !rows.is_empty(),
                by: rows.iter().map(|r| r.id.clone()).collect(),
            })
            .collect(),
    }
}

pub fn pct_str(p: f64) -> String {
    if p.is_infinite() {
        if p > 0.0 {
            "new".into()
        } else {
            "gone".into()
        }
    } else {
        format!("{p:+.1}%")
    }
}
