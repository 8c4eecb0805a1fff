//! The offline optimum: the least total delay any schedule can reach with full
//! knowledge of the future, at most `cap` bundles per person per calendar day.
//!
//! Given the send instants, each tour goes with the first send at or after it, so a
//! schedule is just a set of instants. Only two kinds of instant can be optimal: a tour's
//! timestamp (moving a send earlier until it hits a tour loses nothing) or a day's
//! 00:00:00 (moving it earlier would cross into a day whose cap may be spent). The
//! dynamic programme runs over those candidates: `best[j][u]` is the least delay of the
//! tours up to candidate `j` when the last send is at `j` and is the `u`-th of its day.
//!
//! The predecessor search is cut short without losing the optimum: an optimal schedule
//! sends at least once on every day that has a tour (otherwise adding a send at that
//! day's last tour is allowed and strictly better), so the send before one on day `B`
//! is never earlier than the start of the last day before `B` that has a tour.

use herald_core::bundle::{day_of, next_day_start, UnixSecs, DAY};

/// An optimal schedule for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Sum over tours of (send − tour), seconds.
    pub total_delay: i64,
    /// Send instants, increasing.
    pub sends: Vec<UnixSecs>,
}

/// The optimal plan for one person's tours (any order; duplicates allowed).
pub fn person_optimum(tours: &[UnixSecs], cap: u32) -> Plan {
    if tours.is_empty() {
        return Plan {
            total_delay: 0,
            sends: Vec::new(),
        };
    }
    let mut ts = tours.to_vec();
    if !ts.windows(2).all(|w| w[0] <= w[1]) {
        ts.sort_unstable();
    }
    let cap = cap.max(1) as usize;
    let n = ts.len();
    // Times relative to the first day's start keep the prefix sums small.
    let base = day_of(ts[0]) * DAY;
    let mut cands: Vec<UnixSecs> = Vec::with_capacity(2 * n);
    cands.extend(ts.iter().copied());
    cands.extend(ts.iter().map(|&t| next_day_start(t)));
    cands.sort_unstable();
    cands.dedup();
    let mut pre = Vec::with_capacity(n + 1);
    pre.push(0i64);
    for &t in &ts {
        pre.push(pre[pre.len() - 1] + (t - base));
    }
    // cnt[j]: tours at or before candidate j.
    let cnt: Vec<usize> = cands
        .iter()
        .map(|&c| ts.partition_point(|&t| t <= c))
        .collect();
    const INF: i64 = i64::MAX;
    let m = cands.len();
    let mut best = vec![INF; m * cap];
    // Parent of (j, u): (i, u') or usize::MAX for "first send".
    let mut parent = vec![(usize::MAX, 0usize); m * cap];
    let cost = |from: usize, to: usize, at: UnixSecs| -> i64 {
        (to - from) as i64 * (at - base) - (pre[to] - pre[from])
    };
    let mut answer = (INF, usize::MAX, 0usize);
    for j in 0..m {
        let kj = cnt[j];
        if kj == 0 {
            continue;
        }
        let c = cands[j];
        let day = day_of(c);
        // Lower bound on the previous send (see the module docs).
        let before_day = ts.partition_point(|&t| t < day * DAY);
        let lb = if before_day == 0 {
            0
        } else {
            let prev_day_start = day_of(ts[before_day - 1]) * DAY;
            cands.partition_point(|&x| x < prev_day_start)
        };
        let row = j * cap;
        best[row] = cost(0, kj, c);
        for i in lb..j {
            let ki = cnt[i];
            if ki == 0 || ki == kj {
                continue; // nothing sent before, or an empty bundle
            }
            let add = cost(ki, kj, c);
            let same_day = day_of(cands[i]) == day;
            for u in 0..cap {
                let v = best[i * cap + u];
                if v == INF {
                    continue;
                }
                let nu = if same_day { u + 1 } else { 0 };
                if nu < cap && v + add < best[row + nu] {
                    best[row + nu] = v + add;
                    parent[row + nu] = (i, u);
                }
            }
        }
        if kj == n {
            for u in 0..cap {
                if best[row + u] < answer.0 {
                    answer = (best[row + u], j, u);
                }
            }
        }
    }
    let mut sends = Vec::new();
    let (total, mut j, mut u) = answer;
    while j != usize::MAX {
        sends.push(cands[j]);
        let (pj, pu) = parent[j * cap + u];
        j = pj;
        u = pu;
    }
    sends.reverse();
    Plan {
        total_delay: total,
        sends,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const T0: i64 = 1_501_545_600;

    /// Least delay over every subset of `instants` that respects the cap and covers
    /// every tour: no candidate-set lemma assumed beyond `instants` itself.
    fn brute(tours: &[i64], instants: &[i64], cap: usize) -> i64 {
        let last = *tours.iter().max().expect("tours");
        let mut best = i64::MAX;
        for mask in 1u32..(1 << instants.len()) {
            let sends: Vec<i64> = (0..instants.len())
                .filter(|b| mask >> b & 1 == 1)
                .map(|b| instants[b])
                .collect();
            if *sends.iter().max().expect("non-empty") < last {
                continue;
            }
            let mut per_day = std::collections::HashMap::new();
            if sends.iter().any(|&s| {
                let c = per_day.entry(day_of(s)).or_insert(0);
                *c += 1;
                *c > cap
            }) {
                continue;
            }
            let total: i64 = tours
                .iter()
                .map(|&t| sends.iter().filter(|&&s| s >= t).min().expect("covered") - t)
                .sum();
            best = best.min(total);
        }
        best
    }

    #[test]
    fn matches_brute_force_on_small_random_cases() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..300 {
            let cap = rng.random_range(1..=3usize);
            let n = rng.random_range(1..=7usize);
            let days = rng.random_range(1..=3i64);
            // Coarse times so that ties and same-instant tours happen too.
            let tours: Vec<i64> = (0..n)
                .map(|_| T0 + rng.random_range(0..days * 24) * 3600 - rng.random_range(0..2) * 1800)
                .collect();
            let mut instants: Vec<i64> = tours.clone();
            instants.extend(tours.iter().map(|&t| next_day_start(t)));
            // Extra arbitrary instants: the optimum must not miss a better one.
            for _ in 0..4 {
                instants.push(T0 + rng.random_range(0..(days + 1) * 24 * 4) * 900);
            }
            instants.sort_unstable();
            instants.dedup();
            instants.truncate(17);
            let last = *tours.iter().max().expect("tours");
            if !instants.iter().any(|&s| s >= last) {
                instants.push(last);
            }
            let plan = person_optimum(&tours, cap as u32);
            assert_eq!(
                plan.total_delay,
                brute(&tours, &instants, cap),
                "case {case}: {tours:?}"
            );
            // The plan itself is feasible and costs what it says.
            let mut per_day = std::collections::HashMap::new();
            for &s in &plan.sends {
                *per_day.entry(day_of(s)).or_insert(0usize) += 1;
            }
            assert!(per_day.values().all(|&c| c <= cap));
            let total: i64 = tours
                .iter()
                .map(|&t| {
                    plan.sends
                        .iter()
                        .filter(|&&s| s >= t)
                        .min()
                        .expect("covered")
                        - t
                })
                .sum();
            assert_eq!(total, plan.total_delay);
        }
    }

    #[test]
    fn sending_at_the_next_day_start_beats_waiting() {
        // Five tours ten minutes apart ending 30 s before midnight, cap 4: merging two
        // costs 600 s, sending the last at 00:00:00 (a fresh day's send) only 30 s.
        let tours: Vec<i64> = (0..5).map(|i| T0 + DAY - 30 - (4 - i) * 600).collect();
        let plan = person_optimum(&tours, 4);
        assert_eq!(plan.sends.len(), 5);
        assert_eq!(*plan.sends.last().expect("sends"), T0 + DAY);
        assert_eq!(plan.total_delay, 30);
    }

    #[test]
    fn few_tours_cost_nothing() {
        let tours = [T0 + 10, T0 + 20, T0 + 5000, T0 + DAY + 7];
        assert_eq!(person_optimum(&tours, 4).total_delay, 0);
        assert_eq!(person_optimum(&[], 4).total_delay, 0);
    }
}
