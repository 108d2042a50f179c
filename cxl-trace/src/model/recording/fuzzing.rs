//! The harnesses of the fuzz targets (`cxl-trace/fuzz`, run by `cargo xtask fuzz`), kept in
//! the library so the unit tests replay every saved crashing input through the same code.

use super::{writer::encode_chunk, Chunk, Header, Reader, Writer};
use crate::model::event::decode;

/// Reads `data` as a recording: every chunk, every record through the event decoder. Returns
/// the records read before the end or the first error (errors are expected, panics are not).
pub fn read_everything(data: &[u8]) -> u64 {
    let Ok(mut reader) = Reader::new(data) else {
        return 0;
    };
    let mut n = 0;
    // Each chunk consumes input, so this ends; the bound is a second guard.
    for _ in 0..1_000_000 {
        match reader.next_chunk() {
            Ok(Some(Chunk::Events(recs))) => {
                for r in &recs {
                    n += 1;
                    let _ = decode(r);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    n
}

/// `kind:u8 count:u16 payload...` as one chunk of a valid recording, read back: reaches the
/// record splitting, delta decoding, snapshot JSON and event decoding past the checksum.
pub fn payload_in_frame(data: &[u8]) -> u64 {
    let [kind, c0, c1, payload @ ..] = data else {
        return 0;
    };
    let Ok(mut file) = Writer::new(Vec::new(), &Header::default()).and_then(|w| w.finish()) else {
        return 0;
    };
    let count = u32::from(u16::from_le_bytes([*c0, *c1]));
    let Ok(chunk) = encode_chunk(kind % 4, payload, count, 0, 0) else {
        return 0;
    };
    file.extend(chunk);
    read_everything(&file)
}
