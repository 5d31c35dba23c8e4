//! The demo scenario, one place for `cargo xtask demo` and `tests/tests/demo.rs`: the whole
//! stack over netlab's shop — one `webb-agent` per node (in the root namespace, looking into its
//! node with `--netns`, with the shop's policies; the frontend's node in policy audit mode), one
//! `webb-relay` following both with its store and metrics — then, after the traffic, the flows
//! the relay holds summed up and the end checks: flows from every node, L7 HTTP with the trace
//! ids the clients sent, a policy drop naming the policy, an AUDIT verdict, a kernel drop reason,
//! and each agent's loss reconciled (events the kernel emitted = flows decoded + losses counted).
//!
//! Every process started here is stopped (SIGTERM, then SIGKILL) when the [`Stack`] is dropped.

mod loss;
mod summary;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use loss::NodeLoss;
pub use summary::{EndCheck, Flows};

/// How long an agent or the relay may take to answer `webb status`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Series of Hubble metrics the relay exports in the demo (Hubble's option syntax).
pub const RELAY_METRICS: &str = "flow drop tcp port-distribution icmp policy \
    httpV2:exemplars=true;labelsContext=source_namespace,source_workload,destination_namespace,destination_workload,traffic_direction";

/// The three binaries of the stack.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub relay: PathBuf,
    pub webb: PathBuf,
}

impl Binaries {
    /// The binaries built beside the running test (`target/<profile>/`).
    pub fn beside_tests() -> Binaries {
        Binaries {
            agent: crate::binary("webb-agent"),
            relay: crate::binary("webb-relay"),
            webb: crate::binary("webb"),
        }
    }

    /// The binaries in `dir` (e.g. `target/debug`).
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            agent: dir.join("webb-agent"),
            relay: dir.join("webb-relay"),
            webb: dir.join("webb"),
        }
    }
}

/// Loopback ports of the stack.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Observer gRPC of each agent, in node order.
    pub agents: Vec<u16>,
    /// Prometheus metrics of each agent, in node order.
    pub agent_metrics: Vec<u16>,
    /// The relay's Observer gRPC.
    pub relay: u16,
    /// The relay's HTTP port (`/metrics`, the JSON API).
    pub relay_http: u16,
}

/// Choices beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The relay exports network spans to this OTLP/gRPC endpoint (`--otlp-endpoint`).
    pub otlp_endpoint: Option<String>,
}

impl Ports {
    /// Hubble's ports, as a user expects them: agents on 4244, 4246, … (4245 stays free for the
    /// relay, since every agent shares the root namespace), agent metrics on 9962, 9963, …, the
    /// relay on 4245 and its HTTP port on 9965.
    pub fn hubble(nodes: usize) -> Ports {
        let n = u16::try_from(nodes).expect("a handful of nodes");
        Ports {
            agents: (0..n).map(|i| 4244 + 2 * i).collect(),
            agent_metrics: (0..n).map(|i| 9962 + i).collect(),
            relay: 4245,
            relay_http: 9965,
        }
    }

    /// Ports free right now, for runs beside others (tests).
    pub fn free(nodes: usize) -> Ports {
        Ports {
            agents: (0..nodes).map(|_| crate::free_port()).collect(),
            agent_metrics: (0..nodes).map(|_| crate::free_port()).collect(),
            relay: crate::free_port(),
            relay_http: crate::free_port(),
        }
    }
}

/// One running agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub node: String,
    /// `127.0.0.1:<port>` of its Observer API.
    pub addr: String,
    pub metrics_addr: String,
    pub log: PathBuf,
    /// Runs with `--policy-mode audit`.
    pub audit: bool,
}

/// Processes a run started, stopped in reverse order on drop. Their pids are kept in a file so
/// that the next run can end what a crashed one left.
struct Children {
    procs: Vec<(String, Child)>,
    pidfile: PathBuf,
}

impl Children {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<u32> {
        println!("$ {}", display(cmd));
        // Own process group: Ctrl-C reaches only the demo, which stops the children in order.
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("could not start {name}"))?;
        let pid = child.id();
        self.procs.push((name.to_string(), child));
        let pids: Vec<String> = self.procs.iter().map(|(_, c)| c.id().to_string()).collect();
        let _ = fs::write(&self.pidfile, pids.join("\n"));
        Ok(pid)
    }

    fn exited(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let (_, child) = self.procs.iter_mut().find(|(n, _)| n == name)?;
        child.try_wait().ok().flatten()
    }

    fn stop(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|(n, _)| n == name) {
            let (name, child) = self.procs.remove(i);
            stop_child(&name, child);
        }
    }

    fn stop_all(&mut self) {
        while let Some((name, child)) = self.procs.pop() {
            stop_child(&name, child);
        }
        let _ = fs::remove_file(&self.pidfile);
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn stop_child(name: &str, mut child: Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("demo: {name} did not stop within 5s of SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Processes a crashed earlier run left (agents, relay, viewer): their pids are in `pidfile`;
/// only ones still running one of the binaries in `bins` are killed.
pub fn kill_leftover_processes(pidfile: &Path, bins: &Path) {
    let Ok(text) = fs::read_to_string(pidfile) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.starts_with(bins) {
            println!(
                "killing pid {pid} ({}) left by an earlier demo",
                exe.display()
            );
            // SAFETY: kill(2) of a pid checked above to run one of this checkout's binaries.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = fs::remove_file(pidfile);
}

/// The running stack.
pub struct Stack {
    children: Children,
    bins: Binaries,
    pub agents: Vec<Agent>,
    /// `127.0.0.1:<port>` of the relay's Observer API.
    pub relay: String,
    /// `127.0.0.1:<port>` of the relay's HTTP port.
    pub relay_http: String,
    /// The relay's flow store.
    pub store: PathBuf,
}

impl Stack {
    /// The stack a test runs on `topo`: the binaries built beside the test, free ports, default
    /// options, no Ctrl-C; panics when it does not come up.
    pub fn for_test(topo: &netlab::Topology, work: &Path) -> Stack {
        Stack::start(
            topo,
            &Binaries::beside_tests(),
            &Ports::free(topo.nodes().len()),
            &Options::default(),
            work,
            &AtomicBool::new(false),
        )
        .expect("starting agents and relay")
    }

    /// Writes the endpoints and policy files into `work`, starts the agents and the relay, and
    /// waits until each answers `webb status`. `stop` (Ctrl-C) ends the waiting early.
    pub fn start(
        topo: &netlab::Topology,
        bins: &Binaries,
        ports: &Ports,
        options: &Options,
        work: &Path,
        stop: &AtomicBool,
    ) -> Result<Stack> {
        let endpoints = work.join("endpoints.yaml");
        topo.write_endpoints(&endpoints)?;
        let policies = work.join("policies.yaml");
        fs::write(&policies, netlab::SHOP_POLICIES)
            .with_context(|| format!("writing {}", policies.display()))?;
        println!(
            "endpoints file: {}; policies: {}",
            endpoints.display(),
            policies.display()
        );
        // The frontend's node audits instead of enforcing (cilium-agent's --policy-audit-mode).
        let audit_node = topo.pod("frontend").map(|p| p.node.clone());

        let mut stack = Stack {
            children: Children {
                procs: Vec::new(),
                pidfile: work.join("pids"),
            },
            bins: bins.clone(),
            agents: Vec::new(),
            relay: format!("127.0.0.1:{}", ports.relay),
            relay_http: format!("127.0.0.1:{}", ports.relay_http),
            store: work.join("store"),
        };
        for (i, node) in topo.nodes().iter().enumerate() {
            let (Some(port), Some(metrics)) = (ports.agents.get(i), ports.agent_metrics.get(i))
            else {
                bail!("no port for the agent of {}", node.name);
            };
            let agent = Agent {
                node: node.name.clone(),
                addr: format!("127.0.0.1:{port}"),
                metrics_addr: format!("127.0.0.1:{metrics}"),
                log: work.join(format!("agent-{}.log", node.name)),
                audit: audit_node.as_deref() == Some(node.name.as_str()),
            };
            let out = fs::File::create(&agent.log)
                .with_context(|| format!("creating {}", agent.log.display()))?;
            let mut cmd = Command::new(&bins.agent);
            cmd.arg("--node-name")
                .arg(&node.name)
                .arg("--endpoints")
                .arg(&endpoints)
                .arg("--policy")
                .arg(&policies)
                .args([
                    "--policy-mode",
                    if agent.audit { "audit" } else { "enforce" },
                ])
                .arg("--netns")
                .arg(netlab::netns::path(&node.netns))
                .args(["--listen", &agent.addr])
                .arg("--unix-socket")
                .arg(work.join(format!("{}.sock", node.name)))
                .args(["--metrics-listen", &agent.metrics_addr])
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            stack.children.spawn(&node.name, &mut cmd)?;
            stack.agents.push(agent);
        }
        for a in stack.agents.clone() {
            stack.wait_ready(&a.node, &a.addr, &a.log, stop)?;
        }

        let log = work.join("relay.log");
        let out = fs::File::create(&log)?;
        let peers: Vec<&str> = stack.agents.iter().map(|a| a.addr.as_str()).collect();
        let mut cmd = Command::new(&bins.relay);
        cmd.args(["--listen", &stack.relay, "--peers", &peers.join(",")])
            .args(["--http-listen", &stack.relay_http])
            .args(["--metrics", RELAY_METRICS])
            .arg("--store-dir")
            .arg(&stack.store);
        if let Some(endpoint) = &options.otlp_endpoint {
            cmd.args(["--otlp-endpoint", endpoint]);
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        stack.children.spawn("relay", &mut cmd)?;
        let relay = stack.relay.clone();
        stack.wait_ready("relay", &relay, &log, stop)?;
        Ok(stack)
    }

    /// Polls `webb status --server addr` until it succeeds; fails early if the process exited.
    fn wait_ready(&mut self, name: &str, addr: &str, log: &Path, stop: &AtomicBool) -> Result<()> {
        let since = Instant::now();
        loop {
            let status = Command::new(&self.bins.webb)
                .args(["status", "--timeout", "1s", "--server", addr])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running webb status")?;
            if status.success() {
                println!(
                    "{name} ready on {addr} after {:.1}s",
                    since.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if let Some(exit) = self.children.exited(name) {
                bail!(
                    "{name} exited ({exit}) before it answered; its log:\n{}",
                    tail(log)
                );
            }
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted while waiting for {name}");
            }
            if since.elapsed() > READY_TIMEOUT {
                bail!(
                    "{name} did not answer `webb status --server {addr}` within {}s; its log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    tail(log)
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts `webb observe -f` against the relay as process `name`; the channel yields the
    /// instant of its first line. With `print`, every line is echoed to stdout.
    pub fn follow(&mut self, name: &str, print: bool) -> Result<mpsc::Receiver<Instant>> {
        let mut cmd = Command::new(&self.bins.webb);
        cmd.args(["observe", "-f", "--server", &self.relay])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if print {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        self.children.spawn(name, &mut cmd)?;
        let stdout = self
            .children
            .procs
            .last_mut()
            .and_then(|(_, c)| c.stdout.take())
            .context("observe has no stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = first.take() {
                    let _ = tx.send(Instant::now());
                }
                if print {
                    println!("{line}");
                }
            }
        });
        Ok(rx)
    }

    /// Stops the process this stack started as `name`.
    pub fn stop(&mut self, name: &str) {
        self.children.stop(name);
    }

    /// After the traffic: every flow the relay holds, summed up; each agent's loss; the end
    /// checks, printed. The processes keep running (drop the stack to stop them).
    pub fn summarize(&self, report: &netlab::Report) -> Result<Summary> {
        let mut flows = Flows::default();
        flows.add_json_lines(&self.collect()?);
        let mut loss = Vec::new();
        for a in &self.agents {
            loss.push(NodeLoss::settled(&a.node, &a.metrics_addr)?);
        }
        let nodes: Vec<String> = self.agents.iter().map(|a| a.node.clone()).collect();
        let checks = flows.print(&nodes, report, &loss);
        Ok(Summary {
            flows,
            loss,
            checks,
        })
    }

    /// Every flow the relay still holds, as JSON lines (with Webb's extras).
    fn collect(&self) -> Result<String> {
        let mut child = Command::new(&self.bins.webb)
            .args(["observe", "--last", "100000", "-o", "json", "--extras"])
            .args(["--server", &self.relay])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running webb observe --last")?;
        let mut out = String::new();
        child
            .stdout
            .take()
            .context("observe has no stdout")?
            .read_to_string(&mut out)?;
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "`webb observe --last 100000 -o json --server {}` exited with {status}",
                self.relay
            );
        }
        Ok(out)
    }

    /// Stops every process, in reverse order of start.
    pub fn stop_all(&mut self) {
        self.children.stop_all();
    }
}

/// What [`Stack::summarize`] found.
pub struct Summary {
    pub flows: Flows,
    pub loss: Vec<NodeLoss>,
    pub checks: Vec<EndCheck>,
}

impl Summary {
    /// Every end check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `prog arg …` as a user would type it into a shell.
fn display(cmd: &Command) -> String {
    let words: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}
