//! `cxl-trace export`: every event of a recording as JSON lines, CSV, a native Perfetto trace
//! or a Chrome JSON trace.
//! Streams: one chunk in memory at a time.

use std::io::{BufWriter, Write};

#[cfg(feature = "fleet")]
use crate::output::parquet::{ParquetTable, EVENT_COLUMNS, INTERVAL_COLUMNS};
#[cfg(feature = "perfetto")]
use crate::output::perfetto::PerfettoWriter;

use serde_json::{Map, Value};

use crate::{
    cli::{ExportFormat, ExportOpts},
    error::{Error, Result},
    model::{event::Event, schema::ExportRow, tiers::TierMap},
    output::{
        chrome_trace::{self, ChromeTraceWriter},
        export::{cell, event_json, export_row, CSV_COLUMNS},
    },
};

/// A closed pipe (`| head`) is a normal end.
fn quiet_pipe(r: Result<i32>) -> Result<i32> {
    match r {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other,
    }
}

/// One of the two trace writers.
enum TraceOut<W: Write> {
    #[cfg(feature = "perfetto")]
    Native(PerfettoWriter<W>),
    Chrome(ChromeTraceWriter<W>),
}

impl<W: Write> TraceOut<W> {
    fn event(&mut self, e: &Event, row: &ExportRow) -> std::io::Result<()> {
        match self {
            #[cfg(feature = "perfetto")]
            Self::Native(w) => w.write_event(e, row),
            Self::Chrome(w) => w.event(e, row),
        }
    }
}

/// `export --format perfetto|chrome-json`: events on per-CPU (and, natively, per-thread)
/// tracks, counters per recorded interval.
fn trace(
    mut src: crate::model::playback::Intervals,
    o: &ExportOpts,
    out: impl Write,
    name: &str,
) -> Result<i32> {
    let io = |e: std::io::Error| Error::io(name, e);
    let h = src.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    let mut w =
        match o.format {
            #[cfg(feature = "perfetto")]
            ExportFormat::Perfetto => TraceOut::Native(PerfettoWriter::new(out, &h).map_err(io)?),
            #[cfg(not(feature = "perfetto"))]
            ExportFormat::Perfetto => return Err(Error::Runtime(
                "this cxl-trace was built without its `perfetto` feature: use --format chrome-json"
                    .into(),
            )),
            _ => TraceOut::Chrome(ChromeTraceWriter::new(out, &h).map_err(io)?),
        };
    while let Some(iv) =
        src.next_interval_each(|e| w.event(e, &export_row(e, &h, &tiers)).map_err(io))?
    {
        let (t0, drops) = (iv.t - iv.dt, iv.drops.total());
        match &mut w {
            #[cfg(feature = "perfetto")]
            TraceOut::Native(w) => w.counters(t0, iv.dt, &iv.totals, drops),
            TraceOut::Chrome(w) => w.counters(t0, iv.dt, &iv.totals, drops),
        }
        .map_err(io)?;
        for b in &iv.blast {
            match &mut w {
                #[cfg(feature = "perfetto")]
                TraceOut::Native(w) => w.blast(b),
                TraceOut::Chrome(w) => w.blast(b),
            }
            .map_err(io)?;
        }
    }
    let truncated = src.truncated();
    let info = chrome_trace::TraceInfo {
        tool: "cxl-trace",
        tool_version: &h.tool_version,
        kernel: &h.kernel,
        hostname: &h.hostname,
        scope: &h.scope,
        recording: o.file.display().to_string(),
        truncated,
    };
    match w {
        #[cfg(feature = "perfetto")]
        TraceOut::Native(w) => w.finish(&info).map(drop),
        TraceOut::Chrome(w) => w.finish(&info).map(drop),
    }
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

#[cfg(feature = "fleet")]
/// `export --format parquet -o DIR`: `DIR/events.parquet` and `DIR/intervals.parquet`, in
/// one pass over the recording.
fn parquet(o: &ExportOpts) -> Result<i32> {
    let Some(dir) = &o.output else {
        return Err(Error::Usage(
            "--format parquet writes two files: give the directory to create with -o DIR".into(),
        ));
    };
    let mut src = crate::model::playback::Intervals::open(&o.file)?;
    let h = src.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    std::fs::create_dir(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let header = serde_json::to_string(&h).map_err(|e| Error::Runtime(e.to_string()))?;
    let open = |name: &str, typed, rest| {
        let path = dir.join(name);
        let file = crate::model::recording::create_new_file(&path)?;
        ParquetTable::new(
            BufWriter::with_capacity(1 << 20, file),
            "cxl_trace",
            typed,
            rest,
            &header,
        )
        .map_err(|e| Error::io(path.display().to_string(), e))
    };
    let mut events = open("events.parquet", EVENT_COLUMNS, "extra")?;
    let mut intervals = open("intervals.parquet", INTERVAL_COLUMNS, "document")?;
    let io = |name: &str, e: std::io::Error| Error::io(dir.join(name).display().to_string(), e);
    let (host, kernel) = (h.hostname.as_str(), h.kernel.as_str());
    while let Some(iv) = src.next_interval_each(|e| {
        let v = event_json(e, &h, &tiers);
        let obj = v.as_object().cloned().unwrap_or_default();
        events
            .row(host, kernel, &obj, None)
            .map_err(|e| io("events.parquet", e))
    })? {
        let w = src.agg().window(
            crate::model::schema::LineKind::Interval,
            iv.t,
            iv.dt,
            &iv.totals,
            &iv.drops,
            &iv.vmstat,
            10,
        );
        let row = crate::output::parquet::interval_row(&iv.totals, iv.t, iv.dt, iv.drops.total());
        let json = serde_json::to_string(&w).map_err(|e| Error::Runtime(e.to_string()))?;
        intervals
            .row(host, kernel, &row, Some(json))
            .map_err(|e| io("intervals.parquet", e))?;
    }
    for (name, t) in [("events.parquet", events), ("intervals.parquet", intervals)] {
        t.finish()
            .and_then(|mut w| w.flush().and_then(|()| w.get_ref().sync_all()))
            .map_err(|e| io(name, e))?;
    }
    if src.truncated() {
        eprintln!(
            "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): exported up to the last complete chunk",
            o.file.display()
        );
    }
    Ok(0)
}

/// `cxl-trace export`. The recording is opened (and its header checked) before the output
/// is created.
pub fn run(o: &ExportOpts) -> Result<i32> {
    if o.format == ExportFormat::Parquet {
        #[cfg(feature = "fleet")]
        return parquet(o);
        #[cfg(not(feature = "fleet"))]
        return Err(Error::Runtime(
            "this cxl-trace was built without its `fleet` feature: no Parquet".into(),
        ));
    }
    if matches!(o.format, ExportFormat::Perfetto | ExportFormat::ChromeJson) {
        let src = crate::model::playback::Intervals::open(&o.file)?;
        let (out, name) = export_sink(o)?;
        return quiet_pipe(trace(src, o, out, &name));
    }
    let mut reader = crate::model::recording::open(&o.file)?;
    let h = reader.header.clone();
    let tiers = TierMap::from_topology(&h.topology);
    let (out, name) = export_sink(o)?;
    let io = |e: std::io::Error| Error::io(&name, e);
    let csv_err = |e: csv::Error| Error::Runtime(format!("{name}: {e}"));
    let fmt = o.format;
    // JSON lines or CSV (the traces returned above).
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
