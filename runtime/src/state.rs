//! The runtime's on-disk state: `ROOT/ID/state.json`, the OCI `state` output
//! plus the fields that corral's supervisor and metrics agent need.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the state file inside a container's state directory.
pub const STATE_FILE: &str = "state.json";

/// OCI runtime-spec version that `state` reports.
pub const OCI_VERSION: &str = "1.2.0";

/// Lifecycle status as the OCI runtime-spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    /// Frozen by `pause`; runc reports the same extra status.
    Paused,
    Stopped,
}

/// Cgroup directories of one container, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum CgroupPaths {
    /// One directory per v1 controller, keyed by controller name
    /// (`memory`, `cpu`, `cpuacct`, `pids`, `blkio`, `cpuset`, `freezer`, ...).
    /// On a hybrid host the key `unified` (`cgroups::UNIFIED_KEY`) names the
    /// directory in the cgroup2 mount for controllers that v1 lacks.
    V1 {
        controllers: BTreeMap<String, PathBuf>,
    },
    /// The container's directory in the unified hierarchy.
    V2 { path: PathBuf },
}

/// Contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// Host PID of the container's init, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: f64,
    /// The container's cgroup, from the root of its hierarchy
    /// (`/system.slice/corral/web-1f2e`); the metrics' `id` label.
    pub cgroup_id: String,
    pub cgroup_paths: CgroupPaths,
    /// Job name when the supervisor started the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Image the root was built from (`host`, a store name or a path).
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Absolute path of the container's root filesystem on the host.
    pub rootfs: PathBuf,
    /// Per-container directory holding `upper/`, `work/` and `merged/`
    /// when the runtime built the root as overlayfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_dir: Option<PathBuf>,
    /// Whether config.json has poststart or poststop hooks, which the
    /// runtime then reads config.json again to run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub late_hooks: bool,
}

/// An error reading or writing a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {id:?} does not exist (no {path})")]
    NotFound { id: String, path: PathBuf },
    #[error("failed to read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid state file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerState {
    /// Reads `ROOT/ID/state.json`.
    pub fn load(root: &Path, id: &str) -> Result<Self, StateError> {
        let path = root.join(id).join(STATE_FILE);
        Self::load_path(&path).map_err(|error| match error {
            StateError::Read { source, path } if source.kind() == std::io::ErrorKind::NotFound => {
                StateError::NotFound {
                    id: id.to_string(),
                    path,
                }
            }
            other => other,
        })
    }

    /// Reads a state file by path.
    pub fn load_path(path: &Path) -> Result<Self, StateError> {
        let text = fs::read(path).map_err(|source| StateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes `ROOT/ID/state.json` through a temporary file and a rename, so a
    /// reader sees the old or the new state and never a partial one.
    pub fn save(&self, root: &Path) -> Result<(), StateError> {
        let dir = root.join(&self.id);
        let path = dir.join(STATE_FILE);
        let temporary = dir.join(".state.json.tmp");
        let write_error = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut file = fs::File::create(&temporary).map_err(write_error)?;
        let body = serde_json::to_vec_pretty(self).expect("state serializes to JSON");
        file.write_all(&body).map_err(write_error)?;
        fs::rename(&temporary, &path).map_err(write_error)?;
        Ok(())
    }

    /// The OCI `state` output: only the fields the runtime-spec defines.
    pub fn oci_view(&self) -> serde_json::Value {
        let mut view = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        if let Some(pid) = self.pid {
            view["pid"] = pid.into();
        }
        view
    }
}

/// How a container's process ended, written by the shim to the exit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub id: String,
    /// Exit code, or 128 plus the signal number when a signal ended it.
    pub status: i32,
    /// Signal name (`SIGKILL`) when a signal ended the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// OOM kills counted in the container's cgroup during its life.
    #[serde(default)]
    pub oom_kills: u64,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    pub finished_at: f64,
}
