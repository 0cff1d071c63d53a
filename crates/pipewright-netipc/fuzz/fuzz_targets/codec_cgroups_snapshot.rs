#![no_main]
//! Fuzz target: CGROUPS_SNAPSHOT request and response codecs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use pipewright_netipc::codec::cgroups_snapshot::{decode_request, Snapshot};
    let _ = decode_request(data);
    if let Ok(s) = Snapshot::decode(data) {
        assert_eq!(Snapshot::decode(&s.encode().unwrap()).unwrap(), s);
    }
});
