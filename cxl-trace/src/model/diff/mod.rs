//! Comparing two recordings: [`profile`] reduces each one in a streaming pass, [`stats`] says
//! whether a change is significant.

pub mod compare;
pub mod profile;
pub mod stats;
