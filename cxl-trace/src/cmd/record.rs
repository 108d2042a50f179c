//! `cxl-trace record`: the `top` event loop with a recording sink instead of a display. Every
//! record the live run counts is written raw (after redaction), with a snapshot of /proc/vmstat,
//! per-node meminfo and the kernel-side drop counters once a second and the run's summary at a
//! clean end.

use std::{
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    path::PathBuf,
};

use serde_json::{json, Value};

use crate::{
    cli::{RecordOpts, TopOpts},
    error::{Error, Result},
    model::recording::{ChunkKind, Header, Writer},
    model::redact::{Key, Redactor},
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

    /// Writes a JSON chunk (a snapshot's topology redacted as asked).
    pub fn json(&mut self, kind: ChunkKind, ts: u64, v: &Value) {
        if self.failure().is_some() {
            return;
        }
        let redacted;
        let v = if self.redaction.redacts() {
            let mut copy = v.clone();
            self.redaction.snapshot(&mut copy);
            redacted = copy;
            &redacted
        } else {
            v
        };
        if let Err(e) = self.writer.json(kind, ts, v) {
            self.failed = Some(format!("{}: {e}", self.path.display()));
        }
    }

    /// The error that stopped the recording, if any: a failed write, or a writeback error the
    /// background sync saw (then no further byte is written).
    pub fn failure(&mut self) -> Option<String> {
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
pub fn node_meminfo() -> Value {
    let mut out = serde_json::Map::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/node") else {
        return Value::Object(out);
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("node") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path().join("meminfo")) else {
            continue;
        };
        let mut m = serde_json::Map::new();
        for line in text.lines() {
            // "Node 0 MemFree:   123 kB"
            let mut parts = line.split_whitespace().skip(2);
            if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                if let Ok(v) = v.parse::<u64>() {
                    m.insert(k.trim_end_matches(':').to_string(), json!(v));
                }
            }
        }
        out.insert(name, Value::Object(m));
    }
    Value::Object(out)
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

/// Runs `record`. Returns the exit code: the command's when one was given, else 0.
pub async fn run(o: RecordOpts) -> Result<i32> {
    // The key first: without randomness there is no redaction, and nothing is created.
    let redact = o.redact.then(Key::random).transpose()?;
    let file = crate::model::recording::create_output(&o.output, o.force)?;
    let spec = RecordSpec {
        file,
        path: o.output.clone(),
        redact,
        kernel_ips: o.kernel_ips,
    };
    let top = TopOpts {
        no_tui: true,
        interval: 1.0,
        top: 10,
        trace: o.trace,
    };
    let result = crate::cmd::top::session(top, Some(spec)).await;
    if result.is_err() {
        // Nothing was recorded if the probes never went live: leave no empty file behind.
        if std::fs::metadata(&o.output).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&o.output);
        }
    }
    let _ = std::io::stderr().flush();
    result
}
