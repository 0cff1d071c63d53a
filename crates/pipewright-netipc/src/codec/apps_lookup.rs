//! APPS_LOOKUP (method 5): look processes up by pid.
//!
//! Request keys are 8 bytes each, `{u32 pid, u32 reserved = 0}`; zero keys is
//! a valid probe. Each response item has a 60-byte header (`u16
//! layout_version, u16 status, u16 orchestrator, u16 cgroup_status, u32 pid,
//! u32 ppid, u32 uid, u32 reserved0, u64 starttime, u32 comm_off, u32
//! comm_len, u32 cgroup_path_off, u32 cgroup_path_len, u32 cgroup_name_off,
//! u32 cgroup_name_len, u16 label_count, u16 reserved1`; 60 bytes, not C's
//! padded 64), then its strings and labels (see [`super::lookup`]).
//!
//! ```
//! use pipewright_netipc::codec::apps_lookup::{AppInfo, LookupResponse, PidStatus, Request};
//! let req = Request { pids: vec![1, 4242] };
//! assert_eq!(Request::decode(&req.encode().unwrap()).unwrap(), req);
//! let resp = LookupResponse { generation: 3, items: vec![AppInfo::unknown(4242, PidStatus::Unknown)] };
//! assert_eq!(LookupResponse::decode(&resp.encode().unwrap()).unwrap(), resp);
//! ```

use super::lookup::{
    self, decode_envelope, decode_item_body, encode_envelope, encode_item_body, request_tail_ok,
    Label, LookupItem, LAYOUT_VERSION,
};
use super::{expect, need, CodecError};
use crate::wire::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

/// Item header size.
pub const ITEM_HEADER_LEN: usize = 60;
/// Request key size.
pub const KEY_LEN: usize = 8;
/// Longest `comm` (the kernel's 16-byte task name without its NUL).
pub const MAX_COMM_LEN: u32 = 15;
/// `uid` when it is not known.
pub const UID_UNSET: u32 = 0xFFFF_FFFF;

const REQ: &str = "APPS_LOOKUP request";
const RESP: &str = "APPS_LOOKUP response";
const ITEM: &str = "APPS_LOOKUP item";

/// What the provider knows about the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PidStatus {
    /// Known.
    Known,
    /// No such process known.
    Unknown,
    /// The response ran out of room here: ask again from this item on.
    PayloadExceeded,
    /// This item alone is larger than a response may be.
    OversizedItem,
    /// A status this codec does not know (kept, not rejected).
    Other(u16),
}

impl PidStatus {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            PidStatus::Known => 0,
            PidStatus::Unknown => 1,
            PidStatus::PayloadExceeded => 2,
            PidStatus::OversizedItem => 3,
            PidStatus::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_code(v: u16) -> PidStatus {
        match v {
            0 => PidStatus::Known,
            1 => PidStatus::Unknown,
            2 => PidStatus::PayloadExceeded,
            3 => PidStatus::OversizedItem,
            v => PidStatus::Other(v),
        }
    }
}

/// The wire name (`KNOWN`, ...); a status this codec does not know prints as
/// its number.
impl std::fmt::Display for PidStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            PidStatus::Known => "KNOWN",
            PidStatus::Unknown => "UNKNOWN",
            PidStatus::PayloadExceeded => "PAYLOAD_EXCEEDED",
            PidStatus::OversizedItem => "OVERSIZED_ITEM",
            PidStatus::Other(v) => return write!(f, "{v}"),
        };
        f.write_str(name)
    }
}

/// What the provider knows about the process's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupStatus {
    /// Known.
    Known,
    /// Not known yet; ask again later.
    UnknownRetryLater,
    /// Not known and never will be.
    UnknownPermanent,
    /// The process lives in the host's root cgroup.
    HostRoot,
    /// A status this codec does not know (kept, not rejected).
    Other(u16),
}

impl CgroupStatus {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            CgroupStatus::Known => 0,
            CgroupStatus::UnknownRetryLater => 1,
            CgroupStatus::UnknownPermanent => 2,
            CgroupStatus::HostRoot => 3,
            CgroupStatus::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_code(v: u16) -> CgroupStatus {
        match v {
            0 => CgroupStatus::Known,
            1 => CgroupStatus::UnknownRetryLater,
            2 => CgroupStatus::UnknownPermanent,
            3 => CgroupStatus::HostRoot,
            v => CgroupStatus::Other(v),
        }
    }
}

/// The wire name (`KNOWN`, ...); a status this codec does not know prints as
/// its number.
impl std::fmt::Display for CgroupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            CgroupStatus::Known => "KNOWN",
            CgroupStatus::UnknownRetryLater => "UNKNOWN_RETRY_LATER",
            CgroupStatus::UnknownPermanent => "UNKNOWN_PERMANENT",
            CgroupStatus::HostRoot => "HOST_ROOT",
            CgroupStatus::Other(v) => return write!(f, "{v}"),
        };
        f.write_str(name)
    }
}

/// A lookup request: the pids to look up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Process ids.
    pub pids: Vec<u32>,
}

impl Request {
    /// Encodes the request.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let keys: Vec<Vec<u8>> = self
            .pids
            .iter()
            .map(|&pid| {
                let mut k = vec![0u8; KEY_LEN];
                put_u32(&mut k, 0, pid);
                k
            })
            .collect();
        encode_envelope(REQ, [0; 8], &keys)
    }

    /// Strict decode: every key is exactly 8 bytes with a zero reserved word.
    pub fn decode(payload: &[u8]) -> Result<Request, CodecError> {
        let env = decode_envelope(REQ, payload)?;
        request_tail_ok(REQ, env.tail)?;
        let mut pids = Vec::with_capacity(env.items.len());
        for key in env.items {
            expect(REQ, "key length", key.len() as u64, KEY_LEN as u64)?;
            expect(REQ, "key reserved", get_u32(key, 4).into(), 0)?;
            pids.push(get_u32(key, 0));
        }
        Ok(Request { pids })
    }
}

/// One response item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppInfo {
    /// Status of the process lookup.
    pub status: PidStatus,
    /// Orchestrator code of its cgroup (0 unknown .. 7 nspawn).
    pub orchestrator: u16,
    /// Status of the cgroup lookup.
    pub cgroup_status: CgroupStatus,
    /// The process id asked for.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// User id, [`UID_UNSET`] when not known.
    pub uid: u32,
    /// Start time in jiffies.
    pub starttime: u64,
    /// Task name (at most 15 bytes).
    pub comm: Vec<u8>,
    /// Cgroup path.
    pub cgroup_path: Vec<u8>,
    /// Cgroup display name.
    pub cgroup_name: Vec<u8>,
    /// Labels of the cgroup.
    pub labels: Vec<Label>,
}

impl AppInfo {
    /// An item carrying only the pid and a status.
    pub fn unknown(pid: u32, status: PidStatus) -> AppInfo {
        AppInfo {
            status,
            orchestrator: 0,
            cgroup_status: CgroupStatus::UnknownPermanent,
            pid,
            ppid: 0,
            uid: UID_UNSET,
            starttime: 0,
            comm: Vec::new(),
            cgroup_path: Vec::new(),
            cgroup_name: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl LookupItem for AppInfo {
    const RESPONSE: &'static str = RESP;

    fn is_payload_exceeded(&self) -> bool {
        self.status == PidStatus::PayloadExceeded
    }

    fn encode_item(&self) -> Result<Vec<u8>, CodecError> {
        if self.comm.len() > MAX_COMM_LEN as usize {
            return Err(CodecError::TooLarge {
                what: ITEM,
                field: "comm (at most 15 bytes)",
                value: self.comm.len() as u64,
            });
        }
        let (mut out, offs) = encode_item_body(
            ITEM,
            ITEM_HEADER_LEN,
            &[&self.comm, &self.cgroup_path, &self.cgroup_name],
            &self.labels,
        )?;
        put_u16(&mut out, 0, LAYOUT_VERSION);
        put_u16(&mut out, 2, self.status.code());
        put_u16(&mut out, 4, self.orchestrator);
        put_u16(&mut out, 6, self.cgroup_status.code());
        put_u32(&mut out, 8, self.pid);
        put_u32(&mut out, 12, self.ppid);
        put_u32(&mut out, 16, self.uid);
        put_u64(&mut out, 24, self.starttime);
        put_u32(&mut out, 32, offs[0]);
        put_u32(&mut out, 36, self.comm.len() as u32);
        put_u32(&mut out, 40, offs[1]);
        put_u32(&mut out, 44, self.cgroup_path.len() as u32);
        put_u32(&mut out, 48, offs[2]);
        put_u32(&mut out, 52, self.cgroup_name.len() as u32);
        put_u16(&mut out, 56, self.labels.len() as u16);
        Ok(out)
    }

    fn decode_item(item: &[u8]) -> Result<AppInfo, CodecError> {
        need(ITEM, item, ITEM_HEADER_LEN)?;
        expect(
            ITEM,
            "layout_version",
            get_u16(item, 0).into(),
            LAYOUT_VERSION.into(),
        )?;
        expect(ITEM, "reserved0", get_u32(item, 20).into(), 0)?;
        expect(ITEM, "reserved1", get_u16(item, 58).into(), 0)?;
        let comm_len = get_u32(item, 36);
        if comm_len > MAX_COMM_LEN {
            return Err(CodecError::BadLayout {
                what: ITEM,
                field: "comm_len (at most 15)",
                found: comm_len.into(),
                expected: MAX_COMM_LEN.into(),
            });
        }
        let (strings, labels) = decode_item_body(
            ITEM,
            item,
            ITEM_HEADER_LEN,
            &[
                ("comm", get_u32(item, 32), comm_len),
                ("cgroup_path", get_u32(item, 40), get_u32(item, 44)),
                ("cgroup_name", get_u32(item, 48), get_u32(item, 52)),
            ],
            get_u16(item, 56),
        )?;
        Ok(AppInfo {
            status: PidStatus::from_code(get_u16(item, 2)),
            orchestrator: get_u16(item, 4),
            cgroup_status: CgroupStatus::from_code(get_u16(item, 6)),
            pid: get_u32(item, 8),
            ppid: get_u32(item, 12),
            uid: get_u32(item, 16),
            starttime: get_u64(item, 24),
            comm: strings[0].to_vec(),
            cgroup_path: strings[1].to_vec(),
            cgroup_name: strings[2].to_vec(),
            labels,
        })
    }
}

/// A lookup response: one item per requested pid, in request order.
pub type LookupResponse = lookup::LookupResponse<AppInfo>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_their_wire_names() {
        let pid: Vec<String> = (0..5)
            .map(|c| PidStatus::from_code(c).to_string())
            .collect();
        assert_eq!(
            pid,
            [
                "KNOWN",
                "UNKNOWN",
                "PAYLOAD_EXCEEDED",
                "OVERSIZED_ITEM",
                "4"
            ]
        );
        let cg: Vec<String> = (0..5)
            .map(|c| CgroupStatus::from_code(c).to_string())
            .collect();
        assert_eq!(
            cg,
            [
                "KNOWN",
                "UNKNOWN_RETRY_LATER",
                "UNKNOWN_PERMANENT",
                "HOST_ROOT",
                "4"
            ]
        );
    }

    fn known() -> AppInfo {
        AppInfo {
            status: PidStatus::Known,
            orchestrator: 2,
            cgroup_status: CgroupStatus::Known,
            pid: 4242,
            ppid: 1,
            uid: 1000,
            starttime: 123_456_789,
            comm: b"netdata".to_vec(),
            cgroup_path: b"/sys/fs/cgroup/system.slice/netdata.service".to_vec(),
            cgroup_name: b"netdata.service".to_vec(),
            labels: vec![Label::new("unit", "netdata.service")],
        }
    }

    #[test]
    fn request_bytes_and_rejections() {
        let r = Request {
            pids: vec![7, 0x0102_0304],
        };
        let b = r.encode().unwrap();
        assert_eq!(b.len(), 16 + 16 + 16);
        assert_eq!(&b[32..40], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[40..44], &[4, 3, 2, 1]);
        assert_eq!(Request::decode(&b).unwrap(), r);
        let mut bad = b.clone();
        bad[36] = 1; // key reserved word
        assert!(Request::decode(&bad).is_err());
        let mut bad = b.clone();
        put_u32(&mut bad, 20, 7); // key length 7
        assert!(Request::decode(&bad).is_err());
        for cut in 0..b.len() {
            assert!(Request::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn response_layout_round_trip_and_rejections() {
        let s = LookupResponse {
            generation: 99,
            items: vec![known(), AppInfo::unknown(5, PidStatus::Unknown)],
        };
        let b = s.encode().unwrap();
        assert_eq!(LookupResponse::decode(&b).unwrap(), s);
        let item = 16 + 16;
        assert_eq!(get_u32(&b, item + 8), 4242);
        assert_eq!(get_u64(&b, item + 24), 123_456_789);
        assert_eq!(
            get_u32(&b, item + 32),
            60,
            "comm right after the 60-byte header"
        );
        let mut bad = b.clone();
        put_u32(&mut bad, item + 36, 16); // comm_len over 15
        assert!(matches!(
            LookupResponse::decode(&bad),
            Err(CodecError::BadLayout { .. })
        ));
        let mut bad = b.clone();
        bad[item + 20] = 1; // reserved0
        assert!(LookupResponse::decode(&bad).is_err());
        let mut bad = b.clone();
        put_u32(&mut bad, item + 40, 60); // cgroup path on top of comm
        put_u32(&mut bad, item + 44, 7);
        assert!(LookupResponse::decode(&bad).is_err());
        for cut in 0..b.len() {
            assert!(LookupResponse::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = known();
        long.comm = b"sixteen-bytes-xx".to_vec();
        assert!(LookupResponse {
            generation: 0,
            items: vec![long]
        }
        .encode()
        .is_err());
    }

    #[test]
    fn exceeded_marks_the_suffix() {
        let s = LookupResponse {
            generation: 1,
            items: vec![known(), AppInfo::unknown(9, PidStatus::PayloadExceeded)],
        };
        assert_eq!(s.exceeded_from(), Some(1));
    }
}
