//! Drawing: a pure function of the [`Dashboard`] state onto a ratatui frame.

use ratatui::{
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap},
    Frame,
};

pub use super::latency::{buckets, log_height};
use super::state::{Dashboard, Panel, CAUSES};
use crate::model::tiers::tier_label;

/// Draws the whole dashboard.
pub fn draw(f: &mut Frame, d: &Dashboard) {
    let area = f.area();
    let header_h = (3 + d.header.tiers.len() as u16).min(7);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(header_h),
            Constraint::Min(8),
            Constraint::Length(if area.height >= 40 { 12 } else { 7 }),
            Constraint::Length(1),
        ])
        .split(area);
    header(f, rows[0], d);
    let mid = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[1]);
    super::latency::panel(f, mid[0], d);
    churn(f, mid[1], d);
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(60), Constraint::Percentage(40)])
        .split(rows[2]);
    processes(f, bottom[0], d);
    log(f, bottom[1], d);
    footer(f, rows[3], d);
    if d.help {
        help(f, area, d.replay.is_some());
    }
}

pub(super) fn block(title: String, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::default()
            .fg(Color::Cyan)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(title)
}

/// A number with a k/M suffix.
pub fn human(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// A duration in ns as `850ns`, `12.3us`, `4.5ms`, `1.2s`.
pub fn ns(v: u64) -> String {
    let v = v as f64;
    if v >= 1e9 {
        format!("{:.2}s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}us", v / 1e3)
    } else {
        format!("{v:.0}ns")
    }
}

fn header(f: &mut Frame, area: Rect, d: &Dashboard) {
    let h = &d.header;
    let v = &d.view;
    let mut lines = vec![
        Line::from(vec![
            Span::styled("cxl-trace ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "kernel {}  numa_balancing {}  demotion {}  rate limit {} MB/s  faults of {}",
                h.kernel, h.numa_balancing, h.demotion, h.rate_limit, h.scope
            )),
        ]),
        Line::from(format!(
            "{:.0} ev/s  drops {}  {}probes {} live, {} unavailable  {}{}",
            v.events_per_s(),
            v.drops,
            // A replay knows nothing of the recording tool's own cost.
            if d.replay.is_some() {
                String::new()
            } else {
                format!(
                    "tool cpu {:.1}%  bpf {}  ",
                    v.tool_cpu() * 100.0,
                    if h.bpf_stats {
                        format!("{:.2}%", v.bpf_cpu() * 100.0)
                    } else {
                        "off".into()
                    }
                )
            },
            h.live.len(),
            h.unavailable.len(),
            d.window_label(),
            if d.paused { "  [PAUSED]" } else { "" }
        )),
    ];
    if let Some(r) = &d.replay {
        lines[1].spans.push(Span::styled(
            format!(
                "  REPLAY {:.1}s at {}x{}",
                r.t,
                speed(r.speed),
                if r.ended {
                    "  [END]"
                } else if r.paused {
                    "  [PAUSED]"
                } else {
                    ""
                }
            ),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ));
    }
    if v.drops > 0 {
        lines[1].spans.push(Span::styled(
            "  EVENTS DROPPED: counts incomplete",
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    for t in &h.tiers {
        lines.push(Line::from(format!("  {t}")));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::BOTTOM)),
        area,
    );
}

fn churn(f: &mut Frame, area: Rect, d: &Dashboard) {
    let focused = d.focus == Panel::Churn;
    let v = &d.view.churn;
    let outer = block(" Migration churn ".into(), focused);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(2),
            Constraint::Length(1),
            Constraint::Length(2),
            Constraint::Min(2),
        ])
        .split(inner);
    let secs = d.view.seconds.max(1e-9);
    let (promo, demo) = (v.promoted(), v.demoted());
    let w = usize::from(inner.width);
    let (up, down) = d.churn_series(w);
    f.render_widget(
        Paragraph::new(format!(
            "promotions {}/s ({} pages)",
            human(promo as f64 / secs),
            human(promo as f64)
        )),
        parts[0],
    );
    f.render_widget(
        Sparkline::default()
            .data(&up)
            .style(Style::default().fg(Color::Green)),
        parts[1],
    );
    f.render_widget(
        Paragraph::new(format!(
            "demotions {}/s ({} pages)",
            human(demo as f64 / secs),
            human(demo as f64)
        )),
        parts[2],
    );
    f.render_widget(
        Sparkline::default()
            .data(&down)
            .style(Style::default().fg(Color::Magenta)),
        parts[3],
    );
    let lines = churn_lines(d);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), parts[4]);
}

/// The text lines of the churn panel: causes, tier pairs, batches, refusals, ping-pong.
fn churn_lines(d: &Dashboard) -> Vec<Line<'static>> {
    let v = &d.view.churn;
    let bl = &d.view.batch_latency;
    let res = &d.view.residency;
    let secs = d.view.seconds.max(1e-9);
    let mut lines = Vec::new();
    // Pages promoted and demoted, each by cause, in words (no sign to decode).
    let by_cause =
        |m: &std::collections::BTreeMap<crate::model::schema::Cause, u64>| -> Vec<String> {
            m.iter()
                .map(|(c, n)| format!("{} {}", c.name(), human(*n as f64)))
                .collect()
        };
    lines.push(Line::from(format!(
        "promoted by cause: {}",
        list_or(&by_cause(&v.promotions), "none")
    )));
    lines.push(Line::from(format!(
        "demoted by cause: {}",
        list_or(&by_cause(&v.demotions), "none")
    )));
    let pairs: Vec<String> = v
        .pairs
        .iter()
        .map(|((s, t), n)| {
            format!(
                "{}->{} {}",
                tier_label(*s),
                tier_label(*t),
                human(*n as f64)
            )
        })
        .collect();
    lines.push(Line::from(format!("tier pairs: {}", list_or(&pairs, "-"))));
    lines.push(Line::from(format!(
        "migrated {}  failed {}  batch p50 {} p99 {}",
        human(v.migrated as f64),
        v.failed,
        if bl.is_empty() {
            "-".into()
        } else {
            ns(bl.value_at_quantile(0.5))
        },
        if bl.is_empty() {
            "-".into()
        } else {
            ns(bl.value_at_quantile(0.99))
        },
    )));
    let refused: Vec<String> = CAUSES
        .iter()
        .filter_map(|c| {
            v.refused
                .get(c)
                .map(|n| format!("{} {}", c.name(), human(*n as f64)))
        })
        .collect();
    lines.push(Line::from(format!(
        "promotion refused: {}",
        list_or(&refused, "none")
    )));
    lines.push(Line::from(format!(
        "ping-pong {} folios ({}/s), stayed p50 {}   hint faults {}",
        v.bounces,
        human(v.bounces as f64 / secs),
        if res.is_empty() {
            "-".into()
        } else {
            ns(res.value_at_quantile(0.5))
        },
        human(v.hint_faults as f64),
    )));
    lines
}

/// The items joined by two spaces, or `empty` when there are none.
fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join("  ")
    }
}

fn processes(f: &mut Frame, area: Rect, d: &Dashboard) {
    let focused = d.focus == Panel::Processes;
    let title = format!(" Processes (sort: {}, s) ", d.sort.name());
    let header = Row::new([
        "pid", "comm", "faults", "hint", "promoted", "demoted", "pingpong",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let visible = usize::from(area.height.saturating_sub(3));
    let start = d.selected.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = d
        .view
        .procs
        .iter()
        .enumerate()
        .skip(start)
        .take(visible)
        .map(|(i, p)| {
            let r = &p.row;
            let row = Row::new(vec![
                Cell::from(p.pid.to_string()),
                Cell::from(r.comm.clone()),
                Cell::from(human(r.faults as f64)),
                Cell::from(human(r.hint_faults as f64)),
                Cell::from(human(r.promoted as f64)),
                Cell::from(human(r.demoted as f64)),
                Cell::from(human(r.pingpong as f64)),
            ]);
            if focused && i == d.selected {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(7),
            Constraint::Min(8),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(block(title, focused));
    f.render_widget(table, area);
}

fn log(f: &mut Frame, area: Rect, d: &Dashboard) {
    let focused = d.focus == Panel::Log;
    let visible = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = if d.log.is_empty() {
        vec![Line::from("no RAS, hotplug or topology events")]
    } else {
        d.log
            .iter()
            .rev()
            .take(visible)
            .map(|l| Line::from(l.clone()))
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(" Events ".into(), focused)),
        area,
    );
}

/// A playback speed as typed: `2`, `0.5`, `0.016`.
fn speed(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').to_string()
    }
}

fn footer(f: &mut Frame, area: Rect, d: &Dashboard) {
    let text = match &d.replay {
        None => format!(
            " q quit  p pause  r reset  tab focus  s sort  1-9 window  ? help   {:.0}s",
            d.elapsed_s
        ),
        Some(r) => format!(
            " q quit  space pause  . step  </> seek 10s  g/G start/end  +/- speed  ? help   {:.0}s of {}",
            r.t, r.file
        ),
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn help(f: &mut Frame, area: Rect, replay: bool) {
    let w = area.width.min(76);
    let h = area.height.min(if replay { 36 } else { 30 });
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines = [
        "q, Ctrl-C   quit",
        "p, space    pause / resume the view",
        "r           reset histograms and counts",
        "tab         move focus between panels",
        "←/→ (t)     latency: previous/next tier",
        "↑/↓ (c)     latency: next fault class; processes: select",
        "s           process table: next sort column",
        "1..9        window: 1, 5, 10, 30, 60, 120, 300, 600 intervals, whole run",
        "?           this help (any key closes it)",
        "",
        "what the panels say:",
        "tierN       memory tier N (lower: faster); CXL marks a CXL-backed node",
        "A->B        pages moved from tier A to tier B",
        "ev/s        events per second received from the kernel",
        "tool cpu    cxl-trace's own CPU; bpf: its programs' run time, % of a core",
        "p50 p99     percentiles: half, 99 in 100 faults took less",
        "bars        latency buckets; heights on a log scale, each bar's count on it",
        "k M         thousands, millions",
        "hint        NUMA hint faults (NUMA balancing's sampling faults)",
        "pingpong    folios moved back within the ping-pong window",
        "batch       one migrate_pages() call; its p50/p99 duration",
        "threshold, rate_limit, placement: why a promotion was refused",
    ];
    let replay_lines = [
        "replay:",
        "space, p    pause / resume playback",
        ". (n)       step one interval (pauses)",
        "< >         seek 10 s back / forward",
        "g G         go to the start / the end",
        "+ -         play faster / slower",
    ];
    let mut all: Vec<&str> = lines.to_vec();
    if replay {
        all[1] = "p, space    (live only) pause the view";
        all.extend(replay_lines);
    }
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(all.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" Help ")),
        r,
    );
}
