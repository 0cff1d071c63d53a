//! The POSIX region file itself: creation (O_EXCL, 0600, size), the
//! Appendix A header as a real file, attach validation, corrupted counters,
//! and stale-file handling.
#![cfg(target_os = "linux")]

mod common;

use common::TempDir;
use pipewright_netipc::hello::profile;
use pipewright_netipc::naming::posix_shm_path;
use pipewright_netipc::shm::posix::{reclaim_stale, remove_stale_regions};
use pipewright_netipc::shm::{platform, RegionParams, ShmError, ShmPeer};
use pipewright_netipc::shm_layout::{PosixShmHeader, RegionLayout};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SVC: &str = "posixsvc";
const SHM: u32 = profile::SHM_HYBRID | profile::SHM_FUTEX;

/// Captured after one CGROUPS_SNAPSHOT call (README Appendix A).
const APPENDIX_A_HEADER: &str = "4d48534e 0300 4000 41320000 6e030800 40000000 40100000 80100000 40000100 0100000000000000 0100000000000000 24000000 39010000 01000000 01000000";
const APPENDIX_A_REQUEST: &str =
    "4350494e 0100 2000 0100 0000 0200 0000 04000000 01000000 0100000000000000 01000000";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn params(dir: &Path, session_id: u64, max_req: u32, max_resp: u32) -> RegionParams {
    RegionParams {
        run_dir: dir.to_str().unwrap().to_owned(),
        service: SVC.to_owned(),
        session_id,
        auth_token: 0,
        max_request_payload: max_req,
        max_response_payload: max_resp,
    }
}

fn path(dir: &Path, session_id: u64) -> PathBuf {
    posix_shm_path(dir, SVC, session_id).unwrap()
}

/// A pid that belonged to a process which has exited.
fn dead_pid() -> i32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    pid
}

/// Writes a region file with `h` padded to `len` bytes.
fn write_region(p: &Path, h: &[u8], len: usize) {
    let mut bytes = h.to_vec();
    bytes.resize(len, 0);
    std::fs::write(p, bytes).unwrap();
}

/// Attaches as a client whose handshake agreed on 4096 / 65536 bytes (the
/// limits of the Appendix A region).
fn attach(dir: &Path, timeout: Duration) -> Result<Box<dyn ShmPeer>, ShmError> {
    platform::attach_client(&params(dir, 1, 4096, 65536), profile::SHM_FUTEX, timeout)
}

/// The error attaching an invalid region gives.
fn attach_err(dir: &Path, timeout: Duration) -> ShmError {
    match attach(dir, timeout) {
        Ok(_) => panic!("attached an invalid region"),
        Err(e) => e,
    }
}

#[test]
fn created_file_is_exclusive_private_and_sized() {
    let dir = TempDir::new();
    let p = params(dir.path(), 1, 4096, 65536);
    let regions = platform::ServerRegions::create(&p, SHM).unwrap();
    assert_eq!(regions.profiles(), SHM);
    let file = path(dir.path(), 1);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // The capture's server limits give the capture's file size.
    assert_eq!(meta.len(), 69824);
    let raw = std::fs::read(&file).unwrap();
    let h = PosixShmHeader::decode(&raw[..64]).unwrap();
    assert_eq!(h.owner_pid as u32, std::process::id());
    assert_ne!(h.owner_generation, 0);
    assert_eq!(h.layout, RegionLayout::for_limits(4096, 65536).unwrap());
    assert_eq!((h.req_seq, h.resp_seq, h.req_len, h.resp_len), (0, 0, 0, 0));
    // O_EXCL: a second server of the same session id meets a live owner.
    let e = platform::ServerRegions::create(&p, SHM).unwrap_err();
    assert!(matches!(e, ShmError::InUse(_)), "{e:?}");
    assert!(
        e.to_string().contains("ipcshm") && e.to_string().contains("alive"),
        "{e}"
    );
    // Profiles this platform does not serve create nothing.
    let none = platform::ServerRegions::create(&params(dir.path(), 2, 1, 1), profile::SHM_WAITADDR)
        .unwrap();
    assert_eq!(none.profiles(), 0);
    assert!(!path(dir.path(), 2).exists());
    // Unselected regions are removed; so is a region whose profile was not offered.
    drop(regions);
    assert!(!file.exists());
    let regions = platform::ServerRegions::create(&p, profile::SHM_HYBRID).unwrap();
    assert!(regions.select(profile::SHM_FUTEX).is_none());
    assert!(!file.exists());
    // One file serves either bit; the selected peer removes it when dropped.
    let regions = platform::ServerRegions::create(&p, SHM).unwrap();
    let peer = regions.select(profile::SHM_HYBRID).unwrap();
    assert_eq!(peer.profile(), profile::SHM_HYBRID);
    assert!(file.exists());
    drop(peer);
    assert!(!file.exists());
}

#[test]
fn appendix_a_header_as_a_region_file() {
    let dir = TempDir::new();
    let file = path(dir.path(), 1);
    let h = hex(APPENDIX_A_HEADER);
    let mut bytes = h.clone();
    bytes.resize(69824, 0);
    bytes[64..100].copy_from_slice(&hex(APPENDIX_A_REQUEST));
    std::fs::write(&file, &bytes).unwrap();
    let mut client = attach(dir.path(), Duration::from_secs(5)).unwrap();
    assert_eq!(client.send_capacity(), 4160);
    assert_eq!(client.receive_capacity(), 65600);
    // The captured response (resp_seq 1) was already consumed: the client
    // waits for the next one.
    let mut buf = Vec::new();
    let e = client
        .receive(&mut buf, Duration::from_millis(10))
        .unwrap_err();
    assert!(matches!(e, ShmError::TimedOut(_)), "{e:?}");
    // Publishing follows the capture's counters: seq and signal go to 2.
    client.send(&hex(APPENDIX_A_REQUEST)).unwrap();
    let after = std::fs::read(&file).unwrap();
    let h2 = PosixShmHeader::decode(&after[..64]).unwrap();
    assert_eq!((h2.req_seq, h2.req_len, h2.req_signal), (2, 36, 2));
    assert_eq!(&after[64..100], hex(APPENDIX_A_REQUEST).as_slice());
    drop(client);
    // The captured owner (pid 0x3241) is gone unless that pid was reused.
    if !Path::new("/proc/12865").exists() {
        assert!(reclaim_stale(&file).unwrap());
        assert!(!file.exists());
    }
}

#[test]
fn attach_validation_names_the_problem() {
    let dir = TempDir::new();
    let file = path(dir.path(), 1);
    let good = RegionLayout::for_limits(1024, 1024).unwrap();
    let pid = std::process::id() as i32;

    // Missing, then undersized: not ready (retried until the timeout).
    let e = attach_err(dir.path(), Duration::from_millis(30));
    assert!(matches!(e, ShmError::NotReady(_)), "{e:?}");
    assert!(e.to_string().contains("not ready"), "{e}");
    std::fs::write(&file, [0u8; 10]).unwrap();
    let e = attach_err(dir.path(), Duration::from_millis(30));
    assert!(matches!(e, ShmError::NotReady(_)), "{e:?}");

    // A foreign magic is retried too, then reported.
    let mut h = PosixShmHeader::new(pid, 1, good).encode();
    h[0] = b'X';
    write_region(&file, &h, good.file_size() as usize);
    let e = attach_err(dir.path(), Duration::from_millis(30));
    assert!(e.to_string().contains("magic"), "{e}");

    // These fail at once, whatever the timeout.
    let long = Duration::from_secs(60);
    let mut h = PosixShmHeader::new(pid, 1, good).encode();
    h[4] = 2;
    write_region(&file, &h, good.file_size() as usize);
    let e = attach_err(dir.path(), long);
    assert!(
        matches!(e, ShmError::BadRegion { .. }) && e.to_string().contains("version"),
        "{e}"
    );

    let mut overlap = good;
    overlap.response_offset = 128;
    write_region(&file, &PosixShmHeader::new(pid, 1, overlap).encode(), 8192);
    let e = attach_err(dir.path(), long);
    assert!(e.to_string().contains("overlaps"), "{e}");

    let mut below = good;
    below.request_offset = 0;
    write_region(&file, &PosixShmHeader::new(pid, 1, below).encode(), 8192);
    let e = attach_err(dir.path(), long);
    assert!(e.to_string().contains("below the header"), "{e}");

    let mut zero = good;
    zero.response_capacity = 0;
    write_region(&file, &PosixShmHeader::new(pid, 1, zero).encode(), 8192);
    let e = attach_err(dir.path(), long);
    assert!(e.to_string().contains("zero capacity"), "{e}");

    write_region(&file, &PosixShmHeader::new(pid, 1, good).encode(), 1000);
    let e = attach_err(dir.path(), long);
    assert!(e.to_string().contains("areas end at byte"), "{e}");

    // An area larger than the agreed limits is a protocol error, reported
    // before the file is mapped (the file need not even be that long).
    let mut big = good;
    big.response_capacity = 65536 + 128;
    write_region(&file, &PosixShmHeader::new(pid, 1, big).encode(), 8192);
    let e = attach_err(dir.path(), long);
    assert!(
        matches!(
            e,
            ShmError::AreaOverLimit {
                field: "response_capacity",
                value: 65664,
                limit: 65600,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(file.to_str().unwrap()), "{e}");

    // A profile that is not POSIX SHM.
    let Err(e) = platform::attach_client(&params(dir.path(), 1, 0, 0), profile::BASELINE, long)
    else {
        panic!("attached the baseline profile")
    };
    assert!(e.to_string().contains("0x02 or 0x04"), "{e}");
}

#[test]
fn zero_length_and_oversized_publications_are_reported_and_consumed() {
    let dir = TempDir::new();
    let p = params(dir.path(), 1, 1024, 1024);
    let mut server = platform::ServerRegions::create(&p, SHM)
        .unwrap()
        .select(profile::SHM_FUTEX)
        .unwrap();
    let mut client =
        platform::attach_client(&p, profile::SHM_FUTEX, Duration::from_secs(5)).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path(dir.path(), 1))
        .unwrap();
    let mut buf = Vec::new();
    // A publication announcing length 0 (req_seq 1, req_len 0).
    file.write_at(&1u64.to_ne_bytes(), 32).unwrap();
    file.write_at(&0u32.to_ne_bytes(), 48).unwrap();
    let e = server
        .receive(&mut buf, Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(e, ShmError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("length 0"), "{e}");
    // A publication longer than the area (req_seq 2).
    let cap = server.receive_capacity() as u32;
    file.write_at(&2u64.to_ne_bytes(), 32).unwrap();
    file.write_at(&(cap + 64).to_ne_bytes(), 48).unwrap();
    let e = server
        .receive(&mut buf, Duration::from_secs(60))
        .unwrap_err();
    assert!(
        matches!(e, ShmError::TooLarge { len, capacity } if len == (cap + 64) as usize && capacity == cap as usize),
        "{e:?}"
    );
    // Both were consumed: the next real publication (seq 3) arrives.
    client.send(b"after the corruption").unwrap();
    server.receive(&mut buf, Duration::from_secs(60)).unwrap();
    assert_eq!(buf, b"after the corruption");
}

#[test]
fn stale_files_of_dead_owners_are_replaced_live_ones_refused() {
    let dir = TempDir::new();
    let layout = RegionLayout::for_limits(1024, 1024).unwrap();
    let size = layout.file_size() as usize;
    let p = params(dir.path(), 1, 1024, 1024);
    let file = path(dir.path(), 1);

    // A dead owner's region is removed and recreated.
    write_region(
        &file,
        &PosixShmHeader::new(dead_pid(), 77, layout).encode(),
        size,
    );
    let regions = platform::ServerRegions::create(&p, SHM).unwrap();
    let raw = std::fs::read(&file).unwrap();
    assert_eq!(
        PosixShmHeader::decode(&raw[..64]).unwrap().owner_pid as u32,
        std::process::id()
    );
    drop(regions);

    // Junk at the name is replaced.
    std::fs::write(&file, b"not a region").unwrap();
    drop(platform::ServerRegions::create(&p, SHM).unwrap());

    // A live owner with a generation keeps its region.
    write_region(
        &file,
        &PosixShmHeader::new(std::process::id() as i32, 5, layout).encode(),
        size,
    );
    let e = platform::ServerRegions::create(&p, SHM).unwrap_err();
    assert!(matches!(e, ShmError::InUse(_)), "{e:?}");
    assert!(file.exists());
    // Generation 0 (uninitialised) counts as dead even with a live pid.
    write_region(
        &file,
        &PosixShmHeader::new(std::process::id() as i32, 0, layout).encode(),
        size,
    );
    assert!(reclaim_stale(&file).unwrap());
    assert!(!file.exists());
    assert!(!reclaim_stale(&file).unwrap(), "nothing left to remove");
}

#[test]
fn startup_scan_removes_only_dead_regions_of_this_service() {
    let dir = TempDir::new();
    let d = dir.path();
    let layout = RegionLayout::for_limits(1024, 1024).unwrap();
    let size = layout.file_size() as usize;
    let dead = dead_pid();
    let me = std::process::id() as i32;
    write_region(
        &path(d, 1),
        &PosixShmHeader::new(dead, 9, layout).encode(),
        size,
    );
    write_region(
        &path(d, 2),
        &PosixShmHeader::new(me, 9, layout).encode(),
        size,
    );
    std::fs::write(path(d, 3), b"x").unwrap();
    let other_service = posix_shm_path(d, "other", 1).unwrap();
    write_region(
        &other_service,
        &PosixShmHeader::new(dead, 9, layout).encode(),
        size,
    );
    let not_an_id = d.join(format!("{SVC}-12.ipcshm"));
    std::fs::write(&not_an_id, b"x").unwrap();
    let removed = remove_stale_regions(d.to_str().unwrap(), SVC).unwrap();
    assert_eq!(removed, 2);
    assert!(!path(d, 1).exists() && !path(d, 3).exists());
    assert!(path(d, 2).exists(), "a live owner's region was removed");
    assert!(other_service.exists() && not_an_id.exists());
    let e = remove_stale_regions(d.to_str().unwrap(), "bad/name").unwrap_err();
    assert!(e.to_string().contains("bad/name"), "{e}");
}
