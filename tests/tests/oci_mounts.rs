//! The root filesystem and the spec's `mounts`, checked from inside the
//! container's mount table. The tests cover bind and rbind with flags and
//! propagation, tmpfs, proc, sysfs, mqueue, devpts and cgroup mounts,
//! read-only remounts, created and symlinked targets, root.readonly,
//! rootfsPropagation, the overlay root, maskedPaths, readonlyPaths and
//! devices.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_tests::oci::{describe, mount_at, parse_mounts, text, Bundle, MountLine, PROBE};
use corral_tests::{require_root, wait_until};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::json;

/// EROFS, as the probe prints it.
const READ_ONLY: &str = "errno=30";

/// A tmpfs that the test mounts on the host below its scratch directory,
/// unmounted on drop.
struct HostTmpfs {
    target: PathBuf,
}

impl HostTmpfs {
    fn mount(target: &Path, flags: MsFlags) -> Self {
        fs::create_dir_all(target).expect("tmpfs target");
        mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some("size=1m")).unwrap_or_else(
            |error| panic!("failed to mount tmpfs on {}: {error}", target.display()),
        );
        HostTmpfs {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

/// Runs `commands` as a shell script whose output ends with the probe's
/// mount table.
fn mounts_after(bundle: &mut Bundle, script: &str) -> (String, Vec<MountLine>) {
    let full = format!("{script}\necho ---\nexec {PROBE} mounts");
    bundle.args(&["/bin/sh", "-c", &full]);
    let output = bundle.run_ok();
    let (before, table) = output
        .split_once("---\n")
        .unwrap_or_else(|| panic!("no mount table in output: {output}"));
    (before.to_string(), parse_mounts(table))
}

#[test]
fn mounts_bind_with_flags() {
    if !require_root("mounts_bind_with_flags") {
        return;
    }
    let mut bundle = Bundle::new("bind-flags");
    let source = bundle.host_dir().join("data");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("file"), "from the host\n").unwrap();
    bundle.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": source,
               "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
    );
    let (before, mounts) = mounts_after(
        &mut bundle,
        &format!("cat /data/file; {PROBE} write /data/new"),
    );
    assert!(before.contains("from the host"), "{before}");
    assert!(before.contains(READ_ONLY), "write to a ro bind: {before}");
    let data = mount_at(&mounts, "/data").expect("no mount at /data");
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            data.options.iter().any(|o| o == flag),
            "{flag} missing: {data:?}"
        );
    }
    assert!(!source.join("new").exists());
}

#[test]
fn mounts_readonly_remount_keeps_source_flags() {
    if !require_root("mounts_readonly_remount_keeps_source_flags") {
        return;
    }
    let mut bundle = Bundle::new("ro-keep");
    let source = bundle.host_dir().join("locked");
    let _tmpfs = HostTmpfs::mount(
        &source,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/locked", "type": "bind", "source": source,
               "options": ["bind", "ro"]}),
    );
    let (_, mounts) = mounts_after(&mut bundle, "true");
    let locked = mount_at(&mounts, "/locked").expect("no mount at /locked");
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            locked.options.iter().any(|o| o == flag),
            "{flag} lost: {locked:?}"
        );
    }
}

#[test]
fn mounts_rbind_carries_submounts_and_bind_does_not() {
    if !require_root("mounts_rbind_carries_submounts_and_bind_does_not") {
        return;
    }
    let mut bundle = Bundle::new("rbind");
    let source = bundle.host_dir().join("tree");
    fs::create_dir_all(source.join("sub")).unwrap();
    let _tmpfs = HostTmpfs::mount(&source.join("sub"), MsFlags::empty());
    fs::write(source.join("sub/inner"), "submount\n").unwrap();
    bundle.push(
        "/mounts",
        json!({"destination": "/recursive", "type": "bind", "source": source, "options": ["rbind"]}),
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/single", "type": "bind", "source": source, "options": ["bind"]}),
    );
    let (before, mounts) = mounts_after(
        &mut bundle,
        "cat /recursive/sub/inner; ls /single/sub | wc -l",
    );
    assert!(
        before.contains("submount"),
        "rbind lost the submount: {before}"
    );
    assert!(
        mount_at(&mounts, "/recursive/sub").is_some_and(|m| m.fstype == "tmpfs"),
        "no tmpfs at /recursive/sub"
    );
    assert!(
        mount_at(&mounts, "/single/sub").is_none(),
        "bind must not carry submounts"
    );
    assert!(
        before.lines().any(|l| l.trim() == "0"),
        "/single/sub is not empty: {before}"
    );
}

#[test]
fn mounts_propagation_options() {
    if !require_root("mounts_propagation_options") {
        return;
    }
    let mut bundle = Bundle::new("propagation");
    let source = bundle.host_dir().join("shared");
    fs::create_dir_all(&source).unwrap();
    bundle.push(
        "/mounts",
        json!({"destination": "/shared", "type": "bind", "source": source, "options": ["rbind", "rshared"]}),
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/private", "type": "bind", "source": source, "options": ["rbind", "rprivate"]}),
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/unbindable", "type": "bind", "source": source, "options": ["rbind", "runbindable"]}),
    );
    let (_, mounts) = mounts_after(&mut bundle, "true");
    let shared = mount_at(&mounts, "/shared").expect("no /shared");
    assert!(
        shared.tags.iter().any(|t| t.starts_with("shared:")),
        "{shared:?}"
    );
    let private = mount_at(&mounts, "/private").expect("no /private");
    assert!(private.tags.is_empty(), "{private:?}");
    let unbindable = mount_at(&mounts, "/unbindable").expect("no /unbindable");
    assert!(
        unbindable.tags.iter().any(|t| t == "unbindable"),
        "{unbindable:?}"
    );
}

#[test]
fn mounts_tmpfs_size_and_mode() {
    if !require_root("mounts_tmpfs_size_and_mode") {
        return;
    }
    let mut bundle = Bundle::new("tmpfs");
    bundle.push(
        "/mounts",
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "size=2m", "mode=1770"]}),
    );
    let (before, mounts) = mounts_after(&mut bundle, &format!("{PROBE} stat /scratch"));
    let scratch = mount_at(&mounts, "/scratch").expect("no tmpfs at /scratch");
    assert_eq!(scratch.fstype, "tmpfs");
    assert!(
        scratch.super_options.iter().any(|o| o == "size=2048k"),
        "{scratch:?}"
    );
    assert!(
        scratch.super_options.iter().any(|o| o == "mode=1770"),
        "{scratch:?}"
    );
    assert!(scratch.options.iter().any(|o| o == "nosuid"), "{scratch:?}");
    assert!(before.contains("/scratch d 0:0 1770 0 0"), "{before}");
}

#[test]
fn mounts_special_filesystems() {
    if !require_root("mounts_special_filesystems") {
        return;
    }
    let mut bundle = Bundle::new("special");
    bundle.push(
        "/mounts",
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    let (before, mounts) = mounts_after(&mut bundle, "cat /proc/self/cgroup; ls /sys/fs/cgroup");
    for (target, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let found = mount_at(&mounts, target).unwrap_or_else(|| panic!("no mount at {target}"));
        assert_eq!(found.fstype, fstype, "{found:?}");
    }
    let sys = mount_at(&mounts, "/sys").unwrap();
    assert!(
        sys.options.iter().any(|o| o == "ro"),
        "/sys is not read-only: {sys:?}"
    );
    let pts = mount_at(&mounts, "/dev/pts").unwrap();
    assert!(
        pts.super_options.iter().any(|o| o == "ptmxmode=666"),
        "{pts:?}"
    );

    let cgroup_mounts: Vec<_> = mounts
        .iter()
        .filter(|m| m.target.starts_with("/sys/fs/cgroup"))
        .collect();
    assert!(!cgroup_mounts.is_empty(), "no cgroup mount");
    let host_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if host_v2 {
        let root = mount_at(&mounts, "/sys/fs/cgroup").unwrap();
        assert_eq!(root.fstype, "cgroup2");
    } else {
        let memory = mount_at(&mounts, "/sys/fs/cgroup/memory").expect("no memory hierarchy");
        assert_eq!(memory.fstype, "cgroup");
        assert!(memory.options.iter().any(|o| o == "ro"), "{memory:?}");
        assert!(before.contains("memory"), "{before}");
    }
    // In its own cgroup namespace, /proc/self/cgroup shows the container's cgroup as the root.
    for line in before.lines().filter(|l| l.contains(":/")) {
        assert!(
            line.ends_with(":/"),
            "cgroup path outside the namespace: {line}"
        );
    }
}

#[test]
fn mounts_targets_created_and_file_bind() {
    if !require_root("mounts_targets_created_and_file_bind") {
        return;
    }
    let mut bundle = Bundle::new("targets");
    let file = bundle.host_dir().join("app.conf");
    fs::write(&file, "setting=1\n").unwrap();
    bundle.push(
        "/mounts",
        json!({"destination": "/etc/app/app.conf", "type": "bind", "source": file, "options": ["bind", "ro"]}),
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/deep/new/dir", "type": "tmpfs", "source": "tmpfs"}),
    );
    // Mounts go in order: the second lands on the tmpfs of the first.
    bundle.push(
        "/mounts",
        json!({"destination": "/deep/new/dir/inner", "type": "tmpfs", "source": "tmpfs"}),
    );
    let (before, mounts) = mounts_after(
        &mut bundle,
        &format!("cat /etc/app/app.conf; {PROBE} stat /etc/app/app.conf"),
    );
    assert!(before.contains("setting=1"), "{before}");
    assert!(
        before.contains("/etc/app/app.conf f "),
        "the target is not a file: {before}"
    );
    assert!(mount_at(&mounts, "/deep/new/dir").is_some());
    assert!(mount_at(&mounts, "/deep/new/dir/inner").is_some());
}

#[test]
fn mounts_symlinked_target_stays_in_root() {
    if !require_root("mounts_symlinked_target_stays_in_root") {
        return;
    }
    let mut bundle = Bundle::new("symlink");
    let outside = bundle.host_dir().join("outside");
    fs::create_dir_all(&outside).unwrap();
    // An absolute link and a link with more ".." than the root has depth.
    std::os::unix::fs::symlink(&outside, bundle.rootfs().join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", bundle.rootfs().join("tmp/up")).unwrap();
    bundle.push(
        "/mounts",
        json!({"destination": "/absolute", "type": "tmpfs", "source": "tmpfs"}),
    );
    bundle.push(
        "/mounts",
        json!({"destination": "/tmp/up/escaped", "type": "tmpfs", "source": "tmpfs"}),
    );
    let script = format!("{PROBE} write /absolute/marker; {PROBE} write /escaped/marker");
    let (_, mounts) = mounts_after(&mut bundle, &script);
    let inside = outside.display().to_string();
    assert!(
        mount_at(&mounts, &inside).is_some_and(|m| m.fstype == "tmpfs"),
        "the absolute link was not resolved inside the root: {mounts:?}"
    );
    assert!(
        mount_at(&mounts, "/escaped").is_some_and(|m| m.fstype == "tmpfs"),
        "the .. link was not resolved inside the root: {mounts:?}"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "a write reached the host"
    );
    assert!(
        bundle
            .rootfs()
            .join(inside.trim_start_matches('/'))
            .is_dir(),
        "the target was not created inside the root"
    );
}

#[test]
fn mounts_root_readonly() {
    if !require_root("mounts_root_readonly") {
        return;
    }
    let mut bundle = Bundle::new("root-ro");
    bundle.set("/root/readonly", json!(true));
    bundle.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    let (before, mounts) = mounts_after(
        &mut bundle,
        &format!("{PROBE} write /file; {PROBE} write /tmp/file"),
    );
    let lines: Vec<&str> = before.lines().collect();
    assert_eq!(lines, [READ_ONLY, "ok"], "root writable or /tmp read-only");
    let root = mount_at(&mounts, "/").expect("no root mount");
    assert!(root.options.iter().any(|o| o == "ro"), "{root:?}");
}

/// A bind mount of a host directory onto itself, made a shared mount (its
/// own peer group) on the host, unmounted on drop.
struct SharedHostBind {
    target: PathBuf,
}

impl SharedHostBind {
    fn mount(target: &Path) -> Self {
        mount(
            Some(target),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|error| panic!("failed to bind {}: {error}", target.display()));
        let bind = SharedHostBind {
            target: target.to_path_buf(),
        };
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap_or_else(|error| panic!("failed to make {} shared: {error}", target.display()));
        bind
    }
}

impl Drop for SharedHostBind {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

/// Mount points of this test process's mount table at or below `dir`.
fn host_mounts_below(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
        .filter(|mount_point| Path::new(mount_point).starts_with(dir))
        .collect()
}

#[test]
fn mounts_rootfs_propagation() {
    if !require_root("mounts_rootfs_propagation") {
        return;
    }
    // The root lies on a shared host mount, so a slave root has a master to
    // show. Each case lists the propagation tags the root mount must show
    // inside and those it must not.
    let cases: [(Option<&str>, &[&str], &[&str]); 6] = [
        (None, &["master:"], &["shared:", "unbindable"]),
        (Some("slave"), &["master:"], &["shared:", "unbindable"]),
        (Some("private"), &[], &["shared:", "master:", "unbindable"]),
        (Some("shared"), &["shared:"], &["unbindable"]),
        (Some("rshared"), &["shared:"], &["unbindable"]),
        (Some("unbindable"), &["unbindable"], &["shared:"]),
    ];
    for (propagation, present, absent) in cases {
        let name = propagation.unwrap_or("unset");
        let mut bundle = Bundle::new("rootfs-propagation");
        let host_bind = SharedHostBind::mount(&bundle.path());
        if let Some(value) = propagation {
            bundle.set("/linux/rootfsPropagation", json!(value));
        }
        let (_, mounts) = mounts_after(&mut bundle, "true");
        let root = mount_at(&mounts, "/").expect("no root mount");
        for tag in present {
            assert!(
                root.tags.iter().any(|t| t.starts_with(tag)),
                "rootfsPropagation {name}: the root lacks {tag}: {root:?}"
            );
        }
        for tag in absent {
            assert!(
                !root.tags.iter().any(|t| t.starts_with(tag)),
                "rootfsPropagation {name}: the root has {tag}: {root:?}"
            );
        }
        // The container's /proc, /dev and the rest must not show up on the
        // host, even with a shared root.
        let leaked: Vec<String> = host_mounts_below(&bundle.rootfs());
        assert!(
            leaked.is_empty(),
            "rootfsPropagation {name}: container mounts reached the host: {leaked:?}"
        );
        drop(host_bind);
    }

    let mut invalid = Bundle::new("rootfs-propagation-invalid");
    invalid.set("/linux/rootfsPropagation", json!("bogus"));
    let output = invalid.run();
    assert!(!output.status.success(), "an invalid value was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("linux.rootfsPropagation"),
        "the message does not name the field: {stderr}"
    );
    assert!(
        stderr.contains("bogus"),
        "the message does not name the value: {stderr}"
    );
}

/// Returns whether the running container of `bundle` has a mount at
/// `target`, from its mount table.
fn container_has_mount(bundle: &Bundle, target: &str) -> bool {
    let output = bundle.corral_output(&["exec", &bundle.id, PROBE, "mounts"]);
    assert!(output.status.success(), "{}", describe(&output));
    mount_at(&parse_mounts(&text(&output.stdout)), target).is_some()
}

#[test]
fn mounts_root_follows_host_mount_events() {
    if !require_root("mounts_root_follows_host_mount_events") {
        return;
    }
    // Unset and "slave" make the root a slave of the host's mount, so a
    // mount and an unmount on the host below the root reach the container.
    // "private" cuts it off from both.
    for (propagation, follows) in [
        (None, true),
        (Some("slave"), true),
        (Some("private"), false),
    ] {
        let name = propagation.unwrap_or("unset");
        let mut bundle = Bundle::new("root-follows-host");
        let _host_bind = SharedHostBind::mount(&bundle.path());
        if let Some(value) = propagation {
            bundle.set("/linux/rootfsPropagation", json!(value));
        }
        bundle.args(&[PROBE, "sleep", "600"]);
        bundle.start_ok();

        let target = "/mnt/corral-host-event";
        let host_tmpfs = HostTmpfs::mount(
            &bundle.rootfs().join(target.trim_start_matches('/')),
            MsFlags::empty(),
        );
        assert_eq!(
            container_has_mount(&bundle, target),
            follows,
            "rootfsPropagation {name}: the host's mount"
        );
        drop(host_tmpfs);
        assert!(
            !container_has_mount(&bundle, target),
            "rootfsPropagation {name}: the host's unmount did not reach the container"
        );
    }
}

#[test]
fn mounts_overlay_root_from_annotations() {
    if !require_root("mounts_overlay_root_from_annotations") {
        return;
    }
    let mut bundle = Bundle::new("overlay");
    let overlay = bundle.host_dir().join("overlay");
    bundle.set("/root/path", json!(overlay.join("merged")));
    bundle.set(
        "/annotations",
        json!({"run.corral.overlay.lowerdirs": bundle.rootfs(),
               "run.corral.overlay.dir": overlay}),
    );
    bundle.args(&[
        "/bin/sh",
        "-c",
        "echo changed > /bin/added; exec /bin/corral-probe sleep 600",
    ]);
    bundle.start_ok();
    let upper = overlay.join("upper/bin/added");
    assert!(
        wait_until(Duration::from_secs(5), || upper.exists()),
        "the write did not land in {}",
        upper.display()
    );
    assert!(
        !bundle.rootfs().join("bin/added").exists(),
        "the lower layer changed"
    );
    let delete = bundle.corral_output(&["delete", "--force", &bundle.id]);
    assert!(delete.status.success());
    assert!(!overlay.exists(), "delete left {}", overlay.display());
}

#[test]
fn mounts_masked_paths() {
    if !require_root("mounts_masked_paths") {
        return;
    }
    let mut bundle = Bundle::new("masked");
    fs::create_dir_all(bundle.rootfs().join("secret")).unwrap();
    fs::write(bundle.rootfs().join("secret/key"), "hidden").unwrap();
    fs::write(bundle.rootfs().join("etc/token"), "hidden").unwrap();
    bundle.push("/linux/maskedPaths", json!("/secret"));
    bundle.push("/linux/maskedPaths", json!("/etc/token"));
    bundle.push("/linux/maskedPaths", json!("/does/not/exist"));
    bundle.args(&[PROBE, "stat", "/etc/token", "/secret/key", "/proc/keys"]);
    let output = bundle.run_ok();
    assert!(output.contains("/proc/keys c 1:3 "), "{output}");
    assert!(output.contains("/etc/token c 1:3 "), "{output}");
    assert!(output.contains("/secret/key missing"), "{output}");

    let mut listing = Bundle::new("masked-dir");
    listing.args(&["/bin/sh", "-c", "ls -A /sys/firmware | wc -l"]);
    assert_eq!(listing.run_ok().trim(), "0", "/sys/firmware is not masked");
}

#[test]
fn mounts_readonly_paths() {
    if !require_root("mounts_readonly_paths") {
        return;
    }
    let mut bundle = Bundle::new("readonly-paths");
    fs::create_dir_all(bundle.rootfs().join("frozen")).unwrap();
    bundle.push("/linux/readonlyPaths", json!("/frozen"));
    let script = format!(
        "{PROBE} write /frozen/file; {PROBE} write /proc/sys/kernel/domainname; {PROBE} write /tmp/file"
    );
    bundle.args(&["/bin/sh", "-c", &script]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines, [READ_ONLY, READ_ONLY, "ok"]);
}

#[test]
fn devices_default_and_configured() {
    if !require_root("devices_default_and_configured") {
        return;
    }
    let mut bundle = Bundle::new("devices");
    bundle.set(
        "/linux/devices",
        json!([{"path": "/dev/custom-zero", "type": "c", "major": 1, "minor": 5,
                "fileMode": 0o640, "uid": 1000, "gid": 1001}]),
    );
    bundle.args(&[
        PROBE,
        "stat",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/custom-zero",
        "/dev/ptmx",
        "/dev/fd",
    ]);
    let output = bundle.run_ok();
    for expected in [
        "/dev/null c 1:3 666 0 0",
        "/dev/zero c 1:5 666 0 0",
        "/dev/full c 1:7 666 0 0",
        "/dev/random c 1:8 666 0 0",
        "/dev/urandom c 1:9 666 0 0",
        "/dev/tty c 5:0 666 0 0",
        "/dev/custom-zero c 1:5 640 1000 1001",
        "/dev/ptmx l ",
        "/dev/fd l ",
    ] {
        assert!(
            output.contains(expected),
            "{expected} missing in:\n{output}"
        );
    }
}

/// With a deny-all rule first, a node listed in linux.devices stays usable
/// because the runtime allows each listed device after the spec's rules, as
/// runc does. Runs on v1 (devices controller) and v2 (device program).
#[test]
fn devices_cgroup_rules_enforced() {
    if !require_root("devices_cgroup_rules_enforced") {
        return;
    }
    let mut bundle = Bundle::new("device-rules");
    bundle.set(
        "/linux/devices",
        json!([{"path": "/dev/configured", "type": "c", "major": 10, "minor": 200}]),
    );
    bundle.set(
        "/linux/resources/devices",
        json!([{"allow": false, "access": "rwm"}]),
    );
    let capabilities = ["CAP_MKNOD", "CAP_KILL"];
    bundle.set(
        "/process/capabilities",
        json!({"bounding": capabilities, "effective": capabilities, "permitted": capabilities}),
    );
    // The cgroup's deny-all rule keeps mknod of an unlisted device from
    // working even with CAP_MKNOD, while a default device stays usable.
    let script = format!(
        "{PROBE} read /dev/configured; {PROBE} write /dev/null; \
         mknod /tmp/fuse c 10 229 2>&1 || echo mknod-denied; mknod /tmp/null c 1 3 && echo mknod-allowed"
    );
    bundle.args(&["/bin/sh", "-c", &script]);
    let output = bundle.run_ok();
    let lines: Vec<&str> = output.lines().collect();
    assert_ne!(
        lines.first(),
        Some(&"errno=1"),
        "a device from linux.devices is denied: {output}"
    );
    assert_eq!(lines.get(1), Some(&"ok"), "/dev/null is denied: {output}");
    assert!(output.contains("mknod-denied"), "{output}");
    assert!(output.contains("mknod-allowed"), "{output}");
}
