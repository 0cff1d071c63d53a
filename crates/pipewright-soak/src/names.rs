//! The names the servers of one soak run use (unique per run through its tag).

use std::path::PathBuf;

use pipewright_netipc::handshake::EndpointConfig;
use pipewright_netipc::hello::profile;

pub const NETIPC_BASE: &str = "soakbase";
pub const NETIPC_SHM: &str = "soakshm";
pub const NETIPC_TOKEN: u64 = 0x50a4_50a4_50a4_50a4;

#[derive(Debug, Clone)]
pub struct Names {
    pub echo: String,
    pub http: String,
    pub fwd: String,
    pub rpc: String,
    pub front: String,
    pub netipc_dir: PathBuf,
}

impl Names {
    pub fn new(tag: &str) -> Names {
        Names {
            echo: format!("pw-soak-{tag}-echo"),
            http: format!("pw-soak-{tag}-http"),
            fwd: format!("pw-soak-{tag}-fwd"),
            rpc: format!("pw-soak-{tag}-rpc"),
            front: format!("pw-soak-{tag}-front"),
            netipc_dir: std::env::temp_dir().join(format!("pw-soak-{tag}")),
        }
    }
}

/// The netipc endpoint: baseline only, or shared memory offered and preferred.
pub fn netipc_endpoint(shm: bool) -> EndpointConfig {
    let shm_profiles = pipewright_netipc::shm::platform::SUPPORTED_PROFILES;
    EndpointConfig {
        supported_profiles: if shm {
            profile::BASELINE | shm_profiles
        } else {
            profile::BASELINE
        },
        preferred_profiles: if shm { shm_profiles } else { 0 },
        auth_token: NETIPC_TOKEN,
        ..EndpointConfig::default()
    }
}
