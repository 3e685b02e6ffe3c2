//! Images end to end: archives made by podman and GNU tar, imported with
//! `corral image`, and run as containers with `corral run` from the OCI
//! config that supervisord would generate.
//!
//! podman runs in a mount namespace of its own with tmpfs over /var/lib and
//! /run, and keeps its storage (vfs driver) in the test's scratch
//! directory, so it leaves nothing on the host. It builds images offline:
//! `podman import` of a busybox root filesystem, and `podman build` with
//! chroot isolation, which creates no cgroups. Every test needs root and
//! Debian's busybox-static; the podman tests also need podman.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use corral_config::JobSpec;
use corral_runtime::job::{annotations, oci_spec, write_bundle, JobContainer};
use corral_runtime::state::{ContainerState, ExitRecord};
use corral_tests::daemon::{remove_cgroup_tree, Supervisor};
use corral_tests::{binary, host, require_root, unique_name, wait_until};
use serde_json::{json, Value};

const BUSYBOX: &str = "/bin/busybox";

/// Scratch directories of one test: supervisord's data directory (with the
/// image store in `images/`), the runtime's state root and podman's storage.
struct World {
    scratch: tempfile::TempDir,
    test: String,
}

impl World {
    /// Returns None, after printing a SKIP line, when the test cannot run.
    fn new(test: &str) -> Option<Self> {
        if !require_root(test) {
            return None;
        }
        if !Path::new(BUSYBOX).is_file() {
            eprintln!("SKIP {test}: {BUSYBOX} is missing; install Debian's busybox-static");
            return None;
        }
        let scratch = tempfile::Builder::new()
            .prefix("corral-images-")
            .tempdir()
            .expect("create scratch directory");
        Some(World {
            scratch,
            test: test.to_string(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    fn store(&self) -> PathBuf {
        self.data_dir().join("images")
    }

    fn state_root(&self) -> PathBuf {
        self.path("state")
    }

    /// `corral --root STATE image --store DATA/images ARGS`.
    fn image(&self, args: &[&str]) -> Output {
        Command::new(binary("corral"))
            .arg("--root")
            .arg(self.state_root())
            .arg("image")
            .arg("--store")
            .arg(self.store())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run corral image")
    }

    /// Imports `source` as `name` and returns the command's stdout.
    fn import(&self, name: &str, source: &Path) -> String {
        let output = self.image(&["import", "--name", name, &source.display().to_string()]);
        assert!(
            output.status.success(),
            "import of {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Imports `source` expecting failure; returns stderr.
    fn import_fails(&self, name: &str, source: &Path) -> String {
        let output = self.image(&["import", "--name", name, &source.display().to_string()]);
        assert!(
            !output.status.success(),
            "import of {} succeeded: {}",
            source.display(),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Builds, once per test, a busybox root filesystem: the static binary,
    /// a link per applet, and users root and web (1000:1000).
    fn busybox_rootfs(&self) -> PathBuf {
        let rootfs = self.path("busybox");
        if rootfs.exists() {
            return rootfs;
        }
        for dir in ["bin", "etc", "tmp", "data/sub"] {
            fs::create_dir_all(rootfs.join(dir)).expect("create rootfs directory");
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                symlink("busybox", rootfs.join("bin").join(applet)).expect("link applet");
            }
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/srv:/bin/sh\n",
        )
        .expect("write passwd");
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nstaff:x:50:web\nweb:x:1000:\n",
        )
        .expect("write group");
        fs::write(rootfs.join("data/a"), "lower a\n").expect("write data/a");
        fs::write(rootfs.join("data/sub/x"), "lower x\n").expect("write data/sub/x");
        rootfs
    }

    /// Returns the busybox root filesystem as a tarball, as `docker export`
    /// writes one.
    fn busybox_tar(&self) -> PathBuf {
        let tar = self.path("busybox.tar");
        if !tar.exists() {
            tar_dir(&self.busybox_rootfs(), &tar);
        }
        tar
    }

    /// podman with its state in the scratch directory, or None (after a
    /// SKIP line) when podman is not installed.
    fn podman(&self) -> Option<Command> {
        if !Path::new("/usr/bin/podman").exists() {
            eprintln!("SKIP {}: podman is not installed", self.test);
            return None;
        }
        let base = self.path("podman");
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /run && exec \"$@\"")
            .args(["sh", "podman", "--root"])
            .arg(base.join("root"))
            .arg("--runroot")
            .arg(base.join("run"))
            .arg("--tmpdir")
            .arg(base.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .stdin(Stdio::null());
        Some(command)
    }

    /// Runs podman with `args`; None when podman is missing.
    fn run_podman(&self, args: &[&str]) -> Option<()> {
        let mut command = self.podman()?;
        run(command.args(args));
        Some(())
    }

    /// `podman import` of the busybox tarball as `localhost/bb:latest`, with
    /// a command, environment, working directory and user in its config.
    fn podman_busybox(&self) -> Option<()> {
        let tar = self.busybox_tar().display().to_string();
        self.run_podman(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh", "-c", "echo foo=$FOO; pwd; id -u; id -g"]"#,
            "--change",
            "ENV FOO=from-image",
            "--change",
            "WORKDIR /srv",
            "--change",
            "USER web",
            &tar,
            "localhost/bb:latest",
        ])
    }

    /// Translates `job_json` as supervisord would, expecting an error, and
    /// returns the error with its causes.
    fn spec_error(&self, name: &str, job_json: &str) -> String {
        let job: JobSpec = serde_json::from_str(job_json).expect("valid job JSON");
        let container = JobContainer {
            job_name: name,
            container_id: name,
            data_dir: &self.data_dir(),
            cgroup_parent: "unused",
        };
        let error = oci_spec(&job, &container).expect_err("the job translates");
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    /// Builds a bundle for `job_json` with the config supervisord would
    /// write, and returns the container that runs it.
    fn container(&self, name: &str, job_json: &str) -> Container {
        let container = Container {
            id: unique_name(name),
            cgroup_parent: unique_name(&format!("{name}-parent")),
            bundle: self.path(&format!("bundle-{name}")),
            exit_file: self.path(&format!("exit-{name}.json")),
            state_root: self.state_root(),
        };
        let job: JobSpec = serde_json::from_str(job_json).expect("valid job JSON");
        let spec = oci_spec(
            &job,
            &JobContainer {
                job_name: name,
                container_id: &container.id,
                data_dir: &self.data_dir(),
                cgroup_parent: &container.cgroup_parent,
            },
        )
        .expect("job translates to an OCI config");
        write_bundle(&spec, &container.bundle).expect("write bundle");
        container
    }
}

/// One container, deleted with its cgroups on drop.
struct Container {
    id: String,
    cgroup_parent: String,
    bundle: PathBuf,
    exit_file: PathBuf,
    state_root: PathBuf,
}

impl Container {
    fn corral(&self) -> Command {
        let mut command = Command::new(binary("corral"));
        command.arg("--root").arg(&self.state_root);
        command
    }

    /// Runs the container to its end (at most 60 s) and returns its stdout
    /// and exit record, failing the test unless it exited 0.
    fn run(&self) -> (String, ExitRecord) {
        let stdout_path = self.bundle.join("stdout");
        let stderr_path = self.bundle.join("stderr");
        let mut child = self
            .corral()
            .args(["run", &self.id, "--bundle"])
            .arg(&self.bundle)
            .arg("--exit-file")
            .arg(&self.exit_file)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .expect("run corral");

        let finished = wait_until(Duration::from_secs(60), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !finished {
            let _ = child.kill();
        }
        let status = child.wait().expect("wait for corral");
        let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
        let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();

        assert!(
            finished,
            "corral run {} did not finish within 60 s; stderr:\n{stderr}",
            self.id
        );
        let record: ExitRecord = fs::read(&self.exit_file)
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exit record; corral exited {status} with stderr:\n{stderr}\n{}",
                    host::cgroup_report()
                )
            });
        assert_eq!(
            record.status, 0,
            "container {} failed; stdout:\n{stdout}\nstderr:\n{stderr}",
            self.id
        );
        (stdout, record)
    }

    /// Returns the generated config.json.
    fn config(&self) -> Value {
        serde_json::from_slice(&fs::read(self.bundle.join("config.json")).unwrap()).unwrap()
    }

    fn run_detached(&self) -> ContainerState {
        let status = self
            .corral()
            .args(["run", "--detach", &self.id, "--bundle"])
            .arg(&self.bundle)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run corral");
        assert!(status.success(), "corral run --detach {} failed", self.id);
        ContainerState::load(&self.state_root, &self.id).expect("state of the container")
    }

    fn delete(&self) {
        let output = self
            .corral()
            .args(["delete", "--force", &self.id])
            .output()
            .expect("run corral delete");
        assert!(
            output.status.success(),
            "delete failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Returns the lower directories the config hands to the runtime, top
    /// first.
    fn lower_dirs(&self) -> Vec<String> {
        self.config()["annotations"][annotations::OVERLAY_LOWERDIRS]
            .as_str()
            .expect("lower dirs annotation")
            .split(':')
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.state_root.join(&self.id).exists() {
            let _ = self.corral().args(["delete", "--force", &self.id]).output();
        }
        remove_cgroup_tree(&self.id);
        remove_cgroup_tree(&self.cgroup_parent);
    }
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

fn tar_dir(dir: &Path, out: &Path) {
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

fn sha256_hex(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Bytes on disk below `dir`, each inode counted once.
fn disk_usage(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((metadata.dev(), metadata.ino())) {
            total += metadata.blocks() * 512;
        }
        if metadata.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Image records and layer directories in the store.
fn store_contents(store: &Path) -> (Vec<String>, Vec<String>) {
    let list = |dir: PathBuf| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    (
        list(store.join("images")),
        list(store.join("layers/sha256")),
    )
}

/// An OCI image layout written file by file.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
        Layout { dir }
    }

    fn blob_file(&self, media_type: &str, file: &Path) -> Value {
        let hex = sha256_hex(file);
        fs::copy(file, self.dir.join("blobs/sha256").join(&hex)).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"),
               "size": fs::metadata(file).unwrap().len()})
    }

    fn blob_json(&self, media_type: &str, value: &Value) -> Value {
        let file = self.dir.join("pending.json");
        fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
        let descriptor = self.blob_file(media_type, &file);
        fs::remove_file(file).unwrap();
        descriptor
    }

    /// Writes an image of the tar files `layers`, bottom first; every third
    /// layer is compressed with gzip and every third with zstd.
    fn write_image(&self, layers: &[PathBuf], config: Value) {
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for (index, tar) in layers.iter().enumerate() {
            diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
            let (file, media_type) = match index % 3 {
                1 => {
                    run(Command::new("gzip").arg("-kf").arg(tar));
                    (
                        tar.with_extension("tar.gz"),
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                    )
                }
                2 => {
                    run(Command::new("zstd").arg("-qf").arg(tar));
                    (
                        tar.with_extension("tar.zst"),
                        "application/vnd.oci.image.layer.v1.tar+zstd",
                    )
                }
                _ => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            descriptors.push(self.blob_file(media_type, &file));
        }
        let mut config = config;
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let config = self.blob_json("application/vnd.oci.image.config.v1+json", &config);
        let manifest = self.blob_json(
            "application/vnd.oci.image.manifest.v1+json",
            &json!({"schemaVersion": 2, "config": config, "layers": descriptors}),
        );
        let index = json!({"schemaVersion": 2, "manifests": [manifest]});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn images_docker_archive_supplies_job_defaults() {
    let Some(world) = World::new("images_docker_archive_supplies_job_defaults") else {
        return;
    };
    let archive = world.path("bb-docker.tar");
    let Some(()) = world.podman_busybox() else {
        return;
    };
    world
        .run_podman(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            &archive.display().to_string(),
            "localhost/bb:latest",
        ])
        .unwrap();

    let output = world.image(&["import", "--name", "bb", &archive.display().to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "more than the result on a pipe: {stdout}"
    );
    assert!(stdout.starts_with("imported bb sha256:"), "{stdout}");
    assert!(stdout.contains("docker-archive"), "{stdout}");
    assert!(
        output.stderr.is_empty(),
        "stderr on a pipe: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let inspect = world.image(&["inspect", "bb"]);
    let record: Value = serde_json::from_slice(&inspect.stdout).expect("inspect prints JSON");
    assert_eq!(record["config"]["working_dir"], "/srv");
    assert_eq!(record["config"]["user"], "web");
    assert_eq!(record["layers"].as_array().unwrap().len(), 1);

    // The image's user resolves through its /etc/passwd.
    let defaults = world.container("defaults", r#"{"image": "bb"}"#);
    let process = &defaults.config()["process"];
    assert_eq!(process["user"]["uid"], 1000);
    assert_eq!(process["user"]["gid"], 1000);
    assert_eq!(process["cwd"], "/srv");
    assert_eq!(process["args"][0], "/bin/sh");
    let env: Vec<&str> = process["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"FOO=from-image"), "{env:?}");

    // As root, so that only the image's command, env and working dir apply.
    let as_root = world.container("as-root", r#"{"image": "bb", "user": "0"}"#);
    let (stdout, _) = as_root.run();
    assert_eq!(stdout, "foo=from-image\n/srv\n0\n0\n");

    let overridden = world.container(
        "overridden",
        r#"{"image": "bb", "command": ["/bin/sh", "-c", "echo foo=$FOO; pwd; id -u; id -g"],
            "env": {"FOO": "from-job"}, "working_dir": "/tmp", "user": "0:7"}"#,
    );
    let (stdout, _) = overridden.run();
    assert_eq!(stdout, "foo=from-job\n/tmp\n0\n7\n");
}

#[test]
fn images_process_runs_as_image_user() {
    let Some(world) = World::new("images_process_runs_as_image_user") else {
        return;
    };
    let Some(()) = world.podman_busybox() else {
        return;
    };
    let archive = world.path("bb-oci.tar");
    world
        .run_podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            &archive.display().to_string(),
            "localhost/bb:latest",
        ])
        .unwrap();
    world.import("bb", &archive);
    let job = world.container("image-user", r#"{"image": "bb"}"#);
    let (stdout, _) = job.run();
    assert_eq!(stdout, "foo=from-image\n/srv\n1000\n1000\n");
}

#[test]
fn images_oci_and_docker_archives_share_layers() {
    let Some(world) = World::new("images_oci_and_docker_archives_share_layers") else {
        return;
    };
    let Some(()) = world.podman_busybox() else {
        return;
    };
    let docker = world.path("bb-docker.tar");
    let oci = world.path("bb-oci.tar");
    world
        .run_podman(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            &docker.display().to_string(),
            "localhost/bb:latest",
        ])
        .unwrap();
    world
        .run_podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            &oci.display().to_string(),
            "localhost/bb:latest",
        ])
        .unwrap();

    world.import("bb-docker", &docker);
    let stdout = world.import("bb-oci", &oci);
    assert!(stdout.contains("oci-archive"), "{stdout}");
    assert!(stdout.contains("0 unpacked, 1 reused"), "{stdout}");
    // A plain tarball of the same tree is the same layer too.
    world.import("bb-rootfs", &world.busybox_tar());
    let (images, layers) = store_contents(&world.store());
    assert_eq!(images.len(), 3, "{images:?}");
    assert_eq!(layers, [sha256_hex(&world.busybox_tar())]);

    // The oci-archive's own name is used when --name is absent.
    let output = world.image(&["import", &oci.display().to_string()]);
    assert!(output.status.success());
    let list = world.image(&["ls", "--quiet"]);
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l == "localhost/bb:latest"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    let job = world.container(
        "oci",
        r#"{"image": "bb-oci", "user": "0", "command": ["/bin/cat", "/data/a"]}"#,
    );
    let (stdout, _) = job.run();
    assert_eq!(stdout, "lower a\n");
}

#[test]
fn images_podman_whiteouts_hide_deleted_files() {
    let Some(world) = World::new("images_podman_whiteouts_hide_deleted_files") else {
        return;
    };
    let Some(()) = world.podman_busybox() else {
        return;
    };
    let context = world.path("context");
    fs::create_dir_all(&context).unwrap();
    fs::write(
        context.join("Containerfile"),
        "FROM localhost/bb:latest\n\
         USER root\n\
         RUN echo keep > /keep && echo gone > /gone\n\
         RUN rm /gone /data/a && echo b > /data/b\n",
    )
    .unwrap();
    // Chroot isolation runs the RUN steps without a runtime or cgroups; the
    // steps touch no network, so sharing the host's is harmless.
    world
        .run_podman(&[
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "-t",
            "localhost/wh:latest",
            &context.display().to_string(),
        ])
        .unwrap();
    let archive = world.path("wh.tar");
    world
        .run_podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            &archive.display().to_string(),
            "localhost/wh:latest",
        ])
        .unwrap();
    world.import("wh", &archive);

    let job = world.container(
        "whiteouts",
        r#"{"image": "wh", "user": "0", "command": ["/bin/sh", "-c",
            "test ! -e /gone && echo gone-absent; test ! -e /data/a && echo a-absent; cat /keep /data/b /data/sub/x"]}"#,
    );
    let (stdout, _) = job.run();
    assert_eq!(stdout, "gone-absent\na-absent\nkeep\nb\nlower x\n");
}

#[test]
fn images_opaque_directory_hides_lower_content() {
    let Some(world) = World::new("images_opaque_directory_hides_lower_content") else {
        return;
    };
    let upper = world.path("upper");
    fs::create_dir_all(upper.join("data")).unwrap();
    fs::write(upper.join("data/.wh..wh..opq"), "").unwrap();
    fs::write(upper.join("data/b"), "upper b\n").unwrap();
    fs::write(upper.join(".wh.tmp"), "").unwrap();
    let upper_tar = world.path("upper.tar");
    tar_dir(&upper, &upper_tar);
    let layout = Layout::new(world.path("layout"));
    layout.write_image(
        &[world.busybox_tar(), upper_tar],
        json!({"architecture": "amd64", "os": "linux", "config": {}}),
    );
    world.import("opaque", &layout.dir);

    let job = world.container(
        "opaque",
        r#"{"image": "opaque", "command": ["/bin/sh", "-c", "ls -A /data; test -e /tmp || echo no-tmp"]}"#,
    );
    let (stdout, _) = job.run();
    assert_eq!(stdout, "b\nno-tmp\n");
}

#[test]
fn images_hundred_layers_run() {
    let Some(world) = World::new("images_hundred_layers_run") else {
        return;
    };
    let mut layers = vec![world.busybox_tar()];
    for index in 1..100 {
        let dir = world.path(&format!("layer-{index}"));
        fs::create_dir_all(dir.join("layers")).unwrap();
        fs::write(dir.join("layers").join(index.to_string()), "").unwrap();
        fs::write(dir.join("top"), format!("{index}\n")).unwrap();
        let tar = world.path(&format!("layer-{index}.tar"));
        tar_dir(&dir, &tar);
        layers.push(tar);
    }
    let layout = Layout::new(world.path("layout"));
    layout.write_image(
        &layers,
        json!({"architecture": "amd64", "os": "linux",
               "config": {"Cmd": ["/bin/sh", "-c", "ls /layers | wc -l; cat /top"]}}),
    );
    let stdout = world.import("hundred", &layout.dir);
    assert!(stdout.contains("100 layers"), "{stdout}");

    let job = world.container("hundred", r#"{"image": "hundred"}"#);
    let lower_dirs = job.lower_dirs();
    assert_eq!(lower_dirs.len(), 100);
    assert!(
        lower_dirs.join(":").len() > 4096,
        "the lower dirs fit in one page, so the many-layer mount is not exercised"
    );
    let (stdout, _) = job.run();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["99", "99"],
        "files of every layer, top layer winning"
    );
}

#[test]
fn images_two_containers_share_layers() {
    let Some(world) = World::new("images_two_containers_share_layers") else {
        return;
    };
    world.import("bb", &world.busybox_tar());
    // Leases of the running containers are added to the store; its layers
    // must not change.
    let layers_before = disk_usage(&world.store().join("layers"));

    let job = |name: &str| {
        format!(
            r#"{{"image": "bb", "command": ["/bin/sh", "-c", "echo {name} > /tmp/mine; dd if=/dev/zero of=/tmp/fill bs=1024 count=512 2>/dev/null; sleep 60"]}}"#
        )
    };
    let first = world.container("first", &job("first"));
    let second = world.container("second", &job("second"));
    assert_eq!(first.lower_dirs(), second.lower_dirs());
    let layer_dir = first.lower_dirs()[0].clone();
    assert!(
        layer_dir.starts_with(&world.store().display().to_string()),
        "{layer_dir} is not in the store"
    );
    let first_state = first.run_detached();
    let second_state = second.run_detached();
    for state in [&first_state, &second_state] {
        let mine = format!("/proc/{}/root/tmp/mine", state.pid.unwrap());
        // The file exists before the shell has written its line.
        assert!(
            wait_until(Duration::from_secs(10), || fs::read_to_string(&mine)
                .is_ok_and(|text| text.ends_with('\n'))),
            "container {} did not write {mine}",
            state.id
        );
    }
    for (state, name) in [(&first_state, "first"), (&second_state, "second")] {
        let pid = state.pid.unwrap();
        let mine = fs::read_to_string(format!("/proc/{pid}/root/tmp/mine")).unwrap();
        assert_eq!(
            mine,
            format!("{name}\n"),
            "containers see each other's files"
        );
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = mountinfo
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/") && l.contains(" - overlay "))
            .unwrap_or_else(|| panic!("no overlay root in\n{mountinfo}"));
        assert!(
            root.contains(&format!("lowerdir={layer_dir}")),
            "the root does not stack the store's layer: {root}"
        );
        // Volatile: the container's end does not sync the host's disk.
        // Newer kernels, 6.18 among them, show the option as
        // fsync=volatile.
        assert!(
            root.split(',')
                .any(|option| option == "volatile" || option == "fsync=volatile"),
            "the root is not volatile: {root}"
        );
        let upper = state.overlay_dir.clone().unwrap().join("upper/tmp/mine");
        assert!(upper.is_file(), "{} is missing", upper.display());
    }
    let fill = format!("/proc/{}/root/tmp/fill", first_state.pid.unwrap());
    assert!(wait_until(Duration::from_secs(10), || {
        fs::metadata(&fill)
            .map(|m| m.len() == 512 * 1024)
            .unwrap_or(false)
    }));
    assert_eq!(
        disk_usage(&world.store().join("layers")),
        layers_before,
        "running containers changed the store's layers"
    );
    first.delete();
    second.delete();
    assert!(host::overlay_mounts_below(world.scratch.path()).is_empty());
}

#[test]
fn images_stale_overlay_dir_starts_empty() {
    let Some(world) = World::new("images_stale_overlay_dir_starts_empty") else {
        return;
    };
    let first = world.container(
        "stale",
        r#"{"image": "host", "command": ["/bin/sh", "-c", "echo old > /tmp/left; sleep 60"]}"#,
    );
    let state = first.run_detached();
    let pid = state.pid.expect("init PID");
    let left = format!("/proc/{pid}/root/tmp/left");
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&left)
            .is_ok_and(|text| text == "old\n")),
        "the first container did not write {left}"
    );
    let overlay_dir = state.overlay_dir.clone().expect("overlay directory");

    // The init dies and the state root loses the container, as after a
    // reboot that empties /run, while the overlay directory stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the first container's init");
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the first container's init {pid} did not exit"
    );
    fs::remove_dir_all(first.state_root.join(&first.id)).expect("remove the state directory");
    assert!(overlay_dir.join("upper/tmp/left").is_file());
    assert!(
        overlay_dir.join("work/work/incompat/volatile").is_dir(),
        "the volatile mount left no mark in {}",
        overlay_dir.display()
    );

    // A new container of the same config takes the directory over.
    let mut config = first.config();
    config["process"]["args"] = json!(["/bin/sh", "-c", "cat /tmp/left 2>/dev/null || echo empty"]);
    let second = Container {
        id: unique_name("taker"),
        cgroup_parent: unique_name("taker-parent"),
        bundle: world.path("bundle-taker"),
        exit_file: world.path("exit-taker.json"),
        state_root: world.state_root(),
    };
    fs::create_dir_all(&second.bundle).unwrap();
    fs::write(second.bundle.join("config.json"), config.to_string()).unwrap();
    let (stdout, _) = second.run();
    assert_eq!(
        stdout, "empty\n",
        "the new container saw the old upper layer"
    );
    assert!(
        !overlay_dir.exists(),
        "{} outlived the new container",
        overlay_dir.display()
    );
    assert!(host::overlay_mounts_below(world.scratch.path()).is_empty());
}

#[test]
fn images_gc_keeps_layers_in_use() {
    let Some(world) = World::new("images_gc_keeps_layers_in_use") else {
        return;
    };
    world.import("bb", &world.busybox_tar());
    let layer = sha256_hex(&world.busybox_tar());
    let job = world.container("gc", r#"{"image": "bb", "command": ["/bin/sleep", "60"]}"#);
    job.run_detached();

    let removed = world.image(&["rm", "bb"]);
    assert!(removed.status.success());
    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(stdout.contains("removed 0 layers"), "{stdout}");
    assert!(stdout.contains(&format!("kept sha256:{layer}")), "{stdout}");
    assert!(stdout.contains(&job.id), "{stdout}");
    assert_eq!(store_contents(&world.store()).1, [layer]);

    job.delete();
    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(stdout.contains("removed 1 layer "), "{stdout}");
    assert_eq!(store_contents(&world.store()), (Vec::new(), Vec::new()));
}

#[test]
fn images_corrupt_layer_rejected() {
    let Some(world) = World::new("images_corrupt_layer_rejected") else {
        return;
    };
    let Some(()) = world.podman_busybox() else {
        return;
    };
    for format in ["oci-archive", "docker-archive"] {
        let archive = world.path(&format!("{format}.tar"));
        world
            .run_podman(&[
                "save",
                "--format",
                format,
                "-o",
                &archive.display().to_string(),
                "localhost/bb:latest",
            ])
            .unwrap();
        let unpacked = world.path(&format!("{format}-files"));
        fs::create_dir_all(&unpacked).unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg("-xf")
            .arg(&archive));
        // The largest file is the layer. One byte of the passwd contents in
        // it changes, or any byte when the layer is compressed, as in the
        // oci-archive.
        let layer = walk_files(&unpacked)
            .into_iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap();
        let mut bytes = fs::read(&layer).unwrap();
        let at = find(&bytes, b"web:x:1000").unwrap_or(bytes.len() / 2);
        bytes[at] ^= 0x20;
        fs::write(&layer, bytes).unwrap();
        let corrupt = world.path(&format!("{format}-corrupt.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&unpacked)
            .arg("-cf")
            .arg(&corrupt)
            .arg("."));

        let stderr = world.import_fails("corrupt", &corrupt);
        let expected = if format == "oci-archive" {
            "digest mismatch"
        } else {
            "unpacks to diff ID"
        };
        assert!(stderr.contains(expected), "{format}: {stderr}");
        assert_eq!(
            store_contents(&world.store()),
            (Vec::new(), Vec::new()),
            "{format}"
        );
    }
}

#[test]
fn images_path_escape_rejected() {
    let Some(world) = World::new("images_path_escape_rejected") else {
        return;
    };
    let outside = world.path("outside");
    let work = world.path("work");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&work).unwrap();
    fs::write(outside.join("escaped"), "planted\n").unwrap();
    let evil = world.path("evil.tar");
    run(Command::new("tar")
        .current_dir(&work)
        .arg("-cPf")
        .arg(&evil)
        .arg("../outside/escaped"));
    fs::remove_file(outside.join("escaped")).unwrap();

    let stderr = world.import_fails("evil", &evil);
    assert!(stderr.contains("'..'"), "{stderr}");
    let layout = Layout::new(world.path("layout"));
    layout.write_image(
        &[world.busybox_tar(), evil.clone()],
        json!({"architecture": "amd64", "os": "linux", "config": {}}),
    );
    let stderr = world.import_fails("evil-layer", &layout.dir);
    assert!(stderr.contains("'..'"), "{stderr}");

    assert!(
        !outside.join("escaped").exists(),
        "the archive wrote outside the store"
    );
    assert!(
        !world.path("escaped").exists(),
        "the archive wrote outside the store"
    );
    let (images, _) = store_contents(&world.store());
    assert!(images.is_empty(), "{images:?}");
    let tmp: Vec<_> = fs::read_dir(world.store().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "staging left behind");
}

#[test]
fn images_killed_import_stays_invisible() {
    let Some(world) = World::new("images_killed_import_stays_invisible") else {
        return;
    };
    // A large sparse file takes seconds to unpack, long enough to kill
    // the import midway.
    let rootfs = world.path("big");
    fs::create_dir_all(&rootfs).unwrap();
    fs::File::create(rootfs.join("sparse"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let mut child = Command::new(binary("corral"))
        .arg("image")
        .arg("--store")
        .arg(world.store())
        .args(["import", "--name", "big"])
        .arg(&rootfs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the import");
    let staged = world.store().join("tmp");
    let started = wait_until(Duration::from_secs(20), || {
        walk_files(&staged)
            .iter()
            .any(|p| p.ends_with("rootfs/sparse"))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(started, "the import never started writing");
    assert!(
        !status.success(),
        "the import finished before it was killed"
    );

    let list = world.image(&["ls", "--quiet"]);
    assert!(
        list.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    assert_eq!(store_contents(&world.store()), (Vec::new(), Vec::new()));
    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(stdout.contains("1 leftover "), "{stdout}");
    assert_eq!(fs::read_dir(&staged).unwrap().count(), 0);
}

#[test]
fn images_supervisord_runs_stored_image() {
    let Some(world) = World::new("images_supervisord_runs_stored_image") else {
        return;
    };
    let mut supervisor = Supervisor::new("images");
    let output = Command::new(binary("corral"))
        .arg("image")
        .arg("--store")
        .arg(supervisor.data_dir.join("images"))
        .args(["import", "--name", "busybox"])
        .arg(world.busybox_tar())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    supervisor.add_job(
        "hello",
        r#"{"image": "busybox", "command": ["/bin/sh", "-c", "cat /data/a; ls /bin/busybox"],
            "restart": {"policy": "never"}}"#,
    );
    supervisor.start();
    supervisor.wait_for_status("hello", "EXITED", Duration::from_secs(20));
    assert_eq!(
        supervisor.job_log("hello", "stdout"),
        "lower a\n/bin/busybox\n"
    );
}

#[test]
fn images_example_script_builds_busybox_image() {
    let Some(world) = World::new("images_example_script_builds_busybox_image") else {
        return;
    };
    let script = corral_tests::workspace_root().join("examples/images/busybox-rootfs.sh");
    let rootfs = world.path("example-rootfs");
    let output = Command::new(&script)
        .arg(&rootfs)
        .arg("--import")
        .arg(world.store())
        .env("CORRAL", binary("corral"))
        .output()
        .expect("run the example script");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("imported busybox sha256:"), "{stdout}");

    let job = world.container(
        "example",
        r#"{"image": "busybox", "user": "nobody", "command": ["/bin/sh", "-c", "cat /www/index.html; id -u"]}"#,
    );
    let (stdout, _) = job.run();
    assert_eq!(stdout, "hello from corral\n65534\n");
}

#[test]
fn images_import_shows_progress_on_terminal() {
    let Some(world) = World::new("images_import_shows_progress_on_terminal") else {
        return;
    };
    let tar = world.busybox_tar();
    let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal");
    let terminal = fs::File::from(pty.slave);
    let mut child = Command::new(binary("corral"))
        .arg("image")
        .arg("--store")
        .arg(world.store())
        .args(["import", "--name", "bb"])
        .arg(&tar)
        .stdin(Stdio::null())
        .stdout(terminal.try_clone().unwrap())
        .stderr(terminal)
        .spawn()
        .expect("start the import");

    let mut master = fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        // Reading fails with EIO once every writer of the terminal closed it.
        let _ = std::io::Read::read_to_end(&mut master, &mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    assert!(child.wait().unwrap().success());
    let text = reader.join().unwrap();

    assert!(
        text.contains("[1/1]"),
        "no progress on the terminal: {text:?}"
    );
    assert!(text.contains("unpacked: "), "no layer summary: {text:?}");
    assert!(text.contains("imported bb sha256:"), "no result: {text:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                if let Ok(entries) = fs::read_dir(&path) {
                    pending.extend(entries.flatten().map(|e| e.path()));
                }
            }
            Ok(metadata) if metadata.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn images_user_names_resolve_in_root() {
    let Some(world) = World::new("images_user_names_resolve_in_root") else {
        return;
    };
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !host_passwd.contains("\nnobody:x:65534:65534:") {
        eprintln!("SKIP images_user_names_resolve_in_root: no nobody 65534:65534 in /etc/passwd");
        return;
    }
    // The host image reads the host's /etc/passwd, so the user `nobody`
    // must not run as root.
    let host = world.container(
        "host-nobody",
        r#"{"image": "host", "user": "nobody", "command": ["/bin/sh", "-c", "id -u; id -g"]}"#,
    );
    assert_eq!(host.config()["process"]["user"]["uid"], 65534);
    let (stdout, _) = host.run();
    assert_eq!(stdout, "65534\n65534\n");

    // A path image reads its own, with memberships as supplementary groups.
    let rootfs = world.busybox_rootfs();
    let job = |user: &str| {
        json!({"image": {"path": rootfs}, "user": user,
               "command": ["/bin/sh", "-c", "id -u; id -g; id -G"]})
        .to_string()
    };
    let web = world.container("path-web", &job("web"));
    let (stdout, _) = web.run();
    assert_eq!(stdout, "1000\n1000\n1000 50\n");
    let staff = world.container("path-web-staff", &job("1000:staff"));
    let (stdout, _) = staff.run();
    assert_eq!(stdout, "1000\n50\n50\n");

    let message = world.spec_error(
        "host-unknown",
        r#"{"image": "host", "user": "nosuchuser", "command": ["/bin/true"]}"#,
    );
    assert_eq!(
        message,
        "failed to resolve user \"nosuchuser\" in image \"host\": no such user in /etc/passwd: \
         use a numeric UID or add an entry there"
    );
    let message = world.spec_error("path-unknown-group", &job("1000:nogroup"));
    assert!(message.contains("\"nogroup\""), "{message}");
    let group_file = rootfs.join("etc/group").display().to_string();
    assert!(message.contains(&group_file), "{message}");
    assert!(
        !world
            .data_dir()
            .join("containers")
            .join("path-unknown-group")
            .exists(),
        "a failed translation created the overlay directory"
    );
}

/// Lease files in the store.
fn leases(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.join("leases"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn images_gc_honours_leases_of_other_roots() {
    let Some(world) = World::new("images_gc_honours_leases_of_other_roots") else {
        return;
    };
    world.import("bb", &world.busybox_tar());
    let layer = sha256_hex(&world.busybox_tar());
    // Both containers use a state root that gc is not given, as
    // supervisord's RUN_DIR/containers is for `corral image gc`.
    let other_root = world.path("other-state");
    let sleep = r#"{"image": "bb", "command": ["/bin/sleep", "60"]}"#;
    let mut kept = world.container("kept", sleep);
    kept.state_root = other_root.clone();
    let mut killed = world.container("killed", sleep);
    killed.state_root = other_root.clone();
    kept.run_detached();
    let killed_state = killed.run_detached();
    assert_eq!(leases(&world.store()).len(), 2, "one lease per container");

    let removed = world.image(&["rm", "bb"]);
    let stdout = String::from_utf8_lossy(&removed.stdout);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        stdout.contains(&kept.id),
        "rm does not name the users: {stdout}"
    );

    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(stdout.contains("removed 0 layers"), "{stdout}");
    assert!(stdout.contains(&format!("kept sha256:{layer}")), "{stdout}");
    assert_eq!(
        store_contents(&world.store()).1,
        std::slice::from_ref(&layer)
    );

    // A lease whose init has exited is stale: gc drops it.
    let kill = killed
        .corral()
        .args(["kill", &killed.id, "KILL"])
        .output()
        .expect("run corral kill");
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let pid = killed_state.pid.expect("running container has a pid");
    assert!(wait_until(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
    }));
    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(stdout.contains("removed 0 layers"), "{stdout}");
    assert!(
        !stdout.contains(&killed.id),
        "a stale lease kept the layer: {stdout}"
    );
    assert_eq!(leases(&world.store()).len(), 1, "the stale lease remains");

    kept.delete();
    killed.delete();
    assert_eq!(leases(&world.store()), Vec::<String>::new());
    let gc = world.image(&["gc"]);
    let stdout = String::from_utf8_lossy(&gc.stdout);
    assert!(stdout.contains("removed 1 layer "), "{stdout}");
    assert_eq!(store_contents(&world.store()), (Vec::new(), Vec::new()));
}

#[test]
fn images_spec_runs_beside_job() {
    let Some(world) = World::new("images_spec_runs_beside_job") else {
        return;
    };
    let mut supervisor = Supervisor::new("spec-beside");
    let output = Command::new(binary("corral"))
        .arg("image")
        .arg("--store")
        .arg(supervisor.data_dir.join("images"))
        .args(["import", "--name", "busybox"])
        .arg(world.busybox_tar())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    supervisor.add_job(
        "web",
        r#"{"image": "busybox", "command": ["/bin/sleep", "600"]}"#,
    );
    supervisor.start();
    supervisor.wait_for_status("web", "RUNNING", Duration::from_secs(20));
    let pid_of_job = || {
        String::from_utf8_lossy(&supervisor.ctl(&["pid", "web"]).stdout)
            .trim()
            .to_string()
    };
    let pid = pid_of_job();
    let running_id = fs::read_dir(supervisor.containers_dir())
        .expect("supervisord's containers")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a running container");
    let running_bundle = supervisor.data_dir.join("bundles").join(&running_id);
    let running: Value =
        serde_json::from_slice(&fs::read(running_bundle.join("config.json")).unwrap()).unwrap();
    let running_overlay = running["annotations"][annotations::OVERLAY_DIR]
        .as_str()
        .expect("overlay annotation")
        .to_string();

    let spec = supervisor.ctl(&["spec", "web"]);
    assert!(
        spec.status.success(),
        "{}",
        String::from_utf8_lossy(&spec.stderr)
    );
    let config: Value = serde_json::from_slice(&spec.stdout).expect("spec prints JSON");
    assert_eq!(config["process"]["args"], running["process"]["args"]);
    assert_ne!(
        config["annotations"][annotations::OVERLAY_DIR],
        running_overlay.as_str()
    );
    assert_ne!(
        config["linux"]["cgroupsPath"],
        running["linux"]["cgroupsPath"]
    );

    // The printed config runs beside the job, which keeps running.
    let by_hand = |name: &str, config: &Value| {
        let container = Container {
            id: unique_name(name),
            cgroup_parent: unique_name(&format!("{name}-parent")),
            bundle: world.path(&format!("bundle-{name}")),
            exit_file: world.path(&format!("exit-{name}.json")),
            state_root: world.state_root(),
        };
        fs::create_dir_all(&container.bundle).unwrap();
        fs::write(container.bundle.join("config.json"), config.to_string()).unwrap();
        container
    };
    let beside = by_hand("beside", &config);
    let state = beside.run_detached();
    assert!(state.pid.is_some());
    beside.delete();
    assert_eq!(pid_of_job(), pid, "the job's init changed");
    assert!(
        supervisor.status_line("web").contains("RUNNING"),
        "{}",
        supervisor.status_line("web")
    );
    assert!(
        Path::new(&running_overlay).join("upper").is_dir(),
        "the job's overlay directory is gone"
    );

    // A copy of the running container's own config is rejected, and so is
    // one that only shares its cgroup.
    let copy = by_hand("copy", &running);
    let output = copy
        .corral()
        .args(["run", "--detach", &copy.id, "--bundle"])
        .arg(&copy.bundle)
        .output()
        .expect("run corral");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a copy of the running config ran");
    assert!(stderr.contains(&running_overlay), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by container \"{running_id}\"")),
        "{stderr}"
    );

    let mut shared_cgroup = running.clone();
    let own_dir = world.path("own-overlay").display().to_string();
    shared_cgroup["annotations"][annotations::OVERLAY_DIR] = json!(own_dir);
    shared_cgroup["root"]["path"] = json!(format!("{own_dir}/merged"));
    let cgroup_copy = by_hand("cgroup-copy", &shared_cgroup);
    let output = cgroup_copy
        .corral()
        .args(["run", "--detach", &cgroup_copy.id, "--bundle"])
        .arg(&cgroup_copy.bundle)
        .output()
        .expect("run corral");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a config sharing the job's cgroup ran"
    );
    assert!(stderr.contains("cgroup "), "{stderr}");
    assert!(stderr.contains("is in use by"), "{stderr}");

    assert_eq!(pid_of_job(), pid, "the job's init changed");
    assert!(
        supervisor.status_line("web").contains("RUNNING"),
        "{}",
        supervisor.status_line("web")
    );
    assert!(
        Path::new(&running_overlay).join("upper").is_dir(),
        "the job's overlay directory is gone"
    );
}
