//! A live run: setting up the probes, the event loop, and where the events go.

pub mod filter;
pub mod privs;
