//! Deterministic random and mutated inputs for every decoder of peer bytes
//! (the same properties as the cargo-fuzz targets, runnable on a stable
//! toolchain): no decoder may panic, and whatever decodes must re-encode to an
//! equal value. The decoders: message and chunk headers, HELLO (strict and
//! raw), HELLO_ACK, the handshake decisions, batches, every service codec
//! (INCREMENT, STRING_REVERSE, CGROUPS_SNAPSHOT, CGROUPS_LOOKUP, APPS_LOOKUP),
//! the POSIX and Windows region headers, and the shared-memory readers that
//! attach to a region a peer wrote (POSIX on Linux, Windows on Windows).

#[cfg(any(target_os = "linux", windows))]
mod common;
mod vectors;

use pipewright_netipc::batch::{decode_batch, encode_batch};
use pipewright_netipc::chunk::{ChunkHeader, Progress, Reassembler};
use pipewright_netipc::codec::cgroups_snapshot::{self, CgroupItem, Snapshot};
use pipewright_netipc::codec::{apps_lookup, cgroups_lookup, increment, string_reverse};
use pipewright_netipc::handshake::{
    build_hello, client_check_ack, server_decide, EndpointConfig, ReservedFieldPolicy,
};
use pipewright_netipc::header::Header;
use pipewright_netipc::hello::{Hello, HelloAck, HELLO_LEN};
use pipewright_netipc::shm::windows_layout::{
    layout_for_limits, WindowsShmHeader, PROFILE_BUSYWAIT, WIN_SHM_HEADER_LEN,
};
use pipewright_netipc::shm_layout::{PosixShmHeader, RegionLayout};
use vectors::{apps_lookup_response, cgroups_lookup_response};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Flips, overwrites, truncates or extends a valid encoding.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=self.below(3) {
            match self.below(5) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = [0, 1, 0x7f, 0x80, 0xff][self.below(5)];
                }
                2 => v.truncate(self.below(v.len() + 1)),
                3 => {
                    let extra = self.bytes(16);
                    v.extend(extra);
                }
                _ if v.len() >= 4 => {
                    let i = self.below(v.len() - 3);
                    v[i..i + 4].copy_from_slice(&(self.next() as u32).to_ne_bytes());
                }
                _ => {}
            }
        }
        v
    }
}

const ROUNDS: usize = 20_000;

fn seeds() -> Vec<Vec<u8>> {
    let (_, hello_msg) = build_hello(
        &EndpointConfig {
            auth_token: 7,
            ..EndpointConfig::default()
        }
        .resolved(4096),
    );
    let snapshot = Snapshot {
        systemd_enabled: 1,
        generation: 3,
        items: vec![
            CgroupItem::new(b"n".to_vec(), b"/p".to_vec()),
            CgroupItem::new(b"other".to_vec(), Vec::new()),
        ],
    };
    vec![
        Header::request(1, 1, 8).encode().to_vec(),
        ChunkHeader {
            message_id: 1,
            total_message_len: 100,
            chunk_index: 1,
            chunk_count: 2,
            chunk_payload_len: 68,
        }
        .encode()
        .to_vec(),
        hello_msg.to_vec(),
        hello_msg[32..].to_vec(),
        HelloAck {
            selected_profile: 1,
            agreed_packet_size: 4096,
            ..HelloAck::rejection()
        }
        .encode()
        .to_vec(),
        encode_batch(&[b"abc", b"", b"12345678"]).unwrap(),
        increment::encode(5).to_vec(),
        string_reverse::encode(b"hello").unwrap(),
        cgroups_snapshot::encode_request().to_vec(),
        snapshot.encode().unwrap(),
        PosixShmHeader::new(1, 1, RegionLayout::for_limits(1024, 1024).unwrap())
            .encode()
            .to_vec(),
        cgroups_lookup::Request {
            paths: vec![b"/sys/fs/cgroup/system.slice".to_vec(), b"/".to_vec()],
        }
        .encode()
        .unwrap(),
        cgroups_lookup_response().encode().unwrap(),
        apps_lookup::Request {
            pids: vec![1, 4242],
        }
        .encode()
        .unwrap(),
        apps_lookup_response().encode().unwrap(),
        win_shm_header(),
    ]
}

/// A Windows region header as a server writes it (profile 0x04), with
/// counters that have moved.
fn win_shm_header() -> Vec<u8> {
    let mut h = WindowsShmHeader::new(PROFILE_BUSYWAIT, layout_for_limits(1024, 4096).unwrap());
    h.req_seq = 3;
    h.resp_seq = 2;
    h.req_len = 40;
    h.resp_len = 72;
    h.encode().to_vec()
}

/// Runs every decoder on `data`, checking re-encode round trips.
fn exercise(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        if h.payload_len <= 1 << 16 {
            let _ = Reassembler::start(h, data, 64).map(|p| match p {
                Progress::Complete(m) => assert_eq!(m.payload.len(), h.payload_len as usize),
                Progress::Partial(mut r) => {
                    let _ = r.push(data);
                }
            });
        }
    }
    if let Ok(c) = ChunkHeader::decode(data) {
        assert_eq!(ChunkHeader::decode(&c.encode()), Ok(c));
    }
    if let Ok(h) = Hello::decode(data) {
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
    }
    // The raw decode keeps every field the handshake judges: its encoding is
    // the input's first 44 bytes.
    if let Ok(h) = Hello::decode_raw(data) {
        assert_eq!(h.encode().as_slice(), &data[..HELLO_LEN]);
        assert_eq!(
            Hello::decode(data).is_ok(),
            Hello::decode(&h.encode()).is_ok()
        );
    }
    if let Ok(a) = HelloAck::decode(data) {
        assert_eq!(HelloAck::decode(&a.encode()), Ok(a));
    }
    let count = data.first().map_or(1, |&b| u32::from(b % 8));
    if let Ok(items) = decode_batch(data, count) {
        let again = encode_batch(&items).unwrap();
        assert_eq!(decode_batch(&again, count).unwrap(), items);
    }
    if let Ok(v) = increment::decode(data) {
        assert_eq!(increment::encode(v).as_slice(), data);
    }
    if let Ok(s) = string_reverse::decode(data) {
        assert_eq!(
            string_reverse::decode(&string_reverse::encode(s).unwrap()).unwrap(),
            s
        );
    }
    let _ = cgroups_snapshot::decode_request(data);
    if let Ok(s) = Snapshot::decode(data) {
        assert_eq!(Snapshot::decode(&s.encode().unwrap()).unwrap(), s);
    }
    if let Ok(h) = PosixShmHeader::decode(data) {
        assert_eq!(PosixShmHeader::decode(&h.encode()), Ok(h));
    }
    if let Ok(r) = cgroups_lookup::Request::decode(data) {
        assert_eq!(
            cgroups_lookup::Request::decode(&r.encode().unwrap()).unwrap(),
            r
        );
    }
    if let Ok(r) = cgroups_lookup::LookupResponse::decode(data) {
        assert_eq!(
            cgroups_lookup::LookupResponse::decode(&r.encode().unwrap()).unwrap(),
            r
        );
    }
    if let Ok(r) = apps_lookup::Request::decode(data) {
        assert_eq!(
            apps_lookup::Request::decode(&r.encode().unwrap()).unwrap(),
            r
        );
    }
    if let Ok(r) = apps_lookup::LookupResponse::decode(data) {
        assert_eq!(
            apps_lookup::LookupResponse::decode(&r.encode().unwrap()).unwrap(),
            r
        );
    }
    if let Ok(h) = WindowsShmHeader::decode(data) {
        // Re-encodes to the same fields; its areas lie after the header, in
        // order, and the region fits 32 bits.
        assert_eq!(WindowsShmHeader::decode(&h.encode()), Ok(h));
        let l = h.layout;
        assert!(l.request_offset as usize >= WIN_SHM_HEADER_LEN, "{l:?}");
        assert!(
            u64::from(l.request_offset) + u64::from(l.request_capacity)
                <= u64::from(l.response_offset),
            "{l:?}"
        );
        assert!(l.file_size() <= u64::from(u32::MAX), "{l:?}");
    }
    let cfg = EndpointConfig {
        auth_token: 7,
        ..EndpointConfig::default()
    }
    .resolved(4096);
    let _ = server_decide(data, &cfg, ReservedFieldPolicy::Spec, 1);
    let _ = server_decide(data, &cfg, ReservedFieldPolicy::Upstream, 1);
    let (hello, _) = build_hello(&cfg);
    let _ = client_check_ack(data, &hello);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..ROUNDS {
        exercise(&rng.bytes(160));
    }
}

#[test]
fn mutated_valid_encodings_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let seeds = seeds();
    let mut decoded_by = [0usize; DECODED_KINDS.len()];
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        let m = rng.mutate(seed);
        let decoded = [
            Header::decode(&m).is_ok(),
            Snapshot::decode(&m).is_ok(),
            Hello::decode(&m).is_ok(),
            cgroups_lookup::LookupResponse::decode(&m).is_ok(),
            apps_lookup::LookupResponse::decode(&m).is_ok(),
            cgroups_lookup::Request::decode(&m).is_ok(),
            apps_lookup::Request::decode(&m).is_ok(),
            WindowsShmHeader::decode(&m).is_ok(),
        ];
        for (n, ok) in decoded_by.iter_mut().zip(decoded) {
            *n += usize::from(ok);
        }
        exercise(&m);
    }
    // The mutations must leave some inputs of every kind valid, or this test
    // explores nothing past each decoder's first check.
    for (what, n) in DECODED_KINDS.iter().zip(decoded_by) {
        assert!(
            n > ROUNDS / 400,
            "only {n} mutated inputs decoded as {what}"
        );
    }
}

const DECODED_KINDS: [&str; 8] = [
    "a header",
    "a snapshot",
    "a HELLO",
    "a CGROUPS_LOOKUP response",
    "an APPS_LOOKUP response",
    "a CGROUPS_LOOKUP request",
    "an APPS_LOOKUP request",
    "a Windows region header",
];

/// Mutates `image` in place: random bytes, bit flips, and counter words set to
/// hostile values (the fields a peer controls after attach).
#[cfg(any(target_os = "linux", windows))]
fn mutate_region(rng: &mut Rng, image: &mut [u8], words: &[usize]) {
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 => {
                let i = rng.below(image.len());
                image[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(image.len());
                image[i] = rng.next() as u8;
            }
            _ => {
                let at = words[rng.below(words.len())];
                let v = [0, 1, 31, 32, 33, 0x7fff_ffff, 0x8000_0000, u32::MAX][rng.below(8)]
                    .wrapping_add(rng.below(3) as u32);
                image[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
    }
}

/// Region files a peer wrote, attached by the POSIX client: attach validation
/// (header, layout, limits, file size), then receive and send, with the
/// counters and lengths rewritten after attach as a hostile server would.
/// Nothing may panic or reach outside the mapping.
#[cfg(target_os = "linux")]
#[test]
fn posix_regions_a_peer_wrote_never_panic_the_reader() {
    use pipewright_netipc::shm::{platform, RegionParams};
    use std::os::unix::fs::FileExt;
    use std::time::Duration;
    let dir = common::TempDir::new();
    let params = RegionParams {
        run_dir: dir.path().to_str().unwrap().to_owned(),
        service: "fuzz".into(),
        session_id: 1,
        auth_token: 0,
        max_request_payload: 1024,
        max_response_payload: 1024,
    };
    let path = pipewright_netipc::naming::posix_shm_path(dir.path(), "fuzz", 1).unwrap();
    let layout = RegionLayout::for_limits(1024, 1024).unwrap();
    let header = PosixShmHeader::new(std::process::id() as i32, 1, layout);
    let mut valid = header.encode().to_vec();
    valid.resize(layout.file_size() as usize, 0);
    // Every 4-byte word of the header: the offsets, capacities, counters,
    // lengths and futex words a peer could set.
    let words: Vec<usize> = (0..header.encode().len()).step_by(4).collect();
    let mut rng = Rng(0x5eed_0f5a_17e5);
    let (mut attached, mut received) = (0, 0);
    for round in 0..4000 {
        let mut image = valid.clone();
        if round % 8 != 0 {
            mutate_region(&mut rng, &mut image, &words);
        }
        if rng.below(10) == 0 {
            image.truncate(rng.below(image.len() + 1));
        }
        std::fs::write(&path, &image).unwrap();
        let Ok(mut peer) = platform::attach_client(&params, 0x04, Duration::ZERO) else {
            continue;
        };
        attached += 1;
        // The server publishes (or pretends to): counters and lengths change
        // under the attached client.
        let mut after = image.clone();
        mutate_region(&mut rng, &mut after, &words);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_at(&after, 0).unwrap();
        let mut buf = Vec::new();
        if peer.receive(&mut buf, Duration::ZERO).is_ok() {
            received += 1;
            assert!(!buf.is_empty() && buf.len() <= peer.receive_capacity());
        }
        let _ = peer.send(&[0x5a; 40]);
        let _ = peer.send(&vec![0x5a; peer.send_capacity()]);
    }
    assert!(attached > 400, "only {attached} regions attached");
    assert!(received > 0, "no mutated region delivered a message");
}

/// Windows regions a peer created, attached by the Windows client: attach
/// validation (magic, version, profile, layout, capacities against the
/// negotiated limits, the mapping's size), then receive and send. Nothing may
/// panic or reach outside the mapping. (After attach, the counters can only
/// be moved through the region's own peers: a forged mapping offers no
/// writable view, so the copy-out path is covered by the POSIX test and
/// `shm_windows.rs`.)
#[cfg(windows)]
#[test]
fn windows_regions_a_peer_created_never_panic_the_reader() {
    use pipewright_netipc::naming::windows_shm_names;
    use pipewright_netipc::shm::windows::test_support::create_named_mapping;
    use pipewright_netipc::shm::windows_layout::offset;
    use pipewright_netipc::shm::{platform, RegionParams};
    use std::time::Duration;
    let dir = common::TempDir::new();
    let params = RegionParams {
        run_dir: dir.path().to_str().unwrap().to_owned(),
        service: "fuzz".into(),
        session_id: 1,
        auth_token: 0,
        max_request_payload: 1024,
        max_response_payload: 1024,
    };
    let layout = layout_for_limits(1024, 1024).unwrap();
    let header = WindowsShmHeader::new(PROFILE_BUSYWAIT, layout);
    let mut valid = header.encode().to_vec();
    valid.resize(layout.file_size() as usize, 0);
    let mut words: Vec<usize> = (0..WIN_SHM_HEADER_LEN).step_by(4).collect();
    words.extend([offset::REQ_SEQ + 4, offset::RESP_SEQ + 4]);
    let name = windows_shm_names(&params.run_dir, "fuzz", 0, PROFILE_BUSYWAIT, 1)
        .unwrap()
        .mapping;
    let mut rng = Rng(0x0bad_5eed_0f1e_55aa);
    let mut attached = 0;
    for round in 0..1500 {
        let mut image = valid.clone();
        if round % 8 != 0 {
            mutate_region(&mut rng, &mut image, &words);
        }
        // Sections smaller than the areas, or than the header.
        let size = match rng.below(8) {
            0 => rng.below(image.len()) as u64,
            1 => rng.below(WIN_SHM_HEADER_LEN + 1) as u64,
            _ => image.len() as u64,
        };
        image.truncate(size.max(1) as usize);
        let mapping = create_named_mapping(&name, size, &image).unwrap();
        if let Ok(mut peer) = platform::attach_client(&params, PROFILE_BUSYWAIT, Duration::ZERO) {
            attached += 1;
            let mut buf = Vec::new();
            if peer.receive(&mut buf, Duration::ZERO).is_ok() {
                assert!(!buf.is_empty() && buf.len() <= peer.receive_capacity());
            }
            let _ = peer.send(&[0x5a; 40]);
            let _ = peer.send(&vec![0x5a; peer.send_capacity()]);
        }
        drop(mapping);
    }
    assert!(attached > 150, "only {attached} regions attached");
}
