#![no_main]
//! Fuzz target: HELLO payload decoder.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pipewright_netipc::hello::Hello::decode(data) {
        assert_eq!(pipewright_netipc::hello::Hello::decode(&h.encode()), Ok(h));
    }
    let _ = pipewright_netipc::hello::Hello::decode_raw(data);
});
