//! libassuan "socket files" as gpg-agent writes them on Windows: a TCP port on 127.0.0.1 in
//! ASCII on the first line, then a 16-byte nonce that the client sends first.
//!
//! ```ignore
//! let stream = assuan::connect(Path::new("C:/Users/me/AppData/Local/gnupg/S.gpg-agent"), None).await?;
//! ```

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::exit;
use crate::failure::Failure;

/// Length of the nonce that follows the port line.
pub const NONCE_LEN: usize = 16;

/// The largest file that can be an Assuan socket file (a port line and the nonce).
const MAX_FILE_LEN: usize = 64;

/// What an Assuan socket file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketFile {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The bytes to send before anything else.
    pub nonce: [u8; NONCE_LEN],
}

const EXPECTED: &str =
    "an Assuan socket file holds a TCP port number on its first line followed by a 16-byte nonce";

/// Parses the contents of an Assuan socket file; `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<SocketFile, Failure> {
    let bad = |what: String| {
        Failure::new(
            exit::PEER_ERROR,
            format!(
                "{}: not an Assuan socket file: {what}; {EXPECTED}",
                path.display()
            ),
        )
    };
    if bytes.starts_with(b"!<socket >") {
        return Err(bad(
            "it is a Cygwin/MSYS2 socket file (S.gpg-agent.ssh and friends are); relay S.gpg-agent, or the pipe \\\\.\\pipe\\openssh-ssh-agent for ssh"
                .into(),
        ));
    }
    if bytes.len() > MAX_FILE_LEN {
        return Err(bad(format!("it is {} bytes long", bytes.len())));
    }
    let Some(eol) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(bad("it has no port line ending in a newline".into()));
    };
    let line = bytes[..eol].strip_suffix(b"\r").unwrap_or(&bytes[..eol]);
    let text = String::from_utf8_lossy(line);
    let port: u16 = match text.parse() {
        Ok(p) if p != 0 && line.iter().all(u8::is_ascii_digit) => p,
        _ => {
            return Err(bad(format!(
                "the first line {text:?} is not a port number (1-65535)"
            )))
        }
    };
    let rest = &bytes[eol + 1..];
    let nonce: [u8; NONCE_LEN] = rest.try_into().map_err(|_| {
        bad(format!(
            "the nonce after the port line is {} bytes, not {NONCE_LEN}",
            rest.len()
        ))
    })?;
    Ok(SocketFile { port, nonce })
}

/// Reads and parses an Assuan socket file.
pub fn read(path: &Path) -> Result<SocketFile, Failure> {
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; is gpg-agent running? (gpgconf --launch gpg-agent)"
        } else {
            ""
        };
        Failure::new(
            crate::failure::open_code(&e),
            format!(
                "{}: cannot read the Assuan socket file: {e}{hint}",
                path.display()
            ),
        )
    })?;
    parse(path, &bytes)
}

/// Reads `path`, connects to its port on 127.0.0.1 and sends the nonce. With `wait`, an agent
/// that refuses connections (not started yet) is retried until that much time has passed,
/// re-reading the file each time (a restarted agent writes a new port and nonce).
pub async fn connect(path: &Path, wait: Option<Duration>) -> Result<TcpStream, Failure> {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let mut backoff = Duration::from_millis(10);
    loop {
        let attempt = connect_once(path).await;
        match (&attempt, deadline) {
            (Err(f), Some(deadline))
                if f.code == exit::NOT_FOUND && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!("{f}; retrying");
                tokio::time::sleep(backoff.min(deadline - tokio::time::Instant::now())).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            _ => return attempt,
        }
    }
}

async fn connect_once(path: &Path) -> Result<TcpStream, Failure> {
    let file = read(path)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], file.port));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| {
        Failure::new(
            crate::failure::open_code(&e),
            format!(
                "{}: no agent accepts connections on {addr}, the port this file names: {e}; start the agent (gpgconf --launch gpg-agent)",
                path.display()
            ),
        )
    })?;
    stream.write_all(&file.nonce).await.map_err(|e| {
        Failure::new(
            exit::PEER_ERROR,
            format!(
                "{}: the agent on {addr} closed before taking the nonce: {e}",
                path.display()
            ),
        )
    })?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("S.gpg-agent")
    }

    #[test]
    fn port_line_and_nonce() {
        let mut bytes = b"54321\n".to_vec();
        bytes.extend_from_slice(b"0123456789abcdef");
        let f = parse(p(), &bytes).unwrap();
        assert_eq!(f.port, 54321);
        assert_eq!(&f.nonce, b"0123456789abcdef");
    }

    #[test]
    fn crlf_port_line_is_tolerated() {
        let mut bytes = b"1234\r\n".to_vec();
        bytes.extend_from_slice(&[0xff; 16]);
        assert_eq!(parse(p(), &bytes).unwrap().port, 1234);
    }

    #[test]
    fn nonce_may_hold_newlines_and_crs() {
        let mut bytes = b"80\n".to_vec();
        bytes.extend_from_slice(&b"\n\r".repeat(8));
        assert_eq!(parse(p(), &bytes).unwrap().nonce.len(), 16);
    }

    #[test]
    fn malformed_files_name_the_file_and_what_was_expected() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"notaport\n0123456789abcdef".to_vec(),
                "\"notaport\" is not a port",
            ),
            (b"0\n0123456789abcdef".to_vec(), "is not a port"),
            (b"70000\n0123456789abcdef".to_vec(), "is not a port"),
            (b"+80\n0123456789abcdef".to_vec(), "is not a port"),
            (b"80\nshort".to_vec(), "5 bytes, not 16"),
            (b"80\n0123456789abcdefX".to_vec(), "17 bytes, not 16"),
            (b"8080".to_vec(), "no port line"),
            (Vec::new(), "no port line"),
            (
                b"!<socket >54321 s 1-2-3-4".to_vec(),
                "Cygwin/MSYS2 socket file",
            ),
            (vec![b'1'; 200], "200 bytes long"),
        ];
        for (bytes, needle) in cases {
            let err = parse(Path::new("C:/gnupg/S.gpg-agent.ssh"), &bytes).unwrap_err();
            assert_eq!(err.code, exit::PEER_ERROR);
            assert!(
                err.message.contains(needle),
                "{} lacks {needle}",
                err.message
            );
            assert!(
                err.message.contains("C:/gnupg/S.gpg-agent.ssh"),
                "{}",
                err.message
            );
            assert!(
                err.message.contains("port number on its first line"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = read(Path::new("/nonexistent/dir/S.gpg-agent")).unwrap_err();
        assert_eq!(err.code, exit::NOT_FOUND);
        assert!(err.message.contains("S.gpg-agent"), "{}", err.message);
    }
}
