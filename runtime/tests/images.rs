//! The image store against real archives: layers and rootfs tarballs made
//! by GNU tar, compressed by gzip and zstd, OCI layouts written here around
//! them, imported into a store in a temporary directory.
//!
//! Unpacking keeps owners, device nodes and trusted.* attributes, so every
//! test needs root; without it each prints a SKIP line and returns.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use corral_runtime::image::unpack::{unpack_layer, UnpackError};
use corral_runtime::image::{
    collect_garbage, import, resolve_user, AccountRoot, ImportError, ImportOptions, LayerOutcome,
    NoProgress, Platform, Progress, Store,
};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};
use serde_json::{json, Value};
use sha2::Digest as _;

fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root to keep owners, device nodes and trusted.* attributes");
    false
}

fn run(command: &mut Command) {
    let output = command.output().expect("start the command");
    assert!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Archives the contents of `dir` with GNU tar, as `docker export` and
/// image builders lay them out: relative paths, numeric owners, xattrs.
fn tar_dir(dir: &Path, out: &Path) {
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn options(name: &str) -> ImportOptions<'static> {
    ImportOptions {
        name: Some(name.to_string()),
        platform: Platform::parse("linux/amd64").unwrap(),
        progress: &NoProgress,
    }
}

/// Builds a small root filesystem: a shell-less tree with an /etc/passwd.
fn make_rootfs(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/srv:/bin/false\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nstaff:x:50:web\n").unwrap();
    fs::write(dir.join("data/lower"), "from the lower layer\n").unwrap();
    fs::write(dir.join("data/kept"), "kept\n").unwrap();
    fs::write(dir.join("gone"), "deleted by an upper layer\n").unwrap();
}

/// An OCI image layout written file by file, as the image spec describes it.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = sha256_hex(bytes);
        fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    /// Writes an image whose layers are the tar files `layers` (bottom
    /// first), each compressed with `compressor` (`gzip`, `zstd` or none),
    /// and returns the manifest's descriptor.
    fn image(&self, layers: &[(&Path, Option<&str>)], architecture: &str, cmd: &[&str]) -> Value {
        let mut layer_descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, compressor) in layers {
            let plain = fs::read(tar).unwrap();
            diff_ids.push(format!("sha256:{}", sha256_hex(&plain)));
            let (bytes, media_type) = match compressor {
                Some(tool) => {
                    let output = Command::new(tool).arg("-c").arg(tar).output().unwrap();
                    assert!(output.status.success(), "{tool} failed");
                    let suffix = if *tool == "gzip" { "+gzip" } else { "+zstd" };
                    (
                        output.stdout,
                        format!("application/vnd.oci.image.layer.v1.tar{suffix}"),
                    )
                }
                None => (plain, "application/vnd.oci.image.layer.v1.tar".to_string()),
            };
            layer_descriptors.push(self.blob(&media_type, &bytes));
        }
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin", "LANG=C"], "WorkingDir": "/data", "User": "web"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config_descriptor = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor,
            "layers": layer_descriptors,
        });
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
    }

    fn index(&self, manifests: Vec<Value>) {
        let index = json!({"schemaVersion": 2, "manifests": manifests});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Layer 1 of the whiteout image: deletes `gone`, makes `data` opaque and
/// adds `data/upper`, with the `.wh.` names an image builder writes.
fn make_whiteout_layer(scratch: &Path) -> PathBuf {
    let dir = scratch.join("whiteouts");
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join(".wh.gone"), "").unwrap();
    fs::write(dir.join("data/.wh..wh..opq"), "").unwrap();
    fs::write(dir.join("data/upper"), "from the upper layer\n").unwrap();
    // AUFS bookkeeping that is not a whiteout.
    fs::create_dir_all(dir.join(".wh..wh.plnk")).unwrap();
    let tar = scratch.join("whiteouts.tar");
    tar_dir(&dir, &tar);
    tar
}

fn store_is_empty(store: &Store) -> bool {
    let tmp_empty = fs::read_dir(store.root().join("tmp"))
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(true);
    store.images().unwrap().is_empty() && store.layers().unwrap().is_empty() && tmp_empty
}

#[test]
fn unpack_keeps_metadata_of_every_type() {
    if !require_root("unpack_keeps_metadata_of_every_type") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    fs::create_dir_all(source.join("dir")).unwrap();
    fs::write(source.join("setuid"), "#!/bin/sh\n").unwrap();
    chown(
        &source.join("setuid"),
        Some(Uid::from_raw(1234)),
        Some(Gid::from_raw(5678)),
    )
    .unwrap();
    fs::set_permissions(source.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(source.join("attrs"), "attributes\n").unwrap();
    xattr::set(source.join("attrs"), "user.comment", b"kept").unwrap();
    xattr::set(source.join("attrs"), "trusted.note", b"also kept").unwrap();
    symlink("/etc/passwd", source.join("absolute-link")).unwrap();
    symlink("dir", source.join("relative-link")).unwrap();
    fs::write(source.join("first"), "linked\n").unwrap();
    fs::hard_link(source.join("first"), source.join("second")).unwrap();
    mknod(
        &source.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    mknod(
        &source.join("loop"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        makedev(7, 0),
    )
    .unwrap();
    mknod(
        &source.join("fifo"),
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    chown(
        &source.join("dir"),
        Some(Uid::from_raw(42)),
        Some(Gid::from_raw(43)),
    )
    .unwrap();
    fs::set_permissions(source.join("dir"), fs::Permissions::from_mode(0o710)).unwrap();
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &source.join("first"),
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let tar = scratch.path().join("layer.tar");
    tar_dir(&source, &tar);

    let layer = scratch.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let stats = unpack_layer(fs::File::open(&tar).unwrap(), &layer).unwrap();
    assert_eq!(stats.whiteouts, 0);

    let setuid = fs::metadata(layer.join("setuid")).unwrap();
    assert_eq!(setuid.mode() & 0o7777, 0o4755, "set-user-ID bit lost");
    assert_eq!((setuid.uid(), setuid.gid()), (1234, 5678));
    assert_eq!(
        xattr::get(layer.join("attrs"), "user.comment")
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        xattr::get(layer.join("attrs"), "trusted.note")
            .unwrap()
            .as_deref(),
        Some(&b"also kept"[..])
    );
    assert_eq!(
        fs::read_link(layer.join("absolute-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(layer.join("relative-link")).unwrap(),
        Path::new("dir")
    );
    let first = fs::metadata(layer.join("first")).unwrap();
    let second = fs::metadata(layer.join("second")).unwrap();
    assert_eq!(first.ino(), second.ino(), "hard link became a copy");
    assert_eq!(first.mtime(), 1_000_000_000, "modification time lost");
    let null = fs::metadata(layer.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    let block = fs::metadata(layer.join("loop")).unwrap();
    assert!(block.file_type().is_block_device());
    assert_eq!(block.rdev(), makedev(7, 0));
    assert!(fs::metadata(layer.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let dir = fs::metadata(layer.join("dir")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o710);
    assert_eq!((dir.uid(), dir.gid()), (42, 43));
}

#[test]
fn unpack_converts_whiteouts_for_overlayfs() {
    if !require_root("unpack_converts_whiteouts_for_overlayfs") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let tar = make_whiteout_layer(scratch.path());
    let layer = scratch.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let stats = unpack_layer(fs::File::open(&tar).unwrap(), &layer).unwrap();
    assert_eq!(stats.whiteouts, 2);

    let gone = fs::symlink_metadata(layer.join("gone")).unwrap();
    assert!(
        gone.file_type().is_char_device(),
        "whiteout is not a device"
    );
    assert_eq!(gone.rdev(), 0, "whiteout is not device 0/0");
    assert!(!layer.join(".wh.gone").exists());
    assert_eq!(
        xattr::get(layer.join("data"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!layer.join("data/.wh..wh..opq").exists());
    assert!(layer.join("data/upper").is_file());
    assert!(
        !layer.join("plnk").exists() && !layer.join(".wh..wh.plnk").exists(),
        "AUFS bookkeeping was unpacked"
    );
}

#[test]
fn unpack_rejects_path_escapes() {
    if !require_root("unpack_rejects_path_escapes") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path();
    let outside = base.join("outside");
    fs::create_dir(&outside).unwrap();

    // "../outside/escaped", kept as written by tar -P.
    let work = base.join("work");
    fs::create_dir(&work).unwrap();
    fs::write(outside.join("payload"), "payload\n").unwrap();
    let dotdot = base.join("dotdot.tar");
    run(Command::new("tar")
        .current_dir(&work)
        .args(["-cPf"])
        .arg(&dotdot)
        .arg("../outside/payload"));

    // A symlink to the outside directory, then a file written through it.
    let link_tree = base.join("link-tree");
    fs::create_dir(&link_tree).unwrap();
    symlink(&outside, link_tree.join("link")).unwrap();
    let through_link = base.join("through-link.tar");
    run(Command::new("tar")
        .current_dir(&link_tree)
        .args(["-cf"])
        .arg(&through_link)
        .arg("link"));
    let file_tree = base.join("file-tree");
    fs::create_dir_all(file_tree.join("link")).unwrap();
    fs::write(file_tree.join("link/planted"), "planted\n").unwrap();
    run(Command::new("tar")
        .current_dir(&file_tree)
        .args(["-rf"])
        .arg(&through_link)
        .arg("link/planted"));

    // A hard link whose target climbs out of the layer.
    let hard_link = base.join("hard-link.tar");
    {
        let mut builder = tar::Builder::new(fs::File::create(&hard_link).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        header.set_mode(0o644);
        builder
            .append_link(&mut header, "stolen", "../outside/payload")
            .unwrap();
        builder.finish().unwrap();
    }

    for (archive, planted) in [
        (&dotdot, "escaped"),
        (&through_link, "planted"),
        (&hard_link, "stolen"),
    ] {
        let layer = base.join(format!("layer-{planted}"));
        fs::create_dir(&layer).unwrap();
        let result = unpack_layer(fs::File::open(archive).unwrap(), &layer);
        assert!(
            matches!(
                result,
                Err(UnpackError::InvalidPath { .. }) | Err(UnpackError::ThroughSymlink { .. })
            ),
            "{} was not rejected: {result:?}",
            archive.display()
        );
        assert!(
            !outside.join(planted).exists(),
            "{planted} was written outside"
        );
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["payload"], "the outside directory changed");
    }

    // An absolute path lands inside the layer.
    let absolute = base.join("absolute.tar");
    run(Command::new("tar")
        .args(["-cPf"])
        .arg(&absolute)
        .arg(outside.join("payload")));
    fs::write(outside.join("payload"), "unchanged\n").unwrap();
    let layer = base.join("layer-absolute");
    fs::create_dir(&layer).unwrap();
    unpack_layer(fs::File::open(&absolute).unwrap(), &layer).unwrap();
    let inside = layer.join(outside.join("payload").strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(inside).unwrap(), "payload\n");
    assert_eq!(
        fs::read_to_string(outside.join("payload")).unwrap(),
        "unchanged\n"
    );
}

#[test]
fn import_compressed_tarballs_share_one_layer() {
    if !require_root("import_compressed_tarballs_share_one_layer") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    let tar = scratch.path().join("rootfs.tar");
    tar_dir(&rootfs, &tar);
    run(Command::new("gzip").arg("-k").arg(&tar));
    run(Command::new("zstd").arg("-q").arg(&tar));
    let store = Store::new(scratch.path().join("store"));

    let plain = import(&store, &tar, &options("plain")).unwrap();
    let gzip = import(
        &store,
        &scratch.path().join("rootfs.tar.gz"),
        &options("gzip"),
    )
    .unwrap();
    let zstd = import(
        &store,
        &scratch.path().join("rootfs.tar.zst"),
        &options("zstd"),
    )
    .unwrap();
    assert_eq!(plain.layers_unpacked, 1);
    assert_eq!(gzip.layers_reused, 1, "gzip tarball was unpacked again");
    assert_eq!(zstd.layers_reused, 1, "zstd tarball was unpacked again");
    let expected = format!("sha256:{}", sha256_hex(&fs::read(&tar).unwrap()));
    assert_eq!(plain.record.layers[0].to_string(), expected);
    assert_eq!(plain.record.id, gzip.record.id);
    assert_eq!(store.layers().unwrap().len(), 1);
    assert_eq!(store.images().unwrap().len(), 3);

    let dir = import(&store, &rootfs, &options("dir")).unwrap();
    let layer = store.layer_rootfs(&dir.record.layers[0]);
    assert_eq!(
        fs::read_to_string(layer.join("data/lower")).unwrap(),
        "from the lower layer\n"
    );
    let again = import(&store, &rootfs, &options("dir-again")).unwrap();
    assert_eq!(
        again.layers_reused, 1,
        "the same directory was unpacked again"
    );
    assert_eq!(again.record.id, dir.record.id);
}

#[test]
fn import_rootfs_dir_keeps_links_and_attributes() {
    if !require_root("import_rootfs_dir_keeps_links_and_attributes") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    fs::hard_link(rootfs.join("data/kept"), rootfs.join("data/kept-link")).unwrap();
    symlink("../etc/passwd", rootfs.join("data/passwd")).unwrap();
    xattr::set(rootfs.join("data/kept"), "user.origin", b"dir").unwrap();
    mknod(
        &rootfs.join("zero"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 5),
    )
    .unwrap();
    chown(
        &rootfs.join("data"),
        Some(Uid::from_raw(7)),
        Some(Gid::from_raw(8)),
    )
    .unwrap();

    let store = Store::new(scratch.path().join("store"));
    let report = import(&store, &rootfs, &options("tree")).unwrap();
    assert_eq!(report.record.source.format, "rootfs-dir");
    let layer = store.layer_rootfs(&report.record.layers[0]);
    let kept = fs::metadata(layer.join("data/kept")).unwrap();
    let link = fs::metadata(layer.join("data/kept-link")).unwrap();
    assert_eq!(kept.ino(), link.ino(), "hard link became a copy");
    assert_eq!(
        fs::read_link(layer.join("data/passwd")).unwrap(),
        Path::new("../etc/passwd")
    );
    assert_eq!(
        xattr::get(layer.join("data/kept"), "user.origin")
            .unwrap()
            .as_deref(),
        Some(&b"dir"[..])
    );
    assert_eq!(
        fs::metadata(layer.join("zero")).unwrap().rdev(),
        makedev(1, 5)
    );
    let data = fs::metadata(layer.join("data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (7, 8));
}

#[test]
fn import_rejects_store_inside_source() {
    if !require_root("import_rejects_store_inside_source") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::new(scratch.path().join("store"));
    let result = import(&store, scratch.path(), &options("itself"));
    assert!(
        matches!(result, Err(ImportError::StoreInsideSource { .. })),
        "{result:?}"
    );
}

#[test]
fn import_oci_layout_picks_platform() {
    if !require_root("import_oci_layout_picks_platform") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let make_layer = |name: &str| {
        let dir = scratch.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("arch"), format!("{name}\n")).unwrap();
        let tar = scratch.path().join(format!("{name}.tar"));
        tar_dir(&dir, &tar);
        tar
    };
    let amd64 = make_layer("amd64");
    let arm64 = make_layer("arm64");
    let layout = Layout::new(&scratch.path().join("layout"));
    let mut amd64_manifest = layout.image(&[(&amd64, Some("gzip"))], "amd64", &["/bin/true"]);
    amd64_manifest["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm64_manifest = layout.image(&[(&arm64, Some("zstd"))], "arm64", &["/bin/true"]);
    arm64_manifest["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let nested = layout.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(
            &json!({"schemaVersion": 2, "manifests": [arm64_manifest, amd64_manifest]}),
        )
        .unwrap(),
    );
    let mut top = nested;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "example/multi:1"});
    layout.index(vec![top]);

    let store = Store::new(scratch.path().join("store"));
    let host = ImportOptions {
        name: None,
        platform: Platform::parse("linux/amd64").unwrap(),
        progress: &NoProgress,
    };
    let report = import(&store, &layout.dir, &host).unwrap();
    assert_eq!(report.record.name, "example/multi:1");
    assert_eq!(report.record.platform, "linux/amd64");
    let layer = store.layer_rootfs(&report.record.layers[0]);
    assert_eq!(fs::read_to_string(layer.join("arch")).unwrap(), "amd64\n");
    assert_eq!(report.record.config.user.as_deref(), Some("web"));
    assert_eq!(report.record.config.working_dir.as_deref(), Some("/data"));

    let arm = ImportOptions {
        name: Some("multi-arm".to_string()),
        platform: Platform::parse("linux/arm64").unwrap(),
        progress: &NoProgress,
    };
    let report = import(&store, &layout.dir, &arm).unwrap();
    let layer = store.layer_rootfs(&report.record.layers[0]);
    assert_eq!(fs::read_to_string(layer.join("arch")).unwrap(), "arm64\n");

    let riscv = ImportOptions {
        name: Some("multi-riscv".to_string()),
        platform: Platform::parse("linux/riscv64").unwrap(),
        progress: &NoProgress,
    };
    let result = import(&store, &layout.dir, &riscv);
    assert!(
        matches!(result, Err(ImportError::NoMatchingPlatform { .. })),
        "{result:?}"
    );
}

#[test]
fn import_rejects_corrupt_layer() {
    if !require_root("import_rejects_corrupt_layer") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    let tar = scratch.path().join("rootfs.tar");
    tar_dir(&rootfs, &tar);

    for compressor in [None, Some("gzip")] {
        let layout = Layout::new(&scratch.path().join(format!("layout-{compressor:?}")));
        let manifest = layout.image(&[(&tar, compressor)], "amd64", &["/bin/true"]);
        layout.index(vec![manifest]);
        // Flip one byte in the middle of the layer blob, keeping its size.
        let blob = fs::read_dir(layout.dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = fs::read(&blob).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(&blob, bytes).unwrap();

        let store = Store::new(scratch.path().join(format!("store-{compressor:?}")));
        let result = import(&store, &layout.dir, &options("corrupt"));
        assert!(
            matches!(result, Err(ImportError::DigestMismatch { .. })),
            "corrupt {compressor:?} layer: {result:?}"
        );
        assert!(
            store_is_empty(&store),
            "the corrupt import left files in the store"
        );
    }
}

/// Records the outcome of every layer.
#[derive(Default)]
struct Outcomes(Mutex<BTreeMap<usize, LayerOutcome>>);

impl Progress for Outcomes {
    fn layer_finished(&self, index: usize, outcome: LayerOutcome) {
        self.0.lock().unwrap().insert(index, outcome);
    }
}

#[test]
fn import_after_failure_reuses_layers() {
    if !require_root("import_after_failure_reuses_layers") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    let base = scratch.path().join("base.tar");
    tar_dir(&rootfs, &base);
    let upper = make_whiteout_layer(scratch.path());
    let layout = Layout::new(&scratch.path().join("layout"));
    let manifest = layout.image(
        &[(&base, Some("gzip")), (&upper, None)],
        "amd64",
        &["/bin/true"],
    );
    layout.index(vec![manifest]);
    let upper_hex = sha256_hex(&fs::read(&upper).unwrap());
    let upper_blob = layout.dir.join("blobs/sha256").join(&upper_hex);
    let good = fs::read(&upper_blob).unwrap();
    let mut bad = good.clone();
    bad[700] ^= 1;
    fs::write(&upper_blob, &bad).unwrap();

    let store = Store::new(scratch.path().join("store"));
    let result = import(&store, &layout.dir, &options("layered"));
    assert!(result.is_err(), "the corrupt upper layer was accepted");
    assert!(
        store.images().unwrap().is_empty(),
        "a half-imported image is visible"
    );
    assert_eq!(
        store.layers().unwrap().len(),
        1,
        "the verified base layer was not kept"
    );

    fs::write(&upper_blob, &good).unwrap();
    let outcomes = Outcomes::default();
    let retry = ImportOptions {
        name: Some("layered".to_string()),
        platform: Platform::host(),
        progress: &outcomes,
    };
    let report = import(&store, &layout.dir, &retry).unwrap();
    assert_eq!(report.layers_reused, 1);
    assert_eq!(report.layers_unpacked, 1);
    let outcomes = outcomes.0.lock().unwrap();
    assert_eq!(outcomes[&0], LayerOutcome::Reused);
    assert!(matches!(outcomes[&1], LayerOutcome::Unpacked(_)));
}

#[test]
fn image_file_lookup_follows_whiteouts() {
    if !require_root("image_file_lookup_follows_whiteouts") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    let base = scratch.path().join("base.tar");
    tar_dir(&rootfs, &base);
    let upper = make_whiteout_layer(scratch.path());
    let layout = Layout::new(&scratch.path().join("layout"));
    let manifest = layout.image(&[(&base, None), (&upper, None)], "amd64", &["/bin/true"]);
    layout.index(vec![manifest]);
    let store = Store::new(scratch.path().join("store"));
    let record = import(&store, &layout.dir, &options("layered"))
        .unwrap()
        .record;

    let read = |path: &str| store.read_image_file(&record, Path::new(path)).unwrap();
    assert_eq!(read("gone"), None, "a whited-out file is visible");
    assert_eq!(
        read("data/lower"),
        None,
        "an opaque directory shows lower files"
    );
    assert_eq!(
        read("data/upper").as_deref(),
        Some(&b"from the upper layer\n"[..])
    );
    assert!(read("etc/passwd").is_some());

    let root = AccountRoot::Image {
        store: &store,
        record: &record,
    };
    let ids = |user: &str| {
        resolve_user(&root, user)
            .map(|resolved| (resolved.uid, resolved.gid))
            .unwrap()
    };
    assert_eq!(ids("web"), (1000, 1001));
    assert_eq!(ids("web:staff"), (1000, 50));
    assert_eq!(ids("1000"), (1000, 1001));
    assert_eq!(ids("4242"), (4242, 4242));
    assert_eq!(ids("0:7"), (0, 7));
    assert!(resolve_user(&root, "nobody").is_err());
    assert!(resolve_user(&root, "web:nogroup").is_err());
}

#[test]
fn gc_keeps_layers_that_containers_use() {
    if !require_root("gc_keeps_layers_that_containers_use") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    make_rootfs(&rootfs);
    let tar = scratch.path().join("rootfs.tar");
    tar_dir(&rootfs, &tar);
    let store = Store::new(scratch.path().join("store"));
    let record = import(&store, &tar, &options("used")).unwrap().record;
    let layer = record.layers[0].clone();
    store.remove_image("used").unwrap();
    fs::create_dir_all(store.root().join("tmp/import-leftover/layer")).unwrap();

    // A state file as the runtime writes it before mounting the root.
    let state_root = scratch.path().join("state");
    let container = state_root.join("web-1");
    fs::create_dir_all(&container).unwrap();
    let lower = store.layer_rootfs(&layer);
    let state = json!({
        "ociVersion": "1.2.0", "id": "web-1", "status": "running", "pid": 1,
        "bundle": "/nonexistent", "created": 0.0, "cgroupId": "/web-1",
        "cgroupPaths": {"version": "v2", "path": "/sys/fs/cgroup/web-1"},
        "rootfs": "/nonexistent/merged",
        "annotations": {"run.corral.overlay.lowerdirs": lower.display().to_string()},
    });
    fs::write(container.join("state.json"), state.to_string()).unwrap();

    let report = collect_garbage(&store, std::slice::from_ref(&state_root)).unwrap();
    assert!(report.removed.is_empty(), "a layer in use was removed");
    assert_eq!(report.kept_in_use[&layer], ["web-1"]);
    assert_eq!(report.staging_removed, 1);
    assert!(lower.is_dir());

    fs::remove_dir_all(&container).unwrap();
    let report = collect_garbage(&store, &[state_root]).unwrap();
    assert_eq!(report.removed, [layer]);
    assert!(report.freed_bytes > 0);
    assert!(!lower.exists());
    assert!(store_is_empty(&store));
}
