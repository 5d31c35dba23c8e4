//! DNS messages come from captured payload of any pod: the parser shared by the relay and the
//! agent must return a message or an error naming where it failed, never panic, and what it
//! reads must encode back to bytes that read the same (so nothing is half-read); the relay's
//! DNS stage, fed the same bytes as packets, makes one flow per message it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    webb_l7::dns::fuzz_dns(data);
    webb_l7::dns_flows::fuzz_dns_flows(data);
});
