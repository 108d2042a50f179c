//! The pure layer: everything from the kernel's bytes to the typed output documents, with no
//! aya, tokio or ratatui (a test in the suite checks). Tested without root.
//!
//! Decoding: [`event`] (wire records), [`tracefs`] (format files), [`topology`], [`pte`],
//! [`vmstat`]. Accumulating: [`tiers`], [`aggregate`], [`rare`]. Storing: [`recording`] (the
//! file format) and [`redact`]. Comparing: [`diff`]. Describing: [`schema`], the types every
//! machine-readable output is made of.

pub mod aggregate;
pub mod blast;
pub mod diff;
pub mod event;
pub mod fault_counts;
pub mod filter;
pub mod hist;
pub mod kernel_latency;
pub mod metrics;
pub mod playback;
pub mod pte;
pub mod rare;
pub mod recording;
pub mod redact;
pub mod sample;
pub mod schema;
pub mod status;
pub mod tiers;
pub mod topology;
pub mod tracefs;
pub mod vmstat;
