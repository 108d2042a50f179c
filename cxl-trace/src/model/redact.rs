//! Redaction of recordings for sharing (pure, apart from drawing the key).
//!
//! A redacted recording must keep two promises: nothing personal leaves the machine, and every
//! result derived from the file is the one the plain file gives. So every field of every record
//! kind has exactly one rule in [`TABLE`] (for raw-captured tracepoints, [`raw_rule`] decides by
//! field name, since their formats are known only at run time):
//!
//! - **keep**: copied unchanged (pfns, counts, reasons, timings, pids, CPUs, flags);
//! - **name**: a process name. Kernel threads keep theirs ([`is_kernel_thread`]: `kswapd0`,
//!   `kcompactd0`, `khugepaged`, `kdamond.0`, `migration/3`...), since they are not personal and
//!   carry meaning (demotion causes are derived from them); any other name becomes `h` and 14 hex
//!   digits of a keyed hash, the same for the same name throughout the file;
//! - **id**: an identity that keys aggregation (`folio->mapping`, device serials) becomes a
//!   64-bit keyed hash, never zero unless it was zero, so equal stays equal and different stays
//!   different;
//! - **page**: a user virtual address becomes a keyed hash of its page number (the page offset
//!   is dropped), so the ping-pong detector still recognises the same page;
//! - **drop**: zeroed (user and kernel instruction pointers, fault addresses, unknown bytes).
//!
//! The hash is SipHash-2-4, a pseudo-random function, under a 128-bit key drawn from the kernel
//! (`getrandom`) for each recording and never written: without the key, a known pair (say
//! `kswapd0` and its hash, where kernel names were hashed) tells nothing about any other name,
//! so names cannot be recovered by trying a dictionary. When the kernel cannot supply the key,
//! redaction refuses to run instead of using a guessable one.

use std::{hash::Hasher, mem::offset_of};

use cxl_trace_common::{EventHeader, FaultEvent, FolioMigrateEvent, Kind, RawTpEvent, COMM_LEN};
use siphasher::sip::SipHasher24;

use crate::{
    error::{Error, Result},
    model::rare::RareDecoder,
    model::recording::Header,
    model::topology::Topology,
    model::tracefs::{Field, Format},
};

/// Name prefixes of kernel threads whose names are kept: not personal, and some carry meaning
/// (`kswapd*` and `khugepaged` make a demotion's cause).
pub const KERNEL_THREADS: &[&str] = &[
    "kswapd",
    "kcompactd",
    "khugepaged",
    "kdamond",
    "migration/",
    "kworker/",
    "ksoftirqd/",
    "kthreadd",
    "rcu_",
    "cpuhp/",
    "idle_inject/",
    "watchdog",
    "oom_reaper",
    "ksmd",
    "kauditd",
    "khungtaskd",
    "kblockd",
    "writeback",
    "irq/",
    "swapper/",
    "jbd2/",
    "kdevtmpfs",
    "pool_workqueue",
];

/// Whether a thread name is one of the kernel's own threads (kept by redaction).
pub fn is_kernel_thread(name: &str) -> bool {
    KERNEL_THREADS.iter().any(|p| name.starts_with(p))
}

/// What redaction does to one field of a raw-captured tracepoint, by its name and C type.
pub fn raw_rule(name: &str, f: &Field) -> Action {
    let string = f.ctype.contains("__data_loc") || (f.ctype.contains("char") && f.size > 8);
    if name.starts_with("common_") {
        Action::Keep
    } else if name.contains("comm") {
        if f.ctype.contains("__data_loc") {
            Action::Drop
        } else {
            Action::Name
        }
    } else if string {
        // Device names (`mem0`, `0000:0d:00.0`, `region0`) say where an error happened.
        if matches!(name, "memdev" | "host" | "region" | "dev_name") {
            Action::Keep
        } else {
            Action::Drop
        }
    } else if matches!(name, "ip") {
        // mce_record: the instruction that was running (kernel or user).
        Action::Drop
    } else if matches!(name, "serial" | "ppin") {
        // Device serial numbers and the processor inventory number identify the machine.
        Action::Id
    } else {
        Action::Keep
    }
}

/// A per-recording secret: 128 bits from the kernel, never written anywhere.
#[derive(Clone)]
pub struct Key([u8; 16]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh key from the kernel's random number generator; an error if it cannot be had.
    pub fn random() -> Result<Self> {
        let mut k = [0u8; 16];
        getrandom::fill(&mut k).map_err(|e| {
            Error::Runtime(format!(
                "cannot redact: no randomness from the kernel for the redaction key ({e}); \
                 refusing to hash names with a guessable key"
            ))
        })?;
        Ok(Self(k))
    }

    /// A fixed key, for tests.
    pub fn from_bytes(k: [u8; 16]) -> Self {
        Self(k)
    }

    fn prf(&self, domain: &[u8], data: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.0);
        h.write(domain);
        h.write(&[0xff]);
        h.write(data);
        h.finish()
    }
}

/// Counts of what redaction did, for the closing line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records written.
    pub records: u64,
    /// Records left out: unknown kind or too short to redact field by field.
    pub left_out: u64,
}

/// Applies redaction (and the kernel-IP rule) to records and headers.
#[derive(Clone, Debug)]
pub struct Redactor {
    key: Option<Key>,
    kernel_ips: bool,
    formats: Vec<Option<Format>>,
    /// What was done.
    pub stats: Stats,
}

fn rd64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn wr64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn zero(b: &mut [u8], off: usize, len: usize) {
    if let Some(s) = b.get_mut(off..off.saturating_add(len).min(b.len())) {
        s.fill(0);
    }
}

impl Redactor {
    /// No redaction; only kernel instruction pointers are zeroed unless `kernel_ips`.
    pub fn plain(kernel_ips: bool) -> Self {
        Self {
            key: None,
            kernel_ips,
            formats: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Redaction under `key`, with the raw tracepoint formats of the recording.
    pub fn new(key: Key, rare: &RareDecoder) -> Self {
        Self {
            key: Some(key),
            kernel_ips: false,
            formats: rare.formats().to_vec(),
            stats: Stats::default(),
        }
    }

    /// Whether names and addresses are redacted.
    pub fn redacts(&self) -> bool {
        self.key.is_some()
    }

    /// Whether kernel instruction pointers are kept.
    pub fn kernel_ips(&self) -> bool {
        self.kernel_ips
    }

    /// A process name: kernel threads kept, others `h` + 14 hex digits, NUL-padded.
    pub fn name(&self, comm: &[u8]) -> [u8; COMM_LEN] {
        let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        let name = &comm[..end];
        let mut out = [0u8; COMM_LEN];
        if name.is_empty() {
            return out;
        }
        let text = String::from_utf8_lossy(name);
        let Some(key) = &self.key else {
            let n = name.len().min(COMM_LEN);
            out[..n].copy_from_slice(&name[..n]);
            return out;
        };
        if is_kernel_thread(&text) {
            let n = name.len().min(COMM_LEN - 1);
            out[..n].copy_from_slice(&name[..n]);
            return out;
        }
        let digits = format!("h{:014x}", key.prf(b"name", name) >> 8);
        out[..15].copy_from_slice(&digits.as_bytes()[..15]);
        out
    }

    /// A string of the header (host name, a command-line word): `h` + 14 hex digits.
    pub fn string(&self, s: &str) -> String {
        match &self.key {
            Some(key) if !s.is_empty() => format!("h{:014x}", key.prf(b"name", s.as_bytes()) >> 8),
            _ => s.to_string(),
        }
    }

    fn id(&self, v: u64) -> u64 {
        match &self.key {
            Some(key) if v != 0 => key.prf(b"id", &v.to_le_bytes()).max(1),
            _ => v,
        }
    }

    fn index(&self, mapping: u64, index: u64) -> u64 {
        let Some(key) = &self.key else {
            return index;
        };
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&mapping.to_le_bytes());
        d[8..].copy_from_slice(&index.to_le_bytes());
        key.prf(b"index", &d)
    }

    fn page(&self, addr: u64) -> u64 {
        match &self.key {
            // 52 bits of page number: x86_64 virtual addresses have at most 57 bits, so the
            // hash space is wider than any real page number's.
            Some(key) => (key.prf(b"page", &(addr >> 12).to_le_bytes()) & ((1 << 52) - 1)) << 12,
            None => addr,
        }
    }

    /// Applies the rules to one record in place; false when it must be left out (an unknown
    /// kind, or a record too short to redact, under redaction).
    pub fn record(&mut self, rec: &mut [u8]) -> bool {
        let k = rec
            .get(offset_of!(EventHeader, kind)..offset_of!(EventHeader, kind) + 2)
            .map(bytemuck::pod_read_unaligned::<u16>)
            .and_then(Kind::from_u16);
        if k == Some(Kind::FaultKernel) && !self.kernel_ips {
            zero(rec, offset_of!(FaultEvent, ip), 8);
        }
        if self.key.is_none() {
            self.stats.records += 1;
            return true;
        }
        let Some((k, rule)) = k.and_then(|k| Some((k, rule_of(k as u16)?))) else {
            self.stats.left_out += 1;
            return false;
        };
        if rec.len() < k.wire_size() {
            self.stats.left_out += 1;
            return false;
        }
        for f in rule.fields {
            match f.action {
                Action::Keep => {}
                Action::Drop => zero(rec, f.offset, f.len),
                Action::Name => {
                    if let Some(b) = rec.get_mut(f.offset..f.offset + f.len) {
                        let h = self.name(b);
                        b.copy_from_slice(&h[..f.len.min(COMM_LEN)]);
                    }
                }
                Action::Id => {
                    let v = self.id(rd64(rec, f.offset));
                    wr64(rec, f.offset, v);
                }
                Action::Index => {
                    // Keyed with the mapping as its own rule left it (hashed, as unique as
                    // the original), so equal (mapping, index) pairs stay equal.
                    let mapping = rd64(rec, offset_of!(FolioMigrateEvent, mapping));
                    let v = self.index(mapping, rd64(rec, f.offset));
                    wr64(rec, f.offset, v);
                }
                Action::Page => {
                    let v = self.page(rd64(rec, f.offset));
                    wr64(rec, f.offset, v);
                }
                Action::RawData => self.raw(rec),
            }
        }
        // Bytes past the struct (none in records the tool writes) are not known: dropped.
        if k != Kind::RawTp && rec.len() > rule.size {
            let n = rec.len() - rule.size;
            zero(rec, rule.size, n);
        }
        self.stats.records += 1;
        true
    }

    /// Raw tracepoint data: each field of its format by [`raw_rule`]; bytes that belong to no
    /// kept field are zeroed.
    fn raw(&self, rec: &mut [u8]) {
        let base = offset_of!(RawTpEvent, data);
        let tp = rec
            .get(offset_of!(RawTpEvent, tp)..offset_of!(RawTpEvent, tp) + 2)
            .map_or(u16::MAX, |b| u16::from_le_bytes([b[0], b[1]]));
        let Some(data) = rec.get_mut(base..) else {
            return;
        };
        let original = data.to_vec();
        data.fill(0);
        let Some(Some(format)) = self.formats.get(usize::from(tp)) else {
            // No format: nothing can be said about the bytes, so none are kept.
            return;
        };
        for (name, f) in &format.fields {
            let (off, size) = (f.offset as usize, f.size as usize);
            let Some(src) = original.get(off..off + size) else {
                continue;
            };
            let action = raw_rule(name, f);
            if f.ctype.contains("__data_loc") {
                // The location word is kept; the string it points to follows the rule.
                data[off..off + size].copy_from_slice(src);
                if action == Action::Keep && size == 4 {
                    let loc = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
                    let (s_off, s_len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
                    if let (Some(s), Some(d)) = (
                        original.get(s_off..s_off + s_len),
                        data.get_mut(s_off..s_off + s_len),
                    ) {
                        d.copy_from_slice(s);
                    }
                }
                continue;
            }
            match action {
                Action::Keep => data[off..off + size].copy_from_slice(src),
                Action::Name => {
                    let h = self.name(src);
                    let n = size.min(COMM_LEN);
                    data[off..off + n].copy_from_slice(&h[..n]);
                }
                Action::Id if size == 8 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(src);
                    let v = self.id(u64::from_ne_bytes(a));
                    data[off..off + 8].copy_from_slice(&v.to_ne_bytes());
                }
                _ => {}
            }
        }
    }

    /// Redacts a recording's header: host name, boot id, both command lines, the scope and
    /// CXL serial numbers; sets `redacted` and `kernel_ips`.
    pub fn header(&self, h: &mut Header) {
        h.kernel_ips = self.kernel_ips && self.key.is_none();
        if self.key.is_none() {
            return;
        }
        h.redacted = true;
        h.hostname = self.string(&h.hostname);
        h.boot_id = self.string(&h.boot_id);
        for a in &mut h.command_line {
            if !is_safe_word(a) {
                *a = self.string(a);
            }
        }
        for a in &mut h.target_command {
            *a = self.string(a);
        }
        h.scope = redact_scope(self, &h.scope);
        self.topology(&mut h.topology);
    }

    /// Redacts what a topology says about the machine's identity (CXL device serials).
    pub fn topology(&self, t: &mut Topology) {
        if self.key.is_none() {
            return;
        }
        for d in &mut t.cxl.memdevs {
            if let Some(s) = &mut d.serial {
                *s = self.string(s);
            }
        }
    }

    /// Redacts a snapshot chunk's JSON: a topology it carries.
    pub fn snapshot(&self, s: &mut crate::model::recording::Snapshot) {
        if self.key.is_none() {
            return;
        }
        if let Some(t) = s.topology.as_mut() {
            self.topology(t);
        }
        for b in &mut s.blast {
            self.blast(b);
        }
    }

    /// Redacts a blast radius: holder names hashed as the records' names are (so they still
    /// match), each component of a cgroup path hashed (the hierarchy is kept); pids and
    /// page counts are kept, as in the records.
    pub fn blast(&self, b: &mut crate::model::schema::BlastRadius) {
        if self.key.is_none() {
            return;
        }
        for h in &mut b.holders {
            let name = self.name(h.comm.as_bytes());
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            h.comm = String::from_utf8_lossy(&name[..end]).into_owned();
            h.cgroup = self.cgroup(&h.cgroup);
        }
        b.cgroups = std::mem::take(&mut b.cgroups)
            .into_iter()
            .map(|(k, v)| (self.cgroup(&k), v))
            .collect();
        if let Some(c) = &mut b.scope.page_cgroup {
            *c = self.cgroup(c);
        }
    }

    fn cgroup(&self, path: &str) -> String {
        path.split('/')
            .map(|c| self.string(c))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// cxl-trace's own words that say nothing about the user: subcommands and flag names.
fn is_safe_word(a: &str) -> bool {
    const SUBCOMMANDS: &[&str] = &[
        "record", "top", "report", "replay", "export", "diff", "doctor", "topology", "redact",
    ];
    SUBCOMMANDS.contains(&a)
        || (a.starts_with('-')
            && a.len() <= 32
            && a.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
}

/// The scope line with names hashed and its shape kept: `pid 42 and descendants` stays,
/// `cgroup PATH and below`, `threads named NAME` and `CMD ARGS and descendants` hash what the
/// user named.
fn redact_scope(r: &Redactor, scope: &str) -> String {
    if scope.starts_with("pid ") || scope == "all processes" || scope == "redacted" {
        return scope.to_string();
    }
    if let Some(v) = scope
        .strip_prefix("cgroup ")
        .and_then(|v| v.strip_suffix(" and below"))
    {
        return format!("cgroup {} and below", r.string(v));
    }
    if let Some(v) = scope.strip_prefix("threads named ") {
        return format!("threads named {}", r.string(v));
    }
    if let Some(v) = scope.strip_suffix(" and descendants") {
        let words: Vec<String> = v.split(' ').map(|w| r.string(w)).collect();
        return format!("{} and descendants", words.join(" "));
    }
    r.string(scope)
}

mod table;
pub use table::{markdown_table, rule_of, Action, FieldRule, KindRule, HEADER_FIELDS, TABLE};

pub mod fuzzing;
#[cfg(test)]
mod tests;
