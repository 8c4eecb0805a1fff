//! The offline subcommands (contract §8): `herald-worker bundle FILE` replays a komoot
//! challenge file through the same bundling state machine and ranker the online
//! worker uses, on a simulated clock; `herald-worker users FILE` lists the receivers.
//!
//! They are implemented by the bundling lab (`herald_bundle_lab::commands`), which
//! holds the file format, the replay, the optimum and the statistics; the worker only
//! offers them on its command line, so operators have one binary to run.

pub use herald_bundle_lab::commands::{bundle, generate, users, BundleOptions, EXIT_BAD_ROWS};
