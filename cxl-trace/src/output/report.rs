//! The text of `report`: the whole-run window, section by section.

use crate::model::{
    sample::log_line,
    schema::{CopyTime, LogEntry, Percentiles, Window},
};

fn pct_line(name: &str, p: &Percentiles) -> String {
    format!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        name, p.count, p.p50, p.p90, p.p99, p.p99_9, p.max
    )
}

/// `{prefix}{what} unavailable: {reason}` and a newline, the reason in the user's words (the
/// kernel's full refusal is in the JSON and in `doctor --verbose`).
fn unavailable(prefix: &str, what: &str, a: &crate::model::schema::Avail) -> String {
    let why = a.reason.as_deref().unwrap_or("?");
    // `fentry:handle_mm_fault: <refusal>`: the probe's name first, when it is one.
    let (probe, rest) = match why.split_once(": ") {
        Some((p, r)) if !p.contains(' ') => (p, r),
        _ => ("", why),
    };
    format!(
        "{prefix}{what} unavailable: {}\n",
        crate::model::status::reason_in_short(probe, rest)
    )
}

const PCT_HEAD: [&str; 6] = ["count", "p50", "p90", "p99", "p99.9", "max"];

fn pct_head(first: &str) -> String {
    let [a, b, c, d, e, f] = PCT_HEAD;
    format!("  {first:<28} {a:>10} {b:>10} {c:>10} {d:>10} {e:>10} {f:>10}\n")
}

/// The summary as plain text that reads well in an email: aligned columns, one metric a line.
pub fn to_text(v: &Window) -> String {
    [head(v), faults(v), migrations(v), numa(v), rest(v)].concat()
}

/// Where and what: host, scope, probes.
fn head(v: &Window) -> String {
    let mut s = String::new();
    let h = v.host.clone().unwrap_or_default();
    let r = v.recording.clone().unwrap_or_default();
    s += &format!("cxl-trace report of {}\n\n", r.file);
    s += &format!(
        "  host        {}, kernel {}, cxl-trace {}\n",
        h.hostname, h.kernel, h.tool_version
    );
    s += &format!(
        "  scope       {}; {:.1} s; {} events; {} dropped{}{}\n",
        h.scope,
        v.interval_s,
        r.events,
        v.drops.total,
        if r.truncated {
            "; TRUNCATED (cut off)"
        } else {
            ""
        },
        if v.drops.total > 0 {
            "; counts are incomplete"
        } else {
            ""
        },
    );
    let live = v
        .probes
        .as_ref()
        .map_or(0, |a| a.iter().filter(|p| p.is_live()).count());
    s += &format!("  probes      {live} live\n");
    s
}

/// Faults by tier, and their latency.
fn faults(v: &Window) -> String {
    let mut s = String::new();
    let f = &v.faults;
    s += &format!(
        "\nFaults        {} total, {} user, {} kernel\n",
        f.total, f.user, f.kernel
    );
    for (t, n) in &f.by_tier {
        s += &format!("  {t:<28} {n:>10}\n");
    }
    let fl = &v.fault_latency;
    if !fl.avail.available {
        s += &unavailable("\n", "Fault latency", &fl.avail);
    } else {
        s += "\nFault latency (ns)\n";
        s += &pct_head("tier / class");
        for (tier, t) in &fl.by_tier {
            s += &pct_line(&format!("{tier} all"), &t.all);
            for (class, p) in &t.by_class {
                s += &pct_line(&format!("{tier} {}", class.name()), p);
            }
        }
    }
    s
}

/// Migrations by reason, promotions and demotions, tier pairs, batches, per-folio moves.
fn migrations(v: &Window) -> String {
    let mut s = String::new();
    let m = &v.migrations;
    s += &format!(
        "\nMigrations    {} batches, {} pages moved, {} failed\n  {:<28} {:>10} {:>10} {:>10}\n",
        m.batches, m.pages_succeeded, m.pages_failed, "reason", "batches", "pages", "failed"
    );
    for (reason, x) in &m.by_reason {
        s += &format!(
            "  {:<28} {:>10} {:>10} {:>10}\n",
            reason.name(),
            x.batches,
            x.pages_succeeded,
            x.pages_failed
        );
    }
    for (dir, moves) in [("promotions", &m.promotions), ("demotions", &m.demotions)] {
        s += &format!("  {:<28} {:>10}\n", dir, moves.pages);
        for (c, n) in &moves.by_cause {
            s += &format!("    {:<26} {:>10}\n", c.name(), n);
        }
    }
    s += "  tier pairs (pages)\n";
    for (p, n) in &m.tier_pairs {
        s += &format!("    {p:<26} {n:>10}\n");
    }
    s += &format!(
        "  {:<28} {:>10}\n  {:<28} {:>10}\n",
        "lateral (pages)", m.lateral_pages, "unattributed (pages)", m.unattributed_pages
    );
    if m.batch_latency_ns.count > 0 {
        s += &pct_head("batch time (ns)");
        s += &pct_line("start to end", &m.batch_latency_ns);
    }
    let pf = &m.per_folio;
    if pf.avail.available {
        s += &format!(
            "  per folio: {} moved, {} failed; {} batches exact, {} apportioned; {} pfns unmapped\n",
            pf.folios, pf.failures, pf.exact_batches, pf.apportioned_batches, pf.unmapped_pfns
        );
        match &pf.copy_ns {
            CopyTime::Measured(p) if p.count > 0 => s += &pct_line("folio copy (ns)", p),
            CopyTime::Measured(_) => {}
            CopyTime::Unavailable(a) => s += &unavailable("  ", "folio copy time", a),
        }
    } else {
        s += &unavailable("  ", "per-folio moves", &pf.avail);
    }
    s
}

/// Promotion decisions, NUMA hint faults, demotion batches.
fn numa(v: &Window) -> String {
    let mut s = String::new();
    let d = &v.promotion_decisions;
    if d.avail.available {
        s += &format!(
            "\nPromotion decisions  {} approved, {} refused, {} prepared, {} candidate pages\n",
            d.approved, d.refused_total, d.prepared, d.candidate_pages
        );
        for (c, n) in &d.refused {
            s += &format!("  refused: {:<19} {:>10}\n", c.name(), n);
        }
    } else {
        s += &unavailable("\n", "Promotion decisions", &d.avail);
    }
    let hf = &v.numa_hint_faults;
    if hf.avail.available {
        s += &format!(
            "\nNUMA hint faults  {} total, {} local\n  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            hf.total, hf.local, "node", "faults", "pages", "migrated", "failed", "local"
        );
        for (node, r) in &hf.by_node {
            s += &format!(
                "  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                node, r.faults, r.pages, r.migrated, r.failed, r.local
            );
        }
    } else {
        s += &unavailable("\n", "NUMA hint faults", &hf.avail);
    }
    let db = &v.demotion_batches;
    if db.avail.available {
        s += &format!(
            "\nDemotion batches  {} batches, {} pages\n",
            db.batches, db.pages
        );
        for (node, r) in &db.by_source_node {
            s += &format!("  {:<28} {:>10} ({})\n", node, r.pages, r.tier);
        }
    } else {
        s += &unavailable("\n", "Demotion batches", &db.avail);
    }
    s
}

/// Ping-pong, top processes, RAS and hotplug events, /proc/vmstat.
fn rest(v: &Window) -> String {
    let mut s = String::new();
    let pp = &v.pingpong;
    s += &format!(
        "\nPing-pong     {} folios bounced ({})\n",
        pp.bounces,
        match pp.pages {
            Some(p) => format!("{p} base pages"),
            None => format!(
                "base pages unknown: {} folios of unknown size",
                pp.folios_of_unknown_size
            ),
        }
    );
    if pp.bounces > 0 {
        s += &pct_line("time stayed (ns)", &pp.residency_ns);
    }
    s += &format!(
        "\nTop processes\n  {:>8} {:<16} {:>10} {:>10} {:>10} {:>10}\n",
        "pid", "comm", "faults", "hint", "promoted", "demoted"
    );
    for p in &v.processes {
        s += &format!(
            "  {:>8} {:<16} {:>10} {:>10} {:>10} {:>10}\n",
            p.pid, p.comm, p.faults, p.hint_faults, p.promoted, p.demoted
        );
    }
    let counts = &v.events_log.counts;
    if !counts.is_empty() {
        s += "\nRAS and hotplug events\n";
        for (k, n) in counts {
            s += &format!("  {k:<28} {n:>10}\n");
        }
    }
    s += &events(v);
    s += &format!(
        "\n/proc/vmstat over the recording\n  {:<28} {:>10}\n",
        "counter", "delta"
    );
    for (k, n) in &v.vmstat_delta {
        if *n > 0 {
            s += &format!("  {k:<28} {n:>10}\n");
        }
    }
    s
}

/// Every logged RAS, CXL and hotplug event with its time, decoded fields, node and tier.
fn events(v: &Window) -> String {
    let log = &v.events_log;
    if log.log.is_empty() {
        return String::new();
    }
    let start = v.recording.as_ref().map_or(0, |r| r.start_monotonic_ns);
    let mut s = String::from("\nEvent log\n");
    for e in &log.log {
        let when = match e {
            LogEntry::Ras(r) if start > 0 => {
                format!("{:>+10.3} s", r.ts_ns.saturating_sub(start) as f64 / 1e9)
            }
            LogEntry::Ras(r) => format!("{:>10.3} s", r.ts_ns as f64 / 1e9),
            LogEntry::Blast(b) if start > 0 => {
                format!("{:>+10.3} s", b.ts_ns.saturating_sub(start) as f64 / 1e9)
            }
            LogEntry::Blast(b) => format!("{:>10.3} s", b.ts_ns as f64 / 1e9),
            LogEntry::Topology(_) => format!("{:>12}", "-"),
        };
        match e {
            LogEntry::Blast(b) => s += &blast(&when, b),
            _ => s += &format!("  {when}  {}\n", log_line(e)),
        }
    }
    if log.log_dropped > 0 {
        s += &format!("  ({} more not kept)\n", log.log_dropped);
    }
    s
}

/// A blast radius in full: the scope, then one line per holder and per cgroup.
fn blast(when: &str, b: &crate::model::schema::BlastRadius) -> String {
    let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    let mut s = format!(
        "  {when}  blast radius of {} ({} event{}): node {} tier {}{}{}\n",
        b.cause,
        b.events,
        if b.events == 1 { "" } else { "s" },
        opt(b.scope.node),
        opt(b.scope.tier),
        b.scope
            .pfn
            .map_or(String::new(), |p| format!(", pfn {p:#x}")),
        b.scope
            .page_cgroup
            .as_ref()
            .map_or(String::new(), |c| format!(", page charged to {c}")),
    );
    let pad = " ".repeat(when.len() + 4);
    s += &format!(
        "{pad}read {:.0} ms after the event, fates {:.0} ms after; {}\n",
        b.sampled_after_ms, b.settled_after_ms, b.method
    );
    if b.moved_before_sample > 0 {
        s += &format!(
            "{pad}{} pages had already moved off the node when the holders were read\n",
            b.moved_before_sample
        );
    }
    if b.holders.is_empty() {
        s += &format!("{pad}no process had pages on the node\n");
    }
    for h in &b.holders {
        s += &format!("{pad}  {}\n", crate::model::sample::holder_line(h));
    }
    if b.holders_left_out > 0 {
        s += &format!("{pad}  ({} more holders)\n", b.holders_left_out);
    }
    for (cg, pages) in &b.cgroups {
        s += &format!("{pad}  cgroup {cg}: {pages} pages\n");
    }
    if b.unreadable > 0 {
        s += &format!(
            "{pad}  {} processes' maps could not be read (other users', without privileges)\n",
            b.unreadable
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        rare::{FieldValue, RareClass},
        schema::RasEntry,
    };

    /// The report text lists each logged event with its time since the start of the
    /// recording, its placement and its decoded fields.
    #[test]
    fn the_event_log_is_listed_with_times_and_details() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recordings/v1-small.cxlt");
        let mut w = crate::model::playback::summarize(&path, 5).expect("golden recording");
        assert!(!to_text(&w).contains("Event log"), "no events, no section");
        let start = w.recording.as_ref().map_or(0, |r| r.start_monotonic_ns);
        w.events_log.log.push(LogEntry::Ras(RasEntry {
            event: "cxl:cxl_poison".into(),
            class: RareClass::Ras,
            ts_ns: start + 1_500_000_000,
            node: None,
            tier: None,
            pfn: Some(0x390000),
            placement: Some("region0, in the devdax reserve, not system RAM".into()),
            fields: [
                ("memdev".to_string(), FieldValue::Str("mem0".into())),
                ("source".to_string(), FieldValue::Str("Injected".into())),
                ("dpa".to_string(), FieldValue::UInt(0x1000)),
            ]
            .into(),
        }));
        let text = to_text(&w);
        assert!(text.contains("\nEvent log\n"), "{text}");
        assert!(
            text.contains("    +1.500 s  cxl:cxl_poison node=? tier=? (region0, in the devdax reserve, not system RAM) dpa=0x1000 memdev=mem0 source=Injected"),
            "{text}"
        );
    }
}
