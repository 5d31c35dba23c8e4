//! The viewer's loop: a network task fills a bounded channel, the UI drains it on a steady
//! frame clock and draws; keys come from a reader thread. Nothing waits on the terminal
//! except the UI itself, and a full channel drops (and counts) instead of blocking the stream.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{self, Event};
use tokio::sync::mpsc;
use webb_proto::observer::{
    GetFlowsRequest, GetFlowsResponse, get_flows_response::ResponseTypes,
    observer_client::ObserverClient,
};
use webb_proto::webb_v1::FlowsRequestOptions;

use super::input::{Control, action_for, apply};
use super::state::App;
use super::view::draw;
use crate::client;

/// Responses waiting between the network task and the UI.
pub const CHANNEL_CAPACITY: usize = 16_384;
/// Most responses taken from the channel per frame, so a frame stays short.
pub const MAX_DRAIN_PER_FRAME: usize = 50_000;

/// What the source task reports.
#[derive(Debug)]
pub enum SourceEvent {
    Response(Box<GetFlowsResponse>),
    Problem(String),
}

/// Where flows come from.
#[derive(Debug, Clone)]
pub enum Source {
    Server {
        server: String,
        // Boxed: the flags and the request are large next to the other variant.
        tls: Box<webb_security::ClientTlsArgs>,
        timeout: Duration,
        request: Box<GetFlowsRequest>,
    },
    File(String),
}

/// Applies one source event to the state.
pub fn ingest(app: &mut App, event: SourceEvent) {
    match event {
        SourceEvent::Response(res) => match res.response_types {
            Some(ResponseTypes::Flow(flow)) => app.push(flow),
            Some(ResponseTypes::LostEvents(lost)) => {
                app.counters.lost_upstream += lost.num_events_lost
            }
            Some(ResponseTypes::NodeStatus(_)) | None => {}
        },
        SourceEvent::Problem(p) => app.source_status = Some(p),
    }
}

/// Flows of history the viewer asks for when neither `--since` nor `--last` says otherwise.
pub const DEFAULT_HISTORY: u64 = 1000;

/// The viewer's history selectors (`webb tui --since/--until/--last`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub since: Option<String>,
    pub until: Option<String>,
    pub last: Option<u64>,
}

/// The request the viewer sends, built by `webb observe`'s rules (same time parsing): history
/// first — everything since `--since`, else the last `--last` (1000) flows, up to `--until` —
/// then live flows, unless `--until` closes the window (Hubble ignores --until when following,
/// so the viewer follows only without it). Webb's extras are asked for.
pub fn viewer_request(
    history: &History,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<GetFlowsRequest, crate::observe::SelectorError> {
    let default_last = if history.since.is_some() {
        0
    } else {
        DEFAULT_HISTORY
    };
    let selectors = crate::observe::Selectors {
        last: history.last.unwrap_or(default_last),
        follow: history.until.is_none(),
        since: history.since.clone(),
        until: history.until.clone(),
        ..Default::default()
    };
    let mut request = crate::observe::build_request(&selectors, &Default::default(), now)?;
    webb_proto::options::set(
        &mut request,
        &FlowsRequestOptions {
            include_extras: true,
            ..Default::default()
        },
    );
    Ok(request)
}

/// Where a reconnection picks up: after the newest flow already received, so that history
/// (and live flows) are not shown twice when the server goes away and comes back.
#[derive(Debug, Default)]
pub struct Resume {
    /// Time of the newest flow received.
    newest: Option<webb_proto::Timestamp>,
    /// UUIDs of the flows received at exactly that time.
    at_newest: Vec<String>,
    /// After a reconnection, until the first flow newer than `newest`.
    catching_up: bool,
}

impl Resume {
    /// Whether `flow` was already received; records it otherwise.
    pub fn already_seen(&mut self, flow: &webb_proto::flow::Flow) -> bool {
        let Some(time) = flow.time else {
            return false;
        };
        let key = |t: &webb_proto::Timestamp| (t.seconds, t.nanos);
        match self.newest.as_ref().map(|n| key(&time).cmp(&key(n))) {
            Some(std::cmp::Ordering::Less) => {
                if self.catching_up {
                    return true;
                }
            }
            Some(std::cmp::Ordering::Equal) => {
                if self.catching_up && self.at_newest.contains(&flow.uuid) {
                    return true;
                }
                self.at_newest.push(flow.uuid.clone());
            }
            None | Some(std::cmp::Ordering::Greater) => {
                self.newest = Some(time);
                self.at_newest.clear();
                self.at_newest.push(flow.uuid.clone());
                self.catching_up = false;
            }
        }
        false
    }

    /// The request for a reconnection: `first` again until a flow arrived, then everything
    /// since the newest one (the flows at that very time are recognised by UUID).
    pub fn request(&mut self, first: &GetFlowsRequest) -> GetFlowsRequest {
        let mut request = first.clone();
        if let Some(newest) = self.newest {
            self.catching_up = true;
            request.since = Some(newest);
            request.number = 0;
            request.first = false;
        }
        request
    }
}

fn send(tx: &mpsc::Sender<SourceEvent>, dropped: &AtomicU64, event: SourceEvent) -> bool {
    match tx.try_send(event) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

async fn run_source(source: Source, tx: mpsc::Sender<SourceEvent>, dropped: Arc<AtomicU64>) {
    match source {
        Source::File(path) => {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(SourceEvent::Problem(format!("{path}: {e}"))).await;
                    return;
                }
            };
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let event = match crate::json::response_from_line(&line) {
                    Ok(res) => SourceEvent::Response(Box::new(res)),
                    Err(e) => SourceEvent::Problem(format!("line {}: {e}", i + 1)),
                };
                // A file can wait for the UI: no loss, and the UI thread gets its turns.
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
        Source::Server {
            server,
            tls,
            timeout,
            request,
        } => {
            let mut resume = Resume::default();
            loop {
                let attempt = resume.request(&request);
                let follow = attempt.follow;
                match stream_once(&server, &tls, timeout, attempt, &tx, &dropped, &mut resume).await
                {
                    // A closed window (--until) ends: nothing to reconnect for.
                    Ok(()) if !follow => {
                        let _ = tx
                            .send(SourceEvent::Problem(
                                "end of the requested history (--until); not following".into(),
                            ))
                            .await;
                        return;
                    }
                    Ok(()) => {
                        if !send(
                            &tx,
                            &dropped,
                            SourceEvent::Problem(format!("{server} ended the stream; retrying")),
                        ) {
                            return;
                        }
                    }
                    Err(e) => {
                        if !send(
                            &tx,
                            &dropped,
                            SourceEvent::Problem(format!("{e:#}; retrying")),
                        ) {
                            return;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// One GetFlows stream, until the server ends it (`Ok`) or fails.
async fn stream_once(
    server: &str,
    tls: &webb_security::ClientTlsArgs,
    timeout: Duration,
    request: GetFlowsRequest,
    tx: &mpsc::Sender<SourceEvent>,
    dropped: &AtomicU64,
    resume: &mut Resume,
) -> anyhow::Result<()> {
    // A closed window (--until) may wait for the UI: it loses nothing, and nothing is live.
    let lossless = !request.follow;
    let channel = client::connect(server, tls, timeout).await?;
    let mut stream = ObserverClient::new(channel)
        .get_flows(request)
        .await
        .map_err(|s| anyhow::anyhow!(client::status_message(&s)))?
        .into_inner();
    while let Some(res) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!(client::status_message(&s)))?
    {
        if let Some(ResponseTypes::Flow(flow)) = &res.response_types
            && resume.already_seen(flow)
        {
            continue;
        }
        let event = SourceEvent::Response(Box::new(res));
        let delivered = if lossless {
            tx.send(event).await.is_ok()
        } else {
            send(tx, dropped, event)
        };
        if !delivered {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs the viewer until the user quits. The terminal is restored on exit and on panic.
pub async fn run(mut app: App, source: Source, fps: u32) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let source_task = tokio::spawn(run_source(source, tx, dropped.clone()));

    let (key_tx, mut key_rx) = mpsc::channel::<Event>(256);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = std::thread::spawn(move || {
        while !stop_reader.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(50)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if key_tx.blocking_send(ev).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });

    let mut terminal = ratatui::try_init().context("cannot open the terminal")?;
    let frame = Duration::from_millis(1000 / u64::from(fps.clamp(1, 60)));
    let mut tick = tokio::time::interval(frame);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for _ in 0..MAX_DRAIN_PER_FRAME {
                        match rx.try_recv() {
                            Ok(ev) => ingest(&mut app, ev),
                            Err(_) => break,
                        }
                    }
                    app.counters.dropped_channel = dropped.load(Ordering::Relaxed);
                    terminal.draw(|f| draw(f, &app))?;
                }
                Some(ev) = key_rx.recv() => {
                    match ev {
                        Event::Key(key) => {
                            if let Some(action) = action_for(&app, key)
                                && apply(&mut app, action) == Control::Quit
                            {
                                return Ok(());
                            }
                        }
                        Event::Resize(_, _) => {}
                        _ => continue,
                    }
                    terminal.draw(|f| draw(f, &app))?;
                }
            }
        }
    }
    .await;
    ratatui::restore();
    stop.store(true, Ordering::Relaxed);
    source_task.abort();
    let _ = reader.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use webb_proto::Timestamp;
    use webb_proto::flow::Flow;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
    }

    fn history(since: Option<&str>, until: Option<&str>, last: Option<u64>) -> History {
        History {
            since: since.map(str::to_string),
            until: until.map(str::to_string),
            last,
        }
    }

    #[test]
    fn without_selectors_the_viewer_asks_for_the_last_1000_then_follows() {
        let r = viewer_request(&History::default(), now()).unwrap();
        assert_eq!(
            (r.number, r.follow, r.since, r.until),
            (1000, true, None, None)
        );
        assert!(
            webb_proto::options::from_request(&r)
                .unwrap()
                .include_extras
        );
        let r = viewer_request(&history(None, None, Some(50)), now()).unwrap();
        assert_eq!((r.number, r.follow), (50, true));
    }

    #[test]
    fn since_asks_for_all_history_since_then_follows_with_observes_time_parsing() {
        let r = viewer_request(&history(Some("1h"), None, None), now()).unwrap();
        assert_eq!(r.number, 0);
        assert!(r.follow);
        let hour_ago = crate::time::to_timestamp(now() - chrono::Duration::hours(1));
        assert_eq!(r.since, Some(hour_ago));
        let r = viewer_request(
            &history(Some("2026-12-07T11:30:00Z"), None, Some(10)),
            now(),
        )
        .unwrap();
        assert_eq!(r.number, 10);
        assert_eq!(r.since.unwrap().seconds, now().timestamp() - 1800);
        let e = viewer_request(&history(Some("yesterday-ish"), None, None), now()).unwrap_err();
        assert!(e.to_string().contains("since"), "{e}");
    }

    #[test]
    fn until_closes_the_window_and_does_not_follow() {
        let r = viewer_request(&history(Some("1h"), Some("30m"), None), now()).unwrap();
        assert!(!r.follow);
        assert_eq!(r.number, 0);
        assert_eq!(r.until.unwrap().seconds, now().timestamp() - 1800);
        let r = viewer_request(&history(None, Some("30m"), None), now()).unwrap();
        assert_eq!((r.number, r.follow), (1000, false));
    }

    fn flow(seconds: i64, uuid: &str) -> Flow {
        Flow {
            time: Some(Timestamp { seconds, nanos: 0 }),
            uuid: uuid.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_reconnection_asks_since_the_newest_flow_and_skips_what_was_shown() {
        let first = viewer_request(&history(Some("1h"), None, None), now()).unwrap();
        let mut resume = Resume::default();
        // Nothing arrived yet: the same request again.
        assert_eq!(resume.request(&first), first);
        for (t, id) in [(10, "a"), (20, "b"), (20, "c")] {
            assert!(!resume.already_seen(&flow(t, id)));
        }
        let again = resume.request(&first);
        assert_eq!(
            again.since,
            Some(Timestamp {
                seconds: 20,
                nanos: 0
            })
        );
        assert_eq!((again.number, again.follow), (0, true));
        // The server sends from time 20 on: b and c again, d new at the same time, then e.
        assert!(resume.already_seen(&flow(20, "b")));
        assert!(resume.already_seen(&flow(20, "c")));
        assert!(!resume.already_seen(&flow(20, "d")));
        assert!(!resume.already_seen(&flow(30, "e")));
        // Caught up: a late, older flow within one stream is shown, not taken for a repeat.
        assert!(!resume.already_seen(&flow(25, "f")));
    }
}
