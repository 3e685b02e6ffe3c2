//! A cgroup to export, with the labels its series carry.

use corral_runtime::state::{CgroupPaths, ContainerState, Status};

use crate::families::Label;

/// One exported container: a runtime container or, with `--cgroup-root`, a
/// plain cgroup directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The `id` label: the cgroup path from the root of its hierarchy.
    pub id: String,
    /// The `name` label: the job name, or the container id when no job started
    /// it, or the cgroup path for plain cgroups.
    pub name: String,
    /// The `image` label, empty for plain cgroups.
    pub image: String,
    pub cgroup: CgroupPaths,
    /// Host PID of the container's init. The network counters come from its
    /// network namespace, and a container whose init has exited is skipped.
    pub pid: Option<i32>,
    /// Start time in seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

impl Target {
    /// Builds the target of a runtime container, or `None` unless the
    /// container is `created` or `running` and has a PID.
    pub fn from_state(state: &ContainerState) -> Option<Self> {
        if !matches!(state.status, Status::Created | Status::Running) {
            return None;
        }
        let pid = state.pid?;
        Some(Self {
            id: state.cgroup_id.clone(),
            name: state.job.clone().unwrap_or_else(|| state.id.clone()),
            image: state.image.clone(),
            cgroup: state.cgroup_paths.clone(),
            pid: Some(pid),
            start_time: Some(state.created),
        })
    }

    pub(crate) fn labels(&self) -> Vec<Label> {
        vec![
            ("id", self.id.clone()),
            ("name", self.name.clone()),
            ("image", self.image.clone()),
        ]
    }
}
