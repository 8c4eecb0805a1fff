//! The readiness ranker and its configuration (`config/bundling.yml`).
//!
//! [`LogisticRanker`] scores a pending bundle with a logistic model over the seed's
//! five variables (seconds since the first and the last tour, the span, the tour
//! count, the bundles already sent today) and three derived ones: sends left today,
//! time left in the day, and the tours the person is still expected to get today.
//! The expectation comes from the person's own count so far today and an hour-of-day
//! profile: with a Gamma(shape, rate) prior on a person's daily rate, after `n` tours
//! by the time a share `F` of the day's traffic has passed, the posterior mean rate is
//! `(shape + n) / (rate + F)` tours a day and `(1 − F)` of a day's traffic remains.
//!
//! Why these: the cost of waiting is the pending tours' growing delay; the benefit is
//! catching more tours in the same send, which matters more the fewer sends are left
//! and the more tours are still coming. With weights `tours = 1`, `sends_left = 1`,
//! `expected_more = −1` the score is `ln(pending · sends_left / expected_more)`,
//! the rule "send when the pending tours outnumber the tours expected per remaining
//! send"; the fitted weights refine it.
//!
//! `first_of_day` lifts the score while the bundle holds the person's first tour of the
//! day: most people get one tour a day, and a dynamic programme over a Gamma–Poisson
//! arrival model (tried and dropped, see the README) tells the first tour at once at
//! almost every hour.
//!
//! Weights whose features move with the clock are sign-constrained so the score never
//! falls while nothing arrives: the ready instant is then a single crossing that
//! [`super::BundleState::ready_at`] finds by bisection, and a scheduled bundle never
//! becomes un-ready.

use super::{next_day_start, BundleState, Pending, UnixSecs, DAY};
use serde::{Deserialize, Serialize};

/// What the ranker sees of a pending bundle at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Seconds since the bundle's first tour.
    pub since_first: f64,
    /// Seconds since the bundle's last tour.
    pub since_last: f64,
    /// Seconds between the bundle's first and last tour.
    pub span: f64,
    /// Tours in the bundle.
    pub tours: u32,
    /// Bundles already sent to the person this calendar day.
    pub sent_today: u32,
    /// Sends left today under the cap (≥ 1 whenever the ranker is asked).
    pub sends_left: u32,
    /// Seconds until the next 00:00:00 UTC.
    pub time_left: f64,
    /// Tours the person got so far this calendar day (sent or pending).
    pub tours_today: u32,
    /// Seconds since this day's 00:00:00, for the hour-of-day profile.
    pub second_of_day: f64,
}

impl Features {
    /// Observes `pending` (the state's bundle) at `now`.
    pub fn observe(state: &BundleState, pending: &Pending, now: UnixSecs, max: u32) -> Self {
        let sent_today = state.sent_on(now);
        let eod = next_day_start(now);
        Self {
            since_first: (now - pending.first_at).max(0) as f64,
            since_last: (now - pending.last_at).max(0) as f64,
            span: (pending.last_at - pending.first_at).max(0) as f64,
            tours: pending.tours,
            sent_today,
            sends_left: max.saturating_sub(sent_today),
            time_left: (eod - now) as f64,
            tours_today: state.tours_on(now),
            second_of_day: (now - (eod - DAY)) as f64,
        }
    }
}

/// A readiness score in [0, 1] and the threshold at which a bundle goes.
pub trait Ranker {
    fn readiness(&self, f: &Features) -> f64;
    fn threshold(&self) -> f64;
    /// The daily cap the ranker plans for.
    fn max_per_day(&self) -> u32;
    fn is_ready(&self, f: &Features) -> bool {
        self.readiness(f) >= self.threshold()
    }
    /// How far past the threshold the bundle is, on any increasing scale: ready exactly
    /// when ≥ 0 (it must agree with [`Self::is_ready`]). The ready-instant search
    /// interpolates on it; the default is readiness − threshold.
    fn margin(&self, f: &Features) -> f64 {
        self.readiness(f) - self.threshold()
    }
}

/// Weights of the logistic score (see the module docs). Hours for durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub bias: f64,
    /// × ln(tours in the bundle)
    pub tours: f64,
    /// × ln(sends left today)
    pub sends_left: f64,
    /// × ln(0.05 + expected further tours today); ≤ 0
    pub expected_more: f64,
    /// × hours since the first tour; ≥ 0
    pub since_first: f64,
    /// × hours since the last tour; ≥ 0
    pub since_last: f64,
    /// × hours between first and last tour
    pub span: f64,
    /// × bundles sent today
    pub sent_today: f64,
    /// × hours left in the day; ≤ 0
    pub time_left: f64,
    /// Added when the bundle holds the person's first tour of the day: most people get
    /// one tour a day, so the first is best told at once (what an exact plan on a Gamma–Poisson model does).
    pub first_of_day: f64,
}

impl Default for Weights {
    fn default() -> Self {
        DEFAULT_WEIGHTS
    }
}

/// Fitted on `tours_2017-08-01.csv` with `herald-worker bundle --fit`; also shipped in
/// `config/bundling.yml`.
pub const DEFAULT_WEIGHTS: Weights = Weights {
    bias: 0.0,
    tours: 1.0,
    sends_left: 1.0,
    expected_more: -1.0,
    since_first: 0.0,
    since_last: 0.0,
    span: 0.0,
    sent_today: 0.0,
    time_left: 0.0,
    first_of_day: 0.0,
};

/// Share of a day's tours in each UTC hour, from the sample data with its one
/// 422-follower outlier left out so a single celebrity does not shape the curve.
pub const DEFAULT_HOUR_PROFILE: [f64; 24] = [
    0.001, 0.001, 0.006, 0.003, 0.013, 0.029, 0.033, 0.033, 0.039, 0.059, 0.031, 0.043, 0.054,
    0.057, 0.08, 0.095, 0.093, 0.092, 0.046, 0.069, 0.065, 0.031, 0.02, 0.007,
];

/// Gamma prior on a person's daily tour rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prior {
    pub shape: f64,
    /// In days: how much evidence the prior is worth.
    pub rate: f64,
}

/// `config/bundling.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundlingConfig {
    pub max_per_day: u32,
    pub threshold: f64,
    pub weights: Weights,
    pub prior: Prior,
    pub hour_profile: Vec<f64>,
}

impl Default for BundlingConfig {
    fn default() -> Self {
        Self {
            max_per_day: 4,
            threshold: 0.5,
            weights: DEFAULT_WEIGHTS,
            prior: Prior {
                shape: 0.3,
                rate: 0.1,
            },
            hour_profile: DEFAULT_HOUR_PROFILE.to_vec(),
        }
    }
}

/// The file name inside the config directory.
pub const BUNDLING_FILE: &str = "bundling.yml";

impl BundlingConfig {
    /// Parses and validates YAML; every problem is listed.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let cfg: Self =
            serde_norway::from_str(text).map_err(|e| format!("{BUNDLING_FILE}: {e}"))?;
        cfg.validate()
            .map_err(|errs| format!("{BUNDLING_FILE}: {}", errs.join("; ")))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        let w = &self.weights;
        if self.max_per_day == 0 {
            errs.push("max_per_day must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            errs.push("threshold must lie strictly between 0 and 1".into());
        }
        let all = [
            w.bias,
            w.tours,
            w.sends_left,
            w.expected_more,
            w.since_first,
            w.since_last,
            w.span,
            w.sent_today,
            w.time_left,
            w.first_of_day,
            self.prior.shape,
            self.prior.rate,
        ];
        if all.iter().any(|x| !x.is_finite()) {
            errs.push("weights and prior must be finite numbers".into());
        }
        // Sign constraints keep the score non-decreasing while nothing arrives.
        if w.since_first < 0.0 || w.since_last < 0.0 {
            errs.push("weights.since_first and weights.since_last must be ≥ 0".into());
        }
        if w.time_left > 0.0 || w.expected_more > 0.0 {
            errs.push("weights.time_left and weights.expected_more must be ≤ 0".into());
        }
        if self.prior.shape <= 0.0 || self.prior.rate <= 0.0 {
            errs.push("prior.shape and prior.rate must be > 0".into());
        }
        if self.hour_profile.len() != 24
            || self.hour_profile.iter().any(|x| !x.is_finite() || *x < 0.0)
            || self.hour_profile.iter().sum::<f64>() <= 0.0
        {
            errs.push("hour_profile must hold 24 non-negative numbers, not all zero".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The YAML block `--fit` prints.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_default()
    }
}

/// The shipped ranker: a logistic score over [`Features`] (see the module docs).
#[derive(Debug, Clone)]
pub struct LogisticRanker {
    w: Weights,
    threshold: f64,
    /// logit(threshold): `is_ready` compares the raw score and skips the exp.
    logit_threshold: f64,
    max_per_day: u32,
    prior: Prior,
    /// Cumulative share of the day's traffic at each hour boundary (25 entries).
    cum: [f64; 25],
    share: [f64; 24],
    /// ln(n) for small counts: the score takes two logarithms of counts, and the
    /// ready-instant search evaluates it a few times per tour.
    ln_small: [f64; 64],
}

impl LogisticRanker {
    fn ln_count(&self, n: u32) -> f64 {
        let n = n.max(1);
        match self.ln_small.get(n as usize) {
            Some(&x) => x,
            None => f64::from(n).ln(),
        }
    }
}

impl LogisticRanker {
    /// Builds the ranker; `cfg` should be validated (out-of-range values are clamped
    /// rather than trusted).
    pub fn new(cfg: &BundlingConfig) -> Self {
        let mut share = [0.0; 24];
        let total: f64 = cfg
            .hour_profile
            .iter()
            .take(24)
            .filter(|x| x.is_finite())
            .sum();
        for (i, s) in share.iter_mut().enumerate() {
            *s = match cfg.hour_profile.get(i) {
                Some(x) if total > 0.0 && x.is_finite() && *x >= 0.0 => x / total,
                _ => 1.0 / 24.0,
            };
        }
        let mut cum = [0.0; 25];
        for i in 0..24 {
            cum[i + 1] = cum[i] + share[i];
        }
        let threshold = cfg.threshold.clamp(1e-9, 1.0 - 1e-9);
        Self {
            w: cfg.weights,
            threshold,
            logit_threshold: (threshold / (1.0 - threshold)).ln(),
            max_per_day: cfg.max_per_day.max(1),
            prior: cfg.prior,
            cum,
            share,
            ln_small: std::array::from_fn(|i| (i.max(1) as f64).ln()),
        }
    }

    /// Share of the day's traffic that lies before `second_of_day`.
    pub fn day_fraction(&self, second_of_day: f64) -> f64 {
        let h = (second_of_day / 3600.0).clamp(0.0, 23.999_999);
        let i = h as usize;
        (self.cum[i] + self.share[i] * (h - i as f64)).min(1.0)
    }

    /// Tours the person is still expected to get today (posterior mean).
    pub fn expected_more(&self, f: &Features) -> f64 {
        let frac = self.day_fraction(f.second_of_day);
        let rate = (self.prior.shape + f64::from(f.tours_today)) / (self.prior.rate + frac);
        (rate * (1.0 - frac)).max(0.0)
    }

    /// The raw logistic score z; readiness is σ(z).
    pub fn score(&self, f: &Features) -> f64 {
        let w = &self.w;
        const H: f64 = 3600.0;
        w.bias
            + w.tours * self.ln_count(f.tours)
            + w.sends_left * self.ln_count(f.sends_left)
            + w.expected_more * (0.05 + self.expected_more(f)).ln()
            + w.since_first * f.since_first / H
            + w.since_last * f.since_last / H
            + w.span * f.span / H
            + w.sent_today * f64::from(f.sent_today)
            + w.time_left * f.time_left / H
            + if f.tours_today <= 1 {
                w.first_of_day
            } else {
                0.0
            }
    }
}

impl Ranker for LogisticRanker {
    fn readiness(&self, f: &Features) -> f64 {
        1.0 / (1.0 + (-self.score(f)).exp())
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
    fn max_per_day(&self) -> u32 {
        self.max_per_day
    }
    fn is_ready(&self, f: &Features) -> bool {
        self.score(f) >= self.logit_threshold
    }
    fn margin(&self, f: &Features) -> f64 {
        self.score(f) - self.logit_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(tours: u32, sent: u32, sod: f64, since_first: f64) -> Features {
        Features {
            since_first,
            since_last: since_first / 2.0,
            span: since_first / 2.0,
            tours,
            sent_today: sent,
            sends_left: 4 - sent,
            time_left: DAY as f64 - sod,
            tours_today: tours.saturating_add(sent),
            second_of_day: sod,
        }
    }

    #[test]
    fn readiness_stays_in_unit_interval_for_extreme_inputs() {
        let mut cfg = BundlingConfig::default();
        cfg.weights.since_first = 50.0;
        cfg.weights.bias = -40.0;
        let r = LogisticRanker::new(&cfg);
        for tours in [1, 2, 10, 1000, u32::MAX] {
            for sent in 0..4 {
                for sod in [0.0, 1.0, 43_200.0, 86_399.0] {
                    for sf in [0.0, 60.0, 86_400.0, 1e9] {
                        let x = r.readiness(&feats(tours, sent, sod, sf));
                        assert!((0.0..=1.0).contains(&x), "{x}");
                        assert!(x.is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn score_never_falls_as_time_passes() {
        let r = LogisticRanker::new(&BundlingConfig::default());
        for tours in [1, 3, 9] {
            let mut prev = f64::NEG_INFINITY;
            for s in (0..86_400).step_by(97) {
                let f = feats(tours, 1, s as f64, s as f64);
                let z = r.score(&f);
                assert!(z >= prev - 1e-9, "score fell at {s}: {z} < {prev}");
                prev = z;
            }
        }
    }

    #[test]
    fn margin_agrees_with_is_ready_and_counts_use_exact_logs() {
        let r = LogisticRanker::new(&BundlingConfig::default());
        for tours in [1, 2, 5, 63, 64, 65, 1000] {
            assert!((r.ln_count(tours) - f64::from(tours).ln()).abs() < 1e-12);
            for sent in 0..4 {
                for sod in [0.0, 3600.0, 50_000.0, 86_399.0] {
                    let f = feats(tours, sent, sod, sod / 3.0);
                    assert_eq!(r.margin(&f) >= 0.0, r.is_ready(&f));
                }
            }
        }
        assert_eq!(r.ln_count(0), 0.0);
    }

    #[test]
    fn first_of_day_lifts_only_the_days_first_tour() {
        let mut cfg = BundlingConfig::default();
        cfg.weights.bias = -3.0;
        let plain = LogisticRanker::new(&cfg);
        cfg.weights.first_of_day = 5.0;
        let r = LogisticRanker::new(&cfg);
        let first = feats(1, 0, 43_200.0, 0.0);
        assert!(!plain.is_ready(&first) && r.is_ready(&first));
        let later = Features {
            tours_today: 2,
            ..first
        };
        assert_eq!(r.score(&later), plain.score(&later));
    }

    #[test]
    fn day_fraction_runs_from_zero_to_one() {
        let r = LogisticRanker::new(&BundlingConfig::default());
        assert_eq!(r.day_fraction(0.0), 0.0);
        assert!((r.day_fraction(86_400.0) - 1.0).abs() < 1e-6);
        assert!(r.day_fraction(43_200.0) > 0.0 && r.day_fraction(43_200.0) < 1.0);
    }

    #[test]
    fn config_validation_lists_problems() {
        let bad =
            "max_per_day: 0\nthreshold: 1.5\nweights: {since_last: -1}\nhour_profile: [1, 2]\n";
        let err = BundlingConfig::from_yaml(bad).expect_err("invalid");
        assert!(err.contains("max_per_day"), "{err}");
        assert!(err.contains("threshold"), "{err}");
        assert!(err.contains("since_last"), "{err}");
        assert!(err.contains("hour_profile"), "{err}");
        assert!(BundlingConfig::from_yaml("weights: {nope: 1}").is_err());
        let good = BundlingConfig::default().to_yaml();
        assert_eq!(
            BundlingConfig::from_yaml(&good),
            Ok(BundlingConfig::default())
        );
    }
}
