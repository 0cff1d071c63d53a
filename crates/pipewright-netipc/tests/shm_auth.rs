//! A client with the wrong auth token, against a managed server that offers
//! shared memory: the handshake is refused with AUTH_FAILED (through the
//! async client, the blocking client and a bare session), and the server
//! creates no region for it: none is counted, no file appears in the run
//! directory or `/dev/shm` (Linux), and no section of the session can be
//! opened (Windows). A client with the right token then gets a region that
//! the same checks do see.
//!
//! Alone in its binary: it reads the process-wide count of created regions.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::blocking;
use pipewright_netipc::client::{Client, ClientConfig, ClientError};
use pipewright_netipc::handshake::{EndpointConfig, HandshakeError};
use pipewright_netipc::hello::profile;
use pipewright_netipc::managed::ManagedConfig;
use pipewright_netipc::service::Increment;
use pipewright_netipc::session::{Session, SessionError};
use pipewright_netipc::shm;
use std::path::Path;

const SVC: &str = "wrongtoken";
const SHM: u32 = profile::SHM_HYBRID | profile::SHM_FUTEX;
const WRONG: u64 = TOKEN ^ 0x5a5a;

fn endpoint(token: u64) -> EndpointConfig {
    EndpointConfig {
        supported_profiles: profile::BASELINE | SHM,
        preferred_profiles: profile::SHM_FUTEX,
        auth_token: token,
        ..EndpointConfig::default()
    }
}

/// Every shared-memory object of this service that exists for session ids
/// 1..=8, under either token: Linux region files in the run directory and
/// `/dev/shm` entries naming the service; Windows sections of both profiles.
fn regions(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    #[cfg(target_os = "linux")]
    {
        for d in [dir, Path::new("/dev/shm")] {
            for e in std::fs::read_dir(d).unwrap().map(|e| e.unwrap()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let is_socket = d == dir && name.starts_with(&format!("{SVC}.sock"));
                if name.contains(SVC) && !is_socket {
                    found.push(e.path().display().to_string());
                }
            }
        }
        for id in 1..=8 {
            let p = pipewright_netipc::naming::posix_shm_path(dir, SVC, id).unwrap();
            if p.exists() && !found.contains(&p.display().to_string()) {
                found.push(p.display().to_string());
            }
        }
    }
    #[cfg(windows)]
    {
        use pipewright_netipc::naming::windows_shm_names;
        use pipewright_netipc::shm::windows::test_support::read_named_mapping;
        for token in [TOKEN, WRONG] {
            for p in [profile::SHM_HYBRID, profile::SHM_FUTEX] {
                for id in 1..=8 {
                    let n = windows_shm_names(dir.to_str().unwrap(), SVC, token, p, id).unwrap();
                    if read_named_mapping(&n.mapping, 1).is_ok() {
                        found.push(n.mapping);
                    }
                }
            }
        }
    }
    found
}

#[test]
fn wrong_auth_token_over_shm_is_refused_and_leaves_no_region() {
    let dir = TempDir::new();
    let before = shm::regions_created();
    let server = blocking::ManagedServer::start(
        dir.path(),
        SVC,
        ManagedConfig::new(endpoint(TOKEN)),
        Increment,
    )
    .expect("start the server");
    assert_eq!(regions(dir.path()), Vec::<String>::new());

    // The blocking client: refused, not retried, not reported as anything else.
    let mut c = blocking::Client::new(dir.path(), SVC, ClientConfig::new(endpoint(WRONG))).unwrap();
    match c.increment(1) {
        Err(ClientError::Rejected(HandshakeError::AuthFailed)) => {}
        other => panic!("a wrong token was not refused as AUTH_FAILED: {other:?}"),
    }
    assert!(c.negotiated().is_none());
    drop(c);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The async client.
        let mut c = Client::new(dir.path(), SVC, ClientConfig::new(endpoint(WRONG)));
        match c.increment(1).await {
            Err(ClientError::Rejected(HandshakeError::AuthFailed)) => {}
            other => panic!("a wrong token was not refused as AUTH_FAILED: {other:?}"),
        }
        let e = c.connect().await.unwrap_err();
        assert!(e.to_string().contains("auth"), "{e}");
        // A bare session, asking for shared memory only.
        let cfg = EndpointConfig {
            supported_profiles: SHM,
            ..endpoint(WRONG)
        };
        match Session::connect(dir.path(), SVC, &cfg).await {
            Err(SessionError::Handshake(HandshakeError::AuthFailed)) => {}
            other => panic!("a wrong token was not refused as AUTH_FAILED: {other:?}"),
        }
    });
    assert_eq!(
        shm::regions_created() - before,
        0,
        "the server created regions for refused handshakes"
    );
    assert_eq!(
        regions(dir.path()),
        Vec::<String>::new(),
        "regions left behind by refused handshakes"
    );

    // The right token gets a region, which the checks above see.
    let mut c = blocking::Client::new(dir.path(), SVC, ClientConfig::new(endpoint(TOKEN))).unwrap();
    assert_eq!(c.increment(41).unwrap(), 42);
    assert_eq!(c.shm_profile(), Some(profile::SHM_FUTEX));
    assert_eq!(shm::regions_created() - before, 1);
    assert_eq!(regions(dir.path()).len(), 1, "{:?}", regions(dir.path()));
    drop(c);
    server.stop();
    assert_eq!(regions(dir.path()), Vec::<String>::new());
}
