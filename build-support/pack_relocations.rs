// Shared through `include!` by the build scripts of the packages whose
// binaries run for a long time: supervisord, corral-monitor and
// metrics-agent (supervisorctl comes along). The `corral` runtime starts
// once per container, and with static-pie the packed table added page
// faults to its start (docs/benchmarks.md), so it is linked without it.

/// Links the package's binaries with `-z pack-relative-relocs` (DT_RELR)
/// when the C toolchain and the C library of this machine support it.
///
/// A position-independent executable carries one 24-byte relocation for
/// each pointer that the dynamic loader must adjust at start. supervisord
/// has about 13,000 of them, 300 KiB that the loader reads at every start,
/// so they stay in its resident set for as long as it runs. DT_RELR packs
/// them into a bitmap of a few KiB. glibc reads it from version 2.36, and
/// the linker then marks the binary as needing `GLIBC_ABI_DT_RELR`, so an
/// older glibc refuses to start it. The flag is therefore only set after a
/// test program linked with it has run here. Cross builds, targets other
/// than glibc, and machines whose linker or glibc lack the feature link as
/// before. Setting `CORRAL_PACK_RELOCATIONS=0` turns the flag off.
///
/// The build script passes the outcome to the package's code, so that a
/// test can check the binaries against it. `CORRAL_PACKED_RELOCATIONS` is
/// "1" when the flag is on, "0" when the test program failed, and "off"
/// when `CORRAL_PACK_RELOCATIONS=0` turned the flag off.
fn pack_relative_relocations() {
    println!("cargo:rerun-if-env-changed=CORRAL_PACK_RELOCATIONS");
    println!("cargo:rerun-if-env-changed=CC");
    let outcome = if std::env::var("CORRAL_PACK_RELOCATIONS").as_deref() == Ok("0") {
        "off"
    } else if relr_supported() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        "1"
    } else {
        "0"
    };
    println!("cargo:rustc-env=CORRAL_PACKED_RELOCATIONS={outcome}");
}

fn relr_supported() -> bool {
    use std::env;
    use std::fs;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return false;
    }
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    // The pointer in `address` needs a relative relocation in a PIE, so the
    // linker emits DT_RELR and the loader's check for GLIBC_ABI_DT_RELR runs.
    let source = out_dir.join("relr-probe.c");
    let program = out_dir.join("relr-probe");
    let text = "static int value;\nint *address = &value;\nint main(void) { return *address; }\n";
    if fs::write(&source, text).is_err() {
        return false;
    }
    // rustc links through `cc` on linux-gnu targets unless a linker is
    // configured, and the test program is linked the same way.
    let compiler = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(&compiler)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&program)
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    linked
        && Command::new(&program)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}
