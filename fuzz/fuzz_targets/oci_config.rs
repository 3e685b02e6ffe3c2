//! `config.json` as `corral create` reads it: serde into the OCI spec types,
//! then the parts of the config that corral interprets before it clones the
//! container's init (mount options and the seccomp profile). Nothing may
//! panic, and a config that loads must load again after serialization.

#![no_main]

use corral_runtime::container::seccomp;
use corral_runtime::rootfs::MountOptions;
use libfuzzer_sys::fuzz_target;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };

    for mount in spec.mounts().as_deref().unwrap_or_default() {
        let options = MountOptions::parse(mount.options().as_deref().unwrap_or_default());
        // The second, remounting call of a bind mount must not bind again.
        assert!(
            !options
                .remount_flags
                .intersects(MsFlags::MS_BIND | MsFlags::MS_REC),
            "remount flags of {:?} keep MS_BIND or MS_REC",
            mount.options()
        );
    }

    // A profile with unsupported actions or operators is an error, which
    // `create` reports; only a panic is a failure here.
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        let _ = seccomp::compile(profile);
    }

    let body = serde_json::to_vec(&spec).expect("a loaded config serializes");
    if let Err(error) = serde_json::from_slice::<Spec>(&body) {
        panic!(
            "a config that loaded does not load after serialization: {error}\n{}",
            String::from_utf8_lossy(&body)
        );
    }
});
