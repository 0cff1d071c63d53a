//! Pipe endpoints and URLs: `npipe:////./pipe/NAME`, `unix:///path/to.sock`, and the request
//! URIs the client connector understands.

use std::fmt;

use hyper::Uri;
use pipewright::PipeName;

/// The forms a pipe URL may take, shown in every parse error.
pub const ACCEPTED_URL_FORMS: &str = "accepted forms: npipe:////./pipe/NAME/path?query \
(also npipe://./pipe/NAME/path, npipe:NAME/path) or unix:///path/to.sock:/path?query";

/// URI scheme for a named pipe (on Unix, the socket a pipe name maps to).
pub const NPIPE_SCHEME: &str = "npipe";
/// URI scheme for a Unix socket path.
pub const UNIX_SCHEME: &str = "unix";

/// A malformed endpoint or URL. The message names the problem and lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a pipe URL: {problem}; {ACCEPTED_URL_FORMS}")]
pub struct UrlError {
    input: String,
    problem: String,
}

impl UrlError {
    fn new(input: &str, problem: impl Into<String>) -> Self {
        UrlError {
            input: input.to_string(),
            problem: problem.into(),
        }
    }

    /// What is wrong with the input, without the list of accepted forms.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Where a server listens: a named pipe or a Unix socket path.
///
/// Accepts Docker's `DOCKER_HOST` forms (`npipe:////./pipe/docker_engine`,
/// `unix:///var/run/docker.sock`) and plain pipe names (`\\.\pipe\NAME`, `//./pipe/NAME`, `NAME`).
///
/// ```
/// use pipewright_http::Endpoint;
/// let e = Endpoint::parse("npipe:////./pipe/docker_engine").unwrap();
/// assert_eq!(e.pipe_name().name(), "docker_engine");
/// let uri = e.uri("/v1.45/containers/json?all=1").unwrap();
/// assert_eq!(uri.scheme_str(), Some("npipe"));
/// assert_eq!(uri.path(), "/v1.45/containers/json");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    name: PipeName,
    unix_path: bool,
}

impl Endpoint {
    /// Parses an endpoint without a request path.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let (endpoint, rest) = split_url(input, false)?;
        if let Some(rest) = rest.filter(|r| !r.is_empty() && *r != "/") {
            return Err(UrlError::new(
                input,
                format!("an endpoint has no request path, but {rest:?} follows the pipe"),
            ));
        }
        Ok(endpoint)
    }

    /// The pipe this endpoint opens.
    pub fn pipe_name(&self) -> &PipeName {
        &self.name
    }

    /// Whether this is an explicit Unix socket path (`unix://`).
    pub fn is_unix_path(&self) -> bool {
        self.unix_path
    }

    /// A request URI for [`PipeConnector`](crate::PipeConnector): the scheme names the kind,
    /// the host carries the pipe name hex-encoded, and `path_and_query` follows.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, UrlError> {
        let (scheme, target) = if self.unix_path {
            (UNIX_SCHEME, self.name.unix_path().display().to_string())
        } else {
            (NPIPE_SCHEME, self.name.name().to_string())
        };
        let path = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        if !path.starts_with('/') {
            return Err(UrlError::new(
                path_and_query,
                "the request path must start with '/'",
            ));
        }
        let text = format!("{scheme}://{}{path}", hex_encode(target.as_bytes()));
        text.parse::<Uri>()
            .map_err(|e| UrlError::new(path_and_query, format!("invalid request path ({e})")))
    }

    /// Reads the endpoint back from a URI made by [`Endpoint::uri`].
    pub fn from_uri(uri: &Uri) -> Result<Self, UrlError> {
        let text = uri.to_string();
        let host = uri
            .host()
            .ok_or_else(|| UrlError::new(&text, "the URI has no host carrying the pipe name"))?;
        let raw = hex_decode(host)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                UrlError::new(
                    &text,
                    "the host is not a hex-encoded pipe name; build URIs with Endpoint::uri",
                )
            })?;
        match uri.scheme_str() {
            Some(NPIPE_SCHEME) => npipe_endpoint(&text, &raw),
            Some(UNIX_SCHEME) => unix_endpoint(&text, &raw),
            other => Err(UrlError::new(
                &text,
                format!("the scheme {other:?} is neither npipe nor unix"),
            )),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unix_path {
            write!(f, "unix://{}", self.name.unix_path().display())
        } else {
            write!(f, "npipe:////./pipe/{}", self.name.name())
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// A URL naming a pipe and a request on it: `npipe:////./pipe/NAME/path?query` or
/// `unix:///path/to.sock:/path?query`.
///
/// ```
/// use pipewright_http::PipeUrl;
/// let url = PipeUrl::parse("npipe:////./pipe/api/v1/items?limit=5").unwrap();
/// assert_eq!(url.endpoint().pipe_name().name(), "api");
/// assert_eq!(url.path_and_query(), "/v1/items?limit=5");
/// assert!(PipeUrl::parse("http://example.com/").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeUrl {
    endpoint: Endpoint,
    path_and_query: String,
}

impl PipeUrl {
    /// Parses a pipe URL; a missing path means `/`.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let (endpoint, rest) = split_url(input, true)?;
        let path_and_query = match rest {
            None | Some("") => "/".to_string(),
            Some(r) if r.starts_with('?') => format!("/{r}"),
            Some(r) => r.to_string(),
        };
        if path_and_query.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::new(
                input,
                "the path contains spaces or control characters; percent-encode them",
            ));
        }
        let url = PipeUrl {
            endpoint,
            path_and_query,
        };
        url.uri().map_err(|e| UrlError::new(input, e.problem))?;
        Ok(url)
    }

    /// The pipe to open.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The request target, always starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The request URI for [`PipeConnector`](crate::PipeConnector).
    pub fn uri(&self) -> Result<Uri, UrlError> {
        self.endpoint.uri(&self.path_and_query)
    }
}

/// Splits a URL into its endpoint and what follows the endpoint (the request path).
fn split_url(input: &str, with_path: bool) -> Result<(Endpoint, Option<&str>), UrlError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(UrlError::new(input, "the URL is empty"));
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("npipe:") {
        return split_npipe(input, &trimmed["npipe:".len()..]);
    }
    if lower.starts_with("unix:") {
        return split_unix(input, &trimmed["unix:".len()..]);
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(UrlError::new(
            input,
            format!("the scheme {scheme:?} is not supported"),
        ));
    }
    if with_path {
        return Err(UrlError::new(
            input,
            "the URL has no npipe: or unix: scheme",
        ));
    }
    let name = PipeName::parse(trimmed).map_err(|e| UrlError::new(input, e.to_string()))?;
    Ok((
        Endpoint {
            unix_path: name.unix_path() == std::path::Path::new(trimmed),
            name,
        },
        None,
    ))
}

fn split_npipe<'a>(input: &str, rest: &'a str) -> Result<(Endpoint, Option<&'a str>), UrlError> {
    let is_sep = |c: char| c == '/' || c == '\\';
    let body = rest.trim_start_matches(is_sep);
    let slashes = rest.len() - body.len();
    let after_host = if slashes == 0 {
        // npipe:NAME/path
        body
    } else {
        let (host, after) = body
            .split_once(is_sep)
            .ok_or_else(|| UrlError::new(input, "expected //./pipe/NAME after npipe://"))?;
        if host != "." {
            return Err(UrlError::new(
                input,
                format!("{host:?} is not '.'; only pipes on this machine are supported"),
            ));
        }
        let (pipe, after) = after
            .split_once(is_sep)
            .ok_or_else(|| UrlError::new(input, "expected //./pipe/NAME; the NAME is missing"))?;
        if !pipe.eq_ignore_ascii_case("pipe") {
            return Err(UrlError::new(
                input,
                format!("{pipe:?} is not 'pipe'; write //./pipe/NAME"),
            ));
        }
        after
    };
    let cut = after_host.find(['/', '?']).unwrap_or(after_host.len());
    let (name, path) = after_host.split_at(cut);
    if name.is_empty() {
        return Err(UrlError::new(input, "the pipe NAME is empty"));
    }
    let endpoint = npipe_endpoint(input, name)?;
    Ok((endpoint, Some(path)))
}

fn split_unix<'a>(input: &str, rest: &'a str) -> Result<(Endpoint, Option<&'a str>), UrlError> {
    let path = rest.strip_prefix("//").ok_or_else(|| {
        UrlError::new(
            input,
            "a unix URL starts with unix:// and an absolute socket path",
        )
    })?;
    if !path.starts_with('/') {
        return Err(UrlError::new(
            input,
            "the socket path must be absolute (unix:///path/to.sock)",
        ));
    }
    let (socket, request) = match path.find(":/") {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    };
    if socket.len() <= 1 {
        return Err(UrlError::new(input, "the socket path is empty"));
    }
    Ok((unix_endpoint(input, socket)?, request))
}

fn npipe_endpoint(input: &str, name: &str) -> Result<Endpoint, UrlError> {
    if name.starts_with('.') && name.chars().all(|c| c == '.') {
        return Err(UrlError::new(input, format!("{name:?} is not a pipe name")));
    }
    let name = PipeName::parse(name).map_err(|e| UrlError::new(input, e.to_string()))?;
    Ok(Endpoint {
        name,
        unix_path: false,
    })
}

fn unix_endpoint(input: &str, path: &str) -> Result<Endpoint, UrlError> {
    if cfg!(windows) {
        return Err(UrlError::new(
            input,
            "unix socket paths are not supported on Windows; use npipe:////./pipe/NAME",
        ));
    }
    let name = PipeName::from_path(path).map_err(|e| UrlError::new(input, e.to_string()))?;
    Ok(Endpoint {
        name,
        unix_path: true,
    })
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok().filter(|p| p.len() == 2)?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_and_plain_names() {
        for s in [
            "npipe:////./pipe/docker_engine",
            "npipe://./pipe/docker_engine",
            "npipe:docker_engine",
            r"npipe:\\.\pipe\docker_engine",
            r"\\.\pipe\docker_engine",
            "//./pipe/docker_engine",
            "docker_engine",
        ] {
            let e = Endpoint::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(e.pipe_name().name(), "docker_engine", "{s}");
            assert!(!e.is_unix_path());
        }
    }

    #[test]
    fn urls_split_into_pipe_and_request() {
        let cases = [
            ("npipe:////./pipe/api/v1/x?y=1", "api", "/v1/x?y=1"),
            ("npipe:////./pipe/api", "api", "/"),
            ("npipe:////./pipe/api?q", "api", "/?q"),
            ("npipe:api/status", "api", "/status"),
            ("NPIPE://./PIPE/api/", "api", "/"),
        ];
        for (input, name, path) in cases {
            let url = PipeUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.endpoint().pipe_name().name(), name, "{input}");
            assert_eq!(url.path_and_query(), path, "{input}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn unix_urls_carry_the_socket_path() {
        let url = PipeUrl::parse("unix:///run/x/api.sock:/v1/ping?a=b").unwrap();
        assert!(url.endpoint().is_unix_path());
        assert_eq!(
            url.endpoint().pipe_name().unix_path(),
            std::path::Path::new("/run/x/api.sock")
        );
        assert_eq!(url.path_and_query(), "/v1/ping?a=b");
        let bare = PipeUrl::parse("unix:///var/run/docker.sock").unwrap();
        assert_eq!(bare.path_and_query(), "/");
        let e = Endpoint::parse("unix:///var/run/docker.sock").unwrap();
        assert_eq!(e.to_string(), "unix:///var/run/docker.sock");
    }

    #[test]
    fn uris_round_trip_through_the_connector_form() {
        let url = PipeUrl::parse("npipe:////./pipe/svc-1/a/b?c=d").unwrap();
        let uri = url.uri().unwrap();
        assert_eq!(uri.scheme_str(), Some("npipe"));
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/a/b?c=d");
        let back = Endpoint::from_uri(&uri).unwrap();
        assert_eq!(&back, url.endpoint());
    }

    #[test]
    fn malformed_urls_name_the_problem_and_the_accepted_forms() {
        let cases = [
            ("", "empty"),
            ("http://localhost/", "\"http\" is not supported"),
            ("npipe://host/pipe/x/", "only pipes on this machine"),
            ("npipe:////./pipes/x/", "is not 'pipe'"),
            ("npipe:////./pipe/", "NAME is empty"),
            ("npipe:////./pipe", "NAME is missing"),
            ("npipe:////./pipe/x/a b", "spaces"),
            ("npipe:", "NAME is empty"),
            ("unix:relative.sock", "unix://"),
            ("unix://relative.sock:/x", "absolute"),
            ("/just/a/path", "no npipe: or unix: scheme"),
        ];
        for (input, needle) in cases {
            let err = PipeUrl::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(
                err.contains("npipe:////./pipe/NAME/path"),
                "{input:?}: {err}"
            );
        }
        let err = Endpoint::parse("npipe:////./pipe/x/extra").unwrap_err();
        assert!(err.problem().contains("no request path"), "{err}");
    }

    #[test]
    fn foreign_uris_are_refused_by_the_connector_form() {
        for s in [
            "http://localhost/",
            "npipe://zz/",
            "npipe://abc/",
            "ftp://6162/",
        ] {
            let uri: Uri = s.parse().unwrap();
            assert!(Endpoint::from_uri(&uri).is_err(), "{s}");
        }
    }
}
