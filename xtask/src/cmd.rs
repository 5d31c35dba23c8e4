//! Running external commands: always shown before they run, output passed through live.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use anyhow::{Context, Result, bail};

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits one level below the workspace root")
        .to_path_buf()
}

/// `cargo` as invoked us (rustup's proxy keeps the same toolchain), run at the workspace root.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    if std::io::stdout().is_terminal() {
        // Output is piped through us, so tools cannot see the terminal themselves.
        cmd.env("CARGO_TERM_COLOR", "always");
    }
    cmd
}

/// The command as a user could paste it into a shell.
pub fn display(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .filter(|kv| !kv.starts_with("CARGO_TERM_COLOR="))
        .collect();
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program());
    parts.push(quote(program));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio; an error if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    println!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd`, passing its stdout and stderr through live while handing every line (colour
/// codes removed) to `on_line`. Returns whether it exited successfully.
pub fn run_teed(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<bool> {
    println!("$ {}", display(cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = [
        spawn_reader(stdout, false, tx.clone()),
        spawn_reader(stderr, true, tx),
    ];
    for (is_err, line) in rx {
        // Write errors on our own terminal are not worth failing a run for.
        if is_err {
            let _ = std::io::stderr().write_all(&line);
        } else {
            let _ = std::io::stdout().write_all(&line);
        }
        on_line(strip_ansi(&String::from_utf8_lossy(&line)).trim_end());
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().context("waiting for child process")?;
    Ok(status.success())
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    is_err: bool,
    tx: mpsc::Sender<(bool, Vec<u8>)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Removes ANSI escape sequences (colours) so that output can be parsed.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Is `program` an executable on PATH (or in the sbin directories, which non-root PATHs omit)?
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Human-readable duration: `0.4s`, `12.3s`, `4m05s`.
pub fn fmt_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// The cargo target directory in use (honours CARGO_TARGET_DIR and cargo configuration).
pub fn target_dir() -> Result<PathBuf> {
    let metadata = cargo_metadata()?;
    let dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// `cargo metadata --no-deps` of the workspace.
pub fn cargo_metadata() -> Result<serde_json::Value> {
    let output = cargo()
        .env_remove("CARGO_TERM_COLOR")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run `cargo metadata`")?;
    if !output.status.success() {
        bail!("`cargo metadata` failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_ansi_removes_colour_codes_and_keeps_text() {
        let coloured = "\u{1b}[32;1m     Summary\u{1b}[0m [   0.010s] 2 tests run";
        assert_eq!(strip_ansi(coloured), "     Summary [   0.010s] 2 tests run");
    }

    #[test]
    fn display_quotes_arguments_a_shell_would_split() {
        let mut cmd = Command::new("/usr/bin/apt-get");
        cmd.args(["install", "-y", "two words"]);
        assert_eq!(display(&cmd), "apt-get install -y 'two words'");
    }
}
