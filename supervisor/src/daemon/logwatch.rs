//! Rotation of job logs while containers run.
//!
//! The shim hands the log files to the container as its stdout and stderr,
//! so the writes bypass supervisord. It watches the log directories with
//! inotify instead and, at most once per [`CHECK_INTERVAL`] per file,
//! compares the file's size with the job's `logs.max_size`. A full file is
//! copied to `.1` and truncated in place (copytruncate), because the
//! container keeps writing through its open descriptor. The files are opened
//! with O_APPEND, so the next write lands at the new end.
//! NOTE: lines written between the copy and the truncation are lost, as
//! with logrotate's copytruncate.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use corral_config::LogConfig;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::daemon::logs;

/// Minimum time between two size checks of one log file.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

const LOG_FILES: [&str; 2] = ["stdout.log", "stderr.log"];

/// Log settings of every job, by job name, as the supervisor publishes them.
pub type LogConfigs = HashMap<String, LogConfig>;

/// Starts watching `log_dir` and its job directories. The task ends when the
/// sender of `configs` is dropped.
pub fn spawn(
    log_dir: PathBuf,
    configs: watch::Receiver<LogConfigs>,
) -> std::io::Result<JoinHandle<()>> {
    let inotify = Inotify::init()?;
    let mut watches = inotify.watches();
    let root = watches.add(&log_dir, WatchMask::CREATE | WatchMask::MOVED_TO)?;
    let mut dirs = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(&log_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                watch_job_dir(&mut watches, &mut dirs, path);
            }
        }
    }
    let stream = inotify.into_event_stream(vec![0u8; 16 * 1024])?;
    let watcher = LogWatcher {
        log_dir,
        root,
        watches,
        dirs,
        configs,
        last_check: HashMap::new(),
        pending: HashMap::new(),
    };
    Ok(tokio::spawn(watcher.run(stream)))
}

fn watch_job_dir(
    watches: &mut Watches,
    dirs: &mut HashMap<WatchDescriptor, (String, PathBuf)>,
    dir: PathBuf,
) {
    let Some(job) = dir.file_name().and_then(OsStr::to_str).map(str::to_string) else {
        return;
    };
    match watches.add(&dir, WatchMask::MODIFY) {
        Ok(descriptor) => {
            dirs.insert(descriptor, (job, dir));
        }
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "failed to watch a log directory; its logs rotate only when a container starts")
        }
    }
}

struct LogWatcher {
    log_dir: PathBuf,
    root: WatchDescriptor,
    watches: Watches,
    /// Job name and directory of each watched job log directory.
    dirs: HashMap<WatchDescriptor, (String, PathBuf)>,
    configs: watch::Receiver<LogConfigs>,
    last_check: HashMap<PathBuf, Instant>,
    /// Checks postponed by the interval: file, job name and due time.
    pending: HashMap<PathBuf, (String, Instant)>,
}

impl LogWatcher {
    async fn run(mut self, mut stream: inotify::EventStream<Vec<u8>>) {
        loop {
            let next_due = self.pending.values().map(|(_, due)| *due).min();
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(event)) => self.on_event(event).await,
                    Some(Err(error)) => {
                        tracing::error!(%error, "reading inotify events for logs failed; logs rotate only when a container starts");
                        return;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    self.run_due_checks().await;
                }
                changed = self.configs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, event: inotify::Event<std::ffi::OsString>) {
        let Some(name) = event.name else {
            return;
        };
        if event.wd == self.root {
            if event.mask.contains(EventMask::ISDIR) {
                let dir = self.log_dir.join(&name);
                watch_job_dir(&mut self.watches, &mut self.dirs, dir);
            }
            return;
        }
        let Some((job, dir)) = self.dirs.get(&event.wd).cloned() else {
            return;
        };
        if !LOG_FILES.iter().any(|file| OsStr::new(file) == name) {
            return;
        }
        let path = dir.join(&name);
        let now = Instant::now();
        match self.last_check.get(&path) {
            Some(last) if now.duration_since(*last) < CHECK_INTERVAL => {
                self.pending
                    .entry(path)
                    .or_insert((job, *last + CHECK_INTERVAL));
            }
            _ => self.check(job, path).await,
        }
    }

    async fn run_due_checks(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            if let Some((job, _)) = self.pending.remove(&path) {
                self.check(job, path).await;
            }
        }
    }

    /// Rotates `path` when it reached the job's `max_size`.
    async fn check(&mut self, job: String, path: PathBuf) {
        self.last_check.insert(path.clone(), Instant::now());
        let Some(config) = self.configs.borrow().get(&job).cloned() else {
            return;
        };
        let size = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        if size < config.max_size.bytes() {
            return;
        }
        let rotating = path.clone();
        let result =
            tokio::task::spawn_blocking(move || logs::copy_truncate(&rotating, config.keep)).await;
        match result {
            Ok(Ok(())) => {
                tracing::info!(job, path = %path.display(), size, "rotated a running job's log")
            }
            Ok(Err(error)) => {
                tracing::error!(job, path = %path.display(), error = %crate::daemon::error_chain(&error), "failed to rotate a log")
            }
            Err(error) => {
                tracing::error!(job, path = %path.display(), %error, "log rotation task failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use corral_config::ByteSize;

    use super::*;

    #[tokio::test]
    async fn full_log_is_rotated_while_written() {
        let root = tempfile::tempdir().unwrap();
        let job_dir = root.path().join("web");
        std::fs::create_dir(&job_dir).unwrap();
        let mut configs = LogConfigs::new();
        configs.insert(
            "web".to_string(),
            LogConfig {
                max_size: ByteSize(4096),
                keep: 2,
            },
        );
        let (sender, receiver) = watch::channel(configs);
        let task = spawn(root.path().to_path_buf(), receiver).unwrap();

        let stdout = job_dir.join("stdout.log");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout)
            .unwrap();
        file.write_all(&[b'a'; 5000]).unwrap();

        let rotated = PathBuf::from(format!("{}.1", stdout.display()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !rotated.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), 5000);
        assert_eq!(std::fs::metadata(&stdout).unwrap().len(), 0);

        // The writer keeps its descriptor, and O_APPEND puts the next write
        // at the start of the truncated file.
        file.write_all(b"next\n").unwrap();
        assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "next\n");

        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher ends with its config sender")
            .unwrap();
    }
}
