//! Directional limit enforcement after the handshake.
//!
//! Send side: a client's REQUEST is checked against the request limits and a
//! server's RESPONSE against the response limits; a limit of 0 is unchecked;
//! other kinds are unchecked. Receive side: every message, of any kind, is
//! checked against the limits of the direction it travels (0 is enforced).
//!
//! ```
//! use pipewright_netipc::limits::{Limits, Role};
//! use pipewright_netipc::header::Header;
//! let limits = Limits { role: Role::Server, max_request_payload_bytes: 16, max_request_batch_items: 1,
//!                       max_response_payload_bytes: 1024, max_response_batch_items: 1 };
//! assert!(limits.check_receive(&Header::request(1, 1, 16)).is_ok());
//! assert!(limits.check_receive(&Header::request(1, 1, 17)).is_err());
//! ```

use crate::wire::header::{Header, Kind};

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends requests, receives responses.
    Client,
    /// Receives requests, sends responses.
    Server,
}

/// The negotiated ceilings seen from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// This side's role.
    pub role: Role,
    /// Request payload ceiling.
    pub max_request_payload_bytes: u32,
    /// Request batch ceiling.
    pub max_request_batch_items: u32,
    /// Response payload ceiling.
    pub max_response_payload_bytes: u32,
    /// Response batch ceiling.
    pub max_response_batch_items: u32,
}

/// A message exceeds a negotiated limit (LIMIT_EXCEEDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// payload_len is above the ceiling.
    #[error("{direction} payload of {len} bytes exceeds the negotiated {max}")]
    Payload {
        /// "request" or "response".
        direction: &'static str,
        /// payload_len.
        len: u32,
        /// Ceiling.
        max: u32,
    },
    /// item_count is above the ceiling.
    #[error("{direction} carries {count} items, the negotiated maximum is {max}")]
    Items {
        /// "request" or "response".
        direction: &'static str,
        /// item_count.
        count: u32,
        /// Ceiling.
        max: u32,
    },
}

impl Limits {
    fn outgoing(&self) -> (&'static str, u32, u32) {
        match self.role {
            Role::Client => (
                "request",
                self.max_request_payload_bytes,
                self.max_request_batch_items,
            ),
            Role::Server => (
                "response",
                self.max_response_payload_bytes,
                self.max_response_batch_items,
            ),
        }
    }

    fn incoming(&self) -> (&'static str, u32, u32) {
        match self.role {
            Role::Client => (
                "response",
                self.max_response_payload_bytes,
                self.max_response_batch_items,
            ),
            Role::Server => (
                "request",
                self.max_request_payload_bytes,
                self.max_request_batch_items,
            ),
        }
    }

    /// Checks a message this side is about to send.
    pub fn check_send(&self, h: &Header) -> Result<(), LimitError> {
        let own_kind = match self.role {
            Role::Client => Kind::Request,
            Role::Server => Kind::Response,
        };
        if h.kind != own_kind {
            return Ok(());
        }
        let (direction, max_len, max_items) = self.outgoing();
        if max_len != 0 && h.payload_len > max_len {
            return Err(LimitError::Payload {
                direction,
                len: h.payload_len,
                max: max_len,
            });
        }
        if max_items != 0 && h.item_count > max_items {
            return Err(LimitError::Items {
                direction,
                count: h.item_count,
                max: max_items,
            });
        }
        Ok(())
    }

    /// Checks a message this side received (before allocating its payload).
    pub fn check_receive(&self, h: &Header) -> Result<(), LimitError> {
        let (direction, max_len, max_items) = self.incoming();
        if h.payload_len > max_len {
            return Err(LimitError::Payload {
                direction,
                len: h.payload_len,
                max: max_len,
            });
        }
        if h.item_count > max_items {
            return Err(LimitError::Items {
                direction,
                count: h.item_count,
                max: max_items,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::TransportStatus;

    fn limits(role: Role) -> Limits {
        Limits {
            role,
            max_request_payload_bytes: 100,
            max_request_batch_items: 2,
            max_response_payload_bytes: 1000,
            max_response_batch_items: 2,
        }
    }

    #[test]
    fn client_side() {
        let l = limits(Role::Client);
        assert!(l.check_send(&Header::request(1, 1, 100)).is_ok());
        assert_eq!(
            l.check_send(&Header::request(1, 1, 101)),
            Err(LimitError::Payload {
                direction: "request",
                len: 101,
                max: 100
            })
        );
        let mut h = Header::request(1, 1, 1);
        h.item_count = 3;
        assert_eq!(
            l.check_send(&h),
            Err(LimitError::Items {
                direction: "request",
                count: 3,
                max: 2
            })
        );
        assert!(l
            .check_receive(&Header::response(1, 1, TransportStatus::OK, 1000))
            .is_ok());
        assert!(l
            .check_receive(&Header::response(1, 1, TransportStatus::OK, 1001))
            .is_err());
        // Receive checks apply to any kind.
        assert!(l.check_receive(&Header::request(1, 1, 1001)).is_err());
    }

    #[test]
    fn server_side_and_zero() {
        let l = limits(Role::Server);
        assert!(l.check_receive(&Header::request(1, 1, 101)).is_err());
        assert!(l
            .check_send(&Header::response(1, 1, TransportStatus::OK, 1001))
            .is_err());
        // Requests are not this side's to send: unchecked.
        assert!(l.check_send(&Header::request(1, 1, 5000)).is_ok());
        let zero = Limits {
            max_response_payload_bytes: 0,
            max_response_batch_items: 0,
            ..l
        };
        assert!(zero
            .check_send(&Header::response(1, 1, TransportStatus::OK, u32::MAX))
            .is_ok());
        let zero_rx = Limits {
            max_request_batch_items: 0,
            ..l
        };
        assert!(matches!(
            zero_rx.check_receive(&Header::request(1, 1, 1)),
            Err(LimitError::Items {
                count: 1,
                max: 0,
                ..
            })
        ));
    }
}
