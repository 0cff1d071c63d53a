#![no_main]
//! Fuzz target: the blocking client's reading of an answer stream a server controls. Any
//! bytes give answers or an error that names the bad frame, never a panic.

use libfuzzer_sys::fuzz_target;
use pipewright_rpc::fuzzing::decode_answers;

fuzz_target!(|data: &[u8]| {
    if let Ok(answers) = decode_answers(data, 4096) {
        // Each answer came from a whole frame of at least 4 header bytes.
        assert!(answers.len() * 4 <= data.len());
    }
});
