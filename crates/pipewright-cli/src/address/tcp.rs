//! `tcp:HOST:PORT` and `tcp-listen:[HOST:]PORT`.
//!
//! ```ignore
//! let side = tcp::connect("127.0.0.1", 8080).await?;
//! ```

use tokio::net::{TcpListener, TcpStream};

use crate::failure::Failure;
use crate::join::Side;

/// Connects to `host:port`.
pub async fn connect(host: &str, port: u16) -> Result<Side, Failure> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| Failure::from_io(&format!("connect to {host}:{port}"), &e))?;
    Ok(Side::from_tcp(format!("{host}:{port}"), stream))
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
