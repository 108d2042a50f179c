//! Reading a recording, streaming: one chunk in memory at a time, every length checked against
//! the format's limits before anything is allocated for it.

use std::io::{ErrorKind, Read};

use super::{
    ChunkKind, Delta, Header, CHUNK_HEADER_LEN, CHUNK_MAGIC, MAGIC, MAX_CHUNK_LEN, MAX_HEADER_LEN,
    VERSION,
};

/// What is wrong with a file. Each message says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not a recording at all.
    #[error("not a cxl-trace recording (no CXLTRACE magic)")]
    NotARecording,
    /// Written by a newer cxl-trace.
    #[error("recording format version {0}; this cxl-trace reads versions 1 to {VERSION} (upgrade cxl-trace)")]
    TooNew(u16),
    /// The header is damaged.
    #[error("damaged header: {0}")]
    Header(String),
    /// A chunk is damaged (its offset in the file).
    #[error("damaged chunk at byte {offset}: {why}")]
    Chunk {
        /// File offset of the chunk.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One ring-buffer record, as the kernel wrote it.
pub type Record = Vec<u8>;

/// One chunk's contents.
#[derive(Debug)]
pub enum Chunk {
    /// Records in order.
    Events(Vec<Record>),
    /// A periodic snapshot.
    Snapshot(Box<super::Snapshot>),
    /// The summary of a clean end.
    End(super::End),
}

/// A recording opened for reading.
pub struct Reader<R: Read> {
    input: R,
    /// Its header.
    pub header: Header,
    /// Format version of the file.
    pub version: u16,
    offset: u64,
    /// Set when the file ended inside a chunk (cut off by a crash or kill): everything before
    /// it was read.
    pub truncated: bool,
    /// `first_ts` and `last_ts` of the chunk last returned.
    pub chunk_ts: (u64, u64),
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean or partial end of file.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads up to `len` bytes into a buffer that grows with what is actually there (never
/// allocated from the announced length); `Ok(None)` if the input ends first.
fn read_exact_grow<R: Read>(r: &mut R, len: u32) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut buf)?;
    Ok((buf.len() == len as usize).then_some(buf))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, FormatError> {
        let mut fixed = [0u8; 20];
        if !read_full(&mut input, &mut fixed)? {
            return Err(FormatError::NotARecording);
        }
        if &fixed[..8] != MAGIC {
            return Err(FormatError::NotARecording);
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version == 0 || version > VERSION {
            return Err(FormatError::TooNew(version));
        }
        let len = le32(&fixed[12..16]);
        let crc = le32(&fixed[16..20]);
        if len > MAX_HEADER_LEN {
            return Err(FormatError::Header(format!(
                "header length {len} exceeds the limit of {MAX_HEADER_LEN}"
            )));
        }
        let Some(json) = read_exact_grow(&mut input, len)? else {
            return Err(FormatError::Header(
                "the file ends inside the header".into(),
            ));
        };
        if crc32fast::hash(&json) != crc {
            return Err(FormatError::Header("checksum mismatch".into()));
        }
        let header: Header = serde_json::from_slice(&json)
            .map_err(|e| FormatError::Header(format!("invalid JSON: {e}")))?;
        Ok(Self {
            input,
            header,
            version,
            offset: 20 + u64::from(len),
            truncated: false,
            chunk_ts: (0, 0),
        })
    }

    /// The next chunk; `None` at the end of the file (or at a chunk cut off at the end, which
    /// sets [`Reader::truncated`]).
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FormatError> {
        let at = self.offset;
        let bad = |why: String| FormatError::Chunk { offset: at, why };
        let mut h = [0u8; CHUNK_HEADER_LEN];
        let mut first = [0u8; 1];
        // A clean end is an end of file exactly at a chunk boundary.
        if !read_full(&mut self.input, &mut first)? {
            return Ok(None);
        }
        h[0] = first[0];
        if !read_full(&mut self.input, &mut h[1..])? {
            self.truncated = true;
            return Ok(None);
        }
        if &h[..4] != CHUNK_MAGIC {
            return Err(bad("no chunk magic".into()));
        }
        let kind =
            ChunkKind::from_byte(h[4]).ok_or_else(|| bad(format!("unknown kind {}", h[4])))?;
        let raw_len = le32(&h[8..12]);
        let comp_len = le32(&h[12..16]);
        let crc = le32(&h[16..20]);
        let count = le32(&h[20..24]);
        let ts = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let chunk_ts = (ts(24), ts(32));
        if raw_len > MAX_CHUNK_LEN || comp_len > MAX_CHUNK_LEN {
            return Err(bad(format!(
                "lengths {raw_len}/{comp_len} exceed the limit of {MAX_CHUNK_LEN}"
            )));
        }
        let Some(comp) = read_exact_grow(&mut self.input, comp_len)? else {
            self.truncated = true;
            return Ok(None);
        };
        self.offset += (CHUNK_HEADER_LEN + comp.len()) as u64;
        if crc32fast::hash(&comp) != crc {
            return Err(bad("checksum mismatch".into()));
        }
        // Streamed, so memory follows the real output, not the announced length; one byte
        // beyond it tells a payload longer than announced.
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::with_buffer(&comp[..])
            .and_then(|d| d.take(u64::from(raw_len) + 1).read_to_end(&mut raw))
            .map_err(|e| bad(format!("zstd: {e}")))?;
        if raw.len() != raw_len as usize {
            return Err(bad(format!(
                "{} bytes after decompression, {raw_len} announced",
                raw.len()
            )));
        }
        self.chunk_ts = chunk_ts;
        Ok(Some(match kind {
            ChunkKind::Events => Chunk::Events(split_records(&raw, count).map_err(bad)?),
            ChunkKind::Snapshot => Chunk::Snapshot(
                serde_json::from_slice(&raw).map_err(|e| bad(format!("snapshot JSON: {e}")))?,
            ),
            ChunkKind::End => {
                Chunk::End(serde_json::from_slice(&raw).map_err(|e| bad(format!("end JSON: {e}")))?)
            }
        }))
    }
}

/// The records of an events payload, delta-decoded.
fn split_records(raw: &[u8], count: u32) -> Result<Vec<Record>, String> {
    let mut out = Vec::with_capacity((count as usize).min(raw.len() / 26 + 1));
    let mut delta = Delta::default();
    let mut at = 0usize;
    while at < raw.len() {
        let len = raw
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or("a record length is cut")?;
        at += 2;
        let mut rec = raw
            .get(at..at + len)
            .ok_or_else(|| format!("a record of {len} bytes runs past the chunk"))?
            .to_vec();
        at += len;
        delta.decode(&mut rec);
        out.push(rec);
    }
    if out.len() != count as usize {
        return Err(format!("{} records, {count} announced", out.len()));
    }
    Ok(out)
}
