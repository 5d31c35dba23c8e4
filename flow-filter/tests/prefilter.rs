//! What a flow store may narrow its scan by: every flow the whitelist accepts meets the
//! prefilter (a superset), and a filter the store cannot test turns it off.

use flow_filter::{FlowFilters, Narrowing, Prefilter, Side};
use webb_proto::flow::{FlowFilter, Verdict};

fn prefilter(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Option<Prefilter> {
    FlowFilters::compile(whitelist, blacklist)
        .unwrap()
        .prefilter()
}

#[test]
fn pods_identities_and_verdicts_narrow_each_filter_of_the_whitelist() {
    let whitelist = [
        FlowFilter {
            source_pod: vec!["shop/web".into(), "cart".into()],
            verdict: vec![Verdict::Dropped as i32],
            http_method: vec!["GET".into()], // not testable on columns: left to the exact match
            ..Default::default()
        },
        FlowFilter {
            destination_identity: vec![300, 301],
            ..Default::default()
        },
    ];
    assert_eq!(
        prefilter(&whitelist, &[]),
        Some(Prefilter {
            any_of: vec![
                vec![
                    Narrowing::Verdict(vec![Verdict::Dropped as i32]),
                    // A bare name is in namespace `default`, as Hubble reads it.
                    Narrowing::Pod(
                        Side::Source,
                        vec![
                            ("shop".into(), "web".into()),
                            ("default".into(), "cart".into())
                        ]
                    ),
                ],
                vec![Narrowing::Identity(Side::Destination, vec![300, 301])],
            ],
            // The HTTP method is tested only on the decoded flow.
            exact: false,
        })
    );
}

#[test]
fn a_prefilter_is_exact_when_it_holds_every_check_and_there_is_no_blacklist() {
    let pod = FlowFilter {
        source_pod: vec!["shop/web".into()],
        verdict: vec![Verdict::Forwarded as i32],
        ..Default::default()
    };
    let identity = FlowFilter {
        destination_identity: vec![300],
        ..Default::default()
    };
    let method = FlowFilter {
        source_pod: vec!["shop/web".into()],
        http_method: vec!["GET".into()],
        ..Default::default()
    };
    let exact = |w: &[FlowFilter], b: &[FlowFilter]| prefilter(w, b).map(|p| p.exact);
    assert_eq!(exact(&[pod.clone(), identity.clone()], &[]), Some(true));
    assert_eq!(exact(&[pod.clone(), method], &[]), Some(false));
    assert_eq!(exact(&[pod], &[identity]), Some(false));
}

#[test]
fn a_filter_with_nothing_a_store_can_test_means_every_row_is_read() {
    let narrow = FlowFilter {
        source_pod: vec!["shop/web".into()],
        ..Default::default()
    };
    let untestable = FlowFilter {
        http_method: vec!["GET".into()],
        ..Default::default()
    };
    // Any of the filters may match: one without a narrowing lets every row through.
    assert_eq!(prefilter(&[narrow.clone(), untestable], &[]), None);
    // Nothing to narrow by at all.
    assert_eq!(prefilter(&[], &[]), None);
    // A blacklist never narrows (rows it rejects are still read, then dropped exactly).
    assert_eq!(prefilter(&[], std::slice::from_ref(&narrow)), None);
    let both = std::slice::from_ref(&narrow);
    assert!(prefilter(both, both).is_some());
    // A pod in no namespace matches endpoints that name none: not narrowed.
    let no_namespace = FlowFilter {
        source_pod: vec!["/web".into()],
        ..Default::default()
    };
    assert_eq!(prefilter(&[no_namespace], &[]), None);
}
