//! `hubble observe -o json` lines from outside (files, `--input-file`, the HTTP API): parsing any
//! text must return a value or an error, never panic; and whatever parses must print and parse
//! back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webb_proto::json;

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is replaced rather than skipped, so every input reaches the JSON parser.
    let text = String::from_utf8_lossy(data);
    let Ok(response) = json::response_from_line(&text) else {
        return;
    };
    // Printing may refuse a value (e.g. a timestamp out of RFC 3339's range), but what it
    // prints must read back as the same message.
    if let Ok(line) = json::response_to_line(&response) {
        let again = json::response_from_line(&line)
            .unwrap_or_else(|e| panic!("printed line does not parse: {e}\n{line}"));
        assert_eq!(
            again, response,
            "JSON round trip changed the message:\n{line}"
        );
    }
});
