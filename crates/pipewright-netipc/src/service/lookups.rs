//! L2 for the lookup methods (CGROUPS_LOOKUP, APPS_LOOKUP): a service that
//! fits its answer into the response limit, marking what did not fit, and a
//! client call that asks again for the rest and stitches the answers.
//!
//! The server answers keys in order; when the response limit is reached, the
//! remaining items carry `PAYLOAD_EXCEEDED` and the client repeats the request
//! for that suffix with ordinary calls. An item that cannot fit even alone is
//! answered `OVERSIZED_ITEM`. Every partial answer must carry the same
//! `generation`.
//!
//! ```no_run
//! # async fn demo(client: &mut pipewright_netipc::client::Client) -> Result<(), pipewright_netipc::client::ClientError> {
//! use pipewright_netipc::lookups::{call_stitched, CgroupsLookup};
//! let paths = vec![b"/sys/fs/cgroup/system.slice".to_vec()];
//! let (generation, items) = call_stitched::<CgroupsLookup>(client, &paths).await?;
//! println!("generation {generation}: {} items", items.len());
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;

use crate::codec::apps_lookup::{self, AppInfo, PidStatus};
use crate::codec::cgroups_lookup::{self, CgroupInfo, Status};
use crate::codec::lookup::{LookupItem, LookupResponse};
use crate::codec::CodecError;
use crate::service::client::{Client, ClientError};
use crate::service::{Service, ServiceError};
use crate::session::SessionError;
use crate::wire::header::method;

/// Most partial calls one stitched lookup makes.
pub const MAX_SUBCALLS: usize = 4096;

/// What distinguishes the two lookup methods.
pub trait LookupMethod: Send + Sync + 'static {
    /// The request key.
    type Key: Clone + Send + Sync;
    /// The response item.
    type Item: LookupItem + Clone + Send + Sync;
    /// The method code.
    const METHOD: u16;
    /// Bytes the smallest item (a status-only placeholder) takes in a
    /// response, rounded up to 8: bounds how many keys one call may carry.
    const PLACEHOLDER_LEN: usize;
    /// Encodes a request for `keys`.
    fn encode_request(keys: &[Self::Key]) -> Result<Vec<u8>, CodecError>;
    /// Decodes a request.
    fn decode_request(payload: &[u8]) -> Result<Vec<Self::Key>, CodecError>;
    /// The item for a key that did not fit this response.
    fn exceeded(key: &Self::Key) -> Self::Item;
    /// The item for a key whose answer cannot fit any response.
    fn oversized(key: &Self::Key) -> Self::Item;

    /// Encodes a response.
    fn encode_response(generation: u64, items: &[Self::Item]) -> Result<Vec<u8>, CodecError> {
        LookupResponse {
            generation,
            items: items.to_vec(),
        }
        .encode()
    }

    /// Decodes a response into its generation and items.
    fn decode_response(payload: &[u8]) -> Result<(u64, Vec<Self::Item>), CodecError> {
        let r = LookupResponse::<Self::Item>::decode(payload)?;
        Ok((r.generation, r.items))
    }
}

/// CGROUPS_LOOKUP: keys are cgroup paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupsLookup;

impl LookupMethod for CgroupsLookup {
    type Key = Vec<u8>;
    type Item = CgroupInfo;
    const METHOD: u16 = method::CGROUPS_LOOKUP;
    const PLACEHOLDER_LEN: usize = 32;

    fn encode_request(keys: &[Vec<u8>]) -> Result<Vec<u8>, CodecError> {
        cgroups_lookup::Request {
            paths: keys.to_vec(),
        }
        .encode()
    }
    fn decode_request(payload: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
        Ok(cgroups_lookup::Request::decode(payload)?.paths)
    }
    fn exceeded(_: &Vec<u8>) -> CgroupInfo {
        CgroupInfo::unknown(Status::PayloadExceeded)
    }
    fn oversized(_: &Vec<u8>) -> CgroupInfo {
        CgroupInfo::unknown(Status::OversizedItem)
    }
}

/// APPS_LOOKUP: keys are process ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppsLookup;

impl LookupMethod for AppsLookup {
    type Key = u32;
    type Item = AppInfo;
    const METHOD: u16 = method::APPS_LOOKUP;
    const PLACEHOLDER_LEN: usize = 64;

    fn encode_request(keys: &[u32]) -> Result<Vec<u8>, CodecError> {
        apps_lookup::Request {
            pids: keys.to_vec(),
        }
        .encode()
    }
    fn decode_request(payload: &[u8]) -> Result<Vec<u32>, CodecError> {
        Ok(apps_lookup::Request::decode(payload)?.pids)
    }
    fn exceeded(pid: &u32) -> AppInfo {
        AppInfo::unknown(*pid, PidStatus::PayloadExceeded)
    }
    fn oversized(pid: &u32) -> AppInfo {
        AppInfo::unknown(*pid, PidStatus::OversizedItem)
    }
}

/// A lookup endpoint: `provider` answers every key (one item per key, in
/// order, with the current generation); the service keeps the encoded answer
/// within `response_limit` bytes: items after the last that fits become
/// `PAYLOAD_EXCEEDED`, an item too large for a response of its own becomes
/// `OVERSIZED_ITEM`.
///
/// ```
/// use pipewright_netipc::codec::cgroups_lookup::{CgroupInfo, Status};
/// use pipewright_netipc::lookups::{CgroupsLookup, LookupService};
/// let svc = LookupService::<CgroupsLookup, _>::new(65536, |paths: &[Vec<u8>]| {
///     Ok((1, paths.iter().map(|_| CgroupInfo::unknown(Status::UnknownPermanent)).collect()))
/// });
/// # let _ = svc;
/// ```
pub struct LookupService<M, F> {
    response_limit: usize,
    provider: F,
    method: PhantomData<fn() -> M>,
}

impl<M, F> fmt::Debug for LookupService<M, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupService")
            .field("response_limit", &self.response_limit)
            .finish_non_exhaustive()
    }
}

impl<M, F> LookupService<M, F>
where
    M: LookupMethod,
    F: Fn(&[M::Key]) -> Result<(u64, Vec<M::Item>), String> + Send + Sync + 'static,
{
    /// A service answering through `provider`, within `response_limit` bytes
    /// (the server's `max_response_payload`).
    pub fn new(response_limit: usize, provider: F) -> Self {
        LookupService {
            response_limit,
            provider,
            method: PhantomData,
        }
    }

    /// Replaces what does not fit with `PAYLOAD_EXCEEDED` (that item and all
    /// after it) or `OVERSIZED_ITEM` (an item too large for any response).
    fn fit(&self, keys: &[M::Key], mut items: Vec<M::Item>) -> Result<Vec<M::Item>, ServiceError> {
        let failed = |e: CodecError| ServiceError::Failed(e.to_string());
        // An item's share of the response: its bytes rounded up to 8.
        let share = |item: &M::Item| -> Result<usize, ServiceError> {
            let alone = M::encode_response(0, std::slice::from_ref(item)).map_err(failed)?;
            Ok((alone.len() - 24).div_ceil(8) * 8)
        };
        let header = 16 + 8 * keys.len();
        let placeholders = keys
            .iter()
            .map(|k| share(&M::exceeded(k)))
            .collect::<Result<Vec<_>, _>>()?;
        let floor = header + placeholders.iter().sum::<usize>();
        if floor > self.response_limit {
            return Err(ServiceError::Failed(format!(
                "{} keys need at least {floor} bytes, over the response limit of {}; ask for fewer keys",
                keys.len(),
                self.response_limit
            )));
        }
        let mut used = floor;
        for i in 0..items.len() {
            let real = share(&items[i])?;
            if used - placeholders[i] + real <= self.response_limit {
                used = used - placeholders[i] + real;
            } else if 16 + 8 + real > self.response_limit {
                // Too large even as the only item of a response.
                items[i] = M::oversized(&keys[i]);
                used = used - placeholders[i] + share(&items[i])?;
            } else {
                for (item, key) in items[i..].iter_mut().zip(&keys[i..]) {
                    *item = M::exceeded(key);
                }
                break;
            }
        }
        Ok(items)
    }
}

impl<M, F> Service for LookupService<M, F>
where
    M: LookupMethod,
    F: Fn(&[M::Key]) -> Result<(u64, Vec<M::Item>), String> + Send + Sync + 'static,
{
    fn method(&self) -> Option<u16> {
        Some(M::METHOD)
    }

    fn handle(&self, _code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let keys = M::decode_request(request)?;
        let (generation, items) = (self.provider)(&keys).map_err(ServiceError::Failed)?;
        if items.len() != keys.len() {
            return Err(ServiceError::Failed(format!(
                "the provider answered {} items for {} keys",
                items.len(),
                keys.len()
            )));
        }
        let items = self.fit(&keys, items)?;
        M::encode_response(generation, &items).map_err(|e| ServiceError::Failed(e.to_string()))
    }
}

fn mismatch(what: String) -> ClientError {
    ClientError::Session(SessionError::Mismatch(what))
}

/// How many keys one call may carry so that even an answer of placeholders
/// fits `response_limit`.
pub fn keys_per_call<M: LookupMethod>(response_limit: u32) -> usize {
    (response_limit as usize).saturating_sub(16) / (8 + M::PLACEHOLDER_LEN)
}

/// Looks `keys` up, asking again for any suffix the server could not fit and
/// stitching the answers; returns the generation and one item per key. Each
/// call carries at most as many keys as the negotiated response limit can
/// answer ([`keys_per_call`]).
pub async fn call_stitched<M: LookupMethod>(
    client: &mut Client,
    keys: &[M::Key],
) -> Result<(u64, Vec<M::Item>), ClientError> {
    let limit = match client.negotiated() {
        Some(n) => n.max_response_payload_bytes,
        None => client.connect().await?.max_response_payload_bytes,
    };
    let mut per_call = keys_per_call::<M>(limit).max(1);
    let mut items = Vec::with_capacity(keys.len());
    let mut generation = None;
    let mut rest = keys;
    for _ in 0..MAX_SUBCALLS {
        let asked = &rest[..rest.len().min(per_call)];
        let reply = client.call(M::METHOD, &M::encode_request(asked)?).await?;
        let (g, got) = M::decode_response(&reply)?;
        if got.len() != asked.len() {
            return Err(mismatch(format!(
                "asked for {} keys, the answer has {} items",
                asked.len(),
                got.len()
            )));
        }
        if *generation.get_or_insert(g) != g {
            return Err(mismatch(format!(
                "generation changed from {} to {g} between partial answers; look up again",
                generation.unwrap_or_default()
            )));
        }
        match got.iter().position(LookupItem::is_payload_exceeded) {
            None if asked.len() == rest.len() => {
                items.extend(got);
                return Ok((g, items));
            }
            None => {
                items.extend(got);
                rest = &rest[asked.len()..];
            }
            // Nothing fit beside the other keys' placeholders: ask for fewer at once.
            Some(0) if asked.len() > 1 => per_call = asked.len() / 2,
            Some(0) => {
                return Err(mismatch(
                    "the server answered PAYLOAD_EXCEEDED for a single key".into(),
                ))
            }
            Some(k) => {
                items.extend(got.into_iter().take(k));
                rest = &rest[k..];
            }
        }
    }
    Err(mismatch(format!(
        "no complete answer after {MAX_SUBCALLS} partial calls"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::lookup::Label;

    fn known(path: &[u8]) -> CgroupInfo {
        CgroupInfo {
            status: Status::Known,
            orchestrator: 1,
            path: path.to_vec(),
            name: b"n".to_vec(),
            labels: vec![Label::new("k", vec![b'v'; path.len()])],
        }
    }

    fn service(limit: usize) -> impl Service {
        LookupService::<CgroupsLookup, _>::new(limit, |paths: &[Vec<u8>]| {
            Ok((7, paths.iter().map(|p| known(p)).collect()))
        })
    }

    fn answer(svc: &impl Service, keys: &[Vec<u8>]) -> Vec<CgroupInfo> {
        let req = CgroupsLookup::encode_request(keys).unwrap();
        let reply = svc.handle(method::CGROUPS_LOOKUP, &req).unwrap();
        CgroupsLookup::decode_response(&reply).unwrap().1
    }

    #[test]
    fn placeholder_lengths_match_the_encoders() {
        let one = |bytes: Vec<u8>| (bytes.len() - 24).div_ceil(8) * 8;
        let c = CgroupsLookup::encode_response(0, &[CgroupsLookup::exceeded(&b"/x".to_vec())]);
        assert_eq!(one(c.unwrap()), CgroupsLookup::PLACEHOLDER_LEN);
        let a = AppsLookup::encode_response(0, &[AppsLookup::exceeded(&7)]);
        assert_eq!(one(a.unwrap()), AppsLookup::PLACEHOLDER_LEN);
        assert_eq!(keys_per_call::<CgroupsLookup>(4096), 102);
        assert_eq!(keys_per_call::<AppsLookup>(10), 0);
    }

    #[test]
    fn everything_fits_under_a_large_limit() {
        let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("/cg/{i}").into_bytes()).collect();
        let items = answer(&service(1 << 20), &keys);
        assert!(items.iter().all(|i| i.status == Status::Known));
        assert_eq!(items[3].path, b"/cg/3");
    }

    #[test]
    fn a_small_limit_marks_the_suffix_and_stays_within_it() {
        let keys: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("/cg/{i:03}").into_bytes())
            .collect();
        let limit = 3000;
        let svc = service(limit);
        let req = CgroupsLookup::encode_request(&keys).unwrap();
        let reply = svc.handle(method::CGROUPS_LOOKUP, &req).unwrap();
        assert!(reply.len() <= limit, "{} bytes over {limit}", reply.len());
        let items = CgroupsLookup::decode_response(&reply).unwrap().1;
        let k = items
            .iter()
            .position(LookupItem::is_payload_exceeded)
            .unwrap();
        assert!(k > 0);
        assert!(items[..k].iter().all(|i| i.status == Status::Known));
        assert!(items[k..]
            .iter()
            .all(|i| i.status == Status::PayloadExceeded));
    }

    #[test]
    fn a_huge_item_is_oversized_and_the_rest_still_answered() {
        let keys = vec![b"/a".to_vec(), vec![b'x'; 5000], b"/c".to_vec()];
        let items = answer(&service(2000), &keys);
        assert_eq!(items[0].status, Status::Known);
        assert_eq!(items[1].status, Status::OversizedItem);
        assert_eq!(items[2].status, Status::Known);
    }

    #[test]
    fn bad_requests_and_providers_are_errors() {
        let svc = service(1 << 16);
        let e = svc.handle(method::CGROUPS_LOOKUP, &[1, 0]).unwrap_err();
        assert!(matches!(e, ServiceError::BadRequest(_)));
        let short = LookupService::<AppsLookup, _>::new(1 << 16, |_: &[u32]| Ok((1, Vec::new())));
        let req = AppsLookup::encode_request(&[1, 2]).unwrap();
        let e = short.handle(method::APPS_LOOKUP, &req).unwrap_err();
        assert!(e.to_string().contains("answered 0 items for 2 keys"), "{e}");
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("/{i}").into_bytes()).collect();
        let req = CgroupsLookup::encode_request(&keys).unwrap();
        let e = service(200)
            .handle(method::CGROUPS_LOOKUP, &req)
            .unwrap_err();
        assert!(e.to_string().contains("ask for fewer keys"), "{e}");
    }
}
