//! Command-line behaviour a user sees.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_prints_shares_once_and_refuses_to_overwrite() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("vault");
    let d = dir.to_str().unwrap();
    let (ok, out, err) = run(&["init", "--data-dir", d]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.trim().starts_with("Share "))
            .count(),
        5
    );
    assert!(out.contains("3 of 5"));
    assert!(!dir.join(strongroom::datadir::DEV_KEY_FILE).exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    let (ok, _, err) = run(&["init", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn init_checks_its_parameters() {
    let tmp = tempfile::TempDir::new().unwrap();
    let d = tmp.path().join("v");
    for (shares, threshold) in [("3", "1"), ("3", "4")] {
        let (ok, _, err) = run(&[
            "init",
            "--data-dir",
            d.to_str().unwrap(),
            "--shares",
            shares,
            "--threshold",
            threshold,
        ]);
        assert!(!ok);
        assert!(err.contains("--threshold"), "{err}");
    }
}

#[test]
fn serve_needs_a_mode_and_keeps_plain_http_on_loopback() {
    let (ok, _, err) = run(&["serve"]);
    assert!(!ok);
    assert!(err.contains("--config") && err.contains("--dev"), "{err}");

    let tmp = tempfile::TempDir::new().unwrap();
    let d = tmp.path().join("dev");
    let (ok, _, err) = run(&[
        "serve",
        "--dev",
        "--insecure-http",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn secrets_are_never_taken_from_arguments() {
    let (ok, _, err) = run(&["secrets", "put", "GIFT-CODE-ON-ARGV"]);
    assert!(!ok);
    assert!(err.contains("unexpected argument"), "{err}");
    let (ok, _, err) = run(&[
        "secrets",
        "put",
        "--client-id",
        "x",
        "--url",
        "http://127.0.0.1:1",
    ]);
    assert!(!ok);
    assert!(err.contains("STRONGROOM_CLIENT_SECRET"), "{err}");
}

#[test]
fn offline_verify_refuses_a_missing_directory() {
    let (ok, _, err) = run(&["audit", "verify", "--data-dir", "/nonexistent/strongroom"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}
