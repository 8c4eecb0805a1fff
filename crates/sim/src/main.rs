//! `herald-sim`: parse the command line, set up logging, run the chosen tool.

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};
use herald_sim::load::{self, LoadConfig};
use herald_sim::simulate::{self, SimulateConfig};
use herald_sim::sink::{self, SinkConfig};
use tracing_subscriber::EnvFilter;

/// Herald tooling: a third-party webhook sink, seed 001's delivery simulation and the
/// load generator.
#[derive(Debug, Parser)]
#[command(name = "herald-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a webhook receiver that records every delivery (GET /received) and can
    /// fail, lag or force a status on demand (POST /control).
    Sink(SinkConfig),
    /// Register people in a topic of the run's own, send messages to them through Herald
    /// and print, per message, how many were sent, received and opened (needs a running
    /// api, worker and a sink posting receipts).
    Simulate(SimulateConfig),
    /// Measure Herald under load (`make bench`): one figure per subcommand, a summary
    /// on stderr and one JSON object on stdout.
    Load(LoadConfig),
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; scripts redirect logs into files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match cli.command {
        Command::Sink(config) => sink::run(config).await,
        Command::Simulate(config) => simulate::run(config).await,
        Command::Load(config) => load::run(config).await,
    }
}
