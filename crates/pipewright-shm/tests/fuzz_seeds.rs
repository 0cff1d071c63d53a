//! The fuzz targets' committed corpus (`fuzz/seeds/<target>/`): every target
//! of `fuzz/Cargo.toml` has one, and [`write_fuzz_seeds`] regenerates the
//! seeds from the region headers' own encodings and the captured header of
//! the netipc specification's Appendix A.
//!
//! To refresh the corpus: write the seeds, fuzz, then minimize (see
//! `fuzz/README.md`):
//!
//! ```text
//! cargo test -p pipewright-shm --test fuzz_seeds -- --ignored
//! crates/pipewright-shm/fuzz/run.sh 60
//! scripts/fuzz.sh minimize crates/pipewright-shm/fuzz
//! ```
#![cfg(target_os = "linux")]

use pipewright_shm::layout::{PosixShmHeader, RegionLayout};
use pipewright_shm::windows_layout::{
    layout_for_limits, WindowsShmHeader, PROFILE_BUSYWAIT, PROFILE_HYBRID,
};
use std::path::{Path, PathBuf};

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

/// A POSIX region header captured after one call (the netipc specification's
/// Appendix A), as hex digits grouped by spaces.
const APPENDIX_A_HEADER: &str = "4d48534e 0300 4000 41320000 6e030800 40000000 40100000 80100000 40000100 0100000000000000 0100000000000000 24000000 39010000 01000000 01000000";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// `(target, name, bytes)` for every seed.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let posix = PosixShmHeader::new(1, 1, RegionLayout::for_limits(1024, 1024).unwrap());
    let mut region = posix.encode().to_vec();
    region.resize(posix.layout.file_size() as usize, 0);
    // A region holding one published request of 40 bytes.
    let mut published = posix;
    published.req_seq = 1;
    published.req_len = 40;
    published.req_signal = 1;
    let mut region_with_request = published.encode().to_vec();
    region_with_request.resize(posix.layout.file_size() as usize, 0);
    let off = posix.layout.request_offset as usize;
    region_with_request[off..off + 40].fill(0x5a);
    let mut win = WindowsShmHeader::new(0x04, layout_for_limits(1024, 4096).unwrap());
    let win_fresh = win.encode().to_vec();
    win.req_seq = 3;
    win.resp_seq = 2;
    win.req_len = 40;
    win.resp_len = 72;
    let win_hybrid = WindowsShmHeader::new(PROFILE_HYBRID, layout_for_limits(64, 64).unwrap());
    // windows_region: a control byte (see the target), then a whole region
    // as a server creates it, or one with a response published into it.
    let win_region = |control: u8, header: &WindowsShmHeader| {
        let mut b = vec![control];
        b.extend_from_slice(&header.encode());
        b.resize(1 + header.layout.file_size() as usize, 0);
        let off = 1 + header.layout.response_offset as usize;
        let len = usize::try_from(header.resp_len.max(0)).unwrap();
        b[off..off + len].fill(0x5a);
        b
    };
    let win_fresh_busy =
        WindowsShmHeader::new(PROFILE_BUSYWAIT, layout_for_limits(1024, 1024).unwrap());
    let mut win_hybrid_response = win_hybrid;
    win_hybrid_response.resp_len = 72;
    win_hybrid_response.resp_seq = 6;
    win_hybrid_response.req_seq = 6;
    win_hybrid_response.req_len = 40;
    let mut win_busy_closed = win_fresh_busy;
    win_busy_closed.resp_server_closed = 1;
    vec![
        ("posix_header", "appendix_a_capture", hex(APPENDIX_A_HEADER)),
        ("posix_header", "fresh", posix.encode().to_vec()),
        ("posix_region", "fresh_1024", region),
        ("posix_region", "one_request", region_with_request),
        ("windows_header", "fresh", win_fresh),
        ("windows_header", "in_use", win.encode().to_vec()),
        (
            "windows_header",
            "hybrid_small",
            win_hybrid.encode().to_vec(),
        ),
        // BUSYWAIT, nothing published, a send of the whole capacity.
        (
            "windows_region",
            "fresh_busywait",
            win_region(0x01, &win_fresh_busy),
        ),
        // HYBRID, a 72-byte response published after attach, a 40-byte send.
        (
            "windows_region",
            "hybrid_response",
            win_region(0x02 | 5 << 2, &win_hybrid_response),
        ),
        // BUSYWAIT, the server has closed, a send of one byte too many.
        (
            "windows_region",
            "server_closed",
            win_region(0x01 | 1 << 2, &win_busy_closed),
        ),
    ]
}

/// The seeds are what they claim to be: valid headers.
#[test]
fn the_seeds_decode() {
    for (target, name, bytes) in seeds() {
        let ok = match target {
            "posix_header" | "posix_region" => PosixShmHeader::decode(&bytes).is_ok(),
            "windows_header" => WindowsShmHeader::decode(&bytes).is_ok(),
            "windows_region" => WindowsShmHeader::decode(&bytes[1..]).is_ok(),
            _ => false,
        };
        assert!(ok, "seed {target}/{name} does not decode");
    }
}

/// Every fuzz target starts from a committed corpus, not from nothing.
#[test]
fn every_fuzz_target_has_a_committed_corpus() {
    let targets = targets();
    assert!(!targets.is_empty(), "no [[bin]] in fuzz/Cargo.toml");
    let missing: Vec<_> = targets
        .iter()
        .filter(|t| {
            std::fs::read_dir(fuzz_dir().join("seeds").join(t)).map_or(0, |d| d.count()) == 0
        })
        .collect();
    assert!(
        missing.is_empty(),
        "fuzz targets without a committed corpus in fuzz/seeds/: {missing:?}; run \
         `cargo test -p pipewright-shm --test fuzz_seeds -- --ignored` (fuzz/README.md)"
    );
}

/// Writes the seeds into `fuzz/seeds/<target>/<name>`.
#[test]
#[ignore = "writes the fuzz seeds into the source tree; run by hand (fuzz/README.md)"]
fn write_fuzz_seeds() {
    let targets = targets();
    for (target, name, bytes) in seeds() {
        assert!(
            targets.iter().any(|t| t == target),
            "{target} is not a fuzz target"
        );
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        println!("wrote {target}/{name}");
    }
}
