//! `/metrics` bodies: the model's metric families encoded by `prometheus-client` as
//! Prometheus text 0.0.4, OpenMetrics text 1.0 or Prometheus protobuf (length-delimited
//! `io.prometheus.client.MetricFamily`, the only one that carries native histograms), chosen
//! from the scraper's `Accept` header.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeMetric, NativeHistogram, NativeHistogramBuckets, NoLabelSet,
    },
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit as PUnit},
};

use crate::model::metrics::{spans_and_deltas, Family, Kind, Unit, Value};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// Length-delimited protobuf with native histograms.
    Protobuf,
}

impl Format {
    /// The Content-Type of a response.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }

    /// Which of the three a media range names (`*/*` and `text/*` mean text).
    fn of_media(media: &str, params: &[(String, String)]) -> Option<Self> {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match media {
            "application/vnd.google.protobuf" => (param("proto")
                == Some("io.prometheus.client.MetricFamily")
                && param("encoding") == Some("delimited"))
            .then_some(Self::Protobuf),
            "application/openmetrics-text" => match param("version") {
                None | Some("1.0.0") => Some(Self::OpenMetrics),
                _ => None,
            },
            "text/plain" | "text/*" | "*/*" => Some(Self::PrometheusText),
            _ => None,
        }
    }
}

/// Picks the format for an `Accept` header: the acceptable range with the highest `q`; among
/// equals the one listed first. No header, or nothing acceptable: Prometheus text, as every
/// exporter answers a plain `curl`.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::PrometheusText;
    };
    let mut best: Option<(f64, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            if k == "q" {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k, v.to_string()));
            }
        }
        if q <= 0.0 {
            continue;
        }
        if let Some(f) = Format::of_media(&media, &params) {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, f));
            }
        }
    }
    best.map_or(Format::PrometheusText, |(_, f)| f)
}

/// The native zero bucket's width, 2^-128 (the Go client's default); no latency is that
/// short, so it never holds a count.
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The families as a `prometheus-client` collector.
#[derive(Debug)]
struct Families {
    families: Arc<Vec<Family>>,
    /// Leave out families with no series (protobuf has no use for an empty family).
    skip_empty: bool,
}

fn unit(u: Option<Unit>) -> Option<PUnit> {
    u.map(|u| match u {
        Unit::Seconds => PUnit::Seconds,
        Unit::Bytes => PUnit::Bytes,
    })
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.families.iter() {
            if self.skip_empty && f.series.is_empty() {
                continue;
            }
            let t = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let u = unit(f.unit);
            let mut fam = encoder.encode_descriptor(f.name, f.help, u.as_ref(), t)?;
            for s in &f.series {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let enc = fam.encode_family(&labels)?;
                match (&s.value, f.kind) {
                    (Value::Count(v), Kind::Counter) => ConstCounter::new(*v).encode(enc)?,
                    (Value::Float(v), Kind::Counter) => ConstCounter::new(*v).encode(enc)?,
                    (Value::Count(v), _) => ConstGauge::new(*v as f64).encode(enc)?,
                    (Value::Float(v), _) => ConstGauge::new(*v).encode(enc)?,
                    (Value::Hist(h), _) => {
                        let (spans, deltas) = spans_and_deltas(&h.native);
                        let mut enc = enc;
                        enc.encode_histogram_with_native::<NoLabelSet>(
                            h.sum,
                            h.count,
                            &h.classic,
                            None,
                            NativeHistogram {
                                schema: 0,
                                // Prometheus takes a histogram for native only when it has
                                // spans or a zero bucket: an empty one needs the threshold.
                                zero_threshold: ZERO_THRESHOLD,
                                zero_count: 0,
                                negative: NativeHistogramBuckets {
                                    spans: &[],
                                    deltas: &[],
                                },
                                positive: NativeHistogramBuckets {
                                    spans: &spans,
                                    deltas: &deltas,
                                },
                                created: None,
                            },
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encodes the families in `format`.
pub fn encode(families: Arc<Vec<Family>>, format: Format) -> Result<Vec<u8>, String> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families {
        families,
        skip_empty: format == Format::Protobuf,
    }));
    let fail = |e: std::fmt::Error| format!("encoding the metrics: {e}");
    match format {
        Format::PrometheusText => {
            let mut out = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
                .map_err(fail)?;
            Ok(out.into_bytes())
        }
        Format::OpenMetrics => {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).map_err(fail)?;
            Ok(out.into_bytes())
        }
        Format::Protobuf => {
            prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&registry)
                .map_err(|e| format!("encoding the metrics: {e:?}"))
        }
    }
}

#[cfg(test)]
mod tests;
