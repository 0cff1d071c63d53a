#![no_main]
//! Fuzz target: HELLO_ACK payload decoder.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pipewright_netipc::hello::HelloAck::decode(data) {
        assert_eq!(
            pipewright_netipc::hello::HelloAck::decode(&h.encode()),
            Ok(h)
        );
    }
});
