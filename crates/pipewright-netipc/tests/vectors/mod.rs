//! The protocol's Appendix A vectors in its hex notation, and sample lookup
//! answers, shared by the tests that check, mutate and seed the fuzzers with them.
#![allow(dead_code)] // each test file uses a part

use pipewright_netipc::codec::lookup::Label;
use pipewright_netipc::codec::{apps_lookup, cgroups_lookup};

/// Parses the appendix notation: hex digits grouped by spaces, `|` separators.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub const HEADER_BIN: &str =
    "4350494e 0100 2000 0100 0100 0200 0000 39300000 2a000000 bebafecaefbeadde";
pub const CHUNK_BIN: &str =
    "4b48434e 0100 0000 efcdab9078563412 a0860100 03000000 0a000000 00200000";
pub const HELLO_BIN: &str =
    "0100 0000 05000000 04000000 00100000 64000000 00001000 01000000 00000000 1100ffeeddccbbaa 00000100";
pub const HELLO_ACK_BIN: &str = "0100 0000 07000000 05000000 04000000 00080000 32000000 00000100 01000000 00800000 00000000 0100000000000000";
pub const LIVE_HELLO: &str = "4350494e 0100 2000 0300 0000 0100 0000 2c000000 01000000 0000000000000000 | 0100 0000 01000000 01000000 00000100 10000000 00000100 10000000 00000000 bebafecaefbeadde 00000100";
pub const LIVE_HELLO_ACK: &str = "4350494e 0100 2000 0300 0000 0200 0000 30000000 01000000 0000000000000000 | 0100 0000 01000000 01000000 01000000 00000100 10000000 00000100 10000000 00000100 00000000 0000000000000000";
pub const SHM_HEADER: &str = "4d48534e 0300 4000 41320000 6e030800 40000000 40100000 80100000 40000100 0100000000000000 0100000000000000 24000000 39010000 01000000 01000000";
pub const SHM_REQUEST_AREA: &str =
    "4350494e 0100 2000 0100 0000 0200 0000 04000000 01000000 0100000000000000 01000000";

/// A cgroups lookup answer with a known and an unknown item.
pub fn cgroups_lookup_response() -> cgroups_lookup::LookupResponse {
    cgroups_lookup::LookupResponse {
        generation: 9,
        items: vec![
            cgroups_lookup::CgroupInfo {
                status: cgroups_lookup::Status::Known,
                orchestrator: 2,
                path: b"/sys/fs/cgroup/kubepods/pod1".to_vec(),
                name: b"web-0".to_vec(),
                labels: vec![Label::new("io.kubernetes.pod.name", "web-0")],
            },
            cgroups_lookup::CgroupInfo::unknown(cgroups_lookup::Status::PayloadExceeded),
        ],
    }
}

/// An apps lookup answer with a known and an unknown process.
pub fn apps_lookup_response() -> apps_lookup::LookupResponse {
    apps_lookup::LookupResponse {
        generation: 4,
        items: vec![
            apps_lookup::AppInfo {
                status: apps_lookup::PidStatus::Known,
                orchestrator: 1,
                cgroup_status: apps_lookup::CgroupStatus::Known,
                pid: 4242,
                ppid: 1,
                uid: 1000,
                starttime: 123_456,
                comm: b"netdata".to_vec(),
                cgroup_path: b"/system.slice/netdata.service".to_vec(),
                cgroup_name: b"netdata".to_vec(),
                labels: vec![Label::new("unit", "netdata.service"), Label::new("k", "")],
            },
            apps_lookup::AppInfo::unknown(7, apps_lookup::PidStatus::Unknown),
        ],
    }
}
