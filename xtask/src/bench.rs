//! `cargo xtask bench`: every criterion benchmark of the workspace, with short warm-up and
//! measurement times. The benches print their own ns/item and ratios; this adds a summary.

use std::time::Instant;

use anyhow::{Result, bail};

use crate::cmd::{self, fmt_duration};
use crate::prereq::{self, Needs};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Criterion warm-up time per benchmark, in seconds.
    #[arg(long, default_value_t = 1)]
    pub warm_up: u64,
    /// Criterion measurement time per benchmark, in seconds.
    #[arg(long, default_value_t = 3)]
    pub measurement: u64,
    /// Only these packages' benches (repeatable), e.g. `-p flow-filter`; all packages by default.
    #[arg(short, long = "package")]
    pub packages: Vec<String>,
    /// Only benchmarks whose name matches this (criterion's filter, a regex).
    pub filter: Option<String>,
}

pub fn run(args: &BenchArgs) -> Result<bool> {
    let start = Instant::now();
    // Benches build the whole workspace, the eBPF datapath included, and the datapath's benches
    // load programs into the kernel (BPF_PROG_TEST_RUN).
    prereq::ensure(Needs {
        root: true,
        kernel_fs: true,
        cargo_tools: false,
    })?;

    let targets = bench_targets(&args.packages)?;
    if targets.is_empty() {
        bail!(
            "no criterion benches in {} (`[[bench]]` targets)",
            if args.packages.is_empty() {
                "the workspace".to_string()
            } else {
                args.packages.join(", ")
            }
        );
    }
    let listed: Vec<String> = targets
        .iter()
        .map(|t| format!("{}/{}", t.package, t.name))
        .collect();
    println!("bench targets: {}", listed.join(", "));

    let mut bench = cmd::cargo();
    // flow-store's relay_rss bench measures the real relay's memory under load: it runs the
    // `webb-relay` binary, which no bench target depends on, so it is built here in the same
    // profile.
    if targets
        .iter()
        .any(|t| t.package == "flow-store" && t.name == "relay_rss")
    {
        cmd::run(cmd::cargo().args(["build", "--release", "-p", "relay", "--bin", "webb-relay"]))?;
        bench.env(
            "WEBB_RELAY_BIN",
            cmd::target_dir()?.join("release").join("webb-relay"),
        );
    }
    bench.arg("bench");
    if args.packages.is_empty() {
        bench.arg("--workspace");
    }
    for package in &args.packages {
        bench.args(["--package", package]);
    }
    // Name the bench targets: `--benches` would also run libraries' libtest harnesses in bench
    // mode, which reject criterion's flags.
    let mut names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        bench.args(["--bench", name]);
    }
    bench.arg("--");
    bench.args(["--warm-up-time", &args.warm_up.to_string()]);
    bench.args(["--measurement-time", &args.measurement.to_string()]);
    if let Some(filter) = &args.filter {
        bench.arg(filter);
    }
    let mut results: Vec<(String, String)> = Vec::new();
    let mut goals: Vec<String> = Vec::new();
    let mut previous = String::new();
    let ok = cmd::run_teed(&mut bench, |line| {
        if let Some(result) = parse_criterion_time(line, &previous) {
            results.push(result);
        }
        if is_goal_line(line) {
            goals.push(line.trim().to_string());
        }
        if !line.trim().is_empty() {
            previous = line.to_string();
        }
    })?;

    println!(
        "\nxtask bench summary (median time per iteration; see each bench's own ns/item above)"
    );
    let width = results.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, median) in &results {
        println!("  {name:width$}  {median}");
    }
    if !goals.is_empty() {
        println!("\nagainst the issues' goals (as the benches printed them):");
        for line in &goals {
            println!("  {line}");
        }
    }
    println!(
        "xtask bench: {} benchmarks in {} bench targets, {} in {}",
        results.len(),
        targets.len(),
        if ok { "passed" } else { "FAILED" },
        fmt_duration(start.elapsed())
    );
    if ok && results.is_empty() {
        bail!("cargo bench succeeded but no criterion result was printed");
    }
    Ok(ok)
}

struct BenchTarget {
    package: String,
    name: String,
}

/// Every bench target of the workspace members (or of `only`).
fn bench_targets(only: &[String]) -> Result<Vec<BenchTarget>> {
    let metadata = cmd::cargo_metadata()?;
    let mut out = Vec::new();
    let packages = metadata["packages"].as_array().into_iter().flatten();
    for package in packages
        .filter(|p| only.is_empty() || only.iter().any(|name| p["name"].as_str() == Some(name)))
    {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bench = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"));
            if is_bench {
                out.push(BenchTarget {
                    package: package["name"].as_str().unwrap_or("?").to_string(),
                    name: target["name"].as_str().unwrap_or("?").to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// A bench's line comparing a measurement with a goal: `… -> 0.42x of goal, met`.
fn is_goal_line(line: &str) -> bool {
    line.contains("x of goal")
}

/// Criterion prints `name  time:   [low median high]`, with the name on the line before when it
/// is long. Returns (name, median).
fn parse_criterion_time(line: &str, previous: &str) -> Option<(String, String)> {
    let (name, rest) = line.split_once("time:")?;
    let inner = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
    let values: Vec<&str> = inner.split_whitespace().collect();
    // [low unit median unit high unit]
    let median = format!("{} {}", values.get(2)?, values.get(3)?);
    let name = if name.trim().is_empty() {
        previous.trim()
    } else {
        name.trim()
    };
    Some((name.to_string(), median))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_time_line_gives_name_and_median() {
        let line = "filter/3-field          time:   [12.301 ns 12.405 ns 12.533 ns]";
        assert_eq!(
            parse_criterion_time(line, ""),
            Some(("filter/3-field".into(), "12.405 ns".into()))
        );
    }

    #[test]
    fn lines_measured_against_a_goal_are_collected() {
        assert!(is_goal_line(
            "24h service map: p50 812.0 ms, p90 900.1 ms (12 nodes; 5 runs); goal p90 <= 1000 ms -> 0.90x of goal, met"
        ));
        assert!(!is_goal_line("bench targets: flow-store/store"));
    }

    #[test]
    fn a_long_criterion_name_comes_from_the_line_before() {
        let line = "                        time:   [1.0010 µs 1.0100 µs 1.0200 µs]";
        assert_eq!(
            parse_criterion_time(line, "codec/binary_encode_decode_mixed_l7"),
            Some((
                "codec/binary_encode_decode_mixed_l7".into(),
                "1.0100 µs".into()
            ))
        );
    }
}
