//! Rendering of the viewer's state: pure functions of [`App`] onto a ratatui frame.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use webb_proto::flow::{Flow, Verdict};

use super::state::{App, View};
use crate::printer::{flow_endpoints, flow_type, summary_text, verdict_name};
use crate::time::TimeFormat;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let [title, filter, main, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_title(frame, app, title);
    draw_filter(frame, app, filter);
    match app.view {
        View::Flows if app.show_detail => {
            let [table, detail] =
                Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
                    .areas(main);
            draw_flows(frame, app, table);
            draw_detail(frame, app, detail);
        }
        View::Flows => draw_flows(frame, app, main),
        View::ServiceMap => draw_service_map(frame, app, main),
        View::Drops => draw_drops(frame, app, main),
        View::Http => draw_http(frame, app, main),
    }
    draw_status(frame, app, status);
    if app.show_help {
        draw_help(frame, frame.area());
    }
}

fn draw_title(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![Span::styled(" webb ", Style::new().bold().reversed())];
    spans.push(Span::raw(format!(" {} ", app.source)));
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {}:{} ", i + 1, v.title());
        if *v == app.view {
            spans.push(Span::styled(label, Style::new().bold().underlined()));
        } else {
            spans.push(Span::raw(label));
        }
    }
    spans.push(Span::raw("  ? help"));
    frame.render_widget(Line::from(spans), area);
}

fn draw_filter(frame: &mut Frame, app: &App, area: Rect) {
    let line = match (&app.editing, &app.filter_error) {
        (Some(edit), err) => {
            let mut spans = vec![
                Span::styled("filter> ", Style::new().bold()),
                Span::raw(edit.text.clone()),
                Span::styled("█", Style::new().slow_blink()),
            ];
            if let Some(e) = err {
                spans.push(Span::styled(
                    format!("  ✗ {e}"),
                    Style::new().fg(Color::Red),
                ));
            }
            Line::from(spans)
        }
        (None, Some(e)) => Line::from(vec![
            Span::styled("filter: ", Style::new().bold()),
            Span::raw(app.filter_text.clone()),
            Span::styled(format!("  ✗ {e}"), Style::new().fg(Color::Red)),
        ]),
        (None, None) => Line::from(vec![
            Span::styled("filter: ", Style::new().bold()),
            Span::raw(if app.filter_text.is_empty() {
                "(none — press / to edit, e.g. --from-pod demo/ --http-status 5+)".to_string()
            } else {
                app.filter_text.clone()
            }),
            Span::raw(format!(
                "   verdict[v]: {}   protocol[t]: {}",
                app.verdict.label(),
                app.protocol.label()
            )),
        ]),
    };
    frame.render_widget(line, area);
}

fn verdict_style(f: &Flow) -> Style {
    match Verdict::try_from(f.verdict) {
        Ok(Verdict::Forwarded | Verdict::Redirected) => Style::new().fg(Color::Green),
        Ok(Verdict::Dropped | Verdict::Error) => Style::new().fg(Color::Red),
        Ok(Verdict::Audit | Verdict::Traced | Verdict::Translated) => {
            Style::new().fg(Color::Yellow)
        }
        _ => Style::new(),
    }
}

fn arrow(f: &Flow) -> &'static str {
    match f.is_reply.as_ref().map(|r| r.value) {
        Some(true) => "<-",
        Some(false) => "->",
        None => "<>",
    }
}

fn draw_flows(frame: &mut Frame, app: &App, area: Rect) {
    let shown = app.shown();
    let block = Block::default().borders(Borders::TOP).title(format!(
        " {} of {} buffered{} ",
        shown.len(),
        app.buffered(),
        if app.selected.is_none() {
            ", following"
        } else {
            ""
        }
    ));
    let body_rows = area.height.saturating_sub(2) as usize;
    let selected = app.selected_index(&shown);
    let start = selected.saturating_sub(body_rows.saturating_sub(1));
    let rows = shown.iter().skip(start).take(body_rows.max(1)).map(|e| {
        let f = &e.flow;
        let (mut src, mut dst) = flow_endpoints(f);
        if f.is_reply.as_ref().is_some_and(|r| r.value) {
            std::mem::swap(&mut src, &mut dst);
        }
        Row::new(vec![
            Cell::from(TimeFormat::StampMilli.format_ts(f.time.as_ref())),
            Cell::from(f.node_name.clone()),
            Cell::from(src),
            Cell::from(arrow(f)),
            Cell::from(dst),
            Cell::from(flow_type(f)),
            Cell::from(verdict_name(f)).style(verdict_style(f)),
            Cell::from(summary_text(f)),
        ])
    });
    let header = Row::new(vec![
        "TIME",
        "NODE",
        "SOURCE",
        "",
        "DESTINATION",
        "TYPE",
        "VERDICT",
        "SUMMARY",
    ])
    .style(Style::new().bold());
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Length(8),
            Constraint::Fill(2),
            Constraint::Length(2),
            Constraint::Fill(2),
            Constraint::Length(22),
            Constraint::Length(10),
            Constraint::Fill(3),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default();
    if !shown.is_empty() {
        state.select(Some(selected - start));
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::TOP)
        .title(" flow detail (Enter closes) ");
    let text = match app.selected_flow() {
        None => "no flow selected".to_string(),
        Some(f) => crate::json::to_line(f)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| "cannot render this flow".to_string()),
    };
    let text = crate::printer::escape_terminal(&text).into_owned();
    frame.render_widget(
        Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
        area,
    );
}

fn fmt_opt_ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |ms| format!("{ms:.1}"))
}

fn draw_service_map(frame: &mut Frame, app: &App, area: Rect) {
    let edges = app.service_edges();
    let rows = edges.iter().map(|e| {
        let mut row = Row::new(vec![
            e.source.clone(),
            e.target.clone(),
            e.flows.to_string(),
            format!("{:.1}", e.requests_per_second),
            format!("{:.1}%", e.error_ratio * 100.0),
            fmt_opt_ms(e.p95_ms),
            e.drops.to_string(),
        ]);
        if e.drops > 0 || e.error_ratio > 0.0 {
            row = row.style(Style::new().fg(Color::Red));
        }
        row
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            "SOURCE",
            "DESTINATION",
            "FLOWS",
            "REQ/S",
            "ERRORS",
            "P95 MS",
            "DROPS",
        ])
        .style(Style::new().bold()),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(format!(" {} edges ", edges.len())),
    );
    frame.render_widget(table, area);
}

fn draw_drops(frame: &mut Frame, app: &App, area: Rect) {
    let drops = app.top_drops();
    let total: u64 = drops.iter().map(|(_, n)| n).sum();
    let rows = drops.iter().map(|(reason, n)| {
        Row::new(vec![
            reason.clone(),
            n.to_string(),
            format!("{:.1}%", *n as f64 * 100.0 / total.max(1) as f64),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["DROP REASON", "DROPS", "SHARE"]).style(Style::new().bold()))
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(format!(" {total} drops ")),
    );
    frame.render_widget(table, area);
}

fn draw_http(frame: &mut Frame, app: &App, area: Rect) {
    let routes = app.http_routes();
    let rows = routes.iter().map(|r| {
        let mut row = Row::new(vec![
            r.method.clone(),
            r.path.clone(),
            format!("{:.1}", r.requests_per_second),
            r.responses.to_string(),
            r.errors.to_string(),
            fmt_opt_ms(r.p95_ms),
        ]);
        if r.errors > 0 {
            row = row.style(Style::new().fg(Color::Red));
        }
        row
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(9),
        ],
    )
    .header(
        Row::new(vec![
            "METHOD",
            "PATH",
            "REQ/S",
            "RESPONSES",
            "5XX",
            "P95 MS",
        ])
        .style(Style::new().bold()),
    )
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(format!(" {} routes ", routes.len())),
    );
    frame.render_widget(table, area);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let c = &app.counters;
    let mut text = format!(
        "arrived {} · buffered {}/{} · evicted {} · lost upstream {} · dropped in UI {}",
        c.received,
        app.buffered(),
        app.capacity(),
        c.evicted,
        c.lost_upstream,
        c.dropped_channel
    );
    if app.paused {
        text.push_str(&format!(" · PAUSED ({} not shown)", c.missed_paused));
    }
    let mut spans = vec![Span::raw(text)];
    if let Some(s) = &app.source_status {
        spans.push(Span::styled(format!(" · {s}"), Style::new().fg(Color::Red)));
    }
    frame.render_widget(Line::from(spans).reversed(), area);
}

/// Key bindings, shown by `?`.
pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help"),
    ("1-4, Tab", "flows, service map, top drops, HTTP routes"),
    ("space, p", "pause / resume"),
    ("↑↓ j k, PgUp PgDn", "move the selection"),
    ("Home g / End G", "newest (follow) / oldest"),
    ("Enter", "flow detail"),
    (
        "/",
        "edit the filter (webb observe flags); Enter applies, Esc cancels",
    ),
    ("Ctrl-U", "(while editing) empty the filter line"),
    ("v", "verdict: all → FORWARDED → DROPPED"),
    ("t", "protocol: all → tcp → udp → http → dns"),
    ("c", "clear the buffer"),
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = area.width.min(78);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>18}  "), Style::new().bold()),
                Span::raw(*v),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (? closes) ")),
        popup,
    );
}
