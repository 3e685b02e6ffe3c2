//! Cgroup v1 and v2: locating the hierarchies, creating a container's cgroup
//! below the calling process's own, writing OCI resource limits, and
//! freezing, killing and removing.
//!
//! The cgroups-rs crate is not used because it assumes the hierarchies are at
//! `/sys/fs/cgroup`, so it cannot run on a temp tree in unit tests. It also
//! does not place a cgroup below the calling process's own cgroup per v1
//! controller, where a process may be at `/a/b` for memory but at `/` for cpu.
//!
//! A hybrid host (v1 controllers plus a cgroup2 mount with few or no
//! controllers) counts as v1. A controller that only its cgroup2 mount
//! offers, such as hugetlb, goes through a container cgroup there, at the
//! same path below the calling process's cgroup in that mount.

mod bpf;
mod cgroup;
mod common;
mod devices;
mod error;
mod files;
mod hierarchy;
mod mountinfo;
pub use mountinfo::{host_cgroup_mounts, HostCgroupMount};
mod v1;
mod v2;

#[cfg(test)]
mod tests;
/// Helpers for tests that decide device accesses in a real cgroup.
#[cfg(test)]
pub(crate) use devices::tests::kernel as device_tests;

use std::path::{Path, PathBuf};

pub use crate::state::CgroupPaths;
pub use cgroup::Cgroup;
pub(crate) use devices::compact_rules as compact_device_rules;
pub use error::CgroupError;
pub use hierarchy::{parent_paths, remove_paths_if_empty, Hierarchy, SELF_LEAF, UNIFIED_KEY};

/// Cgroup version that the host's limits go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// Returns each distinct directory of `paths` once; co-mounted v1
/// controllers such as `cpu,cpuacct` share one.
fn unique_dirs(paths: &CgroupPaths) -> Vec<&Path> {
    match paths {
        CgroupPaths::V1 { controllers } => {
            let mut dirs: Vec<&Path> = controllers.values().map(PathBuf::as_path).collect();
            dirs.sort();
            dirs.dedup();
            dirs
        }
        CgroupPaths::V2 { path } => vec![path.as_path()],
    }
}
