//! Every kind of bad input gets an Err answer naming the problem, and the connection goes on
//! while the framing is intact; a truncated frame closes only its own connection.

mod common;

use common::*;
use pipewright_rpc::{Router, Server};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// Sends `body`, expects an Err answer containing `needle`, then checks the connection still
/// answers a good request.
async fn expect_err_then_usable(
    conn: &mut pipewright::PipeStream,
    body: &[u8],
    needle: &str,
    id: Option<u64>,
) {
    let answer = exchange(conn, body).await;
    assert_eq!(
        answer["status"],
        "Err",
        "for {:?}: {answer}",
        String::from_utf8_lossy(body)
    );
    let message = answer["params"]
        .as_str()
        .expect("the Err params are a message");
    assert!(
        message.contains(needle),
        "for {:?}: {message:?} lacks {needle:?}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(answer.get("id").and_then(Value::as_u64), id, "{answer}");
    let ok = exchange(conn, br#"{"method":"Echo","params":{"payload":"after"}}"#).await;
    assert_eq!(
        ok,
        json!({"status":"Ok","params":{"Json":"after"}}),
        "after {:?}",
        String::from_utf8_lossy(body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_err_answers_and_the_connection_goes_on() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "bad-env",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            let cases: &[(&[u8], &str, Option<u64>)] = &[
                (b"{\"method\":\"Echo\",", "malformed JSON", None),
                (b"not json at all", "malformed JSON", None),
                (b"", "malformed JSON", None),
                (b"\xff\xfe", "malformed JSON", None),
                (b"[\"Echo\", {}]", "not a JSON object", None),
                (b"42", "not a JSON object", None),
                (
                    br#"{"params":{"payload":"x"}}"#,
                    r#"no "method" field"#,
                    None,
                ),
                (br#"{"params":{},"id":5}"#, r#"no "method" field"#, Some(5)),
                (
                    br#"{"method":["Echo"],"id":6}"#,
                    r#""method" must be a string"#,
                    Some(6),
                ),
                (
                    br#"{"method":"Echo","params":{"payload":"x"},"id":-1}"#,
                    r#""id" must be an unsigned integer"#,
                    None,
                ),
                (
                    br#"{"method":"Echo","params":{"payload":"x"},"id":"abc"}"#,
                    r#""id" must be an unsigned integer"#,
                    None,
                ),
            ];
            for (body, needle, id) in cases {
                expect_err_then_usable(&mut conn, body, needle, *id).await;
            }
            drop(conn);
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_wrong_params_are_named() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "bad-call",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            let cases: &[(&[u8], &str, Option<u64>)] = &[
                // Served by the demo's enum: serde names the known methods.
                (
                    br#"{"method":"Frobnicate","params":{}}"#,
                    r#"unknown method "Frobnicate""#,
                    None,
                ),
                (
                    br#"{"method":"Frobnicate","params":{},"id":9}"#,
                    "expected one of",
                    Some(9),
                ),
                (
                    br#"{"method":"Factorial","params":{"n":"five"}}"#,
                    r#"invalid params for "Factorial""#,
                    None,
                ),
                (
                    br#"{"method":"Factorial","params":{"m":5},"id":3}"#,
                    "missing field `n`",
                    Some(3),
                ),
                (
                    br#"{"method":"Factorial","params":{"n":-1}}"#,
                    r#"invalid params for "Factorial""#,
                    None,
                ),
                (
                    br#"{"method":"Reverse"}"#,
                    r#"invalid params for "Reverse""#,
                    None,
                ),
                // Served by a named handler.
                (
                    br#"{"method":"Sleep","params":{"ms":"soon"}}"#,
                    r#"invalid params for "Sleep""#,
                    None,
                ),
                (
                    br#"{"method":"Sleep","id":11}"#,
                    r#"invalid params for "Sleep""#,
                    Some(11),
                ),
                // A handler's own error, and a handler that panics.
                (
                    br#"{"method":"Fail","params":{}}"#,
                    "Fail always fails",
                    None,
                ),
                (
                    br#"{"method":"Panic","params":{},"id":12}"#,
                    r#"the handler for "Panic" panicked"#,
                    Some(12),
                ),
            ];
            for (body, needle, id) in cases {
                expect_err_then_usable(&mut conn, body, needle, *id).await;
            }
            drop(conn);

            // A router of named handlers only lists what it has.
            let plain = RunningServer::start(
                "bad-plain",
                Server::new(
                    Router::new().handle("Echo", |p: Value| async move { Ok::<_, String>(p) }),
                )
                .connection_threads(threads),
            );
            let mut conn = pipewright::connect(&plain.name).await.unwrap();
            let answer = exchange(&mut conn, br#"{"method":"Echoo","params":1}"#).await;
            assert_eq!(
                answer["params"], r#"unknown method "Echoo"; this server has: Echo"#,
                "{answer}"
            );
            drop(conn);
            plain.shutdown().await;
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_are_skipped_and_answered() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "bad-size",
                Server::new(test_router())
                    .connection_threads(threads)
                    .max_frame_size(1024),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            let big = serde_json::to_vec(
                &json!({"method":"Echo","params":{"payload":"z".repeat(5000)},"id":1}),
            )
            .unwrap();
            expect_err_then_usable(&mut conn, &big, "over the 1024-byte limit", None).await;
            // An answer over the limit becomes an Err too.
            expect_err_then_usable(
                &mut conn,
                br#"{"method":"Big","params":{"len":3000},"id":2}"#,
                "over the 1024-byte frame limit",
                Some(2),
            )
            .await;
            // Right at the limit is fine.
            let payload = "a".repeat(1024 - r#"{"method":"Echo","params":{"payload":""}}"#.len());
            let body =
                serde_json::to_vec(&json!({"method":"Echo","params":{"payload":payload}})).unwrap();
            assert_eq!(body.len(), 1024);
            let answer = exchange(&mut conn, &body).await;
            assert_eq!(answer["status"], "Ok", "{answer}");
            drop(conn);
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_is_16_mib_and_checked_before_allocating() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "bad-16m",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut conn = pipewright::connect(&server.name).await.unwrap();
            // A frame one byte over 16 MiB is skipped as it streams in and answered with an Err.
            let len = 16 * 1024 * 1024 + 1;
            conn.write_all(&(len as u32).to_le_bytes()).await.unwrap();
            let chunk = vec![b' '; 1 << 20];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                conn.write_all(&chunk[..n]).await.unwrap();
                left -= n;
            }
            let answer: Value =
                serde_json::from_slice(&recv_frame(&mut conn).await.unwrap()).unwrap();
            assert_eq!(answer["status"], "Err");
            assert!(
                answer["params"]
                    .as_str()
                    .unwrap()
                    .contains("16777217 bytes is over the 16777216-byte limit"),
                "{answer}"
            );
            let ok = exchange(&mut conn, br#"{"method":"Factorial","params":{"n":4}}"#).await;
            assert_eq!(ok, json!({"status":"Ok","params":{"Number":24}}));
            // A header announcing 4 GiB - 1 bytes, then the end: no 4 GiB buffer, only this
            // connection closes.
            let mut other = pipewright::connect(&server.name).await.unwrap();
            other
                .write_all(&[0xff, 0xff, 0xff, 0xff, b'{'])
                .await
                .unwrap();
            drop(other);
            let ok = exchange(&mut conn, br#"{"method":"Factorial","params":{"n":5}}"#).await;
            assert_eq!(ok, json!({"status":"Ok","params":{"Number":120}}));
            drop(conn);
            server.shutdown().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_closes_only_its_own_connection() {
    watchdog(async {
        for threads in SERVED_ON {
            let server = RunningServer::start(
                "bad-trunc",
                Server::new(test_router()).connection_threads(threads),
            );
            let mut bystander = pipewright::connect(&server.name).await.unwrap();
            let ok = exchange(
                &mut bystander,
                br#"{"method":"Echo","params":{"payload":"a"}}"#,
            )
            .await;
            assert_eq!(ok["status"], "Ok");
            for partial in [
                &[0x10u8, 0x00][..],
                &[0x30, 0x00, 0x00, 0x00, b'{', b'"'][..],
            ] {
                let mut victim = pipewright::connect(&server.name).await.unwrap();
                victim.write_all(partial).await.unwrap();
                victim.flush().await.unwrap();
                #[cfg(unix)]
                {
                    // Unix can half-close: the server sees the end inside the frame and closes
                    // the connection without an answer.
                    victim.shutdown().await.unwrap();
                    assert_eq!(
                        recv_frame(&mut victim).await,
                        None,
                        "no answer to a truncated frame"
                    );
                }
                drop(victim);
                let ok = exchange(
                    &mut bystander,
                    br#"{"method":"Echo","params":{"payload":"b"}}"#,
                )
                .await;
                assert_eq!(ok, json!({"status":"Ok","params":{"Json":"b"}}));
            }
            // New connections are served too.
            let mut fresh = pipewright::connect(&server.name).await.unwrap();
            let ok = exchange(
                &mut fresh,
                br#"{"method":"Reverse","params":{"text":"ab"}}"#,
            )
            .await;
            assert_eq!(ok, json!({"status":"Ok","params":{"Text":"ba"}}));
            drop((fresh, bystander));
            server.shutdown().await;
        }
    })
    .await
}
