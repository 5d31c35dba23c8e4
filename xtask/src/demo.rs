//! `cargo xtask demo`: the live demo network under the whole stack, in one command.
//!
//! Prerequisites and build → leftovers of a crashed run removed → netlab's two nodes and the
//! shop's pods → one `webb-agent` per node (in the root namespace, looking into its node with
//! `--netns`) → `webb-relay` following both (when this checkout's relay serves) → bounded live
//! traffic → `webb tui` on a terminal, `webb observe -f` otherwise → the traffic report and a
//! summary of the flows → every process and namespace it made gone.

mod summary;

use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd::{self, fmt_duration};
use crate::prereq::{self, Needs};

/// Namespace prefix of the demo (`webb-node1`, `webb-frontend`, ...).
const PREFIX: &str = "webb";
/// Agents listen on 127.0.0.1:AGENT_PORT+2i (4244, 4246, ...: every agent shares the root
/// namespace, and 4245 stays free for the relay), metrics on METRICS_PORT+i.
const AGENT_PORT: u16 = 4244;
const METRICS_PORT: u16 = 9962;
/// The relay on Hubble Relay's port, so a plain `webb observe` (or `hubble observe`) finds it.
const RELAY_PORT: u16 = 4245;
/// The relay's HTTP port (`/metrics`, the JSON API): Hubble's metrics port.
const RELAY_HTTP_PORT: u16 = 9965;
/// How long an agent or the relay may take to answer `webb status`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the traffic runs (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Print `webb observe -f` instead of opening `webb tui` (also when stdout is not a terminal).
    #[arg(long)]
    no_tui: bool,
}

/// Processes this run started, stopped (SIGTERM, then SIGKILL) in reverse order on drop.
struct Children {
    procs: Vec<(String, Child)>,
    pidfile: PathBuf,
}

impl Children {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<u32> {
        println!("$ {}", cmd::display(cmd));
        // Own process group: Ctrl-C reaches only us, and we stop the children in order.
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

    /// Has `name` exited? Returns its status if so.
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
    eprintln!("xtask demo: {name} did not stop within 5s of SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Processes a crashed earlier demo left in the root namespace (agents, relay, viewer): their
/// pids are in the pidfile; only ones still running one of our binaries are killed.
fn kill_leftover_processes(pidfile: &Path, bins: &Path) {
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

pub fn run(args: &DemoArgs) -> Result<bool> {
    let started = Instant::now();
    prereq::ensure(Needs {
        root: true,
        kernel_fs: true,
        cargo_tools: false,
    })?;

    let build = Instant::now();
    cmd::run(cmd::cargo().args(["build", "-p", "flow-agent", "-p", "tui", "--bins"]))?;
    // The relay is optional: a relay that does not build leaves a demo against the agents.
    let relay_built = match cmd::run(cmd::cargo().args(["build", "-p", "relay", "--bins"])) {
        Ok(()) => true,
        Err(err) => {
            eprintln!("xtask demo: {err:#}; running without the relay");
            false
        }
    };
    println!("built in {}", fmt_duration(build.elapsed()));
    let built = Instant::now();

    let bins = cmd::target_dir()?.join("debug");
    let agent_bin = bins.join("webb-agent");
    let webb_bin = bins.join("webb");
    let relay_bin = bins.join("webb-relay");
    let relay_ok = relay_built && relay_serves(&relay_bin);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C exits at once; the next run removes what is left.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }

    let work = std::env::temp_dir().join("webb-demo");
    let pidfile = work.join("pids");
    kill_leftover_processes(&pidfile, &bins);
    let removed =
        netlab::cleanup_leftovers(PREFIX).context("removing an earlier demo's namespaces")?;
    if !removed.is_empty() {
        println!(
            "removed namespaces left by an earlier demo: {}",
            removed.join(", ")
        );
    }
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    let topo = netlab::Topology::build(PREFIX).context("building the demo network")?;
    println!(
        "demo network: {} nodes, {} pods in {}",
        topo.nodes().len(),
        topo.pods().len(),
        fmt_duration(topo.build_time())
    );
    let outcome = run_stack(
        args,
        &topo,
        &work,
        &pidfile,
        Stack {
            agent: &agent_bin,
            webb: &webb_bin,
            relay: relay_ok.then_some(relay_bin.as_path()),
            started,
            built,
            stop: &stop,
        },
    );
    // Processes are gone by now (run_stack's Children dropped); then the namespaces.
    let teardown = topo.teardown();
    let left: Vec<String> = netlab::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .collect();
    if left.is_empty() {
        println!("cleaned up: no {PREFIX}-* namespace left, every process stopped");
    } else {
        eprintln!("xtask demo: namespaces left behind: {}", left.join(", "));
    }
    teardown.context("deleting the demo network")?;
    let ok = outcome?;
    Ok(ok && left.is_empty())
}

struct Stack<'a> {
    agent: &'a Path,
    webb: &'a Path,
    relay: Option<&'a Path>,
    started: Instant,
    built: Instant,
    stop: &'a AtomicBool,
}

fn run_stack(
    args: &DemoArgs,
    topo: &netlab::Topology,
    work: &Path,
    pidfile: &Path,
    stack: Stack<'_>,
) -> Result<bool> {
    let endpoints = work.join("endpoints.yaml");
    topo.write_endpoints(&endpoints)?;
    println!("endpoints file: {}", endpoints.display());

    let mut children = Children {
        procs: Vec::new(),
        pidfile: pidfile.to_path_buf(),
    };
    let mut agents = Vec::new();
    for (i, node) in topo.nodes().iter().enumerate() {
        let i = u16::try_from(i).context("too many nodes")?;
        let addr = format!("127.0.0.1:{}", AGENT_PORT + 2 * i);
        let log = work.join(format!("agent-{}.log", node.name));
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(stack.agent);
        cmd.arg("--node-name")
            .arg(&node.name)
            .arg("--endpoints")
            .arg(&endpoints)
            .arg("--netns")
            .arg(netlab::netns::path(&node.netns))
            .args(["--listen", &addr])
            .arg("--unix-socket")
            .arg(work.join(format!("{}.sock", node.name)))
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", METRICS_PORT + i),
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        children.spawn(&node.name, &mut cmd)?;
        agents.push((node.name.clone(), addr, log));
    }
    for (name, addr, log) in &agents {
        wait_ready(stack.webb, name, addr, log, &mut children, stack.stop)?;
    }

    let server = match stack.relay {
        Some(relay) => {
            let addr = format!("127.0.0.1:{RELAY_PORT}");
            let log = work.join("relay.log");
            let out = fs::File::create(&log)?;
            let peers: Vec<&str> = agents.iter().map(|(_, a, _)| a.as_str()).collect();
            let mut cmd = Command::new(relay);
            let store = work.join("store");
            cmd.args(["--listen", &addr, "--peers", &peers.join(",")])
                .args(["--http-listen", &format!("127.0.0.1:{RELAY_HTTP_PORT}")])
                .arg("--store-dir")
                .arg(&store)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            children.spawn("relay", &mut cmd)?;
            wait_ready(stack.webb, "relay", &addr, &log, &mut children, stack.stop)?;
            println!(
                "relay: Observer API on {addr}; metrics at http://127.0.0.1:{RELAY_HTTP_PORT}/metrics, \
                 JSON API at http://127.0.0.1:{RELAY_HTTP_PORT}/api/v1/status; flow history in {}",
                store.display()
            );
            addr
        }
        None => {
            println!(
                "relay: this checkout's webb-relay does not serve --listen/--peers yet; watching \
                 {} directly",
                agents[0].0
            );
            agents[0].1.clone()
        }
    };

    let plan = netlab::Plan {
        duration: args.duration,
        max_requests: 100_000,
        ..Default::default()
    };
    let traffic = netlab::Traffic::start(topo, plan).context("starting the traffic")?;
    let traffic_started = Instant::now();
    println!(
        "traffic running for {} (HTTP with traceparent, DNS, ICMP) — flows from {server}",
        fmt_duration(args.duration)
    );

    let tui = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let first_flow = if tui {
        // The viewer owns the screen: a quiet follower measures when the first flow arrives.
        let probe = follow(stack.webb, &server, &mut children, "probe", false)?;
        println!("$ webb tui --server {server}   (q quits)");
        let status = Command::new(stack.webb)
            .args(["tui", "--server", &server])
            .status()
            .context("running webb tui")?;
        if !status.success() {
            eprintln!("xtask demo: webb tui exited with {status}");
        }
        children.stop("probe");
        probe.recv_timeout(Duration::from_millis(10)).ok()
    } else {
        let first = follow(stack.webb, &server, &mut children, "observe", true)?;
        let deadline = traffic_started + args.duration;
        let mut first_at = None;
        while Instant::now() < deadline && !stack.stop.load(Ordering::Relaxed) {
            if first_at.is_none() {
                first_at = first.recv_timeout(Duration::from_millis(200)).ok();
            } else {
                thread::sleep(Duration::from_millis(200));
            }
        }
        children.stop("observe");
        first_at.or_else(|| first.recv_timeout(Duration::from_millis(10)).ok())
    };
    if stack.stop.load(Ordering::Relaxed) {
        println!("\ninterrupted: stopping the traffic and cleaning up");
    }
    traffic.stop();
    let report = traffic.wait();
    println!("\n== traffic ==\n{report}");
    match first_flow {
        Some(at) => println!(
            "time to first flow: {} from the command; {} after the build (what a warm build \
             costs); {} after the traffic started",
            fmt_duration(at.duration_since(stack.started)),
            fmt_duration(at.duration_since(stack.built)),
            fmt_duration(at.saturating_duration_since(traffic_started))
        ),
        None => println!("time to first flow: no flow arrived"),
    }

    // The relay holds both nodes' flows; without it, ask each agent.
    let servers: Vec<String> = if stack.relay.is_some() {
        vec![server]
    } else {
        agents.iter().map(|(_, a, _)| a.clone()).collect()
    };
    let mut flows = summary::Flows::default();
    for s in &servers {
        let json = collect(stack.webb, s)?;
        flows.add_json_lines(&json);
    }
    let nodes: Vec<String> = agents.iter().map(|(n, _, _)| n.clone()).collect();
    let ok = flows.print(&nodes, &report);
    children.stop_all();
    println!("logs of this run: {}/*.log", work.display());
    Ok(ok)
}

/// Does this webb-relay serve the Observer API and follow agents (`--listen`, `--peers`)?
fn relay_serves(relay: &Path) -> bool {
    Command::new(relay)
        .arg("--help")
        .output()
        .map(|o| {
            let help = String::from_utf8_lossy(&o.stdout);
            o.status.success() && help.contains("--listen") && help.contains("--peers")
        })
        .unwrap_or(false)
}

/// Polls `webb status --server addr` until it succeeds; fails early if the process exited.
fn wait_ready(
    webb: &Path,
    name: &str,
    addr: &str,
    log: &Path,
    children: &mut Children,
    stop: &AtomicBool,
) -> Result<()> {
    let since = Instant::now();
    loop {
        let status = Command::new(webb)
            .args(["status", "--timeout", "1s", "--server", addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running webb status")?;
        if status.success() {
            println!(
                "{name} ready on {addr} after {}",
                fmt_duration(since.elapsed())
            );
            return Ok(());
        }
        if let Some(exit) = children.exited(name) {
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
                "{name} did not answer `webb status --server {addr}` within {}; its log:\n{}",
                fmt_duration(READY_TIMEOUT),
                tail(log)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Starts `webb observe -f` against `server`; the channel yields the instant of its first line.
/// With `print`, every line is echoed.
fn follow(
    webb: &Path,
    server: &str,
    children: &mut Children,
    name: &str,
    print: bool,
) -> Result<mpsc::Receiver<Instant>> {
    let mut cmd = Command::new(webb);
    cmd.args(["observe", "-f", "--server", server])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if print {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    children.spawn(name, &mut cmd)?;
    let stdout = children
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

/// Every flow `server` still holds, as JSON lines (with Webb's extras).
fn collect(webb: &Path, server: &str) -> Result<String> {
    let mut child = Command::new(webb)
        .args([
            "observe", "--last", "100000", "-o", "json", "--extras", "--server", server,
        ])
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
        eprintln!(
            "xtask demo: `webb observe --last 100000 -o json --server {server}` exited with {status}"
        );
    }
    Ok(out)
}
