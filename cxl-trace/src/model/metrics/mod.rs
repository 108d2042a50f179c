//! The exporter's metrics as typed families (pure, no I/O): what `cxl-trace exporter` serves
//! on `/metrics`, built from a run's totals. [`crate::output::metrics`] encodes them as
//! Prometheus text, OpenMetrics text or Prometheus protobuf (native histograms).
//!
//! Names follow Prometheus' conventions: base units (seconds, bytes), `_total` on counters
//! (added by the encoders, like the unit suffix). Cardinality is bounded: no pid labels; tiers,
//! nodes, reasons, causes and event names are small closed sets, and process names appear only
//! for the `--process-labels` busiest ones. docs/metrics.md lists every name and label; a test
//! checks the list against [`catalogue`].

mod build;
mod hist;
#[cfg(test)]
mod tests;

pub use build::{build, comm_labels, Health, Input};
pub use hist::{classic_bounds, from_hdr, spans_and_deltas, Buckets};

/// The metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic from the start of the run (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// Classic buckets (text formats) and native buckets (protobuf).
    Histogram,
}

/// A base unit, appended to the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    /// The suffix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Bytes => "bytes",
        }
    }
}

/// A sample's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A count.
    Count(u64),
    /// A measurement.
    Float(f64),
    /// A histogram.
    Hist(Buckets),
}

/// One labelled series of a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Label names and values, in a fixed order per family.
    pub labels: Vec<(&'static str, String)>,
    /// Its value.
    pub value: Value,
}

/// A metric family: name, help, unit, type and series (possibly none: the family is still
/// described, so a dashboard sees that the metric exists and is zero).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The name without unit and `_total`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Its unit.
    pub unit: Option<Unit>,
    /// Its type.
    pub kind: Kind,
    /// The label names every series has.
    pub labels: &'static [&'static str],
    /// Its series.
    pub series: Vec<Series>,
}

impl Family {
    /// A family with no series yet.
    pub fn new(
        name: &'static str,
        kind: Kind,
        unit: Option<Unit>,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            help,
            unit,
            kind,
            labels,
            series: Vec::new(),
        }
    }

    /// The name a query uses: with the unit, and `_total` on counters.
    pub fn exposed_name(&self) -> String {
        let mut n = self.name.to_string();
        if let Some(u) = self.unit {
            n.push('_');
            n.push_str(u.name());
        }
        if self.kind == Kind::Counter {
            n.push_str("_total");
        }
        n
    }

    /// Adds a series; the label values are given in the order of [`Family::labels`].
    pub fn push(&mut self, values: &[String], value: Value) {
        self.series.push(Series {
            labels: self
                .labels
                .iter()
                .copied()
                .zip(values.iter().cloned())
                .collect(),
            value,
        });
    }

    /// Adds a counter series.
    pub fn count(&mut self, values: &[String], v: u64) {
        self.push(values, Value::Count(v));
    }

    /// Adds a gauge series.
    pub fn gauge(&mut self, values: &[String], v: f64) {
        self.push(values, Value::Float(v));
    }
}

/// Every family the exporter can serve, with no series: the documented catalogue.
pub fn catalogue() -> Vec<Family> {
    build::families(1)
}

/// A tier's rank among the machine's tiers: `fast` (the lowest id), `slow` (the highest, when
/// there are two or more), `mid1`, `mid2`, … between them, `unknown` for no tier. Fleets
/// aggregate by rank across machines whose tier ids and node numbers differ.
pub fn tier_rank(tiers: &[u32], tier: Option<u32>) -> String {
    let Some(t) = tier else {
        return "unknown".into();
    };
    let mut ids: Vec<u32> = tiers.to_vec();
    ids.sort_unstable();
    ids.dedup();
    match ids.iter().position(|&x| x == t) {
        Some(0) => "fast".into(),
        Some(i) if i + 1 == ids.len() => "slow".into(),
        Some(i) => format!("mid{i}"),
        None => "unknown".into(),
    }
}
