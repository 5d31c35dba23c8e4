//! The real `webb-agent` binary inside a netlab node's namespace, for tests and benchmarks:
//! started with the topology's endpoints file, read over its unix socket and `/metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use webb_proto::flow::Flow;
use webb_proto::observer::GetFlowsRequest;
use webb_proto::observer::get_flows_response::ResponseTypes;
use webb_proto::observer::observer_client::ObserverClient;

/// A `webb-agent` running inside a node's namespace (as tests simulate nodes); stopped with
/// SIGTERM, then killed, on drop.
pub struct Agent {
    child: Child,
    node: String,
    sock: PathBuf,
    dir: PathBuf,
}

impl Agent {
    pub fn start(topo: &netlab::Topology, node: &str, extra: &[&str]) -> Agent {
        let dir = std::env::temp_dir().join(format!("webb-agent-test-{node}"));
        std::fs::create_dir_all(&dir).unwrap();
        let eps = dir.join("endpoints.yaml");
        topo.write_endpoints(&eps).unwrap();
        let sock = dir.join("agent.sock");
        // WEBB_AGENT_PREFIX runs the agent under a tool (e.g. `heaptrack -o /tmp/agent`).
        let prefix = std::env::var("WEBB_AGENT_PREFIX").unwrap_or_default();
        let child = Command::new("ip")
            .args(["netns", "exec", node])
            .args(prefix.split_whitespace())
            .arg(env!("CARGO_BIN_EXE_webb-agent"))
            .args(["--node-name", node, "--endpoints"])
            .arg(&eps)
            .args(["--listen", "127.0.0.1:4244", "--unix-socket"])
            .arg(&sock)
            .args(["--metrics-listen", "127.0.0.1:9962"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start webb-agent");
        let mut agent = Agent {
            child,
            node: node.to_string(),
            sock,
            dir,
        };
        // The agent attaches before it listens: once the socket exists, it observes.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !agent.sock.exists() {
            assert!(Instant::now() < deadline, "agent did not start");
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("agent exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }

    pub async fn client(&self) -> ObserverClient<Channel> {
        let path = self.sock.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        ObserverClient::new(channel)
    }

    /// `/metrics` as `name{labels}` → value (the node label dropped).
    /// The agent's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status` in kB (e.g. `VmHWM`, `VmRSS`).
    pub fn status_kb(&self, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time the agent's threads have used so far, in ns (summed over
    /// `/proc/<pid>/task/*/schedstat`; 0 when unreadable).
    pub fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let text = netlab::netns::spawn_in(&self.node, || {
            let mut s = TcpStream::connect("127.0.0.1:9962").unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        })
        .unwrap()
        .join();
        let node_label = format!("node=\"{}\"", self.node);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| {
                let k = k
                    .replace(&format!("{node_label},"), "")
                    .replace(&format!(",{node_label}"), "")
                    .replace(&format!("{{{node_label}}}"), "");
                Some((k, v.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything the agent holds: flows, and the LostEvents with their counts by source.
pub async fn everything(client: &mut ObserverClient<Channel>) -> (Vec<Flow>, BTreeMap<i32, u64>) {
    let mut s = client
        .get_flows(GetFlowsRequest {
            first: true,
            number: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut flows, mut lost) = (vec![], BTreeMap::new());
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("GetFlows ends")
    {
        match r.unwrap().response_types {
            Some(ResponseTypes::Flow(f)) => flows.push(f),
            Some(ResponseTypes::LostEvents(l)) => {
                *lost.entry(l.source).or_default() += l.num_events_lost
            }
            _ => {}
        }
    }
    (flows, lost)
}
