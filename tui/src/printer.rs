//! The output formats of `hubble observe` and `hubble status`, restated.
//!
//! Rules (from Hubble's printer):
//! - compact: `TIME[ [NODE]]: SRC (ID) ARROW DST (ID) TYPE VERDICT (SUMMARY)`. The arrow is
//!   `->` for a request, `<-` for a reply (and then source and destination swap places so
//!   the client stays on the left), `<>` when the flow does not say (`is_reply` absent).
//! - dict: `KEY: value` lines right-aligned on the colon, records separated by `------------`.
//!   Dict and table print source and destination as they are in the flow (no swap).
//! - table: tab-aligned columns (width = widest cell + 3), header on the first record, no
//!   colour; rows are held until the end, as Go's tabwriter does.
//! - An endpoint is `namespace/pod`, else `namespace/service`, else the DNS names, else the
//!   IP; `:port` is added for TCP/UDP/SCTP (IPv6 in brackets). A service namespace wins over
//!   the pod's (Hubble's quirk). Without an IP layer the MAC addresses are printed.
//! - TYPE: `<proto>-<l7 type>` for L7 (`http-request`, `dns-response <source>`); otherwise by
//!   event type: trace → observation point name, drop → drop reason text, policy verdict →
//!   `policy-verdict:<match> <direction>`, capture → capture point, sock → translation point.
//! - VERDICT: the enum name, except for policy-verdict events (ALLOWED, DENIED, AUDITED).
//! - SUMMARY: `IP Trace ID: n; ` + `Summary` + `; <auth type>` when auth is not DISABLED.
//! - Lost events: `TIME EVENTS LOST: SOURCE CPU(n) count`; node status events go to stderr and
//!   only NODE_ERROR / NODE_UNAVAILABLE unless debugging.
//! - json: one GetFlowsResponse per line in protojson with proto field names.
//! - Text from the network is escaped so it cannot drive the terminal.

use std::borrow::Cow;
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use webb_proto::flow::{
    AuthType, DebugCapturePoint, Flow, L7FlowType, LostEventSource, SocketTranslationPoint,
    TrafficDirection, Verdict, layer4, layer7,
};
use webb_proto::observer::{
    GetFlowsResponse, GetNamespacesResponse, GetNodesResponse, ServerStatusResponse,
    get_flows_response::ResponseTypes,
};
use webb_proto::relay::NodeState;
use webb_proto::webb_v1::{NodePolicyStatus, StatusExtras};

use crate::filters::{TRACE_POINTS, reserved_identity_name};
use crate::time::{TimeFormat, go_duration};

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Compact,
    Dict,
    Table,
    Json,
}

impl Format {
    /// `compact`, `dict`, `table`/`tab`, `json`/`jsonpb`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "compact" => Ok(Self::Compact),
            "dict" => Ok(Self::Dict),
            "table" | "tab" => Ok(Self::Table),
            "json" | "JSON" | "jsonpb" => Ok(Self::Json),
            other => Err(format!(
                "invalid output format: {other} (expected compact, dict, table, json or jsonpb)"
            )),
        }
    }
}

/// How the printer renders.
#[derive(Debug, Clone, Default)]
pub struct PrintOptions {
    pub format: Format,
    /// Colour the human formats (never the table).
    pub color: bool,
    pub node_name: bool,
    pub time_format: TimeFormat,
    /// Print pod/service/DNS names instead of IPs (`--numeric` turns it off).
    pub ip_translation: bool,
    /// Print informational node status events too.
    pub debug: bool,
    /// Keep Webb's `Flow.extensions` in JSON output.
    pub extras: bool,
}

const DICT_SEPARATOR: &str = "------------";

#[derive(Clone, Copy)]
struct Palette {
    on: bool,
}

impl Palette {
    fn paint(self, color: AnsiColor, s: &str) -> String {
        if !self.on || s.is_empty() {
            return s.to_string();
        }
        let style = Style::new().fg_color(Some(color.into()));
        format!("{style}{s}{style:#}")
    }
    fn host(self, s: &str) -> String {
        self.paint(AnsiColor::Cyan, s)
    }
    fn port(self, s: &str) -> String {
        self.paint(AnsiColor::Yellow, s)
    }
    fn identity(self, s: &str) -> String {
        self.paint(AnsiColor::Magenta, s)
    }
}

/// Replaces control characters (ESC, CR, ...) with visible escapes.
pub fn escape_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes GetFlowsResponses in one format. Call [`Printer::finish`] at the end (the table is
/// written then).
pub struct Printer<W: Write, E: Write> {
    opts: PrintOptions,
    out: W,
    err: E,
    line: usize,
    table: Vec<Vec<String>>,
}

impl<W: Write, E: Write> Printer<W, E> {
    pub fn new(opts: PrintOptions, out: W, err: E) -> Self {
        Self {
            opts,
            out,
            err,
            line: 0,
            table: Vec::new(),
        }
    }

    fn palette(&self) -> Palette {
        Palette {
            on: self.opts.color && self.opts.format != Format::Table,
        }
    }

    /// Prints one response (flow, lost events or node status).
    pub fn write_response(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        match &res.response_types {
            Some(ResponseTypes::Flow(flow)) => self.write_flow(res, flow),
            Some(ResponseTypes::LostEvents(_)) => self.write_lost(res),
            Some(ResponseTypes::NodeStatus(_)) => self.write_node_status(res),
            None => Ok(()),
        }
    }

    fn write_json(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        // Hubble's tools cannot print an Any they do not know: Webb's extras only on request.
        let line = match &res.response_types {
            Some(ResponseTypes::Flow(f)) if !self.opts.extras && f.extensions.is_some() => {
                let mut stripped = res.clone();
                if let Some(ResponseTypes::Flow(f)) = &mut stripped.response_types {
                    webb_proto::extras::strip(f);
                }
                crate::json::response_to_line(&stripped)
            }
            _ => crate::json::response_to_line(res),
        };
        let line = line.map_err(io::Error::other)?;
        writeln!(self.out, "{line}")
    }

    fn write_flow(&mut self, res: &GetFlowsResponse, f: &Flow) -> io::Result<()> {
        let pal = self.palette();
        let ts = self.opts.time_format.format_ts(f.time.as_ref());
        let node = escape_terminal(&f.node_name).into_owned();
        match self.opts.format {
            Format::Json => return self.write_json(res),
            Format::Table => {
                if self.line == 0 {
                    let mut header = vec!["TIMESTAMP".to_string()];
                    if self.opts.node_name {
                        header.push("NODE".into());
                    }
                    header.extend(
                        ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(String::from),
                    );
                    self.table.push(header);
                }
                let (src, dst) = host_names(f, self.opts.ip_translation, pal);
                let mut row = vec![ts];
                if self.opts.node_name {
                    row.push(node);
                }
                row.extend([
                    src,
                    dst,
                    flow_type(f),
                    verdict_text(f, pal),
                    summary(f, pal),
                ]);
                self.table.push(row);
            }
            Format::Dict => {
                let (src, dst) = host_names(f, self.opts.ip_translation, pal);
                if self.line != 0 {
                    writeln!(self.out, "{DICT_SEPARATOR}")?;
                }
                writeln!(self.out, "  TIMESTAMP: {ts}")?;
                if self.opts.node_name {
                    writeln!(self.out, "       NODE: {node}")?;
                }
                writeln!(self.out, "     SOURCE: {src}")?;
                writeln!(self.out, "DESTINATION: {dst}")?;
                writeln!(self.out, "       TYPE: {}", flow_type(f))?;
                writeln!(self.out, "    VERDICT: {}", verdict_text(f, pal))?;
                writeln!(self.out, "    SUMMARY: {}", summary(f, pal))?;
            }
            Format::Compact => {
                let (mut src, mut dst) = host_names(f, self.opts.ip_translation, pal);
                let mut src_id = identity_text(f.source.as_ref().map_or(0, |e| e.identity), pal);
                let mut dst_id =
                    identity_text(f.destination.as_ref().map_or(0, |e| e.identity), pal);
                let arrow = match f.is_reply.as_ref().map(|b| b.value) {
                    None => "<>",
                    Some(true) => {
                        std::mem::swap(&mut src, &mut dst);
                        std::mem::swap(&mut src_id, &mut dst_id);
                        "<-"
                    }
                    Some(false) => "->",
                };
                let node = if self.opts.node_name {
                    format!(" [{node}]")
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "{ts}{node}: {src} {src_id} {arrow} {dst} {dst_id} {} {} ({})",
                    flow_type(f),
                    verdict_text(f, pal),
                    summary(f, pal)
                )?;
            }
        }
        self.line += 1;
        Ok(())
    }

    fn write_lost(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        let Some(ResponseTypes::LostEvents(lost)) = &res.response_types else {
            return Ok(());
        };
        let ts = self.opts.time_format.format_ts(res.time.as_ref());
        let node = escape_terminal(&res.node_name).into_owned();
        let source = LostEventSource::try_from(lost.source)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| lost.source.to_string());
        let cpu = lost.cpu.as_ref().map_or(0, |c| c.value);
        let count = lost.num_events_lost;
        match self.opts.format {
            Format::Json => return self.write_json(res),
            Format::Table => {
                if self.line == 0 {
                    let mut header = vec!["TIMESTAMP".to_string()];
                    if self.opts.node_name {
                        header.push("NODE".into());
                    }
                    header.extend(
                        ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"].map(String::from),
                    );
                    self.table.push(header);
                }
                let mut row = vec![ts];
                if self.opts.node_name {
                    row.push(node);
                }
                row.extend([
                    source,
                    "-".into(),
                    "EVENTS LOST".into(),
                    "-".into(),
                    format!("CPU({cpu}) - {count}"),
                ]);
                self.table.push(row);
            }
            Format::Dict => {
                if self.line != 0 {
                    writeln!(self.out, "{DICT_SEPARATOR}")?;
                }
                writeln!(self.out, "  TIMESTAMP: {ts}")?;
                if self.opts.node_name {
                    writeln!(self.out, "       NODE: {node}")?;
                }
                writeln!(self.out, "     SOURCE: {source}")?;
                writeln!(self.out, "       TYPE: EVENTS LOST")?;
                writeln!(self.out, "    VERDICT: -")?;
                writeln!(self.out, "    SUMMARY: CPU({cpu}) - {count}")?;
            }
            Format::Compact => {
                let node = if self.opts.node_name {
                    format!(" [{node}]")
                } else {
                    String::new()
                };
                writeln!(
                    self.out,
                    "{ts}{node} EVENTS LOST: {source} CPU({cpu}) {count}"
                )?;
            }
        }
        self.line += 1;
        Ok(())
    }

    fn write_node_status(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        let Some(ResponseTypes::NodeStatus(status)) = &res.response_types else {
            return Ok(());
        };
        let state = NodeState::try_from(status.state_change).unwrap_or(NodeState::UnknownNodeState);
        if !self.opts.debug && !matches!(state, NodeState::NodeError | NodeState::NodeUnavailable) {
            return Ok(());
        }
        let ts = self.opts.time_format.format_ts(res.time.as_ref());
        let names = join_with_cut_off(&status.node_names, ", ", 50);
        match self.opts.format {
            Format::Json => {
                let line = crate::json::response_to_line(res).map_err(io::Error::other)?;
                writeln!(self.err, "{line}")
            }
            Format::Dict => {
                if self.line != 0 {
                    writeln!(self.out, "{DICT_SEPARATOR}")?;
                } else {
                    self.line += 1;
                }
                let message = if status.message.is_empty() {
                    "N/A".to_string()
                } else {
                    format!("{:?}", status.message)
                };
                writeln!(self.err, "  TIMESTAMP: {ts}")?;
                writeln!(self.err, "      STATE: {}", state.as_str_name())?;
                writeln!(self.err, "      NODES: {}", escape_terminal(&names))?;
                writeln!(self.err, "    MESSAGE: {}", escape_terminal(&message))
            }
            Format::Table | Format::Compact => {
                let prefix = format!("{ts} [{}]", escape_terminal(&res.node_name));
                let n = status.node_names.len();
                let names = escape_terminal(&names);
                let msg = match state {
                    NodeState::NodeConnected => {
                        format!("{prefix}: Receiving flows from {n} nodes: {names}")
                    }
                    NodeState::NodeUnavailable => {
                        format!("{prefix}: {n} nodes are unavailable: {names}")
                    }
                    NodeState::NodeGone => {
                        format!("{prefix}: {n} nodes removed from cluster: {names}")
                    }
                    NodeState::NodeError => format!(
                        "{prefix}: Error {:?} on {n} nodes: {names}",
                        escape_terminal(&status.message)
                    ),
                    NodeState::UnknownNodeState => {
                        format!("{prefix}: unknown node status event")
                    }
                };
                writeln!(self.err, "{msg}")
            }
        }
    }

    /// Writes what is buffered (the table) and flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.table.is_empty() {
            let rows = std::mem::take(&mut self.table);
            write_table(&mut self.out, &rows)?;
        }
        self.out.flush()?;
        self.err.flush()
    }

    /// Flushes what has been written so far (follow mode).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writers back (tests).
    pub fn into_inner(self) -> (W, E) {
        (self.out, self.err)
    }
}

/// Go's tabwriter with minwidth 2, padding 3, spaces: every cell but the last of a row is
/// padded to the widest cell of its column plus 3.
pub fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 3).max(2);
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn join_with_cut_off(elems: &[String], sep: &str, target: usize) -> String {
    let mut len = 0;
    let mut end = elems.len();
    for (i, e) in elems.iter().enumerate() {
        len += e.len() + sep.len();
        if len > target && i > 0 {
            end = i;
            break;
        }
    }
    let joined = elems[..end].join(sep);
    let omitted = elems.len() - end;
    if omitted == 0 {
        joined
    } else {
        format!("{joined} (and {omitted} more)")
    }
}

fn ports(f: &Flow) -> (String, String) {
    match f.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(p)) => {
            (p.source_port.to_string(), p.destination_port.to_string())
        }
        Some(layer4::Protocol::Udp(p)) => {
            (p.source_port.to_string(), p.destination_port.to_string())
        }
        Some(layer4::Protocol::Sctp(p)) => {
            (p.source_port.to_string(), p.destination_port.to_string())
        }
        _ => (String::new(), String::new()),
    }
}

/// What an endpoint can be named by, for [`hostname`].
struct EndpointName<'a> {
    ip: &'a str,
    port: &'a str,
    ns: &'a str,
    pod: &'a str,
    svc: &'a str,
    names: &'a [String],
}

fn hostname(e: &EndpointName<'_>, translate: bool, pal: Palette) -> String {
    let mut host = e.ip.to_string();
    if translate {
        if !e.pod.is_empty() {
            host = join_path(e.ns, e.pod);
        } else if !e.svc.is_empty() {
            host = join_path(e.ns, e.svc);
        } else if !e.names.is_empty() {
            host = e.names.join(",");
        }
    }
    let host = escape_terminal(&host).into_owned();
    if !e.port.is_empty() && e.port != "0" {
        let port = pal.port(e.port);
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    } else {
        host
    }
}

/// Go's `path.Join` for the two parts we join: no slash when the namespace is empty.
fn join_path(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// Source and destination as printed (colour applied when on).
fn host_names(f: &Flow, translate: bool, pal: Palette) -> (String, String) {
    let Some(ip) = f.ip.as_ref() else {
        return match f.ethernet.as_ref() {
            Some(eth) => (
                pal.host(&escape_terminal(&eth.source)),
                pal.host(&escape_terminal(&eth.destination)),
            ),
            None => (String::new(), String::new()),
        };
    };
    let (mut src_ns, mut src_pod, mut dst_ns, mut dst_pod) = ("", "", "", "");
    let (mut src_svc, mut dst_svc) = ("", "");
    if let Some(src) = f.source.as_ref() {
        src_ns = &src.namespace;
        src_pod = &src.pod_name;
    }
    if let Some(dst) = f.destination.as_ref() {
        dst_ns = &dst.namespace;
        dst_pod = &dst.pod_name;
    }
    if let Some(svc) = f.source_service.as_ref() {
        src_ns = &svc.namespace;
        src_svc = &svc.name;
    }
    if let Some(svc) = f.destination_service.as_ref() {
        dst_ns = &svc.namespace;
        dst_svc = &svc.name;
    }
    let (src_port, dst_port) = ports(f);
    let src = EndpointName {
        ip: &ip.source,
        port: &src_port,
        ns: src_ns,
        pod: src_pod,
        svc: src_svc,
        names: &f.source_names,
    };
    let dst = EndpointName {
        ip: &ip.destination,
        port: &dst_port,
        ns: dst_ns,
        pod: dst_pod,
        svc: dst_svc,
        names: &f.destination_names,
    };
    let (src, dst) = (
        hostname(&src, translate, pal),
        hostname(&dst, translate, pal),
    );
    (pal.host(&src), pal.host(&dst))
}

/// Source and destination names as the table prints them (names, not IPs; no colour).
pub fn flow_endpoints(f: &Flow) -> (String, String) {
    host_names(f, true, Palette { on: false })
}

/// The VERDICT column without colour (ALLOWED/DENIED/AUDITED for policy verdicts).
pub fn verdict_name(f: &Flow) -> String {
    verdict_text(f, Palette { on: false })
}

/// The SUMMARY column without colour.
pub fn summary_text(f: &Flow) -> String {
    summary(f, Palette { on: false })
}

fn identity_text(id: u32, pal: Palette) -> String {
    let text = match reserved_identity_name(id) {
        Some(name) => format!("({name})"),
        None => format!("(ID:{id})"),
    };
    pal.identity(&text)
}

/// Cilium's drop reason texts by datapath code (what the TYPE column shows for drops).
pub fn drop_reason_text(code: u8) -> Cow<'static, str> {
    let text = match code {
        0 => "Success",
        2 => "Invalid packet",
        3 => "Interface",
        4 => "Interface Decrypted",
        5 => "LB, sock cgroup: No backend slot entry found",
        6 => "LB, sock cgroup: No backend entry found",
        7 => "LB, sock cgroup: Reverse entry update failed",
        8 => "LB, sock cgroup: Reverse entry stale",
        9 => "Fragmented packet",
        10 => "Fragmented packet entry update failed",
        130 => "Invalid source mac",
        131 => "Invalid destination mac",
        132 => "Invalid source ip",
        133 => "Policy denied",
        134 => "Invalid packet",
        135 => "CT: Truncated or invalid header",
        136 => "CT: Missing TCP ACK flag",
        137 => "CT: Unknown L4 protocol",
        138 => "CT: Can't create entry from packet",
        139 => "Unsupported L3 protocol",
        140 => "Missed tail call",
        141 => "Error writing to packet",
        142 => "Unknown L4 protocol",
        143 => "Unknown ICMPv4 code",
        144 => "Unknown ICMPv4 type",
        145 => "Unknown ICMPv6 code",
        146 => "Unknown ICMPv6 type",
        147 => "Error retrieving tunnel key",
        148 => "Error retrieving tunnel options",
        149 => "Invalid Geneve option",
        150 => "Unknown L3 target address",
        151 => "Stale or unroutable IP",
        152 => "No matching local container found",
        153 => "Error while correcting L3 checksum",
        154 => "Error while correcting L4 checksum",
        155 => "CT: Map insertion failed",
        156 => "Invalid IPv6 extension header",
        157 => "IP fragmentation not supported",
        158 => "Service backend not found",
        160 => "No tunnel/encapsulation endpoint (datapath BUG!)",
        161 => "NAT 46/64 not enabled",
        162 => "Reached EDT rate-limiting drop horizon",
        163 => "Unknown connection tracking state",
        164 => "Local host is unreachable",
        165 => "No configuration available to perform policy decision",
        166 => "Unsupported L2 protocol",
        167 => "No mapping for NAT masquerade",
        168 => "Unsupported protocol for NAT masquerade",
        169 => "FIB lookup failed",
        170 => "Encapsulation traffic is prohibited",
        171 => "Invalid identity",
        172 => "Unknown sender",
        173 => "NAT not needed",
        174 => "Is a ClusterIP",
        175 => "First logical datagram fragment not found",
        176 => "Forbidden ICMPv6 message",
        177 => "Denied by LB src range check",
        178 => "Socket lookup failed",
        179 => "Socket assign failed",
        180 => "Proxy redirection not supported for protocol",
        181 => "Policy denied by denylist",
        182 => "VLAN traffic disallowed by VLAN filter",
        183 => "Incorrect VNI from VTEP",
        184 => "Failed to update or lookup TC buffer",
        185 => "No SID was found for the IP address",
        186 => "SRv6 state was removed during tail call",
        187 => "L3 translation from IPv4 to IPv6 failed (NAT46)",
        188 => "L3 translation from IPv6 to IPv4 failed (NAT64)",
        189 => "Authentication required",
        190 => "No conntrack map found",
        191 => "No nat map found",
        192 => "Invalid ClusterID",
        193 => "Unsupported packet protocol for DSR encapsulation",
        194 => "No egress gateway found",
        195 => "Traffic is unencrypted",
        196 => "TTL exceeded",
        197 => "No node ID found",
        198 => "Rate limited",
        199 => "IGMP handled",
        200 => "IGMP subscribed",
        201 => "Multicast handled",
        202 => "Host datapath not ready",
        203 => "Endpoint policy program not available",
        204 => "No Egress IP configured",
        205 => "Punt to proxy",
        other => return Cow::Owned(other.to_string()),
    };
    Cow::Borrowed(text)
}

fn policy_match_text(m: u32) -> &'static str {
    match m {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        _ => "unknown",
    }
}

/// The TYPE column.
pub fn flow_type(f: &Flow) -> String {
    if let Some(l7) = f.l7.as_ref() {
        let mut kind = L7FlowType::try_from(l7.r#type)
            .map(|t| t.as_str_name().to_ascii_lowercase())
            .unwrap_or_else(|_| l7.r#type.to_string());
        let proto = match &l7.record {
            Some(layer7::Record::Http(_)) => "http",
            Some(layer7::Record::Dns(dns)) => {
                kind = format!("{kind} {}", escape_terminal(&dns.observation_source));
                "dns"
            }
            Some(layer7::Record::Kafka(_)) => "kafka",
            None => "l7",
        };
        return format!("{proto}-{kind}");
    }
    let (ty, sub) = f
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    match ty {
        4 => {
            let sub = sub as u8;
            TRACE_POINTS
                .get(sub as usize)
                .map_or_else(|| sub.to_string(), |s| s.to_string())
        }
        1 => drop_reason_text(sub as u8).into_owned(),
        5 => {
            let dir = TrafficDirection::try_from(f.traffic_direction)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| f.traffic_direction.to_string());
            format!(
                "policy-verdict:{} {dir}",
                policy_match_text(f.policy_match_type)
            )
        }
        3 => DebugCapturePoint::try_from(f.debug_capture_point)
            .map(|p| p.as_str_name().to_string())
            .unwrap_or_else(|_| f.debug_capture_point.to_string()),
        7 => match SocketTranslationPoint::try_from(f.sock_xlate_point) {
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionFwd) => "post-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPostDirectionRev) => "post-xlate-rev".into(),
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionFwd) => "pre-xlate-fwd".into(),
            Ok(SocketTranslationPoint::SockXlatePointPreDirectionRev) => "pre-xlate-rev".into(),
            Ok(p) => p.as_str_name().to_string(),
            Err(_) => f.sock_xlate_point.to_string(),
        },
        _ => "UNKNOWN".into(),
    }
}

fn verdict_text(f: &Flow, pal: Palette) -> String {
    let is_policy = f.event_type.as_ref().is_some_and(|e| e.r#type == 5);
    let Ok(verdict) = Verdict::try_from(f.verdict) else {
        return f.verdict.to_string();
    };
    let name = verdict.as_str_name();
    match verdict {
        Verdict::Forwarded | Verdict::Redirected => {
            pal.paint(AnsiColor::Green, if is_policy { "ALLOWED" } else { name })
        }
        Verdict::Dropped | Verdict::Error => {
            pal.paint(AnsiColor::Red, if is_policy { "DENIED" } else { name })
        }
        Verdict::Audit => pal.paint(AnsiColor::Yellow, if is_policy { "AUDITED" } else { name }),
        Verdict::Traced | Verdict::Translated => pal.paint(AnsiColor::Yellow, name),
        Verdict::Unknown => name.to_string(),
    }
}

fn summary(f: &Flow, pal: Palette) -> String {
    let mut out = String::new();
    if let Some(id) = f.ip_trace_id.as_ref()
        && id.trace_id > 0
    {
        out.push_str(&format!("IP Trace ID: {}; ", id.trace_id));
    }
    out.push_str(&escape_terminal(&f.summary));
    if let Ok(auth) = AuthType::try_from(f.auth_type)
        && auth != AuthType::Disabled
    {
        let color = if auth == AuthType::TestAlwaysFail {
            AnsiColor::Red
        } else {
            AnsiColor::Green
        };
        out.push_str("; ");
        out.push_str(&pal.paint(color, auth.as_str_name()));
    }
    out
}

/// Thousands separated by commas, as Hubble prints counters.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `hubble status` output for a ServerStatusResponse.
pub fn write_server_status(
    out: &mut impl Write,
    format: Format,
    res: &ServerStatusResponse,
) -> io::Result<()> {
    let connected_n = res.num_connected_nodes.as_ref().map(|n| n.value);
    let unavailable_n = res.num_unavailable_nodes.as_ref().map(|n| n.value);
    let connected = connected_n.map_or("N/A".to_string(), |n| n.to_string());
    let unavailable = unavailable_n.map_or("N/A".to_string(), |n| n.to_string());
    let mut flows_per_sec = if res.flows_rate > 0.0 {
        format!("{:.2}", res.flows_rate)
    } else {
        "N/A".to_string()
    };
    match format {
        Format::Table => {
            let rows = vec![
                [
                    "NUM FLOWS",
                    "MAX FLOWS",
                    "SEEN FLOWS",
                    "FLOWS PER SECOND",
                    "UPTIME",
                    "NUM CONNECTED NODES",
                    "NUM UNAVAILABLE NODES",
                    "VERSION",
                ]
                .map(String::from)
                .to_vec(),
                vec![
                    group_thousands(res.num_flows),
                    group_thousands(res.max_flows),
                    group_thousands(res.seen_flows),
                    flows_per_sec,
                    go_duration(res.uptime_ns),
                    connected,
                    unavailable,
                    escape_terminal(&res.version).into_owned(),
                ],
            ];
            write_table(out, &rows)
        }
        Format::Dict => {
            writeln!(
                out,
                "          NUM FLOWS: {}",
                group_thousands(res.num_flows)
            )?;
            writeln!(
                out,
                "          MAX FLOWS: {}",
                group_thousands(res.max_flows)
            )?;
            writeln!(
                out,
                "         SEEN FLOWS: {}",
                group_thousands(res.seen_flows)
            )?;
            writeln!(out, "   FLOWS PER SECOND: {flows_per_sec}")?;
            writeln!(out, "             UPTIME: {}", go_duration(res.uptime_ns))?;
            writeln!(out, "NUM CONNECTED NODES: {connected}")?;
            writeln!(out, " NUM UNAVAIL. NODES: {unavailable}")?;
            writeln!(
                out,
                "            VERSION: {}",
                escape_terminal(&res.version)
            )
        }
        Format::Compact => {
            let ratio = if res.max_flows > 0 {
                format!(
                    " ({:.2}%)",
                    res.num_flows as f64 / res.max_flows as f64 * 100.0
                )
            } else {
                String::new()
            };
            writeln!(
                out,
                "Current/Max Flows: {}/{}{ratio}",
                group_thousands(res.num_flows),
                group_thousands(res.max_flows)
            )?;
            let uptime = res.uptime_ns as f64 / 1e9;
            if flows_per_sec == "N/A" && uptime > 0.0 {
                flows_per_sec = format!("{:.2}", res.seen_flows as f64 / uptime);
            }
            writeln!(out, "Flows/s: {flows_per_sec}")?;
            if let Some(c) = connected_n {
                let total = unavailable_n.map_or(String::new(), |u| format!("/{}", u + c));
                writeln!(out, "Connected Nodes: {c}{total}")?;
            }
            if let Some(u) = unavailable_n
                && u > 0
            {
                let mut names: Vec<String> = res
                    .unavailable_nodes
                    .iter()
                    .map(|n| escape_terminal(n).into_owned())
                    .collect();
                if names.is_empty() {
                    writeln!(out, "Unavailable Nodes: {u}")?;
                } else {
                    names.sort();
                    if u as usize > names.len() {
                        names.push(format!("and {} more...", u as usize - names.len()));
                    }
                    writeln!(out, "Unavailable Nodes: {u}\n  - {}", names.join("\n  - "))?;
                }
            }
            Ok(())
        }
        Format::Json => {
            let line = crate::json::to_line(res).map_err(io::Error::other)?;
            writeln!(out, "{line}")
        }
    }
}

/// The policy part of `webb status` (Webb's `StatusExtras`, after Hubble's lines): each node's
/// revision in force and, while its policy files are rejected, the error naming file, document,
/// line and field. JSON output stays Hubble's one `ServerStatusResponse` and prints nothing here.
pub fn write_policy_status(
    out: &mut impl Write,
    format: Format,
    extras: &StatusExtras,
) -> io::Result<()> {
    let mut nodes: Vec<&NodePolicyStatus> = extras
        .policy
        .iter()
        .filter(|p| !p.source.is_empty() || p.revision > 0 || p.error.is_some())
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    if nodes.is_empty() {
        return Ok(());
    }
    let esc = |s: &str| escape_terminal(s).into_owned();
    match format {
        Format::Json => Ok(()),
        Format::Table => {
            let mut rows = vec![
                [
                    "NODE",
                    "POLICY REVISION",
                    "POLICIES",
                    "SOURCE",
                    "REJECTED LOADS",
                    "ERROR",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for p in nodes {
                rows.push(vec![
                    esc(&p.node),
                    p.revision.to_string(),
                    p.policies.to_string(),
                    esc(&p.source),
                    p.rejected.to_string(),
                    p.error.as_ref().map_or(String::new(), |e| esc(&e.message)),
                ]);
            }
            write_table(out, &rows)
        }
        Format::Compact | Format::Dict => {
            for p in nodes {
                writeln!(
                    out,
                    "Policy ({}): revision {} in force, {} {} from {}",
                    esc(&p.node),
                    p.revision,
                    p.policies,
                    if p.policies == 1 {
                        "policy"
                    } else {
                        "policies"
                    },
                    esc(&p.source)
                )?;
                if let Some(e) = &p.error {
                    writeln!(
                        out,
                        "  REJECTED: the last load failed ({} since start); the revision above stays in force:\n    {}",
                        p.rejected,
                        esc(&e.message)
                    )?;
                    let mut at = vec![format!("file {}", esc(&e.file))];
                    if e.document > 0 {
                        at.push(format!("document {}", e.document));
                    }
                    if e.line > 0 {
                        at.push(format!("line {}", e.line));
                    }
                    if !e.field.is_empty() {
                        at.push(format!("field {}", esc(&e.field)));
                    }
                    writeln!(out, "    at {}", at.join(", "))?;
                }
            }
            Ok(())
        }
    }
}

fn node_state_title(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::NodeConnected) => "Connected",
        Ok(NodeState::NodeUnavailable) => "Unavailable",
        Ok(NodeState::NodeGone) => "Gone",
        Ok(NodeState::NodeError) => "Error",
        _ => "Unknown",
    }
}

/// `hubble list nodes` (`table`, `wide`, `json`), sorted by name.
pub fn write_nodes(out: &mut impl Write, output: &str, res: &GetNodesResponse) -> io::Result<()> {
    let mut nodes = res.nodes.clone();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if output == "json" {
        for node in &nodes {
            writeln!(
                out,
                "{}",
                crate::json::to_line(node).map_err(io::Error::other)?
            )?;
        }
        return Ok(());
    }
    let wide = output == "wide";
    let mut header = ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"]
        .map(String::from)
        .to_vec();
    if wide {
        header.extend(["VERSION", "ADDRESS", "TLS"].map(String::from));
    }
    let mut rows = vec![header];
    for n in &nodes {
        // Hubble rounds the uptime to whole seconds before printing it.
        let secs = (n.uptime_ns + 500_000_000) / 1_000_000_000;
        let (age, fps) = if secs > 0 {
            (
                go_duration(secs * 1_000_000_000),
                format!("{:.2}", n.seen_flows as f64 / secs as f64),
            )
        } else {
            ("N/A".to_string(), "N/A".to_string())
        };
        let ratio = if n.max_flows > 0 {
            format!(
                "{}/{} ({:6.2}%)",
                n.num_flows,
                n.max_flows,
                n.num_flows as f64 / n.max_flows as f64 * 100.0
            )
        } else {
            "N/A".to_string()
        };
        let mut row = vec![
            escape_terminal(&n.name).into_owned(),
            node_state_title(n.state).to_string(),
            age,
            fps,
            ratio,
        ];
        if wide {
            let version = if n.version.is_empty() {
                "N/A".to_string()
            } else {
                escape_terminal(&n.version).into_owned()
            };
            let tls = match &n.tls {
                None => "N/A",
                Some(t) if t.enabled => "Enabled",
                Some(_) => "Disabled",
            };
            row.extend([
                version,
                escape_terminal(&n.address).into_owned(),
                tls.to_string(),
            ]);
        }
        rows.push(row);
    }
    write_table(out, &rows)
}

/// `hubble list namespaces` (`table`, `wide`, `json`).
pub fn write_namespaces(
    out: &mut impl Write,
    output: &str,
    res: &GetNamespacesResponse,
) -> io::Result<()> {
    if output == "json" {
        for ns in &res.namespaces {
            writeln!(
                out,
                "{}",
                crate::json::to_line(ns).map_err(io::Error::other)?
            )?;
        }
        return Ok(());
    }
    let wide = output == "wide";
    let mut header = vec!["NAMESPACE".to_string()];
    if wide {
        header.push("CLUSTER".into());
    }
    let mut rows = vec![header];
    for ns in &res.namespaces {
        let mut row = vec![escape_terminal(&ns.namespace).into_owned()];
        if wide && !ns.cluster.is_empty() {
            row.push(escape_terminal(&ns.cluster).into_owned());
        }
        rows.push(row);
    }
    write_table(out, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped_by_three() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(16383), "16,383");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_terminal("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert!(matches!(escape_terminal("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn node_names_are_cut_after_fifty_characters() {
        let names: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
        let s = join_with_cut_off(&names, ", ", 50);
        assert!(s.ends_with("(and 15 more)"), "{s}");
    }
}
