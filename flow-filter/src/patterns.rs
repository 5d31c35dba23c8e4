//! Hubble's glob-like patterns for FQDNs and node names, compiled into one anchored regex.
//!
//! An FQDN pattern is trimmed, loses one trailing dot and is lower-cased; letters, digits, `-`,
//! `_` and `.` match themselves and `*` matches any run of `[-.0-9a-z]`. A node-name pattern is
//! `[cluster/]node`, each part an FQDN pattern where an empty part matches any name; flow node
//! names without a cluster are taken to be in cluster `default`.

use regex::Regex;

/// Any FQDN-shaped name (what an empty cluster or node part matches).
const ANY_FQDN: &str = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)";

fn push_fqdn(re: &mut String, pattern: &str) -> Result<(), String> {
    let p = pattern.trim();
    let p = p.strip_suffix('.').unwrap_or(p).to_lowercase();
    if p.is_empty() {
        return Err("empty pattern".into());
    }
    if p.ends_with('.') {
        return Err("multiple trailing dots in pattern".into());
    }
    for c in p.chars() {
        match c {
            '.' => re.push_str(r"\."),
            '*' => re.push_str("[-.0-9a-z]*"),
            '-' | '_' | '0'..='9' | 'a'..='z' => re.push(c),
            _ => return Err(format!("{c:?}: invalid character in pattern")),
        }
    }
    Ok(())
}

fn push_node_name(re: &mut String, pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    let (cluster, node) = match pattern.split_once('/') {
        None => ("", pattern),
        Some((_, n)) if n.contains('/') => return Err("too many slashes in pattern".into()),
        Some((c, n)) => (c, n),
    };
    for (i, part) in [cluster, node].into_iter().enumerate() {
        if i == 1 {
            re.push('/');
        }
        if part.is_empty() {
            re.push_str(ANY_FQDN);
        } else {
            push_fqdn(re, part)?;
        }
    }
    Ok(())
}

/// One regex matching any of `patterns`; on error returns the offending pattern and why.
fn compile(
    patterns: &[String],
    push: fn(&mut String, &str) -> Result<(), String>,
) -> Result<Regex, (String, String)> {
    let mut re = String::from(r"\A(?:");
    for (i, p) in patterns.iter().enumerate() {
        if i > 0 {
            re.push('|');
        }
        push(&mut re, p).map_err(|why| (p.clone(), why))?;
    }
    re.push_str(r")\z");
    crate::bounded_regex(&re).map_err(|e| (patterns.join(","), e.to_string()))
}

pub fn fqdn_regex(patterns: &[String]) -> Result<Regex, (String, String)> {
    compile(patterns, push_fqdn)
}

pub fn node_name_regex(patterns: &[String]) -> Result<Regex, (String, String)> {
    compile(patterns, push_node_name)
}

/// Matches a flow's node name, which counts as cluster `default` when it names none.
pub fn node_name_matches(re: &Regex, node_name: &str) -> bool {
    if node_name.is_empty() {
        return false;
    }
    if node_name.contains('/') {
        re.is_match(node_name)
    } else {
        let mut full = String::with_capacity(8 + node_name.len());
        full.push_str("default/");
        full.push_str(node_name);
        re.is_match(&full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fqdn_patterns_glob_and_anchor() {
        let re = fqdn_regex(&v(&["*.cilium.io", "Example.COM."])).unwrap();
        for (name, want) in [
            ("docs.cilium.io", true),
            ("a.b.cilium.io", true),
            ("cilium.io", false),
            ("example.com", true),
            ("www.example.com", false),
            ("docs.cilium.io.evil", false),
        ] {
            assert_eq!(re.is_match(name), want, "{name}");
        }
    }

    #[test]
    fn node_name_patterns_default_the_cluster() {
        let re = node_name_regex(&v(&["k8s*"])).unwrap();
        assert!(node_name_matches(&re, "k8s1"));
        assert!(node_name_matches(&re, "other/k8s2"));
        assert!(!node_name_matches(&re, "node1"));
        assert!(!node_name_matches(&re, ""));
        let re = node_name_regex(&v(&["prod/"])).unwrap();
        assert!(node_name_matches(&re, "prod/any-node"));
        assert!(!node_name_matches(&re, "any-node"));
        let re = node_name_regex(&v(&["default/n1"])).unwrap();
        assert!(node_name_matches(&re, "n1"));
    }

    #[test]
    fn bad_patterns_name_the_value() {
        assert_eq!(fqdn_regex(&v(&["ok.io", "a b"])).unwrap_err().0, "a b");
        assert!(fqdn_regex(&v(&[""])).is_err());
        assert!(fqdn_regex(&v(&["a.."])).is_err());
        assert!(node_name_regex(&v(&["a/b/c"])).is_err());
        assert!(node_name_regex(&v(&[""])).is_err());
        assert!(node_name_regex(&v(&["c/n$"])).is_err());
    }
}
