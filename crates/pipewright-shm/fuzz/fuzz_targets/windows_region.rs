#![no_main]
//! Fuzz target: the Windows region reader (attach checks, receiving,
//! publishing) over a mapping with arbitrary contents, through
//! `pipewright_shm::fuzzing` (the region code of `windows::attach_client`
//! over a heap buffer). Every access must stay inside the region: word
//! accesses outside it panic, byte copies outside it are counted and must
//! not happen, a receive returns bytes of the response area only, and a send
//! changes nothing but the request area, its length word and its counter.
//!
//! Input: one control byte, then the mapping's bytes. Control bit 0 picks
//! the profile (0 HYBRID, 1 BUSYWAIT); bit 1 makes the server publish after
//! the client attached (bumps `resp_seq`, so the response length and area
//! in the input are what the client receives); bits 2..8 pick the length
//! of the message sent: 0 the send capacity, 1 one byte more, 2 empty,
//! n > 2 n * 8 bytes.

use libfuzzer_sys::fuzz_target;
use pipewright_shm::fuzzing::WindowsRegion;
use pipewright_shm::windows_layout::{offset, WindowsShmHeader, PROFILE_BUSYWAIT, PROFILE_HYBRID};
use pipewright_shm::AreaLimits;

/// The limits a handshake agreed on: larger areas are refused at attach.
const LIMITS: AreaLimits = AreaLimits {
    max_request_payload: 65536,
    max_response_payload: 65536,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let profile = if control & 1 == 0 {
        PROFILE_HYBRID
    } else {
        PROFILE_BUSYWAIT
    };
    let Ok(mut region) = WindowsRegion::attach(bytes, &LIMITS, profile) else {
        return;
    };
    // Attach accepted only a header that decodes, runs the selected profile
    // and whose areas lie inside the mapping.
    let header = WindowsShmHeader::decode(bytes).expect("attach accepted an invalid header");
    assert_eq!(header.profile, profile);
    let l = header.layout;
    assert!(l.file_size() <= bytes.len() as u64);
    assert_eq!(region.receive_capacity(), l.response_capacity as usize);
    assert_eq!(region.send_capacity(), l.request_capacity as usize);

    if control & 2 != 0 {
        let seq = header.resp_seq.wrapping_add(1);
        assert!(region
            .view()
            .peer_write(offset::RESP_SEQ, &seq.to_ne_bytes()));
    }
    let before = region.view().to_vec();
    let mut buf = Vec::new();
    match region.try_receive(&mut buf) {
        Ok(true) => {
            assert!(!buf.is_empty() && buf.len() <= region.receive_capacity());
            let start = l.response_offset as usize;
            assert_eq!(buf, before[start..start + buf.len()]);
        }
        Ok(false) => assert!(buf.is_empty()),
        Err(_) => {}
    }
    assert_eq!(
        region.view().to_vec(),
        before,
        "receiving wrote to the region"
    );

    let capacity = region.send_capacity();
    let len = match control >> 2 {
        0 => capacity,
        1 => capacity + 1,
        2 => 0,
        n => usize::from(n) * 8,
    };
    let message: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0xa5).collect();
    match region.send(&message) {
        Ok(()) => {
            assert!(!message.is_empty() && message.len() <= capacity);
            let after = region.view().to_vec();
            let area = l.request_offset as usize..l.request_offset as usize + message.len();
            for (i, (a, b)) in before.iter().zip(&after).enumerate() {
                let allowed = area.contains(&i)
                    || (offset::REQ_LEN..offset::REQ_LEN + 4).contains(&i)
                    || (offset::REQ_SEQ..offset::REQ_SEQ + 8).contains(&i);
                assert!(a == b || allowed, "send changed byte {i} outside its area");
            }
            // The server's side of the same bytes takes exactly that message.
            assert!(matches!(region.server_try_receive(&mut buf), Ok(true)));
            assert_eq!(buf, message);
        }
        Err(_) => assert_eq!(region.view().to_vec(), before, "a refused send wrote"),
    }
    assert_eq!(
        region.view().refused(),
        0,
        "a copy outside the region was attempted"
    );
});
