//! The header at the start of each multiplexed stream between the Linux daemon and the
//! Windows host: one request line naming the target, one reply line. Pure byte handling
//! (std only), so the fuzz target in `crates/pipewright-cli/fuzz` includes this file as is.
//!
//! ```text
//! daemon -> host:  pipewright-wsl/1 npipe:openssh-ssh-agent\n
//! host -> daemon:  ok\n                                  then the target's bytes
//!              or  error 3 no server listens on \\.\pipe\openssh-ssh-agent ...\n   and the stream ends
//! ```

use std::fmt;

/// The longest header line, newline included. A target is an address of a few hundred bytes
/// at most; anything longer is a broken or hostile peer.
pub const MAX_LINE: usize = 4096;

/// What every request line starts with: the protocol and its version.
pub const REQUEST_PREFIX: &str = "pipewright-wsl/1 ";

/// The host's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The target is connected; its bytes follow.
    Connected,
    /// The target could not be opened.
    Failed {
        /// The exit code the failure has in `docs/cli.md` (3 not found, 5 access denied, ...).
        code: u8,
        /// One line naming the target and the fix.
        message: String,
    },
}

/// A header line that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The line is longer than [`MAX_LINE`].
    TooLong,
    /// The line is not UTF-8.
    NotUtf8,
    /// A request line without the protocol prefix: another program or version on the stream.
    NotARequest,
    /// A request with an empty target.
    EmptyTarget,
    /// A target holding a control character (a newline would end the line early).
    ControlCharacter,
    /// A reply that is neither `ok` nor `error CODE MESSAGE`.
    BadReply,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            HeaderError::TooLong => {
                "stream header longer than 4096 bytes: the peer is not a pipewright wsl daemon or host"
            }
            HeaderError::NotUtf8 => "stream header is not UTF-8",
            HeaderError::NotARequest => {
                "stream header does not start with `pipewright-wsl/1 `: both sides must run the same pipewright version"
            }
            HeaderError::EmptyTarget => "stream header names no target",
            HeaderError::ControlCharacter => "target holds a control character",
            HeaderError::BadReply => {
                "reply is neither `ok` nor `error CODE MESSAGE`: both sides must run the same pipewright version"
            }
        };
        f.write_str(text)
    }
}

impl std::error::Error for HeaderError {}

/// The request line for `target`, newline included.
pub fn encode_request(target: &str) -> Result<Vec<u8>, HeaderError> {
    check_target(target)?;
    let line = format!("{REQUEST_PREFIX}{target}\n");
    if line.len() > MAX_LINE {
        return Err(HeaderError::TooLong);
    }
    Ok(line.into_bytes())
}

/// The target of a request line (without its newline).
pub fn decode_request(line: &[u8]) -> Result<&str, HeaderError> {
    if line.len() >= MAX_LINE {
        return Err(HeaderError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| HeaderError::NotUtf8)?;
    let target = text
        .strip_prefix(REQUEST_PREFIX)
        .ok_or(HeaderError::NotARequest)?;
    check_target(target)?;
    Ok(target)
}

fn check_target(target: &str) -> Result<(), HeaderError> {
    if target.trim().is_empty() {
        return Err(HeaderError::EmptyTarget);
    }
    if target.chars().any(char::is_control) {
        return Err(HeaderError::ControlCharacter);
    }
    Ok(())
}

/// The reply line, newline included. Control characters in a message become spaces and a
/// message is cut to fit the line.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Connected => b"ok\n".to_vec(),
        Reply::Failed { code, message } => {
            let mut line = format!("error {code} ");
            for c in message.chars() {
                let c = if c.is_control() { ' ' } else { c };
                if line.len() + c.len_utf8() + 1 > MAX_LINE {
                    break;
                }
                line.push(c);
            }
            line.push('\n');
            line.into_bytes()
        }
    }
}

/// A reply line (without its newline).
pub fn decode_reply(line: &[u8]) -> Result<Reply, HeaderError> {
    if line.len() >= MAX_LINE {
        return Err(HeaderError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| HeaderError::NotUtf8)?;
    if text == "ok" {
        return Ok(Reply::Connected);
    }
    let rest = text.strip_prefix("error ").ok_or(HeaderError::BadReply)?;
    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let code = code.parse::<u8>().map_err(|_| HeaderError::BadReply)?;
    Ok(Reply::Failed {
        code,
        message: message.to_string(),
    })
}

/// Where a header line ends in `buf`: `Ok(Some(n))` when `buf[..n]` is the line and `buf[n]`
/// its newline, `Ok(None)` when more bytes are needed, an error when the line is too long.
pub fn line_end(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(n) if n < MAX_LINE => Ok(Some(n)),
        Some(_) => Err(HeaderError::TooLong),
        None if buf.len() >= MAX_LINE => Err(HeaderError::TooLong),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let line = encode_request("npipe:openssh-ssh-agent,mode=byte").unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let end = line_end(&line).unwrap().unwrap();
        assert_eq!(
            decode_request(&line[..end]).unwrap(),
            "npipe:openssh-ssh-agent,mode=byte"
        );
    }

    #[test]
    fn reply_round_trips() {
        for reply in [
            Reply::Connected,
            Reply::Failed {
                code: 3,
                message: "no server listens on \\\\.\\pipe\\x: start it".into(),
            },
            Reply::Failed {
                code: 1,
                message: String::new(),
            },
        ] {
            let line = encode_reply(&reply);
            let end = line_end(&line).unwrap().unwrap();
            assert_eq!(decode_reply(&line[..end]).unwrap(), reply);
        }
    }

    #[test]
    fn reply_messages_stay_on_one_line() {
        let line = encode_reply(&Reply::Failed {
            code: 7,
            message: "two\nlines\r".into(),
        });
        assert_eq!(line_end(&line).unwrap(), Some(line.len() - 1));
        let long = encode_reply(&Reply::Failed {
            code: 7,
            message: "é".repeat(5000),
        });
        assert!(long.len() <= MAX_LINE);
        assert!(decode_reply(&long[..long.len() - 1]).is_ok());
    }

    #[test]
    fn malformed_requests_are_named() {
        assert_eq!(decode_request(b""), Err(HeaderError::NotARequest));
        assert_eq!(
            decode_request(b"GET / HTTP/1.1"),
            Err(HeaderError::NotARequest)
        );
        assert_eq!(
            decode_request(b"pipewright-wsl/2 npipe:x"),
            Err(HeaderError::NotARequest)
        );
        assert_eq!(
            decode_request(b"pipewright-wsl/1 "),
            Err(HeaderError::EmptyTarget)
        );
        assert_eq!(
            decode_request(b"pipewright-wsl/1 npipe:\x01x"),
            Err(HeaderError::ControlCharacter)
        );
        assert_eq!(
            decode_request(b"pipewright-wsl/1 \xff"),
            Err(HeaderError::NotUtf8)
        );
        assert_eq!(decode_request(&[b'a'; MAX_LINE]), Err(HeaderError::TooLong));
        assert_eq!(encode_request("a\nb"), Err(HeaderError::ControlCharacter));
        assert_eq!(
            encode_request(&"a".repeat(MAX_LINE)),
            Err(HeaderError::TooLong)
        );
    }

    #[test]
    fn malformed_replies_are_named() {
        for bad in [
            &b"OK"[..],
            b"error",
            b"error x msg",
            b"error 300 msg",
            b"okay",
            b"",
        ] {
            assert_eq!(decode_reply(bad), Err(HeaderError::BadReply), "{bad:?}");
        }
        assert_eq!(decode_reply(b"\xc3"), Err(HeaderError::NotUtf8));
    }

    #[test]
    fn line_end_bounds_the_search() {
        assert_eq!(line_end(b"abc"), Ok(None));
        assert_eq!(line_end(b"ab\ncd"), Ok(Some(2)));
        assert_eq!(line_end(&[b'x'; MAX_LINE]), Err(HeaderError::TooLong));
        let mut long = vec![b'x'; MAX_LINE];
        long.push(b'\n');
        assert_eq!(line_end(&long), Err(HeaderError::TooLong));
    }
}
