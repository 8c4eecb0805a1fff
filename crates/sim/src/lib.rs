//! Herald's tooling, behind the `herald-sim` binary.
//!
//! - [`sink`]: a third-party webhook receiver with tunable failure and latency that
//!   records everything it is sent, so tests and benchmarks can point Herald's
//!   `HERALD_PROVIDER_URL` at it and read back what was delivered.
//! - [`receipts`]: the sink's provider receipts (delivered / opened, seed 001).
//! - [`simulate`]: seed 001's delivery simulation against a running Herald.
//! - [`load`]: the load generator behind `make bench` (issue 7).
//! - [`signature`]: Standard Webhooks verification, used by the sink.
//!
//! The binary only parses arguments and dispatches; each subcommand is a library
//! `run` so tests can drive it in-process.

pub mod load;
pub mod receipts;
pub mod signature;
pub mod simulate;
pub mod sink;
pub mod smtp;
