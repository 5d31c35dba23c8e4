//! DNS messages from captured payload (UDP and TCP port 53), on hickory-proto's wire decoder.
//!
//! Shared by the relay (L7 DNS flows, `hubble_dns_*` metrics) and the agent (names on flows,
//! toFQDNs policy), so both read a message the same way. A message is read whole or not at all:
//! a capture that ends inside a record, a TCP length prefix that promises more than was captured,
//! or bytes left after the last record are errors naming the section and byte offset — a
//! partial answer is never guessed at.
//!
//! Names are lower-case and fully qualified with the trailing dot (`example.com.`), as Cilium's
//! DNS proxy reports them and Hubble prints them in `l7.dns.query`; the root is `.`. Bytes
//! outside printable ASCII in a label are escaped as `\DDD` (RFC 1035 presentation format).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

/// One DNS message: what Webb needs of a query or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    /// QR bit: a response (true) or a query.
    pub is_response: bool,
    /// TC bit: the server cut the answer to fit (the records present are whole).
    pub truncated: bool,
    /// Response code, with the EDNS extended bits when an OPT record carries them.
    pub rcode: u16,
    pub questions: Vec<Question>,
    /// The answer section (authority and additional records are read to validate the message,
    /// then dropped).
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lower-case, with the trailing dot.
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Owner name: lower-case, with the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: AnswerData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// The alias target: lower-case, with the trailing dot.
    Cname(String),
    /// Any other record type (its number); its data is not kept.
    Other(u16),
}

impl AnswerData {
    /// The record type number (1 = A, 28 = AAAA, 5 = CNAME, ...).
    pub fn rrtype(&self) -> u16 {
        match self {
            AnswerData::A(_) => u16::from(RecordType::A),
            AnswerData::Aaaa(_) => u16::from(RecordType::AAAA),
            AnswerData::Cname(_) => u16::from(RecordType::CNAME),
            AnswerData::Other(t) => *t,
        }
    }
}

/// Where in a message a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Header,
    /// Zero-based index within the question section.
    Question(u16),
    Answer(u16),
    Authority(u16),
    Additional(u16),
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Header => f.write_str("header"),
            Section::Question(i) => write!(f, "question {}", i + 1),
            Section::Answer(i) => write!(f, "answer record {}", i + 1),
            Section::Authority(i) => write!(f, "authority record {}", i + 1),
            Section::Additional(i) => write!(f, "additional record {}", i + 1),
        }
    }
}

/// Why bytes are not a DNS message. `offset` counts from the start of the DNS message (after a
/// TCP length prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS message truncated: it ends in the {section} (byte {offset})")]
    Truncated { section: Section, offset: usize },
    #[error("malformed DNS message: {section} at byte {offset}: {reason}")]
    Malformed {
        section: Section,
        offset: usize,
        reason: String,
    },
    #[error("DNS message of {len} bytes has {extra} bytes after its last record")]
    TrailingBytes { len: usize, extra: usize },
    #[error("DNS over TCP: {available} bytes, not enough for the 2-byte length prefix")]
    TcpPrefixTruncated { available: usize },
    #[error("DNS over TCP: length prefix says {declared} bytes, only {available} captured")]
    TcpMessageTruncated { declared: usize, available: usize },
    #[error("DNS over TCP: length prefix of 0")]
    TcpEmptyMessage,
}

impl DnsError {
    /// True when the bytes end early (a short capture or a cut segment) rather than being wrong.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            DnsError::Truncated { .. }
                | DnsError::TcpPrefixTruncated { .. }
                | DnsError::TcpMessageTruncated { .. }
        )
    }
}

/// Parses one UDP payload: exactly one DNS message.
pub fn parse_udp(payload: &[u8]) -> Result<DnsMessage, DnsError> {
    parse_message(payload)
}

/// Parses the first message of a TCP payload (2-byte big-endian length prefix, RFC 1035 §4.2.2).
pub fn parse_tcp(payload: &[u8]) -> Result<DnsMessage, DnsError> {
    let (message, _) = split_tcp(payload)?;
    parse_message(message)
}

/// Parses every message of a TCP payload (a client may send several in one segment). Stops at
/// the first error, which is the last item.
pub fn parse_tcp_all(payload: &[u8]) -> Vec<Result<DnsMessage, DnsError>> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        match split_tcp(rest) {
            Ok((message, next)) => {
                let parsed = parse_message(message);
                let failed = parsed.is_err();
                out.push(parsed);
                if failed {
                    break;
                }
                rest = next;
            }
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

/// Splits off the first length-prefixed message: (message, what follows it).
pub(crate) fn split_tcp(payload: &[u8]) -> Result<(&[u8], &[u8]), DnsError> {
    let [hi, lo, rest @ ..] = payload else {
        return Err(DnsError::TcpPrefixTruncated {
            available: payload.len(),
        });
    };
    let declared = usize::from(u16::from_be_bytes([*hi, *lo]));
    if declared == 0 {
        return Err(DnsError::TcpEmptyMessage);
    }
    if rest.len() < declared {
        return Err(DnsError::TcpMessageTruncated {
            declared,
            available: rest.len(),
        });
    }
    Ok(rest.split_at(declared))
}

pub(crate) fn parse_message(bytes: &[u8]) -> Result<DnsMessage, DnsError> {
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).map_err(|e| located(e, Section::Header, 0))?;
    let counts = header.counts;
    let metadata = header.metadata;

    let mut questions = Vec::with_capacity(usize::from(counts.queries).min(4));
    for i in 0..counts.queries {
        let start = decoder.index();
        let q = Query::read(&mut decoder).map_err(|e| located(e, Section::Question(i), start))?;
        questions.push(Question {
            name: presentation(&q.name),
            qtype: u16::from(q.query_type),
        });
    }

    let mut answers = Vec::with_capacity(usize::from(counts.answers).min(16));
    for i in 0..counts.answers {
        let record = read_record(bytes, &mut decoder, Section::Answer(i))?;
        answers.push(Answer {
            name: presentation(&record.name),
            ttl: record.ttl,
            data: match &record.data {
                RData::A(a) => AnswerData::A(a.0),
                RData::AAAA(aaaa) => AnswerData::Aaaa(aaaa.0),
                RData::CNAME(cname) => AnswerData::Cname(presentation(&cname.0)),
                other => AnswerData::Other(u16::from(other.record_type())),
            },
        });
    }
    for i in 0..counts.authorities {
        read_record(bytes, &mut decoder, Section::Authority(i))?;
    }
    let mut rcode = u16::from(metadata.response_code.low());
    for i in 0..counts.additionals {
        let record = read_record(bytes, &mut decoder, Section::Additional(i))?;
        if record.record_type() == RecordType::OPT {
            // RFC 6891 §6.1.3: the OPT record's TTL carries the upper 8 bits of a 12-bit rcode.
            rcode |= ((record.ttl >> 24) as u16) << 4;
        }
    }

    let extra = decoder.len();
    if extra > 0 {
        return Err(DnsError::TrailingBytes {
            len: bytes.len(),
            extra,
        });
    }
    Ok(DnsMessage {
        id: metadata.id,
        is_response: metadata.message_type == MessageType::Response,
        truncated: metadata.truncation,
        rcode,
        questions,
        answers,
    })
}

fn read_record(
    bytes: &[u8],
    decoder: &mut BinDecoder<'_>,
    section: Section,
) -> Result<Record, DnsError> {
    let start = decoder.index();
    let record = Record::<RData>::read(decoder).map_err(|e| {
        // hickory names a record cut inside its data as a length mismatch: the record's own
        // RDLENGTH tells a cut (it runs past the bytes we have) from a wrong length.
        if record_runs_past(bytes, start) {
            DnsError::Truncated {
                section,
                offset: start,
            }
        } else {
            DnsError::Malformed {
                section,
                offset: start,
                reason: e.to_string(),
            }
        }
    })?;
    // Outside UPDATE messages a record always has data (an OPT record may have none); hickory
    // reads an empty one as an update marker, which would otherwise pass for a real record.
    if record.data.is_update() && record.record_type() != RecordType::OPT {
        return Err(DnsError::Malformed {
            section,
            offset: start,
            reason: format!("{} record without data", record.record_type()),
        });
    }
    Ok(record)
}

/// Whether the resource record starting at `start` (owner name, 10 fixed bytes, RDLENGTH bytes
/// of data) ends past the end of `bytes`. A name that is not well-formed is not a cut.
fn record_runs_past(bytes: &[u8], start: usize) -> bool {
    let mut at = start;
    loop {
        let Some(&len) = bytes.get(at) else {
            return true;
        };
        match len {
            0 => {
                at += 1;
                break;
            }
            0xc0..=0xff => {
                at += 2;
                break;
            }
            1..=63 => at += 1 + usize::from(len),
            _ => return false,
        }
    }
    match bytes.get(at + 8..at + 10) {
        Some(&[hi, lo]) => at + 10 + usize::from(u16::from_be_bytes([hi, lo])) > bytes.len(),
        _ => true,
    }
}

fn located(error: DecodeError, section: Section, offset: usize) -> DnsError {
    match error {
        DecodeError::InsufficientBytes => DnsError::Truncated { section, offset },
        other => DnsError::Malformed {
            section,
            offset,
            reason: other.to_string(),
        },
    }
}

/// RFC 1035 presentation format as Go's miekg/dns (Cilium's DNS proxy) writes it: lower-case,
/// a dot after every label, `\c` for the characters that mean something in zone files and
/// `\DDD` (decimal) for bytes outside printable ASCII; the root is `.`. (hickory's own text
/// escapes in octal, which nothing else reads.)
fn presentation(name: &Name) -> String {
    let mut out = String::new();
    for label in name.iter() {
        for &b in label {
            let b = b.to_ascii_lowercase();
            match b {
                b'.' | b'\\' | b'"' | b'\'' | b'(' | b')' | b';' | b' ' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('.');
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The name Hubble gives an rcode (gopacket's `DNSResponseCode` text, as in the summary
/// "DNS Answer RCode: Non-Existent Domain ...").
pub fn rcode_name(rcode: u16) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        6 => "Name Exists when it should not",
        7 => "RR Set Exists when it should not",
        8 => "RR Set that should exist does not",
        9 => "Server Not Authoritative for zone",
        10 => "Name not contained in zone",
        16 => "Bad OPT Version",
        17 => "Key not recognized",
        18 => "Signature out of time window",
        19 => "Bad TKEY Mode",
        20 => "Duplicate key name",
        21 => "Algorithm not supported",
        22 => "Bad Truncation",
        23 => "Bad/missing Server Cookie",
        _ => "Unknown",
    }
}

/// The mnemonic Hubble prints for a record type in `qtypes`/`rrtypes` ("A", "AAAA", "CNAME"...;
/// gopacket's `DNSType` text, "Unknown" for types it has no name for).
pub fn type_name(rrtype: u16) -> &'static str {
    match rrtype {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        64 => "SVCB",
        65 => "HTTPS",
        256 => "URI",
        _ => "Unknown",
    }
}

/// What a response resolved, read as Cilium's DNS proxy reads it (`ExtractMsgDetails`): the
/// first question's name, then the answer chain from it through CNAMEs, collecting addresses and
/// the lowest TTL of the A, AAAA and CNAME records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The first question's name (lower-case, trailing dot).
    pub query: String,
    pub ips: Vec<std::net::IpAddr>,
    /// Lowest TTL of the chain's records; `u32::MAX` when the chain is empty (as Cilium reports
    /// it, e.g. on NXDOMAIN).
    pub ttl: u32,
    /// CNAME targets in chain order.
    pub cnames: Vec<String>,
}

/// Why a response's answers do not form a chain from its question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolutionError {
    #[error("DNS response without a question")]
    NoQuestion,
    #[error("DNS answer record {index} is for {found}, expected {expected} (query {query})")]
    UnexpectedName {
        index: usize,
        found: String,
        expected: String,
        query: String,
    },
}

impl DnsMessage {
    /// A query for one question (recursion not requested), as a client or a test sends it.
    pub fn query(id: u16, name: &str, qtype: u16) -> Self {
        DnsMessage {
            id,
            is_response: false,
            truncated: false,
            rcode: 0,
            questions: vec![Question {
                name: name.into(),
                qtype,
            }],
            answers: vec![],
        }
    }

    /// Hubble's name for this message's rcode.
    pub fn rcode_name(&self) -> &'static str {
        rcode_name(self.rcode)
    }

    /// The answer chain (see [`Resolution`]). An answer for a name outside the chain rejects the
    /// whole message, so a malformed or spoofed answer never feeds a name cache.
    pub fn resolution(&self) -> Result<Resolution, ResolutionError> {
        let query = self
            .questions
            .first()
            .ok_or(ResolutionError::NoQuestion)?
            .name
            .clone();
        let mut expected = query.clone();
        let mut ips = Vec::new();
        let mut cnames = Vec::new();
        let mut ttl = u32::MAX;
        for (index, answer) in self.answers.iter().enumerate() {
            if answer.name != expected {
                return Err(ResolutionError::UnexpectedName {
                    index: index + 1,
                    found: answer.name.clone(),
                    expected,
                    query,
                });
            }
            match &answer.data {
                AnswerData::A(ip) => ips.push((*ip).into()),
                AnswerData::Aaaa(ip) => ips.push((*ip).into()),
                AnswerData::Cname(target) => {
                    cnames.push(target.clone());
                    expected = target.clone();
                }
                AnswerData::Other(_) => continue,
            }
            ttl = ttl.min(answer.ttl);
        }
        Ok(Resolution {
            query,
            ips,
            ttl,
            cnames,
        })
    }

    /// Encodes the message for UDP (the inverse of [`parse_udp`]; tests' DNS servers and clients
    /// use it). `Other` answers cannot be encoded (their data is not kept).
    pub fn to_udp(&self) -> Result<Vec<u8>, EncodeError> {
        let kind = if self.is_response {
            MessageType::Response
        } else {
            MessageType::Query
        };
        let mut message = Message::new(self.id, kind, OpCode::Query);
        message.metadata.truncation = self.truncated;
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = self.is_response;
        // Upper 8 bits (the OPT record's share) and the header's 4.
        message.metadata.response_code =
            ResponseCode::from((self.rcode >> 4) as u8, (self.rcode & 0xf) as u8);
        if self.rcode > 0xf {
            // The upper rcode bits only travel in an OPT record.
            message.edns = Some(hickory_proto::op::Edns::new());
        }
        for q in &self.questions {
            message.add_query(Query::query(wire_name(&q.name)?, RecordType::from(q.qtype)));
        }
        for a in &self.answers {
            let name = wire_name(&a.name)?;
            let data = match &a.data {
                AnswerData::A(ip) => RData::A(A(*ip)),
                AnswerData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
                AnswerData::Cname(target) => RData::CNAME(CNAME(wire_name(target)?)),
                AnswerData::Other(t) => return Err(EncodeError::OtherAnswer(*t)),
            };
            message.add_answer(Record::from_rdata(name, a.ttl, data));
        }
        message
            .to_vec()
            .map_err(|e| EncodeError::Encoder(e.to_string()))
    }

    /// Encodes the message for TCP: [`Self::to_udp`] behind the 2-byte length prefix.
    pub fn to_tcp(&self) -> Result<Vec<u8>, EncodeError> {
        let body = self.to_udp()?;
        let len = u16::try_from(body.len()).map_err(|_| EncodeError::TooLong(body.len()))?;
        let mut out = Vec::with_capacity(body.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("name {name:?} is not a DNS name: {reason}")]
    Name { name: String, reason: String },
    #[error("an answer of record type {0} cannot be encoded (its data is not kept)")]
    OtherAnswer(u16),
    #[error("DNS message of {0} bytes does not fit a TCP length prefix")]
    TooLong(usize),
    #[error("encoding the DNS message: {0}")]
    Encoder(String),
}

/// The inverse of [`presentation`]: labels split at unescaped dots, `\DDD` and `\c` unescaped.
fn wire_name(text: &str) -> Result<Name, EncodeError> {
    let bad = |reason: &str| EncodeError::Name {
        name: text.to_string(),
        reason: reason.to_string(),
    };
    let b = text.as_bytes();
    let mut labels: Vec<Vec<u8>> = vec![Vec::new()];
    let mut i = 0;
    while i < b.len() {
        let current = labels.last_mut().ok_or_else(|| bad("no label"))?;
        match b[i] {
            b'\\' => match b.get(i + 1..i + 4) {
                Some(d) if d.iter().all(u8::is_ascii_digit) => {
                    let v = d.iter().fold(0u16, |v, c| v * 10 + u16::from(c - b'0'));
                    current.push(u8::try_from(v).map_err(|_| bad("escape over 255"))?);
                    i += 4;
                }
                _ => {
                    current.push(*b.get(i + 1).ok_or_else(|| bad("ends in a backslash"))?);
                    i += 2;
                }
            },
            b'.' => {
                labels.push(Vec::new());
                i += 1;
            }
            c => {
                current.push(c);
                i += 1;
            }
        }
    }
    if labels.last().is_some_and(Vec::is_empty) {
        labels.pop();
    }
    if text == "." {
        labels.clear();
    } else if labels.iter().any(Vec::is_empty) {
        return Err(bad("empty label"));
    }
    Name::from_labels(labels.iter().map(Vec::as_slice)).map_err(|e| bad(&e.to_string()))
}

/// Fuzz entry: whatever the bytes, parsing returns a message or an error and never panics; a
/// message parsed from UDP bytes encodes back (unless it holds `Other` answers) to bytes that
/// parse to the same message; a TCP payload splits into messages the same way each time.
pub fn fuzz_dns(data: &[u8]) {
    if let Ok(message) = parse_udp(data) {
        let _ = message.resolution();
        let encodable = !message
            .answers
            .iter()
            .any(|a| matches!(a.data, AnswerData::Other(_)));
        if encodable {
            let bytes = message
                .to_udp()
                .unwrap_or_else(|e| panic!("parsed {message:?} but cannot encode it: {e}"));
            let again = parse_udp(&bytes)
                .unwrap_or_else(|e| panic!("encoded {message:?} does not parse: {e}"));
            assert_eq!(again, message, "UDP round trip changed the message");
        }
    }
    let first = parse_tcp(data);
    let all = parse_tcp_all(data);
    match (&first, all.first()) {
        (Ok(m), Some(Ok(n))) => assert_eq!(m, n),
        (Err(e), Some(Err(f))) => assert_eq!(e, f),
        (_, None) => assert!(data.is_empty()),
        _ => panic!("parse_tcp and parse_tcp_all disagree on the first message"),
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
