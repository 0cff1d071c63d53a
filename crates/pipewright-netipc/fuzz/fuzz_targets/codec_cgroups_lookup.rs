#![no_main]
//! Fuzz target: CGROUPS_LOOKUP request and response codecs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use pipewright_netipc::codec::cgroups_lookup::{LookupResponse, Request};
    if let Ok(r) = Request::decode(data) {
        assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r);
    }
    if let Ok(s) = LookupResponse::decode(data) {
        assert_eq!(LookupResponse::decode(&s.encode().unwrap()).unwrap(), s);
    }
});
