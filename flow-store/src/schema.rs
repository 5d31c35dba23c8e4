//! The Arrow schema of a stored flow (documented column by column in `SCHEMA.md`) and the
//! conversions Flow → RecordBatch ([`FlowBatchBuilder`]) and RecordBatch → Flow
//! ([`flows_from_batch`]).
//!
//! Rules that make the round trip exact:
//! - A message field that is absent (`None`) is NULL in all of its columns; a present but empty
//!   one has non-null empty values. A designated "presence" column decides (see SCHEMA.md).
//! - Enums are stored by their proto name (`FORWARDED`), which is what Hubble's JSON prints and
//!   what SQL users type; a number the enum does not know is stored as its decimal text.
//! - Fields Webb does not fill (tunnel, emitter, Kafka, VRRP/IGMP, ...) are kept, if a flow has
//!   them, as protobuf bytes in the `residual` column, so nothing is silently lost.
//! - The captured payload of `webb.v1.FlowExtras` is not stored (the relay strips it anyway);
//!   the rest of the extras (kernel drop reason, default-deny attribution, loss) is.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray,
    BooleanBuilder, DictionaryArray, Int32Array, Int32Builder, LargeStringArray, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StringViewArray, StructArray,
    TimestampNanosecondArray, TimestampNanosecondBuilder, UInt8Builder, UInt32Array, UInt32Builder,
    UInt64Array, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef, TimeUnit};
use prost::Message;
use webb_proto::flow::{
    self, CiliumEventType, DropReason, Endpoint, Ethernet, Flow, FlowType, Http, HttpHeader,
    IcmPv4, IcmPv6, Ip, IpVersion, L7FlowType, Layer4, Layer7, NetworkInterface, Policy, Sctp,
    Service, Tcp, TcpFlags, TraceContext, TraceObservationPoint, TraceParent, TraceReason,
    TrafficDirection, Udp, Verdict, Workload, layer4, layer7,
};
use webb_proto::pbjson_types::BoolValue;
use webb_proto::webb_v1::{DefaultDenyAttribution, FlowExtras, KernelDropReason, StageLoss};
use webb_proto::{Timestamp, extras};

use crate::uuid::{self as uuid_cols, UUID, UUID_HEAD, UUID_TAIL, UUID_TEXT, UuidCols};

/// Name of the time column (nanoseconds since the epoch, UTC).
pub const TIME: &str = "time";

/// Why a record batch could not be read back as flows.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("column `{0}` is missing")]
    MissingColumn(&'static str),
    #[error("column `{column}` has type {found}, expected {expected}")]
    WrongType {
        column: &'static str,
        found: DataType,
        expected: &'static str,
    },
    #[error("column `{column}` row {row}: `{value}` is not a valid {what}")]
    BadValue {
        column: &'static str,
        row: usize,
        value: String,
        what: &'static str,
    },
    #[error("column `residual` row {row}: {source}")]
    Residual {
        row: usize,
        source: prost::DecodeError,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

fn policy_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("namespace", DataType::Utf8, true),
        Field::new("labels", list(DataType::Utf8), true),
        Field::new("revision", DataType::UInt64, true),
        Field::new("kind", DataType::Utf8, true),
    ])
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ])
}

fn loss_fields() -> Fields {
    Fields::from(vec![
        Field::new("stage", DataType::Utf8, true),
        Field::new("node", DataType::Utf8, true),
        Field::new("lost", DataType::UInt64, true),
    ])
}

fn endpoint_columns(side: &str) -> Vec<Field> {
    vec![
        Field::new(format!("{side}_id"), DataType::UInt32, true),
        Field::new(format!("{side}_identity"), DataType::UInt32, true),
        Field::new(format!("{side}_cluster"), dict(), true),
        Field::new(format!("{side}_namespace"), dict(), true),
        Field::new(format!("{side}_pod"), dict(), true),
        Field::new(format!("{side}_labels"), list(DataType::Utf8), true),
        Field::new(format!("{side}_workload"), dict(), true),
        Field::new(format!("{side}_workload_kind"), dict(), true),
        Field::new(format!("{side}_service"), dict(), true),
        Field::new(format!("{side}_service_namespace"), dict(), true),
        Field::new(format!("{side}_names"), list(DataType::Utf8), true),
    ]
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(
            TIME,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new(UUID, DataType::Utf8, true),
        Field::new("node_name", dict(), true),
        Field::new("node_labels", list(DataType::Utf8), true),
        Field::new("verdict", dict(), true),
        Field::new("drop_reason", DataType::UInt32, true),
        Field::new("drop_reason_desc", dict(), true),
        Field::new("flow_type", dict(), true),
        Field::new("event_type", DataType::Int32, true),
        Field::new("event_sub_type", DataType::Int32, true),
        Field::new("ethernet_source", DataType::Utf8, true),
        Field::new("ethernet_destination", DataType::Utf8, true),
        Field::new("ip_source", DataType::Utf8, true),
        Field::new("ip_source_xlated", DataType::Utf8, true),
        Field::new("ip_destination", DataType::Utf8, true),
        Field::new("ip_version", dict(), true),
        Field::new("ip_encrypted", DataType::Boolean, true),
        Field::new("l4_protocol", dict(), true),
        Field::new("source_port", DataType::UInt32, true),
        Field::new("destination_port", DataType::UInt32, true),
        Field::new("tcp_flags", dict(), true),
        Field::new("icmp_type", DataType::UInt32, true),
        Field::new("icmp_code", DataType::UInt32, true),
    ];
    fields.extend(endpoint_columns("source"));
    fields.extend(endpoint_columns("destination"));
    fields.extend([
        Field::new("traffic_direction", dict(), true),
        Field::new("observation_point", dict(), true),
        Field::new("trace_reason", dict(), true),
        Field::new("is_reply", DataType::Boolean, true),
        Field::new("reply", DataType::Boolean, true),
        Field::new("policy_match_type", DataType::UInt32, true),
        Field::new("interface_index", DataType::UInt32, true),
        Field::new("interface_name", dict(), true),
        Field::new("l7_type", dict(), true),
        Field::new("l7_latency_ns", DataType::UInt64, true),
        Field::new("http_method", dict(), true),
        Field::new("http_code", DataType::UInt32, true),
        Field::new("http_url", DataType::Utf8, true),
        Field::new("http_protocol", dict(), true),
        Field::new(
            "http_headers",
            list(DataType::Struct(header_fields())),
            true,
        ),
        Field::new("dns_query", DataType::Utf8, true),
        Field::new("dns_ips", list(DataType::Utf8), true),
        Field::new("dns_ttl", DataType::UInt32, true),
        Field::new("dns_cnames", list(DataType::Utf8), true),
        Field::new("dns_observation_source", dict(), true),
        Field::new("dns_rcode", DataType::UInt32, true),
        Field::new("dns_qtypes", list(DataType::Utf8), true),
        Field::new("dns_rrtypes", list(DataType::Utf8), true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new(
            "egress_allowed_by",
            list(DataType::Struct(policy_fields())),
            true,
        ),
        Field::new(
            "ingress_allowed_by",
            list(DataType::Struct(policy_fields())),
            true,
        ),
        Field::new(
            "egress_denied_by",
            list(DataType::Struct(policy_fields())),
            true,
        ),
        Field::new(
            "ingress_denied_by",
            list(DataType::Struct(policy_fields())),
            true,
        ),
        Field::new("policy_log", list(DataType::Utf8), true),
        Field::new("summary", DataType::Utf8, true),
        Field::new("kernel_drop_name", dict(), true),
        Field::new("kernel_drop_id", DataType::UInt32, true),
        Field::new("kernel_drop_symbol", dict(), true),
        Field::new("kernel_drop_offset", DataType::UInt64, true),
        Field::new("default_deny_direction", dict(), true),
        Field::new("default_deny_policies", list(DataType::Utf8), true),
        Field::new("default_deny_text", DataType::Utf8, true),
        Field::new("loss", list(DataType::Struct(loss_fields())), true),
        Field::new("residual", DataType::Binary, true),
    ]);
    Arc::new(Schema::new(fields))
});

/// [`SCHEMA`] with `uuid` stored as its three columns (see [`crate::uuid`]).
static FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = SCHEMA
        .fields()
        .iter()
        .flat_map(|f| {
            if f.name() == UUID {
                vec![
                    Field::new(UUID_HEAD, dict(), true),
                    Field::new(UUID_TAIL, DataType::UInt8, true),
                    Field::new(UUID_TEXT, DataType::Utf8, true),
                ]
            } else {
                vec![f.as_ref().clone()]
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
});

/// The schema of table `flows`.
pub fn flow_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The schema of the store's Parquet files and of the batches [`FlowBatchBuilder`] makes:
/// [`flow_schema`] with `uuid` stored as `uuid_head`, `uuid_tail` and `uuid_text`.
pub fn file_schema() -> SchemaRef {
    FILE_SCHEMA.clone()
}

// ---------------------------------------------------------------------------------------------
// Enums by name.

pub(crate) trait ProtoEnum: Sized + Copy + TryFrom<i32> {
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self>;
    fn int(self) -> i32;
}

macro_rules! proto_enum {
    ($($t:ty),*) => {$(
        impl ProtoEnum for $t {
            fn name(self) -> &'static str { self.as_str_name() }
            fn from_name(s: &str) -> Option<Self> { Self::from_str_name(s) }
            fn int(self) -> i32 { self as i32 }
        }
    )*};
}
proto_enum!(
    Verdict,
    DropReason,
    FlowType,
    IpVersion,
    TrafficDirection,
    TraceObservationPoint,
    TraceReason,
    L7FlowType
);

pub(crate) fn enum_name<E: ProtoEnum>(v: i32) -> Cow<'static, str> {
    match E::try_from(v) {
        Ok(e) => Cow::Borrowed(e.name()),
        Err(_) => Cow::Owned(v.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Write side.

/// foldhash: several times faster than SipHash on the short names this module interns; the
/// keys are our own values, so flooding is not a concern.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

fn fast_hash(s: &str) -> u64 {
    std::hash::BuildHasher::hash_one(&foldhash::fast::FixedState::default(), s)
}

/// A `Dictionary(Int32, Utf8)` column. Unlike Arrow's `StringDictionaryBuilder` it lets a
/// caller that already knows a value's key (an enum seen before in this batch, an endpoint
/// seen before) append the key without hashing the text again; keys are valid until
/// [`finish`](Self::finish).
struct Dict {
    keys: Int32Builder,
    values: StringBuilder,
    index: FastMap<Box<str>, i32>,
    /// Keys by a small code the caller chooses (an enum's number): `-1` when not seen yet.
    by_code: Vec<i32>,
}

impl Dict {
    fn new() -> Self {
        Self {
            keys: Int32Builder::new(),
            values: StringBuilder::new(),
            index: FastMap::default(),
            by_code: Vec::new(),
        }
    }
    /// The key of `s`, adding it to the dictionary if new.
    fn key(&mut self, s: &str) -> i32 {
        if let Some(k) = self.index.get(s) {
            return *k;
        }
        let k = self.values.len() as i32;
        self.values.append_value(s);
        self.index.insert(s.into(), k);
        k
    }
    fn append_value(&mut self, s: &str) {
        let k = self.key(s);
        self.keys.append_value(k);
    }
    fn append_key(&mut self, k: i32) {
        self.keys.append_value(k);
    }
    fn append_null(&mut self) {
        self.keys.append_null();
    }
    /// Appends the value whose code is `code`; `name` gives its text the first time.
    fn append_coded<S: AsRef<str>>(&mut self, code: usize, name: impl FnOnce() -> S) {
        if let Some(&k) = self.by_code.get(code)
            && k >= 0
        {
            self.keys.append_value(k);
            return;
        }
        let k = self.key(name().as_ref());
        if self.by_code.len() <= code {
            self.by_code.resize(code + 1, -1);
        }
        self.by_code[code] = k;
        self.keys.append_value(k);
    }
    /// An enum by its proto name; a number the enum does not know by its decimal text.
    fn append_enum<E: ProtoEnum>(&mut self, v: i32) {
        // Known enum numbers are small; others (rare) are hashed by their text.
        match usize::try_from(v) {
            Ok(code) if code < 256 => self.append_coded(code, || enum_name::<E>(v)),
            _ => self.append_value(&enum_name::<E>(v)),
        }
    }
    /// The column so far; the builder starts over. The dictionary is kept for the next batch
    /// (so keys known to callers stay valid and nothing is hashed again) unless it has grown
    /// past [`DICT_KEEP_BYTES`]; returns whether it was dropped.
    fn finish(&mut self) -> (ArrayRef, bool) {
        let keys = self.keys.finish();
        self.keys = Int32Builder::with_capacity(keys.len());
        let reset = self.values.values_slice().len() > DICT_KEEP_BYTES;
        let values = Arc::new(if reset {
            self.index.clear();
            self.by_code.clear();
            self.values.finish()
        } else {
            self.values.finish_cloned()
        });
        // Every key was handed out by `key` for a value appended before it.
        (
            Arc::new(DictionaryArray::<Int32Type>::new(keys, values)),
            reset,
        )
    }
    fn finish_array(&mut self) -> ArrayRef {
        self.finish().0
    }
}

/// Text a [`Dict`] keeps from one batch to the next: enough for the names of a few thousand
/// pods, small enough that the copy each unflushed batch holds does not matter.
const DICT_KEEP_BYTES: usize = 64 << 10;

/// A column builder that starts over with room for a batch like the one it just finished:
/// `finish` leaves Arrow's builders empty, and growing them again by doubling from nothing
/// copied every column about once more and touched fresh memory for each batch.
trait Refill {
    fn finish_refill(&mut self) -> ArrayRef;
}

/// Text of the next batch may be a little longer than the last one's.
fn with_headroom(bytes: usize) -> usize {
    bytes + bytes / 8
}

impl<T: arrow::datatypes::ArrowPrimitiveType> Refill for arrow::array::PrimitiveBuilder<T> {
    fn finish_refill(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = Self::with_capacity(a.len()).with_data_type(a.data_type().clone());
        Arc::new(a)
    }
}

impl Refill for BooleanBuilder {
    fn finish_refill(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = Self::with_capacity(a.len());
        Arc::new(a)
    }
}

impl<T: arrow::datatypes::ByteArrayType> Refill for arrow::array::GenericByteBuilder<T> {
    fn finish_refill(&mut self) -> ArrayRef {
        let a = self.finish();
        *self = Self::with_capacity(a.len(), with_headroom(a.value_data().len()));
        Arc::new(a)
    }
}

struct StrList {
    b: ListBuilder<StringBuilder>,
}

impl StrList {
    fn new() -> Self {
        Self {
            b: ListBuilder::new(StringBuilder::new()),
        }
    }
    fn push<I>(&mut self, items: Option<I>)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        match items {
            Some(items) => {
                for s in items {
                    self.b.values().append_value(s.as_ref());
                }
                self.b.append(true);
            }
            None => self.b.append(false),
        }
    }
    fn push_null(&mut self) {
        self.b.append(false);
    }
    fn finish(&mut self) -> ArrayRef {
        let a = self.b.finish();
        let items = a.values().as_string::<i32>();
        self.b = ListBuilder::with_capacity(
            StringBuilder::with_capacity(items.len(), with_headroom(items.value_data().len())),
            a.len(),
        );
        Arc::new(a)
    }
}

#[derive(Default)]
struct Offsets(Vec<i32>);

impl Offsets {
    fn new() -> Self {
        Self(vec![0])
    }
    fn close(&mut self, len: usize) {
        self.0.push(len as i32);
    }
    fn finish(&mut self) -> OffsetBuffer<i32> {
        let o = std::mem::replace(&mut self.0, vec![0]);
        OffsetBuffer::new(o.into())
    }
}

fn list_of(fields: Fields, children: Vec<ArrayRef>, offsets: OffsetBuffer<i32>) -> ArrayRef {
    let item = Arc::new(Field::new_list_field(
        DataType::Struct(fields.clone()),
        true,
    ));
    let values = StructArray::new(fields, children, None);
    Arc::new(ListArray::new(item, offsets, Arc::new(values), None))
}

struct PolicyList {
    offsets: Offsets,
    name: StringBuilder,
    namespace: StringBuilder,
    labels: StrList,
    revision: UInt64Builder,
    kind: StringBuilder,
}

impl PolicyList {
    fn new() -> Self {
        Self {
            offsets: Offsets::new(),
            name: StringBuilder::new(),
            namespace: StringBuilder::new(),
            labels: StrList::new(),
            revision: UInt64Builder::new(),
            kind: StringBuilder::new(),
        }
    }
    fn push(&mut self, policies: &[Policy]) {
        for p in policies {
            self.name.append_value(&p.name);
            self.namespace.append_value(&p.namespace);
            self.labels.push(Some(&p.labels));
            self.revision.append_value(p.revision);
            self.kind.append_value(&p.kind);
        }
        self.offsets.close(self.name.len());
    }
    fn finish(&mut self) -> ArrayRef {
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.name.finish()),
            Arc::new(self.namespace.finish()),
            self.labels.finish(),
            Arc::new(self.revision.finish()),
            Arc::new(self.kind.finish()),
        ];
        list_of(policy_fields(), children, self.offsets.finish())
    }
}

struct EndpointCols {
    id: UInt32Builder,
    identity: UInt32Builder,
    cluster: Dict,
    namespace: Dict,
    pod: Dict,
    labels: StrList,
    workload: Dict,
    workload_kind: Dict,
    service: Dict,
    service_namespace: Dict,
    names: StrList,
    /// Dictionary keys of endpoints seen before, by id, identity and a hash of the pod name
    /// (remote endpoints share id 0 and an identity): a flow's endpoint is
    /// almost always one of a few thousand pods, and comparing its names with the cached ones
    /// is cheaper than hashing five of them again.
    seen: FastMap<(u32, u32, u64), SeenEndpoint>,
}

/// An endpoint's names and their keys in its side's dictionaries.
struct SeenEndpoint {
    cluster: String,
    namespace: String,
    pod: String,
    workload: Option<(String, String)>,
    keys: [i32; 5],
}

impl SeenEndpoint {
    fn is(&self, ep: &Endpoint) -> bool {
        self.pod == ep.pod_name
            && self.namespace == ep.namespace
            && self.cluster == ep.cluster_name
            && match (&self.workload, ep.workloads.first()) {
                (Some((name, kind)), Some(w)) => *name == w.name && *kind == w.kind,
                (None, None) => true,
                _ => false,
            }
    }
}

impl EndpointCols {
    fn new() -> Self {
        Self {
            seen: FastMap::default(),
            id: UInt32Builder::new(),
            identity: UInt32Builder::new(),
            cluster: Dict::new(),
            namespace: Dict::new(),
            pod: Dict::new(),
            labels: StrList::new(),
            workload: Dict::new(),
            workload_kind: Dict::new(),
            service: Dict::new(),
            service_namespace: Dict::new(),
            names: StrList::new(),
        }
    }
    fn push(&mut self, ep: Option<&Endpoint>, service: Option<&Service>, names: &[String]) {
        match ep {
            Some(ep) => {
                self.id.append_value(ep.id);
                self.identity.append_value(ep.identity);
                self.append_names(ep);
                self.labels.push(Some(&ep.labels));
            }
            None => {
                self.id.append_null();
                self.identity.append_null();
                self.cluster.append_null();
                self.namespace.append_null();
                self.pod.append_null();
                self.labels.push_null();
                self.workload.append_null();
                self.workload_kind.append_null();
            }
        }
        match service {
            Some(s) => {
                self.service.append_value(&s.name);
                self.service_namespace.append_value(&s.namespace);
            }
            None => {
                self.service.append_null();
                self.service_namespace.append_null();
            }
        }
        self.names.push(Some(names));
    }
    /// Cluster, namespace, pod and first workload, by cached keys when the endpoint was seen.
    fn append_names(&mut self, ep: &Endpoint) {
        let id = (ep.id, ep.identity, fast_hash(&ep.pod_name));
        let keys = match self.seen.get(&id) {
            Some(seen) if seen.is(ep) => seen.keys,
            _ => {
                let w = ep.workloads.first();
                let keys = [
                    self.cluster.key(&ep.cluster_name),
                    self.namespace.key(&ep.namespace),
                    self.pod.key(&ep.pod_name),
                    w.map_or(-1, |w| self.workload.key(&w.name)),
                    w.map_or(-1, |w| self.workload_kind.key(&w.kind)),
                ];
                self.seen.insert(
                    id,
                    SeenEndpoint {
                        cluster: ep.cluster_name.clone(),
                        namespace: ep.namespace.clone(),
                        pod: ep.pod_name.clone(),
                        workload: w.map(|w| (w.name.clone(), w.kind.clone())),
                        keys,
                    },
                );
                keys
            }
        };
        self.cluster.append_key(keys[0]);
        self.namespace.append_key(keys[1]);
        self.pod.append_key(keys[2]);
        if keys[3] >= 0 {
            self.workload.append_key(keys[3]);
            self.workload_kind.append_key(keys[4]);
        } else {
            self.workload.append_null();
            self.workload_kind.append_null();
        }
    }
    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(self.id.finish_refill());
        out.push(self.identity.finish_refill());
        let mut reset = false;
        for d in [
            &mut self.cluster,
            &mut self.namespace,
            &mut self.pod,
            &mut self.workload,
            &mut self.workload_kind,
        ] {
            let (col, r) = d.finish();
            out.push(col);
            reset |= r;
        }
        // The cached keys point into dictionaries that start over.
        if reset || self.seen.len() > 1 << 16 {
            self.seen.clear();
        }
        // Column order of the schema: labels sits between pod and workload.
        let labels = self.labels.finish();
        out.insert(out.len() - 2, labels);
        out.push(self.service.finish_array());
        out.push(self.service_namespace.finish_array());
        out.push(self.names.finish());
    }
}

/// Collects flows column by column; [`finish`](Self::finish) turns them into one RecordBatch of
/// [`file_schema`] and leaves the builder empty for the next batch.
pub struct FlowBatchBuilder {
    rows: usize,
    time: TimestampNanosecondBuilder,
    uuid_head: Dict,
    uuid_tail: UInt8Builder,
    uuid_text: StringBuilder,
    node_name: Dict,
    node_labels: StrList,
    verdict: Dict,
    drop_reason: UInt32Builder,
    drop_reason_desc: Dict,
    flow_type: Dict,
    event_type: Int32Builder,
    event_sub_type: Int32Builder,
    eth_src: StringBuilder,
    eth_dst: StringBuilder,
    ip_src: StringBuilder,
    ip_src_xlated: StringBuilder,
    ip_dst: StringBuilder,
    ip_version: Dict,
    ip_encrypted: BooleanBuilder,
    l4_protocol: Dict,
    src_port: UInt32Builder,
    dst_port: UInt32Builder,
    tcp_flags: Dict,
    icmp_type: UInt32Builder,
    icmp_code: UInt32Builder,
    source: EndpointCols,
    destination: EndpointCols,
    traffic_direction: Dict,
    observation_point: Dict,
    trace_reason: Dict,
    is_reply: BooleanBuilder,
    reply: BooleanBuilder,
    policy_match_type: UInt32Builder,
    if_index: UInt32Builder,
    if_name: Dict,
    l7_type: Dict,
    l7_latency: UInt64Builder,
    http_method: Dict,
    http_code: UInt32Builder,
    http_url: StringBuilder,
    http_protocol: Dict,
    http_headers_off: Offsets,
    http_header_key: StringBuilder,
    http_header_value: StringBuilder,
    dns_query: StringBuilder,
    dns_ips: StrList,
    dns_ttl: UInt32Builder,
    dns_cnames: StrList,
    dns_source: Dict,
    dns_rcode: UInt32Builder,
    dns_qtypes: StrList,
    dns_rrtypes: StrList,
    trace_id: StringBuilder,
    egress_allowed_by: PolicyList,
    ingress_allowed_by: PolicyList,
    egress_denied_by: PolicyList,
    ingress_denied_by: PolicyList,
    policy_log: StrList,
    /// NULL when the flow's summary is the one its fields give (see `crate::summary`).
    summary: StringBuilder,
    /// Working space for the derived summary.
    scratch: String,
    kd_name: Dict,
    kd_id: UInt32Builder,
    kd_symbol: Dict,
    kd_offset: UInt64Builder,
    dd_direction: Dict,
    dd_policies: StrList,
    dd_text: StringBuilder,
    loss_off: Offsets,
    loss_stage: StringBuilder,
    loss_node: StringBuilder,
    loss_lost: UInt64Builder,
    residual: BinaryBuilder,
}

impl Default for FlowBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Values of `l4_protocol`.
const L4_NAMES: [&str; 8] = ["", "TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP"];

const TCP_FLAG_NAMES: [&str; 9] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

/// The flags as a 9-bit number (the order of [`TCP_FLAG_NAMES`]): one dictionary key per set.
fn tcp_flags_code(f: &TcpFlags) -> usize {
    let on = [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns];
    on.iter()
        .enumerate()
        .fold(0, |code, (bit, set)| code | (usize::from(*set) << bit))
}

fn tcp_flags_text(f: &TcpFlags) -> String {
    let on = [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns];
    let mut s = String::new();
    for (name, set) in TCP_FLAG_NAMES.iter().zip(on) {
        if set {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(name);
        }
    }
    s
}

fn tcp_flags_parse(s: &str) -> Option<TcpFlags> {
    let mut f = TcpFlags::default();
    for name in s.split(',').filter(|n| !n.is_empty()) {
        let slot = match name {
            "FIN" => &mut f.fin,
            "SYN" => &mut f.syn,
            "RST" => &mut f.rst,
            "PSH" => &mut f.psh,
            "ACK" => &mut f.ack,
            "URG" => &mut f.urg,
            "ECE" => &mut f.ece,
            "CWR" => &mut f.cwr,
            "NS" => &mut f.ns,
            _ => return None,
        };
        *slot = true;
    }
    Some(f)
}

/// The part of a flow that has no column of its own, or `None` when there is none (the usual
/// case, checked without allocating).
fn residual(flow: &Flow, extras: &Option<FlowExtras>) -> Option<Flow> {
    let foreign_ext = flow.extensions.is_some() && extras.is_none();
    let odd_l4 = matches!(
        flow.l4.as_ref().and_then(|l| l.protocol.as_ref()),
        Some(layer4::Protocol::Vrrp(_) | layer4::Protocol::Igmp(_))
    );
    let odd_l7 = matches!(
        flow.l7.as_ref().and_then(|l| l.record.as_ref()),
        Some(layer7::Record::Kafka(_))
    );
    let odd_trace = flow
        .trace_context
        .as_ref()
        .is_some_and(|t| t.parent.is_none());
    let extra_workloads = |e: &Option<Endpoint>| e.as_ref().is_some_and(|e| e.workloads.len() > 1);
    let any = foreign_ext
        || odd_l4
        || odd_l7
        || odd_trace
        || extra_workloads(&flow.source)
        || extra_workloads(&flow.destination)
        || flow.emitter.is_some()
        || flow.auth_type != 0
        || flow.tunnel.is_some()
        || flow.file.is_some()
        || flow.ip_trace_id.is_some()
        || flow.debug_capture_point != 0
        || flow.proxy_port != 0
        || flow.sock_xlate_point != 0
        || flow.socket_cookie != 0
        || flow.cgroup_id != 0
        || flow.aggregate.is_some();
    if !any {
        return None;
    }
    let rest_workloads = |e: &Option<Endpoint>| {
        e.as_ref()
            .filter(|e| e.workloads.len() > 1)
            .map(|e| Endpoint {
                workloads: e.workloads[1..].to_vec(),
                ..Default::default()
            })
    };
    Some(Flow {
        emitter: flow.emitter.clone(),
        auth_type: flow.auth_type,
        tunnel: flow.tunnel.clone(),
        file: flow.file.clone(),
        ip_trace_id: flow.ip_trace_id,
        debug_capture_point: flow.debug_capture_point,
        proxy_port: flow.proxy_port,
        sock_xlate_point: flow.sock_xlate_point,
        socket_cookie: flow.socket_cookie,
        cgroup_id: flow.cgroup_id,
        aggregate: flow.aggregate,
        extensions: if foreign_ext {
            flow.extensions.clone()
        } else {
            None
        },
        l4: if odd_l4 { flow.l4.clone() } else { None },
        l7: if odd_l7 { flow.l7.clone() } else { None },
        trace_context: if odd_trace {
            flow.trace_context.clone()
        } else {
            None
        },
        source: rest_workloads(&flow.source),
        destination: rest_workloads(&flow.destination),
        ..Default::default()
    })
}

impl FlowBatchBuilder {
    pub fn new() -> Self {
        Self {
            rows: 0,
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            uuid_head: Dict::new(),
            uuid_tail: UInt8Builder::new(),
            uuid_text: StringBuilder::new(),
            node_name: Dict::new(),
            node_labels: StrList::new(),
            verdict: Dict::new(),
            drop_reason: UInt32Builder::new(),
            drop_reason_desc: Dict::new(),
            flow_type: Dict::new(),
            event_type: Int32Builder::new(),
            event_sub_type: Int32Builder::new(),
            eth_src: StringBuilder::new(),
            eth_dst: StringBuilder::new(),
            ip_src: StringBuilder::new(),
            ip_src_xlated: StringBuilder::new(),
            ip_dst: StringBuilder::new(),
            ip_version: Dict::new(),
            ip_encrypted: BooleanBuilder::new(),
            l4_protocol: Dict::new(),
            src_port: UInt32Builder::new(),
            dst_port: UInt32Builder::new(),
            tcp_flags: Dict::new(),
            icmp_type: UInt32Builder::new(),
            icmp_code: UInt32Builder::new(),
            source: EndpointCols::new(),
            destination: EndpointCols::new(),
            traffic_direction: Dict::new(),
            observation_point: Dict::new(),
            trace_reason: Dict::new(),
            is_reply: BooleanBuilder::new(),
            reply: BooleanBuilder::new(),
            policy_match_type: UInt32Builder::new(),
            if_index: UInt32Builder::new(),
            if_name: Dict::new(),
            l7_type: Dict::new(),
            l7_latency: UInt64Builder::new(),
            http_method: Dict::new(),
            http_code: UInt32Builder::new(),
            http_url: StringBuilder::new(),
            http_protocol: Dict::new(),
            http_headers_off: Offsets::new(),
            http_header_key: StringBuilder::new(),
            http_header_value: StringBuilder::new(),
            dns_query: StringBuilder::new(),
            dns_ips: StrList::new(),
            dns_ttl: UInt32Builder::new(),
            dns_cnames: StrList::new(),
            dns_source: Dict::new(),
            dns_rcode: UInt32Builder::new(),
            dns_qtypes: StrList::new(),
            dns_rrtypes: StrList::new(),
            trace_id: StringBuilder::new(),
            egress_allowed_by: PolicyList::new(),
            ingress_allowed_by: PolicyList::new(),
            egress_denied_by: PolicyList::new(),
            ingress_denied_by: PolicyList::new(),
            policy_log: StrList::new(),
            summary: StringBuilder::new(),
            scratch: String::new(),
            kd_name: Dict::new(),
            kd_id: UInt32Builder::new(),
            kd_symbol: Dict::new(),
            kd_offset: UInt64Builder::new(),
            dd_direction: Dict::new(),
            dd_policies: StrList::new(),
            dd_text: StringBuilder::new(),
            loss_off: Offsets::new(),
            loss_stage: StringBuilder::new(),
            loss_node: StringBuilder::new(),
            loss_lost: UInt64Builder::new(),
            residual: BinaryBuilder::new(),
        }
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one flow. Never fails: every flow has a row.
    pub fn append(&mut self, flow: &Flow) {
        self.rows += 1;
        match flow.time {
            Some(t) => self
                .time
                .append_value(t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos)),
            None => self.time.append_null(),
        }
        match uuid_cols::split(&flow.uuid) {
            Some((head, tail)) => {
                self.uuid_head.append_value(head);
                self.uuid_tail.append_value(tail);
                self.uuid_text.append_null();
            }
            None => {
                self.uuid_head.append_null();
                self.uuid_tail.append_null();
                self.uuid_text.append_value(&flow.uuid);
            }
        }
        self.node_name.append_value(&flow.node_name);
        self.node_labels.push(Some(&flow.node_labels));
        self.verdict.append_enum::<Verdict>(flow.verdict);
        self.drop_reason.append_value(flow.drop_reason);
        self.drop_reason_desc
            .append_enum::<DropReason>(flow.drop_reason_desc);
        self.flow_type.append_enum::<FlowType>(flow.r#type);
        match &flow.event_type {
            Some(e) => {
                self.event_type.append_value(e.r#type);
                self.event_sub_type.append_value(e.sub_type);
            }
            None => {
                self.event_type.append_null();
                self.event_sub_type.append_null();
            }
        }
        match &flow.ethernet {
            Some(e) => {
                self.eth_src.append_value(&e.source);
                self.eth_dst.append_value(&e.destination);
            }
            None => {
                self.eth_src.append_null();
                self.eth_dst.append_null();
            }
        }
        match &flow.ip {
            Some(ip) => {
                self.ip_src.append_value(&ip.source);
                self.ip_src_xlated.append_value(&ip.source_xlated);
                self.ip_dst.append_value(&ip.destination);
                self.ip_version.append_enum::<IpVersion>(ip.ip_version);
                self.ip_encrypted.append_value(ip.encrypted);
            }
            None => {
                self.ip_src.append_null();
                self.ip_src_xlated.append_null();
                self.ip_dst.append_null();
                self.ip_version.append_null();
                self.ip_encrypted.append_null();
            }
        }
        self.append_l4(flow.l4.as_ref());
        self.source.push(
            flow.source.as_ref(),
            flow.source_service.as_ref(),
            &flow.source_names,
        );
        self.destination.push(
            flow.destination.as_ref(),
            flow.destination_service.as_ref(),
            &flow.destination_names,
        );
        self.traffic_direction
            .append_enum::<TrafficDirection>(flow.traffic_direction);
        self.observation_point
            .append_enum::<TraceObservationPoint>(flow.trace_observation_point);
        self.trace_reason
            .append_enum::<TraceReason>(flow.trace_reason);
        self.is_reply.append_option(flow.is_reply.map(|b| b.value));
        self.reply.append_value(flow.reply);
        self.policy_match_type.append_value(flow.policy_match_type);
        match &flow.interface {
            Some(i) => {
                self.if_index.append_value(i.index);
                self.if_name.append_value(&i.name);
            }
            None => {
                self.if_index.append_null();
                self.if_name.append_null();
            }
        }
        self.append_l7(flow.l7.as_ref());
        match flow.trace_context.as_ref().and_then(|t| t.parent.as_ref()) {
            Some(p) => self.trace_id.append_value(&p.trace_id),
            None => self.trace_id.append_null(),
        }
        self.egress_allowed_by.push(&flow.egress_allowed_by);
        self.ingress_allowed_by.push(&flow.ingress_allowed_by);
        self.egress_denied_by.push(&flow.egress_denied_by);
        self.ingress_denied_by.push(&flow.ingress_denied_by);
        self.policy_log.push(Some(&flow.policy_log));
        if crate::summary::is_derived(flow, &mut self.scratch) {
            self.summary.append_null();
        } else {
            self.summary.append_value(&flow.summary);
        }

        let extras = extras::unpack(flow).and_then(Result::ok);
        self.append_extras(extras.as_ref());
        match residual(flow, &extras) {
            Some(r) => self.residual.append_value(r.encode_to_vec()),
            None => self.residual.append_null(),
        }
    }

    fn append_l4(&mut self, l4: Option<&Layer4>) {
        use layer4::Protocol as P;
        let (proto, ports, flags, icmp): (Option<&str>, _, _, _) = match l4 {
            None => (None, None, None, None),
            Some(l4) => match &l4.protocol {
                None => (Some(""), None, None, None),
                Some(P::Tcp(t)) => (
                    Some("TCP"),
                    Some((t.source_port, t.destination_port)),
                    t.flags.as_ref(),
                    None,
                ),
                Some(P::Udp(u)) => (
                    Some("UDP"),
                    Some((u.source_port, u.destination_port)),
                    None,
                    None,
                ),
                Some(P::Sctp(s)) => (
                    Some("SCTP"),
                    Some((s.source_port, s.destination_port)),
                    None,
                    None,
                ),
                Some(P::IcmPv4(i)) => (Some("ICMPv4"), None, None, Some((i.r#type, i.code))),
                Some(P::IcmPv6(i)) => (Some("ICMPv6"), None, None, Some((i.r#type, i.code))),
                // Kept whole in `residual`; the column still says what it is for SQL.
                Some(P::Vrrp(_)) => (Some("VRRP"), None, None, None),
                Some(P::Igmp(_)) => (Some("IGMP"), None, None, None),
            },
        };
        match proto {
            // The protocol names are a handful of constants: a code, not a hash, per row.
            Some(p) => match L4_NAMES.iter().position(|n| *n == p) {
                Some(code) => self.l4_protocol.append_coded(code, || p),
                None => self.l4_protocol.append_value(p),
            },
            None => self.l4_protocol.append_null(),
        }
        self.src_port.append_option(ports.map(|p| p.0));
        self.dst_port.append_option(ports.map(|p| p.1));
        match flags {
            Some(f) => self
                .tcp_flags
                .append_coded(tcp_flags_code(f), || tcp_flags_text(f)),
            None => self.tcp_flags.append_null(),
        }
        self.icmp_type.append_option(icmp.map(|i| i.0));
        self.icmp_code.append_option(icmp.map(|i| i.1));
    }

    fn append_l7(&mut self, l7: Option<&Layer7>) {
        match l7 {
            Some(l7) => {
                self.l7_type.append_enum::<L7FlowType>(l7.r#type);
                self.l7_latency.append_value(l7.latency_ns);
            }
            None => {
                self.l7_type.append_null();
                self.l7_latency.append_null();
            }
        }
        let record = l7.and_then(|l| l.record.as_ref());
        match record {
            Some(layer7::Record::Http(h)) => {
                self.http_method.append_value(&h.method);
                self.http_code.append_value(h.code);
                self.http_url.append_value(&h.url);
                self.http_protocol.append_value(&h.protocol);
                for hd in &h.headers {
                    self.http_header_key.append_value(&hd.key);
                    self.http_header_value.append_value(&hd.value);
                }
            }
            _ => {
                self.http_method.append_null();
                self.http_code.append_null();
                self.http_url.append_null();
                self.http_protocol.append_null();
            }
        }
        self.http_headers_off.close(self.http_header_key.len());
        match record {
            Some(layer7::Record::Dns(d)) => {
                self.dns_query.append_value(&d.query);
                self.dns_ips.push(Some(&d.ips));
                self.dns_ttl.append_value(d.ttl);
                self.dns_cnames.push(Some(&d.cnames));
                self.dns_source.append_value(&d.observation_source);
                self.dns_rcode.append_value(d.rcode);
                self.dns_qtypes.push(Some(&d.qtypes));
                self.dns_rrtypes.push(Some(&d.rrtypes));
            }
            _ => {
                self.dns_query.append_null();
                self.dns_ips.push_null();
                self.dns_ttl.append_null();
                self.dns_cnames.push_null();
                self.dns_source.append_null();
                self.dns_rcode.append_null();
                self.dns_qtypes.push_null();
                self.dns_rrtypes.push_null();
            }
        }
    }

    fn append_extras(&mut self, extras: Option<&FlowExtras>) {
        match extras.and_then(|e| e.kernel_drop.as_ref()) {
            Some(k) => {
                self.kd_name.append_value(&k.name);
                self.kd_id.append_value(k.id);
                self.kd_symbol.append_value(&k.symbol);
                self.kd_offset.append_value(k.offset);
            }
            None => {
                self.kd_name.append_null();
                self.kd_id.append_null();
                self.kd_symbol.append_null();
                self.kd_offset.append_null();
            }
        }
        match extras.and_then(|e| e.default_deny.as_ref()) {
            Some(d) => {
                self.dd_direction
                    .append_enum::<TrafficDirection>(d.direction);
                self.dd_policies.push(Some(&d.policies));
                self.dd_text.append_value(&d.text);
            }
            None => {
                self.dd_direction.append_null();
                self.dd_policies.push_null();
                self.dd_text.append_null();
            }
        }
        for l in extras.map(|e| e.loss.as_slice()).unwrap_or_default() {
            self.loss_stage.append_value(&l.stage);
            self.loss_node.append_value(&l.node);
            self.loss_lost.append_value(l.lost);
        }
        self.loss_off.close(self.loss_stage.len());
    }

    /// The rows appended so far as one batch of [`file_schema`]; the builder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let mut c: Vec<ArrayRef> = Vec::with_capacity(FILE_SCHEMA.fields().len());
        c.push(self.time.finish_refill());
        c.push(self.uuid_head.finish_array());
        c.push(self.uuid_tail.finish_refill());
        c.push(self.uuid_text.finish_refill());
        c.push(self.node_name.finish_array());
        c.push(self.node_labels.finish());
        c.push(self.verdict.finish_array());
        c.push(self.drop_reason.finish_refill());
        c.push(self.drop_reason_desc.finish_array());
        c.push(self.flow_type.finish_array());
        c.push(self.event_type.finish_refill());
        c.push(self.event_sub_type.finish_refill());
        c.push(self.eth_src.finish_refill());
        c.push(self.eth_dst.finish_refill());
        c.push(self.ip_src.finish_refill());
        c.push(self.ip_src_xlated.finish_refill());
        c.push(self.ip_dst.finish_refill());
        c.push(self.ip_version.finish_array());
        c.push(self.ip_encrypted.finish_refill());
        c.push(self.l4_protocol.finish_array());
        c.push(self.src_port.finish_refill());
        c.push(self.dst_port.finish_refill());
        c.push(self.tcp_flags.finish_array());
        c.push(self.icmp_type.finish_refill());
        c.push(self.icmp_code.finish_refill());
        self.source.finish(&mut c);
        self.destination.finish(&mut c);
        c.push(self.traffic_direction.finish_array());
        c.push(self.observation_point.finish_array());
        c.push(self.trace_reason.finish_array());
        c.push(self.is_reply.finish_refill());
        c.push(self.reply.finish_refill());
        c.push(self.policy_match_type.finish_refill());
        c.push(self.if_index.finish_refill());
        c.push(self.if_name.finish_array());
        c.push(self.l7_type.finish_array());
        c.push(self.l7_latency.finish_refill());
        c.push(self.http_method.finish_array());
        c.push(self.http_code.finish_refill());
        c.push(self.http_url.finish_refill());
        c.push(self.http_protocol.finish_array());
        c.push(list_of(
            header_fields(),
            vec![
                self.http_header_key.finish_refill(),
                self.http_header_value.finish_refill(),
            ],
            self.http_headers_off.finish(),
        ));
        c.push(self.dns_query.finish_refill());
        c.push(self.dns_ips.finish());
        c.push(self.dns_ttl.finish_refill());
        c.push(self.dns_cnames.finish());
        c.push(self.dns_source.finish_array());
        c.push(self.dns_rcode.finish_refill());
        c.push(self.dns_qtypes.finish());
        c.push(self.dns_rrtypes.finish());
        c.push(self.trace_id.finish_refill());
        c.push(self.egress_allowed_by.finish());
        c.push(self.ingress_allowed_by.finish());
        c.push(self.egress_denied_by.finish());
        c.push(self.ingress_denied_by.finish());
        c.push(self.policy_log.finish());
        c.push(self.summary.finish_refill());
        c.push(self.kd_name.finish_array());
        c.push(self.kd_id.finish_refill());
        c.push(self.kd_symbol.finish_array());
        c.push(self.kd_offset.finish_refill());
        c.push(self.dd_direction.finish_array());
        c.push(self.dd_policies.finish());
        c.push(self.dd_text.finish_refill());
        c.push(list_of(
            loss_fields(),
            vec![
                self.loss_stage.finish_refill(),
                self.loss_node.finish_refill(),
                self.loss_lost.finish_refill(),
            ],
            self.loss_off.finish(),
        ));
        c.push(self.residual.finish_refill());
        // The columns are built in schema order above; a mismatch is a bug caught by every test.
        RecordBatch::try_new(FILE_SCHEMA.clone(), c).expect("builder columns match file_schema")
    }
}

/// Converts flows into one batch (convenience over [`FlowBatchBuilder`]).
pub fn flows_to_batch<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> RecordBatch {
    let mut b = FlowBatchBuilder::new();
    for f in flows {
        b.append(f);
    }
    b.finish()
}

// ---------------------------------------------------------------------------------------------
// Read side.

/// A string column in any of the encodings Arrow or DataFusion may hand back.
pub(crate) enum Str<'a> {
    Plain(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
    Dict(&'a DictionaryArray<Int32Type>, Box<Str<'a>>),
}

impl<'a> Str<'a> {
    pub(crate) fn of(a: &'a dyn Array, column: &'static str) -> Result<Self, SchemaError> {
        let any = a.as_any();
        if let Some(s) = any.downcast_ref::<StringArray>() {
            return Ok(Str::Plain(s));
        }
        if let Some(s) = any.downcast_ref::<LargeStringArray>() {
            return Ok(Str::Large(s));
        }
        if let Some(s) = any.downcast_ref::<StringViewArray>() {
            return Ok(Str::View(s));
        }
        if let Some(d) = any.downcast_ref::<DictionaryArray<Int32Type>>() {
            let values = Str::of(d.values().as_ref(), column)?;
            return Ok(Str::Dict(d, Box::new(values)));
        }
        Err(SchemaError::WrongType {
            column,
            found: a.data_type().clone(),
            expected: "a string",
        })
    }
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Str::Plain(s) => s.is_valid(i).then(|| s.value(i)),
            Str::Large(s) => s.is_valid(i).then(|| s.value(i)),
            Str::View(s) => s.is_valid(i).then(|| s.value(i)),
            Str::Dict(d, v) => {
                if d.is_valid(i) {
                    v.get(d.keys().value(i) as usize)
                } else {
                    None
                }
            }
        }
    }
    pub(crate) fn string(&self, i: usize) -> String {
        self.get(i).unwrap_or_default().to_owned()
    }
}

struct Cols<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Cols<'a> {
    fn col(&self, name: &'static str) -> Result<&'a ArrayRef, SchemaError> {
        self.batch
            .column_by_name(name)
            .ok_or(SchemaError::MissingColumn(name))
    }
    fn typed<T: Array + 'static>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<&'a T, SchemaError> {
        let c = self.col(name)?;
        c.as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| SchemaError::WrongType {
                column: name,
                found: c.data_type().clone(),
                expected,
            })
    }
    fn str(&self, name: &'static str) -> Result<Str<'a>, SchemaError> {
        Str::of(self.col(name)?.as_ref(), name)
    }
    fn u32(&self, name: &'static str) -> Result<&'a UInt32Array, SchemaError> {
        self.typed(name, "UInt32")
    }
    fn u64(&self, name: &'static str) -> Result<&'a UInt64Array, SchemaError> {
        self.typed(name, "UInt64")
    }
    fn i32(&self, name: &'static str) -> Result<&'a Int32Array, SchemaError> {
        self.typed(name, "Int32")
    }
    fn bool(&self, name: &'static str) -> Result<&'a BooleanArray, SchemaError> {
        self.typed(name, "Boolean")
    }
    fn list(&self, name: &'static str) -> Result<StrListCol<'a>, SchemaError> {
        let l: &ListArray = self.typed(name, "List<Utf8>")?;
        Ok(StrListCol {
            list: l,
            values: Str::of(l.values().as_ref(), name)?,
        })
    }
    fn struct_list(
        &self,
        name: &'static str,
    ) -> Result<(&'a ListArray, &'a StructArray), SchemaError> {
        let l: &ListArray = self.typed(name, "List<Struct>")?;
        let s = l
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| SchemaError::WrongType {
                column: name,
                found: l.data_type().clone(),
                expected: "List<Struct>",
            })?;
        Ok((l, s))
    }
}

struct StrListCol<'a> {
    list: &'a ListArray,
    values: Str<'a>,
}

impl StrListCol<'_> {
    fn get(&self, i: usize) -> Vec<String> {
        if self.list.is_null(i) {
            return Vec::new();
        }
        let o = self.list.value_offsets();
        (o[i] as usize..o[i + 1] as usize)
            .map(|j| self.values.string(j))
            .collect()
    }
    fn is_null(&self, i: usize) -> bool {
        self.list.is_null(i)
    }
}

/// Row `i`'s L4 protocol, named `name` in column `l4_protocol` (not VRRP or IGMP: those are
/// kept whole in `residual`), with its ports, ICMP type and code and TCP flags.
pub(crate) fn l4_protocol_at(
    i: usize,
    name: &str,
    ports: (u32, u32),
    icmp: (u32, u32),
    tcp_flags: Option<&str>,
) -> Result<Option<layer4::Protocol>, SchemaError> {
    Ok(match name {
        "" => None,
        "TCP" => {
            let flags = match tcp_flags {
                None => None,
                Some(s) => Some(tcp_flags_parse(s).ok_or_else(|| SchemaError::BadValue {
                    column: "tcp_flags",
                    row: i,
                    value: s.to_owned(),
                    what: "TCP flag list",
                })?),
            };
            Some(layer4::Protocol::Tcp(Tcp {
                source_port: ports.0,
                destination_port: ports.1,
                flags,
            }))
        }
        "UDP" => Some(layer4::Protocol::Udp(Udp {
            source_port: ports.0,
            destination_port: ports.1,
        })),
        "SCTP" => Some(layer4::Protocol::Sctp(Sctp {
            source_port: ports.0,
            destination_port: ports.1,
        })),
        "ICMPv4" => Some(layer4::Protocol::IcmPv4(IcmPv4 {
            r#type: icmp.0,
            code: icmp.1,
        })),
        "ICMPv6" => Some(layer4::Protocol::IcmPv6(IcmPv6 {
            r#type: icmp.0,
            code: icmp.1,
        })),
        other => {
            return Err(SchemaError::BadValue {
                column: "l4_protocol",
                row: i,
                value: other.to_owned(),
                what: "L4 protocol",
            });
        }
    })
}

pub(crate) fn opt<T: arrow::datatypes::ArrowPrimitiveType>(
    a: &arrow::array::PrimitiveArray<T>,
    i: usize,
) -> Option<T::Native> {
    a.is_valid(i).then(|| a.value(i))
}

pub(crate) fn parse_enum<E: ProtoEnum>(
    column: &'static str,
    row: usize,
    s: Option<&str>,
) -> Result<i32, SchemaError> {
    let Some(s) = s else { return Ok(0) };
    E::from_name(s)
        .map(E::int)
        .or_else(|| s.parse().ok())
        .ok_or_else(|| SchemaError::BadValue {
            column,
            row,
            value: s.to_owned(),
            what: std::any::type_name::<E>()
                .rsplit("::")
                .next()
                .unwrap_or("enum"),
        })
}

struct StructStrs<'a>(&'a StructArray);

impl<'a> StructStrs<'a> {
    fn str(&self, name: &'static str) -> Result<Str<'a>, SchemaError> {
        let c = self
            .0
            .column_by_name(name)
            .ok_or(SchemaError::MissingColumn(name))?;
        Str::of(c.as_ref(), name)
    }
    fn u64(&self, name: &'static str) -> Result<&'a UInt64Array, SchemaError> {
        let c = self
            .0
            .column_by_name(name)
            .ok_or(SchemaError::MissingColumn(name))?;
        c.as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| SchemaError::WrongType {
                column: name,
                found: c.data_type().clone(),
                expected: "UInt64",
            })
    }
}

struct PolicyCol<'a> {
    list: &'a ListArray,
    name: Str<'a>,
    namespace: Str<'a>,
    labels: StrListCol<'a>,
    revision: &'a UInt64Array,
    kind: Str<'a>,
}

impl<'a> PolicyCol<'a> {
    fn of(cols: &Cols<'a>, name: &'static str) -> Result<Self, SchemaError> {
        let (list, s) = cols.struct_list(name)?;
        let ss = StructStrs(s);
        let labels_arr = s
            .column_by_name("labels")
            .ok_or(SchemaError::MissingColumn("labels"))?;
        let labels_list = labels_arr
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| SchemaError::WrongType {
                column: name,
                found: labels_arr.data_type().clone(),
                expected: "List<Utf8>",
            })?;
        Ok(Self {
            list,
            name: ss.str("name")?,
            namespace: ss.str("namespace")?,
            labels: StrListCol {
                list: labels_list,
                values: Str::of(labels_list.values().as_ref(), name)?,
            },
            revision: ss.u64("revision")?,
            kind: ss.str("kind")?,
        })
    }
    fn get(&self, i: usize) -> Vec<Policy> {
        if self.list.is_null(i) {
            return Vec::new();
        }
        let o = self.list.value_offsets();
        (o[i] as usize..o[i + 1] as usize)
            .map(|j| Policy {
                name: self.name.string(j),
                namespace: self.namespace.string(j),
                labels: self.labels.get(j),
                revision: opt(self.revision, j).unwrap_or_default(),
                kind: self.kind.string(j),
            })
            .collect()
    }
}

struct EndpointRead<'a> {
    id: &'a UInt32Array,
    identity: &'a UInt32Array,
    cluster: Str<'a>,
    namespace: Str<'a>,
    pod: Str<'a>,
    labels: StrListCol<'a>,
    workload: Str<'a>,
    workload_kind: Str<'a>,
    service: Str<'a>,
    service_namespace: Str<'a>,
    names: StrListCol<'a>,
}

macro_rules! side_cols {
    ($cols:expr, $side:literal) => {
        EndpointRead {
            id: $cols.u32(concat!($side, "_id"))?,
            identity: $cols.u32(concat!($side, "_identity"))?,
            cluster: $cols.str(concat!($side, "_cluster"))?,
            namespace: $cols.str(concat!($side, "_namespace"))?,
            pod: $cols.str(concat!($side, "_pod"))?,
            labels: $cols.list(concat!($side, "_labels"))?,
            workload: $cols.str(concat!($side, "_workload"))?,
            workload_kind: $cols.str(concat!($side, "_workload_kind"))?,
            service: $cols.str(concat!($side, "_service"))?,
            service_namespace: $cols.str(concat!($side, "_service_namespace"))?,
            names: $cols.list(concat!($side, "_names"))?,
        }
    };
}

impl EndpointRead<'_> {
    fn endpoint(&self, i: usize) -> Option<Endpoint> {
        if self.identity.is_null(i) {
            return None;
        }
        let workloads = match self.workload.get(i) {
            Some(name) => vec![Workload {
                name: name.to_owned(),
                kind: self.workload_kind.string(i),
            }],
            None => Vec::new(),
        };
        Some(Endpoint {
            id: opt(self.id, i).unwrap_or_default(),
            identity: opt(self.identity, i).unwrap_or_default(),
            cluster_name: self.cluster.string(i),
            namespace: self.namespace.string(i),
            labels: self.labels.get(i),
            pod_name: self.pod.string(i),
            workloads,
        })
    }
    fn service(&self, i: usize) -> Option<Service> {
        self.service.get(i).map(|name| Service {
            name: name.to_owned(),
            namespace: self.service_namespace.string(i),
        })
    }
}

/// A batch's uuids: the text of table `flows`, or the stored columns.
enum Uuid<'a> {
    Text(Str<'a>),
    Split(UuidCols<'a>),
}

impl Uuid<'_> {
    fn string(&self, i: usize) -> String {
        match self {
            Uuid::Text(s) => s.string(i),
            Uuid::Split(s) => s.string(i),
        }
    }
}

/// Reads a batch of [`flow_schema`] or [`file_schema`] (or any projection holding all its
/// columns, in any order, with strings in any Arrow string encoding) back into flows.
pub fn flows_from_batch(batch: &RecordBatch) -> Result<Vec<Flow>, SchemaError> {
    let c = Cols { batch };
    let time: &TimestampNanosecondArray = c.typed(TIME, "Timestamp(ns)")?;
    let uuid = match batch.column_by_name(UUID) {
        Some(text) => Uuid::Text(Str::of(text.as_ref(), UUID)?),
        None => Uuid::Split(UuidCols::of(
            c.col(UUID_HEAD)?.as_ref(),
            c.col(UUID_TAIL)?.as_ref(),
            c.col(UUID_TEXT)?.as_ref(),
        )?),
    };
    let node_name = c.str("node_name")?;
    let node_labels = c.list("node_labels")?;
    let verdict = c.str("verdict")?;
    let drop_reason = c.u32("drop_reason")?;
    let drop_reason_desc = c.str("drop_reason_desc")?;
    let flow_type = c.str("flow_type")?;
    let event_type = c.i32("event_type")?;
    let event_sub_type = c.i32("event_sub_type")?;
    let eth_src = c.str("ethernet_source")?;
    let eth_dst = c.str("ethernet_destination")?;
    let ip_src = c.str("ip_source")?;
    let ip_src_x = c.str("ip_source_xlated")?;
    let ip_dst = c.str("ip_destination")?;
    let ip_version = c.str("ip_version")?;
    let ip_encrypted = c.bool("ip_encrypted")?;
    let l4_protocol = c.str("l4_protocol")?;
    let src_port = c.u32("source_port")?;
    let dst_port = c.u32("destination_port")?;
    let tcp_flags = c.str("tcp_flags")?;
    let icmp_type = c.u32("icmp_type")?;
    let icmp_code = c.u32("icmp_code")?;
    let src = side_cols!(c, "source");
    let dst = side_cols!(c, "destination");
    let traffic_direction = c.str("traffic_direction")?;
    let observation_point = c.str("observation_point")?;
    let trace_reason = c.str("trace_reason")?;
    let is_reply = c.bool("is_reply")?;
    let reply = c.bool("reply")?;
    let policy_match_type = c.u32("policy_match_type")?;
    let if_index = c.u32("interface_index")?;
    let if_name = c.str("interface_name")?;
    let l7_type = c.str("l7_type")?;
    let l7_latency = c.u64("l7_latency_ns")?;
    let http_method = c.str("http_method")?;
    let http_code = c.u32("http_code")?;
    let http_url = c.str("http_url")?;
    let http_protocol = c.str("http_protocol")?;
    let (hdr_list, hdr_struct) = c.struct_list("http_headers")?;
    let hdr_key = StructStrs(hdr_struct).str("key")?;
    let hdr_value = StructStrs(hdr_struct).str("value")?;
    let dns_query = c.str("dns_query")?;
    let dns_ips = c.list("dns_ips")?;
    let dns_ttl = c.u32("dns_ttl")?;
    let dns_cnames = c.list("dns_cnames")?;
    let dns_source = c.str("dns_observation_source")?;
    let dns_rcode = c.u32("dns_rcode")?;
    let dns_qtypes = c.list("dns_qtypes")?;
    let dns_rrtypes = c.list("dns_rrtypes")?;
    let trace_id = c.str("trace_id")?;
    let egress_allowed_by = PolicyCol::of(&c, "egress_allowed_by")?;
    let ingress_allowed_by = PolicyCol::of(&c, "ingress_allowed_by")?;
    let egress_denied_by = PolicyCol::of(&c, "egress_denied_by")?;
    let ingress_denied_by = PolicyCol::of(&c, "ingress_denied_by")?;
    let policy_log = c.list("policy_log")?;
    let summary = c.str("summary")?;
    let kd_name = c.str("kernel_drop_name")?;
    let kd_id = c.u32("kernel_drop_id")?;
    let kd_symbol = c.str("kernel_drop_symbol")?;
    let kd_offset = c.u64("kernel_drop_offset")?;
    let dd_direction = c.str("default_deny_direction")?;
    let dd_policies = c.list("default_deny_policies")?;
    let dd_text = c.str("default_deny_text")?;
    let (loss_list, loss_struct) = c.struct_list("loss")?;
    let loss_stage = StructStrs(loss_struct).str("stage")?;
    let loss_node = StructStrs(loss_struct).str("node")?;
    let loss_lost = StructStrs(loss_struct).u64("lost")?;
    let residual_col: &BinaryArray = c.typed("residual", "Binary")?;

    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let residual = if residual_col.is_valid(i) {
            Flow::decode(residual_col.value(i))
                .map_err(|source| SchemaError::Residual { row: i, source })?
        } else {
            Flow::default()
        };
        let l4 = match l4_protocol.get(i) {
            None => None,
            Some("VRRP" | "IGMP") => residual.l4.clone(),
            Some(p) => {
                let ports = (
                    opt(src_port, i).unwrap_or_default(),
                    opt(dst_port, i).unwrap_or_default(),
                );
                let icmp = (
                    opt(icmp_type, i).unwrap_or_default(),
                    opt(icmp_code, i).unwrap_or_default(),
                );
                let protocol = l4_protocol_at(i, p, ports, icmp, tcp_flags.get(i))?;
                Some(Layer4 { protocol })
            }
        };
        let record = if http_method.get(i).is_some() {
            let o = hdr_list.value_offsets();
            let headers = (o[i] as usize..o[i + 1] as usize)
                .map(|j| HttpHeader {
                    key: hdr_key.string(j),
                    value: hdr_value.string(j),
                })
                .collect();
            Some(layer7::Record::Http(Http {
                code: opt(http_code, i).unwrap_or_default(),
                method: http_method.string(i),
                url: http_url.string(i),
                protocol: http_protocol.string(i),
                headers,
            }))
        } else if dns_query.get(i).is_some() {
            Some(layer7::Record::Dns(flow::Dns {
                query: dns_query.string(i),
                ips: dns_ips.get(i),
                ttl: opt(dns_ttl, i).unwrap_or_default(),
                cnames: dns_cnames.get(i),
                observation_source: dns_source.string(i),
                rcode: opt(dns_rcode, i).unwrap_or_default(),
                qtypes: dns_qtypes.get(i),
                rrtypes: dns_rrtypes.get(i),
            }))
        } else {
            residual.l7.as_ref().and_then(|l| l.record.clone())
        };
        let l7 = match l7_type.get(i) {
            None => None,
            Some(t) => Some(Layer7 {
                r#type: parse_enum::<L7FlowType>("l7_type", i, Some(t))?,
                latency_ns: opt(l7_latency, i).unwrap_or_default(),
                record,
            }),
        };
        let with_rest = |ep: Option<Endpoint>, rest: &Option<Endpoint>| {
            ep.map(|mut e| {
                if let Some(r) = rest {
                    e.workloads.extend(r.workloads.iter().cloned());
                }
                e
            })
        };
        let lo = loss_list.value_offsets();
        let loss: Vec<StageLoss> = (lo[i] as usize..lo[i + 1] as usize)
            .map(|j| StageLoss {
                stage: loss_stage.string(j),
                node: loss_node.string(j),
                lost: opt(loss_lost, j).unwrap_or_default(),
            })
            .collect();
        let extras = FlowExtras {
            payload: None,
            kernel_drop: kd_name.get(i).map(|name| KernelDropReason {
                name: name.to_owned(),
                id: opt(kd_id, i).unwrap_or_default(),
                symbol: kd_symbol.string(i),
                offset: opt(kd_offset, i).unwrap_or_default(),
            }),
            default_deny: if dd_policies.is_null(i) {
                None
            } else {
                Some(DefaultDenyAttribution {
                    direction: parse_enum::<TrafficDirection>(
                        "default_deny_direction",
                        i,
                        dd_direction.get(i),
                    )?,
                    policies: dd_policies.get(i),
                    text: dd_text.string(i),
                })
            },
            loss,
        };
        let extensions = if extras == FlowExtras::default() {
            residual.extensions.clone()
        } else {
            Some(extras::pack(&extras))
        };
        let trace_context = match trace_id.get(i) {
            Some(t) => Some(TraceContext {
                parent: Some(TraceParent {
                    trace_id: t.to_owned(),
                }),
            }),
            None => residual.trace_context.clone(),
        };
        let mut flow = Flow {
            time: opt(time, i).map(|ns| Timestamp {
                seconds: ns.div_euclid(1_000_000_000),
                nanos: ns.rem_euclid(1_000_000_000) as i32,
            }),
            uuid: uuid.string(i),
            emitter: residual.emitter.clone(),
            verdict: parse_enum::<Verdict>("verdict", i, verdict.get(i))?,
            drop_reason: opt(drop_reason, i).unwrap_or_default(),
            auth_type: residual.auth_type,
            ethernet: eth_src.get(i).map(|s| Ethernet {
                source: s.to_owned(),
                destination: eth_dst.string(i),
            }),
            ip: ip_src
                .get(i)
                .map(|s| -> Result<Ip, SchemaError> {
                    Ok(Ip {
                        source: s.to_owned(),
                        source_xlated: ip_src_x.string(i),
                        destination: ip_dst.string(i),
                        ip_version: parse_enum::<IpVersion>("ip_version", i, ip_version.get(i))?,
                        encrypted: ip_encrypted.is_valid(i) && ip_encrypted.value(i),
                    })
                })
                .transpose()?,
            l4,
            tunnel: residual.tunnel.clone(),
            source: with_rest(src.endpoint(i), &residual.source),
            destination: with_rest(dst.endpoint(i), &residual.destination),
            r#type: parse_enum::<FlowType>("flow_type", i, flow_type.get(i))?,
            node_name: node_name.string(i),
            node_labels: node_labels.get(i),
            source_names: src.names.get(i),
            destination_names: dst.names.get(i),
            l7,
            reply: reply.is_valid(i) && reply.value(i),
            event_type: opt(event_type, i).map(|t| CiliumEventType {
                r#type: t,
                sub_type: opt(event_sub_type, i).unwrap_or_default(),
            }),
            source_service: src.service(i),
            destination_service: dst.service(i),
            traffic_direction: parse_enum::<TrafficDirection>(
                "traffic_direction",
                i,
                traffic_direction.get(i),
            )?,
            policy_match_type: opt(policy_match_type, i).unwrap_or_default(),
            trace_observation_point: parse_enum::<TraceObservationPoint>(
                "observation_point",
                i,
                observation_point.get(i),
            )?,
            trace_reason: parse_enum::<TraceReason>("trace_reason", i, trace_reason.get(i))?,
            file: residual.file.clone(),
            ip_trace_id: residual.ip_trace_id,
            drop_reason_desc: parse_enum::<DropReason>(
                "drop_reason_desc",
                i,
                drop_reason_desc.get(i),
            )?,
            is_reply: is_reply
                .is_valid(i)
                .then(|| BoolValue::from(is_reply.value(i))),
            debug_capture_point: residual.debug_capture_point,
            interface: if_index.is_valid(i).then(|| NetworkInterface {
                index: if_index.value(i),
                name: if_name.string(i),
            }),
            proxy_port: residual.proxy_port,
            trace_context,
            sock_xlate_point: residual.sock_xlate_point,
            socket_cookie: residual.socket_cookie,
            cgroup_id: residual.cgroup_id,
            summary: String::new(),
            extensions,
            egress_allowed_by: egress_allowed_by.get(i),
            ingress_allowed_by: ingress_allowed_by.get(i),
            egress_denied_by: egress_denied_by.get(i),
            ingress_denied_by: ingress_denied_by.get(i),
            policy_log: policy_log.get(i),
            aggregate: residual.aggregate,
        };
        flow.summary = crate::summary::shown(summary.get(i), &flow);
        out.push(flow);
    }
    Ok(out)
}

/// What the store keeps of a flow: the flow itself minus the captured payload of its extras
/// (the same as `webb_proto::extras::strip_payload`). A flow read back equals this.
pub fn stored_form(flow: &Flow) -> Flow {
    let mut f = flow.clone();
    extras::strip_payload(&mut f);
    if matches!(extras::unpack(&f), Some(Ok(e)) if e == FlowExtras::default()) {
        f.extensions = None;
    }
    f
}
