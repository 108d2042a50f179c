//! `export --format perfetto`: a recording as a Chrome/Perfetto trace in the JSON trace event
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

use serde_json::{json, Value};

use crate::{
    model::aggregate::Totals,
    model::event::{Event, FaultMode, MigrateStart},
    model::recording::Header,
    model::sample::Sample,
};

/// Pseudo process id of the per-CPU tracks.
const CPUS_PID: u32 = 0;
/// Pseudo process id of the counter tracks.
const COUNTERS_PID: u32 = 1;

/// A streaming writer of one trace.
pub struct PerfettoWriter<W: Write> {
    out: W,
    start_ns: u64,
    first: bool,
    cpus_named: Vec<bool>,
    /// Open migration batches by thread: where and when they started.
    batches: HashMap<u32, MigrateStart>,
    /// Trace events written.
    pub written: u64,
}

impl<W: Write> PerfettoWriter<W> {
    /// Starts the trace: the opening of the JSON object and the track names.
    pub fn new(mut out: W, h: &Header) -> std::io::Result<Self> {
        out.write_all(b"{\"traceEvents\":[\n")?;
        let mut w = Self {
            out,
            start_ns: h.start_monotonic_ns,
            first: true,
            cpus_named: Vec::new(),
            batches: HashMap::new(),
            written: 0,
        };
        for (pid, name) in [(CPUS_PID, "CPUs"), (COUNTERS_PID, "cxl-trace counters")] {
            w.put(
                &json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                "args": {"name": name}}),
            )?;
        }
        Ok(w)
    }

    fn put(&mut self, v: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        self.written += 1;
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
            self.put(&json!({"ph": "M", "name": "thread_name", "pid": CPUS_PID,
                "tid": u32::from(cpu) + 1, "args": {"name": format!("CPU {cpu}")}}))?;
            self.put(
                &json!({"ph": "M", "name": "thread_sort_index", "pid": CPUS_PID,
                "tid": u32::from(cpu) + 1, "args": {"sort_index": cpu}}),
            )?;
        }
        Ok(u32::from(cpu) + 1)
    }

    fn instant(
        &mut self,
        name: &str,
        cat: &str,
        ts_ns: u64,
        cpu: u16,
        args: Value,
    ) -> std::io::Result<()> {
        let tid = self.track(cpu)?;
        let ts = self.us(ts_ns);
        self.put(
            &json!({"ph": "i", "s": "t", "name": name, "cat": cat, "ts": ts,
            "pid": CPUS_PID, "tid": tid, "args": args}),
        )
    }

    fn slice(
        &mut self,
        name: &str,
        cat: &str,
        start_ns: u64,
        dur_ns: u64,
        cpu: u16,
        args: Value,
    ) -> std::io::Result<()> {
        let tid = self.track(cpu)?;
        let ts = self.us(start_ns);
        self.put(&json!({"ph": "X", "name": name, "cat": cat, "ts": ts,
            "dur": dur_ns as f64 / 1000.0, "pid": CPUS_PID, "tid": tid, "args": args}))
    }

    /// One event. `args` is its flat JSON (as `export --format jsonl` writes it).
    pub fn event(&mut self, e: &Event, args: Value) -> std::io::Result<()> {
        match e {
            Event::Fault(f) => {
                let name = format!(
                    "fault {}",
                    if f.mode == FaultMode::User {
                        "user"
                    } else {
                        "kernel"
                    }
                );
                self.instant(&name, "fault", f.ts_ns, f.cpu, args)
            }
            Event::FaultLatency(f) => self.slice(
                "fault (timed)",
                "fault",
                f.ts_ns.saturating_sub(f.latency_ns),
                f.latency_ns,
                f.cpu,
                args,
            ),
            Event::MigrateStart(s) => {
                self.batches.insert(s.tid, *s);
                Ok(())
            }
            Event::Migrate(m) => {
                let name = format!("migrate {}", m.reason.name());
                match self.batches.remove(&m.tid) {
                    Some(s) if s.ts_ns <= m.ts_ns => {
                        self.slice(&name, "migrate", s.ts_ns, m.ts_ns - s.ts_ns, s.cpu, args)
                    }
                    _ => self.instant(&name, "migrate", m.ts_ns, m.cpu, args),
                }
            }
            Event::FolioMigrate(f) => self.instant("folio moved", "migrate", f.ts_ns, f.cpu, args),
            Event::MigrationPte(p) => {
                self.instant("folio remapped", "migrate", p.ts_ns, p.cpu, args)
            }
            Event::NumaFault(n) => self.instant("numa hint fault", "numa", n.ts_ns, n.cpu, args),
            Event::Decision(d) => {
                // Decisions carry the destination CPU when known; else the first track.
                let cpu = d.dst_cpu.and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
                let name = format!("promotion {}", d.verdict.name());
                self.instant(&name, "numa", d.ts_ns, cpu, args)
            }
            Event::Demote(d) => self.instant("demote batch", "reclaim", d.ts_ns, 0, args),
            Event::Raw(r) => {
                let name = args
                    .get("event")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("tracepoint {}", r.tp), str::to_string);
                self.instant(&name, "ras", r.ts_ns, r.cpu, args)
            }
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
        let s = Sample::from_totals(totals, dt, drops);
        let rate = |x: u64| if dt > 0.0 { x as f64 / dt } else { 0.0 };
        let ts = t0 * 1e6;
        let tracks = [
            ("faults/s", json!({"faults": rate(s.faults)})),
            (
                "pages migrated/s",
                json!({"succeeded": rate(s.churn.migrated), "failed": rate(s.churn.failed)}),
            ),
            (
                "tier churn pages/s",
                json!({"promoted": rate(s.churn.promoted()), "demoted": rate(s.churn.demoted())}),
            ),
            (
                "ping-pong folios/s",
                json!({"bounces": rate(s.churn.bounces)}),
            ),
            (
                "numa hint faults/s",
                json!({"hint faults": rate(s.churn.hint_faults)}),
            ),
            ("events dropped", json!({"dropped": drops})),
        ];
        for (name, args) in tracks {
            self.put(
                &json!({"ph": "C", "name": name, "ts": ts, "pid": COUNTERS_PID,
                "tid": 0, "args": args}),
            )?;
        }
        Ok(())
    }

    /// Closes the trace (the batches still open are dropped: they never ended in the
    /// recording) and returns the writer.
    pub fn finish(mut self, other: Value) -> std::io::Result<W> {
        write!(
            self.out,
            "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{other}}}\n"
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}
