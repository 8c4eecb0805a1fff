//! Bundling lab: scores a ranker on a komoot file and on perturbed copies of it, so a
//! change can be judged for generality and not only on the one sample day.
//!
//! ```text
//! cargo run --release -p herald-bundle-lab --example bundle_lab -- FILE [key=value ...]
//!   config=PATH               the bundling.yml to start from (default config/bundling.yml)
//!   first=                    weights.first_of_day
//!   count_power= per_friend=  friends.* (see config/bundling.yml)
//!   lfit=ROUNDS               refit as `herald-worker bundle --fit` does (half A),
//!                             print the YAML, then score it
//!   mfit=ROUNDS               refit on half A with and without the celebrity together
//!                             (mset=noc: without only); frozen=a,b keeps parameters
//!                             whose names start so (e.g. frozen=friends)
//!   breakdown=1               average delays by kind of person
//! ```
//!
//! Variants: `full`; `half_A`/`half_B` (people split by a hash of their id); `no_celeb`
//! (friends with more than 100 receivers removed: the sample's one friend whose 10
//! tours go to 422 people); their halves; the day shifted by ±3 h; receivers
//! subsampled to 1/2 and 1/4 (other hashes). Each prints the ratio of the average delay
//! to the offline optimum's; `geo` is the geometric mean over the perturbed variants.

use herald_bundle_lab::komoot::{read_tours, TourRef};
use herald_bundle_lab::optimum::person_optimum;
use herald_bundle_lab::replay::{replay_with, total_delay, Dataset};
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::Ranker;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::time::Instant;

struct Row {
    at: i64,
    user: String,
    friend: String,
    name: String,
}

/// FNV-1a of the id, remixed by `seed` (0: the split `--fit` uses).
fn hash(s: &str, seed: u64) -> u64 {
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

fn build(rows: &[Row], keep: impl Fn(&Row) -> bool, shift: i64) -> Dataset {
    let mut d = Dataset::new();
    for r in rows.iter().filter(|r| keep(r)) {
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

fn score(d: &Dataset, r: &dyn Ranker) -> f64 {
    let opt: i64 = d
        .per_person()
        .iter()
        .map(|ts| person_optimum(ts, r.max_per_day()).total_delay)
        .sum();
    total_delay(d, r) as f64 / opt.max(1) as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bundle_lab FILE [key=value ...]")?;
    let mut opts = HashMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or(format!("{a}: expected key=value"))?;
        opts.insert(k.to_owned(), v.to_owned());
    }
    let num = |k: &str| -> Result<Option<f64>, Box<dyn Error>> {
        Ok(match opts.get(k) {
            Some(v) => Some(v.parse::<f64>().map_err(|e| format!("{k}={v}: {e}"))?),
            None => None,
        })
    };
    let config = opts
        .get("config")
        .cloned()
        .unwrap_or_else(|| "config/bundling.yml".into());
    let mut cfg = BundlingConfig::from_yaml(&std::fs::read_to_string(&config)?)?;
    if let Some(x) = num("first")? {
        cfg.weights.first_of_day = x;
    }
    if let Some(x) = num("per_friend")? {
        cfg.friends.per_friend = x;
    }
    if let Some(x) = num("count_power")? {
        cfg.friends.count_power = x;
    }
    cfg.validate().map_err(|e| {
        let problems: Vec<String> = e.iter().map(ToString::to_string).collect();
        problems.join("; ")
    })?;

    let mut rows = Vec::new();
    read_tours(
        std::fs::File::open(&path)?,
        |r| {
            rows.push(Row {
                at: r.at,
                user: r.user_id.into(),
                friend: r.friend_id.into(),
                name: r.friend_name.into(),
            })
        },
        |_| {},
    )?;
    let mut per_friend = HashMap::<&str, usize>::new();
    for r in &rows {
        *per_friend.entry(&r.friend).or_default() += 1;
    }
    let celeb = |r: &Row| per_friend.get(r.friend.as_str()).copied().unwrap_or(0) > 100;
    let celeb_receivers: HashSet<&str> = rows
        .iter()
        .filter(|r| celeb(r))
        .map(|r| r.user.as_str())
        .collect();
    let half = |r: &Row| hash(&r.user, 0).is_multiple_of(2);

    if let Some(rounds) = num("lfit")? {
        let d = build(&rows, |_| true, 0);
        let f = herald_bundle_lab::fit::fit(&d, &cfg, rounds as u32);
        eprintln!(
            "lfit: train {:.1} -> {:.1}, held-out {:.1} -> {:.1} ({} evals)",
            f.train_before, f.train_after, f.holdout_before, f.holdout_after, f.evaluations
        );
        println!("{}", f.config.to_yaml());
        cfg = f.config;
    }
    if let Some(rounds) = num("mfit")? {
        // Train on half A of everyone and half A without the celebrity, together.
        let sets = if opts.get("mset").is_some_and(|v| v == "noc") {
            vec![build(&rows, |r| !celeb(r) && half(r), 0)]
        } else {
            vec![
                build(&rows, half, 0),
                build(&rows, |r| !celeb(r) && half(r), 0),
            ]
        };
        let frozen: Vec<&str> = opts
            .get("frozen")
            .map(|v| v.split(',').collect())
            .unwrap_or_default();
        cfg = herald_bundle_lab::fit::fit_sets(&sets, &cfg, rounds as u32, &frozen);
        println!("{}", cfg.to_yaml());
    }
    let t0 = Instant::now();
    let ranker: Box<dyn Ranker> = Box::new(LogisticRanker::new(&cfg));
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;

    if opts.contains_key("breakdown") {
        let d = build(&rows, |_| true, 0);
        let per = d.per_person();
        let kind = |p: usize| {
            let n = per[p].len();
            let c = if n >= 10 {
                "10+"
            } else if n >= 4 {
                "4-9"
            } else {
                "1-3"
            };
            if celeb_receivers.contains(&*d.people[p]) {
                format!("celeb-receiver {c}")
            } else {
                format!("other {c}")
            }
        };
        let mut acc = BTreeMap::<String, [f64; 3]>::new();
        replay_with(&d, ranker.as_ref(), |s, rows| {
            let total: i64 = rows.map(|r| s.sent_at - d.at[r]).sum();
            acc.entry(kind(s.person as usize)).or_default()[0] += total as f64;
        });
        for (p, ts) in per.iter().enumerate() {
            let e = acc.entry(kind(p)).or_default();
            e[1] += person_optimum(ts, ranker.max_per_day()).total_delay as f64;
            e[2] += ts.len() as f64;
        }
        println!(
            "{:<20} {:>6} {:>8} {:>8}",
            "people", "tours", "avg (s)", "optimum"
        );
        for (k, [ours, opt, n]) in &acc {
            println!("{k:<20} {n:>6} {:>8.0} {:>8.0}", ours / n, opt / n);
        }
        return Ok(());
    }

    let variants: Vec<(&str, Dataset)> = vec![
        ("full", build(&rows, |_| true, 0)),
        ("half_A", build(&rows, half, 0)),
        ("half_B", build(&rows, |r| !half(r), 0)),
        ("no_celeb", build(&rows, |r| !celeb(r), 0)),
        ("noc_A", build(&rows, |r| !celeb(r) && half(r), 0)),
        ("noc_B", build(&rows, |r| !celeb(r) && !half(r), 0)),
        ("shift+3h", build(&rows, |_| true, 3 * 3600)),
        ("shift-3h", build(&rows, |_| true, -3 * 3600)),
        ("noc+3h", build(&rows, |r| !celeb(r), 3 * 3600)),
        ("noc-3h", build(&rows, |r| !celeb(r), -3 * 3600)),
        (
            "sub1/2",
            build(&rows, |r| hash(&r.user, 7).is_multiple_of(2), 0),
        ),
        (
            "sub1/4",
            build(&rows, |r| hash(&r.user, 9).is_multiple_of(4), 0),
        ),
    ];
    let mut line = String::new();
    let mut log_sum = 0.0;
    for (name, d) in &variants {
        let s = score(d, ranker.as_ref());
        if *name != "full" {
            log_sum += s.ln();
        }
        line.push_str(&format!("{name}={s:.3} "));
    }
    let geo = (log_sum / (variants.len() - 1) as f64).exp();
    println!("{line}| geo={geo:.3} build={build_ms:.0}ms");
    Ok(())
}
