//! Kernel side of the agent: loads the eBPF programs (`bpf/flow.bpf.c`), attaches them to
//! interfaces (TCX, clsact fallback; in any network namespace), fills the ipcache, reads the
//! event ring and the per-CPU counters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flow_agent::datapath::DatapathError> {
//! use flow_agent::datapath::{Datapath, DatapathConfig, event::RawEvent};
//! let mut dp = Datapath::load(DatapathConfig::default())?;
//! dp.set_ipcache(&[("198.18.1.0/24".parse().unwrap(), 1001)])?;
//! dp.attach("lxcweb", None)?;
//! let mut rx = dp.events()?;
//! // One batch per drain of the ring: records are decoded in place.
//! while let Some(batch) = rx.recv().await {
//!     for rec in batch.iter() {
//!         let _ev = RawEvent::parse(rec);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod event;
pub mod kdrop;
pub mod netns;
mod ring;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::perf::{PerfEventArray, PerfEventArrayBuffer};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues, RingBuf};
use aya::programs::links::LinkOrder;
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::trace_point::TracePointLink;
use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions, TracePoint,
};
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;
use tokio::sync::mpsc;

pub use kdrop::KernelDropNames;
pub use netns::{NetnsError, NetnsGuard};
pub use ring::{EventRecord, ReaderStats, RecordBatch};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow.bpf.o"));
static OBJECT_PERF: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flow_perf.bpf.o"));

/// Reserved identity of the local host (Cilium's `reserved:host`).
pub const IDENTITY_HOST: u32 = 1;
/// Reserved identity of addresses outside the cluster (Cilium's `reserved:world`); the
/// datapath's answer for addresses the ipcache does not cover.
pub const IDENTITY_WORLD: u32 = 2;
/// Largest snap length accepted by [`DatapathConfig::cap_len`].
pub const CAP_LEN_MAX: u16 = 1500;

/// When the datapath writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Connection lifecycle steps (new, first reply, SYN/FIN/RST), drops, L7 heads and their
    /// continuation segments — not every packet.
    #[default]
    Flows,
    /// Every packet (debugging; costly).
    None,
}

/// How records travel from the kernel to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Ring buffer when the kernel has it (5.8+), else perf buffers.
    #[default]
    Auto,
    /// BPF ring buffer: variable-size records, wakeup past a fill threshold plus a timer drain.
    RingBuf,
    /// Per-CPU perf buffers (fallback; aya wakes the reader on every record, ~5 µs each).
    Perf,
}

/// Load-time settings of the datapath.
#[derive(Debug, Clone)]
pub struct DatapathConfig {
    /// Payload bytes captured for L7 records, after the packet's headers (default 512, at most
    /// [`CAP_LEN_MAX`]; a record holds at most 1536 bytes with the headers). Other records
    /// carry the packet's headers only.
    pub cap_len: u16,
    /// Event aggregation mode.
    pub aggregation: Aggregation,
    /// Ring buffer size in bytes (power of two, multiple of the page size; default 4 MiB).
    pub ring_bytes: u32,
    /// Pending bytes past which the kernel wakes the reader (default 256 KiB).
    pub wakeup_bytes: u64,
    /// Period of the timer drain (default 5 ms).
    pub drain_interval: Duration,
    /// Records buffered between the reader and the consumer (default 8192: the BPF ring is
    /// the buffer for bursts; each record held here is a heap copy, and 65536 of them took
    /// 11 MB of the agent's peak heap).
    pub channel_capacity: usize,
    /// Continuation segments sent after an incomplete L7 head (default 8).
    pub l7_max_segments: u32,
    /// Payload bytes of one L7 head across its segments (default 16 KiB).
    pub l7_max_bytes: u32,
    /// Conntrack entries (LRU; default 65536).
    pub ct_entries: u32,
    /// Ipcache prefixes (default 65536).
    pub ipcache_entries: u32,
    /// Attach the `skb:kfree_skb` tracepoint for kernel drops in the watched namespaces.
    pub kernel_drops: bool,
    /// Report kernel drops of every namespace, not only watched ones (debugging; noisy).
    pub kernel_drops_all_netns: bool,
    /// Record transport.
    pub transport: Transport,
    /// Pages per CPU of each perf buffer (power of two; [`Transport::Perf`] only; default 64).
    pub perf_pages: usize,
    /// Policy map entries, both slots together (default 262144: 131072 per revision).
    pub policy_entries: u32,
    /// Audit mode: packets the policy would drop pass, with verdict AUDIT.
    pub policy_audit: bool,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            cap_len: 512,
            aggregation: Aggregation::Flows,
            ring_bytes: 4 << 20,
            wakeup_bytes: 256 << 10,
            drain_interval: Duration::from_millis(5),
            channel_capacity: 8192,
            l7_max_segments: 8,
            l7_max_bytes: 16 << 10,
            ct_entries: 65536,
            ipcache_entries: 65536,
            kernel_drops: true,
            kernel_drops_all_netns: false,
            transport: Transport::Auto,
            perf_pages: 64,
            policy_entries: 1 << 18,
            policy_audit: false,
        }
    }
}

/// Distinct ipcache prefix lengths the datapath probes one by one (`IPCACHE_LENS_MAX` in
/// `bpf/flow.bpf.c`); with more it walks the LPM trie.
const IPCACHE_LENS_MAX: usize = 8;

/// Time an inactive policy slot is left alone after a switch before it is rewritten, when the
/// kernel cannot wait for an RCU grace period (`membarrier(MEMBARRIER_CMD_GLOBAL)`, see
/// [`SlotGrace`]): far more than any program run that may still be reading it (they take well
/// under a microsecond and cannot sleep).
pub const POLICY_GRACE: Duration = Duration::from_millis(20);

/// Waits for an RCU grace period: `membarrier(MEMBARRIER_CMD_GLOBAL)` runs the kernel's
/// `synchronize_rcu()`. Datapath programs run inside RCU read-side sections (the TC hooks and
/// `BPF_PROG_TEST_RUN` alike), so every run that started before the call has ended when it
/// returns — also one whose vCPU the hypervisor paused half-way. About 8 ms on the 2-vCPU VM
/// (HZ 250), where [`POLICY_GRACE`] was a guess of 20 ms.
fn rcu_grace_period() -> std::io::Result<()> {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: membarrier(2) with constant arguments reads and writes no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The grace period after a policy switch, before the slot that was in force may be rewritten.
/// It runs on a thread from the switch on, so the next install waits only for what is left of
/// it (a held DNS answer waits for that install).
#[derive(Debug, Default)]
struct SlotGrace(Option<std::thread::JoinHandle<()>>);

impl SlotGrace {
    fn wait_out() {
        if rcu_grace_period().is_err() {
            std::thread::sleep(POLICY_GRACE);
        }
    }

    /// A switch just happened.
    fn start(&mut self) {
        self.0 = std::thread::Builder::new()
            .name("webb-policy-grace".into())
            .spawn(Self::wait_out)
            .ok();
        if self.0.is_none() {
            Self::wait_out();
        }
    }

    /// Returns once every program run that may have read the previous slot has ended.
    fn wait(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// Errors of the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// A configuration value is out of range.
    #[error("invalid datapath config: {0}")]
    Config(String),
    /// The object could not be loaded (maps created, relocations, BTF).
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program failed to load (the verifier log is in the source error) or attach.
    #[error("program {program}: {source}")]
    Program {
        /// Program name in the object.
        program: &'static str,
        /// Underlying error.
        #[source]
        source: Box<ProgramError>,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The interface does not exist in the given namespace.
    #[error("interface {ifname} not found{}", netns_suffix(.netns))]
    NoInterface {
        /// Interface name.
        ifname: String,
        /// Namespace path, if not the current one.
        netns: Option<PathBuf>,
    },
    /// Attaching to an interface failed with both TCX and clsact.
    #[error("attaching to {ifname}{}: {source}", netns_suffix(.netns))]
    Attach {
        /// Interface name.
        ifname: String,
        /// Namespace path, if not the current one.
        netns: Option<PathBuf>,
        /// Last error (the clsact fallback's).
        #[source]
        source: Box<ProgramError>,
    },
    /// Namespace switching failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// tracefs is not available and could not be mounted.
    #[error("tracefs unavailable at /sys/kernel/tracing (needed for kernel drops): {0}")]
    Tracefs(std::io::Error),
    /// [`Datapath::events`] was called twice, or the ring was handed to the reader already.
    #[error("the event ring is already being read")]
    RingTaken,
    /// `events()` needs a running tokio runtime.
    #[error("Datapath::events must be called inside a tokio runtime")]
    NoRuntime,
}

fn prog_err(program: &'static str) -> impl FnOnce(ProgramError) -> DatapathError {
    move |e| DatapathError::Program {
        program,
        source: Box::new(e),
    }
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |e| DatapathError::Map {
        map,
        source: Box::new(e),
    }
}

fn netns_suffix(netns: &Option<PathBuf>) -> String {
    match netns {
        Some(p) => format!(" in netns {}", p.display()),
        None => String::new(),
    }
}

/// Which program of the object (for [`Datapath::test_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcProgram {
    /// The ingress observer.
    Ingress,
    /// The egress observer.
    Egress,
    /// An empty classifier: the test-run harness's own cost (benchmark baseline).
    Empty,
    /// The policy decision of a new connection alone (benchmark of the policy lookup).
    PolicyProbe,
}

impl TcProgram {
    fn name(self) -> &'static str {
        match self {
            TcProgram::Ingress => "webb_tc_ingress",
            TcProgram::Egress => "webb_tc_egress",
            TcProgram::Empty => "webb_tc_empty",
            TcProgram::PolicyProbe => "webb_tc_policy_probe",
        }
    }
}

/// Datapath counters: the per-CPU kernel counters summed, plus the reader's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen by the TC programs.
    pub packets: u64,
    /// Bytes of those packets (`skb->len`).
    pub bytes: u64,
    /// Records written to the ring.
    pub events: u64,
    /// Records lost because the ring was full (surface as `LostEvent` PERF_EVENT_RING_BUFFER).
    pub ring_fail: u64,
    /// Packets with short or garbled headers (passed unchanged).
    pub parse_err: u64,
    /// Conntrack entries created.
    pub ct_new: u64,
    /// L7 head and continuation records.
    pub l7_events: u64,
    /// Kernel-drop records.
    pub kdrop_events: u64,
    /// Records taken from the ring by the reader.
    pub read_records: u64,
    /// Bytes taken from the ring by the reader.
    pub read_bytes: u64,
    /// Reader drain passes triggered by a kernel wakeup.
    pub reader_wakeups: u64,
    /// Records the perf buffers reported lost (perf transport; the same losses are already in
    /// `ring_fail`, counted by the program when its output call failed).
    pub perf_lost: u64,
}

/// An interface the datapath is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedInterface {
    /// Interface name.
    pub ifname: String,
    /// Namespace file (`None`: the agent's own namespace).
    pub netns: Option<PathBuf>,
    /// Inode of that namespace (kernel-drop events carry it).
    pub netns_ino: u32,
    /// Interface index inside that namespace (events carry it).
    pub ifindex: u32,
    /// Whether TCX links are used (else a clsact filter).
    pub tcx: bool,
}

struct Attachment {
    info: AttachedInterface,
    // Dropping a link detaches it. Netlink (clsact) links must be dropped inside their netns.
    links: Vec<SchedClassifierLink>,
}

type AttachKey = (String, Option<PathBuf>);

enum RingState {
    Idle(RingBuf<MapData>),
    IdlePerf(Vec<PerfEventArrayBuffer<MapData>>),
    Reading,
}

/// What [`Datapath::rescan`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RescanReport {
    /// Interfaces newly attached.
    pub attached: Vec<AttachedInterface>,
    /// Interfaces that disappeared (their links were released).
    pub detached: Vec<AttachedInterface>,
    /// Wanted interfaces that failed to attach, with the error text.
    pub failed: Vec<(String, Option<PathBuf>, String)>,
}

/// The loaded datapath. Dropping it detaches every program.
pub struct Datapath {
    ebpf: Ebpf,
    config: DatapathConfig,
    ring: RingState,
    transport: Transport,
    stats: Arc<ReaderStats>,
    wanted: BTreeMap<AttachKey, ()>,
    attached: BTreeMap<AttachKey, Attachment>,
    kdrop_link: Option<TracePointLink>,
    policy_rev: u32,
    policy_slots: [Vec<[u8; 16]>; 2],
    policy_map: BpfHashMap<MapData, [u8; 16], [u8; 16]>,
    policy_grace: SlotGrace,
    ring_positions: Option<ring::RingPositions>,
}

/// How full the BPF ring buffer is (ring-buffer transport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingFill {
    /// Size of the ring's data area in bytes.
    pub size: u64,
    /// Bytes written and not yet read, sampled now (0 when it cannot be sampled).
    pub used: u64,
    /// Largest fill a record write saw since the previous call (its own bytes included): the
    /// high-water mark between samples. Past `size` the write failed and was counted lost.
    pub peak: u64,
}

impl Datapath {
    /// Loads and verifies the programs with `config`; nothing is attached yet except the
    /// kernel-drop tracepoint (if enabled; it reports only namespaces of attached interfaces).
    pub fn load(config: DatapathConfig) -> Result<Datapath, DatapathError> {
        if config.cap_len == 0 || config.cap_len > CAP_LEN_MAX {
            return Err(DatapathError::Config(format!(
                "cap_len {} not in 1..={CAP_LEN_MAX}",
                config.cap_len
            )));
        }
        if !config.ring_bytes.is_power_of_two() || config.ring_bytes < 4096 {
            return Err(DatapathError::Config(format!(
                "ring_bytes {} must be a power of two of at least 4096",
                config.ring_bytes
            )));
        }
        if config.policy_entries < 2 {
            return Err(DatapathError::Config(
                "policy_entries must be at least 2 (two slots)".into(),
            ));
        }
        if config.channel_capacity == 0 || config.ct_entries == 0 || config.ipcache_entries == 0 {
            return Err(DatapathError::Config(
                "channel_capacity, ct_entries and ipcache_entries must be positive".into(),
            ));
        }
        if !config.perf_pages.is_power_of_two() {
            return Err(DatapathError::Config(format!(
                "perf_pages {} must be a power of two",
                config.perf_pages
            )));
        }
        let (mut ebpf, transport) = match config.transport {
            Transport::RingBuf => (
                load_object(&config, Transport::RingBuf)?,
                Transport::RingBuf,
            ),
            Transport::Perf => (load_object(&config, Transport::Perf)?, Transport::Perf),
            Transport::Auto => match load_object(&config, Transport::RingBuf) {
                Ok(ebpf) => (ebpf, Transport::RingBuf),
                Err(ring_err) => {
                    tracing::warn!(error = %ring_err, "ring-buffer datapath failed to load; trying perf buffers");
                    match load_object(&config, Transport::Perf) {
                        Ok(ebpf) => (ebpf, Transport::Perf),
                        // The ring-buffer error is the informative one on a modern kernel.
                        Err(_) => return Err(ring_err),
                    }
                }
            },
        };
        let events_map = ebpf.take_map("EVENTS").ok_or(DatapathError::Map {
            map: "EVENTS",
            source: Box::new(aya::maps::MapError::InvalidName {
                name: "EVENTS".into(),
            }),
        })?;
        let policy_map = ebpf.take_map("POLICY").ok_or(DatapathError::Map {
            map: "POLICY",
            source: Box::new(aya::maps::MapError::InvalidName {
                name: "POLICY".into(),
            }),
        })?;
        let policy_map = BpfHashMap::try_from(policy_map).map_err(map_err("POLICY"))?;
        let mut ring_positions = None;
        let ring = match transport {
            Transport::Perf => RingState::IdlePerf(open_perf(events_map, config.perf_pages)?),
            _ => {
                let ring = RingBuf::try_from(events_map).map_err(map_err("EVENTS"))?;
                // The fill gauge is a convenience: without it the agent still runs.
                match ring
                    .as_fd()
                    .try_clone_to_owned()
                    .and_then(ring::RingPositions::new)
                {
                    Ok(p) => ring_positions = Some(p),
                    Err(e) => tracing::warn!(error = %e, "ring fill cannot be sampled"),
                }
                RingState::Idle(ring)
            }
        };
        let mut dp = Datapath {
            ebpf,
            config,
            ring,
            transport,
            stats: Arc::new(ReaderStats::default()),
            wanted: BTreeMap::new(),
            attached: BTreeMap::new(),
            kdrop_link: None,
            policy_rev: 0,
            policy_slots: [Vec::new(), Vec::new()],
            policy_map,
            policy_grace: SlotGrace::default(),
            ring_positions,
        };
        if dp.config.kernel_drops {
            dp.attach_kernel_drops()?;
        }
        Ok(dp)
    }

    fn attach_kernel_drops(&mut self) -> Result<(), DatapathError> {
        ensure_tracefs()?;
        const NAME: &str = "webb_kfree_skb";
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(NAME)
            .ok_or(DatapathError::Program {
                program: NAME,
                source: Box::new(ProgramError::UnexpectedProgramType),
            })?
            .try_into()
            .map_err(prog_err(NAME))?;
        prog.load().map_err(prog_err(NAME))?;
        let id = prog.attach("skb", "kfree_skb").map_err(prog_err(NAME))?;
        self.kdrop_link = Some(prog.take_link(id).map_err(prog_err(NAME))?);
        Ok(())
    }

    /// The transport in use ([`Transport::RingBuf`] or [`Transport::Perf`], never `Auto`).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The configuration the datapath was loaded with.
    pub fn config(&self) -> &DatapathConfig {
        &self.config
    }

    /// Attaches the ingress and egress observers to `ifname` in namespace `netns` (a file such
    /// as `/run/netns/X`; `None`: the current one) and keeps following it: [`Datapath::rescan`]
    /// re-attaches it when it reappears. Idempotent.
    pub fn attach(
        &mut self,
        ifname: &str,
        netns: Option<&Path>,
    ) -> Result<AttachedInterface, DatapathError> {
        let key: AttachKey = (ifname.to_string(), netns.map(Path::to_path_buf));
        self.wanted.insert(key.clone(), ());
        if let Some(a) = self.attached.get(&key) {
            return Ok(a.info.clone());
        }
        let att = self.attach_now(ifname, netns)?;
        let info = att.info.clone();
        self.watch_netns(info.netns_ino)?;
        self.attached.insert(key, att);
        Ok(info)
    }

    /// Stops following `ifname` in `netns` and detaches from it.
    pub fn detach(&mut self, ifname: &str, netns: Option<&Path>) -> Result<(), DatapathError> {
        let key: AttachKey = (ifname.to_string(), netns.map(Path::to_path_buf));
        self.wanted.remove(&key);
        if let Some(att) = self.attached.remove(&key) {
            let ino = att.info.netns_ino;
            release(att);
            if !self.attached.values().any(|a| a.info.netns_ino == ino) {
                self.unwatch_netns(ino)?;
            }
        }
        Ok(())
    }

    /// Interfaces currently attached.
    pub fn interfaces(&self) -> Vec<AttachedInterface> {
        self.attached.values().map(|a| a.info.clone()).collect()
    }

    /// Re-checks every wanted interface: attaches those that (re)appeared and releases those
    /// that vanished or were recreated with another index. Call it periodically (e.g. every
    /// second).
    pub fn rescan(&mut self) -> RescanReport {
        let mut report = RescanReport::default();
        let wanted: Vec<AttachKey> = self.wanted.keys().cloned().collect();
        for key in wanted {
            let (ifname, netns) = (&key.0, key.1.as_deref());
            let current = NetnsGuard::enter(netns)
                .ok()
                .and_then(|_g| netns::ifindex(ifname));
            if let Some(att) = self.attached.get(&key) {
                if current == Some(att.info.ifindex) {
                    continue;
                }
                let att = self.attached.remove(&key).expect("present above");
                report.detached.push(att.info.clone());
                release(att);
            }
            if current.is_none() {
                continue;
            }
            match self.attach_now(ifname, netns) {
                Ok(att) => {
                    if let Err(e) = self.watch_netns(att.info.netns_ino) {
                        report
                            .failed
                            .push((ifname.clone(), key.1.clone(), e.to_string()));
                    }
                    report.attached.push(att.info.clone());
                    self.attached.insert(key.clone(), att);
                }
                Err(e) => report
                    .failed
                    .push((ifname.clone(), key.1.clone(), e.to_string())),
            }
        }
        report
    }

    fn attach_now(
        &mut self,
        ifname: &str,
        netns: Option<&Path>,
    ) -> Result<Attachment, DatapathError> {
        let netns_ino = netns::netns_inode(netns)?;
        let _guard = NetnsGuard::enter(netns)?;
        let ifindex = netns::ifindex(ifname).ok_or_else(|| DatapathError::NoInterface {
            ifname: ifname.into(),
            netns: netns.map(Path::to_path_buf),
        })?;
        // Lets TC records name their namespace; without it they carry netns_ino 0.
        match netns::current_netns_cookie() {
            Ok(cookie) => {
                let mut m: BpfHashMap<_, u64, u32> = self.map_mut("NETNS_INO")?;
                m.insert(cookie, netns_ino, 0)
                    .map_err(map_err("NETNS_INO"))?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SO_NETNS_COOKIE; TC records fall back to ifindex")
            }
        }
        self.map_ifindex(ifindex, netns_ino)?;
        let mut links = Vec::with_capacity(2);
        let mut tcx = true;
        for (prog, ty) in [
            (TcProgram::Ingress, TcAttachType::Ingress),
            (TcProgram::Egress, TcAttachType::Egress),
        ] {
            let cls = classifier(&mut self.ebpf, prog.name())?;
            let id = match cls.attach_with_options(
                ifname,
                ty,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            ) {
                Ok(id) => id,
                Err(tcx_err) => {
                    // Kernels before 6.6 have no TCX: fall back to a clsact filter.
                    tracing::debug!(ifname, error = %tcx_err, "TCX attach failed, trying clsact");
                    tcx = false;
                    let _ = aya::programs::tc::qdisc_add_clsact(ifname);
                    cls.attach_with_options(
                        ifname,
                        ty,
                        TcAttachOptions::Netlink(Default::default()),
                    )
                    .map_err(|source| DatapathError::Attach {
                        ifname: ifname.into(),
                        netns: netns.map(Path::to_path_buf),
                        source: Box::new(source),
                    })?
                }
            };
            let link = cls.take_link(id).map_err(prog_err(prog.name()))?;
            links.push(link);
        }
        Ok(Attachment {
            info: AttachedInterface {
                ifname: ifname.into(),
                netns: netns.map(Path::to_path_buf),
                netns_ino,
                ifindex,
                tcx,
            },
            links,
        })
    }

    /// Records which namespace `ifindex` belongs to; an index attached in two namespaces
    /// maps to 0 (ambiguous).
    fn map_ifindex(&mut self, ifindex: u32, ino: u32) -> Result<(), DatapathError> {
        let clash = self
            .attached
            .values()
            .any(|a| a.info.ifindex == ifindex && a.info.netns_ino != ino);
        let mut m: BpfHashMap<_, u32, u32> = self.map_mut("IFINDEX_NS")?;
        m.insert(ifindex, if clash { 0 } else { ino }, 0)
            .map_err(map_err("IFINDEX_NS"))
    }

    fn watch_netns(&mut self, ino: u32) -> Result<(), DatapathError> {
        let mut m: BpfHashMap<_, u32, u32> = self.map_mut("WATCH_NETNS")?;
        m.insert(ino, 1, 0).map_err(map_err("WATCH_NETNS"))
    }

    fn unwatch_netns(&mut self, ino: u32) -> Result<(), DatapathError> {
        let mut m: BpfHashMap<_, u32, u32> = self.map_mut("WATCH_NETNS")?;
        match m.remove(&ino) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("WATCH_NETNS")(e)),
        }
    }

    /// Also reports kernel drops in namespace `ino` (inode of its `/proc/<pid>/ns/net` or
    /// `/run/netns/X`), without attaching TC programs there.
    pub fn watch_kernel_drops(&mut self, ino: u32) -> Result<(), DatapathError> {
        self.watch_netns(ino)
    }

    fn map_mut<'a, V>(&'a mut self, name: &'static str) -> Result<V, DatapathError>
    where
        V: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::Map {
            map: name,
            source: Box::new(aya::maps::MapError::InvalidName { name: name.into() }),
        })?;
        V::try_from(map).map_err(map_err(name))
    }

    /// Replaces the ipcache with `entries` (prefix → security identity). IPv4 prefixes are stored
    /// IPv4-mapped; the longest prefix wins; addresses in no prefix get [`IDENTITY_WORLD`].
    /// Existing connections keep the identities cached when they started.
    ///
    /// The entries go into the LPM trie and, keyed by prefix length, into the hash the datapath
    /// probes length by length (see `webb_ipcache_lookup` in `bpf/flow.bpf.c`). New entries go
    /// in before the list of lengths names them, stale ones leave after it stops naming them, so
    /// a lookup meanwhile finds the old identity or the new one, not world.
    pub fn set_ipcache(&mut self, entries: &[(IpNet, u32)]) -> Result<(), DatapathError> {
        let wanted: std::collections::HashMap<(u32, [u8; 16]), u32> = entries
            .iter()
            .map(|(net, id)| (ipcache_key(net), *id))
            .collect();
        let hkey = |plen: u32, addr: [u8; 16]| {
            let mut k = [0u8; 20];
            k[..4].copy_from_slice(&plen.to_ne_bytes());
            k[4..].copy_from_slice(&addr);
            k
        };
        let mut trie: LpmTrie<_, [u8; 16], [u32; 2]> = self.map_mut("IPCACHE")?;
        for (&(plen, addr), &id) in &wanted {
            trie.insert(&Key::new(plen, addr), [id, 0], 0)
                .map_err(map_err("IPCACHE"))?;
        }
        let stale_trie: Vec<(u32, [u8; 16])> = trie
            .keys()
            .filter_map(Result::ok)
            .map(|k| (k.prefix_len(), k.data()))
            .filter(|k| !wanted.contains_key(k))
            .collect();
        let mut hash: BpfHashMap<_, [u8; 20], [u32; 2]> = self.map_mut("IPCACHE_HASH")?;
        for (&(plen, addr), &id) in &wanted {
            hash.insert(hkey(plen, addr), [id, 0], 0)
                .map_err(map_err("IPCACHE_HASH"))?;
        }
        let wanted_h: std::collections::HashSet<[u8; 20]> =
            wanted.keys().map(|&(p, a)| hkey(p, a)).collect();
        let stale_hash: Vec<[u8; 20]> = hash
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted_h.contains(k))
            .collect();
        let mut lens: Vec<u32> = wanted.keys().map(|&(p, _)| p).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        let word = if lens.len() > IPCACHE_LENS_MAX {
            u64::MAX // the trie's walk
        } else {
            lens.iter()
                .enumerate()
                .map(|(i, &l)| u64::from(l + 1) << (8 * i))
                .sum()
        };
        let mut list: aya::maps::Array<_, u64> = self.map_mut("IPCACHE_LENS")?;
        list.set(0, word, 0).map_err(map_err("IPCACHE_LENS"))?;
        let mut hash: BpfHashMap<_, [u8; 20], [u32; 2]> = self.map_mut("IPCACHE_HASH")?;
        for k in stale_hash {
            match hash.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("IPCACHE_HASH")(e)),
            }
        }
        let mut trie: LpmTrie<_, [u8; 16], [u32; 2]> = self.map_mut("IPCACHE")?;
        for (plen, addr) in stale_trie {
            match trie.remove(&Key::new(plen, addr)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("IPCACHE")(e)),
            }
        }
        Ok(())
    }

    /// Makes `identities` the endpoints whose DNS answers the datapath holds until the agent
    /// puts them back (`toFQDNs`; see `FQDN_HOLD` in `bpf/flow.bpf.c`). Only an agent that
    /// puts held answers back may call this: anything else would swallow them.
    pub fn set_fqdn_hold(&mut self, identities: &[u32]) -> Result<(), DatapathError> {
        let mut map: BpfHashMap<_, u32, u32> = self.map_mut("FQDN_HOLD")?;
        let stale: Vec<u32> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !identities.contains(k))
            .collect();
        for id in identities {
            map.insert(id, 1u32, 0).map_err(map_err("FQDN_HOLD"))?;
        }
        for id in stale {
            match map.remove(&id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("FQDN_HOLD")(e)),
            }
        }
        Ok(())
    }

    /// The policy revision in force (0: none installed yet; every packet is allowed).
    pub fn policy_revision(&self) -> u32 {
        self.policy_rev
    }

    /// Installs a compiled policy (compiled for revision [`Datapath::policy_revision`] + 1)
    /// atomically: its entries go into the inactive slot, then one write of the revision
    /// switches every later packet to it. Connections decided under an older revision are
    /// decided again on their next packet. Returns the new revision.
    pub fn install_policy(
        &mut self,
        compiled: &crate::policy::Compiled,
    ) -> Result<u32, DatapathError> {
        let rev = self.policy_rev.wrapping_add(1).max(1);
        if compiled.revision != rev {
            return Err(DatapathError::Config(format!(
                "policy compiled for revision {}, the datapath is at {}",
                compiled.revision, self.policy_rev
            )));
        }
        let per_slot = (self.config.policy_entries / 2) as usize;
        let entries = crate::policy::layout::layout(&compiled.entries);
        if entries.len() > per_slot {
            return Err(DatapathError::Config(format!(
                "policy needs {} map entries, at most {per_slot} fit in a slot (raise the policy map size)",
                entries.len()
            )));
        }
        let slot = (rev & 1) as usize;
        // The slot was in force until the previous switch: let programs that read it finish.
        self.policy_grace.wait();
        let old = std::mem::take(&mut self.policy_slots[slot]);
        let mut keys = Vec::with_capacity(entries.len());
        let hash = &mut self.policy_map;
        for key in old {
            match hash.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("POLICY")(e)),
            }
        }
        for e in &entries {
            let mut key = e.key;
            key[0] = slot as u8;
            if let Err(err) = hash.insert(key, e.value, 0) {
                // Leave no stray half-filled slot behind.
                for k in &keys {
                    let _ = hash.remove(k);
                }
                return Err(map_err("POLICY")(err));
            }
            keys.push(key);
        }
        let mut state: aya::maps::Array<_, u32> = self.map_mut("POLICY_STATE")?;
        state.set(0, rev, 0).map_err(map_err("POLICY_STATE"))?;
        self.policy_slots[slot] = keys;
        self.policy_rev = rev;
        self.policy_grace.start();
        Ok(rev)
    }

    /// Kernel counters summed over CPUs, plus the reader's.
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let map = self.ebpf.map("COUNTERS").ok_or(DatapathError::Map {
            map: "COUNTERS",
            source: Box::new(aya::maps::MapError::InvalidName {
                name: "COUNTERS".into(),
            }),
        })?;
        let arr: PerCpuArray<_, [u64; 8]> =
            PerCpuArray::try_from(map).map_err(map_err("COUNTERS"))?;
        let per_cpu = arr.get(&0, 0).map_err(map_err("COUNTERS"))?;
        let mut s = [0u64; 8];
        for v in per_cpu.iter() {
            for (acc, x) in s.iter_mut().zip(v.iter()) {
                *acc = acc.wrapping_add(*x);
            }
        }
        Ok(Counters {
            packets: s[0],
            bytes: s[1],
            events: s[2],
            ring_fail: s[3],
            parse_err: s[4],
            ct_new: s[5],
            l7_events: s[6],
            kdrop_events: s[7],
            read_records: self.stats.records.load(Ordering::Relaxed),
            read_bytes: self.stats.bytes.load(Ordering::Relaxed),
            reader_wakeups: self.stats.wakeups.load(Ordering::Relaxed),
            perf_lost: self.stats.perf_lost.load(Ordering::Relaxed),
        })
    }

    /// The ring buffer's size, current fill and high-water mark since the previous call (which
    /// resets it); `None` with the perf transport.
    pub fn ring_fill(&mut self) -> Result<Option<RingFill>, DatapathError> {
        if self.transport == Transport::Perf {
            return Ok(None);
        }
        let used = self.ring_positions.as_ref().map_or(0, |p| p.used());
        let mut peaks: PerCpuArray<_, u64> = self.map_mut("RING_PEAK")?;
        let per_cpu = peaks.get(&0, 0).map_err(map_err("RING_PEAK"))?;
        let peak = per_cpu.iter().copied().max().unwrap_or(0);
        // A write between the read and the reset is missed from this interval's peak only.
        let zeros = PerCpuValues::try_from(vec![0u64; per_cpu.len()])
            .map_err(|e| DatapathError::Config(format!("RING_PEAK reset: {e}")))?;
        peaks.set(0, zeros, 0).map_err(map_err("RING_PEAK"))?;
        Ok(Some(RingFill {
            size: u64::from(self.config.ring_bytes),
            used,
            peak,
        }))
    }

    /// Starts the ring reader (a tokio task) and returns the bounded channel of record batches
    /// (at most [`DatapathConfig::channel_capacity`] records in all). Callable once; must run
    /// in a runtime.
    pub fn events(&mut self) -> Result<mpsc::Receiver<RecordBatch>, DatapathError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| DatapathError::NoRuntime)?;
        let batch_max = self.config.channel_capacity.min(ring::RING_BATCH);
        let (tx, rx) = mpsc::channel(self.config.channel_capacity.div_ceil(batch_max));
        match std::mem::replace(&mut self.ring, RingState::Reading) {
            RingState::Idle(ring) => {
                handle.spawn(ring::run(
                    ring,
                    tx,
                    self.config.drain_interval,
                    Arc::clone(&self.stats),
                    batch_max,
                ));
            }
            RingState::IdlePerf(buffers) => {
                for buf in buffers {
                    handle.spawn(ring::run_perf(
                        buf,
                        tx.clone(),
                        self.config.drain_interval,
                        Arc::clone(&self.stats),
                    ));
                }
            }
            RingState::Reading => return Err(DatapathError::RingTaken),
        }
        Ok(rx)
    }

    /// Takes every pending record now, without a runtime (tests, tools). Fails once
    /// [`Datapath::events`] handed the ring to the reader.
    pub fn drain_events(&mut self) -> Result<Vec<EventRecord>, DatapathError> {
        match &mut self.ring {
            RingState::Idle(ring) => Ok(ring::drain_now(ring, &self.stats)),
            RingState::IdlePerf(buffers) => Ok(buffers
                .iter_mut()
                .flat_map(|b| ring::drain_perf_now(b, &self.stats))
                .collect()),
            RingState::Reading => Err(DatapathError::RingTaken),
        }
    }

    /// Runs a program on `packet` (from the Ethernet header) through BPF_PROG_TEST_RUN
    /// `repeat` times; returns the program's return value and the kernel's mean time per run.
    pub fn test_run(
        &self,
        prog: TcProgram,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(i32, Duration), DatapathError> {
        let name = prog.name();
        let cls: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::Program {
                program: name,
                source: Box::new(ProgramError::UnexpectedProgramType),
            })?
            .try_into()
            .map_err(prog_err(name))?;
        let opts = TestRunOptions {
            data_in: Some(packet),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        };
        let r = cls.test_run(opts).map_err(prog_err(name))?;
        Ok((r.return_value as i32, r.duration))
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        for (_, att) in std::mem::take(&mut self.attached) {
            release(att);
        }
    }
}

/// Drops an attachment's links; clsact (netlink) links inside their own namespace, since aya
/// detaches them by ifindex through a socket of the current thread's namespace.
fn release(att: Attachment) {
    if att.info.tcx || att.info.netns.is_none() {
        drop(att.links);
        return;
    }
    match NetnsGuard::enter(att.info.netns.as_deref()) {
        Ok(_g) => drop(att.links),
        Err(e) => {
            // The namespace is gone, and its filters with it.
            tracing::debug!(error = %e, "namespace gone; its clsact filters went with it");
            std::mem::forget(att.links);
        }
    }
}

/// Loads the object for `transport` (ring buffer or perf) with the config's knobs and verifies
/// the TC programs.
fn load_object(config: &DatapathConfig, transport: Transport) -> Result<Ebpf, DatapathError> {
    let cap_len = u32::from(config.cap_len);
    let aggregate: u32 = match config.aggregation {
        Aggregation::Flows => 1,
        Aggregation::None => 0,
    };
    let kdrop_all = u32::from(config.kernel_drops_all_netns);
    let audit = u32::from(config.policy_audit);
    // A threshold the ring cannot reach would leave only the timer to drain a small ring.
    let wakeup = config
        .wakeup_bytes
        .min(u64::from(config.ring_bytes) / 2)
        .max(1);
    let mut loader = EbpfLoader::new();
    loader
        .override_global("cfg_cap_len", &cap_len, true)
        .override_global("cfg_aggregate", &aggregate, true)
        .override_global("cfg_wakeup_bytes", &wakeup, true)
        .override_global("cfg_l7_max_segments", &config.l7_max_segments, true)
        .override_global("cfg_l7_max_bytes", &config.l7_max_bytes, true)
        .override_global("cfg_kdrop_all_netns", &kdrop_all, true)
        .override_global("cfg_policy_audit", &audit, true)
        .map_max_entries("POLICY", config.policy_entries)
        .map_max_entries("CT", config.ct_entries)
        .map_max_entries("IPCACHE", config.ipcache_entries)
        .map_max_entries("IPCACHE_HASH", config.ipcache_entries);
    let object = if transport == Transport::Perf {
        // A perf event array without max_entries is sized to the possible CPUs by aya.
        OBJECT_PERF
    } else {
        loader.map_max_entries("EVENTS", config.ring_bytes);
        OBJECT
    };
    let mut ebpf = loader
        .load(object)
        .map_err(|e| DatapathError::Load(Box::new(e)))?;
    for p in [
        TcProgram::Ingress,
        TcProgram::Egress,
        TcProgram::Empty,
        TcProgram::PolicyProbe,
    ] {
        let name = p.name();
        classifier(&mut ebpf, name)?
            .load()
            .map_err(prog_err(name))?;
    }
    Ok(ebpf)
}

/// Opens one perf buffer per online CPU (records written before this are lost, so it happens
/// at load time).
fn open_perf(
    map: aya::maps::Map,
    pages: usize,
) -> Result<Vec<PerfEventArrayBuffer<MapData>>, DatapathError> {
    let mut arr = PerfEventArray::try_from(map).map_err(map_err("EVENTS"))?;
    let cpus = aya::util::online_cpus().map_err(|(what, e)| {
        DatapathError::Config(format!("cannot list online CPUs ({what}): {e}"))
    })?;
    cpus.into_iter()
        .map(|cpu| {
            arr.open(cpu, Some(pages)).map_err(|e| {
                DatapathError::Config(format!("cannot open the perf buffer of CPU {cpu}: {e}"))
            })
        })
        .collect()
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    ebpf.program_mut(name)
        .ok_or(DatapathError::Program {
            program: name,
            source: Box::new(ProgramError::UnexpectedProgramType),
        })?
        .try_into()
        .map_err(prog_err(name))
}

/// Ipcache trie key of a prefix: IPv4 as IPv4-mapped IPv6 with the prefix length shifted by 96.
pub fn ipcache_key(net: &IpNet) -> (u32, [u8; 16]) {
    match net.trunc() {
        IpNet::V4(n) => (
            96 + u32::from(n.prefix_len()),
            n.network().to_ipv6_mapped().octets(),
        ),
        IpNet::V6(n) => (u32::from(n.prefix_len()), n.network().octets()),
    }
}

/// Mounts tracefs on /sys/kernel/tracing when this mount namespace lacks it (as under
/// `ip netns exec`, which remounts /sys).
pub fn ensure_tracefs() -> Result<(), DatapathError> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").is_dir() {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in constant");
    let (src, target, fstype) = (c("nodev"), c("/sys/kernel/tracing"), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(DatapathError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

// The agent moves the datapath into a task that rescans interfaces periodically.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Datapath>();
};
