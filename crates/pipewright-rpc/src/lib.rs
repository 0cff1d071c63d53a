#![doc = include_str!("../README.md")]
//!
//! Typed JSON RPC over Windows named pipes and Unix sockets, wire-compatible with pipe-rpc,
//! with many calls in flight on one connection.
//!
//! - [`Router`] maps method names to async handlers with serde types, or serves a
//!   [`Service`] over a `#[serde(tag = "method", content = "params")]` enum.
//! - [`Server`] serves a router on a [`pipewright::Listener`]: many connections, a limit of
//!   requests in flight per connection, graceful shutdown.
//! - [`Client`] makes typed calls with a per-call timeout; dropping a call's future abandons
//!   it; a dead connection is replaced on the next call; connecting uses the core's retry of
//!   busy and missing servers.
//! - [`blocking::Client`] makes one call at a time on the caller's thread, without a runtime;
//!   with [`Server::connection_threads`] the server answers such a connection on a thread of
//!   its own, so a call costs one write and one read on each side.
//! - [`demo`] is pipe-rpc's demo service (Factorial, Reverse, Echo).
//!
//! ```no_run
//! use pipewright_rpc::{Client, Router, Server};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new().handle("Add", |p: Add| async move {
//!     p.a.checked_add(p.b).ok_or("the sum overflows")
//! });
//! let listener = pipewright::Listener::bind("calc")?;
//! tokio::spawn(Server::new(router).serve(listener));
//!
//! let client = Client::connect("calc").await?;
//! let sum: i64 = client.call("Add", &serde_json::json!({"a": 2, "b": 3})).await?;
//! assert_eq!(sum, 5);
//! # Ok(()) }
//! ```
//!
//! # Wire format
//!
//! A byte stream (a byte-mode pipe on Windows, a stream socket on Unix) carries frames in both
//! directions. A frame is a 4-byte little-endian length `N`, then `N` bytes of UTF-8 JSON.
//!
//! A **request** is an object with `"method"` (a string) and `"params"` (any JSON; may be
//! left out, which handlers see as `null`): exactly what serde writes for an enum with
//! `#[serde(tag = "method", content = "params")]`. The request
//! `{"method":"Factorial","params":{"n":5}}` is 39 (`0x27`) bytes:
//!
//! ```text
//! 27 00 00 00 7b 22 6d 65 74 68 6f 64 22 3a 22 46 61 63 74 6f 72 69 61 6c 22 2c
//!             {  "  m  e  t  h  o  d  "  :  "  F  a  c  t  o  r  i  a  l  "  ,
//!             22 70 61 72 61 6d 73 22 3a 7b 22 6e 22 3a 35 7d 7d
//!             "  p  a  r  a  m  s  "  :  {  "  n  "  :  5  }  }
//! ```
//!
//! A **response** is `{"status":"Ok","params":<answer>}` or
//! `{"status":"Err","params":"<message>"}` (serde's `tag = "status", content = "params"` of a
//! `Result`). The answer to the request above, `{"status":"Ok","params":{"Number":120}}`,
//! is also 39 bytes:
//!
//! ```text
//! 27 00 00 00 7b 22 73 74 61 74 75 73 22 3a 22 4f 6b 22 2c 22 70 61 72 61 6d 73 22 3a
//!             {  "  s  t  a  t  u  s  "  :  "  O  k  "  ,  "  p  a  r  a  m  s  "  :
//!             7b 22 4e 75 6d 62 65 72 22 3a 31 32 30 7d 7d
//!             {  "  N  u  m  b  e  r  "  :  1  2  0  }  }
//! ```
//!
//! **Ids.** A request may carry `"id"`, an unsigned integer; its answer carries the same id
//! as the last field, and may come before answers to earlier requests:
//! `2d 00 00 00` `{"method":"Echo","params":{"payload":"hi"},"id":7}` is answered with
//! `2d 00 00 00` `{"status":"Ok","params":{"Json":"hi"},"id":7}` (45 bytes each). Requests
//! without an id are run one after another and answered in the order they came, so a
//! pipe-rpc client, which sends no ids, works unchanged. [`Client`] always sends ids, and
//! matches an answer without one to its oldest call, so it also talks to a server that
//! answers in order without ids.
//!
//! **Errors.** Every request the server cannot run gets an Err answer naming the problem, and
//! the connection goes on: malformed JSON, a request that is not an object or lacks
//! `"method"`, an id that is not an unsigned integer, an unknown method (the message lists
//! the known ones), params of the wrong shape, and a frame over the size limit (16 MiB by
//! default; the length is checked before any buffer is allocated, and the body is skipped
//! unread). Answers to requests whose id could not be read carry no id and come in order with
//! the other id-less answers. A stream that ends inside a frame closes only that connection.
//!
//! # How calls travel
//!
//! One connection carries every call of a [`Client`] and its clones. A call encodes its
//! whole frame first, then commits it to the connection in one synchronous step: it writes
//! the frame itself when nothing else is queued and the stream takes it without blocking,
//! and otherwise appends what is left to the connection's queue, which its writer task sends
//! (frames of concurrent calls queued together leave in one write). Since that step never
//! waits, dropping a call's future can never leave part of a frame on the wire.
//!
//! A call that is the only one in flight reads the stream itself while it waits, handing any
//! other answer it meets to its caller; otherwise the connection's reader task reads and
//! wakes each caller with its answer. The bytes read are kept by the connection, not by the
//! call, so a call dropped while it reads gives the reading back without losing any byte.
//! The turn is the call's only while it is alone: when another call registers, the reader
//! task takes the turn back, so a call that is kept but no longer polled (a `select!` branch
//! that lost) never stalls the others, and finds its answer waiting when polled again.
//! Deadlines are kept by the reader task as well, with one timer per connection. On the
//! server, answers of handlers that finish at once are sent from the connection's own task,
//! several per write when requests come in faster than one at a time.
//!
//! # Backpressure
//!
//! A server connection never queues answers without limit. Each request holds one of the
//! connection's [`max_in_flight`](Server::max_in_flight) permits until the stream has taken
//! its whole answer, and no further request is read while more than
//! [`max_queued_answer_bytes`](Server::max_queued_answer_bytes) (4 MiB by default) of
//! answers wait to be written. A client that pipelines requests and does not read its
//! answers finds its own writes blocked, as over TCP; the server's other connections are
//! served as usual. Requests without ids are still answered strictly in order.
#![warn(missing_docs)]

pub mod blocking;
mod client;
mod connection;
pub mod demo;
mod error;
pub mod frame;
mod frame_buffer;
#[cfg(any(feature = "fuzzing", test))]
pub mod fuzzing;
mod router;
mod server;
mod thread_connection;
mod wire;
mod writer;

pub use client::{Client, ClientOptions, DEFAULT_CALL_TIMEOUT};
pub use error::RpcError;
pub use frame::DEFAULT_MAX_FRAME_SIZE;
pub use router::{Router, Service};
pub use server::{
    Server, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUED_ANSWER_BYTES, DEFAULT_SHUTDOWN_GRACE,
};
