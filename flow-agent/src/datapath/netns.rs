//! Entering another network namespace on the current thread (setns), and netns identity.
//!
//! Attaching TC programs and resolving interface names happen in the namespace of the calling
//! thread, so the loader switches the thread into the target namespace and back. The guard must
//! not be held across an `.await`: the task could move to another thread.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Error entering or identifying a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `setns(2)` failed.
    #[error("setns into {path} failed: {source}")]
    Setns {
        /// Namespace path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// While alive, the current thread is in another network namespace; dropping it returns the
/// thread to the namespace it was in before.
pub struct NetnsGuard {
    original: Option<File>,
}

impl NetnsGuard {
    /// Switches the current thread into the namespace at `path` (`None`: stay where we are).
    pub fn enter(path: Option<&Path>) -> Result<NetnsGuard, NetnsError> {
        let Some(path) = path else {
            return Ok(NetnsGuard { original: None });
        };
        let here = Path::new("/proc/thread-self/ns/net");
        let original = File::open(here).map_err(|source| NetnsError::Open {
            path: here.into(),
            source,
        })?;
        let target = File::open(path).map_err(|source| NetnsError::Open {
            path: path.into(),
            source,
        })?;
        setns(&target, path)?;
        Ok(NetnsGuard {
            original: Some(original),
        })
    }
}

fn setns(file: &File, path: &Path) -> Result<(), NetnsError> {
    // SAFETY: plain syscall on a valid, open namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Setns {
            path: path.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(original) = self.original.take()
            && let Err(e) = setns(&original, Path::new("/proc/thread-self/ns/net"))
        {
            // Staying in the wrong namespace would misdirect every later netlink call.
            tracing::error!(error = %e, "cannot return to the original network namespace");
            std::process::abort();
        }
    }
}

/// Inode number of a network namespace (`None`: the current thread's), as the kernel reports
/// in `net->ns.inum` — the value kernel-drop events carry.
pub fn netns_inode(path: Option<&Path>) -> Result<u32, NetnsError> {
    let p = path.unwrap_or(Path::new("/proc/thread-self/ns/net"));
    let meta = std::fs::metadata(p).map_err(|source| NetnsError::Open {
        path: p.into(),
        source,
    })?;
    // Namespace inodes come from a 32-bit proc inode allocator.
    Ok(meta.ino() as u32)
}

/// Index of interface `name` in the current thread's namespace (`None` if it does not exist).
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Cookie of the current thread's network namespace (`SO_NETNS_COOKIE`, the value
/// `bpf_get_netns_cookie` returns in the TC programs).
pub fn current_netns_cookie() -> std::io::Result<u64> {
    // SAFETY: plain socket syscalls; the fd is closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, owned socket.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie`/`len` point to valid memory of the advertised size.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}
