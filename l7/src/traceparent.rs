//! W3C Trace Context level 1 `traceparent` header → trace id for `Flow.trace_context`.
//!
//! The layout rules are checked on the bytes:
//! - `vv-<32 hex>-<16 hex>-<2 hex>`, lower-case hex only, `-` separators at fixed places;
//! - version `ff` is invalid; version `00` is exactly 55 characters;
//! - a higher version may carry more after the flags, but only after a `-`;
//! - `tracestate` is never read.
//!
//! Validity of the ids (neither all zero) is OpenTelemetry's: the ids become a
//! `SpanContext` and its `is_valid` decides. The `TraceContextPropagator` is not called: every
//! rule it applies is one of the above or that check, and on the L7 stage's path it cost more
//! than the rest of a request (it splits the header into a vector and builds a reference-counted
//! `Context`: ~3,500 instructions per header, measured with callgrind).

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId as OtelTraceId, TraceState};

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

/// The trace id of a valid `traceparent`, as its 32 lower-case hex digits, kept inline (the
/// HTTP stage holds one per waiting request without allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
    pub fn as_str(&self) -> &str {
        // Only ever made from checked lower-case hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Parses a `traceparent` header value. `None` for anything the specification calls invalid,
/// including bytes that are not UTF-8. Never panics.
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let (b, sc) = parse(value)?;
    // The layout check admitted only lower-case hex, which is exactly how the ids print:
    // copy the fields rather than format the parsed ids back into text.
    let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&b[r]).into_owned();
    Some(TraceParent {
        trace_id: text(3..35),
        parent_id: text(36..52),
        sampled: sc.is_sampled(),
    })
}

/// The trace id of a `traceparent` header value, by the same rules as [`parse_traceparent`],
/// without allocating.
pub fn trace_id(value: &[u8]) -> Option<TraceId> {
    let (b, _) = parse(value)?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&b[3..35]);
    Some(TraceId(id))
}

/// The header's bytes (optional whitespace trimmed) and its span context, if valid. The
/// first 55 bytes are then lower-case hex digits and dashes, and the rest is UTF-8.
fn parse(value: &[u8]) -> Option<(&[u8], SpanContext)> {
    // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
    let start = value.iter().position(|&c| c != b' ' && c != b'\t')?;
    let end = value.iter().rposition(|&c| c != b' ' && c != b'\t')? + 1;
    let b = &value[start..end];
    if b.len() < V00_LEN || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let [version] = hex::<1>(&b[0..2])?;
    let trace_id = hex::<16>(&b[3..35])?;
    let span_id = hex::<8>(&b[36..52])?;
    let [flags] = hex::<1>(&b[53..55])?;
    let length_ok = match version {
        0xff => false,
        0 => b.len() == V00_LEN,
        // A future version may carry more, after a dash (and, like all of it, in UTF-8).
        _ => b.len() == V00_LEN || (b[V00_LEN] == b'-' && std::str::from_utf8(b).is_ok()),
    };
    if !length_ok {
        return None;
    }
    let sc = SpanContext::new(
        OtelTraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(flags),
        true,
        TraceState::NONE,
    );
    sc.is_valid().then_some((b, sc))
}

/// Values of the lower-case hex digits; every other byte maps to `NOT_HEX`.
const NOT_HEX: u8 = 0xff;
const HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// `N` bytes from exactly `2 N` lower-case hex digits, else `None`.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    // Any `NOT_HEX` sets the high bits of `seen`; checked once at the end.
    let mut seen = 0u8;
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        seen |= hi | lo;
        *o = (hi << 4) | lo;
    }
    (seen & 0xf0 == 0).then_some(out)
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
        fn the_inline_trace_id_agrees_with_the_parsed_header(
            bytes in proptest::collection::vec(any::<u8>(), 50..70),
            pos in 0usize..55, byte in any::<u8>(),
        ) {
            let mut header = format!("00-{TRACE}-{SPAN}-01").into_bytes();
            header[pos] = byte;
            for value in [&bytes[..], &header[..]] {
                prop_assert_eq!(
                    super::trace_id(value).map(|t| t.as_str().to_owned()),
                    parse_traceparent(value).map(|t| t.trace_id)
                );
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
