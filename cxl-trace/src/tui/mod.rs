//! The live terminal dashboard of `cxl-trace top`.
//!
//! - [`state`]: the application state and its synchronous `update(msg)` (pure, no I/O);
//! - [`view`]: drawing, a pure function of the state;
//! - this module: the terminal (raw mode and alternate screen, always restored: on quit, on
//!   error through a Drop guard, on panic through a hook) and the key reader thread.

pub mod latency;
pub mod live;
pub mod state;
pub mod view;

use std::io::Stdout;

use crossterm::{
    event::{self, Event as CtEvent, KeyCode, KeyEventKind, KeyModifiers},
    execute,
    terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{backend::CrosstermBackend, Terminal};
use tokio::sync::mpsc;

use crate::{
    error::{Error, Result},
    model::topology::Topology,
    probe::ProbeStatus,
};
use state::{HeaderInfo, Key, Msg};

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub struct Screen {
    /// The ratatui terminal.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Screen {
    /// Enters raw mode and the alternate screen, and installs a panic hook that restores the
    /// terminal before the panic message is printed.
    pub fn enter() -> Result<Self> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        enable_raw_mode().map_err(|e| Error::Runtime(format!("terminal raw mode: {e}")))?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, crossterm::cursor::Hide) {
            restore();
            return Err(Error::Runtime(format!("terminal alternate screen: {e}")));
        }
        let terminal = Terminal::new(CrosstermBackend::new(out)).map_err(|e| {
            restore();
            Error::Runtime(format!("terminal: {e}"))
        })?;
        Ok(Self { terminal })
    }

    /// Draws the dashboard.
    pub fn draw(&mut self, d: &state::Dashboard) -> Result<()> {
        self.terminal
            .draw(|f| view::draw(f, d))
            .map(|_| ())
            .map_err(|e| Error::Runtime(format!("drawing: {e}")))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Maps a crossterm event to a dashboard message.
pub fn to_msg(ev: &CtEvent) -> Option<Msg> {
    match ev {
        CtEvent::Resize(_, _) => Some(Msg::Resize),
        CtEvent::Key(k) if k.kind != KeyEventKind::Release => {
            let key = match k.code {
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
                KeyCode::Char(c) => Key::Char(c),
                KeyCode::Tab => Key::Tab,
                KeyCode::Up => Key::Up,
                KeyCode::Down => Key::Down,
                KeyCode::Left => Key::Left,
                KeyCode::Right => Key::Right,
                KeyCode::Esc => Key::Esc,
                _ => return None,
            };
            Some(Msg::Key(key))
        }
        _ => None,
    }
}

/// Starts the thread that reads terminal input and sends it to the event loop. It ends when
/// the receiver is dropped (at the next input) or with the process.
pub fn spawn_input() -> mpsc::UnboundedReceiver<Msg> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        match event::read() {
            Ok(ev) => {
                if let Some(m) = to_msg(&ev) {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
            }
            Err(_) => return,
        }
    });
    rx
}

/// Header facts from the topology and the probe statuses.
pub fn header_info(
    kernel: &str,
    topo: &Topology,
    probes: &[ProbeStatus],
    latency_unavailable: Option<String>,
    scope: String,
) -> HeaderInfo {
    let s = &topo.settings;
    let numa_balancing = match s.numa_balancing {
        Some(0) => "0 (off)".to_string(),
        Some(1) => "1 (normal)".to_string(),
        Some(2) => "2 (tiering)".to_string(),
        Some(3) => "3 (normal+tiering)".to_string(),
        Some(n) => n.to_string(),
        None => "n/a".to_string(),
    };
    let tiers = topo
        .tiers
        .iter()
        .map(|t| {
            let nodes: Vec<String> = t
                .nodes
                .iter()
                .map(|id| {
                    let node = topo.nodes.iter().find(|n| n.id == *id);
                    let cxl = if node.is_some_and(|n| n.cxl) {
                        " CXL"
                    } else {
                        ""
                    };
                    let lat = node
                        .and_then(|n| n.access.first())
                        .and_then(|a| a.read_latency_ns)
                        .map(|l| format!(" {l}ns"))
                        .unwrap_or_default();
                    format!("node{id}{cxl}{lat}")
                })
                .collect();
            format!("tier{}: {}", t.id, nodes.join(", "))
        })
        .collect();
    HeaderInfo {
        scope,
        bpf_stats: false,
        kernel: kernel.to_string(),
        numa_balancing,
        demotion: match s.demotion_enabled {
            Some(true) => "on".into(),
            Some(false) => "off".into(),
            None => "n/a".into(),
        },
        rate_limit: s
            .promote_rate_limit_mbps
            .map_or("n/a".into(), |r| r.to_string()),
        tiers,
        live: probes
            .iter()
            .filter(|p| p.is_live())
            .map(|p| p.name.clone())
            .collect(),
        unavailable: probes
            .iter()
            .filter(|p| !p.is_live())
            .map(|p| (p.name.clone(), p.reason.clone()))
            .collect(),
        latency_unavailable,
    }
}

#[cfg(test)]
mod tests;
