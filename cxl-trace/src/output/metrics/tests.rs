//! Tests of the parent module.

use std::sync::Arc;

use super::*;
use crate::model::metrics::{from_hdr, Family, Kind, Unit, Value};

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms`, and without.
const PROM_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
const PROM_DEFAULT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn negotiation_follows_q() {
    assert_eq!(negotiate(Some(PROM_NATIVE)), Format::Protobuf);
    assert_eq!(negotiate(Some(PROM_DEFAULT)), Format::OpenMetrics);
    assert_eq!(negotiate(None), Format::PrometheusText);
    assert_eq!(negotiate(Some("*/*")), Format::PrometheusText);
    assert_eq!(negotiate(Some("text/plain")), Format::PrometheusText);
    assert_eq!(negotiate(Some("application/json")), Format::PrometheusText);
    // q=0 refuses; protobuf without its proto parameter is not ours.
    assert_eq!(
        negotiate(Some("application/openmetrics-text;q=0, text/plain;q=0.2")),
        Format::PrometheusText
    );
    assert_eq!(
        negotiate(Some(
            "application/vnd.google.protobuf;q=1, application/openmetrics-text;q=0.5"
        )),
        Format::OpenMetrics
    );
    assert_eq!(negotiate(Some("garbage;;;q=x,,")), Format::PrometheusText);
}

fn sample() -> Arc<Vec<Family>> {
    let mut c = Family::new(
        "cxl_trace_page_faults",
        Kind::Counter,
        None,
        &["kind"],
        "Faults.",
    );
    c.count(&["read".into()], 7);
    let mut g = Family::new(
        "cxl_trace_tier_memory",
        Kind::Gauge,
        Some(Unit::Bytes),
        &["tier"],
        "Memory.",
    );
    g.gauge(&["tier4".into()], 1024.0);
    let mut h = Family::new(
        "cxl_trace_fault_latency",
        Kind::Histogram,
        Some(Unit::Seconds),
        &["tier"],
        "Latency.",
    );
    let mut hist = crate::model::hist::new_histogram();
    for v in [300u64, 1500, 1500] {
        hist.record(v).expect("in range");
    }
    h.push(&["tier4".into()], Value::Hist(from_hdr(&hist, Some(3300))));
    let empty = Family::new(
        "cxl_trace_bpf_run",
        Kind::Counter,
        Some(Unit::Seconds),
        &[],
        "Run time.",
    );
    Arc::new(vec![c, g, h, empty])
}

fn text(f: Format) -> String {
    String::from_utf8(encode(sample(), f).expect("encodes")).expect("utf-8")
}

#[test]
fn prometheus_text_has_units_totals_and_cumulative_buckets() {
    let t = text(Format::PrometheusText);
    assert!(
        t.contains("# TYPE cxl_trace_page_faults_total counter\n"),
        "{t}"
    );
    assert!(
        t.contains("cxl_trace_page_faults_total{kind=\"read\"} 7\n"),
        "{t}"
    );
    assert!(
        t.contains("cxl_trace_tier_memory_bytes{tier=\"tier4\"} 1024"),
        "{t}"
    );
    assert!(
        t.contains("cxl_trace_fault_latency_seconds_bucket{tier=\"tier4\",le=\"+Inf\"} 3\n"),
        "{t}"
    );
    assert!(
        t.contains("cxl_trace_fault_latency_seconds_count{tier=\"tier4\"} 3\n"),
        "{t}"
    );
    let sum: f64 = t
        .lines()
        .find_map(|l| l.strip_prefix("cxl_trace_fault_latency_seconds_sum{tier=\"tier4\"} "))
        .and_then(|v| v.parse().ok())
        .expect("a sum line");
    assert!((sum - 3.3e-6).abs() < 1e-15, "{sum}");
    // Cumulative: the bucket at 2^-19 s holds all three, the one at 2^-21 s one.
    assert!(t.contains("le=\"1.9073486328125e-06\"} 3\n"), "{t}");
    assert!(t.contains("le=\"4.76837158203125e-07\"} 1\n"), "{t}");
    assert!(!t.contains("# EOF"));
}

#[test]
fn openmetrics_ends_with_eof() {
    let t = text(Format::OpenMetrics);
    assert!(t.ends_with("# EOF\n"), "{t}");
    assert!(
        t.contains("# UNIT cxl_trace_tier_memory_bytes bytes\n"),
        "{t}"
    );
}

#[test]
fn protobuf_is_length_delimited_and_skips_empty_families() {
    let b = encode(sample(), Format::Protobuf).expect("encodes");
    // Three length-delimited messages: walk the varint lengths to the end.
    let (mut at, mut n) = (0usize, 0);
    while at < b.len() {
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let byte = b[at];
            at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        at += len;
        n += 1;
    }
    assert_eq!((at, n), (b.len(), 3));
    let has = |s: &str| b.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("cxl_trace_fault_latency_seconds"));
    assert!(!has("cxl_trace_bpf_run"));
}
