//! The building blocks every accumulator shares: latency histograms with the project's bounds,
//! their percentiles, and the hash map of the per-event paths.

use hdrhistogram::Histogram;

use crate::model::schema::Percentiles;

/// Highest latency the histograms track: 10 s in ns.
pub const MAX_LATENCY_NS: u64 = 10_000_000_000;

/// A latency histogram with the project's standard bounds (1 ns to 10 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig
    // <= 5), checked by the `histogram_bounds_are_valid` test; no runtime input reaches this.
    #[allow(
        clippy::expect_used,
        reason = "constant arguments, validated by a unit test"
    )]
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

/// Percentiles of a histogram (all zero when empty).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// The hash map of the per-event paths: std's SipHash costs a fifth of the time of folding
/// a folio move; foldhash (randomly seeded per process) a fraction of it.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
