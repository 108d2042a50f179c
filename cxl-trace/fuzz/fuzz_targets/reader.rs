//! Any byte string as a recording: errors are fine, panics, hangs and huge allocations are not.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cxl_trace::model::recording::fuzzing::read_everything(data);
});
