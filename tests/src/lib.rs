//! Helpers for corral's end-to-end tests: the built binaries, scratch
//! directories, a supervisord under test, real Prometheus, and checks that
//! nothing of a test is left on the host.
//!
//! Every test here needs root and the kernel's namespaces, cgroups and
//! overlayfs. [`require_root`] prints a loud SKIP line when they are missing.

pub mod daemon;
pub mod host;
pub mod oci;
pub mod prometheus;
pub mod sandbox;

use std::path::{Path, PathBuf};

/// Directory of the workspace's built binaries (`target/debug` or
/// `target/release`), found from the test executable's own path.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary, with a message naming the build command
/// when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Root of the workspace checkout.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate is inside the workspace")
        .to_path_buf()
}

/// Returns false, after printing a loud SKIP line, when the test cannot run
/// here: it needs root. CI runs as root, so there nothing is skipped.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root for namespaces, cgroups and overlayfs");
    false
}

/// A unique name for cgroup parents and ids, containing `corral-test`, so a
/// leftover is easy to find and parallel tests never collide.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "corral-test-{prefix}-{}-{:08x}",
        std::process::id(),
        fastrand_u32()
    )
}

fn fastrand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Serializes the tests of one test binary that take the returned guard.
/// Tests that measure CPU time or create load take it, so that one test's
/// load does not skew another's measurement.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
