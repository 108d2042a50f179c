//! Empty on purpose: the programs live in the `cxl-trace` binary target (src/main.rs). This
//! library target exists so that `cxl-trace` can name the crate as a build-dependency and be
//! rebuilt when it changes.
#![no_std]
