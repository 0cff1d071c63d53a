#![no_main]
//! Fuzz target: the SSH agent framing `pipewright wsl` reads from ssh clients and agents
//! (`src/cmd/wsl/agent_frame.rs`). The input is a stream of messages: each length prefix is
//! checked, and each body that fits is typed and, for extension requests, its name read.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/cmd/wsl/agent_frame.rs"]
mod agent_frame;

use agent_frame::*;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some((prefix, after)) = rest.split_first_chunk::<4>() {
        let len = match frame_len(*prefix) {
            Ok(len) => len,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        };
        assert!((1..=MAX_FRAME).contains(&len));
        let Some(body) = after.get(..len) else {
            // A truncated message: parse what there is, as a reader that gave up would.
            check_body(after);
            break;
        };
        check_body(body);
        assert_eq!(encode_frame(body)[..], rest[..4 + len]);
        rest = &after[len..];
    }
    // Every input is also a body on its own.
    check_body(data);
});

fn check_body(body: &[u8]) {
    let t = message_type(body);
    assert_eq!(t, body.first().copied());
    match extension_name(body) {
        Ok(name) => {
            assert_eq!(t, Some(SSH_AGENTC_EXTENSION));
            assert!(5 + name.len() <= body.len());
            assert_eq!(&body[5..5 + name.len()], name.as_bytes());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(t) = t {
        let _ = type_name(t);
    }
}
