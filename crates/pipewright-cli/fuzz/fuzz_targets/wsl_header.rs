#![no_main]
//! Fuzz target: the stream header lines of `pipewright wsl` (`src/cmd/wsl/wire.rs`), which
//! the Windows host reads from the daemon (requests) and the daemon from the host (replies).

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/cmd/wsl/wire.rs"]
mod wire;

use wire::*;

fuzz_target!(|data: &[u8]| {
    // As the readers do: find the line, then decode it.
    let line = match line_end(data) {
        Ok(Some(n)) => {
            assert_eq!(data[n], b'\n');
            &data[..n]
        }
        Ok(None) => data,
        Err(e) => {
            let _ = e.to_string();
            data
        }
    };
    if let Ok(target) = decode_request(line) {
        // A decoded target encodes to the same line.
        let encoded = encode_request(target).expect("a decoded target encodes");
        assert_eq!(&encoded[..encoded.len() - 1], line);
    }
    if let Ok(reply) = decode_reply(line) {
        // encode_reply turns control characters into spaces, so only a reply without them
        // comes back unchanged.
        let encoded = encode_reply(&reply);
        assert!(encoded.len() <= MAX_LINE);
        assert_eq!(line_end(&encoded), Ok(Some(encoded.len() - 1)));
        let again = decode_reply(&encoded[..encoded.len() - 1]).expect("an encoded reply decodes");
        let has_control = matches!(&reply, Reply::Failed { message, .. } if message.chars().any(char::is_control));
        if !has_control {
            assert_eq!(again, reply);
        }
    }
});
