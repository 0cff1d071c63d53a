//! The `pipewright` command.

#[macro_use]
mod output;

mod address;
mod args;
mod cmd;
mod exit;
mod failure;
mod join;
mod sys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Local IPC over Windows named pipes and Unix sockets.
#[derive(Debug, Parser)]
#[command(name = "pipewright", version, about, propagate_version = true)]
struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a server is ready on a pipe (exit 0), or say why not.
    Probe(cmd::probe::ProbeArgs),
    /// Run a server and concurrent clients here, in byte and message mode, and report.
    Demo(cmd::demo::DemoArgs),
    /// Measure throughput against raw I/O over the same kind of pipe, in one run.
    Bench(cmd::bench::BenchArgs),
    /// Relay stdin/stdout to a pipe, npiperelay-compatible (`pipewright relay -h` for flags).
    Relay(cmd::relay::RelayCli),
    /// Join two addresses, like socat: pipes, TCP, Unix sockets, commands, stdio.
    Bridge(cmd::bridge::BridgeArgs),
    /// List the named pipes (Windows) or runtime-directory sockets (Unix).
    Ls(cmd::ls::LsArgs),
    /// Serve HTTP on a pipe and forward it to TCP, a Unix socket or a helper (HTTP-aware proxy).
    Forward(cmd::forward::ForwardArgs),
    /// Send an HTTP request over a pipe, like curl: pipewright http npipe:////./pipe/NAME/path.
    Http(cmd::http::HttpArgs),
    /// JSON RPC over pipes, pipe-rpc compatible: serve-demo, call.
    Rpc(cmd::rpc::RpcArgs),
    /// netipc (Netdata IPC) test server and client: serve, call.
    Netipc(cmd::netipc::NetipcArgs),
    /// Windows services (ssh-agent, gpg-agent, Docker, any pipe) as Unix sockets in WSL.
    Wsl(cmd::wsl::WslArgs),
    /// The Windows side of `pipewright wsl`: serve the daemon's streams on stdin and stdout.
    WslHost(cmd::wsl::host::HostArgs),
    /// Print a completion script for bash, zsh, fish, powershell or elvish.
    Completions(cmd::completions::CompletionsArgs),
    /// Write the man pages (`cargo xtask man [DIR]` runs it).
    #[command(hide = true)]
    Man(cmd::completions::ManArgs),
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPEWRIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: a daemon's stderr is its log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The runtime of `relay`, `bridge` and `wsl`: one thread. They only move bytes between
/// streams, and each worker thread of a multi-threaded runtime costs an idle relay memory
/// (its stack, its allocator arena) for nothing (docs/bench.md, "Idle relay and bridge").
fn lean_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    if let Some((program, args)) = cmd::relay::relay_argv(std::env::args_os()) {
        return cmd::relay::main(program, args, init_logging);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match &cli.command {
        Command::Relay(_) | Command::Bridge(_) | Command::Wsl(_) | Command::WslHost(_) => {
            lean_runtime()
        }
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipewright: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Probe(a) => cmd::probe::run(a).await,
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Relay(a) => cmd::relay::run(a).await,
            Command::Bridge(a) => cmd::bridge::run(a).await,
            Command::Ls(a) => cmd::ls::run(a).await,
            Command::Forward(a) => cmd::forward::run(a).await,
            Command::Http(a) => cmd::http::run(a).await,
            Command::Rpc(a) => cmd::rpc::run(a).await,
            Command::Netipc(a) => cmd::netipc::run(a, cli.verbose).await,
            Command::Wsl(a) => cmd::wsl::run(a, cli.verbose).await,
            Command::WslHost(a) => cmd::wsl::host::run(a).await,
            Command::Completions(a) => cmd::completions::run(a).await,
            Command::Man(a) => cmd::completions::run_man(a).await,
        }
    });
    ExitCode::from(code)
}
