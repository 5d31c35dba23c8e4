//! The human and JSON formats print the golden flows exactly as `hubble observe` v1.19.4 did
//! (tests/data/hubble-goldens: input.jsonl and what the real CLI printed for it).

use serde_json::Value;
use tui::printer::{Format, PrintOptions, Printer};
use tui::time::TimeFormat;
use webb_proto::observer::GetFlowsResponse;

const GOLDENS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hubble-goldens");

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!("{GOLDENS}/{name}")).expect("golden file")
}

fn input() -> Vec<GetFlowsResponse> {
    golden("input.jsonl")
        .lines()
        .map(|l| tui::json::response_from_line(l).expect("golden input parses"))
        .collect()
}

fn print(opts: PrintOptions) -> (String, String) {
    let mut printer = Printer::new(opts, Vec::new(), Vec::new());
    for res in input() {
        printer.write_response(&res).unwrap();
    }
    printer.finish().unwrap();
    let (out, err) = printer.into_inner();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn opts(format: Format) -> PrintOptions {
    PrintOptions {
        format,
        ip_translation: true,
        ..Default::default()
    }
}

#[test]
fn compact_matches_hubble() {
    let (out, err) = print(opts(Format::Compact));
    assert_eq!(out, golden("compact.txt"));
    // NODE_CONNECTED is informational: not printed unless debugging.
    assert_eq!(err, "");
}

#[test]
fn dict_matches_hubble() {
    assert_eq!(print(opts(Format::Dict)).0, golden("dict.txt"));
}

#[test]
fn table_matches_hubble() {
    assert_eq!(print(opts(Format::Table)).0, golden("table.txt"));
}

#[test]
fn json_matches_hubble_document_for_document() {
    let (out, _) = print(opts(Format::Json));
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
        .collect();
    let want: Vec<Value> = golden("json.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn json_lines_read_back_into_the_same_responses() {
    let (out, _) = print(opts(Format::Json));
    let flows_and_lost: Vec<GetFlowsResponse> = input()
        .into_iter()
        .filter(|r| {
            !matches!(
                r.response_types,
                Some(webb_proto::observer::get_flows_response::ResponseTypes::NodeStatus(_))
            )
        })
        .collect();
    let read_back: Vec<GetFlowsResponse> = out
        .lines()
        .map(|l| tui::json::response_from_line(l).expect("output parses as GetFlowsResponse"))
        .collect();
    assert_eq!(read_back, flows_and_lost);
}

#[test]
fn numeric_prints_addresses_instead_of_names() {
    let mut o = opts(Format::Compact);
    o.ip_translation = false;
    let (out, _) = print(o);
    let first = out.lines().next().unwrap();
    assert!(
        first.contains("198.19.1.11:40312 (ID:30211) -> 198.19.2.20:8080 (ID:40521)"),
        "{first}"
    );
}

#[test]
fn node_names_are_printed_when_asked() {
    let mut o = opts(Format::Compact);
    o.node_name = true;
    let (out, _) = print(o);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("Nov 27 23:00:00.123 [vn1]: ")
    );
    let mut o = opts(Format::Table);
    o.node_name = true;
    let (out, _) = print(o);
    assert!(
        out.starts_with("TIMESTAMP             NODE   SOURCE"),
        "{out}"
    );
}

#[test]
fn colour_marks_verdicts_and_endpoints_only_when_on() {
    let mut o = opts(Format::Compact);
    o.color = true;
    let (out, _) = print(o);
    assert!(out.contains("\u{1b}[32mFORWARDED\u{1b}[0m"), "{out}");
    assert!(out.contains("\u{1b}[31mDROPPED\u{1b}[0m"), "{out}");
    assert!(out.contains("\u{1b}[35m(ID:30211)\u{1b}[0m"), "{out}");
    // The text without escapes is still the golden.
    let plain = strip_ansi(&out);
    assert_eq!(plain, golden("compact.txt"));
    // The table never colours.
    let mut o = opts(Format::Table);
    o.color = true;
    assert!(!print(o).0.contains('\u{1b}'));
}

#[test]
fn time_format_changes_the_timestamp_only() {
    let mut o = opts(Format::Compact);
    o.time_format = TimeFormat::Rfc3339Nano;
    let (out, _) = print(o);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("2026-11-27T23:00:00.123456789Z: tools/loadgen-1:40312")
    );
}

#[test]
fn terminal_control_sequences_in_flow_text_are_escaped() {
    let mut res = input().remove(0);
    if let Some(webb_proto::observer::get_flows_response::ResponseTypes::Flow(f)) =
        &mut res.response_types
    {
        f.summary = "evil \u{1b}]0;pwned\u{7}".into();
    }
    let mut printer = Printer::new(opts(Format::Compact), Vec::new(), Vec::new());
    printer.write_response(&res).unwrap();
    printer.finish().unwrap();
    let out = String::from_utf8(printer.into_inner().0).unwrap();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("evil \\u{1b}]0;pwned\\u{7}"), "{out}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn json_carries_webb_extras_only_when_asked() {
    use webb_proto::observer::get_flows_response::ResponseTypes;
    use webb_proto::webb_v1::{FlowExtras, KernelDropReason};
    let mut res = input().remove(3);
    if let Some(ResponseTypes::Flow(f)) = &mut res.response_types {
        let extras = FlowExtras {
            kernel_drop: Some(KernelDropReason {
                name: "SKB_DROP_REASON_NO_SOCKET".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        webb_proto::extras::attach(f, Some(&extras));
    }
    let line = |extras: bool| {
        let mut o = opts(Format::Json);
        o.extras = extras;
        let mut printer = Printer::new(o, Vec::new(), Vec::new());
        printer.write_response(&res).unwrap();
        printer.finish().unwrap();
        String::from_utf8(printer.into_inner().0).unwrap()
    };
    let plain: Value = serde_json::from_str(&line(false)).unwrap();
    assert!(plain["flow"].get("extensions").is_none(), "{plain}");
    let with: Value = serde_json::from_str(&line(true)).unwrap();
    assert_eq!(
        with["flow"]["extensions"]["@type"],
        "type.googleapis.com/webb.v1.FlowExtras"
    );
    assert_eq!(
        with["flow"]["extensions"]["kernel_drop"]["name"],
        "SKB_DROP_REASON_NO_SOCKET"
    );
}
