#![no_main]
//! Fuzz target: outer message header decoder.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pipewright_netipc::header::Header::decode(data) {
        assert_eq!(
            pipewright_netipc::header::Header::decode(&h.encode()),
            Ok(h)
        );
    }
});
