//! The shipped rule with a forecast supplied from outside. The rule's weakness is its
//! forecast of a person's further tours today, so the lab asks what a better forecast
//! would buy: a perfect one ([`crate::oracle`]) or one that also knows the person's
//! earlier days ([`crate::history`]). Each replays one person at a time with a
//! [`Forecast`] made for them, and refits the rule's weights for that forecast on the
//! training splits only ([`fit`]).

use crate::komoot::TourRef;
use crate::replay::{replay_with, Dataset};
use crate::splits;
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::{Features, FriendSignal, Ranker};

/// The rule scoring with `more(f)` as the further tours expected today, in place of
/// its own forecast.
pub struct Forecast<'a, M> {
    pub rule: &'a LogisticRanker,
    pub more: M,
}

impl<M: Fn(&Features) -> f64> Forecast<'_, M> {
    fn score(&self, f: &Features) -> f64 {
        self.rule.score_with(f, (self.more)(f))
    }
}

impl<M: Fn(&Features) -> f64> Ranker for Forecast<'_, M> {
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
        self.rule.margin_with(f, (self.more)(f))
    }
    fn friend_signal(&self, told: &mut dyn Iterator<Item = u32>) -> FriendSignal {
        self.rule.friend_signal(told)
    }
}

/// The ratio to the optimum on `d` when each person is replayed alone with the ranker
/// `make` builds from their id and their own rows (sorted).
pub fn per_person_ratio<R: Ranker>(
    d: &Dataset,
    cap: u32,
    mut make: impl FnMut(&str, &Dataset) -> R,
) -> f64 {
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
        let ranker = make(&d.people[p], &one);
        replay_with(&one, &ranker, |s, rows| {
            total += rows.map(|r| s.sent_at - one.at[r]).sum::<i64>();
        });
    }
    total as f64 / splits::optimum_total(d, cap).max(1) as f64
}

/// Parameters a refit for an outside forecast leaves alone: the prior and the friend
/// model shape forecasts, which the caller supplies, and the clock weights the
/// shipped fit left at zero stay there, so the refit changes the rule's weights and
/// nothing else.
pub const FROZEN: [&str; 5] = ["prior", "friends", "since_first", "sent_today", "time_left"];

/// Refits the rule's weights on the `training` splits for the forecast `ratio`
/// scores with (the lab's search, mean plus worst log ratio).
pub fn fit(
    training: &[&Dataset],
    start: &BundlingConfig,
    rounds: u32,
    ratio: impl Fn(&Dataset, &LogisticRanker) -> f64,
) -> BundlingConfig {
    crate::fit::fit_by(start, rounds, &FROZEN, &mut |c| {
        let rule = LogisticRanker::new(c);
        let logs: Vec<f64> = training.iter().map(|d| ratio(d, &rule).ln()).collect();
        crate::fit::mean_plus_worst(&logs)
    })
}
