//! The demo service of pipe-rpc: `Factorial`, `Reverse` and `Echo`, served on `rpc_demo` by
//! `pipewright rpc serve-demo`.
//!
//! ```
//! use pipewright_rpc::demo::{factorial, Request, Response};
//! assert_eq!(factorial(5), Ok(120));
//! assert!(factorial(21).unwrap_err().contains("overflows"));
//! let req: Request = serde_json::from_str(r#"{"method":"Reverse","params":{"text":"abc"}}"#).unwrap();
//! assert_eq!(req, Request::Reverse { text: "abc".into() });
//! assert_eq!(serde_json::to_string(&Response::Number(120)).unwrap(), r#"{"Number":120}"#);
//! // Echo takes any JSON value and answers it as `Json`, as pipe-rpc does.
//! let echo: Request = serde_json::from_str(r#"{"method":"Echo","params":{"payload":{"a":[1,2,3]}}}"#).unwrap();
//! assert_eq!(echo, Request::Echo { payload: serde_json::json!({"a": [1, 2, 3]}) });
//! ```

use serde::{Deserialize, Serialize};

use crate::{Router, Service};

/// The pipe name the demo serves by default.
pub const DEFAULT_NAME: &str = "rpc_demo";

/// The demo's requests, as pipe-rpc encodes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Request {
    /// `n!`, with checked multiplication: past 20! it is an error.
    Factorial {
        /// The number.
        n: u64,
    },
    /// The text, reversed by characters.
    Reverse {
        /// The text.
        text: String,
    },
    /// The payload, unchanged: any JSON value (a string too), answered as
    /// [`Response::Json`], as pipe-rpc's `Echo { payload: serde_json::Value }`.
    Echo {
        /// The payload.
        payload: serde_json::Value,
    },
}

/// The demo's answers: pipe-rpc's `RpcResult`, the variants in its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A number (from `Factorial`).
    Number(u64),
    /// A text (from `Reverse`).
    Text(String),
    /// A JSON value (from `Echo`).
    Json(serde_json::Value),
}

/// `n!`, or an error naming the overflow.
pub fn factorial(n: u64) -> Result<u64, String> {
    (1..=n).try_fold(1u64, |acc, k| acc.checked_mul(k)).ok_or_else(|| {
        format!("{n}! overflows a 64-bit unsigned integer; 20! is the largest factorial this service computes")
    })
}

/// The demo service.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoService;

impl Service for DemoService {
    type Request = Request;
    type Response = Response;
    type Error = String;

    async fn call(&self, request: Request) -> Result<Response, String> {
        match request {
            Request::Factorial { n } => factorial(n).map(Response::Number),
            Request::Reverse { text } => Ok(Response::Text(text.chars().rev().collect())),
            Request::Echo { payload } => Ok(Response::Json(payload)),
        }
    }
}

/// A router serving the demo service.
pub fn router() -> Router {
    Router::new().service(DemoService)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorial_is_checked() {
        assert_eq!(factorial(0), Ok(1));
        assert_eq!(factorial(1), Ok(1));
        assert_eq!(factorial(20), Ok(2_432_902_008_176_640_000));
        let err = factorial(21).unwrap_err();
        assert!(err.starts_with("21! overflows"), "{err}");
        assert!(factorial(u64::MAX).is_err());
    }
}
