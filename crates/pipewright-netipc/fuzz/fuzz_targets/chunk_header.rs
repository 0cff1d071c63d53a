#![no_main]
//! Fuzz target: continuation header decoder.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pipewright_netipc::chunk::ChunkHeader::decode(data) {
        assert_eq!(
            pipewright_netipc::chunk::ChunkHeader::decode(&h.encode()),
            Ok(h)
        );
    }
});
