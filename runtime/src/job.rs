//! Translation of a job spec into an OCI runtime-spec `config.json`.
//!
//! The supervisor runs every job through this translation, so a job can also
//! be run by hand: `supervisorctl spec NAME > config.json` and `corral run`.
//! corral-specific parts of the root filesystem travel as annotations (see
//! [`annotations`]), which other OCI runtimes ignore.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use corral_config::{convert, ImageRef, JobSpec, MountSpec, Network};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::image::{self, ImageConfig, ImageRecord, Store, StoreError, UserError};

/// Annotation keys that carry corral's own settings inside `config.json`.
pub mod annotations {
    /// Colon-separated absolute lower directories of the overlay root, top first.
    pub const OVERLAY_LOWERDIRS: &str = "run.corral.overlay.lowerdirs";
    /// Per-container directory that holds `upper/`, `work/` and `merged/`.
    pub const OVERLAY_DIR: &str = "run.corral.overlay.dir";
    /// Job name, copied into the runtime state.
    pub const JOB: &str = "run.corral.job";
    /// Image name, copied into the runtime state.
    pub const IMAGE: &str = "run.corral.image";
    /// `none` leaves `lo` down in a new network namespace; anything else brings it up.
    pub const NETWORK: &str = "run.corral.network";
    /// `true` runs corral's minimal init as PID 1 in front of the process.
    pub const INIT: &str = "run.corral.init";
    /// Prefix of job labels, copied into the runtime state.
    pub const LABEL_PREFIX: &str = "run.corral.label.";
}

/// `PATH` that [`oci_spec`] adds to a job's environment when neither the job
/// nor its image sets one, the same default that Docker and containerd give
/// such containers. The runtime also searches it for a command without `/`
/// when a config's environment has no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities every job keeps: the bounding set Docker gives containers.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from every job: files under a read-only /dev/null bind,
/// directories under an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths every job sees read-only.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where and as what one container of a job runs.
#[derive(Debug, Clone, Copy)]
pub struct JobContainer<'a> {
    pub job_name: &'a str,
    pub container_id: &'a str,
    /// supervisord's data directory: `containers/ID/` and `images/` live here.
    pub data_dir: &'a Path,
    /// Cgroup path, relative to the runtime's own cgroup, that holds the
    /// container's cgroup (`corral` gives `corral/ID`).
    pub cgroup_parent: &'a str,
}

impl JobContainer<'_> {
    /// Returns the container's own overlay directory, `DATA_DIR/containers/ID`.
    pub fn overlay_dir(&self) -> PathBuf {
        self.data_dir.join("containers").join(self.container_id)
    }

    /// Returns the container's `linux.cgroupsPath`, `PARENT/ID`.
    pub fn cgroups_path(&self) -> String {
        format!("{}/{}", self.cgroup_parent, self.container_id)
    }
}

/// Gives `spec`, the config of another container of the job, the values
/// that belong to one container: its overlay directory (annotation and
/// `root.path`) and `linux.cgroupsPath` become those of `container`. The
/// result runs beside the container it was copied from, which the runtime
/// would otherwise reject because the two would share these paths.
pub fn for_container(spec: &mut Spec, container: &JobContainer<'_>) {
    let overlay_dir = container.overlay_dir();
    if let Some(annotations) = spec.annotations_mut() {
        if let Some(dir) = annotations.get_mut(annotations::OVERLAY_DIR) {
            *dir = overlay_dir.display().to_string();
            if let Some(root) = spec.root_mut() {
                root.set_path(overlay_dir.join("merged"));
            }
        }
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(container.cgroups_path())));
    }
}

/// An error translating a job into an OCI config.
#[derive(Debug, thiserror::Error)]
pub enum JobSpecError {
    #[error("image {name:?} not found in the image store {store}")]
    ImageNotFound { name: String, store: PathBuf },
    #[error("image directory {path} is not a directory")]
    ImagePathInvalid { path: PathBuf },
    #[error("failed to read image {name:?} from the image store")]
    ImageStore {
        name: String,
        #[source]
        source: Box<StoreError>,
    },
    /// `field` is `user` for the job's own user, `the image config's User`
    /// for the user that the stored image's config gives, or `the default
    /// user` for root (`0:0`) when neither names one.
    #[error("failed to resolve {field} {user:?} in image {image:?}")]
    User {
        field: &'static str,
        image: String,
        user: String,
        #[source]
        source: Box<UserError>,
    },
    #[error("job has no command and its image {image:?} supplies none")]
    NoCommand { image: String },
    #[error("failed to read block device {path} named in resources.io")]
    DeviceStat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} named in resources.io is not a block device")]
    NotBlockDevice { path: String },
    #[error("failed to build the OCI config for job {job:?}")]
    Build {
        job: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read the seccomp profile {path}")]
    SeccompFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid seccomp profile {path}: expected an OCI linux.seccomp object")]
    SeccompInvalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write {path}")]
    WriteBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds the OCI config of one container of `job`.
pub fn oci_spec(job: &JobSpec, container: &JobContainer<'_>) -> Result<Spec, JobSpecError> {
    let image = image_layers(&job.image, container.data_dir)?;
    // The job's own command, env entries, working dir and user win over the
    // image's; a job command replaces the image's entrypoint and cmd both.
    let defaults = image.stored.as_ref().map(|(_, record)| &record.config);
    let command = match defaults {
        Some(defaults) if job.command.is_empty() => defaults.command(),
        _ => job.command.clone(),
    };
    if command.is_empty() {
        return Err(JobSpecError::NoCommand { image: image.label });
    }
    let overlay_dir = container.overlay_dir();

    let mut annotations = BTreeMap::new();
    annotations.insert(
        annotations::OVERLAY_LOWERDIRS.to_string(),
        image.lower_dirs.join(":"),
    );
    annotations.insert(
        annotations::OVERLAY_DIR.to_string(),
        overlay_dir.display().to_string(),
    );
    annotations.insert(annotations::JOB.to_string(), container.job_name.to_string());
    annotations.insert(annotations::IMAGE.to_string(), image.label.clone());
    let network = match job.network {
        Network::None => "none",
        Network::Loopback => "loopback",
        Network::Host => "host",
    };
    annotations.insert(annotations::NETWORK.to_string(), network.to_string());
    annotations.insert(annotations::INIT.to_string(), job.init.to_string());
    for (key, value) in &job.labels {
        annotations.insert(format!("{}{key}", annotations::LABEL_PREFIX), value.clone());
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    if job.network != Network::Host {
        namespaces.push(json!({"type": "network"}));
    }

    let working_dir = job
        .working_dir
        .as_deref()
        .or(defaults.and_then(|d| d.working_dir.as_deref()))
        .unwrap_or("/");
    let exec_user = exec_user(job, &image)?;
    let env = process_env(job, defaults, &exec_user);
    let capabilities = capability_set(job);
    let seccomp = seccomp_profile(job, &capabilities)?;
    if job.user_namespace.is_some() {
        namespaces.push(json!({"type": "user"}));
    }

    let config = json!({
        "ociVersion": crate::state::OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {
                "uid": exec_user.uid,
                "gid": exec_user.gid,
                "additionalGids": exec_user.additional_gids,
            },
            "args": command,
            "env": env,
            "cwd": working_dir,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "noNewPrivileges": job.no_new_privileges,
        },
        "root": {
            "path": overlay_dir.join("merged"),
            "readonly": job.readonly_rootfs,
        },
        "hostname": job.hostname.as_deref().unwrap_or(container.job_name),
        "mounts": mounts(job),
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": container.cgroups_path(),
            "resources": resources(job)?,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    let mut config = config;
    if let Some(profile) = seccomp {
        config["linux"]["seccomp"] = profile;
    }
    if let Some(namespace) = job.user_namespace {
        config["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": namespace.uid, "size": namespace.size}]);
        config["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": namespace.gid, "size": namespace.size}]);
    }
    serde_json::from_value(config).map_err(|source| JobSpecError::Build {
        job: container.job_name.to_string(),
        source,
    })
}

/// Builds `process.env`: the image's environment with the job's `env`
/// applied. When neither sets `PATH` or `HOME`, an entry with
/// [`DEFAULT_PATH`] or with the user's home directory (`/` without one) is
/// put in front, as runc's init sets `HOME` from the passwd entry.
fn process_env(
    job: &JobSpec,
    defaults: Option<&ImageConfig>,
    user: &image::ExecUser,
) -> Vec<String> {
    let merged = match defaults {
        Some(defaults) => defaults.merged_env(&job.env),
        None => job.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    };
    let is_set = |name: &str| {
        merged
            .iter()
            .any(|entry| entry.split_once('=').map_or(entry.as_str(), |(key, _)| key) == name)
    };
    let mut env = Vec::with_capacity(merged.len() + 2);
    if !is_set("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !is_set("HOME") {
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    env.extend(merged);
    env
}

/// The default capabilities with the job's `cap_add` and `cap_drop`
/// applied; the config crate has already made the names canonical.
fn capability_set(job: &JobSpec) -> Vec<String> {
    let mut set: Vec<String> = if job.cap_drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !job.cap_drop.contains(c))
            .collect()
    };
    for capability in &job.cap_add {
        if !set.contains(capability) {
            set.push(capability.clone());
        }
    }
    set
}

/// The job's `linux.seccomp`: the built-in profile, none, or a file.
fn seccomp_profile(job: &JobSpec, capabilities: &[String]) -> Result<Option<Value>, JobSpecError> {
    match job.seccomp.as_str() {
        "default" => Ok(Some(crate::profile::default_profile(capabilities))),
        "unconfined" => Ok(None),
        path => {
            let text = std::fs::read(path).map_err(|source| JobSpecError::SeccompFile {
                path: path.into(),
                source,
            })?;
            let profile: Value =
                serde_json::from_slice(&text).map_err(|source| JobSpecError::SeccompInvalid {
                    path: path.into(),
                    source,
                })?;
            Ok(Some(profile))
        }
    }
}

/// Writes `config.json` into `bundle_dir`, creating the directory (mode 0700).
pub fn write_bundle(spec: &Spec, bundle_dir: &Path) -> Result<(), JobSpecError> {
    use std::os::unix::fs::DirBuilderExt;

    let write_error = |source| JobSpecError::WriteBundle {
        path: bundle_dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(bundle_dir)
        .map_err(write_error)?;
    let path = bundle_dir.join("config.json");
    let body = serde_json::to_vec_pretty(spec).expect("OCI spec serializes to JSON");
    std::fs::write(&path, body).map_err(|source| JobSpecError::WriteBundle { path, source })
}

/// The root filesystem of a job's image.
struct ResolvedImage {
    /// Image label for state and metrics.
    label: String,
    /// Overlay lower directories, top first.
    lower_dirs: Vec<String>,
    /// Directory whose account files name users when the image is not a
    /// stored one: `/` for `host`, the directory of a path image.
    root_dir: PathBuf,
    /// The store and record of a named image, whose config supplies defaults.
    stored: Option<(Store, ImageRecord)>,
}

/// Resolves the user that the job runs as (its `user`, else its image's) in
/// the root the job will see, as [`oci_spec`] does, so that an unknown name
/// can be reported before anything starts. Errors other than
/// [`JobSpecError::User`] concern the image and come again at start.
pub fn resolve_job_user(job: &JobSpec, data_dir: &Path) -> Result<image::ExecUser, JobSpecError> {
    let image = image_layers(&job.image, data_dir)?;
    exec_user(job, &image)
}

/// Resolves the job's `user`, or the user of its stored image's config, in
/// the image's account files. Root (`0:0`) when neither names one.
fn exec_user(job: &JobSpec, image: &ResolvedImage) -> Result<image::ExecUser, JobSpecError> {
    let defaults = image.stored.as_ref().map(|(_, record)| &record.config);
    // Without a user the process runs as root, whose passwd entry is still
    // read for the home directory.
    let (field, user) = match (
        job.user.as_deref(),
        defaults.and_then(|d| d.user.as_deref()),
    ) {
        (Some(user), _) => ("user", user),
        (None, Some(user)) => ("the image config's User", user),
        (None, None) => ("the default user", "0:0"),
    };
    let root = match &image.stored {
        Some((store, record)) => image::AccountRoot::Image { store, record },
        None => image::AccountRoot::Dir(&image.root_dir),
    };
    image::resolve_user(&root, user).map_err(|source| JobSpecError::User {
        field,
        image: image.label.clone(),
        user: user.to_string(),
        source: Box::new(source),
    })
}

/// Resolves the job's image: a named image is read from `DATA_DIR/images`.
fn image_layers(image: &ImageRef, data_dir: &Path) -> Result<ResolvedImage, JobSpecError> {
    match image {
        ImageRef::Host => Ok(ResolvedImage {
            label: "host".to_string(),
            lower_dirs: vec!["/".to_string()],
            root_dir: PathBuf::from("/"),
            stored: None,
        }),
        ImageRef::Path { path } => {
            if !path.is_dir() {
                return Err(JobSpecError::ImagePathInvalid { path: path.clone() });
            }
            let label = path.display().to_string();
            Ok(ResolvedImage {
                lower_dirs: vec![label.clone()],
                root_dir: path.clone(),
                label,
                stored: None,
            })
        }
        ImageRef::Named(name) => {
            let store_dir = data_dir.join("images");
            let store = Store::new(std::path::absolute(&store_dir).unwrap_or(store_dir));
            let record = store.image(name).map_err(|source| match source {
                StoreError::ImageNotFound { name, store } => {
                    JobSpecError::ImageNotFound { name, store }
                }
                source => JobSpecError::ImageStore {
                    name: name.clone(),
                    source: Box::new(source),
                },
            })?;
            let lower_dirs = store
                .lower_dirs(&record)
                .map_err(|source| JobSpecError::ImageStore {
                    name: name.clone(),
                    source: Box::new(source),
                })?
                .iter()
                .map(|dir| dir.display().to_string())
                .collect();
            Ok(ResolvedImage {
                label: name.clone(),
                lower_dirs,
                root_dir: PathBuf::new(),
                stored: Some((store, record)),
            })
        }
    }
}

fn mounts(job: &JobSpec) -> Vec<Value> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
    ];
    // A new sysfs instance shows the network devices of the namespace that
    // mounts it; with the host's network the container binds the host's /sys.
    if job.network == Network::Host {
        mounts.push(
            json!({"destination": "/sys", "type": "bind", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
    } else {
        mounts.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
    }
    for mount in &job.mounts {
        mounts.push(match mount {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => {
                let mut options = vec!["rbind", "nosuid", "nodev"];
                if *readonly {
                    options.push("ro");
                }
                json!({"destination": target, "type": "bind", "source": source, "options": options})
            }
            MountSpec::Tmpfs {
                target,
                size,
                readonly,
            } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = size {
                    options.push(format!("size={}", size.bytes()));
                }
                if *readonly {
                    options.push("ro".to_string());
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }
    mounts
}

/// Device cgroup rules of every job, as Docker sets them: every device is
/// denied, creating a node of any device is allowed (so CAP_MKNOD keeps
/// its meaning), and only the standard devices may be read and written.
/// Without these rules a job could create a node for the host's disk and
/// read it. cgroup v1 enforces them in the devices controller, v2 through
/// the device program that `cgroups::devices` compiles from them.
fn device_rules() -> Value {
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for (_, major, minor) in crate::rootfs::DEFAULT_DEVICES {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    // /dev/console and /dev/ptmx, then every /dev/pts/N.
    for minor in [1, 2] {
        rules
            .push(json!({"allow": true, "type": "c", "major": 5, "minor": minor, "access": "rwm"}));
    }
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(rules)
}

fn resources(job: &JobSpec) -> Result<Value, JobSpecError> {
    let limits = &job.resources;
    let mut resources = json!({"devices": device_rules()});
    let mut memory = json!({});
    if let Some(limit) = limits.memory {
        memory["limit"] = json!(limit.bytes());
    }
    if let Some(swap) = limits.memory_swap {
        memory["swap"] = json!(swap.bytes());
    }
    if memory != json!({}) {
        resources["memory"] = memory;
    }

    let mut cpu = json!({});
    if let Some(cpus) = limits.cpus {
        let (quota, period) = convert::cpus_to_cfs(cpus);
        cpu["quota"] = json!(quota);
        cpu["period"] = json!(period);
    }
    if let Some(weight) = limits.cpu_weight {
        cpu["shares"] = json!(convert::weight_to_shares(weight));
    }
    if let Some(cpuset) = &limits.cpuset {
        cpu["cpus"] = json!(cpuset);
    }
    if cpu != json!({}) {
        resources["cpu"] = cpu;
    }

    if let Some(pids) = limits.pids {
        resources["pids"] = json!({"limit": pids});
    }

    if let Some(io) = &limits.io {
        let mut block_io = json!({});
        if let Some(weight) = io.weight {
            block_io["weight"] = json!(convert::io_weight_to_blkio_weight(weight));
        }
        let throttles = [
            ("throttleReadBpsDevice", byte_rates(&io.read_bps)),
            ("throttleWriteBpsDevice", byte_rates(&io.write_bps)),
            ("throttleReadIOPSDevice", io.read_iops.clone()),
            ("throttleWriteIOPSDevice", io.write_iops.clone()),
        ];
        for (key, per_device) in throttles {
            if per_device.is_empty() {
                continue;
            }
            let mut entries = Vec::new();
            for (device, rate) in per_device {
                let (major, minor) = block_device_numbers(&device)?;
                entries.push(json!({"major": major, "minor": minor, "rate": rate}));
            }
            block_io[key] = Value::Array(entries);
        }
        resources["blockIO"] = block_io;
    }
    Ok(resources)
}

fn byte_rates(rates: &BTreeMap<String, corral_config::ByteSize>) -> BTreeMap<String, u64> {
    rates
        .iter()
        .map(|(device, size)| (device.clone(), size.bytes()))
        .collect()
}

/// Returns the major and minor numbers of a block device node.
fn block_device_numbers(path: &str) -> Result<(u64, u64), JobSpecError> {
    use std::os::unix::fs::MetadataExt;

    let metadata = std::fs::metadata(path).map_err(|source| JobSpecError::DeviceStat {
        path: path.to_string(),
        source,
    })?;
    if !metadata.file_type().is_block_device() {
        return Err(JobSpecError::NotBlockDevice {
            path: path.to_string(),
        });
    }
    let device = metadata.rdev();
    Ok((libc::major(device) as u64, libc::minor(device) as u64))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn job(text: &str) -> JobSpec {
        serde_json::from_str(text).expect("valid job spec")
    }

    fn user_with_home(home: Option<&str>) -> image::ExecUser {
        image::ExecUser {
            home: home.map(str::to_string),
            ..image::ExecUser::default()
        }
    }

    /// Returns the `process.env` of `job_text` run on a path image that has
    /// root (home /root) and web (UID 1000, home /srv) in its /etc/passwd.
    fn generated_env(job_text: &str) -> Vec<String> {
        let image = tempfile::tempdir().unwrap();
        fs::create_dir(image.path().join("etc")).unwrap();
        fs::write(
            image.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n\
             nohome:x:1001:1001::\n",
        )
        .unwrap();
        let mut spec: Value = serde_json::from_str(job_text).unwrap();
        spec["image"] = json!({"path": image.path()});
        let job: JobSpec = serde_json::from_value(spec).unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let container = JobContainer {
            job_name: "web",
            container_id: "web-0123abcd",
            data_dir: data_dir.path(),
            cgroup_parent: "corral",
        };
        let spec = oci_spec(&job, &container).expect("job translates");
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn env_gets_default_path_and_home() {
        let env = generated_env(r#"{"command": ["/usr/bin/env"]}"#);
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOME=/root".into()]);
    }

    #[test]
    fn env_home_follows_the_user() {
        let cases = [
            ("web", "HOME=/srv"),
            ("1000", "HOME=/srv"),
            ("1000:1000", "HOME=/srv"),
            ("0:0", "HOME=/root"),
            ("4242", "HOME=/"),
            ("4242:4242", "HOME=/"),
            ("nohome", "HOME=/"),
        ];
        for (user, home) in cases {
            let text = json!({"command": ["/usr/bin/env"], "user": user}).to_string();
            let env = generated_env(&text);
            assert_eq!(env.get(1).map(String::as_str), Some(home), "user {user}");
            assert_eq!(env.len(), 2, "user {user}: {env:?}");
        }
    }

    #[test]
    fn env_keeps_job_path_and_home() {
        let env = generated_env(
            r#"{"command": ["/usr/bin/env"],
                "env": {"PATH": "/opt/bin", "HOME": "/data", "LANG": "C.UTF-8"}}"#,
        );
        assert_eq!(env, ["HOME=/data", "LANG=C.UTF-8", "PATH=/opt/bin"]);
    }

    #[test]
    fn env_defaults_fill_only_what_is_unset() {
        let env = generated_env(r#"{"command": ["/x"], "env": {"HOME": "/data"}}"#);
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOME=/data".into()]);
        let env = generated_env(r#"{"command": ["/x"], "env": {"PATH": ""}}"#);
        assert_eq!(env, ["HOME=/root", "PATH="]);
    }

    #[test]
    fn env_keeps_image_path_and_home() {
        let image = ImageConfig {
            env: vec!["PATH=/image/bin".into(), "HOME=/image/home".into()],
            ..ImageConfig::default()
        };
        let env = process_env(
            &job(r#"{"command": ["/x"]}"#),
            Some(&image),
            &user_with_home(Some("/root")),
        );
        assert_eq!(env, ["PATH=/image/bin", "HOME=/image/home"]);

        let env = process_env(
            &job(r#"{"command": ["/x"], "env": {"PATH": "/job/bin"}}"#),
            Some(&image),
            &user_with_home(None),
        );
        assert_eq!(env, ["PATH=/job/bin", "HOME=/image/home"]);
    }

    #[test]
    fn env_home_is_root_dir_without_entry() {
        let env = process_env(&job(r#"{"command": ["/x"]}"#), None, &user_with_home(None));
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOME=/".into()]);
    }
}
