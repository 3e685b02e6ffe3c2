//! A cgroup to export, with the labels its series carry.

use std::collections::BTreeSet;

use corral_runtime::state::{CgroupPaths, ContainerState, Status};

/// Prefix of the labels made from a container's own labels, as in
/// cAdvisor: the job label `team` becomes `container_label_team`.
pub const CONTAINER_LABEL_PREFIX: &str = "container_label_";

/// Selection of the labels of a container's state file (`labels`, copied
/// from the job file) that its series carry as `container_label_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContainerLabels {
    /// Every label, as cAdvisor's default `--store_container_labels` does.
    #[default]
    All,
    /// None.
    None,
    /// Only the labels with these keys, as cAdvisor's
    /// `--whitelisted_container_labels` does.
    Only(BTreeSet<String>),
}

impl ContainerLabels {
    fn exports(&self, key: &str) -> bool {
        match self {
            ContainerLabels::All => true,
            ContainerLabels::None => false,
            ContainerLabels::Only(keys) => keys.contains(key),
        }
    }
}

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
    /// `container_label_*` label names and their values, sorted by name.
    pub container_labels: Vec<(String, String)>,
    pub cgroup: CgroupPaths,
    /// Host PID of the container's init. The network counters come from its
    /// network namespace, and a container whose init has exited is skipped.
    pub pid: Option<i32>,
    /// Start time in seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

impl Target {
    /// Builds the target of a runtime container, or `None` unless the
    /// container is `created`, `running` or `paused` and has a PID.
    pub fn from_state(state: &ContainerState, labels: &ContainerLabels) -> Option<Self> {
        if !matches!(
            state.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            return None;
        }
        let pid = state.pid?;
        Some(Self {
            id: state.cgroup_id.clone(),
            name: state.job.clone().unwrap_or_else(|| state.id.clone()),
            image: state.image.clone(),
            container_labels: container_labels(state, labels),
            cgroup: state.cgroup_paths.clone(),
            pid: Some(pid),
            start_time: Some(state.created),
        })
    }

    /// Returns every label of the target's series, in the order they are
    /// written.
    pub(crate) fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        [
            ("id", self.id.as_str()),
            ("image", self.image.as_str()),
            ("name", self.name.as_str()),
        ]
        .into_iter()
        .chain(
            self.container_labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
    }
}

/// Returns the `container_label_*` labels of a container. A key becomes a
/// label name with every character outside `[a-zA-Z0-9_]` replaced by `_`,
/// as cAdvisor does. When two keys give the same name, the first key in
/// byte order keeps it and the other is left out with a warning.
fn container_labels(state: &ContainerState, policy: &ContainerLabels) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for (key, value) in &state.labels {
        if !policy.exports(key) {
            continue;
        }
        let name = label_name(key);
        if let Some((_, kept)) = labels.iter().find(|(existing, _)| *existing == name) {
            tracing::warn!(
                container = %state.id,
                key,
                label = %name,
                kept_value = %kept,
                "container label left out: another key of the container has the same label name"
            );
            continue;
        }
        labels.push((name, value.clone()));
    }
    labels.sort();
    labels
}

/// Returns the Prometheus label name of the container label `key`.
pub fn label_name(key: &str) -> String {
    let mut name = String::with_capacity(CONTAINER_LABEL_PREFIX.len() + key.len());
    name.push_str(CONTAINER_LABEL_PREFIX);
    name.extend(key.chars().map(|character| {
        if character.is_ascii_alphanumeric() || character == '_' {
            character
        } else {
            '_'
        }
    }));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_name_replaces_invalid_characters() {
        assert_eq!(label_name("team"), "container_label_team");
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "container_label_app_kubernetes_io_name"
        );
        assert_eq!(label_name("9-lives"), "container_label_9_lives");
        assert_eq!(label_name("été"), "container_label__t_");
    }
}
