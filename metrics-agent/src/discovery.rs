//! Discovery of runtime containers from `RUN_DIR/containers/ID/state.json`.
//!
//! inotify keeps the index up to date. The containers directory is watched
//! for container directories that appear or go, and each container directory
//! for its state file. The runtime replaces that file by renaming
//! `.state.json.tmp` over it (IN_MOVED_TO), and other writers may write it in
//! place (IN_CLOSE_WRITE). Every scrape also rescans the directory cheaply,
//! with one `stat` per container. That rescan picks up an event that inotify
//! missed, and a directory that did not exist at start and so had no watch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use corral_runtime::state::{ContainerState, STATE_FILE};
use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio_stream::StreamExt;

use crate::agent::error_chain;
use crate::read::{ErrorKind, ReadErrors};
use crate::target::{ContainerLabels, Target};

/// An error starting the inotify watcher.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("failed to initialize inotify")]
    Init(#[source] io::Error),
    #[error("failed to read inotify events")]
    Stream(#[source] io::Error),
}

/// Version identity of a state file. A rename gives a new inode, and an
/// in-place write a new modification time or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified_nanoseconds: i128,
    size: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            inode: metadata.ino(),
            modified_nanoseconds: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            size: metadata.size(),
        }
    }
}

struct Entry {
    stamp: Stamp,
    /// The container to export, `None` when this version of the file did
    /// not parse (the error was counted once, and the file is read again
    /// when it changes) or its container is not exported.
    target: Option<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Watched {
    RunDir,
    ContainersDir,
    Container(String),
}

struct WatchSet {
    watches: Watches,
    /// Watches by descriptor id.
    targets: HashMap<i32, (WatchDescriptor, Watched)>,
    /// Descriptor ids by watched directory, so that a rescan checks each
    /// container's watch in constant time.
    ids: HashMap<Watched, i32>,
}

impl WatchSet {
    fn is_watching(&self, watched: &Watched) -> bool {
        self.ids.contains_key(watched)
    }

    fn insert(&mut self, descriptor: WatchDescriptor, watched: Watched) {
        let id = descriptor.get_watch_descriptor_id();
        self.ids.insert(watched.clone(), id);
        self.targets.insert(id, (descriptor, watched));
    }

    /// Forgets the watch with descriptor id `id`, which the kernel dropped.
    fn forget(&mut self, id: i32) {
        if let Some((_, watched)) = self.targets.remove(&id) {
            if self.ids.get(&watched) == Some(&id) {
                self.ids.remove(&watched);
            }
        }
    }
}

#[derive(Default)]
struct Index {
    entries: BTreeMap<String, Entry>,
    watch: Option<WatchSet>,
}

/// In-memory index of the runtime's containers.
pub struct Discovery {
    run_dir: PathBuf,
    containers_dir: PathBuf,
    container_labels: ContainerLabels,
    errors: Arc<ReadErrors>,
    index: Mutex<Index>,
}

const RUN_DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);
const CONTAINERS_DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);
const CONTAINER_DIR_MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::ONLYDIR);

impl Discovery {
    /// Creates an empty index of `run_dir/containers` whose targets carry
    /// the container labels that `container_labels` selects.
    pub fn new(run_dir: &Path, container_labels: ContainerLabels, errors: Arc<ReadErrors>) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
            containers_dir: run_dir.join("containers"),
            container_labels,
            errors,
            index: Mutex::new(Index::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the inotify watcher on the current tokio runtime and fills the
    /// index. The watcher task ends when the runtime shuts down.
    pub fn start(self: &Arc<Self>) -> Result<(), DiscoveryError> {
        let inotify = Inotify::init().map_err(DiscoveryError::Init)?;
        let mut stream = inotify
            .into_event_stream([0u8; 4096])
            .map_err(DiscoveryError::Stream)?;
        self.lock().watch = Some(WatchSet {
            watches: stream.watches(),
            targets: HashMap::new(),
            ids: HashMap::new(),
        });
        self.rescan();

        let discovery = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => discovery.handle_event(event),
                    Err(error) => {
                        tracing::error!(
                            %error,
                            "failed to read inotify events, containers are found by rescans only"
                        );
                        break;
                    }
                }
            }
        });
        Ok(())
    }

    /// Returns the exported targets: containers that are `created`,
    /// `running` or `paused` and have a PID.
    pub fn targets(&self) -> Vec<Target> {
        self.lock()
            .entries
            .values()
            .filter_map(|entry| entry.target.clone())
            .collect()
    }

    /// Ids of every container in the index, exported or not.
    pub fn container_ids(&self) -> Vec<String> {
        self.lock().entries.keys().cloned().collect()
    }

    /// Brings the index up to date with the directory: loads new or changed
    /// state files, drops removed ones and adds missing watches.
    pub fn rescan(&self) {
        let mut index = self.lock();
        self.add_directory_watches(&mut index);

        let listing = match std::fs::read_dir(&self.containers_dir) {
            Ok(listing) => listing,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    self.errors.record(
                        ErrorKind::State,
                        format_args!("failed to list {}: {error}", self.containers_dir.display()),
                    );
                }
                index.entries.clear();
                return;
            }
        };

        let mut present = HashSet::new();
        for entry in listing.flatten() {
            let Some(id) = container_id(entry.file_name()) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            self.add_container_watch(&mut index, &id);
            self.refresh(&mut index, &id);
            present.insert(id);
        }
        index.entries.retain(|id, _| present.contains(id));

        // Watches of directories that went away while the event queue
        // overflowed would otherwise stay mapped and hide a recreated one.
        if let Some(watch) = index.watch.as_mut() {
            let stale: Vec<Watched> = watch
                .ids
                .keys()
                .filter(|watched| match watched {
                    Watched::Container(id) => !present.contains(id),
                    _ => false,
                })
                .cloned()
                .collect();
            for watched in stale {
                remove_watch(watch, &watched);
            }
        }
    }

    /// Reloads one container's state file if it changed since it was read.
    fn refresh(&self, index: &mut Index, id: &str) {
        let path = self.containers_dir.join(id).join(STATE_FILE);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    self.errors.record(
                        ErrorKind::State,
                        format_args!("failed to stat {}: {error}", path.display()),
                    );
                }
                index.entries.remove(id);
                return;
            }
        };

        let stamp = Stamp::of(&metadata);
        if index
            .entries
            .get(id)
            .is_some_and(|entry| entry.stamp == stamp)
        {
            return;
        }
        // The stamp is taken before the read: if the file is replaced in
        // between, the next rescan finds a newer stamp and reads it again.
        let target = match ContainerState::load_path(&path) {
            Ok(state) => Target::from_state(&state, &self.container_labels),
            Err(error) => {
                self.errors.record(ErrorKind::State, error_chain(&error));
                None
            }
        };
        index
            .entries
            .insert(id.to_string(), Entry { stamp, target });
    }

    fn add_directory_watches(&self, index: &mut Index) {
        let Some(watch) = index.watch.as_mut() else {
            return;
        };
        if !watch.is_watching(&Watched::RunDir) && self.run_dir.is_dir() {
            self.add_watch(watch, &self.run_dir, RUN_DIR_MASK, Watched::RunDir);
        }
        if !watch.is_watching(&Watched::ContainersDir) && self.containers_dir.is_dir() {
            self.add_watch(
                watch,
                &self.containers_dir,
                CONTAINERS_DIR_MASK,
                Watched::ContainersDir,
            );
        }
    }

    fn add_container_watch(&self, index: &mut Index, id: &str) {
        let Some(watch) = index.watch.as_mut() else {
            return;
        };
        let watched = Watched::Container(id.to_string());
        if !watch.is_watching(&watched) {
            let dir = self.containers_dir.join(id);
            self.add_watch(watch, &dir, CONTAINER_DIR_MASK, watched);
        }
    }

    fn add_watch(&self, watch: &mut WatchSet, dir: &Path, mask: WatchMask, watched: Watched) {
        match watch.watches.add(dir, mask) {
            Ok(descriptor) => watch.insert(descriptor, watched),
            // The directory went away in the meantime, and a rescan handles that.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => self.errors.record(
                ErrorKind::State,
                format_args!("failed to watch {} with inotify: {error}", dir.display()),
            ),
        }
    }

    fn handle_event(&self, event: Event<OsString>) {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflowed, rescanning the containers directory");
            self.rescan();
            return;
        }

        let mut index = self.lock();
        let descriptor = event.wd.get_watch_descriptor_id();
        if event.mask.contains(EventMask::IGNORED) {
            if let Some(watch) = index.watch.as_mut() {
                watch.forget(descriptor);
            }
            return;
        }
        let Some(watched) = index
            .watch
            .as_ref()
            .and_then(|watch| watch.targets.get(&descriptor))
            .map(|(_, watched)| watched.clone())
        else {
            return;
        };
        let name = event.name.clone();
        let appeared = event
            .mask
            .intersects(EventMask::CREATE | EventMask::MOVED_TO | EventMask::CLOSE_WRITE);
        let removed = event
            .mask
            .intersects(EventMask::DELETE | EventMask::MOVED_FROM);

        match watched {
            Watched::RunDir => {
                if name.as_deref() == Some("containers".as_ref()) && appeared {
                    drop(index);
                    self.rescan();
                }
            }
            Watched::ContainersDir => {
                if event
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    index.entries.clear();
                    if let Some(watch) = index.watch.as_mut() {
                        watch.forget(descriptor);
                    }
                    return;
                }
                let Some(id) = name.and_then(container_id) else {
                    return;
                };
                if appeared {
                    self.add_container_watch(&mut index, &id);
                    self.refresh(&mut index, &id);
                } else if removed {
                    index.entries.remove(&id);
                    if let Some(watch) = index.watch.as_mut() {
                        remove_watch(watch, &Watched::Container(id));
                    }
                }
            }
            Watched::Container(id) => {
                if name.as_deref() == Some(STATE_FILE.as_ref()) && (appeared || removed) {
                    self.refresh(&mut index, &id);
                }
            }
        }
    }
}

/// Stops watching a container directory that was moved away or is no longer
/// listed. A deleted directory loses its kernel watch by itself (IN_IGNORED).
fn remove_watch(watch: &mut WatchSet, watched: &Watched) {
    let Some(id) = watch.ids.remove(watched) else {
        return;
    };
    if let Some((descriptor, _)) = watch.targets.remove(&id) {
        // The kernel may have dropped the watch already, which needs no handling.
        let _ = watch.watches.remove(descriptor);
    }
}

/// Returns the container id of a directory entry, or `None` for hidden and
/// non-UTF-8 names.
fn container_id(name: OsString) -> Option<String> {
    let id = name.into_string().ok()?;
    (!id.starts_with('.')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_are_not_containers() {
        assert_eq!(container_id(".state.json.tmp".into()), None);
        assert_eq!(container_id("web-1".into()), Some("web-1".to_string()));
    }
}
