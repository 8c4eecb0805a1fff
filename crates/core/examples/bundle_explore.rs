// Temporary exploration harness (not shipped).
use herald_core::bundle::komoot::read_tours;
use herald_core::bundle::komoot::TourRef;
use herald_core::bundle::optimum::person_optimum;
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::replay::{total_delay, Dataset};
use rand::{Rng, SeedableRng};

struct Set {
    name: &'static str,
    d: Dataset,
    opt: f64,
}
fn mk(
    name: &'static str,
    rows: &[(i64, String, String, String)],
    keep: impl Fn(&(i64, String, String, String)) -> bool,
) -> Set {
    let mut d = Dataset::new();
    for r in rows.iter().filter(|r| keep(r)) {
        d.push(TourRef {
            at: r.0,
            user_id: &r.1,
            friend_id: &r.2,
            friend_name: &r.3,
        });
    }
    d.sort();
    let opt = d
        .per_person()
        .iter()
        .map(|t| person_optimum(t, 4).total_delay)
        .sum::<i64>() as f64;
    Set { name, d, opt }
}
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
fn ratio(s: &Set, c: &BundlingConfig) -> f64 {
    total_delay(&s.d, &LogisticRanker::new(c)) as f64 / s.opt
}

type P = (
    &'static str,
    fn(&BundlingConfig) -> f64,
    fn(&mut BundlingConfig, f64),
    f64,
    f64,
);
const PS: [P; 16] = [
    (
        "bias",
        |c| c.weights.bias,
        |c, v| c.weights.bias = v,
        -10.0,
        10.0,
    ),
    (
        "tours",
        |c| c.weights.tours,
        |c, v| c.weights.tours = v,
        -5.0,
        5.0,
    ),
    (
        "sends_left",
        |c| c.weights.sends_left,
        |c, v| c.weights.sends_left = v,
        -5.0,
        5.0,
    ),
    (
        "expected_more",
        |c| c.weights.expected_more,
        |c, v| c.weights.expected_more = v,
        -5.0,
        0.0,
    ),
    (
        "since_first",
        |c| c.weights.since_first,
        |c, v| c.weights.since_first = v,
        0.0,
        5.0,
    ),
    (
        "since_last",
        |c| c.weights.since_last,
        |c, v| c.weights.since_last = v,
        0.0,
        5.0,
    ),
    (
        "span",
        |c| c.weights.span,
        |c, v| c.weights.span = v,
        -5.0,
        5.0,
    ),
    (
        "sent_today",
        |c| c.weights.sent_today,
        |c, v| c.weights.sent_today = v,
        -5.0,
        5.0,
    ),
    (
        "time_left",
        |c| c.weights.time_left,
        |c, v| c.weights.time_left = v,
        -2.0,
        0.0,
    ),
    (
        "tours_today",
        |c| c.weights.tours_today,
        |c, v| c.weights.tours_today = v,
        -5.0,
        5.0,
    ),
    (
        "quiet",
        |c| c.weights.quiet,
        |c, v| c.weights.quiet = v,
        0.0,
        5.0,
    ),
    (
        "day_fraction",
        |c| c.weights.day_fraction,
        |c, v| c.weights.day_fraction = v,
        0.0,
        10.0,
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
        0.01,
        10.0,
    ),
    (
        "gap.single",
        |c| c.gap.single,
        |c, v| c.gap.single = v,
        30.0,
        20000.0,
    ),
    (
        "gap.floor",
        |c| c.gap.floor,
        |c, v| c.gap.floor = v,
        10.0,
        5000.0,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = &args[1];
    let active: Vec<&str> = args
        .get(2)
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let iters: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let train_set: &str = args.get(4).map(String::as_str).unwrap_or("train");
    let mut rows = Vec::new();
    read_tours(
        std::fs::File::open(file).unwrap(),
        |r| {
            rows.push((
                r.at,
                r.user_id.to_owned(),
                r.friend_id.to_owned(),
                r.friend_name.to_owned(),
            ))
        },
        |_| {},
    )
    .unwrap();
    let sara: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| r.2.starts_with("FB63F2"))
        .map(|r| r.1.clone())
        .collect();
    let noon = 1_501_545_600 + 13 * 3600;
    let sets = vec![
        mk("all", &rows, |_| true),
        mk("train", &rows, |r| fnv(&r.1) % 2 == 0),
        mk("test", &rows, |r| fnv(&r.1) % 2 == 1),
        mk("rest", &rows, |r| !sara.contains(&r.1)),
        mk("sara", &rows, |r| sara.contains(&r.1)),
        mk("am", &rows, |r| r.0 < noon),
        mk("pm", &rows, |r| r.0 >= noon),
        mk("rest_tr", &rows, |r| {
            !sara.contains(&r.1) && fnv(&r.1) % 2 == 0
        }),
        mk("rest_te", &rows, |r| {
            !sara.contains(&r.1) && fnv(&r.1) % 2 == 1
        }),
    ];
    let tr = sets.iter().position(|s| s.name == train_set).unwrap();
    let show = |c: &BundlingConfig| {
        sets.iter()
            .map(|s| format!("{} {:.3}", s.name, ratio(s, c)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut start = match std::env::var("CFG") {
        Ok(p) => BundlingConfig::from_yaml(&std::fs::read_to_string(p).unwrap()).unwrap(),
        Err(_) => BundlingConfig::default(),
    };
    if std::env::var("NOFIT").is_ok() {
        println!("{}", show(&start));
        return;
    }
    let ps: Vec<&P> = PS.iter().filter(|p| active.contains(&p.0)).collect();
    let f = |c: &BundlingConfig| ratio(&sets[tr], c);
    let mut best = start.clone();
    let mut bv = f(&best);
    let descend = |b: &mut BundlingConfig, bv: &mut f64| {
        let mut step = 0.5f64;
        while step > 0.01 {
            let mut imp = false;
            for p in &ps {
                for dir in [1.0, -1.0] {
                    let mut c = b.clone();
                    let cur = (p.1)(&c);
                    let nx = if p.3 > 0.0 {
                        cur * (1.0 + step).powf(dir)
                    } else {
                        cur + dir * step
                    };
                    (p.2)(&mut c, nx.clamp(p.3, p.4));
                    if c.validate().is_err() {
                        continue;
                    }
                    let v = f(&c);
                    if v < *bv - 1e-9 {
                        *bv = v;
                        *b = c;
                        imp = true;
                        break;
                    }
                }
            }
            if !imp {
                step /= 2.0;
            }
        }
    };
    println!("start {bv:.3}: {}", show(&best));
    descend(&mut best, &mut bv);
    println!("descended {bv:.3}: {}", show(&best));
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
    );
    for it in 0..iters {
        let mut c = best.clone();
        for p in &ps {
            if rng.random_range(0.0..1.0) < 0.3 {
                let cur = (p.1)(&c);
                let v = if p.3 > 0.0 {
                    cur * rng.random_range(0.5f64..2.0)
                } else {
                    cur + rng.random_range(-0.7f64..0.7)
                };
                (p.2)(&mut c, v.clamp(p.3, p.4));
            }
        }
        if c.validate().is_err() {
            continue;
        }
        let v = f(&c);
        if v < bv * 1.3 {
            let mut vv = v;
            descend(&mut c, &mut vv);
            if vv < bv {
                bv = vv;
                best = c;
                println!("it {it} {bv:.3}: {}", show(&best));
            }
        }
    }
    start = best.clone();
    let _ = start;
    println!("{}", best.to_yaml());
}
