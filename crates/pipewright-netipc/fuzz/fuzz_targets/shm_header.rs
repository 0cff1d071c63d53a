#![no_main]
//! Fuzz target: POSIX SHM region header decoder.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = pipewright_netipc::shm_layout::PosixShmHeader::decode(data) {
        assert_eq!(
            pipewright_netipc::shm_layout::PosixShmHeader::decode(&h.encode()),
            Ok(h)
        );
    }
});
