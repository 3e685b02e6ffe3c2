//! `supervisorctl tail`: the last lines of a job's log file, then, with
//! `-f`, what the job appends, woken by inotify instead of polling.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Events, Inotify, WatchDescriptor, WatchMask};

/// A failure to find a job's log below a log directory, as
/// `supervisorctl tail --log-dir` looks for it.
#[derive(Debug, thiserror::Error)]
pub enum LogPathError {
    #[error(
        "invalid job name {name:?}: must match [a-z0-9][a-z0-9_.-]{{0,62}} (lower-case \
         letters, digits, '_', '.' and '-', starting with a letter or digit) and must not be \
         `all`"
    )]
    InvalidName { name: String },
    #[error("no log directory {}", dir.display())]
    NotFound {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", permission_denied_message(path))]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read log directory {}", dir.display())]
    Other {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Returns the message for a log file or directory that the caller may not
/// read, with what gives access.
pub fn permission_denied_message(path: &Path) -> String {
    format!(
        "permission denied reading {}: run as root or as a member of the log group, which \
         supervisord's --socket-group sets",
        path.display()
    )
}

/// Returns the path of `file_name` in the log directory of job `name` below
/// `log_dir`: `LOG_DIR/NAME/FILE`. `name` must be a valid job name and not
/// `all`, so it names no other directory (`..`, `a/b`). The job's directory
/// must exist and be a directory the caller may search.
pub fn job_log_path(log_dir: &Path, name: &str, file_name: &str) -> Result<PathBuf, LogPathError> {
    if !corral_config::is_valid_job_name(name) || corral_config::is_reserved_job_name(name) {
        return Err(LogPathError::InvalidName {
            name: name.to_string(),
        });
    }
    let dir = log_dir.join(name);
    let not_a_directory = || io::Error::new(io::ErrorKind::NotFound, "not a directory");
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(LogPathError::NotFound {
                dir,
                source: not_a_directory(),
            })
        }
        Err(source) => return Err(classify_dir_error(dir, source)),
    }
    Ok(dir.join(file_name))
}

fn classify_dir_error(dir: PathBuf, source: io::Error) -> LogPathError {
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            LogPathError::NotFound { dir, source }
        }
        io::ErrorKind::PermissionDenied => LogPathError::PermissionDenied { path: dir, source },
        _ => LogPathError::Other { dir, source },
    }
}

/// Bytes read per step while searching backwards for line starts.
const BLOCK: u64 = 8192;

/// Writes the last `lines` lines of `path` to `out` and returns the file
/// size, where following continues. A missing file counts as empty,
/// because supervisord creates a job's log files only when it first starts
/// the job.
pub fn print_last_lines(path: &Path, lines: usize, out: &mut impl Write) -> io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let size = file.metadata()?.len();
    let start = start_of_last_lines(&mut file, size, lines)?;
    file.seek(SeekFrom::Start(start))?;
    io::copy(&mut (&mut file).take(size - start), out)?;
    out.flush()?;
    Ok(size)
}

/// Finds the offset where the last `lines` lines of the first `size` bytes
/// begin. A final line without a newline counts as a line.
fn start_of_last_lines(file: &mut File, size: u64, lines: usize) -> io::Result<u64> {
    if lines == 0 || size == 0 {
        return Ok(size);
    }
    let mut newlines_needed = lines;
    let mut end = size;
    let mut buffer = vec![0u8; BLOCK as usize];
    let mut last_byte_seen = false;
    while end > 0 {
        let begin = end.saturating_sub(BLOCK);
        let chunk = &mut buffer[..(end - begin) as usize];
        file.seek(SeekFrom::Start(begin))?;
        file.read_exact(chunk)?;
        for (index, &byte) in chunk.iter().enumerate().rev() {
            let offset = begin + index as u64;
            // The newline that ends the file terminates the last line and
            // does not start a new one.
            if !last_byte_seen {
                last_byte_seen = true;
                if byte == b'\n' {
                    continue;
                }
            }
            if byte == b'\n' {
                newlines_needed -= 1;
                if newlines_needed == 0 {
                    return Ok(offset + 1);
                }
            }
        }
        end = begin;
    }
    Ok(0)
}

/// Output that [`follow`] did not print, because rotation renamed the files
/// that contained it away from the followed path before they were opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Exactly this many bytes: the skipped files are all kept generations.
    Exactly(u64),
    /// At least this many bytes in kept generations. More may have been in
    /// files that rotation already deleted.
    AtLeast(u64),
}

/// Shortest time between two notices of skipped output, so that a reader
/// that falls behind a fast writer prints one line a second, not one per
/// rotation.
pub const SKIP_NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Sums the skips that [`follow`] reports between two notices.
#[derive(Debug, Default)]
pub struct SkipNotices {
    bytes: u64,
    at_least: bool,
    pending: bool,
    last: Option<std::time::Instant>,
}

impl SkipNotices {
    /// Adds `skipped` and returns the total to report when the last notice
    /// is [`SKIP_NOTICE_INTERVAL`] old, or there was none. What comes later
    /// waits for the next skip.
    // NOTE: skips after the last notice are never reported when no later
    // rotation skips output again.
    pub fn add(&mut self, skipped: Skipped, now: std::time::Instant) -> Option<Skipped> {
        match skipped {
            Skipped::Exactly(bytes) => self.bytes += bytes,
            Skipped::AtLeast(bytes) => {
                self.bytes += bytes;
                self.at_least = true;
            }
        }
        self.pending = true;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= SKIP_NOTICE_INTERVAL);
        if !due {
            return None;
        }
        let total = if self.at_least {
            Skipped::AtLeast(self.bytes)
        } else {
            Skipped::Exactly(self.bytes)
        };
        *self = SkipNotices {
            last: Some(now),
            ..SkipNotices::default()
        };
        Some(total)
    }
}

/// Maximum number of kept generations (`.1`, `.2`, ...) that [`follow`]
/// looks at to count skipped output: all that a valid `logs.keep` keeps.
const MAX_GENERATIONS: u32 = corral_config::MAX_LOG_KEEP;

/// Copies what is appended to `path` from `offset` on to `out` until an
/// error or the end of `out`. When rotation renames the file and creates a
/// new one, the rest of the renamed file is copied before the new file
/// from its start. When rotation was faster than this reader, so that
/// files came and went between the renamed file and the new one,
/// `on_skip` receives the size of their content, which is not printed. A file
/// truncated in place is read again from its start. When the file or its
/// directory is missing, it waits for them and reads the file from its
/// start, also when the directory is deleted or renamed while it follows
/// the file. A missing parent of that directory at the start is an error.
///
/// `hangup` is the pipe or socket that `out` writes to, from
/// [`crate::stdout::hangup_watch`]. While it waits for the file, `follow`
/// fails with [`crate::stdout::closed_error`] as soon as that descriptor's
/// reader has gone, instead of at its next write.
pub fn follow(
    path: &Path,
    mut offset: u64,
    out: &mut impl Write,
    hangup: Option<BorrowedFd<'_>>,
    on_skip: &mut impl FnMut(Skipped),
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or(OsStr::new(""));
    let mut inotify = Inotify::init()?;
    let mut buffer = [0u8; 4096];
    wait_for_directory(&mut inotify, dir, &mut buffer, hangup)?;
    // The parent's events report that `dir` was deleted, renamed or created
    // again. The directory's own watch does not, because the deleted file
    // that this reader keeps open pins the directory, and Linux (seen on
    // 6.18) sends the directory's DELETE_SELF only after that file is closed.
    let dir_name = dir.file_name();
    let parent = dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent_mask =
        WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::DELETE | WatchMask::MOVED_FROM;
    // A `dir` without a name, such as `/`, cannot be deleted or renamed.
    let parent_watch = match dir_name {
        Some(_) => Some(inotify.watches().add(parent, parent_mask)?),
        None => None,
    };
    let mut dir_watch = watch_directory(&mut inotify, dir)?;
    // Opened after the watch exists, so a file created in between still
    // sends CREATE.
    let mut file = open_if_present(path)?;
    offset = match file.as_mut() {
        // Copies what was written since `offset` was read.
        Some(file) => copy_new_bytes(file, offset, out)?,
        None => 0,
    };
    loop {
        let mut check_path = false;
        let mut grew = false;
        let mut dir_changed = false;
        for event in read_events(&mut inotify, &mut buffer, hangup)? {
            // After an overflow the kernel dropped events, maybe the
            // CREATE of a new file or the deletion of the directory.
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                check_path = true;
                dir_changed |= !dir_watch.as_ref().is_some_and(|watch| watch.still_at(dir));
                continue;
            }
            if parent_watch.as_ref() == Some(&event.wd) {
                dir_changed |= event.name.is_some() && event.name == dir_name;
                continue;
            }
            if dir_watch.as_ref().map(|watch| &watch.descriptor) != Some(&event.wd) {
                // An event of a directory watch that was already replaced.
                continue;
            }
            if event.name != Some(name) {
                continue;
            }
            if event
                .mask
                .intersects(EventMask::CREATE | EventMask::MOVED_TO)
            {
                check_path = true;
            } else {
                grew = true;
            }
        }
        if dir_changed {
            // The old handle is kept and read to its end once a new file
            // exists, as after a rename. What it has now is copied at once.
            if let Some(old) = file.as_mut() {
                offset = copy_new_bytes(old, offset, out)?;
            }
            if let Some(old) = dir_watch.take() {
                // Fails when the kernel already removed the watch of a
                // deleted directory, which is fine.
                let _ = inotify.watches().remove(old.descriptor);
            }
            dir_watch = watch_directory(&mut inotify, dir)?;
            check_path = true;
        }
        if check_path {
            if let Some(new) = open_if_replaced(path, file.as_ref())? {
                // The old handle still reads the renamed or deleted file,
                // which its writer closed before it created the new one.
                if let Some(old) = file.as_mut() {
                    copy_new_bytes(old, offset, out)?;
                    if let Some(skipped) = skipped_between(path, old, &new) {
                        on_skip(skipped);
                    }
                }
                file = Some(new);
                offset = 0;
            }
        }
        if check_path || grew {
            if let Some(current) = file.as_mut() {
                offset = copy_new_bytes(current, offset, out)?;
            }
        }
    }
}

/// An inotify watch on the directory of the followed file.
struct DirectoryWatch {
    descriptor: WatchDescriptor,
    /// Device and inode of the watched directory.
    identity: (u64, u64),
}

impl DirectoryWatch {
    /// Returns whether `dir` is still the directory that this watch is on.
    fn still_at(&self, dir: &Path) -> bool {
        std::fs::metadata(dir).is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity)
    }
}

/// Watches `dir` for the creation, renaming in and growth of files.
/// Returns `None` when `dir` is not a directory.
fn watch_directory(inotify: &mut Inotify, dir: &Path) -> io::Result<Option<DirectoryWatch>> {
    let identity = |meta: std::fs::Metadata| meta.is_dir().then(|| (meta.dev(), meta.ino()));
    loop {
        let Some(before) = std::fs::metadata(dir).ok().and_then(identity) else {
            return Ok(None);
        };
        let mask =
            WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE;
        let descriptor = match inotify.watches().add(dir, mask) {
            Ok(descriptor) => descriptor,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        // The same directory before and after the watch was added is the
        // one the watch is on. A directory replaced in between is watched
        // again.
        if std::fs::metadata(dir).ok().and_then(identity) == Some(before) {
            return Ok(Some(DirectoryWatch {
                descriptor,
                identity: before,
            }));
        }
        let _ = inotify.watches().remove(descriptor);
    }
}

/// Opens `path` when it names a file other than `current`, compared by
/// device and inode. Returns `None` when it names `current` or nothing, as
/// after an event for a file that this reader already opened.
fn open_if_replaced(path: &Path, current: Option<&File>) -> io::Result<Option<File>> {
    let Some(new) = open_if_present(path)? else {
        return Ok(None);
    };
    let Some(current) = current else {
        return Ok(Some(new));
    };
    let (new_meta, current_meta) = (new.metadata()?, current.metadata()?);
    let same = (new_meta.dev(), new_meta.ino()) == (current_meta.dev(), current_meta.ino());
    Ok((!same).then_some(new))
}

/// Returns the size of the files that rotation created after `old` and
/// before `new` and that this reader never opened, or `None` when it finds
/// none. Rotation renames `path` to `path.1` and shifts older files up, so
/// the kept generations between `new` (or `path`) and `old` are the
/// skipped ones. When `old` is no longer among them, the generations
/// written after `old`'s last write are counted as a lower bound, because
/// rotation may have deleted more.
///
/// NOTE: a rotation that runs while this scans the generations shifts
/// them under it, which can count one file twice or miss it. With `keep` 0
/// rotation deletes every file, so skipped output goes unreported.
fn skipped_between(path: &Path, old: &File, new: &File) -> Option<Skipped> {
    let identity = |meta: &std::fs::Metadata| (meta.dev(), meta.ino());
    let old_meta = old.metadata().ok()?;
    let new_meta = new.metadata().ok()?;
    // Newest first: generations[0] is path.1.
    let mut generations = Vec::new();
    for number in 1..=MAX_GENERATIONS {
        match std::fs::metadata(crate::logrotate::numbered(path, number)) {
            Ok(meta) => generations.push(meta),
            Err(_) => break,
        }
    }
    // Files newer than `new` were rotated after it and are read later.
    let first = generations
        .iter()
        .position(|meta| identity(meta) == identity(&new_meta))
        .map_or(0, |position| position + 1);
    let candidates = generations.get(first..).unwrap_or_default();
    let skipped = match candidates
        .iter()
        .position(|meta| identity(meta) == identity(&old_meta))
    {
        Some(position) => {
            Skipped::Exactly(candidates[..position].iter().map(|meta| meta.len()).sum())
        }
        None => {
            // File times may be as coarse as a timer tick, so a generation
            // written in the same tick as `old`'s last write is left out.
            let old_end = (old_meta.mtime(), old_meta.mtime_nsec());
            let later = candidates
                .iter()
                .filter(|meta| (meta.mtime(), meta.mtime_nsec()) > old_end);
            Skipped::AtLeast(later.map(|meta| meta.len()).sum())
        }
    };
    match skipped {
        Skipped::Exactly(0) | Skipped::AtLeast(0) => None,
        found => Some(found),
    }
}

/// Opens `path` for reading, or returns `None` when it does not exist.
fn open_if_present(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Waits for inotify events and reads them. Fails with
/// [`crate::stdout::closed_error`] as soon as `hangup` reports that its
/// reader has gone.
fn read_events<'a>(
    inotify: &mut Inotify,
    buffer: &'a mut [u8],
    hangup: Option<BorrowedFd<'_>>,
) -> io::Result<Events<'a>> {
    crate::stdout::wait_readable(Some(inotify.as_fd()), hangup, None)?;
    inotify.read_events_blocking(buffer)
}

/// Returns once `dir` exists, watching its parent for the directory's
/// creation. A missing parent is an error, so a wrong path fails at once.
fn wait_for_directory(
    inotify: &mut Inotify,
    dir: &Path,
    buffer: &mut [u8],
    hangup: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let watch = inotify
        .watches()
        .add(parent, WatchMask::CREATE | WatchMask::MOVED_TO)?;
    // Checked again after the watch exists, for a directory created in
    // between.
    while !dir.is_dir() {
        read_events(inotify, buffer, hangup)?;
    }
    inotify.watches().remove(watch)?;
    Ok(())
}

fn copy_new_bytes(file: &mut File, offset: u64, out: &mut impl Write) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let start = if size < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let copied = io::copy(&mut file.take(size - start), out)?;
    out.flush()?;
    Ok(start + copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_lines(content: &[u8], lines: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, content).unwrap();
        let mut out = Vec::new();
        let size = print_last_lines(&path, lines, &mut out).unwrap();
        assert_eq!(size, content.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn job_log_path_rejects_invalid_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        for name in ["../x", "..", ".", "a/b", "/etc", "", "Web", "all", "-x"] {
            let error = job_log_path(dir.path(), name, "stdout.log").unwrap_err();
            assert!(
                matches!(error, LogPathError::InvalidName { .. }),
                "{name:?}: {error}"
            );
            assert!(error.to_string().contains("invalid job name"), "{error}");
        }
    }

    #[test]
    fn job_log_path_of_a_valid_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("web-1.a_b")).unwrap();
        let path = job_log_path(dir.path(), "web-1.a_b", "stderr.log").unwrap();
        assert_eq!(path, dir.path().join("web-1.a_b").join("stderr.log"));

        let error = job_log_path(dir.path(), "missing", "stdout.log").unwrap_err();
        assert!(matches!(error, LogPathError::NotFound { .. }), "{error}");
        std::fs::write(dir.path().join("file"), "").unwrap();
        let error = job_log_path(dir.path(), "file", "stdout.log").unwrap_err();
        assert!(matches!(error, LogPathError::NotFound { .. }), "{error}");
    }

    #[test]
    fn unreadable_log_directory_is_a_permission_error() {
        let dir = PathBuf::from("/var/log/corral/web");
        let source = io::Error::from(io::ErrorKind::PermissionDenied);
        let error = classify_dir_error(dir.clone(), source);
        assert!(
            matches!(error, LogPathError::PermissionDenied { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("permission denied"), "{message}");
        assert!(message.contains("/var/log/corral/web"), "{message}");
        assert!(message.contains("--socket-group"), "{message}");
    }

    #[test]
    fn last_lines_cases() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), "");
        assert_eq!(last_lines(b"", 3), "");
        assert_eq!(last_lines(b"\n\n\n", 2), "\n\n");
    }

    #[test]
    fn last_lines_across_blocks() {
        let mut content = Vec::new();
        for number in 0..5000 {
            content.extend_from_slice(format!("line {number}\n").as_bytes());
        }
        assert_eq!(last_lines(&content, 3), "line 4997\nline 4998\nline 4999\n");
        let all = last_lines(&content, 10_000);
        assert_eq!(all.len(), content.len());
    }

    /// A writer that sends each write to a channel, so a test can read what
    /// `follow` copied while it runs.
    struct Channel(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Channel {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .send(bytes.to_vec())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Collects what arrives on `receiver` until it equals `expected` or 5
    /// seconds passed, and returns it.
    fn receive_until(receiver: &std::sync::mpsc::Receiver<Vec<u8>>, expected: &[u8]) -> String {
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while received != expected && std::time::Instant::now() < deadline {
            if let Ok(bytes) = receiver.recv_timeout(std::time::Duration::from_millis(100)) {
                received.extend_from_slice(&bytes);
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    }

    #[test]
    fn follow_reads_the_rest_of_a_rotated_file() {
        use std::io::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"old 1\n").unwrap();
        let (follower, receiver) = spawn_follower(&path, 6);
        std::thread::sleep(std::time::Duration::from_millis(200));

        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"old 2\n").unwrap();
        drop(writer);
        std::fs::rename(&path, dir.path().join("stdout.log.1")).unwrap();
        std::fs::write(&path, b"new 1\n").unwrap();

        assert_eq!(
            receive_until(&receiver, b"old 2\nnew 1\n"),
            "old 2\nnew 1\n"
        );
        drop(receiver);
        // The follower ends at its next write into the closed channel.
        std::fs::write(dir.path().join("stdout.log"), b"x\n").unwrap();
        assert!(follower.join().unwrap().is_err());
    }

    /// A writer like [`Channel`] that blocks in its first write until the
    /// test sends on `gate`, so the test can rotate files while `follow`
    /// cannot read them.
    struct GatedChannel {
        sender: std::sync::mpsc::Sender<Vec<u8>>,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    }

    impl Write for GatedChannel {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.sender
                .send(bytes.to_vec())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
            if let Some(gate) = self.gate.take() {
                let _ = gate.recv();
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Follows `path`, which contains "a1\n", runs `rotate` while the follower
    /// is blocked in its first write, and returns what it printed after
    /// that and the skips it reported.
    fn follow_through(path: &Path, rotate: impl FnOnce()) -> (String, Vec<Skipped>) {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        let (open_gate, gate) = std::sync::mpsc::channel::<()>();
        let (skip_sender, skips) = std::sync::mpsc::channel::<Skipped>();
        let follower = {
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let mut out = GatedChannel {
                    sender,
                    gate: Some(gate),
                };
                follow(&path, 0, &mut out, None, &mut |skipped| {
                    let _ = skip_sender.send(skipped);
                })
            })
        };
        assert_eq!(receive_until(&receiver, b"a1\n"), "a1\n");
        rotate();
        open_gate.send(()).unwrap();
        let printed = receive_until(&receiver, b"c1\n");
        let reported = skips.try_iter().collect();
        drop(receiver);
        std::fs::write(path, b"x\n").unwrap();
        assert!(follower.join().unwrap().is_err());
        (printed, reported)
    }

    #[test]
    fn skip_notices_come_once_a_second() {
        let start = std::time::Instant::now();
        let mut notices = SkipNotices::default();
        assert_eq!(
            notices.add(Skipped::Exactly(10), start),
            Some(Skipped::Exactly(10))
        );
        for _ in 0..100 {
            assert_eq!(notices.add(Skipped::Exactly(10), start), None);
        }
        assert_eq!(notices.add(Skipped::AtLeast(5), start), None);
        let later = start + SKIP_NOTICE_INTERVAL;
        assert_eq!(
            notices.add(Skipped::Exactly(1), later),
            Some(Skipped::AtLeast(1006))
        );
        assert_eq!(notices.add(Skipped::Exactly(1), later), None);
    }

    #[test]
    fn follow_reports_skipped_generation_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"a1\n").unwrap();
        let (printed, skips) = follow_through(&path, || {
            crate::logrotate::rotate(&path, 5).unwrap();
            std::fs::write(&path, b"b1\nb2\n").unwrap();
            crate::logrotate::rotate(&path, 5).unwrap();
            std::fs::write(&path, b"c1\n").unwrap();
        });
        assert_eq!(printed, "c1\n");
        assert_eq!(skips, [Skipped::Exactly(6)]);
    }

    #[test]
    fn follow_reports_a_lower_bound_after_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"a1\n").unwrap();
        let (printed, skips) = follow_through(&path, || {
            // Later than any timer tick that file times are taken from.
            std::thread::sleep(std::time::Duration::from_millis(50));
            // With keep 1 the second rotation deletes the followed file.
            crate::logrotate::rotate(&path, 1).unwrap();
            std::fs::write(&path, b"b1\nb2\n").unwrap();
            crate::logrotate::rotate(&path, 1).unwrap();
            std::fs::write(&path, b"c1\n").unwrap();
        });
        assert_eq!(printed, "c1\n");
        assert_eq!(skips, [Skipped::AtLeast(6)]);
    }

    #[test]
    fn missing_file_prints_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let size = print_last_lines(&dir.path().join("stdout.log"), 10, &mut out).unwrap();
        assert_eq!(size, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn follow_waits_for_file_and_directory() {
        use std::io::Write as _;

        let dir = tempfile::tempdir().unwrap();
        let job_dir = dir.path().join("web");
        let path = job_dir.join("stdout.log");
        let (follower, receiver) = spawn_follower(&path, 0);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!follower.is_finished(), "follow returned without a file");

        std::fs::create_dir(&job_dir).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::write(&path, b"first\n").unwrap();
        assert_eq!(receive_until(&receiver, b"first\n"), "first\n");

        let mut writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writer.write_all(b"second\n").unwrap();
        drop(writer);
        assert_eq!(receive_until(&receiver, b"second\n"), "second\n");
        drop(receiver);
        std::fs::write(&path, b"x\n").unwrap();
        assert!(follower.join().unwrap().is_err());
    }

    /// Follows `path` from `offset` on a thread of its own and returns the
    /// thread and the receiver of what it prints. A skip notice fails it.
    fn spawn_follower(
        path: &Path,
        offset: u64,
    ) -> (
        std::thread::JoinHandle<io::Result<()>>,
        std::sync::mpsc::Receiver<Vec<u8>>,
    ) {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        let path = path.to_path_buf();
        let follower = std::thread::spawn(move || {
            follow(&path, offset, &mut Channel(sender), None, &mut |_| {
                panic!("unexpected skip notice")
            })
        });
        (follower, receiver)
    }

    /// Follows `web/stdout.log`, runs `replace_dir` after the follower
    /// printed "first\n", writes "second\n" to a new `web/stdout.log` and
    /// returns what the follower printed after "first\n".
    fn follow_across_directory_change(replace_dir: impl FnOnce(&Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let job_dir = dir.path().join("web");
        let path = job_dir.join("stdout.log");
        std::fs::create_dir(&job_dir).unwrap();
        std::fs::write(&path, b"first\n").unwrap();
        let (follower, receiver) = spawn_follower(&path, 0);
        assert_eq!(receive_until(&receiver, b"first\n"), "first\n");

        replace_dir(&job_dir);
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::create_dir(&job_dir).unwrap();
        std::fs::write(&path, b"second\n").unwrap();
        let printed = receive_until(&receiver, b"second\n");
        drop(receiver);
        // The follower ends at its next write into the closed channel,
        // unless it no longer follows the file.
        std::fs::write(&path, b"x\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !follower.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if follower.is_finished() {
            assert!(follower.join().unwrap().is_err());
        }
        printed
    }

    #[test]
    fn follow_reads_a_recreated_directory() {
        let printed = follow_across_directory_change(|job_dir| {
            std::fs::remove_dir_all(job_dir).unwrap();
        });
        assert_eq!(printed, "second\n");
    }

    #[test]
    fn follow_reads_a_directory_created_after_a_rename() {
        let printed = follow_across_directory_change(|job_dir| {
            std::fs::rename(job_dir, job_dir.with_file_name("web.old")).unwrap();
        });
        assert_eq!(printed, "second\n");
    }

    #[test]
    fn follow_reads_the_rest_of_a_deleted_file() {
        use std::io::Write as _;

        let printed = follow_across_directory_change(|job_dir| {
            // A writer that kept the file open appends to it after the
            // deletion, then closes it before the new file exists.
            let mut writer = std::fs::OpenOptions::new()
                .append(true)
                .open(job_dir.join("stdout.log"))
                .unwrap();
            std::fs::remove_dir_all(job_dir).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
            writer.write_all(b"late\n").unwrap();
        });
        assert_eq!(printed, "late\nsecond\n");
    }

    #[test]
    fn follow_rejects_missing_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("web").join("stdout.log");
        let error = follow(&path, 0, &mut Vec::new(), None, &mut |_| {}).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn follow_ends_when_the_reader_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"old\n").unwrap();
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let follower = std::thread::spawn(move || {
            let mut out = File::from(writer.try_clone().unwrap());
            follow(&path, 4, &mut out, Some(writer.as_fd()), &mut |_| {})
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!follower.is_finished(), "follow returned with a reader");

        // Nothing is written to the log, so only the poll can notice.
        let closed = std::time::Instant::now();
        drop(reader);
        let error = follower.join().unwrap().unwrap_err();
        assert!(crate::stdout::is_stdout_closed(&error), "{error}");
        assert!(closed.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn directory_wait_ends_on_closed_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web").join("stdout.log");
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let error =
            follow(&path, 0, &mut Vec::new(), Some(writer.as_fd()), &mut |_| {}).unwrap_err();
        assert!(crate::stdout::is_stdout_closed(&error), "{error}");
    }

    #[test]
    fn copy_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"first\n").unwrap();
        let mut file = File::open(&path).unwrap();
        let mut out = Vec::new();
        let offset = copy_new_bytes(&mut file, 0, &mut out).unwrap();
        assert_eq!(offset, 6);
        std::fs::write(&path, b"new\n").unwrap();
        let offset = copy_new_bytes(&mut file, offset, &mut out).unwrap();
        assert_eq!(offset, 4);
        assert_eq!(out, b"first\nnew\n");
    }
}
