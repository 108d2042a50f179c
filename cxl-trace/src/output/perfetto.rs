//! `export --format perfetto`: a recording as a native Perfetto trace, the protobuf format
//! (`perfetto.protos.Trace`, a sequence of `TracePacket`s) that ui.perfetto.dev and
//! trace_processor read, built with Perfetto's own protos (the `perfetto_protos` crate).
//!
//! Layout of the trace (every track declared by a `TrackDescriptor` before its first event):
//! - a track per CPU ("CPU n"): every event as an instant on the CPU it happened on (faults,
//!   folio moves, remaps, NUMA hint faults, promotion decisions, demotion batches), its
//!   decoded fields as debug annotations;
//! - a track per process (`ProcessDescriptor`, named by its comm) with a track per thread
//!   (`ThreadDescriptor`): timed faults and migration batches as slices with their duration,
//!   on the thread that took them. A thread's slices nest (a NUMA hint fault contains the
//!   migration batch it started); one that would overlap another without nesting, or share
//!   an end with it (a lost event, or two CPUs' clocks), is written as an instant on its CPU
//!   instead, so that the trace stays well formed;
//! - "RAS, CXL and hotplug": RAS, CXL and hotplug events and blast radii as instants;
//! - counter tracks, one value per recorded interval: faults/s, pages migrated and failed/s,
//!   promoted and demoted pages/s, ping-pong folios/s, NUMA hint faults/s, events dropped.
//!
//! Timestamps are the kernel's monotonic clock in ns (what the probes read), written as the
//! trace's clock, so a cxl-trace export lines up with other traces of the same boot.
//! Written as it is read: one packet at a time, memory flat but for one entry per CPU,
//! process and thread seen.

use std::{
    collections::{HashMap, HashSet},
    io::Write,
};

use perfetto_protos::{
    counter_descriptor::CounterDescriptor,
    debug_annotation::DebugAnnotation,
    process_descriptor::ProcessDescriptor,
    thread_descriptor::ThreadDescriptor,
    trace::Trace,
    trace_packet::TracePacket,
    track_descriptor::TrackDescriptor,
    track_event::{track_event::Type, TrackEvent},
};
use protobuf::Message;
use serde_json::Value;

use crate::{
    model::aggregate::Totals,
    model::event::{Comm, Event, MigrateStart},
    model::recording::Header,
    model::schema::{BlastRadius, ExportRow},
    output::chrome_trace::{event_name, placement, IntervalRates, TraceInfo},
};

/// Slices remembered per thread to keep its track well formed: a thread's next slice
/// relates to its last few (the fault that contains a batch, the faults before it).
pub const SLICES_KEPT: usize = 16;

/// Whether `[a, b]` can share a track with `[c, d]`: apart, or one strictly inside the other
/// (equal ends would make the order of their ends ambiguous once sorted by time).
pub fn nests(a: u64, b: u64, c: u64, d: u64) -> bool {
    b < c || d < a || (a < c && d < b) || (c < a && b < d)
}

/// The one packet sequence of the trace (a writer's id; any non-zero value).
pub const SEQUENCE_ID: u32 = 1;
/// `TracePacket.sequence_flags`: SEQ_INCREMENTAL_STATE_CLEARED.
const SEQ_CLEARED: u32 = 1;

/// Track uuids: a kind in the high 32 bits, the CPU, pid, tid or index in the low ones.
pub mod uuid {
    /// The track of a CPU.
    pub fn cpu(cpu: u16) -> u64 {
        (1 << 32) | u64::from(cpu)
    }
    /// The track of a process.
    pub fn process(pid: u32) -> u64 {
        (2 << 32) | u64::from(pid)
    }
    /// The track of a thread.
    pub fn thread(tid: u32) -> u64 {
        (3 << 32) | u64::from(tid)
    }
    /// Counter track number `i` of [`super::COUNTERS`].
    pub fn counter(i: usize) -> u64 {
        (4 << 32) | i as u64
    }
    /// RAS, CXL and hotplug events.
    pub const RAS: u64 = 5 << 32;
    /// The recording itself: its start and end.
    pub const RECORDING: u64 = 6 << 32;
}

/// The counter tracks, in order, with their unit.
pub const COUNTERS: [(&str, &str); 8] = [
    ("faults/s", "faults/s"),
    ("pages migrated/s", "pages/s"),
    ("pages failed to migrate/s", "pages/s"),
    ("pages promoted/s", "pages/s"),
    ("pages demoted/s", "pages/s"),
    ("ping-pong folios/s", "folios/s"),
    ("numa hint faults/s", "faults/s"),
    ("events dropped", "events"),
];

/// A JSON value as a debug annotation named `name` (objects and arrays as their JSON text).
fn annotation(name: &str, v: &Value) -> Option<DebugAnnotation> {
    let mut a = DebugAnnotation::new();
    a.set_name(name.to_string());
    match v {
        Value::Null => return None,
        Value::Bool(b) => a.set_bool_value(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => a.set_uint_value(u),
            (_, Some(i), _) => a.set_int_value(i),
            (_, _, Some(f)) => a.set_double_value(f),
            _ => return None,
        },
        Value::String(s) => a.set_string_value(s.clone()),
        other => a.set_string_value(other.to_string()),
    }
    Some(a)
}

/// Every member of a serializable value as debug annotations.
fn annotations<T: serde::Serialize>(v: &T) -> Vec<DebugAnnotation> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m.iter().filter_map(|(k, v)| annotation(k, v)).collect(),
        _ => Vec::new(),
    }
}

/// A streaming writer of one native Perfetto trace.
pub struct PerfettoWriter<W: Write> {
    out: W,
    start_ns: u64,
    last_ns: u64,
    cpus: HashSet<u16>,
    /// Processes declared, with the name they were given.
    processes: HashMap<u32, Option<Comm>>,
    /// Threads declared, with their comm.
    threads: HashMap<u32, Comm>,
    /// Open migration batches by thread.
    batches: HashMap<u32, MigrateStart>,
    /// The latest slices on each thread's track (at most [`SLICES_KEPT`]).
    slices: HashMap<u32, Vec<(u64, u64)>>,
    ras_declared: bool,
}

impl<W: Write> PerfettoWriter<W> {
    /// Starts the trace: the recording's track and the counter tracks.
    pub fn new(out: W, h: &Header) -> std::io::Result<Self> {
        let mut w = Self {
            out,
            start_ns: h.start_monotonic_ns,
            last_ns: h.start_monotonic_ns,
            cpus: HashSet::new(),
            processes: HashMap::new(),
            threads: HashMap::new(),
            batches: HashMap::new(),
            slices: HashMap::new(),
            ras_declared: false,
        };
        let mut first = TracePacket::new();
        first.set_sequence_flags(SEQ_CLEARED);
        first.set_track_descriptor(named_track(
            uuid::RECORDING,
            &format!("cxl-trace recording ({}, {})", h.hostname, h.kernel),
        ));
        w.put(first)?;
        for (i, (name, unit)) in COUNTERS.iter().enumerate() {
            let mut t = named_track(uuid::counter(i), name);
            let mut c = CounterDescriptor::new();
            c.set_unit_name((*unit).to_string());
            t.counter = Some(c).into();
            w.describe(t)?;
        }
        let mut start = instant(uuid::RECORDING, "recording start", "recording");
        start.debug_annotations = annotations(&serde_json::json!({
            "tool_version": h.tool_version,
            "kernel": h.kernel,
            "hostname": h.hostname,
            "scope": h.scope,
        }));
        w.event(h.start_monotonic_ns, start)?;
        Ok(w)
    }

    fn put(&mut self, mut p: TracePacket) -> std::io::Result<()> {
        p.set_trusted_packet_sequence_id(SEQUENCE_ID);
        // A Trace of one packet encodes as that packet in field 1: the concatenation of
        // them is the whole trace.
        let mut t = Trace::new();
        t.packet.push(p);
        t.write_to_writer(&mut self.out)
            .map_err(std::io::Error::from)?;
        Ok(())
    }

    fn describe(&mut self, t: TrackDescriptor) -> std::io::Result<()> {
        let mut p = TracePacket::new();
        p.set_track_descriptor(t);
        self.put(p)
    }

    fn event(&mut self, ts_ns: u64, e: TrackEvent) -> std::io::Result<()> {
        let mut p = TracePacket::new();
        p.set_timestamp(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
        p.set_track_event(e);
        self.put(p)
    }

    /// The track of `cpu`, declared on first use.
    fn cpu_track(&mut self, cpu: u16) -> std::io::Result<u64> {
        if self.cpus.insert(cpu) {
            let mut t = named_track(uuid::cpu(cpu), &format!("CPU {cpu}"));
            t.set_sibling_order_rank(i32::from(cpu));
            self.describe(t)?;
        }
        Ok(uuid::cpu(cpu))
    }

    /// The process `pid`, declared on first sight and again when its name changes: named by
    /// its main thread's comm (`tid == pid`; an exec renames it), or another thread's until
    /// then.
    fn process(&mut self, pid: u32, tid: u32, comm: Option<&Comm>) -> std::io::Result<()> {
        let comm = comm.filter(|c| c.0[0] != 0);
        let rename = match (self.processes.get(&pid), comm) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(None), Some(_)) => true,
            (Some(Some(old)), Some(c)) if tid == pid => old != c,
            (Some(Some(_)), Some(_)) => false,
        };
        if !rename {
            return Ok(());
        }
        self.processes.insert(pid, comm.copied());
        let mut d = ProcessDescriptor::new();
        d.set_pid(pid as i32);
        if let Some(c) = comm {
            d.set_process_name(c.as_string());
        }
        let mut t = TrackDescriptor::new();
        t.set_uuid(uuid::process(pid));
        t.process = Some(d).into();
        self.describe(t)
    }

    /// The track of thread `tid` of `pid`, declared on first use and again when its comm
    /// changes (an exec).
    fn thread_track(&mut self, pid: u32, tid: u32, comm: Option<&Comm>) -> std::io::Result<u64> {
        self.process(pid, tid, comm)?;
        let known = self.threads.get(&tid);
        if known.is_none() || comm.is_some_and(|c| known.is_some_and(|k| k != c)) {
            self.threads.insert(tid, comm.copied().unwrap_or_default());
            let mut d = ThreadDescriptor::new();
            d.set_pid(pid as i32);
            d.set_tid(tid as i32);
            if let Some(c) = comm {
                d.set_thread_name(c.as_string());
            }
            let mut t = TrackDescriptor::new();
            t.set_uuid(uuid::thread(tid));
            t.set_parent_uuid(uuid::process(pid));
            t.thread = Some(d).into();
            self.describe(t)?;
        }
        Ok(uuid::thread(tid))
    }

    fn ras_track(&mut self) -> std::io::Result<u64> {
        if !self.ras_declared {
            self.ras_declared = true;
            self.describe(named_track(uuid::RAS, "RAS, CXL and hotplug"))?;
        }
        Ok(uuid::RAS)
    }

    /// A slice `[start, end]` on a thread's track, or an instant on `cpu` at `end` when it
    /// would not nest with the thread's latest slices.
    #[allow(clippy::too_many_arguments)]
    fn slice(
        &mut self,
        (pid, tid, comm): (u32, u32, Option<&Comm>),
        cpu: u16,
        start: u64,
        end: u64,
        name: &str,
        cat: &str,
        notes: Vec<DebugAnnotation>,
    ) -> std::io::Result<()> {
        let kept = self.slices.entry(tid).or_default();
        let fits = start <= end && kept.iter().all(|&(c, d)| nests(start, end, c, d));
        if fits {
            if kept.len() == SLICES_KEPT {
                kept.remove(0);
            }
            kept.push((start, end));
        } else {
            let track = self.cpu_track(cpu)?;
            let mut e = instant(track, name, cat);
            e.debug_annotations = notes;
            return self.event(end, e);
        }
        let track = self.thread_track(pid, tid, comm)?;
        let mut b = TrackEvent::new();
        b.set_type(Type::TYPE_SLICE_BEGIN);
        b.set_track_uuid(track);
        b.set_name(name.to_string());
        b.categories.push(cat.to_string());
        b.debug_annotations = notes;
        self.event(start, b)?;
        let mut x = TrackEvent::new();
        x.set_type(Type::TYPE_SLICE_END);
        x.set_track_uuid(track);
        self.event(end, x)
    }

    /// One event, with its export row (as `export --format jsonl` writes it) as debug
    /// annotations.
    pub fn write_event(&mut self, e: &Event, args: &ExportRow) -> std::io::Result<()> {
        let (name, cat) = event_name(e, args);
        let notes = || annotations(args);
        match e {
            Event::FaultLatency(f) => {
                let who = (f.pid, f.tid, Some(&f.comm));
                let start = f.ts_ns.saturating_sub(f.latency_ns);
                return self.slice(who, f.cpu, start, f.ts_ns, &name, cat, notes());
            }
            Event::MigrateStart(s) => {
                self.batches.insert(s.tid, *s);
                return Ok(());
            }
            Event::Migrate(m) => {
                if let Some(s) = self.batches.remove(&m.tid) {
                    let who = (m.pid, m.tid, Some(&m.comm));
                    return self.slice(who, s.cpu, s.ts_ns, m.ts_ns, &name, cat, notes());
                }
            }
            Event::Raw(r) => {
                let track = self.ras_track()?;
                let mut i = instant(track, &name, cat);
                i.debug_annotations = notes();
                i.debug_annotations.push(number("cpu", u64::from(r.cpu)));
                return self.event(r.ts_ns, i);
            }
            Event::Fault(f) => self.process(f.pid, f.tid, Some(&f.comm))?,
            _ => {}
        }
        let (ts, cpu) = placement(e);
        let track = self.cpu_track(cpu)?;
        let mut i = instant(track, &name, cat);
        i.debug_annotations = notes();
        self.event(ts, i)
    }

    /// A blast radius: an instant on the RAS track, holders and fates as annotations.
    pub fn blast(&mut self, b: &BlastRadius) -> std::io::Result<()> {
        let track = self.ras_track()?;
        let mut i = instant(track, &format!("blast radius of {}", b.cause), "ras");
        i.debug_annotations = annotations(b);
        self.event(b.ts_ns, i)
    }

    /// Counter values of one recorded interval `[t0, t0 + dt]` (seconds since the start), as
    /// rates per second at its start.
    pub fn counters(
        &mut self,
        t0: f64,
        dt: f64,
        totals: &Totals,
        drops: u64,
    ) -> std::io::Result<()> {
        let r = IntervalRates::of(totals, dt, drops);
        // In the order of COUNTERS.
        let values = [
            r.faults,
            r.migrated,
            r.failed,
            r.promoted,
            r.demoted,
            r.bounces,
            r.hint_faults,
            r.dropped,
        ];
        let ts = self.start_ns + (t0.max(0.0) * 1e9) as u64;
        for (i, v) in values.into_iter().enumerate() {
            let mut e = TrackEvent::new();
            e.set_type(Type::TYPE_COUNTER);
            e.set_track_uuid(uuid::counter(i));
            e.set_double_counter_value(v);
            self.event(ts, e)?;
        }
        Ok(())
    }

    /// Ends the trace with an instant carrying where it came from (the same members as the
    /// Chrome trace's `otherData`); the batches still open
    /// are dropped (they never ended in the recording). Returns the writer.
    pub fn finish(mut self, info: &TraceInfo) -> std::io::Result<W> {
        let mut end = instant(uuid::RECORDING, "recording end", "recording");
        end.debug_annotations = annotations(info);
        let at = self.last_ns;
        self.event(at, end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn named_track(uuid: u64, name: &str) -> TrackDescriptor {
    let mut t = TrackDescriptor::new();
    t.set_uuid(uuid);
    t.set_name(name.to_string());
    t
}

fn instant(track: u64, name: &str, cat: &str) -> TrackEvent {
    let mut e = TrackEvent::new();
    e.set_type(Type::TYPE_INSTANT);
    e.set_track_uuid(track);
    e.set_name(name.to_string());
    e.categories.push(cat.to_string());
    e
}

fn number(name: &str, v: u64) -> DebugAnnotation {
    let mut a = DebugAnnotation::new();
    a.set_name(name.to_string());
    a.set_uint_value(v);
    a
}

#[cfg(test)]
mod tests;
