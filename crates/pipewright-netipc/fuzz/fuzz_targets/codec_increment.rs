#![no_main]
//! Fuzz target: INCREMENT codec.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = pipewright_netipc::codec::increment::decode(data) {
        assert_eq!(
            pipewright_netipc::codec::increment::encode(v).as_slice(),
            data
        );
    }
});
