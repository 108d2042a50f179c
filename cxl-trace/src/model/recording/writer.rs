//! Writing a recording: events are buffered into a chunk, delta-coded, compressed and
//! checksummed; a chunk is closed at [`CHUNK_TARGET`] bytes and at every snapshot, so a crash
//! loses at most the events since the last snapshot.

use std::io::Write;

use super::{
    ChunkKind, Delta, Header, CHUNK_MAGIC, CHUNK_TARGET, MAGIC, MAX_CHUNK_LEN, VERSION, ZSTD_LEVEL,
};

/// A recording being written to `W`.
pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
    delta: Delta,
    count: u32,
    first_ts: u64,
    last_ts: u64,
    /// Bytes written so far (header and chunks).
    pub bytes: u64,
    /// Records written so far.
    pub events: u64,
}

fn ts_of(rec: &[u8]) -> u64 {
    rec.get(..8).map_or(0, |b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    })
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Self> {
        let json = serde_json::to_vec(header).map_err(std::io::Error::other)?;
        let len = u32::try_from(json.len()).map_err(std::io::Error::other)?;
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&crc32fast::hash(&json).to_le_bytes())?;
        out.write_all(&json)?;
        Ok(Self {
            out,
            buf: Vec::with_capacity(CHUNK_TARGET + 512),
            delta: Delta::default(),
            count: 0,
            first_ts: 0,
            last_ts: 0,
            bytes: 20 + u64::from(len),
            events: 0,
        })
    }

    /// Adds one ring-buffer record (at most 65535 bytes; longer ones are refused).
    pub fn event(&mut self, rec: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(rec.len())
            .map_err(|_| std::io::Error::other("record longer than 65535 bytes"))?;
        let ts = ts_of(rec);
        if self.count == 0 {
            self.first_ts = ts;
        }
        self.last_ts = self.last_ts.max(ts);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.delta.encode(rec, &mut self.buf);
        self.count += 1;
        self.events += 1;
        if self.buf.len() >= CHUNK_TARGET {
            self.flush_events()?;
        }
        Ok(())
    }

    /// Closes the events chunk in progress, if any.
    pub fn flush_events(&mut self) -> std::io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let payload = std::mem::take(&mut self.buf);
        let (count, first, last) = (self.count, self.first_ts, self.last_ts);
        self.chunk(ChunkKind::Events, &payload, count, first, last)?;
        self.buf = payload;
        self.buf.clear();
        self.delta = Delta::default();
        self.count = 0;
        Ok(())
    }

    /// Writes a JSON chunk (a snapshot or the end summary) stamped `ts`, after closing the
    /// events chunk in progress, and flushes the file.
    pub fn json<T: serde::Serialize + ?Sized>(
        &mut self,
        kind: ChunkKind,
        ts: u64,
        v: &T,
    ) -> std::io::Result<()> {
        self.flush_events()?;
        let json = serde_json::to_vec(v).map_err(std::io::Error::other)?;
        self.chunk(kind, &json, 1, ts, ts)?;
        self.out.flush()
    }

    fn chunk(
        &mut self,
        kind: ChunkKind,
        raw: &[u8],
        count: u32,
        first: u64,
        last: u64,
    ) -> std::io::Result<()> {
        let f = encode_chunk(kind.byte(), raw, count, first, last)?;
        self.out.write_all(&f)?;
        self.bytes += f.len() as u64;
        Ok(())
    }

    /// Closes the last chunk, flushes, and gives the output back.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_events()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One chunk as it goes on disk: the fixed part, then the zstd payload (`kind` is the on-disk
/// byte; the fuzz harness also writes unknown ones).
pub fn encode_chunk(
    kind: u8,
    raw: &[u8],
    count: u32,
    first: u64,
    last: u64,
) -> std::io::Result<Vec<u8>> {
    let comp = zstd::bulk::compress(raw, ZSTD_LEVEL)?;
    let raw_len = u32::try_from(raw.len()).map_err(std::io::Error::other)?;
    let comp_len = u32::try_from(comp.len()).map_err(std::io::Error::other)?;
    if raw_len > MAX_CHUNK_LEN || comp_len > MAX_CHUNK_LEN {
        return Err(std::io::Error::other("chunk larger than the format allows"));
    }
    let mut f = Vec::with_capacity(super::CHUNK_HEADER_LEN + comp.len());
    f.extend_from_slice(CHUNK_MAGIC);
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(&raw_len.to_le_bytes());
    f.extend_from_slice(&comp_len.to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(&comp).to_le_bytes());
    f.extend_from_slice(&count.to_le_bytes());
    f.extend_from_slice(&first.to_le_bytes());
    f.extend_from_slice(&last.to_le_bytes());
    f.extend_from_slice(&comp);
    Ok(f)
}
