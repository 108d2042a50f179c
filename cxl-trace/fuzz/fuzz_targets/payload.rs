//! Any byte string as a chunk payload inside a valid frame (`kind:u8 count:u16 payload...`):
//! the `reader` target rarely gets past CRC-32 and zstd; this one reaches the record
//! splitting, delta decoding, snapshot JSON and the event decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cxl_trace::model::recording::fuzzing::payload_in_frame(data);
});
