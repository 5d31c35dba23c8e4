//! `cargo xtask demo`'s scenario, shortened: the shop on two simulated nodes, an agent per node
//! with the shop's policies (the frontend's node in audit mode), the relay with its store, and
//! live traffic. What the demo promises a newcomer must hold: flows from both nodes, L7 HTTP
//! with the trace ids the clients sent, `frontend → db` dropped naming `data/db-ingress`, the
//! same call audited by `shop/frontend-egress` on the frontend's node, a kernel drop reason for
//! a drop Webb did not cause, each agent's loss reconciled — and nothing left behind.

use std::time::Duration;

use webb_scenarios::demo::Stack;

#[test]
fn the_demo_scenario_shows_every_promised_fact_and_leaves_nothing_behind() {
    netlab::cleanup_stale("wdemo");
    let prefix = netlab::unique_prefix("wdemo");
    let work = tempfile::tempdir().expect("a work directory");
    let topo = netlab::Topology::build(&prefix).expect("building the shop's network");
    let (summary, report) = {
        let mut stack = Stack::for_test(&topo, work.path());
        let plan = netlab::Plan {
            duration: Duration::from_secs(12),
            max_requests: 2_000,
            ..Default::default()
        };
        let report = netlab::Traffic::start(&topo, plan)
            .expect("starting the traffic")
            .wait();
        let summary = stack.summarize(&report).expect("summing up the flows");
        stack.stop_all();
        (summary, report)
    };
    topo.teardown().expect("deleting the network");

    let failed: Vec<&str> = summary
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.what)
        .collect();
    assert!(failed.is_empty(), "end checks failed: {failed:?}\n{report}");
    assert_eq!(summary.checks.len(), 7, "every end check ran");

    // The facts behind the checks, named.
    let denied = summary.flows.denied_by();
    assert!(
        denied.contains_key("data/db-ingress"),
        "the drop names the policy that denied it: {denied:?}"
    );
    assert!(
        summary.flows.kernel_drops().contains_key("NO_SOCKET"),
        "the probe of a closed port at the node is the kernel's NO_SOCKET drop: {:?}",
        summary.flows.kernel_drops()
    );
    assert!(report.client.closed_port_probes > 0);
    let frontend_db = report
        .client
        .by_pair
        .get(&("frontend".to_string(), "db".to_string()))
        .expect("the traffic tried frontend → db");
    assert_eq!(
        frontend_db.responses, 0,
        "the policy lets no frontend → db request through"
    );
    for loss in &summary.loss {
        assert!(loss.reconciles(), "{}", loss.describe());
        assert!(loss.flows > 0, "{}", loss.describe());
    }

    let left: Vec<String> = netlab::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
