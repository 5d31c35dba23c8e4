//! `webb tui` rendering and input, on ratatui's TestBackend with the golden flows.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use tui::viewer::input::{Control, action_for, apply};
use tui::viewer::run::{SourceEvent, ingest};
use tui::viewer::state::{App, View};
use tui::viewer::view::draw;

const INPUT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/hubble-goldens/input.jsonl"
);

fn app_with_goldens() -> App {
    let mut app = App::new(100, "test");
    for line in std::fs::read_to_string(INPUT).unwrap().lines() {
        let res = tui::json::response_from_line(line).unwrap();
        ingest(&mut app, SourceEvent::Response(Box::new(res)));
    }
    app
}

fn render(app: &App, width: u16, height: u16) -> (String, Terminal<TestBackend>) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    (text, terminal)
}

fn key(app: &mut App, code: KeyCode) -> Control {
    let action = action_for(app, KeyEvent::new(code, KeyModifiers::NONE));
    action.map_or(Control::Continue, |a| apply(app, a))
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

#[test]
fn flows_view_lists_the_flows_newest_first_with_counts() {
    let app = app_with_goldens();
    let (text, terminal) = render(&app, 160, 20);
    let rows: Vec<&str> = text.lines().collect();
    let first_flow = rows
        .iter()
        .position(|r| r.contains("policy-verdict"))
        .unwrap();
    let syn = rows.iter().position(|r| r.contains("to-stack")).unwrap();
    assert!(first_flow < syn, "newest first:\n{text}");
    assert!(text.contains("tools/loadgen-1:40312"), "{text}");
    assert!(text.contains("Policy denied"), "{text}");
    assert!(text.contains("5 of 5 buffered"), "{text}");
    assert!(text.contains("arrived 5"), "{text}");
    assert!(text.contains("lost upstream 12"), "{text}");
    // Verdicts are coloured.
    let buffer = terminal.backend().buffer();
    let y = rows
        .iter()
        .position(|r| r.contains("Policy denied"))
        .unwrap() as u16;
    let x = rows[y as usize].find("DROPPED").unwrap() as u16;
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn replies_are_shown_from_the_client_side() {
    let app = app_with_goldens();
    let (text, _) = render(&app, 160, 20);
    let row = text.lines().find(|r| r.contains("http-response")).unwrap();
    let client = row.find("tools/loadgen-1:40312").unwrap();
    let server = row.find("store/api-84b2:8080").unwrap();
    assert!(client < server && row.contains("<-"), "{row}");
}

#[test]
fn detail_pane_shows_the_whole_selected_flow() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Down); // the drop
    key(&mut app, KeyCode::Enter);
    let (text, _) = render(&app, 160, 50);
    assert!(text.contains("flow detail"), "{text}");
    assert!(
        text.contains("\"drop_reason_desc\": \"POLICY_DENIED\""),
        "{text}"
    );
    assert!(text.contains("no rule of store/pg-only-from-api"), "{text}");
}

#[test]
fn service_map_shows_edges_with_rates_errors_latency_and_drops() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.view, View::ServiceMap);
    let edges = app.service_edges();
    // The golden response names its endpoints by pod (no workloads): client → server.
    let api = edges
        .iter()
        .find(|e| e.source == "tools/loadgen-1" && e.target == "store/api-84b2")
        .expect("loadgen-1 → api-84b2 edge");
    assert_eq!(api.error_ratio, 1.0);
    assert_eq!(api.p95_ms, Some(51.0));
    let pg = edges.iter().find(|e| e.target == "store/pg-0").unwrap();
    assert_eq!(pg.drops, 1);
    let (text, _) = render(&app, 120, 20);
    assert!(text.contains("P95 MS") && text.contains("51.0"), "{text}");
    // A world peer is named by its address.
    assert!(text.contains("2001:2:2::21"), "{text}");
}

#[test]
fn drops_and_http_views_aggregate_by_reason_and_route() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char('3'));
    let (text, _) = render(&app, 100, 12);
    assert!(
        text.contains("POLICY_DENIED") && text.contains("1 drops"),
        "{text}"
    );
    key(&mut app, KeyCode::Char('4'));
    let routes = app.http_routes();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].method.as_str(), routes[0].path.as_str()),
        ("GET", "/items/1")
    );
    assert_eq!((routes[0].responses, routes[0].errors), (1, 1));
    let (text, _) = render(&app, 100, 12);
    assert!(text.contains("/items/1"), "{text}");
}

#[test]
fn the_filter_line_uses_observe_flags_and_shows_errors_inline() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "--verdict NOPE");
    key(&mut app, KeyCode::Enter);
    let (text, _) = render(&app, 140, 12);
    assert!(
        text.contains("✗ invalid --verdict value \"NOPE\""),
        "{text}"
    );
    assert!(
        app.editing.is_some(),
        "stays in edit mode to fix the mistake"
    );
    for _ in 0.."NOPE".len() {
        key(&mut app, KeyCode::Backspace);
    }
    type_text(&mut app, "DROPPED");
    key(&mut app, KeyCode::Enter);
    assert!(app.editing.is_none() && app.filter_error.is_none());
    assert_eq!(app.shown().len(), 1);
    let (text, _) = render(&app, 140, 12);
    assert!(
        text.contains("filter: --verdict DROPPED") && text.contains("1 of 5 buffered"),
        "{text}"
    );
}

#[test]
fn ctrl_u_empties_the_filter_line_and_other_control_keys_type_nothing() {
    let mut app = app_with_goldens();
    app.set_filter("--verdict DROPPED");
    key(&mut app, KeyCode::Char('/'));
    assert_eq!(app.editing.as_ref().unwrap().text, "--verdict DROPPED");
    let ctrl = |app: &mut App, c| {
        let action = action_for(app, KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
        if let Some(a) = action {
            apply(app, a);
        }
    };
    ctrl(&mut app, 'u');
    assert_eq!(app.editing.as_ref().unwrap().text, "");
    ctrl(&mut app, 'w');
    assert_eq!(app.editing.as_ref().unwrap().text, "");
    type_text(&mut app, "--type l7");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.filter_text, "--type l7");
    assert_eq!(app.shown().len(), 2);
}

#[test]
fn quick_toggles_cycle_verdict_and_protocol() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char('v'));
    assert_eq!(app.shown().len(), 4, "FORWARDED only");
    key(&mut app, KeyCode::Char('v'));
    assert_eq!(app.shown().len(), 1, "DROPPED only");
    key(&mut app, KeyCode::Char('v'));
    key(&mut app, KeyCode::Char('t')); // tcp
    assert_eq!(app.shown().len(), 4);
    key(&mut app, KeyCode::Char('t')); // udp
    assert_eq!(app.shown().len(), 1);
    key(&mut app, KeyCode::Char('t')); // http
    assert_eq!(app.shown().len(), 2);
}

#[test]
fn pause_stops_the_table_but_counts_what_arrives() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char(' '));
    let more = tui::json::response_from_line(
        std::fs::read_to_string(INPUT)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    ingest(&mut app, SourceEvent::Response(Box::new(more)));
    assert_eq!(app.buffered(), 5);
    let (text, _) = render(&app, 160, 12);
    assert!(
        text.contains("PAUSED (1 not shown)") && text.contains("arrived 6"),
        "{text}"
    );
    key(&mut app, KeyCode::Char('p'));
    assert!(!app.paused);
}

#[test]
fn the_buffer_is_bounded_and_counts_evictions() {
    let mut app = App::new(3, "test");
    let line = std::fs::read_to_string(INPUT).unwrap();
    let first = tui::json::response_from_line(line.lines().next().unwrap()).unwrap();
    for _ in 0..5 {
        ingest(&mut app, SourceEvent::Response(Box::new(first.clone())));
    }
    assert_eq!(app.buffered(), 3);
    assert_eq!(app.counters.evicted, 2);
    assert_eq!(app.counters.received, 5);
}

#[test]
fn help_overlay_and_resize_render_without_losing_the_frame() {
    let mut app = app_with_goldens();
    key(&mut app, KeyCode::Char('?'));
    let (text, mut terminal) = render(&app, 120, 30);
    assert!(
        text.contains("keys (? closes)") && text.contains("pause / resume"),
        "{text}"
    );
    key(&mut app, KeyCode::Char('x')); // any key closes help
    assert!(!app.show_help);
    terminal.backend_mut().resize(50, 8);
    terminal.draw(|f| draw(f, &app)).unwrap();
    let buffer = terminal.backend().buffer();
    assert_eq!((buffer.area.width, buffer.area.height), (50, 8));
    let top: String = (0..50)
        .map(|x| buffer[(x, 0)].symbol().to_string())
        .collect();
    assert!(top.contains("webb"), "{top}");
    // A tiny terminal must not panic either.
    terminal.backend_mut().resize(10, 3);
    terminal.draw(|f| draw(f, &app)).unwrap();
}

#[test]
fn selection_follows_the_newest_until_moved_and_q_quits() {
    let mut app = app_with_goldens();
    assert!(app.selected.is_none());
    key(&mut app, KeyCode::End);
    let oldest = app.selected_flow().unwrap().uuid.clone();
    assert!(oldest.ends_with("0001"), "{oldest}");
    key(&mut app, KeyCode::Home);
    assert!(app.selected.is_none());
    assert_eq!(key(&mut app, KeyCode::Char('q')), Control::Quit);
    let ctrl_c = action_for(
        &app,
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
    );
    assert_eq!(ctrl_c.map(|a| apply(&mut app, a)), Some(Control::Quit));
}
