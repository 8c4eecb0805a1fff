//! Synthetic days: an arrival model fitted to a komoot file, and days drawn from it.
//!
//! The ranker is judged on days it has not seen, where no single friend dominates; the
//! one sample day is a poor proxy for those (half its rows are one friend's 10 tours
//! told to 422 people). [`ArrivalModel::fit`] learns from a file how tours arrive, and
//! [`ArrivalModel::draw`] makes new days from it with a seed, so the ranker can be
//! scored on as many unseen days as wanted.
//!
//! The model, from the friends' side (a friend's tour is told to all their receivers):
//!
//! * how many friends tour in a day (as in the file, times `scale`);
//! * how many tours each of them makes that day (the file's distribution);
//! * when: the friend's first tour by an hour-of-day profile (the file's first tours,
//!   hour by hour, uniform within the hour), each further one after a log-normal gap
//!   (mean and spread of the log gaps between a friend's tours in the file); tours past
//!   the day's end are dropped;
//! * to whom: a fan-out drawn from the file's receivers-per-friend, receivers chosen
//!   without repetition with probability proportional to how many friends they had in
//!   the file (people who follow many friends get many tours).
//!
//! Friends with more than `max_fan_out` receivers (the file's celebrity) are left out
//! of the fit, so drawn days have no dominating friend.

use herald_core::bundle::{day_of, UnixSecs, DAY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

/// One tour told to one receiver, owned (the lab's row type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tour {
    pub at: UnixSecs,
    pub user: String,
    pub friend: String,
    pub name: String,
}

impl Tour {
    /// A tour whose friend's name is their id (tests build rows so).
    pub fn named_by_id(at: UnixSecs, user: &str, friend: &str) -> Self {
        Self {
            at,
            user: user.into(),
            friend: friend.into(),
            name: friend.into(),
        }
    }
}

/// How tours arrive, fitted to a file (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalModel {
    /// Share of friends' first tours of the day in each UTC hour (sums to 1).
    pub hour_profile: [f64; 24],
    /// Tours each active friend made in the day (one entry per friend).
    pub tours_per_friend: Vec<u32>,
    /// Receivers of each active friend (one entry per friend).
    pub fan_out: Vec<u32>,
    /// Distinct friends of each receiver: the weight with which they are drawn.
    pub receiver_weight: Vec<u32>,
    /// Mean and standard deviation of ln(seconds) between a friend's tours.
    pub gap_log_mean: f64,
    pub gap_log_sd: f64,
    /// Midnight (UTC) of the fitted file's first day: drawn days start there.
    pub day_start: UnixSecs,
}

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub seed: u64,
    /// Active friends relative to the file (1.0: as many).
    pub scale: f64,
    /// Seconds added to every drawn tour's time (the hour profile moves with it).
    pub shift: UnixSecs,
}

impl Default for Draw {
    fn default() -> Self {
        Self {
            seed: 1,
            scale: 1.0,
            shift: 0,
        }
    }
}

/// Gaps shorter than this are the same upload told twice; they do not shape the model.
const MIN_GAP: i64 = 30;

impl ArrivalModel {
    /// Fits the model to `tours`, leaving out friends with more than `max_fan_out`
    /// distinct receivers. `None` when nothing is left to fit.
    pub fn fit(tours: &[Tour], max_fan_out: usize) -> Option<Self> {
        let mut receivers: HashMap<&str, HashSet<&str>> = HashMap::new();
        for t in tours {
            receivers.entry(&t.friend).or_default().insert(&t.user);
        }
        let kept =
            |t: &&Tour| receivers.get(t.friend.as_str()).map_or(0, |r| r.len()) <= max_fan_out;
        // Each friend's distinct tour instants.
        let mut instants: HashMap<&str, Vec<UnixSecs>> = HashMap::new();
        let mut friends_of: HashMap<&str, HashSet<&str>> = HashMap::new();
        for t in tours.iter().filter(kept) {
            instants.entry(&t.friend).or_default().push(t.at);
            friends_of.entry(&t.user).or_default().insert(&t.friend);
        }
        if instants.is_empty() {
            return None;
        }
        let mut hours = [0.0; 24];
        let mut tours_per_friend = Vec::with_capacity(instants.len());
        let mut fan_out = Vec::with_capacity(instants.len());
        let mut log_gaps = Vec::new();
        let mut first_day = i64::MAX;
        // Sorted by friend id so the fit does not depend on hash order.
        let mut by_friend: Vec<(&str, Vec<UnixSecs>)> = instants.into_iter().collect();
        by_friend.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (friend, mut ts) in by_friend {
            ts.sort_unstable();
            ts.dedup();
            first_day = first_day.min(day_of(ts[0]));
            hours[(ts[0].rem_euclid(DAY) / 3600) as usize] += 1.0;
            tours_per_friend.push(ts.len() as u32);
            fan_out.push(receivers.get(friend).map_or(1, |r| r.len() as u32));
            log_gaps.extend(
                ts.windows(2)
                    .map(|w| w[1] - w[0])
                    .filter(|&g| g >= MIN_GAP)
                    .map(|g| (g as f64).ln()),
            );
        }
        let total: f64 = hours.iter().sum();
        let hour_profile = hours.map(|h| h / total);
        let (gap_log_mean, gap_log_sd) = mean_sd(&log_gaps).unwrap_or((7.5, 1.0));
        let mut receiver_weight: Vec<(&str, u32)> = friends_of
            .into_iter()
            .map(|(u, f)| (u, f.len() as u32))
            .collect();
        receiver_weight.sort_unstable();
        Some(Self {
            hour_profile,
            tours_per_friend,
            fan_out,
            receiver_weight: receiver_weight.into_iter().map(|(_, w)| w).collect(),
            gap_log_mean,
            gap_log_sd,
            day_start: first_day * DAY,
        })
    }

    /// Draws one day (sorted by time). Deterministic for a given [`Draw`].
    pub fn draw(&self, d: &Draw) -> Vec<Tour> {
        let mut rng = StdRng::seed_from_u64(d.seed);
        let friends = (self.tours_per_friend.len() as f64 * d.scale)
            .round()
            .max(1.0) as usize;
        let cum_weight = self.cum_weight();
        let total_weight = cum_weight.last().copied().unwrap_or(0.0);
        let mut out = Vec::new();
        for f in 0..friends {
            let n = self.tours_per_friend[rng.random_range(0..self.tours_per_friend.len())];
            let want = self.fan_out[rng.random_range(0..self.fan_out.len())] as usize;
            let audience = self.pick_receivers(&mut rng, &cum_weight, total_weight, want);
            let times = self.tour_times(&mut rng, n);
            let (friend, name) = (format!("G{f:06}"), format!("Friend {f}"));
            for &at in &times {
                for &r in &audience {
                    out.push(Tour {
                        at: at + d.shift,
                        user: format!("S{r:06}"),
                        friend: friend.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.at, &a.user).cmp(&(b.at, &b.user)));
        out
    }

    /// Running sums of the receivers' weights, to draw receivers by weight.
    pub(crate) fn cum_weight(&self) -> Vec<f64> {
        self.receiver_weight
            .iter()
            .scan(0.0, |acc, &w| {
                *acc += f64::from(w);
                Some(*acc)
            })
            .collect()
    }

    /// A friend's `n` tour instants in the day: the first by the hour profile, the rest
    /// after log-normal gaps; those past the day's end are dropped.
    pub(crate) fn tour_times(&self, rng: &mut StdRng, n: u32) -> Vec<UnixSecs> {
        let mut u = rng.random_range(0.0..1.0);
        let mut hour = 23;
        for (h, share) in self.hour_profile.iter().enumerate() {
            if u < *share {
                hour = h;
                break;
            }
            u -= share;
        }
        let mut t = self.day_start + hour as i64 * 3600 + rng.random_range(0..3600);
        let end = self.day_start + DAY;
        let mut times = vec![t];
        for _ in 1..n {
            t += self.gap(rng);
            if t >= end {
                break;
            }
            times.push(t);
        }
        times
    }

    pub(crate) fn gap(&self, rng: &mut StdRng) -> i64 {
        // Box–Muller: a standard normal from two uniforms.
        let (u1, u2): (f64, f64) = (
            rng.random_range(f64::EPSILON..1.0),
            rng.random_range(0.0..1.0),
        );
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((self.gap_log_mean + self.gap_log_sd * z).exp() as i64).max(MIN_GAP)
    }

    /// `want` distinct receivers (fewer if there are not as many), each drawn with
    /// probability proportional to its weight.
    pub(crate) fn pick_receivers(
        &self,
        rng: &mut StdRng,
        cum_weight: &[f64],
        total_weight: f64,
        want: usize,
    ) -> Vec<usize> {
        let want = want.min(cum_weight.len());
        let mut chosen = Vec::with_capacity(want);
        let mut tries = 0;
        while chosen.len() < want && tries < want * 50 {
            tries += 1;
            let x = rng.random_range(0.0..total_weight);
            let i = cum_weight
                .partition_point(|&c| c <= x)
                .min(cum_weight.len() - 1);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen
    }
}

/// Mean and sample standard deviation (1 when a single value gives no spread).
fn mean_sd(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() == 1 {
        return Some((mean, 1.0));
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_501_545_600; // 2017-08-01 00:00:00 UTC

    /// A small day: friend A tours twice to u1 and u2, B once to u1, and a celebrity C
    /// tours once to five people.
    fn sample() -> Vec<Tour> {
        let mut v = vec![
            Tour::named_by_id(T0 + 9 * 3600, "u1", "A"),
            Tour::named_by_id(T0 + 9 * 3600, "u2", "A"),
            Tour::named_by_id(T0 + 9 * 3600 + 1800, "u1", "A"),
            Tour::named_by_id(T0 + 9 * 3600 + 1800, "u2", "A"),
            Tour::named_by_id(T0 + 15 * 3600, "u1", "B"),
        ];
        for u in ["u1", "v1", "v2", "v3", "v4"] {
            v.push(Tour::named_by_id(T0 + 20 * 3600, u, "C"));
        }
        v
    }

    #[test]
    fn fit_learns_profile_counts_fan_out_and_weights_without_the_celebrity() {
        let m = ArrivalModel::fit(&sample(), 3).expect("fit");
        assert_eq!(m.day_start, T0);
        assert!((m.hour_profile[9] - 0.5).abs() < 1e-12);
        assert!((m.hour_profile[15] - 0.5).abs() < 1e-12);
        assert_eq!(m.hour_profile[20], 0.0, "the celebrity is left out");
        // Friends sorted by id: A then B.
        assert_eq!(m.tours_per_friend, vec![2, 1]);
        assert_eq!(m.fan_out, vec![2, 1]);
        // u1 had friends A and B, u2 had A.
        assert_eq!(m.receiver_weight, vec![2, 1]);
        assert!((m.gap_log_mean - 1800f64.ln()).abs() < 1e-9);
        // Nothing left to fit.
        assert_eq!(ArrivalModel::fit(&sample(), 0), None);
    }

    #[test]
    fn draws_are_deterministic_within_the_day_and_differ_by_seed() {
        let m = ArrivalModel::fit(&sample(), 3).expect("fit");
        for (seed, scale, shift) in [(1, 1.0, 0), (2, 30.0, 0), (3, 30.0, 3 * 3600)] {
            let d = Draw { seed, scale, shift };
            let a = m.draw(&d);
            assert_eq!(a, m.draw(&d), "seed {seed}");
            assert!(!a.is_empty());
            assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "sorted");
            for t in &a {
                let local = t.at - shift;
                assert!((T0..T0 + DAY).contains(&local), "{}", t.at);
                // Only the fitted hours (9 and 15) start tours; gaps follow them.
                assert!(local >= T0 + 9 * 3600, "{}", local - T0);
            }
            // No friend reaches more receivers than the fitted fan-outs allow.
            let mut per: HashMap<&str, HashSet<&str>> = HashMap::new();
            for t in &a {
                per.entry(&t.friend).or_default().insert(&t.user);
            }
            assert!(per.values().all(|r| r.len() <= 2));
        }
        let other = m.draw(&Draw {
            seed: 9,
            scale: 30.0,
            shift: 0,
        });
        assert_ne!(
            m.draw(&Draw {
                seed: 2,
                scale: 30.0,
                shift: 0
            }),
            other
        );
    }

    #[test]
    fn a_drawn_day_has_about_the_fitted_volume() {
        // Refit on a drawn day: the same number of friends, the same fan-outs.
        let mut day = Vec::new();
        for f in 0..200 {
            for k in 0..(1 + f % 3) {
                for r in 0..(1 + f % 5) {
                    day.push(Tour::named_by_id(
                        T0 + (6 + f % 12) * 3600 + k * 900,
                        &format!("u{}", (f * 7 + r) % 150),
                        &format!("f{f}"),
                    ));
                }
            }
        }
        let m = ArrivalModel::fit(&day, 100).expect("fit");
        let drawn = m.draw(&Draw::default());
        let ratio = drawn.len() as f64 / day.len() as f64;
        assert!((0.7..1.3).contains(&ratio), "{ratio}");
        let friends: HashSet<&str> = drawn.iter().map(|t| t.friend.as_str()).collect();
        assert_eq!(friends.len(), 200);
    }
}
