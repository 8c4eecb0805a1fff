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
//! Who the tours came from refines `n` ([`FriendModel`], from a [`FriendSignal`] the
//! caller supplies): a friend who told the person `k` tours today counts `k^count_power`
//! (plus `per_friend` per distinct friend). Below 1, a burst from one friend predicts
//! fewer further tours than as many tours from different friends; on the sample day
//! (half of its rows are one friend's 10 tours told to 422 people) that takes the ratio
//! to the optimum from 2.24 to 1.85. Without a signal every tour counts once.
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
//! The person's busiest friend today may be on a session (`friends.session`):
//! in the sample a friend who toured `k` times today tours about `0.6 k` more times,
//! mostly within hours. The forecast adds `session × k` for that friend, fading as the
//! log-normal survival of the time since the person's latest tour (median and spread of the
//! gaps between a friend's tours, from the lab's arrival model). Repeats still count
//! `k^count_power` towards the person's daily rate: a session says more is coming
//! soon, not that the person gets more tours all day.
//!
//! `last_send` lowers the score of the day's last send by ln(expected further tours ×
//! hours left): after it every further tour waits for midnight. `spare_sends` weighs
//! the sends left after this one (sending is cheap while some remain).
//!
//! Weights whose features move with the clock are sign-constrained so the score never
//! falls while nothing arrives: the ready instant is then a single crossing that
//! `BundleState::ready_at` finds by bisection, and a scheduled bundle never
//! becomes un-ready.

use serde::{Deserialize, Serialize};

/// What is known today of the friends whose tours reached a person: computed by the
/// caller (the replay, or the worker from per-person daily friend counters) with
/// [`Ranker::friend_signal`] at each tour and fixed until the next one, so readiness
/// still moves only with the clock between arrivals. See [`FriendModel`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FriendSignal {
    /// Distinct friends whose tours reached the person today.
    pub friends_today: u32,
    /// Σ over those friends of `k^count_power`, `k` the tours the friend told the
    /// person today: the person's tours today with a friend's repeats counting less
    /// than new friends.
    pub weighted_tours: f64,
    /// Tours the person's busiest friend today told them (the largest count; 0: none
    /// known). A friend who toured `k` times today tends to tour again, about in
    /// proportion to `k` (see [`FriendModel::session`]).
    pub busiest_told: u32,
}

/// What the ranker sees of a pending bundle at an instant (`Features::observe`, beside
/// the state machine it reads).
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
    /// Distinct friends whose tours reached the person today.
    pub friends_today: u32,
    /// The person's tours today, weighted (see [`FriendSignal::weighted_tours`]).
    pub weighted_tours: f64,
    /// See [`FriendSignal::busiest_told`].
    pub busiest_told: u32,
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
    /// The [`FriendSignal`] of a person given, for each friend whose tours reached them
    /// today, how many of that friend's tours they got today. The default gives none
    /// (the ranker then counts every tour once).
    fn friend_signal(&self, _told: &mut dyn Iterator<Item = u32>) -> FriendSignal {
        FriendSignal::default()
    }
}

/// How the friends behind a person's tours today enter the forecast of their further
/// tours (see the module docs). The defaults count every tour once, as without friends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FriendModel {
    /// A friend who told the person `k` tours today counts `k^count_power` in the
    /// Gamma posterior (0..=1): 1 counts every tour, 0 counts friends. Below 1 a burst
    /// from one friend predicts fewer further tours than as many tours from different
    /// friends.
    pub count_power: f64,
    /// Added to the Gamma shape per distinct friend seen today. Must be > −1 (with
    /// the weighted count of at least one per friend the shape stays positive).
    pub per_friend: f64,
    /// Further tours expected from the person's busiest friend today, per tour they
    /// told the person, while their session lasts (≥ 0; 0: none). In the sample a
    /// friend who toured `k` times tours about `0.6 k` more times.
    pub session: f64,
    /// Median seconds between a friend's tours: the session fades as a log-normal
    /// survival of the time since the latest tour, with this median and
    /// `session_spread` (σ of the log gap).
    pub session_median_s: f64,
    pub session_spread: f64,
}

impl Default for FriendModel {
    fn default() -> Self {
        Self {
            count_power: 1.0,
            per_friend: 0.0,
            session: 0.0,
            session_median_s: 3600.0,
            session_spread: 1.5,
        }
    }
}

impl FriendModel {
    fn validate(&self) -> Vec<FieldProblem> {
        let mut errs = Vec::new();
        if !(0.0..=1.0).contains(&self.count_power) {
            errs.push(FieldProblem::new(
                "friends.count_power",
                "must lie in 0..=1",
            ));
        }
        if !(self.per_friend.is_finite() && self.per_friend > -1.0) {
            errs.push(FieldProblem::new(
                "friends.per_friend",
                "must be a number > -1",
            ));
        }
        if !(self.session.is_finite() && self.session >= 0.0) {
            errs.push(FieldProblem::new("friends.session", "must be a number ≥ 0"));
        }
        if !(self.session_median_s.is_finite() && self.session_median_s > 0.0) {
            errs.push(FieldProblem::new(
                "friends.session_median_s",
                "must be a number > 0",
            ));
        }
        if !(self.session_spread.is_finite() && self.session_spread > 0.0) {
            errs.push(FieldProblem::new(
                "friends.session_spread",
                "must be a number > 0",
            ));
        }
        errs
    }

    fn power(&self) -> f64 {
        if self.count_power.is_finite() {
            self.count_power.clamp(0.0, 1.0)
        } else {
            1.0
        }
    }

    /// The signal of a person who got `told[i]` tours from their i-th friend today.
    pub fn signal(&self, told: &mut dyn Iterator<Item = u32>) -> FriendSignal {
        let power = self.power();
        self.signal_with(told, |k| f64::from(k).powf(power))
    }

    fn signal_with(
        &self,
        told: &mut dyn Iterator<Item = u32>,
        weight: impl Fn(u32) -> f64,
    ) -> FriendSignal {
        let mut out = FriendSignal::default();
        for k in told {
            out.friends_today = out.friends_today.saturating_add(1);
            out.weighted_tours += weight(k.max(1));
            out.busiest_told = out.busiest_told.max(k.max(1));
        }
        out
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
    /// × ln(0.5 + sends left after this one): sending now is cheap while sends remain
    /// for the tours still to come, and very dear when this is the last.
    pub spare_sends: f64,
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
    /// × ln(0.05 + expected further tours × hours left in the day), only while the
    /// bundle would be the day's last send; ≤ 0. After the last send every further
    /// tour waits for midnight, so that send must wait until few tours are still
    /// expected *and* little of the day is left to wait through.
    pub last_send: f64,
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
    spare_sends: 0.0,
    expected_more: -1.0,
    since_first: 0.0,
    since_last: 0.0,
    span: 0.0,
    sent_today: 0.0,
    time_left: 0.0,
    last_send: 0.0,
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
    pub friends: FriendModel,
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
            friends: FriendModel::default(),
        }
    }
}

/// The file name inside the config directory.
pub const BUNDLING_FILE: &str = "bundling.yml";

/// One mistake in a [`BundlingConfig`]: the field (a dotted path, as written in
/// `bundling.yml`) and what is wrong with it. The config loader turns each into an
/// error naming file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

impl FieldProblem {
    fn new(field: &'static str, message: &str) -> Self {
        Self {
            field,
            message: message.to_owned(),
        }
    }
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

impl BundlingConfig {
    /// Parses and validates YAML; every problem is listed. (The config loader,
    /// `herald_core::config`, parses the file the same way after substituting
    /// `${VAR}` references; this is for tools handed a single file.)
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let cfg: Self =
            serde_norway::from_str(text).map_err(|e| format!("{BUNDLING_FILE}: {e}"))?;
        cfg.validate().map_err(|errs| {
            let listed: Vec<String> = errs.iter().map(ToString::to_string).collect();
            format!("{BUNDLING_FILE}: {}", listed.join("; "))
        })?;
        Ok(cfg)
    }

    /// Checks the ranges and the sign rules that keep readiness from falling while
    /// nothing arrives; every problem is listed.
    pub fn validate(&self) -> Result<(), Vec<FieldProblem>> {
        let mut errs = Vec::new();
        let w = &self.weights;
        if self.max_per_day == 0 {
            errs.push(FieldProblem::new("max_per_day", "must be at least 1"));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            errs.push(FieldProblem::new(
                "threshold",
                "must lie strictly between 0 and 1",
            ));
        }
        let numbers = [
            ("weights.bias", w.bias),
            ("weights.tours", w.tours),
            ("weights.sends_left", w.sends_left),
            ("weights.spare_sends", w.spare_sends),
            ("weights.expected_more", w.expected_more),
            ("weights.since_first", w.since_first),
            ("weights.since_last", w.since_last),
            ("weights.span", w.span),
            ("weights.sent_today", w.sent_today),
            ("weights.time_left", w.time_left),
            ("weights.last_send", w.last_send),
            ("weights.first_of_day", w.first_of_day),
            ("prior.shape", self.prior.shape),
            ("prior.rate", self.prior.rate),
        ];
        for (field, _) in numbers.into_iter().filter(|(_, x)| !x.is_finite()) {
            errs.push(FieldProblem::new(field, "must be a finite number"));
        }
        // Sign constraints keep the score non-decreasing while nothing arrives.
        for (field, x) in [
            ("weights.since_first", w.since_first),
            ("weights.since_last", w.since_last),
        ] {
            if x < 0.0 {
                errs.push(FieldProblem::new(field, "must be ≥ 0"));
            }
        }
        for (field, x) in [
            ("weights.time_left", w.time_left),
            ("weights.expected_more", w.expected_more),
            ("weights.last_send", w.last_send),
        ] {
            if x > 0.0 {
                errs.push(FieldProblem::new(field, "must be ≤ 0"));
            }
        }
        if self.prior.shape <= 0.0 {
            errs.push(FieldProblem::new("prior.shape", "must be > 0"));
        }
        if self.prior.rate <= 0.0 {
            errs.push(FieldProblem::new("prior.rate", "must be > 0"));
        }
        if self.hour_profile.len() != 24
            || self.hour_profile.iter().any(|x| !x.is_finite() || *x < 0.0)
            || self.hour_profile.iter().sum::<f64>() <= 0.0
        {
            errs.push(FieldProblem::new(
                "hour_profile",
                "must hold 24 non-negative numbers, not all zero",
            ));
        }
        errs.extend(self.friends.validate());
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
    friends: FriendModel,
    /// Cumulative share of the day's traffic at each hour boundary (25 entries).
    cum: [f64; 25],
    share: [f64; 24],
    /// ln(n) for small counts: the score takes two logarithms of counts, and the
    /// ready-instant search evaluates it a few times per tour.
    ln_small: [f64; 64],
    /// k^count_power for small k (the replay asks for it at every tour).
    pow_small: [f64; 64],
    /// The session's survival at every [`SURVIVAL_STEP`] seconds of the first day
    /// since the latest tour, interpolated between: a logarithm and an erfc at every
    /// score halved the replay's speed. Empty when `session` is 0.
    survival: Vec<f64>,
}

/// Seconds between the entries of [`LogisticRanker`]'s survival table.
const SURVIVAL_STEP: f64 = 30.0;

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
            friends: cfg.friends,
            cum,
            share,
            ln_small: std::array::from_fn(|i| (i.max(1) as f64).ln()),
            pow_small: std::array::from_fn(|i| (i as f64).powf(cfg.friends.power())),
            survival: if cfg.friends.session > 0.0 {
                (0..=(86_400.0 / SURVIVAL_STEP) as usize)
                    .map(|i| session_survival(&cfg.friends, i as f64 * SURVIVAL_STEP))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The session's survival after `gap` seconds, from the table (linear between
    /// entries, so it still only falls as the gap grows).
    fn survival(&self, gap: f64) -> f64 {
        let x = gap.max(0.0) / SURVIVAL_STEP;
        let i = x as usize;
        match (self.survival.get(i), self.survival.get(i + 1)) {
            (Some(a), Some(b)) => a + (b - a) * (x - i as f64),
            _ => session_survival(&self.friends, gap),
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
        self.expected_more_with(f, self.prior)
    }

    /// [`Self::expected_more`] under another prior: the lab scores what a prior of the
    /// person's own (from their earlier days) would buy.
    pub fn expected_more_with(&self, f: &Features, prior: Prior) -> f64 {
        let frac = self.day_fraction(f.second_of_day);
        // Without a friend signal (none given) every tour counts once.
        let tours = if f.friends_today == 0 {
            f64::from(f.tours_today)
        } else {
            f.weighted_tours
        };
        let shape = prior.shape + tours + self.friends.per_friend * f64::from(f.friends_today);
        let rate = shape.max(0.0) / (prior.rate + frac);
        (rate * (1.0 - frac)).max(0.0) + self.session_more(f)
    }

    /// Further tours expected from the person's busiest friend today: `session × k`
    /// while the session lasts, fading as the log-normal survival of the time since
    /// the person's latest tour (it only falls as time passes, so readiness still
    /// only rises).
    pub fn session_more(&self, f: &Features) -> f64 {
        let m = &self.friends;
        if m.session <= 0.0 || f.busiest_told == 0 {
            return 0.0;
        }
        m.session * f64::from(f.busiest_told) * self.survival(f.since_last)
    }

    /// The raw logistic score z; readiness is σ(z).
    pub fn score(&self, f: &Features) -> f64 {
        self.score_with(f, self.expected_more(f))
    }

    /// [`Ranker::margin`] given the further tours `more` expected today instead of the
    /// ranker's own forecast (see [`Self::score_with`]).
    pub fn margin_with(&self, f: &Features, more: f64) -> f64 {
        self.score_with(f, more) - self.logit_threshold
    }

    /// The raw score given the further tours `more` expected today instead of the
    /// ranker's own forecast: the lab scores the rule with the true count (an oracle)
    /// to tell the forecast's error from the rule's.
    pub fn score_with(&self, f: &Features, more: f64) -> f64 {
        let w = &self.w;
        const H: f64 = 3600.0;
        let last_send = if f.sends_left == 1 && w.last_send != 0.0 {
            w.last_send * (0.05 + more * f.time_left / H).ln()
        } else {
            0.0
        };
        w.bias
            + w.tours * self.ln_count(f.tours)
            + w.sends_left * self.ln_count(f.sends_left)
            + w.spare_sends * (0.5 + f64::from(f.sends_left.saturating_sub(1))).ln()
            + w.expected_more * (0.05 + more).ln()
            + last_send
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

/// The chance that a friend's next tour comes more than `gap` seconds after their
/// last: the survival of a log-normal gap (median `session_median_s`, σ of the log
/// `session_spread`).
fn session_survival(m: &FriendModel, gap: f64) -> f64 {
    let z = (gap.max(1.0).ln() - m.session_median_s.ln()) / m.session_spread;
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (W. J. Cody's rational approximation as in
/// Numerical Recipes' `erfcc`, relative error below 1.2e-7): enough for a forecast.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
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
        self.margin_with(f, self.expected_more(f))
    }
    fn friend_signal(&self, told: &mut dyn Iterator<Item = u32>) -> FriendSignal {
        let power = self.friends.power();
        self.friends
            .signal_with(told, |k| match self.pow_small.get(k as usize) {
                Some(&x) => x,
                None => f64::from(k).powf(power),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::clock::DAY;

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
            friends_today: 0,
            weighted_tours: 0.0,
            busiest_told: 0,
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
    fn last_send_holds_only_the_days_last_send_and_never_falls_with_time() {
        let mut cfg = BundlingConfig::default();
        let plain = LogisticRanker::new(&cfg);
        cfg.weights.last_send = -2.0;
        let r = LogisticRanker::new(&cfg);
        // (sends already made, second of day): the term acts only when one send is left,
        // and lowers the score more the more tours are expected over more hours.
        for (sent, sod, acts) in [
            (0, 36_000.0, false),
            (2, 36_000.0, false),
            (3, 36_000.0, true),
            (3, 80_000.0, true),
        ] {
            let f = feats(2, sent, sod, 600.0);
            let (a, b) = (r.score(&f), plain.score(&f));
            assert_eq!(a != b, acts, "sent {sent} at {sod}: {a} vs {b}");
            if acts {
                let more = r.expected_more(&f) * f.time_left / 3600.0;
                assert!((a - b - -2.0 * (0.05 + more).ln()).abs() < 1e-9);
            }
        }
        let mut prev = f64::NEG_INFINITY;
        for s in (30_000..86_400).step_by(113) {
            let z = r.score(&feats(2, 3, s as f64, (s - 30_000) as f64));
            assert!(z >= prev - 1e-9, "score fell at {s}");
            prev = z;
        }
        assert!(BundlingConfig::from_yaml("weights: {last_send: 0.5}")
            .expect_err("positive")
            .contains("weights.last_send"));
    }

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
            (6.0, 2.15e-17),
        ] {
            assert!((erfc(x) - want).abs() < 2e-7, "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn session_forecast_grows_with_the_friends_count_and_fades_with_the_gap() {
        let mut cfg = BundlingConfig::default();
        cfg.friends.session = 0.5;
        cfg.friends.session_median_s = 3600.0;
        cfg.friends.session_spread = 1.0;
        let r = LogisticRanker::new(&cfg);
        let at = |busiest_told: u32, since_last: f64| Features {
            busiest_told,
            since_last,
            ..feats(1, 0, 40_000.0, since_last)
        };
        // (tours the busiest friend told, seconds since the latest tour, expected more
        // from that friend): 0.5 k at once, half of it at the median gap.
        for (k, gap, want) in [
            (0, 0.0, 0.0),
            (1, 0.0, 0.5),
            (4, 0.0, 2.0),
            (4, 3600.0, 1.0),
            (4, 3600.0 * 1f64.exp(), 2.0 * 0.158_655_254),
        ] {
            let got = r.session_more(&at(k, gap));
            assert!(
                (got - want).abs() < 1e-5,
                "k {k} gap {gap}: {got} vs {want}"
            );
        }
        // The table agrees with the formula, past its end too, and only falls.
        let mut prev = f64::INFINITY;
        for g in (0..100_000).step_by(37) {
            let (table, exact) = (
                r.survival(g as f64),
                session_survival(&cfg.friends, g as f64),
            );
            assert!((table - exact).abs() < 1e-4, "{g}: {table} vs {exact}");
            assert!(table <= prev, "rose at {g}");
            prev = table;
        }
        // It adds to the forecast, and is off when session is 0.
        let plain = LogisticRanker::new(&BundlingConfig::default());
        let f = at(4, 600.0);
        assert!((r.expected_more(&f) - plain.expected_more(&f) - r.session_more(&f)).abs() < 1e-12);
        assert_eq!(plain.session_more(&f), 0.0);
        // The score still never falls while nothing arrives.
        let mut prev = f64::NEG_INFINITY;
        for s in (40_000..86_400).step_by(97) {
            let g = (s - 40_000) as f64;
            let f = Features {
                second_of_day: s as f64,
                time_left: (86_400 - s) as f64,
                since_first: g,
                since_last: g,
                busiest_told: 6,
                ..feats(3, 1, 40_000.0, 0.0)
            };
            let z = r.score(&f);
            assert!(z >= prev - 1e-9, "score fell at {s}");
            prev = z;
        }
    }

    #[test]
    fn spare_sends_weighs_the_sends_left_after_this_one() {
        let mut cfg = BundlingConfig::default();
        let plain = LogisticRanker::new(&cfg);
        cfg.weights.spare_sends = 1.0;
        let r = LogisticRanker::new(&cfg);
        // (sends already made: sends left 4..1) → ln(0.5 + sends left − 1)
        for (sent, want) in [
            (0, 3.5f64.ln()),
            (1, 2.5f64.ln()),
            (2, 1.5f64.ln()),
            (3, 0.5f64.ln()),
        ] {
            let f = feats(2, sent, 36_000.0, 600.0);
            assert!(
                (r.score(&f) - plain.score(&f) - want).abs() < 1e-12,
                "sent {sent}"
            );
        }
    }

    #[test]
    fn session_settings_are_validated() {
        let err = BundlingConfig::from_yaml(
            "friends: {session: -1, session_median_s: 0, session_spread: -2}\n",
        )
        .expect_err("invalid");
        for field in [
            "friends.session ",
            "friends.session_median_s",
            "friends.session_spread",
        ] {
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn friend_signal_counts_friends_and_weighs_repeats() {
        let mut m = FriendModel::default();
        let sig = m.signal(&mut [3u32, 1, 0].into_iter());
        assert_eq!(sig.friends_today, 3);
        assert_eq!(sig.busiest_told, 3);
        // count_power 1: every tour once (a zero count is one tour).
        assert!((sig.weighted_tours - 5.0).abs() < 1e-12);
        m.count_power = 0.0;
        assert!((m.signal(&mut [3u32, 1].into_iter()).weighted_tours - 2.0).abs() < 1e-12);
        m.count_power = 0.5;
        let w = m.signal(&mut [4u32].into_iter()).weighted_tours;
        assert!((w - 2.0).abs() < 1e-12);
        // The ranker's table agrees with the model, past the table too.
        let cfg = BundlingConfig {
            friends: m,
            ..BundlingConfig::default()
        };
        let r = LogisticRanker::new(&cfg);
        for told in [[1u32, 2, 63], [64, 65, 1000]] {
            let a = r.friend_signal(&mut told.into_iter());
            let b = m.signal(&mut told.into_iter());
            assert_eq!(a.friends_today, b.friends_today);
            assert_eq!(a.busiest_told, b.busiest_told);
            assert!((a.weighted_tours - b.weighted_tours).abs() < 1e-9);
        }
        assert_eq!(m.signal(&mut std::iter::empty()), FriendSignal::default());
    }

    #[test]
    fn the_default_friend_model_changes_nothing() {
        // With count_power 1 and per_friend 0 a signal gives the forecast of the
        // person's own count, so configs without `friends:` keep their meaning.
        let r = LogisticRanker::new(&BundlingConfig::default());
        let plain = feats(3, 1, 40_000.0, 600.0);
        let sig = r.friend_signal(&mut [2u32, 1, 1].into_iter());
        let with = Features {
            friends_today: sig.friends_today,
            weighted_tours: sig.weighted_tours,
            ..plain
        };
        assert_eq!(plain.tours_today, 4);
        assert!((r.expected_more(&plain) - r.expected_more(&with)).abs() < 1e-12);
    }

    #[test]
    fn a_burst_from_one_friend_forecasts_less_than_as_many_friends() {
        let mut cfg = BundlingConfig::default();
        cfg.friends.count_power = 0.2;
        let r = LogisticRanker::new(&cfg);
        let base = feats(1, 0, 40_000.0, 0.0);
        let at = |told: &[u32]| {
            let sig = r.friend_signal(&mut told.iter().copied());
            Features {
                tours_today: told.iter().sum(),
                friends_today: sig.friends_today,
                weighted_tours: sig.weighted_tours,
                ..base
            }
        };
        let burst = r.expected_more(&at(&[6]));
        let spread = r.expected_more(&at(&[1; 6]));
        assert!(burst < spread, "{burst} vs {spread}");
        // The score still never falls as time passes.
        let mut prev = f64::NEG_INFINITY;
        for s in (40_000..86_400).step_by(131) {
            let f = Features {
                second_of_day: s as f64,
                time_left: (86_400 - s) as f64,
                since_first: (s - 40_000) as f64,
                since_last: (s - 40_000) as f64,
                ..at(&[6, 1])
            };
            let z = r.score(&f);
            assert!(z >= prev - 1e-9);
            prev = z;
        }
    }

    #[test]
    fn score_is_score_with_the_ranker_s_own_forecast() {
        let mut cfg = BundlingConfig::default();
        cfg.weights.last_send = -1.0;
        cfg.friends.session = 0.4;
        let r = LogisticRanker::new(&cfg);
        // (tours pending, sends made, second of day, busiest friend's count)
        for (tours, sent, sod, busiest) in [
            (1, 0, 3_600.0, 0),
            (3, 1, 40_000.0, 2),
            (2, 3, 70_000.0, 5),
            (9, 3, 86_000.0, 1),
        ] {
            let f = Features {
                busiest_told: busiest,
                ..feats(tours, sent, sod, 900.0)
            };
            assert_eq!(r.score(&f), r.score_with(&f, r.expected_more(&f)));
            // More tours to come never makes a bundle readier.
            assert!(r.score_with(&f, 0.5) >= r.score_with(&f, 5.0));
        }
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
        let err = BundlingConfig::from_yaml(
            "max_per_day: 0\nfriends: {count_power: 1.5, per_friend: -1}\n",
        )
        .expect_err("invalid");
        assert!(err.contains("max_per_day"), "{err}");
        assert!(err.contains("friends.count_power"), "{err}");
        assert!(err.contains("friends.per_friend"), "{err}");
        assert!(BundlingConfig::from_yaml("friends: {sessions: 1}").is_err());
        let good = BundlingConfig::default().to_yaml();
        assert_eq!(
            BundlingConfig::from_yaml(&good),
            Ok(BundlingConfig::default())
        );
    }
}
