//! Detection of the mounted cgroup hierarchies and the calling process's
//! cgroup in each, and creation and removal of cgroup directories.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::mountinfo::{self, CgroupMount};
use super::{v1, v2, Cgroup, CgroupError, CgroupPaths, Version};

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_CGROUP: &str = "/proc/self/cgroup";

/// One mounted hierarchy and the calling process's place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `memory`, `cpu`, ... on v1 and `unified` on v2, for error messages.
    name: String,
    mount_point: PathBuf,
    /// The cgroup at `mount_point`, from the hierarchy root.
    root: String,
    /// The calling process's cgroup, from the hierarchy root.
    own: String,
}

impl Mount {
    fn new(name: &str, mount: &CgroupMount, own: &str, root_prefix: &Path) -> Self {
        let relative = mount
            .mount_point
            .strip_prefix("/")
            .unwrap_or(&mount.mount_point);
        Mount {
            name: name.to_string(),
            mount_point: root_prefix.join(relative),
            root: mount.root.clone(),
            own: own.to_string(),
        }
    }

    /// Returns the directory of `cgroup`, a path from the hierarchy root.
    fn dir_of(&self, cgroup: &str) -> Result<PathBuf, CgroupError> {
        let outside = || CgroupError::OutsideMount {
            controller: self.name.clone(),
            cgroup: cgroup.to_string(),
            mount_point: self.mount_point.clone(),
            mount_root: self.root.clone(),
        };
        let below_root = if self.root == "/" {
            cgroup
        } else {
            cgroup
                .strip_prefix(self.root.as_str())
                .ok_or_else(outside)?
        };
        if !below_root.is_empty() && !below_root.starts_with('/') {
            return Err(outside());
        }
        let relative = below_root.trim_start_matches('/');
        if relative.is_empty() {
            Ok(self.mount_point.clone())
        } else {
            Ok(self.mount_point.join(relative))
        }
    }

    /// Resolves a path given to [`Hierarchy::create`] to a cgroup path from
    /// the hierarchy root and its directory.
    fn locate(&self, path: &str) -> Result<(String, PathBuf), CgroupError> {
        let cgroup = resolve(path, &self.own)?;
        if cgroup == self.own {
            return Err(CgroupError::InvalidPath {
                path: path.to_string(),
                reason: "it is the calling process's own cgroup",
            });
        }
        let dir = self.dir_of(&cgroup)?;
        Ok((cgroup, dir))
    }
}

/// The mounted cgroup hierarchies and the calling process's cgroup in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    version: Version,
    /// v1 controllers by name; co-mounted controllers share a mount point.
    /// Empty on v2.
    controllers: BTreeMap<String, Mount>,
    /// The unified hierarchy on v2 hosts.
    unified: Option<Mount>,
    /// A hybrid host's cgroup2 mount, when it offers controllers that no v1
    /// hierarchy has. Containers get a cgroup in it for those controllers.
    hybrid: Option<HybridMount>,
}

/// A hybrid host's cgroup2 mount whose cgroup of the calling process
/// enables for its children (`cgroup.subtree_control`) a controller of
/// [`v2::CONTROLLERS`] that no v1 hierarchy has, such as hugetlb.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HybridMount {
    mount: Mount,
}

/// Key of a hybrid host's cgroup2 directory in [`CgroupPaths::V1`], beside
/// the v1 controller names. The directory exists only where the cgroup2
/// mount offers a controller that no v1 hierarchy has.
pub const UNIFIED_KEY: &str = "unified";

impl Hierarchy {
    /// Detects the hierarchies from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    ///
    /// Hybrid hosts (v1 controllers plus a cgroup2 mount with few or no
    /// controllers, such as `/sys/fs/cgroup/unified` with only hugetlb) are
    /// [`Version::V1`]. Their cgroup2 mount is used for the controllers that
    /// the calling process's cgroup there enables for its children and that
    /// no v1 hierarchy has, read from its `cgroup.subtree_control`. Pure v2
    /// is a cgroup2 mount and no v1 controller mount (named hierarchies such
    /// as `name=systemd` are not controllers).
    pub fn detect() -> Result<Self, CgroupError> {
        let read = |path: &str| {
            fs::read_to_string(path).map_err(|source| CgroupError::Read {
                path: PathBuf::from(path),
                source,
            })
        };
        Self::from_texts(&read(MOUNTINFO)?, &read(SELF_CGROUP)?, Path::new("/"))
    }

    /// Detects the hierarchies from the given mountinfo and `/proc/self/cgroup`
    /// texts, with every mount point placed below `root_prefix`. On a hybrid
    /// host it also reads `cgroup.subtree_control` below `root_prefix`.
    pub fn from_texts(
        mountinfo: &str,
        self_cgroup: &str,
        root_prefix: &Path,
    ) -> Result<Self, CgroupError> {
        let mounts = mountinfo::parse_mountinfo(mountinfo, Path::new(MOUNTINFO))?;
        let memberships = mountinfo::parse_self_cgroup(self_cgroup, Path::new(SELF_CGROUP))?;

        let mut controllers = BTreeMap::new();
        for membership in memberships.iter().filter(|line| line.hierarchy_id != 0) {
            for name in &membership.controllers {
                if name.starts_with("name=") {
                    continue;
                }
                let mount = mounts
                    .iter()
                    .find(|mount| !mount.unified && mount.options.contains(name));
                if let Some(mount) = mount {
                    let entry = Mount::new(name, mount, &membership.path, root_prefix);
                    controllers.insert(name.clone(), entry);
                }
            }
        }
        let unified_mount = mounts.iter().find(|mount| mount.unified);
        let membership = memberships.iter().find(|line| line.hierarchy_id == 0);
        if !controllers.is_empty() {
            let hybrid = match (unified_mount, membership) {
                (Some(mount), Some(membership)) => {
                    let mount = Mount::new(UNIFIED_KEY, mount, &membership.path, root_prefix);
                    HybridMount::offering(mount, &controllers)
                }
                _ => None,
            };
            return Ok(Hierarchy {
                version: Version::V1,
                controllers,
                unified: None,
                hybrid,
            });
        }

        match (unified_mount, membership) {
            (Some(mount), Some(membership)) => Ok(Hierarchy {
                version: Version::V2,
                controllers,
                unified: Some(Mount::new("unified", mount, &membership.path, root_prefix)),
                hybrid: None,
            }),
            _ => Err(CgroupError::NoHierarchy {
                path: PathBuf::from(MOUNTINFO),
            }),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Returns the directories and the cgroup id that [`Hierarchy::create`]
    /// would use for `path`, without touching the file system.
    pub fn locate(&self, path: &str) -> Result<(CgroupPaths, String), CgroupError> {
        if let Some(mount) = &self.unified {
            let (cgroup, dir) = mount.locate(path)?;
            return Ok((CgroupPaths::V2 { path: dir }, cgroup));
        }

        let mut dirs = BTreeMap::new();
        let mut id = None;
        for (name, mount) in &self.controllers {
            let (cgroup, dir) = mount.locate(path)?;
            dirs.insert(name.clone(), dir);
            // The memory controller's path is the id because the memory
            // metrics are the ones that monitoring joins on most.
            if name == "memory" || id.is_none() {
                id = Some(cgroup);
            }
        }
        if let Some(hybrid) = &self.hybrid {
            if let Some(dir) = hybrid.locate(path)? {
                dirs.insert(UNIFIED_KEY.to_string(), dir);
            }
        }
        let id = id.unwrap_or_default();
        Ok((CgroupPaths::V1 { controllers: dirs }, id))
    }

    /// Creates a cgroup, with its missing parents, and returns it.
    ///
    /// A relative `path` is placed below the calling process's cgroup (per
    /// controller on v1), an absolute one below the hierarchy root. The
    /// cgroup id is the path from the hierarchy root (of the memory
    /// controller on v1).
    ///
    /// On v1, new cpuset directories get their parent's `cpuset.cpus` and
    /// `cpuset.mems`, because an empty cpuset rejects tasks. On v2, each
    /// ancestor from the calling process's cgroup down enables the cpu,
    /// cpuset, hugetlb, io, memory and pids controllers that it has for its
    /// children. A non-root cgroup with processes may not do that, so when
    /// the calling process is the only process in its own cgroup, it first
    /// moves into the leaf [`SELF_LEAF`] below it. Other processes are never
    /// moved: with any in the way, enabling fails with
    /// [`CgroupError::InternalProcesses`]. A daemon that starts the runtime
    /// as a child process calls [`Hierarchy::delegate`] first.
    pub fn create(&self, path: &str) -> Result<Cgroup, CgroupError> {
        // A parent that another process removes while this one creates below
        // it (the runtime removes an empty default parent on delete) makes a
        // mkdir fail with ENOENT, and creating the path again succeeds.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match &self.unified {
                Some(mount) => self.create_v2(mount, path),
                None => self.create_v1(path),
            };
            match result {
                Err(CgroupError::CreateDir { ref source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempts < CREATE_ATTEMPTS =>
                {
                    tracing::debug!(
                        path,
                        attempts,
                        "a parent cgroup vanished during create, retrying"
                    );
                }
                other => return other,
            }
        }
    }

    fn create_v1(&self, path: &str) -> Result<Cgroup, CgroupError> {
        let (paths, id) = self.locate(path)?;
        let CgroupPaths::V1 { controllers: dirs } = &paths else {
            unreachable!("a v1 hierarchy locates v1 paths");
        };
        // The caller gets no cgroup to remove when a step fails, so the
        // directories created before it are removed here. Directories that
        // existed before are left alone.
        let mut created = BTreeMap::new();
        let result = self.create_v1_dirs(path, dirs, &mut created);
        if let Err(error) = result {
            let partial = Cgroup::open(
                CgroupPaths::V1 {
                    controllers: created,
                },
                id,
            );
            if let Err(removal) = partial.remove() {
                tracing::warn!(cgroup = partial.id(), error = %removal, "failed to remove a partly created cgroup");
            }
            return Err(error);
        }
        Ok(Cgroup::open(paths, id))
    }

    /// Creates the directory of each controller in `dirs`, and the one in
    /// the hybrid mount, recording in `created` each that did not exist.
    fn create_v1_dirs(
        &self,
        path: &str,
        dirs: &BTreeMap<String, PathBuf>,
        created: &mut BTreeMap<String, PathBuf>,
    ) -> Result<(), CgroupError> {
        for (name, dir) in dirs {
            if !dir.exists() {
                created.insert(name.clone(), dir.clone());
            }
            if name == UNIFIED_KEY {
                continue;
            }
            create_dir_all(dir)?;
            if name == "cpuset" {
                let mount = &self.controllers[name];
                let start = match path.starts_with('/') {
                    true => mount.dir_of(&mount.root)?,
                    false => mount.dir_of(&mount.own)?,
                };
                v1::init_cpuset(&start, dir)?;
            }
        }
        if let Some(hybrid) = &self.hybrid {
            if dirs.contains_key(UNIFIED_KEY) {
                hybrid.create(path)?;
            }
        }
        Ok(())
    }

    fn create_v2(&self, mount: &Mount, path: &str) -> Result<Cgroup, CgroupError> {
        let (cgroup, dir) = mount.locate(path)?;

        // Controllers are enabled from the calling process's cgroup down. For
        // an absolute path elsewhere (a configured parent), start at its
        // deepest existing ancestor, which the operator set up.
        let mut current = if is_below(&cgroup, &mount.own) {
            mount.own.clone()
        } else {
            deepest_existing(mount, &cgroup)?
        };
        let rest = cgroup[current.len()..].to_string();
        for component in rest.split('/').filter(|component| !component.is_empty()) {
            let parent = mount.dir_of(&current)?;
            let may_move_self = current == mount.own && current != "/";
            v2::enable_controllers(&parent, may_move_self)?;

            current = join(&current, component);
            let child = mount.dir_of(&current)?;
            v2::create_dir_if_missing(&child)?;
        }
        Ok(Cgroup::open(CgroupPaths::V2 { path: dir }, cgroup))
    }

    /// Prepares the calling process's own cgroup to hold containers, as a
    /// daemon started in a delegated cgroup (systemd's `Delegate=yes`) must
    /// before it starts the runtime, and returns the cgroup path to give the
    /// runtime for `parent`. Call it once, at start.
    ///
    /// On v2 the calling process moves into the leaf [`SELF_LEAF`] below its
    /// own cgroup, which then enables its controllers for its children, and
    /// the result is `parent` below the former own cgroup as an absolute
    /// path. The runtime started from the leaf needs that absolute path,
    /// because a relative one would resolve below the leaf. Other processes
    /// in the own cgroup make enabling fail with
    /// [`CgroupError::InternalProcesses`]. In the root cgroup, which may
    /// contain processes, nothing moves.
    ///
    /// On v1 nothing moves and `parent` comes back unchanged: every
    /// controller has its own path for the process, and the processes it
    /// starts share its cgroups, so the relative path resolves the same for
    /// them.
    pub fn delegate(&mut self, parent: &str) -> Result<String, CgroupError> {
        let (_, cgroup) = self.locate(parent)?;
        let Some(mount) = self.unified.as_mut() else {
            return Ok(parent.to_string());
        };
        if mount.own == "/" {
            return Ok(cgroup);
        }
        let own_dir = mount.dir_of(&mount.own)?;
        v2::move_self_to_leaf(&own_dir)?;
        mount.own = join(&mount.own, SELF_LEAF);
        v2::enable_controllers(&own_dir, false)?;
        Ok(cgroup)
    }

    /// Removes the directory of `path` in every hierarchy if it is empty,
    /// such as a shared parent once its last container is gone. A directory
    /// that still has children or processes, or is already gone, is left
    /// alone without an error.
    pub fn remove_if_empty(&self, path: &str) -> Result<(), CgroupError> {
        let (paths, _) = self.locate(path)?;
        remove_paths_if_empty(&paths)
    }
}

/// Removes each directory of `paths` that is empty, as
/// [`Hierarchy::remove_if_empty`] does for a located path. Use it for a
/// cgroup that another process placed, whose directories a state file
/// records.
pub fn remove_paths_if_empty(paths: &CgroupPaths) -> Result<(), CgroupError> {
    for dir in super::unique_dirs(paths) {
        match fs::remove_dir(dir) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "removed empty cgroup"),
            Err(error) if is_in_use_or_gone(&error) => {}
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Returns the directories that contain those of `paths`, which for a
/// container's cgroup are the directories of its cgroup parent. Returns
/// `None` when a directory of `paths` has no parent.
pub fn parent_paths(paths: &CgroupPaths) -> Option<CgroupPaths> {
    match paths {
        CgroupPaths::V1 { controllers } => {
            let mut parents = BTreeMap::new();
            for (name, dir) in controllers {
                parents.insert(name.clone(), dir.parent()?.to_path_buf());
            }
            Some(CgroupPaths::V1 {
                controllers: parents,
            })
        }
        CgroupPaths::V2 { path } => Some(CgroupPaths::V2 {
            path: path.parent()?.to_path_buf(),
        }),
    }
}

impl HybridMount {
    /// Returns the hybrid mount when the calling process's cgroup in it
    /// enables for its children a controller of [`v2::CONTROLLERS`] that
    /// `v1_controllers` lacks. A missing or unreadable `cgroup.subtree_control`
    /// counts as enabling nothing.
    fn offering(mount: Mount, v1_controllers: &BTreeMap<String, Mount>) -> Option<Self> {
        let Ok(own_dir) = mount.dir_of(&mount.own) else {
            tracing::debug!(
                cgroup = mount.own,
                "the cgroup2 mount does not show the own cgroup"
            );
            return None;
        };
        let control = own_dir.join("cgroup.subtree_control");
        let enabled = fs::read_to_string(&control).unwrap_or_default();
        let adds_controller = enabled
            .split_whitespace()
            .filter(|name| v2::CONTROLLERS.contains(name))
            .any(|name| !v1_controllers.contains_key(name));
        if !adds_controller {
            tracing::debug!(file = %control.display(), "the cgroup2 mount adds no controller to v1");
            return None;
        }
        Some(HybridMount { mount })
    }

    /// Returns the directory for `path` in this mount, or `None` for an
    /// absolute path outside the calling process's cgroup, where the runtime
    /// creates nothing.
    fn locate(&self, path: &str) -> Result<Option<PathBuf>, CgroupError> {
        let cgroup = resolve(path, &self.mount.own)?;
        if !is_below(&cgroup, &self.mount.own) {
            return Ok(None);
        }
        self.mount.dir_of(&cgroup).map(Some)
    }

    /// Creates the directories of `path` below the calling process's cgroup
    /// and enables in each one that gets a child the controllers it has. The
    /// calling process's own cgroup is never written to, because it enables
    /// the controllers already, or the hybrid mount would not be used.
    fn create(&self, path: &str) -> Result<(), CgroupError> {
        let cgroup = resolve(path, &self.mount.own)?;
        let mut current = self.mount.own.clone();
        let rest = cgroup[current.len()..].to_string();
        for component in rest.split('/').filter(|component| !component.is_empty()) {
            if current != self.mount.own {
                let parent = self.mount.dir_of(&current)?;
                v2::enable_controllers(&parent, false)?;
            }
            current = join(&current, component);
            let child = self.mount.dir_of(&current)?;
            v2::create_dir_if_missing(&child)?;
        }
        Ok(())
    }
}

/// Times [`Hierarchy::create`] tries a path whose parent vanishes meanwhile.
const CREATE_ATTEMPTS: u32 = 5;

/// Name of the leaf cgroup that the calling process moves into on v2 when its
/// own cgroup must enable controllers for its children.
///
/// A process started later from that leaf (such as the runtime binary run by
/// the supervisor) detects the leaf as its own cgroup. It must create cgroups
/// by absolute path, such as the one [`Hierarchy::delegate`] returns, because
/// a relative one would sit below the leaf, which contains processes and so
/// cannot enable controllers.
pub const SELF_LEAF: &str = "supervisor";

fn is_in_use_or_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::EBUSY | libc::ENOTEMPTY)
    )
}

fn create_dir_all(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Returns `path` below `own` (relative) or as given (absolute), as a
/// normalized path from the hierarchy root.
fn resolve(path: &str, own: &str) -> Result<String, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let (base, rest) = match path.strip_prefix('/') {
        Some(rest) => ("/", rest),
        None => (own, path),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(invalid("it names no cgroup below the base"));
    }
    for component in rest.split('/') {
        if component.is_empty() {
            return Err(invalid("it contains an empty component"));
        }
        if component == "." || component == ".." {
            return Err(invalid("it contains \".\" or \"..\""));
        }
        if component.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
    }
    Ok(join(base, rest))
}

fn join(base: &str, rest: &str) -> String {
    if base == "/" {
        format!("/{rest}")
    } else {
        format!("{base}/{rest}")
    }
}

/// Returns whether `cgroup` is strictly below `ancestor`.
fn is_below(cgroup: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return cgroup.len() > 1;
    }
    cgroup
        .strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// Returns the deepest ancestor of `cgroup` whose directory exists, starting
/// from the mount's root.
fn deepest_existing(mount: &Mount, cgroup: &str) -> Result<String, CgroupError> {
    let mut current = mount.root.clone();
    let rest = cgroup.strip_prefix(mount.root.as_str()).unwrap_or(cgroup);
    for component in rest.split('/').filter(|component| !component.is_empty()) {
        let next = join(&current, component);
        if next == cgroup || !mount.dir_of(&next)?.is_dir() {
            break;
        }
        current = next;
    }
    Ok(current)
}
