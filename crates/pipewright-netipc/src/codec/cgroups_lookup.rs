//! CGROUPS_LOOKUP (method 4): look cgroups up by path.
//!
//! Request keys are cgroup paths with their NUL (directory length includes the
//! NUL, at least 2, no interior NUL); zero keys is a valid probe. Each response
//! item has a 28-byte header (`u16 layout_version, u16 status, u16
//! orchestrator, u16 reserved0, u32 path_off, u32 path_len, u32 name_off, u32
//! name_len, u16 label_count, u16 reserved1`), then its strings and labels
//! (see [`super::lookup`]).
//!
//! ```
//! use pipewright_netipc::codec::cgroups_lookup::{CgroupInfo, LookupResponse, Request, Status};
//! let req = Request { paths: vec![b"/sys/fs/cgroup/system.slice".to_vec()] };
//! assert_eq!(Request::decode(&req.encode().unwrap()).unwrap(), req);
//! let resp = LookupResponse { generation: 7, items: vec![CgroupInfo::unknown(Status::UnknownPermanent)] };
//! assert_eq!(LookupResponse::decode(&resp.encode().unwrap()).unwrap(), resp);
//! ```

use super::lookup::{
    self, decode_envelope, decode_item_body, encode_envelope, encode_item_body, request_tail_ok,
    Label, LookupItem, LAYOUT_VERSION,
};
use super::{expect, need, CodecError};
use crate::wire::bytes::{get_u16, get_u32, put_u16, put_u32};

/// Item header size.
pub const ITEM_HEADER_LEN: usize = 28;

const REQ: &str = "CGROUPS_LOOKUP request";
const RESP: &str = "CGROUPS_LOOKUP response";
const ITEM: &str = "CGROUPS_LOOKUP item";

/// What the provider knows about one requested path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Known: path, name and labels are filled in.
    Known,
    /// Not known yet; ask again later.
    UnknownRetryLater,
    /// Not known and never will be.
    UnknownPermanent,
    /// The response ran out of room here: this and later items must be asked
    /// for again (the client stitches the answers).
    PayloadExceeded,
    /// This one item alone is larger than a response may be.
    OversizedItem,
    /// A status this codec does not know (kept, not rejected).
    Other(u16),
}

impl Status {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            Status::Known => 0,
            Status::UnknownRetryLater => 1,
            Status::UnknownPermanent => 2,
            Status::PayloadExceeded => 3,
            Status::OversizedItem => 4,
            Status::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_code(v: u16) -> Status {
        match v {
            0 => Status::Known,
            1 => Status::UnknownRetryLater,
            2 => Status::UnknownPermanent,
            3 => Status::PayloadExceeded,
            4 => Status::OversizedItem,
            v => Status::Other(v),
        }
    }
}

/// The wire name (`KNOWN`, ...); a status this codec does not know prints as
/// its number.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Status::Known => "KNOWN",
            Status::UnknownRetryLater => "UNKNOWN_RETRY_LATER",
            Status::UnknownPermanent => "UNKNOWN_PERMANENT",
            Status::PayloadExceeded => "PAYLOAD_EXCEEDED",
            Status::OversizedItem => "OVERSIZED_ITEM",
            Status::Other(v) => return write!(f, "{v}"),
        };
        f.write_str(name)
    }
}

/// The container orchestrator behind a cgroup (0 unknown .. 7 nspawn; other
/// values are kept as they are).
pub type Orchestrator = u16;

/// A lookup request: the cgroup paths to look up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Paths without NUL.
    pub paths: Vec<Vec<u8>>,
}

impl Request {
    /// Encodes the request. A path that is empty or contains a NUL is refused.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut keys = Vec::with_capacity(self.paths.len());
        for p in &self.paths {
            if p.is_empty() || p.contains(&0) {
                return Err(CodecError::BadLayout {
                    what: REQ,
                    field: "path (empty or with a NUL)",
                    found: p.len() as u64,
                    expected: 1,
                });
            }
            let mut k = p.clone();
            k.push(0);
            keys.push(k);
        }
        encode_envelope(REQ, [0; 8], &keys)
    }

    /// Strict decode.
    pub fn decode(payload: &[u8]) -> Result<Request, CodecError> {
        let env = decode_envelope(REQ, payload)?;
        request_tail_ok(REQ, env.tail)?;
        let mut paths = Vec::with_capacity(env.items.len());
        for key in env.items {
            if key.len() < 2 {
                return Err(CodecError::BadLayout {
                    what: REQ,
                    field: "key length (path + NUL)",
                    found: key.len() as u64,
                    expected: 2,
                });
            }
            let (path, nul) = key.split_at(key.len() - 1);
            if nul != [0] {
                return Err(CodecError::MissingNul {
                    what: REQ,
                    field: "path",
                });
            }
            if path.contains(&0) {
                return Err(CodecError::BadLayout {
                    what: REQ,
                    field: "path (interior NUL)",
                    found: 0,
                    expected: 1,
                });
            }
            paths.push(path.to_vec());
        }
        Ok(Request { paths })
    }
}

/// One response item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupInfo {
    /// Lookup status.
    pub status: Status,
    /// Orchestrator code.
    pub orchestrator: Orchestrator,
    /// The cgroup's path.
    pub path: Vec<u8>,
    /// Its display name.
    pub name: Vec<u8>,
    /// Its labels.
    pub labels: Vec<Label>,
}

impl CgroupInfo {
    /// An item that carries only a status (empty strings, no labels).
    pub fn unknown(status: Status) -> CgroupInfo {
        CgroupInfo {
            status,
            orchestrator: 0,
            path: Vec::new(),
            name: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl LookupItem for CgroupInfo {
    const RESPONSE: &'static str = RESP;

    fn is_payload_exceeded(&self) -> bool {
        self.status == Status::PayloadExceeded
    }

    fn encode_item(&self) -> Result<Vec<u8>, CodecError> {
        let (mut out, offs) = encode_item_body(
            ITEM,
            ITEM_HEADER_LEN,
            &[&self.path, &self.name],
            &self.labels,
        )?;
        put_u16(&mut out, 0, LAYOUT_VERSION);
        put_u16(&mut out, 2, self.status.code());
        put_u16(&mut out, 4, self.orchestrator);
        put_u32(&mut out, 8, offs[0]);
        put_u32(&mut out, 12, self.path.len() as u32);
        put_u32(&mut out, 16, offs[1]);
        put_u32(&mut out, 20, self.name.len() as u32);
        put_u16(&mut out, 24, self.labels.len() as u16);
        Ok(out)
    }

    fn decode_item(item: &[u8]) -> Result<CgroupInfo, CodecError> {
        need(ITEM, item, ITEM_HEADER_LEN)?;
        expect(
            ITEM,
            "layout_version",
            get_u16(item, 0).into(),
            LAYOUT_VERSION.into(),
        )?;
        expect(ITEM, "reserved0", get_u16(item, 6).into(), 0)?;
        expect(ITEM, "reserved1", get_u16(item, 26).into(), 0)?;
        let (strings, labels) = decode_item_body(
            ITEM,
            item,
            ITEM_HEADER_LEN,
            &[
                ("path", get_u32(item, 8), get_u32(item, 12)),
                ("name", get_u32(item, 16), get_u32(item, 20)),
            ],
            get_u16(item, 24),
        )?;
        Ok(CgroupInfo {
            status: Status::from_code(get_u16(item, 2)),
            orchestrator: get_u16(item, 4),
            path: strings[0].to_vec(),
            name: strings[1].to_vec(),
            labels,
        })
    }
}

/// A lookup response: one item per requested path, in request order.
pub type LookupResponse = lookup::LookupResponse<CgroupInfo>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::bytes::put_u32;

    #[test]
    fn statuses_print_their_wire_names() {
        let names: Vec<String> = (0..6).map(|c| Status::from_code(c).to_string()).collect();
        let expected = [
            "KNOWN",
            "UNKNOWN_RETRY_LATER",
            "UNKNOWN_PERMANENT",
            "PAYLOAD_EXCEEDED",
            "OVERSIZED_ITEM",
            "5",
        ];
        assert_eq!(names, expected);
    }

    fn sample() -> LookupResponse {
        LookupResponse {
            generation: 0x0102_0304_0506_0708,
            items: vec![
                CgroupInfo {
                    status: Status::Known,
                    orchestrator: 3,
                    path: b"/sys/fs/cgroup/kubepods/pod1".to_vec(),
                    name: b"k8s_web".to_vec(),
                    labels: vec![Label::new("namespace", "prod"), Label::new("pod", "web-0")],
                },
                CgroupInfo::unknown(Status::UnknownRetryLater),
                CgroupInfo::unknown(Status::Other(77)),
            ],
        }
    }

    #[test]
    fn request_bytes_and_round_trip() {
        let r = Request {
            paths: vec![b"/a".to_vec(), b"/bcdefghij".to_vec()],
        };
        let b = r.encode().unwrap();
        // header, 2 directory entries, "/a\0" at 0, "/bcdefghij\0" at 8.
        assert_eq!(&b[..16], &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &b[16..32],
            &[0, 0, 0, 0, 3, 0, 0, 0, 8, 0, 0, 0, 11, 0, 0, 0]
        );
        assert_eq!(&b[32..35], b"/a\0");
        assert_eq!(&b[35..40], &[0; 5], "zero padding");
        assert_eq!(Request::decode(&b).unwrap(), r);
        let probe = Request::default().encode().unwrap();
        assert_eq!(probe.len(), 16);
        assert_eq!(Request::decode(&probe).unwrap(), Request::default());
    }

    #[test]
    fn request_rejections() {
        assert!(Request {
            paths: vec![Vec::new()]
        }
        .encode()
        .is_err());
        assert!(Request {
            paths: vec![b"a\0b".to_vec()]
        }
        .encode()
        .is_err());
        let good = Request {
            paths: vec![b"/ab".to_vec()],
        }
        .encode()
        .unwrap();
        let mut bad = good.clone();
        put_u32(&mut bad, 20, 1); // length 1: only a NUL
        assert!(Request::decode(&bad).is_err());
        let mut bad = good.clone();
        bad[27] = b'x'; // no NUL (one key: the packed area starts at 24)
        assert!(matches!(
            Request::decode(&bad),
            Err(CodecError::MissingNul { .. })
        ));
        let mut bad = good.clone();
        bad[25] = 0; // interior NUL
        assert!(Request::decode(&bad).is_err());
        let mut bad = good;
        bad[8] = 1; // reserved0
        assert!(matches!(
            Request::decode(&bad),
            Err(CodecError::BadLayout { .. })
        ));
    }

    #[test]
    fn response_round_trip_and_rejections() {
        let s = sample();
        let b = s.encode().unwrap();
        assert_eq!(LookupResponse::decode(&b).unwrap(), s);
        assert_eq!(s.exceeded_from(), None);
        let first_item = 16 + 8 * 3;
        assert_eq!(
            get_u32(&b, first_item + 8),
            28,
            "path right after the header"
        );
        let mut bad = b.clone();
        bad[first_item + 6] = 1; // reserved0
        assert!(LookupResponse::decode(&bad).is_err());
        let mut bad = b.clone();
        bad[first_item + 26] = 1; // reserved1
        assert!(LookupResponse::decode(&bad).is_err());
        let mut bad = b.clone();
        put_u32(&mut bad, first_item + 12, 1000); // path length past the item
        assert!(matches!(
            LookupResponse::decode(&bad),
            Err(CodecError::OutOfBounds { .. })
        ));
        for cut in 0..b.len() {
            assert!(LookupResponse::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn exceeded_marks_the_suffix() {
        let mut s = sample();
        s.items[1] = CgroupInfo::unknown(Status::PayloadExceeded);
        s.items[2] = CgroupInfo::unknown(Status::PayloadExceeded);
        assert_eq!(s.exceeded_from(), Some(1));
    }
}
