#![no_main]
//! Fuzz target: batch directory decoder (first 4 bytes pick the item count).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let count = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) % 4096;
    if let Ok(items) = pipewright_netipc::batch::decode_batch(&data[4..], count) {
        let again = pipewright_netipc::batch::encode_batch(&items).unwrap();
        assert_eq!(
            pipewright_netipc::batch::decode_batch(&again, count).unwrap(),
            items
        );
    }
});
