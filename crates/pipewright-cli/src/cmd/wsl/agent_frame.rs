//! The framing of the SSH agent protocol (draft-miller-ssh-agent): each message is a `u32`
//! big-endian length, then that many bytes whose first byte is the message type. Pure byte
//! handling (std only), so the fuzz target in `crates/pipewright-cli/fuzz` includes this file
//! as is.
//!
//! ```text
//! 00 00 00 01 05                                 SSH_AGENT_FAILURE
//! 00 00 00 0a 1b 00 00 00 05 71 75 65 72 79      SSH_AGENTC_EXTENSION "query"
//! ```

use std::fmt;

/// The largest message body either side may send: OpenSSH's `AGENT_MAX_LEN`.
pub const MAX_FRAME: usize = 256 * 1024;

/// The agent's generic failure reply.
pub const SSH_AGENT_FAILURE: u8 = 5;
/// The agent's generic success reply.
pub const SSH_AGENT_SUCCESS: u8 = 6;
/// A client's request for the list of keys.
pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
/// The agent's list of keys.
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
/// A client's extension request (`session-bind@openssh.com`, `query`, ...).
pub const SSH_AGENTC_EXTENSION: u8 = 27;
/// The agent's failure reply to an extension it knows but could not carry out.
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;

/// Bytes that do not form a valid agent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is 0: every message holds at least its type byte.
    Empty,
    /// The length prefix is larger than [`MAX_FRAME`].
    TooLarge {
        /// The length the prefix announced.
        len: u32,
    },
    /// [`extension_name`] was given a body that is not an extension request.
    NotExtension {
        /// The body's type byte, `None` for an empty body.
        message_type: Option<u8>,
    },
    /// The extension request ends inside the 4 bytes of its name's length.
    NameLengthTruncated {
        /// How many of the 4 bytes are there.
        have: usize,
    },
    /// The extension request ends inside its name.
    NameTruncated {
        /// The name's length as the request declares it.
        declared: u32,
        /// The bytes that follow the length.
        available: usize,
    },
    /// The extension name is not UTF-8.
    NameNotUtf8,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Empty => f.write_str(
                "agent message of length 0 (every message holds at least its type byte)",
            ),
            FrameError::TooLarge { len } => write!(
                f,
                "agent message of {len} bytes exceeds the limit of {MAX_FRAME} bytes"
            ),
            FrameError::NotExtension {
                message_type: Some(t),
            } => write!(
                f,
                "agent message of type {t} is not an extension request (type {SSH_AGENTC_EXTENSION})"
            ),
            FrameError::NotExtension { message_type: None } => {
                f.write_str("empty agent message is not an extension request")
            }
            FrameError::NameLengthTruncated { have } => write!(
                f,
                "extension request ends after {have} of the 4 bytes of its name's length"
            ),
            FrameError::NameTruncated {
                declared,
                available,
            } => write!(
                f,
                "extension request declares a name of {declared} bytes but only {available} follow"
            ),
            FrameError::NameNotUtf8 => f.write_str("extension request's name is not UTF-8"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The body length a message's 4-byte prefix announces, checked against 0 and [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(0) => Err(FrameError::Empty),
        Ok(n) if n <= MAX_FRAME => Ok(n),
        _ => Err(FrameError::TooLarge { len }),
    }
}

/// A message body's type (its first byte); `None` for an empty body.
pub fn message_type(body: &[u8]) -> Option<u8> {
    body.first().copied()
}

/// The extension name of an `SSH_AGENTC_EXTENSION` body: the type byte, then an SSH string
/// (`u32` big-endian length, then the bytes). Bytes after the name (the extension's own
/// contents) are not looked at.
pub fn extension_name(body: &[u8]) -> Result<&str, FrameError> {
    let rest = match body.split_first() {
        Some((&SSH_AGENTC_EXTENSION, rest)) => rest,
        other => {
            return Err(FrameError::NotExtension {
                message_type: other.map(|(&t, _)| t),
            })
        }
    };
    let Some((len_bytes, rest)) = rest.split_first_chunk::<4>() else {
        return Err(FrameError::NameLengthTruncated { have: rest.len() });
    };
    let declared = u32::from_be_bytes(*len_bytes);
    let name = usize::try_from(declared)
        .ok()
        .and_then(|n| rest.get(..n))
        .ok_or(FrameError::NameTruncated {
            declared,
            available: rest.len(),
        })?;
    std::str::from_utf8(name).map_err(|_| FrameError::NameNotUtf8)
}

/// `body` with its length prefix in front.
///
/// # Panics
///
/// When `body` is longer than `u32::MAX` bytes; bodies read from a peer are bounded by
/// [`MAX_FRAME`].
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("agent message longer than u32::MAX bytes");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The whole `SSH_AGENT_FAILURE` message: length 1, type 5.
pub fn failure_frame() -> [u8; 5] {
    [0, 0, 0, 1, SSH_AGENT_FAILURE]
}

/// The whole `SSH_AGENTC_EXTENSION` message for the extension `query`, which asks an agent
/// for the extensions it supports. Agents that know no extension answer `SSH_AGENT_FAILURE`;
/// some old ones close the connection instead.
pub fn query_request() -> Vec<u8> {
    const NAME: &[u8] = b"query";
    let mut body = Vec::with_capacity(1 + 4 + NAME.len());
    body.push(SSH_AGENTC_EXTENSION);
    // 5 bytes: the length always fits.
    body.extend_from_slice(&(NAME.len() as u32).to_be_bytes());
    body.extend_from_slice(NAME);
    encode_frame(&body)
}

/// The protocol's name for a message type, `None` for types this module does not name.
pub fn type_name(message_type: u8) -> Option<&'static str> {
    Some(match message_type {
        SSH_AGENT_FAILURE => "SSH_AGENT_FAILURE",
        SSH_AGENT_SUCCESS => "SSH_AGENT_SUCCESS",
        SSH_AGENTC_REQUEST_IDENTITIES => "SSH_AGENTC_REQUEST_IDENTITIES",
        SSH_AGENT_IDENTITIES_ANSWER => "SSH_AGENT_IDENTITIES_ANSWER",
        SSH_AGENTC_EXTENSION => "SSH_AGENTC_EXTENSION",
        SSH_AGENT_EXTENSION_FAILURE => "SSH_AGENT_EXTENSION_FAILURE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extension_body(name: &[u8]) -> Vec<u8> {
        let mut body = vec![SSH_AGENTC_EXTENSION];
        body.extend_from_slice(&(name.len() as u32).to_be_bytes());
        body.extend_from_slice(name);
        body
    }

    #[test]
    fn frame_len_accepts_1_to_max() {
        assert_eq!(frame_len([0, 0, 0, 1]), Ok(1));
        assert_eq!(frame_len((MAX_FRAME as u32).to_be_bytes()), Ok(MAX_FRAME));
    }

    #[test]
    fn zero_length_is_rejected() {
        let e = frame_len([0, 0, 0, 0]).unwrap_err();
        assert_eq!(e, FrameError::Empty);
        assert!(e.to_string().contains("length 0"), "{e}");
    }

    #[test]
    fn oversized_length_is_rejected_naming_size_and_limit() {
        let e = frame_len((MAX_FRAME as u32 + 1).to_be_bytes()).unwrap_err();
        assert_eq!(e, FrameError::TooLarge { len: 262_145 });
        let text = e.to_string();
        assert!(text.contains("262145") && text.contains("262144"), "{text}");
        assert_eq!(
            frame_len([0xff; 4]),
            Err(FrameError::TooLarge { len: u32::MAX })
        );
    }

    #[test]
    fn message_type_is_the_first_byte() {
        assert_eq!(message_type(&[]), None);
        assert_eq!(message_type(&[11]), Some(11));
        assert_eq!(message_type(&[27, 0, 0]), Some(27));
    }

    #[test]
    fn extension_name_reads_the_ssh_string() {
        let mut body = extension_body(b"session-bind@openssh.com");
        assert_eq!(extension_name(&body), Ok("session-bind@openssh.com"));
        // The extension's contents after the name are not looked at.
        body.extend_from_slice(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(extension_name(&body), Ok("session-bind@openssh.com"));
        assert_eq!(extension_name(&extension_body(b"")), Ok(""));
    }

    #[test]
    fn extension_name_of_other_messages_is_an_error() {
        assert_eq!(
            extension_name(&[]),
            Err(FrameError::NotExtension { message_type: None })
        );
        let e = extension_name(&[11]).unwrap_err();
        assert_eq!(
            e,
            FrameError::NotExtension {
                message_type: Some(11)
            }
        );
        assert!(e.to_string().contains("type 11"), "{e}");
    }

    #[test]
    fn truncated_extension_name_is_an_error() {
        for have in 0..4 {
            let body = [&[SSH_AGENTC_EXTENSION][..], &[0u8; 3][..have]].concat();
            assert_eq!(
                extension_name(&body),
                Err(FrameError::NameLengthTruncated { have })
            );
        }
        let body = extension_body(b"query");
        let e = extension_name(&body[..body.len() - 1]).unwrap_err();
        assert_eq!(
            e,
            FrameError::NameTruncated {
                declared: 5,
                available: 4
            }
        );
        assert!(e.to_string().contains("5 bytes"), "{e}");
    }

    #[test]
    fn overflowing_name_lengths_are_errors() {
        for declared in [u32::MAX, u32::MAX - 1, 1 << 31, MAX_FRAME as u32 + 1] {
            let mut body = vec![SSH_AGENTC_EXTENSION];
            body.extend_from_slice(&declared.to_be_bytes());
            body.extend_from_slice(b"query");
            assert_eq!(
                extension_name(&body),
                Err(FrameError::NameTruncated {
                    declared,
                    available: 5
                })
            );
        }
    }

    #[test]
    fn non_utf8_name_is_an_error() {
        let e = extension_name(&extension_body(b"que\xffry")).unwrap_err();
        assert_eq!(e, FrameError::NameNotUtf8);
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn encoded_frames_parse_back() {
        assert_eq!(encode_frame(&[SSH_AGENT_FAILURE]), failure_frame());
        let query = query_request();
        assert_eq!(query, b"\x00\x00\x00\x0a\x1b\x00\x00\x00\x05query".to_vec());
        let len = frame_len(query[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, query.len() - 4);
        let body = &query[4..];
        assert_eq!(message_type(body), Some(SSH_AGENTC_EXTENSION));
        assert_eq!(extension_name(body), Ok("query"));
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(5), Some("SSH_AGENT_FAILURE"));
        assert_eq!(type_name(28), Some("SSH_AGENT_EXTENSION_FAILURE"));
        assert_eq!(type_name(200), None);
    }

    /// The seed files of the fuzz target `ssh_agent_frame` (`crates/pipewright-cli/fuzz`).
    fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut session_bind = extension_body(b"session-bind@openssh.com");
        for field in [&b"hostkey"[..], b"session-id", b"signature"] {
            session_bind.extend_from_slice(&(field.len() as u32).to_be_bytes());
            session_bind.extend_from_slice(field);
        }
        session_bind.push(0);
        vec![
            ("failure", failure_frame().to_vec()),
            ("query", query_request()),
            (
                "request_identities",
                encode_frame(&[SSH_AGENTC_REQUEST_IDENTITIES]),
            ),
            (
                "identities_answer_empty",
                encode_frame(&[SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0]),
            ),
            ("session_bind", encode_frame(&session_bind)),
            (
                "name_truncated",
                encode_frame(&[SSH_AGENTC_EXTENSION, 0, 0, 0, 9, b'q']),
            ),
            ("zero_length", vec![0, 0, 0, 0]),
            ("oversized", (MAX_FRAME as u32 + 1).to_be_bytes().to_vec()),
        ]
    }

    fn seed_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ssh_agent_frame")
    }

    /// Every seed is what it claims to be, and the committed corpus is there.
    #[test]
    fn fuzz_seeds_are_committed() {
        for (name, bytes) in fuzz_seeds() {
            let prefix: [u8; 4] = bytes[..4].try_into().unwrap();
            match name {
                "zero_length" => assert_eq!(frame_len(prefix), Err(FrameError::Empty)),
                "oversized" => assert!(frame_len(prefix).is_err()),
                _ => assert_eq!(frame_len(prefix), Ok(bytes.len() - 4), "{name}"),
            }
        }
        let dir = seed_dir();
        let count = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert!(
            count > 0,
            "{} holds no seed: cargo test -p pipewright-cli --bin pipewright write_fuzz_seeds -- --ignored",
            dir.display()
        );
    }

    /// Writes the seeds of the fuzz target `ssh_agent_frame`.
    #[test]
    #[ignore = "writes crates/pipewright-cli/fuzz/seeds/ssh_agent_frame"]
    fn write_fuzz_seeds() {
        let dir = seed_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in fuzz_seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
