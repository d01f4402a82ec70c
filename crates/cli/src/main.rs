//! The `audrey` binary. It parses the command line and calls library functions; the work
//! happens in the crates it wires together.
#![allow(clippy::print_stdout)]

mod config;
mod pg_bench;
mod serve;
mod tools;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: profiles of single-reading gRPC requests showed malloc
/// and free at ~15 % of server CPU, with the async workers, blocking threads, committer and
/// load generator all allocating; mimalloc's per-thread free lists cut that share.
///
/// Built with `no_thp` (workspace Cargo.toml): mimalloc otherwise asks for transparent huge
/// pages, and each first touch of one (again after every purge) zeroes 2 MiB on the thread
/// that allocated, an async worker mid-request. Without them, 100 unary workers' p99 fell in
/// 12 of 13 paired runs of the warm-up cell (docs/benchmarks.md, session 10).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "audrey", version, about = "Audrey: an IoT telemetry core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Simulate a fleet of sensors sending readings to a running server.
    Simulate(tools::SimulateArgs),
    /// Measure a running server (or the raw store) under load.
    Bench(tools::BenchArgs),
    /// Import data into a running server (locations from CSV).
    Import(tools::ImportArgs),
    /// Manage access tokens directly in the data directory.
    Token(tools::TokenArgs),
    /// Apply storage migrations and report the schema version.
    Migrate(tools::MigrateArgs),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUDREY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(config::ServeConfig::resolve(args)?)),
        Command::Simulate(args) => runtime.block_on(tools::simulate(args)),
        Command::Bench(args) => runtime.block_on(tools::bench(args)),
        Command::Import(args) => runtime.block_on(tools::import(args)),
        Command::Token(args) => tools::token(args),
        Command::Migrate(args) => tools::migrate(args),
    }
}
