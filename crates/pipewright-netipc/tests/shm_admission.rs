//! Shared-memory sessions under hostile or heavy load: regions are created
//! only for accepted handshakes, handshakes in progress are capped, the
//! number of SHM sessions has a stated limit (not the blocking pool's), idle
//! sessions do not spin, and a server whose region is larger than the
//! negotiated limits is a protocol error.
//!
//! The tests share process-wide measurements (regions created, CPU time), so
//! they run one at a time.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::blocking;
use pipewright_netipc::codec::increment;
use pipewright_netipc::endpoint::{self, DefaultTransport};
use pipewright_netipc::handshake::{
    server_decide, EndpointConfig, HandshakeError, ReservedFieldPolicy, ServerDecision,
    HANDSHAKE_RECV_LEN,
};
use pipewright_netipc::header::method;
use pipewright_netipc::hello::profile;
use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
use pipewright_netipc::service::Increment;
use pipewright_netipc::session::{Session, SessionError};
use pipewright_netipc::shm::{self, ShmError};
use pipewright_netipc::shm_layout::RegionLayout;
use pipewright_netipc::transport::{PacketListener, PacketTransport};
use std::path::Path;
use std::time::{Duration, Instant};

const SVC: &str = "admit";
const SHM: u32 = profile::SHM_HYBRID | profile::SHM_FUTEX;

/// One test at a time (they measure process-wide counters and CPU time).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shm_endpoint(preferred: u32) -> EndpointConfig {
    EndpointConfig {
        supported_profiles: profile::BASELINE | SHM,
        preferred_profiles: preferred,
        auth_token: TOKEN,
        ..EndpointConfig::default()
    }
}

/// Region files in `dir` (Linux; elsewhere regions are kernel objects).
fn region_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ipcshm"))
        })
        .count()
}

async fn stall(dir: &Path) -> DefaultTransport {
    // Connects and never sends HELLO.
    endpoint::connect(dir, SVC, 0).await.unwrap()
}

async fn call_increment(s: &mut Session<DefaultTransport>, v: u64) -> u64 {
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        s.call(method::INCREMENT, &increment::encode(v)),
    )
    .await
    .expect("the call hung: the session's server thread never ran")
    .unwrap();
    increment::decode(&reply).unwrap()
}

/// Connections that send a wrong token, and connections that stall before
/// HELLO, get no region; handshakes beyond `max_handshakes` wait in the
/// listener's queue; an honest client is still served once a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_stalled_handshakes_create_no_region() {
    let _serial = SERIAL.lock().await;
    watchdog(async {
        let dir = TempDir::new();
        let mut config = ManagedConfig::new(shm_endpoint(profile::SHM_FUTEX));
        config.max_handshakes = 4;
        config.server.handshake_timeout = Duration::from_secs(60);
        let d = dir.path().to_owned();
        let server =
            std::thread::spawn(move || blocking::ManagedServer::start(&d, SVC, config, Increment))
                .join()
                .unwrap()
                .unwrap();
        let before = shm::regions_created();
        let mut stalled = Vec::new();
        for _ in 0..3 {
            stalled.push(stall(dir.path()).await);
        }
        let mut flood = Vec::new();
        for _ in 0..24 {
            let d = dir.path().to_owned();
            flood.push(tokio::spawn(async move {
                let cfg = EndpointConfig {
                    auth_token: TOKEN ^ 1,
                    ..shm_endpoint(profile::SHM_FUTEX)
                };
                Session::connect(&d, SVC, &cfg).await.map(|_| ())
            }));
        }
        for f in flood {
            let r = f.await.unwrap();
            assert!(
                matches!(r, Err(SessionError::Handshake(HandshakeError::AuthFailed))),
                "{r:?}"
            );
        }
        assert_eq!(
            shm::regions_created() - before,
            0,
            "regions were created for refused or stalled handshakes"
        );
        assert_eq!(region_files(dir.path()), 0);

        // A fourth stalled connection fills the handshake slots: an honest
        // client waits in the listener's queue, not served, not refused.
        stalled.push(stall(dir.path()).await);
        let d = dir.path().to_owned();
        let honest = tokio::spawn(async move {
            let mut s = Session::connect(&d, SVC, &shm_endpoint(profile::SHM_FUTEX)).await?;
            let v = call_increment(&mut s, 41).await;
            Ok::<_, SessionError>((s, v))
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !honest.is_finished(),
            "a fifth handshake ran while four were in progress (max_handshakes = 4)"
        );
        assert_eq!(shm::regions_created() - before, 0);
        // The stalled clients leave: their handshakes end and free the slots.
        drop(stalled);
        let (s, v) = honest.await.unwrap().unwrap();
        assert_eq!(v, 42);
        assert_eq!(s.shm_profile(), Some(profile::SHM_FUTEX));
        assert_eq!(shm::regions_created() - before, 1);
        #[cfg(target_os = "linux")]
        assert_eq!(region_files(dir.path()), 1);
        drop(s);
        server.stop();
    })
    .await
}

/// More SHM sessions than `max_shm_sessions`: the extra session is served on
/// the baseline (its ACK selects BASELINE), and every session answers even
/// when tokio's blocking pool has a single thread (SHM sessions run on
/// threads of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_sessions_beyond_the_limit_get_the_baseline() {
    let _serial = SERIAL.lock().await;
    watchdog(async {
        let dir = TempDir::new();
        let mut config = ManagedConfig::new(shm_endpoint(profile::SHM_FUTEX));
        config.max_shm_sessions = 2;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let d = dir.path().to_owned();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = ManagedServer::bind(&d, SVC, config, Increment).unwrap();
                let stopper = server.stopper();
                ready_tx.send(()).unwrap();
                tokio::spawn(async move {
                    let _ = stop_rx.await;
                    stopper.stop();
                });
                server.run().await.unwrap();
            });
        });
        ready_rx.recv().unwrap();
        let mut sessions = Vec::new();
        for i in 0..3u64 {
            let mut s = Session::connect(dir.path(), SVC, &shm_endpoint(profile::SHM_FUTEX))
                .await
                .unwrap();
            assert_eq!(call_increment(&mut s, i).await, i + 1);
            sessions.push(s);
        }
        let profiles: Vec<u32> = sessions
            .iter()
            .map(|s| s.negotiated().selected_profile)
            .collect();
        assert_eq!(
            profiles,
            [profile::SHM_FUTEX, profile::SHM_FUTEX, profile::BASELINE]
        );
        for (i, s) in sessions.iter_mut().enumerate() {
            assert_eq!(call_increment(s, 10 * i as u64).await, 10 * i as u64 + 1);
        }
        drop(sessions);
        stop_tx.send(()).unwrap();
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap();
    })
    .await
}

/// An idle shared-memory session (each SHM profile) costs no spinning core:
/// over a second of idleness the process uses well under half a core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_shm_session_does_not_spin() {
    let _serial = SERIAL.lock().await;
    watchdog(async {
        for preferred in [profile::SHM_HYBRID, profile::SHM_FUTEX] {
            let dir = TempDir::new();
            let config = ManagedConfig::new(shm_endpoint(preferred));
            let d = dir.path().to_owned();
            let server = std::thread::spawn(move || {
                blocking::ManagedServer::start(&d, SVC, config, Increment)
            })
            .join()
            .unwrap()
            .unwrap();
            let mut s = Session::connect(dir.path(), SVC, &shm_endpoint(preferred))
                .await
                .unwrap();
            assert_eq!(s.shm_profile(), Some(preferred));
            assert_eq!(call_increment(&mut s, 1).await, 2);
            // Let the server's wait pass its spinning phase.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let cpu0 = pipewright::platform::process_cpu_time().unwrap();
            let wall0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let cpu = pipewright::platform::process_cpu_time().unwrap() - cpu0;
            let wall = wall0.elapsed();
            println!("profile {preferred:#x}: idle {wall:?}, process CPU {cpu:?}");
            assert!(
                cpu.as_secs_f64() < wall.as_secs_f64() * 0.5,
                "profile {preferred:#x}: an idle session used {cpu:?} of CPU in {wall:?}"
            );
            // Still answers after the idle period.
            assert_eq!(call_increment(&mut s, 5).await, 6);
            drop(s);
            server.stop();
        }
    })
    .await
}

/// The limits the fake server agrees on.
const AGREED: u32 = 1024;

fn hostile_layout(header_len: u32, response_capacity: u32) -> RegionLayout {
    let req_cap = (32 + AGREED).div_ceil(64) * 64;
    RegionLayout {
        request_offset: header_len,
        request_capacity: req_cap,
        response_offset: (header_len + req_cap).div_ceil(64) * 64,
        response_capacity,
    }
}

/// The fake server's region: valid in every respect except a response area
/// far larger than the agreed response limit. Returns what keeps it alive.
#[cfg(target_os = "linux")]
fn hostile_region(dir: &Path, session_id: u64, profile: u32) -> Box<dyn std::any::Any + Send> {
    use pipewright_netipc::shm_layout::PosixShmHeader;
    let _ = profile;
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let layout = hostile_layout(64, 0xFFFF_FFC0);
    let path = pipewright_netipc::naming::posix_shm_path(dir, SVC, session_id).unwrap();
    let header = PosixShmHeader::new(std::process::id() as i32, 1, layout);
    std::fs::write(&path, header.encode()).unwrap();
    // Sparse: ~4 GiB of file that costs nothing until touched.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(layout.file_size())
        .unwrap();
    Box::new(Remove(path))
}

#[cfg(windows)]
fn hostile_region(dir: &Path, session_id: u64, profile: u32) -> Box<dyn std::any::Any + Send> {
    use pipewright_netipc::shm::windows::test_support::create_named_mapping;
    use pipewright_netipc::shm::windows_layout::WindowsShmHeader;
    let layout = hostile_layout(128, 64 << 20);
    let names = pipewright_netipc::naming::windows_shm_names(
        endpoint::run_dir_str(dir).unwrap(),
        SVC,
        TOKEN,
        profile,
        session_id,
    )
    .unwrap();
    let header = WindowsShmHeader::new(profile, layout).encode();
    Box::new(create_named_mapping(&names.mapping, layout.file_size(), &header).unwrap())
}

/// Peak virtual size of the process (Linux), to show nothing big was mapped.
#[cfg(target_os = "linux")]
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmPeak:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A fake server (real listener, real HELLO_ACK) agrees on 1024-byte limits
/// and then offers a region whose response area is far larger: the client
/// fails with a protocol error naming the field and the limit, and maps
/// nothing big.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_larger_than_the_agreed_limits_is_a_protocol_error() {
    let _serial = SERIAL.lock().await;
    watchdog(async {
        let dir = TempDir::new();
        let listener = endpoint::bind(dir.path(), SVC, 0).unwrap();
        let d = dir.path().to_owned();
        let fake = tokio::spawn(async move {
            let mut t = PacketListener::accept(&listener).await.unwrap();
            let mut buf = [0u8; HANDSHAKE_RECV_LEN];
            let n = t.recv_packet(&mut buf).await.unwrap();
            let cfg = EndpointConfig {
                max_request_payload_bytes: AGREED,
                max_response_payload_bytes: AGREED,
                ..shm_endpoint(profile::SHM_FUTEX)
            }
            .resolved(65536);
            let ServerDecision::Accept { ack, negotiated } =
                server_decide(&buf[..n], &cfg, ReservedFieldPolicy::Spec, 1)
            else {
                panic!("the fake server refused the client")
            };
            assert_eq!(negotiated.selected_profile, profile::SHM_FUTEX);
            let region = hostile_region(&d, 1, negotiated.selected_profile);
            t.send_packet(&[&ack]).await.unwrap();
            // Keep the connection and the region until the client gives up.
            let _ = t.recv_packet(&mut buf).await;
            drop(region);
        });
        #[cfg(target_os = "linux")]
        let peak_before = vm_peak_kib();
        let cfg = EndpointConfig {
            max_request_payload_bytes: AGREED,
            max_response_payload_bytes: AGREED,
            ..shm_endpoint(profile::SHM_FUTEX)
        };
        let r = Session::connect(dir.path(), SVC, &cfg).await;
        let Err(SessionError::ShmAttach { profile: p, source }) = r else {
            panic!("expected a refused region, got {r:?}")
        };
        assert_eq!(p, profile::SHM_FUTEX);
        let text = source.to_string();
        println!("{text}");
        assert!(
            matches!(
                source,
                ShmError::AreaOverLimit {
                    field: "response_capacity",
                    limit: 1088,
                    ..
                }
            ),
            "{source:?}"
        );
        assert!(
            text.contains("protocol error") && text.contains("response_capacity"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        {
            let grown = vm_peak_kib().saturating_sub(peak_before);
            assert!(
                grown < 512 * 1024,
                "the client's peak virtual size grew by {grown} KiB"
            );
        }
        fake.await.unwrap();
    })
    .await
}
