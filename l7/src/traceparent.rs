//! W3C Trace Context level 1 `traceparent` header → trace id for `Flow.trace_context`.
//!
//! The OpenTelemetry `TraceContextPropagator` builds the span context (and rejects all-zero
//! ids). It is lenient where the specification is strict — its hex parser accepts short ids
//! and its version parser one-digit versions — so the layout rules run first:
//! - `vv-<32 hex>-<16 hex>-<2 hex>`, lower-case hex only, `-` separators at fixed places;
//! - version `ff` is invalid; version `00` is exactly 55 characters;
//! - a higher version may carry more after the flags, but only after a `-`;
//! - all-zero trace id or parent id is invalid; `tracestate` is never read.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// Length of a version-00 header: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
const V00_LEN: usize = 55;

/// A valid `traceparent`: the ids as lower-case hex, and the sampled flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits (the caller's span).
    pub parent_id: String,
    pub sampled: bool,
}

/// Parses a `traceparent` header value. `None` for anything the specification calls invalid,
/// including bytes that are not UTF-8. Never panics.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let text = std::str::from_utf8(value).ok()?;
    // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
    let text = text.trim_matches([' ', '\t']);
    if !layout_is_valid(text.as_bytes()) {
        return None;
    }
    let propagator = TraceContextPropagator::new();
    let cx = propagator.extract_with_context(&Context::new(), &OnlyTraceparent(text));
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    // The layout check admitted only lower-case hex, which is exactly how the ids print:
    // copy the fields rather than format the parsed ids back into text.
    Some(TraceParent {
        trace_id: text[3..35].to_string(),
        parent_id: text[36..52].to_string(),
        sampled: sc.is_sampled(),
    })
}

fn is_lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn layout_is_valid(b: &[u8]) -> bool {
    if b.len() < V00_LEN {
        return false;
    }
    let fields_ok = is_lower_hex(&b[0..2])
        && b[2] == b'-'
        && is_lower_hex(&b[3..35])
        && b[35] == b'-'
        && is_lower_hex(&b[36..52])
        && b[52] == b'-'
        && is_lower_hex(&b[53..55]);
    if !fields_ok {
        return false;
    }
    match &b[0..2] {
        b"ff" => false,
        b"00" => b.len() == V00_LEN,
        _ => b.len() == V00_LEN || b[V00_LEN] == b'-',
    }
}

/// Hands the propagator the one header it reads; `tracestate` is deliberately absent.
struct OnlyTraceparent<'a>(&'a str);

impl Extractor for OnlyTraceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn trace_id(header: &str) -> Option<String> {
        parse_traceparent(header.as_bytes()).map(|t| t.trace_id)
    }

    #[test]
    fn valid_headers_yield_their_trace_id() {
        let cases = [
            (format!("00-{TRACE}-{SPAN}-01"), true),
            (format!("00-{TRACE}-{SPAN}-00"), false),
            // Surrounding optional whitespace is not part of the value.
            (format!(" 00-{TRACE}-{SPAN}-01\t"), true),
            // Unknown flag bits are accepted (and ignored).
            (format!("00-{TRACE}-{SPAN}-09"), true),
            // A future version: same prefix, more fields after a dash are allowed.
            (
                format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
                true,
            ),
            (format!("01-{TRACE}-{SPAN}-01"), true),
        ];
        for (header, sampled) in cases {
            let got = parse_traceparent(header.as_bytes())
                .unwrap_or_else(|| panic!("{header:?} should be valid"));
            assert_eq!(got.trace_id, TRACE, "{header:?}");
            assert_eq!(got.parent_id, SPAN, "{header:?}");
            assert_eq!(got.sampled, sampled, "{header:?}");
        }
    }

    #[test]
    fn invalid_headers_yield_nothing() {
        let zero_trace = "0".repeat(32);
        let zero_span = "0".repeat(16);
        let cases = [
            ("version ff", format!("ff-{TRACE}-{SPAN}-01")),
            (
                "version 00 with extra field",
                format!("00-{TRACE}-{SPAN}-01-extra"),
            ),
            (
                "version 00 with trailing byte",
                format!("00-{TRACE}-{SPAN}-011"),
            ),
            (
                "future version without a dash after the flags",
                format!("cc-{TRACE}-{SPAN}-01.x"),
            ),
            (
                "upper-case trace id",
                format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            ),
            (
                "upper-case parent id",
                format!("00-{TRACE}-{}-01", SPAN.to_uppercase()),
            ),
            ("upper-case flags", format!("00-{TRACE}-{SPAN}-0A")),
            ("upper-case version", format!("0A-{TRACE}-{SPAN}-01")),
            ("all-zero trace id", format!("00-{zero_trace}-{SPAN}-01")),
            ("all-zero parent id", format!("00-{TRACE}-{zero_span}-01")),
            ("short trace id", format!("00-{}-{SPAN}-01", &TRACE[1..])),
            ("short parent id", format!("00-{TRACE}-{}-01", &SPAN[1..])),
            ("one-digit version", format!("0-{TRACE}-{SPAN}-01")),
            (
                "non-hex in trace id",
                format!("00-{}g-{SPAN}-01", &TRACE[1..]),
            ),
            (
                "plus sign in trace id",
                format!("00-+{}-{SPAN}-01", &TRACE[1..]),
            ),
            ("wrong separator", format!("00_{TRACE}-{SPAN}-01")),
            ("empty", String::new()),
        ];
        for (why, header) in cases {
            assert_eq!(trace_id(&header), None, "{why}: {header:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_are_invalid() {
        let mut bytes = format!("00-{TRACE}-{SPAN}-01").into_bytes();
        bytes[10] = 0xff;
        assert_eq!(parse_traceparent(&bytes), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_traceparent(&bytes);
        }

        #[test]
        fn any_valid_v00_header_round_trips(
            trace in "[0-9a-f]{32}", span in "[0-9a-f]{16}", flags in "[0-9a-f]{2}",
        ) {
            let header = format!("00-{trace}-{span}-{flags}");
            let got = parse_traceparent(header.as_bytes());
            let zero = trace.bytes().all(|c| c == b'0') || span.bytes().all(|c| c == b'0');
            prop_assert_eq!(got.is_none(), zero);
            if let Some(got) = got {
                prop_assert_eq!(got.trace_id, trace);
                prop_assert_eq!(got.parent_id, span);
            }
        }

        #[test]
        fn a_corrupted_byte_never_yields_a_different_trace_id(
            pos in 0usize..55, byte in any::<u8>(),
        ) {
            let mut header = format!("00-{TRACE}-{SPAN}-01").into_bytes();
            header[pos] = byte;
            if let Some(got) = parse_traceparent(&header) {
                // Only hex digits in hex fields survive; the result then reflects the bytes.
                prop_assert_eq!(got.trace_id.as_bytes(), &header[3..35]);
            }
        }
    }
}
