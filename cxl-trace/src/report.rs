//! Reading recordings back: `report` (the whole-run summary) and `export` (every event).
//! Both stream: one chunk in memory at a time.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::Path,
};

use serde_json::{json, Map, Value};

use crate::{
    aggregate::{Aggregator, Drops, Totals},
    cli::{ExportFormat, ExportOpts, ReportFormat, ReportOpts},
    error::{Error, Result},
    event::{decode, Event},
    recording::{Chunk, Header, Reader},
    tiers::TierMap,
    topology::Topology,
    vmstat::Vmstat,
};

/// Opens a recording; every failure names the file.
pub fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
    // An input that cannot be opened is bad input (exit 2), like one that is not a recording.
    let f = File::open(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Reader::new(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Calls `f` for every decoded event, in file order (undecodable records are skipped).
pub fn for_each_event(
    path: &Path,
    reader: &mut Reader<BufReader<File>>,
    mut f: impl FnMut(&Event) -> Result<()>,
) -> Result<()> {
    while let Some(chunk) = reader
        .next_chunk()
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
    {
        if let Chunk::Events(recs) = chunk {
            for r in &recs {
                if let Ok(e) = decode(r) {
                    f(&e)?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn vmstat_of(v: &Value) -> Vmstat {
    Vmstat(
        v.get("vmstat")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The drop counters of a snapshot (cumulative since the start of the recording).
pub(crate) fn drops_of(v: &Value) -> Drops {
    Drops {
        by_kind: v["drops"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A recording played into an aggregator, as the live run fed its own: events are ingested,
/// each snapshot ends an interval and applies a topology change it carries.
pub(crate) struct Playback {
    pub(crate) agg: Aggregator,
    topo: Topology,
    first: Option<Value>,
    last: Option<Value>,
}

impl Playback {
    pub(crate) fn new(h: &Header) -> Self {
        Self {
            agg: Aggregator::with_context(
                TierMap::from_topology(&h.topology),
                h.rare.clone(),
                h.availability.clone(),
            ),
            topo: h.topology.clone(),
            first: None,
            last: None,
        }
    }

    /// Applies a snapshot; returns the interval it ends and the snapshot before it.
    pub(crate) fn snapshot(&mut self, s: &Value) -> (Totals, Option<Value>) {
        if let Some(t) = s
            .get("topology")
            .and_then(|t| serde_json::from_value::<Topology>(t.clone()).ok())
        {
            if let Some(change) = crate::top::topology_change(&self.topo, &t) {
                self.agg.log(change);
            }
            self.agg.set_tiers(TierMap::from_topology(&t));
            self.topo = t;
        }
        let iv = self.agg.end_interval();
        if self.first.is_none() {
            self.first = Some(s.clone());
        }
        (iv, self.last.replace(s.clone()))
    }

    /// Ends the last interval and returns the whole run's JSON window of `kind`: its length
    /// (from the end chunk, else the last snapshot), drops and vmstat deltas between the first
    /// and last snapshots.
    pub(crate) fn whole(&mut self, kind: &str, end: Option<&Value>, top: usize) -> Value {
        self.agg.end_interval();
        let t = end
            .and_then(|e| e["t"].as_f64())
            .or_else(|| self.last.as_ref().and_then(|l| l["t"].as_f64()))
            .unwrap_or(0.0);
        let drops = self.last.as_ref().map(drops_of).unwrap_or_default();
        let vm = match (&self.first, &self.last) {
            (Some(a), Some(b)) => vmstat_of(b).delta(&vmstat_of(a)),
            _ => Default::default(),
        };
        self.agg
            .window_json(kind, t, t, self.agg.run(), &drops, &vm, top)
    }
}

/// The whole-run summary of a recording, as `top`'s summary line plus `host`, `topology`,
/// `probes` and `recording`.
pub fn summarize(path: &Path, top: usize) -> Result<Value> {
    crate::replay::Intervals::open(path)?.report(top)
}

/// What a report adds to the whole-run window: where and how the recording was taken, and
/// how much of it was read.
pub(crate) struct RecordingFacts<'a> {
    pub(crate) header: &'a Header,
    pub(crate) path: &'a Path,
    pub(crate) version: u16,
    pub(crate) events: u64,
    pub(crate) undecodable: u64,
    pub(crate) truncated: bool,
    pub(crate) end: Option<&'a Value>,
}

impl RecordingFacts<'_> {
    /// Adds `host`, `topology`, `probes` and `recording` to a whole-run window.
    pub(crate) fn add_to(&self, v: &mut Value) {
        let h = self.header;
        let Value::Object(m) = v else {
            return;
        };
        m.insert(
            "host".into(),
            json!({
                "hostname": h.hostname,
                "kernel": h.kernel,
                "boot_id": h.boot_id,
                "tool_version": h.tool_version,
                "command_line": h.command_line,
                "target_command": h.target_command,
                "scope": h.scope,
                "start_unix_ns": h.start_unix_ns,
                "redacted": h.redacted,
                "privileges": h.privileges,
            }),
        );
        m.insert(
            "topology".into(),
            serde_json::to_value(&h.topology).unwrap_or(Value::Null),
        );
        m.insert(
            "probes".into(),
            serde_json::to_value(&h.probes).unwrap_or(Value::Null),
        );
        m.insert(
            "recording".into(),
            json!({
                "file": self.path.display().to_string(),
                "format_version": self.version,
                "events": self.events,
                "undecodable": self.undecodable,
                "truncated": self.truncated,
                "clean_end": self.end.is_some(),
                "exit_code": self.end.and_then(|e| e.get("exit_code").cloned()),
            }),
        );
    }
}

/// `cxl-trace report`.
pub fn run(o: &ReportOpts) -> Result<i32> {
    let v = summarize(&o.file, o.top)?;
    let out = match o.format {
        ReportFormat::Json => format!("{v:#}\n"),
        ReportFormat::Text => to_text(&v),
    };
    crate::top::write_stdout(out.as_bytes())?;
    if v["recording"]["truncated"] == true {
        eprintln!(
            "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): reported up to the last complete chunk",
            o.file.display()
        );
    }
    Ok(0)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn pct_line(name: &str, p: &Value) -> String {
    format!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        name,
        u(&p["count"]),
        u(&p["p50"]),
        u(&p["p90"]),
        u(&p["p99"]),
        u(&p["p99_9"]),
        u(&p["max"])
    )
}

/// The summary as plain text that reads well in an email: aligned columns, one metric a line.
pub fn to_text(v: &Value) -> String {
    let mut s = String::new();
    let h = &v["host"];
    let r = &v["recording"];
    s += &format!(
        "cxl-trace report of {}\n\n",
        r["file"].as_str().unwrap_or("")
    );
    s += &format!(
        "  host        {}, kernel {}, cxl-trace {}\n",
        h["hostname"].as_str().unwrap_or("?"),
        h["kernel"].as_str().unwrap_or("?"),
        h["tool_version"].as_str().unwrap_or("?")
    );
    s += &format!(
        "  scope       {}; {:.1} s; {} events; {} dropped{}{}\n",
        h["scope"].as_str().unwrap_or("?"),
        v["interval_s"].as_f64().unwrap_or(0.0),
        u(&r["events"]),
        u(&v["drops"]["total"]),
        if r["truncated"] == true {
            "; TRUNCATED (cut off)"
        } else {
            ""
        },
        if u(&v["drops"]["total"]) > 0 {
            "; counts are incomplete"
        } else {
            ""
        },
    );
    let live = v["probes"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|p| p["status"] == "live").count());
    s += &format!("  probes      {live} live\n");
    let f = &v["faults"];
    s += &format!(
        "\nFaults        {} total, {} user, {} kernel\n",
        u(&f["total"]),
        u(&f["user"]),
        u(&f["kernel"])
    );
    if let Some(by) = f["by_tier"].as_object() {
        for (t, n) in by {
            s += &format!("  {:<28} {:>10}\n", t, u(n));
        }
    }
    let fl = &v["fault_latency"];
    if fl["available"] == false {
        s += &format!(
            "\nFault latency unavailable: {}\n",
            fl["reason"].as_str().unwrap_or("?")
        );
    } else if let Some(by) = fl["by_tier"].as_object() {
        s += &format!(
            "\nFault latency (ns)\n  {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            "tier / class", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (tier, classes) in by {
            if let Some(c) = classes.as_object() {
                for (class, p) in c {
                    s += &pct_line(&format!("{tier} {class}"), p);
                }
            }
        }
    }
    let m = &v["migrations"];
    s += &format!(
        "\nMigrations    {} batches, {} pages moved, {} failed\n  {:<28} {:>10} {:>10} {:>10}\n",
        u(&m["batches"]),
        u(&m["pages_succeeded"]),
        u(&m["pages_failed"]),
        "reason",
        "batches",
        "pages",
        "failed"
    );
    if let Some(by) = m["by_reason"].as_object() {
        for (reason, x) in by {
            s += &format!(
                "  {:<28} {:>10} {:>10} {:>10}\n",
                reason,
                u(&x["batches"]),
                u(&x["pages_succeeded"]),
                u(&x["pages_failed"])
            );
        }
    }
    for dir in ["promotions", "demotions"] {
        s += &format!("  {:<28} {:>10}\n", dir, u(&m[dir]["pages"]));
        if let Some(by) = m[dir]["by_cause"].as_object() {
            for (c, n) in by {
                s += &format!("    {:<26} {:>10}\n", c, u(n));
            }
        }
    }
    if let Some(pairs) = m["tier_pairs"].as_object() {
        s += "  tier pairs (pages)\n";
        for (p, n) in pairs {
            s += &format!("    {:<26} {:>10}\n", p, u(n));
        }
    }
    let d = &v["promotion_decisions"];
    if d["available"] == true {
        s += &format!(
            "\nPromotion decisions  {} approved, {} refused\n",
            u(&d["approved"]),
            u(&d["refused_total"])
        );
        if let Some(by) = d["refused"].as_object() {
            for (c, n) in by {
                s += &format!("  refused: {:<19} {:>10}\n", c, u(n));
            }
        }
    }
    let pp = &v["pingpong"];
    s += &format!(
        "\nPing-pong     {} folios bounced ({})\n",
        u(&pp["bounces"]),
        match pp["pages"].as_u64() {
            Some(p) => format!("{p} base pages"),
            None => format!(
                "base pages unknown: {} folios of unknown size",
                u(&pp["folios_of_unknown_size"])
            ),
        }
    );
    if u(&pp["bounces"]) > 0 {
        s += &pct_line("time stayed (ns)", &pp["residency_ns"]);
    }
    if let Some(procs) = v["processes"].as_array() {
        s += &format!(
            "\nTop processes\n  {:>8} {:<16} {:>10} {:>10} {:>10} {:>10}\n",
            "pid", "comm", "faults", "hint", "promoted", "demoted"
        );
        for p in procs {
            s += &format!(
                "  {:>8} {:<16} {:>10} {:>10} {:>10} {:>10}\n",
                u(&p["pid"]),
                p["comm"].as_str().unwrap_or(""),
                u(&p["faults"]),
                u(&p["hint_faults"]),
                u(&p["promoted"]),
                u(&p["demoted"])
            );
        }
    }
    if let Some(counts) = v["events_log"]["counts"].as_object() {
        if !counts.is_empty() {
            s += "\nRAS and hotplug events\n";
            for (k, n) in counts {
                s += &format!("  {:<28} {:>10}\n", k, u(n));
            }
        }
    }
    if let Some(vm) = v["vmstat_delta"].as_object() {
        s += &format!(
            "\n/proc/vmstat over the recording\n  {:<28} {:>10}\n",
            "counter", "delta"
        );
        for (k, n) in vm {
            if u(n) > 0 {
                s += &format!("  {:<28} {:>10}\n", k, u(n));
            }
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

/// One event as a flat JSON object (`type` names the kind; rare tracepoints decoded).
fn event_json(e: &Event, h: &Header, tiers: &TierMap) -> Value {
    match e {
        Event::Raw(r) => match h.rare.decode(r) {
            Some(re) => {
                let mut v = re.to_json(&tiers.pfns);
                if let Value::Object(m) = &mut v {
                    m.insert("type".into(), json!("rare"));
                    m.insert("pid".into(), json!(r.pid));
                    m.insert("cpu".into(), json!(r.cpu));
                }
                v
            }
            None => json!({"type": "raw", "ts_ns": r.ts_ns, "pid": r.pid, "tp": r.tp}),
        },
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
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
    mut src: crate::replay::Intervals,
    o: &ExportOpts,
    out: impl Write,
    name: &str,
) -> Result<i32> {
    let io = |e: std::io::Error| Error::io(name, e);
    let h = src.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    let mut w = crate::perfetto::PerfettoWriter::new(out, &h).map_err(io)?;
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
            Box::new(crate::record::create_new_file(p)?),
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
        let src = crate::replay::Intervals::open(&o.file)?;
        let (out, name) = export_sink(o)?;
        return quiet_pipe(perfetto(src, o, out, &name));
    }
    let mut reader = open(&o.file)?;
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
    let written = for_each_event(&o.file, &mut reader, |e| {
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
