//! Selector flags become the GetFlowsRequest `hubble observe` sends.

use chrono::{Duration, Utc};
use tui::cli::plan_from_args;
use tui::time::to_datetime;
use webb_proto::observer::GetFlowsRequest;
use webb_proto::webb_v1::FlowsRequestOptions;

fn request(args: &[&str]) -> GetFlowsRequest {
    plan_from_args(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
        .request
}

fn error(args: &[&str]) -> String {
    format!("{:#}", plan_from_args(args).expect_err("should fail"))
}

#[test]
fn plain_observe_asks_for_the_last_20() {
    let r = request(&[]);
    assert_eq!((r.number, r.follow, r.first), (20, false, false));
    assert!(r.since.is_none() && r.until.is_none());
}

#[test]
fn follow_alone_asks_only_for_new_flows() {
    let r = request(&["-f"]);
    assert_eq!((r.number, r.follow), (0, true));
    let r = request(&["--follow", "--last", "5"]);
    assert_eq!((r.number, r.follow), (5, true));
}

#[test]
fn all_first_and_last_set_the_number() {
    assert_eq!(request(&["--all"]).number, u64::MAX);
    let r = request(&["--first", "7"]);
    assert_eq!((r.number, r.first), (7, true));
    assert_eq!(request(&["--last", "1000"]).number, 1000);
}

#[test]
fn reading_a_file_has_no_default_last() {
    assert_eq!(request(&["--input-file", "x.json"]).number, 0);
}

#[test]
fn since_and_until_replace_the_default_last() {
    let before = Utc::now();
    let r = request(&["--since", "5m", "--until", "2026-11-27T23:00:00Z"]);
    let since = to_datetime(r.since.as_ref().unwrap()).unwrap();
    let expected = before - Duration::minutes(5);
    assert!(
        (since - expected).num_seconds().abs() <= 2,
        "{since} vs {expected}"
    );
    assert_eq!(
        to_datetime(r.until.as_ref().unwrap()).unwrap().to_rfc3339(),
        "2026-11-27T23:00:00+00:00"
    );
    assert_eq!(r.number, 0);
}

#[test]
fn until_is_ignored_when_following() {
    let r = request(&["-f", "--until", "1m"]);
    assert!(r.until.is_none());
}

#[test]
fn exclusive_selectors_are_errors() {
    assert!(error(&["--first", "1", "--last", "1"]).contains("--first and --last"));
    assert!(error(&["--first", "1", "--all"]).contains("--first and --all"));
    assert!(error(&["--first", "1", "-f"]).contains("--first and --follow"));
    assert!(error(&["--last", "1", "--all"]).contains("--last and --all"));
    assert!(error(&["--until", "tomorrow-ish"]).contains("until"));
}

#[test]
fn filters_go_into_whitelist_and_blacklist() {
    let r = request(&["--to-pod", "store/", "--not", "--verdict", "DROPPED"]);
    assert_eq!(r.whitelist.len(), 1);
    assert_eq!(r.whitelist[0].destination_pod, vec!["store/".to_string()]);
    assert_eq!(r.blacklist.len(), 1);
    assert_eq!(r.blacklist[0].verdict, vec![2]);
}

#[test]
fn raw_filters_are_appended_to_the_flag_filters() {
    let r = request(&[
        "--protocol",
        "udp",
        "--allowlist",
        r#"{"source_pod":["a/"]}{"destination_pod":["b/"]}"#,
        "--denylist",
        r#"{"verdict":["DROPPED"]}"#,
    ]);
    assert_eq!(r.whitelist.len(), 3);
    assert_eq!(r.whitelist[2].destination_pod, vec!["b/".to_string()]);
    assert_eq!(r.blacklist[0].verdict, vec![2]);
}

#[test]
fn extras_are_requested_only_with_the_flag() {
    assert!(request(&[]).extensions.is_none());
    let r = request(&["--extras"]);
    let opts = webb_proto::options::from_request(&r).expect("options decode");
    assert_eq!(
        opts,
        FlowsRequestOptions {
            include_extras: true,
            ..Default::default()
        }
    );
}

#[test]
fn invalid_filter_values_are_caught_before_sending() {
    let e = error(&["--to-port", "http"]);
    assert!(e.contains("destination_port") && e.contains("http"), "{e}");
    let e = error(&["--label", "app in (a"]);
    assert!(e.contains("label"), "{e}");
}

#[test]
fn field_mask_asks_the_server_for_the_listed_paths_with_json_output_only() {
    let r = request(&[
        "-o",
        "json",
        "--field-mask",
        "time,verdict",
        "--field-mask",
        "l4",
    ]);
    let mask = r.field_mask.expect("a field mask");
    assert_eq!(mask.paths, ["time", "verdict", "l4"]);
    // Hubble's older name of the flag.
    let r = request(&[
        "-o",
        "jsonpb",
        "--experimental-field-mask",
        "source.pod_name",
    ]);
    assert_eq!(r.field_mask.unwrap().paths, ["source.pod_name"]);
    assert!(request(&["-o", "json"]).field_mask.is_none());
    // The human formats print fields a mask may leave out.
    for output in ["compact", "dict", "table"] {
        let e = error(&["-o", output, "--field-mask", "time"]);
        assert!(
            e.contains("not compatible with --field-mask"),
            "{output}: {e}"
        );
    }
    let e = error(&["-o", "json", "--field-mask", "time,,verdict"]);
    assert!(e.contains("empty path"), "{e}");
    let e = error(&["-o", "json", "--field-mask", "time", "--input-file", "-"]);
    assert!(e.contains("--input-file"), "{e}");
}
