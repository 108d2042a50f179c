//! `cxl-trace record`: the `top` event loop with a recording sink instead of a display. Every
//! record the live run counts is written raw (after redaction), with a snapshot of /proc/vmstat,
//! per-node meminfo and the kernel-side drop counters once a second and the run's summary at a
//! clean end.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, IsTerminal, Write},
    mem::offset_of,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use cxl_trace_common::{
    kind, EventHeader, FaultEvent, FaultLatencyEvent, FolioMigrateEvent, MigrateEvent,
    MigrateStartEvent, MigrationPteEvent, COMM_LEN,
};
use serde_json::{json, Value};

use crate::{
    cli::{RecordOpts, TopOpts},
    error::{Error, Result},
    recording::{ChunkKind, Header, Writer},
};

/// What `--redact` and `--kernel-ips` change in each record before it is written.
#[derive(Clone, Copy, Debug)]
pub struct Redaction {
    /// Hash process names and zero virtual addresses and instruction pointers.
    pub redact: bool,
    /// Keep kernel instruction pointers.
    pub kernel_ips: bool,
    /// Secret per recording: hashed names cannot be matched against a dictionary by someone
    /// who only has the file, yet stay consistent within it.
    pub salt: u64,
}

fn zero(rec: &mut [u8], off: usize, len: usize) {
    if let Some(b) = rec.get_mut(off..off + len) {
        b.fill(0);
    }
}

/// A hashed name: `h` and 14 hex digits, NUL-terminated, the size of a `comm`.
pub fn hash_name(salt: u64, name: &[u8]) -> [u8; COMM_LEN] {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&name[..end]);
    let a = h.finalize();
    let mut h2 = crc32fast::Hasher::new();
    h2.update(&name[..end]);
    h2.update(&salt.rotate_left(17).to_le_bytes());
    let b = h2.finalize();
    let digits = format!("h{:08x}{:06x}", a, b & 0x00ff_ffff);
    let mut out = [0u8; COMM_LEN];
    out[..15].copy_from_slice(&digits.as_bytes()[..15]);
    out
}

fn hash_comm(rec: &mut [u8], off: usize, salt: u64) {
    if let Some(b) = rec.get_mut(off..off + COMM_LEN) {
        let h = hash_name(salt, b);
        b.copy_from_slice(&h);
    }
}

/// Applies the redaction to one raw record in place (pure); false when the record must not be
/// written at all.
pub fn redact_record(rec: &mut [u8], r: &Redaction) -> bool {
    let k = rec
        .get(offset_of!(EventHeader, kind)..offset_of!(EventHeader, kind) + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    if k == kind::FAULT_KERNEL && !r.kernel_ips {
        zero(rec, offset_of!(FaultEvent, ip), 8);
    }
    if !r.redact {
        return true;
    }
    match k {
        kind::FAULT_USER | kind::FAULT_KERNEL => {
            zero(rec, offset_of!(FaultEvent, address), 8);
            zero(rec, offset_of!(FaultEvent, ip), 8);
            hash_comm(rec, offset_of!(FaultEvent, comm), r.salt);
        }
        kind::FAULT_LATENCY => {
            zero(rec, offset_of!(FaultLatencyEvent, address), 8);
            hash_comm(rec, offset_of!(FaultLatencyEvent, comm), r.salt);
        }
        kind::MIGRATE_START => hash_comm(rec, offset_of!(MigrateStartEvent, comm), r.salt),
        kind::MIGRATE => hash_comm(rec, offset_of!(MigrateEvent, comm), r.salt),
        // mapping is a kernel pointer; index alone still keys ping-pong within the file.
        kind::FOLIO_MIGRATE => zero(rec, offset_of!(FolioMigrateEvent, mapping), 8),
        kind::MIGRATION_PTE => zero(rec, offset_of!(MigrationPteEvent, addr), 8),
        // Raw rare tracepoints (RAS, CXL, NUMA task moves) carry names and addresses in
        // formats known only at run time: dropped from redacted recordings.
        kind::RAW_TP => return false,
        _ => {}
    }
    true
}

/// The sink `top`'s loop writes into when recording.
pub struct Recorder {
    /// The writer.
    pub writer: Writer<BufWriter<File>>,
    /// Where.
    pub path: PathBuf,
    /// Redaction applied to every record.
    pub redaction: Redaction,
    /// Show a progress line on stderr.
    pub progress: bool,
    scratch: Vec<u8>,
    /// First write error: recording stops, the run goes on to a clean end and reports it.
    pub failed: Option<String>,
}

impl Recorder {
    /// Writes one record (raw tracepoints are left out under `--redact`).
    pub fn event(&mut self, rec: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(rec);
        if !redact_record(&mut self.scratch, &self.redaction) {
            return;
        }
        if let Err(e) = self.writer.event(&self.scratch) {
            self.failed = Some(format!("{}: {e}", self.path.display()));
        }
    }

    /// Writes a JSON chunk.
    pub fn json(&mut self, kind: ChunkKind, ts: u64, v: &Value) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.writer.json(kind, ts, v) {
            self.failed = Some(format!("{}: {e}", self.path.display()));
        }
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

/// Creates the output file: mode 0600, never replacing an existing file without `force`.
pub fn create_output(path: &Path, force: bool) -> Result<File> {
    open_0600(path, force, "not replacing a recording (use --force)")
}

/// Creates an output file of `export` or `diff` (mode 0600, like recordings: it holds their
/// contents); an existing file is kept.
pub fn create_new_file(path: &Path) -> Result<File> {
    open_0600(path, false, "not replacing it (name another output)")
}

fn open_0600(path: &Path, force: bool, kept: &str) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Usage(format!("{} exists; {kept}", path.display()))
        } else {
            Error::io(path, e)
        }
    })
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

/// A random salt from the kernel.
fn salt() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u64::from_le_bytes(b)
}

/// The header fields only `record` knows; `top` fills in the rest once the probes are live.
pub struct RecordSpec {
    /// The open output.
    pub file: File,
    /// Its path.
    pub path: PathBuf,
    /// Redaction.
    pub redaction: Redaction,
}

impl RecordSpec {
    /// Writes the header and returns the sink.
    pub fn start(self, mut header: Header) -> Result<Recorder> {
        if self.redaction.redact {
            let s = self.redaction.salt;
            header.hostname = String::from_utf8_lossy(&hash_name(s, header.hostname.as_bytes()))
                .trim_end_matches('\0')
                .to_string();
            for a in header
                .command_line
                .iter_mut()
                .chain(header.target_command.iter_mut())
                .skip(1)
            {
                *a = String::from_utf8_lossy(&hash_name(s, a.as_bytes()))
                    .trim_end_matches('\0')
                    .to_string();
            }
            header.scope = "redacted".into();
        }
        header.redacted = self.redaction.redact;
        header.kernel_ips = self.redaction.kernel_ips;
        let writer = Writer::new(BufWriter::with_capacity(1 << 20, self.file), &header)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(Recorder {
            writer,
            path: self.path,
            redaction: self.redaction,
            progress: std::io::stderr().is_terminal(),
            scratch: Vec::with_capacity(512),
            failed: None,
        })
    }
}

/// Runs `record`. Returns the exit code: the command's when one was given, else 0.
pub async fn run(o: RecordOpts) -> Result<i32> {
    let file = create_output(&o.output, o.force)?;
    let spec = RecordSpec {
        file,
        path: o.output.clone(),
        redaction: Redaction {
            redact: o.redact,
            kernel_ips: o.kernel_ips,
            salt: salt(),
        },
    };
    let top = TopOpts {
        no_tui: true,
        interval: 1.0,
        top: 10,
        trace: o.trace,
    };
    let result = crate::top::session(top, Some(spec)).await;
    if result.is_err() {
        // Nothing was recorded if the probes never went live: leave no empty file behind.
        if std::fs::metadata(&o.output).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&o.output);
        }
    }
    let _ = std::io::stderr().flush();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{as_bytes, decode, Event};

    fn fault(k: u16) -> FaultEvent {
        FaultEvent {
            hdr: EventHeader {
                ts_ns: 5,
                pid: 1,
                tid: 1,
                kind: k,
                cpu: 0,
                _reserved: 0,
            },
            address: 0x7f00_dead_b000,
            ip: 0xffff_ffff_8100_1234,
            error_code: 2,
            comm: *b"secret-name\0\0\0\0\0",
        }
    }

    #[test]
    fn kernel_ips_are_zeroed_unless_asked_for() {
        let r = Redaction {
            redact: false,
            kernel_ips: false,
            salt: 1,
        };
        let mut rec = as_bytes(&fault(kind::FAULT_KERNEL)).to_vec();
        assert!(redact_record(&mut rec, &r));
        let Ok(Event::Fault(f)) = decode(&rec) else {
            panic!("fault")
        };
        assert_eq!(f.ip, 0);
        assert_eq!(
            f.address, 0x7f00_dead_b000,
            "addresses kept without --redact"
        );
        let mut rec = as_bytes(&fault(kind::FAULT_KERNEL)).to_vec();
        redact_record(
            &mut rec,
            &Redaction {
                kernel_ips: true,
                ..r
            },
        );
        let Ok(Event::Fault(f)) = decode(&rec) else {
            panic!("fault")
        };
        assert_eq!(f.ip, 0xffff_ffff_8100_1234);
    }

    #[test]
    fn redaction_hashes_names_and_zeroes_addresses() {
        let r = Redaction {
            redact: true,
            kernel_ips: false,
            salt: 99,
        };
        let mut rec = as_bytes(&fault(kind::FAULT_USER)).to_vec();
        assert!(redact_record(&mut rec, &r));
        let Ok(Event::Fault(f)) = decode(&rec) else {
            panic!("fault")
        };
        assert_eq!((f.address, f.ip), (0, 0));
        let name = f.comm.as_string();
        assert!(name.starts_with('h') && name.len() == 15, "{name}");
        assert!(!name.contains("secret"));
        // Consistent within a recording, different with another salt.
        assert_eq!(
            hash_name(99, b"secret-name"),
            hash_name(99, b"secret-name\0\0")
        );
        assert_ne!(
            hash_name(99, b"secret-name"),
            hash_name(100, b"secret-name")
        );
    }
}
