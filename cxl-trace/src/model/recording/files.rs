//! Opening recordings and creating output files, with errors that name the file.

use std::{
    fs::{File, OpenOptions},
    io::BufReader,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use super::{Chunk, Reader};
use crate::{
    error::{Error, Result},
    model::event::{decode, Event},
};

/// Opens a recording; every failure names the file.
pub fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
    // An input that cannot be opened is bad input (exit 2), like one that is not a recording.
    let f = File::open(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Reader::new(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))
}

/// Calls `f` for every decoded event, in file order (undecodable records are skipped).
pub fn for_each_event(
    path: &Path,
    reader: &mut Reader<BufReader<File>>,
    mut f: impl FnMut(&Event) -> Result<()>,
) -> Result<()> {
    while let Some(chunk) = reader
        .next_chunk()
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
    {
        if let Chunk::Events(recs) = chunk {
            for r in &recs {
                if let Ok(e) = decode(r) {
                    f(&e)?;
                }
            }
        }
    }
    Ok(())
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
