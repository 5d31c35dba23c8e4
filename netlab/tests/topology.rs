//! The topology on real namespaces (run as root).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netlab::{Topology, cleanup_leftovers, cleanup_stale, netns, unique_prefix};

const BASE: &str = "wbnl";

fn ours(prefix: &str) -> Vec<String> {
    let lead = format!("{prefix}-");
    netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&lead))
        .collect()
}

fn build() -> Topology {
    cleanup_stale(BASE);
    Topology::build(&unique_prefix(BASE)).expect("topology builds")
}

#[test]
fn building_then_dropping_the_topology_leaves_no_namespace_behind() {
    let topo = build();
    let prefix = topo.prefix().to_string();
    let mut expected: Vec<String> = topo
        .nodes()
        .iter()
        .map(|n| n.netns.clone())
        .chain(topo.pods().iter().map(|p| p.netns.clone()))
        .collect();
    expected.sort();
    assert_eq!(ours(&prefix), expected);
    let dropped = Instant::now();
    drop(topo);
    eprintln!("teardown (drop) took {:?}", dropped.elapsed());
    assert_eq!(ours(&prefix), Vec::<String>::new());
}

#[test]
fn a_panic_while_the_topology_is_alive_still_removes_every_namespace() {
    let prefix = unique_prefix(BASE);
    let p = prefix.clone();
    let result = std::panic::catch_unwind(move || {
        let topo = Topology::build(&p).expect("topology builds");
        assert!(!ours(topo.prefix()).is_empty());
        panic!("a failing test");
    });
    assert!(result.is_err());
    assert_eq!(ours(&prefix), Vec::<String>::new());
}

#[test]
fn cleanup_leftovers_removes_what_a_crashed_run_left_and_a_rebuild_succeeds() {
    let prefix = unique_prefix(BASE);
    let topo = Topology::build(&prefix).expect("topology builds");
    let count = topo.nodes().len() + topo.pods().len();
    // A crash: nothing runs Drop.
    std::mem::forget(topo);
    let err = Topology::build(&prefix).expect_err("the leftovers are in the way");
    assert!(err.to_string().contains("cleanup_leftovers"), "{err}");
    let removed = cleanup_leftovers(&prefix).expect("cleanup");
    assert_eq!(removed.len(), count);
    assert_eq!(ours(&prefix), Vec::<String>::new());
    let again = Topology::build(&prefix).expect("rebuilds after cleanup");
    again.teardown().expect("teardown");
    assert_eq!(ours(&prefix), Vec::<String>::new());
}

/// Connects from `from`'s namespace to `to` and exchanges one line with a listener in `to`'s.
fn tcp_roundtrip(topo: &Topology, from: &str, to: &str, ip: IpAddr) -> Result<String, String> {
    let listen_ns = topo.pod(to).unwrap().netns.clone();
    let listener = netns::spawn_in(&listen_ns, move || {
        TcpListener::bind(SocketAddr::new(ip, 7000)).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
    .join()?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut s, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(&buf).map_err(|e| e.to_string())
    });
    let from_ns = topo.pod(from).unwrap().netns.clone();
    let reply = netns::spawn_in(&from_ns, move || -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, 7000), Duration::from_secs(3))
            .map_err(|e| format!("connect {ip}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hello").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    })
    .map_err(|e| e.to_string())?
    .join()?;
    server.join().unwrap()?;
    Ok(reply)
}

#[test]
fn pods_reach_each_other_across_and_within_nodes_over_ipv4_and_ipv6() {
    let topo = build();
    eprintln!("build took {:?}", topo.build_time());
    let (fe, cart, catalog, db) = (
        topo.pod("frontend").unwrap(),
        topo.pod("cart").unwrap(),
        topo.pod("catalog").unwrap(),
        topo.pod("db").unwrap(),
    );
    assert_ne!(
        fe.node, cart.node,
        "frontend and cart sit on different nodes"
    );
    assert_eq!(fe.node, catalog.node);
    for (from, to, ip) in [
        ("frontend", "cart", IpAddr::from(cart.ipv4)),
        ("frontend", "cart", cart.ipv6.into()),
        ("cart", "frontend", fe.ipv4.into()),
        ("cart", "frontend", fe.ipv6.into()),
        ("frontend", "catalog", catalog.ipv4.into()),
        ("frontend", "catalog", catalog.ipv6.into()),
        ("catalog", "db", db.ipv6.into()),
        ("catalog", "db", db.ipv4.into()),
        ("cart", "db", db.ipv6.into()),
    ] {
        assert_eq!(
            tcp_roundtrip(&topo, from, to, ip).as_deref(),
            Ok("hello"),
            "{from} -> {to} at {ip}"
        );
    }
}

#[test]
fn addresses_stay_in_the_test_ranges_and_interfaces_live_on_their_node() {
    let topo = build();
    let v4: ipnet::Ipv4Net = "198.18.0.0/15".parse().unwrap();
    let v6: ipnet::Ipv6Net = "2001:2::/48".parse().unwrap();
    for p in topo.pods() {
        assert!(v4.contains(&p.ipv4) && v6.contains(&p.ipv6), "{p:?}");
        let node = topo.node(&p.node).unwrap();
        let out = std::process::Command::new("ip")
            .args(["-n", &node.netns, "-o", "link", "show", "dev", &p.interface])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} missing on {}",
            p.interface,
            node.name
        );
    }
    for n in topo.nodes() {
        assert!(v4.contains(&n.ipv4) && v6.contains(&n.ipv6), "{n:?}");
    }
}

/// The endpoints file's shape (issue 3 item 6), strict: an unknown or misspelt key fails.
mod file {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub endpoints: Vec<Endpoint>,
        pub nodes: Vec<Node>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Endpoint {
        pub name: String,
        pub namespace: String,
        pub labels: BTreeMap<String, String>,
        pub workload: Workload,
        pub ips: Vec<IpAddr>,
        pub interface: String,
        pub node: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Workload {
        pub name: String,
        pub kind: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Node {
        pub name: String,
        pub ips: Vec<IpAddr>,
    }
}

#[test]
fn the_endpoints_file_describes_every_pod_and_node_in_the_agents_shape() {
    let topo = build();
    let yaml = topo.endpoints_yaml();
    let f: file::File = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(f.endpoints.len(), topo.pods().len());
    for p in topo.pods() {
        let e = f
            .endpoints
            .iter()
            .find(|e| e.name == p.name)
            .unwrap_or_else(|| panic!("{} missing\n{yaml}", p.name));
        assert_eq!(e.namespace, p.namespace);
        assert_eq!(e.labels, p.labels);
        assert_eq!(
            (e.workload.name.as_str(), e.workload.kind.as_str()),
            (p.workload.name.as_str(), p.workload.kind.as_str())
        );
        assert_eq!(e.ips, vec![IpAddr::from(p.ipv4), p.ipv6.into()]);
        assert_eq!(e.interface, p.interface);
        assert_eq!(e.node, p.node);
        assert!(
            f.nodes.iter().any(|n| n.name == e.node),
            "{} on an unknown node",
            e.name
        );
    }
    for n in topo.nodes() {
        let listed = f
            .nodes
            .iter()
            .find(|x| x.name == n.name)
            .expect("node listed");
        assert!(listed.ips.contains(&IpAddr::from(n.ipv4)) && listed.ips.contains(&n.ipv6.into()));
    }
}
