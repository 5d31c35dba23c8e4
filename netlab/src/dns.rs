//! DNS-like UDP on port 53: real DNS message bytes (RFC 1035) for one A question and its answer,
//! so a DNS parser downstream sees the genuine format. Only what the demo sends and answers is
//! handled; a resolver library would be far heavier than these few fields.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::traffic::ServerCounts;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;

/// A standard query (recursion desired) for the A record of `name`.
pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + name.len() + 6);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    m.push(0);
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// The question name and the end offset of the question, if `msg` is a query with one.
fn question(msg: &[u8]) -> Option<(String, usize)> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut name = String::new();
    loop {
        let len = *msg.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || name.len() > 253 {
            return None;
        }
        let label = std::str::from_utf8(msg.get(at..at + len)?).ok()?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(label);
        at += len;
    }
    (msg.len() >= at + 4).then_some((name, at + 4))
}

/// The answer to `msg`: the A record from `names`, or NXDOMAIN.
pub(crate) fn answer(msg: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    let (name, end) = question(msg)?;
    let mut r = msg[..end].to_vec();
    let found = names.get(&name.to_ascii_lowercase());
    r[2] = 0x81; // QR, RD
    r[3] = 0x80 | if found.is_some() { 0 } else { RCODE_NXDOMAIN }; // RA, rcode
    if let Some(ip) = found {
        r[7] = 1; // 1 answer
        r.extend_from_slice(&[0xc0, 12]); // name: pointer to the question
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&30u32.to_be_bytes()); // TTL
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

/// (id, rcode) of a response.
pub(crate) fn response_code(msg: &[u8]) -> Option<(u16, u8)> {
    (msg.len() >= 12 && msg[2] & 0x80 != 0)
        .then(|| (u16::from_be_bytes([msg[0], msg[1]]), msg[3] & 0x0f))
}

/// Answers queries until `stop` turns true.
pub(crate) async fn serve(
    socket: UdpSocket,
    names: Arc<HashMap<String, Ipv4Addr>>,
    counts: Arc<Mutex<ServerCounts>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => { tracing::debug!("dns recv: {e}"); continue; }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(reply) = answer(&buf[..n], &names) else {
            continue;
        };
        counts.lock().unwrap_or_else(|p| p.into_inner()).dns_queries += 1;
        if let Err(e) = socket.send_to(&reply, from).await {
            tracing::debug!("dns send: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_name_gets_its_address_and_an_unknown_one_nxdomain() {
        let names = HashMap::from([(
            "cart.shop.svc.cluster.local".to_string(),
            Ipv4Addr::new(198, 19, 2, 10),
        )]);
        let r = answer(&query(7, "cart.shop.svc.cluster.local"), &names).unwrap();
        assert_eq!(response_code(&r), Some((7, 0)));
        assert_eq!(&r[r.len() - 4..], &[198, 19, 2, 10]);
        let r = answer(&query(8, "nope.shop.svc.cluster.local"), &names).unwrap();
        assert_eq!(response_code(&r), Some((8, RCODE_NXDOMAIN)));
    }

    #[test]
    fn truncated_or_non_query_messages_get_no_answer() {
        let q = query(1, "a.b");
        let names = HashMap::new();
        for cut in 0..q.len() {
            assert!(answer(&q[..cut], &names).is_none(), "cut at {cut}");
        }
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(answer(&resp, &names).is_none());
    }
}
