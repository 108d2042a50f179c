//! The statistics of `diff` (pure).
//!
//! - Latency percentiles: a distribution-free confidence interval for each run's quantile from
//!   order statistics (the ranks between which the true p-quantile lies with 99% probability
//!   are the 0.5% and 99.5% points of Binomial(n, p); statrs computes them), read off the
//!   recorded histogram. The change is significant when the two intervals do not overlap (for
//!   two runs of the same distribution that happens with p < 0.0003, so the dozens of rows of
//!   a diff rarely raise a false alarm) and is at least the minimum effect.
//! - Counts (promotions, demotions, migrations, refusals, ping-pong, hint faults, faults): a
//!   bootstrap over the recorded intervals. Each run is resampled (intervals with replacement,
//!   as many as it has), the rate is the resampled sum over the resampled seconds (or GB
//!   touched), and the 2.5% and 97.5% points of new/base over the resamples bound the change.
//!   The generator is seeded, so the same two files always give the same answer.

use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng as _, SeedableRng as _};
use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF as _};

/// Confidence level of the quantile intervals.
pub const QUANTILE_LEVEL: f64 = 0.99;
/// Confidence level of the bootstrap intervals.
pub const LEVEL: f64 = 0.95;
/// Bootstrap resamples.
pub const RESAMPLES: usize = 2000;
/// Bootstrap seed.
pub const SEED: u64 = 0x6378_6c2d_7472_6163;

/// A quantile with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// Value at 1-based rank `k` of the recorded samples.
fn value_at_rank(h: &Histogram<u64>, k: u64) -> f64 {
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= k {
            return h.highest_equivalent(v.value_iterated_to()) as f64;
        }
    }
    h.max() as f64
}

/// The smallest `x` with `P(X <= x) >= p`. statrs 0.18's `inverse_cdf` panics (an unwrap of
/// its bisection) when that is 0, i.e. when `P(X = 0) >= p`: few samples, or a quantile near 0
/// (`diff` of a recording whose tier had 3 timed faults panicked in a 7.3 guest).
fn binomial_inverse_cdf(b: &Binomial, p: f64) -> u64 {
    if b.cdf(0) >= p {
        0
    } else {
        b.inverse_cdf(p)
    }
}

/// The `q` quantile of `h` with its distribution-free 99% interval; `None` when empty.
pub fn quantile_ci(h: &Histogram<u64>, q: f64) -> Option<Estimate> {
    let n = h.len();
    if n == 0 || !(0.0..1.0).contains(&q) {
        return None;
    }
    let value = value_at_rank(h, ((q * n as f64).ceil() as u64).clamp(1, n));
    let (lo_rank, hi_rank) = match Binomial::new(q, n) {
        // Ranks are 1-based: the interval [X(l), X(u)] with l = inv(0.5%), u = inv(99.5%) + 1.
        Ok(b) => (
            binomial_inverse_cdf(&b, (1.0 - QUANTILE_LEVEL) / 2.0).max(1),
            (binomial_inverse_cdf(&b, 1.0 - (1.0 - QUANTILE_LEVEL) / 2.0) + 1).min(n),
        ),
        Err(_) => (1, n),
    };
    Some(Estimate {
        value,
        lo: value_at_rank(h, lo_rank).min(value),
        hi: value_at_rank(h, hi_rank).max(value),
    })
}

/// A change between two runs, in percent of the base.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Change {
    /// (new / base - 1) * 100; infinite when only the new run has any.
    pub pct: f64,
    /// Lower bound of the interval of `pct`.
    pub lo_pct: f64,
    /// Upper bound.
    pub hi_pct: f64,
    /// The interval excludes 0 and |pct| is at least the minimum effect.
    pub significant: bool,
}

fn pct(new: f64, base: f64) -> f64 {
    if base == 0.0 {
        if new == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (new / base - 1.0) * 100.0
    }
}

fn judged(p: f64, lo: f64, hi: f64, min_effect_pct: f64) -> Change {
    Change {
        pct: p,
        lo_pct: lo,
        hi_pct: hi,
        significant: (lo > 0.0 || hi < 0.0) && p.abs() >= min_effect_pct,
    }
}

/// Compares the `q` quantiles of two latency histograms.
pub fn compare_quantiles(
    base: &Histogram<u64>,
    new: &Histogram<u64>,
    q: f64,
    min_effect_pct: f64,
) -> Option<(Estimate, Estimate, Change)> {
    let b = quantile_ci(base, q)?;
    let n = quantile_ci(new, q)?;
    let p = pct(n.value, b.value);
    // Bounds of the ratio from the two intervals; they overlap exactly when this spans 0.
    let lo = pct(n.lo, b.hi);
    let hi = pct(n.hi, b.lo.max(f64::MIN_POSITIVE));
    let overlap = n.lo <= b.hi && b.lo <= n.hi;
    let mut c = judged(p, lo, hi, min_effect_pct);
    c.significant &= !overlap;
    Some((b, n, c))
}

/// A run's measure as (amount, exposure) per recorded interval: pages and seconds, or pages
/// and GB touched.
pub type Series<'a> = (&'a [f64], &'a [f64]);

fn rate((num, den): Series) -> f64 {
    let d: f64 = den.iter().sum();
    if d > 0.0 {
        num.iter().sum::<f64>() / d
    } else {
        0.0
    }
}

fn resampled_rate(rng: &mut SmallRng, (num, den): Series) -> f64 {
    let n = num.len().min(den.len());
    if n == 0 {
        return 0.0;
    }
    let (mut a, mut d) = (0.0, 0.0);
    for _ in 0..n {
        let i = rng.random_range(0..n);
        a += num[i];
        d += den[i];
    }
    if d > 0.0 {
        a / d
    } else {
        0.0
    }
}

/// Compares two runs' rates by bootstrap over their intervals: (base rate, new rate, change).
pub fn compare_rates(base: Series, new: Series, min_effect_pct: f64) -> (f64, f64, Change) {
    let (rb, rn) = (rate(base), rate(new));
    let p = pct(rn, rb);
    if rb == 0.0 && rn == 0.0 {
        return (rb, rn, judged(0.0, 0.0, 0.0, min_effect_pct));
    }
    let mut rng = SmallRng::seed_from_u64(SEED);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let b = resampled_rate(&mut rng, base);
            let n = resampled_rate(&mut rng, new);
            pct(n, b)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |f: f64| ratios[((f * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    let (lo, hi) = (at((1.0 - LEVEL) / 2.0), at(1.0 - (1.0 - LEVEL) / 2.0));
    (rb, rn, judged(p, lo, hi, min_effect_pct))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hist::new_histogram;
    use rand::distr::{Distribution as _, Uniform};

    /// Log-normal-ish latencies around `median` ns (a spread like real fault latencies),
    /// with the slowest 2% multiplied by `tail`.
    fn latencies(seed: u64, n: usize, median: f64, tail: f64) -> Histogram<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let u = Uniform::new(0.0f64, 1.0).expect("range");
        let mut h = new_histogram();
        for _ in 0..n {
            // Sum of uniforms: roughly normal, exponentiated.
            let z: f64 = (0..12).map(|_| u.sample(&mut rng)).sum::<f64>() - 6.0;
            let mut v = median * (0.5 * z).exp();
            if u.sample(&mut rng) < 0.02 {
                v *= tail;
            }
            let _ = h.record(v.max(1.0) as u64);
        }
        h
    }

    /// A quantile of one, two or a handful of samples, and quantiles near 0: statrs's
    /// inverse CDF panicked on every one of these before the guard (P(X = 0) >= 0.5%).
    #[test]
    fn quantile_intervals_of_few_samples_do_not_panic() {
        for n in [1u64, 2, 3, 5, 8, 40] {
            let mut h = new_histogram();
            for i in 0..n {
                let _ = h.record(1000 + 100 * i);
            }
            for q in [0.001, 0.5, 0.9, 0.99, 0.999] {
                let e = quantile_ci(&h, q).expect("non-empty");
                assert!(e.lo <= e.value && e.value <= e.hi, "n {n} q {q}: {e:?}");
                assert!(
                    e.lo >= 1000.0 && e.hi <= h.max() as f64,
                    "n {n} q {q}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn quantile_interval_contains_the_value_and_narrows_with_n() {
        let small = latencies(1, 1_000, 1000.0, 1.0);
        let big = latencies(1, 100_000, 1000.0, 1.0);
        let s = quantile_ci(&small, 0.99).expect("estimate");
        let b = quantile_ci(&big, 0.99).expect("estimate");
        assert!(s.lo <= s.value && s.value <= s.hi);
        assert!(b.hi - b.lo < s.hi - s.lo, "{b:?} vs {s:?}");
        assert!(quantile_ci(&new_histogram(), 0.5).is_none());
    }

    #[test]
    fn a_20_percent_p99_shift_is_detected() {
        let base = latencies(1, 50_000, 1000.0, 1.0);
        let new = latencies(2, 50_000, 1000.0 * 1.2, 1.0);
        let (_, _, c) = compare_quantiles(&base, &new, 0.99, 5.0).expect("compared");
        assert!(c.significant, "{c:?}");
        assert!((c.pct - 20.0).abs() < 5.0, "{c:?}");
        // A shift of the tail only: p99 moves, p50 does not.
        let tail = latencies(3, 50_000, 1000.0, 5.0);
        let base_t = latencies(4, 50_000, 1000.0, 1.0);
        let (_, _, p99) = compare_quantiles(&base_t, &tail, 0.99, 5.0).expect("compared");
        let (_, _, p50) = compare_quantiles(&base_t, &tail, 0.5, 5.0).expect("compared");
        assert!(p99.significant && p99.pct > 20.0, "{p99:?}");
        assert!(!p50.significant, "{p50:?}");
    }

    #[test]
    fn identical_and_noisy_inputs_are_not_flagged() {
        let a = latencies(5, 20_000, 1000.0, 1.0);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let (_, _, same) = compare_quantiles(&a, &a, q, 5.0).expect("compared");
            assert_eq!(same.pct, 0.0);
            assert!(!same.significant, "q {q}: {same:?}");
        }
        // Same distribution, other samples (seeds), for 20 pairs: never flagged.
        for seed in 0..20 {
            let b = latencies(100 + seed, 20_000, 1000.0, 1.0);
            let c = latencies(200 + seed, 20_000, 1000.0, 1.0);
            for q in [0.5, 0.9, 0.99] {
                let (_, _, x) = compare_quantiles(&b, &c, q, 5.0).expect("compared");
                assert!(!x.significant, "seed {seed} q {q}: {x:?}");
            }
        }
    }

    fn poisson_like(seed: u64, n: usize, mean: f64) -> Vec<f64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|_| (mean * (0.8 + 0.4 * rng.random::<f64>())).round())
            .collect()
    }

    #[test]
    fn rate_changes_by_bootstrap() {
        let secs = vec![1.0; 30];
        let base = poisson_like(1, 30, 1000.0);
        let same = poisson_like(2, 30, 1000.0);
        let down = poisson_like(3, 30, 800.0);
        let (_, _, c) = compare_rates((&base, &secs), (&base, &secs), 5.0);
        assert!(!c.significant && c.pct == 0.0, "{c:?}");
        let (_, _, c) = compare_rates((&base, &secs), (&same, &secs), 5.0);
        assert!(!c.significant, "noise: {c:?}");
        let (rb, rn, c) = compare_rates((&base, &secs), (&down, &secs), 5.0);
        assert!(
            c.significant && c.pct < -15.0 && c.hi_pct < 0.0,
            "{rb} {rn} {c:?}"
        );
        let mut burst = vec![0.0; 12];
        burst[0] = 8000.0;
        burst[1] = 8000.0;
        burst[2] = 384.0;
        let mut trickle = vec![256.0; 12];
        trickle[0] = 100.0;
        let s12 = vec![1.0; 12];
        // Bursty base (everything in three seconds of twelve) against a steady trickle: the
        // point estimate drops, but resamples without the burst exist, and the interval says
        // so instead of claiming certainty.
        let (_, _, c) = compare_rates((&burst, &s12), (&trickle, &s12), 5.0);
        assert!(c.pct < -80.0 && c.hi_pct > 0.0 && !c.significant, "{c:?}");
        // The same drop spread over the run is certain.
        let spread = vec![1365.0; 12];
        let (_, _, c) = compare_rates((&spread, &s12), (&trickle, &s12), 5.0);
        assert!(c.significant && c.hi_pct < -70.0, "{c:?}");
        // Recordings of different lengths compare by rate.
        let long_secs = vec![1.0; 60];
        let long = poisson_like(4, 60, 1000.0);
        let (_, _, c) = compare_rates((&base, &secs), (&long, &long_secs), 5.0);
        assert!(!c.significant, "{c:?}");
        // Only the new run has any.
        let zero = vec![0.0; 30];
        let (_, _, c) = compare_rates((&zero, &secs), (&base, &secs), 5.0);
        assert!(c.pct.is_infinite() && c.significant, "{c:?}");
    }
}
