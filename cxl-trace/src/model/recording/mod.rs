//! The recording file format (pure: any `Write`/`Read`). Documented in `docs/recording-format.md`.
//!
//! ```text
//! file    = header chunk*
//! header  = "CXLTRACE" version:u16 reserved:u16 len:u32 crc:u32 json[len]
//! chunk   = "CHNK" kind:u8 reserved:[u8;3] raw_len:u32 comp_len:u32 crc:u32 count:u32
//!           first_ts:u64 last_ts:u64 zstd(payload)[comp_len]
//! ```
//!
//! All integers little-endian; `crc` is CRC-32 (IEEE) of the bytes it follows (the header JSON,
//! or the compressed payload). Chunks are self-contained, so a file cut short by a crash or
//! `kill -9` reads up to its last complete chunk.
//!
//! An `events` payload is `count` records, each `len:u16` then `len` bytes: the ring-buffer
//! record as the kernel wrote it, with every full 8-byte word replaced by its wrapping
//! difference from the same word of the previous record of the same kind and length in this
//! chunk. Timestamps, addresses and pids then mostly become small or zero and zstd packs them.
//! A `snapshot` payload is one JSON object (vmstat, per-node meminfo, drop counters, topology
//! when it changed); an `end` payload is the JSON summary of a run that finished cleanly.

mod chunks;
mod files;
pub mod fuzzing;
pub mod header;
mod reader;
mod writer;

pub use chunks::{End, NodeMeminfo, Snapshot};
pub use files::{create_new_file, create_output, for_each_event, open};
pub use header::Header;
pub use reader::{Chunk, Reader, Record};
pub use writer::Writer;

/// First bytes of every recording.
pub const MAGIC: &[u8; 8] = b"CXLTRACE";
/// The format version this build writes; it reads every version up to this one.
pub const VERSION: u16 = 1;
/// First bytes of every chunk.
pub const CHUNK_MAGIC: &[u8; 4] = b"CHNK";
/// Size of the fixed part of a chunk.
pub const CHUNK_HEADER_LEN: usize = 40;
/// Largest header JSON accepted (a topology with thousands of memory blocks fits easily).
pub const MAX_HEADER_LEN: u32 = 64 << 20;
/// Largest uncompressed or compressed chunk payload accepted.
pub const MAX_CHUNK_LEN: u32 = 64 << 20;
/// An events chunk is closed once its payload reaches this size (and at every snapshot).
pub const CHUNK_TARGET: usize = 1 << 20;
/// zstd level: fast enough for a million events a second on one core.
pub const ZSTD_LEVEL: i32 = 3;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// Ring-buffer records.
    Events,
    /// A periodic JSON snapshot.
    Snapshot,
    /// The JSON summary written at a clean end.
    End,
}

impl ChunkKind {
    /// On-disk byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Events => 1,
            Self::Snapshot => 2,
            Self::End => 3,
        }
    }

    /// From the on-disk byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Events),
            2 => Some(Self::Snapshot),
            3 => Some(Self::End),
            _ => None,
        }
    }
}

/// Per-kind delta state of an events chunk: the previous record of each (kind, length).
///
/// Every full 8-byte word of a record except the third (bytes 16..24 of the common header:
/// kind, cpu, reserved) is replaced by its wrapping difference from the same word of the
/// previous record of the same kind and length in the chunk; the third word stays as is, so the
/// reader knows the kind before undoing the difference.
#[derive(Default)]
pub(crate) struct Delta {
    prev: std::collections::HashMap<(u16, usize), Vec<u8>>,
}

/// Index of the 8-byte word that holds the kind; never delta-coded.
const KIND_WORD: usize = 2;

impl Delta {
    fn kind(rec: &[u8]) -> u16 {
        // The kind is at offset 16 of the common header (EventHeader).
        rec.get(16..18)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// Appends `rec` to `out` as its difference from the previous record like it.
    pub(crate) fn encode(&mut self, rec: &[u8], out: &mut Vec<u8>) {
        let key = (Self::kind(rec), rec.len());
        let start = out.len();
        out.extend_from_slice(rec);
        match self.prev.get_mut(&key) {
            Some(p) => {
                apply(&mut out[start..], p, u64::wrapping_sub);
                p.copy_from_slice(rec);
            }
            None => {
                self.prev.insert(key, rec.to_vec());
            }
        }
    }

    /// Restores a record from its difference, in place.
    pub(crate) fn decode(&mut self, rec: &mut [u8]) {
        let key = (Self::kind(rec), rec.len());
        match self.prev.get_mut(&key) {
            Some(p) => {
                apply(rec, p, u64::wrapping_add);
                p.copy_from_slice(rec);
            }
            None => {
                self.prev.insert(key, rec.to_vec());
            }
        }
    }
}

/// `rec[i] = op(rec[i], prev[i])` for every full word but the kind word.
fn apply(rec: &mut [u8], prev: &[u8], op: fn(u64, u64) -> u64) {
    let (words, _) = rec.as_chunks_mut::<8>();
    let (prev_words, _) = prev.as_chunks::<8>();
    for (i, (r, p)) in words.iter_mut().zip(prev_words).enumerate() {
        if i == KIND_WORD {
            continue;
        }
        *r = op(u64::from_le_bytes(*r), u64::from_le_bytes(*p)).to_le_bytes();
    }
}

#[cfg(test)]
mod tests;
