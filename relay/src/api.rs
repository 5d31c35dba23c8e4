//! The relay's HTTP port (`--http-listen`, Hubble's metrics port 9965 by default): `/metrics`
//! for Prometheus, `/healthz`, and the JSON API for the Grafana datasource and scripts
//! (shapes pinned in DESIGN.md):
//!
//! - `GET /api/v1/flows?since=&until=&limit=&filter=&blacklist=&extras=` →
//!   `{"flows": [<Flow protojson>], "truncated", "loss"}`
//! - `GET /api/v1/service-map?since=&until=&namespace=` → `{"nodes", "edges", "loss"}`
//! - `POST /api/v1/sql {"query"}` → `{"columns", "rows", "truncated", "loss"}`
//! - `GET /api/v1/status` → relay, nodes, ring, store and loss
//!
//! Errors are `{"error": "..."}` with a 4xx (the request's fault) or 5xx status. With a token,
//! `/api/*` wants `Authorization: Bearer <token>`; `/metrics` and `/healthz` never do.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flow_filter::FlowFilters;
use flow_store::{FlowQuery, FlowStore, MapQuery};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use webb_proto::Timestamp;

use webb_security::Refusal;

use crate::metrics::Metrics;
use crate::server::LossCounters;

/// Flows one `/api/v1/flows` answer holds by default and at most.
pub const DEFAULT_FLOWS_LIMIT: usize = 100;
pub const MAX_FLOWS_LIMIT: usize = 10_000;
/// Rows one `/api/v1/flows` request may examine to find `limit` matches.
const FLOWS_SCAN_LIMIT: usize = 5_000_000;
/// The range used when a request names no `since`.
const DEFAULT_RANGE: Duration = Duration::from_secs(3600);

/// What the HTTP port serves from.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: Option<Arc<Metrics>>,
    pub store: Option<Arc<FlowStore>>,
    pub losses: Arc<LossCounters>,
    /// The relay's own status (nodes, ring, pipeline), as `/api/v1/status` reports it.
    pub status: Arc<dyn Fn() -> Value + Send + Sync>,
    /// Bearer token required on `/api/*` (`--api-token`).
    pub token: Option<String>,
    /// Where SQL queries stopped at their memory or time limit are counted.
    pub refused: webb_security::Counters,
}

/// An error answer: `{"error": message}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    fn no_store() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "flow history is off on this relay (started with --store-dir none)".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// The router of the HTTP port.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/flows", get(flows))
        .route("/api/v1/service-map", get(service_map))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        // After every route, so that it applies to all of them (axum still sets `Allow`).
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: format!(
                    "{method} is not allowed on {}: see the Allow header",
                    uri.path()
                ),
            }
        })
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint: see /api/v1/flows, /api/v1/service-map, \
                          /api/v1/sql, /api/v1/status, /metrics"
                    .into(),
            }
        })
        .with_state(state)
}

async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compared in full whatever the first difference, so timing says nothing.
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong bearer token (Authorization: Bearer <--api-token>)"
                    .into(),
            });
        }
    }
    Ok(next.run(request).await)
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let Some(m) = &state.metrics else {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            message: "metrics are off on this relay (--metrics \"\")".into(),
        }
        .into_response();
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = m.render(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The loss summary every answer carries: what the relay and its store have dropped so far.
fn loss(state: &ApiState) -> Value {
    let stages: Vec<Value> = state
        .losses
        .totals()
        .into_iter()
        .map(|(stage, node, lost)| json!({ "stage": stage, "node": node, "lost": lost }))
        .collect();
    let total: u64 = state.losses.totals().iter().map(|(_, _, n)| n).sum();
    json!({ "total": total, "stages": stages })
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// A time parameter: RFC 3339 (`2026-12-06T10:00:00Z`), a duration back from now (`15m`,
/// `2h30m`), `now`, or Unix time as an integer (seconds, or milliseconds when it is that big,
/// as Grafana sends).
pub fn parse_time(name: &str, text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Ok(n) = text.parse::<i64>() {
        let ns = if n.abs() >= 100_000_000_000 {
            i128::from(n) * 1_000_000
        } else {
            i128::from(n) * 1_000_000_000
        };
        return u64::try_from(ns)
            .map(Timestamp::from_unix_nanos)
            .map_err(|_| ApiError::bad_request(format!("{name}: {text} is before 1970")));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        let ns = t.timestamp_nanos_opt().unwrap_or(0);
        return Ok(Timestamp::from_unix_nanos(ns.max(0) as u64));
    }
    let back = text.strip_prefix('-').unwrap_or(text);
    match humantime::parse_duration(back) {
        Ok(d) => Ok(Timestamp::from_unix_nanos(
            (now.unix_nanos() as u64).saturating_sub(d.as_nanos() as u64),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "{name}: cannot read {text:?} as a time: give RFC 3339 (2026-12-06T10:00:00Z), \
             a duration back from now (15m, 2h), `now` or Unix seconds/milliseconds ({e})"
        ))),
    }
}

/// `since`/`until` of a request, defaulting to the last hour.
fn range(since: Option<&str>, until: Option<&str>) -> Result<(Timestamp, Timestamp), ApiError> {
    let now = now();
    let until = match until {
        Some(u) if !u.is_empty() => parse_time("until", u, now)?,
        _ => now,
    };
    let since = match since {
        Some(s) if !s.is_empty() => parse_time("since", s, now)?,
        _ => Timestamp::from_unix_nanos(
            (until.unix_nanos() as u64).saturating_sub(DEFAULT_RANGE.as_nanos() as u64),
        ),
    };
    if since.unix_nanos() >= until.unix_nanos() {
        return Err(ApiError::bad_request(format!(
            "since ({}) must be before until ({})",
            fmt_time(since),
            fmt_time(until)
        )));
    }
    Ok((since, until))
}

fn fmt_time(t: Timestamp) -> String {
    t.to_datetime()
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|_| format!("{}s", t.seconds))
}

#[derive(Debug, Deserialize)]
struct FlowsParams {
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    /// JSON array of FlowFilters (Hubble protojson): a flow must match one.
    filter: Option<String>,
    /// JSON array of FlowFilters: a flow matching one is left out.
    blacklist: Option<String>,
    /// `true`: Webb's extras (kernel drop reason, default-deny attribution) in `extensions`.
    extras: Option<String>,
}

fn filter_list(
    name: &str,
    text: Option<&str>,
) -> Result<Vec<webb_proto::flow::FlowFilter>, ApiError> {
    match text.map(str::trim) {
        None | Some("") => Ok(Vec::new()),
        Some(t) if t.starts_with('{') => webb_proto::json::filter_from_json(t)
            .map(|f| vec![f])
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
        Some(t) => webb_proto::json::filters_from_json(t)
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
    }
}

/// A query string that does not decode (e.g. a parameter given twice) as a JSON error.
fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("query string: {}", e.body_text()))
}

fn flag(name: &str, text: Option<&str>) -> Result<bool, ApiError> {
    match text {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: expected true or false, got {other:?}"
        ))),
    }
}

async fn flows(
    State(state): State<ApiState>,
    query: Result<Query<FlowsParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let store = state.store.clone().ok_or_else(ApiError::no_store)?;
    let (since, until) = range(p.since.as_deref(), p.until.as_deref())?;
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_FLOWS_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_FLOWS_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit: expected a number from 1 to {MAX_FLOWS_LIMIT}, got {l:?}"
                )));
            }
        },
    };
    let allow = filter_list("filter", p.filter.as_deref())?;
    let deny = filter_list("blacklist", p.blacklist.as_deref())?;
    let filters = FlowFilters::compile(&allow, &deny).map_err(|e| {
        let name = match e.list {
            flow_filter::FilterList::Blacklist => "blacklist",
            _ => "filter",
        };
        ApiError::bad_request(format!("{name}: {e}"))
    })?;
    let with_extras = flag("extras", p.extras.as_deref())?;
    let q = FlowQuery {
        since: Some(since),
        until: Some(until),
        limit: Some(limit),
        newest_first: true,
        prefilter: filters.prefilter(),
    };
    let mut found = store
        .query_flows_matching(&q, FLOWS_SCAN_LIMIT, |f| filters.matches(f))
        .await
        .map_err(|e| ApiError::internal(format!("reading flow history: {e}")))?;
    // The newest `limit` of the range, printed oldest first as `hubble observe` does.
    found.flows.reverse();
    let truncated = found.flows.len() >= limit || found.scan_limit_hit;
    let mut out = Vec::with_capacity(found.flows.len());
    for mut f in found.flows {
        if !with_extras {
            webb_proto::extras::strip(&mut f);
        }
        out.push(serde_json::to_value(&f).map_err(|e| {
            ApiError::internal(format!("flow {} cannot be printed as JSON: {e}", f.uuid))
        })?);
    }
    Ok(Json(json!({
        "flows": out,
        "truncated": truncated,
        "loss": loss(&state),
    })))
}

#[derive(Debug, Deserialize)]
struct MapParams {
    since: Option<String>,
    until: Option<String>,
    namespace: Option<String>,
}

async fn service_map(
    State(state): State<ApiState>,
    query: Result<Query<MapParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let store = state.store.clone().ok_or_else(ApiError::no_store)?;
    let (since, until) = range(p.since.as_deref(), p.until.as_deref())?;
    let map = store
        .service_map(&MapQuery {
            since,
            until,
            namespace: p.namespace.filter(|n| !n.is_empty()),
        })
        .await
        .map_err(|e| ApiError::internal(format!("computing the service map: {e}")))?;
    let mut answer = serde_json::to_value(&map).map_err(|e| ApiError::internal(e.to_string()))?;
    answer["loss"] = loss(&state);
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
struct SqlBody {
    query: String,
}

async fn sql(
    State(state): State<ApiState>,
    body: Result<Json<SqlBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| {
        let mut error = ApiError::bad_request(format!(
            "body: expected JSON {{\"query\": \"SELECT …\"}}: {}",
            e.body_text()
        ));
        // Over the body limit (webb_security::http) stays a 413, which the limit counts.
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error.status = e.status();
        }
        error
    })?;
    let store = state.store.clone().ok_or_else(ApiError::no_store)?;
    let result = store.sql(&body.query).await.inspect_err(|e| match e {
        flow_store::SqlError::MemoryLimit { .. } => state.refused.refused(Refusal::SqlMemory),
        flow_store::SqlError::TimeLimit { .. } => state.refused.refused(Refusal::SqlTime),
        _ => {}
    });
    let result = result.map_err(|e| ApiError {
        status: if e.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        },
        message: e.to_string(),
    })?;
    let mut answer =
        serde_json::to_value(&result).map_err(|e| ApiError::internal(e.to_string()))?;
    answer["loss"] = loss(&state);
    Ok(Json(answer))
}

#[derive(Debug, Serialize)]
struct StoreStatus {
    dir: String,
    oldest: Option<String>,
    newest: Option<String>,
    #[serde(flatten)]
    stats: flow_store::StoreStats,
}

async fn status(State(state): State<ApiState>) -> Json<Value> {
    let mut answer = (state.status)();
    answer["store"] = match &state.store {
        Some(store) => {
            let span = store.time_span();
            let t = |ns: i64| fmt_time(Timestamp::from_unix_nanos(ns.max(0) as u64));
            serde_json::to_value(StoreStatus {
                dir: store.config().dir.display().to_string(),
                oldest: span.map(|s| t(s.0)),
                newest: span.map(|s| t(s.1)),
                stats: store.stats(),
            })
            .unwrap_or(Value::Null)
        }
        None => Value::Null,
    };
    answer["loss"] = loss(&state);
    answer["time"] = json!(fmt_time(now()));
    Json(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
        Timestamp::from_unix_nanos(t.timestamp_nanos_opt().unwrap() as u64)
    }

    #[test]
    fn times_are_rfc3339_relative_now_or_unix_seconds_and_milliseconds() {
        let now = at("2026-12-06T10:00:00Z");
        let p = |s| parse_time("since", s, now).unwrap();
        assert_eq!(p("2026-12-06T09:00:00Z"), at("2026-12-06T09:00:00Z"));
        assert_eq!(p("2026-12-06T11:00:00+02:00"), at("2026-12-06T09:00:00Z"));
        assert_eq!(p("15m"), at("2026-12-06T09:45:00Z"));
        assert_eq!(p("-1h30m"), at("2026-12-06T08:30:00Z"));
        assert_eq!(p("now"), now);
        assert_eq!(p("1796544000"), at("2026-12-06T08:00:00Z"));
        assert_eq!(p("1796544000000"), at("2026-12-06T08:00:00Z"));
    }

    #[test]
    fn a_bad_time_names_the_parameter_and_the_accepted_forms() {
        let e = parse_time("until", "yesterday-ish", Timestamp::now()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message
                .starts_with("until: cannot read \"yesterday-ish\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
    }

    #[test]
    fn since_after_until_is_refused() {
        let e = range(Some("2026-12-06T10:00:00Z"), Some("2026-12-06T09:00:00Z")).unwrap_err();
        assert!(e.message.contains("must be before until"), "{}", e.message);
    }

    #[test]
    fn filters_are_a_json_array_or_one_object_and_errors_say_where() {
        let one = filter_list("filter", Some(r#"{"source_pod":["shop/"]}"#)).unwrap();
        let many = filter_list(
            "filter",
            Some(r#"[{"source_pod":["shop/"]},{"verdict":["DROPPED"]}]"#),
        )
        .unwrap();
        assert_eq!((one.len(), many.len()), (1, 2));
        let e = filter_list("filter", Some(r#"[{"verdict":["MAYBE"]}]"#)).unwrap_err();
        assert!(e.message.starts_with("filter: "), "{}", e.message);
    }
}
