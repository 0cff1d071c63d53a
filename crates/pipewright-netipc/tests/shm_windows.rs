//! Windows shared-memory profiles 0x02 (HYBRID) and 0x04 (BUSYWAIT): real
//! mappings and events, server and client in two threads or two processes.
//!
//! The child-process tests re-run this test binary with `NETIPC_SHM_ROLE`
//! set: `child_entry` then plays the client and exits.
#![cfg(windows)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pipewright_netipc::naming::windows_shm_names;
use pipewright_netipc::shm::windows::{
    attach_client, remove_stale_regions, test_support, ServerRegions, SUPPORTED_PROFILES,
};
use pipewright_netipc::shm::windows_layout::{
    layout_for_limits, WindowsShmHeader, PROFILE_BUSYWAIT, PROFILE_HYBRID,
};
use pipewright_netipc::shm::{RegionParams, ShmError, ShmPeer};

const PROFILES: [u32; 2] = [PROFILE_HYBRID, PROFILE_BUSYWAIT];
const ROLE_ENV: &str = "NETIPC_SHM_ROLE";
const PARAMS_ENV: &str = "NETIPC_SHM_PARAMS";
/// Generous limit for one blocking receive in a test that expects a message.
const LONG: Duration = Duration::from_secs(30);

/// Parameters no other test or run uses.
fn unique_params(tag: &str, max_request: u32, max_response: u32) -> RegionParams {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n);
    RegionParams {
        run_dir: format!(r"C:\netipc-test-{random:016x}"),
        service: format!("shm-{tag}-{}-{n}", std::process::id()),
        session_id: u64::from(n) + 1,
        auth_token: random,
        max_request_payload: max_request,
        max_response_payload: max_response,
    }
}

/// Runs `f` on a thread and fails the test if it does not finish within
/// `limit` (a hang fails instead of blocking the run).
fn watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("watchdog: the test did not finish within {limit:?}"),
    }
}

/// A message whose every byte depends on `seed` and its position.
fn message(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 57)) as u8 ^ i as u8)
        .collect()
}

fn server_and_client(params: &RegionParams, profile: u32) -> (Box<dyn ShmPeer>, Box<dyn ShmPeer>) {
    let regions = ServerRegions::create(params, SUPPORTED_PROFILES).expect("create regions");
    assert_eq!(regions.profiles(), 0x06);
    let server = regions.select(profile).expect("selected profile exists");
    let client = attach_client(params, profile, Duration::from_secs(5)).expect("attach");
    (server, client)
}

#[test]
fn header_codec_round_trip_with_exact_offsets() {
    let layout = layout_for_limits(4096, 65536).unwrap();
    let mut h = WindowsShmHeader::new(PROFILE_HYBRID, layout);
    h.req_len = 40;
    h.resp_seq = 7;
    h.resp_client_waiting = 1;
    let b = h.encode();
    assert_eq!(&b[0..4], b"HWSN");
    let word = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(
        [
            word(4),
            word(8),
            word(12),
            word(16),
            word(20),
            word(24),
            word(28),
            word(32)
        ],
        [3, 128, 2, 128, 4160, 4288, 65600, 1024]
    );
    assert_eq!(word(36), 40);
    assert_eq!(word(56), 1);
    assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), 7);
    assert_eq!(WindowsShmHeader::decode(&b), Ok(h));
}

#[test]
fn live_region_header_has_the_spec_layout() {
    watchdog(LONG, || {
        let params = unique_params("hdr", 4096, 65536);
        for profile in PROFILES {
            let (mut server, mut client) = server_and_client(&params, profile);
            let names = windows_shm_names(
                &params.run_dir,
                &params.service,
                params.auth_token,
                profile,
                params.session_id,
            )
            .unwrap();
            let raw = test_support::read_named_mapping(&names.mapping, 128).unwrap();
            let h = WindowsShmHeader::decode(&raw).unwrap();
            assert_eq!(h.profile, profile);
            assert_eq!(h.layout, layout_for_limits(4096, 65536).unwrap());
            assert_eq!((h.spin_tries, h.req_seq, h.resp_seq), (1024, 0, 0));

            client.send(&message(40, 1)).unwrap();
            let mut buf = Vec::new();
            server.receive(&mut buf, LONG).unwrap();
            let raw = test_support::read_named_mapping(&names.mapping, 128 + 40).unwrap();
            let word = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
            assert_eq!(word(36), 40, "req_len at offset 36");
            assert_eq!(
                u64::from_le_bytes(raw[64..72].try_into().unwrap()),
                1,
                "req_seq at 64"
            );
            assert_eq!(&raw[128..168], &message(40, 1)[..], "request area at 128");

            server.send(&message(33, 2)).unwrap();
            client.receive(&mut buf, LONG).unwrap();
            let raw = test_support::read_named_mapping(&names.mapping, 128).unwrap();
            let word = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
            assert_eq!(word(40), 33, "resp_len at offset 40");
            assert_eq!(
                u64::from_le_bytes(raw[72..80].try_into().unwrap()),
                1,
                "resp_seq at 72"
            );

            drop(client);
            let raw = test_support::read_named_mapping(&names.mapping, 128).unwrap();
            assert_eq!(word_at(&raw, 44), 1, "req_client_closed at 44");
            drop(server);
        }
    });
}

fn word_at(raw: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(raw[o..o + 4].try_into().unwrap())
}

#[test]
fn objects_use_the_spec_names() {
    let n = windows_shm_names("/run/netdata", "cgroups-snapshot", 12345, 2, 1).unwrap();
    let base = r"Local\netipc-2095084fdb90921e-cgroups-snapshot-p2-s0000000000000001";
    assert_eq!(n.mapping, format!("{base}-mapping"));
    assert_eq!(n.request_event, format!("{base}-req_event"));
    assert_eq!(n.response_event, format!("{base}-resp_event"));

    let params = unique_params("names", 64, 64);
    let regions = ServerRegions::create(&params, PROFILE_HYBRID | PROFILE_BUSYWAIT).unwrap();
    for profile in PROFILES {
        let n = windows_shm_names(
            &params.run_dir,
            &params.service,
            params.auth_token,
            profile,
            params.session_id,
        )
        .unwrap();
        assert!(n
            .mapping
            .contains(&format!("-p{profile}-s{:016x}-", params.session_id)));
        // The server's mapping lives under exactly this name: a second
        // create of it finds it.
        match test_support::create_named_mapping(&n.mapping, 4096, &[]) {
            Err(ShmError::InUse(name)) => assert_eq!(name, n.mapping),
            other => panic!("expected InUse for {}: {:?}", n.mapping, other.err()),
        }
    }
    drop(regions);
}

#[test]
fn create_with_existing_names_is_in_use() {
    let params = unique_params("inuse", 64, 64);
    let first = ServerRegions::create(&params, PROFILE_BUSYWAIT).unwrap();
    assert_eq!(first.profiles(), PROFILE_BUSYWAIT);
    match ServerRegions::create(&params, PROFILE_BUSYWAIT) {
        Err(ShmError::InUse(name)) => {
            assert!(
                name.contains("-p4-") && name.ends_with("-mapping"),
                "{name}"
            )
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    // HYBRID has its own names, so it can still be created.
    let hybrid = ServerRegions::create(&params, PROFILE_HYBRID).unwrap();
    assert_eq!(hybrid.profiles(), PROFILE_HYBRID);
    // Once released, the names are free again.
    drop(first);
    let again = ServerRegions::create(&params, PROFILE_BUSYWAIT).unwrap();
    assert_eq!(again.profiles(), PROFILE_BUSYWAIT);
}

#[test]
fn only_windows_profile_bits_are_created_and_selected() {
    let params = unique_params("bits", 64, 64);
    let regions = ServerRegions::create(&params, 0x01 | 0x08).unwrap();
    assert_eq!(regions.profiles(), 0);
    assert!(regions.select(PROFILE_HYBRID).is_none());
    let regions = ServerRegions::create(&params, 0xff).unwrap();
    assert_eq!(regions.profiles(), SUPPORTED_PROFILES);
    let peer = regions.select(PROFILE_BUSYWAIT).unwrap();
    assert_eq!(peer.profile(), PROFILE_BUSYWAIT);
    assert_eq!(
        remove_stale_regions(&params.run_dir, &params.service).unwrap(),
        0
    );
    assert!(remove_stale_regions(&params.run_dir, "a/b").is_err());
}

#[test]
fn messages_both_ways_for_both_profiles() {
    watchdog(LONG * 2, || {
        for profile in PROFILES {
            let params = unique_params("both", 1000, 5000);
            let (mut server, mut client) = server_and_client(&params, profile);
            assert_eq!((server.profile(), client.profile()), (profile, profile));
            assert_eq!(client.send_capacity(), 1088);
            assert_eq!(server.receive_capacity(), 1088);
            assert_eq!(server.send_capacity(), 5056);
            assert_eq!(client.receive_capacity(), 5056);

            let echo = std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..200u64 {
                    server.receive(&mut buf, LONG).expect("server receive");
                    assert_eq!(buf, message(32 + (i as usize * 7) % 900, i), "request {i}");
                    let reply = message(32 + (i as usize * 13) % 5000, !i);
                    server.send(&reply).expect("server send");
                }
                server
            });
            let mut buf = Vec::new();
            for i in 0..200u64 {
                client
                    .send(&message(32 + (i as usize * 7) % 900, i))
                    .unwrap();
                client.receive(&mut buf, LONG).unwrap();
                assert_eq!(
                    buf,
                    message(32 + (i as usize * 13) % 5000, !i),
                    "response {i}"
                );
            }
            echo.join().expect("server thread");
        }
    });
}

#[test]
fn exact_capacity_fits_and_one_byte_more_is_too_large() {
    watchdog(LONG, || {
        for profile in PROFILES {
            let params = unique_params("cap", 100, 200);
            let (mut server, mut client) = server_and_client(&params, profile);
            let mut buf = Vec::new();

            let cap = client.send_capacity();
            assert_eq!(cap, 192);
            match client.send(&message(cap + 1, 1)) {
                Err(ShmError::TooLarge { len, capacity }) => {
                    assert_eq!((len, capacity), (193, 192))
                }
                other => panic!("expected TooLarge, got {other:?}"),
            }
            client.send(&message(cap, 2)).unwrap();
            server.receive(&mut buf, LONG).unwrap();
            assert_eq!(buf, message(cap, 2));

            let cap = server.send_capacity();
            assert_eq!(cap, 256);
            assert!(matches!(
                server.send(&message(cap + 1, 3)),
                Err(ShmError::TooLarge {
                    len: 257,
                    capacity: 256
                })
            ));
            server.send(&message(cap, 4)).unwrap();
            client.receive(&mut buf, LONG).unwrap();
            assert_eq!(buf, message(cap, 4));

            // An empty message is refused with a clear error.
            match client.send(&[]) {
                Err(ShmError::Io(e)) => assert!(e.to_string().contains("empty"), "{e}"),
                other => panic!("expected an error for an empty message, got {other:?}"),
            }
        }
    });
}

#[test]
fn timed_out_receive_leaves_the_region_usable() {
    watchdog(LONG, || {
        for profile in PROFILES {
            let params = unique_params("timeout", 64, 64);
            let (mut server, mut client) = server_and_client(&params, profile);
            let mut buf = vec![1, 2, 3];
            match server.receive(&mut buf, Duration::from_millis(50)) {
                Err(ShmError::TimedOut(d)) => assert_eq!(d, Duration::from_millis(50)),
                other => panic!("expected TimedOut, got {other:?}"),
            }
            assert!(buf.is_empty(), "receive clears the buffer");
            assert!(matches!(
                client.receive(&mut buf, Duration::ZERO),
                Err(ShmError::TimedOut(_))
            ));
            client.send(&message(50, 9)).unwrap();
            server.receive(&mut buf, LONG).unwrap();
            assert_eq!(buf, message(50, 9));
        }
    });
}

#[test]
fn attach_with_a_profile_the_server_did_not_create_is_not_ready() {
    let params = unique_params("wrongp", 64, 64);
    let regions = ServerRegions::create(&params, PROFILE_HYBRID).unwrap();
    match attach_client(&params, PROFILE_BUSYWAIT, Duration::from_millis(200)) {
        Err(ShmError::NotReady(name)) => assert!(name.contains("-p4-"), "{name}"),
        other => panic!("expected NotReady, got {:?}", other.err()),
    }
    for bad in [0x01, 0x08, 0x06, 0] {
        match attach_client(&params, bad, Duration::from_millis(200)) {
            Err(ShmError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
                assert!(e.to_string().contains("0x02"), "{e}");
            }
            other => panic!(
                "profile {bad:#x}: expected InvalidInput, got {:?}",
                other.err()
            ),
        }
    }
    drop(regions);
}

/// Creates a mapping under the client's expected name for `profile` with
/// the given header bytes.
fn forge(params: &RegionParams, profile: u32, header: &[u8]) -> test_support::RawMapping {
    let names = windows_shm_names(
        &params.run_dir,
        &params.service,
        params.auth_token,
        profile,
        params.session_id,
    )
    .unwrap();
    test_support::create_named_mapping(&names.mapping, 8192, header).unwrap()
}

#[test]
fn region_whose_header_names_another_profile_is_rejected() {
    watchdog(LONG, || {
        let params = unique_params("forged", 64, 64);
        let header = WindowsShmHeader::new(PROFILE_HYBRID, layout_for_limits(64, 64).unwrap());
        let _forged = forge(&params, PROFILE_BUSYWAIT, &header.encode());
        // Not retried: fails well before the (long) attach timeout.
        match attach_client(&params, PROFILE_BUSYWAIT, Duration::from_secs(600)) {
            Err(ShmError::BadRegion { reason, .. }) => {
                assert!(reason.contains("profile 0x2"), "{reason}")
            }
            other => panic!("expected BadRegion, got {:?}", other.err()),
        }
    });
}

#[test]
fn garbage_mapping_is_a_bad_region() {
    watchdog(LONG, || {
        let params = unique_params("garbage", 64, 64);
        let _forged = forge(&params, PROFILE_HYBRID, &[0xa5; 300]);
        match attach_client(&params, PROFILE_HYBRID, Duration::from_millis(200)) {
            Err(ShmError::BadRegion { name, reason }) => {
                assert!(name.ends_with("-mapping"), "{name}");
                assert!(reason.contains("magic"), "{reason}");
            }
            other => panic!("expected BadRegion, got {:?}", other.err()),
        }
    });
}

#[test]
fn invalid_headers_are_rejected_without_retrying() {
    watchdog(LONG, || {
        let layout = layout_for_limits(64, 64).unwrap();
        let good = WindowsShmHeader::new(PROFILE_BUSYWAIT, layout).encode();
        let patched = |off: usize, v: u32| {
            let mut b = good;
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            b
        };
        // (case, header, the response limit the handshake agreed on)
        let cases: [(&str, [u8; 128], u32); 4] = [
            ("version", patched(4, 2), 64),
            ("header_len", patched(8, 64), 64),
            ("layout", patched(20, 0), 64),
            // Areas ending far past the 8 KiB mapping (within the limits).
            ("beyond", patched(28, 0x0010_0000), 0x0010_0000),
        ];
        for (what, header, max_response) in cases {
            let params = unique_params("invalid", 64, max_response);
            let _forged = forge(&params, PROFILE_BUSYWAIT, &header);
            match attach_client(&params, PROFILE_BUSYWAIT, Duration::from_secs(600)) {
                Err(ShmError::BadRegion { reason, .. }) => {
                    assert!(!reason.is_empty(), "{what}")
                }
                other => panic!("{what}: expected BadRegion, got {:?}", other.err()),
            }
        }
        // An area larger than the agreed limits: a protocol error, before
        // the areas are mapped.
        let params = unique_params("invalid", 64, 64);
        let _forged = forge(&params, PROFILE_BUSYWAIT, &patched(28, 0x0100_0000));
        match attach_client(&params, PROFILE_BUSYWAIT, Duration::from_secs(600)) {
            Err(ShmError::AreaOverLimit {
                field: "response_capacity",
                limit: 128,
                ..
            }) => {}
            other => panic!("expected AreaOverLimit, got {:?}", other.err()),
        }
    });
}

#[test]
fn attach_before_create_retries_until_the_server_creates() {
    watchdog(LONG, || {
        for profile in PROFILES {
            let params = unique_params("early", 64, 64);
            let p = params.clone();
            let client =
                std::thread::spawn(move || attach_client(&p, profile, Duration::from_secs(20)));
            std::thread::sleep(Duration::from_millis(150));
            let regions = ServerRegions::create(&params, profile).unwrap();
            let mut server = regions.select(profile).unwrap();
            let mut client = client
                .join()
                .unwrap()
                .expect("attach succeeds once created");
            client.send(&message(64, 5)).unwrap();
            let mut buf = Vec::new();
            server.receive(&mut buf, LONG).unwrap();
            assert_eq!(buf, message(64, 5));
        }
    });
}

#[test]
fn attach_to_nothing_times_out_not_ready() {
    watchdog(LONG, || {
        let params = unique_params("nothing", 64, 64);
        match attach_client(&params, PROFILE_HYBRID, Duration::from_millis(100)) {
            Err(ShmError::NotReady(name)) => {
                assert!(
                    name.contains(&params.service) && name.ends_with("-mapping"),
                    "{name}"
                )
            }
            other => panic!("expected NotReady, got {:?}", other.err()),
        }
        match attach_client(&params, PROFILE_BUSYWAIT, Duration::ZERO) {
            Err(ShmError::NotReady(_)) => {}
            other => panic!("expected NotReady, got {:?}", other.err()),
        }
    });
}

#[test]
fn dropping_a_peer_ends_the_other_sides_blocked_receive() {
    watchdog(LONG * 2, || {
        for profile in PROFILES {
            // Client leaves while the server waits.
            let params = unique_params("dropc", 64, 64);
            let (mut server, client) = server_and_client(&params, profile);
            let waiter = std::thread::spawn(move || {
                let mut buf = Vec::new();
                server.receive(&mut buf, Duration::from_secs(600))
            });
            std::thread::sleep(Duration::from_millis(100));
            drop(client);
            match waiter.join().unwrap() {
                Err(ShmError::PeerClosed) => {}
                other => panic!("{profile:#x}: expected PeerClosed, got {other:?}"),
            }

            // Server leaves while the client waits.
            let params = unique_params("drops", 64, 64);
            let (server, mut client) = server_and_client(&params, profile);
            let waiter = std::thread::spawn(move || {
                let mut buf = Vec::new();
                let r = client.receive(&mut buf, Duration::from_secs(600));
                (r, client)
            });
            std::thread::sleep(Duration::from_millis(100));
            drop(server);
            let (r, mut client) = waiter.join().unwrap();
            assert!(
                matches!(r, Err(ShmError::PeerClosed)),
                "{profile:#x}: {r:?}"
            );
            assert!(matches!(
                client.send(&message(40, 0)),
                Err(ShmError::PeerClosed)
            ));
        }
    });
}

#[test]
fn message_sent_before_close_is_still_delivered() {
    watchdog(LONG, || {
        for profile in PROFILES {
            let params = unique_params("last", 64, 64);
            let (mut server, mut client) = server_and_client(&params, profile);
            client.send(&message(40, 77)).unwrap();
            drop(client);
            let mut buf = Vec::new();
            server.receive(&mut buf, LONG).unwrap();
            assert_eq!(buf, message(40, 77));
            assert!(matches!(
                server.receive(&mut buf, LONG),
                Err(ShmError::PeerClosed)
            ));
        }
    });
}

#[test]
fn ten_thousand_ping_pongs_between_threads() {
    watchdog(Duration::from_secs(300), || {
        for profile in PROFILES {
            let params = unique_params("pingpong", 64, 64);
            let (mut server, mut client) = server_and_client(&params, profile);
            let echo = std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..10_000u64 {
                    server.receive(&mut buf, LONG).expect("server receive");
                    let got = u64::from_le_bytes(buf[32..40].try_into().unwrap());
                    assert_eq!(got, i, "request {i}");
                    buf[32..40].copy_from_slice(&(got + 1).to_le_bytes());
                    server.send(&buf).expect("server send");
                }
            });
            let mut msg = message(40, 3);
            let mut buf = Vec::new();
            for i in 0..10_000u64 {
                msg[32..40].copy_from_slice(&i.to_le_bytes());
                client.send(&msg).unwrap();
                client.receive(&mut buf, LONG).unwrap();
                assert_eq!(&buf[..32], &msg[..32], "header echoed, round {i}");
                assert_eq!(u64::from_le_bytes(buf[32..40].try_into().unwrap()), i + 1);
            }
            echo.join().expect("server thread");
        }
    });
}

// ---- two processes ----------------------------------------------------------

fn encode_params(p: &RegionParams, profile: u32) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        p.run_dir,
        p.service,
        p.session_id,
        p.auth_token,
        p.max_request_payload,
        p.max_response_payload,
        profile
    )
}

fn decode_params(s: &str) -> (RegionParams, u32) {
    let f: Vec<&str> = s.split('|').collect();
    assert_eq!(f.len(), 7, "bad {PARAMS_ENV}: {s}");
    (
        RegionParams {
            run_dir: f[0].to_owned(),
            service: f[1].to_owned(),
            session_id: f[2].parse().unwrap(),
            auth_token: f[3].parse().unwrap(),
            max_request_payload: f[4].parse().unwrap(),
            max_response_payload: f[5].parse().unwrap(),
        },
        f[6].parse().unwrap(),
    )
}

fn spawn_client(role: &str, params: &RegionParams, profile: u32) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(PARAMS_ENV, encode_params(params, profile))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the child test process")
}

/// The client roles. Does nothing unless started by `spawn_client`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let (params, profile) = decode_params(&std::env::var(PARAMS_ENV).unwrap());
    let mut client =
        attach_client(&params, profile, Duration::from_secs(10)).expect("child attach");
    let mut buf = Vec::new();
    match role.as_str() {
        "client-1000" => {
            for i in 0..1000u64 {
                let m = message(32 + (i as usize % 500), i);
                client.send(&m).expect("child send");
                client.receive(&mut buf, LONG).expect("child receive");
                buf.reverse();
                assert_eq!(buf, m, "reply {i}");
            }
        }
        "wait-forever" => {
            client
                .send(b"ready-and-waiting-for-a-reply-that-never-comes")
                .unwrap();
            let r = client.receive(&mut buf, Duration::from_secs(600));
            panic!("the child should have been killed while waiting, got {r:?}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn child_process_client_exchanges_1000_messages() {
    watchdog(Duration::from_secs(300), || {
        for profile in PROFILES {
            let params = unique_params("child", 1024, 1024);
            let regions = ServerRegions::create(&params, SUPPORTED_PROFILES).unwrap();
            let mut server = regions.select(profile).unwrap();
            let mut child = spawn_client("client-1000", &params, profile);
            let mut buf = Vec::new();
            for i in 0..1000u64 {
                server
                    .receive(&mut buf, LONG)
                    .expect("request from the child");
                assert_eq!(buf, message(32 + (i as usize % 500), i), "request {i}");
                buf.reverse();
                server.send(&buf).unwrap();
            }
            // The child exits and its region side is closed.
            match server.receive(&mut buf, LONG) {
                Err(ShmError::PeerClosed) => {}
                other => panic!("expected PeerClosed after the child exited, got {other:?}"),
            }
            let status = child.wait().unwrap();
            assert!(status.success(), "child failed: {status}");
        }
    });
}

#[test]
fn killed_child_does_not_hang_the_server() {
    watchdog(Duration::from_secs(120), || {
        for profile in PROFILES {
            let params = unique_params("killed", 256, 256);
            let regions = ServerRegions::create(&params, SUPPORTED_PROFILES).unwrap();
            let mut server = regions.select(profile).unwrap();
            let mut child = spawn_client("wait-forever", &params, profile);
            let mut buf = Vec::new();
            server
                .receive(&mut buf, LONG)
                .expect("the child's first message");
            assert!(buf.starts_with(b"ready"));
            let waiter = std::thread::spawn(move || {
                let r = server.receive(&mut buf, Duration::from_secs(3));
                (r, server)
            });
            std::thread::sleep(Duration::from_millis(100));
            child.kill().expect("kill the child");
            let status = child.wait().unwrap();
            assert!(!status.success());
            let (r, mut server) = waiter.join().unwrap();
            assert!(
                matches!(r, Err(ShmError::TimedOut(_)) | Err(ShmError::PeerClosed)),
                "{profile:#x}: {r:?}"
            );
            // Publishing to the dead peer does not block either.
            server.send(&message(40, 1)).unwrap();
        }
    });
}
