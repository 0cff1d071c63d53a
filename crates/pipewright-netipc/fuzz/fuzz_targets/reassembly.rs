#![no_main]
//! Fuzz target: chunk reassembly over arbitrary packet sequences.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use pipewright_netipc::chunk::{Progress, Reassembler};
    use pipewright_netipc::header::Header;
    // Packets are length-prefixed by one byte; packet size is 64.
    let mut packets = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        packets.push(&tail[..n]);
        rest = &tail[n..];
    }
    let Some((first, more)) = packets.split_first() else {
        return;
    };
    let Ok(h) = Header::decode(first) else { return };
    if h.payload_len > 1 << 16 {
        return;
    }
    if let Ok(Progress::Partial(mut r)) = Reassembler::start(h, first, 64) {
        for p in more {
            match r.push(p) {
                Ok(Some(m)) => {
                    assert_eq!(m.payload.len(), h.payload_len as usize);
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
});
