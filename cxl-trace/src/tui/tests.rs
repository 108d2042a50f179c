//! Dashboard state and rendering tests (no terminal: ratatui's `TestBackend`).

use ratatui::{backend::TestBackend, Terminal};

use super::state::*;
use super::view;
use crate::model::sample::{log_line, Sample};
use crate::{
    model::aggregate::{ProcRow, Totals},
    model::event::FaultClass,
    model::hist::new_histogram,
    model::schema::{Cause, LogEntry, RefusalCause},
    testutil::comm,
};

fn header(latency_unavailable: Option<&str>) -> HeaderInfo {
    HeaderInfo {
        kernel: "6.12.117".into(),
        scope: "all processes".into(),
        bpf_stats: true,
        numa_balancing: "2 (tiering)".into(),
        demotion: "on".into(),
        rate_limit: "65536".into(),
        tiers: vec![
            "tier4: node0 100ns".into(),
            "tier22: node1 CXL 400ns".into(),
        ],
        live: vec!["tracepoint:migrate:mm_migrate_pages".into()],
        unavailable: vec![],
        latency_unavailable: latency_unavailable.map(String::from),
    }
}

/// A busy interval: faults on two tiers, promotions, demotions, a refusal, a bounce.
fn busy_totals(scale: u64) -> Totals {
    let mut t = Totals {
        events: 1000 * scale,
        ..Totals::default()
    };
    t.faults.total = 900 * scale;
    t.faults.user = 850 * scale;
    t.faults.kernel = 50 * scale;
    t.faults.by_kind[0] = 600 * scale;
    t.faults.by_kind[2] = 300 * scale;
    for (tier, base) in [(Some(4), 1_000u64), (Some(22), 5_000u64)] {
        let mut h = new_histogram();
        for i in 0..100 * scale {
            let _ = h.record(base + i % 100);
        }
        t.tiers.latency.by.insert((tier, FaultClass::FirstTouch), h);
    }
    t.tiers
        .moves
        .promotions
        .insert(Cause::NumaBalancing, 30 * scale);
    t.tiers.moves.demotions.insert(Cause::Kswapd, 50 * scale);
    t.tiers.moves.pairs.insert((Some(22), Some(4)), 30 * scale);
    t.tiers.moves.pairs.insert((Some(4), Some(22)), 50 * scale);
    t.tiers
        .decisions
        .refused
        .insert(RefusalCause::RateLimit, 7 * scale);
    t.tiers.pingpong.bounces = scale;
    t.tiers.pingpong.by_pid.insert(42, scale);
    t.processes.insert(
        42,
        ProcRow {
            comm: comm("membench"),
            hint_faults: 10 * scale,
            promoted: 30 * scale,
            ..ProcRow::default()
        },
    );
    t.processes.insert(
        7,
        ProcRow {
            comm: comm("kswapd0"),
            demoted: 50 * scale,
            ..ProcRow::default()
        },
    );
    t.tiers
        .rare
        .log
        .push(LogEntry::Ras(crate::model::schema::RasEntry {
            event: "cxl:cxl_poison".into(),
            class: crate::model::rare::RareClass::Ras,
            ts_ns: 1,
            node: Some(1),
            tier: Some(22),
            pfn: None,
            placement: None,
            fields: Default::default(),
        }));
    t
}

fn busy_dashboard() -> Dashboard {
    let mut d = Dashboard::new(header(None));
    for i in 1..=3 {
        d.update(Msg::Sample(Box::new(Sample::from_totals(
            &busy_totals(i),
            1.0,
            0,
        ))));
    }
    d
}

fn render(d: &Dashboard, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    term.draw(|f| view::draw(f, d)).expect("draw");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn empty_state_renders_at_both_sizes() {
    let d = Dashboard::new(header(None));
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&d, w, h);
        assert!(s.contains("no timed faults yet"), "{w}x{h}:\n{s}");
        assert!(s.contains("promotions 0/s"), "{w}x{h}:\n{s}");
        assert!(s.contains("q quit"), "{w}x{h}:\n{s}");
        assert!(s.contains("tier22: node1 CXL"), "{w}x{h}:\n{s}");
    }
}

#[test]
fn busy_state_renders_at_both_sizes() {
    let d = busy_dashboard();
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&d, w, h);
        assert!(s.contains("Fault latency tier4"), "{w}x{h}:\n{s}");
        assert!(s.contains("p99"), "{w}x{h}:\n{s}");
        assert!(s.contains("membench"), "{w}x{h}:\n{s}");
        // 30+60+90 promoted pages over 3 s.
        assert!(s.contains("promotions 60/s (180 pages)"), "{w}x{h}:\n{s}");
        assert!(s.contains("demotions 100/s (300 pages)"), "{w}x{h}:\n{s}");
    }
    // The wide layout has room for the churn details and the event log.
    let s = render(&d, 160, 48);
    assert!(s.contains("rate_limit 42"), "{s}");
    assert!(s.contains("tier22->tier4 180"), "{s}");
    assert!(s.contains("cxl:cxl_poison"), "{s}");
}

#[test]
fn latency_unavailable_says_why() {
    let mut d = Dashboard::new(header(Some("fentry:handle_mm_fault: EPERM")));
    d.update(Msg::Sample(Box::new(Sample::from_totals(
        &busy_totals(1),
        1.0,
        0,
    ))));
    let s = render(&d, 80, 24);
    assert!(s.contains("latency unavailable:"), "{s}");
    assert!(s.contains("EPERM"), "{s}");
    // What is available instead: the fault rate, now and over time, in all and by kind.
    assert!(s.contains("Fault latency: unavailable"), "{s}");
    let sample = Sample::from_totals(&busy_totals(1), 1.0, 0);
    let rate = sample.faults.total;
    assert!(
        s.contains(&format!(
            "instead, faults per second: {}/s now",
            super::view::human(rate as f64)
        )),
        "{s}"
    );
    let series = super::latency::series_of(&d, 10);
    assert_eq!(series[0], ("all".to_string(), vec![rate]));
    let user = sample.faults.user;
    assert!(user > 0, "the fixture has user faults");
    assert!(
        series.contains(&("user".to_string(), vec![user])),
        "{series:?}"
    );
    // Kinds without a fault in the window are left out.
    assert!(series.iter().all(|(_, v)| v[0] > 0), "{series:?}");
    let wide = render(&d, 160, 48);
    assert!(
        wide.contains(&format!("user: {}/s now", super::view::human(user as f64))),
        "{wide}"
    );
}

#[test]
fn drops_are_shown_loudly() {
    let mut d = Dashboard::new(header(None));
    d.update(Msg::Sample(Box::new(Sample::from_totals(
        &busy_totals(1),
        1.0,
        12,
    ))));
    assert_eq!(d.view.drops, 12);
    let s = render(&d, 160, 48);
    assert!(s.contains("drops 12"), "{s}");
    assert!(s.contains("EVENTS DROPPED"), "{s}");
}

#[test]
fn windows_cover_the_last_samples() {
    let mut d = busy_dashboard();
    // Default window: 60 intervals, all three samples.
    assert_eq!(d.view.samples, 3);
    assert_eq!(d.view.faults, 900 * 6);
    assert_eq!(d.view.histogram(Some(4), None).len(), 600);
    d.update(Msg::Key(Key::Char('1')));
    assert_eq!(d.view.samples, 1);
    assert_eq!(d.view.faults, 900 * 3);
    assert_eq!(
        d.view.churn.promotions.get(&Cause::NumaBalancing),
        Some(&90)
    );
    assert_eq!(d.view.histogram(Some(4), None).len(), 300);
    assert_eq!(d.window_label(), "last 1 intervals");
    d.update(Msg::Key(Key::Char('9')));
    assert_eq!(d.view.samples, 3);
    assert_eq!(d.window_label(), "whole run");
}

#[test]
fn reset_pause_and_history_bound() {
    let mut d = busy_dashboard();
    d.update(Msg::Key(Key::Char('r')));
    assert_eq!(d.view.samples, 0);
    assert_eq!(d.view.faults, 0);
    assert!(d.view.histogram(Some(4), None).is_empty());
    d.update(Msg::Sample(Box::new(Sample::from_totals(
        &busy_totals(1),
        1.0,
        0,
    ))));
    assert_eq!(d.view.faults, 900);
    // Paused: samples are kept, the view stays.
    d.update(Msg::Key(Key::Char('p')));
    assert!(d.paused);
    d.update(Msg::Sample(Box::new(Sample::from_totals(
        &busy_totals(1),
        1.0,
        0,
    ))));
    assert_eq!(d.view.faults, 900);
    d.update(Msg::Key(Key::Char('p')));
    assert_eq!(d.view.faults, 1800);
    // History is bounded.
    for _ in 0..HISTORY + 5 {
        d.update(Msg::Sample(Box::new(Sample::from_totals(
            &Totals::default(),
            1.0,
            0,
        ))));
    }
    assert_eq!(d.history.len(), HISTORY);
}

#[test]
fn whole_run_outlives_the_history() {
    let mut d = Dashboard::new(header(None));
    d.update(Msg::Key(Key::Char('9')));
    let n = HISTORY + 5;
    for _ in 0..n {
        d.update(Msg::Sample(Box::new(Sample::from_totals(
            &busy_totals(1),
            1.0,
            0,
        ))));
    }
    assert_eq!(d.history.len(), HISTORY);
    assert_eq!(d.window_label(), "whole run");
    assert_eq!(d.view.samples, n);
    assert_eq!(d.view.faults, 900 * n as u64);
    assert_eq!(d.view.histogram(Some(4), None).len(), 100 * n as u64);
    assert_eq!(d.view.procs.len(), 2);
    assert!((d.view.events_per_s() - 1000.0).abs() < 1e-9);
    // The last-600 window is bounded by the history.
    d.update(Msg::Key(Key::Char('8')));
    assert_eq!(d.view.samples, HISTORY);
    // Reset clears the whole-run sums too.
    d.update(Msg::Key(Key::Char('9')));
    d.update(Msg::Key(Key::Char('r')));
    assert_eq!(d.view.samples, 0);
    assert_eq!(d.view.faults, 0);
}

#[test]
fn keys_sort_select_focus_and_quit() {
    let mut d = busy_dashboard();
    assert_eq!(d.view.procs[0].row.comm, "kswapd0"); // ties at 0 faults: pid order
    d.update(Msg::Key(Key::Char('s'))); // hint
    assert_eq!(d.sort, SortKey::HintFaults);
    assert_eq!(d.view.procs[0].pid, 42);
    d.update(Msg::Key(Key::Char('s'))); // promoted
    d.update(Msg::Key(Key::Char('s'))); // demoted
    assert_eq!(d.view.procs[0].pid, 7);
    d.update(Msg::Key(Key::Tab));
    assert_eq!(d.focus, Panel::Churn);
    d.update(Msg::Key(Key::Tab));
    assert_eq!(d.focus, Panel::Processes);
    d.update(Msg::Key(Key::Down));
    assert_eq!(d.selected, 1);
    d.update(Msg::Key(Key::Down));
    assert_eq!(d.selected, 1, "stops at the last row");
    d.update(Msg::Key(Key::Up));
    assert_eq!(d.selected, 0);
    // Latency panel: arrows switch tier and class.
    d.update(Msg::Key(Key::Tab));
    d.update(Msg::Key(Key::Tab));
    assert_eq!(d.focus, Panel::Latency);
    assert_eq!(d.selected_tier(), Some(Some(4)));
    d.update(Msg::Key(Key::Right));
    assert_eq!(d.selected_tier(), Some(Some(22)));
    d.update(Msg::Key(Key::Right));
    assert_eq!(d.selected_tier(), Some(Some(4)), "wraps");
    d.update(Msg::Key(Key::Left));
    assert_eq!(d.selected_tier(), Some(Some(22)));
    d.update(Msg::Key(Key::Down));
    assert_eq!(d.class, Some(FaultClass::ALL[0]));
    let s = render(&d, 80, 24);
    assert!(s.contains("tier22"), "{s}");
    // Help overlay: shown, then closed by any key.
    d.update(Msg::Key(Key::Char('?')));
    assert!(d.help);
    assert!(render(&d, 80, 24).contains("this help"));
    // On a tall terminal it also explains what the panels abbreviate.
    let tall = render(&d, 100, 40);
    for term in [
        "tierN",
        "A->B",
        "ev/s",
        "thousands, millions",
        "NUMA hint faults",
        "pingpong",
    ] {
        assert!(tall.contains(term), "{term}:\n{tall}");
    }
    assert_eq!(d.update(Msg::Key(Key::Char('x'))), Action::Continue);
    assert!(!d.help);
    assert_eq!(d.update(Msg::Resize), Action::Continue);
    assert_eq!(d.update(Msg::Key(Key::Char('q'))), Action::Quit);
    assert_eq!(d.update(Msg::Key(Key::CtrlC)), Action::Quit);
}

#[test]
fn histogram_edge_cases() {
    // Empty.
    assert!(view::buckets(&new_histogram(), 10).is_empty());
    // One value: all of it in the buckets.
    let mut h = new_histogram();
    let _ = h.record(1234);
    let b = view::buckets(&h, 8);
    assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 1);
    // Overflow values are clamped by the aggregator to the 10 s bound and still count.
    let mut h = new_histogram();
    let _ = h.record(crate::model::hist::MAX_LATENCY_NS);
    let _ = h.record(1);
    let b = view::buckets(&h, 12);
    assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 2);
    // Samples carry histograms through their compact encoding unchanged.
    let mut d = Dashboard::new(header(None));
    d.update(Msg::Sample(Box::new(Sample::from_totals(
        &busy_totals(2),
        1.0,
        0,
    ))));
    let h = d.view.histogram(Some(22), Some(FaultClass::FirstTouch));
    assert_eq!(h.len(), 200);
    assert_eq!(h.min(), 5_000);
    assert!(h.max() >= 5_099 && h.max() <= 5_105);
    assert_eq!(view::ns(850), "850ns");
    assert_eq!(view::ns(12_300), "12.3us");
    assert_eq!(view::human(12_345.0), "12.3k");
}

#[test]
fn log_lines_read_well() {
    let change = crate::model::schema::TopologyChange {
        event: "topology_changed".into(),
        class: "hotplug".into(),
        nodes_added: vec![crate::model::schema::NodeAdded {
            node: 1,
            tier: Some(22),
            cxl: true,
            mem_total_kib: 1024,
        }],
        nodes_removed: vec![],
        memory_blocks: crate::model::schema::BlockCount {
            before: 8,
            after: 9,
        },
        tiers: vec![],
    };
    assert_eq!(
        log_line(&LogEntry::Topology(change)),
        "topology_changed nodes_added=1(tier 22) nodes_removed=- memory_blocks=8->9"
    );
    let ras = crate::model::schema::RasEntry {
        event: "ras:memory_failure_event".into(),
        class: crate::model::rare::RareClass::Ras,
        ts_ns: 5,
        node: Some(0),
        tier: None,
        pfn: Some(4096),
        placement: None,
        fields: [(
            "pfn".to_string(),
            crate::model::rare::FieldValue::UInt(4096),
        )]
        .into(),
    };
    assert_eq!(
        log_line(&LogEntry::Ras(ras)),
        "ras:memory_failure_event node=0 tier=? pfn=0x1000"
    );
    let poison = crate::model::schema::RasEntry {
        event: "cxl:cxl_poison".into(),
        class: crate::model::rare::RareClass::Ras,
        ts_ns: 5,
        node: None,
        tier: None,
        pfn: Some(0x390000),
        placement: Some("region0, in the devdax reserve, not system RAM".into()),
        fields: [
            (
                "dpa".to_string(),
                crate::model::rare::FieldValue::UInt(0x1000),
            ),
            (
                "source".to_string(),
                crate::model::rare::FieldValue::Str("Injected".into()),
            ),
            (
                "type".to_string(),
                crate::model::rare::FieldValue::Str("ECC Error".into()),
            ),
        ]
        .into(),
    };
    assert_eq!(
        log_line(&LogEntry::Ras(poison)),
        "cxl:cxl_poison node=? tier=? (region0, in the devdax reserve, not system RAM) dpa=0x1000 source=Injected type=\"ECC Error\""
    );
}

/// Log-scaled bar heights: zero stays zero, one count is visible, a dominating bucket is at
/// most 7.5 times the height of a bucket 100,000 times smaller, and order is kept.
#[test]
fn bar_heights_are_log_scaled() {
    assert_eq!(view::log_height(0), 0);
    assert_eq!(view::log_height(1), 1000);
    assert_eq!(view::log_height(10), 2000);
    let (small, big) = (view::log_height(3), view::log_height(262_144));
    assert!(big > small && big < small * 8, "{small} {big}");
    let hs: Vec<u64> = [0u64, 1, 2, 9, 10, 99, 1000, 262_144]
        .iter()
        .map(|c| view::log_height(*c))
        .collect();
    assert!(hs.windows(2).all(|w| w[0] < w[1]), "{hs:?}");
}
