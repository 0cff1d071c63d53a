//! Calls dropped or timed out at random points, with many callers on one connection, leave
//! the connection in step: every call that completes gets its own answer, and the connection
//! is never replaced. Also: deadlines of different lengths, and a server without ids.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use pipewright::Listener;
use pipewright_rpc::demo::{Request, Response};
use pipewright_rpc::{Client, RpcError, Server};
use serde_json::json;
use tokio::io::BufReader;

/// Forwards every connection on `front` to `back`, counting them.
struct CountingForwarder {
    name: String,
    accepted: Arc<AtomicUsize>,
}

impl CountingForwarder {
    fn start(back: &str) -> CountingForwarder {
        let name = unique_name("forward");
        let listener = Listener::bind(name.as_str()).expect("bind forwarder");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let back = back.to_owned();
        tokio::spawn(async move {
            while let Ok(mut front) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut server = pipewright::connect(back.as_str())
                    .await
                    .expect("connect back");
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut front, &mut server).await;
                });
            }
        });
        CountingForwarder { name, accepted }
    }
}

/// Polls a future at most `polls` times; `None` (dropping it) if it was not done by then.
struct DropAfterPolls<F: Future> {
    fut: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> Future for DropAfterPolls<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        self.polls -= 1;
        if self.polls == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// How one call of the storm ended.
#[derive(Debug, Default)]
struct Tally {
    answered: AtomicUsize,
    dropped: AtomicUsize,
    timed_out: AtomicUsize,
}

fn payload(caller: usize, round: usize) -> String {
    let len = if rand::random::<u8>() < 20 {
        rand::random_range(60_000..400_000)
    } else {
        rand::random_range(0..200)
    };
    let fill = char::from(b'a' + rand::random_range(0..26u8));
    format!("{caller}/{round}/{}", fill.to_string().repeat(len))
}

/// One call, ended in one of several ways picked at random.
async fn random_call(client: &Client, caller: usize, round: usize, tally: &Tally) {
    let payload = payload(caller, round);
    let request = Request::Echo {
        payload: payload.clone().into(),
    };
    let check = |answer: Result<Response, RpcError>, may_time_out: bool| match answer {
        Ok(Response::Json(serde_json::Value::String(text))) => {
            assert!(
                text == payload,
                "caller {caller} round {round} got another call's answer"
            );
            tally.answered.fetch_add(1, Ordering::Relaxed);
        }
        Err(RpcError::TimedOut { .. }) if may_time_out => {
            tally.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("caller {caller} round {round}: {other:?}"),
    };
    let micros = Duration::from_micros(rand::random_range(0..50));
    match rand::random_range(0..5u8) {
        // Dropped by an outer timeout.
        0 => match tokio::time::timeout(micros, client.request(&request)).await {
            Ok(answer) => check(answer, false),
            Err(_) => {
                tally.dropped.fetch_add(1, Ordering::Relaxed);
            }
        },
        // Dropped after a few polls, wherever it then is.
        1 => {
            let call = DropAfterPolls {
                fut: Box::pin(client.request(&request)),
                polls: rand::random_range(1..4),
            };
            match call.await {
                Some(answer) => check(answer, false),
                None => {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Timed out by the client's own deadline.
        2 => check(client.request_with_timeout(&request, micros).await, true),
        // A slow call answered out of order, dropped at random.
        3 => {
            let tag = (caller * 1_000 + round) as u64;
            let params = json!({"ms": rand::random_range(0..3), "tag": tag});
            let call = client.call::<_, u64>("Sleep", &params);
            match tokio::time::timeout(Duration::from_millis(rand::random_range(0..4)), call).await
            {
                Ok(answer) => {
                    assert_eq!(answer.unwrap(), tag, "caller {caller} round {round}");
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => check(client.request(&request).await, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_at_random_points_leave_the_connection_in_step() {
    const CALLERS: usize = 48;
    const ROUNDS: usize = 30;
    watchdog(async {
        let server = RunningServer::start("storm", Server::new(test_router()));
        let forwarder = CountingForwarder::start(&server.name);
        let client = Client::connect(&forwarder.name).await.unwrap();
        let tally = Arc::new(Tally::default());
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (client, tally) = (client.clone(), tally.clone());
                tokio::spawn(async move {
                    for round in 0..ROUNDS {
                        random_call(&client, caller, round, &tally).await;
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let answered = tally.answered.load(Ordering::Relaxed);
        let dropped = tally.dropped.load(Ordering::Relaxed);
        let timed_out = tally.timed_out.load(Ordering::Relaxed);
        eprintln!("{answered} answered, {dropped} dropped, {timed_out} timed out");
        assert_eq!(answered + dropped + timed_out, CALLERS * ROUNDS);
        assert!(answered > 0 && dropped > 0, "{tally:?}");

        // The same connection still works, one call at a time and many at once.
        for i in 0..100 {
            let text = format!("after the storm {i}");
            let got: Response = client
                .request(&Request::Echo {
                    payload: text.clone().into(),
                })
                .await
                .unwrap();
            assert_eq!(got, Response::Json(text.into()));
        }
        let calls: Vec<_> = (0..200u64)
            .map(|tag| {
                let client = client.clone();
                tokio::spawn(async move {
                    let got: u64 = client
                        .call("Sleep", &json!({"ms": tag % 5, "tag": tag}))
                        .await
                        .unwrap();
                    assert_eq!(got, tag);
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(
            forwarder.accepted.load(Ordering::SeqCst),
            1,
            "the client had to reconnect: the connection fell out of step"
        );
        drop(client);
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_after_a_long_one_still_fires_first() {
    watchdog(async {
        let server = RunningServer::start("deadlines", Server::new(test_router()));
        let client = Client::connect(&server.name).await.unwrap();
        let long = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .call_with_timeout::<_, u64>(
                        "Sleep",
                        &json!({"ms": 1500, "tag": 1}),
                        Duration::from_secs(20),
                    )
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = client
            .call_with_timeout::<_, u64>(
                "Sleep",
                &json!({"ms": 5000, "tag": 2}),
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::TimedOut { .. }), "{err:?}");
        assert!(
            !long.is_finished(),
            "the short deadline fired only after the long call ended"
        );
        assert_eq!(long.await.unwrap().unwrap(), 1);
        // A timeout too large to add to the clock never fires.
        let got: u64 = client
            .call_with_timeout("Sleep", &json!({"ms": 1, "tag": 3}), Duration::MAX)
            .await
            .unwrap();
        assert_eq!(got, 3);
        drop(client);
        server.shutdown().await;
    })
    .await
}

/// A server that answers in order and without ids, as pipe-rpc's does: echoes each
/// request's params back as the answer's params.
async fn serve_without_ids(listener: Listener) {
    let conn = listener.accept().await.expect("accept");
    let (r, mut w) = tokio::io::split(conn);
    let mut r = BufReader::new(r);
    while let Ok(Some(pipewright_rpc::frame::Frame::Body(body))) =
        pipewright_rpc::frame::read_frame(&mut r, 1 << 20).await
    {
        let request: serde_json::Value = serde_json::from_slice(&body).expect("a request");
        let answer = json!({"status": "Ok", "params": request["params"]});
        tokio::time::sleep(Duration::from_millis(1)).await;
        pipewright_rpc::frame::write_frame(&mut w, answer.to_string().as_bytes())
            .await
            .expect("answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_ids_go_to_the_oldest_call() {
    watchdog(async {
        let name = unique_name("no-ids");
        let listener = Listener::bind(name.as_str()).unwrap();
        let server = tokio::spawn(serve_without_ids(listener));
        let client = Client::connect(&name).await.unwrap();
        for i in 0..20u64 {
            assert_eq!(client.call::<_, u64>("Any", &i).await.unwrap(), i);
        }
        // Many in flight at once, sent in id order from one task, some dropped on the way.
        let calls = (100..160u64).map(|i| {
            let client = client.clone();
            async move {
                let call = client.call::<_, u64>("Any", &i);
                if i % 7 == 0 {
                    // Dropped after its request went out: its answer must not be taken by
                    // another call.
                    let dropped = DropAfterPolls {
                        fut: Box::pin(call),
                        polls: 1,
                    };
                    return (i, dropped.await.map(Result::unwrap));
                }
                (i, Some(call.await.unwrap()))
            }
        });
        for (sent, got) in futures_util::future::join_all(calls).await {
            if let Some(got) = got {
                assert_eq!(got, sent, "an in-order answer went to the wrong call");
            }
        }
        drop(client);
        server.await.unwrap();
    })
    .await
}
