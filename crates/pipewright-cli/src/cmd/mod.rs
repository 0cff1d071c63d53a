//! One module per subcommand.

pub mod bench;
pub mod bridge;
pub mod completions;
pub mod demo;
pub mod forward;
pub mod http;
pub mod ls;
pub mod netipc;
pub mod probe;
pub mod relay;
pub mod rpc;
pub mod wsl;
