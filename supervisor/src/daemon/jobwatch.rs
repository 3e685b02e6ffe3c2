//! Reloads job files when they change: inotify on the jobs directory and on
//! every `NAME.json.d` drop-in directory, debounced so that an editor's
//! burst of writes, renames and deletes causes one reload.
//!
//! Only finished writes count (close after write, rename into place,
//! delete), so a reload never reads a file an editor is still writing.
//! Names the config loader ignores (dot files, `~`, `.swp`, `.tmp`) are
//! skipped here too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::daemon::Event;

/// Quiet time after the last change before the reload runs.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest delay between the first change of a burst and its reload, so
/// that changes apply within a second even while files keep changing.
pub const MAX_DELAY: Duration = Duration::from_millis(800);

const DROPIN_SUFFIX: &str = ".json.d";

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

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CREATE
        | WatchMask::ATTRIB
}

/// Starts watching `jobs_dir`. The task sends [`Event::Reload`] once per
/// burst of changes and ends when the supervisor task is gone.
pub fn spawn(
    jobs_dir: PathBuf,
    events: mpsc::UnboundedSender<Event>,
) -> Result<JoinHandle<()>, WatchError> {
    let inotify = Inotify::init().map_err(WatchError::Init)?;
    let mut watches = inotify.watches();
    let mut dirs = HashMap::new();
    let root = add_watch(&mut watches, &jobs_dir)?;
    dirs.insert(root.clone(), jobs_dir.clone());
    if let Ok(entries) = std::fs::read_dir(&jobs_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if is_dropin_dir(&path) {
                match add_watch(&mut watches, &path) {
                    Ok(descriptor) => {
                        dirs.insert(descriptor, path);
                    }
                    Err(error) => tracing::warn!(%error, "failed to watch a drop-in directory"),
                }
            }
        }
    }
    let stream = inotify
        .into_event_stream(vec![0u8; 16 * 1024])
        .map_err(WatchError::Init)?;
    Ok(tokio::spawn(watch_loop(
        stream, watches, root, jobs_dir, dirs, events,
    )))
}

fn add_watch(watches: &mut Watches, path: &Path) -> Result<WatchDescriptor, WatchError> {
    watches.add(path, mask()).map_err(|source| WatchError::Add {
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

async fn watch_loop(
    mut stream: inotify::EventStream<Vec<u8>>,
    mut watches: Watches,
    root: WatchDescriptor,
    jobs_dir: PathBuf,
    mut dirs: HashMap<WatchDescriptor, PathBuf>,
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
                if event.mask.contains(EventMask::IGNORED) {
                    dirs.remove(&event.wd);
                    continue;
                }
                let Some(name) = event.name.as_deref() else {
                    continue;
                };
                if corral_config::is_ignored_file_name(name) {
                    continue;
                }
                let is_dir = event.mask.contains(EventMask::ISDIR);
                let appeared = event.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
                if event.wd == root && is_dir && appeared {
                    let path = jobs_dir.join(name);
                    if is_dropin_dir(&path) {
                        match add_watch(&mut watches, &path) {
                            Ok(descriptor) => {
                                dirs.insert(descriptor, path);
                            }
                            Err(error) => tracing::warn!(%error, "failed to watch a drop-in directory"),
                        }
                    }
                }
                // A created file is empty or half-written until its
                // close; only directories count on creation.
                if event.mask.contains(EventMask::CREATE) && !is_dir {
                    continue;
                }
                if let Some(dir) = dirs.get(&event.wd) {
                    tracing::debug!(dir = %dir.display(), name = ?name, mask = ?event.mask, "job files changed");
                }
                let now = Instant::now();
                let first = *burst_start.get_or_insert(now);
                deadline = Some((now + DEBOUNCE).min(first + MAX_DELAY));
            }
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                deadline = None;
                burst_start = None;
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

    #[tokio::test]
    async fn burst_of_changes_reloads_once() {
        let dir = tempfile::tempdir().unwrap();
        let (events, mut receiver) = mpsc::unbounded_channel();
        let task = spawn(dir.path().to_path_buf(), events).unwrap();

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
        let task = spawn(dir.path().to_path_buf(), events).unwrap();

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
        let task = spawn(dir.path().to_path_buf(), events).unwrap();

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
}
