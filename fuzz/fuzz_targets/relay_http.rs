//! Captured payload is whatever a pod sent: the relay's HTTP/1.x stage (reassembly, parsing,
//! pairing) must count what it cannot read and never panic, whatever the bytes and segment order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webb_l7::http::fuzz_http(data);
});
