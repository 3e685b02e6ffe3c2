//! Leases: records in the store of the containers that stack its layers.
//!
//! The runtime writes `STORE/leases/ID-HASH.json` for every container whose
//! overlay stacks layers of the store, before the overlay is mounted, and
//! removes it on `delete`. gc keeps every layer that a live lease names,
//! whatever state root (`corral --root`) the container was created with.
//! A lease is stale, and gc removes it, when the container's state
//! directory is gone or its init has exited. A lease records the state
//! directory and the init's PID and start time to tell.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::{Algorithm, Digest};
use super::store::{io_error, Store, StoreError};
use crate::state::{ContainerState, STATE_FILE};

/// Name of the directory of leases inside a store.
const LEASES_DIR: &str = "leases";

/// The container that holds a lease (or another claim on a directory),
/// with what it takes to tell whether it still exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    /// Absolute state directory, `ROOT/ID`.
    pub state_dir: PathBuf,
    /// `created` of the container's state, which distinguishes this
    /// container from a later one with the same id and state directory.
    pub created: f64,
    /// PID of the container's init once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<i32>,
    /// Start time of the init in clock ticks after boot (field 22 of
    /// `/proc/PID/stat`), which distinguishes it from a later process of that
    /// PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_start_ticks: Option<u64>,
}

impl Holder {
    /// Describes the container of `state`, created in `root`, whose init
    /// does not exist yet.
    pub fn of_state(root: &Path, state: &ContainerState) -> Self {
        Holder {
            id: state.id.clone(),
            state_dir: state_dir(root, &state.id),
            created: state.created,
            init_pid: None,
            init_start_ticks: None,
        }
    }

    /// Records the container's init, reading its start time.
    pub fn set_init(&mut self, pid: i32) {
        self.init_pid = Some(pid);
        self.init_start_ticks = process_start_ticks(pid);
    }

    /// Returns whether the container's state still exists: until `delete`,
    /// whatever its status.
    pub fn exists(&self) -> bool {
        let state_file = self.state_dir.join(STATE_FILE);
        match ContainerState::load_path(&state_file) {
            Ok(state) => state.id == self.id && state.created == self.created,
            // The runtime writes the state after its claims and leases, so
            // a create in progress has a state directory without it.
            // NOTE: so does a runtime killed before it saved the state, and
            // its lease stays live until that directory is removed by hand.
            Err(_) => self.state_dir.is_dir() && !state_file.exists(),
        }
    }

    /// Returns whether the container may still have its root mounted: it
    /// exists, and its init is still running or has not been started yet.
    pub fn is_live(&self) -> bool {
        if !self.exists() {
            return false;
        }
        match (self.init_pid, self.init_start_ticks) {
            (Some(_), _) => self.init_runs(),
            (None, _) => true,
        }
    }

    /// Returns whether the container may still use a directory it claimed:
    /// its state exists, or its recorded init still runs without it.
    pub fn may_use_directory(&self) -> bool {
        self.exists() || self.init_runs()
    }

    /// Returns whether the recorded init still runs, whatever became of the
    /// container's state. False when no init was recorded.
    pub fn init_runs(&self) -> bool {
        match (self.init_pid, self.init_start_ticks) {
            (Some(pid), Some(ticks)) => process_start_ticks(pid) == Some(ticks),
            (Some(pid), None) => process_start_ticks(pid).is_some(),
            (None, _) => false,
        }
    }
}

/// Returns the absolute state directory of container `id` in `root`.
pub fn state_dir(root: &Path, id: &str) -> PathBuf {
    let dir = root.join(id);
    fs::canonicalize(&dir)
        .or_else(|_| std::path::absolute(&dir))
        .unwrap_or(dir)
}

/// Returns the start time of a process that is alive and not a zombie.
fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses, so the fields
    // are counted from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// `STORE/leases/NAME.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Lease {
    holder: Holder,
    /// Diff IDs of the layers the container stacks.
    layers: Vec<Digest>,
}

/// The leases one container holds, one per store its overlay stacks.
#[derive(Debug, Default)]
pub struct Leases {
    /// Each lease file with the layers it names.
    files: Vec<(PathBuf, Vec<Digest>)>,
}

impl Leases {
    /// Writes a lease for `holder` in every store that a directory of
    /// `lower_dirs` (colon-separated, as in the overlay annotation) belongs
    /// to, and checks under the store's lock that the layers are present,
    /// so a gc that ran first is noticed here and one that runs later finds
    /// the lease. Directories outside any store need no lease.
    pub fn acquire(lower_dirs: &str, holder: &Holder) -> Result<Leases, StoreError> {
        let mut leases = Leases::default();
        for (store, layers) in layers_by_store(lower_dirs) {
            let _lock = store.lock_shared()?;
            let path = lease_path(&store, holder);
            let lease = Lease {
                holder: holder.clone(),
                layers: layers.clone(),
            };
            write_lease(&path, &lease)?;
            leases.files.push((path, layers.clone()));
            for diff_id in &layers {
                if !store.has_layer(diff_id) {
                    leases.release();
                    return Err(StoreError::LayerMissing {
                        image: holder.id.clone(),
                        digest: diff_id.clone(),
                        store: store.root().to_path_buf(),
                    });
                }
            }
        }
        Ok(leases)
    }

    /// Rewrites every lease with `holder`, once its init is known.
    pub fn update(&self, holder: &Holder) -> Result<(), StoreError> {
        for (path, layers) in &self.files {
            let lease = Lease {
                holder: holder.clone(),
                layers: layers.clone(),
            };
            write_lease(path, &lease)?;
        }
        Ok(())
    }

    /// Removes the lease files; files already gone are fine.
    pub fn release(&mut self) {
        for (path, _) in self.files.drain(..) {
            remove_lease(&path);
        }
    }
}

/// Removes the leases of the container `id` in `root` from every store that
/// `lower_dirs` belongs to, as `delete` does.
pub fn release(lower_dirs: &str, root: &Path, id: &str) {
    let holder_dir = state_dir(root, id);
    for (store, _) in layers_by_store(lower_dirs) {
        remove_lease(&lease_path_for(&store, id, &holder_dir));
    }
}

fn remove_lease(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(lease = %path.display(), %error, "failed to remove a layer lease")
        }
    }
}

/// Maps each layer that a live lease of `store` names to the ids of the
/// holders, and removes stale leases. The caller holds the store's
/// exclusive lock, so no lease is being written meanwhile.
pub fn live_leases(store: &Store) -> Result<BTreeMap<Digest, Vec<String>>, StoreError> {
    let dir = store.root().join(LEASES_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(io_error("list leases in", &dir)(error)),
    };
    let mut in_use: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(io_error("list leases in", &dir))?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let body = match fs::read(&path) {
            Ok(body) => body,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error("read lease", &path)(error)),
        };
        // An unreadable lease fails gc, which must not guess that its
        // layers are free.
        let lease: Lease = serde_json::from_slice(&body).map_err(|source| StoreError::Record {
            path: path.clone(),
            source,
        })?;
        if !lease.holder.is_live() {
            tracing::info!(lease = %path.display(), container = %lease.holder.id, "removing a stale layer lease");
            remove_lease(&path);
            continue;
        }
        for diff_id in lease.layers {
            let ids = in_use.entry(diff_id).or_default();
            if !ids.contains(&lease.holder.id) {
                ids.push(lease.holder.id.clone());
            }
        }
    }
    Ok(in_use)
}

fn lease_path(store: &Store, holder: &Holder) -> PathBuf {
    lease_path_for(store, &holder.id, &holder.state_dir)
}

/// Names a lease after the container id and a hash of its state directory,
/// so containers of one id under different state roots get their own.
fn lease_path_for(store: &Store, id: &str, state_dir: &Path) -> PathBuf {
    let hash = Digest::of_bytes(Algorithm::Sha256, state_dir.as_os_str().as_encoded_bytes());
    store
        .root()
        .join(LEASES_DIR)
        .join(format!("{id}-{}.json", &hash.hex()[..16]))
}

/// Writes `lease` through a temporary file and a rename.
fn write_lease(path: &Path, lease: &Lease) -> Result<(), StoreError> {
    let dir = path.parent().expect("a lease path has a directory");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create lease directory", dir))?;
    let temporary = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(lease).expect("lease serializes to JSON");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(&body))
        .map_err(io_error("write lease", &temporary))?;
    fs::rename(&temporary, path).map_err(io_error("write lease", path))
}

/// Groups the store layers among `lower_dirs` by store. A store layer
/// directory is `STORE/layers/ALG/HEX/rootfs`.
fn layers_by_store(lower_dirs: &str) -> Vec<(Store, Vec<Digest>)> {
    let mut stores: BTreeMap<PathBuf, BTreeSet<Digest>> = BTreeMap::new();
    for lower in lower_dirs.split(':').filter(|dir| !dir.is_empty()) {
        let path = Path::new(lower);
        let Some(root) = path.ancestors().nth(4) else {
            continue;
        };
        let Some(diff_id) = super::gc::layer_of(path, &root.join("layers")) else {
            continue;
        };
        stores
            .entry(root.to_path_buf())
            .or_default()
            .insert(diff_id);
    }
    stores
        .into_iter()
        .map(|(root, layers)| (Store::new(root), layers.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_group_by_store() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let lower = format!(
            "/s1/layers/sha256/{a}/rootfs:/s2/layers/sha256/{b}/rootfs:/:/s1/layers/sha256/{b}/rootfs"
        );
        let grouped: Vec<(PathBuf, Vec<String>)> = layers_by_store(&lower)
            .into_iter()
            .map(|(store, layers)| {
                let layers = layers.iter().map(|d| d.hex().to_string()).collect();
                (store.root().to_path_buf(), layers)
            })
            .collect();
        assert_eq!(
            grouped,
            [
                (PathBuf::from("/s1"), vec![a.clone(), b.clone()]),
                (PathBuf::from("/s2"), vec![b.clone()]),
            ]
        );
    }

    #[test]
    fn lease_names_differ_by_state_root() {
        let store = Store::new("/store");
        let first = lease_path_for(&store, "web", Path::new("/run/a/web"));
        let second = lease_path_for(&store, "web", Path::new("/run/b/web"));
        assert_ne!(first, second);
        assert!(first.starts_with("/store/leases"));
    }

    #[test]
    fn holder_without_state_is_stale() {
        let scratch = tempfile::tempdir().unwrap();
        let holder = Holder {
            id: "gone".to_string(),
            state_dir: scratch.path().join("gone"),
            created: 1.0,
            init_pid: Some(std::process::id() as i32),
            init_start_ticks: process_start_ticks(std::process::id() as i32),
        };
        assert!(!holder.exists());
        assert!(!holder.is_live());
    }

    #[test]
    fn own_process_has_start_ticks() {
        let own = std::process::id() as i32;
        assert!(process_start_ticks(own).is_some());
        assert_eq!(process_start_ticks(own), process_start_ticks(own));
    }
}
