//! Sessions over the platform's baseline transport (UDS SEQPACKET on Linux,
//! named pipes on Windows): handshake outcomes, chunking, large payloads,
//! batches, pipelining, limits.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::codec::{increment, string_reverse};
use pipewright_netipc::endpoint;
use pipewright_netipc::handshake::{
    build_hello, client_check_ack, EndpointConfig, HandshakeError, Refusal, ReservedFieldPolicy,
};
use pipewright_netipc::header::{method, Header, Kind, TransportStatus};
use pipewright_netipc::hello::profile;
use pipewright_netipc::inflight::InFlightError;
use pipewright_netipc::limits::LimitError;
use pipewright_netipc::session::{Server, ServerConfig, ServerSession, Session, SessionError};
use pipewright_netipc::transport::PacketTransport;
use std::path::Path;

/// The automatic packet size both ends advertise: `SO_SNDBUF - 32` on Linux
/// (never the raw `SO_SNDBUF`), 65536 on named pipes.
fn auto_packet_size() -> u32 {
    #[cfg(target_os = "linux")]
    {
        let sndbuf = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)
            .unwrap()
            .send_buffer_size()
            .unwrap();
        (sndbuf - 32) as u32
    }
    #[cfg(not(target_os = "linux"))]
    {
        65536
    }
}

#[tokio::test]
async fn handshake_ok_session_ids_and_packet_size() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 3);
        let a = connect(dir.path(), big_config(0)).await.unwrap();
        let b = connect(dir.path(), big_config(4096)).await.unwrap();
        let c = connect(
            dir.path(),
            EndpointConfig {
                auth_token: TOKEN,
                ..EndpointConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            server
                .await
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            [
                a.negotiated().session_id,
                b.negotiated().session_id,
                c.negotiated().session_id
            ],
            [1, 2, 3]
        );
        assert_eq!(a.negotiated().packet_size, auto_packet_size());
        assert_eq!(b.negotiated().packet_size, 4096);
        // Zero-config client: defaults 1024/1 echoed; response limit is the server's.
        let n = c.negotiated();
        assert_eq!(
            (
                n.max_request_payload_bytes,
                n.max_request_batch_items,
                n.max_response_payload_bytes
            ),
            (1024, 1, 4 << 20)
        );
        assert_eq!(n.selected_profile, profile::BASELINE);
    })
    .await
}

#[tokio::test]
async fn handshake_rejections_with_real_server() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 5);
        let bad_token = connect(
            dir.path(),
            EndpointConfig {
                auth_token: 1,
                ..big_config(0)
            },
        )
        .await;
        assert!(
            matches!(
                bad_token,
                Err(SessionError::Handshake(HandshakeError::AuthFailed))
            ),
            "{bad_token:?}"
        );
        let no_profile = connect(
            dir.path(),
            EndpointConfig {
                supported_profiles: profile::SHM_HYBRID,
                ..big_config(0)
            },
        )
        .await;
        assert!(
            matches!(
                no_profile,
                Err(SessionError::Handshake(HandshakeError::NoProfile))
            ),
            "{no_profile:?}"
        );
        let too_big = connect(
            dir.path(),
            EndpointConfig {
                max_request_payload_bytes: (4 << 20) + 1,
                ..big_config(0)
            },
        )
        .await;
        assert!(
            matches!(
                too_big,
                Err(SessionError::Handshake(HandshakeError::LimitExceeded))
            ),
            "{too_big:?}"
        );
        let tiny_packet = connect(dir.path(), big_config(32)).await;
        assert!(
            matches!(
                tiny_packet,
                Err(SessionError::Handshake(HandshakeError::Incompatible))
            ),
            "{tiny_packet:?}"
        );
        let ok = connect(dir.path(), big_config(0)).await.unwrap();
        // Rejected handshakes consumed ids 1..4.
        assert_eq!(ok.negotiated().session_id, 5);
        let results = server.await.unwrap();
        let reasons: Vec<String> = results[..4]
            .iter()
            .map(|r| format!("{:?}", r.as_ref().unwrap_err()))
            .collect();
        assert!(
            matches!(
                results[0],
                Err(SessionError::Refused {
                    reason: Refusal::AuthFailed,
                    acked: true
                })
            ),
            "{reasons:?}"
        );
        assert!(matches!(
            results[1],
            Err(SessionError::Refused {
                reason: Refusal::NoCommonProfile { .. },
                acked: true
            })
        ));
        assert!(matches!(
            results[2],
            Err(SessionError::Refused {
                reason: Refusal::RequestPayloadTooLarge { .. },
                acked: true
            })
        ));
        assert!(matches!(
            results[3],
            Err(SessionError::Refused {
                reason: Refusal::PacketSizeTooSmall(32),
                acked: true
            })
        ));
        assert!(matches!(results[4], Ok(5)));
    })
    .await
}

/// Sends a hand-made HELLO and returns the reply status, or `None` when the
/// server closed without an ACK.
async fn raw_hello(dir: &Path, edit: impl FnOnce(&mut [u8])) -> Option<TransportStatus> {
    let mut t = endpoint::connect(dir, "svc", 65536).await.unwrap();
    let (_, mut msg) = build_hello(&big_config(65536).resolved(65536));
    edit(&mut msg);
    t.send_packet(&[&msg]).await.unwrap();
    let mut buf = [0u8; 128];
    match t.recv_packet(&mut buf).await {
        Ok(n) => {
            assert_eq!(n, 80, "ACK is always a full 80-byte message");
            let h = Header::decode(&buf[..n]).unwrap();
            assert_eq!((h.kind, h.code), (Kind::Control, 2));
            Some(h.transport_status)
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "{e}"
            );
            None
        }
    }
}

#[tokio::test]
async fn handshake_raw_outcomes_spec_policy() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 7);
        let p = dir.path();
        assert_eq!(raw_hello(p, |_| {}).await, Some(TransportStatus::OK));
        assert_eq!(
            raw_hello(p, |m| m[4] = 2).await,
            Some(TransportStatus::INCOMPATIBLE)
        ); // header version
        assert_eq!(
            raw_hello(p, |m| m[32] = 2).await,
            Some(TransportStatus::INCOMPATIBLE)
        ); // layout version
        assert_eq!(
            raw_hello(p, |m| m[34] = 1).await,
            Some(TransportStatus::BAD_ENVELOPE)
        ); // flags
        assert_eq!(
            raw_hello(p, |m| m[60] = 1).await,
            Some(TransportStatus::BAD_ENVELOPE)
        ); // padding
        assert_eq!(raw_hello(p, |m| m[8] = 1).await, None); // kind REQUEST: close, no ACK
        assert_eq!(raw_hello(p, |m| m[0] = 0).await, None); // bad magic: close, no ACK
        let r = server.await.unwrap();
        assert!(matches!(
            r[5],
            Err(SessionError::Refused {
                acked: false,
                reason: Refusal::NotHello { .. }
            })
        ));
        assert!(matches!(
            r[6],
            Err(SessionError::Refused {
                acked: false,
                reason: Refusal::BadHeader(_)
            })
        ));
    })
    .await
}

#[tokio::test]
async fn handshake_raw_outcomes_upstream_policy() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ServerConfig {
            reserved_field_policy: ReservedFieldPolicy::Upstream,
            ..server_config(0)
        };
        let server = spawn_server(dir.path(), cfg, 2);
        assert_eq!(
            raw_hello(dir.path(), |m| m[34] = 1).await,
            Some(TransportStatus::OK)
        );
        assert_eq!(raw_hello(dir.path(), |m| m[60] = 1).await, None);
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn client_sees_close_without_ack() {
    watchdog(async {
        let dir = TempDir::new();
        let server = Server::bind(dir.path(), "svc", server_config(0)).unwrap();
        let task = tokio::spawn(async move {
            // Accept and close immediately, without reading or answering.
            drop(server.accept_connection().await.unwrap());
            server
        });
        let r = connect(dir.path(), big_config(0)).await;
        assert!(
            matches!(
                r,
                Err(SessionError::Handshake(HandshakeError::ClosedWithoutAck))
            ),
            "{r:?}"
        );
        drop(task.await.unwrap());
    })
    .await
}

#[tokio::test]
async fn chunked_at_100_byte_packets() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 1);
        let mut c = connect(dir.path(), big_config(100)).await.unwrap();
        assert_eq!(c.negotiated().packet_size, 100);
        for len in [0usize, 1, 67, 68, 69, 136, 137, 300, 10_000, 100_003] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            assert_eq!(c.call(ECHO, &payload).await.unwrap(), payload, "len {len}");
        }
        let s = "chunked string reverse ".repeat(50);
        let reply = c
            .call(
                method::STRING_REVERSE,
                &string_reverse::encode(s.as_bytes()).unwrap(),
            )
            .await
            .unwrap();
        let expected: Vec<u8> = s.bytes().rev().collect();
        assert_eq!(string_reverse::decode(&reply).unwrap(), expected.as_slice());
        drop(c);
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn one_mib_payloads() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 3);
        let payload: Vec<u8> = (0..(1usize << 20)).map(|i| (i ^ (i >> 8)) as u8).collect();
        for packet in [0u32, 4096, 100] {
            let mut c = connect(dir.path(), big_config(packet)).await.unwrap();
            let reply = c.call(ECHO, &payload).await.unwrap();
            assert!(
                reply == payload,
                "1 MiB echo mismatch at packet size {}",
                c.negotiated().packet_size
            );
        }
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn batches() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(100), 1);
        let mut c = connect(dir.path(), big_config(0)).await.unwrap();
        let words = ["alpha", "", "netipc batch item", "x"];
        let encoded: Vec<Vec<u8>> = words
            .iter()
            .map(|w| string_reverse::encode(w.as_bytes()).unwrap())
            .collect();
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let out = c.call_batch(method::STRING_REVERSE, &refs).await.unwrap();
        assert_eq!(out.len(), 4);
        for (w, o) in words.iter().zip(&out) {
            let rev: Vec<u8> = w.bytes().rev().collect();
            assert_eq!(string_reverse::decode(o).unwrap(), rev.as_slice());
        }
        // A single-item batch still carries a directory and round-trips.
        let one = c
            .call_batch(method::INCREMENT, &[&increment::encode(9)])
            .await
            .unwrap();
        assert_eq!(increment::decode(&one[0]).unwrap(), 10);
        // 64 items allowed, 65 refused on the send side.
        let many: Vec<[u8; 8]> = (0..65u64).map(increment::encode).collect();
        let refs: Vec<&[u8]> = many.iter().map(|a| a.as_slice()).collect();
        let out = c.call_batch(method::INCREMENT, &refs[..64]).await.unwrap();
        assert_eq!(
            out.iter()
                .map(|o| increment::decode(o).unwrap())
                .collect::<Vec<_>>(),
            (1..=64).collect::<Vec<u64>>()
        );
        let err = c.call_batch(method::INCREMENT, &refs).await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Limit(LimitError::Items {
                    count: 65,
                    max: 64,
                    ..
                })
            ),
            "{err:?}"
        );
        drop(c);
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn twenty_pipelined_requests_answered_out_of_order() {
    watchdog(async {
        let dir = TempDir::new();
        let server = Server::bind(dir.path(), "svc", server_config(0)).unwrap();
        let srv = tokio::spawn(async move {
            let mut s = server.accept().await.unwrap();
            let mut reqs = Vec::new();
            for _ in 0..20 {
                reqs.push(s.recv_request().await.unwrap().unwrap());
            }
            for r in reqs.iter().rev() {
                let v = increment::decode(&r.payload).unwrap();
                s.send_response(&r.header, TransportStatus::OK, &increment::encode(v * 10))
                    .await
                    .unwrap();
            }
            assert!(s.recv_request().await.unwrap().is_none());
        });
        let mut c = connect(dir.path(), big_config(0)).await.unwrap();
        let mut ids = Vec::new();
        for v in 0..20u64 {
            ids.push((
                c.send_request(method::INCREMENT, &increment::encode(v))
                    .await
                    .unwrap(),
                v,
            ));
        }
        assert_eq!(c.in_flight(), 20);
        let mut seen = Vec::new();
        for _ in 0..20 {
            let m = c.recv_response().await.unwrap();
            let (_, v) = ids
                .iter()
                .find(|(id, _)| *id == m.header.message_id)
                .unwrap();
            assert_eq!(increment::decode(&m.payload).unwrap(), v * 10);
            seen.push(m.header.message_id);
        }
        let expected: Vec<u64> = ids.iter().rev().map(|(id, _)| *id).collect();
        assert_eq!(seen, expected);
        assert_eq!(c.in_flight(), 0);
        drop(c);
        srv.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn correlation_errors() {
    watchdog(async {
        let (a, b) = transport_pair().await;
        let cfg = server_config(0);
        let srv = tokio::spawn(async move {
            let mut s = ServerSession::handshake(b, &cfg, 1).await.unwrap();
            let r = s.recv_request().await.unwrap().unwrap();
            // Answer with a different id: the client must reject it.
            let wrong = Header {
                message_id: r.header.message_id + 100,
                ..r.header
            };
            s.send_response(&wrong, TransportStatus::OK, &r.payload)
                .await
                .unwrap();
            s
        });
        let mut c = Session::handshake(a, &big_config(0)).await.unwrap();
        c.send_request_with_id(ECHO, 7, b"x").await.unwrap();
        let dup = c.send_request_with_id(ECHO, 7, b"y").await.unwrap_err();
        assert!(matches!(
            dup,
            SessionError::InFlight(InFlightError::Duplicate(7))
        ));
        let err = c.recv_response().await.unwrap_err();
        assert!(
            matches!(err, SessionError::InFlight(InFlightError::Unknown(107))),
            "{err:?}"
        );
        assert!(matches!(
            c.call(ECHO, b"z").await,
            Err(SessionError::Broken)
        ));
        drop(srv.await.unwrap());
    })
    .await
}

#[tokio::test]
async fn status_responses_keep_session() {
    watchdog(async {
        let dir = TempDir::new();
        let server = spawn_server(dir.path(), server_config(0), 1);
        let mut c = connect(dir.path(), big_config(0)).await.unwrap();
        let err = c.call(method::APPS_LOOKUP, b"abcd").await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Status {
                    status: TransportStatus::UNSUPPORTED,
                    code: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = c.call(method::INCREMENT, b"short").await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Status {
                    status: TransportStatus::INTERNAL_ERROR,
                    ..
                }
            ),
            "{err:?}"
        );
        let ok = c
            .call(method::INCREMENT, &increment::encode(1))
            .await
            .unwrap();
        assert_eq!(increment::decode(&ok).unwrap(), 2);
        drop(c);
        server.await.unwrap();
    })
    .await
}

#[tokio::test]
async fn server_answers_limit_exceeded_then_closes() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ServerConfig {
            endpoint: EndpointConfig {
                auth_token: TOKEN,
                max_request_payload_bytes: 64,
                ..EndpointConfig::default()
            },
            ..ServerConfig::default()
        };
        let server = Server::bind(dir.path(), "svc", cfg).unwrap();
        let srv = tokio::spawn(async move { server.accept().await.unwrap().recv_request().await });
        // Hand-driven client so it can break its own limits.
        let mut t = endpoint::connect(dir.path(), "svc", 4096).await.unwrap();
        let (hello, msg) = build_hello(
            &EndpointConfig {
                auth_token: TOKEN,
                max_request_payload_bytes: 64,
                ..EndpointConfig::default()
            }
            .resolved(4096),
        );
        t.send_packet(&[&msg]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = t.recv_packet(&mut buf).await.unwrap();
        let neg = client_check_ack(&buf[..n], &hello).unwrap();
        assert_eq!(neg.max_request_payload_bytes, 64);
        let payload = [1u8; 65];
        t.send_packet(&[&Header::request(ECHO, 42, 65).encode(), &payload])
            .await
            .unwrap();
        let n = t.recv_packet(&mut buf).await.unwrap();
        let h = Header::decode(&buf[..n]).unwrap();
        assert_eq!(
            h,
            Header::response(ECHO, 42, TransportStatus::LIMIT_EXCEEDED, 0)
        );
        assert_eq!(n, 32);
        let server_result = srv.await.unwrap();
        assert!(
            matches!(
                server_result,
                Err(SessionError::Limit(LimitError::Payload {
                    len: 65,
                    max: 64,
                    ..
                }))
            ),
            "{server_result:?}"
        );
        let eof = t.recv_packet(&mut buf).await.unwrap_err();
        assert!(
            matches!(
                eof.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "{eof}"
        );
    })
    .await
}

#[tokio::test]
async fn response_limits_both_sides() {
    watchdog(async {
        let (a, b) = transport_pair().await;
        let cfg = ServerConfig {
            endpoint: EndpointConfig {
                max_response_payload_bytes: 16,
                ..EndpointConfig::default()
            },
            ..ServerConfig::default()
        };
        let srv = tokio::spawn(async move {
            let mut s = ServerSession::handshake(b, &cfg, 1).await.unwrap();
            let r = s.recv_request().await.unwrap().unwrap();
            let err = s
                .send_response(&r.header, TransportStatus::OK, &[0; 17])
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    SessionError::Limit(LimitError::Payload {
                        len: 17,
                        max: 16,
                        ..
                    })
                ),
                "{err:?}"
            );
        });
        let mut c = Session::handshake(a, &EndpointConfig::default())
            .await
            .unwrap();
        assert_eq!(c.negotiated().max_response_payload_bytes, 16);
        c.send_request(ECHO, b"q").await.unwrap();
        srv.await.unwrap();
        // The client refuses to send over its request limit.
        let too_big = c.send_request(ECHO, &[0; 1025]).await.unwrap_err();
        assert!(
            matches!(
                too_big,
                SessionError::Limit(LimitError::Payload {
                    len: 1025,
                    max: 1024,
                    ..
                })
            ),
            "{too_big:?}"
        );
        // The client rejects a response over its limit, from a misbehaving server.
        let (a, mut raw_srv) = transport_pair().await;
        let client =
            tokio::spawn(async move { Session::handshake(a, &EndpointConfig::default()).await });
        let mut buf = [0u8; 128];
        let n = raw_srv.recv_packet(&mut buf).await.unwrap();
        let server_cfg = EndpointConfig::default().resolved(65536);
        let pipewright_netipc::handshake::ServerDecision::Accept { ack, .. } =
            pipewright_netipc::handshake::server_decide(
                &buf[..n],
                &server_cfg,
                ReservedFieldPolicy::Spec,
                1,
            )
        else {
            panic!()
        };
        raw_srv.send_packet(&[&ack]).await.unwrap();
        let mut c3 = client.await.unwrap().unwrap();
        let id = c3.send_request(ECHO, b"q").await.unwrap();
        let _ = raw_srv.recv_packet(&mut [0u8; 4096]).await.unwrap();
        let big = vec![0u8; 1025];
        raw_srv
            .send_packet(&[
                &Header::response(ECHO, id, TransportStatus::OK, 1025).encode(),
                &big,
            ])
            .await
            .unwrap();
        let err = c3.recv_response().await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::Limit(LimitError::Payload {
                    direction: "response",
                    len: 1025,
                    max: 1024
                })
            ),
            "{err:?}"
        );
    })
    .await
}

/// The named-pipe transport driven through the generic server: on Windows it
/// is the default anyway; on Unix this runs the same code over pipewright's
/// framed sockets.
#[cfg(unix)]
#[tokio::test]
async fn pipe_transport_through_generic_server() {
    use pipewright_netipc::pipe::{PipeListener, PipeTransport};
    watchdog(async {
        let dir = TempDir::new();
        let run_dir = dir.path().to_str().unwrap();
        let listener = PipeListener::bind(run_dir, "svc", 0).unwrap();
        assert!(listener.name().starts_with(r"\\.\pipe\netipc-"));
        // A second server for the same name is refused.
        let again = PipeListener::bind(run_dir, "svc", 0).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        let server = spawn_server_on(Server::with_listener(listener, server_config(0)), 2);
        let t = PipeTransport::connect(run_dir, "svc", 100).await.unwrap();
        assert_eq!(t.max_packet_size(), 100);
        let mut c = Session::handshake(t, &big_config(0)).await.unwrap();
        assert_eq!(c.negotiated().packet_size, 100);
        let payload: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
        assert!(c.call(ECHO, &payload).await.unwrap() == payload);
        let t = PipeTransport::connect(run_dir, "svc", 0).await.unwrap();
        let c2 = Session::handshake(t, &big_config(0)).await.unwrap();
        assert_eq!(c2.negotiated().packet_size, 65536);
        assert_eq!(c2.negotiated().session_id, 2);
        drop((c, c2));
        server.await.unwrap();
        // A missing server is NotFound at once.
        let missing = PipeTransport::connect(run_dir, "absent", 0)
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");
    })
    .await
}

/// A packet larger than the receive buffer is an error, never truncated.
#[tokio::test]
async fn oversized_packet_is_an_error_on_every_transport() {
    watchdog(async {
        let (mut a, mut b) = transport_pair().await;
        a.send_packet(&[&[1u8; 100]]).await.unwrap();
        let mut small = [0u8; 64];
        let e = b.recv_packet(&mut small).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        // The peer closing is UnexpectedEof.
        let (mut a, mut b) = transport_pair().await;
        a.send_packet(&[b"abc", b"def"]).await.unwrap();
        assert_eq!(b.recv_packet(&mut small).await.unwrap(), 6);
        assert_eq!(&small[..6], b"abcdef");
        drop(a);
        let e = b.recv_packet(&mut small).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    })
    .await
}

/// The server caps the batch limits (raw HELLO over the real transport): a
/// HELLO asking for 100 request items (and 1 response item) to a server
/// allowing 50 is answered with 50 for requests and 50 for responses; one
/// asking for fewer than the server allows gets its own value for both.
#[tokio::test]
async fn raw_hello_gets_the_servers_batch_cap() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ServerConfig {
            endpoint: EndpointConfig {
                auth_token: TOKEN,
                max_request_payload_bytes: 4096,
                max_request_batch_items: 50,
                max_response_batch_items: 7,
                ..EndpointConfig::default()
            },
            ..ServerConfig::default()
        };
        let server = spawn_server(dir.path(), cfg, 2);
        for (asked, agreed) in [(100u32, 50u32), (20, 20)] {
            let mut t = endpoint::connect(dir.path(), "svc", 0).await.unwrap();
            let (_, mut hello) = build_hello(
                &EndpointConfig {
                    auth_token: TOKEN,
                    max_request_payload_bytes: 4096,
                    max_response_batch_items: 1,
                    ..EndpointConfig::default()
                }
                .resolved(65536),
            );
            // HELLO payload offset 16: max_request_batch_items.
            hello[32 + 16..32 + 20].copy_from_slice(&asked.to_ne_bytes());
            t.send_packet(&[&hello]).await.unwrap();
            let mut buf = [0u8; 128];
            let n = t.recv_packet(&mut buf).await.unwrap();
            assert_eq!(n, 80);
            let h = Header::decode(&buf[..n]).unwrap();
            assert_eq!(h.transport_status, TransportStatus::OK);
            let word =
                |off: usize| u32::from_ne_bytes(buf[32 + off..32 + off + 4].try_into().unwrap());
            // HELLO_ACK offsets 20 and 28: agreed request / response batch items.
            assert_eq!((word(20), word(28)), (agreed, agreed), "asked {asked}");
        }
        let results = server.await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    })
    .await
}
