//! The offline subcommands (contract §8) behind `herald-worker bundle FILE` and
//! `herald-worker users FILE`: the first replays a komoot challenge file through the
//! same bundling state machine and ranker the online worker uses, on a simulated
//! clock; the second lists the receivers. They live here, beside the replay they
//! drive, so the worker binary only parses its arguments and calls them.
//!
//! Output goes to stdout (CSV), everything for people to stderr. Exit codes:
//! 0 all rows used, 2 some rows were skipped (each reported with its line), 1 error.

use crate::komoot::{read_tours, read_tours_with_progress, BadRow, BundleWriter};
use crate::optimum::person_optimum;
use crate::replay::{replay, BundleOut, Dataset};
use crate::{fit, stats};
use anyhow::Context as _;
use herald_core::bundle::ranker::{BundlingConfig, LogisticRanker};
use herald_core::bundle::Ranker;
use herald_core::config::{Config, BUNDLING_FILE};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Exit code when bad rows were skipped.
pub const EXIT_BAD_ROWS: i32 = 2;

/// Options of `herald-worker bundle`.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    pub file: PathBuf,
    pub stats: Option<PathBuf>,
    pub config_dir: PathBuf,
    pub fit: bool,
    /// Skip the optimum (it is exact but costs time on very large files).
    pub no_optimum: bool,
}

/// Reads `config_dir/bundling.yml` with the config loader (the same checks as at a
/// worker's start), or the built-in defaults when the file is absent.
pub fn load_config(config_dir: &Path) -> anyhow::Result<BundlingConfig> {
    match Config::load_bundling(config_dir)? {
        Some(cfg) => Ok(cfg),
        None => {
            eprintln!(
                "note: {} not found, using built-in bundling defaults",
                config_dir.join(BUNDLING_FILE).display()
            );
            Ok(BundlingConfig::default())
        }
    }
}

/// A progress bar on stderr sized in bytes; indicatif hides it when stderr is not a
/// terminal, so logs and pipes stay clean.
fn progress(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

/// Reads `file` into a dataset, reporting bad rows on stderr. Returns the count of
/// bad rows. The file is parsed in 1 MiB chunks; the progress bar follows them.
fn load(file: &Path, phase: &str) -> anyhow::Result<(Dataset, u64)> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = progress(len);
    pb.set_message(phase.to_owned());
    // About 90 bytes a row in the challenge format.
    let mut data = Dataset::with_capacity((len / 80) as usize + 16);
    let mut bad = 0u64;
    let stderr = io::stderr();
    read_tours_with_progress(
        f,
        |row| data.push(row),
        |b: BadRow| {
            bad += 1;
            pb.suspend(|| {
                let _ = writeln!(stderr.lock(), "{}: skipped {b}", file.display());
            });
        },
        |done| pb.set_position(done),
    )
    .with_context(|| format!("reading {}", file.display()))?;
    pb.finish_and_clear();
    data.sort();
    Ok((data, bad))
}

/// `herald-worker users FILE`: the distinct receivers, in order of first appearance.
pub fn users(file: &Path) -> anyhow::Result<i32> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(out, "user_id")?;
    let mut bad = 0u64;
    let mut write_err = None;
    read_tours(
        io::BufReader::new(f).take(u64::MAX),
        |row| {
            if !seen.contains(row.user_id) {
                seen.insert(row.user_id.to_owned());
                if let Err(e) = writeln!(out, "{}", csv_field(row.user_id)) {
                    write_err.get_or_insert(e);
                }
            }
        },
        |b| {
            bad += 1;
            eprintln!("{}: skipped {b}", file.display());
        },
    )?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    Ok(if bad > 0 { EXIT_BAD_ROWS } else { 0 })
}

/// Quotes a field per RFC 4180 when it needs it.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// `herald-worker bundle FILE [--stats STATS.csv] [--config DIR] [--fit]`.
pub fn bundle(opts: &BundleOptions) -> anyhow::Result<i32> {
    let cfg = load_config(&opts.config_dir)?;
    let started = Instant::now();
    let (data, bad) = load(&opts.file, "reading")?;
    let read_secs = started.elapsed().as_secs_f64();

    if opts.fit {
        eprintln!(
            "fitting on {} tours ({} people; half held out)…",
            data.len(),
            data.people.len()
        );
        let f = fit::fit(&data, &cfg, 40);
        eprintln!(
            "avg delay: training {:.0}s → {:.0}s, hold-out {:.0}s → {:.0}s ({} replays)",
            f.train_before, f.train_after, f.holdout_before, f.holdout_after, f.evaluations
        );
        println!("# paste into config/{BUNDLING_FILE}");
        print!("{}", f.config.to_yaml());
        return Ok(if bad > 0 { EXIT_BAD_ROWS } else { 0 });
    }

    let ranker = LogisticRanker::new(&cfg);
    let t_replay = Instant::now();
    let (mut bundles, delays) = replay(&data, &ranker);
    let replay_secs = t_replay.elapsed().as_secs_f64();

    // Rows ordered by (notification_sent, receiver_id) as contract §8 fixes: rank the ids
    // once, then sort on integers.
    let mut by_id: Vec<u32> = (0..data.people.len() as u32).collect();
    by_id.sort_unstable_by(|&a, &b| data.people[a as usize].cmp(&data.people[b as usize]));
    let mut rank = vec![0u32; by_id.len()];
    for (r, &p) in by_id.iter().enumerate() {
        rank[p as usize] = r as u32;
    }
    // The replay sends in time order, so only runs sent at the same second need sorting.
    let key = |b: &BundleOut| (b.sent_at, rank[b.person as usize], b.first_row);
    if bundles.is_sorted_by_key(|b| b.sent_at) {
        for run in bundles.chunk_by_mut(|a, b| a.sent_at == b.sent_at) {
            run.sort_unstable_by_key(key);
        }
    } else {
        bundles.sort_unstable_by_key(key);
    }
    let mut w = BundleWriter::new(io::stdout().lock())?;
    for b in &bundles {
        w.write_bundle(
            b.sent_at,
            b.first_at,
            b.tours,
            &data.people[b.person as usize],
            data.name(b.first_row as usize),
        )?;
    }
    drop(w.finish()?);
    let total_secs = started.elapsed().as_secs_f64();

    let t_opt = Instant::now();
    let optimum_total: i64 = if opts.no_optimum {
        0
    } else {
        data.per_person()
            .iter()
            .map(|ts| person_optimum(ts, ranker.max_per_day()).total_delay)
            .sum()
    };
    let opt_secs = t_opt.elapsed().as_secs_f64();
    let s = stats::compute(
        &bundles,
        delays,
        data.people.len() as u64,
        ranker.max_per_day(),
        optimum_total,
        bad,
    );
    let mut summary = String::from("bundle replay\n");
    for (k, v) in s.rows() {
        if opts.no_optimum && (k.starts_with("optimum") || k.starts_with("ratio")) {
            continue;
        }
        summary.push_str(&format!("  {k:<28} {v}\n"));
    }
    let rows = data.len() as f64;
    summary.push_str(&format!(
        "  {:<28} {:.0} rows/s (read {:.3}s, replay {:.3}s, read+replay+write {:.3}s; optimum {:.3}s)\n",
        "throughput",
        rows / total_secs.max(1e-9),
        read_secs,
        replay_secs,
        total_secs,
        opt_secs
    ));
    eprint!("{summary}");
    if let Some(path) = &opts.stats {
        let mut out =
            csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
        out.write_record(["metric", "value"])?;
        for (k, v) in s.rows() {
            out.write_record([k, v])?;
        }
        out.flush()?;
    }
    Ok(if bad > 0 { EXIT_BAD_ROWS } else { 0 })
}

/// `herald-worker bundle --generate N`: a synthetic file shaped like the sample data
/// (heavy-tailed tours per person, daytime peak, bursts, a popular friend fanned out
/// to many followers), for throughput measurements. Deterministic for a given N.
pub fn generate(n: u64, out: &mut impl Write) -> io::Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let day0: i64 = 1_501_545_600;
    let days = (n / 8_000).max(1) as i64;
    let people = (n / 4).max(1);
    let names = [
        "Matthew",
        "Σωτήριος",
        "Doe, \"JD\"",
        "三浦",
        "Ana",
        "Geir",
        "Buse",
        "Lina",
    ];
    // A daytime-weighted hour: two uniforms averaged, centred on 15:00 UTC.
    let mut rows: Vec<(i64, u64, u64)> = Vec::with_capacity(n as usize);
    while (rows.len() as u64) < n {
        let day = rng.random_range(0..days);
        let who = (rng.random_range(0.0f64..1.0).powi(4) * people as f64) as u64;
        let burst = 1 + (rng.random_range(0.0f64..1.0).powi(6) * 12.0) as u64;
        let h: f64 = (rng.random_range(0.0..24.0) + rng.random_range(0.0..24.0)) / 2.0 + 3.0;
        let mut t = day0 + day * 86_400 + (h.rem_euclid(24.0) * 3600.0) as i64;
        let friend = rng.random_range(0..people);
        for _ in 0..burst {
            if rows.len() as u64 >= n {
                break;
            }
            rows.push((t, who, friend));
            t += rng.random_range(60..3600);
        }
    }
    rows.sort_unstable();
    let mut w = BufWriter::new(out);
    writeln!(w, "timestamp,user_id,friend_id,friend_name")?;
    for (t, who, friend) in rows {
        let name = names[(friend % names.len() as u64) as usize];
        writeln!(
            w,
            "{},U{who:029X},F{friend:029X},{}",
            crate::komoot::format_timestamp(t),
            csv_field(name)
        )?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_reads_back_without_bad_rows() {
        let mut buf = Vec::new();
        generate(5_000, &mut buf).expect("generate");
        let mut rows = 0;
        let mut bad = 0;
        read_tours(buf.as_slice(), |_| rows += 1, |_| bad += 1).expect("read");
        assert_eq!((rows, bad), (5_000, 0));
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("abc"), "abc");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }
}
