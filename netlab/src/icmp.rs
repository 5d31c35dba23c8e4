//! ICMP echo through the kernel's datagram ICMP ("ping") sockets: the kernel fills the
//! identifier and checksum and hands back only our replies. Pods allow it for root through
//! `net.ipv4.ping_group_range` (set by the topology).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Sends one echo request to `dst` and waits up to `timeout` for its reply. Must run on a thread
/// inside the source pod's namespace (the socket is created here).
pub(crate) async fn echo(dst: IpAddr, seq: u16, timeout: Duration) -> std::io::Result<bool> {
    let (domain, proto, ty) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(proto))?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    let mut msg = vec![ty, 0, 0, 0, 0, 0];
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(b"netlab-echo-payload-0123456789ab");
    socket.send_to(&msg, SocketAddr::new(dst, 0)).await?;
    let mut buf = [0u8; 256];
    let wait = async {
        loop {
            let (n, from) = socket.recv_from(&mut buf).await?;
            // Echo reply (0 or 129) with our sequence number, from the address we pinged.
            if n >= 8
                && (buf[0] == 0 || buf[0] == 129)
                && buf[6..8] == seq.to_be_bytes()
                && from.ip() == dst
            {
                return Ok::<_, std::io::Error>(true);
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Ok(false),
    }
}
