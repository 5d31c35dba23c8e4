//! Namespaces by name (`/run/netns/<name>`, as `ip netns` keeps them) and the two ways this crate
//! acts inside one:
//!
//! - configuration goes through `ip -n <name> -batch -` (one `ip` process per namespace, whose
//!   commands iproute2 runs after a `setns`), so every step is the command an operator would type;
//! - sockets and sysctls come from a thread that called `setns(CLONE_NEWNET)` on itself
//!   ([`spawn_in`]). A socket belongs to the namespace of the thread that created it, so servers
//!   and clients run on such threads with a current-thread tokio runtime. We never use
//!   `ip netns exec` here: it also remounts /sys, which hides tracefs and bpffs (notes/ebpf.md).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use crate::Error;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of a named namespace (what `webb-agent --netns` takes).
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Names of every named namespace on the machine, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs `ip [-n netns] -batch -` with `script` on stdin. `force` keeps going past failing lines
/// (used for teardown, where some objects may already be gone).
pub(crate) fn ip_batch(netns: Option<&str>, script: &str, force: bool) -> Result<(), Error> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"]);
    let shown = format!(
        "ip {}-batch - <<{}",
        netns.map(|n| format!("-n {n} ")).unwrap_or_default(),
        script.lines().next().unwrap_or_default()
    );
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: shown.clone(),
            source,
        })?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .map_err(|source| Error::Spawn {
            command: shown.clone(),
            source,
        })?;
    let out = child.wait_with_output().map_err(|source| Error::Spawn {
        command: shown.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Moves the calling thread into the named network namespace.
pub fn enter(name: &str) -> std::io::Result<()> {
    let file = File::open(path(name))?;
    // SAFETY: setns on a valid, open namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A thread living in a network namespace; [`NsThread::join`] returns what its closure returned.
pub struct NsThread<T>(JoinHandle<Option<T>>);

impl<T> NsThread<T> {
    /// Waits for the thread; a panic inside it continues in the caller.
    pub fn join(self) -> T {
        match self.0.join() {
            Ok(Some(value)) => value,
            // `spawn_in` only returns a handle once the thread is inside its namespace.
            Ok(None) => unreachable!("namespace thread did not run its closure"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Runs `f` on a new thread that lives in the named network namespace.
pub fn spawn_in<F, T>(netns: &str, f: F) -> Result<NsThread<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = netns.to_string();
    // Enter before returning so that a missing namespace is an error here, not inside `f`.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name(format!("netns:{name}"))
        .spawn(move || {
            let entered = enter(&name);
            let ok = entered.is_ok();
            let _ = tx.send(entered);
            if ok { Some(f()) } else { None }
        })
        .map_err(|source| Error::Spawn {
            command: format!("thread in {netns}"),
            source,
        })?;
    let entered = rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread died")));
    match entered {
        Ok(()) => Ok(NsThread(handle)),
        Err(source) => {
            let _ = handle.join();
            Err(Error::Netns {
                netns: netns.to_string(),
                source,
            })
        }
    }
}

/// Writes `value` to each `/proc/sys/net/...` key (dotted, as `sysctl` names them) inside the
/// namespace. `/proc/sys/net` resolves against the writing thread's namespace.
pub(crate) fn sysctls(netns: &str, keys: &[(&str, &str)]) -> Result<(), Error> {
    let keys: Vec<(String, String)> = keys
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ns = netns.to_string();
    spawn_in(netns, move || -> Result<(), Error> {
        for (key, value) in keys {
            let file = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&file, &value).map_err(|source| Error::Io {
                what: format!("write {value:?} to {file} in netns {ns}"),
                source,
            })?;
        }
        Ok(())
    })?
    .join()
}

/// Process ids whose network namespace is the named one (what `ip netns pids` prints).
pub fn pids(name: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(path(name)) else {
        return Vec::new();
    };
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .collect()
}
