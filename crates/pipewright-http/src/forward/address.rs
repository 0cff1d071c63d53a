//! The forwarder's addresses: `npipe:NAME` / `unix:PATH` to listen on, and
//! `tcp:HOST:PORT` / `unix:PATH` / `npipe:NAME` / `exec:CMDLINE` upstreams.

use std::fmt;

use pipewright::PipeName;

use crate::url::Endpoint;

const LISTEN_FORMS: &str = "listen on npipe:NAME, npipe:////./pipe/NAME or unix:PATH";
const UPSTREAM_FORMS: &str =
    "forward to tcp:HOST:PORT, unix:PATH, npipe:NAME or exec:CMDLINE (e.g. tcp:127.0.0.1:8080)";

/// A malformed listen or upstream address; the message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {problem}; {forms}")]
pub struct AddressError {
    input: String,
    problem: String,
    forms: &'static str,
}

fn listen_error(input: &str, problem: impl Into<String>) -> AddressError {
    AddressError {
        input: input.to_string(),
        problem: problem.into(),
        forms: LISTEN_FORMS,
    }
}

fn upstream_error(input: &str, problem: impl Into<String>) -> AddressError {
    AddressError {
        input: input.to_string(),
        problem: problem.into(),
        forms: UPSTREAM_FORMS,
    }
}

/// Parses where the forwarder listens: `npipe:NAME` (any pipe-name form after the colon) or,
/// on Unix, `unix:PATH`.
///
/// ```
/// let name = pipewright_http::forward::parse_listen("npipe:agent").unwrap();
/// assert_eq!(name.name(), "agent");
/// assert!(pipewright_http::forward::parse_listen("agent").is_err());
/// ```
pub fn parse_listen(input: &str) -> Result<PipeName, AddressError> {
    let (scheme, rest) = input
        .split_once(':')
        .ok_or_else(|| listen_error(input, "the address has no npipe: or unix: prefix"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "npipe" => Endpoint::parse(input)
            .map(|e| e.pipe_name().clone())
            .map_err(|e| listen_error(input, e.problem().to_string())),
        "unix" => unix_path(input, rest).map_err(|p| listen_error(input, p)),
        other => Err(listen_error(
            input,
            format!("{other:?} is not a place to listen"),
        )),
    }
}

/// Where the forwarder sends requests.
#[derive(Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A TCP server, `HOST:PORT`.
    Tcp(String),
    /// A Unix socket (Unix only) or a named pipe.
    Pipe(PipeName),
    /// A helper started per upstream connection; HTTP goes through its stdin and stdout.
    Exec(CommandLine),
}

impl Upstream {
    /// Parses `tcp:HOST:PORT`, `unix:PATH`, `npipe:NAME` or `exec:CMDLINE`.
    ///
    /// ```
    /// use pipewright_http::forward::Upstream;
    /// assert!(matches!(Upstream::parse("tcp:127.0.0.1:8080"), Ok(Upstream::Tcp(_))));
    /// assert!(matches!(Upstream::parse("exec:socat - UNIX-CONNECT:/run/a.sock"), Ok(Upstream::Exec(_))));
    /// assert!(Upstream::parse("tcp:127.0.0.1").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let (scheme, rest) = input.split_once(':').ok_or_else(|| {
            upstream_error(
                input,
                "the address has no tcp:, unix:, npipe: or exec: prefix",
            )
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "tcp" => tcp_address(rest)
                .map(Upstream::Tcp)
                .map_err(|p| upstream_error(input, p)),
            "unix" => unix_path(input, rest)
                .map(Upstream::Pipe)
                .map_err(|p| upstream_error(input, p)),
            "npipe" => Endpoint::parse(input)
                .map(|e| Upstream::Pipe(e.pipe_name().clone()))
                .map_err(|e| upstream_error(input, e.problem().to_string())),
            "exec" => CommandLine::parse(rest)
                .map(Upstream::Exec)
                .map_err(|p| upstream_error(input, p)),
            other => Err(upstream_error(
                input,
                format!("{other:?} is not a kind of upstream"),
            )),
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Tcp(addr) => write!(f, "tcp:{addr}"),
            Upstream::Pipe(name) => write!(f, "pipe:{}", name.platform_path()),
            Upstream::Exec(cmd) => write!(f, "exec:{}", cmd.text),
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upstream({self})")
    }
}

fn tcp_address(rest: &str) -> Result<String, String> {
    let rest = rest.trim_start_matches("//");
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or("a TCP address needs a port: tcp:HOST:PORT")?;
    if host.is_empty() {
        return Err("the host is empty: tcp:HOST:PORT".into());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("write an IPv6 host in brackets: tcp:[::1]:PORT".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(format!("{host}:{p}")),
        _ => Err(format!("{port:?} is not a port (1 to 65535)")),
    }
}

fn unix_path(input: &str, rest: &str) -> Result<PipeName, String> {
    if cfg!(windows) {
        return Err("unix sockets are not supported on Windows; use npipe:NAME".into());
    }
    let path = match rest.strip_prefix("//") {
        Some(abs) if abs.starts_with('/') => abs,
        _ => rest,
    };
    if path.is_empty() {
        return Err(format!("the socket path in {input:?} is empty"));
    }
    PipeName::from_path(path).map_err(|e| e.to_string())
}

/// A helper's command line: the program and its arguments, split like a shell would split
/// plain words and quoted strings (`"..."` or `'...'`), without running a shell.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandLine {
    text: String,
    program: String,
    args: Vec<String>,
}

impl CommandLine {
    /// Splits `text` into a program and arguments.
    ///
    /// ```
    /// use pipewright_http::forward::CommandLine;
    /// let cmd = CommandLine::parse(r#"wsl.exe -d Ubuntu -- socat - "UNIX-CONNECT:/run/a b.sock""#).unwrap();
    /// assert_eq!(cmd.program(), "wsl.exe");
    /// assert_eq!(cmd.args().last().unwrap(), "UNIX-CONNECT:/run/a b.sock");
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut quote: Option<char> = None;
        for c in text.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.get_or_insert_with(String::new).push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    word.get_or_insert_with(String::new);
                }
                (None, c) if c.is_whitespace() => words.extend(word.take()),
                (None, c) => word.get_or_insert_with(String::new).push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("the command line has an unclosed {q} quote"));
        }
        words.extend(word);
        let mut words = words.into_iter();
        let program = words
            .next()
            .ok_or("the command line is empty; write exec:PROGRAM ARGS...")?;
        Ok(CommandLine {
            text: text.to_string(),
            program,
            args: words.collect(),
        })
    }

    /// The program to start.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl fmt::Debug for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandLine({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_in_every_form() {
        assert_eq!(
            Upstream::parse("tcp:127.0.0.1:8080").unwrap(),
            Upstream::Tcp("127.0.0.1:8080".into())
        );
        assert_eq!(
            Upstream::parse("tcp:[::1]:80").unwrap(),
            Upstream::Tcp("[::1]:80".into())
        );
        assert_eq!(
            Upstream::parse("TCP:localhost:1").unwrap(),
            Upstream::Tcp("localhost:1".into())
        );
        match Upstream::parse("npipe:////./pipe/agent").unwrap() {
            Upstream::Pipe(name) => assert_eq!(name.name(), "agent"),
            other => panic!("{other:?}"),
        }
        match Upstream::parse("exec:helper --stdio 'a b'").unwrap() {
            Upstream::Exec(cmd) => {
                assert_eq!(cmd.program(), "helper");
                assert_eq!(cmd.args(), ["--stdio", "a b"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn unix_upstreams_and_listeners_take_a_path() {
        for s in ["unix:/run/a.sock", "unix:///run/a.sock"] {
            match Upstream::parse(s).unwrap() {
                Upstream::Pipe(name) => {
                    assert_eq!(name.unix_path(), std::path::Path::new("/run/a.sock"))
                }
                other => panic!("{other:?}"),
            }
            let name = parse_listen(s).unwrap();
            assert_eq!(name.unix_path(), std::path::Path::new("/run/a.sock"));
        }
    }

    #[test]
    fn listen_addresses() {
        for s in [
            "npipe:agent",
            "npipe:////./pipe/agent",
            r"npipe:\\.\pipe\agent",
        ] {
            assert_eq!(parse_listen(s).unwrap().name(), "agent", "{s}");
        }
    }

    #[test]
    fn malformed_addresses_name_the_problem_and_the_forms() {
        let upstream_cases = [
            ("127.0.0.1:8080", "not a kind of upstream"),
            ("localhost", "no tcp:"),
            ("tcp:127.0.0.1", "needs a port"),
            ("tcp:127.0.0.1:0", "is not a port"),
            ("tcp:127.0.0.1:http", "is not a port"),
            ("tcp::80", "host is empty"),
            ("tcp:::1:80", "IPv6"),
            ("exec:", "command line is empty"),
            ("exec:helper \"unclosed", "unclosed"),
            ("npipe:", "NAME is empty"),
            ("ftp:host:21", "not a kind of upstream"),
        ];
        for (input, needle) in upstream_cases {
            let err = Upstream::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains("tcp:HOST:PORT"), "{input:?}: {err}");
        }
        let listen_cases = [
            ("agent", "no npipe: or unix: prefix"),
            ("tcp:127.0.0.1:80", "not a place to listen"),
            ("npipe:", "NAME is empty"),
            ("npipe:////server/pipe/x", "only pipes on this machine"),
        ];
        for (input, needle) in listen_cases {
            let err = parse_listen(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains("npipe:NAME"), "{input:?}: {err}");
        }
    }
}
