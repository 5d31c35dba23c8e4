//! `cargo xtask test`: every check CI runs, in stages.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::cmd::{self, find_program};
use crate::fuzz;
use crate::prereq::{self, Needs};
use crate::stage::{Checks, Outcome, Runner};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Seconds each fuzz target runs in the fuzz smoke stage.
    #[arg(long, default_value_t = 20)]
    pub fuzz_seconds: u64,
    /// Run only these stages (comma-separated), e.g. `--only fmt,clippy`. CI runs them all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<StageName>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageName {
    Prerequisites,
    Fmt,
    Clippy,
    Tests,
    Fuzz,
    GrafanaPlugin,
}

impl StageName {
    fn label(self) -> &'static str {
        match self {
            StageName::Prerequisites => "prerequisites",
            StageName::Fmt => "fmt",
            StageName::Clippy => "clippy",
            StageName::Tests => "tests",
            StageName::Fuzz => "fuzz",
            StageName::GrafanaPlugin => "grafana-plugin",
        }
    }
}

const PLUGIN_MANIFEST: &str = "grafana-plugin/package.json";

pub fn run(args: &TestArgs) -> Result<bool> {
    let root = cmd::root();
    let mut stages = vec![
        StageName::Prerequisites,
        StageName::Fmt,
        StageName::Clippy,
        StageName::Tests,
        StageName::Fuzz,
    ];
    // The plugin's stage exists from the moment the plugin does.
    if root.join(PLUGIN_MANIFEST).exists() {
        stages.push(StageName::GrafanaPlugin);
    }
    let not_selected: Vec<&str> = stages
        .iter()
        .filter(|s| !args.only.is_empty() && !args.only.contains(s))
        .map(|s| s.label())
        .collect();
    stages.retain(|s| args.only.is_empty() || args.only.contains(s));
    if let Some(missing) = args.only.iter().find(|s| !stages.contains(s)) {
        bail!(
            "stage `{}` was asked for but does not exist in this checkout",
            missing.label()
        );
    }

    let mut runner = Runner::new("xtask test", stages.len());
    for stage in stages {
        runner.stage(stage.label(), || match stage {
            StageName::Prerequisites => prerequisites(),
            StageName::Fmt => fmt(),
            StageName::Clippy => clippy(),
            StageName::Tests => tests(),
            StageName::Fuzz => fuzz::smoke(args.fuzz_seconds),
            StageName::GrafanaPlugin => grafana_plugin(),
        });
    }
    if !not_selected.is_empty() {
        println!(
            "\nxtask test: NOT a full run: stages not selected: {}",
            not_selected.join(", ")
        );
    }
    Ok(runner.finish())
}

fn prerequisites() -> Result<Outcome> {
    let checked = prereq::ensure(Needs {
        root: true,
        kernel_fs: true,
        cargo_tools: true,
    })?;
    Ok(Outcome::note(format!("{checked} prerequisites present")))
}

fn fmt() -> Result<Outcome> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
    if let Some(manifest) = fuzz::manifest() {
        // The fuzz crate is its own workspace, so `--all` above does not reach it (and `--all`
        // here would reach into its path dependencies, the root workspace's crates).
        cmd::run(
            cmd::cargo()
                .arg("fmt")
                .arg("--manifest-path")
                .arg(&manifest)
                .args(["--", "--check"]),
        )?;
    }
    Ok(Outcome::note("formatted"))
}

fn clippy() -> Result<Outcome> {
    cmd::run(cmd::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    if let Some(manifest) = fuzz::manifest() {
        cmd::run(
            cmd::cargo()
                .arg("clippy")
                .arg("--manifest-path")
                .arg(&manifest)
                .args(["--all-targets", "--", "-D", "warnings"]),
        )?;
    }
    Ok(Outcome::note("no warnings"))
}

fn tests() -> Result<Outcome> {
    let mut checks = Checks::default();
    let mut details = Vec::new();

    if find_program("cargo-nextest").is_some() {
        let mut summary = None;
        let ok = cmd::run_teed(
            cmd::cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]),
            |line| {
                if let Some(counts) = parse_nextest_summary(line) {
                    summary = Some((counts, line.trim().to_string()));
                }
            },
        )?;
        let Some((counts, line)) = summary else {
            bail!("cargo nextest failed before running tests (no summary line; see above)");
        };
        if !ok && counts.failed == 0 {
            bail!("cargo nextest failed although its summary shows no failed test: {line}");
        }
        checks = add(checks, counts);
        details.push(format!("nextest: {line}"));
    } else {
        println!("cargo-nextest not found: running the tests with `cargo test`");
        let counts = run_cargo_test(&["test", "--workspace", "--no-fail-fast"])?;
        checks = add(checks, counts);
        details.push(format!(
            "cargo test: {} passed, {} failed",
            counts.passed, counts.failed
        ));
    }

    // nextest does not run doctests; cargo test does (and says so when there are none).
    let doc = run_cargo_test(&["test", "--workspace", "--doc", "--no-fail-fast"])?;
    checks = add(checks, doc);
    details.push(format!(
        "doctests: {} passed, {} failed",
        doc.passed, doc.failed
    ));
    Ok(Outcome::counted(checks, details.join("; ")))
}

fn run_cargo_test(args: &[&str]) -> Result<Checks> {
    let mut counts = Checks::default();
    let mut saw_result = false;
    let ok = cmd::run_teed(cmd::cargo().args(args), |line| {
        if let Some(c) = parse_libtest_result(line) {
            counts = add(counts, c);
            saw_result = true;
        }
    })?;
    if !ok && counts.failed == 0 {
        bail!("`cargo {}` failed (see above)", args.join(" "));
    }
    if !saw_result {
        // No test binary at all (e.g. no library has doctests): nothing ran, nothing failed.
        println!("(no test results from `cargo {}`)", args.join(" "));
    }
    Ok(counts)
}

fn add(a: Checks, b: Checks) -> Checks {
    Checks {
        passed: a.passed + b.passed,
        failed: a.failed + b.failed,
    }
}

/// nextest's summary, e.g. `Summary [   1.2s] 12 tests run: 11 passed, 1 failed, 0 skipped`
/// (also `2 passed (1 slow)`, `1 timed out`). Everything other than passed/skipped is a failure.
fn parse_nextest_summary(line: &str) -> Option<Checks> {
    let rest = line.trim_start().strip_prefix("Summary [")?;
    let (_, counts) = rest.split_once(" run: ")?;
    let mut checks = Checks::default();
    for part in counts.split(", ") {
        let (n, what) = part.trim().split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        if what.starts_with("passed") {
            checks.passed += n;
        } else if !what.starts_with("skipped") {
            checks.failed += n;
        }
    }
    Some(checks)
}

/// libtest's per-binary result, e.g. `test result: ok. 5 passed; 0 failed; 1 ignored; …`.
fn parse_libtest_result(line: &str) -> Option<Checks> {
    let rest = line.trim_start().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut checks = Checks::default();
    for part in counts.split("; ") {
        match part.split_once(' ') {
            Some((n, "passed")) => checks.passed = n.parse().ok()?,
            Some((n, "failed")) => checks.failed = n.parse().ok()?,
            _ => {}
        }
    }
    Some(checks)
}

/// Where the plugin's browser check writes Playwright's JSON report (see playwright.config.ts).
const BROWSER_REPORT: &str = "test-results/browser-report.json";
/// The browser the check drives: Debian's, never one Playwright downloads.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The Grafana plugin: install exactly the locked dependencies, then its own checks: typecheck,
/// lint, jest (frame builders, the datasource against the live relay binary, the editors in
/// jsdom) and the browser check (the built editors in Debian's chromium, with screenshots).
fn grafana_plugin() -> Result<Outcome> {
    let dir = cmd::root().join("grafana-plugin");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).context("reading package.json")?,
    )
    .context("parsing grafana-plugin/package.json")?;
    let scripts = &manifest["scripts"];
    let has = |name: &str| scripts.get(name).is_some();
    check_node_version()?;

    let install = if dir.join("package-lock.json").exists() {
        "ci"
    } else {
        bail!("grafana-plugin has no package-lock.json: commit one so CI installs what was tested");
    };
    cmd::run(npm(&dir).args([install, "--no-audit", "--no-fund"]))?;
    for script in ["typecheck", "lint"] {
        if has(script) {
            cmd::run(npm(&dir).args(["run", script]))?;
        }
    }
    let test_script = if has("test:ci") {
        "test:ci"
    } else if has("test") {
        "test"
    } else {
        bail!("grafana-plugin/package.json has neither a `test:ci` nor a `test` script");
    };
    // The datasource's tests run the real relay; the `tests` stage builds it. A missing binary
    // is the test's own clear failure, not a skip.
    let relay = cmd::target_dir()?.join("debug").join("webb-relay");
    println!("  relay for the plugin's tests: {}", relay.display());
    let mut counts = None;
    let ok = cmd::run_teed(
        npm(&dir)
            .args(["run", test_script])
            .env("WEBB_RELAY_BIN", &relay),
        |line| {
            if let Some(c) = parse_jest_summary(line) {
                counts = Some(c);
            }
        },
    )?;
    let Some(jest) = counts else {
        bail!("`npm run {test_script}` printed no `Tests:` summary (exit ok: {ok})");
    };
    if !ok && jest.failed == 0 {
        bail!("`npm run {test_script}` failed (see above)");
    }
    let mut detail = format!("jest: {} passed, {} failed", jest.passed, jest.failed);
    let mut total = jest;

    if has("test:browser") {
        if !Path::new(CHROMIUM).exists() {
            bail!(
                "{CHROMIUM} is missing: the plugin's browser check needs Debian's chromium \
                 (apt-get install chromium; `cargo xtask test` installs it when run as root)"
            );
        }
        let report = dir.join(BROWSER_REPORT);
        // A report left from an earlier run must not be read as this run's.
        match std::fs::remove_file(&report) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", report.display()));
            }
            _ => {}
        }
        let ok = cmd::run_teed(
            npm(&dir)
                .args(["run", "test:browser"])
                .env("WEBB_CHROMIUM", CHROMIUM),
            |_| {},
        )?;
        let text = std::fs::read_to_string(&report).with_context(|| {
            format!(
                "`npm run test:browser` wrote no report {} (exit ok: {ok}; see above)",
                report.display()
            )
        })?;
        let browser = parse_playwright_report(&text)
            .with_context(|| format!("reading Playwright's report {}", report.display()))?;
        if !ok && browser.failed == 0 {
            bail!("`npm run test:browser` failed (see above)");
        }
        detail.push_str(&format!(
            "; browser: {} passed, {} failed (screenshots in grafana-plugin/test-results/browser/)",
            browser.passed, browser.failed
        ));
        total = add(total, browser);
    }
    Ok(Outcome::counted(total, detail))
}

/// Playwright's JSON report: `stats.expected` passed; unexpected and flaky ones failed.
fn parse_playwright_report(text: &str) -> Result<Checks> {
    let report: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let stats = &report["stats"];
    let count = |key: &str| {
        stats[key]
            .as_u64()
            .with_context(|| format!("no number at stats.{key}"))
    };
    Ok(Checks {
        passed: count("expected")?,
        failed: count("unexpected")? + count("flaky")?,
    })
}

/// The plugin's toolchain (`@grafana/create-plugin`) needs Node.js 20 or newer.
fn check_node_version() -> Result<()> {
    const NEED: u32 = 20;
    let output = Command::new("node")
        .arg("--version")
        .output()
        .context("could not run `node --version`: install Node.js >= 20 (it brings npm)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let major = parse_node_major(&text)
        .with_context(|| format!("unexpected `node --version` output: {}", text.trim()))?;
    if major < NEED {
        bail!(
            "Node.js {} is too old for the Grafana plugin: install Node.js >= {NEED} \
             (Debian 12's nodejs package is 18; use Debian 13's, or NodeSource's nodejs_{NEED}.x)",
            text.trim()
        );
    }
    println!("  ok    node {}", text.trim());
    Ok(())
}

/// `v20.20.2` → 20.
fn parse_node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn npm(dir: &Path) -> Command {
    let mut cmd = Command::new("npm");
    cmd.current_dir(dir);
    cmd
}

/// Jest's `Tests:       1 failed, 3 passed, 4 total`.
fn parse_jest_summary(line: &str) -> Option<Checks> {
    let rest = line.trim_start().strip_prefix("Tests:")?;
    let mut checks = Checks::default();
    for part in rest.split(',') {
        match part.trim().split_once(' ') {
            Some((n, "passed")) => checks.passed = n.parse().ok()?,
            Some((n, "failed")) => checks.failed = n.parse().ok()?,
            _ => {}
        }
    }
    Some(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nextest_summary_counts_everything_but_passed_and_skipped_as_failed() {
        let line = "     Summary [   3.512s] 14 tests run: 11 passed (1 slow), 2 failed, 1 timed out, 3 skipped";
        assert_eq!(
            parse_nextest_summary(line),
            Some(Checks {
                passed: 11,
                failed: 3
            })
        );
    }

    #[test]
    fn nextest_lines_other_than_the_summary_are_not_counted() {
        assert_eq!(
            parse_nextest_summary("        PASS [   0.003s] proto json::round_trip"),
            None
        );
    }

    #[test]
    fn libtest_result_line_gives_passed_and_failed() {
        let line = "test result: FAILED. 5 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(
            parse_libtest_result(line),
            Some(Checks {
                passed: 5,
                failed: 2
            })
        );
    }

    #[test]
    fn node_major_version_is_the_first_number_after_v() {
        assert_eq!(parse_node_major("v20.20.2\n"), Some(20));
        assert_eq!(parse_node_major("20.1"), None);
    }

    #[test]
    fn playwright_report_counts_unexpected_and_flaky_as_failed() {
        let report = r#"{"config": {}, "suites": [], "stats": {"startTime": "2026-12-07T04:45:01.805Z",
            "duration": 10.5, "expected": 4, "skipped": 1, "unexpected": 2, "flaky": 1}}"#;
        assert_eq!(
            parse_playwright_report(report).unwrap(),
            Checks {
                passed: 4,
                failed: 3
            }
        );
        let err = parse_playwright_report(r#"{"stats": {"expected": 1}}"#).unwrap_err();
        assert_eq!(err.to_string(), "no number at stats.unexpected");
    }

    #[test]
    fn jest_summary_gives_passed_and_failed() {
        assert_eq!(
            parse_jest_summary("Tests:       1 failed, 3 passed, 4 total"),
            Some(Checks {
                passed: 3,
                failed: 1
            })
        );
    }
}
