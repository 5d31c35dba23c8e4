//! Puts held DNS answers back on the wire (see `FQDN_HOLD` in `bpf/flow.bpf.c`): the datapath
//! dropped the answer after recording the whole frame; once the agent has learned its addresses
//! for `toFQDNs`, the frame is sent again out of the same interface through an `AF_PACKET`
//! socket whose mark tells the datapath to let it pass.
//!
//! Answers come over UDP, or over TCP when the whole length-prefixed message is in one segment
//! (the datapath holds no other TCP segment). A TCP segment put back some milliseconds late is
//! ordinary reordering to the client's stack: later segments of the connection (the server's
//! FIN, say) wait in its out-of-order queue until the answer arrives.
//!
//! A frame captured on a veth can carry a partial UDP or TCP checksum (the sender left it for
//! offload); a frame sent from an `AF_PACKET` socket is taken as complete, so the checksum is
//! computed here before sending.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use crate::datapath::NetnsGuard;

/// `WEBB_REINJECT_MARK` of `bpf/events.h`.
pub const REINJECT_MARK: u32 = 0x077e_bd25;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Why a frame could not be put back.
#[derive(Debug, thiserror::Error)]
pub enum ReinjectError {
    #[error("held frame is not Ethernet + IP + UDP or TCP: {0}")]
    Frame(String),
    #[error("cannot send the held frame on interface {ifindex}: {source}")]
    Send { ifindex: u32, source: io::Error },
}

/// A raw packet socket in the namespace of the observed interfaces.
#[derive(Debug)]
pub struct Reinjector {
    fd: OwnedFd,
}

impl Reinjector {
    /// Opens the socket inside `netns` (the current namespace when `None`).
    pub fn open(netns: Option<&Path>) -> io::Result<Self> {
        let _in_ns = NetnsGuard::enter(netns).map_err(io::Error::other)?;
        // SAFETY: socket(2) with constant arguments; protocol 0 receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mark = REINJECT_MARK;
        // SAFETY: setsockopt(2) reading a u32 that lives across the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mark as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reinjector { fd })
    }

    /// Sends `frame` (a whole Ethernet frame with an IPv4/IPv6 UDP or TCP packet) out of
    /// `ifindex`, with its transport checksum completed.
    pub fn put_back(&self, ifindex: u32, frame: &[u8]) -> Result<(), ReinjectError> {
        let mut frame = frame.to_vec();
        complete_checksum(&mut frame).map_err(ReinjectError::Frame)?;
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto(2) on our socket with a buffer and address that live across the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(ReinjectError::Send {
                ifindex,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// Writes the full UDP or TCP checksum of the frame's packet into its header.
pub fn complete_checksum(frame: &mut [u8]) -> Result<(), String> {
    if frame.len() < ETH_HLEN {
        return Err(format!(
            "{} bytes, shorter than an Ethernet header",
            frame.len()
        ));
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let l3 = &frame[ETH_HLEN..];
    // (offset of the transport header, protocol, source, destination, transport bytes)
    let (off, proto, pseudo, l4_len) = match ethertype {
        ETH_P_IP => {
            let ip = Ipv4HeaderSlice::from_slice(l3).map_err(|e| e.to_string())?;
            let hlen = ip.slice().len();
            let total = usize::from(ip.total_len());
            let l4_len = total
                .checked_sub(hlen)
                .ok_or_else(|| format!("IPv4 total length {total} below its header"))?;
            let pseudo = Pseudo::V4(ip.source(), ip.destination());
            (ETH_HLEN + hlen, ip.protocol().0, pseudo, l4_len)
        }
        ETH_P_IPV6 => {
            let ip = Ipv6HeaderSlice::from_slice(l3).map_err(|e| e.to_string())?;
            let pseudo = Pseudo::V6(ip.source(), ip.destination());
            let l4_len = usize::from(ip.payload_length());
            (
                ETH_HLEN + ip.slice().len(),
                ip.next_header().0,
                pseudo,
                l4_len,
            )
        }
        other => return Err(format!("ethertype {other:#06x} is not IP")),
    };
    let l4 = frame
        .get(off..off + l4_len)
        .ok_or_else(|| format!("{l4_len} transport bytes do not fit the frame"))?;
    let (sum, at) = match proto {
        IPPROTO_UDP => {
            let udp = UdpHeaderSlice::from_slice(l4).map_err(|e| e.to_string())?;
            let len = usize::from(udp.length());
            if len < 8 || len > l4.len() {
                return Err(format!(
                    "UDP length {len} does not fit the {} bytes captured",
                    l4.len()
                ));
            }
            let (h, payload) = (udp.to_header(), &l4[8..len]);
            let sum = match pseudo {
                Pseudo::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, payload),
                Pseudo::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, payload),
            };
            (sum.map_err(|e| e.to_string())?, 6)
        }
        IPPROTO_TCP => {
            let tcp = TcpHeaderSlice::from_slice(l4).map_err(|e| e.to_string())?;
            let payload = &l4[tcp.slice().len()..];
            let sum = match pseudo {
                Pseudo::V4(s, d) => tcp.calc_checksum_ipv4_raw(s, d, payload),
                Pseudo::V6(s, d) => tcp.calc_checksum_ipv6_raw(s, d, payload),
            };
            (sum.map_err(|e| e.to_string())?, 16)
        }
        other => {
            return Err(format!(
                "IP protocol {other} is neither UDP nor TCP (IPv6 extension headers are not put back)"
            ));
        }
    };
    frame[off + at..off + at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

#[derive(Clone, Copy)]
enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + UDP frame built by etherparse with a correct checksum.
    fn frame_v4(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 53], [198, 18, 1, 2], 64)
            .udp(53, 40000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn a_partial_checksum_is_completed_to_the_one_the_packet_builder_computes() {
        let good = frame_v4(b"\x00\x07\x81\x80answer bytes");
        let mut partial = good.clone();
        partial[14 + 20 + 6] = 0x12; // what offload leaves: a pseudo-header sum
        partial[14 + 20 + 7] = 0x34;
        complete_checksum(&mut partial).unwrap();
        assert_eq!(partial, good);
    }

    #[test]
    fn a_partial_tcp_checksum_is_completed_in_both_families_and_padding_is_not_summed() {
        let v4 = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 53], [198, 18, 1, 2], 64)
            .tcp(53, 40000, 7, 64240)
            .ack(9)
            .psh();
        let v6 = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53],
                [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .tcp(53, 40000, 7, 64240)
            .ack(9)
            .psh();
        for (family, builder, tcp_at) in [("v4", v4, 14 + 20), ("v6", v6, 14 + 40)] {
            let mut good = Vec::new();
            builder.write(&mut good, b"\x00\x05ab").unwrap();
            let mut partial = good.clone();
            partial[tcp_at + 16] ^= 0x5a;
            partial[tcp_at + 17] ^= 0xa5;
            // Ethernet padding up to 60 bytes is outside the IP packet.
            partial.resize(partial.len().max(60) + 4, 0xee);
            complete_checksum(&mut partial).unwrap();
            assert_eq!(&partial[..good.len()], &good[..], "{family}");
        }
    }

    #[test]
    fn frames_that_are_not_udp_or_tcp_over_ip_are_refused_with_the_reason() {
        let good = frame_v4(b"abc");
        let err = complete_checksum(&mut good[..20].to_vec()).unwrap_err();
        assert!(!err.is_empty());
        let mut arp = good.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(complete_checksum(&mut arp).unwrap_err().contains("0x0806"));
        let mut icmp = good.clone();
        icmp[14 + 9] = 1;
        assert!(
            complete_checksum(&mut icmp)
                .unwrap_err()
                .contains("neither UDP nor TCP")
        );
        let mut long = good.clone();
        long[14 + 20 + 4] = 0x40; // UDP length beyond the frame
        assert!(
            complete_checksum(&mut long)
                .unwrap_err()
                .contains("UDP length")
        );
    }
}
