//! A policy that uses the arrival model's whole posterior, not one forecast
//! (`bundle_lab hindsight=SAMPLES`): is the logistic rule's shape what stops it, or
//! what it can know?
//!
//! Hindsight optimisation: at each tour and every [`Settings::tick`] while a bundle waits, draw
//! `SAMPLES` futures of the person's day from the model's posterior
//! ([`Posterior::sample_further`]) and, for each, the least delay of the rest of the
//! day if the bundle goes now and if it waits for one of the future's tours (each
//! solved exactly, as if the future were known). Send when sending now costs no more
//! on average. Far too slow for the worker; it only measures what the model's
//! knowledge can buy on a day the model drew.

use crate::posterior::Posterior;
use crate::replay::Dataset;
use crate::splits;
use herald_core::bundle::{day_of, UnixSecs, DAY};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How often a waiting bundle is reconsidered by default, in seconds.
pub const TICK: i64 = 300;

/// What the policy is given.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Futures drawn per decision.
    pub samples: usize,
    /// Seconds between decisions while a bundle waits.
    pub tick: i64,
    /// The posterior knows each synthetic person's weight.
    pub weights: bool,
}

/// The ratio to the optimum on `d` of hindsight optimisation, at most `cap` sends per
/// person per day.
pub fn ratio(d: &Dataset, posterior: &Posterior, cap: u32, settings: Settings) -> f64 {
    let mut rng = StdRng::seed_from_u64(11);
    let mut total = 0i64;
    for (p, tours) in d.tours_by_person().iter().enumerate() {
        let weight = if settings.weights {
            posterior.weight_of(&d.people[p])
        } else {
            None
        };
        total += person_delay(tours, posterior, weight, cap, settings, &mut rng);
    }
    total as f64 / splits::optimum_total(d, cap).max(1) as f64
}

/// Total delay of one person's tours (sorted) under the policy.
fn person_delay(
    tours: &[(UnixSecs, u64)],
    posterior: &Posterior,
    weight: Option<u32>,
    cap: u32,
    settings: Settings,
    rng: &mut StdRng,
) -> i64 {
    let mut total = 0i64;
    let mut pending: Vec<UnixSecs> = Vec::new();
    let (mut day, mut sent) = (i64::MIN, 0u32);
    let mut next = 0;
    let mut future = Vec::new();
    let mut now = match tours.first() {
        Some(t) => t.0,
        None => return 0,
    };
    loop {
        // The day's sends spent: the bundle waits for midnight, the next day's first.
        if day_of(now) != day {
            if !pending.is_empty() {
                let midnight = day_of(now) * DAY;
                total += pending.iter().map(|&p| midnight - p).sum::<i64>();
                pending.clear();
                (day, sent) = (day_of(now), 1);
            } else {
                (day, sent) = (day_of(now), 0);
            }
        }
        while next < tours.len() && tours[next].0 <= now {
            pending.push(tours[next].0);
            next += 1;
        }
        if !pending.is_empty() && sent < cap {
            let start = day * DAY;
            let seen = Posterior::seen_today(tours, start, now);
            let (mut send, mut wait) = (0.0, 0.0);
            for _ in 0..settings.samples {
                posterior.sample_further(rng, &seen, now, weight, &mut future);
                let (s, w) = costs(
                    &future,
                    pending.len(),
                    now,
                    cap - sent,
                    start + DAY,
                    settings.tick,
                );
                send += s;
                wait += w;
            }
            if send <= wait {
                total += pending.iter().map(|&p| now - p).sum::<i64>();
                pending.clear();
                sent += 1;
            }
        }
        // The next instant: a tour, a tick while a bundle can still go today, or the
        // day's end when its sends are spent.
        let arrival = tours.get(next).map(|t| t.0);
        let end = (day + 1) * DAY;
        let wake = if pending.is_empty() {
            None
        } else if sent < cap {
            Some((now + settings.tick).min(end - 1).max(now + 1))
        } else {
            Some(end)
        };
        now = match (arrival, wake) {
            (Some(a), Some(w)) => a.min(w),
            (Some(a), None) => a,
            (None, Some(w)) => w,
            (None, None) => break,
        };
    }
    total
}

/// For a sampled `future` (sorted, today's, after `now`), the least delay of the rest
/// of the day counted from `now` when the `waiting` tours go now, and when they go
/// with one of the future's tours instead; `sends` left today, `end` the day's end,
/// `tick` until the next decision.
fn costs(
    future: &[UnixSecs],
    waiting: usize,
    now: UnixSecs,
    sends: u32,
    end: UnixSecs,
    tick: i64,
) -> (f64, f64) {
    let best = rest_of_day(future, sends as usize, end);
    let send = best[sends as usize - 1][0];
    if future.is_empty() {
        // Nothing comes: waiting only delays the bundle a tick.
        return (send as f64, (waiting as i64 * tick) as f64);
    }
    let mut sum = 0i64;
    let mut wait = i64::MAX;
    for (j, &t) in future.iter().enumerate() {
        sum += t;
        let group = (waiting as i64) * (t - now) + (j as i64 + 1) * t - sum;
        wait = wait.min(group + best[sends as usize - 1][j + 1]);
    }
    (send as f64, wait as f64)
}

/// `best[c][a]`: the least delay of `tours[a..]` with `c` sends left before `end`
/// (with none left they wait for `end`).
fn rest_of_day(tours: &[UnixSecs], sends: usize, end: UnixSecs) -> Vec<Vec<i64>> {
    let m = tours.len();
    let mut suffix = vec![0i64; m + 1];
    for a in (0..m).rev() {
        suffix[a] = suffix[a + 1] + tours[a];
    }
    let mut best = vec![vec![0i64; m + 1]; sends];
    for a in 0..m {
        best[0][a] = (m - a) as i64 * end - suffix[a];
    }
    for c in 1..sends {
        for a in 0..m {
            let mut low = i64::MAX;
            for b in a..m {
                // Tours a..=b go together at tours[b].
                let group = (b - a + 1) as i64 * tours[b] - (suffix[a] - suffix[b + 1]);
                low = low.min(group + best[c - 1][b + 1]);
            }
            best[c][a] = low;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimum::person_optimum;
    use crate::posterior::tests::model;

    const T0: UnixSecs = 1_501_545_600; // 2017-08-01 00:00:00 UTC
    const H: UnixSecs = 3600;

    #[test]
    fn a_late_tour_goes_at_once_and_a_capped_day_lies_between_the_bounds() {
        let post = Posterior::new(&model());
        let settings = Settings {
            samples: 64,
            tick: TICK,
            weights: true,
        };
        let mut rng = StdRng::seed_from_u64(1);
        // 23:30: the model's friends are done for the day, so nothing is worth waiting for.
        let late = [(T0 + 23 * H + 1800, 1)];
        assert_eq!(
            person_delay(&late, &post, Some(3), 4, settings, &mut rng),
            0
        );
        // Twelve tours from one friend, 10 min apart from 13:00, one send a day: one
        // send at some tour and the rest wait for midnight, never better than the
        // optimum and never worse than everything waiting for midnight.
        let busy: Vec<(UnixSecs, u64)> = (0..12).map(|i| (T0 + 13 * H + i * 600, 1)).collect();
        let times: Vec<UnixSecs> = busy.iter().map(|t| t.0).collect();
        let got = person_delay(&busy, &post, Some(3), 1, settings, &mut rng);
        let midnight: i64 = times.iter().map(|&t| T0 + DAY - t).sum();
        assert!(got >= person_optimum(&times, 1).total_delay, "{got}");
        assert!(got < midnight, "{got}");
    }

    #[test]
    fn the_rest_of_the_day_is_solved_exactly() {
        // Tours at 10, 20, 100; the day ends at 1000.
        let t = [10, 20, 100];
        let best = rest_of_day(&t, 3, 1000);
        // No send left: all wait for the end.
        assert_eq!(best[0][0], 990 + 980 + 900);
        // One send: at 100, 90 + 80 + 0.
        assert_eq!(best[1][0], 170);
        // Two: {10, 20} at 20, {100} at 100.
        assert_eq!(best[2][0], 10);
        assert_eq!(best[2][2], 0);
    }

    #[test]
    fn waiting_pays_only_when_tours_come_soon() {
        // Two tours wait at 0; with one send left, a tour at 60 makes waiting for it
        // cheaper than sending now (then the tour waits for the day's end).
        let (send, wait) = costs(&[60], 2, 0, 1, 10_000, TICK);
        assert_eq!((send, wait), (9_940.0, 120.0));
        // With sends to spare, sending now and again at 60 costs nothing.
        let (send, wait) = costs(&[60], 2, 0, 2, 10_000, TICK);
        assert_eq!((send, wait), (0.0, 120.0));
        // Nothing to come: waiting costs a tick per tour.
        assert_eq!(costs(&[], 2, 0, 2, 10_000, TICK), (0.0, 2.0 * TICK as f64));
    }
}
