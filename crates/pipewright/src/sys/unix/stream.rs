//! A connected Unix stream socket in byte or message mode.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use super::framing::{too_large, FrameReader, FrameWriter};
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ConnectOptions, PipeMode, StreamConfig};
use crate::peer::{Peer, PeerUser};

/// Largest read `recv_message` makes in byte mode.
const BYTE_READ_SIZE: usize = 64 * 1024;

/// The longest path `sockaddr_un` holds, without its terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug)]
pub(crate) struct Stream {
    io: UnixStream,
    config: StreamConfig,
    server: bool,
    reader: FrameReader,
    writer: FrameWriter,
    path: String,
}

impl Stream {
    pub(crate) fn new(io: UnixStream, config: StreamConfig, server: bool, path: String) -> Self {
        Stream {
            io,
            config,
            server,
            reader: FrameReader::default(),
            writer: FrameWriter::default(),
            path,
        }
    }

    pub(crate) fn mode(&self) -> PipeMode {
        self.config.mode
    }

    pub(crate) fn is_server(&self) -> bool {
        self.server
    }

    pub(crate) fn peer(&self) -> Result<Peer> {
        let cred = self
            .io
            .peer_cred()
            .map_err(|e| Error::from_io(e, &self.path, "read peer credentials"))?;
        Ok(Peer {
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
            user: Some(PeerUser::Uid(cred.uid())),
        })
    }

    pub(crate) async fn send_message(&mut self, msg: &[u8]) -> Result<()> {
        let result = async {
            match self.config.mode {
                PipeMode::Byte => self.io.write_all(msg).await,
                PipeMode::Message => {
                    if msg.len() > self.config.max_message_size {
                        return Err(too_large(msg.len(), self.config.max_message_size));
                    }
                    std::future::poll_fn(|cx| self.writer.poll_drain(&mut self.io, cx)).await?;
                    self.io.write_all(&(msg.len() as u32).to_le_bytes()).await?;
                    self.io.write_all(msg).await
                }
            }
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &self.path, "send"))
    }

    pub(crate) async fn recv_message(&mut self) -> Result<Option<Vec<u8>>> {
        let result = async {
            match self.config.mode {
                PipeMode::Byte => {
                    // Whatever one read delivers; the kernel's socket buffer bounds it anyway.
                    let mut buf = vec![0u8; self.config.io_buffer_size.min(BYTE_READ_SIZE)];
                    let n = self.io.read(&mut buf).await?;
                    buf.truncate(n);
                    Ok((n > 0).then_some(buf))
                }
                PipeMode::Message => {
                    let max = self.config.max_message_size;
                    let len =
                        std::future::poll_fn(|cx| self.reader.poll_header(&mut self.io, max, cx))
                            .await?;
                    let Some(len) = len else { return Ok(None) };
                    let mut msg = vec![0u8; len];
                    let mut filled = 0;
                    while filled < len {
                        let mut rb = ReadBuf::new(&mut msg[filled..]);
                        std::future::poll_fn(|cx| {
                            self.reader.poll_read(&mut self.io, max, cx, &mut rb)
                        })
                        .await?;
                        let got = rb.filled().len();
                        if got == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the peer closed in the middle of a message",
                            ));
                        }
                        filled += got;
                    }
                    Ok(Some(msg))
                }
            }
        }
        .await;
        result.map_err(|e| Error::from_stream(e, &self.path, "receive"))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.config.mode {
            PipeMode::Byte => Pin::new(&mut this.io).poll_read(cx, buf),
            PipeMode::Message => {
                this.reader
                    .poll_read(&mut this.io, this.config.max_message_size, cx, buf)
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.config.mode {
            PipeMode::Byte => Pin::new(&mut this.io).poll_write(cx, buf),
            PipeMode::Message => {
                this.writer
                    .poll_write(&mut this.io, this.config.max_message_size, cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.writer.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.writer.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// One connect attempt.
pub(crate) async fn connect_once(name: &PipeName, options: &ConnectOptions) -> Result<Stream> {
    if name.host().is_some() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "remote pipes exist only on Windows; use a local name",
        )
        .with_pipe(name.windows_path()));
    }
    let path = name.unix_path();
    let shown = path.display().to_string();
    check_path_len(&shown)?;
    let io = UnixStream::connect(&path)
        .await
        .map_err(|e| Error::from_io(e, &shown, "connect"))?;
    Ok(Stream::new(io, options.stream.clone(), false, shown))
}

pub(crate) fn check_path_len(path: &str) -> Result<()> {
    if path.len() > MAX_SOCKET_PATH {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "socket path is {} bytes; Unix allows at most {MAX_SOCKET_PATH}: use a shorter name or set PIPEWRIGHT_RUNTIME_DIR to a shorter directory",
                path.len()
            ),
        )
        .with_pipe(path));
    }
    Ok(())
}
