//! The wire format: the 32-byte message header, the handshake's HELLO and
//! HELLO_ACK payloads, chunking, batching, the negotiated limits checks and
//! the names of services, sockets, pipes and regions. Pure codecs: no I/O,
//! and nothing from the layers above.

pub mod batch;
pub(crate) mod bytes;
pub mod chunk;
pub mod header;
pub mod hello;
pub mod limits;
pub mod naming;
