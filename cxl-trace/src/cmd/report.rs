//! Reading recordings back: `report` (the whole-run summary) and `export` (every event).
//! Both stream: one chunk in memory at a time.

use std::io::{BufWriter, Write};

use serde_json::{json, Map, Value};

use crate::{
    cli::{ExportFormat, ExportOpts, ReportFormat, ReportOpts},
    error::{Error, Result},
    model::event::Event,
    model::recording::Header,
    model::schema::{CopyTime, ExportRow, Percentiles, RareRow, RawRow, Window},
    model::tiers::TierMap,
};

pub fn run(o: &ReportOpts) -> Result<i32> {
    let v = crate::model::playback::summarize(&o.file, o.top)?;
    let out = match o.format {
        ReportFormat::Json => crate::model::schema::to_pretty(&v)?,
        ReportFormat::Text => to_text(&v),
    };
    crate::output::write_stdout(out.as_bytes())?;
    if v.recording.as_ref().is_some_and(|r| r.truncated) {
        eprintln!(
            "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): reported up to the last complete chunk",
            o.file.display()
        );
    }
    Ok(0)
}

fn pct_line(name: &str, p: &Percentiles) -> String {
    format!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        name, p.count, p.p50, p.p90, p.p99, p.p99_9, p.max
    )
}

/// `{prefix}{what} unavailable: {reason}` and a newline.
fn unavailable(prefix: &str, what: &str, a: &crate::model::schema::Avail) -> String {
    format!(
        "{prefix}{what} unavailable: {}\n",
        a.reason.as_deref().unwrap_or("?")
    )
}

const PCT_HEAD: [&str; 6] = ["count", "p50", "p90", "p99", "p99.9", "max"];

fn pct_head(first: &str) -> String {
    let [a, b, c, d, e, f] = PCT_HEAD;
    format!("  {first:<28} {a:>10} {b:>10} {c:>10} {d:>10} {e:>10} {f:>10}\n")
}

/// The summary as plain text that reads well in an email: aligned columns, one metric a line.
pub fn to_text(v: &Window) -> String {
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

/// Columns of `export --format csv`; fields of an event that are not here go to `extra`.
const CSV_COLUMNS: &[&str] = &[
    "ts_ns",
    "type",
    "pid",
    "tid",
    "cpu",
    "comm",
    "address",
    "ip",
    "error_code",
    "latency_ns",
    "alloc_pfn",
    "ret",
    "flags",
    "numa_node",
    "retries",
    "src_pfn",
    "dst_pfn",
    "mapping",
    "index",
    "copy_ns",
    "rc",
    "reason",
    "mode",
    "succeeded",
    "failed",
    "thp_succeeded",
    "thp_failed",
    "thp_split",
    "large_folio_split",
    "mem_node",
    "pages",
    "addr",
    "old_entry",
    "new_entry",
    "unmapped_ns",
    "order",
    "pmd",
    "event",
];

/// One event as an export row (`type` names the kind; rare tracepoints decoded).
fn export_row<'e>(e: &'e Event, h: &Header, tiers: &TierMap) -> ExportRow<'e> {
    match e {
        Event::Raw(r) => match h.rare.decode(r) {
            Some(re) => ExportRow::Rare(RareRow {
                kind: "rare".into(),
                entry: tiers.ras_entry(&re),
                pid: r.pid,
                cpu: r.cpu,
            }),
            None => ExportRow::Raw(RawRow {
                kind: "raw".into(),
                ts_ns: r.ts_ns,
                pid: r.pid,
                tp: r.tp,
            }),
        },
        other => ExportRow::Event(other),
    }
}

/// An export row as a JSON object, for the CSV columns and the Perfetto arguments.
fn event_json(e: &Event, h: &Header, tiers: &TierMap) -> Value {
    serde_json::to_value(export_row(e, h, tiers)).unwrap_or(Value::Null)
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

/// A closed pipe (`| head`) is a normal end.
fn quiet_pipe(r: Result<i32>) -> Result<i32> {
    match r {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other,
    }
}

/// `export --format perfetto`: events on per-CPU tracks, counters per recorded interval.
fn perfetto(
    mut src: crate::model::playback::Intervals,
    o: &ExportOpts,
    out: impl Write,
    name: &str,
) -> Result<i32> {
    let io = |e: std::io::Error| Error::io(name, e);
    let h = src.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    let mut w = crate::output::perfetto::PerfettoWriter::new(out, &h).map_err(io)?;
    while let Some(iv) =
        src.next_interval_each(|e| w.event(e, event_json(e, &h, &tiers)).map_err(io))?
    {
        w.counters(iv.t - iv.dt, iv.dt, &iv.totals, iv.drops.total())
            .map_err(io)?;
    }
    let truncated = src.truncated();
    w.finish(json!({
        "tool": "cxl-trace",
        "tool_version": h.tool_version,
        "kernel": h.kernel,
        "hostname": h.hostname,
        "scope": h.scope,
        "recording": o.file.display().to_string(),
        "truncated": truncated,
    }))
    .map_err(io)?;
    if truncated {
        eprintln!(
            "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): exported up to the last complete chunk",
            o.file.display()
        );
    }
    Ok(0)
}

/// The output of `export`: `-o` (created, never replaced) or stdout, and its name for errors.
fn export_sink(o: &ExportOpts) -> Result<(BufWriter<Box<dyn Write>>, String)> {
    let (sink, name): (Box<dyn Write>, String) = match &o.output {
        Some(p) => (
            Box::new(crate::model::recording::create_new_file(p)?),
            p.display().to_string(),
        ),
        None => (Box::new(std::io::stdout().lock()), "stdout".into()),
    };
    Ok((BufWriter::with_capacity(1 << 20, sink), name))
}

/// `cxl-trace export`. The recording is opened (and its header checked) before the output
/// is created.
pub fn export(o: &ExportOpts) -> Result<i32> {
    if o.format == ExportFormat::Perfetto {
        let src = crate::model::playback::Intervals::open(&o.file)?;
        let (out, name) = export_sink(o)?;
        return quiet_pipe(perfetto(src, o, out, &name));
    }
    let mut reader = crate::model::recording::open(&o.file)?;
    let h = reader.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    let (out, name) = export_sink(o)?;
    let io = |e: std::io::Error| Error::io(&name, e);
    let csv_err = |e: csv::Error| Error::Runtime(format!("{name}: {e}"));
    let fmt = o.format;
    // JSON lines or CSV (Perfetto returned above).
    let (mut json_out, mut csv_out) = if fmt == ExportFormat::Csv {
        (None, Some(csv::Writer::from_writer(out)))
    } else {
        (Some(out), None)
    };
    if let Some(w) = csv_out.as_mut() {
        let mut head: Vec<&str> = CSV_COLUMNS.to_vec();
        head.push("extra");
        w.write_record(&head).map_err(csv_err)?;
    }
    let written = crate::model::recording::for_each_event(&o.file, &mut reader, |e| {
        let v = event_json(e, &h, &tiers);
        if let Some(w) = json_out.as_mut() {
            writeln!(w, "{v}").map_err(io)?;
        }
        if let Some(w) = csv_out.as_mut() {
            let obj = v.as_object().cloned().unwrap_or_default();
            let mut row: Vec<String> = CSV_COLUMNS.iter().map(|c| cell(obj.get(*c))).collect();
            let extra: Map<String, Value> = obj
                .into_iter()
                .filter(|(k, _)| !CSV_COLUMNS.contains(&k.as_str()))
                .collect();
            row.push(if extra.is_empty() {
                String::new()
            } else {
                Value::Object(extra).to_string()
            });
            w.write_record(&row).map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(x) => io(x),
                other => Error::Runtime(format!("{name}: {other:?}")),
            })?;
        }
        Ok(())
    })
    .and_then(|()| {
        match (json_out, csv_out) {
            (Some(mut w), _) => w.flush(),
            (_, Some(mut w)) => w.flush(),
            _ => Ok(()),
        }
        .map_err(io)
    });
    // A closed pipe (`| head`) is a normal end.
    quiet_pipe(written.map(|()| 0))
}
