//! The fuzz targets' committed corpus (`fuzz/seeds/<target>/`): every target
//! of `fuzz/Cargo.toml` has one, and [`write_fuzz_seeds`] regenerates the
//! seeds from the protocol's Appendix A vectors (the bytes
//! `appendix_a_vectors.rs` checks) and the codecs' own encodings.
//!
//! To refresh the corpus: write the seeds, fuzz, then minimize (see
//! `fuzz/README.md`):
//!
//! ```text
//! cargo test -p pipewright-netipc --test fuzz_seeds -- --ignored
//! crates/pipewright-netipc/fuzz/run.sh 60
//! scripts/fuzz.sh minimize crates/pipewright-netipc/fuzz
//! ```
#![cfg(target_os = "linux")]

use pipewright_netipc::batch::encode_batch;
use pipewright_netipc::chunk::ChunkHeader;
use pipewright_netipc::codec::cgroups_snapshot::{self, CgroupItem, Snapshot};
use pipewright_netipc::codec::{apps_lookup, cgroups_lookup, increment, string_reverse};
use pipewright_netipc::handshake::{build_hello, server_decide, EndpointConfig};
use pipewright_netipc::handshake::{ReservedFieldPolicy, ServerDecision};
use pipewright_netipc::header::Header;
use pipewright_netipc::hello::HelloAck;
use std::path::{Path, PathBuf};

mod vectors;
use vectors::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The `[[bin]]` names of the fuzz crate: its targets.
fn targets() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(v) = line.strip_prefix("name") {
            if in_bin {
                let v = v.trim_start().trim_start_matches('=').trim();
                targets.push(v.trim_matches('"').to_string());
            }
        }
    }
    targets
}

/// The packets of `packets` as the reassembly target reads them: each
/// prefixed by its length byte.
fn length_prefixed(packets: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        out.push(u8::try_from(p.len()).unwrap());
        out.extend_from_slice(p);
    }
    out
}

/// (target, file name, bytes) of every seed.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let header = hex(HEADER_BIN);
    let live_hello = hex(LIVE_HELLO);
    let live_ack = hex(LIVE_HELLO_ACK);
    let server = EndpointConfig {
        supported_profiles: 0x01,
        max_request_payload_bytes: 65536,
        max_request_batch_items: 16,
        max_response_payload_bytes: 65536,
        auth_token: 7,
        packet_size: 65536,
        ..EndpointConfig::default()
    }
    .resolved(65536);
    let (_, hello_token_7) = build_hello(
        &EndpointConfig {
            auth_token: 7,
            ..EndpointConfig::default()
        }
        .resolved(4096),
    );
    let ack_of =
        |policy, server: &EndpointConfig| match server_decide(&hello_token_7, server, policy, 3) {
            ServerDecision::Accept { ack, .. } | ServerDecision::Reject { ack, .. } => ack.to_vec(),
            d => panic!("no ACK: {d:?}"),
        };
    let wrong_token = EndpointConfig {
        auth_token: 8,
        ..server
    };
    let snapshot = Snapshot {
        systemd_enabled: 1,
        generation: 3,
        items: vec![
            CgroupItem::new(
                b"system.slice".to_vec(),
                b"/sys/fs/cgroup/system.slice".to_vec(),
            ),
            CgroupItem::new(b"other".to_vec(), Vec::new()),
        ],
    };
    let batch = encode_batch(&[b"abc", b"", b"12345678"]).unwrap();
    let mut batch_seed = 3u32.to_ne_bytes().to_vec();
    batch_seed.extend_from_slice(&batch);
    // A 100-byte message in two chunks of a 64-byte packet budget.
    let first = Header::request(1, 9, 100).encode();
    let mut first_packet = first.to_vec();
    first_packet.extend_from_slice(&[0x11; 32]);
    let chunk = ChunkHeader {
        message_id: 9,
        total_message_len: 100,
        chunk_index: 1,
        chunk_count: 3,
        chunk_payload_len: 32,
    };
    let mut second_packet = chunk.encode().to_vec();
    second_packet.extend_from_slice(&[0x22; 32]);
    let last = ChunkHeader {
        chunk_index: 2,
        chunk_payload_len: 36,
        ..chunk
    };
    let mut third_packet = last.encode().to_vec();
    third_packet.extend_from_slice(&[0x33; 36]);
    let cgroups_resp = cgroups_lookup_response();
    let apps_resp = apps_lookup_response();
    vec![
        ("header", "appendix_a_header", header.clone()),
        ("header", "live_hello_header", live_hello[..32].to_vec()),
        ("chunk_header", "appendix_a_chunk", hex(CHUNK_BIN)),
        ("hello", "appendix_a_hello", hex(HELLO_BIN)),
        ("hello", "live_hello", live_hello[32..].to_vec()),
        ("hello_ack", "appendix_a_hello_ack", hex(HELLO_ACK_BIN)),
        ("hello_ack", "live_hello_ack", live_ack[32..].to_vec()),
        (
            "hello_ack",
            "rejection",
            HelloAck::rejection().encode().to_vec(),
        ),
        ("handshake_server", "live_hello", live_hello.clone()),
        ("handshake_server", "hello_token_7", hello_token_7.to_vec()),
        ("handshake_client", "live_hello_ack", live_ack.clone()),
        (
            "handshake_client",
            "accept",
            ack_of(ReservedFieldPolicy::Spec, &server),
        ),
        (
            "handshake_client",
            "auth_failed",
            ack_of(ReservedFieldPolicy::Upstream, &wrong_token),
        ),
        ("batch_directory", "three_items", batch_seed),
        (
            "reassembly",
            "three_chunks",
            length_prefixed(&[&first_packet, &second_packet, &third_packet]),
        ),
        (
            "reassembly",
            "whole_snapshot_request",
            length_prefixed(&[&hex(SHM_REQUEST_AREA)]),
        ),
        ("codec_increment", "five", increment::encode(5).to_vec()),
        (
            "codec_string_reverse",
            "hello",
            string_reverse::encode(b"hello").unwrap(),
        ),
        (
            "codec_cgroups_snapshot",
            "request",
            cgroups_snapshot::encode_request().to_vec(),
        ),
        (
            "codec_cgroups_snapshot",
            "two_items",
            snapshot.encode().unwrap(),
        ),
        (
            "codec_cgroups_lookup",
            "request",
            cgroups_lookup::Request {
                paths: vec![b"/sys/fs/cgroup/system.slice".to_vec(), b"/".to_vec()],
            }
            .encode()
            .unwrap(),
        ),
        (
            "codec_cgroups_lookup",
            "response",
            cgroups_resp.encode().unwrap(),
        ),
        (
            "codec_apps_lookup",
            "request",
            apps_lookup::Request {
                pids: vec![1, 4242],
            }
            .encode()
            .unwrap(),
        ),
        ("codec_apps_lookup", "response", apps_resp.encode().unwrap()),
    ]
}

/// Every fuzz target starts from a committed corpus, not from nothing.
#[test]
fn every_fuzz_target_has_a_committed_corpus() {
    let targets = targets();
    assert!(!targets.is_empty(), "no [[bin]] in fuzz/Cargo.toml");
    let mut missing = Vec::new();
    for t in &targets {
        let dir = fuzz_dir().join("seeds").join(t);
        let n = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        if n == 0 {
            missing.push(t.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "fuzz targets without a committed corpus in fuzz/seeds/: {missing:?}; run \
         `cargo test -p pipewright-netipc --test fuzz_seeds -- --ignored` (fuzz/README.md)"
    );
}

/// Writes the seeds into `fuzz/seeds/<target>/<name>` (for the targets this
/// crate's fuzz crate has).
#[test]
#[ignore = "writes the fuzz seeds into the source tree; run by hand (fuzz/README.md)"]
fn write_fuzz_seeds() {
    let targets = targets();
    for (target, name, bytes) in seeds() {
        if !targets.iter().any(|t| t == target) {
            println!("skipped {target}/{name}: no such fuzz target here");
            continue;
        }
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        println!("wrote {target}/{name}");
    }
}
