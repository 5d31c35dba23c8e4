//! Kubernetes label-selector syntax with Cilium's label sources, compiled once and matched
//! against a flow's label strings (`source:key=value`) without allocating.
//!
//! Grammar (as `k8s.io/apimachinery/pkg/labels.Parse`): requirements separated by `,` (AND);
//! a requirement is `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (v1,v2)`,
//! `key notin (v1,v2)`, `key>N` or `key<N`. Keys may carry a Cilium source (`k8s:app`); a key
//! without one matches a label of any source, as in Hubble.

use std::fmt;

use crate::text;

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

fn err<T>(msg: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError(msg.into()))
}

/// A compiled selector: every requirement must hold. The empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `None` = any source (the key was written without `source:`).
    pub source: Option<String>,
    pub key: String,
    pub op: Op,
    /// `source:key` with its separator, for the allocation-free fast path.
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Exists,
    DoesNotExist,
    /// `=`, `==` (one value) and `in`.
    In(Vec<String>),
    /// `!=` (one value) and `notin`.
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

impl Requirement {
    pub fn new(source: Option<String>, key: String, op: Op) -> Self {
        let prefix = match &source {
            Some(s) => format!("{s}:{key}"),
            None => String::new(),
        };
        Self {
            source,
            key,
            op,
            prefix,
        }
    }

    /// Value of the first label with this requirement's key (Cilium's `LabelArray.Get`/`Has`).
    fn lookup<'a, S: AsRef<str>>(&self, labels: &'a [S]) -> Option<&'a str> {
        labels.iter().find_map(|l| self.value_of(l.as_ref()))
    }

    #[inline]
    fn value_of<'a>(&self, label: &'a str) -> Option<&'a str> {
        let bytes = label.as_bytes();
        // Fast path: a source-qualified key is a plain prefix test on `source:key` followed by
        // `=` or the end (labels in reserved short form `$key` take the general path).
        if self.source.is_some() && bytes.first() != Some(&b'$') {
            let p = self.prefix.as_bytes();
            if bytes.len() < p.len() || !text::bytes_eq(&bytes[..p.len()], p) {
                return None;
            }
            return match bytes.get(p.len()) {
                None => Some(""),
                Some(b'=') => Some(&label[p.len() + 1..]),
                Some(_) => None,
            };
        }
        if self.source.is_none() {
            // Any source: the key starts right after the first `:`; test it in place instead of
            // splitting the whole label.
            let rest = after_source(label);
            if text::starts_with(rest, &self.key) && !rest.starts_with('=') {
                let tail = &rest[self.key.len()..];
                return match tail.as_bytes().first() {
                    None => Some(""),
                    Some(b'=') => Some(&tail[1..]),
                    Some(_) => None,
                };
            }
            if !rest.starts_with('=') {
                return None;
            }
        }
        let (source, key, value) = split_label(label);
        if key != self.key {
            return None;
        }
        match &self.source {
            Some(s) if s != source => None,
            _ => Some(value),
        }
    }

    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        let found = self.lookup(labels);
        match &self.op {
            Op::Exists => found.is_some(),
            Op::DoesNotExist => found.is_none(),
            Op::In(values) => found.is_some_and(|v| values.iter().any(|x| text::eq(x, v))),
            Op::NotIn(values) => found.is_none_or(|v| !values.iter().any(|x| text::eq(x, v))),
            Op::Gt(n) => found
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Op::Lt(n) => found
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

impl Selector {
    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// The part of a label after its source (see [`split_label`]).
#[inline]
fn after_source(label: &str) -> &str {
    let b = label.as_bytes();
    if b.first() == Some(&b'$') {
        return &label[1..];
    }
    // Sources are a few bytes long: a plain scan beats a memchr set-up.
    match b.iter().position(|&c| c == b':') {
        Some(i) => &label[i + 1..],
        None => label.strip_prefix("reserved.").unwrap_or(label),
    }
}

/// Splits a flow label the way Cilium's `ParseLabel` does: the source is everything before the
/// first `:` (`unspec` when there is none; `$key` and `reserved.key` are the reserved short
/// forms), the key runs to the first `=`, the value is the rest.
pub fn split_label(label: &str) -> (&str, &str, &str) {
    let (source, rest) = if let Some(rest) = label.strip_prefix('$') {
        ("reserved", rest)
    } else if let Some(i) = label.find(':') {
        (&label[..i], &label[i + 1..])
    } else if let Some(rest) = label.strip_prefix("reserved.") {
        ("reserved", rest)
    } else {
        ("unspec", label)
    };
    let source = if source.is_empty() { "unspec" } else { source };
    match rest.find('=') {
        None => (source, rest, ""),
        // `reserved:=host`-style: Cilium drops a leading `=` for reserved labels.
        Some(0) if source == "reserved" => (source, &rest[1..], ""),
        Some(i) => (source, &rest[..i], &rest[i + 1..]),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    In,
    NotIn,
    Bang,
    NotEq,
    Eq,
    DoubleEq,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
    End,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Bang => "!",
            Tok::NotEq => "!=",
            Tok::Eq => "=",
            Tok::DoubleEq => "==",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Comma => ",",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::End => "end of string",
        };
        f.write_str(s)
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

fn lex(input: &str) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            toks.push(Tok::End);
            return toks;
        };
        if is_special(c) {
            let (tok, len) = match (c, rest.as_bytes().get(1)) {
                ('!', Some(b'=')) => (Tok::NotEq, 2),
                ('=', Some(b'=')) => (Tok::DoubleEq, 2),
                ('!', _) => (Tok::Bang, 1),
                ('=', _) => (Tok::Eq, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                (',', _) => (Tok::Comma, 1),
                ('<', _) => (Tok::Lt, 1),
                _ => (Tok::Gt, 1),
            };
            toks.push(tok);
            rest = &rest[len..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || is_special(c))
                .unwrap_or(rest.len());
            toks.push(match &rest[..end] {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                s => Tok::Ident(s),
            });
            rest = &rest[end..];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> Tok<'a> {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    /// In value position the keywords are ordinary words.
    fn next_value(&mut self) -> Tok<'a> {
        match self.next() {
            Tok::In => Tok::Ident("in"),
            Tok::NotIn => Tok::Ident("notin"),
            t => t,
        }
    }

    fn peek_value(&self) -> Tok<'a> {
        match self.peek() {
            Tok::In => Tok::Ident("in"),
            Tok::NotIn => Tok::Ident("notin"),
            t => t.clone(),
        }
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            match self.peek() {
                Tok::End => return Ok(reqs),
                Tok::Ident(_) | Tok::Bang => {}
                t => {
                    return err(format!(
                        "found '{t}', expected: !, identifier, or end of string"
                    ));
                }
            }
            reqs.push(self.requirement()?);
            match self.next() {
                Tok::End => return Ok(reqs),
                Tok::Comma => match self.peek() {
                    Tok::Ident(_) | Tok::Bang => {}
                    t => return err(format!("found '{t}', expected: identifier after ','")),
                },
                t => return err(format!("found '{t}', expected: ',' or end of string")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = *self.peek() == Tok::Bang;
        if negated {
            self.next();
        }
        let raw_key = match self.next() {
            Tok::Ident(k) => k,
            t => return err(format!("found '{t}', expected: identifier")),
        };
        let (source, key) = parse_key(raw_key)?;
        if negated {
            return Ok(Requirement::new(source, key, Op::DoesNotExist));
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(Requirement::new(source, key, Op::Exists));
        }
        let op = match self.next() {
            t @ (Tok::Eq | Tok::DoubleEq | Tok::NotEq | Tok::Gt | Tok::Lt) => {
                let value = self.exact_value()?;
                match t {
                    Tok::NotEq => Op::NotIn(vec![value]),
                    Tok::Gt | Tok::Lt => {
                        let n: i64 = value.parse().map_err(|_| {
                            SelectorError(format!(
                                "for '{t}' the value must be an integer, got '{value}'"
                            ))
                        })?;
                        if t == Tok::Gt { Op::Gt(n) } else { Op::Lt(n) }
                    }
                    _ => Op::In(vec![value]),
                }
            }
            t @ (Tok::In | Tok::NotIn) => {
                let values = self.value_list()?;
                if t == Tok::In {
                    Op::In(values)
                } else {
                    Op::NotIn(values)
                }
            }
            t => {
                return err(format!("found '{t}', expected: in, notin, =, ==, !=, >, <"));
            }
        };
        Ok(Requirement::new(source, key, op))
    }

    fn exact_value(&mut self) -> Result<String, SelectorError> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        match self.next_value() {
            Tok::Ident(v) => checked_value(v),
            t => err(format!("found '{t}', expected: identifier")),
        }
    }

    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Tok::Open => {}
            t => return err(format!("found '{t}', expected: '('")),
        }
        let mut values: Vec<String> = Vec::new();
        let push = |values: &mut Vec<String>, v: String| {
            if !values.contains(&v) {
                values.push(v);
            }
        };
        match self.peek_value() {
            Tok::Close => {
                self.next();
                // `in ()` is the set holding only the empty value, as in Kubernetes.
                return Ok(vec![String::new()]);
            }
            Tok::Ident(_) | Tok::Comma => {}
            t => return err(format!("found '{t}', expected: ',', ')' or identifier")),
        }
        loop {
            match self.next_value() {
                Tok::Ident(v) => {
                    push(&mut values, checked_value(v)?);
                    match self.next_value() {
                        Tok::Comma => {}
                        Tok::Close => return Ok(values),
                        t => return err(format!("found '{t}', expected: ',' or ')'")),
                    }
                    // A comma right before `)` or another comma stands for an empty value.
                    match self.peek_value() {
                        Tok::Close => {
                            self.next();
                            push(&mut values, String::new());
                            return Ok(values);
                        }
                        Tok::Comma => push(&mut values, String::new()),
                        _ => {}
                    }
                }
                Tok::Comma => {
                    push(&mut values, String::new());
                    if self.peek_value() == Tok::Close {
                        self.next();
                        return Ok(values);
                    }
                }
                t => return err(format!("found '{t}', expected: ',' or identifier")),
            }
        }
    }
}

/// Splits `source:key` and validates the key as Hubble does after turning it into the
/// Kubernetes key `source.key` (a qualified name, with `any` standing for "no source").
fn parse_key(raw: &str) -> Result<(Option<String>, String), SelectorError> {
    let (source, key) = match raw.split_once(':') {
        Some((s, k)) => (Some(s), k),
        None => (None, raw),
    };
    let k8s_key = format!("{}.{}", source.unwrap_or("any"), key);
    if let Err(why) = validate_qualified_name(&k8s_key) {
        return err(format!("invalid label key '{raw}': {why}"));
    }
    // `any:` written out is the same as no source.
    let source = source.filter(|s| *s != "any").map(str::to_owned);
    Ok((source, key.to_owned()))
}

fn checked_value(v: &str) -> Result<String, SelectorError> {
    if v.len() > 63 {
        return err(format!(
            "invalid label value '{v}': must be no more than 63 characters"
        ));
    }
    if !v.is_empty() && !is_name_part(v) {
        return err(format!(
            "invalid label value '{v}': must start and end with an alphanumeric character and \
             contain only alphanumerics, '-', '_' or '.'"
        ));
    }
    Ok(v.to_owned())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Lower-case RFC 1123 subdomain, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_qualified_name(s: &str) -> Result<(), &'static str> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err("the part before '/' must be a lower-case DNS subdomain");
    }
    if name.len() > 63 {
        return Err("the name must be no more than 63 characters");
    }
    if !is_name_part(name) {
        return Err(
            "the name must start and end with an alphanumeric character and contain only \
             alphanumerics, '-', '_' or '.'",
        );
    }
    Ok(())
}

/// Parses one selector string; `""` selects everything.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    let mut p = Parser {
        toks: lex(input),
        pos: 0,
    };
    Ok(Selector {
        requirements: p.selector()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &[&str] = &[
        "k8s:app=web",
        "k8s:io.kubernetes.pod.namespace=shop",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:tier=3",
        "k8s:app.kubernetes.io/name=web",
        "reserved:init",
    ];

    fn sel(s: &str) -> bool {
        parse(s)
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
            .matches(POD)
    }

    #[test]
    fn each_operator_selects_per_kubernetes_rules() {
        let table: &[(&str, bool)] = &[
            ("", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app in (db,cache)", false),
            ("app notin (db,cache)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("missing in (web)", false),
            ("tier>2", true),
            ("tier>3", false),
            ("tier<4", true),
            ("app>1", false),
            ("init", true),
            ("app=", false),
            ("app in ()", false),
            ("app=web,tier=3", true),
            ("app=web, tier=4", false),
            (" app = web , !missing ", true),
        ];
        for (s, want) in table {
            assert_eq!(sel(s), *want, "selector {s:?}");
        }
    }

    #[test]
    fn key_matches_with_or_without_the_source_prefix() {
        let table: &[(&str, bool)] = &[
            ("k8s:app=web", true),
            ("any:app=web", true),
            ("container:app=web", false),
            ("io.kubernetes.pod.namespace=shop", true),
            ("k8s:io.kubernetes.pod.namespace in (shop, other)", true),
            ("k8s:app.kubernetes.io/name=web", true),
            ("app.kubernetes.io/name=web", true),
            ("reserved:init", true),
            ("k8s:init", false),
            ("!k8s:app", false),
            ("!container:app", true),
        ];
        for (s, want) in table {
            assert_eq!(sel(s), *want, "selector {s:?}");
        }
    }

    #[test]
    fn labels_split_like_cilium() {
        assert_eq!(split_label("k8s:app=web"), ("k8s", "app", "web"));
        assert_eq!(split_label("reserved:world"), ("reserved", "world", ""));
        assert_eq!(split_label("$host"), ("reserved", "host", ""));
        assert_eq!(split_label("app=web"), ("unspec", "app", "web"));
        assert_eq!(split_label("k8s:a=b=c"), ("k8s", "a", "b=c"));
        assert_eq!(split_label(""), ("unspec", "", ""));
    }

    #[test]
    fn reserved_short_form_labels_match_source_qualified_keys() {
        let s = parse("reserved:host").unwrap();
        assert!(s.matches(&["$host"]));
        assert!(s.matches(&["reserved:host"]));
        assert!(!s.matches(&["k8s:host"]));
    }

    #[test]
    fn first_label_with_the_key_decides_the_value() {
        // Cilium's LabelArray.Get returns the first match; an any-source key sees both.
        let labels = ["container:app=db", "k8s:app=web"];
        assert!(!parse("app=web").unwrap().matches(&labels));
        assert!(parse("k8s:app=web").unwrap().matches(&labels));
    }

    #[test]
    fn value_lists_follow_kubernetes_comma_rules() {
        let list = |s: &str| match parse(s).unwrap().requirements.remove(0).op {
            Op::In(v) | Op::NotIn(v) => v,
            op => panic!("unexpected {op:?}"),
        };
        assert_eq!(list("a in (x,y)"), ["x", "y"]);
        assert_eq!(list("a in (x,,y)"), ["x", "", "y"]);
        assert_eq!(list("a in (,x)"), ["", "x"]);
        assert_eq!(list("a in (x,)"), ["x", ""]);
        assert_eq!(list("a in ()"), [""]);
        assert_eq!(list("a notin (in, notin)"), ["in", "notin"]);
    }

    #[test]
    fn malformed_selectors_are_rejected_with_a_reason() {
        for bad in [
            "=web",
            "app=web,",
            ",app",
            "app web",
            "app in web",
            "app in (web",
            "app in (web x)",
            "app=web=x",
            "app=(web)",
            "!app=web",
            "app>x",
            "app<",
            "k8s:$bad=1",
            "app=-web",
            "Upper/app=x",
            "app=a b",
            "(",
            "!",
            "app!",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(!e.0.is_empty(), "{bad:?} gave an empty reason");
        }
        let long = format!("app={}", "v".repeat(64));
        assert!(parse(&long).is_err());
    }
}
