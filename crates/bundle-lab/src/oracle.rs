//! A perfect forecast: the shipped rule told each person's true number of further tours
//! that day in place of its forecast. What the rule scores then bounds what a better
//! forecast could buy, and tells the forecast's error from the rule's (`bundle_lab
//! oracle=1`; `ofit=ROUNDS` refits the rule's weights for it on the training splits).

use crate::komoot::TourRef;
use crate::replay::{replay_with, Dataset};
use crate::splits;
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::{day_of, Features, FriendSignal, Ranker, UnixSecs, DAY};

/// The shipped rule told each person's true number of further tours today instead of
/// its forecast: what a perfect forecast would give, to tell the forecast's error from
/// the rule's. It replays one person at a time, holding their tour times.
pub struct Oracle<'a> {
    pub rule: &'a LogisticRanker,
    /// The person's tour times, sorted.
    pub tours: Vec<UnixSecs>,
}

impl Oracle<'_> {
    /// Tours after the instant `f` describes, on its day. The features carry the
    /// second of the day and the tours so far today, not the date: the day is the one
    /// of the person's days with that many tours by then.
    pub fn more(&self, f: &Features) -> f64 {
        let mut days: Vec<i64> = self.tours.iter().map(|&t| day_of(t)).collect();
        days.dedup();
        for d in days {
            let now = d * DAY + f.second_of_day.round() as i64;
            let upto = self
                .tours
                .iter()
                .filter(|&&t| t >= d * DAY && t <= now)
                .count();
            if upto as u32 == f.tours_today {
                let after = self
                    .tours
                    .iter()
                    .filter(|&&t| t > now && t < (d + 1) * DAY)
                    .count();
                return after as f64;
            }
        }
        0.0
    }

    fn score(&self, f: &Features) -> f64 {
        self.rule.score_with(f, self.more(f))
    }
}

impl Ranker for Oracle<'_> {
    fn readiness(&self, f: &Features) -> f64 {
        1.0 / (1.0 + (-self.score(f)).exp())
    }
    fn threshold(&self) -> f64 {
        self.rule.threshold()
    }
    fn max_per_day(&self) -> u32 {
        self.rule.max_per_day()
    }
    fn margin(&self, f: &Features) -> f64 {
        let t = self.rule.threshold();
        self.score(f) - (t / (1.0 - t)).ln()
    }
    fn friend_signal(&self, told: &mut dyn Iterator<Item = u32>) -> FriendSignal {
        self.rule.friend_signal(told)
    }
}

/// The ratio to the optimum of `rule` with the [`Oracle`]'s forecast on `d`.
pub fn ratio(d: &Dataset, rule: &LogisticRanker) -> f64 {
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); d.people.len()];
    for (i, &p) in d.person.iter().enumerate() {
        rows[p as usize].push(i);
    }
    let mut total = 0i64;
    for (p, rs) in rows.iter().enumerate() {
        let mut one = Dataset::new();
        for &i in rs {
            one.push(TourRef {
                at: d.at[i],
                user_id: &d.people[p],
                friend_id: d.friend_id(i),
                friend_name: d.name(i),
            });
        }
        one.sort();
        let oracle = Oracle {
            rule,
            tours: one.at.clone(),
        };
        replay_with(&one, &oracle, |s, rows| {
            total += rows.map(|r| s.sent_at - one.at[r]).sum::<i64>();
        });
    }
    total as f64 / splits::optimum_total(d, rule.max_per_day()).max(1) as f64
}

/// Coordinate descent on the rule's weights with the [`Oracle`]'s forecast, on the
/// training splits only: how good the rule's shape can be when the forecast is perfect.
pub fn fit(training: &[&Dataset], start: &BundlingConfig, rounds: u32) -> BundlingConfig {
    type Knob = fn(&mut BundlingConfig) -> &mut f64;
    let knobs: [(Knob, f64, f64); 9] = [
        (|c| &mut c.weights.bias, -20.0, 20.0),
        (|c| &mut c.weights.tours, -10.0, 10.0),
        (|c| &mut c.weights.sends_left, -10.0, 10.0),
        (|c| &mut c.weights.spare_sends, -10.0, 10.0),
        (|c| &mut c.weights.expected_more, -10.0, 0.0),
        (|c| &mut c.weights.since_last, 0.0, 10.0),
        (|c| &mut c.weights.span, -10.0, 10.0),
        (|c| &mut c.weights.last_send, -10.0, 0.0),
        (|c| &mut c.weights.first_of_day, -10.0, 10.0),
    ];
    let objective = |c: &BundlingConfig| {
        let r = LogisticRanker::new(c);
        let logs: Vec<f64> = training.iter().map(|d| ratio(d, &r).ln()).collect();
        let worst = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        logs.iter().sum::<f64>() / logs.len().max(1) as f64 + worst
    };
    let mut best = start.clone();
    let mut best_val = objective(&best);
    let mut step = 1.0;
    for _ in 0..rounds {
        let mut improved = false;
        for (knob, lo, hi) in knobs {
            for dir in [1.0, -1.0] {
                let mut cand = best.clone();
                let x = knob(&mut cand);
                *x = (*x + dir * step).clamp(lo, hi);
                if cand.validate().is_err() {
                    continue;
                }
                let v = objective(&cand);
                if v < best_val - 1e-9 {
                    (best, best_val) = (cand, v);
                    improved = true;
                    break;
                }
            }
        }
        if !improved {
            step /= 2.0;
            if step < 0.05 {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixSecs = 1_501_545_600; // 2017-08-01 00:00:00 UTC
    const H: UnixSecs = 3600;

    fn at(second_of_day: f64, tours_today: u32) -> Features {
        Features {
            since_first: 0.0,
            since_last: 0.0,
            span: 0.0,
            tours: 1,
            sent_today: 0,
            sends_left: 4,
            time_left: DAY as f64 - second_of_day,
            tours_today,
            second_of_day,
            friends_today: 0,
            weighted_tours: 0.0,
            busiest_told: 0,
        }
    }

    #[test]
    fn the_oracle_counts_the_days_further_tours() {
        let rule = LogisticRanker::new(&BundlingConfig::default());
        // Three tours on the first day (08:00, 09:00, 12:00), two on the next
        // (07:00, 07:30).
        let oracle = Oracle {
            rule: &rule,
            tours: vec![
                T0 + 8 * H,
                T0 + 9 * H,
                T0 + 12 * H,
                T0 + DAY + 7 * H,
                T0 + DAY + 7 * H + 1800,
            ],
        };
        // (hour of day, tours so far today, further tours that day)
        for (hour, today, want) in [
            (8.0, 1, 2.0),
            (10.0, 2, 1.0),
            (12.0, 3, 0.0),
            (23.0, 3, 0.0),
            (7.0, 1, 1.0),
            (7.5, 2, 0.0),
            // No day has that many tours by then: nothing is told.
            (10.0, 5, 0.0),
        ] {
            let got = oracle.more(&at(hour * 3600.0, today));
            assert_eq!(got, want, "{hour} h, {today} today");
        }
    }

    #[test]
    fn a_perfect_forecast_keeps_the_cap_and_sends_every_tour() {
        // Ten tours of one person in an afternoon: the rule with the true count sends
        // every one, at most four bundles that day.
        let mut d = Dataset::new();
        for i in 0..10 {
            d.push(TourRef {
                at: T0 + 13 * H + i * 1200,
                user_id: "u",
                friend_id: "f",
                friend_name: "F",
            });
        }
        d.sort();
        let rule = LogisticRanker::new(&BundlingConfig::default());
        let oracle = Oracle {
            rule: &rule,
            tours: d.at.clone(),
        };
        // Sends per day: the cap is per calendar day; the rest waits for midnight.
        let mut sends = [0u32; 2];
        let mut told = 0;
        let refused = replay_with(&d, &oracle, |s, rows| {
            told += rows.count();
            match usize::try_from(day_of(s.sent_at) - day_of(T0)) {
                Ok(day) if day < 2 => sends[day] += 1,
                _ => panic!("sent at {}", s.sent_at),
            }
        });
        assert_eq!((refused, told), (0, 10));
        assert!(sends[0] <= 4, "{sends:?}");
        assert!(ratio(&d, &rule) >= 1.0);
    }
}
