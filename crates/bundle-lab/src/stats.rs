//! Statistics of a replay (contract §8): delays, bundles per person-day, cap violations,
//! and the comparison with the offline optimum.

use crate::replay::BundleOut;
use herald_core::bundle::day_of;

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub tours: u64,
    pub people: u64,
    pub bundles: u64,
    pub tours_per_bundle: f64,
    pub delay_avg: f64,
    pub delay_p50: i64,
    pub delay_p95: i64,
    pub delay_max: i64,
    /// `histogram[k]`: person-days with exactly k bundles (k ≥ 1); the last entry
    /// counts every person-day above the cap.
    pub per_person_day: Vec<u64>,
    pub cap_violations: u64,
    pub optimum_avg_delay: f64,
    /// avg_delay / optimum_avg_delay; 1.0 when both are 0.
    pub ratio: f64,
    pub bad_rows: u64,
}

/// Nearest-rank percentile, by selection (linear time; reorders `data`).
fn percentile(data: &mut [i64], q: f64) -> i64 {
    if data.is_empty() {
        return 0;
    }
    let rank = ((q * data.len() as f64).ceil() as usize).clamp(1, data.len());
    *data.select_nth_unstable(rank - 1).1
}

/// Computes the statistics. `delays` is consumed (reordered);
/// `optimum_total` is the optimum's total delay over the same tours.
pub fn compute(
    bundles: &[BundleOut],
    mut delays: Vec<i64>,
    people: u64,
    max_per_day: u32,
    optimum_total: i64,
    bad_rows: u64,
) -> Stats {
    let tours = delays.len() as u64;
    let total: i128 = delays.iter().map(|&d| i128::from(d)).sum();
    let avg = if tours == 0 {
        0.0
    } else {
        total as f64 / tours as f64
    };
    let opt_avg = if tours == 0 {
        0.0
    } else {
        optimum_total as f64 / tours as f64
    };
    let cap = max_per_day as usize;
    let mut hist = vec![0u64; cap + 2];
    let mut violations = 0;
    let mut count_day = |c: usize| {
        if c > cap {
            violations += 1;
            hist[cap + 1] += 1;
        } else if c > 0 {
            hist[c] += 1;
        }
    };
    // Bundles per person-day. In send order (how the replay emits them) each person's
    // days only move forward: one pass with a running (day, count) per person.
    // Otherwise sort the (person, day) keys and count the runs.
    if bundles.is_sorted_by_key(|b| b.sent_at) {
        let people = bundles
            .iter()
            .map(|b| b.person as usize + 1)
            .max()
            .unwrap_or(0);
        let mut run: Vec<(i64, u32)> = vec![(i64::MIN, 0); people];
        for b in bundles {
            let (day, n) = &mut run[b.person as usize];
            let d = day_of(b.sent_at);
            if *day != d {
                count_day(*n as usize);
                (*day, *n) = (d, 0);
            }
            *n += 1;
        }
        for (_, n) in run {
            count_day(n as usize);
        }
    } else {
        let mut keys: Vec<(u32, i64)> = bundles
            .iter()
            .map(|b| (b.person, day_of(b.sent_at)))
            .collect();
        keys.sort_unstable();
        for run in keys.chunk_by(|a, b| a == b) {
            count_day(run.len());
        }
    }
    let ratio = if opt_avg > 0.0 {
        avg / opt_avg
    } else if avg == 0.0 {
        1.0
    } else {
        f64::INFINITY
    };
    Stats {
        tours,
        people,
        bundles: bundles.len() as u64,
        tours_per_bundle: if bundles.is_empty() {
            0.0
        } else {
            tours as f64 / bundles.len() as f64
        },
        delay_avg: avg,
        delay_p50: percentile(&mut delays, 0.50),
        delay_p95: percentile(&mut delays, 0.95),
        delay_max: delays.iter().copied().max().unwrap_or(0),
        per_person_day: hist,
        cap_violations: violations,
        optimum_avg_delay: opt_avg,
        ratio,
        bad_rows,
    }
}

impl Stats {
    /// `(metric, value)` pairs, in the order the CSV and the summary show them.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("tours".into(), self.tours.to_string()),
            ("people".into(), self.people.to_string()),
            ("bundles".into(), self.bundles.to_string()),
            (
                "tours_per_bundle".into(),
                format!("{:.3}", self.tours_per_bundle),
            ),
            ("delay_avg_s".into(), format!("{:.1}", self.delay_avg)),
            ("delay_p50_s".into(), self.delay_p50.to_string()),
            ("delay_p95_s".into(), self.delay_p95.to_string()),
            ("delay_max_s".into(), self.delay_max.to_string()),
        ];
        let cap = self.per_person_day.len().saturating_sub(2);
        for k in 1..=cap {
            v.push((
                format!("person_days_with_{k}_bundles"),
                self.per_person_day[k].to_string(),
            ));
        }
        v.push((
            format!("person_days_over_{cap}_bundles"),
            self.per_person_day
                .get(cap + 1)
                .copied()
                .unwrap_or(0)
                .to_string(),
        ));
        v.push(("cap_violations".into(), self.cap_violations.to_string()));
        v.push((
            "optimum_avg_delay_s".into(),
            format!("{:.1}", self.optimum_avg_delay),
        ));
        v.push(("ratio_to_optimum".into(), format!("{:.3}", self.ratio)));
        v.push(("bad_rows".into(), self.bad_rows.to_string()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(person: u32, sent_at: i64) -> BundleOut {
        BundleOut {
            sent_at,
            first_at: sent_at,
            tours: 1,
            person,
            first_row: 0,
        }
    }

    #[test]
    fn counts_person_days_and_violations() {
        let day = 86_400;
        let bundles = vec![b(0, 10), b(0, 20), b(0, 30), b(1, 5), b(1, day + 5)];
        let s = compute(&bundles, vec![0, 10, 20, 30, 1000], 2, 2, 500, 0);
        assert_eq!(s.cap_violations, 1);
        assert_eq!(s.per_person_day, vec![0, 2, 0, 1]);
        assert_eq!(s.delay_p50, 20);
        assert_eq!(s.delay_max, 1000);
        // Any order of the bundles counts the same.
        let mut shuffled = bundles.clone();
        shuffled.reverse();
        let t = compute(&shuffled, vec![0, 10, 20, 30, 1000], 2, 2, 500, 0);
        assert_eq!(t.per_person_day, s.per_person_day);
        assert_eq!(t.cap_violations, 1);
        assert!((s.delay_avg - 212.0).abs() < 1e-9);
        assert!((s.ratio - 212.0 / 100.0).abs() < 1e-9);
        assert_eq!(
            s.rows()
                .iter()
                .filter(|(k, _)| k == "cap_violations")
                .count(),
            1
        );
    }
}
