//! Fuzzing with cargo-fuzz (libFuzzer) on stable Rust: `--sanitizer none` keeps every rustc flag
//! stable (see fuzz/README.md). Runs are bounded by `-max_total_time`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, fmt_duration};
use crate::prereq::{self, Needs};
use crate::stage::{Checks, Outcome};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// The fuzz target (see `fuzz/fuzz_targets/`); all targets when omitted.
    pub target: Option<String>,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// `fuzz/Cargo.toml`, when the fuzz crate exists.
pub fn manifest() -> Option<PathBuf> {
    let path = cmd::root().join("fuzz").join("Cargo.toml");
    path.exists().then_some(path)
}

/// `cargo xtask fuzz`: longer runs for developers, same mechanics as the CI smoke.
pub fn run(args: &FuzzArgs) -> Result<bool> {
    prereq::ensure(Needs {
        root: false,
        kernel_fs: false,
        cargo_tools: true,
    })?;
    let targets = match &args.target {
        Some(target) => vec![target.clone()],
        None => list()?,
    };
    let outcome = fuzz_targets(&targets, args.seconds)?;
    println!("xtask fuzz: {}", outcome.detail);
    Ok(outcome.checks.is_some_and(|c| c.failed == 0))
}

/// The CI stage: every target for `seconds` each. One check per target.
pub fn smoke(seconds: u64) -> Result<Outcome> {
    if manifest().is_none() {
        bail!("fuzz/Cargo.toml is missing: the fuzz targets are part of the test run");
    }
    let targets = list()?;
    if targets.is_empty() {
        bail!("fuzz/ declares no fuzz targets");
    }
    fuzz_targets(&targets, seconds)
}

fn fuzz_targets(targets: &[String], seconds: u64) -> Result<Outcome> {
    let build = Instant::now();
    cmd::run(cmd::cargo().args(["fuzz", "build", "--sanitizer", "none"]))
        .context("building the fuzz targets")?;
    println!("fuzz targets built in {}", fmt_duration(build.elapsed()));

    let mut checks = Checks::default();
    let mut details = Vec::new();
    for target in targets {
        match fuzz_one(target, seconds) {
            Ok(runs) => {
                checks.passed += 1;
                details.push(format!("{target}: {runs} runs, no crash"));
            }
            Err(err) => {
                checks.failed += 1;
                println!("fuzz target {target} FAILED: {err:#}");
                details.push(format!("{target}: FAILED ({err:#})"));
            }
        }
    }
    Ok(Outcome::counted(checks, details.join("; ")))
}

/// Fuzzes one target; returns the number of inputs run. The working corpus lives in the target
/// directory (it grows across runs without dirtying the checkout); committed seeds are read too.
fn fuzz_one(target: &str, seconds: u64) -> Result<u64> {
    let root = cmd::root();
    let work = cmd::target_dir()?.join("fuzz");
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;

    let mut fuzz = cmd::cargo();
    fuzz.args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&corpus);
    let seeds = root.join("fuzz").join("seeds").join(target);
    if seeds.is_dir() {
        fuzz.arg(&seeds);
    }
    fuzz.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    let dict = root
        .join("fuzz")
        .join("dict")
        .join(format!("{target}.dict"));
    if dict.is_file() {
        fuzz.arg(format!("-dict={}", dict.display()));
    }

    let mut runs = None;
    let ok = cmd::run_teed(&mut fuzz, |line| {
        if let Some(n) = parse_done(line) {
            runs = Some(n);
        }
    })?;
    if !ok {
        bail!(
            "crashed or failed; reproducer (if any) in {} — rerun with `cargo fuzz run --sanitizer none {target} <file>`",
            artifacts.display()
        );
    }
    runs.context("libFuzzer printed no `Done N runs` line")
}

/// Lists the fuzz targets declared in fuzz/Cargo.toml.
fn list() -> Result<Vec<String>> {
    let output = cmd::cargo()
        .env_remove("CARGO_TERM_COLOR")
        .args(["fuzz", "list"])
        .output()
        .context("could not run `cargo fuzz list`")?;
    if !output.status.success() {
        bail!(
            "`cargo fuzz list` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| cmd::strip_ansi(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// libFuzzer's last line: `Done 17601127 runs in 6 second(s)`.
fn parse_done(line: &str) -> Option<u64> {
    line.strip_prefix("Done ")?.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_done_line_gives_the_number_of_runs() {
        assert_eq!(
            parse_done("Done 17601127 runs in 6 second(s)"),
            Some(17_601_127)
        );
        assert_eq!(parse_done("#2\tINITED cov: 6 ft: 7 corp: 1/1b"), None);
    }
}
