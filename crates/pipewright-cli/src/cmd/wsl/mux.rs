//! The multiplexed link between the daemon and the Windows host: yamux over the host's
//! stdin and stdout, and the header exchange that opens each stream.
//!
//! ```ignore
//! let (link, driver) = mux::client(Duplex::new(child_stdout, child_stdin));
//! tokio::spawn(driver);
//! let stream = mux::open_target(&link, "npipe:openssh-ssh-agent").await?;
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::wire::{self, HeaderError, Reply};
use crate::join::{BoxRead, BoxWrite};

/// How long either side waits for the other's header line.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one link carries at once; beyond it, opening waits.
pub const MAX_STREAMS: usize = 1024;

/// One multiplexed stream, as a tokio stream.
pub type MuxStream = Compat<yamux::Stream>;

type Opener = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// The largest data frame, and the buffer on each side of the link. yamux writes a frame's
/// header and body apart; the buffer turns them, and small frames of several streams, into
/// one write of the pipe (docs/bench.md, `pipewright wsl`: bulk).
const LINK_BUFFER: usize = 64 * 1024;

/// The yamux settings both sides use: each stream's window starts at yamux's 256 KiB (what
/// one connection can have in flight), and all windows together stay under 1 GiB.
fn config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS);
    config.set_split_send_size(LINK_BUFFER);
    config
}

/// The daemon's handle on a link: opens streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Link {
    requests: mpsc::Sender<Opener>,
}

impl Link {
    /// Opens a new stream (no header yet).
    pub async fn open(&self) -> Result<MuxStream, OpenError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .await
            .map_err(|_| OpenError::Link("the link is down".into()))?;
        match rx.await {
            Ok(Ok(stream)) => Ok(stream.compat()),
            Ok(Err(e)) => Err(OpenError::Link(e.to_string())),
            Err(_) => Err(OpenError::Link("the link is down".into())),
        }
    }
}

/// The client (daemon) side of a link over `io`: a handle that opens streams, and the
/// driver future that must run for the link to move (it ends, with the reason, when the
/// link does). Streams the other side opens are refused.
pub fn client<T>(io: T) -> (Link, impl Future<Output = String>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (requests, rx) = mpsc::channel(64);
    let driver = async move {
        match drive(io, yamux::Mode::Client, Some(rx), |_refused| {}).await {
            Ok(()) => "the link closed".to_string(),
            Err(e) => format!("the link broke: {e}"),
        }
    };
    (Link { requests }, driver)
}

/// The server (host) side of a link over `io`: calls `on_stream` for each stream the other
/// side opens, until the link ends.
pub async fn serve<T>(io: T, on_stream: impl FnMut(MuxStream)) -> Result<(), yamux::ConnectionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut on_stream = on_stream;
    drive(io, yamux::Mode::Server, None, |s| on_stream(s.compat())).await
}

/// Polls the connection: serves open requests and hands over inbound streams. yamux only
/// moves data while `poll_next_inbound` is polled, so this runs for the link's whole life.
async fn drive<T>(
    io: T,
    mode: yamux::Mode,
    mut requests: Option<mpsc::Receiver<Opener>>,
    mut inbound: impl FnMut(yamux::Stream),
) -> Result<(), yamux::ConnectionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // yamux flushes whenever it has nothing more to send, so the buffer never holds a frame
    // back.
    let io = tokio::io::BufStream::with_capacity(LINK_BUFFER, LINK_BUFFER, io);
    let mut conn = yamux::Connection::new(io.compat(), config(), mode);
    let mut pending: Option<Opener> = None;
    std::future::poll_fn(|cx| {
        let mut requests_done = false;
        if let Some(rx) = requests.as_mut() {
            loop {
                if pending.is_none() {
                    match rx.poll_recv(cx) {
                        Poll::Ready(Some(tx)) => pending = Some(tx),
                        Poll::Ready(None) => {
                            requests_done = true;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(result) => {
                        if let Some(tx) = pending.take() {
                            let _ = tx.send(result);
                        }
                    }
                    Poll::Pending => break,
                }
            }
        }
        if requests_done {
            requests = None;
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => inbound(stream),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// A reading half and a writing half as one stream (a child's stdout and stdin, or this
/// process's stdin and stdout), which is what the multiplexer runs on.
pub struct Duplex {
    reader: BoxRead,
    writer: BoxWrite,
}

impl Duplex {
    /// Joins two halves.
    pub fn new(reader: BoxRead, writer: BoxWrite) -> Self {
        Duplex { reader, writer }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Why a stream could not be opened to its target.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The link to the Windows host failed (it exited, or its pipes broke).
    #[error("the link to the Windows host failed: {0}")]
    Link(String),
    /// The other side did not follow the header protocol.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The host answered with a failure: the target is not up, denied access, ...
    #[error("{message}")]
    Target {
        /// The exit code of the failure (docs/cli.md).
        code: u8,
        /// The host's message, naming the target.
        message: String,
    },
    /// The other side did not send its header line in time.
    #[error("no header from the other side within {HEADER_TIMEOUT:?}")]
    TimedOut,
}

/// Reads one header line, byte by byte so that nothing after the newline is consumed, and
/// returns it without the newline.
pub async fn read_line<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, OpenError> {
    let read = async {
        let mut line = Vec::with_capacity(64);
        loop {
            let mut byte = [0u8; 1];
            let n = reader
                .read(&mut byte)
                .await
                .map_err(|e| OpenError::Link(e.to_string()))?;
            if n == 0 {
                return Err(OpenError::Link(
                    "the stream ended before its header line".into(),
                ));
            }
            line.push(byte[0]);
            if let Some(end) = wire::line_end(&line)? {
                line.truncate(end);
                return Ok(line);
            }
        }
    };
    tokio::time::timeout(HEADER_TIMEOUT, read)
        .await
        .map_err(|_| OpenError::TimedOut)?
}

/// Daemon side: opens a stream, names `target` and waits for the host's answer. The stream
/// returned carries the target's bytes.
pub async fn open_target(link: &Link, target: &str) -> Result<MuxStream, OpenError> {
    let request = wire::encode_request(target)?;
    let mut stream = link.open().await?;
    stream
        .write_all(&request)
        .await
        .map_err(|e| OpenError::Link(e.to_string()))?;
    let line = read_line(&mut stream).await?;
    match wire::decode_reply(&line)? {
        Reply::Connected => Ok(stream),
        Reply::Failed { code, message } => {
            let _ = stream.shutdown().await;
            Err(OpenError::Target { code, message })
        }
    }
}

/// Host side: sends the answer to a stream's request.
pub async fn send_reply(stream: &mut MuxStream, reply: &Reply) -> io::Result<()> {
    stream.write_all(&wire::encode_reply(reply)).await
}
