//! `export --format chrome-json`: a recording as a Chrome trace in the JSON trace event
//! format, which ui.perfetto.dev and chrome://tracing open.
//!
//! Layout of the trace:
//! - one process "CPUs" with a thread track per CPU: every event is placed on the CPU it
//!   happened on (faults and folio moves as instants, timed faults and migration batches as
//!   slices with their duration), its decoded fields as arguments;
//! - counter tracks, one value per recorded interval: faults/s, pages migrated and failed/s,
//!   promoted and demoted pages/s, ping-pong folios/s, NUMA hint faults/s, drops.
//!
//! Written as it is read: one event at a time, memory flat. Timestamps are microseconds since
//! the start of the recording.

use std::{collections::HashMap, io::Write};

use serde::Serialize;

use crate::{
    model::aggregate::Totals,
    model::event::{Event, FaultMode, MigrateStart},
    model::recording::Header,
    model::sample::Churn,
    model::schema::ExportRow,
};

/// One entry of the trace event format (only the members this writer uses).
#[derive(Serialize)]
struct TraceEvent<'a, A: Serialize> {
    /// Phase: `M` metadata, `i` instant, `X` complete slice, `C` counter.
    ph: &'static str,
    /// Scope of an instant: `t`, the thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'a str>,
    /// Microseconds since the start of the recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    /// Microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u32,
    tid: u32,
    args: A,
}

impl<'a, A: Serialize> TraceEvent<'a, A> {
    fn meta(name: &'a str, pid: u32, tid: u32, args: A) -> Self {
        Self {
            ph: "M",
            s: None,
            name,
            cat: None,
            ts: None,
            dur: None,
            pid,
            tid,
            args,
        }
    }
}

/// Arguments of a naming metadata entry.
#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

/// Arguments of a sorting metadata entry.
#[derive(Serialize)]
struct Sorted {
    sort_index: u16,
}

/// What the trace says about where it came from (`otherData`).
#[derive(Serialize)]
pub struct TraceInfo<'a> {
    /// Always `cxl-trace`.
    pub tool: &'static str,
    /// Version of the recorder.
    pub tool_version: &'a str,
    /// Kernel of the recording.
    pub kernel: &'a str,
    /// Host of the recording.
    pub hostname: &'a str,
    /// What was traced.
    pub scope: &'a str,
    /// The recording's file.
    pub recording: String,
    /// The recording ends inside a chunk.
    pub truncated: bool,
}

/// The counters of one recorded interval, per second (drops as a count), that both trace
/// formats draw as counter tracks.
pub struct IntervalRates {
    /// Faults per second.
    pub faults: f64,
    /// Pages migrated per second.
    pub migrated: f64,
    /// Pages that failed to migrate per second.
    pub failed: f64,
    /// Pages promoted per second.
    pub promoted: f64,
    /// Pages demoted per second.
    pub demoted: f64,
    /// Ping-pong folios per second.
    pub bounces: f64,
    /// NUMA hint faults per second.
    pub hint_faults: f64,
    /// Events dropped in the interval.
    pub dropped: f64,
}

impl IntervalRates {
    /// The rates of an interval of `dt` seconds.
    pub fn of(totals: &Totals, dt: f64, drops: u64) -> Self {
        let c = Churn::of(totals);
        let rate = |x: u64| if dt > 0.0 { x as f64 / dt } else { 0.0 };
        Self {
            faults: rate(totals.faults.total),
            migrated: rate(c.migrated),
            failed: rate(c.failed),
            promoted: rate(c.promoted()),
            demoted: rate(c.demoted()),
            bounces: rate(c.bounces),
            hint_faults: rate(c.hint_faults),
            dropped: drops as f64,
        }
    }
}

/// Name of the instant or slice an event becomes, and its category.
pub fn event_name(e: &Event, args: &ExportRow) -> (String, &'static str) {
    match e {
        Event::Fault(f) => (
            if f.mode == FaultMode::User {
                "fault user"
            } else {
                "fault kernel"
            }
            .into(),
            "fault",
        ),
        Event::FaultLatency(_) => ("fault (timed)".into(), "fault"),
        Event::MigrateStart(s) => (format!("migrate {}", s.reason.name()), "migrate"),
        Event::Migrate(m) => (format!("migrate {}", m.reason.name()), "migrate"),
        Event::FolioMigrate(_) => ("folio moved".into(), "migrate"),
        Event::MigrationPte(_) => ("folio remapped".into(), "migrate"),
        Event::NumaFault(_) => ("numa hint fault".into(), "numa"),
        Event::Decision(d) => (format!("promotion {}", d.verdict.name()), "numa"),
        Event::Demote(_) => ("demote batch".into(), "reclaim"),
        Event::Raw(r) => (
            match args {
                ExportRow::Rare(row) => row.entry.event.clone(),
                _ => format!("tracepoint {}", r.tp),
            },
            "ras",
        ),
    }
}

/// Where an event is drawn as an instant: its time and CPU. Decisions carry the destination
/// CPU when known, else (like demotion batches, which have none) CPU 0.
pub fn placement(e: &Event) -> (u64, u16) {
    match e {
        Event::Fault(f) => (f.ts_ns, f.cpu),
        Event::FaultLatency(f) => (f.ts_ns, f.cpu),
        Event::MigrateStart(m) => (m.ts_ns, m.cpu),
        Event::Migrate(m) => (m.ts_ns, m.cpu),
        Event::FolioMigrate(f) => (f.ts_ns, f.cpu),
        Event::MigrationPte(p) => (p.ts_ns, p.cpu),
        Event::NumaFault(n) => (n.ts_ns, n.cpu),
        Event::Decision(d) => (
            d.ts_ns,
            d.dst_cpu.and_then(|c| u16::try_from(c).ok()).unwrap_or(0),
        ),
        Event::Demote(d) => (d.ts_ns, 0),
        Event::Raw(r) => (r.ts_ns, r.cpu),
    }
}

/// Pseudo process id of the per-CPU tracks.
const CPUS_PID: u32 = 0;
/// Pseudo process id of the counter tracks.
const COUNTERS_PID: u32 = 1;

/// A streaming writer of one trace.
pub struct ChromeTraceWriter<W: Write> {
    out: W,
    start_ns: u64,
    first: bool,
    cpus_named: Vec<bool>,
    /// Open migration batches by thread: where and when they started.
    batches: HashMap<u32, MigrateStart>,
}

impl<W: Write> ChromeTraceWriter<W> {
    /// Starts the trace: the opening of the JSON object and the track names.
    pub fn new(mut out: W, h: &Header) -> std::io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        let mut w = Self {
            out,
            start_ns: h.start_monotonic_ns,
            first: true,
            cpus_named: Vec::new(),
            batches: HashMap::new(),
        };
        for (pid, name) in [(CPUS_PID, "CPUs"), (COUNTERS_PID, "cxl-trace counters")] {
            w.put(&TraceEvent::meta("process_name", pid, 0, Named { name }))?;
        }
        Ok(w)
    }

    fn put<T: Serialize>(&mut self, v: &T) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        Ok(())
    }

    /// Microseconds since the start.
    fn us(&self, ts_ns: u64) -> f64 {
        ts_ns.saturating_sub(self.start_ns) as f64 / 1000.0
    }

    /// The track of `cpu`, named on first use.
    fn track(&mut self, cpu: u16) -> std::io::Result<u32> {
        let i = usize::from(cpu);
        if self.cpus_named.len() <= i {
            self.cpus_named.resize(i + 1, false);
        }
        if !self.cpus_named[i] {
            self.cpus_named[i] = true;
            let tid = u32::from(cpu) + 1;
            let name = format!("CPU {cpu}");
            self.put(&TraceEvent::meta(
                "thread_name",
                CPUS_PID,
                tid,
                Named { name: &name },
            ))?;
            self.put(&TraceEvent::meta(
                "thread_sort_index",
                CPUS_PID,
                tid,
                Sorted { sort_index: cpu },
            ))?;
        }
        Ok(u32::from(cpu) + 1)
    }

    /// A blast radius: a global instant (a line across every track) at its event's time,
    /// the holders and their fates as arguments.
    pub fn blast(&mut self, b: &crate::model::schema::BlastRadius) -> std::io::Result<()> {
        let name = format!("blast radius of {}", b.cause);
        let tid = self.track(0)?;
        let ts = self.us(b.ts_ns);
        self.put(&TraceEvent {
            ph: "i",
            s: Some("g"),
            name: &name,
            cat: Some("ras"),
            ts: Some(ts),
            dur: None,
            pid: CPUS_PID,
            tid,
            args: b,
        })
    }

    fn instant(
        &mut self,
        name: &str,
        cat: &str,
        ts_ns: u64,
        cpu: u16,
        args: &ExportRow,
    ) -> std::io::Result<()> {
        let tid = self.track(cpu)?;
        let ts = self.us(ts_ns);
        self.put(&TraceEvent {
            ph: "i",
            s: Some("t"),
            name,
            cat: Some(cat),
            ts: Some(ts),
            dur: None,
            pid: CPUS_PID,
            tid,
            args,
        })
    }

    fn slice(
        &mut self,
        name: &str,
        cat: &str,
        start_ns: u64,
        dur_ns: u64,
        cpu: u16,
        args: &ExportRow,
    ) -> std::io::Result<()> {
        let tid = self.track(cpu)?;
        let ts = self.us(start_ns);
        self.put(&TraceEvent {
            ph: "X",
            s: None,
            name,
            cat: Some(cat),
            ts: Some(ts),
            dur: Some(dur_ns as f64 / 1000.0),
            pid: CPUS_PID,
            tid,
            args,
        })
    }

    /// One event, with its export row (as `export --format jsonl` writes it) as arguments.
    pub fn event(&mut self, e: &Event, args: &ExportRow) -> std::io::Result<()> {
        let (name, cat) = event_name(e, args);
        let (ts, cpu) = placement(e);
        match e {
            Event::FaultLatency(f) => {
                let start = f.ts_ns.saturating_sub(f.latency_ns);
                self.slice(&name, cat, start, f.latency_ns, f.cpu, args)
            }
            Event::MigrateStart(s) => {
                self.batches.insert(s.tid, *s);
                Ok(())
            }
            Event::Migrate(m) => match self.batches.remove(&m.tid) {
                Some(s) if s.ts_ns <= m.ts_ns => {
                    self.slice(&name, cat, s.ts_ns, m.ts_ns - s.ts_ns, s.cpu, args)
                }
                _ => self.instant(&name, cat, ts, cpu, args),
            },
            _ => self.instant(&name, cat, ts, cpu, args),
        }
    }

    /// Counter values of one recorded interval `[t0, t0 + dt]` (seconds since the start),
    /// as rates per second.
    pub fn counters(
        &mut self,
        t0: f64,
        dt: f64,
        totals: &Totals,
        drops: u64,
    ) -> std::io::Result<()> {
        let r = IntervalRates::of(totals, dt, drops);
        let ts = t0 * 1e6;
        let tracks: [(&str, &[(&str, f64)]); 6] = [
            ("faults/s", &[("faults", r.faults)]),
            (
                "pages migrated/s",
                &[("succeeded", r.migrated), ("failed", r.failed)],
            ),
            (
                "tier churn pages/s",
                &[("promoted", r.promoted), ("demoted", r.demoted)],
            ),
            ("ping-pong folios/s", &[("bounces", r.bounces)]),
            ("numa hint faults/s", &[("hint faults", r.hint_faults)]),
            ("events dropped", &[("dropped", r.dropped)]),
        ];
        for (name, values) in tracks {
            let args: std::collections::BTreeMap<&str, f64> = values.iter().copied().collect();
            self.put(&TraceEvent {
                ph: "C",
                s: None,
                name,
                cat: None,
                ts: Some(ts),
                dur: None,
                pid: COUNTERS_PID,
                tid: 0,
                args,
            })?;
        }
        Ok(())
    }

    /// Closes the trace (the batches still open are dropped: they never ended in the
    /// recording) and returns the writer.
    pub fn finish(mut self, other: &TraceInfo) -> std::io::Result<W> {
        self.out
            .write_all(b"\n],\"displayTimeUnit\":\"ns\",\"otherData\":")?;
        serde_json::to_writer(&mut self.out, other)?;
        self.out.write_all(b"}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}
