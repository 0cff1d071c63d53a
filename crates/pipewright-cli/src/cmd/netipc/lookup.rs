//! The lookup methods of `pipewright netipc serve|call`: CGROUPS_LOOKUP and APPS_LOOKUP with
//! deterministic demo answers, so an external client can check every field it decodes.
//!
//! The demo server answers with generation 1 (constant, so a stitched answer never sees it
//! change):
//! * cgroups-lookup: a path whose last component is `unknown` is `UNKNOWN_PERMANENT`; any
//!   other path is `KNOWN` with orchestrator 0, name = its last component and the labels
//!   `source=pipewright`, `path_bytes=<length of the path>`.
//! * apps-lookup: pid 0 is `UNKNOWN`; any other pid is `KNOWN` with ppid = pid / 2,
//!   uid 1000, starttime = pid * 100, comm `proc-<pid>`, cgroup `KNOWN` with path
//!   `/sys/fs/cgroup/netipc-test/pid-<pid>`, name `pid-<pid>`, orchestrator 0 and the label
//!   `source=pipewright`.

use pipewright_netipc::client::{Client, ClientError};
use pipewright_netipc::codec::apps_lookup::{AppInfo, CgroupStatus, PidStatus, UID_UNSET};
use pipewright_netipc::codec::cgroups_lookup::{CgroupInfo, Status};
use pipewright_netipc::codec::lookup::Label;
use pipewright_netipc::lookups::{call_stitched, AppsLookup, CgroupsLookup, LookupService};
use pipewright_netipc::service::Service;

/// The generation every demo answer carries.
pub const DEMO_GENERATION: u64 = 1;

/// The demo CGROUPS_LOOKUP service, fitting answers into `response_limit` bytes.
pub fn cgroups_service(response_limit: usize) -> impl Service {
    LookupService::<CgroupsLookup, _>::new(response_limit, |paths: &[Vec<u8>]| {
        Ok((
            DEMO_GENERATION,
            paths.iter().map(|p| demo_cgroup(p)).collect(),
        ))
    })
}

/// The demo APPS_LOOKUP service, fitting answers into `response_limit` bytes.
pub fn apps_service(response_limit: usize) -> impl Service {
    LookupService::<AppsLookup, _>::new(response_limit, |pids: &[u32]| {
        Ok((DEMO_GENERATION, pids.iter().map(|&p| demo_app(p)).collect()))
    })
}

fn last_component(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(path)
}

fn demo_cgroup(path: &[u8]) -> CgroupInfo {
    let name = last_component(path);
    if name == b"unknown" {
        return CgroupInfo::unknown(Status::UnknownPermanent);
    }
    CgroupInfo {
        status: Status::Known,
        orchestrator: 0,
        path: path.to_vec(),
        name: name.to_vec(),
        labels: vec![
            Label::new("source", "pipewright"),
            Label::new("path_bytes", path.len().to_string()),
        ],
    }
}

fn demo_app(pid: u32) -> AppInfo {
    if pid == 0 {
        return AppInfo::unknown(pid, PidStatus::Unknown);
    }
    AppInfo {
        status: PidStatus::Known,
        orchestrator: 0,
        cgroup_status: CgroupStatus::Known,
        pid,
        ppid: pid / 2,
        uid: 1000,
        starttime: u64::from(pid) * 100,
        comm: format!("proc-{pid}").into_bytes(),
        cgroup_path: format!("/sys/fs/cgroup/netipc-test/pid-{pid}").into_bytes(),
        cgroup_name: format!("pid-{pid}").into_bytes(),
        labels: vec![Label::new("source", "pipewright")],
    }
}

/// Looks `paths` up (stitching partial answers) and prints one line per item.
pub async fn call_cgroups(client: &mut Client, paths: &[String]) -> Result<(), ClientError> {
    let keys: Vec<Vec<u8>> = paths.iter().map(|p| p.clone().into_bytes()).collect();
    let (generation, items) = call_stitched::<CgroupsLookup>(client, &keys).await?;
    outln!("generation: {generation}");
    outln!("items: {}", items.len());
    for (key, it) in paths.iter().zip(&items) {
        outln!(
            "key={key} status={} orchestrator={} path={} name={} labels={}",
            it.status,
            it.orchestrator,
            text(&it.path),
            text(&it.name),
            labels(&it.labels)
        );
    }
    Ok(())
}

/// Looks `pids` up (stitching partial answers) and prints one line per item.
pub async fn call_apps(client: &mut Client, pids: &[u32]) -> Result<(), ClientError> {
    let (generation, items) = call_stitched::<AppsLookup>(client, pids).await?;
    outln!("generation: {generation}");
    outln!("items: {}", items.len());
    for it in &items {
        let uid = match it.uid {
            UID_UNSET => "unset".to_owned(),
            u => u.to_string(),
        };
        outln!(
            "pid={} status={} ppid={} uid={uid} starttime={} comm={} cgroup_status={} orchestrator={} cgroup_path={} cgroup_name={} labels={}",
            it.pid,
            it.status,
            it.ppid,
            it.starttime,
            text(&it.comm),
            it.cgroup_status,
            it.orchestrator,
            text(&it.cgroup_path),
            text(&it.cgroup_name),
            labels(&it.labels)
        );
    }
    Ok(())
}

fn text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// `k=v,k=v`, or `-` for none.
fn labels(labels: &[Label]) -> String {
    if labels.is_empty() {
        return "-".to_owned();
    }
    labels
        .iter()
        .map(|l| format!("{}={}", text(&l.key), text(&l.value)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_answers_follow_the_documented_rules() {
        let c = demo_cgroup(b"/sys/fs/cgroup/system.slice/");
        assert_eq!(c.status, Status::Known);
        assert_eq!(c.name, b"system.slice");
        assert_eq!(c.labels[1], Label::new("path_bytes", "28"));
        assert_eq!(demo_cgroup(b"/a/unknown").status, Status::UnknownPermanent);
        let a = demo_app(4242);
        assert_eq!((a.ppid, a.starttime), (2121, 424_200));
        assert_eq!(a.comm, b"proc-4242");
        assert_eq!(demo_app(0).status, PidStatus::Unknown);
        // The longest pid still fits comm's 15 bytes.
        assert_eq!(demo_app(u32::MAX).comm.len(), 15);
    }
}
