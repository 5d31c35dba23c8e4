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

/// The request the viewer sends: follow, with history (`--since` or the last N), extras.
pub fn viewer_request(since: Option<webb_proto::Timestamp>, last: u64) -> GetFlowsRequest {
    let mut request = GetFlowsRequest {
        follow: true,
        number: if since.is_some() { 0 } else { last },
        since,
        ..Default::default()
    };
    webb_proto::options::set(
        &mut request,
        &FlowsRequestOptions {
            include_extras: true,
            ..Default::default()
        },
    );
    request
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
        } => loop {
            match stream_once(&server, &tls, timeout, (*request).clone(), &tx, &dropped).await {
                Ok(()) => {}
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
        },
    }
}

async fn stream_once(
    server: &str,
    tls: &webb_security::ClientTlsArgs,
    timeout: Duration,
    request: GetFlowsRequest,
    tx: &mpsc::Sender<SourceEvent>,
    dropped: &AtomicU64,
) -> anyhow::Result<()> {
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
        if !send(tx, dropped, SourceEvent::Response(Box::new(res))) {
            return Ok(());
        }
    }
    anyhow::bail!("{server} ended the stream")
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
