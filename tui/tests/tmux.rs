//! The real `webb tui` binary in a real terminal (tmux): it draws the flows, takes a filter
//! typed on the keyboard, and gives the terminal back on `q`.

use std::process::Command;
use std::time::{Duration, Instant};

const INPUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/hubble-goldens/input.jsonl"
);

struct Session(String);

impl Session {
    fn start(cmd: &str) -> Self {
        let name = format!("webb-tui-test-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "160",
                "-y",
                "30",
                cmd,
            ])
            .status()
            .expect("tmux is installed (apt-get install tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        Session(name)
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    /// Waits (at most 10 s) until the pane shows `needle`.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                return screen;
            }
            assert!(Instant::now() < deadline, "never saw {needle:?}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn tui_under_tmux_shows_flows_filters_and_quits_cleanly() {
    let cmd = format!(
        "{} tui --input-file {INPUT}; echo WEBB-EXIT=$?; sleep 30",
        env!("CARGO_BIN_EXE_webb")
    );
    let s = Session::start(&cmd);
    let screen = s.wait_for("5 of 5 buffered");
    assert!(
        screen.contains("Policy denied") && screen.contains("http-response"),
        "{screen}"
    );
    s.keys(&["/"]);
    s.keys(&["--", "--verdict DROPPED", "Enter"]);
    let screen = s.wait_for("1 of 5 buffered");
    assert!(!screen.contains("http-response"), "{screen}");
    s.keys(&["2"]);
    s.wait_for("P95 MS");
    s.keys(&["q"]);
    let screen = s.wait_for("WEBB-EXIT=");
    assert!(screen.contains("WEBB-EXIT=0"), "{screen}");
    // The alternate screen is gone: no viewer chrome left on the terminal.
    assert!(!screen.contains("buffered"), "{screen}");
}
