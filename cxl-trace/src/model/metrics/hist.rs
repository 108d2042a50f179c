//! Histograms for the exporter: hdrhistogram counts in ns turned into seconds, as classic
//! power-of-two buckets (`le` = 2^k s) and as a native histogram of schema 0, whose buckets
//! are exactly those powers of two: both views of one histogram agree bucket for bucket.

use hdrhistogram::Histogram;

/// Smallest classic upper bound: 2^-22 s (238 ns).
const K_MIN: i32 = -22;
/// Largest finite classic upper bound: 2^0 = 1 s.
const K_MAX: i32 = 0;

/// The classic upper bounds, s (`+Inf` follows).
pub fn classic_bounds() -> Vec<f64> {
    (K_MIN..=K_MAX).map(|k| 2f64.powi(k)).collect()
}

/// A histogram in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Observations.
    pub count: u64,
    /// Their sum, s.
    pub sum: f64,
    /// Per classic bucket (not cumulative): (upper bound, count), the last `+Inf`.
    pub classic: Vec<(f64, u64)>,
    /// Native schema-0 buckets: (index i, count) for the bucket (2^(i-1), 2^i] s, sorted,
    /// only the non-empty ones.
    pub native: Vec<(i32, u64)>,
}

/// The schema-0 index of a value in seconds: the smallest i with v <= 2^i.
fn native_index(v_s: f64) -> i32 {
    let mut i = v_s.log2().ceil() as i32;
    // log2 may round across a power of two; settle it exactly.
    while 2f64.powi(i) < v_s {
        i += 1;
    }
    while i > i32::MIN + 1 && 2f64.powi(i - 1) >= v_s {
        i -= 1;
    }
    i
}

/// Builds the buckets of an hdrhistogram of ns. Each recorded value stands for its bin's
/// median (hdrhistogram keeps 3 significant digits, so a value within 0.1% of a power of two
/// may land in the neighbouring bucket). `sum_ns` is the exact sum when it was kept; without
/// it the sum is taken from the same medians.
pub fn from_hdr(h: &Histogram<u64>, sum_ns: Option<u64>) -> Buckets {
    let bounds = classic_bounds();
    let mut classic: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
    classic.push((f64::INFINITY, 0));
    let mut native: Vec<(i32, u64)> = Vec::new();
    let mut approx_sum = 0f64;
    for it in h.iter_recorded() {
        let n = it.count_at_value();
        let v_s = h.median_equivalent(it.value_iterated_to()) as f64 * 1e-9;
        approx_sum += v_s * n as f64;
        let i = native_index(v_s);
        match native.last_mut() {
            Some((last, c)) if *last == i => *c += n,
            _ => native.push((i, n)),
        }
        let slot = classic
            .iter()
            .position(|(b, _)| v_s <= *b)
            .unwrap_or(classic.len() - 1);
        classic[slot].1 += n;
    }
    Buckets {
        count: h.len(),
        sum: sum_ns.map_or(approx_sum, |s| s as f64 * 1e-9),
        classic,
        native,
    }
}

/// Native buckets as the protobuf wants them: spans (offset, length) and count deltas.
pub fn spans_and_deltas(native: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(native.len());
    let mut prev_index: Option<i32> = None;
    let mut prev_count = 0i64;
    for &(i, c) in native {
        match prev_index {
            Some(p) if i == p + 1 => {
                if let Some(last) = spans.last_mut() {
                    last.1 += 1;
                }
            }
            Some(p) => spans.push((i - p - 1, 1)),
            None => spans.push((i, 1)),
        }
        let c = i64::try_from(c).unwrap_or(i64::MAX);
        deltas.push(c - prev_count);
        prev_count = c;
        prev_index = Some(i);
    }
    (spans, deltas)
}
