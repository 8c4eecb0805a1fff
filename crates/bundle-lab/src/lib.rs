//! The bundling lab (contract §8): everything bundling needs offline, apart from the
//! online worker.
//!
//! The state machine and the ranker (`herald_core::bundle`) are what the worker runs
//! for every tour; they stay in the core. What only the offline tools use lives
//! here: reading and writing the komoot challenge format, replaying a file on a
//! simulated clock, the exact optimum a replay is measured against, the statistics,
//! and the fitter that learns the ranker's weights. Keeping them out of the core keeps
//! the core small and free of CSV and file handling, and the dependency points one
//! way: this crate uses the core's state machine, the core knows nothing of it.
//!
//! | module | what |
//! |---|---|
//! | [`komoot`] | the komoot challenge CSV format, in and out |
//! | [`replay`] | the offline driver: feeds rows to states, pops ready instants from a heap |
//! | [`optimum`] | the exact offline optimum (per-person dynamic programme) |
//! | [`stats`] | delay and cap statistics of a replay |
//! | [`fit`] | learns ranker weights from a file by direct search on the replay |
//! | [`synth`] | an arrival model fitted to a file, and synthetic days drawn from it |
//! | [`splits`] | the training and held-out splits a ranker is fitted and judged on |
//! | [`forecast`] | the rule with a forecast supplied from outside, replayed person by person |
//! | [`oracle`] | the rule with a perfect forecast of each person's further tours |
//! | [`posterior`] | the rule with the arrival model's own forecast of each person's further tours |
//! | [`hindsight`] | hindsight optimisation on the model's posterior: what its knowledge can buy |
//! | [`history`] | the rule with a prior of each person's own, from their earlier days |
//! | [`commands`] | `herald-worker bundle FILE` and `herald-worker users FILE` |
//!
//! The research program `bundle_lab` (scores a ranker on a file and on perturbed
//! copies of it) is this crate's example:
//! `cargo run --release -p herald-bundle-lab --example bundle_lab -- FILE`.

pub mod commands;
pub mod fit;
pub mod forecast;
pub mod hindsight;
pub mod history;
pub mod komoot;
pub mod optimum;
pub mod oracle;
pub mod posterior;
pub mod replay;
pub mod splits;
pub mod stats;
pub mod synth;
