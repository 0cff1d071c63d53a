#![no_main]
//! Fuzz target: a connection thread's serving of a request stream a peer controls.
//!
//! Input: a control byte (bits 0-5: the read size - 1, 1 to 64 bytes per read; bit 6: a
//! 64-byte frame limit instead of 4 KiB), then the bytes the client sends. Every byte the
//! server writes back must be whole answer frames the client reads without complaint, and
//! the answers must not depend on how the stream was cut into reads.

use libfuzzer_sys::fuzz_target;
use pipewright_rpc::fuzzing::{decode_answers, serve_bytes};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let read_size = usize::from(control & 0x3f) + 1;
    let max_frame = if control & 0x40 != 0 { 64 } else { 4096 };
    let written = serve_bytes(input, read_size, max_frame);
    if let Err(e) = decode_answers(&written, 1 << 20) {
        panic!("the server wrote what its client refuses: {e}");
    }
    assert_eq!(
        written,
        serve_bytes(input, 1 << 16, max_frame),
        "the answers depend on the read size"
    );
});
