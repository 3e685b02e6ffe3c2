//! The agent's command line: how it fails when it cannot start.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn busy_address_fails_with_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_metrics-agent"))
        .arg("--listen")
        .arg(address.to_string())
        .arg("--run-dir")
        .arg(run_dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("metrics-agent: failed to listen on {address}: ")),
        "{stderr}"
    );
    assert_eq!(
        lines[0].matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr}");
}
