//! Dashboard cost: drawing one frame with a full state (600 s of history from a busy two-tier
//! machine, 300 processes) at 160x48 and 80x24, and folding one interval into the state.
//! Target (issue 5): a 160x48 frame in under 2 ms.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use cxl_trace::{
    model::aggregate::Aggregator,
    model::rare::RareDecoder,
    model::sample::Sample,
    model::tiers::Availability,
    tui::{
        state::{Dashboard, HeaderInfo, Key, Msg},
        view,
    },
};
use ratatui::{backend::TestBackend, Terminal};

fn header() -> HeaderInfo {
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
        latency_unavailable: None,
    }
}

/// `seconds` intervals of `faults` timed faults each, through the real aggregator.
fn samples(seconds: u64, faults: u64) -> Vec<Sample> {
    let mut agg = Aggregator::with_context(
        common::tier_map(),
        RareDecoder::default(),
        Availability::default(),
    );
    let mut rng = common::Rng::new(42);
    (0..seconds)
        .map(|s| {
            for e in common::second(&mut rng, s * 1_000_000_000, faults, 300) {
                agg.ingest(&e);
            }
            Sample::from_totals(&agg.end_interval(), 1.0, 0)
        })
        .collect()
}

fn full(samples: &[Sample]) -> Dashboard {
    let mut d = Dashboard::new(header());
    for s in samples {
        d.update(Msg::Sample(Box::new(s.clone())));
    }
    d
}

fn bench(c: &mut Criterion) {
    let history = samples(600, 5_000);
    let mut g = c.benchmark_group("dashboard");
    for (w, h) in [(160u16, 48u16), (80, 24)] {
        // Window keys: 3 = last 10 s (the default), 8 = last 600 s, 9 = whole run.
        for key in ['3', '8', '9'] {
            let mut d = full(&history);
            d.update(Msg::Key(Key::Char(key)));
            let mut term = match Terminal::new(TestBackend::new(w, h)) {
                Ok(t) => t,
                Err(e) => panic!("test backend: {e}"),
            };
            g.bench_function(format!("draw_{w}x{h}_window{key}"), |b| {
                b.iter(|| {
                    let _ = term.draw(|f| view::draw(f, black_box(&d)));
                })
            });
        }
    }
    let d = full(&history);
    let next = history[0].clone();
    g.bench_function("update_one_interval_full_history", |b| {
        b.iter_batched(
            || (d.clone(), next.clone()),
            |(mut d, s)| {
                let a = d.update(Msg::Sample(Box::new(s)));
                (d, a)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
