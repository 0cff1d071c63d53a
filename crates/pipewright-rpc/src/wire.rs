//! The JSON envelopes of requests and responses, encoded and decoded exactly as documented
//! in the crate docs.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::frame::FrameBuf;

/// What a request envelope must look like, quoted in error messages.
pub(crate) const REQUEST_SHAPE: &str =
    r#"a request is {"method": "Name", "params": ..., "id": N (optional)}"#;

/// Room reserved for an encoded body: small envelopes fit without growing the buffer.
const TYPICAL_BODY: usize = 240;

/// A request envelope, borrowing from the frame body.
#[derive(Debug)]
pub(crate) struct RequestEnvelope<'a> {
    pub method: String,
    pub params: Option<&'a RawValue>,
    pub id: Option<u64>,
}

/// A request the server cannot dispatch, with the id when it could be read.
#[derive(Debug)]
pub(crate) struct BadRequest {
    pub message: String,
    pub id: Option<u64>,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// A well-formed request envelope, read in one pass.
#[derive(Deserialize)]
struct PlainRequest<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<u64>,
}

/// Reads the envelope of a request body.
pub(crate) fn decode_request(body: &[u8]) -> Result<RequestEnvelope<'_>, BadRequest> {
    if body.trim_ascii_start().first() == Some(&b'{') {
        if let Ok(plain) = serde_json::from_slice::<PlainRequest<'_>>(body) {
            return Ok(RequestEnvelope {
                method: plain.method.into_owned(),
                params: plain.params,
                id: plain.id,
            });
        }
    }
    // Not well-formed: find out what is wrong, field by field.
    let raw: RawRequest<'_> = serde_json::from_slice(body).map_err(|e| BadRequest {
        message: match e.classify() {
            serde_json::error::Category::Data => {
                format!(
                    "request is not a JSON object with the expected fields ({e}); {REQUEST_SHAPE}"
                )
            }
            _ => format!("malformed JSON in request ({e}); {REQUEST_SHAPE}"),
        },
        id: None,
    })?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(BadRequest {
            message: format!("request is not a JSON object; {REQUEST_SHAPE}"),
            id: None,
        });
    }
    let id = match raw.id {
        None => None,
        Some(v) => Some(serde_json::from_str::<u64>(v.get()).map_err(|_| BadRequest {
            message: format!(
                r#""id" must be an unsigned integer like 7, not {}; or leave it out to be answered in order"#,
                v.get()
            ),
            id: None,
        })?),
    };
    let Some(method) = raw.method else {
        return Err(BadRequest {
            message: format!(r#"request has no "method" field; {REQUEST_SHAPE}"#),
            id,
        });
    };
    let method = serde_json::from_str::<String>(method.get()).map_err(|_| BadRequest {
        message: format!(
            r#""method" must be a string naming the method, not {}; {REQUEST_SHAPE}"#,
            method.get()
        ),
        id,
    })?;
    Ok(RequestEnvelope {
        method,
        params: raw.params,
        id,
    })
}

/// Encodes a request frame for `method` with `params`.
pub(crate) fn encode_call<P: Serialize + ?Sized>(
    method: &str,
    params: &P,
    id: Option<u64>,
) -> Result<FrameBuf, serde_json::Error> {
    let mut buf = FrameBuf::with_capacity(TYPICAL_BODY + method.len());
    let out = buf.body_mut();
    out.extend_from_slice(br#"{"method":"#);
    serde_json::to_writer(&mut *out, method)?;
    out.extend_from_slice(br#","params":"#);
    serde_json::to_writer(&mut *out, params)?;
    push_id_and_close(out, id);
    Ok(buf)
}

/// Encodes a request frame from a value that serializes to `{"method": ..., "params": ...}`
/// (a `#[serde(tag = "method", content = "params")]` enum), adding the id if given.
pub(crate) fn encode_tagged<Q: Serialize + ?Sized>(
    request: &Q,
    id: Option<u64>,
) -> Result<FrameBuf, String> {
    let mut buf = FrameBuf::with_capacity(TYPICAL_BODY);
    serde_json::to_writer(&mut *buf.body_mut(), request)
        .map_err(|e| format!("cannot encode the request: {e}"))?;
    let body = buf.body();
    if body.first() != Some(&b'{') || body.last() != Some(&b'}') {
        return Err(format!(
            r#"the request type must serialize to a JSON object such as {{"method":"Echo","params":{{...}}}} (use #[serde(tag = "method", content = "params")]), not {}"#,
            String::from_utf8_lossy(body)
        ));
    }
    Ok(match id {
        Some(id) => with_id(buf, id),
        None => buf,
    })
}

/// The method name of an encoded request, read cheaply when serde wrote the tag first (it
/// always does for adjacently tagged enums), else by decoding the envelope.
pub(crate) fn method_of(body: &[u8]) -> String {
    const PREFIX: &[u8] = br#"{"method":""#;
    if let Some(rest) = body.strip_prefix(PREFIX) {
        if let Some(end) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
            if rest[end] == b'"' {
                return String::from_utf8_lossy(&rest[..end]).into_owned();
            }
        }
    }
    decode_request(body)
        .map(|envelope| envelope.method)
        .unwrap_or_else(|_| "request".to_owned())
}

/// Adds `"id": id` to an encoded request object.
pub(crate) fn with_id(mut buf: FrameBuf, id: u64) -> FrameBuf {
    let empty = buf.body() == b"{}";
    let out = buf.body_mut();
    out.pop();
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(br#""id":"#);
    push_u64(out, id);
    out.push(b'}');
    buf
}

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_id_and_close(out: &mut Vec<u8>, id: Option<u64>) {
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        push_u64(out, id);
    }
    out.push(b'}');
}

/// Encodes `{"status":"Ok","params":<value>}` with the id, if any.
pub(crate) fn encode_ok<R: Serialize + ?Sized>(
    value: &R,
    id: Option<u64>,
) -> Result<FrameBuf, serde_json::Error> {
    let mut buf = FrameBuf::with_capacity(TYPICAL_BODY);
    let out = buf.body_mut();
    out.extend_from_slice(br#"{"status":"Ok","params":"#);
    serde_json::to_writer(&mut *out, value)?;
    push_id_and_close(out, id);
    Ok(buf)
}

/// Encodes `{"status":"Err","params":"message"}` with the id, if any.
pub(crate) fn encode_err(message: &str, id: Option<u64>) -> FrameBuf {
    let mut buf = FrameBuf::with_capacity(32 + message.len());
    let out = buf.body_mut();
    out.extend_from_slice(br#"{"status":"Err","params":"#);
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, message);
    push_id_and_close(out, id);
    buf
}

/// Whether a response says Ok or Err.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum Status {
    Ok,
    Err,
}

/// A response envelope, borrowing from the frame body.
#[derive(Debug, Deserialize)]
pub(crate) struct ResponseEnvelope<'a> {
    pub status: Status,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(default)]
    pub id: Option<u64>,
}

/// Reads the envelope of a response body.
pub(crate) fn decode_response(body: &[u8]) -> Result<ResponseEnvelope<'_>, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            r#"the server sent a response that is not {{"status": "Ok"|"Err", "params": ..., "id": N}} ({e}): {}"#,
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

/// An answer: the Ok params, or the Err message.
pub(crate) type Answer = Result<Box<RawValue>, String>;

/// Reads a response body as its id (if any) and its answer. An Ok without params answers
/// JSON `null`; an Err whose params are not a string keeps their JSON text as the message.
pub(crate) fn decode_answer(body: &[u8]) -> Result<(Option<u64>, Answer), String> {
    let (id, answer) = decode_answer_borrowed(body)?;
    Ok((id, answer.map(RawValue::to_owned)))
}

/// Like [`decode_answer`], with the Ok params borrowed from `body`.
pub(crate) fn decode_answer_borrowed(
    body: &[u8],
) -> Result<(Option<u64>, Result<&RawValue, String>), String> {
    const NULL: &str = "null";
    let envelope = decode_response(body)?;
    let answer = match envelope.status {
        Status::Ok => Ok(envelope
            .params
            .unwrap_or_else(|| serde_json::from_str(NULL).expect("null is JSON"))),
        Status::Err => Err(envelope.params.map_or_else(String::new, |p| {
            serde_json::from_str::<String>(p.get()).unwrap_or_else(|_| p.get().to_owned())
        })),
    };
    Ok((envelope.id, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(buf: FrameBuf) -> Vec<u8> {
        buf.finish().unwrap()[4..].to_vec()
    }

    #[test]
    fn request_envelopes_decode() {
        let r = decode_request(br#"{"method":"Factorial","params":{"n":5}}"#).unwrap();
        assert_eq!(r.method, "Factorial");
        assert_eq!(r.params.unwrap().get(), r#"{"n":5}"#);
        assert_eq!(r.id, None);
        let r =
            decode_request(br#"{"id":9,"params":[1],"method":"A\u0042","extra":true}"#).unwrap();
        assert_eq!((r.method.as_str(), r.id), ("AB", Some(9)));
        let r = decode_request(br#"{"method":"Ping"}"#).unwrap();
        assert!(r.params.is_none());
    }

    #[test]
    fn bad_request_envelopes_name_the_problem() {
        let cases: [(&[u8], &str, Option<u64>); 8] = [
            (b"{not json", "malformed JSON", None),
            (b"", "malformed JSON", None),
            (b"[1,2]", "not a JSON object", None),
            (b"\"Echo\"", "not a JSON object", None),
            (br#"{"params":{}}"#, r#"no "method" field"#, None),
            (br#"{"params":{},"id":4}"#, r#"no "method" field"#, Some(4)),
            (
                br#"{"method":5,"id":3}"#,
                r#""method" must be a string"#,
                Some(3),
            ),
            (
                br#"{"method":"Echo","id":"x"}"#,
                r#""id" must be an unsigned integer"#,
                None,
            ),
        ];
        for (input, needle, id) in cases {
            let err = decode_request(input).unwrap_err();
            assert!(
                err.message.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(input),
                err.message
            );
            assert_eq!(err.id, id, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn encodings_are_exact() {
        assert_eq!(
            body(encode_call("Factorial", &serde_json::json!({"n": 5}), None).unwrap()),
            br#"{"method":"Factorial","params":{"n":5}}"#
        );
        assert_eq!(
            body(encode_call("Echo", "x", Some(7)).unwrap()),
            br#"{"method":"Echo","params":"x","id":7}"#
        );
        assert_eq!(
            body(encode_ok(&5u8, Some(1)).unwrap()),
            br#"{"status":"Ok","params":5,"id":1}"#
        );
        assert_eq!(
            body(encode_err("bad \"x\"", None)),
            br#"{"status":"Err","params":"bad \"x\""}"#
        );
    }

    #[test]
    fn tagged_requests_get_the_id_spliced_in() {
        #[derive(Serialize)]
        #[serde(tag = "method", content = "params")]
        enum Req {
            Echo { payload: String },
            Ping,
        }
        let echo = Req::Echo {
            payload: "hi".into(),
        };
        assert_eq!(
            body(encode_tagged(&echo, Some(3)).unwrap()),
            br#"{"method":"Echo","params":{"payload":"hi"},"id":3}"#
        );
        assert_eq!(
            body(encode_tagged(&echo, None).unwrap()),
            br#"{"method":"Echo","params":{"payload":"hi"}}"#
        );
        assert_eq!(
            body(encode_tagged(&Req::Ping, Some(1)).unwrap()),
            br#"{"method":"Ping","id":1}"#
        );
        assert_eq!(method_of(br#"{"method":"Echo","params":1}"#), "Echo");
        assert_eq!(method_of(br#"{"method":"E\"cho"}"#), "E\"cho");
        assert_eq!(method_of(br#"{"params":1,"method":"Late"}"#), "Late");
        assert_eq!(method_of(b"[]"), "request");
        let err = encode_tagged(&"Echo", Some(1)).unwrap_err();
        assert!(err.contains(r#"tag = "method""#), "{err}");
    }

    #[test]
    fn response_envelopes_decode_and_reject_garbage() {
        let r = decode_response(br#"{"status":"Ok","params":{"Number":120},"id":2}"#).unwrap();
        assert_eq!((r.status, r.id), (Status::Ok, Some(2)));
        assert_eq!(r.params.unwrap().get(), r#"{"Number":120}"#);
        let r = decode_response(br#"{"status":"Err","params":"nope"}"#).unwrap();
        assert_eq!((r.status, r.id), (Status::Err, None));
        for bad in [&b"{"[..], br#"{"status":"Maybe"}"#, br#"{"params":1}"#] {
            let err = decode_response(bad).unwrap_err();
            assert!(err.contains(r#""status": "Ok"|"Err""#), "{err}");
        }
    }
}
