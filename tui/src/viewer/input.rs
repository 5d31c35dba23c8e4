//! Keys → actions → state changes. Nothing here draws or does I/O.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{App, FilterEdit, View};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleHelp,
    TogglePause,
    ToggleDetail,
    Show(View),
    NextView,
    Move(isize),
    Newest,
    Oldest,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    /// Ctrl-U: empties the line (as in a shell), to type a new filter from scratch.
    FilterClearLine,
    ApplyFilter,
    CancelFilter,
    CycleVerdict,
    CycleProtocol,
    Clear,
}

/// Whether the viewer goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Quit,
}

const PAGE: isize = 20;

/// The action for a key in the current state (`None` = ignored).
pub fn action_for(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if app.editing.is_some() {
        return match key.code {
            KeyCode::Enter => Some(Action::ApplyFilter),
            KeyCode::Esc => Some(Action::CancelFilter),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                Some(Action::FilterClearLine)
            }
            KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::CONTROL) => None,
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    if app.show_help {
        return match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            _ => Some(Action::ToggleHelp),
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char(' ') | KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Enter => Action::ToggleDetail,
        KeyCode::Esc if app.show_detail => Action::ToggleDetail,
        KeyCode::Char('1') => Action::Show(View::Flows),
        KeyCode::Char('2') => Action::Show(View::ServiceMap),
        KeyCode::Char('3') => Action::Show(View::Drops),
        KeyCode::Char('4') => Action::Show(View::Http),
        KeyCode::Tab => Action::NextView,
        KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
        KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
        KeyCode::PageDown => Action::Move(PAGE),
        KeyCode::PageUp => Action::Move(-PAGE),
        KeyCode::Home | KeyCode::Char('g') => Action::Newest,
        KeyCode::End | KeyCode::Char('G') => Action::Oldest,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('v') => Action::CycleVerdict,
        KeyCode::Char('t') => Action::CycleProtocol,
        KeyCode::Char('c') => Action::Clear,
        _ => return None,
    })
}

/// Applies an action to the state.
pub fn apply(app: &mut App, action: Action) -> Control {
    match action {
        Action::Quit => return Control::Quit,
        Action::ToggleHelp => app.show_help = !app.show_help,
        Action::TogglePause => {
            app.paused = !app.paused;
            if !app.paused {
                app.counters.missed_paused = 0;
            }
        }
        Action::ToggleDetail => app.show_detail = !app.show_detail,
        Action::Show(view) => app.view = view,
        Action::NextView => {
            let i = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
            app.view = View::ALL[(i + 1) % View::ALL.len()];
        }
        Action::Move(delta) => app.move_selection(delta),
        Action::Newest => app.select_newest(),
        Action::Oldest => app.select_oldest(),
        Action::StartFilter => {
            app.editing = Some(FilterEdit {
                text: app.filter_text.clone(),
            })
        }
        Action::FilterChar(c) => {
            if let Some(edit) = app.editing.as_mut() {
                edit.text.push(c);
            }
        }
        Action::FilterBackspace => {
            if let Some(edit) = app.editing.as_mut() {
                edit.text.pop();
            }
        }
        Action::FilterClearLine => {
            if let Some(edit) = app.editing.as_mut() {
                edit.text.clear();
            }
        }
        Action::ApplyFilter => {
            if let Some(edit) = app.editing.take() {
                app.set_filter(&edit.text);
                if app.filter_error.is_some() {
                    // Keep editing so the mistake can be fixed in place.
                    app.editing = Some(edit);
                }
            }
        }
        Action::CancelFilter => {
            app.editing = None;
            app.filter_error = None;
        }
        Action::CycleVerdict => app.cycle_verdict(),
        Action::CycleProtocol => app.cycle_protocol(),
        Action::Clear => app.clear(),
    }
    Control::Continue
}
