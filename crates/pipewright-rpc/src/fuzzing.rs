//! Fuzzing support (feature `fuzzing`): the code that reads a peer's bytes, run over bytes in
//! memory instead of a pipe. The server side is the very loop a connection thread runs
//! ([`Server::connection_threads`](crate::Server::connection_threads)), reads of a chosen
//! size, the demo router plus a raw-JSON echo; the client side is the blocking client's
//! reading of answers. Not part of the protocol.
//!
//! ```
//! use pipewright_rpc::fuzzing::{decode_answers, serve_bytes};
//! let body = br#"{"method":"Factorial","params":{"n":5},"id":3}"#;
//! let mut request = (body.len() as u32).to_le_bytes().to_vec();
//! request.extend_from_slice(body);
//! let answers = decode_answers(&serve_bytes(&request, 7, 1024), 1024).unwrap();
//! assert_eq!(answers, [(Some(3), Ok(r#"{"Number":120}"#.to_owned()))]);
//! ```

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::frame_buffer::{FrameBuffer, Front};
use crate::router::Router;
use crate::thread_connection::{serve, Control, Served, TryWrite};
use crate::wire;

/// A peer's bytes to read in pieces of at most `read_size`, and what is written back.
struct Duplex<'a> {
    input: &'a [u8],
    read_size: usize,
    output: Vec<u8>,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.read_size).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl TryWrite for Duplex<'_> {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzzing server")
    })
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        crate::demo::router().handle(
            "Raw",
            |v: serde_json::Value| async move { Ok::<_, String>(v) },
        )
    })
}

/// Serves `input` as one connection's request stream (read at most `read_size` bytes at a
/// time, frames up to `max_frame` bytes) the way a connection thread does, and returns every
/// byte the server wrote back.
pub fn serve_bytes(input: &[u8], read_size: usize, max_frame: usize) -> Vec<u8> {
    let mut io = Duplex {
        input,
        read_size: read_size.max(1),
        output: Vec::new(),
    };
    let control = Control::new(None);
    let served = serve(&mut io, router(), max_frame, &control, runtime().handle());
    // Memory takes every write: the thread never has a reason to hand the connection over.
    assert_eq!(served, Served::Ended);
    io.output
}

/// One answer as the client reads it: its id, and its Ok params (JSON text) or Err message.
pub type ReadAnswer = (Option<u64>, Result<String, String>);

/// Reads `bytes` as a server's answer stream the way the blocking client does: each answer's
/// id and its Ok params (JSON text) or Err message, until the bytes end. An error names the
/// first frame the client would refuse (over `max_frame`, not a response, or cut short).
pub fn decode_answers(bytes: &[u8], max_frame: usize) -> Result<Vec<ReadAnswer>, String> {
    let mut frames = FrameBuffer::new(max_frame);
    let mut input = bytes;
    let mut answers = Vec::new();
    loop {
        match frames.front() {
            Front::Whole(body) => {
                let len = body.len();
                let (id, answer) = wire::decode_answer_borrowed(body)?;
                answers.push((id, answer.map(|p| p.get().to_owned())));
                frames.consume_frame(len);
            }
            Front::Oversize(len) => return Err(format!("a {len}-byte answer over the limit")),
            Front::Partial => {
                if frames.read_from(&mut input).expect("reading a slice") == 0 {
                    return match frames.unhandled_len() {
                        0 => Ok(answers),
                        got => Err(format!("the stream ended {got} bytes into a frame")),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn answers_do_not_depend_on_the_read_size_and_read_back() {
        let mut input = frames(&[
            br#"{"method":"Echo","params":{"payload":"hi"},"id":7}"#,
            &[b' '; 80],
            br#"{"method":"Factorial","params":{"n":4}}"#,
            b"{oops",
        ]);
        input.extend_from_slice(&[9, 0, 0, 0, b'{']);
        let whole = serve_bytes(&input, 1 << 16, 64);
        for read_size in [1, 3, 5, 64] {
            assert_eq!(
                serve_bytes(&input, read_size, 64),
                whole,
                "read size {read_size}"
            );
        }
        let answers = decode_answers(&whole, 1 << 20).unwrap();
        assert_eq!(answers.len(), 4, "{answers:?}");
        assert_eq!(answers[0], (Some(7), Ok(r#"{"Json":"hi"}"#.to_owned())));
        assert!(matches!(&answers[1], (None, Err(m)) if m.contains("over the 64-byte limit")));
        assert_eq!(answers[2], (None, Ok(r#"{"Number":24}"#.to_owned())));
        assert!(matches!(&answers[3], (None, Err(m)) if m.contains("malformed JSON")));
        // The client's reader names a frame cut short.
        let err = decode_answers(&whole[..whole.len() - 1], 1 << 20).unwrap_err();
        assert!(err.contains("bytes into a frame"), "{err}");
    }
}
