//! `tcp:HOST:PORT[,timeout=D][,poll]` and `tcp-listen:[HOST:]PORT`.
//!
//! ```ignore
//! let side = tcp::connect("127.0.0.1", 8080, tcp::DEFAULT_CONNECT_TIMEOUT, false).await?;
//! ```

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::exit;

use crate::failure::Failure;
use crate::join::Side;

/// How long a `tcp:` connect may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `host:port` within `timeout`; with `poll`, a refused connection (nothing
/// listens yet) is retried until then.
pub async fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
    poll: bool,
) -> Result<Side, Failure> {
    let what = format!("connect to {host}:{port}");
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match tokio::time::timeout_at(deadline, TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => return Ok(Side::from_tcp(format!("{host}:{port}"), stream)),
            Ok(Err(e)) if poll && e.kind() == io::ErrorKind::ConnectionRefused => {
                if Instant::now() + pause >= deadline {
                    return Err(Failure::new(
                        exit::TIMED_OUT,
                        format!("{what}: still refused after {timeout:?}; is the server running? (raise timeout=)"),
                    ));
                }
                tracing::debug!(?pause, "{what}: refused, retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Ok(Err(e)) => return Err(Failure::from_io(&what, &e)),
            Err(_) => {
                return Err(Failure::new(
                    exit::TIMED_OUT,
                    format!("{what}: no connection within {timeout:?} (raise timeout=)"),
                ))
            }
        }
    }
}

/// Listens on `host:port`; port 0 picks a free port, announced on stderr.
pub async fn listen(host: &str, port: u16) -> Result<TcpListener, Failure> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Failure::from_io(&format!("listen on {host}:{port}"), &e))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
        if port == 0 {
            eprintln!("listening on {addr}");
        }
    }
    Ok(listener)
}
