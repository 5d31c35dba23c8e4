//! Puts held DNS answers back on the wire (see `FQDN_HOLD` in `bpf/flow.bpf.c`): the datapath
//! dropped the answer after recording the whole frame; once the agent has learned its addresses
//! for `toFQDNs`, the frame is sent again out of the same interface through an `AF_PACKET`
//! socket whose mark tells the datapath to let it pass.
//!
//! A frame captured on a veth can carry a partial UDP checksum (the sender left it for
//! offload); a frame sent from an `AF_PACKET` socket is taken as complete, so the checksum is
//! computed here before sending.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, UdpHeaderSlice};

use crate::datapath::NetnsGuard;

/// `WEBB_REINJECT_MARK` of `bpf/events.h`.
pub const REINJECT_MARK: u32 = 0x077e_bd25;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;

/// Why a frame could not be put back.
#[derive(Debug, thiserror::Error)]
pub enum ReinjectError {
    #[error("held frame is not Ethernet + IP + UDP: {0}")]
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

    /// Sends `frame` (a whole Ethernet frame with an IPv4/IPv6 UDP packet) out of `ifindex`,
    /// with its UDP checksum completed.
    pub fn put_back(&self, ifindex: u32, frame: &[u8]) -> Result<(), ReinjectError> {
        let mut frame = frame.to_vec();
        complete_udp_checksum(&mut frame).map_err(ReinjectError::Frame)?;
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

/// Writes the full UDP checksum of the frame's datagram into its header.
pub fn complete_udp_checksum(frame: &mut [u8]) -> Result<(), String> {
    if frame.len() < ETH_HLEN {
        return Err(format!(
            "{} bytes, shorter than an Ethernet header",
            frame.len()
        ));
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let l3 = &frame[ETH_HLEN..];
    let (l4_off, checksum) = match ethertype {
        ETH_P_IP => {
            let ip = Ipv4HeaderSlice::from_slice(l3).map_err(|e| e.to_string())?;
            if ip.protocol().0 != IPPROTO_UDP {
                return Err(format!("IPv4 protocol {} is not UDP", ip.protocol().0));
            }
            let off = ETH_HLEN + ip.slice().len();
            let (udp, payload) = udp_parts(frame, off)?;
            let sum = udp
                .calc_checksum_ipv4_raw(ip.source(), ip.destination(), payload)
                .map_err(|e| e.to_string())?;
            (off, sum)
        }
        ETH_P_IPV6 => {
            let ip = Ipv6HeaderSlice::from_slice(l3).map_err(|e| e.to_string())?;
            if ip.next_header().0 != IPPROTO_UDP {
                return Err(
                    "IPv6 next header is not UDP (extension headers are not put back)".into(),
                );
            }
            let off = ETH_HLEN + ip.slice().len();
            let (udp, payload) = udp_parts(frame, off)?;
            let sum = udp
                .calc_checksum_ipv6_raw(ip.source(), ip.destination(), payload)
                .map_err(|e| e.to_string())?;
            (off, sum)
        }
        other => return Err(format!("ethertype {other:#06x} is not IP")),
    };
    frame[l4_off + 6..l4_off + 8].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

fn udp_parts(frame: &[u8], off: usize) -> Result<(etherparse::UdpHeader, &[u8]), String> {
    let rest = frame.get(off..).ok_or("no UDP header")?;
    let udp = UdpHeaderSlice::from_slice(rest).map_err(|e| e.to_string())?;
    let len = usize::from(udp.length());
    if len < 8 || len > rest.len() {
        return Err(format!(
            "UDP length {len} does not fit the {} bytes captured",
            rest.len()
        ));
    }
    Ok((udp.to_header(), &rest[8..len]))
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
        complete_udp_checksum(&mut partial).unwrap();
        assert_eq!(partial, good);
    }

    #[test]
    fn frames_that_are_not_udp_over_ip_are_refused_with_the_reason() {
        let good = frame_v4(b"abc");
        let err = complete_udp_checksum(&mut good[..20].to_vec()).unwrap_err();
        assert!(!err.is_empty());
        let mut arp = good.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(
            complete_udp_checksum(&mut arp)
                .unwrap_err()
                .contains("0x0806")
        );
        let mut long = good.clone();
        long[14 + 20 + 4] = 0x40; // UDP length beyond the frame
        assert!(
            complete_udp_checksum(&mut long)
                .unwrap_err()
                .contains("UDP length")
        );
    }
}
