//! Deterministic random and mutated inputs for every decoder (the same
//! properties as the cargo-fuzz targets, runnable on a stable toolchain): no
//! decoder may panic, and whatever decodes must re-encode to an equal value.

use pipewright_netipc::batch::{decode_batch, encode_batch};
use pipewright_netipc::chunk::{ChunkHeader, Progress, Reassembler};
use pipewright_netipc::codec::cgroups_snapshot::{self, CgroupItem, Snapshot};
use pipewright_netipc::codec::{increment, string_reverse};
use pipewright_netipc::handshake::{
    build_hello, client_check_ack, server_decide, EndpointConfig, ReservedFieldPolicy,
};
use pipewright_netipc::header::Header;
use pipewright_netipc::hello::{Hello, HelloAck};
use pipewright_netipc::shm_layout::{PosixShmHeader, RegionLayout};

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
        PosixShmHeader {
            owner_pid: 1,
            owner_generation: 1,
            layout: RegionLayout::for_limits(1024, 1024).unwrap(),
            req_seq: 0,
            resp_seq: 0,
            req_len: 0,
            resp_len: 0,
            req_signal: 0,
            resp_signal: 0,
        }
        .encode()
        .to_vec(),
    ]
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
    let mut decoded_some = 0;
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        let m = rng.mutate(seed);
        if Header::decode(&m).is_ok() || Snapshot::decode(&m).is_ok() || Hello::decode(&m).is_ok() {
            decoded_some += 1;
        }
        exercise(&m);
    }
    // The mutations must leave some inputs valid, or this test explores nothing.
    assert!(
        decoded_some > ROUNDS / 20,
        "only {decoded_some} mutated inputs decoded"
    );
}
