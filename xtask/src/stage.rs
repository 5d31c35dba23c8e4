//! Stages of a run: each prints its name and wall time, and the run ends with a summary that CI
//! can read. A stage either passes or fails; nothing is skipped quietly.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cmd::fmt_duration;

/// What a stage checked: individual checks inside it (tests, fuzz targets) that passed/failed.
/// A stage with no inner checks counts as one check of its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    pub passed: u64,
    pub failed: u64,
}

/// What a stage reports back.
pub struct Outcome {
    /// Inner checks, when the stage has countable ones (tests, fuzz targets).
    pub checks: Option<Checks>,
    /// One line for the summary, e.g. nextest's own summary line.
    pub detail: String,
}

impl Outcome {
    pub fn note(detail: impl Into<String>) -> Self {
        Outcome {
            checks: None,
            detail: detail.into(),
        }
    }

    pub fn counted(checks: Checks, detail: impl Into<String>) -> Self {
        Outcome {
            checks: Some(checks),
            detail: detail.into(),
        }
    }
}

struct Report {
    name: &'static str,
    elapsed: Duration,
    passed: bool,
    checks: Checks,
    detail: String,
}

pub struct Runner {
    title: &'static str,
    planned: usize,
    reports: Vec<Report>,
    started: Instant,
}

impl Runner {
    pub fn new(title: &'static str, planned: usize) -> Self {
        Runner {
            title,
            planned,
            reports: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one stage, timing it. A stage fails when it returns an error or any inner check failed.
    pub fn stage(&mut self, name: &'static str, body: impl FnOnce() -> Result<Outcome>) -> bool {
        let index = self.reports.len() + 1;
        println!("\n==> [{index}/{}] {name}", self.planned);
        let start = Instant::now();
        let result = body();
        let elapsed = start.elapsed();
        let report = match result {
            Ok(outcome) => {
                let checks = outcome.checks.unwrap_or(Checks {
                    passed: 1,
                    failed: 0,
                });
                Report {
                    name,
                    elapsed,
                    passed: checks.failed == 0 && outcome.checks.is_none_or(|c| c.passed > 0),
                    checks: if outcome
                        .checks
                        .is_some_and(|c| c.passed == 0 && c.failed == 0)
                    {
                        // A stage that counted nothing did not check anything: that is a failure.
                        Checks {
                            passed: 0,
                            failed: 1,
                        }
                    } else {
                        checks
                    },
                    detail: outcome.detail,
                }
            }
            Err(err) => Report {
                name,
                elapsed,
                passed: false,
                checks: Checks {
                    passed: 0,
                    failed: 1,
                },
                detail: format!("{err:#}"),
            },
        };
        let verdict = if report.passed { "passed" } else { "FAILED" };
        println!(
            "<== {name}: {verdict} in {} — {}",
            fmt_duration(elapsed),
            report.detail
        );
        let passed = report.passed;
        self.reports.push(report);
        passed
    }

    /// Prints the summary table and the final line; returns whether everything passed.
    pub fn finish(self) -> bool {
        let total = self.started.elapsed();
        let stages_failed = self.reports.iter().filter(|r| !r.passed).count();
        let stages_passed = self.reports.len() - stages_failed;
        let width = self.reports.iter().map(|r| r.name.len()).max().unwrap_or(0);
        println!("\n{} summary", self.title);
        for r in &self.reports {
            println!(
                "  {:width$}  {:6}  {:>7}  {}",
                r.name,
                if r.passed { "passed" } else { "FAILED" },
                fmt_duration(r.elapsed),
                r.detail,
            );
        }
        let not_run = self.planned.saturating_sub(self.reports.len());
        if not_run > 0 {
            println!("  ({not_run} planned stage(s) did not run)");
        }
        let checks = self
            .reports
            .iter()
            .fold(Checks::default(), |acc, r| Checks {
                passed: acc.passed + r.checks.passed,
                failed: acc.failed + r.checks.failed,
            });
        // Stages that never ran count as failed: the run did not check what it promised.
        let stages_failed = stages_failed + not_run;
        let checks_failed = checks.failed + not_run as u64;
        println!(
            "{}: {} stage{}, {stages_passed} passed, {stages_failed} failed, in {}",
            self.title,
            self.planned,
            if self.planned == 1 { "" } else { "s" },
            fmt_duration(total)
        );
        // Final line: every test, every fuzz target and every other stage is one check.
        println!(
            "{}: {} passed, {checks_failed} failed",
            self.title, checks.passed
        );
        stages_failed == 0 && checks_failed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_that_counted_no_checks_fails() {
        let mut runner = Runner::new("t", 1);
        let passed = runner.stage("empty", || {
            Ok(Outcome::counted(Checks::default(), "ran nothing"))
        });
        assert!(!passed);
    }

    #[test]
    fn a_stage_with_one_failed_check_fails_and_an_error_fails() {
        let mut runner = Runner::new("t", 2);
        assert!(!runner.stage("tests", || Ok(Outcome::counted(
            Checks {
                passed: 9,
                failed: 1
            },
            ""
        ))));
        assert!(!runner.stage("boom", || anyhow::bail!("could not start")));
        assert!(!runner.finish());
    }

    #[test]
    fn the_run_passes_only_when_every_planned_stage_ran_and_passed() {
        let mut runner = Runner::new("t", 2);
        assert!(runner.stage("fmt", || Ok(Outcome::note("clean"))));
        assert!(!runner.finish(), "one planned stage never ran");
    }
}
