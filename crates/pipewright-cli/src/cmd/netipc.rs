//! `pipewright netipc serve|call`: a netipc (Netdata IPC) server and client for one method,
//! so any external peer can be tested against ours.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use pipewright_netipc::client::{status_name, Client, ClientConfig, ClientError};
use pipewright_netipc::codec::cgroups_snapshot::{CgroupItem, Snapshot};
use pipewright_netipc::handshake::{EndpointConfig, HandshakeError, Negotiated};
use pipewright_netipc::header::{method, Kind, TransportStatus};
use pipewright_netipc::hello::profile;
use pipewright_netipc::managed::{
    ManagedConfig, ManagedServer, MAX_PAYLOAD_CAP, SERVICE_RESPONSE_DEFAULT,
};
use pipewright_netipc::service::{CgroupsSnapshot, Echo, Increment, StringReverse};
use pipewright_netipc::session::{Session, SessionError};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{args, exit};

mod bench;
mod lookup;

/// netipc, the local IPC protocol of Netdata's plugins (UDS SEQPACKET on Linux, named
/// pipes on Windows).
#[derive(Debug, Args)]
pub struct NetipcArgs {
    #[command(subcommand)]
    pub command: NetipcCommand,
}

/// The `netipc` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetipcCommand {
    /// Serve one method until Ctrl-C; prints "listening on ADDRESS" when ready.
    ///
    /// Exit codes: 0 stopped, 2 bad arguments, 8 the service is already served, 1 other.
    Serve(ServeArgs),
    /// Call the method once and print the decoded response (-v: the session values too).
    ///
    /// Exit codes: 0 ok, 2 bad arguments, 3 no server, 6 timed out, 7 handshake rejected,
    /// status response, protocol error or echo mismatch (the status is named), 1 other.
    Call(CallArgs),
    /// INCREMENT ping-pong against any netipc server for a duration; prints one CSV line
    /// (`--header`: the header line first).
    ///
    /// Exit codes: 0 ok, 2 bad arguments, 3 no server, 6 timed out, 7 handshake rejected,
    /// a wrong or status answer, or a dropped session (named on stderr), 1 other.
    Bench(bench::BenchArgs),
}

/// The method an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Raw L1 echo: any request is answered with its own code, message id and payload.
    Echo,
    /// INCREMENT (1): u64 n -> n + 1.
    Increment,
    /// STRING_REVERSE (3).
    StringReverse,
    /// CGROUPS_SNAPSHOT (2).
    CgroupsSnapshot,
    /// CGROUPS_LOOKUP (4): cgroups by path (`--key`, repeatable).
    CgroupsLookup,
    /// APPS_LOOKUP (5): processes by pid (`--pid`, repeatable or comma-separated).
    AppsLookup,
}

/// Transport profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// UDS SEQPACKET (Linux) or named pipe (Windows), profile 0x01.
    Baseline,
    /// Shared memory: offer and prefer profiles 0x04 and 0x02 (POSIX: one region
    /// file per session in the run directory), with the baseline as fallback.
    Shm,
}

/// Options both subcommands share.
#[derive(Debug, Args)]
pub struct Common {
    /// The run directory: the socket is DIR/SERVICE.sock on Linux; on Windows the pipe
    /// name hashes DIR byte for byte.
    #[arg(long, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// The service name ([A-Za-z0-9._-], not . or ..).
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Transport profile.
    #[arg(long, value_enum, default_value = "baseline")]
    pub profile: ProfileArg,
    /// The auth token, decimal or 0x hex.
    #[arg(long, default_value = "0", value_parser = token)]
    pub token: u64,
    /// The method.
    #[arg(long, value_enum, default_value = "increment")]
    pub method: MethodArg,
    /// Packet size to advertise (0: the transport's automatic size).
    #[arg(long, default_value_t = 0)]
    pub packet_size: u32,
    /// Request payload limit (0: the default).
    #[arg(long, default_value_t = 0)]
    pub max_request: u32,
    /// Response payload limit (0: the default, learned upwards).
    #[arg(long, default_value_t = 0)]
    pub max_response: u32,
}

/// Arguments of `netipc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent sessions; more clients are closed after the handshake.
    #[arg(long, default_value_t = pipewright_netipc::managed::DEFAULT_WORKERS)]
    pub workers: usize,
    /// cgroups-snapshot: how many items each snapshot carries.
    #[arg(long, default_value_t = 3)]
    pub items: usize,
}

/// Arguments of `netipc call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub common: Common,
    /// increment: the value to send.
    #[arg(long, default_value_t = 0)]
    pub value: u64,
    /// string-reverse: the string to send.
    #[arg(long, default_value = "netipc")]
    pub string: String,
    /// echo: payload size in bytes (a byte pattern), like 100, 64KiB, 1MiB.
    #[arg(long, default_value = "64", value_parser = args::size)]
    pub size: usize,
    /// cgroups-lookup: a cgroup path to look up (repeat for more; none is a probe).
    #[arg(long = "key", value_name = "PATH")]
    pub keys: Vec<String>,
    /// apps-lookup: pids to look up (repeat or separate with commas; none is a probe).
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// echo: the method code to put in the request.
    #[arg(long, default_value_t = method::INCREMENT)]
    pub code: u16,
    /// How long the call may take (connect, handshake, answer), like 500ms, 2s, 1m.
    #[arg(long, short = 't', default_value = "10s", value_parser = args::duration)]
    pub timeout: Duration,
}

/// Parses an auth token in decimal or `0x` hex.
pub fn token(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|e| {
        format!("{s:?} is not a token ({e}); write a 64-bit number in decimal or 0x hex")
    })
}

/// Runs a `netipc` subcommand and returns the exit code.
pub async fn run(a: NetipcArgs, verbose: u8) -> u8 {
    match a.command {
        NetipcCommand::Serve(a) => serve(a).await,
        NetipcCommand::Call(a) => call(a, verbose > 0).await,
        NetipcCommand::Bench(a) => bench::run(a, verbose > 0).await,
    }
}

/// The profile bits `--profile` offers and prefers.
fn profiles(p: ProfileArg) -> (u32, u32) {
    let shm = profile::SHM_HYBRID | profile::SHM_FUTEX;
    match p {
        ProfileArg::Baseline => (profile::BASELINE, profile::BASELINE),
        ProfileArg::Shm => (profile::BASELINE | shm, shm),
    }
}

/// A profile bit by name, e.g. `SHM_FUTEX (shared memory)`.
fn profile_name(bit: u32) -> &'static str {
    match bit {
        profile::BASELINE if cfg!(windows) => "BASELINE (named pipe)",
        profile::BASELINE => "BASELINE (UDS SEQPACKET)",
        profile::SHM_HYBRID => "SHM_HYBRID (shared memory)",
        profile::SHM_FUTEX if cfg!(windows) => "SHM_BUSYWAIT (shared memory)",
        profile::SHM_FUTEX => "SHM_FUTEX (shared memory)",
        _ => "unknown",
    }
}

fn endpoint(c: &Common) -> EndpointConfig {
    let (supported_profiles, preferred_profiles) = profiles(c.profile);
    EndpointConfig {
        supported_profiles,
        preferred_profiles,
        max_request_payload_bytes: c.max_request,
        max_response_payload_bytes: c.max_response,
        auth_token: c.token,
        packet_size: c.packet_size,
        ..EndpointConfig::default()
    }
}

/// The synthetic items a snapshot server reports.
fn snapshot_items(n: usize) -> Vec<CgroupItem> {
    (0..n)
        .map(|i| {
            let name = format!("netipc-test-{i}");
            let mut item = CgroupItem::new(
                name.clone().into_bytes(),
                format!("/sys/fs/cgroup/netipc-test/{name}/cgroup.procs").into_bytes(),
            );
            item.options = i as u32;
            item.enabled = u32::from(i % 2 == 0);
            item
        })
        .collect()
}

fn session_exit(e: &SessionError) -> u8 {
    match e {
        SessionError::Io(io) => match io.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => exit::NOT_FOUND,
            std::io::ErrorKind::AddrInUse => exit::ALREADY_IN_USE,
            std::io::ErrorKind::PermissionDenied => exit::ACCESS_DENIED,
            std::io::ErrorKind::TimedOut => exit::TIMED_OUT,
            _ => exit::FAILURE,
        },
        SessionError::Naming(_) => exit::USAGE,
        #[cfg(target_os = "linux")]
        SessionError::Bind(pipewright_netipc::uds::BindError::AddrInUse { .. }) => {
            exit::ALREADY_IN_USE
        }
        #[cfg(target_os = "linux")]
        SessionError::Bind(_) => exit::FAILURE,
        SessionError::HandshakeTimeout(_) => exit::TIMED_OUT,
        _ => exit::PEER_ERROR,
    }
}

async fn serve(a: ServeArgs) -> u8 {
    let c = &a.common;
    let mut endpoint = endpoint(c);
    if c.method == MethodArg::Echo && c.max_response == 0 {
        // An echo answers with the request's size.
        endpoint.max_response_payload_bytes = match c.max_request {
            0 => MAX_PAYLOAD_CAP,
            v => v,
        };
    }
    let config = ManagedConfig {
        workers: a.workers,
        ..ManagedConfig::new(endpoint)
    };
    // A lookup answer is fitted into the response limit the server starts with.
    let lookup_limit = match c.max_response {
        0 => SERVICE_RESPONSE_DEFAULT,
        v => v,
    } as usize;
    let bound = match c.method {
        MethodArg::Echo => ManagedServer::bind(&c.run_dir, &c.service, config, Echo),
        MethodArg::Increment => ManagedServer::bind(&c.run_dir, &c.service, config, Increment),
        MethodArg::StringReverse => {
            ManagedServer::bind(&c.run_dir, &c.service, config, StringReverse)
        }
        MethodArg::CgroupsSnapshot => {
            let items = snapshot_items(a.items);
            let generation = AtomicU64::new(0);
            let provider = move || {
                Ok(Snapshot {
                    systemd_enabled: 1,
                    generation: generation.fetch_add(1, Ordering::Relaxed) + 1,
                    items: items.clone(),
                })
            };
            ManagedServer::bind(
                &c.run_dir,
                &c.service,
                config,
                CgroupsSnapshot::new(provider),
            )
        }
        MethodArg::CgroupsLookup => ManagedServer::bind(
            &c.run_dir,
            &c.service,
            config,
            lookup::cgroups_service(lookup_limit),
        ),
        MethodArg::AppsLookup => ManagedServer::bind(
            &c.run_dir,
            &c.service,
            config,
            lookup::apps_service(lookup_limit),
        ),
    };
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pipewright netipc serve: {e}");
            return session_exit(&e);
        }
    };
    let address = pipewright_netipc::endpoint::address(&c.run_dir, &c.service)
        .unwrap_or_else(|_| c.service.clone());
    let method = c
        .method
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let offered = match c.profile {
        ProfileArg::Baseline => "baseline",
        ProfileArg::Shm => "shm+baseline",
    };
    outln!(
        "listening on {address} (method {method}, token {:#x}, workers {}, profiles {offered})",
        c.token,
        a.workers
    );
    let _ = std::io::stdout().flush();
    let stop = server.stopper();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.stop();
        }
    });
    match server.run().await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright netipc serve: {e}");
            session_exit(&e)
        }
    }
}

fn print_negotiated(n: &Negotiated) {
    outln!("session_id: {}", n.session_id);
    outln!("selected_profile: {:#04x}", n.selected_profile);
    outln!("profile: {}", profile_name(n.selected_profile));
    outln!("packet_size: {}", n.packet_size);
    outln!("max_request_payload_bytes: {}", n.max_request_payload_bytes);
    outln!("max_request_batch_items: {}", n.max_request_batch_items);
    outln!(
        "max_response_payload_bytes: {}",
        n.max_response_payload_bytes
    );
    outln!("max_response_batch_items: {}", n.max_response_batch_items);
}

fn client_exit(e: &ClientError) -> u8 {
    match e {
        ClientError::NotFound { .. } => exit::NOT_FOUND,
        ClientError::TimedOut(_) => exit::TIMED_OUT,
        ClientError::Session(s) => session_exit(s),
        ClientError::Rejected(_)
        | ClientError::Status(_)
        | ClientError::LimitExceeded
        | ClientError::Codec(_) => exit::PEER_ERROR,
    }
}

async fn call(a: CallArgs, verbose: bool) -> u8 {
    let c = &a.common;
    if let Err(e) = pipewright_netipc::naming::validate_service_name(&c.service) {
        eprintln!("pipewright netipc call: {e}");
        return exit::USAGE;
    }
    if c.method == MethodArg::Echo {
        return match tokio::time::timeout(a.timeout, echo(&a, verbose)).await {
            Ok(code) => code,
            Err(_) => {
                eprintln!("pipewright netipc call: no answer within {:?}", a.timeout);
                exit::TIMED_OUT
            }
        };
    }
    let config = ClientConfig {
        call_timeout: a.timeout,
        ..ClientConfig::new(endpoint(c))
    };
    let mut client = Client::new(&c.run_dir, &c.service, config);
    let result = async {
        let n = client.connect().await?;
        if verbose {
            print_negotiated(&n);
        }
        match c.method {
            MethodArg::Increment => {
                let v = client.increment(a.value).await?;
                outln!("{v}");
            }
            MethodArg::StringReverse => {
                let r = client.string_reverse(a.string.as_bytes()).await?;
                outln!("{}", String::from_utf8_lossy(&r));
            }
            MethodArg::CgroupsSnapshot => print_snapshot(&client.cgroups_snapshot().await?),
            MethodArg::CgroupsLookup => lookup::call_cgroups(&mut client, &a.keys).await?,
            MethodArg::AppsLookup => lookup::call_apps(&mut client, &a.pids).await?,
            MethodArg::Echo => unreachable!("handled above"),
        }
        Ok::<(), ClientError>(())
    }
    .await;
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("pipewright netipc call: {e}");
            client_exit(&e)
        }
    }
}

fn print_snapshot(s: &Snapshot) {
    outln!("generation: {}", s.generation);
    outln!("systemd_enabled: {}", s.systemd_enabled);
    outln!("items: {}", s.items.len());
    for it in &s.items {
        outln!(
            "hash={:#010x} options={:#x} enabled={} name={} path={}",
            it.hash,
            it.options,
            it.enabled,
            String::from_utf8_lossy(&it.name),
            String::from_utf8_lossy(&it.path)
        );
    }
}

/// The echo payload: a byte pattern that catches reordering and truncation.
fn echo_pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 8) as u8)
        .collect()
}

async fn echo(a: &CallArgs, verbose: bool) -> u8 {
    let c = &a.common;
    let mut cfg = endpoint(c);
    if cfg.max_request_payload_bytes == 0 {
        cfg.max_request_payload_bytes = u32::try_from(a.size).unwrap_or(u32::MAX).max(1024);
    }
    let mut session = match Session::connect(&c.run_dir, &c.service, &cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pipewright netipc call: {}", describe(&e));
            return session_exit(&e);
        }
    };
    if verbose {
        print_negotiated(session.negotiated());
    }
    let payload = echo_pattern(a.size);
    let id = 1;
    let outcome = async {
        session.send_request_with_id(a.code, id, &payload).await?;
        session.recv_response().await
    }
    .await;
    let m = match outcome {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pipewright netipc call: {}", describe(&e));
            return session_exit(&e);
        }
    };
    let h = &m.header;
    let mut problems = Vec::new();
    if h.kind != Kind::Response {
        problems.push(format!("kind {:?}, expected Response", h.kind));
    }
    if h.transport_status != TransportStatus::OK {
        problems.push(format!("status {}", status_name(h.transport_status)));
    }
    if h.code != a.code {
        problems.push(format!("method code {}, expected {}", h.code, a.code));
    }
    if h.message_id != id {
        problems.push(format!("message id {}, expected {id}", h.message_id));
    }
    if m.payload != payload {
        let at = m
            .payload
            .iter()
            .zip(&payload)
            .position(|(x, y)| x != y)
            .unwrap_or(m.payload.len().min(payload.len()));
        problems.push(format!(
            "payload of {} bytes differs from the {} sent (first difference at byte {at})",
            m.payload.len(),
            payload.len()
        ));
    }
    if problems.is_empty() {
        outln!(
            "echo ok: {} bytes, method {}, message id {id}",
            payload.len(),
            a.code
        );
        exit::OK
    } else {
        eprintln!(
            "pipewright netipc call: echo mismatch: {}",
            problems.join("; ")
        );
        exit::PEER_ERROR
    }
}

/// A session error with the handshake status named where there is one.
fn describe(e: &SessionError) -> String {
    match e {
        SessionError::Handshake(HandshakeError::Rejected(status)) => {
            format!("handshake rejected with {}", status_name(*status))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_decimal_and_hex() {
        assert_eq!(token("0").unwrap(), 0);
        assert_eq!(token("12345").unwrap(), 12345);
        assert_eq!(token("0xDEADBEEFCAFEBABE").unwrap(), 0xDEAD_BEEF_CAFE_BABE);
        assert_eq!(token("0Xff").unwrap(), 255);
        assert_eq!(token("18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "",
            "0x",
            "-1",
            "0xg",
            "12a",
            "18446744073709551616",
            "0x1ffffffffffffffff",
        ] {
            let e = token(bad).unwrap_err();
            assert!(e.contains("0x hex"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn echo_pattern_is_not_periodic_in_256() {
        let p = echo_pattern(1 << 16);
        assert_eq!(p.len(), 1 << 16);
        assert_ne!(p[..256], p[256..512]);
    }
}
