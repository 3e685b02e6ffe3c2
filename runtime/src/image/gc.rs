//! Garbage collection of layers that no image record lists.
//!
//! A layer is kept while a live lease in the store names it (see
//! [`super::lease`]), whatever state root its container has, and while any
//! container under the state roots given to gc stacks it, whatever the
//! container's status. The runtime writes `state.json`, with the overlay
//! lower directories in its annotations, and the leases before it mounts
//! the root, and removes both on `delete`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::digest::Digest;
use super::store::{io_error, Store, StoreError};
use crate::job::annotations;
use crate::state::{ContainerState, STATE_FILE};

/// Outcome of one gc run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Layers removed.
    pub removed: Vec<Digest>,
    /// Bytes of file contents in the removed layers.
    pub freed_bytes: u64,
    /// Layers no image lists that containers still use, with their ids.
    pub kept_in_use: BTreeMap<Digest, Vec<String>>,
    /// Leftover staging directories of interrupted imports removed.
    pub staging_removed: usize,
}

/// Removes every layer that no image lists, no live lease names and no
/// container under `state_roots` uses, and the staging directories of
/// interrupted imports. Stale leases are removed too.
///
/// Holds the store's exclusive lock, so it waits for running imports and
/// an import started meanwhile waits for it.
pub fn collect_garbage(store: &Store, state_roots: &[PathBuf]) -> Result<GcReport, StoreError> {
    let _lock = store.lock_exclusive()?;
    let mut report = GcReport::default();

    let listed: BTreeSet<Digest> = store
        .images()?
        .into_iter()
        .flat_map(|record| record.layers)
        .collect();
    let mut in_use = layers_in_use(store, state_roots)?;
    for (diff_id, holders) in super::lease::live_leases(store)? {
        let ids = in_use.entry(diff_id).or_default();
        for id in holders {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    for diff_id in store.layers()? {
        if listed.contains(&diff_id) {
            continue;
        }
        if let Some(containers) = in_use.get(&diff_id) {
            tracing::info!(layer = %diff_id, ?containers, "keeping an unlisted layer that containers use");
            report.kept_in_use.insert(diff_id, containers.clone());
            continue;
        }
        let size = store.layer(&diff_id).map(|layer| layer.size).unwrap_or(0);
        remove_layer(store, &diff_id)?;
        tracing::info!(layer = %diff_id, bytes = size, "removed an unused layer");
        report.freed_bytes += size;
        report.removed.push(diff_id);
    }

    // No import runs while the exclusive lock is held, so everything
    // under tmp/ is left over from interrupted ones.
    let tmp = store.tmp_dir();
    match fs::read_dir(&tmp) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(io_error("list", &tmp))?.path();
                remove_any(&path)?;
                report.staging_removed += 1;
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("list", &tmp)(error)),
    }
    Ok(report)
}

/// Moves the layer out of `layers/` first, so it disappears at once even
/// if removing its files takes long or fails halfway.
fn remove_layer(store: &Store, diff_id: &Digest) -> Result<(), StoreError> {
    let dir = store.layer_dir(diff_id);
    let doomed = store.tmp_dir().join(format!(
        "remove-{}-{}",
        diff_id.algorithm().name(),
        diff_id.hex()
    ));
    fs::rename(&dir, &doomed).map_err(io_error("move the unused layer out of", &dir))?;
    remove_any(&doomed)
}

fn remove_any(path: &Path) -> Result<(), StoreError> {
    let result = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    };
    result.map_err(io_error("remove", path))
}

/// Maps each store layer that a container's overlay stacks to the ids of
/// those containers.
pub fn layers_in_use(
    store: &Store,
    state_roots: &[PathBuf],
) -> Result<BTreeMap<Digest, Vec<String>>, StoreError> {
    let mut layers_prefixes = vec![store.root().join("layers")];
    if let Ok(canonical) = fs::canonicalize(store.root()) {
        layers_prefixes.push(canonical.join("layers"));
    }
    let mut in_use: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for root in state_roots {
        let entries = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error("list containers in", root)(error)),
        };
        for entry in entries {
            let state_path = entry
                .map_err(io_error("list containers in", root))?
                .path()
                .join(STATE_FILE);
            if !state_path.exists() {
                continue;
            }
            let state = ContainerState::load_path(&state_path).map_err(|source| {
                StoreError::ContainerState {
                    path: state_path.clone(),
                    source,
                }
            })?;
            let Some(lower_dirs) = state.annotations.get(annotations::OVERLAY_LOWERDIRS) else {
                continue;
            };
            for lower in lower_dirs.split(':') {
                let lower = Path::new(lower);
                let candidates =
                    std::iter::once(lower.to_path_buf()).chain(fs::canonicalize(lower).ok());
                let digest = candidates
                    .flat_map(|path| {
                        layers_prefixes
                            .iter()
                            .filter_map(|prefix| layer_of(&path, prefix))
                            .collect::<Vec<_>>()
                    })
                    .next();
                if let Some(digest) = digest {
                    let ids = in_use.entry(digest).or_default();
                    if !ids.contains(&state.id) {
                        ids.push(state.id.clone());
                    }
                }
            }
        }
    }
    Ok(in_use)
}

/// Returns the diff ID of `path` when it is `PREFIX/ALG/HEX/rootfs`.
pub(crate) fn layer_of(path: &Path, prefix: &Path) -> Option<Digest> {
    let rest = path.strip_prefix(prefix).ok()?;
    let parts: Vec<_> = rest
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [algorithm, hex, "rootfs"] => Digest::parse(&format!("{algorithm}:{hex}")).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_of_matches_only_layer_roots() {
        let hex = "a".repeat(64);
        let prefix = Path::new("/store/layers");
        let root = PathBuf::from(format!("/store/layers/sha256/{hex}/rootfs"));
        assert_eq!(
            layer_of(&root, prefix).map(|d| d.to_string()),
            Some(format!("sha256:{hex}"))
        );
        assert!(layer_of(Path::new("/store/layers/sha256"), prefix).is_none());
        assert!(layer_of(Path::new("/"), prefix).is_none());
        let nested = PathBuf::from(format!("/store/layers/sha256/{hex}/rootfs/etc"));
        assert!(layer_of(&nested, prefix).is_none());
    }
}
