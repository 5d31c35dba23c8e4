//! `cargo xtask`: the project's own commands, so that a newcomer and CI type the same thing.
//!
//! - `cargo xtask test`  — every check CI runs, stage by stage, with times and a summary line.
//! - `cargo xtask bench` — every criterion benchmark of the workspace, with short timings.
//! - `cargo xtask demo`  — the live demo network: two nodes, the shop's pods, agents, relay, traffic.
//! - `cargo xtask fuzz`  — the fuzz targets of `fuzz/`, for a bounded time each.

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod prereq;
mod stage;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Webb's developer commands: test, bench, demo, fuzz"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything CI runs: prerequisites, fmt, clippy, tests, fuzz smoke (and the Grafana
    /// plugin's tests once it exists). Needs root (network namespaces, eBPF).
    Test(test::TestArgs),
    /// Run every criterion benchmark in the workspace with short warm-up and measurement times.
    Bench(bench::BenchArgs),
    /// Install prerequisites, build, and run the live demo network (agents, relay, traffic,
    /// `webb tui` or `webb observe -f`), then print a summary and clean up.
    Demo(demo::DemoArgs),
    /// Fuzz one target (or all) for a bounded time, e.g. `cargo xtask fuzz flow_json --seconds 300`.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
