//! Helpers of the end-to-end scenarios: the workspace's binaries, free loopback ports, and
//! processes that are ended whatever the test's outcome (directories: `tempfile`).
//!
//! The binaries are those `cargo test --workspace` builds beside the tests (cargo builds a
//! package's binaries for its integration tests, and the relay and the CLI have some).

pub mod demo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/NAME` of the running test binary's build, or `$WEBB_BIN_DIR/NAME` when set:
/// checkouts that share one target directory also share its `target/<profile>/` binaries, so a
/// second checkout copies its own somewhere else and points the tests there.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("WEBB_BIN_DIR") {
        let path = Path::new(&dir).join(name);
        assert!(
            path.is_file(),
            "{} is missing (WEBB_BIN_DIR)",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build -p relay -p tui --bins`; \
         `cargo test --workspace` does)",
        path.display()
    );
    path
}

/// A process's output bytes as text (for assertions and failure messages).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `webb certs ARGS --dir DIR`, which must succeed (a CA first, then node, relay and client
/// certificates signed by it).
pub fn webb_certs(dir: &Path, args: &[&str]) {
    let out = Command::new(binary("webb"))
        .arg("certs")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("running webb certs");
    assert!(
        out.status.success(),
        "webb certs {args:?}: {}",
        text(&out.stderr)
    );
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// A child process killed and reaped on drop; its output goes to a log file.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(command: &mut Command, log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("creating the log file");
        let err = out.try_clone().expect("cloning the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Process { child, log }
    }

    /// Its log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with its log when it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("exited with {status}:\n{}", self.log_text());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` until `ready` accepts its output, at most `limit` long.
pub fn retry_until(
    limit: Duration,
    mut command: impl FnMut() -> Output,
    ready: impl Fn(&Output) -> bool,
) -> Output {
    let start = Instant::now();
    loop {
        let out = command();
        if ready(&out) || start.elapsed() > limit {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub mod dashboards;
pub mod prometheus;
