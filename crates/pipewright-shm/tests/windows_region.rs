//! The Windows regions through the crate's safe API: both profiles between
//! threads and between processes, waits with a timeout and a deadline,
//! peer-closed detection, names in use and limits.
#![cfg(windows)]

use pipewright_shm::windows::{attach_client, RegionNames, ServerRegions};
use pipewright_shm::windows_layout::{PROFILE_BUSYWAIT, PROFILE_HYBRID};
use pipewright_shm::{AreaLimits, ShmError, ShmPeer};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{
    child_round_trips, echo_between_threads, echo_until_zero, expect_timed_out, spawn_child_client,
    CHILD_ENV, LIMITS, LONG,
};

const PROFILES: [u32; 2] = [PROFILE_HYBRID, PROFILE_BUSYWAIT];

/// Object names no other test or run uses.
fn names(tag: &str, profile: u32) -> RegionNames {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = format!(
        r"Local\pw-shm-test-{}-{tag}-{n}-p{profile}",
        std::process::id()
    );
    RegionNames {
        mapping: format!("{base}-mapping"),
        request_event: format!("{base}-req_event"),
        response_event: format!("{base}-resp_event"),
    }
}

fn pair(names: &RegionNames, profile: u32) -> (Box<dyn ShmPeer>, Box<dyn ShmPeer>) {
    let regions = ServerRegions::create(&[(profile, names.clone())], &LIMITS).unwrap();
    assert_eq!(regions.profiles(), profile);
    let server = regions.select(profile).unwrap();
    let client = attach_client(names, &LIMITS, profile, LONG).unwrap();
    (server, client)
}

#[test]
fn messages_travel_both_ways_between_threads() {
    for profile in PROFILES {
        let (server, client) = pair(&names("threads", profile), profile);
        assert_eq!(client.profile(), profile);
        assert_eq!(client.send_capacity(), server.receive_capacity());
        echo_between_threads(server, client, &format!("profile {profile:#x}, "));
    }
}

#[test]
fn a_timed_out_receive_leaves_the_region_usable() {
    for profile in PROFILES {
        let (mut server, mut client) = pair(&names("timeout", profile), profile);
        let mut buf = Vec::new();
        expect_timed_out(server.receive(&mut buf, Duration::from_millis(20)));
        // A deadline that has passed still takes a message that is there.
        client.send(&[7u8; 64]).unwrap();
        server.receive_until(&mut buf, Instant::now()).unwrap();
        assert_eq!(buf, [7u8; 64]);
    }
}

#[test]
fn a_dropped_peer_is_seen_as_closed() {
    for profile in PROFILES {
        let (server, mut client) = pair(&names("closed", profile), profile);
        let waiter = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = client.receive(&mut buf, LONG);
            (client, r)
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(server);
        let (mut client, r) = waiter.join().unwrap();
        assert!(matches!(r, Err(ShmError::PeerClosed)), "{r:?}");
        assert!(matches!(client.send(&[1u8; 40]), Err(ShmError::PeerClosed)));
    }
}

#[test]
fn names_in_use_limits_and_missing_regions_are_reported() {
    let n = names("inuse", PROFILE_HYBRID);
    let _first = ServerRegions::create(&[(PROFILE_HYBRID, n.clone())], &LIMITS).unwrap();
    assert!(matches!(
        ServerRegions::create(&[(PROFILE_HYBRID, n.clone())], &LIMITS),
        Err(ShmError::InUse(_))
    ));
    let small = AreaLimits {
        max_request_payload: 1024,
        max_response_payload: 64,
    };
    match attach_client(&n, &small, PROFILE_HYBRID, LONG).err() {
        Some(ShmError::AreaOverLimit { field, .. }) => assert_eq!(field, "response_capacity"),
        other => panic!("expected AreaOverLimit, got {other:?}"),
    }
    let missing = names("missing", PROFILE_BUSYWAIT);
    match attach_client(
        &missing,
        &LIMITS,
        PROFILE_BUSYWAIT,
        Duration::from_millis(30),
    )
    .err()
    {
        Some(ShmError::NotReady(_)) => {}
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// The child side of [`messages_travel_between_processes`]: attaches as the
/// client of the region named in the environment, sends 50 messages and
/// checks each echo, then sends a single byte 0.
#[test]
fn child_client() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let profile: u32 = parts.next().unwrap().parse().unwrap();
    let names = RegionNames {
        mapping: parts.next().unwrap().to_owned(),
        request_event: parts.next().unwrap().to_owned(),
        response_event: parts.next().unwrap().to_owned(),
    };
    child_round_trips(attach_client(&names, &LIMITS, profile, LONG).unwrap());
}

#[test]
fn messages_travel_between_processes() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    for profile in PROFILES {
        let n = names("procs", profile);
        let regions = ServerRegions::create(&[(profile, n.clone())], &LIMITS).unwrap();
        let mut server = regions.select(profile).unwrap();
        let spec = format!(
            "{profile}|{}|{}|{}",
            n.mapping, n.request_event, n.response_event
        );
        let mut child = spawn_child_client(spec);
        assert_eq!(echo_until_zero(server.as_mut()), 50);
        assert!(
            child.wait().unwrap().success(),
            "the child checked every echo (profile {profile:#x})"
        );
    }
}
