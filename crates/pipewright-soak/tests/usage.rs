//! The soak binary's command line (the soak run itself is `cargo xtask soak`). This test also
//! makes `cargo test --workspace` build the binary, so `cargo xtask test` reuses it.

use std::process::Command;

fn soak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipewright-soak"))
}

#[test]
fn a_bad_argument_is_a_usage_error() {
    let out = soak()
        .arg("--no-such-option")
        .output()
        .expect("run the soak binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage: pipewright-soak [SECONDS]"), "{err}");
}

#[test]
fn a_killable_client_refuses_an_unknown_target() {
    let out = soak()
        .args(["client", "tag", "no-such-target", "1"])
        .output()
        .expect("run the soak binary");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown target \"no-such-target\""), "{err}");
}
