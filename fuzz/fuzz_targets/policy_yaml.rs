//! Policy files are outside input to the agent: any bytes must give policies or an error that
//! names the file and document (never a panic), and whatever parses must compile over a set of
//! endpoints into map entries whose every rule id names its policies — the same entries each
//! time.
#![no_main]

use std::sync::OnceLock;

use flow_agent::endpoints::Endpoints;
use flow_agent::policy::{self, CidrIdentities, PolicyError, PolicyView};
use libfuzzer_sys::fuzz_target;

const ENDPOINTS: &str = r#"
endpoints:
  - {name: a, namespace: shop, labels: {app: web, tier: front}, ips: [198.18.1.1], node: n1}
  - {name: b, namespace: tools, labels: {app: web}, ips: [198.18.1.2], node: n1}
  - {name: c, namespace: shop, labels: {app: db}, ips: [198.18.1.3], node: n2}
nodes:
  - {name: n1, ips: [198.18.0.1]}
"#;

fn endpoints() -> &'static Endpoints {
    static EPS: OnceLock<Endpoints> = OnceLock::new();
    EPS.get_or_init(|| Endpoints::parse(ENDPOINTS, "fuzz-endpoints", "n1").expect("fixed file"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policies = match policy::parse(text, "fuzz.yaml") {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz.yaml"),
                "error must name the file: {msg}"
            );
            if let PolicyError::Invalid { document, .. } = e {
                assert!(document >= 1, "documents count from 1: {msg}");
            }
            return;
        }
    };
    let mut cidrs = CidrIdentities::default();
    if cidrs
        .ensure(policies.iter().flat_map(|p| p.cidrs()))
        .is_err()
    {
        return;
    }
    let Ok(a) = policy::compile(&policies, endpoints(), &cidrs, 1) else {
        return;
    };
    let b = policy::compile(&policies, endpoints(), &cidrs, 1).expect("compiles again");
    let key = |c: &policy::Compiled| {
        let mut v: Vec<_> = c
            .entries
            .iter()
            .map(|e| (e.prefix_len, e.key, e.value))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&a), key(&b), "compiling is deterministic");
    let view = PolicyView::default().with(a.generation.clone());
    for e in &a.entries {
        let (g, rules) = view.lookup(e.rule_id()).expect("every rule id resolves");
        assert!(
            rules.policies.iter().all(|&i| i < g.policies.len()),
            "rule sets name existing policies"
        );
    }
});
