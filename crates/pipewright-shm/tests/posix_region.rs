//! The POSIX region through the crate's safe API: create and attach, publish
//! and receive between threads and between processes, waits with a timeout
//! and a deadline, limits, and stale-region cleanup.
#![cfg(target_os = "linux")]

use pipewright_shm::layout::{PosixShmHeader, RegionLayout};
use pipewright_shm::posix::{
    attach_client, reclaim_stale, remove_stale_regions, ServerRegions, PROFILE_FUTEX,
    PROFILE_HYBRID, SUPPORTED_PROFILES,
};
use pipewright_shm::{AreaLimits, ShmError, ShmPeer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{
    child_round_trips, echo_between_threads, echo_until_zero, expect_timed_out, spawn_child_client,
    CHILD_ENV, LIMITS, LONG,
};

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "pw-shm-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let p = PathBuf::from(p.to_string_lossy().replace([' ', '{', '}', ':'], "_"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn region(&self, id: u64) -> PathBuf {
        self.0.join(format!("svc-{id:016x}.ipcshm"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pair(path: &Path, profile: u32) -> (Box<dyn ShmPeer>, Box<dyn ShmPeer>) {
    let regions = ServerRegions::create(path, &LIMITS, SUPPORTED_PROFILES).unwrap();
    assert_eq!(regions.profiles(), SUPPORTED_PROFILES);
    let server = regions.select(profile).unwrap();
    let client = attach_client(path, &LIMITS, profile, LONG).unwrap();
    (server, client)
}

#[test]
fn messages_travel_both_ways_between_threads() {
    let dir = TempDir::new("threads");
    let path = dir.region(1);
    let (server, client) = pair(&path, PROFILE_FUTEX);
    assert_eq!(client.send_capacity(), server.receive_capacity());
    assert_eq!(client.send_capacity(), 32 + 1024 + 32);
    echo_between_threads(server, client, "");
    assert!(!path.exists(), "the server's drop removes its region file");
}

#[test]
fn a_timed_out_receive_leaves_the_region_usable() {
    let dir = TempDir::new("timeout");
    let (mut server, mut client) = pair(&dir.region(2), PROFILE_HYBRID);
    let mut buf = vec![9u8; 3];
    expect_timed_out(server.receive(&mut buf, Duration::from_millis(20)));
    // A deadline that has passed still takes a message that is there.
    client.send(&[7u8; 64]).unwrap();
    server.receive_until(&mut buf, Instant::now()).unwrap();
    assert_eq!(buf, [7u8; 64]);
    expect_timed_out(server.receive_until(&mut buf, Instant::now()));
}

#[test]
fn messages_larger_than_the_area_or_empty_are_refused() {
    let dir = TempDir::new("large");
    let (_server, mut client) = pair(&dir.region(3), PROFILE_FUTEX);
    let cap = client.send_capacity();
    match client.send(&vec![1u8; cap + 1]) {
        Err(ShmError::TooLarge { len, capacity }) => assert_eq!((len, capacity), (cap + 1, cap)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(client.send(&[]), Err(ShmError::Io(_))));
    client.send(&vec![1u8; cap]).unwrap();
}

#[test]
fn attach_refuses_areas_larger_than_the_agreed_limits() {
    let dir = TempDir::new("limits");
    let path = dir.region(4);
    let big = AreaLimits {
        max_request_payload: 1024,
        max_response_payload: 1 << 20,
    };
    let _regions = ServerRegions::create(&path, &big, SUPPORTED_PROFILES).unwrap();
    match attach_client(&path, &LIMITS, PROFILE_FUTEX, LONG).err() {
        Some(ShmError::AreaOverLimit { field, .. }) => assert_eq!(field, "response_capacity"),
        other => panic!("expected AreaOverLimit, got {other:?}"),
    }
}

#[test]
fn attach_waits_for_a_missing_region_until_its_timeout() {
    let dir = TempDir::new("missing");
    match attach_client(
        &dir.region(5),
        &LIMITS,
        PROFILE_FUTEX,
        Duration::from_millis(30),
    )
    .err()
    {
        Some(ShmError::NotReady(_)) => {}
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(matches!(
        attach_client(&dir.region(5), &LIMITS, 0x01, LONG),
        Err(ShmError::Io(_))
    ));
}

fn header(pid: i32, generation: u32) -> [u8; 64] {
    PosixShmHeader::new(pid, generation, RegionLayout::for_limits(64, 64).unwrap()).encode()
}

#[test]
fn stale_regions_of_dead_owners_are_removed_and_live_ones_kept() {
    let dir = TempDir::new("stale");
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id() as i32;
    child.wait().unwrap();
    std::fs::write(dir.region(6), header(dead, 1)).unwrap();
    std::fs::write(dir.region(7), b"not a region").unwrap();
    let live = dir.region(8);
    std::fs::write(&live, header(std::process::id() as i32, 1)).unwrap();
    std::fs::write(dir.0.join("other-0000000000000006.ipcshm"), b"x").unwrap();
    assert_eq!(remove_stale_regions(&dir.0, "svc").unwrap(), 2);
    assert!(!dir.region(6).exists() && !dir.region(7).exists());
    assert!(live.exists(), "a live owner's region is kept");
    assert!(dir.0.join("other-0000000000000006.ipcshm").exists());
    assert!(matches!(reclaim_stale(&live), Err(ShmError::InUse(_))));
    // Creating over a live owner's region fails; over a dead one succeeds.
    assert!(matches!(
        ServerRegions::create(&live, &LIMITS, SUPPORTED_PROFILES),
        Err(ShmError::InUse(_))
    ));
    std::fs::write(dir.region(6), header(dead, 1)).unwrap();
    let (mut server, mut client) = pair(&dir.region(6), PROFILE_FUTEX);
    client.send(&[5u8; 40]).unwrap();
    let mut buf = Vec::new();
    server.receive(&mut buf, LONG).unwrap();
    assert_eq!(buf, [5u8; 40]);
}

/// The child side of [`messages_travel_between_processes`]: attaches to the
/// region named in the environment as its client, sends 50 messages and
/// checks each echo, then sends a single byte 0.
#[test]
fn child_client() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    child_round_trips(attach_client(Path::new(&path), &LIMITS, PROFILE_FUTEX, LONG).unwrap());
}

#[test]
fn messages_travel_between_processes() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = TempDir::new("procs");
    let path = dir.region(9);
    let regions = ServerRegions::create(&path, &LIMITS, SUPPORTED_PROFILES).unwrap();
    let mut server = regions.select(PROFILE_FUTEX).unwrap();
    let mut child = spawn_child_client(&path);
    assert_eq!(echo_until_zero(server.as_mut()), 50);
    assert!(
        child.wait().unwrap().success(),
        "the child checked every echo"
    );
}
