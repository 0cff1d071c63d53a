#![no_main]
//! Fuzz target: a POSIX region file with arbitrary contents, attached as a
//! client (header and limits validation) and, when accepted, received from
//! and published to (every access must stay inside the mapping).

use libfuzzer_sys::fuzz_target;
use pipewright_shm::{posix, AreaLimits};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("pw-shm-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("fuzz-0000000000000001.ipcshm");
    std::fs::write(&path, data).expect("write region file");
    // The limits a handshake agreed on: larger areas are refused.
    let limits = AreaLimits {
        max_request_payload: 65536,
        max_response_payload: 65536,
    };
    if let Ok(mut peer) = posix::attach_client(&path, &limits, posix::PROFILE_FUTEX, Duration::ZERO)
    {
        let mut buf = Vec::new();
        if peer.receive(&mut buf, Duration::ZERO).is_ok() {
            assert!(!buf.is_empty() && buf.len() <= peer.receive_capacity());
        }
        let _ = peer.send(&[0x5a; 40]);
    }
});
