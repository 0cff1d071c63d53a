//! A call that holds the read turn (the only call in flight reads its own answer) but is no
//! longer polled, as in a `select!` branch that is not polled again, must not stall the
//! connection: the next call takes the turn back for the reader task, every other call is
//! answered, and the first call, polled again, still gets its own answer.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use common::*;
use pipewright_rpc::demo::{Request, Response};
use pipewright_rpc::{Client, ClientOptions, Server};
use serde_json::json;

/// Polls `fut` once, in the calling task.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Long enough never to end a call of this test on a slow machine; a call that waits this
/// long is the stall this test looks for.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpolled_call_holding_the_read_turn_does_not_stall_other_calls() {
    watchdog(async {
        let server = RunningServer::start("turn", Server::new(test_router()));
        let options = ClientOptions::new().call_timeout(CALL_TIMEOUT);
        let client = Client::connect_with(server.name.as_str(), options)
            .await
            .expect("connect");

        // Call A is the only call in flight, so it takes the read turn and reads the stream
        // itself. Its answer comes only after some other call has run `Open`.
        let no_params = json!({});
        let a = client.call::<_, String>("Wait", &no_params);
        let mut a = std::pin::pin!(a);
        for _ in 0..3 {
            assert!(
                poll_once(a.as_mut()).await.is_pending(),
                "Wait cannot be answered before Open"
            );
            tokio::task::yield_now().await;
        }

        // A is kept alive and never polled while other calls run on the same client.
        let b: String = client
            .call("Open", &json!({}))
            .await
            .expect("call B is answered while the unpolled call A held the read turn");
        assert_eq!(b, "opened");
        let callers: Vec<_> = (0..8)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let payload = format!("caller {i}");
                    let answer: Response = client
                        .request(&Request::Echo {
                            payload: payload.clone().into(),
                        })
                        .await
                        .expect("a concurrent call is answered while A is unpolled");
                    assert_eq!(answer, Response::Json(payload.into()));
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller task");
        }

        // Polled again, A gets its own answer, which the reader task kept for it.
        let a = a.await.expect("A gets its own answer");
        assert_eq!(a, "waited");

        // A alone again: the connection still works, with the only call reading.
        let n: Response = client
            .request(&Request::Factorial { n: 5 })
            .await
            .expect("a later call");
        assert_eq!(n, Response::Number(120));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpolled_reading_call_in_a_select_branch_does_not_stall_other_calls() {
    watchdog(async {
        let server = RunningServer::start("turn-select", Server::new(test_router()));
        let options = ClientOptions::new().call_timeout(CALL_TIMEOUT);
        let client = Client::connect_with(server.name.as_str(), options)
            .await
            .expect("connect");
        // Warm the connection, so the reader task has run before A reads.
        let _: Response = client
            .request(&Request::Factorial { n: 3 })
            .await
            .expect("first call");

        let no_params = json!({});
        let a = client.call::<_, String>("Wait", &no_params);
        tokio::pin!(a);
        // The shape of the bug in the wild: a select! whose other branch wins, with the call
        // kept for later.
        tokio::select! {
            biased;
            _ = &mut a => panic!("Wait cannot be answered before Open"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        for i in 0..20 {
            let payload = format!("b{i}");
            let answer: Response = client
                .request(&Request::Echo {
                    payload: payload.clone().into(),
                })
                .await
                .expect("a call is answered while A, unpolled, held the read turn");
            assert_eq!(answer, Response::Json(payload.into()));
        }
        let opened: String = client.call("Open", &json!({})).await.expect("Open");
        assert_eq!(opened, "opened");
        assert_eq!(a.await.expect("A gets its own answer"), "waited");
        server.shutdown().await;
    })
    .await;
}
