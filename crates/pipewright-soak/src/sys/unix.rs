//! Linux: `/proc/self/status` and `/proc/self/fd` (no unsafe code needed).

use super::Sample;

/// Resident memory and open fds of this process (zeros where `/proc` is missing).
pub fn sample() -> Sample {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let kb = l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .unwrap_or(0)
        * 1024;
    // The directory handle that read_dir opens is counted too; take it off.
    let handles = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1) as u64)
        .unwrap_or(0);
    Sample {
        rss,
        private: 0,
        handles,
    }
}

/// The open fds by kind (`socket`, `pipe`, `anon_inode:[eventfd]`, `file`...), for the report.
pub fn describe() -> String {
    let mut kinds = std::collections::BTreeMap::<String, u32>::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for e in dir.flatten() {
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let kind = match t.split_once(':') {
                Some((k, rest)) if !t.starts_with('/') => {
                    if k == "anon_inode" {
                        format!("anon_inode:{rest}")
                    } else {
                        k.to_owned()
                    }
                }
                _ if t.starts_with("/proc/") => continue,
                _ => "file".to_owned(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}
