//! A bounded UDP blaster for load tests and the forwarding benchmark: every datagram comes from
//! a new source port, so each one starts a new flow for the datapath (new conntrack entry, one
//! record), and a counting receiver.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a blast sent.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Sends refused (e.g. ENOBUFS); not retried.
    pub refused: u64,
    pub elapsed: Duration,
}

/// Source ports cycled through; a port comes back only after 64 k others, long after its
/// conntrack entry was evicted or at least stopped being the last one.
const FIRST_PORT: u16 = 1024;

/// Datagrams sent by every blast of this process so far: where the next blast's tuples start.
static NEXT_TUPLE: AtomicU64 = AtomicU64::new(0);

/// Sends up to `count` UDP datagrams with `payload` bytes from `src` to `dst:dport` for at
/// most `duration`, as fast as the path takes them, each from the next source port. Runs on the
/// calling thread, which must live in the sender's network namespace (root: a raw socket).
pub fn udp_new_flows(
    src: Ipv4Addr,
    dst: SocketAddrV4,
    payload: usize,
    count: u64,
    duration: Duration,
) -> io::Result<Blast> {
    udp_new_flows_to(src, *dst.ip(), &[dst.port()], payload, count, duration)
}

/// [`udp_new_flows`] over several destination ports: after each round of source ports the next
/// destination port, so a tuple comes back only after `ports.len()` × 64 k others — far past
/// what the conntrack's LRU keeps (its eviction is approximate: with one port, about half the
/// packets of a long blast still found their tuple).
pub fn udp_new_flows_to(
    src: Ipv4Addr,
    dst_ip: Ipv4Addr,
    ports: &[u16],
    payload: usize,
    count: u64,
    duration: Duration,
) -> io::Result<Blast> {
    assert!(!ports.is_empty(), "at least one destination port");
    // Each call goes on where the previous one stopped: a benchmark that blasts in many short
    // calls would otherwise send the same first tuples again and again (conntrack hits).
    let start = NEXT_TUPLE.load(Ordering::Relaxed);
    let span = u64::from(u16::MAX - FIRST_PORT) + 1;
    let mut next_dport = ((start / span) % ports.len() as u64) as usize;
    let dst = SocketAddrV4::new(dst_ip, ports[next_dport]);
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;
    let udp_len = 8 + payload;
    let mut pkt = vec![0u8; 20 + udp_len];
    // IPPROTO_RAW implies IP_HDRINCL: the kernel fills the total length, id and checksum.
    pkt[0] = 0x45;
    pkt[6] = 0x40; // DF
    pkt[8] = 64;
    pkt[9] = libc::IPPROTO_UDP as u8;
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.ip().octets());
    pkt[22..24].copy_from_slice(&dst.port().to_be_bytes());
    pkt[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // UDP checksum 0: none (allowed over IPv4).
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let started = Instant::now();
    let (mut sent, mut refused) = (0u64, 0u64);
    let mut port = FIRST_PORT + (start % span) as u16;
    while sent + refused < count {
        // The clock is read once per 256 datagrams: it costs as much as a send otherwise.
        if (sent + refused).is_multiple_of(256) && started.elapsed() >= duration {
            break;
        }
        pkt[20..22].copy_from_slice(&port.to_be_bytes());
        port = if port == u16::MAX {
            next_dport = (next_dport + 1) % ports.len();
            pkt[22..24].copy_from_slice(&ports[next_dport].to_be_bytes());
            FIRST_PORT
        } else {
            port + 1
        };
        // SAFETY: valid buffer and address for the duration of the call.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n == pkt.len() as isize {
            sent += 1;
        } else {
            refused += 1;
        }
    }
    NEXT_TUPLE.fetch_add(sent + refused, Ordering::Relaxed);
    Ok(Blast {
        sent,
        refused,
        elapsed: started.elapsed(),
    })
}

/// Counts datagrams arriving on a UDP socket until stopped (dropping it stops the thread).
pub struct Receiver {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Counts on `sock` (bound in the receiver's namespace) on a thread of its own.
    pub fn start(sock: UdpSocket) -> Receiver {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("socket timeout");
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Receiver {
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The count once nothing more arrived for `quiet` (bounded by `limit`).
    pub fn settled(&self, quiet: Duration, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let mut last = self.received();
        loop {
            std::thread::sleep(quiet);
            let now = self.received();
            if now == last || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
