//! `pipewright bridge ADDR1 ADDR2`: socat for named pipes. A listening first address serves
//! many connections at once, each joined to a fresh second address.
//!
//! ```text
//! pipewright bridge unix-listen:/tmp/agent.sock,unlink-early exec:"npiperelay.exe -ei -s //./pipe/openssh-ssh-agent"
//! pipewright bridge npipe-listen:docker_proxy,mode=message tcp:127.0.0.1:2375
//! ```

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::address::Address;
use crate::failure::Failure;
use crate::join::{join, Policy};
use crate::{args, exit};

/// Join two addresses: TYPE:VALUE[,OPTION=VALUE...] (see docs/relay.md).
///
/// Exit codes: 0 done, 2 bad address, 3 not found, 4 busy, 5 access denied, 6 timed out,
/// 7 peer error, 8 already in use.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// First address; a listening one (npipe-listen:, tcp-listen:, unix-listen:) serves many clients.
    #[arg(allow_hyphen_values = true)]
    pub first: String,
    /// Second address, opened once per connection of the first.
    #[arg(allow_hyphen_values = true)]
    pub second: String,
    /// After one direction ends, keep the other going while data moves, and stop once it has
    /// been idle this long (like socat's -t).
    #[arg(short = 't', long = "linger", default_value = "1s", value_parser = args::duration)]
    pub linger: Duration,
}

/// Runs the bridge and returns the exit code.
pub async fn run(a: BridgeArgs) -> u8 {
    match bridge(a).await {
        Ok(()) => exit::OK,
        Err(f) => {
            eprintln!("pipewright bridge: {f}");
            f.code
        }
    }
}

fn parse(which: &str, text: &str) -> Result<Address, Failure> {
    Address::parse(text).map_err(|e| Failure::usage(format!("{which} {e}")))
}

async fn bridge(a: BridgeArgs) -> Result<(), Failure> {
    let first = parse("first", &a.first)?;
    let second = parse("second", &a.second)?;
    if second.is_listening() {
        return Err(Failure::usage(
            "the second address listens; put the listening address first",
        ));
    }
    let policy = Policy::bridge(a.linger);
    if !first.is_listening() {
        let left = first.connect().await?;
        let right = second.connect().await?;
        let totals = join(left, right, &policy)
            .await
            .map_err(|e| Failure::from_join(&e))?;
        tracing::info!(?totals, "done");
        return Ok(());
    }
    if second == Address::Stdio {
        return Err(Failure::usage(
            "stdio can carry one connection, not a listener's many; use exec:, npipe:, tcp: or unix: second",
        ));
    }
    let acceptor = first.listen().await?;
    let second = Arc::new(second);
    loop {
        let left = match acceptor.accept().await {
            Ok(side) => side,
            Err(f) => {
                tracing::warn!("accept: {f}");
                continue;
            }
        };
        let second = second.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let label = left.label.clone();
            let right = match second.connect().await {
                Ok(side) => side,
                Err(f) => {
                    eprintln!("pipewright bridge: {f}");
                    return;
                }
            };
            match join(left, right, &policy).await {
                Ok(totals) => tracing::info!(client = %label, ?totals, "connection done"),
                Err(e) => tracing::info!(client = %label, "connection ended: {e}"),
            }
        });
    }
}
