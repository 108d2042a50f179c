//! One file per subcommand: each parses nothing (see [`crate::cli`]) and wires the layers below.

pub mod completions;
pub mod diff;
pub mod doctor;
pub mod export;
#[cfg(feature = "fleet")]
pub mod exporter;
pub mod record;
pub mod redact;
pub mod replay;
pub mod report;
pub mod schema;
pub mod stat;
pub mod top;
pub mod topology;
