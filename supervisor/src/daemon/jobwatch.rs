//! Reloads job files when they change: inotify on the jobs directory and on
//! every `NAME.json.d` drop-in directory, debounced so that an editor's
//! burst of writes, renames and deletes causes one reload.
//!
//! Only finished writes count (close after write, rename into place,
//! delete), so a reload never reads a file an editor is still writing.
//! Names the config loader ignores (dot files, `~`, `.swp`, `.tmp`) are
//! skipped here too.
//!
//! An inotify watch follows the directory inode, not its path. Deploys that
//! replace the jobs directory as a whole (`mv jobs.new jobs`, delete and
//! recreate, or repoint a symbolic link with `ln -sfn`) would leave the
//! watch on the old directory. So the parent directory is watched too, for
//! entries named like the jobs directory, and a replaced jobs directory is
//! watched afresh and reloaded.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::daemon::{error_chain, Event, SharedJobsDirLock};

/// Quiet time after the last change before the reload runs.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest delay between the first change of a burst and its reload, so
/// that changes apply within a second even while files keep changing.
pub const MAX_DELAY: Duration = Duration::from_millis(800);

const DROPIN_SUFFIX: &str = ".json.d";

/// The symbolic link that the kubelet renames into place to update a
/// ConfigMap or Secret volume at once. The visible files are symbolic links
/// through it.
const KUBERNETES_DATA_LINK: &str = "..data";

/// An error setting up the watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("failed to initialise inotify")]
    Init(#[source] std::io::Error),
    #[error("failed to watch {path}")]
    Add {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Events of the jobs directory and its drop-in directories.
fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CREATE
        | WatchMask::ATTRIB
}

/// Events of the jobs directory itself being deleted or renamed away.
fn self_mask() -> WatchMask {
    WatchMask::DELETE_SELF | WatchMask::MOVE_SELF
}

/// Events of the parent directory that replace or remove the jobs directory
/// entry, whether that entry is a directory or a symbolic link.
fn parent_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::ONLYDIR
}

/// Device and inode number of a directory, which differ once a directory
/// is replaced even though its path stays the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirIdentity {
    device: u64,
    inode: u64,
}

/// Returns the identity of the directory at `path`, following symbolic
/// links, or `None` when the path is missing or not a directory.
fn dir_identity(path: &Path) -> Option<DirIdentity> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_dir() {
        return None;
    }
    Some(DirIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

/// Starts watching `jobs_dir`. The task sends [`Event::Reload`] once per
/// burst of changes and ends when the supervisor task is gone.
pub fn spawn(
    jobs_dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
    lock: Option<SharedJobsDirLock>,
) -> Result<JoinHandle<()>, WatchError> {
    let inotify = Inotify::init().map_err(WatchError::Init)?;
    let mut watcher = Watcher::new(inotify.watches(), jobs_dir, lock);
    watcher.watch_parent();
    watcher.watch_jobs_dir()?;
    let stream = inotify
        .into_event_stream(vec![0u8; 16 * 1024])
        .map_err(WatchError::Init)?;
    Ok(tokio::spawn(watch_loop(stream, watcher, events)))
}

fn add_watch(
    watches: &mut Watches,
    path: &Path,
    mask: WatchMask,
) -> Result<WatchDescriptor, WatchError> {
    watches.add(path, mask).map_err(|source| WatchError::Add {
        path: path.to_path_buf(),
        source,
    })
}

fn is_dropin_dir(path: &Path) -> bool {
    path.is_dir()
        && path
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|name| name.ends_with(DROPIN_SUFFIX))
}

/// The watches of one jobs directory: its parent, the directory itself and
/// its drop-in directories.
struct Watcher {
    watches: Watches,
    jobs_dir: PathBuf,
    /// The parent directory of `jobs_dir` and the name of `jobs_dir` in it.
    /// `None` for a path without a final name, such as `/`.
    parent: Option<(PathBuf, OsString)>,
    parent_watch: Option<WatchDescriptor>,
    /// The watch on the jobs directory and the identity of the directory
    /// it is on, or `None` while the jobs directory is missing.
    root: Option<(WatchDescriptor, DirIdentity)>,
    dropins: HashMap<WatchDescriptor, PathBuf>,
    /// Whether the absence of the jobs directory has been logged since it
    /// was last watched.
    missing_logged: bool,
    /// The lock that keeps a second supervisord off the jobs directory,
    /// moved to a replaced directory as soon as it is watched.
    lock: Option<SharedJobsDirLock>,
}

impl Watcher {
    fn new(watches: Watches, jobs_dir: PathBuf, lock: Option<SharedJobsDirLock>) -> Self {
        let parent = jobs_dir.file_name().map(|name| {
            let parent = match jobs_dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (parent, name.to_os_string())
        });
        Self {
            watches,
            jobs_dir,
            parent,
            parent_watch: None,
            root: None,
            dropins: HashMap::new(),
            missing_logged: false,
            lock,
        }
    }

    /// Watches the parent directory, so that a replaced jobs directory is
    /// noticed. Without it, changes still apply until the jobs directory is
    /// replaced, so a failure is logged and not returned.
    // NOTE: only the entry of the jobs directory in its parent is watched.
    // A replaced parent, or a repointed symbolic link elsewhere on the path,
    // goes unnoticed unless the old jobs directory is moved or deleted.
    fn watch_parent(&mut self) {
        let Some((parent, _)) = &self.parent else {
            return;
        };
        match add_watch(&mut self.watches, parent, parent_mask()) {
            Ok(descriptor) => self.parent_watch = Some(descriptor),
            Err(error) => tracing::warn!(
                %error,
                "failed to watch the parent of the jobs directory; a replaced jobs directory is not noticed"
            ),
        }
    }

    /// Watches the jobs directory and its drop-in directories.
    fn watch_jobs_dir(&mut self) -> Result<(), WatchError> {
        // The identity is read before the watch is added. A directory
        // swapped in between is then watched under the old identity, and
        // the parent event of the swap finds the mismatch and watches the
        // directory again.
        let identity = dir_identity(&self.jobs_dir).ok_or_else(|| WatchError::Add {
            path: self.jobs_dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing or not a directory"),
        })?;
        let descriptor = add_watch(
            &mut self.watches,
            &self.jobs_dir,
            mask() | self_mask() | WatchMask::ONLYDIR,
        )?;
        self.root = Some((descriptor, identity));
        self.rewatch_dropin_dirs();
        Ok(())
    }

    fn watch_dropin_dir(&mut self, path: PathBuf) {
        if !is_dropin_dir(&path) {
            return;
        }
        match add_watch(&mut self.watches, &path, mask()) {
            Ok(descriptor) => {
                self.dropins.insert(descriptor, path);
            }
            Err(error) => tracing::warn!(%error, "failed to watch a drop-in directory"),
        }
    }

    fn rewatch_dropin_dirs(&mut self) {
        for (descriptor, _) in self.dropins.drain() {
            let _ = self.watches.remove(descriptor);
        }
        if let Ok(entries) = std::fs::read_dir(&self.jobs_dir) {
            for entry in entries.flatten() {
                self.watch_dropin_dir(entry.path());
            }
        }
    }

    /// Removes the watches of the jobs directory and its drop-in
    /// directories, so that edits of a directory moved away do not count.
    fn unwatch_jobs_dir(&mut self) {
        // Removing the watch of a deleted directory fails, because the
        // kernel removed that watch already.
        if let Some((descriptor, _)) = self.root.take() {
            let _ = self.watches.remove(descriptor);
        }
        for (descriptor, _) in self.dropins.drain() {
            let _ = self.watches.remove(descriptor);
        }
    }

    /// Compares the directory at the jobs directory path with the watched
    /// one, and watches it afresh when it was replaced. Returns whether the
    /// watched directory went away or a new one is watched, because both
    /// need a check after the debounce period.
    ///
    /// A directory that went away is logged by that check, not here,
    /// because a deploy renames the old directory away and then the new one
    /// into place.
    fn refresh(&mut self) -> bool {
        let current = dir_identity(&self.jobs_dir);
        let watched = self.root.as_ref().map(|(_, identity)| *identity);
        if current.is_some() && current == watched {
            return false;
        }
        let was_watched = watched.is_some();
        self.unwatch_jobs_dir();
        if current.is_none() {
            return was_watched;
        }
        let dir = self.jobs_dir.display().to_string();
        match self.watch_jobs_dir() {
            Ok(()) => {
                self.missing_logged = false;
                tracing::info!(%dir, "watching the replaced jobs directory");
                self.follow_lock();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "failed to watch the replaced jobs directory; changes apply on SIGHUP or update only");
                false
            }
        }
    }

    /// Moves the jobs directory lock to the directory now watched, at once
    /// rather than at the reload, so a second supervisord that starts
    /// meanwhile finds it locked. A failure is reported again by the
    /// reload, which then loads nothing from the directory.
    fn follow_lock(&self) {
        let Some(lock) = &self.lock else {
            return;
        };
        let followed = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .follow();
        match followed {
            Ok(true) => {
                tracing::info!(dir = %self.jobs_dir.display(), "locked the replaced jobs directory")
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(dir = %self.jobs_dir.display(), error = %error_chain(&error), "failed to lock the replaced jobs directory")
            }
        }
    }

    /// Handles one event and returns whether it changes the job files.
    fn handle(&mut self, event: inotify::Event<OsString>) -> bool {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            // Events were lost, possibly one that replaced the directory.
            tracing::warn!("the inotify queue overflowed; reloading job files");
            if !self.refresh() && self.root.is_some() {
                self.rewatch_dropin_dirs();
            }
            return true;
        }

        if self.parent_watch.as_ref() == Some(&event.wd) {
            return self.handle_parent(event);
        }

        let is_root = self
            .root
            .as_ref()
            .is_some_and(|(descriptor, _)| *descriptor == event.wd);
        let self_events = EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED;
        if is_root && event.mask.intersects(self_events) {
            return self.refresh();
        }
        if event.mask.contains(EventMask::IGNORED) {
            self.dropins.remove(&event.wd);
            return false;
        }

        // Events still queued for watches removed by `unwatch_jobs_dir`
        // come from a directory that is no longer the jobs directory.
        let dir = if is_root {
            self.jobs_dir.clone()
        } else if let Some(dir) = self.dropins.get(&event.wd) {
            dir.clone()
        } else {
            return false;
        };
        match event.name.as_deref() {
            Some(name) => self.handle_entry(is_root, &dir, name, event.mask),
            None => false,
        }
    }

    /// Handles an event of the entry `name` in `dir`, which is the jobs
    /// directory when `is_root` is set and a drop-in directory otherwise.
    fn handle_entry(&mut self, is_root: bool, dir: &Path, name: &OsStr, mask: EventMask) -> bool {
        let appeared = mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
        if is_root && appeared && name == KUBERNETES_DATA_LINK {
            // The job files and drop-in directories now resolve into
            // another directory.
            self.rewatch_dropin_dirs();
            tracing::debug!(dir = %dir.display(), ?name, "job files replaced");
            return true;
        }
        if corral_config::is_ignored_file_name(name) {
            return false;
        }

        let is_dir = mask.contains(EventMask::ISDIR);
        let path = dir.join(name);
        if is_root && appeared {
            // A symbolic link to a drop-in directory has no ISDIR flag.
            self.watch_dropin_dir(path.clone());
        }
        // A created file is empty or half-written until its close. A
        // created directory or symbolic link is complete.
        let is_symlink = || {
            path.symlink_metadata()
                .is_ok_and(|metadata| metadata.is_symlink())
        };
        if mask.contains(EventMask::CREATE) && !is_dir && !is_symlink() {
            return false;
        }
        tracing::debug!(dir = %dir.display(), ?name, ?mask, "job files changed");
        true
    }

    fn handle_parent(&mut self, event: inotify::Event<OsString>) -> bool {
        if event.mask.contains(EventMask::IGNORED) {
            self.parent_watch = None;
            tracing::warn!(
                dir = %self.jobs_dir.display(),
                "the parent of the jobs directory is gone; a replaced jobs directory is not noticed"
            );
            return false;
        }
        let is_jobs_dir = match (&self.parent, event.name.as_deref()) {
            (Some((_, jobs_name)), Some(name)) => name == jobs_name.as_os_str(),
            _ => false,
        };
        is_jobs_dir && self.refresh()
    }
}

async fn watch_loop(
    mut stream: inotify::EventStream<Vec<u8>>,
    mut watcher: Watcher,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut deadline: Option<Instant> = None;
    // The first change of the burst that the next reload applies.
    let mut burst_start: Option<Instant> = None;
    loop {
        let sleep_until = deadline.unwrap_or_else(Instant::now);
        tokio::select! {
            next = stream.next() => {
                let event = match next {
                    Some(Ok(event)) => event,
                    Some(Err(error)) => {
                        tracing::error!(%error, "reading inotify events failed; job files reload on SIGHUP or update only");
                        return;
                    }
                    None => return,
                };
                if !watcher.handle(event) {
                    continue;
                }
                let now = Instant::now();
                let first = *burst_start.get_or_insert(now);
                deadline = Some((now + DEBOUNCE).min(first + MAX_DELAY));
            }
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                deadline = None;
                burst_start = None;
                // A scan of a missing directory only logs an error. The
                // directory's return schedules the reload.
                if dir_identity(&watcher.jobs_dir).is_none() {
                    if !watcher.missing_logged {
                        watcher.missing_logged = true;
                        tracing::warn!(
                            dir = %watcher.jobs_dir.display(),
                            "the jobs directory is missing or not a directory; waiting for a directory at its path"
                        );
                    }
                    continue;
                }
                if events.send(Event::Reload { origin: "inotify" }).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next_reload(receiver: &mut mpsc::UnboundedReceiver<Event>) -> bool {
        match tokio::time::timeout(Duration::from_secs(2), receiver.recv()).await {
            Ok(Some(Event::Reload { origin })) => origin == "inotify",
            _ => false,
        }
    }

    /// Returns whether no event arrives within three debounce periods.
    async fn no_reload(receiver: &mut mpsc::UnboundedReceiver<Event>) -> bool {
        tokio::time::timeout(DEBOUNCE * 3, receiver.recv())
            .await
            .is_err()
    }

    /// Writes `file` and checks that one reload follows within
    /// [`MAX_DELAY`].
    async fn assert_write_reloads(receiver: &mut mpsc::UnboundedReceiver<Event>, file: &Path) {
        let written = std::time::Instant::now();
        std::fs::write(file, "{}").unwrap();
        assert!(
            next_reload(receiver).await,
            "no reload after writing {}",
            file.display()
        );
        let waited = written.elapsed();
        assert!(
            waited <= MAX_DELAY,
            "the reload came {waited:?} after writing {}",
            file.display()
        );
        assert!(
            no_reload(receiver).await,
            "writing {} caused more than one reload",
            file.display()
        );
    }

    #[tokio::test]
    async fn burst_of_changes_reloads_once() {
        let dir = tempfile::tempdir().unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(dir.path().to_path_buf(), events, None).unwrap();

        for index in 0..5 {
            std::fs::write(dir.path().join(format!("job{index}.json")), "{}").unwrap();
        }
        assert!(next_reload(&mut receiver).await, "no reload after writes");
        let extra = tokio::time::timeout(DEBOUNCE * 2, receiver.recv()).await;
        assert!(extra.is_err(), "a burst caused more than one reload");
        task.abort();
    }

    #[tokio::test]
    async fn endless_changes_reload_within_max_delay() {
        let dir = tempfile::tempdir().unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(dir.path().to_path_buf(), events, None).unwrap();

        let started = std::time::Instant::now();
        let writer = {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for index in 0..40 {
                    std::fs::write(dir.join("web.json"), format!("{{\"n\": {index}}}")).unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        assert!(
            next_reload(&mut receiver).await,
            "no reload while files keep changing"
        );
        let waited = started.elapsed();
        assert!(
            waited < MAX_DELAY + Duration::from_millis(300),
            "the first reload came {waited:?} after the first change"
        );
        writer.join().unwrap();
        task.abort();
    }

    #[tokio::test]
    async fn dropin_dirs_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("web.json.d");
        std::fs::create_dir(&existing).unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(dir.path().to_path_buf(), events, None).unwrap();

        std::fs::write(existing.join("10-memory.json"), "{}").unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload for an existing drop-in dir"
        );

        let created = dir.path().join("db.json.d");
        std::fs::create_dir(&created).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload for a new drop-in dir"
        );
        std::fs::write(created.join("10-env.json"), "{}").unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload inside a new drop-in dir"
        );

        std::fs::write(dir.path().join(".web.json.swp"), "x").unwrap();
        let ignored = tokio::time::timeout(DEBOUNCE * 2, receiver.recv()).await;
        assert!(ignored.is_err(), "an editor swap file caused a reload");
        task.abort();
    }

    #[tokio::test]
    async fn renamed_jobs_dir_is_watched_again() {
        let scratch = tempfile::tempdir().unwrap();
        let jobs = scratch.path().join("jobs");
        let staged = scratch.path().join("jobs.new");
        let old = scratch.path().join("jobs.old");
        std::fs::create_dir(&jobs).unwrap();
        std::fs::create_dir_all(staged.join("web.json.d")).unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(jobs.clone(), events, None).unwrap();

        std::fs::rename(&jobs, &old).unwrap();
        std::fs::rename(&staged, &jobs).unwrap();
        assert!(next_reload(&mut receiver).await, "no reload after the swap");
        assert!(
            no_reload(&mut receiver).await,
            "the swap caused more than one reload"
        );

        assert_write_reloads(&mut receiver, &jobs.join("web.json")).await;
        assert_write_reloads(&mut receiver, &jobs.join("web.json.d/10-env.json")).await;

        std::fs::write(old.join("db.json"), "{}").unwrap();
        assert!(
            no_reload(&mut receiver).await,
            "a write in the directory moved away caused a reload"
        );
        task.abort();
    }

    #[tokio::test]
    async fn recreated_jobs_dir_is_watched_again() {
        let scratch = tempfile::tempdir().unwrap();
        let jobs = scratch.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        std::fs::write(jobs.join("web.json"), "{}").unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(jobs.clone(), events, None).unwrap();

        std::fs::remove_dir_all(&jobs).unwrap();
        assert!(
            no_reload(&mut receiver).await,
            "a reload ran while the jobs directory was missing"
        );
        assert!(!task.is_finished(), "the watch ended with the directory");

        std::fs::create_dir(&jobs).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload after the directory came back"
        );
        assert_write_reloads(&mut receiver, &jobs.join("web.json")).await;
        task.abort();
    }

    #[tokio::test]
    async fn repointed_jobs_symlink_is_watched_again() {
        let scratch = tempfile::tempdir().unwrap();
        let first = scratch.path().join("release-1");
        let second = scratch.path().join("release-2");
        let jobs = scratch.path().join("jobs");
        std::fs::create_dir(&first).unwrap();
        std::fs::create_dir(&second).unwrap();
        std::os::unix::fs::symlink("release-1", &jobs).unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(jobs.clone(), events, None).unwrap();

        // GNU `ln -sfn` (coreutils 9.1) creates the new link under a
        // temporary name and renames it over the old one.
        let staged = scratch.path().join("jobs.link");
        std::os::unix::fs::symlink("release-2", &staged).unwrap();
        std::fs::rename(&staged, &jobs).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload after renaming a new link over the old one"
        );
        assert_write_reloads(&mut receiver, &jobs.join("web.json")).await;
        std::fs::write(first.join("db.json"), "{}").unwrap();
        assert!(
            no_reload(&mut receiver).await,
            "a write in the old link target caused a reload"
        );

        // Deleted and created again, as `rm` followed by `ln -s` does.
        std::fs::remove_file(&jobs).unwrap();
        std::os::unix::fs::symlink("release-1", &jobs).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload after replacing the link"
        );
        assert_write_reloads(&mut receiver, &jobs.join("web.json")).await;
        task.abort();
    }

    #[tokio::test]
    async fn parent_dir_events_of_other_names_are_ignored() {
        let scratch = tempfile::tempdir().unwrap();
        let jobs = scratch.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(jobs.clone(), events, None).unwrap();

        let other = scratch.path().join("jobs2");
        std::fs::create_dir(&other).unwrap();
        std::fs::rename(&other, scratch.path().join("jobs.old")).unwrap();
        std::fs::write(scratch.path().join("web.json"), "{}").unwrap();
        std::os::unix::fs::symlink("jobs", scratch.path().join("link")).unwrap();
        assert!(
            no_reload(&mut receiver).await,
            "a change of another name in the parent caused a reload"
        );

        assert_write_reloads(&mut receiver, &jobs.join("web.json")).await;
        task.abort();
    }

    #[tokio::test]
    async fn kubernetes_volume_update_reloads() {
        // The layout that the kubelet writes for a ConfigMap volume: the
        // visible names are symbolic links through `..data`.
        let jobs = tempfile::tempdir().unwrap();
        let first = jobs.path().join("..2026_01_01_00_00_00.1");
        std::fs::create_dir_all(first.join("web.json.d")).unwrap();
        std::fs::write(first.join("web.json"), "{}").unwrap();
        std::os::unix::fs::symlink(first.file_name().unwrap(), jobs.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/web.json", jobs.path().join("web.json")).unwrap();
        std::os::unix::fs::symlink("..data/web.json.d", jobs.path().join("web.json.d")).unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(jobs.path().to_path_buf(), events, None).unwrap();

        let second = jobs.path().join("..2026_01_01_00_01_00.2");
        std::fs::create_dir_all(second.join("web.json.d")).unwrap();
        std::fs::write(second.join("web.json"), "{}").unwrap();
        std::fs::write(second.join("db.json"), "{}").unwrap();
        assert!(
            no_reload(&mut receiver).await,
            "staging a new version in a hidden directory caused a reload"
        );
        let staged = jobs.path().join("..data_tmp");
        std::os::unix::fs::symlink(second.file_name().unwrap(), &staged).unwrap();
        std::fs::rename(&staged, jobs.path().join("..data")).unwrap();
        std::fs::remove_dir_all(&first).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload after `..data` was replaced"
        );

        std::os::unix::fs::symlink("..data/db.json", jobs.path().join("db.json")).unwrap();
        assert!(
            next_reload(&mut receiver).await,
            "no reload after a symbolic link was created"
        );

        assert_write_reloads(&mut receiver, &second.join("web.json.d/10-env.json")).await;
        task.abort();
    }
}
