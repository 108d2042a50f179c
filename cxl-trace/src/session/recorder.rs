//! The recording sink: every record the run counts is written raw (after redaction), with a
//! snapshot of /proc/vmstat, per-node meminfo and the kernel-side counters once a second and
//! the run's counts at a clean end.

use std::{
    fs::File,
    io::{BufWriter, IsTerminal},
    path::PathBuf,
};

use crate::{
    error::{Error, Result},
    model::{
        recording::{ChunkKind, End, Header, NodeMeminfo, Snapshot, Writer},
        redact::{Key, Redactor},
        vmstat,
    },
    session::{Finish, Live, Sink, Tick},
};

/// The sink `top`'s loop writes into when recording.
pub struct Recorder {
    /// The writer.
    pub writer: Writer<BufWriter<File>>,
    /// Where.
    pub path: PathBuf,
    /// Redaction applied to every record.
    pub redaction: Redactor,
    /// Show a progress line on stderr.
    pub progress: bool,
    scratch: Vec<u8>,
    /// First write error: recording stops and the run ends with it ([`Recorder::failure`]).
    pub failed: Option<String>,
    /// Errors of the background `fdatasync` (writeback I/O errors that `write` cannot see).
    synced: Option<SyncThread>,
}

/// Flushes the recording to its device once a second on its own thread, so an I/O error that
/// appears only at writeback (a failing disk under a page-cache write) stops the recording
/// within about a second, without blocking the event loop on the disk.
struct SyncThread {
    error: std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SyncThread {
    fn start(file: &File) -> Option<Self> {
        use std::sync::{atomic::AtomicBool, Arc, Mutex};
        let f = file.try_clone().ok()?;
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, st) = (error.clone(), stop.clone());
        std::thread::Builder::new()
            .name("cxl-trace-sync".into())
            .spawn(move || {
                while !st.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if let Err(err) = f.sync_data() {
                        if let Ok(mut g) = e.lock() {
                            g.get_or_insert(err);
                        }
                        return;
                    }
                }
            })
            .ok()?;
        Some(Self { error, stop })
    }

    fn error(&self) -> Option<String> {
        self.error
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(ToString::to_string))
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Recorder {
    /// Writes one record, redacted as asked.
    pub fn event(&mut self, rec: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(rec);
        if !self.redaction.record(&mut self.scratch) {
            return;
        }
        if let Err(e) = self.writer.event(&self.scratch) {
            self.failed = Some(format!("{}: {e}", self.path.display()));
        }
    }

    /// Writes a snapshot chunk (its topology redacted as asked).
    pub fn snapshot(&mut self, ts: u64, s: &Snapshot) {
        let redacted;
        let s = if self.redaction.redacts() {
            let mut copy = s.clone();
            self.redaction.snapshot(&mut copy);
            redacted = copy;
            &redacted
        } else {
            s
        };
        self.chunk(ChunkKind::Snapshot, ts, s);
    }

    /// Writes the end chunk.
    pub fn end(&mut self, ts: u64, e: &End) {
        self.chunk(ChunkKind::End, ts, e);
    }

    fn chunk<T: serde::Serialize>(&mut self, kind: ChunkKind, ts: u64, v: &T) {
        if self.write_error().is_some() {
            return;
        }
        if let Err(e) = self.writer.json(kind, ts, v) {
            self.failed = Some(format!("{}: {e}", self.path.display()));
        }
    }

    /// The error that stopped the recording, if any: a failed write, or a writeback error the
    /// background sync saw (then no further byte is written).
    pub fn write_error(&mut self) -> Option<String> {
        if self.failed.is_none() {
            if let Some(e) = self.synced.as_ref().and_then(SyncThread::error) {
                self.failed = Some(format!("{}: {e}", self.path.display()));
            }
        }
        self.failed.clone()
    }

    /// One-line progress on stderr (when it is a terminal).
    pub fn show_progress(&self, elapsed_s: f64, drops: u64) {
        if self.progress {
            eprint!(
                "\r\x1b[Krecording {}: {:.0} s, {} events, {:.1} MiB, {} dropped",
                self.path.display(),
                elapsed_s,
                self.writer.events,
                self.writer.bytes as f64 / (1 << 20) as f64,
                drops
            );
        }
    }
}

/// Per-node MemTotal/MemFree/FilePages/AnonPages..., in KiB.
pub fn node_meminfo() -> NodeMeminfo {
    let mut out = NodeMeminfo::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("node") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path().join("meminfo")) else {
            continue;
        };
        let fields = text
            .lines()
            .filter_map(|line| {
                // "Node 0 MemFree:   123 kB"
                let mut parts = line.split_whitespace().skip(2);
                let (k, v) = (parts.next()?, parts.next()?);
                Some((k.trim_end_matches(':').to_string(), v.parse::<u64>().ok()?))
            })
            .collect();
        out.insert(name, fields);
    }
    out
}

/// The header fields only `record` knows; `top` fills in the rest once the probes are live.
pub struct RecordSpec {
    /// The open output.
    pub file: File,
    /// Its path.
    pub path: PathBuf,
    /// Whether to redact, and under which key.
    pub redact: Option<Key>,
    /// Keep kernel instruction pointers.
    pub kernel_ips: bool,
}

impl RecordSpec {
    /// Writes the header and returns the sink.
    pub fn start(self, mut header: Header) -> Result<Recorder> {
        let redaction = match self.redact {
            // The raw tracepoint formats come with the header: they say which bytes are what.
            Some(key) => Redactor::new(key, &header.rare),
            None => Redactor::plain(self.kernel_ips),
        };
        redaction.header(&mut header);
        let synced = SyncThread::start(&self.file);
        let writer = Writer::new(BufWriter::with_capacity(1 << 20, self.file), &header)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(Recorder {
            writer,
            path: self.path,
            redaction,
            progress: std::io::stderr().is_terminal(),
            scratch: Vec::with_capacity(512),
            failed: None,
            synced,
        })
    }
}

/// The error that ends a run whose recording could not be written (`what`: the file and why).
fn recording_stopped(what: impl std::fmt::Display) -> Error {
    Error::Runtime(format!(
        "recording stopped: {what}; the file reads back up to its last complete chunk"
    ))
}

impl Recorder {
    /// The first snapshot, at the instant the window opened.
    pub fn begin(&mut self, live: &Live) {
        let snap = Snapshot {
            t: 0.0,
            vmstat: live.vm_start.0.clone(),
            meminfo: node_meminfo(),
            drops: Default::default(),
            produced: live.tracer.produced(),
            topology: None,
            blast: Vec::new(),
        };
        self.snapshot(live.start_ns, &snap);
    }
}

impl Sink for Recorder {
    type Input = ();

    fn record(&mut self, raw: &[u8]) {
        self.event(raw);
    }

    fn failure(&mut self) -> Option<Error> {
        let failed = self.write_error()?;
        if self.progress {
            eprintln!();
        }
        Some(recording_stopped(failed))
    }

    fn interval(&mut self, tick: &Tick) -> Result<bool> {
        let snap = Snapshot {
            t: tick.t_s,
            vmstat: vmstat::read()?.0,
            meminfo: node_meminfo(),
            drops: tick.dropped_total.by_kind.clone(),
            produced: tick.tracer.produced(),
            topology: tick.topology.cloned(),
            blast: tick.blast.to_vec(),
        };
        self.snapshot(tick.now_ns, &snap);
        self.show_progress(tick.t_s, tick.dropped_total.total());
        Ok(true)
    }

    fn finish(mut self, end: &Finish, _open: bool) -> Result<()> {
        let run = end.agg.run();
        self.end(
            end.end_ns,
            &End {
                t: end.t_s,
                events: self.writer.events,
                faults_total: run.faults.total,
                pages_migrated: run.migrations.total().pages_succeeded,
                drops_total: end.dropped.total(),
                exit_code: end.exit_code,
                kernel_skipped_runs: end.summary.kernel_skipped_runs.clone().unwrap_or_default(),
            },
        );
        let (events, path) = (self.writer.events, self.path.clone());
        if self.progress {
            eprintln!();
        }
        if let Some(f) = self.write_error() {
            return Err(recording_stopped(f));
        }
        // The last chunk, then the data on the device: an error here is the recording's too.
        self.writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_data())
            .map_err(|e| recording_stopped(format!("{}: {e}", path.display())))?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        eprintln!(
            "cxl-trace: recorded {events} events in {:.1} s to {} ({size} bytes, {:.2} bytes/event): {} faults, {} pages migrated, {} dropped",
            end.t_s,
            path.display(),
            size as f64 / events.max(1) as f64,
            run.faults.total,
            run.migrations.total().pages_succeeded,
            end.dropped.total()
        );
        Ok(())
    }
}
