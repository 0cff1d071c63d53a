#![doc = include_str!("../README.md")]
//!
//! HTTP/1.1, HTTP/2 and WebSocket over Windows named pipes and Unix sockets, on hyper 1.x.
//!
//! - [`Server`] serves any hyper service on a [`pipewright::Listener`] (HTTP/1.1 with upgrades
//!   and HTTP/2, a connection limit, graceful shutdown); each request carries the client's
//!   [`pipewright::Peer`] as an extension.
//! - [`PipeConnector`] is a hyper-util connector for `npipe://` and `unix://` URIs built by
//!   [`Endpoint::uri`] / [`PipeUrl::uri`]; [`client`] is a pooled keep-alive client on it.
//! - [`ws`] upgrades a request to a WebSocket on the server and handshakes as a client.
//! - [`forward`] is an HTTP-aware reverse proxy from a pipe to TCP, a Unix socket, another pipe
//!   or a helper process's stdin/stdout.
//! - `axum` (cargo feature `axum`): a pipe listener for `axum::serve`, with the client's
//!   [`pipewright::Peer`] in `ConnectInfo`; example `axum_json`.
//! - `grpc` (cargo feature `grpc`): tonic servers from a pipe listener (the client's `Peer` in
//!   each request's extensions) and channels to `npipe://` / `unix://` endpoints; example
//!   `grpc_echo`, a service written without `protoc`.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use pipewright_http::PipeUrl;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = pipewright_http::client::<Empty<Bytes>>();
//! let url = PipeUrl::parse("npipe:////./pipe/docker_engine/version")?;
//! let resp = client.get(url.uri()?).await?;
//! println!("{}", String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod error;
pub mod forward;
#[cfg(feature = "grpc")]
pub mod grpc;
mod server;
mod url;
pub mod ws;

pub use client::{
    client, client_builder, PipeConnection, PipeConnector, DEFAULT_POOL_IDLE_TIMEOUT,
};
pub use error::Error;
pub use server::Server;
pub use url::{Endpoint, PipeUrl, UrlError, ACCEPTED_URL_FORMS, NPIPE_SCHEME, UNIX_SCHEME};
