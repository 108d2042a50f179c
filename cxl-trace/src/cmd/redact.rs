//! `cxl-trace redact IN -o OUT`: a redacted copy of a recording, for sharing.

use crate::{
    error::{Error, Result},
    model::{
        recording::{self, Chunk, ChunkKind, Writer},
        redact::{Key, Redactor, Stats},
    },
};

/// `cxl-trace redact IN -o OUT`: a redacted copy, streamed chunk by chunk, with the same rules
/// and guarantees as `record --redact`. The output is created new (an existing file is kept);
/// on any error the partial output is removed and IN is untouched.
pub fn run(o: &crate::cli::RedactOpts) -> Result<i32> {
    let mut reader = recording::open(&o.input)?;
    let key = Key::random()?;
    let file = recording::create_new_file(&o.output)?;
    let result = copy(&o.input, &mut reader, key, file, &o.output);
    match result {
        Ok((stats, truncated, clean_end)) => {
            eprintln!(
                "cxl-trace: redacted {} to {}: {} records{}{}",
                o.input.display(),
                o.output.display(),
                stats.records,
                if stats.left_out > 0 {
                    format!(
                        ", {} left out (unknown kind or too short to redact)",
                        stats.left_out
                    )
                } else {
                    String::new()
                },
                match (truncated, clean_end) {
                    (true, _) => "; the input was cut off inside a chunk: the copy ends at its last complete chunk",
                    (false, false) => "; the input has no end summary (the recording did not finish cleanly)",
                    _ => "",
                }
            );
            Ok(0)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&o.output);
            Err(e)
        }
    }
}

fn copy(
    input: &std::path::Path,
    reader: &mut crate::model::recording::Reader<std::io::BufReader<std::fs::File>>,
    key: Key,
    file: std::fs::File,
    output: &std::path::Path,
) -> Result<(Stats, bool, bool)> {
    let mut header = reader.header.clone();
    let mut r = Redactor::new(key, &header.rare);
    r.header(&mut header);
    let out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut w = Writer::new(out, &header).map_err(|e| Error::io(output, e))?;
    let mut clean_end = false;
    while let Some(chunk) = reader
        .next_chunk()
        .map_err(|e| Error::Usage(format!("{}: {e}", input.display())))?
    {
        let ts = reader.chunk_ts.1;
        match chunk {
            Chunk::Events(recs) => {
                for mut rec in recs {
                    if r.record(&mut rec) {
                        w.event(&rec).map_err(|e| Error::io(output, e))?;
                    }
                }
                // Chunk boundaries follow the input's, so a cut input stays cut in one place.
                w.flush_events().map_err(|e| Error::io(output, e))?;
            }
            Chunk::Snapshot(mut v) => {
                r.snapshot(&mut v);
                w.json(ChunkKind::Snapshot, ts, &*v)
                    .map_err(|e| Error::io(output, e))?;
            }
            Chunk::End(v) => {
                clean_end = true;
                w.json(ChunkKind::End, ts, &v)
                    .map_err(|e| Error::io(output, e))?;
            }
        }
    }
    let out = w.finish().map_err(|e| Error::io(output, e))?;
    let f = out
        .into_inner()
        .map_err(|e| Error::io(output, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io(output, e))?;
    Ok((r.stats, reader.truncated, clean_end))
}
