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
//!   flatten=A last_send=W     mix the hour profile with a flat one (A = 1: flat);
//!                             weights.last_send
//!   rotate=H                  move the hour profile by H whole hours (rotate=3 is
//!                             the true shift of the +3 h splits: an oracle)
//!   bias=                     weights.bias
//!   breakdown=1               average delays by kind of person, and the part of
//!                             them spent waiting for midnight (shift=SECONDS,
//!                             seed=N for a synthetic day, trace=USER prints one
//!                             person's sends)
//!   fit=ROUNDS                refit on the training splits only (half A of the
//!                             people at −2 h, 0, +2 h, with and without the
//!                             celebrity; synthetic days 1–4), minimising the mean
//!                             plus the worst log ratio; frozen=a,b keeps parameters
//!                             whose names start so (e.g. frozen=friends)
//!                             (train=noc: only the splits without the celebrity)
//!                             seeds=N adds synthetic training days 5..=N
//!   training=1                list the training splits in the table too
//!   oracle=1                  add a column: the same rule told each person's true
//!                             number of further tours today (a perfect forecast);
//!                             ofit=ROUNDS first refits its weights for that forecast
//!                             on the training splits (mean plus worst log ratio)
//!   posterior=1               add a column: the same rule told the arrival model's own
//!                             forecast of each person's further tours (posterior=2:
//!                             also each synthetic person's weight); ofit= refits it
//!   hindsight=SAMPLES         add a column: hindsight optimisation on the model's
//!                             posterior, SAMPLES futures per decision (posterior=2:
//!                             knowing each synthetic person's weight; tick=SECONDS
//!                             between decisions while a bundle waits, default 300)
//!   history=N                 on the synthetic splits only: the rule with a prior of
//!                             each person's own from N earlier synthetic days
//!                             (seeds 2000..), worth hweight= days (default 0.5);
//!                             hfit=ROUNDS first refits the rule for it on the
//!                             synthetic training days
//!   write=DIR                 also write the synthetic days as komoot CSV files
//!   fresh=N                   only score N synthetic days with seeds 1000.. (used by
//!                             no split: a check after choosing by the table)
//! ```
//!
//! Prints one table of every split (see `herald_bundle_lab::splits`): the ratio of the
//! average delay to the exact offline optimum's, and the cap violations. The held-out
//! splits are what a change is judged by; the summary line gives their worst and
//! geometric mean.

use herald_bundle_lab::history::{self, History};
use herald_bundle_lab::komoot::read_tours;
use herald_bundle_lab::optimum::person_optimum;
use herald_bundle_lab::posterior::{self, Posterior};
use herald_bundle_lab::replay::{replay_with, Dataset};
use herald_bundle_lab::splits::{self, build, celebrities, Role};
use herald_bundle_lab::synth::{ArrivalModel, Draw, Tour};
use herald_bundle_lab::{forecast, hindsight, oracle};
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::Ranker;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::time::Instant;

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
    if let Some(a) = num("flatten")? {
        // Mix the hour profile with a flat one: a = 1 is flat.
        let total: f64 = cfg.hour_profile.iter().sum();
        for x in cfg.hour_profile.iter_mut() {
            *x = (1.0 - a) * *x / total + a / 24.0;
        }
    }
    if let Some(h) = num("rotate")? {
        // The hour profile moved by h whole hours: told a shifted split's true shift,
        // the ranker's day fraction is right for it (an oracle for that split).
        let h = h as i64;
        let p = cfg.hour_profile.clone();
        let hours = p.len() as i64;
        for (i, x) in cfg.hour_profile.iter_mut().enumerate() {
            *x = p[(i as i64 - h).rem_euclid(hours) as usize];
        }
    }
    if let Some(x) = num("session")? {
        cfg.friends.session = x;
    }
    if let Some(x) = num("session_median")? {
        cfg.friends.session_median_s = x;
    }
    if let Some(x) = num("session_spread")? {
        cfg.friends.session_spread = x;
    }
    if let Some(x) = num("last_send")? {
        cfg.weights.last_send = x;
    }
    if let Some(x) = num("bias")? {
        cfg.weights.bias = x;
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
            rows.push(Tour {
                at: r.at,
                user: r.user_id.into(),
                friend: r.friend_id.into(),
                name: r.friend_name.into(),
            })
        },
        |_| {},
    )?;
    let celebs = celebrities(&rows);
    let celeb = |r: &Tour| celebs.contains(&r.friend);
    let celeb_receivers: HashSet<&str> = rows
        .iter()
        .filter(|r| celeb(r))
        .map(|r| r.user.as_str())
        .collect();
    let model = ArrivalModel::fit(&rows, splits::CELEBRITY_FAN_OUT);
    if let (Some(dir), Some(m)) = (opts.get("write"), &model) {
        write_synthetic(dir, m)?;
    }
    let all = splits::all(&rows, model.as_ref());

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
    if let Some(rounds) = num("fit")? {
        let mut sets: Vec<_> = all
            .iter()
            .filter(|s| s.role == Role::Training)
            // train=nocelebrity: only the splits without a dominating friend.
            .filter(|s| {
                opts.get("train").is_none_or(|_| {
                    s.name.contains("no celebrity") || s.name.starts_with("synthetic")
                })
            })
            .map(|s| s.data.clone())
            .collect();
        // seeds=N: synthetic training days 5..=N besides 1–4 (all below the
        // held-out seeds, which start at 101).
        if let (Some(n), Some(m)) = (num("seeds")?, &model) {
            for seed in 5..=(n as u64).min(100) {
                sets.push(build(
                    &m.draw(&Draw {
                        seed,
                        ..Draw::default()
                    }),
                    |_| true,
                    0,
                ));
            }
        }
        let frozen: Vec<&str> = opts
            .get("frozen")
            .map(|v| v.split(',').collect())
            .unwrap_or_default();
        cfg = herald_bundle_lab::fit::fit_ratios(&sets, &cfg, rounds as u32, &frozen);
        println!("{}", cfg.to_yaml());
    }
    let t0 = Instant::now();
    let ranker: Box<dyn Ranker> = Box::new(LogisticRanker::new(&cfg));
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;

    if opts.contains_key("breakdown") {
        let shift = num("shift")?.unwrap_or(0.0) as i64;
        let d = match num("seed")? {
            Some(seed) => match &model {
                Some(m) => build(
                    &m.draw(&Draw {
                        seed: seed as u64,
                        ..Draw::default()
                    }),
                    |_| true,
                    shift,
                ),
                None => return Err("no arrival model".into()),
            },
            None => build(&rows, |_| true, shift),
        };
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
        let mut midnight = BTreeMap::<String, f64>::new();
        let trace = opts.get("trace").cloned().unwrap_or_default();
        replay_with(&d, ranker.as_ref(), |s, rows| {
            if *d.people[s.person as usize] == *trace {
                let hm = |t: i64| {
                    format!(
                        "{:02}:{:02}",
                        t.rem_euclid(86_400) / 3600,
                        t.rem_euclid(3600) / 60
                    )
                };
                eprintln!(
                    "sent {} first {} tours {}",
                    hm(s.sent_at),
                    hm(s.first_at),
                    s.tours
                );
            }
            let total: i64 = rows.map(|r| s.sent_at - d.at[r]).sum();
            acc.entry(kind(s.person as usize)).or_default()[0] += total as f64;
            // The part that waited for midnight because the day's sends were spent.
            if s.sent_at.rem_euclid(86_400) == 0 {
                *midnight.entry(kind(s.person as usize)).or_default() += total as f64;
            }
        });
        for (p, ts) in per.iter().enumerate() {
            let e = acc.entry(kind(p)).or_default();
            e[1] += person_optimum(ts, ranker.max_per_day()).total_delay as f64;
            e[2] += ts.len() as f64;
        }
        println!(
            "{:<20} {:>6} {:>8} {:>10} {:>8}",
            "people", "tours", "avg (s)", "midnight", "optimum"
        );
        for (k, [ours, opt, n]) in &acc {
            let mid = midnight.get(k).copied().unwrap_or(0.0);
            println!(
                "{k:<20} {n:>6} {:>8.0} {:>10.0} {:>8.0}",
                ours / n,
                mid / n,
                opt / n
            );
        }
        return Ok(());
    }

    if let (Some(n), Some(m)) = (num("fresh")?, &model) {
        // Synthetic days with seeds no table row uses: a check after choosing by it.
        let mut line = String::from("fresh synthetic days:");
        let mut ratios = Vec::new();
        for seed in 1000..1000 + n as u64 {
            let d = build(
                &m.draw(&Draw {
                    seed,
                    ..Draw::default()
                }),
                |_| true,
                0,
            );
            let sc = splits::score(&d, ranker.as_ref());
            ratios.push(sc.ratio);
            line.push_str(&format!(" {:.2}", sc.ratio));
        }
        let (_, geo) = worst_and_geometric_mean(&ratios);
        println!("{line} | geometric mean {geo:.3}");
        return Ok(());
    }
    if let (Some(n), Some(m)) = (num("history")?, &model) {
        let weight = num("hweight")?.unwrap_or(0.5);
        return print_history(&all, m, &cfg, n as u64, weight, num("hfit")?);
    }
    let show_training = opts.contains_key("training");
    // An extra column: the rule told a forecast from outside (perfect, or the arrival
    // model's own; ofit= refits its weights for it on the training splits), or
    // hindsight optimisation on the model's posterior.
    let posterior = match (num("posterior")?.or(num("hindsight")?.map(|_| 1.0)), &model) {
        (Some(k), Some(m)) => Some((Posterior::new(m), k >= 2.0)),
        (Some(_), None) => return Err("posterior=: no arrival model".into()),
        _ => None,
    };
    let tick = num("tick")?.map_or(hindsight::TICK, |t| t.max(1.0) as i64);
    let extra: Option<(&str, SplitRatio)> = match (&posterior, num("hindsight")?) {
        (Some((p, weights)), Some(samples)) => Some((
            "hindsight optimisation",
            Box::new(move |d, rule| {
                let settings = hindsight::Settings {
                    samples: samples as usize,
                    tick,
                    weights: *weights,
                };
                hindsight::ratio(d, p, rule.max_per_day(), settings)
            }),
        )),
        (Some((p, weights)), None) => Some((
            "the model's forecast",
            Box::new(move |d, rule| posterior::ratio(d, rule, p, *weights)),
        )),
        (None, _) if opts.contains_key("oracle") => Some(("the oracle", Box::new(oracle::ratio))),
        (None, _) => None,
    };
    println!(
        "| split | role | tours | people | ratio | cap violations |{}",
        if extra.is_some() { " forecast |" } else { "" }
    );
    println!(
        "|---|---|---|---|---|---|{}",
        if extra.is_some() { "---|" } else { "" }
    );
    let mut held = Vec::new();
    let mut held_extra = Vec::new();
    let mut extra_cfg = cfg.clone();
    if let (Some(rounds), Some((_, ratio))) = (num("ofit")?, &extra) {
        let training: Vec<&Dataset> = all
            .iter()
            .filter(|s| s.role == Role::Training)
            .map(|s| &s.data)
            .collect();
        extra_cfg = forecast::fit(&training, &cfg, rounds as u32, ratio);
        println!("{}", extra_cfg.to_yaml());
    }
    let rule = LogisticRanker::new(&extra_cfg);
    for sp in all
        .iter()
        .filter(|s| show_training || s.role != Role::Training)
    {
        let sc = splits::score(&sp.data, ranker.as_ref());
        if sp.role == Role::HeldOut {
            held.push(sc.ratio);
        }
        let with_extra = match &extra {
            Some((_, ratio)) => {
                let r = ratio(&sp.data, &rule);
                if sp.role == Role::HeldOut {
                    held_extra.push(r);
                }
                format!(" {r:.2} |")
            }
            None => String::new(),
        };
        println!(
            "| {} | {} | {} | {} | {:.2} | {} |{with_extra}",
            sp.name,
            sp.role.label(),
            sp.data.len(),
            sp.data.people.len(),
            sc.ratio,
            sc.cap_violations
        );
    }
    if let Some((label, _)) = &extra {
        let (worst, geo) = worst_and_geometric_mean(&held_extra);
        println!("held out with {label}: worst {worst:.3}, geometric mean {geo:.3}");
    }
    let (worst, geo) = worst_and_geometric_mean(&held);
    println!(
        "held out: worst {worst:.3}, geometric mean {geo:.3} over {} splits (build {build_ms:.0} ms, {:.0} ms in all)",
        held.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// `history=N`: the rule with a prior of each person's own from `n` earlier synthetic
/// days, worth `weight` days, on every synthetic split; `hfit=ROUNDS` refits the
/// rule's weights for it on the synthetic training days first.
fn print_history(
    all: &[splits::Split],
    m: &ArrivalModel,
    cfg: &BundlingConfig,
    n: u64,
    weight: f64,
    hfit: Option<f64>,
) -> Result<(), Box<dyn Error>> {
    let history = History::synthetic(m, n, cfg);
    let base = cfg.prior;
    let ratio =
        |d: &Dataset, rule: &LogisticRanker| history::ratio(d, rule, base, &history, weight);
    let synthetic: Vec<&splits::Split> = all
        .iter()
        .filter(|s| s.name.starts_with("synthetic"))
        .collect();
    let refit = match hfit {
        Some(rounds) => {
            // The synthetic training days, and copies of them 2 h early and late as
            // the real training splits have (shifted days have no split of their own).
            const H: i64 = 3600;
            let shifted: Vec<Dataset> = splits::TRAINING_SEEDS
                .iter()
                .flat_map(|&seed| [-2 * H, 2 * H].map(|shift| (seed, shift)))
                .map(|(seed, shift)| {
                    let day = m.draw(&Draw {
                        seed,
                        shift,
                        ..Draw::default()
                    });
                    build(&day, |_| true, 0)
                })
                .collect();
            let training: Vec<&Dataset> = synthetic
                .iter()
                .filter(|s| s.role == Role::Training)
                .map(|s| &s.data)
                .chain(&shifted)
                .collect();
            let c = forecast::fit(&training, cfg, rounds as u32, ratio);
            println!("{}", c.to_yaml());
            c
        }
        None => cfg.clone(),
    };
    let (shipped, refitted) = (LogisticRanker::new(cfg), LogisticRanker::new(&refit));
    println!("| split | role | ratio | with history | with history, refitted |");
    println!("|---|---|---|---|---|");
    let mut held: [Vec<f64>; 3] = Default::default();
    for sp in &synthetic {
        let r = [
            splits::score(&sp.data, &shipped).ratio,
            ratio(&sp.data, &shipped),
            ratio(&sp.data, &refitted),
        ];
        if sp.role == Role::HeldOut {
            for (h, x) in held.iter_mut().zip(r) {
                h.push(x);
            }
        }
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            sp.name,
            sp.role.label(),
            r[0],
            r[1],
            r[2]
        );
    }
    for (label, h) in ["shipped", "with history", "refitted"].iter().zip(&held) {
        let (worst, geo) = worst_and_geometric_mean(h);
        println!("held-out synthetic days, {label}: worst {worst:.3}, geometric mean {geo:.3}");
    }
    Ok(())
}

/// A ranker's ratio to the optimum on a split, told something from outside.
type SplitRatio<'a> = Box<dyn Fn(&Dataset, &LogisticRanker) -> f64 + 'a>;

/// The largest of `ratios` and their geometric mean: how the lab sums up splits.
fn worst_and_geometric_mean(ratios: &[f64]) -> (f64, f64) {
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    let mean_log = ratios.iter().map(|x| x.ln()).sum::<f64>() / ratios.len().max(1) as f64;
    (worst, mean_log.exp())
}

/// Writes the held-out synthetic days (seeds 101–103) as komoot files, to replay them
/// with `herald-worker bundle`.
fn write_synthetic(dir: &str, m: &ArrivalModel) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    for seed in [101, 102, 103] {
        let path = std::path::Path::new(dir).join(format!("synthetic_{seed}.csv"));
        let mut w = csv::Writer::from_path(&path)?;
        w.write_record(["timestamp", "user_id", "friend_id", "friend_name"])?;
        for t in m.draw(&Draw {
            seed,
            ..Draw::default()
        }) {
            let at = herald_bundle_lab::komoot::format_timestamp(t.at);
            w.write_record([at.as_str(), &t.user, &t.friend, &t.name])?;
        }
        w.flush()?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
