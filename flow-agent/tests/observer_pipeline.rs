//! The pipeline task is the ring's only writer: records in, flows out; garbage is counted, not
//! fatal; datapath losses become `LostEvent{PERF_EVENT_RING_BUFFER}` entries; node changes
//! (interfaces, endpoints) apply to the next records.

use std::sync::Arc;
use std::time::Duration;

use flow_agent::datapath::event::{HEADER_LEN, VERSION};
use flow_agent::datapath::kdrop::KernelDropNames;
use flow_agent::decode::{Decoder, FlowIds, Interfaces, WallClock};
use flow_agent::endpoints::Endpoints;
use flow_agent::metrics::Metrics;
use flow_agent::pipeline::{self, NodeView, PendingLoss};
use flow_observer::{Observed, Ring, RingEvent};
use tokio::sync::{mpsc, watch};
use webb_proto::flow::{LostEventSource, TraceObservationPoint};

const EPS: &str = "endpoints:\n  - {name: web, namespace: shop, labels: {app: web}, ips: [198.19.1.10], interface: lxcweb, node: vn1}\n";

/// A UDP record from 198.19.1.10 seen on TC ingress of ifindex 7.
fn udp_record() -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = 1;
    b[1] = VERSION;
    b[2..4].copy_from_slice(&(HEADER_LEN as u16).to_ne_bytes());
    b[4..8].copy_from_slice(&7u32.to_ne_bytes());
    b[27] = 4;
    let v4 = |d| {
        std::net::Ipv4Addr::new(198, 19, 1, d)
            .to_ipv6_mapped()
            .octets()
    };
    b[40..56].copy_from_slice(&v4(10));
    b[56..72].copy_from_slice(&v4(99));
    b[76] = 17;
    b
}

async fn wait_for(ring: &Ring<RingEvent>, len: usize) {
    for _ in 0..200 {
        if ring.len() >= len {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ring has {} entries, expected {len}", ring.len());
}

#[tokio::test]
async fn records_become_flows_garbage_is_counted_and_losses_become_lost_events() {
    let eps = Arc::new(Endpoints::parse(EPS, "eps.yaml", "vn1").unwrap());
    let metrics = Arc::new(Metrics::new("vn1"));
    let ring = Arc::new(Ring::new(63).unwrap());
    let state = Arc::new(Observed::new("vn1", ring.clone(), metrics.clone()));
    let decoder = Decoder::new(
        "vn1",
        eps.clone(),
        Arc::new(WallClock::new()),
        FlowIds::new("vn1", 1),
        Arc::new(KernelDropNames::default()),
    );
    let (view_tx, view_rx) = watch::channel(NodeView {
        endpoints: eps.clone(),
        interfaces: Interfaces::default(),
        policy: Default::default(),
    });
    let (tx, rx) = mpsc::channel(16);
    let loss = Arc::new(PendingLoss::default());
    let task = tokio::spawn(pipeline::run(
        rx,
        decoder,
        state.clone(),
        metrics.clone(),
        view_rx,
        loss.clone(),
    ));

    // Interface 7 is unknown yet: a plain interface, so the packet comes from the network.
    tx.send([udp_record(), vec![1, 2, 3]].into_iter().collect())
        .await
        .unwrap();
    wait_for(&ring, 1).await;

    // Now it is the web pod's veth: from the pod, to the stack. And the datapath lost 5.
    let mut ifs = Interfaces::default();
    ifs.insert(7, "lxcweb");
    view_tx
        .send(NodeView {
            endpoints: eps,
            interfaces: ifs,
            policy: Default::default(),
        })
        .unwrap();
    loss.add(5);
    tx.send([udp_record()].into_iter().collect()).await.unwrap();
    wait_for(&ring, 3).await;
    drop(tx);
    task.await.unwrap();

    let entries: Vec<_> = (ring.oldest()..ring.head())
        .map(|s| ring.get(s).unwrap())
        .collect();
    let RingEvent::Flow(first) = entries[0].as_ref() else {
        panic!("flow first")
    };
    let first = first.flow().unwrap();
    assert_eq!(
        first.trace_observation_point,
        TraceObservationPoint::FromNetwork as i32
    );
    let RingEvent::Lost {
        node_name,
        event: lost,
    } = entries[1].as_ref()
    else {
        panic!("the loss is reported before later flows")
    };
    assert_eq!(lost.source, LostEventSource::PerfEventRingBuffer as i32);
    assert_eq!(lost.num_events_lost, 5);
    assert_eq!(node_name, "vn1");
    let RingEvent::Flow(second) = entries[2].as_ref() else {
        panic!("flow after the loss")
    };
    let second = second.flow().unwrap();
    assert_eq!(
        second.trace_observation_point,
        TraceObservationPoint::ToStack as i32
    );
    assert_eq!(second.interface.as_ref().unwrap().name, "lxcweb");
    assert_eq!(state.seen_flows(), 2);

    let text = metrics.encode();
    assert!(
        text.contains("webb_decode_errors_total{node=\"vn1\"} 1"),
        "{text}"
    );
    assert!(text.contains("webb_flows_total{node=\"vn1\"} 2"), "{text}");
}
