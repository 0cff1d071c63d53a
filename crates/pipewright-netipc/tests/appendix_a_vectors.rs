//! Every byte vector of Appendix A of the protocol description, encoded and
//! decoded byte for byte (little-endian hosts, where the vectors were taken).
#![cfg(target_endian = "little")]

use pipewright_netipc::chunk::ChunkHeader;
use pipewright_netipc::codec::cgroups_snapshot;
use pipewright_netipc::handshake::{
    build_hello, server_decide, EndpointConfig, ReservedFieldPolicy, ServerDecision,
};
use pipewright_netipc::header::{control, Header, Kind, TransportStatus, FLAG_BATCH};
use pipewright_netipc::hello::{Hello, HelloAck};
use pipewright_netipc::shm_layout::{PosixShmHeader, RegionLayout};

mod vectors;
use vectors::*;

const LIVE_TOKEN: u64 = 0xDEAD_BEEF_CAFE_BABE;

#[test]
fn header_bin() {
    let expected = hex(HEADER_BIN);
    let h = Header {
        kind: Kind::Request,
        flags: FLAG_BATCH,
        code: 2,
        transport_status: TransportStatus::OK,
        payload_len: 12345,
        item_count: 42,
        message_id: 0xDEAD_BEEF_CAFE_BABE,
    };
    assert_eq!(h.encode().as_slice(), expected.as_slice());
    assert_eq!(Header::decode(&expected).unwrap(), h);
}

#[test]
fn chunk_header_bin() {
    let expected = hex(CHUNK_BIN);
    let c = ChunkHeader {
        message_id: 0x1234_5678_90AB_CDEF,
        total_message_len: 100_000,
        chunk_index: 3,
        chunk_count: 10,
        chunk_payload_len: 8192,
    };
    assert_eq!(c.encode().as_slice(), expected.as_slice());
    assert_eq!(ChunkHeader::decode(&expected).unwrap(), c);
}

#[test]
fn hello_bin() {
    let expected = hex(HELLO_BIN);
    assert_eq!(expected.len(), 44);
    let h = Hello {
        supported_profiles: 0x05,
        preferred_profiles: 0x04,
        max_request_payload_bytes: 4096,
        max_request_batch_items: 100,
        max_response_payload_bytes: 1_048_576,
        max_response_batch_items: 1,
        auth_token: 0xAABB_CCDD_EEFF_0011,
        packet_size: 65536,
        ..Hello::default()
    };
    assert_eq!(h.encode().as_slice(), expected.as_slice());
    assert_eq!(Hello::decode(&expected).unwrap(), h);
}

#[test]
fn hello_ack_bin() {
    let expected = hex(HELLO_ACK_BIN);
    assert_eq!(expected.len(), 48);
    let a = HelloAck {
        server_supported_profiles: 0x07,
        intersection_profiles: 0x05,
        selected_profile: 0x04,
        agreed_max_request_payload_bytes: 2048,
        agreed_max_request_batch_items: 50,
        agreed_max_response_payload_bytes: 65536,
        agreed_max_response_batch_items: 1,
        agreed_packet_size: 32768,
        session_id: 1,
        ..HelloAck::rejection()
    };
    assert_eq!(a.encode().as_slice(), expected.as_slice());
    assert_eq!(HelloAck::decode(&expected).unwrap(), a);
}

fn live_client_config() -> EndpointConfig {
    EndpointConfig {
        supported_profiles: 0x01,
        preferred_profiles: 0x01,
        max_request_payload_bytes: 65536,
        max_request_batch_items: 16,
        max_response_payload_bytes: 65536,
        max_response_batch_items: 16,
        auth_token: LIVE_TOKEN,
        packet_size: 65536,
    }
}

fn live_server_config(token: u64) -> EndpointConfig {
    EndpointConfig {
        supported_profiles: 0x01,
        max_request_payload_bytes: 65536,
        // The agreed batch limit is min(client, server): a server allowing
        // the client's 16 items answers what the C server answered.
        max_request_batch_items: 16,
        max_response_payload_bytes: 65536,
        auth_token: token,
        packet_size: 65536,
        ..EndpointConfig::default()
    }
    .resolved(65536)
}

#[test]
fn live_hello_is_what_our_client_sends() {
    let expected = hex(LIVE_HELLO);
    assert_eq!(expected.len(), 76);
    let (_, msg) = build_hello(&live_client_config().resolved(65536));
    assert_eq!(msg.as_slice(), expected.as_slice());
    let h = Header::decode(&expected).unwrap();
    assert_eq!(
        (h.kind, h.code, h.payload_len, h.item_count, h.message_id),
        (Kind::Control, control::HELLO, 44, 1, 0)
    );
    let hello = Hello::decode(&expected[32..]).unwrap();
    assert_eq!(hello.auth_token, LIVE_TOKEN);
    assert_eq!(hello.max_request_batch_items, 16);
}

#[test]
fn live_hello_ack_is_what_our_server_answers() {
    let expected = hex(LIVE_HELLO_ACK);
    assert_eq!(expected.len(), 80);
    // The C server under test passed session id 0 (raw L1 accept).
    let d = server_decide(
        &hex(LIVE_HELLO),
        &live_server_config(LIVE_TOKEN),
        ReservedFieldPolicy::Spec,
        0,
    );
    let ServerDecision::Accept { ack, negotiated } = d else {
        panic!("{d:?}")
    };
    assert_eq!(ack.as_slice(), expected.as_slice());
    assert_eq!(negotiated.packet_size, 65536);
    let h = Header::decode(&expected).unwrap();
    assert_eq!(
        (h.kind, h.code, h.transport_status),
        (Kind::Control, control::HELLO_ACK, TransportStatus::OK)
    );
    let a = HelloAck::decode(&expected[32..]).unwrap();
    assert_eq!(
        (
            a.selected_profile,
            a.agreed_max_request_batch_items,
            a.session_id
        ),
        (1, 16, 0)
    );
}

#[test]
fn auth_failed_rejection_bytes() {
    // "same header with transport_status=0200, payload = 0100 followed by 46 zero bytes"
    let mut expected = hex(LIVE_HELLO_ACK)[..32].to_vec();
    expected[14] = 0x02;
    expected.extend_from_slice(&[0x01, 0x00]);
    expected.extend_from_slice(&[0u8; 46]);
    let d = server_decide(
        &hex(LIVE_HELLO),
        &live_server_config(1),
        ReservedFieldPolicy::Spec,
        0,
    );
    let ServerDecision::Reject { ack, status, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(status, TransportStatus::AUTH_FAILED);
    assert_eq!(ack.as_slice(), expected.as_slice());
}

#[test]
fn posix_shm_header_capture() {
    let expected = hex(SHM_HEADER);
    assert_eq!(expected.len(), 64);
    let layout = RegionLayout::for_limits(4096, 65536).unwrap();
    let h = PosixShmHeader {
        owner_pid: 0x3241,
        owner_generation: 0x8036e,
        layout,
        req_seq: 1,
        resp_seq: 1,
        req_len: 36,
        resp_len: 313,
        req_signal: 1,
        resp_signal: 1,
    };
    assert_eq!(h.encode().as_slice(), expected.as_slice());
    assert_eq!(PosixShmHeader::decode(&expected).unwrap(), h);
    assert_eq!(layout.file_size(), 69824);
}

#[test]
fn shm_request_area_snapshot_request() {
    let expected = hex(SHM_REQUEST_AREA);
    assert_eq!(expected.len(), 36);
    let mut msg = Header::request(2, 1, 4).encode().to_vec();
    msg.extend_from_slice(&cgroups_snapshot::encode_request());
    assert_eq!(msg, expected);
    assert_eq!(Header::decode(&expected).unwrap(), Header::request(2, 1, 4));
    cgroups_snapshot::decode_request(&expected[32..]).unwrap();
}
