//! How a flow's `summary` is stored: the text Webb gives HTTP and L3/L4 flows is the one their
//! own fields give (`webb_proto::summary::derived`: `HTTP/1.1 GET url`, `TCP Flags: SYN`, ...),
//! so a row keeps the text only when it is not that one (DNS answers, kernel drops with their
//! reason, flows of other producers). Column `summary` of files and unflushed batches is NULL
//! when the summary is the derived one; `flows_from_batch` and table `flows` (through
//! `webb_summary`) show the text again.
//!
//! Measured on 256 Ki bench flows (random kinds, one in three HTTP with unique URLs): the
//! summaries cost 6.45 bytes/flow stored whole, most of it the URL again.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, AsArray, PrimitiveArray, StringBuilder};
use arrow::datatypes::{ArrowPrimitiveType, UInt32Type, UInt64Type};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::prelude::col;
use webb_proto::flow::{Flow, Http, L7FlowType, Layer4, Layer7, layer7};

use crate::schema::{SchemaError, Str, l4_protocol_at, opt, parse_enum};

/// The column of table `flows` (and the stored column, NULL when derived).
pub const SUMMARY: &str = "summary";

/// The stored columns `summary` of table `flows` is made of: the stored text, then what the
/// derivation reads.
pub(crate) const SUMMARY_STORED: [&str; 11] = [
    SUMMARY,
    "l4_protocol",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    "l7_type",
    "l7_latency_ns",
    "http_method",
    "http_code",
    "http_url",
    "http_protocol",
];

/// Whether `flow`'s summary is the one its fields give (then it is stored as NULL).
/// `scratch` is working space.
pub(crate) fn is_derived(flow: &Flow, scratch: &mut String) -> bool {
    scratch.clear();
    webb_proto::summary::derived_into(flow, scratch) && *scratch == flow.summary
}

/// The summary of `flow`, whose stored summary was `stored` (NULL: the derived one).
pub(crate) fn shown(stored: Option<&str>, flow: &Flow) -> String {
    match stored {
        Some(s) => s.to_owned(),
        None => webb_proto::summary::derived(flow).unwrap_or_default(),
    }
}

fn external(e: SchemaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn str_of<'a>(a: &'a ArrayRef, name: &'static str) -> DfResult<Str<'a>> {
    Str::of(a.as_ref(), name).map_err(external)
}

fn primitive<'a, T: ArrowPrimitiveType>(
    a: &'a ArrayRef,
    name: &str,
) -> DfResult<&'a PrimitiveArray<T>> {
    a.as_primitive_opt::<T>()
        .ok_or_else(|| DataFusionError::Internal(format!("{name} is not {:?}", T::DATA_TYPE)))
}

/// `webb_summary(<SUMMARY_STORED>)`: the `summary` of table `flows`.
fn show(stored: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
    let [
        stored,
        l4_protocol,
        tcp_flags,
        icmp_type,
        icmp_code,
        l7_type,
        l7_latency,
        http_method,
        http_code,
        http_url,
        http_protocol,
    ] = stored
    else {
        unreachable!("called with the columns of SUMMARY_STORED");
    };
    let stored = str_of(stored, SUMMARY)?;
    let l4_protocol = str_of(l4_protocol, "l4_protocol")?;
    let tcp_flags = str_of(tcp_flags, "tcp_flags")?;
    let l7_type = str_of(l7_type, "l7_type")?;
    let http_method = str_of(http_method, "http_method")?;
    let http_url = str_of(http_url, "http_url")?;
    let http_protocol = str_of(http_protocol, "http_protocol")?;
    let icmp_type = primitive::<UInt32Type>(icmp_type, "icmp_type")?;
    let icmp_code = primitive::<UInt32Type>(icmp_code, "icmp_code")?;
    let http_code = primitive::<UInt32Type>(http_code, "http_code")?;
    let l7_latency = primitive::<UInt64Type>(l7_latency, "l7_latency_ns")?;

    let mut out = StringBuilder::with_capacity(rows, rows * 24);
    let mut text = String::new();
    for i in 0..rows {
        if let Some(s) = stored.get(i) {
            out.append_value(s);
            continue;
        }
        // The fields `derived` reads, decoded as `flows_from_batch` decodes them.
        let l4 = match l4_protocol.get(i) {
            None | Some("VRRP" | "IGMP") => None,
            Some(p) => {
                let icmp = (
                    opt(icmp_type, i).unwrap_or_default(),
                    opt(icmp_code, i).unwrap_or_default(),
                );
                let protocol =
                    l4_protocol_at(i, p, (0, 0), icmp, tcp_flags.get(i)).map_err(external)?;
                Some(Layer4 { protocol })
            }
        };
        let l7 = match l7_type.get(i) {
            None => None,
            Some(t) => Some(Layer7 {
                r#type: parse_enum::<L7FlowType>("l7_type", i, Some(t)).map_err(external)?,
                latency_ns: opt(l7_latency, i).unwrap_or_default(),
                record: http_method.get(i).map(|method| {
                    layer7::Record::Http(Http {
                        code: opt(http_code, i).unwrap_or_default(),
                        method: method.to_owned(),
                        url: http_url.string(i),
                        protocol: http_protocol.string(i),
                        headers: Vec::new(),
                    })
                }),
            }),
        };
        let flow = Flow {
            l4,
            l7,
            ..Default::default()
        };
        text.clear();
        webb_proto::summary::derived_into(&flow, &mut text);
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

static SHOW_SUMMARY: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| crate::rebuilt::udf("webb_summary", SUMMARY_STORED.len(), show));

/// `summary` of table `flows` over the stored columns.
pub(crate) fn shown_summary() -> Expr {
    SHOW_SUMMARY.call(SUMMARY_STORED.iter().map(|c| col(*c)).collect())
}
