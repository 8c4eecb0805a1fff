//! The arrival model's own forecast (`bundle_lab posterior=1`): the further tours a
//! person can expect today, given what they have been told so far, computed from the
//! model that draws the synthetic days ([`crate::synth`]).
//!
//! The rule's forecast (a Gamma–Poisson rate with the hour profile, plus the busiest
//! friend's session) approximates this one. On a synthetic day this is the posterior
//! mean under the very process that drew the day, so no forecast from the same
//! evidence is closer on average; what the rule scores with it bounds what a better
//! forecast of today's tours could buy. The perfect forecast ([`crate::oracle`]) is the
//! other bound. `posterior=2` also tells it each synthetic person's weight (how many
//! friends they have), which a long history could at best learn.
//!
//! Further tours are those of the friends already seen today plus those of friends
//! not seen yet:
//!
//! * a friend seen `k` times, last `e` seconds ago, tours `n` times in all with
//!   probability ∝ P(n) for `n = k` and P(n)·P(gap > e) for `n > k`; the rest of
//!   their tours follow log-normal gaps, the first of them longer than `e`, and count
//!   while they fall within the day;
//! * each of the model's friends not seen yet includes the person with probability
//!   π(w) (counted over audiences drawn as the model draws them) and has not
//!   started by now with probability S(t) (the hour profile), so is still to come
//!   with probability π S / (1 − π (1 − S)); a friend who starts after `t` brings
//!   A(t) tours on average. Without the weight, `w` has the posterior of the
//!   receivers' weights given the `s` friends seen by `t` (binomial in the model's
//!   friends with chance π (1 − S)).
//!
//! The model's day has no shift and its volume is the fitted one: on shifted and
//! scaled days the forecast is as wrong as the model, like the rule's.

use crate::forecast::{per_person_ratio, Forecast};
use crate::oracle::instant_of;
use crate::replay::Dataset;
use crate::synth::ArrivalModel;
use herald_core::bundle::ranker::LogisticRanker;
use herald_core::bundle::{day_of, Features, Ranker, UnixSecs, DAY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Resolution of the tables, in seconds.
const STEP: i64 = 300;
const BUCKETS: usize = (DAY / STEP) as usize + 1;
/// Gap paths per table cell (stratified on the first gap).
const PATHS: usize = 256;
/// Sampled gaps behind the gap distribution, and friend days behind S and A.
const GAP_POOL: usize = 16_384;
const DAY_POOL: usize = 60_000;
/// Audiences drawn to count how often each weight is included.
const AUDIENCES: usize = 200_000;

/// The model's forecast tables (see the module docs).
pub struct Posterior {
    /// The model's touring friends in a day.
    friends: f64,
    /// P(a friend tours n times), n = 0..=max.
    tours_pmf: Vec<f64>,
    /// Gaps between a friend's tours, sorted (seconds).
    gaps: Vec<f64>,
    /// Expected tours among a seen friend's next `m` that fall within the time left,
    /// by (elapsed bucket, time-left bucket, m): [`Self::within`].
    within: Vec<f64>,
    max_more: usize,
    /// By second-of-day bucket: the chance a friend's first tour is still to come, and
    /// the tours such a friend then brings.
    not_started: Vec<f64>,
    tours_if_later: Vec<f64>,
    /// Drawn friend days as seconds of the day, by first tour (for sampling futures).
    friend_days: Vec<Vec<i64>>,
    /// Distinct receiver weights: (weight, receivers with it, inclusion chance π).
    weights: Vec<(u32, f64, f64)>,
    receiver_weight: Vec<u32>,
}

impl Posterior {
    pub fn new(model: &ArrivalModel) -> Self {
        let mut rng = StdRng::seed_from_u64(7);
        let max_n = model.tours_per_friend.iter().copied().max().unwrap_or(1) as usize;
        let mut tours_pmf = vec![0.0; max_n + 1];
        for &n in &model.tours_per_friend {
            tours_pmf[n as usize] += 1.0 / model.tours_per_friend.len() as f64;
        }
        let mut gaps: Vec<f64> = (0..GAP_POOL).map(|_| model.gap(&mut rng) as f64).collect();
        gaps.sort_by(f64::total_cmp);
        let max_more = max_n.saturating_sub(1).max(1);
        let within = within_table(&gaps, max_more, &mut rng);
        let friend_days = friend_days(model, &mut rng);
        let (not_started, tours_if_later) = later_friends(&friend_days);
        Self {
            friends: model.tours_per_friend.len() as f64,
            tours_pmf,
            gaps,
            within,
            max_more,
            not_started,
            tours_if_later,
            friend_days,
            weights: inclusion(model, &mut rng),
            receiver_weight: model.receiver_weight.clone(),
        }
    }

    /// The weight of a synthetic person (`S000123` is receiver 123), if `user` is one.
    pub fn weight_of(&self, user: &str) -> Option<u32> {
        let r: usize = user.strip_prefix('S')?.parse().ok()?;
        self.receiver_weight.get(r).copied()
    }

    /// Expected tours after `now` today from a friend seen `k` times, last at `last`.
    fn seen_friend_more(&self, k: usize, last: UnixSecs, now: UnixSecs) -> f64 {
        let elapsed = (now - last).max(0);
        let left = (day_of(now) + 1) * DAY - now;
        let (_, p_longer) = self.gap_longer_than(elapsed);
        let (mut norm, mut more) = (0.0, 0.0);
        for (n, p) in self.tours_in_all(k, p_longer) {
            norm += p;
            if n > k {
                more += p * self.within(elapsed, left, n - k);
            }
        }
        if norm > 0.0 {
            more / norm
        } else {
            0.0
        }
    }

    /// The index of the first pooled gap longer than `elapsed` seconds, and the chance
    /// of a gap that long.
    fn gap_longer_than(&self, elapsed: i64) -> (usize, f64) {
        let first = self.gaps.partition_point(|&g| g <= elapsed as f64);
        let p = (self.gaps.len() - first) as f64 / self.gaps.len() as f64;
        (first, p)
    }

    /// How many tours a friend seen `k` times makes in all: (n, unnormalised chance)
    /// for n ≥ k, when a gap as long as the one since their last tour has chance
    /// `p_longer` (n > k needs it, n = k does not).
    fn tours_in_all(
        &self,
        k: usize,
        p_longer: f64,
    ) -> impl Iterator<Item = (usize, f64)> + Clone + '_ {
        (k..self.tours_pmf.len()).map(move |n| {
            let p = self.tours_pmf[n];
            (n, if n == k { p } else { p * p_longer })
        })
    }

    /// Expected tours among `m` further ones that fall within `left` seconds, when
    /// `elapsed` seconds have passed since the last.
    fn within(&self, elapsed: i64, left: i64, m: usize) -> f64 {
        let e = bucket(elapsed);
        let l = bucket(left).min(BUCKETS - 1 - e);
        self.within[(e * BUCKETS + l) * (self.max_more + 1) + m.min(self.max_more)]
    }

    /// Expected tours after `second_of_day` from friends not seen yet, `seen` friends
    /// having been seen; `weight` when the person's is known.
    fn unseen_friends_more(&self, second_of_day: i64, seen: usize, weight: Option<u32>) -> f64 {
        let b = bucket(second_of_day);
        let per_friend: f64 = self
            .weight_posterior(second_of_day, seen, weight)
            .iter()
            .zip(&self.weights)
            .map(|(p, w)| p * self.still_to_come(w.2, b))
            .sum();
        self.unseen(seen) * per_friend * self.tours_if_later[b]
    }

    /// The model's friends not seen yet by a person who has seen `seen`.
    fn unseen(&self, seen: usize) -> f64 {
        (self.friends - seen as f64).max(0.0)
    }

    /// The chance that a friend not seen by bucket `b` is still to come, for a person
    /// each friend's audience includes with chance `pi`.
    fn still_to_come(&self, pi: f64, b: usize) -> f64 {
        let s = self.not_started[b];
        pi * s / (1.0 - pi * (1.0 - s)).max(1e-12)
    }

    /// The chance of each of [`Self::weights`] for a person who has seen `seen` friends
    /// by `second_of_day` (all on `weight` when it is known).
    fn weight_posterior(&self, second_of_day: i64, seen: usize, weight: Option<u32>) -> Vec<f64> {
        if let Some(w) = weight {
            if self.weights.iter().any(|x| x.0 == w) {
                return self
                    .weights
                    .iter()
                    .map(|x| f64::from(u8::from(x.0 == w)))
                    .collect();
            }
        }
        let started = 1.0 - self.not_started[bucket(second_of_day)];
        let unseen = self.unseen(seen);
        let log_post: Vec<f64> = self
            .weights
            .iter()
            .map(|&(_, count, pi)| {
                let q = (pi * started).clamp(1e-12, 1.0 - 1e-12);
                count.ln() + seen as f64 * q.ln() + unseen * (1.0 - q).ln()
            })
            .collect();
        let top = log_post.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = log_post.iter().map(|lp| (lp - top).exp()).collect();
        let total: f64 = p.iter().sum();
        p.into_iter().map(|x| x / total.max(1e-300)).collect()
    }

    /// Per friend seen today by `now` (`start` the day's start): (friend, tours, latest).
    pub fn seen_today(
        tours: &[(UnixSecs, u64)],
        start: UnixSecs,
        now: UnixSecs,
    ) -> Vec<(u64, usize, UnixSecs)> {
        let mut seen: Vec<(u64, usize, UnixSecs)> = Vec::new();
        for &(at, friend) in tours.iter().filter(|&&(at, _)| at >= start && at <= now) {
            match seen.iter_mut().find(|x| x.0 == friend) {
                Some(x) => (x.1, x.2) = (x.1 + 1, at),
                None => seen.push((friend, 1, at)),
            }
        }
        seen
    }

    /// One draw of the person's further tours today after `now` (sorted, into `out`),
    /// from the same posterior as [`Self::further`]'s mean.
    pub fn sample_further(
        &self,
        rng: &mut StdRng,
        seen: &[(u64, usize, UnixSecs)],
        now: UnixSecs,
        weight: Option<u32>,
        out: &mut Vec<UnixSecs>,
    ) {
        out.clear();
        let start = day_of(now) * DAY;
        let end = start + DAY;
        for &(_, k, last) in seen {
            let (first_longer, p_longer) = self.gap_longer_than(now - last);
            let n = pick(rng, self.tours_in_all(k, p_longer).map(|(_, p)| p)).map_or(k, |i| k + i);
            if n == k || first_longer == self.gaps.len() {
                continue;
            }
            let mut at = last + self.gaps[rng.random_range(first_longer..self.gaps.len())] as i64;
            for _ in k..n {
                if at >= end {
                    break;
                }
                out.push(at);
                at += self.gaps[rng.random_range(0..self.gaps.len())] as i64;
            }
        }
        let sod = now - start;
        let b = bucket(sod);
        let post = self.weight_posterior(sod, seen.len(), weight);
        if let Some(w) = pick(rng, post.iter().copied()) {
            let lambda = self.unseen(seen.len()) * self.still_to_come(self.weights[w].2, b);
            let later = self.friend_days.partition_point(|d| d[0] <= sod);
            if later < self.friend_days.len() {
                for _ in 0..poisson(rng, lambda) {
                    let day = &self.friend_days[rng.random_range(later..self.friend_days.len())];
                    out.extend(
                        day.iter()
                            .map(|&s| start + s)
                            .filter(|&t| t > now && t < end),
                    );
                }
            }
        }
        out.sort_unstable();
    }

    /// The person's further tours expected today at the instant `f` describes, from
    /// their tours `(time, friend)` sorted by time.
    pub fn further(&self, tours: &[(UnixSecs, u64)], f: &Features, weight: Option<u32>) -> f64 {
        match instant_of(tours.iter().map(|t| t.0), f) {
            Some(now) => self.further_at(tours, now, weight),
            None => 0.0,
        }
    }

    /// The person's further tours expected today after `now`, from their tours
    /// `(time, friend)` sorted by time.
    pub fn further_at(&self, tours: &[(UnixSecs, u64)], now: UnixSecs, weight: Option<u32>) -> f64 {
        let start = day_of(now) * DAY;
        let seen = Self::seen_today(tours, start, now);
        let from_seen: f64 = seen
            .iter()
            .map(|&(_, k, last)| self.seen_friend_more(k, last, now))
            .sum();
        from_seen + self.unseen_friends_more(now - start, seen.len(), weight)
    }
}

/// An index drawn with chance proportional to `weights` (`None` if they sum to 0).
fn pick(rng: &mut StdRng, weights: impl Iterator<Item = f64> + Clone) -> Option<usize> {
    let total: f64 = weights.clone().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random_range(0.0..total);
    let mut last = None;
    for (i, w) in weights.enumerate() {
        if w > 0.0 {
            last = Some(i);
            if x < w {
                return Some(i);
            }
            x -= w;
        }
    }
    last
}

/// A Poisson draw (Knuth's product of uniforms: `lambda` here is a few at most).
fn poisson(rng: &mut StdRng, lambda: f64) -> usize {
    let limit = (-lambda.min(50.0)).exp();
    let (mut k, mut p) = (0, rng.random_range(0.0..1.0));
    while p > limit {
        k += 1;
        p *= rng.random_range(0.0..1.0);
    }
    k
}

fn bucket(seconds: i64) -> usize {
    ((seconds.max(0) + STEP / 2) / STEP).min(BUCKETS as i64 - 1) as usize
}

/// [`Posterior::within`]'s table: for every elapsed and time-left bucket, `PATHS` gap
/// paths whose first gap is longer than the elapsed time (stratified over the sorted
/// pool's tail), counting for each `m` the first `m` tours that land in time.
fn within_table(gaps: &[f64], max_more: usize, rng: &mut StdRng) -> Vec<f64> {
    let width = max_more + 1;
    let rest: Vec<f64> = (0..PATHS * width)
        .map(|_| gaps[rng.random_range(0..gaps.len())])
        .collect();
    let mut table = vec![0.0; BUCKETS * BUCKETS * width];
    for e in 0..BUCKETS {
        let elapsed = (e as i64 * STEP) as f64;
        let tail = &gaps[gaps.partition_point(|&g| g <= elapsed)..];
        if tail.is_empty() {
            continue;
        }
        for l in 0..BUCKETS - e {
            let reach = elapsed + (l as i64 * STEP) as f64;
            let cell = &mut table[(e * BUCKETS + l) * width..][..width];
            for p in 0..PATHS {
                let mut at = tail[(p * tail.len() + tail.len() / 2) / PATHS];
                for m in 1..width {
                    if at < reach {
                        cell[m] += 1.0 / PATHS as f64;
                    }
                    at += rest[p * width + m];
                }
            }
            // Cumulative: tours among the first m.
            for m in 1..width {
                cell[m] += cell[m - 1];
            }
        }
    }
    table
}

/// `DAY_POOL` friend days drawn as the model draws them, as seconds of the day,
/// sorted by their first tour.
fn friend_days(model: &ArrivalModel, rng: &mut StdRng) -> Vec<Vec<i64>> {
    let mut days: Vec<Vec<i64>> = (0..DAY_POOL)
        .map(|_| {
            let n = model.tours_per_friend[rng.random_range(0..model.tours_per_friend.len())];
            let times = model.tour_times(rng, n);
            times.iter().map(|t| t - model.day_start).collect()
        })
        .collect();
    days.sort_unstable();
    days
}

/// S(t) and A(t) by second-of-day bucket, from the drawn friend days.
fn later_friends(days: &[Vec<i64>]) -> (Vec<f64>, Vec<f64>) {
    let mut not_started = vec![0.0; BUCKETS];
    let mut tours_if_later = vec![0.0; BUCKETS];
    for b in 0..BUCKETS {
        let later = &days[days.partition_point(|d| d[0] <= b as i64 * STEP)..];
        not_started[b] = later.len() as f64 / days.len().max(1) as f64;
        if !later.is_empty() {
            tours_if_later[b] =
                later.iter().map(|d| d.len() as f64).sum::<f64>() / later.len() as f64;
        }
    }
    (not_started, tours_if_later)
}

/// Each distinct receiver weight, how many receivers have it, and the chance a
/// friend's audience includes such a receiver: counted over `AUDIENCES` audiences
/// drawn as the model draws them (without repetition, so a heavy receiver's chance is
/// more than its share of the draws).
fn inclusion(model: &ArrivalModel, rng: &mut StdRng) -> Vec<(u32, f64, f64)> {
    let cum_weight = model.cum_weight();
    let total = cum_weight.last().copied().unwrap_or(0.0);
    let mut included = vec![0u32; model.receiver_weight.len()];
    for _ in 0..AUDIENCES {
        let want = model.fan_out[rng.random_range(0..model.fan_out.len())] as usize;
        for r in model.pick_receivers(rng, &cum_weight, total, want) {
            included[r] += 1;
        }
    }
    let mut by_weight: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for (&w, &n) in model.receiver_weight.iter().zip(&included) {
        let e = by_weight.entry(w).or_default();
        e.0 += 1.0;
        e.1 += f64::from(n) / AUDIENCES as f64;
    }
    by_weight
        .into_iter()
        .map(|(w, (count, pi))| (w, count, pi / count))
        .collect()
}

/// The ratio to the optimum on `d` of `rule` told the model's forecast; `weights`:
/// also each synthetic person's weight.
pub fn ratio(d: &Dataset, rule: &LogisticRanker, posterior: &Posterior, weights: bool) -> f64 {
    per_person_ratio(d, rule.max_per_day(), |user, one| {
        // `one` holds this person alone.
        let tours = one.tours_by_person().pop().unwrap_or_default();
        let weight = if weights {
            posterior.weight_of(user)
        } else {
            None
        };
        Forecast {
            rule,
            more: move |f: &Features| posterior.further(&tours, f, weight),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::splits::build;
    use crate::synth::{Draw, Tour};

    const T0: i64 = 1_501_545_600; // 2017-08-01 00:00:00 UTC

    /// A model fitted to a small day: 300 friends touring 1–4 times, 20 min apart,
    /// from 06:00 to 17:00, each told to 1–6 of 400 people.
    pub(crate) fn model() -> ArrivalModel {
        let mut day = Vec::new();
        for f in 0..300i64 {
            for k in 0..(1 + f % 4) {
                for r in 0..(1 + f % 6) {
                    day.push(Tour::named_by_id(
                        T0 + (6 + f % 12) * 3600 + k * 1200 + (f * 37) % 1200,
                        &format!("u{}", (f * 7 + r * 13) % 400),
                        &format!("f{f}"),
                    ));
                }
            }
        }
        ArrivalModel::fit(&day, 100).expect("fit")
    }

    /// On days the model draws, the forecast at each tour's arrival averages the true
    /// further tours, with or without the person's weight, and so do its samples.
    #[test]
    fn the_forecast_is_calibrated_on_the_models_own_days() {
        let m = model();
        let post = Posterior::new(&m);
        let mut rng = StdRng::seed_from_u64(3);
        let mut sample = Vec::new();
        let (mut truth, mut blind, mut known, mut drawn, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for seed in 1..=6 {
            let d = build(
                &m.draw(&Draw {
                    seed,
                    ..Draw::default()
                }),
                |_| true,
                0,
            );
            for (p, tours) in d.tours_by_person().iter().enumerate() {
                let weight = post.weight_of(&d.people[p]);
                assert!(weight.is_some(), "{}", d.people[p]);
                for (i, &(now, _)) in tours.iter().enumerate() {
                    if tours.get(i + 1).is_some_and(|t| t.0 == now) {
                        continue; // the instant's last tour describes it
                    }
                    let seen = Posterior::seen_today(tours, day_of(now) * DAY, now);
                    truth += tours.iter().filter(|t| t.0 > now).count() as f64;
                    blind += post.further_at(tours, now, None);
                    known += post.further_at(tours, now, weight);
                    post.sample_further(&mut rng, &seen, now, weight, &mut sample);
                    drawn += sample.len() as f64;
                    n += 1.0;
                }
            }
        }
        let (truth, blind, known, drawn) = (truth / n, blind / n, known / n, drawn / n);
        eprintln!("mean further tours at an arrival: truth {truth:.3}, forecast {blind:.3}, with the weight {known:.3}, sampled {drawn:.3}");
        for (what, x) in [
            ("forecast", blind),
            ("with the weight", known),
            ("sampled", drawn),
        ] {
            assert!(
                (x / truth - 1.0).abs() < 0.15,
                "{what}: {x} against {truth}"
            );
        }
    }
}
