//! What of an HTTP message may leave the relay: header values redacted (Hubble's word
//! `HUBBLE_REDACTED`), optionally only an allow-list of headers, optionally no query strings,
//! and never a password in a URL.

/// The word Hubble puts in place of a redacted value.
pub const REDACTED: &str = "HUBBLE_REDACTED";

/// Headers whose values are credentials, redacted unless configured otherwise.
pub const DEFAULT_REDACTED_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Redaction settings of the L7 stage. Header names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Headers whose values are replaced by [`REDACTED`] (lower-case).
    pub redact_headers: Vec<String>,
    /// When set, only these headers are kept at all (lower-case); others are left out.
    pub allow_headers: Option<Vec<String>>,
    /// Remove the query string (and fragment) from URLs.
    pub redact_query: bool,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            redact_headers: DEFAULT_REDACTED_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            allow_headers: None,
            redact_query: false,
        }
    }
}

impl Redaction {
    /// Normalises configured names to lower case (flags may be given in any case).
    pub fn normalized(mut self) -> Self {
        self.redact_headers
            .iter_mut()
            .for_each(|h| h.make_ascii_lowercase());
        if let Some(allow) = &mut self.allow_headers {
            allow.iter_mut().for_each(|h| h.make_ascii_lowercase());
        }
        self
    }

    /// What may be published of header `name` (any case).
    pub fn header_rule(&self, name: &str) -> HeaderRule {
        if let Some(allow) = &self.allow_headers
            && !allow.iter().any(|a| a.eq_ignore_ascii_case(name))
        {
            return HeaderRule::Omit;
        }
        if self
            .redact_headers
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            HeaderRule::Redact
        } else {
            HeaderRule::Keep
        }
    }

    /// The value to publish for header `key`, or `None` to leave the header out.
    pub fn header_value(&self, key: &str, value: &[u8]) -> Option<String> {
        match self.header_rule(key) {
            HeaderRule::Omit => None,
            HeaderRule::Redact => Some(REDACTED.to_string()),
            // Header values are almost always ASCII: check once, copy once; the lossy
            // conversion walks the bytes chunk by chunk and is only needed when that fails.
            HeaderRule::Keep => Some(match std::str::from_utf8(value) {
                Ok(v) => v.to_owned(),
                Err(_) => String::from_utf8_lossy(value).into_owned(),
            }),
        }
    }

    /// The URL as it may be published: password replaced, query dropped if configured.
    pub fn url(&self, mut url: String) -> String {
        self.redact_url(&mut url);
        url
    }

    /// [`Redaction::url`] in place (the buffer is only reallocated to insert [`REDACTED`]).
    pub fn redact_url(&self, url: &mut String) {
        if self.redact_query
            && let Some(cut) = url.find(['?', '#'])
        {
            url.truncate(cut);
        }
        redact_password(url);
    }
}

/// What of a header may leave the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRule {
    /// Left out entirely (not on the allow-list).
    Omit,
    /// Published with the value [`REDACTED`].
    Redact,
    Keep,
}

/// `scheme://user:secret@host/…` → `scheme://user:HUBBLE_REDACTED@host/…`, as Hubble does.
fn redact_password(url: &mut String) {
    // Almost no URL has a user part: one vectorised search for `@` settles it.
    if !url.as_bytes().contains(&b'@') {
        return;
    }
    // A byte scan: `str::find("://")` sets up a substring searcher for every URL.
    let Some(scheme_end) = url.as_bytes().windows(3).position(|w| w == b"://") else {
        return;
    };
    let authority_start = scheme_end + 3;
    let authority_end = url.as_bytes()[authority_start..]
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url.as_bytes()[authority_start..authority_end];
    let Some(at) = authority.iter().rposition(|&c| c == b'@') else {
        return;
    };
    let Some(colon) = authority[..at].iter().position(|&c| c == b':') else {
        return;
    };
    // Both ends are ASCII bytes, so char boundaries.
    url.replace_range(authority_start + colon + 1..authority_start + at, REDACTED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_by_default() {
        let r = Redaction::default();
        for key in DEFAULT_REDACTED_HEADERS {
            assert_eq!(r.header_value(key, b"secret").as_deref(), Some(REDACTED));
        }
        assert_eq!(r.header_value("accept", b"*/*").as_deref(), Some("*/*"));
        assert_eq!(r.header_rule("Set-Cookie"), HeaderRule::Redact);
        assert_eq!(r.header_rule("Accept"), HeaderRule::Keep);
    }

    #[test]
    fn values_that_are_not_utf8_are_published_lossily() {
        let r = Redaction::default();
        assert_eq!(
            r.header_value("accept", b"a\xffb").as_deref(),
            Some("a\u{fffd}b")
        );
    }

    #[test]
    fn an_allow_list_keeps_only_its_headers_and_still_redacts_credentials() {
        let r = Redaction {
            allow_headers: Some(vec!["Traceparent".into(), "COOKIE".into()]),
            ..Default::default()
        }
        .normalized();
        assert_eq!(r.header_value("accept", b"*/*"), None);
        assert_eq!(r.header_rule("ACCEPT"), HeaderRule::Omit);
        assert_eq!(r.header_value("traceparent", b"x").as_deref(), Some("x"));
        assert_eq!(r.header_value("cookie", b"a=b").as_deref(), Some(REDACTED));
    }

    #[test]
    fn redaction_can_be_turned_off() {
        let r = Redaction {
            redact_headers: vec![],
            ..Default::default()
        };
        assert_eq!(r.header_value("cookie", b"a=b").as_deref(), Some("a=b"));
    }

    #[test]
    fn urls_lose_passwords_always_and_queries_on_request() {
        let keep = Redaction::default();
        let cases = [
            ("http://h/p?q=1#f", "http://h/p?q=1#f"),
            ("http://u:pw@h/p", "http://u:HUBBLE_REDACTED@h/p"),
            ("http://u@h/p", "http://u@h/p"),
            ("http://h/p@x:y", "http://h/p@x:y"),
            ("not a url", "not a url"),
            ("http://u:pw@h", "http://u:HUBBLE_REDACTED@h"),
            ("http://u:pw:x@h?a@b", "http://u:HUBBLE_REDACTED@h?a@b"),
            ("http://a@b:c@h/", "http://a@b:HUBBLE_REDACTED@h/"),
        ];
        for (input, want) in cases {
            assert_eq!(keep.url(input.to_string()), want, "{input}");
        }
        let drop = Redaction {
            redact_query: true,
            ..Default::default()
        };
        assert_eq!(drop.url("http://h/p?q=1#f".into()), "http://h/p");
        assert_eq!(drop.url("http://h/p#f".into()), "http://h/p");
    }
}
