//! Who may connect: current-user-only by default, SDDL on request (Windows), socket file
//! mode (Unix).

mod common;

use common::{run, unique_name};
use pipewright::{Listener, ListenerOptions};

#[cfg(windows)]
mod windows {
    use super::*;
    use pipewright::{connect_with, ConnectOptions, ErrorKind, PeerUser};
    use std::time::Duration;

    fn my_sid() -> String {
        match pipewright::platform::current_user().unwrap() {
            PeerUser::Sid(s) => s,
            other => panic!("not a SID: {other:?}"),
        }
    }

    /// The ACEs of the DACL part of an SDDL string, e.g. `(A;;FA;;;SY)`.
    fn dacl_aces(sddl: &str) -> Vec<String> {
        let dacl = &sddl[sddl.find("D:").expect("a DACL") + 2..];
        let dacl = dacl.split("S:").next().unwrap();
        dacl.split('(')
            .skip(1)
            .map(|a| a.trim_end_matches(')').to_string())
            .collect()
    }

    fn trustee(ace: &str) -> String {
        ace.rsplit(';').next().unwrap().to_string()
    }

    #[test]
    fn default_dacl_grants_only_the_user_system_and_administrators() {
        // Runs under Wine too: the descriptor is stored and read back as set.
        run(async {
            let name = unique_name("dacl");
            let listener = Listener::bind(&name).unwrap();
            let sddl = listener.security_sddl().unwrap();
            assert!(sddl.contains("D:P"), "DACL is not protected: {sddl}");
            let aces = dacl_aces(&sddl);
            assert!(
                aces.iter().all(|a| a.starts_with("A;")),
                "not only allow ACEs: {sddl}"
            );
            let mut trustees: Vec<String> = aces.iter().map(|a| trustee(a)).collect();
            trustees.sort();
            let mut expected = vec![my_sid(), "SY".to_string(), "BA".to_string()];
            expected.sort();
            assert_eq!(trustees, expected, "{sddl}");
        });
    }

    #[test]
    fn custom_sddl_is_applied_as_given() {
        run(async {
            let name = unique_name("sddl");
            let sid = my_sid();
            let sddl = format!("D:P(A;;GA;;;{sid})(A;;GR;;;AU)");
            let listener =
                Listener::bind_with(&name, &ListenerOptions::new().sddl(sddl.clone())).unwrap();
            let back = listener.security_sddl().unwrap();
            let trustees: Vec<String> = dacl_aces(&back).iter().map(|a| trustee(a)).collect();
            assert_eq!(trustees, vec![sid, "AU".to_string()], "{back}");
        });
    }

    #[test]
    fn a_user_outside_the_dacl_is_refused_with_access_denied() {
        if common::skip_under_wine(
            "Wine 8 stores pipe DACLs but does not enforce them (see the read-back tests for \
             the form that runs under Wine; docs/wine.md)",
        ) {
            return;
        }
        run(async {
            let name = unique_name("denied");
            // SYSTEM may connect; this user may only create more instances (0x4,
            // FILE_CREATE_PIPE_INSTANCE) and read the descriptor, not open the pipe.
            let sddl = format!("D:P(A;;GA;;;SY)(A;;0x00120004;;;{})", my_sid());
            let _listener = Listener::bind_with(&name, &ListenerOptions::new().sddl(sddl)).unwrap();
            let opts = ConnectOptions::new().timeout(Duration::ZERO);
            let err = connect_with(name.as_str(), &opts).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
            assert!(
                err.to_string().contains("SDDL"),
                "the message names the fix: {err}"
            );
        });
    }
}

#[cfg(unix)]
mod unix {
    use super::*;
    use pipewright::{connect, ErrorKind, PipeName};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn socket_file_is_private_by_default_and_mode_is_configurable() {
        run(async {
            let name = PipeName::parse(&unique_name("mode")).unwrap();
            let l = Listener::bind(&name).unwrap();
            let mode = std::fs::metadata(name.unix_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
            drop(l);
            let l = Listener::bind_with(&name, &ListenerOptions::new().unix_mode(0o660)).unwrap();
            let mode = std::fs::metadata(name.unix_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o660);
            drop(l);
        });
    }

    #[test]
    fn stale_socket_of_a_dead_server_is_replaced() {
        run(async {
            let name = PipeName::parse(&unique_name("stale")).unwrap();
            let path = name.unix_path();
            // A socket file with nobody listening, as a crashed server leaves it.
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
            let l = Listener::bind(&name).unwrap();
            let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
            connect(&name).await.unwrap();
            accept.await.unwrap().unwrap();
        });
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_removed() {
        run(async {
            let name = PipeName::parse(&unique_name("file")).unwrap();
            let path = name.unix_path();
            std::fs::write(&path, b"precious").unwrap();
            let err = Listener::bind(&name).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AlreadyInUse);
            assert!(err.to_string().contains("not a socket"), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), b"precious");
            std::fs::remove_file(&path).unwrap();
        });
    }

    #[test]
    fn socket_file_is_removed_on_close_and_on_drop() {
        run(async {
            let name = PipeName::parse(&unique_name("rm")).unwrap();
            let l = Listener::bind(&name).unwrap();
            let lock = format!("{}.lock", name.unix_path().display());
            assert!(name.unix_path().exists());
            assert!(
                std::path::Path::new(&lock).exists(),
                "the bind lock is held"
            );
            l.close();
            assert!(!name.unix_path().exists());
            assert!(
                !std::path::Path::new(&lock).exists(),
                "the lock file is removed too"
            );
            drop(l);
            let l = Listener::bind(&name).unwrap();
            drop(l);
            assert!(!name.unix_path().exists());
        });
    }

    #[test]
    fn a_long_socket_path_is_refused_with_the_fix() {
        run(async {
            let long = format!("/tmp/{}.sock", "p".repeat(120));
            let err = Listener::bind(long.as_str()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName);
            assert!(err.to_string().contains("PIPEWRIGHT_RUNTIME_DIR"), "{err}");
        });
    }
}
