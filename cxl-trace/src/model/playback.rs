//! Playing a recording back: its events into the same aggregator the live run fed, interval
//! by interval (one chunk in memory at a time), and the whole run's window with the
//! recording's facts. `report`, `replay`, `export` and `diff` all read recordings through it.

use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Result},
    model::{
        aggregate::{drops_since, Aggregator, Drops, Totals},
        event::decode,
        recording::{open, Chunk, End, Header, Reader, Snapshot},
        schema::{Host, LineKind, LogEntry, RecordingInfo, Window},
        tiers::TierMap,
        topology::{topology_change, Topology},
        vmstat::Vmstat,
    },
};

/// The /proc/vmstat of a snapshot.
pub fn vmstat_of(s: &Snapshot) -> Vmstat {
    Vmstat(s.vmstat.clone())
}

/// The drop counters of a snapshot (cumulative since the start of the recording).
pub fn drops_of(s: &Snapshot) -> Drops {
    Drops {
        by_kind: s.drops.clone(),
    }
}

/// The whole-run summary of a recording, as `top`'s summary line plus `host`, `topology`,
/// `probes` and `recording`.
pub fn summarize(path: &Path, top: usize) -> Result<Window> {
    Intervals::open(path)?.report(top)
}

/// A recording played into an aggregator, as the live run fed its own: events are ingested,
/// each snapshot ends an interval and applies a topology change it carries.
pub struct Playback {
    pub agg: Aggregator,
    topo: Topology,
    first: Option<Snapshot>,
    last: Option<Snapshot>,
}

impl Playback {
    pub fn new(h: &Header) -> Self {
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
    pub fn snapshot(&mut self, s: &Snapshot) -> (Totals, Option<Snapshot>) {
        if let Some(t) = s.topology.clone() {
            if let Some(change) = topology_change(&self.topo, &t) {
                self.agg.log(LogEntry::Topology(change));
            }
            self.agg.set_tiers(TierMap::from_topology(&t));
            self.topo = t;
        }
        for b in &s.blast {
            self.agg.log(LogEntry::Blast(b.clone()));
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
    pub fn whole(&mut self, kind: LineKind, end: Option<&End>, top: usize) -> Window {
        self.agg.end_interval();
        let t = end
            .map(|e| e.t)
            .or_else(|| self.last.as_ref().map(|l| l.t))
            .unwrap_or(0.0);
        let drops = self.last.as_ref().map(drops_of).unwrap_or_default();
        let vm = match (&self.first, &self.last) {
            (Some(a), Some(b)) => vmstat_of(b).delta(&vmstat_of(a)),
            _ => Default::default(),
        };
        self.agg
            .window(kind, t, t, self.agg.run(), &drops, &vm, top)
    }
}

/// What a report adds to the whole-run window: where and how the recording was taken, and
/// how much of it was read.
pub struct RecordingFacts<'a> {
    pub header: &'a Header,
    pub path: &'a Path,
    pub version: u16,
    pub events: u64,
    pub undecodable: u64,
    pub truncated: bool,
    pub end: Option<&'a End>,
}

impl RecordingFacts<'_> {
    /// Adds `host`, `topology`, `probes` and `recording` to a whole-run window.
    pub fn add_to(&self, w: &mut Window) {
        let h = self.header;
        w.host = Some(Host {
            hostname: h.hostname.clone(),
            kernel: h.kernel.clone(),
            boot_id: h.boot_id.clone(),
            tool_version: h.tool_version.clone(),
            command_line: h.command_line.clone(),
            target_command: h.target_command.clone(),
            scope: h.scope.clone(),
            start_unix_ns: h.start_unix_ns,
            redacted: h.redacted,
            privileges: h.privileges.clone(),
        });
        w.topology = Some(h.topology.clone());
        w.probes = Some(h.probes.clone());
        if let Some(e) = self.end.filter(|e| !e.kernel_skipped_runs.is_empty()) {
            w.kernel_skipped_runs = Some(e.kernel_skipped_runs.clone());
        }
        w.recording = Some(RecordingInfo {
            file: self.path.display().to_string(),
            format_version: self.version,
            events: self.events,
            undecodable: self.undecodable,
            truncated: self.truncated,
            clean_end: self.end.is_some(),
            exit_code: self.end.and_then(|e| e.exit_code),
            start_monotonic_ns: h.start_monotonic_ns,
        });
    }
}

/// `cxl-trace report`.
/// One recorded interval: what happened between two snapshots.
pub struct Interval {
    /// End of the interval, s since the start of the recording.
    pub t: f64,
    /// Length, s.
    pub dt: f64,
    /// Aggregated events.
    pub totals: Totals,
    /// Events dropped in the interval.
    pub drops: Drops,
    /// /proc/vmstat delta over the interval.
    pub vmstat: std::collections::BTreeMap<String, u64>,
    /// Blast radii settled in the interval.
    pub blast: Vec<crate::model::schema::BlastRadius>,
}

/// A recording read interval by interval.
pub struct Intervals {
    path: PathBuf,
    reader: Reader<BufReader<File>>,
    pb: Playback,
    /// The recording's header.
    pub header: Header,
    /// The end chunk, once read (absent if the run did not end cleanly).
    pub end: Option<End>,
    /// Records decoded.
    pub events: u64,
    /// Records that did not decode.
    pub undecodable: u64,
    done: bool,
}

impl Intervals {
    /// Opens a recording; errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        let reader = open(path)?;
        let header = reader.header.clone();
        Ok(Self {
            path: path.to_path_buf(),
            pb: Playback::new(&header),
            reader,
            header,
            end: None,
            events: 0,
            undecodable: 0,
            done: false,
        })
    }

    /// The next interval, or `None` at the end of the file.
    pub fn next_interval(&mut self) -> Result<Option<Interval>> {
        self.next_interval_each(|_| Ok(()))
    }

    /// The next interval, calling `f` for each of its events (after aggregating it).
    pub fn next_interval_each(
        &mut self,
        mut f: impl FnMut(&crate::model::event::Event) -> Result<()>,
    ) -> Result<Option<Interval>> {
        while !self.done {
            let chunk = self
                .reader
                .next_chunk()
                .map_err(|e| Error::Usage(format!("{}: {e}", self.path.display())))?;
            match chunk {
                None => self.done = true,
                Some(Chunk::Events(recs)) => {
                    for r in &recs {
                        match decode(r) {
                            Ok(e) => {
                                self.events += 1;
                                self.pb.agg.ingest(&e);
                                f(&e)?;
                            }
                            Err(_) => self.undecodable += 1,
                        }
                    }
                }
                Some(Chunk::End(v)) => self.end = Some(v),
                Some(Chunk::Snapshot(s)) => {
                    let (totals, prev) = self.pb.snapshot(&s);
                    // The first snapshot is taken at the start: no interval ends there.
                    let Some(p) = prev else { continue };
                    let (t0, t1) = (p.t, s.t);
                    return Ok(Some(Interval {
                        t: t1,
                        dt: (t1 - t0).max(0.0),
                        totals,
                        drops: drops_since(&drops_of(&s), &drops_of(&p)),
                        vmstat: vmstat_of(&s).delta(&vmstat_of(&p)),
                        blast: s.blast,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The file ended inside a chunk (cut off by a crash or kill).
    pub fn truncated(&self) -> bool {
        self.reader.truncated
    }

    /// The aggregator the intervals were fed to.
    pub fn agg(&self) -> &Aggregator {
        &self.pb.agg
    }

    /// The whole run (after the last interval) as `top`'s summary line, with the recording's
    /// facts as `report` gives them.
    pub fn summary(&mut self, top: usize) -> Window {
        let end = self.end.clone();
        let mut w = self.pb.whole(LineKind::Summary, end.as_ref(), top);
        self.facts(&mut w);
        w
    }

    fn facts(&self, w: &mut Window) {
        RecordingFacts {
            header: &self.header,
            path: &self.path,
            version: self.reader.version,
            events: self.events,
            undecodable: self.undecodable,
            truncated: self.reader.truncated,
            end: self.end.as_ref(),
        }
        .add_to(w);
    }

    /// Reads what is left and returns the whole-run report (`report --format json`). The
    /// aggregator then holds the whole run.
    pub fn report(&mut self, top: usize) -> Result<Window> {
        while self.next_interval()?.is_some() {}
        let end = self.end.clone();
        let mut w = self.pb.whole(LineKind::Report, end.as_ref(), top);
        self.facts(&mut w);
        Ok(w)
    }
}
