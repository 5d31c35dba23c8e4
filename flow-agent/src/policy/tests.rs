//! The policy parser and compiler, as specifications.

use super::compile::port_blocks;
use super::*;

fn err(text: &str) -> PolicyError {
    parse(text, "p.yaml").expect_err("should be rejected")
}

#[test]
fn port_ranges_split_into_aligned_blocks_that_cover_exactly_the_range() {
    assert_eq!(port_blocks(80, 80), [(80, 16)]);
    assert_eq!(
        port_blocks(9000, 9010),
        [(9000, 13), (9008, 15), (9010, 16)]
    );
    assert_eq!(port_blocks(1, 65535).len(), 16);
    for (lo, hi) in [
        (1u16, 1u16),
        (3, 17),
        (1024, 65535),
        (65535, 65535),
        (100, 2000),
    ] {
        let covered: u32 = port_blocks(lo, hi)
            .iter()
            .map(|(_, b)| 1u32 << (16 - b))
            .sum();
        assert_eq!(covered, u32::from(hi - lo) + 1, "{lo}..={hi}");
        for (start, bits) in port_blocks(lo, hi) {
            assert_eq!(u32::from(start) % (1 << (16 - bits)), 0, "aligned");
        }
    }
}

#[test]
fn documents_are_numbered_and_errors_name_file_document_line_and_field() {
    let text = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ok, namespace: shop}
spec:
  endpointSelector: {}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: shop}
spec:
  endpointSelector: {}
  ingress:
    - toPorts: [{ports: [{port: \"70000\"}]}]
";
    let e = err(text);
    let msg = e.to_string();
    assert!(
        msg.starts_with("p.yaml:8: document 2 (CiliumNetworkPolicy shop/bad): "),
        "{msg}"
    );
    assert_eq!(e.field(), Some("spec.ingress[0].toPorts[0].ports[0].port"));
    assert!(msg.contains("70000"), "{msg}");
}

#[test]
fn bad_input_of_every_kind_is_rejected_with_the_field_named() {
    let cnp = |body: &str| {
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: x, namespace: n}}\nspec:\n{body}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (cnp("  endpointSelector: {matchLabels: {'app': 'a b'}}\n"), "spec.endpointSelector.matchLabels.app"),
        (cnp("  endpointSelector: {matchExpressions: [{key: app, operator: Near, values: [x]}]}\n"), "spec.endpointSelector.matchExpressions[0].operator"),
        (cnp("  endpointSelector: {matchExpressions: [{key: app, operator: In}]}\n"), "spec.endpointSelector.matchExpressions[0].values"),
        (cnp("  endpointSelector: {}\n  egress: [{toCIDR: [198.18.0.0/33]}]\n"), "spec.egress[0].toCIDR[0]"),
        (cnp("  endpointSelector: {}\n  egress: [{toCIDR: [198.18.0.1/16]}]\n"), "spec.egress[0].toCIDR[0]"),
        (cnp("  endpointSelector: {}\n  egress: [{toCIDRSet: [{cidr: 198.18.0.0/16, except: [198.19.0.0/24]}]}]\n"), "spec.egress[0].toCIDRSet[0].except[0]"),
        (cnp("  endpointSelector: {}\n  egress: [{toEntities: [moon]}]\n"), "spec.egress[0].toEntities[0]"),
        (cnp("  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '90', endPort: 80}]}]}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort"),
        (cnp("  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', endPort: 65536}]}]}]\n"), "spec.ingress[0].toPorts[0].ports[0].endPort"),
        (cnp("  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: http}]}]}]\n"), "spec.ingress[0].toPorts[0].ports[0].port"),
        (cnp("  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: ICMP}]}]}]\n"), "spec.ingress[0].toPorts[0].ports[0].protocol"),
        (cnp("  endpointSelector: {}\n  ingress: [{toEndpoints: [{}]}]\n"), "spec.ingress[0].toEndpoints"),
        (cnp("  ingress: [{}]\n"), "spec.endpointSelector"),
        ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {namespace: n}\nspec: {endpointSelector: {}}\n".into(), "metadata.name"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".into(), "kind"),
        ("apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\n".into(), "apiVersion"),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  policyTypes: [Sideways]\n".into(), "spec.policyTypes[0]"),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 198.18.0.0/16}, podSelector: {}}]}]\n".into(), "spec.ingress[0].from[0].ipBlock"),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec:\n  podSelector: {}\n  egress: [{ports: [{port: 0, endPort: 9}]}]\n".into(), "spec.egress[0].ports[0].endPort"),
    ];
    for (text, field) in cases {
        let e = err(&text);
        assert_eq!(e.field(), Some(field), "{text}\n=> {e}");
    }
}

#[test]
fn unknown_fields_and_broken_yaml_are_errors_with_a_line() {
    let e = err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{}]\n      toServices: [{k8sService: {serviceName: a}}]\n",
    );
    let msg = e.to_string();
    assert!(msg.contains("toServices"), "{msg}");
    assert!(msg.starts_with("p.yaml:8: document 1"), "{msg}");
    let e = err("apiVersion: cilium.io/v2\nkind: [\n");
    assert!(e.to_string().starts_with("p.yaml:"), "{e}");
}

#[test]
fn policies_carry_cilium_labels_and_kinds() {
    let p = parse(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: cw}\nspec: {endpointSelector: {}, ingress: [{}]}\n---\n# only a comment\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec: {podSelector: {}}\n",
        "p.yaml",
    )
    .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].kind, p[0].display_name()),
        (Kind::CiliumClusterwideNetworkPolicy, "cw".to_string())
    );
    assert_eq!(
        p[0].derived_labels(),
        [
            "k8s:io.cilium.k8s.policy.derived-from=CiliumClusterwideNetworkPolicy",
            "k8s:io.cilium.k8s.policy.name=cw"
        ]
    );
    assert_eq!((p[1].namespace.as_str(), p[1].document), ("default", 2));
    // NetworkPolicy without policyTypes: ingress only, default deny (no rules).
    assert_eq!(p[1].rules[0].enforce, [true, false]);
}

const EPS: &str = r#"
endpoints:
  - {name: a, namespace: shop, labels: {app: web}, ips: [198.18.1.1], node: n1}
  - {name: b, namespace: tools, labels: {app: web}, ips: [198.18.1.2], node: n1}
  - {name: c, namespace: shop, labels: {app: db}, ips: [198.18.1.3], node: n2}
"#;

fn compiled(policy: &str) -> (Compiled, Endpoints) {
    let eps = Endpoints::parse(EPS, "e.yaml", "n1").unwrap();
    let pols = parse(policy, "p.yaml").unwrap();
    let mut cidrs = CidrIdentities::default();
    cidrs.ensure(pols.iter().flat_map(|p| p.cidrs())).unwrap();
    (compile(&pols, &eps, &cidrs, 1).unwrap(), eps)
}

fn id(eps: &Endpoints, ip: &str) -> u32 {
    eps.identity_of(&ip.parse().unwrap())
}

/// (endpoint, remote, action) of the entries with a full L3 part.
fn l3(c: &Compiled) -> Vec<(u32, u32, u8)> {
    let mut v: Vec<_> = c
        .entries
        .iter()
        .filter(|e| e.prefix_len >= 96)
        .map(|e| {
            (
                u32::from_ne_bytes(e.key[4..8].try_into().unwrap()),
                u32::from_ne_bytes(e.key[8..12].try_into().unwrap()),
                e.action(),
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn a_namespaced_policy_selects_and_allows_only_its_namespace_unless_told_otherwise() {
    let (c, eps) = compiled(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress: [{fromEndpoints: [{}]}]\n",
    );
    let (a, b, cc) = (
        id(&eps, "198.18.1.1"),
        id(&eps, "198.18.1.2"),
        id(&eps, "198.18.1.3"),
    );
    // Subject: only shop's web pod on this node (b is in tools); peers: every shop pod, those
    // on other nodes too.
    let mut want = vec![(a, a, 1), (a, cc, 1)];
    want.sort();
    assert_eq!(l3(&c), want);
    let markers: Vec<_> = c.entries.iter().filter(|e| e.prefix_len == 64).collect();
    assert_eq!(markers.len(), 1, "default deny for a's ingress");
    let _ = b;
}

#[test]
fn a_clusterwide_policy_spans_namespaces_and_explicit_namespaces_override_the_default() {
    let (c, eps) = compiled(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop, app: db}}]}]\n",
    );
    let (a, b, cc) = (
        id(&eps, "198.18.1.1"),
        id(&eps, "198.18.1.2"),
        id(&eps, "198.18.1.3"),
    );
    let mut want = vec![(a, cc, 1), (b, cc, 1)];
    want.sort();
    assert_eq!(l3(&c), want);
}

#[test]
fn an_allow_under_a_covering_deny_of_the_same_peer_becomes_that_deny() {
    let (c, _) = compiled(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  endpointSelector: {}\n  ingress: [{fromEntities: [world], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]\n  ingressDeny: [{fromEntities: [world]}]\n",
    );
    let view = PolicyView::default().with(c.generation.clone());
    let actions: Vec<RuleAction> = c
        .entries
        .iter()
        .filter(|e| e.prefix_len > 64)
        .map(|e| view.lookup(e.rule_id()).unwrap().1.action)
        .collect();
    assert!(!actions.is_empty());
    assert!(
        actions.iter().all(|a| *a == RuleAction::Deny),
        "{actions:?}"
    );
}

#[test]
fn cidr_identities_are_stable_across_reloads() {
    let mut c = CidrIdentities::default();
    let n = |s: &str| -> IpNet { s.parse().unwrap() };
    assert!(c.ensure([n("198.18.0.0/16")]).unwrap());
    let first = c.get(&n("198.18.0.0/16")).unwrap();
    assert!(c.ensure([n("198.19.0.0/24"), n("198.18.0.0/16")]).unwrap());
    assert!(!c.ensure([n("198.18.0.0/16")]).unwrap());
    assert_eq!(c.get(&n("198.18.0.0/16")), Some(first));
    assert!(first >= CIDR_IDENTITY_BASE);
}

#[test]
fn rule_ids_of_older_revisions_still_resolve() {
    let (c1, eps) = compiled(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: one, namespace: shop}\nspec: {endpointSelector: {}, ingress: [{}]}\n",
    );
    let pols = parse(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: two, namespace: shop}\nspec: {endpointSelector: {}, ingress: [{}]}\n",
        "p.yaml",
    )
    .unwrap();
    let c2 = compile(&pols, &eps, &CidrIdentities::default(), 2).unwrap();
    let view = PolicyView::default()
        .with(c1.generation.clone())
        .with(c2.generation.clone());
    let name = |e: &compile::Entry| {
        let (g, r) = view.lookup(e.rule_id()).unwrap();
        g.names[r.policies[0]].clone()
    };
    assert_eq!(name(&c1.entries[0]), "shop/one");
    assert_eq!(name(&c2.entries[0]), "shop/two");
}
