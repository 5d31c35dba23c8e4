//! Crafted packets for the datapath tests and benchmark (Ethernet + IPv4/IPv6 + TCP/UDP/ICMP).
#![allow(dead_code)]

pub mod agent;
pub mod blast;

use std::net::IpAddr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// L4 part of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
        id: u16,
    },
}

/// Builds Ethernet / IP / L4 / payload. `ext6` inserts IPv6 extension headers (hop-by-hop then
/// destination options, 8 bytes each) before the L4 header.
pub fn packet(src: &str, dst: &str, l4: L4, payload: &[u8], ext6: bool) -> Vec<u8> {
    let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut l4b = Vec::new();
    let proto = match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            seq,
        } => {
            l4b.extend_from_slice(&sport.to_be_bytes());
            l4b.extend_from_slice(&dport.to_be_bytes());
            l4b.extend_from_slice(&seq.to_be_bytes());
            l4b.extend_from_slice(&0u32.to_be_bytes());
            l4b.push(5 << 4);
            l4b.push(flags);
            l4b.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            6
        }
        L4::Udp { sport, dport } => {
            l4b.extend_from_slice(&sport.to_be_bytes());
            l4b.extend_from_slice(&dport.to_be_bytes());
            l4b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4b.extend_from_slice(&[0, 0]);
            17
        }
        L4::Icmp { ty, code, id } => {
            l4b.extend_from_slice(&[ty, code, 0, 0]);
            l4b.extend_from_slice(&id.to_be_bytes());
            l4b.extend_from_slice(&[0, 1]);
            if src.is_ipv4() { 1 } else { 58 }
        }
    };
    l4b.extend_from_slice(payload);
    let mut p = Vec::new();
    p.extend_from_slice(&MAC_B);
    p.extend_from_slice(&MAC_A);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&0x0800u16.to_be_bytes());
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + l4b.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&0x86ddu16.to_be_bytes());
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            let ext_len = if ext6 { 16 } else { 0 };
            p.extend_from_slice(&((ext_len + l4b.len()) as u16).to_be_bytes());
            p.push(if ext6 { 0 } else { proto });
            p.push(64);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            if ext6 {
                // hop-by-hop -> destination options -> L4, each 8 bytes of PadN.
                p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
                p.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
            }
        }
        _ => panic!("mixed address families"),
    }
    p.extend_from_slice(&l4b);
    p
}

pub fn tcp(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    packet(
        src,
        dst,
        L4::Tcp {
            sport,
            dport,
            flags,
            seq,
        },
        payload,
        false,
    )
}

pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    packet(src, dst, L4::Udp { sport, dport }, payload, false)
}
