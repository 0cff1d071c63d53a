//! The lookup methods end to end over the platform's baseline transport: a
//! managed server whose answer does not fit one response, and the client
//! stitching the partial answers.
#![cfg(any(target_os = "linux", windows))]

mod common;

use common::*;
use pipewright_netipc::client::{Client, ClientConfig, ClientError};
use pipewright_netipc::codec::apps_lookup::{AppInfo, CgroupStatus, PidStatus};
use pipewright_netipc::codec::cgroups_lookup::{CgroupInfo, Status};
use pipewright_netipc::codec::lookup::Label;
use pipewright_netipc::handshake::EndpointConfig;
use pipewright_netipc::lookups::{call_stitched, AppsLookup, CgroupsLookup, LookupService};
use pipewright_netipc::managed::{ManagedConfig, ManagedServer};
use pipewright_netipc::service::Service;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const RESPONSE_LIMIT: u32 = 4096;

fn endpoint() -> EndpointConfig {
    EndpointConfig {
        auth_token: TOKEN,
        max_request_payload_bytes: 1 << 20,
        max_response_payload_bytes: RESPONSE_LIMIT,
        ..EndpointConfig::default()
    }
}

fn start(dir: &Path, name: &str, svc: impl Service) -> Arc<ManagedServer> {
    let server =
        Arc::new(ManagedServer::bind(dir, name, ManagedConfig::new(endpoint()), svc).unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.run().await });
    server
}

fn cgroup(path: &[u8]) -> CgroupInfo {
    if path.starts_with(b"/gone") {
        return CgroupInfo::unknown(Status::UnknownPermanent);
    }
    CgroupInfo {
        status: Status::Known,
        orchestrator: 2,
        path: path.to_vec(),
        name: path
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec(),
        labels: vec![Label::new("image", "registry.example/app:1.2.3")],
    }
}

#[tokio::test]
async fn cgroups_lookup_larger_than_one_response_is_stitched() {
    watchdog(async {
        let dir = TempDir::new();
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let svc = LookupService::<CgroupsLookup, _>::new(
            RESPONSE_LIMIT as usize,
            move |paths: &[Vec<u8>]| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok((42, paths.iter().map(|p| cgroup(p)).collect()))
            },
        );
        let _server = start(dir.path(), "cg-lookup", svc);
        let keys: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                if i % 7 == 0 {
                    format!("/gone/{i}").into_bytes()
                } else {
                    format!("/sys/fs/cgroup/kubepods/pod-{i:04}").into_bytes()
                }
            })
            .collect();
        let mut client = Client::new(dir.path(), "cg-lookup", ClientConfig::new(endpoint()));
        let (generation, items) = call_stitched::<CgroupsLookup>(&mut client, &keys)
            .await
            .unwrap();
        assert_eq!(generation, 42);
        assert_eq!(items.len(), keys.len());
        for (key, item) in keys.iter().zip(&items) {
            assert_eq!(item, &cgroup(key), "{}", String::from_utf8_lossy(key));
        }
        // 400 keys travel in calls of at most 102 (what 4 KiB of placeholders allows), and
        // the known items do not all fit: the suffixes marked PAYLOAD_EXCEEDED were asked again.
        assert!(
            calls.load(Ordering::SeqCst) > 4,
            "{} calls",
            calls.load(Ordering::SeqCst)
        );
    })
    .await;
}

#[tokio::test]
async fn apps_lookup_stitches_and_refuses_a_changing_generation() {
    watchdog(async {
        let dir = TempDir::new();
        let generation = Arc::new(AtomicU64::new(1));
        let g = generation.clone();
        let svc =
            LookupService::<AppsLookup, _>::new(RESPONSE_LIMIT as usize, move |pids: &[u32]| {
                let items = pids
                    .iter()
                    .map(|&pid| AppInfo {
                        status: PidStatus::Known,
                        orchestrator: 0,
                        cgroup_status: CgroupStatus::HostRoot,
                        pid,
                        ppid: 1,
                        uid: 1000,
                        starttime: u64::from(pid) * 100,
                        comm: b"worker".to_vec(),
                        cgroup_path: b"/".to_vec(),
                        cgroup_name: b"host".to_vec(),
                        labels: Vec::new(),
                    })
                    .collect();
                // Every call after the first sees a new generation when asked to.
                Ok((g.load(Ordering::SeqCst), items))
            });
        let _server = start(dir.path(), "apps-lookup", svc);
        let pids: Vec<u32> = (1000..1300).collect();
        let mut client = Client::new(dir.path(), "apps-lookup", ClientConfig::new(endpoint()));
        let (g1, items) = call_stitched::<AppsLookup>(&mut client, &pids)
            .await
            .unwrap();
        assert_eq!(g1, 1);
        let got: Vec<u32> = items.iter().map(|i| i.pid).collect();
        assert_eq!(got, pids);
        assert!(items.iter().all(|i| i.starttime == u64::from(i.pid) * 100));

        // A provider whose generation moves between partial answers: the client refuses to
        // stitch them.
        let moving = Arc::new(AtomicU64::new(10));
        let m = moving.clone();
        let svc =
            LookupService::<AppsLookup, _>::new(RESPONSE_LIMIT as usize, move |pids: &[u32]| {
                Ok((
                    m.fetch_add(1, Ordering::SeqCst),
                    pids.iter()
                        .map(|&p| AppInfo::unknown(p, PidStatus::Unknown))
                        .collect(),
                ))
            });
        let _moving_server = start(dir.path(), "apps-moving", svc);
        let mut client = Client::new(dir.path(), "apps-moving", ClientConfig::new(endpoint()));
        let err = call_stitched::<AppsLookup>(&mut client, &pids)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Session(_)), "{err}");
        assert!(err.to_string().contains("generation changed"), "{err}");
        drop(generation);
    })
    .await;
}
