#![no_main]
//! Fuzz target: a POSIX SHM region file with arbitrary contents, attached
//! as a client (attach validation) and, when accepted, received from and
//! published to (every access must stay inside the mapping).

use libfuzzer_sys::fuzz_target;
use pipewright_netipc::shm::{platform, RegionParams};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("nipc-fuzz-shm-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let params = RegionParams {
        run_dir: dir.to_str().expect("Unicode temp dir").to_owned(),
        service: "fuzz".into(),
        session_id: 1,
        auth_token: 0,
        // The limits a handshake agreed on: larger areas are refused.
        max_request_payload: 65536,
        max_response_payload: 65536,
    };
    let path = pipewright_netipc::naming::posix_shm_path(&dir, "fuzz", 1).expect("name");
    std::fs::write(&path, data).expect("write region file");
    if let Ok(mut peer) = platform::attach_client(&params, 0x04, Duration::ZERO) {
        let mut buf = Vec::new();
        if peer.receive(&mut buf, Duration::ZERO).is_ok() {
            assert!(!buf.is_empty() && buf.len() <= peer.receive_capacity());
        }
        let _ = peer.send(&[0x5a; 40]);
    }
});
