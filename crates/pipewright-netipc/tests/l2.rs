//! L2 managed server and client over the platform's baseline transport:
//! typed services, dispatch statuses, worker limit, learned sizing,
//! reconnects, and the blocking API.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::blocking;
use pipewright_netipc::client::{Client, ClientConfig, ClientError};
use pipewright_netipc::codec::cgroups_snapshot::{CgroupItem, Snapshot};
use pipewright_netipc::codec::increment;
use pipewright_netipc::handshake::{EndpointConfig, HandshakeError};
use pipewright_netipc::header::{method, TransportStatus};
use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
use pipewright_netipc::service::{CgroupsSnapshot, Echo, Increment, Service, StringReverse};
use pipewright_netipc::session::{Session, SessionError};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn endpoint() -> EndpointConfig {
    EndpointConfig {
        auth_token: TOKEN,
        ..EndpointConfig::default()
    }
}

/// Starts a managed server on the runtime; returns a stop-and-wait closure.
fn start(
    dir: &Path,
    service: &str,
    config: ManagedConfig,
    svc: impl Service,
) -> (
    Arc<ManagedServer>,
    tokio::task::JoinHandle<Result<(), SessionError>>,
) {
    let server = Arc::new(ManagedServer::bind(dir, service, config, svc).unwrap());
    let s = server.clone();
    let task = tokio::spawn(async move { s.run().await });
    (server, task)
}

fn snapshot(items: usize, path_len: usize) -> Snapshot {
    Snapshot {
        systemd_enabled: 1,
        generation: 7,
        items: (0..items)
            .map(|i| {
                let mut it = CgroupItem::new(
                    format!("cgroup_{i}").into_bytes(),
                    format!("/sys/fs/cgroup/{}/cgroup.procs", "p".repeat(path_len)).into_bytes(),
                );
                it.options = i as u32;
                it.enabled = (i % 2) as u32;
                it
            })
            .collect(),
    }
}

#[tokio::test]
async fn typed_services_and_dispatch_statuses() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ManagedConfig::new(endpoint());
        let (_inc, _) = start(dir.path(), "inc", cfg, Increment);
        let (_rev, _) = start(dir.path(), "rev", cfg, StringReverse);
        let expected = snapshot(5, 3);
        let served = expected.clone();
        let (_snap, _) = start(
            dir.path(),
            "snap",
            cfg,
            CgroupsSnapshot::new(move || Ok(served.clone())),
        );
        let ccfg = ClientConfig::new(endpoint());
        let mut inc = Client::new(dir.path(), "inc", ccfg);
        assert_eq!(inc.increment(41).await.unwrap(), 42);
        let sid = inc.negotiated().unwrap().session_id;
        // A wrong method: UNSUPPORTED, and the session stays.
        let err = inc
            .call(method::STRING_REVERSE, b"\x08\0\0\0\0\0\0\0\0")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Status(s) if s == TransportStatus::UNSUPPORTED),
            "{err:?}"
        );
        assert_eq!(inc.increment(1).await.unwrap(), 2);
        assert_eq!(inc.negotiated().unwrap().session_id, sid);
        // A malformed request: BAD_ENVELOPE, then the server closes; the next
        // call reconnects.
        let err = inc.call(method::INCREMENT, b"short").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status(s) if s == TransportStatus::BAD_ENVELOPE),
            "{err:?}"
        );
        assert_eq!(inc.increment(9).await.unwrap(), 10);
        assert!(inc.negotiated().unwrap().session_id > sid);

        let mut rev = Client::new(dir.path(), "rev", ccfg);
        assert_eq!(rev.string_reverse(b"netipc").await.unwrap(), b"cpiten");
        let mut snap = Client::new(dir.path(), "snap", ccfg);
        assert_eq!(snap.cgroups_snapshot().await.unwrap(), expected);
    })
    .await
}

#[tokio::test]
async fn handler_failure_is_internal_error() {
    watchdog(async {
        let dir = TempDir::new();
        let (_s, _) = start(
            dir.path(),
            "snap",
            ManagedConfig::new(endpoint()),
            CgroupsSnapshot::new(|| Err("provider down".to_string())),
        );
        let mut c = Client::new(dir.path(), "snap", ClientConfig::new(endpoint()));
        let err = c.cgroups_snapshot().await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status(s) if s == TransportStatus::INTERNAL_ERROR),
            "{err:?}"
        );
        assert!(err.to_string().contains("INTERNAL_ERROR"), "{err}");
    })
    .await
}

#[tokio::test]
async fn worker_limit_closes_extra_sessions_after_handshake() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ManagedConfig {
            workers: 1,
            ..ManagedConfig::new(endpoint())
        };
        let (_s, _) = start(dir.path(), "inc", cfg, Increment);
        let mut first = Session::connect(dir.path(), "inc", &endpoint())
            .await
            .unwrap();
        let one = first
            .call(method::INCREMENT, &increment::encode(1))
            .await
            .unwrap();
        assert_eq!(increment::decode(&one).unwrap(), 2);
        // Over capacity: the handshake succeeds, then the session is closed.
        let mut second = Session::connect(dir.path(), "inc", &endpoint())
            .await
            .unwrap();
        let err = second
            .call(method::INCREMENT, &increment::encode(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::Closed | SessionError::Io(_)),
            "{err:?}"
        );
        // Once the first leaves, a worker is free again.
        drop(first);
        let mut freed = false;
        for _ in 0..200 {
            let mut s = Session::connect(dir.path(), "inc", &endpoint())
                .await
                .unwrap();
            if s.call(method::INCREMENT, &increment::encode(5))
                .await
                .is_ok()
            {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(freed, "the worker was never released");
    })
    .await
}

#[tokio::test]
async fn learned_response_sizing() {
    watchdog(async {
        let dir = TempDir::new();
        // Response limit 0: starts at 65536, may grow to 1 MiB.
        let big = snapshot(2000, 40);
        let size = big.encode().unwrap().len();
        assert!(size > 65536 && size < (1 << 20), "{size}");
        let served = big.clone();
        let (server, _) = start(
            dir.path(),
            "snap",
            ManagedConfig::new(endpoint()),
            CgroupsSnapshot::new(move || Ok(served.clone())),
        );
        let mut c = Client::new(dir.path(), "snap", ClientConfig::new(endpoint()));
        assert_eq!(c.cgroups_snapshot().await.unwrap(), big);
        let n = c.negotiated().unwrap();
        assert!(n.max_response_payload_bytes as usize >= size, "{n:?}");
        assert!(n.session_id >= 2, "the overflow forced a reconnect");
        assert_eq!(
            server.server().config().endpoint.max_response_payload_bytes,
            (size as u32).next_power_of_two()
        );

        // A fixed response limit does not grow: the client gives up.
        let fixed = EndpointConfig {
            max_response_payload_bytes: 4096,
            ..endpoint()
        };
        let served = big.clone();
        let (_s2, _) = start(
            dir.path(),
            "fixed",
            ManagedConfig::new(fixed),
            CgroupsSnapshot::new(move || Ok(served.clone())),
        );
        let mut c = Client::new(dir.path(), "fixed", ClientConfig::new(endpoint()));
        let err = c.cgroups_snapshot().await.unwrap_err();
        assert!(matches!(err, ClientError::LimitExceeded), "{err:?}");
    })
    .await
}

#[tokio::test]
async fn learned_request_sizing() {
    watchdog(async {
        let dir = TempDir::new();
        let (_s, _) = start(dir.path(), "echo", ManagedConfig::new(endpoint()), Echo);
        let mut c = Client::new(dir.path(), "echo", ClientConfig::new(endpoint()));
        assert_eq!(c.call(77, b"small").await.unwrap(), b"small");
        assert_eq!(c.negotiated().unwrap().max_request_payload_bytes, 1024);
        let payload = vec![0xa5u8; 3000];
        assert_eq!(c.call(77, &payload).await.unwrap(), payload);
        assert_eq!(c.negotiated().unwrap().max_request_payload_bytes, 4096);
        // Over the client's fixed limit: refused without sending.
        let fixed = EndpointConfig {
            max_request_payload_bytes: 1024,
            ..endpoint()
        };
        let mut c = Client::new(dir.path(), "echo", ClientConfig::new(fixed));
        let err = c.call(77, &payload).await.unwrap_err();
        assert!(matches!(err, ClientError::LimitExceeded), "{err:?}");
    })
    .await
}

#[tokio::test]
async fn client_reconnects_after_server_restart() {
    watchdog(async {
        let dir = TempDir::new();
        let cfg = ManagedConfig::new(endpoint());
        let (server, task) = start(dir.path(), "inc", cfg, Increment);
        let mut c = Client::new(dir.path(), "inc", ClientConfig::new(endpoint()));
        assert_eq!(c.increment(1).await.unwrap(), 2);
        server.stopper().stop();
        task.await.unwrap().unwrap();
        drop(server);
        let (_server, _) = start(dir.path(), "inc", cfg, Increment);
        assert_eq!(c.increment(2).await.unwrap(), 3);
        assert_eq!(c.negotiated().unwrap().session_id, 1, "a new server");
    })
    .await
}

#[tokio::test]
async fn client_errors_name_the_problem() {
    watchdog(async {
        let dir = TempDir::new();
        let mut c = Client::new(
            dir.path(),
            "absent",
            ClientConfig {
                connect_attempts: 3,
                ..ClientConfig::new(endpoint())
            },
        );
        let err = c.increment(1).await.unwrap_err();
        assert!(matches!(err, ClientError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("absent"), "{err}");

        let (_s, _) = start(dir.path(), "inc", ManagedConfig::new(endpoint()), Increment);
        let wrong = EndpointConfig {
            auth_token: 1,
            ..endpoint()
        };
        let mut c = Client::new(dir.path(), "inc", ClientConfig::new(wrong));
        let err = c.increment(1).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Rejected(HandshakeError::AuthFailed)),
            "{err:?}"
        );
        assert!(err.to_string().contains("AUTH_FAILED"), "{err}");
    })
    .await
}

#[test]
fn blocking_api() {
    let dir = TempDir::new();
    let counter = Arc::new(AtomicU64::new(0));
    let seen = counter.clone();
    let server = blocking::ManagedServer::start(
        dir.path(),
        "snap",
        ManagedConfig::new(endpoint()),
        CgroupsSnapshot::new(move || {
            let generation = seen.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Snapshot {
                generation,
                ..snapshot(3, 1)
            })
        }),
    )
    .unwrap();
    let mut c = blocking::Client::new(dir.path(), "snap", ClientConfig::new(endpoint())).unwrap();
    let n = c.connect().unwrap();
    assert_eq!(n.session_id, 1);
    // The same name cannot be served twice (on Linux the stale-socket probe
    // is accepted by the live server and consumes a session id).
    let again = blocking::ManagedServer::start(
        dir.path(),
        "snap",
        ManagedConfig::new(endpoint()),
        Increment,
    );
    assert!(again.is_err());
    assert_eq!(c.cgroups_snapshot().unwrap().generation, 1);
    assert_eq!(c.cgroups_snapshot().unwrap().generation, 2);
    assert_eq!(counter.load(Ordering::SeqCst), 2);
    server.stop();
    let err = c.cgroups_snapshot().unwrap_err();
    assert!(
        matches!(err, ClientError::NotFound { .. } | ClientError::Session(_)),
        "{err:?}"
    );
}

/// INCREMENT that first runs a hook on each request's value (to stall or to take notes).
#[derive(Clone)]
struct IncrementAfter(Arc<dyn Fn(u64) + Send + Sync>);

impl Service for IncrementAfter {
    fn method(&self) -> Option<u16> {
        Some(method::INCREMENT)
    }

    fn handle(
        &self,
        code: u16,
        request: &[u8],
    ) -> Result<Vec<u8>, pipewright_netipc::service::ServiceError> {
        (self.0)(increment::decode(request)?);
        Increment.handle(code, request)
    }
}

/// A gate a stalled handler waits at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut o = open.lock().unwrap();
        while !*o {
            o = cv.wait(o).unwrap();
        }
    }
}

/// A blocking client over the baseline (on Windows a blocking pipe, waiting on the caller's
/// thread): a stalled answer fails at the call timeout (no retry) and drops the session;
/// once the server answers late, the next call reconnects and gets its own answer.
#[test]
fn blocking_client_over_the_baseline_times_out_and_recovers() {
    let dir = TempDir::new();
    let gate = Gate::default();
    let held = gate.clone();
    // 1000 is answered only once the gate opens: a stalled server.
    let stall = IncrementAfter(Arc::new(move |v| {
        if v == 1000 {
            held.wait();
        }
    }));
    let server =
        blocking::ManagedServer::start(dir.path(), "slow", ManagedConfig::new(endpoint()), stall)
            .unwrap();
    let config = ClientConfig {
        call_timeout: Duration::from_millis(300),
        ..ClientConfig::new(endpoint())
    };
    let mut c = blocking::Client::new(dir.path(), "slow", config).unwrap();
    assert_eq!(c.increment(1).unwrap(), 2);
    let first = c.negotiated().unwrap().session_id;
    match c.increment(1000) {
        Err(ClientError::TimedOut(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(c.negotiated().is_none(), "the timed-out session is dropped");
    gate.open();
    // The late answer (1001) must never be taken for this call's.
    assert_eq!(c.increment(41).unwrap(), 42);
    assert!(c.negotiated().unwrap().session_id > first);
    server.stop();
}

/// Sessions served on threads of their own (named pipes) and as tasks (over the thread
/// limit, and every UDS session) answer the same: several blocking clients at once, each
/// checking every answer; then stopping the server ends every session, idle ones included,
/// and the name can be served again at once.
#[test]
fn sessions_on_threads_and_tasks_answer_and_stop() {
    for threads in [0usize, 2, 64] {
        let dir = TempDir::new();
        let config = ManagedConfig {
            max_session_threads: threads,
            ..ManagedConfig::new(endpoint())
        };
        // The name of each thread a request is answered on.
        let noted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let notes = noted.clone();
        let service = IncrementAfter(Arc::new(move |_| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            notes.lock().unwrap().push(name);
        }));
        let server = blocking::ManagedServer::start(dir.path(), "inc", config, service).unwrap();
        let clients: Vec<_> = (0..5u64)
            .map(|k| {
                let d = dir.path().to_owned();
                std::thread::spawn(move || {
                    let mut c =
                        blocking::Client::new(&d, "inc", ClientConfig::new(endpoint())).unwrap();
                    let mut v = k * 1_000_000;
                    for _ in 0..200 {
                        let next = c.increment(v).unwrap();
                        assert_eq!(next, v + 1, "threads {threads}");
                        v = next;
                    }
                    c
                })
            })
            .collect();
        // Keep the clients connected and idle while the server stops.
        let idle: Vec<_> = clients.into_iter().map(|t| t.join().unwrap()).collect();
        // Which sessions had a thread: on Windows (named pipes) as many as the limit
        // allows, on Unix none (the UDS transport has no blocking form).
        let names = noted.lock().unwrap().clone();
        let mut on_threads: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("netipc-session-"))
            .collect();
        on_threads.sort();
        on_threads.dedup();
        let expected = if cfg!(windows) { threads.min(5) } else { 0 };
        assert_eq!(
            on_threads.len(),
            expected,
            "threads {threads}: {on_threads:?}"
        );
        assert_eq!(names.len(), 5 * 200, "every request answered once");
        server.stop();
        let again = blocking::ManagedServer::start(
            dir.path(),
            "inc",
            ManagedConfig::new(endpoint()),
            Increment,
        )
        .unwrap_or_else(|e| panic!("threads {threads}: the name is still held: {e}"));
        for mut c in idle {
            // The old session is gone: the client reconnects to the new server.
            assert_eq!(c.increment(7).unwrap(), 8, "threads {threads}");
        }
        again.stop();
    }
}
