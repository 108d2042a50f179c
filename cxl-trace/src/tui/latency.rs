//! The fault latency panel: a histogram per tier and class with log-scaled bars; where the
//! kernel gives no latency, the fault rate over time by kind instead.

use hdrhistogram::Histogram;
use ratatui::{
    layout::{Constraint, Direction, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Bar, BarChart, BarGroup, Paragraph, Sparkline, Wrap},
    Frame,
};

use super::{
    state::{Dashboard, Panel},
    view::{block, human, ns},
};
use crate::model::{event::FaultKind, tiers::tier_label};

/// A bar's height for `count` on a log scale: 0 for none, then 1000 per decade above 1, so
/// 1 and 262k both stay visible (1000 and 6419).
pub fn log_height(count: u64) -> u64 {
    if count == 0 {
        0
    } else {
        ((count as f64).log10() * 1000.0) as u64 + 1000
    }
}

/// Log-spaced buckets of a histogram from its minimum to its maximum: (upper bound label,
/// count), at most `n` of them; every recorded value lands in exactly one bucket.
pub fn buckets(h: &Histogram<u64>, n: usize) -> Vec<(String, u64)> {
    if h.is_empty() || n == 0 {
        return Vec::new();
    }
    let lo = h.min().max(1) as f64;
    let hi = h.max().max(1) as f64;
    let n = if hi <= lo { 1 } else { n };
    let step = ((hi / lo).ln() / n as f64).max(f64::MIN_POSITIVE);
    let mut counts = vec![0u64; n];
    for v in h.iter_recorded() {
        let x = (v.value_iterated_to().max(1) as f64).clamp(lo, hi);
        let i = ((x / lo).ln() / step) as usize;
        counts[i.min(n - 1)] += v.count_at_value();
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let upper = if i + 1 == n {
                h.max()
            } else {
                (lo * ((i + 1) as f64 * step).exp()).ceil() as u64
            };
            (ns(upper), c)
        })
        .collect()
}

/// The fault latency panel: the selected tier's histogram, or what is available instead.
pub fn panel(f: &mut Frame, area: Rect, d: &Dashboard) {
    let focused = d.focus == Panel::Latency;
    let class = d.class.map_or("all classes", |c| c.name());
    if let Some(why) = &d.header.latency_unavailable {
        unavailable(f, area, d, why, focused);
        return;
    }
    let Some(tier) = d.selected_tier() else {
        let p =
            Paragraph::new("no timed faults yet").block(block(" Fault latency ".into(), focused));
        f.render_widget(p, area);
        return;
    };
    let h = d.view.histogram(tier, d.class);
    let title = format!(
        " Fault latency {} / {class} (←→ tier, ↑↓ class) ",
        tier_label(tier)
    );
    let outer = block(title, focused);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(2), Constraint::Min(3)])
        .split(inner);
    let pct = if h.is_empty() {
        "no faults in this window".to_string()
    } else {
        format!(
            "n {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            human(h.len() as f64),
            ns(h.value_at_quantile(0.5)),
            ns(h.value_at_quantile(0.9)),
            ns(h.value_at_quantile(0.99)),
            ns(h.value_at_quantile(0.999)),
            ns(h.max())
        )
    };
    let tiers: Vec<String> = d
        .view
        .tiers()
        .iter()
        .map(|t| {
            let n = d.view.histogram(*t, None).len();
            format!("{} {}", tier_label(*t), human(n as f64))
        })
        .collect();
    f.render_widget(
        Paragraph::new(vec![
            Line::from(pct),
            Line::from(format!(
                "{}   bars: log height, count on each",
                tiers.join("  ")
            )),
        ]),
        parts[0],
    );
    let width = parts[1].width.max(1);
    let n = ((width + 1) / 7).clamp(1, 16) as usize;
    let data = buckets(&h, n);
    // Heights on a log scale (a first bucket of 262k would flatten every other bar), each
    // bar's own count written on it; the second line says so.
    let bars: Vec<Bar> = data
        .iter()
        .map(|(label, c)| {
            Bar::default()
                .value(log_height(*c))
                .text_value(human(*c as f64))
                .label(Line::from(label.clone()))
        })
        .collect();
    let chart = BarChart::default()
        .data(BarGroup::default().bars(&bars))
        .bar_width(6)
        .bar_gap(1);
    f.render_widget(chart, parts[1]);
}

/// The series shown when latency is unavailable: every fault, then by mode, then by access
/// kind (those with faults in the window only), in faults per second.
pub fn series_of(d: &Dashboard, n: usize) -> Vec<(String, Vec<u64>)> {
    let names = ["all", "user", "kernel"]
        .into_iter()
        .chain(FaultKind::ALL.iter().map(|k| k.name()));
    let mut series: Vec<(String, Vec<u64>)> =
        names.map(|name| (name.to_string(), Vec::new())).collect();
    let start = d.history.len().saturating_sub(n);
    for s in d.history.iter().skip(start) {
        let c = &s.faults;
        let values = [c.total, c.user, c.kernel].into_iter().chain(c.by_kind);
        for ((_, v), x) in series.iter_mut().zip(values) {
            v.push(if s.interval_s > 0.0 {
                (x as f64 / s.interval_s).round() as u64
            } else {
                x
            });
        }
    }
    series.retain(|(name, v)| name == "all" || v.iter().any(|x| *x > 0));
    series
}

/// Latency unavailable: the reason in one line (`doctor --verbose` has the kernel's full
/// refusal), then the fault rate over time, in all and by kind, one sparkline each. Faults
/// have no tier without the latency probe (the tier comes from the page it allocated).
fn unavailable(f: &mut Frame, area: Rect, d: &Dashboard, why: &str, focused: bool) {
    let outer = block(" Fault latency: unavailable ".into(), focused);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let series = series_of(d, inner.width as usize);
    let now = series
        .first()
        .and_then(|(_, v)| v.last().copied())
        .unwrap_or(0);
    let text = Paragraph::new(vec![
        Line::from(Span::styled(
            format!(
                "latency unavailable: {}",
                crate::model::status::reason_in_short("", why)
            ),
            Style::default().fg(Color::Yellow),
        )),
        Line::from(format!(
            "instead, faults per second: {}/s now, {} in {:.0} s; by tier needs the latency probe",
            human(now as f64),
            human(d.view.faults as f64),
            d.view.seconds
        )),
    ])
    .wrap(Wrap { trim: true });
    // The text first; then as many series as fit, each a label and a sparkline of at
    // least one row, sharing the rest.
    const TEXT: u16 = 4;
    let room = inner.height.saturating_sub(TEXT);
    let shown = series.len().min(usize::from(room / 2));
    let each = if shown == 0 { 0 } else { room / shown as u16 };
    let mut rows = vec![Constraint::Length(TEXT)];
    for _ in 0..shown {
        rows.push(Constraint::Length(1));
        rows.push(Constraint::Length(each.saturating_sub(1)));
    }
    rows.push(Constraint::Min(0));
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints(rows)
        .split(inner);
    f.render_widget(text, parts[0]);
    for (i, (name, v)) in series.iter().take(shown).enumerate() {
        let (label, spark) = (parts[1 + 2 * i], parts[2 + 2 * i]);
        let peak = v.iter().max().copied().unwrap_or(0);
        let last = v.last().copied().unwrap_or(0);
        f.render_widget(
            Paragraph::new(format!(
                "{name}: {}/s now, peak {}/s",
                human(last as f64),
                human(peak as f64)
            )),
            label,
        );
        f.render_widget(
            Sparkline::default()
                .data(v)
                .style(Style::default().fg(Color::Cyan)),
            spark,
        );
    }
}
