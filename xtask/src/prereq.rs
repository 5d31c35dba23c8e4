//! System prerequisites: one table of what Webb needs from the machine, checked before building;
//! as root on Debian/Ubuntu the missing packages are installed with apt-get, otherwise the exact
//! command is printed and the run fails.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, find_program};

/// How to tell whether a prerequisite is present.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// An executable on PATH (or in an sbin directory).
    Program(&'static str),
    /// A file, e.g. a header.
    File(&'static str),
}

/// One system prerequisite.
pub struct Prereq {
    pub probe: Probe,
    /// The Debian/Ubuntu package that provides it.
    pub package: &'static str,
    /// Why Webb needs it.
    pub why: &'static str,
    /// Needed only once this path exists in the checkout (the part that uses it has landed).
    pub needed_once: Option<&'static str>,
}

/// Everything Webb needs from the machine. Add a row when a part needs something new.
pub const PREREQS: &[Prereq] = &[
    Prereq {
        probe: Probe::Program("clang"),
        package: "clang",
        why: "compiles flow-agent's eBPF datapath (C, -target bpf)",
        needed_once: None,
    },
    Prereq {
        probe: Probe::Program("llvm-strip"),
        package: "llvm",
        why: "strips debug sections from the BPF objects",
        needed_once: None,
    },
    Prereq {
        probe: Probe::File("/usr/include/bpf/bpf_helpers.h"),
        package: "libbpf-dev",
        why: "BPF helper headers for the datapath",
        needed_once: None,
    },
    Prereq {
        probe: Probe::Program("bpftool"),
        package: "bpftool",
        why: "inspects loaded programs and maps in tests and when debugging",
        needed_once: None,
    },
    Prereq {
        probe: Probe::Program("ip"),
        package: "iproute2",
        why: "network namespaces and veth pairs for integration tests and the demo",
        needed_once: None,
    },
    Prereq {
        probe: Probe::Program("c++"),
        package: "g++",
        why: "libFuzzer (C++) for the fuzz targets",
        needed_once: Some("fuzz/Cargo.toml"),
    },
    Prereq {
        probe: Probe::Program("prometheus"),
        package: "prometheus",
        why: "end-to-end tests scrape the relay's /metrics with a real Prometheus",
        needed_once: Some("relay/Cargo.toml"),
    },
    Prereq {
        probe: Probe::Program("tmux"),
        package: "tmux",
        why: "drives the real `webb tui` in a real terminal in tests",
        needed_once: Some("tui/tests/tmux.rs"),
    },
    Prereq {
        probe: Probe::Program("zsh"),
        package: "zsh",
        why: "checks that zsh parses `webb completion zsh` in tests",
        needed_once: Some("tui/tests/help_completion.rs"),
    },
    Prereq {
        probe: Probe::Program("fish"),
        package: "fish",
        why: "completes `webb observe` flags from `webb completion fish` in tests",
        needed_once: Some("tui/tests/help_completion.rs"),
    },
    Prereq {
        probe: Probe::Program("chromium"),
        package: "chromium",
        why: "browser tests of the Grafana plugin",
        needed_once: Some("grafana-plugin/package.json"),
    },
    Prereq {
        probe: Probe::Program("npm"),
        package: "npm",
        why: "builds and tests the Grafana plugin",
        needed_once: Some("grafana-plugin/package.json"),
    },
];

/// Cargo subcommands installed from crates.io (`cargo install --locked`) when missing.
pub struct CargoTool {
    pub program: &'static str,
    pub krate: &'static str,
    pub version: &'static str,
    pub why: &'static str,
}

pub const CARGO_TOOLS: &[CargoTool] = &[CargoTool {
    program: "cargo-fuzz",
    krate: "cargo-fuzz",
    version: "0.13.2",
    why: "builds and runs the libFuzzer targets of fuzz/ on stable Rust",
}];

/// What a command needs beyond packages.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Root: network namespaces, eBPF, mounts.
    pub root: bool,
    /// tracefs and bpffs mounted (eBPF tracepoints and pinning).
    pub kernel_fs: bool,
    /// The cargo tools of [`CARGO_TOOLS`].
    pub cargo_tools: bool,
}

impl Probe {
    fn present(self) -> bool {
        match self {
            Probe::Program(name) => find_program(name).is_some(),
            Probe::File(path) => Path::new(path).is_file(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Probe::Program(name) | Probe::File(name) => name,
        }
    }
}

/// Checks (and where allowed installs) everything of `needs`; returns how many prerequisites
/// were checked. Fails with the commands to run when something is missing and cannot be fixed.
pub fn ensure(needs: Needs) -> Result<usize> {
    let root_dir = cmd::root();
    let is_root = effective_uid()? == 0;
    let mut checked = 0;
    // Everything that cannot be fixed here, reported together so one read tells all to do.
    let mut problems = Vec::new();

    if needs.root {
        checked += 1;
        if is_root {
            println!("  ok    running as root");
        } else {
            println!("  MISS  root");
            problems.push(
                "must run as root (network namespaces, eBPF): sudo -E env PATH=\"$PATH\" cargo xtask …"
                    .to_string(),
            );
        }
    }

    let wanted: Vec<&Prereq> = PREREQS
        .iter()
        .filter(|p| {
            p.needed_once
                .is_none_or(|path| root_dir.join(path).exists())
        })
        .collect();
    let mut missing = Vec::new();
    for p in &wanted {
        checked += 1;
        if p.probe.present() {
            println!("  ok    {:<32} ({})", p.probe.describe(), p.package);
        } else {
            println!(
                "  MISS  {:<32} (Debian package {}: {})",
                p.probe.describe(),
                p.package,
                p.why
            );
            missing.push(*p);
        }
    }
    if !missing.is_empty()
        && let Err(err) = install_packages(&missing, is_root)
    {
        problems.push(format!("{err:#}"));
    }

    if needs.kernel_fs {
        for (fstype, source, target) in [
            ("tracefs", "nodev", "/sys/kernel/tracing"),
            ("bpf", "bpf", "/sys/fs/bpf"),
        ] {
            checked += 1;
            if let Err(err) = ensure_mount(fstype, source, target, is_root) {
                problems.push(format!("{err:#}"));
            }
        }
    }

    if needs.cargo_tools {
        for tool in CARGO_TOOLS {
            checked += 1;
            if let Err(err) = ensure_cargo_tool(tool) {
                problems.push(format!("{err:#}"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("prerequisites missing:\n  - {}", problems.join("\n  - "));
    }
    Ok(checked)
}

fn install_packages(missing: &[&Prereq], is_root: bool) -> Result<()> {
    let mut packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
    packages.dedup();
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages);
    if !is_root || !is_debian_like() {
        bail!(
            "missing prerequisites: {}. Install them (as root on Debian/Ubuntu) with:\n    {}",
            packages.join(", "),
            cmd::display(&install)
        );
    }
    println!("  installing missing packages: {}", packages.join(" "));
    if let Err(first) = cmd::run(&mut install) {
        // The package lists may be stale or absent on a fresh machine: refresh once and retry.
        println!("  install failed ({first:#}); refreshing package lists and retrying");
        cmd::run(Command::new("apt-get").arg("update"))?;
        cmd::run(&mut install)?;
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|p| !p.probe.present())
        .map(|p| p.probe.describe())
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// Makes sure a pseudo filesystem of type `fstype` is mounted at `target`.
fn ensure_mount(fstype: &str, source: &str, target: &str, is_root: bool) -> Result<()> {
    if is_mounted(fstype, target)? {
        println!("  ok    {fstype} mounted at {target}");
        return Ok(());
    }
    let mut mount = Command::new("mount");
    mount.args(["-t", fstype, source, target]);
    if !is_root {
        bail!(
            "{fstype} is not mounted at {target} (eBPF needs it); as root run:\n    {}",
            cmd::display(&mount)
        );
    }
    println!("  mounting {fstype} at {target}");
    cmd::run(&mut mount)?;
    if !is_mounted(fstype, target)? {
        bail!("{fstype} still not mounted at {target} after `mount`");
    }
    Ok(())
}

fn is_mounted(fstype: &str, target: &str) -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount_point, ty) = (fields.next(), fields.next(), fields.next());
        mount_point == Some(target) && ty == Some(fstype)
    }))
}

fn ensure_cargo_tool(tool: &CargoTool) -> Result<()> {
    if let Some(path) = find_program(tool.program) {
        println!("  ok    {:<32} ({})", tool.program, path.display());
        return Ok(());
    }
    println!(
        "  MISS  {:<32} (crates.io {}@{}: {})",
        tool.program, tool.krate, tool.version, tool.why
    );
    let mut install = cmd::cargo();
    install.args([
        "install",
        "--locked",
        &format!("{}@{}", tool.krate, tool.version),
    ]);
    cmd::run(&mut install)?;
    if find_program(tool.program).is_none() {
        bail!(
            "{} installed but not on PATH: add ~/.cargo/bin to PATH",
            tool.program
        );
    }
    Ok(())
}

/// The effective user id, from /proc (no libc binding needed for one number).
pub fn effective_uid() -> Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_effective_uid(&status).context("no Uid line in /proc/self/status")
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

fn is_debian_like() -> bool {
    let Ok(release) = std::fs::read_to_string("/etc/os-release") else {
        return false;
    };
    release.lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        (key == "ID" || key == "ID_LIKE")
            && value
                .trim_matches('"')
                .split_whitespace()
                .any(|id| id == "debian" || id == "ubuntu")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_root_missing_packages_fail_with_the_exact_apt_get_command() {
        let missing: Vec<&Prereq> = PREREQS
            .iter()
            .filter(|p| ["clang", "libbpf-dev"].contains(&p.package))
            .collect();
        let err = install_packages(&missing, false).unwrap_err().to_string();
        assert!(
            err.contains(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang libbpf-dev"
            ),
            "{err}"
        );
    }

    #[test]
    fn effective_uid_is_the_second_number_of_the_uid_line() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
    }
}
