//! Any bytes as a stream of records of every kind, redacted: no panic, every field obeys its
//! rule, and the aggregates of the plain and redacted streams are equal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cxl_trace::model::redact::fuzzing::redact_invariants(data);
});
