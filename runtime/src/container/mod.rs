//! Container lifecycle: create, start, run, kill, delete, state and list,
//! with the semantics of runc's verbs.
//!
//! `create` clones the container's init into new namespaces, places it in its
//! cgroup and lets it build the root, then leaves it blocked on the exec FIFO
//! `ROOT/ID/exec.fifo`. `start` opens the FIFO for reading, which releases the
//! init to execute the process.

mod console;
pub mod events;
pub mod exec;
mod executable;
pub mod hooks;
mod init;
mod process;
pub mod seccomp;
mod sync;
mod userns;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{
    Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    LinuxTimeOffset, Spec,
};

use crate::cgroups::{Cgroup, CgroupError, CgroupPaths, Hierarchy};
use crate::image::lease::{self, Holder, Leases};
use crate::job::annotations;
use crate::state::{ContainerState, StateError, Status, OCI_VERSION};

pub use executable::{ExecutableError, ExecutableReason};
use hooks::HookPoint;
pub use sync::InitReport;

/// Name of the exec FIFO inside a container's state directory.
pub const EXEC_FIFO: &str = "exec.fifo";

/// File inside a container's state directory where the minimal init records
/// the number of the signal that ended the main process.
pub const MAIN_STATUS: &str = "main-signal";

/// File inside a container's state directory with the device rules in
/// force on cgroup v2, compacted. An update's rules apply on top of them,
/// because the update replaces the cgroup's device program.
pub const DEVICE_RULES: &str = "device-rules.json";

/// Cgroup parent used when config.json has no `linux.cgroupsPath`.
pub const DEFAULT_CGROUP_PARENT: &str = "corral";

/// An error of a container operation.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container id {id:?} is invalid: use letters, digits, '_', '-' and '.' only")]
    InvalidId { id: String },
    #[error("container {id:?} already exists in {root}")]
    Exists { id: String, root: PathBuf },
    #[error("failed to load {path}")]
    LoadSpec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("invalid config.json: {message}")]
    InvalidSpec { message: String },
    #[error("invalid {path}: {field}: {message}")]
    SpecField {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error("failed to {operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {operation}")]
    Sys {
        operation: String,
        #[source]
        source: nix::Error,
    },
    #[error("container init failed: {message}")]
    InitFailed { message: String },
    #[error(transparent)]
    Executable(#[from] ExecutableError),
    #[error("container {id:?} is {status:?}, expected {expected}")]
    WrongStatus {
        id: String,
        status: Status,
        expected: &'static str,
    },
    #[error("container {id:?} is still running: stop it first or use --force")]
    StillRunning { id: String },
    #[error("invalid {field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("overlay directory {path} is in use by container {container:?} (state {state_dir}): give this container its own run.corral.overlay.dir")]
    OverlayInUse {
        path: PathBuf,
        container: String,
        state_dir: PathBuf,
    },
    #[error("invalid owner record {path} of an overlay directory")]
    OverlayOwner {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cgroup {path} is in use by {holder}: give this container its own linux.cgroupsPath")]
    CgroupInUse { path: PathBuf, holder: String },
    #[error("failed to lease the image layers of the container's root")]
    Lease(#[source] crate::image::StoreError),
    #[error("{field} needs {feature}, which this kernel lacks ({path} is missing)")]
    KernelLacks {
        field: String,
        feature: String,
        path: PathBuf,
    },
}

pub(crate) fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Arguments of `create`.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// State root (`--root`), for example `/run/corral/containers`.
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master when
    /// `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
}

/// Reads config.json; an error names the field (`process.args[0]`) and the
/// problem with its value.
pub fn load_spec(path: &Path) -> Result<Spec, ContainerError> {
    let text = fs::read(path).map_err(io_error("read", path))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        ContainerError::SpecField {
            path: path.to_path_buf(),
            field: if field == "." {
                "(document)".to_string()
            } else {
                field
            },
            message: error.into_inner().to_string(),
        }
    })
}

/// Rejects ids that could name a path outside the state root.
pub fn validate_id(id: &str) -> Result<(), ContainerError> {
    let valid = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ContainerError::InvalidId { id: id.to_string() })
    }
}

pub(crate) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Removes what a failed create had built so far.
struct CreateGuard {
    state_dir: Option<PathBuf>,
    leases: Leases,
    overlay_dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    id: String,
    init_pid: Option<Pid>,
}

impl CreateGuard {
    fn disarm(&mut self) {
        self.state_dir = None;
        self.leases = Leases::default();
        self.overlay_dir = None;
        self.cgroup = None;
        self.init_pid = None;
    }
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.init_pid {
            let _ = send_signal(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cgroup) = &self.cgroup {
            match cgroup.kill_all().and_then(|()| cgroup.remove()) {
                Ok(()) => remove_default_parent(cgroup.paths(), &self.id),
                Err(error) => {
                    tracing::warn!(cgroup = cgroup.id(), %error, "failed to remove the cgroup of a failed create")
                }
            }
        }
        if let Some(dir) = &self.overlay_dir {
            let _ = fs::remove_dir_all(dir);
        }
        self.leases.release();
        if let Some(dir) = &self.state_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Creates the container and leaves its init waiting for `start`.
///
/// The init is a child of the calling process, so `run` can wait for it.
pub fn create(options: &CreateOptions) -> Result<ContainerState, ContainerError> {
    validate_id(&options.id)?;
    let bundle =
        fs::canonicalize(&options.bundle).map_err(io_error("resolve bundle", &options.bundle))?;
    let config_path = bundle.join("config.json");
    let spec = load_spec(&config_path)?;
    // Checked here so that an invalid value fails before anything is built.
    let rootfs_propagation = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    crate::rootfs::RootPropagation::parse(rootfs_propagation.as_deref())?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&options.root)
        .map_err(io_error("create state root", &options.root))?;
    let state_dir = options.root.join(&options.id);
    match fs::DirBuilder::new().mode(0o700).create(&state_dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ContainerError::Exists {
                id: options.id.clone(),
                root: options.root.clone(),
            })
        }
        Err(error) => return Err(io_error("create state directory", &state_dir)(error)),
    }
    let mut guard = CreateGuard {
        state_dir: Some(state_dir.clone()),
        overlay_dir: None,
        leases: Leases::default(),
        cgroup: None,
        id: options.id.clone(),
        init_pid: None,
    };

    let created = now_seconds();
    let mut holder = Holder {
        id: options.id.clone(),
        state_dir: lease::state_dir(&options.root, &options.id),
        created,
        init_pid: None,
        init_start_ticks: None,
    };
    let plan = RootPlan::from_spec(&spec, &bundle)?;
    if let Some(overlay) = &plan.overlay {
        // Claimed before the guard owns the directory, so that a failed
        // create never removes the directory of another container.
        claim_overlay_dir(&overlay.dir, &holder)?;
        guard.overlay_dir = Some(overlay.dir.clone());
        guard.leases =
            Leases::acquire(&overlay.lower_dirs, &holder).map_err(ContainerError::Lease)?;
        // The root of the container takes the upper directory's mode, so it
        // is 0755; the per-container directory above keeps others out.
        let modes = [
            (&overlay.dir, 0o700),
            (&overlay.upper, 0o755),
            (&overlay.work, 0o700),
            (&plan.rootfs, 0o755),
        ];
        for (dir, mode) in modes {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_error("create overlay directory", dir))?;
        }
    }

    let linux = spec.linux().clone().unwrap_or_default();
    let hierarchy = Hierarchy::detect()?;
    let cgroup_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("{DEFAULT_CGROUP_PARENT}/{}", options.id));
    check_cgroup_unused(&hierarchy, &cgroup_path, &options.root)?;
    let cgroup = match hierarchy.create(&cgroup_path) {
        Ok(cgroup) => cgroup,
        Err(error) => {
            if let Ok((paths, _)) = hierarchy.locate(&cgroup_path) {
                remove_default_parent(&paths, &options.id);
            }
            return Err(error.into());
        }
    };
    guard.cgroup = Some(cgroup.clone());
    let devices = linux.devices().clone().unwrap_or_default();
    let resources = with_default_device_rules(
        linux.resources().as_ref(),
        &devices,
        cgroup.enforces_devices(),
    );
    cgroup.apply(&resources)?;
    if let (CgroupPaths::V2 { .. }, Some(rules)) = (cgroup.paths(), resources.devices()) {
        save_device_rules(&state_dir.join(DEVICE_RULES), rules)?;
    }

    let fifo = state_dir.join(EXEC_FIFO);
    // Writable by all, because the init opens it after switching to the
    // process's user; only root can reach it by path in the 0700 state
    // directory, and the init opens it through a descriptor.
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622)).map_err(|source| {
        ContainerError::Sys {
            operation: format!("create exec FIFO {}", fifo.display()),
            source,
        }
    })?;
    // mkfifo applies the umask.
    fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(io_error("set the mode of", &fifo))?;

    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut state = ContainerState {
        oci_version: OCI_VERSION.to_string(),
        id: options.id.clone(),
        status: Status::Creating,
        pid: None,
        bundle: bundle.clone(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created,
        cgroup_id: cgroup.id().to_string(),
        cgroup_paths: cgroup.paths().clone(),
        job: annotations.get(annotations::JOB).cloned(),
        image: annotations
            .get(annotations::IMAGE)
            .cloned()
            .unwrap_or_else(|| plan.rootfs.display().to_string()),
        labels: labels_from(&annotations),
        rootfs: plan.rootfs.clone(),
        overlay_dir: plan.overlay.as_ref().map(|o| o.dir.clone()),
        late_hooks: hooks::has_hooks(&spec, HookPoint::Poststart)
            || hooks::has_hooks(&spec, HookPoint::Poststop),
    };
    state.save(&options.root)?;

    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let console = match (&options.console_socket, terminal) {
        (Some(path), true) => {
            Some(UnixStream::connect(path).map_err(io_error("connect to console socket", path))?)
        }
        (None, true) => {
            return Err(ContainerError::InvalidSpec {
                message: "process.terminal is true, so --console-socket is required".to_string(),
            })
        }
        (_, false) => None,
    };
    let (flags, mut joins) = namespace_plan(&spec)?;
    let time_offsets = timens_offsets(&linux, flags)?;
    // Joining a PID namespace takes effect for children only, so the runtime
    // joins it itself and the cloned init starts inside it.
    if let Some(at) = joins
        .iter()
        .position(|(kind, _)| *kind == CloneFlags::CLONE_NEWPID)
    {
        let (kind, fd) = joins.remove(at);
        nix::sched::setns(&fd, kind).map_err(|source| ContainerError::Sys {
            operation: "join the PID namespace given by path".to_string(),
            source,
        })?;
    }
    // A joined user namespace comes first: it owns the others.
    joins.sort_by_key(|(kind, _)| *kind != CloneFlags::CLONE_NEWUSER);
    let id_maps = if flags.contains(CloneFlags::CLONE_NEWUSER) {
        Some(userns::IdMaps::from_spec(&linux)?)
    } else {
        None
    };
    if let Some(maps) = &id_maps {
        // The container's root must own what it writes to and opens.
        let (uid, gid) = maps.root_owner()?;
        let mut owned: Vec<&Path> = vec![fifo.as_path()];
        if let Some(overlay) = &plan.overlay {
            owned.extend([
                overlay.upper.as_path(),
                overlay.work.as_path(),
                plan.rootfs.as_path(),
            ]);
        }
        for path in owned {
            let owner = (
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            );
            nix::unistd::chown(path, owner.0, owner.1).map_err(|source| ContainerError::Sys {
                operation: format!(
                    "chown {} to the container's root {uid}:{gid}",
                    path.display()
                ),
                source,
            })?;
        }
    }
    let mut overlay_fd = match (&id_maps, &plan.overlay) {
        (Some(_), Some(overlay)) => Some(crate::rootfs::overlay_mount_fd(
            &overlay.lower_dirs,
            &overlay.upper,
            &overlay.work,
        )?),
        _ => None,
    };
    let runs_init = annotations
        .get(annotations::INIT)
        .is_some_and(|v| v == "true");
    let main_status = if runs_init {
        let path = state_dir.join(MAIN_STATUS);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_error("create", &path))?;
        Some(OwnedFd::from(file))
    } else {
        None
    };
    let fifo_fd = OwnedFd::from(
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(io_error("open exec FIFO", &fifo))?,
    );
    let (mut parent_end, child_end) =
        UnixStream::pair().map_err(io_error("create sync socket", &state_dir))?;
    let new_time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    let context = init::InitContext {
        new_cgroup_namespace: flags.contains(CloneFlags::CLONE_NEWCGROUP),
        time_offsets: flags.contains(new_time).then_some(time_offsets),
        new_network_namespace: flags.contains(CloneFlags::CLONE_NEWNET),
        spec: spec.clone(),
        rootfs: plan.rootfs.clone(),
        overlay: plan.overlay.as_ref().map(|o| init::Overlay {
            mount_fd: overlay_fd.take(),
            lower_dirs: o.lower_dirs.clone(),
            upper: o.upper.clone(),
            work: o.work.clone(),
        }),
        exec_fifo: Some(fifo_fd),
        main_status,
        new_user_namespace: flags.contains(CloneFlags::CLONE_NEWUSER),
        sync: child_end,
        console,
        joins,
    };
    // The cgroup namespace is created by the init after it joined its
    // cgroup, so that the namespace's root is the container's cgroup. The
    // time namespace is created by the init too, because clone(2) has no
    // flag for it.
    let clone_flags = flags - CloneFlags::CLONE_NEWCGROUP - new_time;
    let pid = clone_init(clone_flags, context)?;
    guard.init_pid = Some(pid);
    holder.set_init(pid.as_raw());
    guard
        .leases
        .update(&holder)
        .map_err(ContainerError::Lease)?;
    if let Some(overlay) = &plan.overlay {
        // With the init recorded, a later create or supervisord treats the
        // root as in use while the init runs, even without this state.
        let body = serde_json::to_vec_pretty(&holder).expect("holder serializes to JSON");
        replace_file(
            &overlay.dir.join(OVERLAY_OWNER),
            &body,
            0o600,
            "write overlay owner",
        )?;
    }

    if let Some(maps) = &id_maps {
        maps.write(pid.as_raw())?;
    }
    cgroup.add_process(pid.as_raw())?;
    if let Some(score) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        let path = PathBuf::from(format!("/proc/{pid}/oom_score_adj"));
        fs::write(&path, score.to_string()).map_err(io_error("write", &path))?;
    }
    parent_end
        .write_all(&[sync::GO])
        .map_err(io_error("signal the container init", &state_dir))?;
    let mut reader = std::io::BufReader::new(
        parent_end
            .try_clone()
            .map_err(io_error("duplicate sync socket", &state_dir))?,
    );
    state.pid = Some(pid.as_raw());
    loop {
        let record = sync::read_record(&mut reader)
            .map_err(io_error("read the init's report", &state_dir))?;
        match record {
            Some(sync::Record::Warning(warning)) => {
                tracing::warn!(container = %options.id, "{warning}");
            }
            Some(sync::Record::Hooks) => {
                let state_json = state.oci_view().to_string();
                for point in [HookPoint::Prestart, HookPoint::CreateRuntime] {
                    hooks::run_hooks(&spec, point, &state_json).map_err(|error| {
                        ContainerError::InitFailed {
                            message: error.to_string(),
                        }
                    })?;
                }
                sync::answer_hooks(&mut parent_end, &state_json)
                    .map_err(io_error("answer the init's hooks request", &state_dir))?;
            }
            Some(sync::Record::Ready) => break,
            Some(sync::Record::Failed(message)) => {
                return Err(ContainerError::InitFailed { message })
            }
            Some(sync::Record::Executable(error)) => return Err(error.into()),
            None => {
                return Err(ContainerError::InitFailed {
                    message: "the init exited during setup without a message".to_string(),
                })
            }
        }
    }

    state.status = Status::Created;
    state.pid = Some(pid.as_raw());
    state.save(&options.root)?;
    if let Some(pid_file) = &options.pid_file {
        write_pid_file(pid_file, pid.as_raw())?;
    }
    guard.disarm();
    Ok(state)
}

/// Appends allow rules for the devices every container gets to the spec's
/// device rules, as runc does, so a spec that denies all devices still
/// lets the init create and the process use /dev/null, /dev/pts and the rest.
///
/// A spec without `linux.resources.devices` gets every other device denied,
/// as with runc, when `enforced` is true because the cgroup can enforce
/// device rules. Otherwise, as on a v1 host without a devices controller, it gets
/// no rules.
fn with_default_device_rules(
    resources: Option<&LinuxResources>,
    devices: &[oci_spec::runtime::LinuxDevice],
    enforced: bool,
) -> LinuxResources {
    let mut resources = resources.cloned().unwrap_or_default();
    let mut rules = match resources.devices().clone() {
        Some(rules) => rules,
        None if enforced => {
            let mut deny_all = LinuxDeviceCgroup::default();
            deny_all.set_allow(false);
            deny_all.set_typ(Some(LinuxDeviceType::A));
            deny_all.set_access(Some("rwm".to_string()));
            vec![deny_all]
        }
        None => return resources,
    };
    // The init creates the nodes of linux.devices, so they are allowed too.
    let spec_devices: Vec<(i64, Option<i64>, LinuxDeviceType)> = devices
        .iter()
        .map(|device| (device.major(), Some(device.minor()), device.typ()))
        .collect();
    for (major, minor, typ) in spec_devices {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    let defaults = crate::rootfs::DEFAULT_DEVICES
        .iter()
        .map(|(_, major, minor)| (*major as i64, Some(*minor as i64)))
        // /dev/pts/* and /dev/ptmx.
        .chain([(136, None), (5, Some(2))]);
    for (major, minor) in defaults {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    resources.set_devices(Some(rules));
    resources
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    replace_file(path, pid.to_string().as_bytes(), 0o644, "write pid file")
}

/// Writes `body` to `path` through a temporary file with `mode` and a
/// rename, so that a reader finds the old content or the new, never a part.
fn replace_file(
    path: &Path,
    body: &[u8],
    mode: u32,
    operation: &'static str,
) -> Result<(), ContainerError> {
    let temporary = path.with_extension("tmp");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .and_then(|mut file| file.write_all(body))
        .map_err(io_error(operation, &temporary))?;
    fs::rename(&temporary, path).map_err(io_error(operation, path))
}

fn labels_from(
    annotations: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter_map(|(key, value)| {
            key.strip_prefix(annotations::LABEL_PREFIX)
                .map(|label| (label.to_string(), value.clone()))
        })
        .collect()
}

/// The source of the root filesystem: an overlay over image layers or a plain directory.
struct RootPlan {
    rootfs: PathBuf,
    overlay: Option<OverlayPlan>,
}

struct OverlayPlan {
    dir: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    lower_dirs: String,
}

impl RootPlan {
    fn from_spec(spec: &Spec, bundle: &Path) -> Result<Self, ContainerError> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| ContainerError::InvalidSpec {
                message: "root is missing".to_string(),
            })?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        let lower = annotations.get(annotations::OVERLAY_LOWERDIRS);
        let dir = annotations.get(annotations::OVERLAY_DIR);
        let overlay = match (lower, dir) {
            (Some(lower_dirs), Some(dir)) => {
                let dir = PathBuf::from(dir);
                if rootfs != dir.join("merged") {
                    return Err(ContainerError::InvalidSpec {
                        message: format!(
                            "root.path {} must be {}/merged when annotation {} is set",
                            rootfs.display(),
                            dir.display(),
                            annotations::OVERLAY_DIR
                        ),
                    });
                }
                Some(OverlayPlan {
                    upper: dir.join("upper"),
                    work: dir.join("work"),
                    dir,
                    lower_dirs: lower_dirs.clone(),
                })
            }
            (None, None) => {
                if !rootfs.is_dir() {
                    return Err(ContainerError::InvalidSpec {
                        message: format!("root.path {} is not a directory", rootfs.display()),
                    });
                }
                None
            }
            _ => {
                return Err(ContainerError::InvalidSpec {
                    message: format!(
                        "annotations {} and {} must be set together",
                        annotations::OVERLAY_LOWERDIRS,
                        annotations::OVERLAY_DIR
                    ),
                })
            }
        };
        Ok(RootPlan { rootfs, overlay })
    }
}

/// Directory of the runtime's own namespaces.
const OWN_NAMESPACES: &str = "/proc/self/ns";

/// Splits the spec's namespaces into clone flags for new ones and opened
/// paths for the ones to join, after [`check_namespaces`].
fn namespace_plan(spec: &Spec) -> Result<(CloneFlags, Vec<(CloneFlags, OwnedFd)>), ContainerError> {
    let mut flags = CloneFlags::empty();
    let mut joins = Vec::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    check_namespaces(&namespaces, Path::new(OWN_NAMESPACES))?;
    for namespace in namespaces {
        let flag = init::namespace_flag(namespace.typ());
        match namespace.path() {
            None => flags.insert(flag),
            Some(path) => {
                let file = fs::File::open(path).map_err(io_error("open namespace", path))?;
                joins.push((flag, OwnedFd::from(file)));
            }
        }
    }
    Ok((flags, joins))
}

/// Checks `linux.namespaces` against this host, with `own` standing for
/// `/proc/self/ns`.
///
/// The init changes the propagation of `/`, pivots the root and detaches
/// the old one in its mount namespace, so a spec without a mount namespace,
/// or one that joins the runtime's own, would do that to the host's. Each
/// new namespace needs the kernel to have its type, which `own` shows by
/// its entry (`time` exists since Linux 5.6), so that a missing type fails
/// here with the field's name rather than in the init with EINVAL.
fn check_namespaces(namespaces: &[LinuxNamespace], own: &Path) -> Result<(), ContainerError> {
    let mut has_mount = false;
    for (index, namespace) in namespaces.iter().enumerate() {
        let typ = namespace.typ();
        let field = format!("linux.namespaces[{index}] (type {:?})", typ.to_string());
        let entry = own.join(proc_namespace_name(typ));
        match namespace.path() {
            None if !entry.exists() => {
                return Err(ContainerError::KernelLacks {
                    field,
                    feature: format!("{typ} namespaces"),
                    path: entry,
                })
            }
            None => {}
            Some(path) if typ == LinuxNamespaceType::Mount => {
                let joined = fs::metadata(path).map_err(io_error("inspect namespace", path))?;
                let runtime =
                    fs::metadata(&entry).map_err(io_error("inspect namespace", &entry))?;
                if (joined.dev(), joined.ino()) == (runtime.dev(), runtime.ino()) {
                    return Err(ContainerError::InvalidField {
                        field,
                        message: format!(
                            "{} is the runtime's own mount namespace, whose root the \
                             container's setup would replace",
                            path.display()
                        ),
                    });
                }
            }
            Some(_) => {}
        }
        has_mount |= typ == LinuxNamespaceType::Mount;
    }
    if !has_mount {
        return Err(ContainerError::InvalidField {
            field: "linux.namespaces".to_string(),
            message: "a mount namespace (type \"mount\") is required, because the container's \
                      root is built by changing the mounts of the init's mount namespace"
                .to_string(),
        });
    }
    Ok(())
}

/// Returns the name of `typ`'s entry in `/proc/PID/ns`.
fn proc_namespace_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// Returns the text to write to `/proc/self/timens_offsets` for
/// `linux.timeOffsets`, one `CLOCK SECONDS NANOSECONDS` line per clock.
///
/// Offsets apply only to a new time namespace: a joined one already has its
/// offsets, which the kernel freezes once a process has entered it.
fn timens_offsets(linux: &Linux, flags: CloneFlags) -> Result<String, ContainerError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|map| !map.is_empty()) else {
        return Ok(String::new());
    };
    if !flags.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)) {
        return Err(ContainerError::InvalidSpec {
            message: "linux.timeOffsets is set, so linux.namespaces must contain a new time \
                      namespace (type \"time\" without a path)"
                .to_string(),
        });
    }
    let mut clocks: Vec<(&String, &LinuxTimeOffset)> = offsets.iter().collect();
    clocks.sort_by_key(|(clock, _)| clock.as_str());
    let mut text = String::new();
    for (clock, offset) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(ContainerError::InvalidSpec {
                message: format!(
                    "linux.timeOffsets.{clock} is invalid: only monotonic and boottime have \
                     offsets"
                ),
            });
        }
        let nanoseconds = offset.nanosecs().unwrap_or(0);
        if nanoseconds >= 1_000_000_000 {
            return Err(ContainerError::InvalidSpec {
                message: format!(
                    "linux.timeOffsets.{clock}.nanosecs {nanoseconds} is invalid: it must be \
                     below 1000000000"
                ),
            });
        }
        let seconds = offset.secs().unwrap_or(0);
        text.push_str(&format!("{clock} {seconds} {nanoseconds}\n"));
    }
    Ok(text)
}

/// Clones the init into new namespaces and returns its PID.
fn clone_init(flags: CloneFlags, context: init::InitContext) -> Result<Pid, ContainerError> {
    // SAFETY: a raw clone without CLONE_VM behaves like fork: the child gets
    // a copy of the address space and continues on a copy of this stack. The
    // runtime is single-threaded here, so no lock is held by another thread
    // in the copy, and the child never returns from `init::run`.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match result {
        -1 => Err(ContainerError::Sys {
            operation: format!("clone the container init with flags {flags:?}"),
            source: nix::Error::last(),
        }),
        0 => init::run(context),
        pid => {
            drop(context);
            Ok(Pid::from_raw(pid as i32))
        }
    }
}

/// Releases a created container's init to execute its process.
pub fn start(root: &Path, id: &str) -> Result<ContainerState, ContainerError> {
    start_polling(root, id, &mut || {})
}

/// Starts a container as [`start`] does and calls `poll` about every
/// 50 ms while the init has not taken the release, which a stopped init
/// cannot do until it is continued.
pub(crate) fn start_polling(
    root: &Path,
    id: &str,
    poll: &mut dyn FnMut(),
) -> Result<ContainerState, ContainerError> {
    let mut state = load(root, id)?;
    if state.status != Status::Created {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "created",
        });
    }
    let fifo = root.join(id).join(EXEC_FIFO);
    // Opened without blocking, so that an init that dies before it opens the
    // FIFO for writing is noticed instead of blocking start forever.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(io_error("open exec FIFO", &fifo))?;
    let pid = state.pid.unwrap_or(0);
    loop {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte) {
            Ok(1) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(io_error("read exec FIFO", &fifo)(error)),
        }
        if !process_alive(pid, state.created) {
            return Err(ContainerError::InitFailed {
                message: format!("the init (pid {pid}) of container {id} exited before start"),
            });
        }
        poll();
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&reader),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
    }
    fs::remove_file(&fifo).map_err(io_error("remove exec FIFO", &fifo))?;
    state.status = Status::Running;
    state.save(root)?;
    run_hooks_logged(&state, HookPoint::Poststart);
    Ok(state)
}

/// Loads a container's state with its status brought up to date: a
/// container whose init is gone is `stopped`.
pub fn load(root: &Path, id: &str) -> Result<ContainerState, ContainerError> {
    validate_id(id)?;
    let mut state = ContainerState::load(root, id)?;
    state.status = current_status(root, &state);
    Ok(state)
}

fn current_status(root: &Path, state: &ContainerState) -> Status {
    let Some(pid) = state.pid else {
        return state.status;
    };
    if !process_alive(pid, state.created) {
        return Status::Stopped;
    }
    if root.join(&state.id).join(EXEC_FIFO).exists() {
        Status::Created
    } else if cgroup_of(state).is_frozen() {
        Status::Paused
    } else {
        Status::Running
    }
}

/// Returns whether `pid` is alive and not a zombie, and was started no
/// earlier than the container, so a reused PID does not count.
fn process_alive(pid: i32, created: f64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may contain spaces and parentheses, so the fields
    // are counted from the last ')'.
    let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return false;
    }
    let Some(start_ticks) = fields.get(19).and_then(|f| f.parse::<f64>().ok()) else {
        return true;
    };
    boot_time()
        .map(|boot| boot + start_ticks / clock_ticks() + 1.0 >= created)
        .unwrap_or(true)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn boot_time() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends `signal` to the container's init, or with `all` to every process
/// in its cgroup.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    if all {
        return Ok(cgroup_of(&state).signal_all(signal)?);
    }
    if state.status == Status::Stopped {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "created or running",
        });
    }
    let pid = state.pid.ok_or_else(|| ContainerError::WrongStatus {
        id: id.to_string(),
        status: state.status,
        expected: "created or running",
    })?;
    let signal = Signal::try_from(signal).map_err(|source| ContainerError::Sys {
        operation: format!("interpret signal {signal}"),
        source,
    })?;
    send_signal(Pid::from_raw(pid), signal).map_err(|source| ContainerError::Sys {
        operation: format!("send {signal} to container {id} (pid {pid})"),
        source,
    })
}

/// Sends SIGKILL to every process of the container's cgroup, freezing it
/// first so that no process can fork away.
pub fn kill_all(root: &Path, id: &str) -> Result<(), ContainerError> {
    let state = ContainerState::load(root, id)?;
    Ok(cgroup_of(&state).kill_all()?)
}

pub(crate) fn cgroup_of(state: &ContainerState) -> Cgroup {
    Cgroup::open(state.cgroup_paths.clone(), state.cgroup_id.clone())
}

/// Removes a container: its processes (with `force`), cgroup, overlay
/// directories and state.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    // A created container has not run its process yet, so deleting it
    // needs no --force, as with runc.
    if state.status == Status::Running && !force {
        return Err(ContainerError::StillRunning { id: id.to_string() });
    }
    destroy(root, &state)
}

/// Runs hooks whose failure the runtime-spec makes a warning (poststart,
/// poststop), with the config from the container's bundle.
fn run_hooks_logged(state: &ContainerState, point: HookPoint) {
    if !state.late_hooks {
        return;
    }
    let Ok(spec) = Spec::load(state.bundle.join("config.json")) else {
        return;
    };
    if !hooks::has_hooks(&spec, point) {
        return;
    }
    let state_json = state.oci_view().to_string();
    if let Err(error) = hooks::run_hooks(&spec, point, &state_json) {
        tracing::warn!(container = %state.id, %error, "hook failed");
    }
}

/// Kills what is left of the container and removes everything it owns.
pub fn destroy(root: &Path, state: &ContainerState) -> Result<(), ContainerError> {
    let cgroup = cgroup_of(state);
    cgroup.kill_all()?;
    if let Some(pid) = state.pid {
        wait_for_exit(pid, state.created, Duration::from_secs(10));
    }
    cgroup.remove()?;
    remove_default_parent(&state.cgroup_paths, &state.id);
    if let Some(dir) = &state.overlay_dir {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("remove overlay directory", dir)(error)),
        }
    }
    // Before the state directory goes, because the lease names derive
    // from its resolved path.
    if let Some(lower_dirs) = state.annotations.get(annotations::OVERLAY_LOWERDIRS) {
        lease::release(lower_dirs, root, &state.id);
    }
    let mut stopped = state.clone();
    stopped.status = Status::Stopped;
    run_hooks_logged(&stopped, HookPoint::Poststop);
    let state_dir = root.join(&state.id);
    match fs::remove_dir_all(&state_dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove state directory", &state_dir)(error)),
    }
}

/// File in an overlay directory that names the container using it.
const OVERLAY_OWNER: &str = "owner.json";

/// Creates the overlay directory `dir` and records `holder` as its user,
/// unless another container that still exists uses it: that container's
/// `delete` would remove the directory under this one.
fn claim_overlay_dir(dir: &Path, holder: &Holder) -> Result<(), ContainerError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create overlay directory", dir))?;

    let owner = dir.join(OVERLAY_OWNER);
    let body = serde_json::to_vec_pretty(holder).expect("holder serializes to JSON");
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&owner);
    match created {
        Ok(mut file) => {
            return file
                .write_all(&body)
                .map_err(io_error("write overlay owner", &owner))
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io_error("create overlay owner", &owner)(error)),
    }

    let previous = read_overlay_owner(&owner)?;
    if previous.may_use_directory() {
        return Err(ContainerError::OverlayInUse {
            path: dir.to_path_buf(),
            container: previous.id,
            state_dir: previous.state_dir,
        });
    }
    tracing::info!(dir = %dir.display(), previous = %previous.id, "taking over the overlay directory of a deleted container");
    // The previous container's writable layer goes with it, as at its
    // delete. Overlayfs would also refuse its `work`, which a volatile
    // mount marked (see rootfs::mount_overlay).
    for name in ["upper", "work"] {
        let stale = dir.join(name);
        match fs::remove_dir_all(&stale) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(io_error("remove the stale overlay directory", &stale)(
                    error,
                ))
            }
        }
    }
    replace_file(&owner, &body, 0o600, "write overlay owner")
}

/// Removes the overlay directory `dir` when the container that its owner
/// file names no longer exists and its init no longer runs, as after a
/// reboot that emptied the state root while the directory stayed on disk. Returns whether it removed the
/// directory. A directory without an owner file is left alone, because
/// the runtime did not create it, or its create failed before the claim.
pub fn remove_abandoned_overlay_dir(dir: &Path) -> Result<bool, ContainerError> {
    let owner = dir.join(OVERLAY_OWNER);
    if !owner.exists() {
        return Ok(false);
    }
    if read_overlay_owner(&owner)?.may_use_directory() {
        return Ok(false);
    }
    fs::remove_dir_all(dir).map_err(io_error("remove abandoned overlay directory", dir))?;
    Ok(true)
}

/// Reads the owner file of an overlay directory.
fn read_overlay_owner(owner: &Path) -> Result<Holder, ContainerError> {
    let text = fs::read(owner).map_err(io_error("read overlay owner", owner))?;
    serde_json::from_slice(&text).map_err(|source| ContainerError::OverlayOwner {
        path: owner.to_path_buf(),
        source,
    })
}

/// Rejects a cgroup that already has processes: they belong to another
/// container (or to something else), which this container's kill and
/// delete would reach.
fn check_cgroup_unused(
    hierarchy: &Hierarchy,
    path: &str,
    root: &Path,
) -> Result<(), ContainerError> {
    let (paths, id) = hierarchy.locate(path)?;
    let dirs: Vec<&PathBuf> = match &paths {
        CgroupPaths::V1 { controllers } => controllers.values().collect(),
        CgroupPaths::V2 { path } => vec![path],
    };
    for dir in dirs {
        let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
            continue;
        };
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            continue;
        }
        let owner = list(root)
            .unwrap_or_default()
            .into_iter()
            .find(|state| state.cgroup_id == id);
        let holder = match owner {
            Some(state) => format!("container {:?}", state.id),
            None => format!(
                "processes {pids:?}, which no container under {} owns",
                root.display()
            ),
        };
        return Err(ContainerError::CgroupInUse {
            path: dir.clone(),
            holder,
        });
    }
    Ok(())
}

/// Removes the parent directory [`DEFAULT_CGROUP_PARENT`] of container
/// `id`'s cgroup in each hierarchy once it is empty, so that containers
/// created without `linux.cgroupsPath` leave no directory behind. A parent
/// with other children or processes, a parent of another name, and a
/// cgroup not named `id` are left alone.
/// A create that runs at the same moment may find the parent gone between
/// its mkdir of the parent and of its cgroup: [`Hierarchy::create`] then
/// creates the path again.
fn remove_default_parent(paths: &CgroupPaths, id: &str) {
    let dirs: Vec<&PathBuf> = match paths {
        CgroupPaths::V1 { controllers } => controllers.values().collect(),
        CgroupPaths::V2 { path } => vec![path],
    };
    for dir in dirs {
        if dir.file_name().is_none_or(|name| name != id) {
            continue;
        }
        let Some(parent) = dir.parent() else {
            continue;
        };
        if parent
            .file_name()
            .is_none_or(|name| name != DEFAULT_CGROUP_PARENT)
        {
            continue;
        }
        match fs::remove_dir(parent) {
            Ok(()) => {
                tracing::debug!(dir = %parent.display(), "removed the empty default cgroup parent")
            }
            // Another container still uses it, or it is gone already.
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EBUSY) | Some(libc::ENOTEMPTY) | Some(libc::ENOENT)
                ) => {}
            Err(error) => {
                tracing::warn!(dir = %parent.display(), %error, "failed to remove the empty default cgroup parent")
            }
        }
    }
}

/// Waits until `pid` is gone, for processes that are not our children.
fn wait_for_exit(pid: i32, created: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while process_alive(pid, created) && Instant::now() < deadline {
        // A zombie child of this process must be reaped to disappear.
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lists every container under `root`, with current statuses.
pub fn list(root: &Path) -> Result<Vec<ContainerState>, ContainerError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("list", root)(error)),
    };
    let mut states = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        match load(root, &id) {
            Ok(state) => states.push(state),
            Err(error) => {
                tracing::debug!(container = %id, %error, "skipping unreadable container state")
            }
        }
    }
    states.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(states)
}

pub mod run;

/// Freezes every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    if state.status != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "running",
        });
    }
    Ok(cgroup_of(&state).freeze()?)
}

/// Thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    if state.status != Status::Paused {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "paused",
        });
    }
    Ok(cgroup_of(&state).thaw()?)
}

/// Thaws a container's cgroup when it is frozen, and returns whether it
/// was. Unlike [`resume`], a container in any other status, or one whose
/// state is already gone, is no error, so a caller that is stopping a
/// container can run it either way.
pub fn thaw_if_frozen(root: &Path, id: &str) -> Result<bool, ContainerError> {
    let state = match load(root, id) {
        Ok(state) => state,
        Err(ContainerError::State(StateError::NotFound { .. })) => return Ok(false),
        Err(error) => return Err(error),
    };
    if state.status != Status::Paused {
        return Ok(false);
    }
    cgroup_of(&state).thaw()?;
    Ok(true)
}

/// Applies new resource limits to a container's cgroup.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    let state = load(root, id)?;
    if state.status == Status::Stopped {
        return Err(ContainerError::WrongStatus {
            id: id.to_string(),
            status: state.status,
            expected: "created, running or paused",
        });
    }
    let cgroup = cgroup_of(&state);
    let rules = resources.devices().as_deref().unwrap_or_default();
    if !matches!(cgroup.paths(), CgroupPaths::V2 { .. }) || rules.is_empty() {
        return Ok(cgroup.apply(resources)?);
    }
    // The v1 controller applies rules on top of the ones in force, but a new
    // device program replaces the old one, so it must decide the rules in
    // force followed by the update's.
    let file = root.join(id).join(DEVICE_RULES);
    let mut all = load_device_rules(&file)?;
    all.extend(rules.iter().cloned());
    let mut merged = resources.clone();
    merged.set_devices(Some(all.clone()));
    cgroup.apply(&merged)?;
    save_device_rules(&file, &all)
}

/// Reads the device rules in force from `file`; a missing file means none.
fn load_device_rules(file: &Path) -> Result<Vec<LinuxDeviceCgroup>, ContainerError> {
    let text = match fs::read(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("read device rules", file)(error)),
    };
    serde_json::from_slice(&text).map_err(|error| ContainerError::InvalidField {
        field: format!("device rules in {}", file.display()),
        message: error.to_string(),
    })
}

/// Writes the compacted device rules in force to `file`, replacing it whole.
fn save_device_rules(file: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), ContainerError> {
    let compact = crate::cgroups::compact_device_rules(rules)?;
    let text = serde_json::to_vec(&compact).expect("device rules serialize to JSON");
    replace_file(file, &text, 0o600, "write device rules")
}

/// PIDs of every process in the container's cgroup.
pub fn processes(state: &ContainerState) -> Result<Vec<i32>, ContainerError> {
    Ok(cgroup_of(state).processes()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces(value: serde_json::Value) -> Vec<LinuxNamespace> {
        serde_json::from_value(value).expect("namespaces")
    }

    /// Returns a stand-in for /proc/self/ns with an entry for each of `names`.
    fn own_namespaces(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            fs::write(dir.path().join(name), "").unwrap();
        }
        dir
    }

    #[test]
    fn update_v2_devices_apply_on_top() {
        use crate::cgroups::device_tests::{
            cgroup2_parent, decide_in_cgroup, Case, DeviceKind, Operation, TestCgroup, FREE_MAJOR,
        };
        let Some(parent) = cgroup2_parent("update_v2_devices_apply_on_top") else {
            return;
        };
        let cgroup = TestCgroup::create(parent, "update-container").unwrap();
        let procs = cgroup.dir.join("cgroup.procs");
        let root = tempfile::tempdir().unwrap();
        let id = "update-v2";
        fs::create_dir(root.path().join(id)).unwrap();
        let cases = [0, 1].map(|minor| Case {
            kind: DeviceKind::Char,
            major: FREE_MAJOR,
            minor,
            operation: Operation::Open(libc::O_RDONLY),
        });

        let created: LinuxResources = serde_json::from_value(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        ]}))
        .unwrap();
        let paths = CgroupPaths::V2 {
            path: cgroup.dir.clone(),
        };
        Cgroup::open(paths.clone(), String::new())
            .apply(&created)
            .unwrap();
        let rules = created.devices().clone().unwrap();
        save_device_rules(&root.path().join(id).join(DEVICE_RULES), &rules).unwrap();
        let state = ContainerState {
            oci_version: OCI_VERSION.to_string(),
            id: id.to_string(),
            status: Status::Running,
            pid: None,
            bundle: root.path().to_path_buf(),
            annotations: BTreeMap::new(),
            created: now_seconds(),
            cgroup_id: String::new(),
            cgroup_paths: paths,
            job: None,
            image: String::new(),
            labels: BTreeMap::new(),
            rootfs: root.path().to_path_buf(),
            overlay_dir: None,
            late_hooks: false,
        };
        state.save(root.path()).unwrap();
        assert_eq!(
            decide_in_cgroup(&procs, &cases),
            [false, false],
            "before the update"
        );

        // The update's list has no rule of type a, so it applies on top of
        // the rules in force, as on v1.
        let opened: LinuxResources = serde_json::from_value(serde_json::json!({"devices": [
            {"allow": true, "type": "c", "major": FREE_MAJOR, "minor": 0, "access": "r"},
        ]}))
        .unwrap();
        update(root.path(), id, &opened).unwrap();
        let allowed = decide_in_cgroup(&procs, &cases);
        assert!(allowed[0], "61:0 stays denied after the update");
        assert!(!allowed[1], "61:1 is allowed after the update");
    }

    #[test]
    fn namespaces_missing_kernel_type_named() {
        let own = own_namespaces(&["mnt", "pid"]);
        let list = namespaces(serde_json::json!([
            {"type": "mount"},
            {"type": "pid"},
            {"type": "time"},
        ]));
        let error = check_namespaces(&list, own.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ContainerError::KernelLacks { .. }),
            "{message}"
        );
        assert!(message.contains("linux.namespaces[2]"), "{message}");
        assert!(message.contains("time namespaces"), "{message}");

        let own = own_namespaces(&["mnt", "pid", "time"]);
        check_namespaces(&list, own.path()).unwrap();
    }

    #[test]
    fn namespaces_without_mount_rejected() {
        let own = own_namespaces(&["mnt", "pid", "net"]);
        let list = namespaces(serde_json::json!([{"type": "pid"}, {"type": "network"}]));
        let error = check_namespaces(&list, own.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ContainerError::InvalidField { .. }),
            "{message}"
        );
        assert!(message.contains("linux.namespaces"), "{message}");
        assert!(message.contains("mount"), "{message}");
    }

    #[test]
    fn namespaces_joining_own_mount_rejected() {
        let own = own_namespaces(&["mnt"]);
        let own_mount = own.path().join("mnt");
        let list = namespaces(serde_json::json!([{"type": "mount", "path": own_mount}]));
        let error = check_namespaces(&list, own.path()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("linux.namespaces[0]"), "{message}");
        assert!(message.contains("own mount namespace"), "{message}");

        // Another mount namespace may be joined.
        let other = own.path().join("other-mnt");
        fs::write(&other, "").unwrap();
        let list = namespaces(serde_json::json!([{"type": "mount", "path": other}]));
        check_namespaces(&list, own.path()).unwrap();
    }
}
