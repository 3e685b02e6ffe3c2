//! `--cgroup-root PATH`: export every cgroup directory from PATH down, not
//! only the runtime's containers.
//!
//! On v1, PATH lies in one controller's hierarchy (`/sys/fs/cgroup/memory/x`).
//! The same relative path below every other v1 controller mount gives that
//! cgroup's other directories. On v2, PATH is a directory of the unified
//! hierarchy. The mount table comes from `PROC/self/mountinfo`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use corral_runtime::state::CgroupPaths;
use procfs::process::{MountInfo, MountInfos};
use procfs::FromRead;

use crate::target::Target;

/// v1 controllers whose files the agent reads.
const CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

/// An error resolving `--cgroup-root` or walking below it.
#[derive(Debug, thiserror::Error)]
pub enum CgroupRootError {
    #[error("failed to read the mount table {path}")]
    MountTable {
        path: PathBuf,
        #[source]
        source: procfs::ProcError,
    },
    #[error("cgroup root {path} is not on a cgroup or cgroup2 mount")]
    NotCgroup { path: PathBuf },
    #[error("failed to list cgroup directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A cgroup mount from the mount table.
#[derive(Debug, Clone)]
struct CgroupMount {
    mount_point: PathBuf,
    /// The cgroup that the mount shows at its mount point, `/` outside a
    /// cgroup namespace.
    root: PathBuf,
    /// v1 controllers of the mount, empty for cgroup2.
    controllers: Vec<String>,
    unified: bool,
}

impl CgroupMount {
    fn from_mount_info(info: &MountInfo) -> Option<Self> {
        let unified = match info.fs_type.as_str() {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        let controllers = CONTROLLERS
            .iter()
            .filter(|name| info.super_options.contains_key(**name))
            .map(|name| name.to_string())
            .collect();
        Some(Self {
            mount_point: info.mount_point.clone(),
            root: PathBuf::from(&info.root),
            controllers,
            unified,
        })
    }
}

/// The hierarchy that `--cgroup-root` points into.
#[derive(Debug)]
pub struct CgroupRoot {
    path: PathBuf,
    /// Mount of the hierarchy PATH is in.
    primary: CgroupMount,
    /// Every v1 mount with a controller the agent reads.
    v1_mounts: Vec<CgroupMount>,
}

impl CgroupRoot {
    /// Finds the mount of `path` in `proc_root/self/mountinfo`.
    pub fn resolve(path: &Path, proc_root: &Path) -> Result<Self, CgroupRootError> {
        let table = proc_root.join("self/mountinfo");
        let infos =
            MountInfos::from_file(&table).map_err(|source| CgroupRootError::MountTable {
                path: table.clone(),
                source,
            })?;
        let mounts: Vec<CgroupMount> = infos
            .0
            .iter()
            .filter_map(CgroupMount::from_mount_info)
            .collect();

        // The longest mount point that contains the path is its mount.
        let primary = mounts
            .iter()
            .filter(|mount| path.starts_with(&mount.mount_point))
            .max_by_key(|mount| mount.mount_point.components().count())
            .cloned()
            .ok_or_else(|| CgroupRootError::NotCgroup {
                path: path.to_path_buf(),
            })?;
        let v1_mounts = mounts
            .into_iter()
            .filter(|mount| !mount.unified && !mount.controllers.is_empty())
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            primary,
            v1_mounts,
        })
    }

    /// Lists PATH and every cgroup directory below it as targets.
    pub fn targets(&self) -> Result<Vec<Target>, CgroupRootError> {
        let mut directories = Vec::new();
        walk(&self.path, true, &mut directories)?;
        Ok(directories
            .iter()
            .filter_map(|dir| self.target(dir))
            .collect())
    }

    fn target(&self, dir: &Path) -> Option<Target> {
        let relative = dir.strip_prefix(&self.primary.mount_point).ok()?;
        let cgroup_path = cgroup_path(&self.primary.root, relative);

        let cgroup = if self.primary.unified {
            CgroupPaths::V2 {
                path: dir.to_path_buf(),
            }
        } else {
            let mut controllers = BTreeMap::new();
            for mount in &self.v1_mounts {
                let Ok(below_root) = Path::new(&cgroup_path).strip_prefix(&mount.root) else {
                    continue;
                };
                let candidate = mount.mount_point.join(below_root);
                if candidate.is_dir() {
                    for controller in &mount.controllers {
                        controllers.insert(controller.clone(), candidate.clone());
                    }
                }
            }
            CgroupPaths::V1 { controllers }
        };

        Some(Target {
            id: cgroup_path.clone(),
            name: cgroup_path,
            image: String::new(),
            container_labels: Vec::new(),
            // NOTE: cgroupfs records no creation time. A control file's mtime
            // is when its inode was last instantiated in memory and a
            // directory's changes with its children (seen on Linux 6.18), so
            // plain cgroups get no container_start_time_seconds.
            start_time: None,
            cgroup,
            pid: None,
        })
    }
}

/// Joins the mount's root and the path below the mount point into the
/// cgroup path that `/proc/PID/cgroup` would show, such as `/system.slice/x`.
fn cgroup_path(root: &Path, relative: &Path) -> String {
    let mut path = PathBuf::from("/");
    for component in root.join(relative).components() {
        if let Component::Normal(name) = component {
            path.push(name);
        }
    }
    path.to_string_lossy().into_owned()
}

/// Appends `dir` and every directory below it, parents before children.
fn walk(dir: &Path, top: bool, directories: &mut Vec<PathBuf>) -> Result<(), CgroupRootError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A cgroup removed during the walk is simply not exported.
        Err(error) if error.kind() == io::ErrorKind::NotFound && !top => return Ok(()),
        Err(source) => {
            return Err(CgroupRootError::List {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    directories.push(dir.to_path_buf());
    let mut children: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    children.sort();
    for child in children {
        walk(&child, false, directories)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_path_from_root_mount() {
        assert_eq!(cgroup_path(Path::new("/"), Path::new("a/b")), "/a/b");
        assert_eq!(cgroup_path(Path::new("/"), Path::new("")), "/");
    }

    #[test]
    fn cgroup_path_inside_cgroup_namespace() {
        assert_eq!(
            cgroup_path(Path::new("/process_api/x"), Path::new("job")),
            "/process_api/x/job"
        );
    }
}
