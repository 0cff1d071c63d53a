#![no_main]
//! Fuzz target: the POSIX region header ("NSHM") decoder.

use libfuzzer_sys::fuzz_target;
use pipewright_shm::layout::{PosixShmHeader, SHM_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = PosixShmHeader::decode(data) {
        // A decoded header re-encodes to the same fields, its areas lie after
        // the header and in order, and the bytes match the input.
        assert_eq!(PosixShmHeader::decode(&h.encode()), Ok(h));
        let l = h.layout;
        assert!(l.request_offset as usize >= SHM_HEADER_LEN);
        assert!(
            u64::from(l.request_offset) + u64::from(l.request_capacity)
                <= u64::from(l.response_offset)
        );
        assert_eq!(&h.encode()[..], &data[..SHM_HEADER_LEN]);
    }
});
