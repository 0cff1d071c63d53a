//! The netipc protocol (Netdata's local IPC): wire codecs, handshake,
//! chunking, batching, service codecs, and a UDS SEQPACKET transport with an
//! async session API.
//!
//! All multi-byte fields use host byte order, as the protocol specifies.
//!
//! ```
//! use pipewright_netipc::header::{Header, method};
//! let h = Header::request(method::INCREMENT, 1, 8);
//! assert_eq!(Header::decode(&h.encode()).unwrap(), h);
//! ```

pub mod batch;
pub mod blocking;
mod bytes;
pub mod chunk;
pub mod client;
pub mod codec;
pub mod endpoint;
pub mod handshake;
pub mod header;
pub mod hello;
pub mod inflight;
pub mod limits;
pub mod lookups;
pub mod managed;
pub mod naming;
pub mod pipe;
pub mod service;
pub mod session;
pub mod shm;
pub mod shm_layout;
pub mod transport;
#[cfg(target_os = "linux")]
pub mod uds;
