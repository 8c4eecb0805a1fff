//! A perfect forecast: the shipped rule told each person's true number of further tours
//! that day in place of its forecast. What the rule scores then bounds what a better
//! forecast could buy, and tells the forecast's error from the rule's (`bundle_lab
//! oracle=1`; `ofit=ROUNDS` refits the rule's weights for it on the training splits).

use crate::forecast::{per_person_ratio, Forecast};
use crate::replay::Dataset;
use herald_core::bundle::ranker::LogisticRanker;
use herald_core::bundle::{day_of, Features, Ranker, UnixSecs, DAY};

/// The instant `f` describes, for a person whose tour times (sorted) are `tours`. The
/// features carry the second of the day and the tours so far today, not the date: the
/// day is the first of the person's days with that many tours by then. `None` when no
/// day has.
pub fn instant_of(tours: impl Iterator<Item = UnixSecs> + Clone, f: &Features) -> Option<UnixSecs> {
    let mut days: Vec<i64> = tours.clone().map(day_of).collect();
    days.dedup();
    days.into_iter().find_map(|d| {
        let now = d * DAY + f.second_of_day.round() as i64;
        let upto = tours.clone().filter(|&t| t >= d * DAY && t <= now).count();
        (upto as u32 == f.tours_today).then_some(now)
    })
}

/// Tours after the instant `f` describes ([`instant_of`]), on its day.
pub fn further_tours(tours: &[UnixSecs], f: &Features) -> f64 {
    let Some(now) = instant_of(tours.iter().copied(), f) else {
        return 0.0;
    };
    let end = (day_of(now) + 1) * DAY;
    tours.iter().filter(|&&t| t > now && t < end).count() as f64
}

/// The ratio to the optimum of `rule` told each person's true further tours on `d`.
pub fn ratio(d: &Dataset, rule: &LogisticRanker) -> f64 {
    per_person_ratio(d, rule.max_per_day(), |_, one| {
        let tours = one.at.clone();
        Forecast {
            rule,
            more: move |f: &Features| further_tours(&tours, f),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::komoot::TourRef;
    use crate::replay::replay_with;
    use herald_core::bundle::ranker::BundlingConfig;

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
        // Three tours on the first day (08:00, 09:00, 12:00), two on the next
        // (07:00, 07:30).
        let tours = [
            T0 + 8 * H,
            T0 + 9 * H,
            T0 + 12 * H,
            T0 + DAY + 7 * H,
            T0 + DAY + 7 * H + 1800,
        ];
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
            let got = further_tours(&tours, &at(hour * 3600.0, today));
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
        let oracle = Forecast {
            rule: &rule,
            more: |f: &Features| further_tours(&d.at, f),
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
