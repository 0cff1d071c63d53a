//! Framing: a 4-byte little-endian length, then that many bytes of JSON.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default limit for one frame's JSON body: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// One frame read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A frame within the limit: its JSON body.
    Body(Vec<u8>),
    /// A frame over the limit. Its body was read and thrown away without being stored, so
    /// the stream is still in step and the next frame can be read.
    Oversize {
        /// The length the header announced.
        len: usize,
    },
}

/// Why a frame could not be read; after any of these the stream is out of step and must be
/// closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended inside a frame.
    #[error("truncated frame: the stream ended after {got} of {expected} bytes; the peer must send the whole frame (4-byte length, then the body)")]
    Truncated {
        /// Bytes the frame needed (header included).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The transport failed.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly between frames. The length is
/// checked against `max_body` before any buffer is allocated; a longer frame is skipped and
/// reported as [`Frame::Oversize`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use pipewright_rpc::frame::{read_frame, Frame};
/// let mut reader: &[u8] = &[2, 0, 0, 0, b'{', b'}'];
/// assert_eq!(read_frame(&mut reader, 1024).await.unwrap(), Some(Frame::Body(b"{}".to_vec())));
/// assert_eq!(read_frame(&mut reader, 1024).await.unwrap(), None);
/// # });
/// ```
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body: usize,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = reader.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                expected: HEADER_LEN,
                got,
            });
        }
        got += n;
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max_body {
        let skipped = tokio::io::copy(&mut (&mut *reader).take(len as u64), &mut tokio::io::sink())
            .await? as usize;
        if skipped < len {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN + len,
                got: HEADER_LEN + skipped,
            });
        }
        return Ok(Some(Frame::Oversize { len }));
    }
    let mut body = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = reader.read(&mut body[filled..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN + len,
                got: HEADER_LEN + filled,
            });
        }
        filled += n;
    }
    Ok(Some(Frame::Body(body)))
}

/// The body length of the frame at the start of `buf`, when all of it is there.
pub(crate) fn whole_frame_len(buf: &[u8]) -> Option<usize> {
    let header = buf.first_chunk::<HEADER_LEN>()?;
    let len = u32::from_le_bytes(*header) as usize;
    (buf.len() - HEADER_LEN >= len).then_some(len)
}

/// Writes `body` as one frame (header and body in a single write) and flushes.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut out = Vec::new();
/// pipewright_rpc::frame::write_frame(&mut out, b"{}").await.unwrap();
/// assert_eq!(out, [2, 0, 0, 0, b'{', b'}']);
/// # });
/// ```
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&frame_header(body.len())?);
    frame.extend_from_slice(body);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// The 4-byte header for a body of `len` bytes; fails when `len` does not fit in 32 bits.
pub fn frame_header(len: usize) -> io::Result<[u8; HEADER_LEN]> {
    let len = u32::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a frame body of {len} bytes does not fit the 4-byte length; send less than 4 GiB"
            ),
        )
    })?;
    Ok(len.to_le_bytes())
}

/// A buffer that starts with room for the header: write the body after it, then call
/// [`FrameBuf::finish`] to fill in the length.
#[derive(Debug)]
pub(crate) struct FrameBuf(Vec<u8>);

impl FrameBuf {
    pub(crate) fn with_capacity(body: usize) -> Self {
        let mut v = Vec::with_capacity(HEADER_LEN + body);
        v.extend_from_slice(&[0; HEADER_LEN]);
        FrameBuf(v)
    }

    pub(crate) fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.0[HEADER_LEN..]
    }

    pub(crate) fn body_len(&self) -> usize {
        self.0.len() - HEADER_LEN
    }

    /// Fills in the length; [`frame`](Self::frame) is then the whole frame.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        let header = frame_header(self.body_len())?;
        self.0[..HEADER_LEN].copy_from_slice(&header);
        Ok(())
    }

    /// The header (filled in by [`seal`](Self::seal)) and the body.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.0
    }

    /// Fills in the length and returns the whole frame.
    pub(crate) fn finish(mut self) -> io::Result<Vec<u8>> {
        self.seal()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn frames_in_sequence_then_clean_end() {
        run(async {
            let mut bytes: &[u8] = &[1, 0, 0, 0, b'1', 0, 0, 0, 0, 2, 0, 0, 0, b'[', b']'];
            assert_eq!(
                read_frame(&mut bytes, 10).await.unwrap(),
                Some(Frame::Body(b"1".to_vec()))
            );
            assert_eq!(
                read_frame(&mut bytes, 10).await.unwrap(),
                Some(Frame::Body(vec![]))
            );
            assert_eq!(
                read_frame(&mut bytes, 10).await.unwrap(),
                Some(Frame::Body(b"[]".to_vec()))
            );
            assert_eq!(read_frame(&mut bytes, 10).await.unwrap(), None);
        })
    }

    #[test]
    fn oversize_frame_is_skipped_and_the_next_one_reads() {
        run(async {
            let mut data = vec![20, 0, 0, 0];
            data.extend_from_slice(&[b'x'; 20]);
            data.extend_from_slice(&[2, 0, 0, 0, b'{', b'}']);
            let mut r = &data[..];
            assert_eq!(
                read_frame(&mut r, 8).await.unwrap(),
                Some(Frame::Oversize { len: 20 })
            );
            assert_eq!(
                read_frame(&mut r, 8).await.unwrap(),
                Some(Frame::Body(b"{}".to_vec()))
            );
        })
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        run(async {
            // 4 GiB - 1 announced, 3 bytes present: refused by the limit, then truncated.
            let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
            let err = read_frame(&mut r, 1024).await.unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { expected, got: 7 } if expected == 4 + u32::MAX as usize),
                "{err:?}"
            );
        })
    }

    #[test]
    fn truncated_header_and_body_are_errors() {
        run(async {
            let mut r: &[u8] = &[5, 0];
            let err = read_frame(&mut r, 1024).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    FrameError::Truncated {
                        expected: 4,
                        got: 2
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("truncated frame"), "{err}");
            let mut r: &[u8] = &[5, 0, 0, 0, b'a', b'b'];
            let err = read_frame(&mut r, 1024).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    FrameError::Truncated {
                        expected: 9,
                        got: 6
                    }
                ),
                "{err:?}"
            );
        })
    }

    #[test]
    fn frame_buf_fills_in_the_length() {
        let mut b = FrameBuf::with_capacity(3);
        b.body_mut().extend_from_slice(b"abc");
        assert_eq!(b.finish().unwrap(), [3, 0, 0, 0, b'a', b'b', b'c']);
    }
}
