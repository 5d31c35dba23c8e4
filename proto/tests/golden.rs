//! `hubble observe -o json` goldens: what the real Hubble CLI (v1.19.4) printed for our input.
//! Go's protojson is not byte-stable, so documents are compared as parsed JSON.

use serde_json::Value;
use webb_proto::json;
use webb_proto::observer::get_flows_response::ResponseTypes;

const INPUT: &str = include_str!("data/hubble-goldens/input.jsonl");
const HUBBLE_JSON: &str = include_str!("data/hubble-goldens/json.jsonl");

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("golden file line is JSON")
}

#[test]
fn printing_each_input_flow_equals_what_hubble_printed() {
    // Hubble does not print node_status records read from a file, so json.jsonl holds the
    // input's other lines in order.
    let printable: Vec<&str> = lines(INPUT)
        .into_iter()
        .filter(|line| !value(line).as_object().unwrap().contains_key("node_status"))
        .collect();
    let expected = lines(HUBBLE_JSON);
    assert_eq!(printable.len(), expected.len(), "goldens out of step");
    assert!(expected.len() >= 6);
    for (number, (input, hubble)) in printable.iter().zip(&expected).enumerate() {
        let response = json::response_from_line(input)
            .unwrap_or_else(|e| panic!("input line {}: {e}", number + 1));
        let ours = json::response_to_line(&response).unwrap();
        assert_eq!(
            value(&ours),
            value(hubble),
            "document {} differs\n ours:   {ours}\n hubble: {hubble}",
            number + 1
        );
    }
}

#[test]
fn hubble_output_reads_back_and_prints_identically() {
    for (number, hubble) in lines(HUBBLE_JSON).iter().enumerate() {
        let response = json::response_from_line(hubble)
            .unwrap_or_else(|e| panic!("golden line {}: {e}", number + 1));
        let ours = json::response_to_line(&response).unwrap();
        assert_eq!(value(&ours), value(hubble), "document {}", number + 1);
    }
}

#[test]
fn node_status_line_round_trips() {
    let line = lines(INPUT)
        .into_iter()
        .find(|line| value(line).as_object().unwrap().contains_key("node_status"))
        .expect("input has a node_status line");
    let response = json::response_from_line(line).unwrap();
    match &response.response_types {
        Some(ResponseTypes::NodeStatus(status)) => {
            assert_eq!(status.node_names, ["vn1", "vn2"]);
        }
        other => panic!("expected node_status, got {other:?}"),
    }
    assert_eq!(
        value(&json::response_to_line(&response).unwrap()),
        value(line)
    );
}

#[test]
fn golden_timestamps_are_renormalised_like_go() {
    // input has "…00.200000000Z"; Hubble prints "…00.200Z", and "…01Z" without fraction.
    let responses: Vec<_> = json::read_response_lines(INPUT.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let printed: Vec<String> = responses
        .iter()
        .map(|r| json::response_to_line(r).unwrap())
        .collect();
    assert!(
        printed[1].contains(r#""time":"2026-11-27T23:00:00.200Z""#),
        "{}",
        printed[1]
    );
    assert!(printed[0].contains(r#""time":"2026-11-27T23:00:00.123456789Z""#));
    assert!(printed[3].contains(r#""time":"2026-11-27T23:00:01Z""#));
}
