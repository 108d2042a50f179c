//! The text of `diff`: the runs, configuration differences, then every compared row.

use crate::model::diff::{
    compare::{pct_str, Diff, Row, QUANTILE_METHOD, RATE_METHOD},
    profile::Profile,
};

fn num(v: f64, unit: &str) -> String {
    if unit == "ns" {
        return if v >= 1e6 {
            format!("{:.2}ms", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.1}us", v / 1e3)
        } else {
            format!("{v:.0}ns")
        };
    }
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn run_line(p: &Profile) -> String {
    format!(
        "{} (kernel {}, host {}, {:.1} s in {} intervals, {} events)",
        p.path,
        p.header.kernel,
        p.header.hostname,
        p.seconds(),
        p.dt.len(),
        p.events()
    )
}

/// mmtests-style text: aligned columns, one line per metric, significant changes marked.
pub fn to_text(b: &Profile, n: &Profile, d: &Diff, verdicts: &[(String, Vec<&Row>)]) -> String {
    let mut s = String::new();
    s.push_str("cxl-trace diff\n");
    s.push_str(&format!("  base  {}\n", run_line(b)));
    s.push_str(&format!("  new   {}\n\n", run_line(n)));
    if d.config.is_empty() {
        s.push_str("Configuration: the same (kernel, numa_balancing, rate limit, demotion, hot threshold, tiers, probes)\n\n");
    } else {
        s.push_str("Configuration differences (these explain many \"regressions\"):\n");
        for c in &d.config {
            s.push_str(&format!("  {:<40} {}  ->  {}\n", c.what, c.base, c.new));
        }
        s.push('\n');
    }
    for w in &d.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if !d.warnings.is_empty() {
        s.push('\n');
    }
    let header = |title: &str, method: &str| {
        format!(
            "{title}\n  ({method}; significant: the interval excludes 0 and |change| >= {}%)\n  {:<44} {:>10} {:>10} {:>9}  {:<20} {}\n",
            d.min_effect_pct, "metric", "base", "new", "change", "CI of change", "verdict"
        )
    };
    for (group, title, method) in [
        (
            "latency",
            "Fault latency and ping-pong residency",
            QUANTILE_METHOD,
        ),
        ("rate", "Rates per second", RATE_METHOD),
        ("per_gb", "Per GB touched (faults x 4 KiB)", RATE_METHOD),
    ] {
        let rows: Vec<&Row> = d.rows.iter().filter(|r| r.group == group).collect();
        if rows.is_empty() {
            continue;
        }
        s.push_str(&header(title, method));
        for r in rows {
            let c = &r.change;
            s.push_str(&format!(
                "  {:<44} {:>10} {:>10} {:>9}  {:<20} {}\n",
                r.id,
                num(r.base, r.unit),
                num(r.new, r.unit),
                pct_str(c.pct),
                format!("[{}, {}]", pct_str(c.lo_pct), pct_str(c.hi_pct)),
                if c.significant {
                    "SIGNIFICANT *"
                } else {
                    "no change"
                }
            ));
        }
        s.push('\n');
    }
    let crossed: usize = verdicts.iter().map(|(_, r)| r.len()).sum();
    for (spec, rows) in verdicts {
        if rows.is_empty() {
            s.push_str(&format!("--fail-on {spec}: not crossed\n"));
        } else {
            for r in rows {
                s.push_str(&format!(
                    "--fail-on {spec}: CROSSED by {} ({})\n",
                    r.id,
                    pct_str(r.change.pct)
                ));
            }
        }
    }
    let sig = d.rows.iter().filter(|r| r.change.significant).count();
    s.push_str(&format!(
        "{} of {} measurements changed significantly{}\n",
        sig,
        d.rows.len(),
        if verdicts.is_empty() {
            String::new()
        } else {
            format!("; {crossed} --fail-on crossing(s)")
        }
    ));
    s
}
