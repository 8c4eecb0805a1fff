//! `herald-worker bundle --fit`: learns the ranker's weights from a file by direct
//! search on the replay itself (the figure of merit is the average delay, so that is
//! what is minimised, under the same cap and the same state machine).
//!
//! To keep the result general, people are split by a hash of their id: the search
//! sees only the training half and the other half is reported as a hold-out. The
//! search is a coordinate descent with shrinking steps over a handful of weights
//! and the prior, each kept within its sign constraint.

use crate::replay::{total_delay, Dataset};
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use rand::{Rng, SeedableRng};

/// The outcome of a fit.
#[derive(Debug, Clone)]
pub struct Fit {
    pub config: BundlingConfig,
    /// Average delay (s) on the training and hold-out halves, before and after.
    pub train_before: f64,
    pub train_after: f64,
    pub holdout_before: f64,
    pub holdout_after: f64,
    pub evaluations: u32,
}

/// Stable 64-bit FNV-1a: the split must not change between runs or platforms.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a person belongs to the training half.
pub fn in_training(id: &str) -> bool {
    fnv(id).is_multiple_of(2)
}

fn avg(data: &Dataset, cfg: &BundlingConfig) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    total_delay(data, &LogisticRanker::new(cfg)) as f64 / data.len() as f64
}

/// Accessors for the searched parameters: (name, get, set, lower, upper).
type Param = (
    &'static str,
    fn(&BundlingConfig) -> f64,
    fn(&mut BundlingConfig, f64),
    f64,
    f64,
);

const PARAMS: [Param; 17] = [
    (
        "friends.session",
        |c| c.friends.session,
        |c, v| c.friends.session = v,
        0.0,
        5.0,
    ),
    (
        "spare_sends",
        |c| c.weights.spare_sends,
        |c, v| c.weights.spare_sends = v,
        -10.0,
        10.0,
    ),
    (
        "last_send",
        |c| c.weights.last_send,
        |c, v| c.weights.last_send = v,
        -10.0,
        0.0,
    ),
    (
        "bias",
        |c| c.weights.bias,
        |c, v| c.weights.bias = v,
        -20.0,
        20.0,
    ),
    (
        "tours",
        |c| c.weights.tours,
        |c, v| c.weights.tours = v,
        -10.0,
        10.0,
    ),
    (
        "sends_left",
        |c| c.weights.sends_left,
        |c, v| c.weights.sends_left = v,
        -10.0,
        10.0,
    ),
    (
        "expected_more",
        |c| c.weights.expected_more,
        |c, v| c.weights.expected_more = v,
        -10.0,
        0.0,
    ),
    (
        "since_first",
        |c| c.weights.since_first,
        |c, v| c.weights.since_first = v,
        0.0,
        10.0,
    ),
    (
        "since_last",
        |c| c.weights.since_last,
        |c, v| c.weights.since_last = v,
        0.0,
        10.0,
    ),
    (
        "sent_today",
        |c| c.weights.sent_today,
        |c, v| c.weights.sent_today = v,
        -10.0,
        10.0,
    ),
    (
        "span",
        |c| c.weights.span,
        |c, v| c.weights.span = v,
        -10.0,
        10.0,
    ),
    (
        "time_left",
        |c| c.weights.time_left,
        |c, v| c.weights.time_left = v,
        -10.0,
        0.0,
    ),
    (
        "first_of_day",
        |c| c.weights.first_of_day,
        |c, v| c.weights.first_of_day = v,
        -10.0,
        10.0,
    ),
    (
        "friends.per_friend",
        |c| c.friends.per_friend,
        |c, v| c.friends.per_friend = v,
        -0.95,
        10.0,
    ),
    (
        "friends.count_power",
        |c| c.friends.count_power,
        |c, v| c.friends.count_power = v,
        0.0,
        1.0,
    ),
    (
        "prior.shape",
        |c| c.prior.shape,
        |c, v| c.prior.shape = v,
        0.01,
        20.0,
    ),
    (
        "prior.rate",
        |c| c.prior.rate,
        |c, v| c.prior.rate = v,
        0.005,
        5.0,
    ),
];

/// Coordinate descent with shrinking steps.
fn descend(
    best: &mut BundlingConfig,
    best_val: &mut f64,
    rounds: u32,
    frozen: &[&str],
    eval: &mut dyn FnMut(&BundlingConfig) -> f64,
) {
    let mut step: f64 = 1.0;
    for _ in 0..rounds {
        let mut improved = false;
        for (name, get, set, lo, hi) in PARAMS {
            if frozen.iter().any(|f| name.starts_with(f)) {
                continue;
            }
            for dir in [1.0f64, -1.0] {
                let mut cand = best.clone();
                let cur = get(&cand);
                // Prior parameters move multiplicatively (they are scales).
                let next = if lo > 0.0 {
                    cur * (1.0 + step).powf(dir)
                } else {
                    cur + dir * step
                };
                set(&mut cand, next.clamp(lo, hi));
                if cand.validate().is_err() || get(&cand) == cur {
                    continue;
                }
                let v = eval(&cand);
                if v < *best_val - 1e-9 {
                    *best_val = v;
                    *best = cand;
                    improved = true;
                    break;
                }
            }
        }
        if !improved {
            step /= 2.0;
            if step < 0.01 {
                break;
            }
        }
    }
}

/// Fits from `start` on `data` (sorted). `rounds` bounds the work.
pub fn fit(data: &Dataset, start: &BundlingConfig, rounds: u32) -> Fit {
    let train = data.subset(in_training);
    let hold = data.subset(|id| !in_training(id));
    let mut evaluations = 0;
    let train_before = avg(&train, start);
    let best = search(start, rounds, &[], &mut evaluations, &mut |c| {
        avg(&train, c)
    });
    Fit {
        holdout_before: avg(&hold, start),
        holdout_after: avg(&hold, &best),
        train_after: avg(&train, &best),
        config: best,
        train_before,
        evaluations,
    }
}

/// Fits from `start` on several training sets at once, minimising the sum over the
/// sets of ln(total delay): every set weighs the same whatever its size, so one
/// crowd (say a celebrity's receivers) cannot buy a gain with a loss elsewhere.
/// Parameters whose name starts with one of `frozen` keep their starting value.
pub fn fit_sets(
    sets: &[Dataset],
    start: &BundlingConfig,
    rounds: u32,
    frozen: &[&str],
) -> BundlingConfig {
    let mut evaluations = 0;
    search(start, rounds, frozen, &mut evaluations, &mut |c| {
        let r = LogisticRanker::new(c);
        sets.iter()
            .map(|d| (total_delay(d, &r).max(1) as f64).ln())
            .sum()
    })
}

/// Coordinate descent, random restarts around the best point, descent again.
fn search(
    start: &BundlingConfig,
    rounds: u32,
    frozen: &[&str],
    evaluations: &mut u32,
    objective: &mut dyn FnMut(&BundlingConfig) -> f64,
) -> BundlingConfig {
    let mut best = start.clone();
    let mut best_val = objective(&best);
    *evaluations += 1;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0000);
    let mut eval = |c: &BundlingConfig| {
        *evaluations += 1;
        objective(c)
    };
    descend(&mut best, &mut best_val, rounds, frozen, &mut eval);
    // Random restarts around the best point: coordinate descent alone stalls on the
    // plateaus a threshold rule makes (small weight changes often change nothing).
    for _ in 0..rounds * 10 {
        let mut cand = best.clone();
        for (name, get, set, lo, hi) in PARAMS {
            if frozen.iter().any(|f| name.starts_with(f)) {
                continue;
            }
            if rng.random_range(0.0..1.0) < 0.35 {
                let cur = get(&cand);
                let next = if lo > 0.0 {
                    cur * rng.random_range(0.5f64..2.0)
                } else {
                    cur + rng.random_range(-1.0f64..1.0) * (0.25 + cur.abs() * 0.5)
                };
                set(&mut cand, next.clamp(lo, hi));
            }
        }
        if cand.validate().is_err() {
            continue;
        }
        let v = eval(&cand);
        if v < best_val - 1e-9 {
            best_val = v;
            best = cand;
        }
    }
    descend(&mut best, &mut best_val, rounds, frozen, &mut eval);
    best
}

/// Fits from `start` on several training sets at once, judged by the ratio to each
/// set's optimum: the objective is the mean of ln(ratio) plus the largest ln(ratio),
/// so a rule that is good on every set beats one that is best on most of them.
/// Parameters whose name starts with one of `frozen` keep their starting value.
pub fn fit_ratios(
    sets: &[Dataset],
    start: &BundlingConfig,
    rounds: u32,
    frozen: &[&str],
) -> BundlingConfig {
    let optima: Vec<f64> = sets
        .iter()
        .map(|d| crate::splits::optimum_total(d, start.max_per_day).max(1) as f64)
        .collect();
    fit_by(start, rounds, frozen, &mut |c| {
        let r = LogisticRanker::new(c);
        let logs: Vec<f64> = sets
            .iter()
            .zip(&optima)
            .map(|(d, opt)| (total_delay(d, &r).max(1) as f64 / opt).ln())
            .collect();
        mean_plus_worst(&logs)
    })
}

/// The objective the lab's fits minimise over training sets: the mean of the log
/// ratios plus the largest, so a rule good on every set beats one best on most.
pub fn mean_plus_worst(logs: &[f64]) -> f64 {
    let worst = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    logs.iter().sum::<f64>() / logs.len().max(1) as f64 + worst
}

/// The fitters' search (coordinate descent, random restarts, descent again) on any
/// objective: the lab fits the rule for forecasts it supplies from outside
/// ([`crate::forecast`]). Parameters whose name starts with one of `frozen` keep
/// their starting value.
pub fn fit_by(
    start: &BundlingConfig,
    rounds: u32,
    frozen: &[&str],
    objective: &mut dyn FnMut(&BundlingConfig) -> f64,
) -> BundlingConfig {
    let mut evaluations = 0;
    search(start, rounds, frozen, &mut evaluations, objective)
}
