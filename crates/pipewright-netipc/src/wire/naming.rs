//! Endpoint names: service-name validation, FNV-1a-64, named-pipe names, UDS
//! socket paths and shared-memory object names.
//!
//! Service names are validated, never sanitised: a name that is empty, `.`, `..`
//! or contains anything outside `[A-Za-z0-9._-]` is rejected.
//!
//! ```
//! use pipewright_netipc::naming;
//! assert_eq!(
//!     naming::pipe_name("/run/netdata", "cgroups-snapshot").unwrap(),
//!     r"\\.\pipe\netipc-efc07ed598ac339b-cgroups-snapshot"
//! );
//! assert!(naming::validate_service_name("bad/name").is_err());
//! ```

use std::path::{Path, PathBuf};

/// FNV-1a 64-bit offset basis.
pub const FNV1A_64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV1A_64_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Longest named-pipe name Windows accepts, in UTF-16 code units.
pub const MAX_PIPE_NAME_UNITS: usize = 256;
/// Longest socket path that fits `sockaddr_un.sun_path` on Linux (108 bytes
/// including the terminating NUL).
pub const MAX_UDS_PATH_BYTES: usize = 107;

/// Why a service name or a derived endpoint name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// The service name is empty.
    #[error("service name is empty")]
    EmptyService,
    /// The service name is `.` or `..`.
    #[error("service name {0:?} is a relative directory reference")]
    DotService(String),
    /// The service name contains a character outside `[A-Za-z0-9._-]`.
    #[error(
        "service name {name:?} contains {ch:?} at byte {index}; only [A-Za-z0-9._-] is allowed"
    )]
    InvalidChar {
        /// The rejected name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        index: usize,
    },
    /// The socket path does not fit `sun_path`.
    #[error("socket path {path:?} is {len} bytes; at most {max} fit in sun_path")]
    UdsPathTooLong {
        /// The path that was built.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The run directory is not valid Unicode, so it cannot be hashed into a
    /// pipe name.
    #[error("run directory {0:?} is not valid Unicode; use a Unicode path")]
    RunDirNotUnicode(PathBuf),
    /// The pipe name exceeds the Windows limit.
    #[error("pipe name is {len} UTF-16 units; at most {max} are allowed")]
    PipeNameTooLong {
        /// Its length in UTF-16 code units.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// Checks a service name: non-empty, not `.` or `..`, only `[A-Za-z0-9._-]`.
///
/// ```
/// use pipewright_netipc::naming::validate_service_name;
/// assert!(validate_service_name("cgroups-snapshot").is_ok());
/// assert!(validate_service_name("..").is_err());
/// ```
pub fn validate_service_name(name: &str) -> Result<(), NamingError> {
    if name.is_empty() {
        return Err(NamingError::EmptyService);
    }
    if name == "." || name == ".." {
        return Err(NamingError::DotService(name.to_owned()));
    }
    if let Some((index, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'))
    {
        return Err(NamingError::InvalidChar {
            name: name.to_owned(),
            ch,
            index,
        });
    }
    Ok(())
}

/// FNV-1a 64-bit hash: `h = (h ^ byte) * prime` from the offset basis.
///
/// ```
/// assert_eq!(pipewright_netipc::naming::fnv1a_64(b""), 0xcbf29ce484222325);
/// ```
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV1A_64_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV1A_64_PRIME)
    })
}

/// Windows named-pipe name `\\.\pipe\netipc-{fnv1a64(run_dir):016x}-{service}`.
///
/// `run_dir` is hashed byte for byte (`C:\x` and `C:/x` give different names).
///
/// ```
/// let name = pipewright_netipc::naming::pipe_name(r"C:\netipc-run", "svc").unwrap();
/// assert_eq!(name, r"\\.\pipe\netipc-006245f661110cf7-svc");
/// ```
pub fn pipe_name(run_dir: &str, service: &str) -> Result<String, NamingError> {
    validate_service_name(service)?;
    let name = format!(
        r"\\.\pipe\netipc-{:016x}-{}",
        fnv1a_64(run_dir.as_bytes()),
        service
    );
    let len = name.encode_utf16().count();
    if len > MAX_PIPE_NAME_UNITS {
        return Err(NamingError::PipeNameTooLong {
            len,
            max: MAX_PIPE_NAME_UNITS,
        });
    }
    Ok(name)
}

/// UDS socket path `{run_dir}/{service}.sock`, checked against `sun_path`.
///
/// ```
/// let p = pipewright_netipc::naming::uds_path("/run/netdata".as_ref(), "cgroups-snapshot").unwrap();
/// assert_eq!(p, std::path::Path::new("/run/netdata").join("cgroups-snapshot.sock"));
/// ```
pub fn uds_path(run_dir: &Path, service: &str) -> Result<PathBuf, NamingError> {
    validate_service_name(service)?;
    let path = run_dir.join(format!("{service}.sock"));
    let len = path.as_os_str().len();
    if len > MAX_UDS_PATH_BYTES {
        return Err(NamingError::UdsPathTooLong {
            path,
            len,
            max: MAX_UDS_PATH_BYTES,
        });
    }
    Ok(path)
}

/// POSIX shared-memory file `{run_dir}/{service}-{session_id:016x}.ipcshm`.
///
/// ```
/// let p = pipewright_netipc::naming::posix_shm_path("/run/netdata".as_ref(), "svc", 1).unwrap();
/// assert_eq!(p, std::path::Path::new("/run/netdata").join("svc-0000000000000001.ipcshm"));
/// ```
pub fn posix_shm_path(
    run_dir: &Path,
    service: &str,
    session_id: u64,
) -> Result<PathBuf, NamingError> {
    validate_service_name(service)?;
    Ok(run_dir.join(format!("{service}-{session_id:016x}.ipcshm")))
}

/// The three Windows shared-memory object names of one session and profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsShmNames {
    /// File-mapping object name (`...-mapping`).
    pub mapping: String,
    /// Request event name (`...-req_event`).
    pub request_event: String,
    /// Response event name (`...-resp_event`).
    pub response_event: String,
}

/// Hash used in Windows SHM names: FNV-1a-64 of `run_dir\nservice\n{auth_token}`
/// (token in decimal).
///
/// ```
/// let h = pipewright_netipc::naming::windows_shm_hash("/run/netdata", "cgroups-snapshot", 12345);
/// assert_eq!(h, 0x2095084fdb90921e);
/// ```
pub fn windows_shm_hash(run_dir: &str, service: &str, auth_token: u64) -> u64 {
    fnv1a_64(format!("{run_dir}\n{service}\n{auth_token}").as_bytes())
}

/// Windows SHM object names
/// `Local\netipc-{hash:016x}-{service}-p{profile}-s{session_id:016x}-{mapping|req_event|resp_event}`.
///
/// ```
/// let n = pipewright_netipc::naming::windows_shm_names("/run/netdata", "cgroups-snapshot", 12345, 2, 1).unwrap();
/// assert_eq!(n.mapping, r"Local\netipc-2095084fdb90921e-cgroups-snapshot-p2-s0000000000000001-mapping");
/// ```
pub fn windows_shm_names(
    run_dir: &str,
    service: &str,
    auth_token: u64,
    profile: u32,
    session_id: u64,
) -> Result<WindowsShmNames, NamingError> {
    validate_service_name(service)?;
    let base = format!(
        r"Local\netipc-{:016x}-{service}-p{profile}-s{session_id:016x}",
        windows_shm_hash(run_dir, service, auth_token)
    );
    Ok(WindowsShmNames {
        mapping: format!("{base}-mapping"),
        request_event: format!("{base}-req_event"),
        response_event: format!("{base}-resp_event"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a_64(b"/run/netdata"), 0xefc0_7ed5_98ac_339b);
        assert_eq!(fnv1a_64(br"C:\netipc-run"), 0x0062_45f6_6111_0cf7);
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            fnv1a_64(b"/run/netdata\ncgroups-snapshot\n12345"),
            0x2095_084f_db90_921e
        );
    }

    #[test]
    fn pipe_names() {
        assert_eq!(
            pipe_name("/run/netdata", "cgroups-snapshot").unwrap(),
            r"\\.\pipe\netipc-efc07ed598ac339b-cgroups-snapshot"
        );
        assert_eq!(
            pipe_name("", "x").unwrap(),
            r"\\.\pipe\netipc-cbf29ce484222325-x"
        );
        // Hashing is byte-exact.
        assert_ne!(
            pipe_name(r"C:\x", "s").unwrap(),
            pipe_name("C:/x", "s").unwrap()
        );
        let long = "a".repeat(300);
        assert!(matches!(
            pipe_name("/r", &long),
            Err(NamingError::PipeNameTooLong { .. })
        ));
    }

    #[test]
    fn service_name_rules() {
        for ok in ["a", "A-b_c.d", "cgroups-snapshot", "...", "0"] {
            assert_eq!(validate_service_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_service_name(""), Err(NamingError::EmptyService));
        assert!(matches!(
            validate_service_name("."),
            Err(NamingError::DotService(_))
        ));
        assert!(matches!(
            validate_service_name(".."),
            Err(NamingError::DotService(_))
        ));
        for (bad, ch, index) in [
            ("a/b", '/', 1),
            ("a b", ' ', 1),
            ("é", 'é', 0),
            ("x\0", '\0', 1),
            ("a\\b", '\\', 1),
        ] {
            match validate_service_name(bad) {
                Err(NamingError::InvalidChar {
                    ch: c, index: i, ..
                }) => {
                    assert_eq!((c, i), (ch, index), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(uds_path(Path::new("/tmp"), "../x").is_err());
        assert!(pipe_name("/tmp", "a:b").is_err());
        assert!(posix_shm_path(Path::new("/tmp"), "", 1).is_err());
    }

    #[test]
    fn uds_and_shm_paths() {
        assert_eq!(
            uds_path(Path::new("/run/netdata"), "cgroups-snapshot").unwrap(),
            PathBuf::from("/run/netdata/cgroups-snapshot.sock")
        );
        let dir = "/".to_owned() + &"d".repeat(100);
        assert!(matches!(
            uds_path(Path::new(&dir), "service"),
            Err(NamingError::UdsPathTooLong { len: 114, .. })
        ));
        assert_eq!(
            posix_shm_path(Path::new("/run/netdata"), "svc", 0xabc).unwrap(),
            PathBuf::from("/run/netdata/svc-0000000000000abc.ipcshm")
        );
    }

    #[test]
    fn windows_shm_object_names() {
        let n = windows_shm_names("/run/netdata", "cgroups-snapshot", 12345, 4, 0x10).unwrap();
        let base = r"Local\netipc-2095084fdb90921e-cgroups-snapshot-p4-s0000000000000010";
        assert_eq!(n.mapping, format!("{base}-mapping"));
        assert_eq!(n.request_event, format!("{base}-req_event"));
        assert_eq!(n.response_event, format!("{base}-resp_event"));
    }
}
