//! Round trips, truncation, corruption and size of the recording format.

use std::io::Cursor;

use cxl_trace_common::{kind, EventHeader, FaultEvent, MigrateEvent};
use serde_json::json;

use super::*;
use crate::model::event::as_bytes;

fn fault(i: u64) -> Vec<u8> {
    as_bytes(&FaultEvent {
        hdr: EventHeader {
            ts_ns: 1_000_000_000 + i * 1_700 + (i * 7919) % 300,
            pid: 4242,
            tid: 4242 + (i % 2) as u32,
            kind: kind::FAULT_USER,
            cpu: (i % 2) as u16,
            _reserved: 0,
        },
        address: 0x7f12_3400_0000 + i * 4096,
        ip: 0x5555_5555_1234,
        error_code: 6,
        comm: *b"membench\0\0\0\0\0\0\0\0",
    })
    .to_vec()
}

fn batch(i: u64) -> Vec<u8> {
    as_bytes(&MigrateEvent {
        hdr: EventHeader {
            ts_ns: 2_000_000_000 + i,
            pid: 77,
            tid: 77,
            kind: kind::MIGRATE,
            cpu: 1,
            _reserved: 0,
        },
        succeeded: 10 + i,
        failed: 1,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 0,
        reason: 3,
        comm: *b"kswapd0\0\0\0\0\0\0\0\0\0",
    })
    .to_vec()
}

fn header() -> Header {
    Header {
        tool_version: "test".into(),
        kernel: "6.18.0".into(),
        hostname: "box".into(),
        ..Header::default()
    }
}

/// A recording of `n` faults with a batch every 1000 and a snapshot every 5000.
fn recording(n: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut w = Writer::new(Vec::new(), &header()).expect("header");
    let mut all = Vec::new();
    for i in 0..n {
        let r = fault(i);
        w.event(&r).expect("event");
        all.push(r);
        if i % 1000 == 999 {
            let b = batch(i);
            w.event(&b).expect("event");
            all.push(b);
        }
        if i % 5000 == 4999 {
            w.json(ChunkKind::Snapshot, i, &json!({"i": i}))
                .expect("snapshot");
        }
    }
    (w.finish().expect("finish"), all)
}

fn read_all(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize, bool), reader::FormatError> {
    let mut r = Reader::new(Cursor::new(bytes))?;
    let (mut recs, mut snaps) = (Vec::new(), 0);
    while let Some(c) = r.next_chunk()? {
        match c {
            Chunk::Events(v) => recs.extend(v),
            Chunk::Snapshot(_) | Chunk::End(_) => snaps += 1,
        }
    }
    Ok((recs, snaps, r.truncated))
}

#[test]
fn records_written_are_records_read() {
    let (bytes, all) = recording(20_000);
    let (recs, snaps, truncated) = read_all(&bytes).expect("readable");
    assert_eq!(recs, all);
    assert_eq!(snaps, 4);
    assert!(!truncated);
}

#[test]
fn fault_heavy_recordings_take_at_most_8_bytes_per_event() {
    let (bytes, all) = recording(200_000);
    let per = bytes.len() as f64 / all.len() as f64;
    assert!(per <= 8.0, "{per:.2} bytes per event");
}

#[test]
fn a_cut_file_reads_up_to_its_last_complete_chunk() {
    let (bytes, _) = recording(12_000);
    let (whole, _, _) = read_all(&bytes).expect("whole");
    // Every cut point: never an error after the header, never more than the whole, and always
    // a prefix of it.
    let header_len = 20 + u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    for cut in (header_len..bytes.len()).step_by(97) {
        let (recs, _, truncated) = read_all(&bytes[..cut]).expect("prefix readable");
        assert!(recs.len() <= whole.len());
        assert_eq!(recs[..], whole[..recs.len()]);
        assert!(truncated || recs.len() == whole.len() || cut == header_len);
    }
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    assert!(matches!(
        Reader::new(Cursor::new(b"hello world, not a recording".as_slice())),
        Err(reader::FormatError::NotARecording)
    ));
    assert!(matches!(
        Reader::new(Cursor::new(b"".as_slice())),
        Err(reader::FormatError::NotARecording)
    ));
    let (bytes, _) = recording(3_000);
    let mut newer = bytes.clone();
    newer[8] = 9;
    let e = Reader::new(Cursor::new(newer.as_slice()))
        .err()
        .expect("too new");
    assert!(e.to_string().contains("version 9"), "{e}");
    // A huge announced header length is refused before any allocation.
    let mut huge = bytes.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Reader::new(Cursor::new(huge.as_slice())).is_err());
    // Flip each byte in turn (sampled): an error or a clean read, never a panic.
    for i in (0..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let _ = read_all(&b);
    }
}

#[test]
fn a_corrupted_payload_names_its_chunk() {
    let (mut bytes, _) = recording(3_000);
    let header_len = 20 + u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let n = bytes.len();
    bytes[header_len + CHUNK_HEADER_LEN + 5.min(n - header_len - CHUNK_HEADER_LEN - 1)] ^= 1;
    let e = read_all(&bytes).expect_err("corrupt");
    assert!(
        e.to_string()
            .contains(&format!("chunk at byte {header_len}")),
        "{e}"
    );
    assert!(e.to_string().contains("checksum"), "{e}");
}

/// Hostile lengths: announced sizes are never allocated up front, and a payload that
/// decompresses beyond its announced length is refused without inflating all of it.
#[test]
fn hostile_lengths_are_refused_without_allocating_them() {
    let (file, _) = recording(10);
    let header_len = 20 + u32::from_le_bytes([file[12], file[13], file[14], file[15]]) as usize;

    // A header announcing 64 MiB in a 100-byte file.
    let mut h = file[..100].to_vec();
    h[12..16].copy_from_slice(&MAX_HEADER_LEN.to_le_bytes());
    let e = Reader::new(Cursor::new(&h)).err().expect("refused");
    assert!(e.to_string().contains("ends inside the header"), "{e}");

    // A chunk announcing a 60 MiB payload in a short file: read as cut off.
    let mut c = file[..header_len].to_vec();
    let mut chunk =
        writer::encode_chunk(ChunkKind::Events.byte(), &fault(1), 1, 0, 0).expect("chunk");
    chunk[12..16].copy_from_slice(&(60u32 << 20).to_le_bytes());
    c.extend_from_slice(&chunk);
    let mut r = Reader::new(Cursor::new(&c)).expect("header");
    assert!(r.next_chunk().expect("no error").is_none());
    assert!(r.truncated);

    // A zstd bomb: 48 MiB of zeros announced as 1000 bytes.
    let bomb = writer::encode_chunk(ChunkKind::Events.byte(), &vec![0u8; 48 << 20], 1, 0, 0)
        .expect("bomb");
    let mut b = bomb.clone();
    b[8..12].copy_from_slice(&1000u32.to_le_bytes());
    let mut f = file[..header_len].to_vec();
    f.extend_from_slice(&b);
    let mut r = Reader::new(Cursor::new(&f)).expect("header");
    let e = r.next_chunk().expect_err("refused");
    assert!(e.to_string().contains("1000 announced"), "{e}");
    assert!(
        bomb.len() < 1 << 20,
        "the bomb is small on disk: {}",
        bomb.len()
    );
}

/// Inputs the fuzz targets found (or that were built to look like what they look for):
/// `cxl-trace/tests/fixtures/fuzz-regressions/<target>-<name>`, replayed through the same
/// harnesses; each must end without a panic.
#[test]
fn fuzz_regressions_end_without_panic() {
    use super::fuzzing::{payload_in_frame, read_everything};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("regressions directory") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = std::fs::read(&p).expect("readable");
        if name.starts_with("reader-") {
            read_everything(&data);
        } else if name.starts_with("payload-") {
            payload_in_frame(&data);
        } else if name.starts_with("redact-") {
            crate::model::redact::fuzzing::redact_invariants(&data);
        } else {
            panic!("{name}: regression files are named reader-*, payload-* or redact-*");
        }
        seen += 1;
    }
    assert!(seen > 0, "no regression inputs in {}", dir.display());
    // The harnesses do reach the decoder: a valid events payload yields its records.
    let mut one = vec![ChunkKind::Events.byte(), 2, 0];
    for i in 0..2 {
        let r = fault(i);
        one.extend_from_slice(&(r.len() as u16).to_le_bytes());
        one.extend_from_slice(&r);
    }
    assert_eq!(payload_in_frame(&one), 2);
    let (file, all) = recording(3000);
    assert_eq!(read_everything(&file), all.len() as u64);
}
