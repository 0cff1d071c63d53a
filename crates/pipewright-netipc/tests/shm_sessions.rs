//! Shared-memory profiles end to end, through the platform-neutral region
//! contract (`shm::platform`): raw regions between threads, full sessions
//! through the managed server with the async and the blocking client, the
//! fallback to the baseline, and peer death in real child processes.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::blocking;
use pipewright_netipc::client::{Client, ClientConfig, ClientError};
use pipewright_netipc::codec::cgroups_snapshot::{CgroupItem, Snapshot};
use pipewright_netipc::codec::increment;
use pipewright_netipc::handshake::EndpointConfig;
use pipewright_netipc::header::{method, TransportStatus};
use pipewright_netipc::hello::profile;
use pipewright_netipc::managed::ManagedConfig;
use pipewright_netipc::service::{
    CgroupsSnapshot, Echo, Increment, Service, ServiceError, StringReverse,
};
use pipewright_netipc::session::{Session, SessionError};
use pipewright_netipc::shm::{platform, RegionParams, ShmError, ShmPeer};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SVC: &str = "shmsvc";
const SHM: u32 = profile::SHM_HYBRID | profile::SHM_FUTEX;

/// Offers every profile, preferring `preferred`.
fn shm_endpoint(preferred: u32) -> EndpointConfig {
    EndpointConfig {
        supported_profiles: profile::BASELINE | SHM,
        preferred_profiles: preferred,
        auth_token: TOKEN,
        ..EndpointConfig::default()
    }
}

fn params(dir: &Path, session_id: u64, max: u32) -> RegionParams {
    RegionParams {
        run_dir: dir.to_str().unwrap().to_owned(),
        service: SVC.to_owned(),
        session_id,
        auth_token: TOKEN,
        max_request_payload: max,
        max_response_payload: max,
    }
}

/// A server and a client peer of one region (profile 0x04).
fn region_pair(dir: &Path, max: u32) -> (Box<dyn ShmPeer>, Box<dyn ShmPeer>) {
    let p = params(dir, 7, max);
    let regions = platform::ServerRegions::create(&p, SHM).expect("create region");
    assert_eq!(regions.profiles() & SHM, SHM & platform::SUPPORTED_PROFILES);
    let server = regions.select(profile::SHM_FUTEX).expect("select 0x04");
    let client =
        platform::attach_client(&p, profile::SHM_FUTEX, Duration::from_secs(5)).expect("attach");
    (server, client)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 8) as u8 ^ seed)
        .collect()
}

#[test]
fn raw_region_both_ways_up_to_the_exact_capacity() {
    let dir = TempDir::new();
    let (mut server, mut client) = region_pair(dir.path(), 1 << 20);
    let cap_req = client.send_capacity();
    let cap_resp = server.send_capacity();
    assert_eq!(cap_req, server.receive_capacity());
    assert_eq!(cap_resp, client.receive_capacity());
    assert!(cap_req >= 32 + (1 << 20), "request area {cap_req}");
    // The server echoes every request on its own thread.
    let echo = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut n = 0;
        loop {
            match server.receive(&mut buf, Duration::from_secs(60)) {
                Ok(()) if buf == b"stop" => return n,
                Ok(()) => {
                    server.send(&buf).expect("echo");
                    n += 1;
                }
                Err(e) => panic!("server receive: {e}"),
            }
        }
    });
    let mut buf = Vec::new();
    for (i, len) in [1usize, 40, 4096, 65536, cap_req].into_iter().enumerate() {
        let msg = pattern(len, i as u8);
        client.send(&msg).expect("send");
        client
            .receive(&mut buf, Duration::from_secs(60))
            .expect("receive echo");
        assert_eq!(buf.len(), len);
        assert!(buf == msg, "echo of {len} bytes differs");
    }
    // One byte over: refused, nothing published (the next message is the
    // one the server sees).
    let over = client.send(&pattern(cap_req + 1, 9)).unwrap_err();
    assert!(
        matches!(over, ShmError::TooLarge { len, capacity } if len == cap_req + 1 && capacity == cap_req),
        "{over:?}"
    );
    assert!(over.to_string().contains("does not fit"), "{over}");
    client.send(&pattern(100, 3)).expect("send after refusal");
    client
        .receive(&mut buf, Duration::from_secs(60))
        .expect("receive");
    assert_eq!(buf, pattern(100, 3));
    // Nothing pending: a short wait times out and leaves the region usable.
    let e = client
        .receive(&mut buf, Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(e, ShmError::TimedOut(_)), "{e:?}");
    assert!(client.send(&[]).is_err(), "an empty message is refused");
    client.send(b"stop").expect("stop");
    assert_eq!(echo.join().unwrap(), 6);
}

#[test]
fn response_over_the_area_is_refused_by_the_server_side() {
    let dir = TempDir::new();
    let (mut server, mut client) = region_pair(dir.path(), 1 << 20);
    let cap = server.send_capacity();
    let e = server.send(&vec![1u8; cap + 1]).unwrap_err();
    assert!(matches!(e, ShmError::TooLarge { .. }), "{e:?}");
    let full = pattern(cap, 5);
    server.send(&full).expect("exact capacity");
    let mut buf = Vec::new();
    client
        .receive(&mut buf, Duration::from_secs(60))
        .expect("receive");
    assert!(buf == full);
}

fn start_managed(dir: &Path, preferred: u32, service: impl Service) -> blocking::ManagedServer {
    let config = ManagedConfig::new(shm_endpoint(preferred));
    blocking::ManagedServer::start(dir, SVC, config, service).expect("start managed server")
}

fn snapshot() -> Snapshot {
    Snapshot {
        systemd_enabled: 1,
        generation: 42,
        items: (0..50)
            .map(|i| {
                CgroupItem::new(
                    format!("cg-{i}").into_bytes(),
                    format!("/sys/fs/cgroup/cg-{i}/cgroup.procs").into_bytes(),
                )
            })
            .collect(),
    }
}

#[cfg(target_os = "linux")]
fn region_file(dir: &Path, session_id: u64) -> PathBuf {
    pipewright_netipc::naming::posix_shm_path(dir, SVC, session_id).unwrap()
}

/// Every `.ipcshm` file in `dir`, sorted.
#[cfg(target_os = "linux")]
fn region_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipcshm"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_runs_typed_services_over_shm() {
    watchdog(async {
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let server =
            tokio::task::spawn_blocking(move || start_managed(&d, profile::SHM_FUTEX, Increment))
                .await
                .unwrap();
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
        );
        let n = c.connect().await.unwrap();
        assert_eq!(n.selected_profile, profile::SHM_FUTEX);
        assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
        #[cfg(target_os = "linux")]
        assert!(region_file(dir.path(), n.session_id).exists());
        let mut v = 0;
        for _ in 0..1000 {
            v = c.increment(v).await.unwrap();
        }
        assert_eq!(v, 1000);
        // A method this endpoint does not serve: UNSUPPORTED, session kept.
        let e = c.string_reverse(b"abc").await.unwrap_err();
        assert!(
            matches!(e, ClientError::Status(s) if s == TransportStatus::UNSUPPORTED),
            "{e:?}"
        );
        assert_eq!(c.increment(5).await.unwrap(), 6);
        assert_eq!(c.negotiated().unwrap().session_id, n.session_id);
        c.disconnect();
        server.stop();
        #[cfg(target_os = "linux")]
        assert!(
            !region_file(dir.path(), n.session_id).exists(),
            "region left behind"
        );
    })
    .await
}

#[tokio::test]
async fn string_reverse_and_snapshot_over_shm_hybrid() {
    watchdog(async {
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let srv = std::thread::spawn(move || start_managed(&d, profile::SHM_HYBRID, StringReverse))
            .join()
            .unwrap();
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(shm_endpoint(profile::SHM_HYBRID)),
        );
        let long: Vec<u8> = (0..900).map(|i| b'a' + (i % 26) as u8).collect();
        let mut want = long.clone();
        want.reverse();
        assert_eq!(c.string_reverse(&long).await.unwrap(), want);
        assert_eq!(c.shm_profile(), Some(profile::SHM_HYBRID));
        srv.stop();

        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let srv = std::thread::spawn(move || {
            start_managed(
                &d,
                profile::SHM_FUTEX,
                CgroupsSnapshot::new(|| Ok(snapshot())),
            )
        })
        .join()
        .unwrap();
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
        );
        assert_eq!(c.cgroups_snapshot().await.unwrap(), snapshot());
        assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
        srv.stop();
    })
    .await
}

#[test]
fn blocking_client_over_shm_and_learned_response_size() {
    let dir = TempDir::new();
    // The snapshot outgrows the 64 KiB default response limit: the server
    // answers LIMIT_EXCEEDED, learns, and the client reconnects to a larger
    // region.
    let big = Snapshot {
        items: (0..2000)
            .map(|i| CgroupItem::new(format!("cg-{i}").into_bytes(), vec![b'p'; 40]))
            .collect(),
        ..snapshot()
    };
    let served = big.clone();
    let server = start_managed(
        dir.path(),
        profile::SHM_FUTEX,
        CgroupsSnapshot::new(move || Ok(served.clone())),
    );
    let mut c = blocking::Client::new(
        dir.path(),
        SVC,
        ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
    )
    .unwrap();
    let n = c.connect().unwrap();
    assert_eq!(n.selected_profile, profile::SHM_FUTEX);
    assert_eq!(c.cgroups_snapshot().unwrap(), big);
    assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
    let grown = c.negotiated().unwrap();
    assert!(grown.max_response_payload_bytes > 65536, "{grown:?}");
    assert!(grown.session_id > n.session_id);
    assert_eq!(c.cgroups_snapshot().unwrap(), big);
    drop(c);
    server.stop();

    let dir = TempDir::new();
    let server = start_managed(dir.path(), profile::SHM_FUTEX, Increment);
    let mut c = blocking::Client::new(
        dir.path(),
        SVC,
        ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
    )
    .unwrap();
    let mut v = 10;
    for _ in 0..2000 {
        v = c.increment(v).unwrap();
    }
    assert_eq!(v, 2010);
    assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
    drop(c);
    server.stop();
}

/// INCREMENT that takes 2 s to answer 1000 (a stalled server).
struct SlowAtThousand;

impl Service for SlowAtThousand {
    fn method(&self) -> Option<u16> {
        Some(method::INCREMENT)
    }

    fn handle(&self, code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        if increment::decode(request)? == 1000 {
            std::thread::sleep(Duration::from_secs(2));
        }
        Increment.handle(code, request)
    }
}

#[test]
fn blocking_client_over_shm_times_out_and_recovers() {
    let dir = TempDir::new();
    let server = start_managed(dir.path(), SHM, SlowAtThousand);
    let config = ClientConfig {
        call_timeout: Duration::from_millis(300),
        ..ClientConfig::new(shm_endpoint(SHM))
    };
    let mut c = blocking::Client::new(dir.path(), SVC, config).unwrap();
    assert_eq!(c.increment(1).unwrap(), 2);
    let first = c.negotiated().unwrap().session_id;
    assert!(c.shm_profile().is_some());

    // A wrong method is answered UNSUPPORTED and keeps the session.
    match c.call(method::STRING_REVERSE, b"abc") {
        Err(ClientError::Status(s)) => assert_eq!(s, TransportStatus::UNSUPPORTED),
        other => panic!("expected UNSUPPORTED, got {other:?}"),
    }
    assert_eq!(c.negotiated().unwrap().session_id, first);
    assert_eq!(c.increment(5).unwrap(), 6);

    // A stalled answer times out at the call timeout (a call that waited for
    // it would return 1001) and drops the session (its late answer must never
    // be taken for a later call's).
    match c.increment(1000) {
        Err(ClientError::TimedOut(t)) => assert_eq!(t, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(c.negotiated().is_none(), "the timed-out session is dropped");
    assert_eq!(c.increment(41).unwrap(), 42);
    assert!(c.negotiated().unwrap().session_id > first);
    assert!(c.shm_profile().is_some());

    // A restarted server is reconnected to on the next call.
    server.stop();
    let server = start_managed(dir.path(), SHM, SlowAtThousand);
    assert_eq!(c.increment(7).unwrap(), 8);
    assert!(c.shm_profile().is_some());
    drop(c);
    server.stop();
}

#[tokio::test]
async fn echo_over_shm_at_one_mib_and_limits() {
    watchdog(async {
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let server = std::thread::spawn(move || {
            let cfg = ManagedConfig::new(EndpointConfig {
                max_response_payload_bytes: 1 << 20,
                ..shm_endpoint(profile::SHM_FUTEX)
            });
            blocking::ManagedServer::start(&d, SVC, cfg, Echo).unwrap()
        })
        .join()
        .unwrap();
        let cfg = EndpointConfig {
            max_request_payload_bytes: 1 << 20,
            max_request_batch_items: 8,
            max_response_payload_bytes: 1 << 20,
            max_response_batch_items: 8,
            ..shm_endpoint(profile::SHM_FUTEX)
        };
        let mut s = Session::connect(dir.path(), SVC, &cfg).await.unwrap();
        assert_eq!(s.shm_profile(), Some(profile::SHM_FUTEX));
        for (i, len) in [0usize, 1, 40, 70_000, 1 << 20].into_iter().enumerate() {
            let payload = pattern(len, i as u8);
            let id = s
                .send_request_with_id(ECHO, 100 + i as u64, &payload)
                .await
                .unwrap();
            // One request at a time over SHM; the session stays usable.
            let e = s.send_request(ECHO, b"second").await.unwrap_err();
            assert!(matches!(e, SessionError::ShmOneInFlight), "{e:?}");
            assert!(e.to_string().contains("one request at a time"), "{e}");
            let m = s.recv_response().await.unwrap();
            assert_eq!((m.header.message_id, m.header.code), (id, ECHO));
            assert!(m.payload == payload, "echo of {len} bytes differs");
        }
        // Batches travel whole.
        let items: [&[u8]; 3] = [b"a", b"bb", b"ccc"];
        assert_eq!(
            s.call_batch(ECHO, &items).await.unwrap(),
            items.map(<[u8]>::to_vec)
        );
        // Over the negotiated request limit: refused before anything is sent.
        let e = s.call(ECHO, &vec![0u8; (1 << 20) + 1]).await.unwrap_err();
        assert!(matches!(e, SessionError::Limit(_)), "{e:?}");
        drop(s);
        server.stop();
    })
    .await
}

#[tokio::test]
async fn server_session_api_over_shm_and_wrong_method() {
    watchdog(async {
        use pipewright_netipc::session::{Server, ServerConfig};
        let dir = TempDir::new();
        let server = Server::bind(
            dir.path(),
            SVC,
            ServerConfig {
                endpoint: EndpointConfig {
                    max_request_payload_bytes: 4096,
                    max_response_payload_bytes: 4096,
                    ..shm_endpoint(profile::SHM_FUTEX)
                },
                ..ServerConfig::default()
            },
        )
        .unwrap();
        let task = tokio::spawn(async move {
            let s = server.accept().await?;
            assert_eq!(s.shm_profile(), Some(profile::SHM_FUTEX));
            serve(s).await
        });
        let mut s = Session::connect(dir.path(), SVC, &shm_endpoint(profile::SHM_FUTEX))
            .await
            .unwrap();
        assert_eq!(s.shm_profile(), Some(profile::SHM_FUTEX));
        let r = s.call(method::INCREMENT, &increment::encode(41)).await.unwrap();
        assert_eq!(increment::decode(&r).unwrap(), 42);
        let e = s.call(999, b"x").await.unwrap_err();
        assert!(
            matches!(e, SessionError::Status { status, .. } if status == TransportStatus::UNSUPPORTED),
            "{e:?}"
        );
        let r = s.call(method::INCREMENT, &increment::encode(1)).await.unwrap();
        assert_eq!(increment::decode(&r).unwrap(), 2);
        drop(s);
        // The server sees the client leave through the baseline connection.
        task.await.unwrap().unwrap();
    })
    .await
}

#[tokio::test]
async fn baseline_only_peers_never_select_shm() {
    watchdog(async {
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let server = std::thread::spawn(move || start_managed(&d, profile::SHM_FUTEX, Increment))
            .join()
            .unwrap();
        // A client without SHM bits gets the baseline from an SHM server.
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(EndpointConfig {
                auth_token: TOKEN,
                ..EndpointConfig::default()
            }),
        );
        assert_eq!(c.increment(1).await.unwrap(), 2);
        assert_eq!(c.shm_profile(), None);
        assert_eq!(c.negotiated().unwrap().selected_profile, profile::BASELINE);
        server.stop();

        // An SHM client gets the baseline from a server that does not offer SHM.
        let dir = TempDir::new();
        let d = dir.path().to_owned();
        let server = std::thread::spawn(move || {
            let cfg = ManagedConfig::new(EndpointConfig {
                auth_token: TOKEN,
                ..EndpointConfig::default()
            });
            blocking::ManagedServer::start(&d, SVC, cfg, Increment).unwrap()
        })
        .join()
        .unwrap();
        let mut c = Client::new(dir.path(), SVC, ClientConfig::new(shm_endpoint(SHM)));
        assert_eq!(c.increment(1).await.unwrap(), 2);
        assert_eq!(c.shm_profile(), None);
        server.stop();
    })
    .await
}

/// A fake server that selects SHM but publishes an invalid region for the
/// first session, then serves the reconnect on the baseline.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn attach_failure_falls_back_to_baseline_on_reconnect() {
    use pipewright_netipc::handshake::{server_decide, ReservedFieldPolicy, ServerDecision};
    use pipewright_netipc::session::{ServerConfig, ServerSession};
    use pipewright_netipc::shm_layout::{PosixShmHeader, RegionLayout};
    use pipewright_netipc::transport::PacketTransport;
    use pipewright_netipc::uds::UdsListener;
    watchdog(async {
        let dir = TempDir::new();
        let listener = UdsListener::bind(&dir.path().join(format!("{SVC}.sock"))).unwrap();
        let region = region_file(dir.path(), 1);
        let fake = tokio::spawn(async move {
            let mut t = listener.accept().await.unwrap();
            let mut buf = [0u8; 128];
            let n = t.recv_packet(&mut buf).await.unwrap();
            let cfg = shm_endpoint(profile::SHM_FUTEX).resolved(65536);
            let ServerDecision::Accept { ack, negotiated } =
                server_decide(&buf[..n], &cfg, ReservedFieldPolicy::default(), 1)
            else {
                panic!("HELLO refused")
            };
            assert_eq!(negotiated.selected_profile, profile::SHM_FUTEX);
            // A region whose response area overlaps the request area.
            let mut layout = RegionLayout::for_limits(1024, 1024).unwrap();
            layout.response_offset = 128;
            let h = PosixShmHeader::new(std::process::id() as i32, 1, layout);
            let mut file = h.encode().to_vec();
            file.resize(8192, 0);
            std::fs::write(&region, file).unwrap();
            t.send_packet(&[&ack]).await.unwrap();
            // The client gives up on this session and reconnects.
            assert!(t.recv_packet(&mut buf).await.is_err());
            let t = listener.accept().await.unwrap();
            let cfg = ServerConfig {
                endpoint: shm_endpoint(profile::SHM_FUTEX),
                ..ServerConfig::default()
            };
            serve(ServerSession::handshake(t, &cfg, 2).await.unwrap()).await
        });
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
        );
        assert_eq!(c.increment(41).await.unwrap(), 42);
        let n = c.negotiated().unwrap();
        assert_eq!((n.selected_profile, n.session_id), (profile::BASELINE, 2));
        assert_eq!(c.shm_profile(), None);
        assert_eq!(c.endpoint_config().supported_profiles & SHM, 0);
        // The L1 session reports the attach failure with the region's problem.
        c.disconnect();
        fake.await.unwrap().unwrap();
    })
    .await
}

/// The server cannot create the session's region (its name is taken by a
/// live owner): it withdraws the SHM bits and the session runs on the
/// baseline.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn server_without_a_region_withdraws_shm() {
    watchdog(async {
        let dir = TempDir::new();
        let taken = platform::ServerRegions::create(&params(dir.path(), 1, 1024), SHM).unwrap();
        let d = dir.path().to_owned();
        let server = std::thread::spawn(move || start_managed(&d, profile::SHM_FUTEX, Increment))
            .join()
            .unwrap();
        let mut c = Client::new(
            dir.path(),
            SVC,
            ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
        );
        assert_eq!(c.increment(1).await.unwrap(), 2);
        let n = c.negotiated().unwrap();
        assert_eq!((n.session_id, n.selected_profile), (1, profile::BASELINE));
        // Session 2 gets its region again.
        c.disconnect();
        assert_eq!(c.increment(2).await.unwrap(), 3);
        assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
        drop(taken);
        server.stop();
    })
    .await
}

// ---------------------------------------------------------------------------
// Peer death, with real child processes (this test binary re-run as a child).

const CHILD_ROLE: &str = "NIPC_SHM_CHILD_ROLE";
const CHILD_DIR: &str = "NIPC_SHM_CHILD_DIR";
const READY: &str = "NIPC CHILD READY";
/// The request value that makes the child server's handler hang.
const HANG: u64 = 999;

/// INCREMENT, except that [`HANG`] announces itself with a marker file and
/// never answers.
struct HangingIncrement(PathBuf);

impl Service for HangingIncrement {
    fn method(&self) -> Option<u16> {
        Some(method::INCREMENT)
    }

    fn handle(&self, code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        if increment::decode(request)? == HANG {
            std::fs::write(&self.0, b"in handler").unwrap();
            std::thread::sleep(Duration::from_secs(300));
        }
        Increment.handle(code, request)
    }
}

/// Not a test of its own: the body of the child processes the tests below
/// start (`--ignored --exact child_process`), selected by environment.
#[test]
#[ignore = "runs only as a child process of the peer-death tests"]
fn child_process() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).unwrap());
    match role.as_str() {
        "server" => {
            let _server = start_managed(
                &dir,
                profile::SHM_FUTEX,
                HangingIncrement(dir.join("marker")),
            );
            println!("{READY}");
            std::thread::sleep(Duration::from_secs(300));
        }
        "client" => {
            let mut c = blocking::Client::new(
                &dir,
                SVC,
                ClientConfig::new(shm_endpoint(profile::SHM_FUTEX)),
            )
            .unwrap();
            assert_eq!(c.increment(1).unwrap(), 2);
            assert!(c.shm_profile().is_some());
            println!("{READY}");
            std::thread::sleep(Duration::from_secs(300));
        }
        other => panic!("unknown child role {other}"),
    }
}

/// A child process, killed on drop.
struct ChildProc(Child);

impl ChildProc {
    /// Starts the child in `role` and waits (at most 60 s) for its ready line.
    fn start(role: &str, dir: &Path) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, role)
            .env(CHILD_DIR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start child process");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.contains(READY) {
                    let _ = tx.send(());
                }
            }
        });
        let proc = ChildProc(child);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("watchdog: the child process did not get ready within 60 s");
        proc
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "watchdog: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The server process dies while a call waits on the region: both clients
/// fail long before their (60 s) call timeout, with an error that is not a
/// timeout.
#[test]
fn server_killed_mid_call_fails_the_call() {
    for blocking_client in [false, true] {
        let dir = TempDir::new();
        let mut server = ChildProc::start("server", dir.path());
        let marker = dir.path().join("marker");
        let config = ClientConfig {
            call_timeout: Duration::from_secs(60),
            ..ClientConfig::new(shm_endpoint(profile::SHM_FUTEX))
        };
        let d = dir.path().to_owned();
        let (tx, rx) = mpsc::channel();
        let caller = std::thread::spawn(move || {
            let r = if blocking_client {
                let mut c = blocking::Client::new(&d, SVC, config).unwrap();
                assert_eq!(c.increment(1).unwrap(), 2);
                assert!(c.shm_profile().is_some());
                tx.send(()).unwrap();
                c.increment(HANG)
            } else {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = Client::new(&d, SVC, config);
                    assert_eq!(c.increment(1).await.unwrap(), 2);
                    assert!(c.shm_profile().is_some());
                    tx.send(()).unwrap();
                    c.increment(HANG).await
                })
            };
            r
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("watchdog: first call");
        wait_for("the handler never started", || marker.exists());
        server.kill();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || done_tx.send(caller.join()));
        let r = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("watchdog: the call hung after the server died")
            .expect("caller thread panicked");
        let e = r.expect_err("a call to a dead server cannot succeed");
        assert!(
            !matches!(e, ClientError::TimedOut(_)),
            "blocking={blocking_client}: the dead server was only noticed at the call timeout: {e}"
        );
        // The next server of the service removes the dead server's region.
        #[cfg(target_os = "linux")]
        {
            assert!(region_file(dir.path(), 1).exists());
            let s = start_managed(dir.path(), profile::SHM_FUTEX, Increment);
            assert!(!region_file(dir.path(), 1).exists(), "stale region kept");
            s.stop();
        }
    }
}

/// The client process dies mid-session: the server ends the session and
/// removes the region.
#[test]
fn client_killed_ends_the_server_session() {
    let dir = TempDir::new();
    let server = start_managed(dir.path(), profile::SHM_FUTEX, Increment);
    let mut client = ChildProc::start("client", dir.path());
    #[cfg(target_os = "linux")]
    assert!(region_file(dir.path(), 1).exists());
    client.kill();
    #[cfg(target_os = "linux")]
    wait_for("the region of the dead client was not removed", || {
        !region_file(dir.path(), 1).exists()
    });
    // The server goes on serving.
    let mut c =
        blocking::Client::new(dir.path(), SVC, ClientConfig::new(shm_endpoint(SHM))).unwrap();
    assert_eq!(c.increment(7).unwrap(), 8);
    server.stop();
}

/// Whether the server's shared-memory objects of session `session_id` exist
/// (Linux: the region file; Windows: the sections of both SHM profiles,
/// which open while anyone holds them).
fn region_exists(dir: &Path, session_id: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        region_file(dir, session_id).exists()
    }
    #[cfg(windows)]
    {
        use pipewright_netipc::naming::windows_shm_names;
        use pipewright_netipc::shm::windows::test_support::read_named_mapping;
        [profile::SHM_HYBRID, profile::SHM_FUTEX]
            .into_iter()
            .any(|p| {
                let n =
                    windows_shm_names(dir.to_str().unwrap(), SVC, TOKEN, p, session_id).unwrap();
                read_named_mapping(&n.mapping, 1).is_ok()
            })
    }
}

/// One worker: a second client is refused while the first holds it (its
/// handshake completes on the baseline, no region is created, and the server
/// closes the connection without answering), and is served once the first
/// leaves.
#[test]
fn worker_limit_over_shm_closes_and_removes_the_extra_region() {
    let dir = TempDir::new();
    let config = ManagedConfig {
        workers: 1,
        ..ManagedConfig::new(shm_endpoint(profile::SHM_FUTEX))
    };
    let server = blocking::ManagedServer::start(dir.path(), SVC, config, Increment).unwrap();
    let mut first =
        blocking::Client::new(dir.path(), SVC, ClientConfig::new(shm_endpoint(SHM))).unwrap();
    assert_eq!(first.increment(1).unwrap(), 2);
    assert!(first.shm_profile().is_some());
    assert_eq!(first.negotiated().unwrap().session_id, 1);
    assert!(region_exists(dir.path(), 1));

    // The refusal, seen by a session: accepted on the baseline only, then
    // closed by the server before any answer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let mut s = Session::connect(dir.path(), SVC, &shm_endpoint(SHM))
            .await
            .expect("the handshake completes over the worker limit");
        let n = *s.negotiated();
        assert_eq!(
            (n.selected_profile, s.shm_profile()),
            (profile::BASELINE, None),
            "a session over the worker limit was offered shared memory"
        );
        let r = s.call(method::INCREMENT, &increment::encode(1)).await;
        (n.session_id, r)
    });
    let (id, r) = refused;
    match r {
        Err(SessionError::Closed) => {}
        other => panic!("session {id} over the worker limit was not closed: {other:?}"),
    }
    assert!(
        !region_exists(dir.path(), id),
        "region of refused session {id}"
    );

    // The same through the client: the call (and its one reconnect) end on
    // the closed connection, not at the call timeout.
    let mut second = blocking::Client::new(
        dir.path(),
        SVC,
        ClientConfig {
            connect_attempts: 1,
            ..ClientConfig::new(shm_endpoint(SHM))
        },
    )
    .unwrap();
    match second.increment(1) {
        Err(ClientError::Session(SessionError::Closed)) => {}
        other => panic!("a client over the worker limit was served or failed otherwise: {other:?}"),
    }
    assert!(second.negotiated().is_none());
    #[cfg(target_os = "linux")]
    assert_eq!(region_files(dir.path()), [region_file(dir.path(), 1)]);
    for refused_id in 2..=4 {
        assert!(
            !region_exists(dir.path(), refused_id),
            "region of refused session {refused_id}"
        );
    }
    assert_eq!(first.increment(2).unwrap(), 3);

    // The worker frees when the first client leaves: the next client gets it
    // (the server notices the departure asynchronously; until then it refuses).
    drop(first);
    assert!(second.negotiated().is_none());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let v = loop {
        match second.increment(41) {
            Ok(v) => break v,
            Err(ClientError::Session(SessionError::Closed)) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "watchdog: the worker of the departed client never freed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(v, 42);
    assert!(
        second.shm_profile().is_some(),
        "the freed worker serves over SHM"
    );
    drop(second);
    server.stop();
}
