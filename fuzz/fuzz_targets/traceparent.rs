//! A `traceparent` header value is any bytes a client chose: parsing returns a valid trace
//! context or nothing, never panics; what it accepts follows the W3C layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(tp) = webb_l7::traceparent::parse_traceparent(data) {
        assert_eq!(tp.trace_id.len(), 32, "trace id is 32 hex digits");
        assert!(
            tp.trace_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "trace id is lower-case hex: {}",
            tp.trace_id
        );
        assert!(
            tp.trace_id.bytes().any(|b| b != b'0'),
            "all-zero trace id accepted"
        );
    }
});
