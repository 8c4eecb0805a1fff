//! The splits a ranker is fitted and judged on: copies of a sample day (people
//! halves, the day without its celebrity, shifted and subsampled copies) and days
//! drawn from an arrival model fitted to it ([`crate::synth`]).
//!
//! Fitting sees only the *training* splits: half A of the sample's people (by a hash of
//! the id), with and without the celebrity, shifted by −2 h, 0 and +2 h, and synthetic
//! days with seeds 1–4. Every *held-out* split is made of people or days the fit never
//! saw: half B of the people (plain, without the celebrity, shifted by ±3 h, a subsample)
//! and synthetic days with seeds from 101 (plain, shifted by ±3 h, at half and twice the
//! volume). The sample day itself and its whole-people copies are reported beside them
//! for reference; they contain the training half.

use crate::komoot::TourRef;
use crate::optimum::person_optimum;
use crate::replay::{replay_with, Dataset};
use crate::synth::{ArrivalModel, Draw, Tour};
use herald_core::bundle::{day_of, Ranker};
use std::collections::{HashMap, HashSet};

/// Friends with more receivers than this are a day's celebrity (the sample has one,
/// with 422) and are left out of the no-celebrity splits and of the arrival model.
pub const CELEBRITY_FAN_OUT: usize = 100;

/// How a split is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Seen by the fit.
    Training,
    /// Never seen by the fit: what the ranker is judged on.
    HeldOut,
    /// Contains training people; shown for comparison with earlier figures.
    Reference,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Training => "training",
            Role::HeldOut => "held out",
            Role::Reference => "reference",
        }
    }
}

/// One split: a name, its role and its tours.
pub struct Split {
    pub name: String,
    pub role: Role,
    pub data: Dataset,
}

/// FNV-1a of the id, remixed by `seed` (0: the plain FNV-1a `--fit` splits by).
pub fn hash(s: &str, seed: u64) -> u64 {
    let mut h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    if seed != 0 {
        h ^= seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 29;
    }
    h
}

/// Whether a person is in half A (the training half; the same split as `--fit`).
pub fn in_half_a(user: &str) -> bool {
    hash(user, 0).is_multiple_of(2)
}

/// The tours `keep` selects, shifted by `shift` seconds, as a sorted dataset.
pub fn build(tours: &[Tour], keep: impl Fn(&Tour) -> bool, shift: i64) -> Dataset {
    let mut d = Dataset::new();
    for r in tours.iter().filter(|r| keep(r)) {
        d.push(TourRef {
            at: r.at + shift,
            user_id: &r.user,
            friend_id: &r.friend,
            friend_name: &r.name,
        });
    }
    d.sort();
    d
}

/// The friends of `tours` with more than [`CELEBRITY_FAN_OUT`] distinct receivers.
pub fn celebrities(tours: &[Tour]) -> HashSet<String> {
    let mut receivers: HashMap<&str, HashSet<&str>> = HashMap::new();
    for t in tours {
        receivers.entry(&t.friend).or_default().insert(&t.user);
    }
    receivers
        .into_iter()
        .filter(|(_, r)| r.len() > CELEBRITY_FAN_OUT)
        .map(|(f, _)| f.to_owned())
        .collect()
}

/// A replay's score against the exact optimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Total delay over the optimum's total delay.
    pub ratio: f64,
    /// Person-days with more sends than the cap.
    pub cap_violations: u64,
}

/// The optimum's total delay on `d` under a cap of `cap` sends a day.
pub fn optimum_total(d: &Dataset, cap: u32) -> i64 {
    d.per_person()
        .iter()
        .map(|ts| person_optimum(ts, cap).total_delay)
        .sum()
}

/// Replays `d` through `r` and compares with the optimum (`optimum`: its total delay,
/// [`optimum_total`]).
pub fn score_against(d: &Dataset, r: &dyn Ranker, optimum: i64) -> Score {
    let mut total = 0i64;
    let mut sends: HashMap<(u32, i64), u32> = HashMap::new();
    replay_with(d, r, |s, rows| {
        total += rows.map(|row| s.sent_at - d.at[row]).sum::<i64>();
        *sends.entry((s.person, day_of(s.sent_at))).or_default() += 1;
    });
    Score {
        ratio: total as f64 / optimum.max(1) as f64,
        cap_violations: sends.values().filter(|&&n| n > r.max_per_day()).count() as u64,
    }
}

/// [`score_against`] with the optimum computed here.
pub fn score(d: &Dataset, r: &dyn Ranker) -> Score {
    score_against(d, r, optimum_total(d, r.max_per_day()))
}

/// Seeds of the synthetic training days; held-out days use seeds from 101.
pub const TRAINING_SEEDS: [u64; 4] = [1, 2, 3, 4];

/// All splits of a sample day (see the module docs). `None` for the model when the
/// sample has nothing left to fit without its celebrity (then no synthetic days).
pub fn all(sample: &[Tour], model: Option<&ArrivalModel>) -> Vec<Split> {
    const H: i64 = 3600;
    let celebs = celebrities(sample);
    let celeb = |t: &Tour| celebs.contains(&t.friend);
    let a = |t: &Tour| in_half_a(&t.user);
    let mut out = Vec::new();
    let mut add = |name: &str, role, data| {
        out.push(Split {
            name: name.to_owned(),
            role,
            data,
        })
    };
    use Role::{HeldOut, Reference, Training};
    // Training: half A, with and without the celebrity, at −2 h, 0, +2 h.
    for (suffix, shift) in [("", 0), (" −2 h", -2 * H), (" +2 h", 2 * H)] {
        add(
            &format!("half A{suffix}"),
            Training,
            build(sample, a, shift),
        );
        add(
            &format!("half A, no celebrity{suffix}"),
            Training,
            build(sample, |t| a(t) && !celeb(t), shift),
        );
    }
    if let Some(m) = model {
        for seed in TRAINING_SEEDS {
            let day = m.draw(&Draw {
                seed,
                ..Draw::default()
            });
            add(
                &format!("synthetic #{seed}"),
                Training,
                build(&day, |_| true, 0),
            );
        }
    }
    // Held out: half B.
    let b = |t: &Tour| !in_half_a(&t.user);
    add("half B", HeldOut, build(sample, b, 0));
    add(
        "half B, no celebrity",
        HeldOut,
        build(sample, |t| b(t) && !celeb(t), 0),
    );
    for (suffix, shift) in [(" +3 h", 3 * H), (" −3 h", -3 * H)] {
        add(&format!("half B{suffix}"), HeldOut, build(sample, b, shift));
        add(
            &format!("half B, no celebrity{suffix}"),
            HeldOut,
            build(sample, |t| b(t) && !celeb(t), shift),
        );
    }
    add(
        "half B, 1/2 of receivers",
        HeldOut,
        build(sample, |t| b(t) && hash(&t.user, 7).is_multiple_of(2), 0),
    );
    if let Some(m) = model {
        for (seed, scale, shift) in [
            (101, 1.0, 0),
            (102, 1.0, 0),
            (103, 1.0, 0),
            (104, 1.0, 3 * H),
            (105, 1.0, -3 * H),
            (106, 0.5, 0),
            (107, 2.0, 0),
        ] {
            let day = m.draw(&Draw { seed, scale, shift });
            let mut name = format!("synthetic #{seed}");
            if shift != 0 {
                let sign = if shift > 0 { '+' } else { '−' };
                name.push_str(&format!(" {sign}{} h", (shift / H).abs()));
            }
            if scale != 1.0 {
                name.push_str(&format!(" ×{scale} volume"));
            }
            add(&name, HeldOut, build(&day, |_| true, 0));
        }
    }
    // Reference: the sample day and its whole-people copies (they hold half A).
    add("sample day", Reference, build(sample, |_| true, 0));
    add("no celebrity", Reference, build(sample, |t| !celeb(t), 0));
    add("sample +3 h", Reference, build(sample, |_| true, 3 * H));
    add("sample −3 h", Reference, build(sample, |_| true, -3 * H));
    add(
        "1/2 of receivers",
        Reference,
        build(sample, |t| hash(&t.user, 7).is_multiple_of(2), 0),
    );
    add(
        "1/4 of receivers",
        Reference,
        build(sample, |t| hash(&t.user, 9).is_multiple_of(4), 0),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};

    const T0: i64 = 1_501_545_600;

    #[test]
    fn halves_partition_people_and_held_out_splits_hold_no_training_people() {
        let mut day = Vec::new();
        for u in 0..300 {
            day.push(Tour::named_by_id(
                T0 + 36_000 + u,
                &format!("u{u}"),
                "celeb",
            ));
            day.push(Tour::named_by_id(
                T0 + 50_000 + u,
                &format!("u{u}"),
                &format!("f{}", u % 40),
            ));
        }
        assert_eq!(celebrities(&day), HashSet::from(["celeb".to_owned()]));
        let model = ArrivalModel::fit(&day, CELEBRITY_FAN_OUT);
        let splits = all(&day, model.as_ref());
        let training: HashSet<&str> = splits
            .iter()
            .filter(|s| s.role == Role::Training && s.name.starts_with("half A"))
            .flat_map(|s| s.data.people.iter().map(|p| &**p))
            .collect();
        assert!(!training.is_empty());
        for s in splits.iter().filter(|s| s.role == Role::HeldOut) {
            assert!(!s.data.is_empty(), "{}", s.name);
            for p in s.data.people.iter() {
                assert!(!training.contains(&**p), "{} holds {p}", s.name);
            }
        }
        let rows = |name: &str| {
            splits
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.data.len())
                .expect(name)
        };
        assert_eq!(rows("half A") + rows("half B"), day.len());
        assert_eq!(rows("no celebrity"), 300);
    }

    #[test]
    fn score_is_one_when_every_tour_can_go_at_once() {
        // Up to the cap every tour goes at once, as the optimum does.
        let day: Vec<Tour> = (0..3)
            .map(|i| Tour::named_by_id(T0 + 3600 * (8 + i), "u", "f"))
            .collect();
        let mut cfg = BundlingConfig::default();
        cfg.weights.bias = 50.0;
        let d = build(&day, |_| true, 0);
        let s = score(&d, &LogisticRanker::new(&cfg));
        assert_eq!(s.cap_violations, 0);
        assert!(s.ratio <= 1.0, "{s:?}");
    }
}
