#![no_main]
//! Fuzz target: client HELLO_ACK validation.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use pipewright_netipc::handshake::{build_hello, client_check_ack, EndpointConfig};
    let (hello, _) = build_hello(&EndpointConfig::default().resolved(4096));
    let _ = client_check_ack(data, &hello);
});
