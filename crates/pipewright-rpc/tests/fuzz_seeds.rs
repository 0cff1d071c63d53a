//! The fuzz targets' committed corpus (`fuzz/seeds/<target>/`; the fuzz runner,
//! `scripts/fuzz.sh`, fails for a target without one): [`write_fuzz_seeds`] regenerates the
//! seeds from the wire examples of the crate docs (requests and answers, well-formed and not).
//!
//! To refresh the corpus: write the seeds, fuzz, then minimize (see `fuzz/README.md`):
//!
//! ```text
//! cargo test -p pipewright-rpc --test fuzz_seeds -- --ignored
//! crates/pipewright-rpc/fuzz/run.sh 60
//! scripts/fuzz.sh minimize crates/pipewright-rpc/fuzz
//! ```
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Frames each body: a 4-byte little-endian length, then the body.
fn frames(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// `(target, name, bytes)` for every seed. Server seeds start with the target's control
/// byte (read size - 1 in bits 0-5, bit 6 for the 64-byte frame limit).
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let server = |control: u8, stream: Vec<u8>| {
        let mut b = vec![control];
        b.extend(stream);
        b
    };
    let mut truncated = frames(&[br#"{"method":"Echo","params":{"payload":"hi"},"id":7}"#]);
    truncated.truncate(20);
    vec![
        (
            "server_requests",
            "golden_factorial",
            server(63, frames(&[br#"{"method":"Factorial","params":{"n":5}}"#])),
        ),
        (
            "server_requests",
            "pipelined_with_ids",
            server(
                2,
                frames(&[
                    br#"{"method":"Echo","params":{"payload":"hi"},"id":7}"#,
                    br#"{"method":"Reverse","params":{"text":"abc"},"id":8}"#,
                    br#"{"method":"Raw","params":{"a":[1,2,{"b":null}]},"id":9}"#,
                    br#"{"method":"Factorial","params":{"n":21}}"#,
                ]),
            ),
        ),
        (
            "server_requests",
            "bad_requests",
            server(
                15,
                frames(&[
                    b"{not json",
                    br#"{"params":{},"id":4}"#,
                    br#"{"method":"Nope","id":"x"}"#,
                    b"[1,2]",
                    b"",
                ]),
            ),
        ),
        (
            "server_requests",
            "oversize_then_good",
            server(
                0x40 | 7,
                frames(&[&[b'x'; 100], br#"{"method":"Factorial","params":{"n":3}}"#]),
            ),
        ),
        ("server_requests", "truncated", server(3, truncated)),
        (
            "client_answers",
            "golden_answer",
            frames(&[br#"{"status":"Ok","params":{"Number":120}}"#]),
        ),
        (
            "client_answers",
            "answers_with_ids",
            frames(&[
                br#"{"status":"Ok","params":{"Json":"hi"},"id":7}"#,
                br#"{"status":"Err","params":"no such method","id":8}"#,
                br#"{"status":"Ok","id":9}"#,
            ]),
        ),
        (
            "client_answers",
            "bad_answer",
            frames(&[br#"{"status":"Maybe","params":1}"#]),
        ),
    ]
}

/// The seeds are what they claim: whole frames after the control byte, except the one
/// cut short on purpose.
#[test]
fn the_seeds_are_frames() {
    for (target, name, bytes) in seeds() {
        let mut rest = if target == "server_requests" {
            &bytes[1..]
        } else {
            &bytes[..]
        };
        let mut whole = true;
        while !rest.is_empty() {
            let Some(header) = rest.first_chunk::<4>() else {
                whole = false;
                break;
            };
            let len = u32::from_le_bytes(*header) as usize;
            if rest.len() < 4 + len {
                whole = false;
                break;
            }
            rest = &rest[4 + len..];
        }
        assert_eq!(whole, name != "truncated", "seed {target}/{name}");
    }
}

/// Writes the seeds into `fuzz/seeds/<target>/<name>`.
#[test]
#[ignore = "writes the fuzz seeds into the source tree; run by hand (fuzz/README.md)"]
fn write_fuzz_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        println!("wrote {target}/{name}");
    }
}
