//! Renderers of the model's types: text, Perfetto (protobuf), Chrome trace JSON, SVG.

pub mod chrome_trace;
pub mod diff;
pub mod export;
#[cfg(feature = "fleet")]
pub mod metrics;
#[cfg(feature = "fleet")]
pub mod parquet;
#[cfg(feature = "perfetto")]
pub mod perfetto;
pub mod report;
pub mod stat;
pub mod svg;
pub mod topology;

use std::io::Write;

use crate::error::{Error, Result};

/// Writes to stdout; `Ok(false)` when stdout was closed (a reader like `head` went away).
pub fn write_stdout(bytes: &[u8]) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Error::io("stdout", e)),
    }
}
