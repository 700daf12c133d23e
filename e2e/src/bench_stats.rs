//! How sure a benchmark's verdict is.
//!
//! The switchover bench compares medians of a few dozen write outages per driver, and on a shared
//! 2-core machine one run's medians move by more than the margin of its targets. A ratio printed
//! without its uncertainty reads as a verdict it is not, so the bench prints each ratio with a
//! percentile-bootstrap confidence interval: both samples are resampled (with replacement,
//! independently, each to its own size), the ratio of the resampled medians is taken many times,
//! and the interval holds the central `confidence` share of those ratios.
//!
//! The generator is SplitMix64 with a fixed seed, so a printed table can be recomputed exactly
//! from the same samples; it needs no statistical quality beyond uniform indices.

/// A ratio of medians and its bootstrap confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioEstimate {
    /// `median(numerator) / median(denominator)` of the samples as measured.
    pub point: f64,
    pub low: f64,
    pub high: f64,
    /// The share of resampled ratios the interval holds (0.90 for a 90 % interval).
    pub confidence: f64,
}

impl RatioEstimate {
    /// `1.03 (90 % CI 0.97–1.09)`.
    pub fn describe(&self) -> String {
        format!(
            "{:.2} ({:.0} % CI {:.2}–{:.2})",
            self.point,
            self.confidence * 100.0,
            self.low,
            self.high
        )
    }
}

/// Resamples used when the caller has no reason to choose: enough that the interval's ends move
/// by less than 0.01 between seeds on the bench's sample sizes.
pub const RESAMPLES: usize = 4000;

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `median(numerator) / median(denominator)` with a percentile-bootstrap interval, or `None`
/// when a sample is empty or a median is not positive.
pub fn ratio_of_medians(
    numerator: &[f64],
    denominator: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Option<RatioEstimate> {
    let ratio = |a: &[f64], b: &[f64]| {
        let (a, b) = (median(a)?, median(b)?);
        (b > 0.0).then(|| a / b)
    };
    let point = ratio(numerator, denominator)?;
    let mut rng = SplitMix64(seed);
    let mut draw = |from: &[f64], into: &mut Vec<f64>| {
        into.clear();
        into.extend((0..from.len()).map(|_| from[rng.below(from.len())]));
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut ratios: Vec<f64> = (0..resamples.max(1))
        .filter_map(|_| {
            draw(numerator, &mut a);
            draw(denominator, &mut b);
            ratio(&a, &b)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    let at = |q: f64| {
        let i = (q * (ratios.len() - 1) as f64).round() as usize;
        ratios[i.min(ratios.len() - 1)]
    };
    Some(RatioEstimate {
        point,
        low: at(tail),
        high: at(1.0 - tail),
        confidence,
    })
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n ≤ 2³², so the modulo bias is below 2⁻³²).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// The machine's 1, 5 and 15 minute load averages (`/proc/loadavg`), printed beside every bench
/// figure: on a shared machine the load explains the timings.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 outages around `centre` ms, spread like the bench's (±25 %), deterministic.
    fn sample(centre: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        (0..20)
            .map(|_| centre * (0.75 + 0.5 * (rng.next() >> 11) as f64 / (1u64 << 53) as f64))
            .collect()
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn the_interval_holds_the_point_and_is_wider_for_noisier_samples() {
        let a = sample(500.0, 1);
        let b = sample(480.0, 2);
        let r = ratio_of_medians(&a, &b, 0.90, RESAMPLES, 7).expect("estimate");
        assert!(r.low <= r.point && r.point <= r.high, "{r:?}");
        assert!(
            r.high - r.low > 0.02,
            "twenty noisy outages cannot pin a ratio: {r:?}"
        );
        let tight: Vec<f64> = a.iter().map(|x| 500.0 + (x - 500.0) / 50.0).collect();
        let tight_b: Vec<f64> = b.iter().map(|x| 480.0 + (x - 480.0) / 50.0).collect();
        let t = ratio_of_medians(&tight, &tight_b, 0.90, RESAMPLES, 7).expect("estimate");
        assert!(t.high - t.low < (r.high - r.low) / 10.0, "{t:?} vs {r:?}");
    }

    #[test]
    fn a_real_difference_is_resolved_and_a_wider_confidence_widens_the_interval() {
        let slow = sample(600.0, 3);
        let fast = sample(400.0, 4);
        let r90 = ratio_of_medians(&slow, &fast, 0.90, RESAMPLES, 11).expect("estimate");
        assert!(r90.low > 1.2 && r90.high < 1.9, "{r90:?}");
        let r99 = ratio_of_medians(&slow, &fast, 0.99, RESAMPLES, 11).expect("estimate");
        assert!(
            r99.low <= r90.low && r99.high >= r90.high,
            "{r99:?} vs {r90:?}"
        );
        assert_eq!(
            r90.describe(),
            format!("{:.2} (90 % CI {:.2}–{:.2})", r90.point, r90.low, r90.high)
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let (a, b) = (sample(500.0, 5), sample(450.0, 6));
        assert_eq!(
            ratio_of_medians(&a, &b, 0.9, 500, 3),
            ratio_of_medians(&a, &b, 0.9, 500, 3)
        );
    }

    #[test]
    fn no_estimate_without_samples_or_with_a_zero_baseline() {
        assert_eq!(ratio_of_medians(&[], &[1.0], 0.9, 10, 1), None);
        assert_eq!(ratio_of_medians(&[1.0], &[0.0, 0.0], 0.9, 10, 1), None);
    }
}
