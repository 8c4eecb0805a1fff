//! An experimental ranker that plans "send now or wait" by dynamic programming over an
//! arrival model instead of a hand-weighted score. It is **not** the shipped ranker:
//! on the sample day it scores worse than [`super::ranker::LogisticRanker`] (see
//! "Results"). It is kept, tested, for further work on the arrival model, which is
//! where it falls short.
//!
//! # The model
//!
//! A person's tours arrive as a Poisson process whose daily rate is unknown and follows
//! the day's hour profile (density `f`, cumulative share `F`). The prior on the rate is
//! either Gamma(`prior.shape`, `prior.rate`) or, when `planner.rates`/`weights` are
//! given, a mixture of point masses (fit it by EM on the zero-truncated tours-per-day
//! counts of a file). After `m` tours by the time a share `F(t)` of the day's traffic
//! has passed, the posterior is proportional to `prior(r) · r^m · e^(−r F(t))`, so the
//! tours of the next slot `[t, t + Δ]` are a posterior mixture of Poissons with mean
//! `r · (F(t + Δ) − F(t))` (negative-binomial under the Gamma prior). Sessions: the mean
//! is further multiplied by `quiet + (1 − quiet) · e^(−τ/T)`, τ the time since the
//! newest tour in buckets of [`BURST_EDGES_MIN`] (ageing between buckets at random at
//! the rate their width gives).
//!
//! # The plan
//!
//! The state is (slot of the day `s`, sends left `k`, time-since-newest-tour bucket
//! `b`, pending tours `n`, tours today `m`). Waiting a slot costs `n · Δ` (every pending
//! tour's delay grows) and lets the slot's arrivals join the bundle; sending costs
//! nothing now but spends one of the `k` sends. At the day's end a non-empty bundle
//! goes at the next 00:00:00, charged `carry_penalty` seconds (it spends one of
//! tomorrow's sends). `V(s, k, b, n, m)` is filled backwards once at start-up, keeping
//! two slot layers; only the policy is stored: for each `(s, k, b, m)` the fewest
//! pending tours `n*` at which sending is at least as good as waiting (sending is
//! monotone in `n`, a test checks it). One byte each: 1.3 MB at the default 120-s
//! slots and counts up to 64, built in about half a second (release build, 16-point
//! mixture).
//!
//! # Readiness
//!
//! A pending bundle is ready at an instant when, at the start of some slot since its
//! newest tour (or at that tour itself), `n ≥ n*`. Taking the best slot since the newest
//! tour keeps readiness from falling while nothing arrives (the plan may want to send at
//! 14:00 and wait at 15:00 when more traffic is expected then; a bundle it meant to send
//! stays ready), and the ready instant is a slot start read straight off the table by
//! [`Ranker::seconds_until_ready`], without a search.
//!
//! # Results (`examples/bundle_lab.rs`, ratio to the offline optimum)
//!
//! On `tours_2017-08-01.csv`, mixture prior fitted on half of the people, 120-s
//! slots: 2.96 on the whole day (the logistic ranker: 2.28), 2.17 without the one
//! 422-receiver friend (logistic 2.26); `quiet = 0.375, burst_minutes = 30` (direct
//! search on half of the people) 2.73 / 2.45. It is near-perfect for people with
//! one to three tours a day, which is what `weights.first_of_day` took from it, and
//! poor for heavy days: the day-long Poisson model spreads a burst's expected tours
//! over the evening, so it keeps the last send for tours that do not come.

use super::ranker::{BundlingConfig, Features, Ranker};
use super::DAY;
use serde::{Deserialize, Serialize};

/// The planner's settings (`planner:` in `config/bundling.yml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerConfig {
    /// Daily tour rates (tours a day) of the mixture prior.
    pub rates: Vec<f64>,
    /// Weight of each rate in the mixture prior (any scale). Empty: Gamma `prior`.
    pub weights: Vec<f64>,
    /// Length of a decision slot in seconds; must divide 86,400.
    pub slot_seconds: u32,
    /// Pending tours and tours today are counted up to this (more count as this many).
    pub max_count: u32,
    /// Seconds of delay charged for a bundle carried to the next 00:00:00 (it spends
    /// one of tomorrow's sends).
    pub carry_penalty: f64,
    /// Sessions: the expected rate is multiplied by `quiet + (1 − quiet) · e^(−τ/T)`,
    /// τ the time since the newest tour and T `burst_minutes`: a long quiet spell after
    /// a tour says the person's session is over (`quiet = 1`: it says nothing).
    pub quiet: f64,
    pub burst_minutes: f64,
    /// σ (hours) of the circular Gaussian smoothing of `hour_profile`.
    pub profile_smoothing: f64,
    /// Share of the day's traffic spread evenly over the hours, the rest following
    /// `hour_profile`: keeps quiet hours from being planned as if nothing could come.
    pub profile_floor: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            rates: Vec::new(),
            weights: Vec::new(),
            slot_seconds: 120,
            max_count: 64,
            carry_penalty: 600.0,
            burst_minutes: 30.0,
            quiet: 1.0,
            profile_smoothing: 0.0,
            profile_floor: 0.0,
        }
    }
}

impl PlannerConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.slot_seconds == 0
            || self.slot_seconds > 3600
            || DAY % i64::from(self.slot_seconds) != 0
        {
            errs.push("planner.slot_seconds must divide 86400 and be 1..=3600".into());
        }
        if !(1..=250).contains(&self.max_count) {
            errs.push("planner.max_count must be 1..=250".into());
        }
        if !(self.carry_penalty.is_finite() && self.carry_penalty >= 0.0) {
            errs.push("planner.carry_penalty must be a number ≥ 0".into());
        }
        if !(self.profile_floor.is_finite() && (0.0..=1.0).contains(&self.profile_floor)) {
            errs.push("planner.profile_floor must lie in 0..=1".into());
        }
        if !(self.profile_smoothing.is_finite() && self.profile_smoothing >= 0.0) {
            errs.push("planner.profile_smoothing must be a number ≥ 0".into());
        }
        if !(self.quiet.is_finite() && (0.0..=1.0).contains(&self.quiet)) {
            errs.push("planner.quiet must lie in 0..=1".into());
        }
        if !(self.burst_minutes.is_finite() && self.burst_minutes > 0.0) {
            errs.push("planner.burst_minutes must be > 0".into());
        }
        if self.rates.len() != self.weights.len()
            || self.rates.iter().any(|r| !(r.is_finite() && *r > 0.0))
            || self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || (!self.weights.is_empty() && self.weights.iter().sum::<f64>() <= 0.0)
        {
            errs.push(
                "planner.rates and planner.weights must pair up: rates > 0, weights ≥ 0, not all 0"
                    .into(),
            );
        }
        errs
    }
}

/// "Never send" in the policy table.
const NEVER: u8 = u8::MAX;

/// The planned policy: `n*` per (slot, sends left, tours today).
#[derive(Debug, Clone)]
pub struct PlanTable {
    slot_secs: i64,
    slots: usize,
    /// Sends per day planned for (k runs 1..=max_per_day).
    max_k: usize,
    /// Counts run 0..=max_count.
    max_count: usize,
    /// `thr[(s * max_k + k - 1) * (max_count + 1) + m]`: fewest pending tours at which
    /// sending is at least as good as waiting; [`NEVER`] when none is.
    thr: Vec<u8>,
}

/// Cumulative share of the day's traffic at each slot boundary (`slots + 1` entries),
/// piecewise linear within the hours.
fn cumulative(cfg: &BundlingConfig, slots: usize) -> Vec<f64> {
    let total: f64 = cfg
        .hour_profile
        .iter()
        .take(24)
        .filter(|x| x.is_finite() && **x >= 0.0)
        .sum();
    let floor = cfg.planner.profile_floor.clamp(0.0, 1.0);
    let raw: Vec<f64> = (0..24)
        .map(|i| match cfg.hour_profile.get(i) {
            Some(x) if total > 0.0 && x.is_finite() && *x >= 0.0 => x / total,
            _ => 1.0 / 24.0,
        })
        .collect();
    // Circular Gaussian smoothing over the hours (σ in hours; 0: none).
    let sigma = if cfg.planner.profile_smoothing.is_finite() {
        cfg.planner.profile_smoothing.max(0.0)
    } else {
        0.0
    };
    let smooth: Vec<f64> = if sigma < 1e-3 {
        raw.clone()
    } else {
        let kern: Vec<f64> = (0..24)
            .map(|d| {
                let d = (d as f64).min(24.0 - d as f64);
                (-0.5 * (d / sigma).powi(2)).exp()
            })
            .collect();
        let kz: f64 = kern.iter().sum();
        (0..24)
            .map(|i| {
                (0..24)
                    .map(|j| raw[j] * kern[(i + 24 - j) % 24])
                    .sum::<f64>()
                    / kz
            })
            .collect()
    };
    let share: Vec<f64> = smooth
        .iter()
        .map(|p| (1.0 - floor) * p + floor / 24.0)
        .collect();
    let mut cum_h = [0.0; 25];
    for i in 0..24 {
        cum_h[i + 1] = cum_h[i] + share[i];
    }
    (0..=slots)
        .map(|s| {
            let h = s as f64 * 24.0 / slots as f64;
            let i = (h as usize).min(23);
            (cum_h[i] + share[i] * (h - i as f64)).min(1.0)
        })
        .collect()
}

/// Most arrivals per slot the plan tells apart (the tail is lumped into the last).
const MAX_ARRIVALS: usize = 6;

/// Lower edges (minutes) of the buckets of time since the newest tour; the last bucket
/// is open-ended.
pub const BURST_EDGES_MIN: [f64; 7] = [0.0, 5.0, 15.0, 30.0, 60.0, 120.0, 240.0];
const BUCKETS: usize = BURST_EDGES_MIN.len();

/// The bucket of a time since the newest tour.
fn bucket_of(since_last_secs: f64) -> usize {
    let min = since_last_secs.max(0.0) / 60.0;
    BURST_EDGES_MIN.iter().rposition(|&e| min >= e).unwrap_or(0)
}

/// Arrivals in one slot: probabilities of 0..MAX_ARRIVALS (the last: that many or more).
type Pmf = [f64; MAX_ARRIVALS + 1];

/// Poisson probabilities of 0..MAX_ARRIVALS arrivals with mean `mu`, added to `out`
/// with weight `wgt`.
fn add_poisson(out: &mut Pmf, mu: f64, wgt: f64) {
    let mut pj = (-mu).exp();
    let mut left = 1.0f64;
    for (j, slot) in out.iter_mut().enumerate() {
        if j == MAX_ARRIVALS {
            *slot += wgt * left.max(0.0);
        } else {
            *slot += wgt * pj;
            left -= pj;
            pj *= mu / (j as f64 + 1.0);
        }
    }
}

/// Negative-binomial probabilities (Gamma(r, b) rate, exposure e), the single-Gamma
/// prior's predictive.
fn negative_binomial(r: f64, b: f64, e: f64) -> Pmf {
    let mut out = [0.0; MAX_ARRIVALS + 1];
    let q = e / (b + e);
    let mut pj = (b / (b + e)).powf(r);
    let mut left = 1.0f64;
    for (j, slot) in out.iter_mut().enumerate() {
        if j == MAX_ARRIVALS {
            *slot = left.max(0.0);
        } else {
            *slot = pj;
            left -= pj;
            pj *= (r + j as f64) / (j as f64 + 1.0) * q;
        }
    }
    out
}

impl PlanTable {
    /// Fills the table backwards over the day (see the module docs).
    pub fn build(cfg: &BundlingConfig) -> Self {
        let p = &cfg.planner;
        let slot_secs = i64::from(p.slot_seconds.clamp(1, 3600));
        let slot_secs = if DAY % slot_secs == 0 { slot_secs } else { 60 };
        let slots = (DAY / slot_secs) as usize;
        let max_k = cfg.max_per_day.clamp(1, 64) as usize;
        let mc = p.max_count.clamp(1, 250) as usize;
        let w = mc + 1;
        let cum = cumulative(cfg, slots);
        let shape = if cfg.prior.shape > 0.0 {
            cfg.prior.shape
        } else {
            0.3
        };
        let rate = if cfg.prior.rate > 0.0 {
            cfg.prior.rate
        } else {
            0.1
        };
        let dt = slot_secs as f64;
        let carry = if p.carry_penalty.is_finite() {
            p.carry_penalty.max(0.0)
        } else {
            0.0
        };
        // Mixture prior: (rate, ln weight) of each component with a positive weight.
        let mix: Vec<(f64, f64)> = p
            .rates
            .iter()
            .zip(&p.weights)
            .filter(|(r, w)| r.is_finite() && **r > 0.0 && w.is_finite() && **w > 0.0)
            .map(|(&r, &w)| (r, w.ln()))
            .collect();
        let tau = if p.burst_minutes.is_finite() && p.burst_minutes > 0.0 {
            p.burst_minutes
        } else {
            30.0
        };
        let quiet = if p.quiet.is_finite() {
            p.quiet.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let mid: [f64; BUCKETS] = std::array::from_fn(|b| {
            if b + 1 == BUCKETS {
                1.5 * BURST_EDGES_MIN[b]
            } else {
                (BURST_EDGES_MIN[b] + BURST_EDGES_MIN[b + 1]) / 2.0
            }
        });
        let mult: [f64; BUCKETS] = std::array::from_fn(|b| {
            let fade = (-mid[b] / tau).exp();
            quiet + (1.0 - quiet) * fade
        });
        // Chance per slot of ageing into the next bucket (its width in slots⁻¹).
        let age: [f64; BUCKETS] = std::array::from_fn(|b| {
            if b + 1 == BUCKETS {
                0.0
            } else {
                (dt / ((BURST_EDGES_MIN[b + 1] - BURST_EDGES_MIN[b]) * 60.0)).min(1.0)
            }
        });
        // V[k][b][n][m] at the next slot boundary, k in 0..=max_k, n ≤ m.
        let layer = (max_k + 1) * BUCKETS * w * w;
        let idx = |k: usize, b: usize, n: usize, m: usize| ((k * BUCKETS + b) * w + n) * w + m;
        let mut next = vec![0.0f64; layer];
        for k in 0..=max_k {
            for b in 0..BUCKETS {
                for m in 0..w {
                    for n in 1..=m {
                        next[idx(k, b, n, m)] = carry;
                    }
                }
            }
        }
        let mut cur = vec![0.0f64; layer];
        let mut thr = vec![NEVER; slots * max_k * BUCKETS * w];
        // Arrival pmf per (bucket, tours today) for the current slot.
        let mut pmf = vec![[0.0f64; MAX_ARRIVALS + 1]; BUCKETS * w];
        let mut post = vec![0.0f64; mix.len()];
        for s in (0..slots).rev() {
            let f0 = cum[s];
            let e = (cum[s + 1] - cum[s]).max(0.0);
            for m in 0..w {
                if mix.is_empty() {
                    for b in 0..BUCKETS {
                        pmf[b * w + m] =
                            negative_binomial(shape + m as f64, rate + f0, e * mult[b]);
                    }
                    continue;
                }
                // Posterior weights ∝ π r^m e^(−r F), then a mixture of Poissons.
                let mut top = f64::NEG_INFINITY;
                for (x, &(r, lw)) in post.iter_mut().zip(&mix) {
                    *x = lw + m as f64 * r.ln() - r * f0;
                    top = top.max(*x);
                }
                let mut z = 0.0;
                for x in post.iter_mut() {
                    *x = (*x - top).exp();
                    z += *x;
                }
                for b in 0..BUCKETS {
                    let pm = &mut pmf[b * w + m];
                    *pm = [0.0; MAX_ARRIVALS + 1];
                    for (&wgt, &(r, _)) in post.iter().zip(&mix) {
                        add_poisson(pm, r * e * mult[b], wgt / z);
                    }
                }
            }
            for k in 0..=max_k {
                for b in 0..BUCKETS {
                    let (stay, go) = (1.0 - age[b], age[b]);
                    let b2 = (b + 1).min(BUCKETS - 1);
                    for m in 0..w {
                        let pm = &pmf[b * w + m];
                        // Expected arrivals' own delay within the slot (half a slot
                        // each): the same whatever we do, kept so values are delays.
                        let mean: f64 = pm.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
                        let own = mean * dt / 2.0;
                        for n in 0..=m {
                            let quiet = stay * next[idx(k, b, n, m)] + go * next[idx(k, b2, n, m)];
                            let mut wait = n as f64 * dt + own + pm[0] * quiet;
                            for (j, &pj) in pm.iter().enumerate().skip(1) {
                                wait += pj * next[idx(k, 0, (n + j).min(mc), (m + j).min(mc))];
                            }
                            cur[idx(k, b, n, m)] = wait;
                        }
                        if k == 0 {
                            continue;
                        }
                        // Sending now leaves (k − 1, b, 0, m), already computed.
                        let send = cur[idx(k - 1, b, 0, m)];
                        let row = ((s * max_k + k - 1) * BUCKETS + b) * w + m;
                        for n in 1..=m {
                            let c = &mut cur[idx(k, b, n, m)];
                            if send <= *c {
                                *c = send;
                                if thr[row] == NEVER {
                                    thr[row] = n as u8;
                                }
                            }
                        }
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Self {
            slot_secs,
            slots,
            max_k,
            max_count: mc,
            thr,
        }
    }

    /// Bytes held by the policy.
    pub fn bytes(&self) -> usize {
        self.thr.len()
    }

    /// The slot an instant of the day falls in.
    pub fn slot_of(&self, second_of_day: f64) -> usize {
        ((second_of_day.max(0.0) as i64 / self.slot_secs) as usize).min(self.slots - 1)
    }

    /// Fewest pending tours at which the plan sends in slot `s` with `k` sends left,
    /// `m` tours today and `since_last` seconds since the newest tour (`None`: it never
    /// does).
    pub fn threshold(&self, s: usize, k: u32, m: u32, since_last: f64) -> Option<u32> {
        let k = (k as usize).clamp(1, self.max_k);
        let m = (m as usize).min(self.max_count);
        let b = bucket_of(since_last);
        let v = self.thr[((s.min(self.slots - 1) * self.max_k + k - 1) * BUCKETS + b)
            * (self.max_count + 1)
            + m];
        (v != NEVER).then_some(u32::from(v))
    }

    /// By how many tours `n` pending tours exceed the plan's threshold in slot `s`
    /// (≥ 0: send).
    fn excess(&self, s: usize, k: u32, n: u32, m: u32, since_last: f64) -> f64 {
        // The pending tours are among today's (a bundle carried over from yesterday
        // is not, until its send).
        let n = n.min(self.max_count as u32);
        match self.threshold(s, k, m.max(n), since_last) {
            Some(t) => f64::from(n) - f64::from(t),
            None => -(self.max_count as f64) - 1.0,
        }
    }
}

/// The shipped ranker: the plan of [`PlanTable`] behind the [`Ranker`] trait.
#[derive(Debug, Clone)]
pub struct PlannerRanker {
    table: PlanTable,
    max_per_day: u32,
}

impl PlannerRanker {
    /// Builds the plan; `cfg` should be validated (out-of-range values fall back to
    /// safe ones rather than being trusted).
    pub fn new(cfg: &BundlingConfig) -> Self {
        Self {
            table: PlanTable::build(cfg),
            max_per_day: cfg.max_per_day.max(1),
        }
    }

    pub fn table(&self) -> &PlanTable {
        &self.table
    }

    /// How far the pending tours are past the plan's threshold, best slot since the
    /// newest tour: ≥ 0 exactly when ready.
    fn excess(&self, f: &Features) -> f64 {
        if f.sends_left == 0 || f.tours == 0 {
            return -1.0;
        }
        let t = &self.table;
        let now = t.slot_of(f.second_of_day);
        let last = f.second_of_day - f.since_last;
        let from = t.slot_of(last.max(0.0)).min(now);
        let mut best = f64::NEG_INFINITY;
        for s in from..=now {
            // Time since the newest tour as of the slot's start (or the tour itself,
            // in its own slot): one decision per slot, so the instant is a slot start.
            let at = ((s as i64 * t.slot_secs) as f64).max(last);
            best = best.max(t.excess(s, f.sends_left, f.tours, f.tours_today, at - last));
            if best >= 0.0 {
                break;
            }
        }
        best
    }
}

impl Ranker for PlannerRanker {
    /// σ(2 · (excess + ½)): ½ exactly at the plan's threshold.
    fn readiness(&self, f: &Features) -> f64 {
        1.0 / (1.0 + (-2.0 * (self.excess(f) + 0.5)).exp())
    }
    fn threshold(&self) -> f64 {
        0.5
    }
    fn max_per_day(&self) -> u32 {
        self.max_per_day
    }
    fn is_ready(&self, f: &Features) -> bool {
        self.excess(f) >= 0.0
    }
    fn margin(&self, f: &Features) -> f64 {
        self.excess(f)
    }
    fn seconds_until_ready(&self, f: &Features) -> Option<f64> {
        if self.is_ready(f) {
            return Some(0.0);
        }
        if f.sends_left == 0 || f.tours == 0 {
            return Some(f64::INFINITY);
        }
        let t = &self.table;
        let now = t.slot_of(f.second_of_day);
        let last = f.second_of_day - f.since_last;
        Some(
            (now + 1..t.slots)
                .map(|s| (s as i64 * t.slot_secs) as f64)
                .find(|&at| {
                    t.excess(
                        t.slot_of(at),
                        f.sends_left,
                        f.tours,
                        f.tours_today,
                        at - last,
                    ) >= 0.0
                })
                .map_or(f64::INFINITY, |at| at - f.second_of_day),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{next_day_start, BundleState};
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    const T0: i64 = 1_501_545_600; // 2017-08-01 00:00:00 UTC

    /// A small plan: hour slots, two sends, counts up to 5, no session effect (so the
    /// time since the newest tour does not matter), the single-Gamma prior.
    fn small(max_per_day: u32) -> BundlingConfig {
        let mut cfg = BundlingConfig {
            max_per_day,
            ..BundlingConfig::default()
        };
        cfg.planner.slot_seconds = 3600;
        cfg.planner.max_count = 5;
        cfg.planner.quiet = 1.0;
        cfg.planner.carry_penalty = 900.0;
        cfg
    }

    /// The same decision problem solved top-down from its definition, memoised.
    fn brute(
        cfg: &BundlingConfig,
        cum: &[f64],
        s: usize,
        k: usize,
        n: usize,
        m: usize,
        memo: &mut HashMap<(usize, usize, usize, usize), f64>,
    ) -> f64 {
        let slots = cum.len() - 1;
        let mc = cfg.planner.max_count as usize;
        if s == slots {
            return if n > 0 {
                cfg.planner.carry_penalty
            } else {
                0.0
            };
        }
        if let Some(&v) = memo.get(&(s, k, n, m)) {
            return v;
        }
        let dt = cfg.planner.slot_seconds as f64;
        let pm = negative_binomial(
            cfg.prior.shape + m as f64,
            cfg.prior.rate + cum[s],
            cum[s + 1] - cum[s],
        );
        let mut wait = n as f64 * dt;
        for (j, &p) in pm.iter().enumerate() {
            wait += p
                * (j as f64 * dt / 2.0
                    + brute(cfg, cum, s + 1, k, (n + j).min(mc), (m + j).min(mc), memo));
        }
        let v = if k > 0 && n > 0 {
            wait.min(brute(cfg, cum, s, k - 1, 0, m, memo))
        } else {
            wait
        };
        memo.insert((s, k, n, m), v);
        v
    }

    #[test]
    fn table_matches_a_top_down_solution_of_the_same_problem() {
        for cap in [1, 2] {
            let cfg = small(cap);
            let table = PlanTable::build(&cfg);
            let cum = cumulative(&cfg, table.slots);
            let mut memo = HashMap::new();
            let mut sends = 0;
            for s in 0..table.slots {
                for k in 1..=cap as usize {
                    for m in 1..=5usize {
                        let send = brute(&cfg, &cum, s, k - 1, 0, m, &mut memo);
                        // Fewest pending tours at which sending is at least as good.
                        let expect = (1..=m).find(|&n| {
                            let mut wait = memo.clone();
                            let v = brute(&cfg, &cum, s, k, n, m, &mut wait);
                            send <= v + 1e-9
                        });
                        let got = table.threshold(s, k as u32, m as u32, 0.0);
                        assert_eq!(
                            got,
                            expect.map(|n| n as u32),
                            "cap {cap} slot {s} k {k} m {m}"
                        );
                        sends += usize::from(got.is_some());
                    }
                }
            }
            // Not a degenerate plan: it sends in some states and waits in others.
            assert!(sends > 0 && sends < table.slots * cap as usize * 5);
        }
    }

    #[test]
    fn sending_is_monotone_in_pending_tours() {
        // Once sending beats waiting for n pending tours, it does for more as well:
        // the threshold representation loses nothing.
        let mut cfg = small(4);
        cfg.planner.slot_seconds = 1800;
        cfg.planner.max_count = 12;
        cfg.planner.quiet = 0.4;
        let table = PlanTable::build(&cfg);
        let cum = cumulative(&cfg, table.slots);
        let _ = cum;
        for s in 0..table.slots {
            for k in 1..=4 {
                for m in 1..=12 {
                    for since in [0.0, 1200.0, 20_000.0] {
                        let Some(t) = table.threshold(s, k, m, since) else {
                            continue;
                        };
                        for n in t..=m {
                            assert!(table.excess(s, k, n, m, since) >= 0.0);
                        }
                    }
                }
            }
        }
    }

    fn mixture() -> BundlingConfig {
        let mut cfg = BundlingConfig::default();
        cfg.planner.slot_seconds = 300;
        cfg.planner.max_count = 24;
        cfg.planner.quiet = 0.4;
        cfg.planner.rates = vec![0.2, 1.0, 5.0, 25.0];
        cfg.planner.weights = vec![0.7, 0.2, 0.08, 0.02];
        cfg
    }

    #[test]
    fn ready_instant_matches_a_scan_and_readiness_never_falls() {
        let r = PlannerRanker::new(&mixture());
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for case in 0..60 {
            let mut st = BundleState::default();
            let mut t = T0 + rng.random_range(0..22 * 3600);
            for _ in 0..rng.random_range(1..10) {
                st.on_tour(t, t, "A", &r);
                if rng.random_range(0..3) == 0 {
                    let _ = st.take(t, 4);
                }
                t += rng.random_range(0..2400);
            }
            if st.pending().is_none() {
                st.on_tour(t, t, "A", &r);
            }
            let p = st.pending().expect("pending").clone();
            let eod = next_day_start(t);
            if st.sent_on(t) >= 4 {
                // Capped: the bundle waits for the next day.
                assert_eq!(st.ready_at(t, &r), Some(eod));
                continue;
            }
            let ready = |s: i64| r.is_ready(&Features::observe(&st, &p, s, 4));
            let scan = (t..eod).find(|&s| ready(s)).unwrap_or(eod);
            assert_eq!(
                st.ready_at(t, &r),
                Some(scan),
                "case {case}: t {} state {st:?} f {:?}",
                t - T0,
                Features::observe(&st, &p, t, 4)
            );
            // Once ready, ready until the day ends (nothing arrives meanwhile).
            assert!((scan..eod).step_by(97).all(ready), "case {case}");
            // The score agrees with the decision.
            let f = Features::observe(&st, &p, scan.min(eod - 1), 4);
            assert_eq!(r.readiness(&f) >= r.threshold(), r.is_ready(&f));
        }
    }

    #[test]
    fn first_tours_of_light_days_go_at_once_and_bursts_wait() {
        let r = PlannerRanker::new(&mixture());
        let noon = T0 + 12 * 3600;
        let mut st = BundleState::default();
        assert_eq!(
            st.on_tour(noon, noon, "A", &r),
            crate::bundle::Schedule::At(noon)
        );
        // Someone with twenty tours by noon and one send left holds a single tour.
        let mut heavy = BundleState::from_parts(None, crate::bundle::day_of(noon), 3, 20);
        let crate::bundle::Schedule::At(at) = heavy.on_tour(noon, noon, "B", &r) else {
            panic!("pending")
        };
        assert!(at > noon, "a heavy day's last send waits");
    }

    #[test]
    fn planner_config_is_validated() {
        let mut cfg = BundlingConfig::default();
        cfg.planner.slot_seconds = 7;
        cfg.planner.max_count = 0;
        cfg.planner.quiet = 2.0;
        cfg.planner.rates = vec![1.0];
        cfg.planner.weights = vec![-1.0, 2.0];
        let errs = cfg.validate().expect_err("invalid");
        for key in ["slot_seconds", "max_count", "quiet", "weights"] {
            assert!(errs.iter().any(|e| e.contains(key)), "{key}: {errs:?}");
        }
        assert!(BundlingConfig::default().validate().is_ok());
    }

    #[test]
    fn table_is_small_and_quick_to_build() {
        let t0 = std::time::Instant::now();
        let r = PlannerRanker::new(&mixture());
        assert!(r.table().bytes() < 4 << 20);
        // Generous: debug builds are slow; release builds take a fraction of this.
        assert!(t0.elapsed().as_secs_f64() < 30.0);
    }
}
