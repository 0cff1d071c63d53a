#![no_main]
//! Fuzz target: STRING_REVERSE codec.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = pipewright_netipc::codec::string_reverse::decode(data) {
        let again = pipewright_netipc::codec::string_reverse::encode(s).unwrap();
        assert_eq!(
            pipewright_netipc::codec::string_reverse::decode(&again).unwrap(),
            s
        );
    }
});
