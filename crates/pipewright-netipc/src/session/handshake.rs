//! The HELLO / HELLO_ACK handshake as pure functions: the server decides, the
//! client validates. No I/O happens here.
//!
//! ```
//! use pipewright_netipc::handshake::{
//!     build_hello, client_check_ack, server_decide, EndpointConfig, ReservedFieldPolicy, ServerDecision,
//! };
//! let client = EndpointConfig { auth_token: 7, ..EndpointConfig::default() }.resolved(65536);
//! let server = EndpointConfig { auth_token: 7, ..EndpointConfig::default() }.resolved(4096);
//! let (hello, hello_bytes) = build_hello(&client);
//! let ServerDecision::Accept { ack, negotiated } =
//!     server_decide(&hello_bytes, &server, ReservedFieldPolicy::default(), 1)
//! else { panic!("rejected") };
//! assert_eq!(negotiated.packet_size, 4096);
//! assert_eq!(client_check_ack(&ack, &hello).unwrap(), negotiated);
//! ```

use crate::wire::bytes::{get_u16, get_u32};
use crate::wire::header::{
    control, Header, HeaderError, Kind, TransportStatus, HEADER_LEN, MAGIC, VERSION,
};
use crate::wire::hello::{
    profile, Hello, HelloAck, HelloError, HELLO_ACK_LEN, HELLO_LEN, LAYOUT_VERSION,
};
use crate::wire::limits::{Limits, Role};

/// Size of a complete HELLO message (header + payload).
pub const HELLO_MESSAGE_LEN: usize = HEADER_LEN + HELLO_LEN;
/// Size of a complete HELLO_ACK message (header + payload).
pub const HELLO_ACK_MESSAGE_LEN: usize = HEADER_LEN + HELLO_ACK_LEN;
/// Buffer size each side uses to receive a handshake message.
pub const HANDSHAKE_RECV_LEN: usize = 128;
/// Zero-configuration payload ceiling (both directions).
pub const DEFAULT_MAX_PAYLOAD: u32 = 1024;
/// Zero-configuration batch ceiling.
pub const DEFAULT_BATCH_ITEMS: u32 = 1;

/// One side's handshake configuration; 0 means "use the default" for every
/// field except `preferred_profiles` and `auth_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointConfig {
    /// Supported profile bits (0 → BASELINE).
    pub supported_profiles: u32,
    /// Preferred profile bits.
    pub preferred_profiles: u32,
    /// Request payload ceiling (0 → 1024).
    pub max_request_payload_bytes: u32,
    /// Request batch ceiling (0 → 1).
    pub max_request_batch_items: u32,
    /// Response payload ceiling (0 → 1024).
    pub max_response_payload_bytes: u32,
    /// Response batch ceiling (0 → 1).
    pub max_response_batch_items: u32,
    /// Shared secret.
    pub auth_token: u64,
    /// Packet size to advertise (0 → the transport's automatic size).
    pub packet_size: u32,
}

fn or(v: u32, d: u32) -> u32 {
    if v == 0 {
        d
    } else {
        v
    }
}

impl EndpointConfig {
    /// Applies the defaults; `auto_packet_size` is the transport's size for
    /// `packet_size == 0`.
    pub fn resolved(self, auto_packet_size: u32) -> EndpointConfig {
        EndpointConfig {
            supported_profiles: or(self.supported_profiles, profile::BASELINE),
            preferred_profiles: self.preferred_profiles,
            max_request_payload_bytes: or(self.max_request_payload_bytes, DEFAULT_MAX_PAYLOAD),
            max_request_batch_items: or(self.max_request_batch_items, DEFAULT_BATCH_ITEMS),
            max_response_payload_bytes: or(self.max_response_payload_bytes, DEFAULT_MAX_PAYLOAD),
            max_response_batch_items: or(self.max_response_batch_items, DEFAULT_BATCH_ITEMS),
            auth_token: self.auth_token,
            packet_size: or(self.packet_size, auto_packet_size),
        }
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// Server-assigned session id.
    pub session_id: u64,
    /// The selected profile bit.
    pub selected_profile: u32,
    /// Request payload ceiling.
    pub max_request_payload_bytes: u32,
    /// Request batch ceiling.
    pub max_request_batch_items: u32,
    /// Response payload ceiling.
    pub max_response_payload_bytes: u32,
    /// Response batch ceiling.
    pub max_response_batch_items: u32,
    /// Packet size for both directions.
    pub packet_size: u32,
}

// The wire layer's limits know nothing of the handshake: the session layer
// builds them from what it negotiated.
impl Limits {
    /// The limits of a negotiated session for `role`.
    pub fn new(role: Role, n: &Negotiated) -> Limits {
        Limits {
            role,
            max_request_payload_bytes: n.max_request_payload_bytes,
            max_request_batch_items: n.max_request_batch_items,
            max_response_payload_bytes: n.max_response_payload_bytes,
            max_response_batch_items: n.max_response_batch_items,
        }
    }
}

impl Negotiated {
    fn from_ack(ack: &HelloAck) -> Negotiated {
        Negotiated {
            session_id: ack.session_id,
            selected_profile: ack.selected_profile,
            max_request_payload_bytes: ack.agreed_max_request_payload_bytes,
            max_request_batch_items: ack.agreed_max_request_batch_items,
            max_response_payload_bytes: ack.agreed_max_response_payload_bytes,
            max_response_batch_items: ack.agreed_max_response_batch_items,
            packet_size: ack.agreed_packet_size,
        }
    }
}

/// How the server treats non-zero HELLO `flags` and padding, where the
/// upstream specification and code differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReservedFieldPolicy {
    /// Specification: reply BAD_ENVELOPE to non-zero flags or padding.
    #[default]
    Spec,
    /// Upstream code: ignore flags; close without ACK on non-zero padding.
    Upstream,
}

/// Builds the client HELLO from a resolved config; returns the payload struct
/// and the complete 76-byte message.
pub fn build_hello(cfg: &EndpointConfig) -> (Hello, [u8; HELLO_MESSAGE_LEN]) {
    let hello = Hello {
        supported_profiles: cfg.supported_profiles,
        preferred_profiles: cfg.preferred_profiles,
        max_request_payload_bytes: cfg.max_request_payload_bytes,
        max_request_batch_items: cfg.max_request_batch_items,
        max_response_payload_bytes: cfg.max_response_payload_bytes,
        max_response_batch_items: cfg.max_response_batch_items,
        auth_token: cfg.auth_token,
        packet_size: cfg.packet_size,
        ..Hello::default()
    };
    let header = control_header(control::HELLO, TransportStatus::OK, HELLO_LEN as u32);
    let mut msg = [0u8; HELLO_MESSAGE_LEN];
    msg[..HEADER_LEN].copy_from_slice(&header.encode());
    msg[HEADER_LEN..].copy_from_slice(&hello.encode());
    (hello, msg)
}

fn control_header(code: u16, status: TransportStatus, payload_len: u32) -> Header {
    Header {
        kind: Kind::Control,
        flags: 0,
        code,
        transport_status: status,
        payload_len,
        item_count: 1,
        message_id: 0,
    }
}

/// Builds a complete 80-byte HELLO_ACK message.
pub fn build_ack(status: TransportStatus, ack: &HelloAck) -> [u8; HELLO_ACK_MESSAGE_LEN] {
    let header = control_header(control::HELLO_ACK, status, HELLO_ACK_LEN as u32);
    let mut msg = [0u8; HELLO_ACK_MESSAGE_LEN];
    msg[..HEADER_LEN].copy_from_slice(&header.encode());
    msg[HEADER_LEN..].copy_from_slice(&ack.encode());
    msg
}

/// Why the server refused a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The packet is not a decodable NIPC header.
    #[error("not a netipc message: {0}")]
    BadHeader(HeaderError),
    /// A HELLO-shaped header with a version other than 1.
    #[error("HELLO header version {0} is not 1")]
    HeaderVersion(u16),
    /// A valid header that is not a HELLO.
    #[error("expected HELLO (kind 3, code 1), got kind {kind:?} code {code}")]
    NotHello {
        /// Its kind.
        kind: Kind,
        /// Its code.
        code: u16,
    },
    /// The HELLO payload is too short.
    #[error("{0}")]
    Truncated(HelloError),
    /// layout_version is not 1.
    #[error("HELLO layout_version {0} is not 1")]
    LayoutVersion(u16),
    /// Non-zero reserved flags.
    #[error("HELLO reserved flags are {0:#06x}")]
    ReservedFlags(u16),
    /// Non-zero padding.
    #[error("HELLO padding is {0:#010x}")]
    ReservedPadding(u32),
    /// No profile in common.
    #[error("no common profile: client supports {client:#x}, server {server:#x}")]
    NoCommonProfile {
        /// Client mask.
        client: u32,
        /// Server mask.
        server: u32,
    },
    /// The auth token differs.
    #[error("auth token mismatch")]
    AuthFailed,
    /// The client asks for a larger request ceiling than the server allows.
    #[error("client max_request_payload_bytes {client} exceeds the server's {server}")]
    RequestPayloadTooLarge {
        /// Client proposal.
        client: u32,
        /// Server ceiling.
        server: u32,
    },
    /// min(client, server) packet size is ≤ 32.
    #[error("agreed packet size {0} must exceed 32")]
    PacketSizeTooSmall(u32),
}

/// The server's verdict on one HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerDecision {
    /// Send `ack` (status OK) and run the session.
    Accept {
        /// The 80-byte HELLO_ACK message.
        ack: [u8; HELLO_ACK_MESSAGE_LEN],
        /// The agreed parameters.
        negotiated: Negotiated,
    },
    /// Send `ack` (a rejection) and close.
    Reject {
        /// The 80-byte rejection HELLO_ACK message.
        ack: [u8; HELLO_ACK_MESSAGE_LEN],
        /// Its status.
        status: TransportStatus,
        /// Why.
        reason: Refusal,
    },
    /// Close without sending anything.
    Close {
        /// Why.
        reason: Refusal,
    },
}

fn reject(status: TransportStatus, reason: Refusal) -> ServerDecision {
    ServerDecision::Reject {
        ack: build_ack(status, &HelloAck::rejection()),
        status,
        reason,
    }
}

/// Decides on the first packet a client sent. `server` must be resolved
/// ([`EndpointConfig::resolved`]); `session_id` goes into an OK ACK.
///
/// Order: header (a HELLO-shaped header with a bad version gets
/// INCOMPATIBLE, anything else not a HELLO is closed without ACK), layout
/// version (INCOMPATIBLE), reserved fields (per `policy`), profile
/// intersection (UNSUPPORTED), auth token (AUTH_FAILED), request payload
/// ceiling (LIMIT_EXCEEDED), packet size (INCOMPATIBLE).
///
/// Agreed limits: request payload = the client's proposal (at most the
/// server's); request batch items = `min(client, server)`; response payload
/// = the server's; response batch items = the agreed request batch items (a
/// batch is answered with as many items); packet size = `min(client, server)`.
pub fn server_decide(
    packet: &[u8],
    server: &EndpointConfig,
    policy: ReservedFieldPolicy,
    session_id: u64,
) -> ServerDecision {
    let header = match Header::decode(packet) {
        Ok(h) => h,
        Err(HeaderError::BadVersion(v))
            if get_u32(packet, 0) == MAGIC
                && usize::from(get_u16(packet, 6)) == HEADER_LEN
                && get_u16(packet, 8) == Kind::Control as u16
                && get_u16(packet, 12) == control::HELLO =>
        {
            debug_assert_ne!(v, VERSION);
            return reject(TransportStatus::INCOMPATIBLE, Refusal::HeaderVersion(v));
        }
        Err(e) => {
            return ServerDecision::Close {
                reason: Refusal::BadHeader(e),
            }
        }
    };
    if header.kind != Kind::Control || header.code != control::HELLO {
        return ServerDecision::Close {
            reason: Refusal::NotHello {
                kind: header.kind,
                code: header.code,
            },
        };
    }
    let hello = match Hello::decode_raw(&packet[HEADER_LEN..]) {
        Ok(h) => h,
        Err(e) => {
            return ServerDecision::Close {
                reason: Refusal::Truncated(e),
            }
        }
    };
    if hello.layout_version != LAYOUT_VERSION {
        return reject(
            TransportStatus::INCOMPATIBLE,
            Refusal::LayoutVersion(hello.layout_version),
        );
    }
    match policy {
        ReservedFieldPolicy::Spec => {
            if hello.flags != 0 {
                return reject(
                    TransportStatus::BAD_ENVELOPE,
                    Refusal::ReservedFlags(hello.flags),
                );
            }
            if hello.padding != 0 {
                return reject(
                    TransportStatus::BAD_ENVELOPE,
                    Refusal::ReservedPadding(hello.padding),
                );
            }
        }
        ReservedFieldPolicy::Upstream => {
            if hello.padding != 0 {
                return ServerDecision::Close {
                    reason: Refusal::ReservedPadding(hello.padding),
                };
            }
        }
    }
    let intersection = hello.supported_profiles & server.supported_profiles;
    if intersection == 0 {
        return reject(
            TransportStatus::UNSUPPORTED,
            Refusal::NoCommonProfile {
                client: hello.supported_profiles,
                server: server.supported_profiles,
            },
        );
    }
    if hello.auth_token != server.auth_token {
        return reject(TransportStatus::AUTH_FAILED, Refusal::AuthFailed);
    }
    let selected =
        profile::highest_bit(intersection & hello.preferred_profiles & server.preferred_profiles)
            .or_else(|| profile::highest_bit(intersection))
            .unwrap_or(profile::BASELINE);
    if hello.max_request_payload_bytes > server.max_request_payload_bytes {
        return reject(
            TransportStatus::LIMIT_EXCEEDED,
            Refusal::RequestPayloadTooLarge {
                client: hello.max_request_payload_bytes,
                server: server.max_request_payload_bytes,
            },
        );
    }
    // The server decides: a batch never carries more items than the server
    // allows, and a batch response has as many items as its request, so the
    // response batch limit is the agreed request batch limit.
    let agreed_batch = hello
        .max_request_batch_items
        .min(server.max_request_batch_items);
    let agreed_packet = hello.packet_size.min(server.packet_size);
    if agreed_packet as usize <= HEADER_LEN {
        return reject(
            TransportStatus::INCOMPATIBLE,
            Refusal::PacketSizeTooSmall(agreed_packet),
        );
    }
    let ack = HelloAck {
        layout_version: LAYOUT_VERSION,
        flags: 0,
        server_supported_profiles: server.supported_profiles,
        intersection_profiles: intersection,
        selected_profile: selected,
        agreed_max_request_payload_bytes: hello.max_request_payload_bytes,
        agreed_max_request_batch_items: agreed_batch,
        agreed_max_response_payload_bytes: server.max_response_payload_bytes,
        agreed_max_response_batch_items: agreed_batch,
        agreed_packet_size: agreed_packet,
        session_id,
    };
    ServerDecision::Accept {
        ack: build_ack(TransportStatus::OK, &ack),
        negotiated: Negotiated::from_ack(&ack),
    }
}

/// Why the client's handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The server answered AUTH_FAILED.
    #[error("handshake rejected: auth token mismatch (AUTH_FAILED)")]
    AuthFailed,
    /// The server answered UNSUPPORTED.
    #[error("handshake rejected: no common profile (UNSUPPORTED)")]
    NoProfile,
    /// The server answered INCOMPATIBLE.
    #[error("handshake rejected: incompatible version, layout or packet size (INCOMPATIBLE)")]
    Incompatible,
    /// The server answered LIMIT_EXCEEDED.
    #[error("handshake rejected: request payload ceiling above the server's (LIMIT_EXCEEDED)")]
    LimitExceeded,
    /// Any other non-OK status.
    #[error("handshake rejected with status {0}")]
    Rejected(TransportStatus),
    /// The reply header is malformed.
    #[error("malformed HELLO_ACK header: {0}")]
    BadAckHeader(HeaderError),
    /// The reply is not a HELLO_ACK.
    #[error("expected HELLO_ACK (kind 3, code 2), got kind {kind:?} code {code}")]
    NotAck {
        /// Its kind.
        kind: Kind,
        /// Its code.
        code: u16,
    },
    /// The ACK payload is malformed.
    #[error("malformed HELLO_ACK payload: {0}")]
    BadAck(HelloError),
    /// The agreed packet size is ≤ 32.
    #[error("agreed packet size {0} must exceed 32")]
    PacketSizeTooSmall(u32),
    /// The agreed packet size exceeds what the client proposed.
    #[error("agreed packet size {agreed} exceeds the proposed {proposed}")]
    PacketSizeAboveProposal {
        /// Agreed.
        agreed: u32,
        /// Proposed.
        proposed: u32,
    },
    /// The selected profile is not a single bit the client offered.
    #[error("server selected profile {selected:#x}, client offered {offered:#x}")]
    BadSelectedProfile {
        /// Selected.
        selected: u32,
        /// Offered by the client.
        offered: u32,
    },
    /// The server closed without answering.
    #[error("server closed the connection without a HELLO_ACK")]
    ClosedWithoutAck,
}

/// Validates the server's reply to `hello` and returns the agreed parameters.
pub fn client_check_ack(packet: &[u8], hello: &Hello) -> Result<Negotiated, HandshakeError> {
    let header = Header::decode(packet).map_err(HandshakeError::BadAckHeader)?;
    if header.kind != Kind::Control || header.code != control::HELLO_ACK {
        return Err(HandshakeError::NotAck {
            kind: header.kind,
            code: header.code,
        });
    }
    match header.transport_status {
        TransportStatus::OK => {}
        TransportStatus::AUTH_FAILED => return Err(HandshakeError::AuthFailed),
        TransportStatus::UNSUPPORTED => return Err(HandshakeError::NoProfile),
        TransportStatus::INCOMPATIBLE => return Err(HandshakeError::Incompatible),
        TransportStatus::LIMIT_EXCEEDED => return Err(HandshakeError::LimitExceeded),
        other => return Err(HandshakeError::Rejected(other)),
    }
    let ack = HelloAck::decode(&packet[HEADER_LEN..]).map_err(HandshakeError::BadAck)?;
    if ack.agreed_packet_size as usize <= HEADER_LEN {
        return Err(HandshakeError::PacketSizeTooSmall(ack.agreed_packet_size));
    }
    if ack.agreed_packet_size > hello.packet_size {
        return Err(HandshakeError::PacketSizeAboveProposal {
            agreed: ack.agreed_packet_size,
            proposed: hello.packet_size,
        });
    }
    if ack.selected_profile.count_ones() != 1
        || ack.selected_profile & hello.supported_profiles == 0
    {
        return Err(HandshakeError::BadSelectedProfile {
            selected: ack.selected_profile,
            offered: hello.supported_profiles,
        });
    }
    Ok(Negotiated::from_ack(&ack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::bytes::{put_u16, put_u32, put_u64};

    const TOKEN: u64 = 0xDEAD_BEEF_CAFE_BABE;

    fn server_cfg() -> EndpointConfig {
        EndpointConfig {
            auth_token: TOKEN,
            max_request_payload_bytes: 65536,
            ..EndpointConfig::default()
        }
        .resolved(65536)
    }

    fn client_hello() -> (Hello, [u8; HELLO_MESSAGE_LEN]) {
        build_hello(
            &EndpointConfig {
                auth_token: TOKEN,
                max_request_payload_bytes: 65536,
                max_request_batch_items: 16,
                max_response_payload_bytes: 65536,
                max_response_batch_items: 16,
                ..EndpointConfig::default()
            }
            .resolved(65536),
        )
    }

    fn decide_with(
        f: impl FnOnce(&mut [u8; HELLO_MESSAGE_LEN]),
        policy: ReservedFieldPolicy,
    ) -> ServerDecision {
        let (_, mut msg) = client_hello();
        f(&mut msg);
        server_decide(&msg, &server_cfg(), policy, 1)
    }

    fn decide(f: impl FnOnce(&mut [u8; HELLO_MESSAGE_LEN])) -> ServerDecision {
        decide_with(f, ReservedFieldPolicy::Spec)
    }

    fn status_of(d: &ServerDecision) -> Option<TransportStatus> {
        match d {
            ServerDecision::Accept { ack, .. } | ServerDecision::Reject { ack, .. } => {
                let h = Header::decode(ack).unwrap();
                assert_eq!(
                    (h.kind, h.code, h.payload_len, h.item_count, h.message_id),
                    (Kind::Control, 2, 48, 1, 0)
                );
                Some(h.transport_status)
            }
            ServerDecision::Close { .. } => None,
        }
    }

    #[test]
    fn ok_and_client_accepts() {
        let (hello, msg) = client_hello();
        let d = server_decide(&msg, &server_cfg(), ReservedFieldPolicy::Spec, 3);
        assert_eq!(status_of(&d), Some(TransportStatus::OK));
        let ServerDecision::Accept { ack, negotiated } = d else {
            panic!()
        };
        assert_eq!(
            negotiated,
            Negotiated {
                session_id: 3,
                selected_profile: 1,
                max_request_payload_bytes: 65536,
                max_request_batch_items: 1, // capped at the server's (default) 1
                max_response_payload_bytes: 1024, // server's value; the hint is ignored
                max_response_batch_items: 1, // = agreed request batch
                packet_size: 65536,
            }
        );
        assert_eq!(client_check_ack(&ack, &hello), Ok(negotiated));
    }

    #[test]
    fn rejections_in_documented_order() {
        use TransportStatus as S;
        // Header version 2 on a HELLO-shaped header -> INCOMPATIBLE.
        assert_eq!(
            status_of(&decide(|m| put_u16(m, 4, 2))),
            Some(S::INCOMPATIBLE)
        );
        // layout_version 2 -> INCOMPATIBLE.
        assert_eq!(
            status_of(&decide(|m| put_u16(m, 32, 2))),
            Some(S::INCOMPATIBLE)
        );
        // packet_size 32 -> INCOMPATIBLE.
        let d = decide(|m| put_u32(m, 72, 32));
        assert_eq!(status_of(&d), Some(S::INCOMPATIBLE));
        assert!(matches!(
            d,
            ServerDecision::Reject {
                reason: Refusal::PacketSizeTooSmall(32),
                ..
            }
        ));
        // max_request 65537 -> LIMIT_EXCEEDED.
        assert_eq!(
            status_of(&decide(|m| put_u32(m, 44, 65537))),
            Some(S::LIMIT_EXCEEDED)
        );
        // No intersection + wrong token -> UNSUPPORTED wins over AUTH_FAILED.
        assert_eq!(
            status_of(&decide(|m| {
                put_u32(m, 36, 2);
                put_u64(m, 64, 1);
            })),
            Some(S::UNSUPPORTED)
        );
        // Wrong token -> AUTH_FAILED (exact 64-bit equality).
        assert_eq!(
            status_of(&decide(|m| put_u64(m, 64, TOKEN ^ (1 << 63)))),
            Some(S::AUTH_FAILED)
        );
        // Auth is checked before the payload limit.
        assert_eq!(
            status_of(&decide(|m| {
                put_u64(m, 64, 0);
                put_u32(m, 44, 1 << 30);
            })),
            Some(S::AUTH_FAILED)
        );
    }

    #[test]
    fn rejection_ack_shape() {
        let ServerDecision::Reject { ack, .. } = decide(|m| put_u64(m, 64, 5)) else {
            panic!()
        };
        let mut expected = [0u8; 48];
        put_u16(&mut expected, 0, 1);
        assert_eq!(&ack[32..], &expected);
    }

    #[test]
    fn close_without_ack() {
        let closes = [
            decide(|m| m[0] = 0),          // bad magic
            decide(|m| put_u16(m, 6, 31)), // bad header_len
            decide(|m| put_u16(m, 8, 1)),  // kind REQUEST
            decide(|m| put_u16(m, 12, 2)), // code HELLO_ACK
            decide(|m| {
                put_u16(m, 4, 2);
                put_u16(m, 12, 2);
            }), // bad version, not HELLO-shaped
        ];
        for d in &closes {
            assert_eq!(status_of(d), None, "{d:?}");
        }
        let (_, msg) = client_hello();
        assert!(matches!(
            server_decide(&msg[..70], &server_cfg(), ReservedFieldPolicy::Spec, 1),
            ServerDecision::Close {
                reason: Refusal::Truncated(_)
            }
        ));
        assert!(matches!(
            server_decide(&msg[..20], &server_cfg(), ReservedFieldPolicy::Spec, 1),
            ServerDecision::Close {
                reason: Refusal::BadHeader(HeaderError::Truncated { len: 20 })
            }
        ));
        // Upstream policy: padding closes without ACK, flags are ignored.
        assert!(matches!(
            decide_with(|m| m[60] = 1, ReservedFieldPolicy::Upstream),
            ServerDecision::Close {
                reason: Refusal::ReservedPadding(1)
            }
        ));
        assert_eq!(
            status_of(&decide_with(
                |m| put_u16(m, 34, 1),
                ReservedFieldPolicy::Upstream
            )),
            Some(TransportStatus::OK)
        );
        // Spec policy: both are BAD_ENVELOPE.
        assert_eq!(
            status_of(&decide(|m| m[60] = 1)),
            Some(TransportStatus::BAD_ENVELOPE)
        );
        assert_eq!(
            status_of(&decide(|m| put_u16(m, 34, 1))),
            Some(TransportStatus::BAD_ENVELOPE)
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Appendix A's `hello.bin` (request batch 100, response batch 1) as a
    /// raw HELLO against a server configured for 50 items: the ACK carries
    /// min(100, 50) = 50 for requests and the same 50 for responses.
    #[test]
    fn batch_limits_are_capped_by_the_server() {
        let header =
            hex("4350494e 0100 2000 0300 0000 0100 0000 2c000000 01000000 0000000000000000");
        let hello = hex(
            "0100 0000 05000000 04000000 00100000 64000000 00001000 01000000 00000000 \
             1100ffeeddccbbaa 00000100",
        );
        let raw = [header, hello].concat();
        assert_eq!(raw.len(), HELLO_MESSAGE_LEN);
        let server = |batch: u32| EndpointConfig {
            supported_profiles: 0x07,
            preferred_profiles: 0x04,
            max_request_payload_bytes: 4096,
            max_request_batch_items: batch,
            max_response_payload_bytes: 65536,
            max_response_batch_items: 7, // not used for the agreement
            auth_token: 0xAABB_CCDD_EEFF_0011,
            packet_size: 32768,
        };
        let ServerDecision::Accept { ack, negotiated } =
            server_decide(&raw, &server(50), ReservedFieldPolicy::Spec, 1)
        else {
            panic!("rejected")
        };
        let expected = hex(
            "0100 0000 07000000 05000000 04000000 00100000 32000000 00000100 32000000 \
             00800000 00000000 0100000000000000",
        );
        assert_eq!(&ack[HEADER_LEN..], &expected[..]);
        assert_eq!(
            (
                negotiated.max_request_batch_items,
                negotiated.max_response_batch_items
            ),
            (50, 50)
        );
        // A server allowing more than the client asks for agrees on the
        // client's 100, again for both directions.
        let ServerDecision::Accept { ack, .. } =
            server_decide(&raw, &server(1000), ReservedFieldPolicy::Spec, 1)
        else {
            panic!("rejected")
        };
        assert_eq!(get_u32(&ack, HEADER_LEN + 20), 100);
        assert_eq!(get_u32(&ack, HEADER_LEN + 28), 100);
    }

    #[test]
    fn batch_zero_is_echoed_and_packet_is_min() {
        let d = decide(|m| {
            put_u32(m, 48, 0);
            put_u32(m, 72, 40);
        });
        let ServerDecision::Accept { negotiated, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(negotiated.max_request_batch_items, 0);
        assert_eq!(negotiated.max_response_batch_items, 0);
        assert_eq!(negotiated.packet_size, 40);
    }

    #[test]
    fn profile_selection() {
        let srv = EndpointConfig {
            supported_profiles: 0x07,
            preferred_profiles: 0x02,
            ..EndpointConfig::default()
        }
        .resolved(4096);
        let pick = |sup: u32, pref: u32| {
            let (_, m) = build_hello(
                &EndpointConfig {
                    supported_profiles: sup,
                    preferred_profiles: pref,
                    ..EndpointConfig::default()
                }
                .resolved(4096),
            );
            match server_decide(&m, &srv, ReservedFieldPolicy::Spec, 1) {
                ServerDecision::Accept { negotiated, .. } => negotiated.selected_profile,
                d => panic!("{d:?}"),
            }
        };
        assert_eq!(pick(0x07, 0x06), 0x02); // preferred by both
        assert_eq!(pick(0x07, 0x04), 0x04); // no common preference -> highest of intersection
        assert_eq!(pick(0x01, 0x01), 0x01);
        assert_eq!(pick(0x0f, 0x00), 0x04);
    }

    #[test]
    fn client_maps_statuses() {
        let (hello, _) = client_hello();
        let ack_with = |s: u16| build_ack(TransportStatus(s), &HelloAck::rejection());
        assert_eq!(
            client_check_ack(&ack_with(2), &hello),
            Err(HandshakeError::AuthFailed)
        );
        assert_eq!(
            client_check_ack(&ack_with(3), &hello),
            Err(HandshakeError::Incompatible)
        );
        assert_eq!(
            client_check_ack(&ack_with(4), &hello),
            Err(HandshakeError::NoProfile)
        );
        assert_eq!(
            client_check_ack(&ack_with(5), &hello),
            Err(HandshakeError::LimitExceeded)
        );
        assert_eq!(
            client_check_ack(&ack_with(1), &hello),
            Err(HandshakeError::Rejected(TransportStatus::BAD_ENVELOPE))
        );
        assert_eq!(
            client_check_ack(&ack_with(99), &hello),
            Err(HandshakeError::Rejected(TransportStatus(99)))
        );
    }

    #[test]
    fn client_rejects_bad_acks() {
        let (hello, _) = client_hello();
        let ok = HelloAck {
            selected_profile: 1,
            agreed_packet_size: 4096,
            ..HelloAck::rejection()
        };
        assert!(client_check_ack(&build_ack(TransportStatus::OK, &ok), &hello).is_ok());
        let small = HelloAck {
            agreed_packet_size: 32,
            ..ok
        };
        assert_eq!(
            client_check_ack(&build_ack(TransportStatus::OK, &small), &hello),
            Err(HandshakeError::PacketSizeTooSmall(32))
        );
        let big = HelloAck {
            agreed_packet_size: 65537,
            ..ok
        };
        assert!(matches!(
            client_check_ack(&build_ack(TransportStatus::OK, &big), &hello),
            Err(HandshakeError::PacketSizeAboveProposal { .. })
        ));
        let shm = HelloAck {
            selected_profile: 2,
            ..ok
        };
        assert!(matches!(
            client_check_ack(&build_ack(TransportStatus::OK, &shm), &hello),
            Err(HandshakeError::BadSelectedProfile { selected: 2, .. })
        ));
        let two = HelloAck {
            selected_profile: 3,
            ..ok
        };
        assert!(matches!(
            client_check_ack(&build_ack(TransportStatus::OK, &two), &hello),
            Err(HandshakeError::BadSelectedProfile { .. })
        ));
        let msg = build_ack(TransportStatus::OK, &ok);
        assert!(matches!(
            client_check_ack(&msg[..79], &hello),
            Err(HandshakeError::BadAck(HelloError::Truncated { .. }))
        ));
        assert!(matches!(
            client_check_ack(&msg[..31], &hello),
            Err(HandshakeError::BadAckHeader(HeaderError::Truncated {
                len: 31
            }))
        ));
        let mut m = msg;
        put_u16(&mut m, 12, 1);
        assert!(matches!(
            client_check_ack(&m, &hello),
            Err(HandshakeError::NotAck { code: 1, .. })
        ));
        let mut m = msg;
        put_u16(&mut m, 34, 1);
        assert!(matches!(
            client_check_ack(&m, &hello),
            Err(HandshakeError::BadAck(HelloError::NonZeroFlags { .. }))
        ));
    }
}
