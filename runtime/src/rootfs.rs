//! The container's root filesystem, built inside its own mount namespace:
//! the overlay or bind root, the spec's mounts, /dev, pivot_root, and the
//! masked and read-only paths.
//!
//! Everything here runs in the container's init before it executes the
//! process, so every mount dies with the mount namespace and nothing is left
//! in the host's mount table.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

/// An error building the container's root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to mount {source_name} on {target} (type {fstype}, options {data:?})")]
    Mount {
        source_name: String,
        target: PathBuf,
        fstype: String,
        data: String,
        #[source]
        source: nix::Error,
    },
    #[error("failed to {operation} {path}")]
    Path {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {operation} {path}")]
    Sys {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("mount destination {destination:?} is not an absolute path")]
    RelativeDestination { destination: String },
    #[error("failed to list the host's cgroup mounts for the container's /sys/fs/cgroup")]
    CgroupMounts(#[source] crate::cgroups::CgroupError),
    #[error("too many levels of symbolic links resolving {path} inside {root}")]
    SymlinkLoop { root: PathBuf, path: PathBuf },
    #[error(
        "invalid linux.rootfsPropagation {value:?}: expected slave, private, shared or \
         unbindable, optionally with an r prefix"
    )]
    InvalidPropagation { value: String },
}

fn sys<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |source| RootfsError::Sys {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

fn io<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Path {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Mount flags and filesystem data parsed from OCI mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags that must be applied by a second, remounting call: bind mounts
    /// ignore every flag but MS_BIND and MS_REC on their first call.
    pub remount_flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn parse(options: &[String]) -> Self {
        let mut parsed = MountOptions {
            flags: MsFlags::empty(),
            remount_flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
        };
        for option in options {
            let (set, clear, propagation) = match option.as_str() {
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
                "rbind" => (
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    MsFlags::empty(),
                    MsFlags::empty(),
                ),
                "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
                "rprivate" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                ),
                "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
                "rshared" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_SHARED | MsFlags::MS_REC,
                ),
                "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
                "rslave" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                ),
                "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
                "runbindable" => (
                    MsFlags::empty(),
                    MsFlags::empty(),
                    MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                ),
                // Options of other runtimes that have no kernel flag.
                "tmpcopyup" | "defaults" => continue,
                other => {
                    parsed.data.push(other.to_string());
                    continue;
                }
            };
            parsed.flags.insert(set);
            parsed.flags.remove(clear);
            parsed.propagation.insert(propagation);
        }
        if parsed.flags.contains(MsFlags::MS_BIND) {
            parsed.remount_flags = parsed.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        }
        parsed
    }
}

/// Resolves `path` as if `root` were `/`: symlinks and `..` never lead
/// outside `root`. Components that do not exist yet are appended as given.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, RootfsError> {
    const MAX_SYMLINKS: usize = 40;

    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut symlinks = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&name);
        match fs::read_link(&candidate) {
            Ok(target) => {
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(RootfsError::SymlinkLoop {
                        root: root.to_path_buf(),
                        path: path.to_path_buf(),
                    });
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                for component in target.components().rev() {
                    match component {
                        Component::Normal(part) => pending.push(part.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(_) => resolved.push(name),
        }
    }
    let mut result = root.to_path_buf();
    result.extend(&resolved);
    Ok(result)
}

/// Mounts the overlay root at `merged`, with `lower_dirs` (colon-separated,
/// top first) under `upper` and `work`.
///
/// The mount is volatile: overlayfs skips every sync of the upper
/// filesystem, fsync in the container included. Without the option the
/// unmount at the container's end runs syncfs on the filesystem that
/// contains `upper`, which waits for the writeback of every dirty page on
/// it, other programs' pages included. The runtime removes `upper` and
/// `work` with the container, so nothing in them has to survive a crash.
/// Overlayfs refuses a later mount of a `work` that a volatile mount used,
/// which is why a takeover of an overlay directory starts from empty ones.
///
/// mount(2) copies at most one page of options, which the absolute paths
/// of a few dozen image layers exceed. Then each lower directory is passed
/// as a short relative name instead: symlinks `0`, `1`, ... in a directory
/// `lower-links` beside `upper`, which is the working directory during the
/// mount call. Overlayfs resolves the links when it mounts, so they are
/// removed right after. Overlayfs itself stacks at most 500 lower layers.
pub fn mount_overlay(
    lower_dirs: &str,
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<(), RootfsError> {
    fn mount_with(data: String, merged: &Path) -> Result<(), RootfsError> {
        mount(
            Some("overlay"),
            merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|source| RootfsError::Mount {
            source_name: "overlay".to_string(),
            target: merged.to_path_buf(),
            fstype: "overlay".to_string(),
            data,
            source,
        })
    }

    fn mount_through_links(
        links: &Path,
        lower_dirs: &str,
        upper: &Path,
        work: &Path,
        merged: &Path,
    ) -> Result<(), RootfsError> {
        let mut names = Vec::new();
        for (index, dir) in lower_dirs.split(':').enumerate() {
            let link = links.join(index.to_string());
            symlink(dir, &link).map_err(io("create symlink", &link))?;
            names.push(index.to_string());
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},volatile",
            names.join(":"),
            upper.display(),
            work.display()
        );
        let previous = nix::fcntl::open(
            ".",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open the working directory", Path::new(".")))?;
        chdir(links).map_err(sys("chdir to", links))?;
        let mounted = mount_with(data, merged);
        nix::unistd::fchdir(&previous)
            .map_err(sys("return to the working directory from", links))?;
        mounted
    }

    // The merged root takes its owner and mode from the upper directory,
    // which the runtime creates private (0700). A fresh upper directory gets
    // those of the top layer's root instead, so that a process of any user
    // can traverse `/`, as in the image.
    let top_layer = lower_dirs.split(':').next().unwrap_or_default();
    let upper_is_fresh = fs::read_dir(upper)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if upper_is_fresh {
        if let Ok(top) = fs::metadata(top_layer) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};

            std::os::unix::fs::chown(upper, Some(top.uid()), Some(top.gid()))
                .map_err(io("set the owner of", upper))?;
            fs::set_permissions(upper, fs::Permissions::from_mode(top.mode() & 0o7777))
                .map_err(io("set the mode of", upper))?;
        }
    }

    let data = format!(
        "lowerdir={lower_dirs},upperdir={},workdir={},volatile",
        upper.display(),
        work.display()
    );
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    // The kernel needs the terminating NUL inside the page too.
    if data.len() < page_size {
        return mount_with(data, merged);
    }

    let links = upper.with_file_name("lower-links");
    match fs::remove_dir_all(&links) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io("remove stale", &links)(error)),
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&links)
        .map_err(io("create directory", &links))?;
    let result = mount_through_links(&links, lower_dirs, upper, work, merged);
    let removed = fs::remove_dir_all(&links).map_err(io("remove", &links));
    result.and(removed)
}

/// Propagation of the container's root mount, from `linux.rootfsPropagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPropagation {
    /// One of MS_SLAVE, MS_PRIVATE, MS_SHARED and MS_UNBINDABLE.
    kind: MsFlags,
    /// Whether the mounts below the new `/` get a shared or unbindable
    /// propagation too (the `r` prefix, as in mount(8)'s `--make-rshared`).
    /// Slave and private apply to every mount in any case.
    recursive: bool,
}

impl RootPropagation {
    /// Parses `linux.rootfsPropagation`. Unset is `rslave`, as with runc, so
    /// the container receives the host's later mounts and the host receives
    /// none of the container's.
    pub fn parse(value: Option<&str>) -> Result<Self, RootfsError> {
        let Some(value) = value else {
            return Ok(RootPropagation {
                kind: MsFlags::MS_SLAVE,
                recursive: true,
            });
        };
        let (name, recursive) = match value.strip_prefix('r') {
            Some(rest) => (rest, true),
            None => (value, false),
        };
        let kind = match name {
            "slave" => MsFlags::MS_SLAVE,
            "private" => MsFlags::MS_PRIVATE,
            "shared" => MsFlags::MS_SHARED,
            "unbindable" => MsFlags::MS_UNBINDABLE,
            _ => {
                return Err(RootfsError::InvalidPropagation {
                    value: value.to_string(),
                })
            }
        };
        Ok(RootPropagation { kind, recursive })
    }

    /// Cuts the container's mount namespace off from the host's before the
    /// root is built. Every mount becomes a slave (private for `private`),
    /// so no mount of the container reaches the host, while a slave still
    /// receives the host's. No mount is shared afterwards, as pivot_root
    /// requires of the parent mounts of the new and the old root (it fails
    /// with EINVAL otherwise).
    pub fn isolate(&self) -> Result<(), RootfsError> {
        let isolation = match self.kind {
            MsFlags::MS_PRIVATE => MsFlags::MS_PRIVATE,
            _ => MsFlags::MS_SLAVE,
        };
        let root = Path::new("/");
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_REC | isolation,
            None::<&str>,
        )
        .map_err(sys("set the propagation of", root))
    }

    /// Gives the new `/` the configured propagation when it is shared or
    /// unbindable. Slave and private need nothing more, because
    /// [`RootPropagation::isolate`] has applied them. Call it after pivot_root and after the last bind mount
    /// from inside the root, which an unbindable root would reject. With the
    /// `r` prefix the mounts below `/` change too, overriding the propagation
    /// options of the spec's mounts.
    pub fn apply(&self) -> Result<(), RootfsError> {
        if !matches!(self.kind, MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
            return Ok(());
        }
        let mut flags = self.kind;
        if self.recursive {
            flags |= MsFlags::MS_REC;
        }
        let root = Path::new("/");
        mount(None::<&str>, root, None::<&str>, flags, None::<&str>)
            .map_err(sys("set the propagation of the container's", root))
    }
}

/// Makes `rootfs` a mount point by binding it onto itself, as pivot_root requires.
pub fn bind_rootfs(rootfs: &Path) -> Result<(), RootfsError> {
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        source_name: rootfs.display().to_string(),
        target: rootfs.to_path_buf(),
        fstype: "bind".to_string(),
        data: String::new(),
        source,
    })
}

/// Performs one OCI mount below `rootfs`, creating its destination.
pub fn mount_entry(rootfs: &Path, entry: &Mount) -> Result<(), RootfsError> {
    let destination = entry.destination();
    if !destination.is_absolute() {
        return Err(RootfsError::RelativeDestination {
            destination: destination.display().to_string(),
        });
    }
    let target = resolve_in_root(rootfs, destination)?;
    let options = MountOptions::parse(entry.options().as_deref().unwrap_or_default());
    let fstype = entry.typ().as_deref().unwrap_or("bind");
    let is_bind = fstype == "bind" || options.flags.contains(MsFlags::MS_BIND);
    let source = entry.source().as_deref().map(Path::to_path_buf);

    let source_is_file = is_bind
        && source
            .as_deref()
            .and_then(|s| fs::metadata(s).ok())
            .is_some_and(|m| !m.is_dir());
    // `target` was resolved by path, so a component may have been swapped
    // for a symlink since. It is created and opened one component at a
    // time without following symlinks, and the mount goes onto the
    // resulting descriptor. A swap then fails the mount instead of leading
    // the creation or the mount outside the root. `pinned` names that inode.
    let pinned_fd = create_in_root(rootfs, &target, source_is_file)?;
    let pinned = PathBuf::from(format!("/proc/self/fd/{}", pinned_fd.as_raw_fd()));

    let data = options.data.join(",");
    let source_name = source
        .as_deref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| fstype.to_string());
    let mount_error = |source| RootfsError::Mount {
        source_name: source_name.clone(),
        target: target.clone(),
        fstype: fstype.to_string(),
        data: data.clone(),
        source,
    };
    if fstype == "cgroup" || fstype == "cgroup2" {
        // /sys/fs/cgroup lies in the sysfs mounted just before, which
        // holds no symlink a container could plant.
        mount_cgroup_tree(&target, options.flags)?;
    } else if is_bind {
        let flags = MsFlags::MS_BIND | (options.flags & MsFlags::MS_REC);
        mount(
            source.as_deref(),
            &pinned,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(mount_error)?;
    } else {
        let flags = options.flags & !MsFlags::MS_REMOUNT;
        let data_arg = (!data.is_empty()).then_some(data.as_str());
        mount(
            Some(source_name.as_str()),
            &pinned,
            Some(fstype),
            flags,
            data_arg,
        )
        .map_err(mount_error)?;
    }
    drop(pinned_fd);
    if options.remount_flags.is_empty() && options.propagation.is_empty() {
        return Ok(());
    }
    // Reopened, the path now resolves to the root of the new mount.
    let mounted_fd = open_in_root(rootfs, destination)?;
    let mounted = PathBuf::from(format!("/proc/self/fd/{}", mounted_fd.as_raw_fd()));
    if is_bind && !options.remount_flags.is_empty() {
        // The path was resolved again, so a swapped symlink could make it
        // name another mount, which would then get the flags (read-only)
        // meant for this one. The root of a bind mount is its source.
        if let Some(source) = source.as_deref() {
            check_same_inode(source, &mounted, &target)?;
        }
        remount_keeping_flags(&mounted, options.remount_flags)?;
    }
    if !options.propagation.is_empty() {
        // NOTE: unlike the read-only remount above, nothing checks that
        // `mounted` is still this mount, so a symlink swapped in between
        // can move the propagation change to another mount in the root.
        mount(
            None::<&str>,
            &mounted,
            None::<&str>,
            options.propagation,
            None::<&str>,
        )
        .map_err(sys("set propagation of", &target))?;
    }
    Ok(())
}

/// Creates `target`, a path below `rootfs` that [`resolve_in_root`]
/// returned, and returns it opened with O_PATH.
///
/// Each component is opened relative to its parent's descriptor with
/// RESOLVE_NO_SYMLINKS, and created there when missing: a directory with
/// mkdirat, or for the last component of a file mount an empty file with an
/// exclusive, non-following openat. A component that became a symlink
/// after the resolution fails with ELOOP.
fn create_in_root(rootfs: &Path, target: &Path, as_file: bool) -> Result<OwnedFd, RootfsError> {
    use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};

    let names: Vec<&std::ffi::OsStr> = target
        .strip_prefix(rootfs)
        .unwrap_or(target)
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let without_symlinks = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_BENEATH,
            )
    };
    let mut current = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the root", rootfs))?;
    for (index, name) in names.iter().enumerate() {
        let creates_file = as_file && index + 1 == names.len();
        current = match openat2(&current, *name, without_symlinks()) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => {
                let created = if creates_file {
                    openat(
                        &current,
                        *name,
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_WRONLY
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    nix::sys::stat::mkdirat(&current, *name, Mode::from_bits_truncate(0o755))
                };
                match created {
                    // EEXIST: something else created it since the open.
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(error) => return Err(sys("create mount target", target)(error)),
                }
                openat2(&current, *name, without_symlinks())
                    .map_err(sys("open mount target", target))?
            }
            Err(error) => return Err(sys("open mount target", target)(error)),
        };
    }
    Ok(current)
}

/// Fails unless `mounted` (the reopened mount target) is the same inode as
/// the bind mount's `source`.
fn check_same_inode(source: &Path, mounted: &Path, target: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::MetadataExt;

    let expected = fs::metadata(source).map_err(io("inspect bind source", source))?;
    let found = fs::metadata(mounted).map_err(io("inspect mount target", target))?;
    if (expected.dev(), expected.ino()) == (found.dev(), found.ino()) {
        return Ok(());
    }
    Err(RootfsError::Path {
        operation: "verify mount target",
        path: target.to_path_buf(),
        source: std::io::Error::other(format!(
            "the path no longer names the bind mount of {}: it changed while mounting",
            source.display()
        )),
    })
}

/// Opens `path` (absolute inside the container) with O_PATH, resolved as if
/// `rootfs` were `/`: the kernel keeps `..` and symlinks inside it.
pub fn open_in_root(rootfs: &Path, path: &Path) -> Result<OwnedFd, RootfsError> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the root", rootfs))?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(&root, relative, how).map_err(sys("open inside the root", path))
}

/// Mounts the cgroup filesystems at `target` as the host has them: cgroup2
/// alone on a unified host; otherwise a tmpfs holding one mount per v1
/// hierarchy (and the hybrid cgroup2 mount). Inside a cgroup namespace each
/// mount shows the container's own cgroup as its root.
fn mount_cgroup_tree(target: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let mounts = crate::cgroups::host_cgroup_mounts().map_err(RootfsError::CgroupMounts)?;
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let readonly = flags & MsFlags::MS_RDONLY;
    let mount_error = |fstype: &str, target: &Path, data: String| {
        let fstype = fstype.to_string();
        let target = target.to_path_buf();
        move |source| RootfsError::Mount {
            source_name: fstype.clone(),
            target,
            fstype,
            data,
            source,
        }
    };
    if mounts.iter().any(|m| m.unified && m.name.is_empty()) {
        return mount(
            Some("cgroup2"),
            target,
            Some("cgroup2"),
            common | readonly,
            None::<&str>,
        )
        .map_err(mount_error("cgroup2", target, String::new()));
    }
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        common,
        Some("mode=755"),
    )
    .map_err(mount_error("tmpfs", target, "mode=755".to_string()))?;
    for hierarchy in &mounts {
        if hierarchy.name.is_empty() {
            continue;
        }
        let directory = target.join(&hierarchy.name);
        create_destination(&directory, false)?;
        let (fstype, data) = if hierarchy.unified {
            ("cgroup2", String::new())
        } else {
            ("cgroup", hierarchy.selection.join(","))
        };
        let data_arg = (!data.is_empty()).then_some(data.as_str());
        mount(
            Some(fstype),
            &directory,
            Some(fstype),
            common | readonly,
            data_arg,
        )
        .map_err(mount_error(fstype, &directory, data.clone()))?;
    }
    if !readonly.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | common | readonly,
            Some("mode=755"),
        )
        .map_err(sys("remount read-only", target))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags` added to the flags it already has.
/// The kernel rejects a read-only remount of a mount that is nosuid, nodev or
/// noexec unless those flags are repeated, and locked flags cannot be dropped.
pub fn remount_keeping_flags(target: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let existing = statvfs(target).map_err(sys("statvfs", target))?.flags();
    let mut keep = MsFlags::empty();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if existing.contains(fs_flag) {
            keep.insert(ms_flag);
        }
    }
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | keep | flags,
        None::<&str>,
    )
    .map_err(sys("remount", target))
}

fn create_destination(target: &Path, as_file: bool) -> Result<(), RootfsError> {
    if target.exists() {
        return Ok(());
    }
    if as_file {
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io("create directory", parent))?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(target)
            .map_err(io("create mount target", target))?;
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(target)
        .map_err(io("create mount target", target))
}

/// The devices every container gets, as (path, major, minor).
pub const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices, the spec's devices and the standard /dev
/// symlinks under `rootfs/dev`.
pub fn create_devices(rootfs: &Path, extra: &[LinuxDevice], bind: bool) -> Result<(), RootfsError> {
    for (path, major, minor) in DEFAULT_DEVICES {
        let target = resolve_in_root(rootfs, Path::new(path))?;
        if bind {
            bind_host_device(Path::new(path), &target, major, minor)?;
        } else {
            make_device(&target, SFlag::S_IFCHR, major, minor, 0o666)?;
        }
    }
    for device in extra {
        let kind = match device.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let target = resolve_in_root(rootfs, device.path())?;
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io("create directory", parent))?;
        }
        let mode = device.file_mode().unwrap_or(0o666);
        if bind {
            bind_host_device(
                device.path(),
                &target,
                device.major() as u64,
                device.minor() as u64,
            )?;
            continue;
        }
        make_device(
            &target,
            kind,
            device.major() as u64,
            device.minor() as u64,
            mode,
        )?;
        let uid = device.uid().map(nix::unistd::Uid::from_raw);
        let gid = device.gid().map(nix::unistd::Gid::from_raw);
        nix::unistd::chown(&target, uid, gid).map_err(sys("chown", &target))?;
    }
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    for (source, link) in links {
        let target = resolve_in_root(rootfs, Path::new(link))?;
        if target.symlink_metadata().is_ok() {
            continue;
        }
        symlink(source, &target).map_err(io("create symlink", &target))?;
    }
    Ok(())
}

/// Binds the host's device node `source` onto a new empty file at `target`,
/// after checking that it is the device it claims to be.
fn bind_host_device(
    source: &Path,
    target: &Path,
    major: u64,
    minor: u64,
) -> Result<(), RootfsError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let metadata = fs::symlink_metadata(source).map_err(io("inspect host device", source))?;
    let is_device = metadata.file_type().is_char_device() || metadata.file_type().is_block_device();
    if !is_device || metadata.rdev() != makedev(major, minor) {
        return Err(RootfsError::Path {
            operation: "verify host device",
            path: source.to_path_buf(),
            source: std::io::Error::other(format!("not the device {major}:{minor}")),
        });
    }
    create_destination(target, true)?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("bind host device onto", target))
}

fn make_device(
    target: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
) -> Result<(), RootfsError> {
    if target.symlink_metadata().is_ok() {
        fs::remove_file(target).map_err(io("replace", target))?;
    }
    // The umask would clear the group and other bits that devices need.
    let previous = nix::sys::stat::umask(Mode::empty());
    let result = mknod(
        target,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    );
    nix::sys::stat::umask(previous);
    result.map_err(sys("create device node", target))
}

/// Moves the process's root to `rootfs` and detaches the old root.
///
/// `pivot_root(".", ".")` stacks the old root on top of the new one, so a
/// lazy unmount of "." afterwards removes it without needing a directory for
/// it inside the container.
///
/// pivot_root fails with EINVAL while the current root is the initramfs
/// (rootfs cannot be unmounted). Then the new root is moved over `/` and
/// the process chroots into it. That root is weaker: the old root stays
/// mounted underneath, and a process with CAP_SYS_CHROOT could escape the
/// chroot, so the fallback is taken only for that error.
pub fn pivot_into(rootfs: &Path) -> Result<(), RootfsError> {
    chdir(rootfs).map_err(sys("chdir to", rootfs))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root from", rootfs))?;
        }
        Err(nix::Error::EINVAL) if root_is_initramfs() => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(sys("move the root over / for", rootfs))?;
            nix::unistd::chroot(".").map_err(sys("chroot to", rootfs))?;
        }
        Err(error) => return Err(sys("pivot_root to", rootfs)(error)),
    }
    chdir("/").map_err(sys("chdir to", Path::new("/")))
}

/// Returns whether `/` is the initramfs (`rootfs`), on which pivot_root
/// cannot work.
fn root_is_initramfs() -> bool {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-");
        fields.get(4) == Some(&"/")
            && separator.and_then(|at| fields.get(at + 1)) == Some(&"rootfs")
    })
}

/// Hides `paths`: a directory under an empty read-only tmpfs, anything else
/// under a bind of /dev/null. Missing paths are skipped.
pub fn mask_paths(paths: &[String]) -> Result<(), RootfsError> {
    for path in paths.iter().map(Path::new) {
        let Ok(metadata) = fs::metadata(path) else {
            continue;
        };
        if metadata.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )
            .map_err(sys("mask", path))?;
        } else {
            check_dev_null()?;
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("mask", path))?;
        }
    }
    Ok(())
}

/// Confirms that /dev/null is the null character device before it is bound
/// over a masked file, so a planted regular file cannot be exposed instead.
fn check_dev_null() -> Result<(), RootfsError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let path = Path::new("/dev/null");
    let metadata = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    let is_null = metadata.file_type().is_char_device() && metadata.rdev() == makedev(1, 3);
    if is_null {
        Ok(())
    } else {
        Err(RootfsError::Path {
            operation: "verify",
            path: path.to_path_buf(),
            source: std::io::Error::other("not the null character device 1:3"),
        })
    }
}

/// Makes `paths` read-only by binding each onto itself and remounting it.
pub fn readonly_paths(paths: &[String]) -> Result<(), RootfsError> {
    for path in paths.iter().map(Path::new) {
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("bind read-only path", path))?;
        remount_keeping_flags(path, MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// Remounts the new root read-only, once every other mount is in place.
pub fn make_root_readonly() -> Result<(), RootfsError> {
    remount_keeping_flags(Path::new("/"), MsFlags::MS_RDONLY)
}

/// Creates the OCI `cwd` when it is missing.
pub fn ensure_directory(path: &Path) -> Result<(), RootfsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io("create working directory", path))
}

/// Builds the overlay root as a detached mount with the new mount API, in
/// the runtime's own user namespace, and returns its descriptor.
///
/// A container with a user namespace gets its root this way: mounted by the
/// host's root, overlayfs copies up files with the host's credentials, so
/// the container can change files of a host-owned image; the init then
/// attaches the mount with [`attach_mount`].
pub fn overlay_mount_fd(
    lower_dirs: &str,
    upper: &Path,
    work: &Path,
) -> Result<OwnedFd, RootfsError> {
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // The kernel copies each fsconfig string with a limit of 256 bytes.
    const MAX_VALUE: usize = 255;

    let failed = |operation: &'static str| {
        move |source| RootfsError::Sys {
            operation,
            path: upper.to_path_buf(),
            source,
        }
    };
    let name = CString::new("overlay").expect("no NUL");
    // SAFETY: fsopen reads a NUL-terminated name and returns a new
    // descriptor or -1; the result is checked before use.
    let context = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if context < 0 {
        return Err(failed("open an overlay filesystem context for")(
            nix::Error::last(),
        ));
    }
    // SAFETY: `context` is a descriptor fsopen just returned and nothing
    // else owns.
    let context = unsafe { OwnedFd::from_raw_fd(context as i32) };
    let set = |key: &str, value: &str| -> Result<(), nix::Error> {
        let key = CString::new(key).map_err(|_| nix::Error::EINVAL)?;
        let value = CString::new(value).map_err(|_| nix::Error::EINVAL)?;
        // SAFETY: both strings are NUL-terminated and live across the call;
        // the auxiliary argument is unused for FSCONFIG_SET_STRING.
        let result = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if result < 0 {
            Err(nix::Error::last())
        } else {
            Ok(())
        }
    };
    if lower_dirs.len() <= MAX_VALUE {
        set("lowerdir", lower_dirs).map_err(failed("set the lower directories of"))?;
    } else {
        // "lowerdir+" adds one layer per call (Linux 6.8 and later).
        for layer in lower_dirs.split(':') {
            set("lowerdir+", layer).map_err(failed(
                "add a lower directory (needs Linux 6.8 for many layers) to",
            ))?;
        }
    }
    set("upperdir", &upper.display().to_string()).map_err(failed("set the upper directory"))?;
    set("workdir", &work.display().to_string()).map_err(failed("set the work directory of"))?;
    // Volatile for the reasons given at mount_overlay.
    let volatile = CString::new("volatile").expect("no NUL");
    // SAFETY: the key is NUL-terminated and lives across the call, and
    // FSCONFIG_SET_FLAG takes no value or auxiliary argument.
    let flagged = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            volatile.as_ptr(),
            0usize,
            0,
        )
    };
    if flagged < 0 {
        return Err(failed("set the volatile option of the overlay on")(
            nix::Error::last(),
        ));
    }
    // SAFETY: CMD_CREATE takes no key or value pointers.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            0usize,
            0usize,
            0,
        )
    };
    if created < 0 {
        return Err(failed("create the overlay filesystem of")(
            nix::Error::last(),
        ));
    }
    // SAFETY: fsmount takes the context descriptor and integer flags and
    // returns a new descriptor or -1.
    let mounted =
        unsafe { libc::syscall(libc::SYS_fsmount, context.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mounted < 0 {
        return Err(failed("mount the overlay filesystem of")(nix::Error::last()));
    }
    // SAFETY: `mounted` is a descriptor fsmount just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(mounted as i32) })
}

/// Attaches a detached mount (from [`overlay_mount_fd`]) on `target` and
/// moves the working directory into it, so that `/proc/self/cwd` names the
/// new root without a path lookup through the runtime's directories.
pub fn attach_mount(mount_fd: &OwnedFd, target: &Path) -> Result<(), RootfsError> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
    let empty = CString::new("").expect("no NUL");
    let target_c =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| RootfsError::Sys {
            operation: "attach the root at",
            path: target.to_path_buf(),
            source: nix::Error::EINVAL,
        })?;
    // SAFETY: both paths are NUL-terminated strings that live across the
    // call, and `mount_fd` is an open mount descriptor.
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount_fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if result < 0 {
        return Err(sys("attach the root at", target)(nix::Error::last()));
    }
    nix::unistd::fchdir(mount_fd).map_err(sys("enter the new root at", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_propagation_values() {
        let cases = [
            (None, MsFlags::MS_SLAVE, true),
            (Some("slave"), MsFlags::MS_SLAVE, false),
            (Some("rprivate"), MsFlags::MS_PRIVATE, true),
            (Some("shared"), MsFlags::MS_SHARED, false),
            (Some("rshared"), MsFlags::MS_SHARED, true),
            (Some("unbindable"), MsFlags::MS_UNBINDABLE, false),
        ];
        for (value, kind, recursive) in cases {
            let parsed = RootPropagation::parse(value).unwrap();
            assert_eq!(parsed.kind, kind, "{value:?}");
            assert_eq!(parsed.recursive, recursive, "{value:?}");
        }
        for value in ["", "r", "Shared", "rr-shared", "bogus"] {
            let error = RootPropagation::parse(Some(value)).unwrap_err();
            assert!(
                matches!(error, RootfsError::InvalidPropagation { .. }),
                "{value:?}: {error}"
            );
        }
    }

    #[test]
    fn options_split_flags_and_data() {
        let options: Vec<String> = ["nosuid", "ro", "size=16m", "mode=755", "rslave"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = MountOptions::parse(&options);
        assert!(parsed.flags.contains(MsFlags::MS_NOSUID));
        assert!(parsed.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(parsed.data, vec!["size=16m", "mode=755"]);
        assert_eq!(parsed.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert!(parsed.remount_flags.is_empty());
    }

    #[test]
    fn bind_options_need_remount() {
        let options: Vec<String> = ["rbind", "ro", "nosuid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = MountOptions::parse(&options);
        assert!(parsed.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert_eq!(
            parsed.remount_flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
    }

    #[test]
    fn resolve_keeps_symlinks_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path();
        fs::create_dir_all(base.join("etc")).unwrap();
        symlink("/etc", base.join("abs")).unwrap();
        symlink("../../../../etc", base.join("etc/up")).unwrap();
        symlink("loop2", base.join("loop1")).unwrap();
        symlink("loop1", base.join("loop2")).unwrap();

        assert_eq!(
            resolve_in_root(base, Path::new("/abs/passwd")).unwrap(),
            base.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(base, Path::new("/etc/up/shadow")).unwrap(),
            base.join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(base, Path::new("/../../x")).unwrap(),
            base.join("x")
        );
        assert!(matches!(
            resolve_in_root(base, Path::new("/loop1")),
            Err(RootfsError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn create_in_root_makes_dirs_and_file() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path();
        let target = resolve_in_root(base, Path::new("/a/b/file")).unwrap();

        let fd = create_in_root(base, &target, true).unwrap();
        let opened = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(opened, base.join("a/b/file"));
        assert!(base.join("a/b").is_dir());
        assert!(base.join("a/b/file").is_file());
        // A second call finds everything in place.
        create_in_root(base, &target, true).unwrap();
    }

    #[test]
    fn create_in_root_rejects_swapped_symlink() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let base = root.path();
        fs::create_dir(base.join("flip")).unwrap();
        let target = resolve_in_root(base, Path::new("/flip/sub")).unwrap();
        // The directory becomes a symlink to a host directory after the
        // path was resolved, as a racing process would make it.
        fs::remove_dir(base.join("flip")).unwrap();
        symlink(outside.path(), base.join("flip")).unwrap();

        let error = create_in_root(base, &target, false).unwrap_err();
        assert!(
            matches!(
                &error,
                RootfsError::Sys {
                    source: nix::Error::ELOOP,
                    ..
                }
            ),
            "{error}"
        );
        assert!(!outside.path().join("sub").exists());
    }
}
