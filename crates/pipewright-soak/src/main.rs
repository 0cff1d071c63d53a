//! `pipewright-soak [SECONDS] [--clients N] [--seed N]`: the soak run.
//!
//! The orchestrator (this process) starts the server process (`pipewright-soak serve TAG`, a
//! child: every figure of memory and handles is that process's), a `bridge` chain of two
//! `pipewright` processes in front of its listener, and `--clients` concurrent client loops
//! that mix, at random from a printed seed, checked transfers, cancelled calls, slow readers,
//! clients that never read and client processes (`pipewright-soak client ...`) killed
//! mid-transfer. At the end it prints a table and one line per check, then
//! `soak: N passed, N failed`, and exits non-zero when a check failed.

mod client;
mod names;
mod orchestrate;
mod proto;
mod server;
mod sys;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

fn usage() -> ExitCode {
    eprintln!(
        "usage: pipewright-soak [SECONDS] [--clients N] [--seed N]\n       \
         (internal) pipewright-soak serve TAG | client TAG TARGET SEED"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        server::PANICS.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipewright-soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("serve") => match args.get(1) {
            Some(tag) => rt.block_on(server::run(tag)).map(|()| true),
            None => return usage(),
        },
        Some("client") => match (args.get(1), args.get(2), args.get(3)) {
            (Some(tag), Some(target), Some(seed)) => {
                let Ok(seed) = seed.parse() else {
                    return usage();
                };
                rt.block_on(client::killable(tag, target, seed))
                    .map(|()| true)
            }
            _ => return usage(),
        },
        _ => {
            let mut opts = orchestrate::Options::default();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                let mut num = |what: &str| -> Result<u64, String> {
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("{what} needs a number"))
                };
                let r = match a.as_str() {
                    "--clients" => num("--clients").map(|n| opts.clients = n.max(1) as usize),
                    "--seed" => num("--seed").map(|n| opts.seed = Some(n)),
                    s => s
                        .parse()
                        .map(|n| opts.seconds = n)
                        .map_err(|_| format!("unknown argument {s:?}")),
                };
                if let Err(e) = r {
                    eprintln!("pipewright-soak: {e}");
                    return usage();
                }
            }
            rt.block_on(orchestrate::run(opts))
        }
    };
    // Killed children and lingering tasks must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pipewright-soak: {e}");
            ExitCode::FAILURE
        }
    }
}
