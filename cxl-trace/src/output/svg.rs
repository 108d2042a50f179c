//! `diff --format svg` (plotters, SVG backend): a latency CDF per tier with both runs, then
//! churn and faults per second over time for both runs.

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::model::diff::profile::Profile;

const W: u32 = 960;
const PANEL_H: u32 = 320;
const BASE: RGBColor = RGBColor(31, 119, 180);
const NEW: RGBColor = RGBColor(214, 39, 40);

fn err(e: impl std::fmt::Display) -> Error {
    Error::Runtime(format!("drawing the SVG: {e}"))
}

/// (latency ns, cumulative fraction) of a histogram.
fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let n = h.len().max(1) as f64;
    let mut seen = 0u64;
    h.iter_recorded()
        .map(|v| {
            seen += v.count_at_value();
            (
                h.highest_equivalent(v.value_iterated_to()).max(1) as f64,
                seen as f64 / n,
            )
        })
        .collect()
}

/// Per-second rates of a series.
fn per_s(p: &Profile, id: &str) -> Vec<(f64, f64)> {
    let s = p.series(id);
    p.t.iter()
        .zip(&p.dt)
        .zip(s)
        .map(|((t, dt), x)| (*t, if *dt > 0.0 { x / dt } else { 0.0 }))
        .collect()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A line: legend, colour, points, drawn thicker (the new run).
type Line = (String, RGBColor, Vec<(f64, f64)>, bool);
/// A line ready to draw: legend, style, points.
type Styled = (String, ShapeStyle, Vec<(f64, f64)>);

fn latency_panel(area: &Area, tier: &str, b: &Profile, n: &Profile) -> Result<()> {
    let key = (tier.to_string(), "all".to_string());
    let (cb, cn) = (
        b.latency.get(&key).map(cdf).unwrap_or_default(),
        n.latency.get(&key).map(cdf).unwrap_or_default(),
    );
    let hi = cb.iter().chain(&cn).map(|p| p.0).fold(10.0f64, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("fault latency CDF, tier {tier}"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d((1f64..hi).log_scale(), 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ns, log)")
        .y_desc("fraction of faults")
        .draw()
        .map_err(err)?;
    draw_lines(
        &mut chart,
        vec![
            ("base".into(), BASE.stroke_width(2), cb),
            ("new".into(), NEW.stroke_width(2), cn),
        ],
    )
}

fn time_panel(area: &Area, title: &str, ids: &[&str], b: &Profile, n: &Profile) -> Result<()> {
    let lines: Vec<Line> = ids
        .iter()
        .flat_map(|id| {
            [
                (format!("{id} base"), BASE, per_s(b, id), false),
                (format!("{id} new"), NEW, per_s(n, id), true),
            ]
        })
        .collect();
    let t_max = b.t.iter().chain(&n.t).fold(1.0f64, |a, x| a.max(*x));
    let y_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of the recording")
        .y_desc("per second")
        .draw()
        .map_err(err)?;
    let styled = lines
        .into_iter()
        .enumerate()
        .map(|(i, (name, color, pts, dashed))| {
            // One shade per metric, base in blue and new in red.
            let shade = color.mix(1.0 - 0.25 * (i / 2) as f64);
            let style = ShapeStyle::from(&shade).stroke_width(if dashed { 2 } else { 1 });
            (name, style, pts)
        })
        .collect();
    draw_lines(&mut chart, styled)
}

/// Draws labelled lines and their legend.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: Vec<Styled>,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (name, style, pts) in lines {
        chart
            .draw_series(LineSeries::new(pts, style))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)
}

/// The SVG document.
pub fn render(b: &Profile, n: &Profile) -> Result<String> {
    let mut tiers: Vec<String> = b
        .latency
        .keys()
        .chain(n.latency.keys())
        .filter(|k| k.1 == "all")
        .map(|k| k.0.clone())
        .collect();
    tiers.sort();
    tiers.dedup();
    let panels = tiers.len() as u32 + 2;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, PANEL_H * panels)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((panels as usize, 1));
        for (area, tier) in areas.iter().zip(&tiers) {
            latency_panel(area, tier, b, n)?;
        }
        let rest = &areas[tiers.len()..];
        if let [churn, faults, ..] = rest {
            time_panel(
                churn,
                "tier churn (pages/s)",
                &["promotions", "demotions"],
                b,
                n,
            )?;
            time_panel(faults, "faults/s", &["faults"], b, n)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}
