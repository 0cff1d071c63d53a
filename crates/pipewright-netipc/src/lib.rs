#![doc = include_str!("../README.md")]
//!
//! The netipc protocol (Netdata's local IPC): wire codecs, handshake,
//! chunking, batching, service codecs, and a UDS SEQPACKET transport with an
//! async session API.
//!
//! All multi-byte fields use host byte order, as the protocol specifies.
//!
//! The modules are the protocol's layers, each importing only those below
//! it: [`wire`] (pure codecs), [`transport`] (packet transports, endpoints,
//! shared-memory regions over `pipewright-shm`), [`session`] (handshake,
//! sessions), [`codec`] (method payloads) and [`service`] (the managed
//! server and the L2 clients). The earlier flat paths
//! (`pipewright_netipc::header`, `::shm`, `::client`, ...) are re-exports.
//!
//! ```
//! use pipewright_netipc::header::{Header, method};
//! let h = Header::request(method::INCREMENT, 1, 8);
//! assert_eq!(Header::decode(&h.encode()).unwrap(), h);
//! ```

pub mod codec;
pub mod service;
pub mod session;
pub mod transport;
pub mod wire;

// The modules by their earlier, flat paths.
#[doc(no_inline)]
pub use pipewright_shm::layout as shm_layout;
#[doc(no_inline)]
pub use service::{blocking, client, lookups, managed};
#[doc(no_inline)]
pub use session::{handshake, inflight};
#[cfg(target_os = "linux")]
#[doc(no_inline)]
pub use transport::uds;
#[doc(no_inline)]
pub use transport::{endpoint, pipe, shm};
#[doc(no_inline)]
pub use wire::{batch, chunk, header, hello, limits, naming};
