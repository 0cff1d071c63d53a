//! `pipewright ls [--json]`: the named pipes on this machine (`\\.\pipe\`), or the sockets in
//! the runtime directory on Unix.
//!
//! ```text
//! pipewright ls --json
//! ```

use clap::Args;
use serde::Serialize;

use crate::exit;
use crate::sys::PipeEntry;

/// List the named pipes (Windows) or the sockets in the runtime directory (Unix).
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only names containing this text (case-insensitive).
    pub filter: Option<String>,
}

/// One listed pipe, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The name, as `pipewright` commands accept it.
    pub name: String,
    /// The path to open: `\\.\pipe\NAME` or the socket's path.
    pub path: String,
    /// Current instances (Windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Instance limit (Windows; absent when unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

/// Runs `ls` and returns the exit code.
pub async fn run(a: LsArgs) -> u8 {
    match list() {
        Ok(entries) => {
            let entries = filter(entries, a.filter.as_deref());
            out!("{}", render(&entries, a.json));
            exit::OK
        }
        Err(e) => {
            eprintln!("pipewright ls: {e}");
            exit::FAILURE
        }
    }
}

/// Keeps the entries whose name contains `needle` (case-insensitive), sorted by name.
pub fn filter(mut entries: Vec<Listed>, needle: Option<&str>) -> Vec<Listed> {
    if let Some(n) = needle {
        let n = n.to_lowercase();
        entries.retain(|e| e.name.to_lowercase().contains(&n));
    }
    entries.sort_by_key(|e| e.name.to_lowercase());
    entries
}

/// Converts the system's entries for printing (Windows names become `\\.\pipe\NAME`).
#[cfg_attr(not(windows), allow(dead_code))]
pub fn from_pipe_entries(entries: Vec<PipeEntry>) -> Vec<Listed> {
    entries
        .into_iter()
        .filter(|e| !e.name.is_empty())
        .map(|e| Listed {
            path: format!(r"\\.\pipe\{}", e.name),
            name: e.name,
            instances: e.instances,
            max_instances: e.max_instances,
        })
        .collect()
}

/// A table (name, instances, path) or JSON.
pub fn render(entries: &[Listed], json: bool) -> String {
    if json {
        let mut out = serde_json::to_string_pretty(entries).unwrap_or_else(|_| "[]".into());
        out.push('\n');
        return out;
    }
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for e in entries {
        let instances = match (e.instances, e.max_instances) {
            (Some(n), Some(m)) => format!("{n}/{m}"),
            (Some(n), None) => n.to_string(),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<width$}  {:>7}  {}\n",
            e.name, instances, e.path
        ));
    }
    out
}

#[cfg(windows)]
fn list() -> std::io::Result<Vec<Listed>> {
    crate::sys::list_pipes().map(from_pipe_entries)
}

/// On Unix: the sockets in the directory bare names map to.
#[cfg(unix)]
fn list() -> std::io::Result<Vec<Listed>> {
    use std::os::unix::fs::FileTypeExt;
    let probe = pipewright::PipeName::parse("x").map_err(std::io::Error::from)?;
    let dir = probe
        .unix_path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| "/tmp".into());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_socket() {
            continue;
        }
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let name = file
            .strip_suffix(".sock")
            .map(str::to_owned)
            .unwrap_or_else(|| path.display().to_string());
        out.push(Listed {
            name,
            path: path.display().to_string(),
            instances: None,
            max_instances: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Listed> {
        from_pipe_entries(vec![
            PipeEntry {
                name: "openssh-ssh-agent".into(),
                instances: Some(2),
                max_instances: None,
            },
            PipeEntry {
                name: "docker_engine".into(),
                instances: Some(1),
                max_instances: Some(10),
            },
            PipeEntry {
                name: String::new(),
                instances: None,
                max_instances: None,
            },
        ])
    }

    #[test]
    fn windows_entries_get_full_paths_and_empty_names_are_dropped() {
        let e = entries();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, r"\\.\pipe\openssh-ssh-agent");
    }

    #[test]
    fn filter_is_case_insensitive_and_sorts() {
        let e = filter(entries(), Some("DOCKER"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "docker_engine");
        let all = filter(entries(), None);
        assert_eq!(all[0].name, "docker_engine");
    }

    #[test]
    fn json_and_table_output() {
        let e = filter(entries(), None);
        let json: serde_json::Value = serde_json::from_str(&render(&e, true)).unwrap();
        assert_eq!(json[0]["name"], "docker_engine");
        assert_eq!(json[0]["path"], r"\\.\pipe\docker_engine");
        assert_eq!(json[0]["max_instances"], 10);
        assert!(json[1].get("max_instances").is_none());
        let table = render(&e, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("docker_engine") && lines[0].contains("1/10"));
        assert!(lines[1].contains(r"\\.\pipe\openssh-ssh-agent"));
        assert_eq!(render(&[], true), "[]\n");
    }
}
