//! Addresses for `pipewright bridge`: `TYPE[:VALUE][,OPTION[=VALUE]]...`, type in any case.
//!
//! | address | role |
//! |---|---|
//! | `stdio` | this process's stdin and stdout |
//! | `npipe:NAME[,mode=auto\|byte\|message][,timeout=5s][,poll]` | connect to a pipe (default `mode=auto`: the pipe's own type on Windows) |
//! | `npipe-listen:NAME[,backlog=N][,sddl=S][,mode=message][,max-instances=N]` | serve a pipe |
//! | `tcp:HOST:PORT[,timeout=5s][,poll]` / `tcp-listen:[HOST:]PORT` | TCP (listens on 127.0.0.1 unless a host is given) |
//! | `unix:PATH` / `unix-listen:PATH[,mode=0600][,unlink-early]` | Unix sockets |
//! | `exec:CMDLINE[,wsl][,distro=D][,user=U]` | a child's stdin and stdout |
//! | `assuan:FILE` | gpg-agent's Assuan socket file |
//!
//! ```ignore
//! let addr = Address::parse("npipe:docker_engine,mode=message")?;
//! let side = addr.connect().await?;
//! ```

pub mod assuan;
pub mod exec;
pub mod grammar;
pub mod npipe;
pub mod stdio;
pub mod tcp;
pub mod unix;

use std::path::PathBuf;
use std::time::Duration;

use pipewright::{ListenerOptions, PipeMode, PipeName};

use crate::failure::Failure;
use crate::join::Side;
use grammar::{AddressError, Part, RawAddress, RawOption};

/// A parsed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// stdin and stdout.
    Stdio,
    /// A pipe client.
    Npipe(npipe::Connect),
    /// A pipe server.
    NpipeListen(npipe::Listen),
    /// A TCP client.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Bound on the connect (with `poll`: on retrying a refused connect).
        timeout: Duration,
        /// Retry while the connection is refused (nothing listens yet).
        poll: bool,
    },
    /// A TCP server.
    TcpListen {
        /// Address to bind (127.0.0.1 unless given).
        host: String,
        /// Port (0: any free port, printed on stderr).
        port: u16,
    },
    /// A Unix socket client.
    Unix {
        /// Socket path.
        path: PathBuf,
    },
    /// A Unix socket server.
    UnixListen(unix::Listen),
    /// A child process.
    Exec(exec::Exec),
    /// A gpg-agent Assuan socket file.
    Assuan {
        /// The socket file.
        path: PathBuf,
    },
}

/// The syntax of each address type, for errors and help.
pub fn syntax(kind: &str) -> &'static str {
    match kind {
        "stdio" => "stdio",
        "npipe" => "npipe:NAME[,mode=auto|byte|message][,timeout=DURATION][,poll]",
        "npipe-listen" => "npipe-listen:NAME[,backlog=1..254][,sddl=SDDL][,mode=byte|message][,max-instances=1..254]",
        "tcp" => "tcp:HOST:PORT[,timeout=DURATION][,poll]",
        "tcp-listen" => "tcp-listen:[HOST:]PORT",
        "unix" => "unix:PATH",
        "unix-listen" => "unix-listen:PATH[,mode=OCTAL][,unlink-early]",
        "exec" => "exec:CMDLINE[,wsl][,distro=NAME][,user=NAME]",
        "assuan" => "assuan:FILE",
        _ => grammar::GENERAL_SYNTAX,
    }
}

/// Helpers that check one address's parts against its syntax.
struct Checker<'a> {
    input: &'a str,
    raw: &'a RawAddress,
    syntax: &'static str,
}

impl Checker<'_> {
    fn err(&self, column: usize, message: impl Into<String>) -> AddressError {
        AddressError::new(self.input, column, message, self.syntax)
    }

    fn value(&self) -> Result<&Part, AddressError> {
        match &self.raw.value {
            Some(v) if !v.text.is_empty() => Ok(v),
            Some(v) => Err(self.err(
                v.column,
                format!("{} needs a value after the colon", self.raw.kind.text),
            )),
            None => Err(self.err(
                self.raw.kind.column + self.raw.kind.text.len(),
                format!(
                    "{} needs a value: write {}",
                    self.raw.kind.text, self.syntax
                ),
            )),
        }
    }

    fn no_value(&self) -> Result<(), AddressError> {
        match &self.raw.value {
            Some(v) => Err(self.err(v.column, format!("{} takes no value", self.raw.kind.text))),
            None => Ok(()),
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), AddressError> {
        for opt in &self.raw.options {
            if !allowed.contains(&opt.key.text.as_str()) {
                let known = if allowed.is_empty() {
                    "it takes no options".to_string()
                } else {
                    format!("its options are {}", allowed.join(", "))
                };
                return Err(self.err(
                    opt.key.column,
                    format!(
                        "unknown option {:?} for {}; {known}",
                        opt.key.text, self.raw.kind.text
                    ),
                ));
            }
        }
        Ok(())
    }

    fn opt(&self, key: &str) -> Option<&RawOption> {
        self.raw.options.iter().rev().find(|o| o.key.text == key)
    }

    fn opt_value(&self, key: &str) -> Result<Option<(&Part, String)>, AddressError> {
        match self.opt(key) {
            None => Ok(None),
            Some(RawOption { value: Some(v), .. }) if !v.text.is_empty() => {
                Ok(Some((v, v.unquoted())))
            }
            Some(o) => Err(self.err(
                o.key.column,
                format!("option {key} needs a value: {key}=..."),
            )),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, AddressError> {
        match self.opt(key) {
            None => Ok(false),
            Some(RawOption { value: None, .. }) => Ok(true),
            Some(RawOption { value: Some(v), .. }) => match v.text.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(self.err(
                    v.column,
                    format!("{key} is a flag: write {key}, {key}=true or {key}=false"),
                )),
            },
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, AddressError> {
        let Some((part, text)) = self.opt_value(key)? else {
            return Ok(None);
        };
        match text.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(self.err(
                part.column,
                format!(
                    "{key}={text} is not a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>, AddressError> {
        let Some((part, text)) = self.opt_value(key)? else {
            return Ok(None);
        };
        crate::args::duration(&text)
            .map(Some)
            .map_err(|e| self.err(part.column, e))
    }

    fn mode(&self) -> Result<PipeMode, AddressError> {
        match self.opt_value("mode")? {
            None => Ok(PipeMode::Byte),
            Some((_, v)) if v.eq_ignore_ascii_case("byte") => Ok(PipeMode::Byte),
            Some((_, v)) if v.eq_ignore_ascii_case("message") => Ok(PipeMode::Message),
            Some((part, v)) => {
                Err(self.err(part.column, format!("mode={v} is not byte or message")))
            }
        }
    }

    fn connect_mode(&self) -> Result<npipe::ConnectMode, AddressError> {
        use npipe::ConnectMode;
        match self.opt_value("mode")? {
            None => Ok(ConnectMode::Auto),
            Some((_, v)) if v.eq_ignore_ascii_case("auto") => Ok(ConnectMode::Auto),
            Some((_, v)) if v.eq_ignore_ascii_case("byte") => Ok(ConnectMode::Byte),
            Some((_, v)) if v.eq_ignore_ascii_case("message") => Ok(ConnectMode::Message),
            Some((part, v)) => Err(self.err(
                part.column,
                format!("mode={v} is not auto, byte or message"),
            )),
        }
    }

    fn pipe_name(&self) -> Result<PipeName, AddressError> {
        let value = self.value()?;
        PipeName::parse(&value.unquoted()).map_err(|e| self.err(value.column, e.to_string()))
    }

    fn host_port(&self, host_optional: bool) -> Result<(String, u16), AddressError> {
        let value = self.value()?;
        let text = value.unquoted();
        let (host, port_text, port_column) = match text.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.to_string(),
                value.column + h.chars().count() + 1,
            ),
            None if host_optional => ("127.0.0.1".to_string(), text.clone(), value.column),
            None => {
                return Err(self.err(
                    value.column + text.chars().count(),
                    "no port: write HOST:PORT",
                ))
            }
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(self.err(value.column, "empty host before the colon"));
        }
        let port = port_text
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0 || host_optional)
            .ok_or_else(|| {
                self.err(
                    port_column,
                    format!("{port_text:?} is not a port (1-65535)"),
                )
            })?;
        Ok((host, port))
    }
}

impl Address {
    /// Parses an address; errors give the column and the syntax expected.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let raw = grammar::split(input)?;
        let kind = raw.kind.text.as_str();
        let c = Checker {
            input,
            raw: &raw,
            syntax: syntax(kind),
        };
        let address = match kind {
            "stdio" | "-" => {
                c.no_value()?;
                c.only(&[])?;
                Address::Stdio
            }
            "npipe" => {
                c.only(&["mode", "timeout", "poll"])?;
                Address::Npipe(npipe::Connect {
                    name: c.pipe_name()?,
                    mode: c.connect_mode()?,
                    timeout: c
                        .duration("timeout")?
                        .unwrap_or(pipewright::DEFAULT_CONNECT_TIMEOUT),
                    poll: c.flag("poll")?,
                })
            }
            "npipe-listen" => {
                c.only(&["backlog", "sddl", "mode", "max-instances"])?;
                let name = c.pipe_name()?;
                let mut options = ListenerOptions::new().mode(c.mode()?);
                if let Some(b) = c.number::<usize>("backlog", 1..=254)? {
                    options = options.backlog(b);
                }
                if let Some(m) = c.number::<u32>("max-instances", 1..=254)? {
                    options = options.max_instances(m);
                }
                if let Some((_, sddl)) = c.opt_value("sddl")? {
                    options = options.sddl(sddl);
                }
                Address::NpipeListen(npipe::Listen { name, options })
            }
            "tcp" => {
                c.only(&["timeout", "poll"])?;
                let (host, port) = c.host_port(false)?;
                Address::Tcp {
                    host,
                    port,
                    timeout: c
                        .duration("timeout")?
                        .unwrap_or(tcp::DEFAULT_CONNECT_TIMEOUT),
                    poll: c.flag("poll")?,
                }
            }
            "tcp-listen" => {
                c.only(&[])?;
                let (host, port) = c.host_port(true)?;
                Address::TcpListen { host, port }
            }
            "unix" => {
                c.only(&[])?;
                Address::Unix {
                    path: PathBuf::from(c.value()?.unquoted()),
                }
            }
            "unix-listen" => {
                c.only(&["mode", "unlink-early"])?;
                let path = PathBuf::from(c.value()?.unquoted());
                let mode = match c.opt_value("mode")? {
                    None => 0o600,
                    Some((part, text)) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| {
                            c.err(
                                part.column,
                                format!("mode={text} is not an octal file mode like 0600"),
                            )
                        })?,
                };
                Address::UnixListen(unix::Listen {
                    path,
                    mode,
                    unlink_early: c.flag("unlink-early")?,
                })
            }
            "exec" => {
                c.only(&["wsl", "distro", "user"])?;
                let value = c.value()?;
                let argv = exec::split_command_line(&value.text)
                    .map_err(|(offset, msg)| c.err(value.column + offset, msg))?;
                let wsl = c.flag("wsl")?;
                let distro = c.opt_value("distro")?.map(|(_, v)| v);
                let user = c.opt_value("user")?.map(|(_, v)| v);
                if !wsl && (distro.is_some() || user.is_some()) {
                    let opt = c.opt("distro").or(c.opt("user")).expect("one is set");
                    return Err(c.err(
                        opt.key.column,
                        "distro= and user= go with the wsl option: add ,wsl",
                    ));
                }
                Address::Exec(exec::Exec {
                    argv,
                    wsl: wsl.then_some(exec::Wsl { distro, user }),
                })
            }
            "assuan" => {
                c.only(&[])?;
                Address::Assuan {
                    path: PathBuf::from(c.value()?.unquoted()),
                }
            }
            other => {
                return Err(AddressError::new(
                    input,
                    raw.kind.column,
                    format!("unknown address type {other:?}"),
                    grammar::GENERAL_SYNTAX,
                ))
            }
        };
        Ok(address)
    }

    /// Whether this address accepts connections (and so serves many).
    pub fn is_listening(&self) -> bool {
        matches!(
            self,
            Address::NpipeListen(_) | Address::TcpListen { .. } | Address::UnixListen(_)
        )
    }

    /// Opens a connecting address.
    pub async fn connect(&self) -> Result<Side, Failure> {
        match self {
            Address::Stdio => {
                let stdin = stdio::stdin().map_err(|e| Failure::from_io("open stdin", &e))?;
                let stdout = stdio::stdout().map_err(|e| Failure::from_io("open stdout", &e))?;
                Ok(Side {
                    label: "stdio".into(),
                    reader: Box::new(stdin),
                    writer: Box::new(stdout),
                    half_close: true,
                    eof_is_close: false,
                    keep_alive: None,
                })
            }
            Address::Npipe(c) => c.connect().await,
            Address::Tcp {
                host,
                port,
                timeout,
                poll,
            } => tcp::connect(host, *port, *timeout, *poll).await,
            Address::Unix { path } => unix::connect(path).await,
            Address::Exec(e) => e.spawn(),
            Address::Assuan { path } => {
                let stream = assuan::connect(path, None).await?;
                Ok(Side::from_tcp(format!("assuan:{}", path.display()), stream))
            }
            Address::NpipeListen(_) | Address::TcpListen { .. } | Address::UnixListen(_) => Err(
                Failure::usage("a listening address cannot connect; put it first"),
            ),
        }
    }

    /// Binds a listening address.
    pub async fn listen(&self) -> Result<Acceptor, Failure> {
        match self {
            Address::NpipeListen(l) => l.bind().map(|l| Acceptor::Pipe(Box::new(l))),
            Address::TcpListen { host, port } => tcp::listen(host, *port).await.map(Acceptor::Tcp),
            Address::UnixListen(l) => l.bind().map(|l| Acceptor::Pipe(Box::new(l))),
            _ => Err(Failure::usage("not a listening address")),
        }
    }
}

/// A bound listening address.
#[derive(Debug)]
pub enum Acceptor {
    /// A pipe or Unix socket listener.
    Pipe(Box<pipewright::Listener>),
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
}

impl Acceptor {
    /// Waits for the next connection.
    pub async fn accept(&self) -> Result<Side, Failure> {
        match self {
            Acceptor::Pipe(l) => {
                let stream = l.accept().await.map_err(|e| Failure::from_pipe(&e))?;
                Ok(Side::from_pipe(l.name().to_string(), stream))
            }
            Acceptor::Tcp(l) => {
                let (stream, peer) = l
                    .accept()
                    .await
                    .map_err(|e| Failure::from_io("accept", &e))?;
                Ok(Side::from_tcp(peer.to_string(), stream))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> AddressError {
        Address::parse(input).unwrap_err()
    }

    #[test]
    fn every_type_parses() {
        assert_eq!(Address::parse("STDIO").unwrap(), Address::Stdio);
        let Address::Npipe(c) =
            Address::parse("npipe://./pipe/x,mode=message,timeout=2s,poll").unwrap()
        else {
            panic!()
        };
        assert_eq!(c.name.name(), "x");
        assert_eq!(c.mode, npipe::ConnectMode::Message);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert!(c.poll);
        for (text, mode) in [
            ("npipe:x", npipe::ConnectMode::Auto),
            ("npipe:x,mode=AUTO", npipe::ConnectMode::Auto),
            ("npipe:x,mode=byte", npipe::ConnectMode::Byte),
        ] {
            let Address::Npipe(c) = Address::parse(text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(c.mode, mode, "{text}");
        }
        let Address::NpipeListen(l) = Address::parse(
            r"Npipe-Listen:\\.\pipe\svc,backlog=8,max-instances=20,sddl=D:P(A;;GA;;;AU)",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(l.name.name(), "svc");
        assert_eq!(l.options.get_backlog(), 8);
        assert_eq!(
            Address::parse("tcp:localhost:8080").unwrap(),
            Address::Tcp {
                host: "localhost".into(),
                port: 8080,
                timeout: tcp::DEFAULT_CONNECT_TIMEOUT,
                poll: false,
            }
        );
        assert_eq!(
            Address::parse("TCP:[::1]:22,timeout=1500ms,poll").unwrap(),
            Address::Tcp {
                host: "::1".into(),
                port: 22,
                timeout: Duration::from_millis(1500),
                poll: true,
            }
        );
        assert_eq!(
            Address::parse("tcp-listen:5000").unwrap(),
            Address::TcpListen {
                host: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert_eq!(
            Address::parse("tcp-listen:0.0.0.0:5000").unwrap(),
            Address::TcpListen {
                host: "0.0.0.0".into(),
                port: 5000
            }
        );
        assert_eq!(
            Address::parse("unix:/run/x.sock").unwrap(),
            Address::Unix {
                path: "/run/x.sock".into()
            }
        );
        let Address::UnixListen(u) =
            Address::parse("unix-listen:/tmp/s,mode=0660,unlink-early").unwrap()
        else {
            panic!()
        };
        assert_eq!((u.mode, u.unlink_early), (0o660, true));
        let Address::UnixListen(d) = Address::parse("unix-listen:/tmp/s").unwrap() else {
            panic!()
        };
        assert_eq!((d.mode, d.unlink_early), (0o600, false));
        let Address::Exec(e) =
            Address::parse("exec:'socat - TCP:h:1,crlf',wsl,distro=Debian,user=me").unwrap()
        else {
            panic!()
        };
        assert_eq!(e.argv, ["socat", "-", "TCP:h:1,crlf"]);
        assert_eq!(e.wsl.as_ref().unwrap().distro.as_deref(), Some("Debian"));
        assert_eq!(
            Address::parse("assuan:C:/gnupg/S.gpg-agent").unwrap(),
            Address::Assuan {
                path: "C:/gnupg/S.gpg-agent".into()
            }
        );
    }

    #[test]
    fn listening_addresses_are_known() {
        assert!(Address::parse("npipe-listen:x").unwrap().is_listening());
        assert!(Address::parse("tcp-listen:1").unwrap().is_listening());
        assert!(!Address::parse("npipe:x").unwrap().is_listening());
    }

    #[test]
    fn malformed_addresses_give_column_and_syntax() {
        let e = err("pipe:x");
        assert!(e.message.contains("unknown address type \"pipe\""));
        assert!(e.expected.contains("npipe-listen"));
        let e = err("npipe:x,mode=stream");
        assert_eq!(e.column, 14);
        assert!(e.message.contains("not auto, byte or message"));
        assert_eq!(e.expected, syntax("npipe"));
        let e = err("npipe-listen:x,mode=auto");
        assert!(e.message.contains("not byte or message"), "{}", e.message);
        let e = err("npipe:x,bogus=1");
        assert_eq!(e.column, 9);
        assert!(e.message.contains("its options are mode, timeout, poll"));
        let e = err("npipe");
        assert!(e.message.contains("needs a value"));
        let e = err("npipe:");
        assert!(e.message.contains("needs a value"));
        let e = err("npipe:x,timeout=soon");
        assert!(e.message.contains("not a duration"));
        let e = err("npipe-listen:x,backlog=0");
        assert!(e
            .message
            .contains("backlog=0 is not a number from 1 to 254"));
        let e = err("npipe-listen:x,backlog");
        assert!(e.message.contains("needs a value"));
        let e = err("tcp:host");
        assert!(e.message.contains("no port"));
        assert_eq!(e.column, 9);
        let e = err("tcp:host:http");
        assert_eq!(e.column, 10);
        assert!(e.message.contains("not a port"));
        let e = err("tcp:host:0");
        assert!(e.message.contains("not a port"));
        let e = err("tcp:host:1,timeout=later");
        assert!(e.message.contains("not a duration"), "{}", e.message);
        let e = err("tcp:host:1,mode=message");
        assert!(
            e.message.contains("its options are timeout, poll"),
            "{}",
            e.message
        );
        let e = err("tcp::80");
        assert!(e.message.contains("empty host"));
        let e = err("tcp-listen:99999");
        assert!(e.message.contains("not a port"));
        let e = err("unix-listen:/tmp/x,mode=999");
        assert!(e.message.contains("not an octal file mode"));
        let e = err("exec:ls,distro=Debian");
        assert!(e.message.contains("add ,wsl"));
        let e = err("exec:ls,wsl=maybe");
        assert!(e.message.contains("wsl is a flag"));
        let e = err("stdio:x");
        assert!(e.message.contains("takes no value"));
        let e = err("stdio,mode=byte");
        assert!(e.message.contains("takes no options"));
        let e = err(r#"exec:"sh -c 'x'"#);
        assert!(e.message.contains("never closed"));
        let e = err("exec:   ");
        assert!(e.message.contains("empty command"));
        let e = err("npipe-listen:x,max-instances=300");
        assert!(e.message.contains("1 to 254"));
    }
}
