//! HELLO (44-byte payload) and HELLO_ACK (48-byte payload), plus profile bits.
//!
//! ```
//! use pipewright_netipc::hello::{Hello, HELLO_LEN};
//! let h = Hello { auth_token: 42, packet_size: 65536, ..Hello::default() };
//! let bytes = h.encode();
//! assert_eq!(bytes.len(), HELLO_LEN);
//! assert_eq!(Hello::decode(&bytes).unwrap(), h);
//! ```

use crate::wire::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

/// Wire size of the HELLO payload.
pub const HELLO_LEN: usize = 44;
/// Wire size of the HELLO_ACK payload.
pub const HELLO_ACK_LEN: usize = 48;
/// The only layout version.
pub const LAYOUT_VERSION: u16 = 1;

/// Profile bits (u32 bitmask).
pub mod profile {
    /// UDS SEQPACKET (POSIX) / named pipe (Windows): the baseline.
    pub const BASELINE: u32 = 0x01;
    /// SHM hybrid (spin + futex / kernel events).
    pub const SHM_HYBRID: u32 = 0x02;
    /// POSIX SHM futex (same region as hybrid); Windows SHM busy-wait.
    pub const SHM_FUTEX: u32 = 0x04;
    /// Windows SHM wait-address (reserved, never created).
    pub const SHM_WAITADDR: u32 = 0x08;
    /// The bits that select a shared-memory profile on POSIX.
    pub const POSIX_SHM: u32 = SHM_HYBRID | SHM_FUTEX;

    /// The highest set bit of `mask`, or `None` for 0.
    ///
    /// ```
    /// assert_eq!(pipewright_netipc::hello::profile::highest_bit(0b0101), Some(0b0100));
    /// ```
    pub fn highest_bit(mask: u32) -> Option<u32> {
        if mask == 0 {
            None
        } else {
            Some(1 << (31 - mask.leading_zeros()))
        }
    }
}

/// Why a HELLO or HELLO_ACK payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// Shorter than the wire size.
    #[error("{what} payload truncated: {actual} bytes, need {expected}")]
    Truncated {
        /// "HELLO" or "HELLO_ACK".
        what: &'static str,
        /// Required size.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// layout_version is not 1.
    #[error("{what} layout_version {version}, expected 1")]
    BadLayoutVersion {
        /// "HELLO" or "HELLO_ACK".
        what: &'static str,
        /// The value found.
        version: u16,
    },
    /// Reserved flags are not zero.
    #[error("{what} reserved flags are {flags:#06x}, expected 0")]
    NonZeroFlags {
        /// "HELLO" or "HELLO_ACK".
        what: &'static str,
        /// The value found.
        flags: u16,
    },
    /// HELLO padding (bytes 28..32) is not zero.
    #[error("HELLO padding (bytes 28..32) is {0:#010x}, expected 0")]
    NonZeroPadding(u32),
}

/// The client's proposal (HELLO payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Must be 1.
    pub layout_version: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// Profiles the client supports.
    pub supported_profiles: u32,
    /// Profiles the client prefers.
    pub preferred_profiles: u32,
    /// Proposed request payload ceiling (excluding the 32-byte header).
    pub max_request_payload_bytes: u32,
    /// Proposed request batch item ceiling.
    pub max_request_batch_items: u32,
    /// Response payload hint (the server ignores it).
    pub max_response_payload_bytes: u32,
    /// Response batch item hint.
    pub max_response_batch_items: u32,
    /// Bytes 28..32, must be 0.
    pub padding: u32,
    /// Shared secret compared for exact equality.
    pub auth_token: u64,
    /// Largest packet the client can send and receive.
    pub packet_size: u32,
}

impl Default for Hello {
    /// The zero-configuration HELLO: baseline only, 1024-byte payloads, 1 item.
    fn default() -> Self {
        Hello {
            layout_version: LAYOUT_VERSION,
            flags: 0,
            supported_profiles: profile::BASELINE,
            preferred_profiles: 0,
            max_request_payload_bytes: 1024,
            max_request_batch_items: 1,
            max_response_payload_bytes: 1024,
            max_response_batch_items: 1,
            padding: 0,
            auth_token: 0,
            packet_size: 65536,
        }
    }
}

impl Hello {
    /// Encodes the 44-byte payload.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        put_u16(&mut b, 0, self.layout_version);
        put_u16(&mut b, 2, self.flags);
        put_u32(&mut b, 4, self.supported_profiles);
        put_u32(&mut b, 8, self.preferred_profiles);
        put_u32(&mut b, 12, self.max_request_payload_bytes);
        put_u32(&mut b, 16, self.max_request_batch_items);
        put_u32(&mut b, 20, self.max_response_payload_bytes);
        put_u32(&mut b, 24, self.max_response_batch_items);
        put_u32(&mut b, 28, self.padding);
        put_u64(&mut b, 32, self.auth_token);
        put_u32(&mut b, 40, self.packet_size);
        b
    }

    /// Decodes the fields without judging them (only the length is checked);
    /// the handshake decides what a bad layout, flag or padding value means.
    pub fn decode_raw(buf: &[u8]) -> Result<Hello, HelloError> {
        if buf.len() < HELLO_LEN {
            return Err(HelloError::Truncated {
                what: "HELLO",
                expected: HELLO_LEN,
                actual: buf.len(),
            });
        }
        Ok(Hello {
            layout_version: get_u16(buf, 0),
            flags: get_u16(buf, 2),
            supported_profiles: get_u32(buf, 4),
            preferred_profiles: get_u32(buf, 8),
            max_request_payload_bytes: get_u32(buf, 12),
            max_request_batch_items: get_u32(buf, 16),
            max_response_payload_bytes: get_u32(buf, 20),
            max_response_batch_items: get_u32(buf, 24),
            padding: get_u32(buf, 28),
            auth_token: get_u64(buf, 32),
            packet_size: get_u32(buf, 40),
        })
    }

    /// Strict decode: length, layout_version == 1, flags == 0, padding == 0.
    pub fn decode(buf: &[u8]) -> Result<Hello, HelloError> {
        let h = Hello::decode_raw(buf)?;
        if h.layout_version != LAYOUT_VERSION {
            return Err(HelloError::BadLayoutVersion {
                what: "HELLO",
                version: h.layout_version,
            });
        }
        if h.flags != 0 {
            return Err(HelloError::NonZeroFlags {
                what: "HELLO",
                flags: h.flags,
            });
        }
        if h.padding != 0 {
            return Err(HelloError::NonZeroPadding(h.padding));
        }
        Ok(h)
    }
}

/// The server's decision (HELLO_ACK payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelloAck {
    /// Must be 1.
    pub layout_version: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// Profiles the server supports.
    pub server_supported_profiles: u32,
    /// client_supported & server_supported.
    pub intersection_profiles: u32,
    /// The single selected profile bit.
    pub selected_profile: u32,
    /// Agreed request payload ceiling.
    pub agreed_max_request_payload_bytes: u32,
    /// Agreed request batch ceiling.
    pub agreed_max_request_batch_items: u32,
    /// Agreed response payload ceiling.
    pub agreed_max_response_payload_bytes: u32,
    /// Agreed response batch ceiling (== request batch items).
    pub agreed_max_response_batch_items: u32,
    /// min(client, server) packet size.
    pub agreed_packet_size: u32,
    /// Server-assigned session id.
    pub session_id: u64,
}

impl HelloAck {
    /// The payload of a rejection ACK: all zero except `layout_version = 1`.
    pub fn rejection() -> HelloAck {
        HelloAck {
            layout_version: LAYOUT_VERSION,
            ..HelloAck::default()
        }
    }

    /// Encodes the 48-byte payload (padding at 36..40 is written as zero).
    pub fn encode(&self) -> [u8; HELLO_ACK_LEN] {
        let mut b = [0u8; HELLO_ACK_LEN];
        put_u16(&mut b, 0, self.layout_version);
        put_u16(&mut b, 2, self.flags);
        put_u32(&mut b, 4, self.server_supported_profiles);
        put_u32(&mut b, 8, self.intersection_profiles);
        put_u32(&mut b, 12, self.selected_profile);
        put_u32(&mut b, 16, self.agreed_max_request_payload_bytes);
        put_u32(&mut b, 20, self.agreed_max_request_batch_items);
        put_u32(&mut b, 24, self.agreed_max_response_payload_bytes);
        put_u32(&mut b, 28, self.agreed_max_response_batch_items);
        put_u32(&mut b, 32, self.agreed_packet_size);
        put_u64(&mut b, 40, self.session_id);
        b
    }

    /// Decodes and checks length, layout_version == 1 and flags == 0 (the
    /// padding is not checked, as upstream).
    pub fn decode(buf: &[u8]) -> Result<HelloAck, HelloError> {
        if buf.len() < HELLO_ACK_LEN {
            return Err(HelloError::Truncated {
                what: "HELLO_ACK",
                expected: HELLO_ACK_LEN,
                actual: buf.len(),
            });
        }
        let layout_version = get_u16(buf, 0);
        if layout_version != LAYOUT_VERSION {
            return Err(HelloError::BadLayoutVersion {
                what: "HELLO_ACK",
                version: layout_version,
            });
        }
        let flags = get_u16(buf, 2);
        if flags != 0 {
            return Err(HelloError::NonZeroFlags {
                what: "HELLO_ACK",
                flags,
            });
        }
        Ok(HelloAck {
            layout_version,
            flags,
            server_supported_profiles: get_u32(buf, 4),
            intersection_profiles: get_u32(buf, 8),
            selected_profile: get_u32(buf, 12),
            agreed_max_request_payload_bytes: get_u32(buf, 16),
            agreed_max_request_batch_items: get_u32(buf, 20),
            agreed_max_response_payload_bytes: get_u32(buf, 24),
            agreed_max_response_batch_items: get_u32(buf, 28),
            agreed_packet_size: get_u32(buf, 32),
            session_id: get_u64(buf, 40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_bit() {
        assert_eq!(profile::highest_bit(0), None);
        assert_eq!(profile::highest_bit(1), Some(1));
        assert_eq!(profile::highest_bit(0x7), Some(4));
        assert_eq!(profile::highest_bit(u32::MAX), Some(0x8000_0000));
    }

    #[test]
    fn hello_strict_decode() {
        let good = Hello::default().encode();
        for n in 0..HELLO_LEN {
            assert_eq!(
                Hello::decode(&good[..n]),
                Err(HelloError::Truncated {
                    what: "HELLO",
                    expected: 44,
                    actual: n
                })
            );
        }
        let mut b = good;
        put_u16(&mut b, 0, 2);
        assert_eq!(
            Hello::decode(&b),
            Err(HelloError::BadLayoutVersion {
                what: "HELLO",
                version: 2
            })
        );
        let mut b = good;
        put_u16(&mut b, 2, 1);
        assert_eq!(
            Hello::decode(&b),
            Err(HelloError::NonZeroFlags {
                what: "HELLO",
                flags: 1
            })
        );
        assert_eq!(Hello::decode_raw(&b).unwrap().flags, 1);
        let mut b = good;
        b[30] = 1;
        assert!(matches!(
            Hello::decode(&b),
            Err(HelloError::NonZeroPadding(_))
        ));
    }

    #[test]
    fn ack_decode_checks_layout_and_flags_not_padding() {
        let good = HelloAck {
            session_id: 5,
            ..HelloAck::rejection()
        }
        .encode();
        for n in 0..HELLO_ACK_LEN {
            assert!(
                matches!(HelloAck::decode(&good[..n]), Err(HelloError::Truncated { actual, .. }) if actual == n)
            );
        }
        let mut b = good;
        put_u16(&mut b, 0, 0);
        assert!(matches!(
            HelloAck::decode(&b),
            Err(HelloError::BadLayoutVersion { version: 0, .. })
        ));
        let mut b = good;
        put_u16(&mut b, 2, 0x8000);
        assert!(matches!(
            HelloAck::decode(&b),
            Err(HelloError::NonZeroFlags { flags: 0x8000, .. })
        ));
        let mut b = good;
        b[37] = 9;
        assert_eq!(HelloAck::decode(&b).unwrap().session_id, 5);
    }
}
