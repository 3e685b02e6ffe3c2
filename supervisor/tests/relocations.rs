//! The binaries carry packed relative relocations (DT_RELR) wherever glibc
//! reads them, which keeps about 300 KiB of relocations out of supervisord's
//! resident memory.

use std::ffi::CStr;
use std::process::Command;

/// DT_RELR, the dynamic tag of a packed relocation table (`readelf -d`
/// prints it as `(RELR)`).
const RELR_TAG: &str = "(RELR)";

/// Returns glibc's version as (major, minor).
fn glibc_version() -> (u32, u32) {
    // SAFETY: gnu_get_libc_version returns a pointer to a static,
    // NUL-terminated string that lives as long as the process.
    let text = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_str()
        .expect("glibc's version is ASCII");
    let mut parts = text.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn has_packed_relocations(binary: &str) -> bool {
    let output = Command::new("readelf")
        .args(["--dynamic", binary])
        .output()
        .expect("readelf (Debian's binutils) runs");
    assert!(
        output.status.success(),
        "readelf --dynamic {binary} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).contains(RELR_TAG)
}

#[test]
fn binaries_pack_relative_relocations() {
    let outcome = env!("CORRAL_PACKED_RELOCATIONS");
    let binaries = [
        env!("CARGO_BIN_EXE_supervisord"),
        env!("CARGO_BIN_EXE_supervisorctl"),
        env!("CARGO_BIN_EXE_corral-monitor"),
    ];
    if outcome != "off" {
        let expected = if glibc_version() >= (2, 36) { "1" } else { "0" };
        assert_eq!(
            outcome,
            expected,
            "the build script's DT_RELR probe disagrees with glibc {:?}",
            glibc_version()
        );
    }
    for binary in binaries {
        assert_eq!(
            has_packed_relocations(binary),
            outcome == "1",
            "{binary}: DT_RELR present does not match the build's outcome {outcome:?}"
        );
    }
}
