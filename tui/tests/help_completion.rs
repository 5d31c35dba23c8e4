//! What a Hubble user types without reading the manual: `--help` naming every flag of
//! `hubble observe` (with examples), shell completion scripts that the shells themselves load
//! and complete from, and `-o jsonpb` (Hubble's name for `-o json`) printing Hubble's documents.

use std::process::{Command, Output};

use serde_json::Value;

const GOLDENS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hubble-goldens");
const WEBB: &str = env!("CARGO_BIN_EXE_webb");

fn webb(args: &[&str]) -> Output {
    let out = Command::new(WEBB)
        .args(args)
        .env_remove("WEBB_SERVER")
        .output()
        .expect("webb runs");
    assert!(
        out.status.success(),
        "webb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(webb(args).stdout).expect("UTF-8 output")
}

/// `hubble observe`'s flags (long names; the list and notes/hubble-api.md §2.4).
const HUBBLE_OBSERVE_FLAGS: &[&str] = &[
    "last",
    "first",
    "all",
    "follow",
    "since",
    "until",
    "namespace",
    "pod",
    "from-pod",
    "to-pod",
    "ip",
    "from-ip",
    "to-ip",
    "label",
    "from-label",
    "to-label",
    "verdict",
    "type",
    "protocol",
    "port",
    "from-port",
    "to-port",
    "http-status",
    "http-method",
    "http-path",
    "http-url",
    "http-header",
    "trace-id",
    "traffic-direction",
    "drop-reason-desc",
    "node-name",
    "identity",
    "from-identity",
    "to-identity",
    "workload",
    "from-workload",
    "to-workload",
    "service",
    "from-service",
    "to-service",
    "uuid",
    "fqdn",
    "tcp-flags",
    "not",
    "cel-expression",
    "print-raw-filters",
    "server",
    "output",
    "input-file",
    "print-node-name",
    "time-format",
    "silent-errors",
    "field-mask",
];

/// Short forms `hubble observe` has.
const HUBBLE_SHORT_FLAGS: &[(&str, &str)] = &[
    ("-4", "--ipv4"),
    ("-6", "--ipv6"),
    ("-f", "--follow"),
    ("-o", "--output"),
    ("-n", "--namespace"),
    ("-l", "--label"),
    ("-t", "--type"),
    ("-s", "--silent-errors"),
];

#[test]
fn observe_help_names_every_hubble_flag_and_gives_examples() {
    let help = stdout(&["observe", "--help"]);
    let missing: Vec<&&str> = HUBBLE_OBSERVE_FLAGS
        .iter()
        .filter(|f| !help.contains(&format!("--{f} ")) && !help.contains(&format!("--{f}\n")))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{help}");
    for (short, long) in HUBBLE_SHORT_FLAGS {
        assert!(
            help.contains(&format!("{short}, {long}")),
            "{short} for {long} in:\n{help}"
        );
    }
    // Every filter flag really is accepted and becomes a filter.
    for (flag, value) in HUBBLE_FILTER_EXAMPLES {
        let mut args = vec!["observe", "--print-raw-filters", *flag];
        args.extend(*value);
        let yaml = stdout(&args);
        assert!(yaml.starts_with("allowlist:\n    - '{"), "{args:?}: {yaml}");
    }
    let yaml = stdout(&["observe", "--print-raw-filters", "--not", "-6"]);
    assert!(yaml.starts_with("denylist:\n    - '{"), "--not -6: {yaml}");
}

/// A value each of Hubble's filter flags takes (None: the flag takes none).
const HUBBLE_FILTER_EXAMPLES: &[(&str, Option<&str>)] = &[
    ("--namespace", Some("demo")),
    ("--pod", Some("demo/web")),
    ("--from-pod", Some("demo/web")),
    ("--to-pod", Some("demo/db")),
    ("--ip", Some("198.18.0.1")),
    ("--from-ip", Some("198.18.0.2")),
    ("--to-ip", Some("198.18.0.0/24")),
    ("--label", Some("app=web")),
    ("--from-label", Some("app=web")),
    ("--to-label", Some("app=db")),
    ("--verdict", Some("DROPPED")),
    ("--type", Some("l7")),
    ("--protocol", Some("tcp")),
    ("--port", Some("80")),
    ("--from-port", Some("1024")),
    ("--to-port", Some("8080")),
    ("--http-status", Some("5+")),
    ("--http-method", Some("get")),
    ("--http-path", Some("^/api/")),
    ("--http-url", Some("http://web/.*")),
    ("--http-header", Some("x-user:alice")),
    ("--trace-id", Some("4bf92f3577b34da6a3ce929d0e0e4736")),
    ("--traffic-direction", Some("ingress")),
    ("--drop-reason-desc", Some("POLICY_DENIED")),
    ("--node-name", Some("node-1")),
    ("--identity", Some("42")),
    ("--from-identity", Some("world")),
    ("--to-identity", Some("40521")),
    ("--workload", Some("web")),
    ("--from-workload", Some("Deployment/web")),
    ("--to-workload", Some("db")),
    ("--service", Some("demo/web")),
    ("--from-service", Some("demo/web")),
    ("--to-service", Some("demo/db")),
    ("--uuid", Some("c0ffee00-0000-0000-0000-000000000000")),
    ("--fqdn", Some("*.example.com")),
    ("--tcp-flags", Some("SYN")),
    ("-4", None),
    ("-6", None),
];

#[test]
fn every_command_has_help_with_examples() {
    let top = stdout(&["--help"]);
    for command in ["observe", "status", "list", "sql", "tui", "completion"] {
        assert!(
            top.contains(&format!("  {command} ")),
            "{command} in:\n{top}"
        );
    }
    for command in ["observe", "status", "sql", "tui"] {
        let help = stdout(&[command, "--help"]);
        assert!(
            help.contains("Examples:\n") && help.contains(&format!("webb {command}")),
            "{command} --help:\n{help}"
        );
    }
    let tui = stdout(&["tui", "--help"]);
    assert!(
        tui.contains("--since <TIME>") && tui.contains("Keys:"),
        "{tui}"
    );
}

/// The completion script for `shell`, written to a file the shell can source.
fn completion_script(shell: &str) -> std::path::PathBuf {
    let script = stdout(&["completion", shell]);
    assert!(
        script.contains("--from-pod") && script.contains("observe"),
        "{shell}:\n{script}"
    );
    let path = std::env::temp_dir().join(format!("webb-completion-{}.{shell}", std::process::id()));
    std::fs::write(&path, script).unwrap();
    path
}

fn shell_output(mut command: Command) -> String {
    let out = command.output().expect("the shell is installed");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_commands_and_observe_flags_from_the_script() {
    let script = completion_script("bash");
    // What bash's programmable completion does on Tab: call the function `complete` names
    // with the words so far.
    let complete = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {script}\n\
             COMP_WORDS=({words})\n\
             COMP_CWORD={cword}\n\
             COMP_LINE='{line}'\n\
             COMP_POINT=${{#COMP_LINE}}\n\
             func=$(complete -p webb | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n\
             $func webb '{cur}' '{prev}' 2>/dev/null\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script = script.display(),
            words = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            cword = words.len() - 1,
            cur = words[words.len() - 1],
            prev = words[words.len() - 2],
        );
        let mut bash = Command::new("bash");
        bash.args(["--norc", "-c", &program]);
        shell_output(bash)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    };
    let commands = complete("webb ");
    for c in ["observe", "status", "list", "sql", "tui", "completion"] {
        assert!(commands.iter().any(|w| w == c), "{c} in {commands:?}");
    }
    let flags = complete("webb observe --from-p");
    assert!(
        flags.iter().any(|w| w == "--from-pod") && flags.iter().any(|w| w == "--from-port"),
        "{flags:?}"
    );
    assert!(flags.iter().all(|w| w.starts_with("--from-p")), "{flags:?}");
    let _ = std::fs::remove_file(script);
}

#[test]
fn fish_completes_observe_flags_from_the_script() {
    let script = completion_script("fish");
    let mut fish = Command::new("fish");
    fish.args([
        "--no-config",
        "-c",
        &format!(
            "source {}; complete -C 'webb observe --from-p'",
            script.display()
        ),
    ]);
    let out = shell_output(fish);
    let words: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert!(
        words.contains(&"--from-pod") && words.contains(&"--from-port"),
        "{out}"
    );
    let _ = std::fs::remove_file(script);
}

#[test]
fn zsh_parses_its_completion_script() {
    let script = completion_script("zsh");
    let mut zsh = Command::new("zsh");
    zsh.arg("-n").arg(&script);
    shell_output(zsh);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#compdef webb"), "{text}");
    let _ = std::fs::remove_file(script);
}

#[test]
fn powershell_and_elvish_scripts_name_the_commands_and_flags() {
    for shell in ["powershell", "elvish"] {
        let _ = std::fs::remove_file(completion_script(shell));
    }
}

#[test]
fn an_unknown_shell_is_refused_with_the_ones_there_are() {
    let out = Command::new(WEBB)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tcsh") && err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
}

#[test]
fn jsonpb_output_is_hubbles_json_document_for_document() {
    let out = stdout(&[
        "observe",
        "--input-file",
        &format!("{GOLDENS}/input.jsonl"),
        "--all",
        "-o",
        "jsonpb",
    ]);
    let want = std::fs::read_to_string(format!("{GOLDENS}/json.jsonl")).unwrap();
    assert_eq!(out.lines().count(), want.lines().count(), "{out}");
    for (got, want) in out.lines().zip(want.lines()) {
        let g: Value = serde_json::from_str(got).unwrap();
        let w: Value = serde_json::from_str(want).unwrap();
        assert_eq!(g, w);
        tui::json::response_from_line(got).expect("reads back with the proto crate");
    }
}
