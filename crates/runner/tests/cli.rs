//! The runner binary, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mirrorfarm-runner"))
}

#[test]
fn scrub_masks_credentials_in_a_stream() {
    let mut child = runner().arg("scrub").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"fatal: could not read from 'https://bot:t0ps3cret@git.example.com/r.git'\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(out.status.success());
    assert_eq!(text, "fatal: could not read from 'https://*****:*****@git.example.com/r.git'\n");
}

#[test]
fn check_url_applies_the_outbound_policy() {
    let ok = runner()
        .args(["check-url", "https://u:p@example.com/x.git"])
        .env_remove("MIRRORFARM_ALLOWED_HOSTS")
        .output()
        .expect("run");
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "https://*****:*****@example.com/x.git");

    let blocked = runner()
        .args(["check-url", "http://u:secret9@127.0.0.1/x"])
        .env_remove("MIRRORFARM_ALLOWED_HOSTS")
        .output()
        .expect("run");
    assert!(!blocked.status.success());
    let err = String::from_utf8_lossy(&blocked.stderr);
    assert!(err.contains("local network") && !err.contains("secret9"), "{err}");

    let allowed = runner().args(["check-url", "git://127.0.0.1/x", "--allow", "127.0.0.0/8"]).output().expect("run");
    assert!(allowed.status.success());
}
