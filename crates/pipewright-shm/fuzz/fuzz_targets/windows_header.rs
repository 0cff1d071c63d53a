#![no_main]
//! Fuzz target: the Windows region header ("NSWH") decoder.

use libfuzzer_sys::fuzz_target;
use pipewright_shm::windows_layout::{WindowsShmHeader, WIN_SHM_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = WindowsShmHeader::decode(data) {
        // A decoded header re-encodes to the same fields, and its areas lie
        // after the header, 64-aligned and in order.
        assert_eq!(WindowsShmHeader::decode(&h.encode()), Ok(h));
        let l = h.layout;
        assert!(l.request_offset as usize >= WIN_SHM_HEADER_LEN);
        assert!(
            u64::from(l.request_offset) + u64::from(l.request_capacity)
                <= u64::from(l.response_offset)
        );
        assert!(l.file_size() <= u64::from(u32::MAX));
        // The re-encoded bytes match the input in every field the decoder reads.
        let e = h.encode();
        assert_eq!(&e[..60], &data[..60]);
        assert_eq!(&e[64..80], &data[64..80]);
    }
});
