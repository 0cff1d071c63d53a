#![no_main]
//! Fuzz target: server handshake decision on arbitrary first packets.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use pipewright_netipc::handshake::{server_decide, EndpointConfig, ReservedFieldPolicy};
    let cfg = EndpointConfig {
        auth_token: 7,
        ..EndpointConfig::default()
    }
    .resolved(4096);
    let _ = server_decide(data, &cfg, ReservedFieldPolicy::Spec, 1);
    let _ = server_decide(data, &cfg, ReservedFieldPolicy::Upstream, 1);
});
