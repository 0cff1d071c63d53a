//! Opening upstream connections: TCP, a pipe or Unix socket, or a helper process's stdio.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use pipewright::{ConnectOptions, PipeStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::address::{CommandLine, Upstream};

/// Opens a connection to the one upstream, whatever URI the client asks for.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamConnector {
    pub upstream: Upstream,
    pub connect_timeout: Duration,
}

impl UpstreamConnector {
    async fn open(&self) -> io::Result<UpstreamIo> {
        let opening = async {
            match &self.upstream {
                Upstream::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(UpstreamIo::Tcp(stream))
                }
                Upstream::Pipe(name) => {
                    // Busy pipes are retried by the core until the connect timeout.
                    let options = ConnectOptions::new()
                        .timeout(self.connect_timeout)
                        .retry_not_found(false);
                    let stream = pipewright::connect_with(name, &options).await?;
                    Ok(UpstreamIo::Pipe(Box::new(stream)))
                }
                Upstream::Exec(cmd) => spawn_helper(cmd),
            }
        };
        match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {} took longer than {:?}",
                    self.upstream, self.connect_timeout
                ),
            )),
        }
    }
}

fn spawn_helper(cmd: &CommandLine) -> io::Result<UpstreamIo> {
    let mut child = Command::new(cmd.program())
        .args(cmd.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {:?}: {e}", cmd.program())))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("helper has no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("helper has no stdout"))?;
    Ok(UpstreamIo::Child(Box::new(ChildIo {
        _child: child,
        stdin,
        stdout,
    })))
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = TokioIo<UpstreamIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<UpstreamIo>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.open().await.map(TokioIo::new) })
    }
}

/// A helper process: writes go to its stdin, reads come from its stdout. Dropping it kills
/// the process.
#[derive(Debug)]
pub(crate) struct ChildIo {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// One upstream connection.
#[derive(Debug)]
pub(crate) enum UpstreamIo {
    Tcp(TcpStream),
    Pipe(Box<PipeStream>),
    Child(Box<ChildIo>),
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Pipe(s) => Pin::new(&mut **s).poll_read(cx, buf),
            UpstreamIo::Child(c) => Pin::new(&mut c.stdout).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Pipe(s) => Pin::new(&mut **s).poll_write(cx, buf),
            UpstreamIo::Child(c) => Pin::new(&mut c.stdin).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Pipe(s) => Pin::new(&mut **s).poll_flush(cx),
            UpstreamIo::Child(c) => Pin::new(&mut c.stdin).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Pipe(s) => Pin::new(&mut **s).poll_shutdown(cx),
            UpstreamIo::Child(c) => Pin::new(&mut c.stdin).poll_shutdown(cx),
        }
    }
}
