//! A prior of each person's own, from their earlier days: what the forecast would gain
//! if the ranker knew how many tours a person usually gets (`bundle_lab history=N`).
//!
//! The shipped rule starts every person's day from one Gamma prior. A person who
//! follows many friends gets many tours on most days, so their earlier days could set
//! a prior of their own: the shipped prior plus `weight` days' worth of the evidence
//! the rule counted for them on an average earlier day (its weighted tours plus
//! `per_friend` per friend, the terms the rule adds to the Gamma shape during a day).
//!
//! Only synthetic days can measure this: the sample is one day, so its people have no
//! earlier days. The arrival model draws each day's receivers in proportion to the
//! friends they had in the sample, so a person's rate never changes from day to day
//! there: the measure is a best case for the idea.

use crate::forecast::{per_person_ratio, Forecast};
use crate::replay::Dataset;
use crate::synth::{ArrivalModel, Draw, Tour};
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker, Prior};
use herald_core::bundle::{Features, Ranker};
use std::collections::HashMap;

/// Seeds of the synthetic days that serve as earlier days: no split uses them.
pub const FIRST_SEED: u64 = 2000;

/// The evidence of each person's rate on earlier days (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per person, the rule's evidence summed over the days.
    evidence: HashMap<String, f64>,
    days: usize,
}

impl History {
    /// What `cfg`'s rule would count as evidence of each person's rate at the end of
    /// each of `days`.
    pub fn of_days(days: &[Vec<Tour>], cfg: &BundlingConfig) -> Self {
        let rule = LogisticRanker::new(cfg);
        let mut evidence: HashMap<String, f64> = HashMap::new();
        for day in days {
            // Per person, the tours each friend told them that day.
            let mut told: HashMap<&str, HashMap<&str, u32>> = HashMap::new();
            for t in day {
                *told
                    .entry(&t.user)
                    .or_default()
                    .entry(&t.friend)
                    .or_default() += 1;
            }
            for (user, by_friend) in told {
                let s = rule.friend_signal(&mut by_friend.into_values());
                let e = s.weighted_tours + cfg.friends.per_friend * f64::from(s.friends_today);
                *evidence.entry(user.to_owned()).or_default() += e;
            }
        }
        Self {
            evidence,
            days: days.len(),
        }
    }

    /// `n` synthetic days drawn from `model` as earlier days.
    pub fn synthetic(model: &ArrivalModel, n: u64, cfg: &BundlingConfig) -> Self {
        let days: Vec<Vec<Tour>> = (FIRST_SEED..FIRST_SEED + n)
            .map(|seed| {
                model.draw(&Draw {
                    seed,
                    ..Draw::default()
                })
            })
            .collect();
        Self::of_days(&days, cfg)
    }

    /// The person's prior: `base` plus `weight` days' worth of their average day's
    /// evidence (`base` for a person never seen).
    pub fn prior(&self, user: &str, base: Prior, weight: f64) -> Prior {
        let mean = self.evidence.get(user).copied().unwrap_or(0.0) / self.days.max(1) as f64;
        Prior {
            shape: base.shape + weight * mean,
            rate: base.rate + weight,
        }
    }
}

/// The ratio to the optimum on `d` of `rule` forecasting each person from their own
/// prior ([`History::prior`] over `base`).
pub fn ratio(
    d: &Dataset,
    rule: &LogisticRanker,
    base: Prior,
    history: &History,
    weight: f64,
) -> f64 {
    per_person_ratio(d, rule.max_per_day(), |user, _| {
        let prior = history.prior(user, base, weight);
        Forecast {
            rule,
            more: move |f: &Features| rule.expected_more_with(f, prior),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splits::build;

    const T0: i64 = 1_501_545_600; // 2017-08-01 00:00:00 UTC
    const H: i64 = 3600;

    fn config() -> BundlingConfig {
        let mut cfg = BundlingConfig::default();
        cfg.friends.count_power = 0.0;
        cfg.friends.per_friend = 0.5;
        cfg
    }

    #[test]
    fn the_prior_adds_the_average_days_evidence() {
        let cfg = config();
        // Day 1: "u" gets three tours from "a" and one from "b" (two friends); day 2:
        // one from "a". With count_power 0 each friend counts once, plus 0.5 each.
        let days = vec![
            vec![
                Tour::named_by_id(T0 + 8 * H, "u", "a"),
                Tour::named_by_id(T0 + 9 * H, "u", "a"),
                Tour::named_by_id(T0 + 10 * H, "u", "a"),
                Tour::named_by_id(T0 + 11 * H, "u", "b"),
            ],
            vec![Tour::named_by_id(T0 + 8 * H, "u", "a")],
        ];
        let history = History::of_days(&days, &cfg);
        let base = Prior {
            shape: 0.1,
            rate: 1.0,
        };
        // Evidence: 3.0 on day 1, 1.5 on day 2; mean 2.25, worth 2 days here.
        let p = history.prior("u", base, 2.0);
        assert!((p.shape - (0.1 + 4.5)).abs() < 1e-9, "{p:?}");
        assert!((p.rate - 3.0).abs() < 1e-9, "{p:?}");
        assert_eq!(history.prior("stranger", base, 2.0).shape, 0.1);
        assert_eq!(history.prior("u", base, 0.0), base);
    }

    #[test]
    fn a_person_who_usually_gets_many_tours_is_held_longer() {
        // Two tours at 08:00 and 08:10. Without a history the rule sends each at
        // once; told the person usually gets twenty tours a day, it holds the second
        // for the ones to come.
        let mut cfg = config();
        cfg.weights.first_of_day = 10.0;
        let rule = LogisticRanker::new(&cfg);
        let today = build(
            &[
                Tour::named_by_id(T0 + 8 * H, "u", "a"),
                Tour::named_by_id(T0 + 8 * H + 600, "u", "b"),
            ],
            |_| true,
            0,
        );
        let busy: Vec<Tour> = (0..20)
            .map(|i| Tour::named_by_id(T0 + 6 * H + i * 1800, "u", &format!("f{i}")))
            .collect();
        let history = History::of_days(&[busy], &cfg);
        let cold = ratio(&today, &rule, cfg.prior, &History::default(), 1.0);
        let known = ratio(&today, &rule, cfg.prior, &history, 1.0);
        // Nothing to bundle against: the ratio is the total delay in seconds.
        assert_eq!(cold, 0.0);
        assert!(known > 600.0, "known {known}");
    }
}
