//! `pipewright wsl`: Windows services (ssh-agent, gpg-agent, Docker, any pipe) as Unix
//! sockets in WSL, through one long-lived Windows process.
//!
//! ```text
//! eval $(pipewright wsl ssh-agent)      # SSH_AUTH_SOCK to \\.\pipe\openssh-ssh-agent
//! eval $(pipewright wsl docker)         # DOCKER_HOST to \\.\pipe\docker_engine
//! pipewright wsl gpg-agent              # S.gpg-agent to Gpg4win's socket file
//! pipewright wsl status --json
//! pipewright wsl down
//! ```
//!
//! The daemon (`daemon.rs`) listens on the sockets and starts the Windows host (`host.rs`,
//! `pipewright.exe wsl-host`) once; they talk yamux over the host's stdin and stdout
//! (`mux.rs`), one stream per connection, each opened by a header line (`wire.rs`).

pub mod agent;
pub mod agent_frame;
pub mod config;
pub mod control;
pub mod daemon;
pub mod host;
pub mod launch;
pub mod mux;
pub mod paths;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::exit;
use config::{ExtensionSetting, FileConfig, Kind, SocketSpec};
use control::{ControlError, Reply, Request};
use daemon::Daemon;
use launch::Launch;

/// Serve Windows pipes and Assuan sockets as Unix sockets in WSL, through one Windows process.
#[derive(Debug, Args)]
pub struct WslArgs {
    #[command(subcommand)]
    command: WslCommand,
}

#[derive(Debug, Subcommand)]
enum WslCommand {
    /// Run the daemon (in the foreground unless --detach): listen on the sockets, start the
    /// Windows host, restart it when it dies.
    Up(UpArgs),
    /// Stop the daemon: close its sockets and end the Windows host.
    Down(DirArgs),
    /// What the daemon serves: targets, Windows host pid and uptime, connections, bytes,
    /// restarts, errors.
    Status(StatusArgs),
    /// Serve the Windows OpenSSH agent (or 1Password, KeeAgent, KeePassXC) and print the
    /// shell lines to `eval`: eval $(pipewright wsl ssh-agent)
    SshAgent(SshAgentArgs),
    /// Serve Gpg4win's gpg-agent on the Linux gnupg sockets (S.gpg-agent, and with --extra,
    /// --ssh the others).
    GpgAgent(GpgAgentArgs),
    /// Serve Docker Desktop's engine pipe and print the shell lines to `eval`:
    /// eval $(pipewright wsl docker)
    Docker(DockerArgs),
}

/// Where the daemon's state lives.
#[derive(Debug, Args, Clone)]
pub struct DirArgs {
    /// The daemon's directory (control socket, log, default sockets). Default:
    /// $PIPEWRIGHT_WSL_DIR, else $XDG_RUNTIME_DIR/pipewright-wsl, else /tmp/pipewright-wsl-UID.
    #[arg(long, global = false)]
    dir: Option<PathBuf>,
}

/// How the daemon starts and behaves; used when a command has to start one.
#[derive(Debug, Args, Clone)]
pub struct DaemonOptions {
    #[command(flatten)]
    dir: DirArgs,
    /// The config file (default $XDG_CONFIG_HOME/pipewright/wsl.toml, if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The Windows pipewright.exe (default: $PIPEWRIGHT_WINDOWS_EXE, the config file,
    /// pipewright.exe beside this binary, or on PATH).
    #[arg(long)]
    windows_exe: Option<PathBuf>,
    /// A whole command line that starts the Windows host, run by /bin/sh, e.g.
    /// "wine64 /path/pipewright.exe wsl-host".
    #[arg(long)]
    windows_command: Option<String>,
    /// ssh-agent extension requests (message 27): ask the agent (auto), pass them on
    /// (forward), or answer them with SSH_AGENT_FAILURE here (fail).
    #[arg(long, value_enum)]
    ssh_extensions: Option<ExtensionSetting>,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    daemon: DaemonOptions,
    /// A socket to serve: PATH=TARGET[;kind=raw|ssh-agent], TARGET being npipe:NAME[,options]
    /// or assuan:FILE. Repeat for more; added to the config file's.
    #[arg(long = "socket", value_name = "PATH=TARGET")]
    sockets: Vec<String>,
    /// Start the daemon in the background (log in the daemon's directory) and return once
    /// it answers.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SshAgentArgs {
    #[command(flatten)]
    daemon: DaemonOptions,
    /// The Unix socket (default: ssh-agent.sock in the daemon's directory).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The agent's pipe on Windows.
    #[arg(long, default_value = "openssh-ssh-agent")]
    pipe: String,
}

#[derive(Debug, Args)]
struct DockerArgs {
    #[command(flatten)]
    daemon: DaemonOptions,
    /// The Unix socket (default: docker.sock in the daemon's directory).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Docker's pipe on Windows.
    #[arg(long, default_value = "docker_engine")]
    pipe: String,
}

#[derive(Debug, Args)]
struct GpgAgentArgs {
    #[command(flatten)]
    daemon: DaemonOptions,
    /// The Linux directory of gpg's sockets (default: `gpgconf --list-dirs socketdir`,
    /// else $GNUPGHOME, else ~/.gnupg).
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// Gpg4win's directory on Windows, where its socket files are (%VAR% expanded there).
    #[arg(long, default_value = r"%LOCALAPPDATA%\gnupg")]
    windows_gnupg_home: String,
    /// Also serve S.gpg-agent.extra (for forwarding the agent further).
    #[arg(long)]
    extra: bool,
    /// Also serve S.gpg-agent.ssh (gpg-agent as ssh-agent, through the OpenSSH pipe that
    /// Gpg4win's agent serves with enable-win32-openssh-support) and print SSH_AUTH_SOCK for it.
    #[arg(long)]
    ssh: bool,
    /// The pipe --ssh forwards to.
    #[arg(long, default_value = "openssh-ssh-agent")]
    ssh_pipe: String,
}

/// Runs `pipewright wsl ...` and returns the exit code.
pub async fn run(a: WslArgs, verbose: u8) -> u8 {
    let result = match a.command {
        WslCommand::Up(a) => up(a, verbose).await,
        WslCommand::Down(a) => down(a).await,
        WslCommand::Status(a) => status(a).await,
        WslCommand::SshAgent(a) => ssh_agent(a, verbose).await,
        WslCommand::GpgAgent(a) => gpg_agent(a, verbose).await,
        WslCommand::Docker(a) => docker(a, verbose).await,
    };
    match result {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("pipewright wsl: {message}");
            code
        }
    }
}

type Outcome = Result<u8, (u8, String)>;

fn failed(message: impl Into<String>) -> (u8, String) {
    (exit::FAILURE, message.into())
}

fn usage(message: impl Into<String>) -> (u8, String) {
    (exit::USAGE, message.into())
}

fn load_config(o: &DaemonOptions) -> Result<FileConfig, (u8, String)> {
    match &o.config {
        Some(path) => FileConfig::load(path, true).map_err(usage),
        None => match config::default_config_path() {
            Some(path) => FileConfig::load(&path, false).map_err(usage),
            None => Ok(FileConfig::default()),
        },
    }
}

async fn up(a: UpArgs, verbose: u8) -> Outcome {
    let dir = paths::state_dir(a.daemon.dir.dir.clone()).map_err(failed)?;
    let file = load_config(&a.daemon)?;
    let mut specs = file.socket.clone();
    for s in &a.sockets {
        specs.push(SocketSpec::parse_flag(s).map_err(usage)?);
    }
    if a.detach {
        let pid = ensure_daemon(&a.daemon, &dir, verbose).await?;
        for spec in specs {
            serve_via_control(&dir, spec).await?;
        }
        eprintln!(
            "pipewright wsl: daemon running (pid {pid}); log: {}",
            dir.join(paths::LOG).display()
        );
        return Ok(exit::OK);
    }
    // The control socket first: binding it is what keeps a second daemon out.
    let control = match control::bind(&dir) {
        Ok(listener) => listener,
        Err(control::BindError::Running) => {
            // A daemon runs already: hand it the sockets.
            for spec in specs {
                serve_via_control(&dir, spec).await?;
            }
            eprintln!(
                "pipewright wsl: a daemon already runs for {}; it serves these sockets too",
                dir.display()
            );
            return Ok(exit::OK);
        }
        Err(control::BindError::Other(m)) => return Err(failed(m)),
    };
    let launch = Launch::resolve(
        a.daemon.windows_exe.clone(),
        a.daemon.windows_command.clone(),
        &file,
    )
    .map_err(usage)?;
    let setting = a
        .daemon
        .ssh_extensions
        .or(file.ssh_extensions)
        .unwrap_or_default();
    let daemon = Daemon::new(launch, setting, verbose);
    for spec in specs {
        daemon.serve(spec).map_err(|e| (e.code, e.message))?;
    }
    let server = tokio::spawn(control::serve(control, daemon.clone()));
    tracing::info!(dir = %dir.display(), pid = std::process::id(), "pipewright wsl daemon up");
    let stopper = daemon.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.stop();
    });
    daemon.run().await;
    server.abort();
    let _ = server.await;
    Ok(exit::OK)
}

#[cfg(unix)]
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

#[cfg(windows)]
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Makes sure a daemon runs for `dir`, starting one in the background if none does, and
/// returns its pid.
async fn ensure_daemon(o: &DaemonOptions, dir: &Path, verbose: u8) -> Result<u32, (u8, String)> {
    match control::request(dir, &Request::Status).await {
        Ok(Reply::Status(s)) => return Ok(s.daemon_pid),
        Ok(other) => {
            return Err(failed(format!(
                "unexpected reply from the daemon: {other:?}"
            )))
        }
        Err(ControlError::NoDaemon) => {}
        Err(ControlError::Other(m)) => return Err(failed(m)),
    }
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find this program: {e}")))?;
    let log_path = dir.join(paths::LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| failed(format!("cannot open {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| failed(format!("cannot open {}: {e}", log_path.display())))?;
    let mut command = std::process::Command::new(exe);
    for _ in 0..verbose {
        command.arg("-v");
    }
    command.arg("wsl").arg("up").arg("--dir").arg(dir);
    if let Some(c) = &o.config {
        command.arg("--config").arg(c);
    }
    if let Some(e) = &o.windows_exe {
        command.arg("--windows-exe").arg(e);
    }
    if let Some(c) = &o.windows_command {
        command.arg("--windows-command").arg(c);
    }
    if let Some(s) = o.ssh_extensions {
        command.arg("--ssh-extensions").arg(match s {
            ExtensionSetting::Auto => "auto",
            ExtensionSetting::Forward => "forward",
            ExtensionSetting::Fail => "fail",
        });
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    detach(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start the daemon: {e}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match control::request(dir, &Request::Status).await {
            Ok(Reply::Status(s)) => {
                // The daemon runs on its own from here; nothing to reap while it lives.
                drop(child);
                return Ok(s.daemon_pid);
            }
            Ok(_) | Err(ControlError::NoDaemon) => {}
            Err(ControlError::Other(m)) => return Err(failed(m)),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It lost the race to another daemon (which then answers), or it failed.
            if let Ok(Reply::Status(s)) = control::request(dir, &Request::Status).await {
                return Ok(s.daemon_pid);
            }
            return Err(failed(format!(
                "the daemon exited at once ({status}); see {}",
                log_path.display()
            )));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(failed(format!(
                "the daemon did not answer within 20 s; see {}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
fn detach(command: &mut std::process::Command) {
    // Its own process group: a Ctrl-C in the shell that started it does not reach it.
    std::os::unix::process::CommandExt::process_group(command, 0);
}

#[cfg(windows)]
fn detach(_command: &mut std::process::Command) {}

async fn serve_via_control(dir: &Path, spec: SocketSpec) -> Result<(), (u8, String)> {
    match control::request(dir, &Request::Serve { socket: spec }).await {
        Ok(Reply::Ok) => Ok(()),
        Ok(Reply::Error { message }) => Err((exit::ALREADY_IN_USE, message)),
        Ok(other) => Err(failed(format!(
            "unexpected reply from the daemon: {other:?}"
        ))),
        Err(e) => Err(failed(e.to_string())),
    }
}

async fn down(a: DirArgs) -> Outcome {
    let dir = paths::state_dir(a.dir).map_err(failed)?;
    match control::request(&dir, &Request::Down).await {
        Ok(_) => {
            // Wait until it has closed its sockets and its control socket.
            for _ in 0..200 {
                if let Err(ControlError::NoDaemon) = control::request(&dir, &Request::Status).await
                {
                    return Ok(exit::OK);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(failed(
                "the daemon was asked to stop but still answers after 10 s",
            ))
        }
        Err(ControlError::NoDaemon) => {
            eprintln!("pipewright wsl: no daemon runs for {}", dir.display());
            Ok(exit::OK)
        }
        Err(ControlError::Other(m)) => Err(failed(m)),
    }
}

async fn status(a: StatusArgs) -> Outcome {
    let dir = paths::state_dir(a.dir.dir).map_err(failed)?;
    let s = match control::request(&dir, &Request::Status).await {
        Ok(Reply::Status(s)) => s,
        Ok(other) => {
            return Err(failed(format!(
                "unexpected reply from the daemon: {other:?}"
            )))
        }
        Err(ControlError::NoDaemon) => {
            return Err((
                exit::NOT_FOUND,
                format!(
                    "no daemon runs for {}; start one with `pipewright wsl up`",
                    dir.display()
                ),
            ))
        }
        Err(ControlError::Other(m)) => return Err(failed(m)),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(exit::OK);
    }
    println!("daemon pid {}, up {}s", s.daemon_pid, s.daemon_uptime_secs);
    let h = &s.windows_host;
    match (h.pid, h.uptime_secs) {
        (Some(pid), Some(up)) => println!(
            "Windows host pid {pid}, up {up}s, {} restarts: {}",
            h.restarts, h.command
        ),
        _ => println!(
            "Windows host not running ({} restarts): {}",
            h.restarts, h.command
        ),
    }
    if let Some(e) = &h.last_exit {
        println!("  last exit: {e}");
    }
    for sock in &s.sockets {
        println!("{} -> {} ({})", sock.path, sock.target, sock.kind);
        println!(
            "  connections {} ({} open, {} failed), {} bytes to target, {} bytes back",
            sock.connections,
            sock.active,
            sock.failures,
            sock.bytes_to_target,
            sock.bytes_from_target
        );
        if let Some(x) = &sock.ssh_extensions {
            println!("  ssh extensions: {}: {}", x.mode, x.reason);
        }
        if let Some(e) = &sock.last_error {
            println!("  last error: {e}");
        }
    }
    Ok(exit::OK)
}

/// Starts or reuses the daemon, has it serve `specs`, and prints the shell lines.
async fn serve_and_print(
    o: &DaemonOptions,
    verbose: u8,
    specs: Vec<SocketSpec>,
    vars: &[(&str, String)],
) -> Outcome {
    let dir = paths::state_dir(o.dir.dir.clone()).map_err(failed)?;
    ensure_daemon(o, &dir, verbose).await?;
    for spec in specs {
        eprintln!("pipewright wsl: {} -> {}", spec.path.display(), spec.target);
        serve_via_control(&dir, spec).await?;
    }
    for (name, value) in vars {
        println!("{name}={}; export {name};", shell_quote(value));
    }
    Ok(exit::OK)
}

fn default_socket(
    o: &DaemonOptions,
    given: Option<PathBuf>,
    file: &str,
) -> Result<PathBuf, (u8, String)> {
    match given {
        Some(p) => Ok(config::expand_home(&p)),
        None => Ok(paths::state_dir(o.dir.dir.clone())
            .map_err(failed)?
            .join(file)),
    }
}

async fn ssh_agent(a: SshAgentArgs, verbose: u8) -> Outcome {
    let path = default_socket(&a.daemon, a.socket, "ssh-agent.sock")?;
    let spec = SocketSpec {
        path: path.clone(),
        target: format!("npipe:{}", a.pipe),
        kind: Kind::SshAgent,
    }
    .checked()
    .map_err(usage)?;
    let vars = [("SSH_AUTH_SOCK", path.display().to_string())];
    serve_and_print(&a.daemon, verbose, vec![spec], &vars).await
}

async fn docker(a: DockerArgs, verbose: u8) -> Outcome {
    let path = default_socket(&a.daemon, a.socket, "docker.sock")?;
    let spec = SocketSpec {
        path: path.clone(),
        target: format!("npipe:{}", a.pipe),
        kind: Kind::Raw,
    }
    .checked()
    .map_err(usage)?;
    let vars = [("DOCKER_HOST", format!("unix://{}", path.display()))];
    serve_and_print(&a.daemon, verbose, vec![spec], &vars).await
}

async fn gpg_agent(a: GpgAgentArgs, verbose: u8) -> Outcome {
    let dir = match a.socket_dir {
        Some(d) => config::expand_home(&d),
        None => gpg_socket_dir().await,
    };
    let mut names = vec!["S.gpg-agent"];
    if a.extra {
        names.push("S.gpg-agent.extra");
    }
    let windows_dir = a.windows_gnupg_home.trim_end_matches(['\\', '/']);
    let mut specs = names
        .iter()
        .map(|name| {
            SocketSpec {
                path: dir.join(name),
                target: format!(r"assuan:{windows_dir}\{name}"),
                kind: Kind::Raw,
            }
            .checked()
            .map_err(usage)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if a.ssh {
        // Gpg4win's own S.gpg-agent.ssh is a Cygwin socket file; its agent serves ssh on the
        // OpenSSH pipe instead (enable-win32-openssh-support in gpg-agent.conf).
        specs.push(
            SocketSpec {
                path: dir.join("S.gpg-agent.ssh"),
                target: format!("npipe:{}", a.ssh_pipe),
                kind: Kind::SshAgent,
            }
            .checked()
            .map_err(usage)?,
        );
    }
    let vars: Vec<(&str, String)> = if a.ssh {
        vec![(
            "SSH_AUTH_SOCK",
            dir.join("S.gpg-agent.ssh").display().to_string(),
        )]
    } else {
        Vec::new()
    };
    serve_and_print(&a.daemon, verbose, specs, &vars).await
}

/// gpg's socket directory: `gpgconf --list-dirs socketdir`, else $GNUPGHOME, else ~/.gnupg.
async fn gpg_socket_dir() -> PathBuf {
    let asked = tokio::process::Command::new("gpgconf")
        .args(["--list-dirs", "socketdir"])
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    if let Ok(out) = asked {
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.is_empty() {
            return PathBuf::from(text);
        }
    }
    std::env::var_os("GNUPGHOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| config::home().unwrap_or_default().join(".gnupg"))
}

/// Quotes a value for the shell when it needs it.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:+@%,".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_values_are_quoted_when_needed() {
        assert_eq!(
            shell_quote("/run/user/1000/a.sock"),
            "/run/user/1000/a.sock"
        );
        assert_eq!(shell_quote("/tmp/my dir/a.sock"), "'/tmp/my dir/a.sock'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
