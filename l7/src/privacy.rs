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

    /// The value to publish for header `key` (lower-case), or `None` to leave the header out.
    pub fn header_value(&self, key: &str, value: &[u8]) -> Option<String> {
        if let Some(allow) = &self.allow_headers
            && !allow.iter().any(|a| a == key)
        {
            return None;
        }
        if self.redact_headers.iter().any(|r| r == key) {
            return Some(REDACTED.to_string());
        }
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// The URL as it may be published: password replaced, query dropped if configured.
    pub fn url(&self, mut url: String) -> String {
        if self.redact_query
            && let Some(cut) = url.find(['?', '#'])
        {
            url.truncate(cut);
        }
        redact_password(url)
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:HUBBLE_REDACTED@host/…`, as Hubble does.
fn redact_password(url: String) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url;
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url;
    };
    let Some(colon) = authority[..at].find(':') else {
        return url;
    };
    let mut out = String::with_capacity(url.len() + REDACTED.len());
    out.push_str(&url[..authority_start + colon + 1]);
    out.push_str(REDACTED);
    out.push_str(&url[authority_start + at..]);
    out
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
    }

    #[test]
    fn an_allow_list_keeps_only_its_headers_and_still_redacts_credentials() {
        let r = Redaction {
            allow_headers: Some(vec!["Traceparent".into(), "COOKIE".into()]),
            ..Default::default()
        }
        .normalized();
        assert_eq!(r.header_value("accept", b"*/*"), None);
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
