//! Size-based rotation of job log files: `stdout.log` becomes
//! `stdout.log.1`, older files shift up to `.KEEP`, and the oldest is
//! deleted.
//!
//! [`RotatingLog`] is the writer of a running container's log, used by
//! `corral-monitor`. It rotates by renaming, so every file stays at or
//! below `max_size`, no byte is lost at a rotation, and the writer never
//! keeps a descriptor to a file it renamed or deleted. Another process may
//! delete or rename the file or its directory. Within
//! [`PATH_CHECK_INTERVAL`] the writer then finds that the path no longer
//! names its open file, and the next write opens the path again, creating
//! the file and directory when they are missing.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Maximum time a [`RotatingLog`] that keeps writing goes without checking
/// whether its path still names its open file. Each check costs one stat
/// and one fstat.
pub const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Returns `path` with `.number` appended: `stdout.log.2`.
pub fn numbered(path: &Path, number: u32) -> PathBuf {
    numbered_u64(path, u64::from(number))
}

/// Renames `path` to `path.1`, after shifting each existing generation
/// below `.keep` up by one, the highest first. Each rename replaces its
/// target in one step, so the old `.keep` is gone and a reader never finds
/// a kept generation missing. Deletes the generations above `.keep` left
/// from a larger `keep`. With `keep` 0 `path` and every generation are
/// deleted.
///
/// The directory is listed once, so a rotation costs one rename or delete
/// per generation that exists, whatever `keep` is.
pub fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    let generations = existing_generations(path)?;
    for &number in generations
        .iter()
        .filter(|&&number| number > u64::from(keep))
    {
        remove_if_exists(&numbered_u64(path, number))?;
    }
    if keep == 0 {
        return remove_if_exists(path);
    }
    // Highest first, so no rename replaces a generation still to shift.
    for &number in generations.iter().rev() {
        if number < u64::from(keep) {
            rename_if_exists(&numbered_u64(path, number), &numbered_u64(path, number + 1))?;
        }
    }
    rename_if_exists(path, &numbered(path, 1))
}

/// Returns the numbers N of the files `path.N` in the directory of `path`,
/// sorted. Only N written in decimal without leading zeros, 1 or more,
/// count, because [`numbered`] writes no other form.
fn existing_generations(path: &Path) -> io::Result<Vec<u64>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let mut prefix = name.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let entry_name = entry?.file_name();
        let Some(digits) = entry_name
            .as_encoded_bytes()
            .strip_prefix(prefix.as_slice())
        else {
            continue;
        };
        if let Some(number) = parse_generation(digits) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Parses the number of a generation file's suffix: decimal digits without
/// a leading zero, 1 or more.
fn parse_generation(digits: &[u8]) -> Option<u64> {
    if digits.first().is_none_or(|&first| first == b'0') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Returns `path` with `.number` appended, also for the numbers above
/// `u32::MAX` that a directory listing may find.
fn numbered_u64(path: &Path, number: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{number}"));
    PathBuf::from(name)
}

/// Rotates `path` when it contains `max_size` bytes or more. Returns
/// whether it rotated.
pub fn rotate_if_full(path: &Path, max_size: u64, keep: u32) -> io::Result<bool> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if max_size == 0 || size < max_size {
        return Ok(false);
    }
    rotate(path, keep)?;
    Ok(true)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Access to job logs besides root's. With a group (supervisord's
/// `--socket-group`), directories are mode 0750 and files 0640, owned by
/// that group. Without one, directories are 0700 and files 0600.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPermissions {
    /// GID of the group that may read the logs.
    pub group: Option<u32>,
}

impl LogPermissions {
    /// Logs that only root may read.
    pub const PRIVATE: LogPermissions = LogPermissions { group: None };

    pub fn dir_mode(self) -> u32 {
        match self.group {
            Some(_) => 0o750,
            None => 0o700,
        }
    }

    pub fn file_mode(self) -> u32 {
        match self.group {
            Some(_) => 0o640,
            None => 0o600,
        }
    }

    /// Sets the group, when there is one, and the mode of the open `file`.
    /// The mode is set after the open because the umask may have cleared
    /// bits of the mode that the file was created with, and because the
    /// file may come from a run with other permissions.
    pub fn apply_to_file(self, file: &File) -> io::Result<()> {
        if let Some(group) = self.group {
            std::os::unix::fs::fchown(file, None, Some(group))?;
        }
        file.set_permissions(fs::Permissions::from_mode(self.file_mode()))
    }

    /// Sets the group, when there is one, and the directory or file mode of
    /// `path`.
    pub fn apply_to_path(self, path: &Path, is_dir: bool) -> io::Result<()> {
        if let Some(group) = self.group {
            std::os::unix::fs::chown(path, None, Some(group))?;
        }
        let mode = if is_dir {
            self.dir_mode()
        } else {
            self.file_mode()
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
}

/// Opens `path` for appending, creating it with the file mode of
/// `permissions`. The caller applies the group and the exact mode with
/// [`LogPermissions::apply_to_file`].
pub fn open_append(path: &Path, permissions: LogPermissions) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(permissions.file_mode())
        .open(path)
}

/// Opens `path` like [`open_append`], first creating its directory with
/// the permissions that supervisord gives it, when it is missing. Returns
/// the file and the error of setting the directory's permissions, which
/// leaves the file usable.
fn open_append_creating_dir(
    path: &Path,
    permissions: LogPermissions,
) -> io::Result<(File, Option<io::Error>)> {
    match open_append(path, permissions) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mut dir_error = None;
            if let Some(dir) = path.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(permissions.dir_mode())
                    .create(dir)?;
                dir_error = permissions.apply_to_path(dir, true).err();
            }
            Ok((open_append(path, permissions)?, dir_error))
        }
        other => other.map(|file| (file, None)),
    }
}

/// Handling of the bytes that a failed append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialAppend {
    /// The bytes written before the error stay.
    Keep,
    /// The file is truncated back to its length before the append.
    Remove,
}

/// Writes all of `data` like [`Write::write_all`]. Returns the result with
/// the number of bytes the writer accepted, also those before an error.
fn write_counting(writer: &mut impl Write, data: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < data.len() {
        match writer.write(&data[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return (written, Err(error)),
        }
    }
    (written, Ok(()))
}

/// A failed [`RotatingLog::write`] or [`RotatingLog::write_all_or_nothing`].
#[derive(Debug)]
pub struct WriteError {
    /// Leading bytes of the data that are in the files despite the error.
    pub written: usize,
    pub error: RotateError,
}

impl WriteError {
    /// Adds `earlier` bytes written before the append that failed.
    fn after(self, earlier: usize) -> Self {
        WriteError {
            written: earlier + self.written,
            error: self.error,
        }
    }
}

/// An error writing or rotating a log file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("failed to open log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write log {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to rotate log {path}")]
    Rotate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to set the group or mode of {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The log file of one output stream of a running container, rotated
/// whenever the next write would take it above `max_size`.
///
/// A rotation cuts after the last newline that still fits, so lines stay
/// whole; only a line longer than `max_size` is split across files. A
/// `max_size` of 0 disables rotation.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    /// None after a failed rotation; the next write opens the file again.
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u32,
    /// Whether the last byte that reached the file ended a line, or no byte
    /// did. A write that failed partway counts with the bytes it wrote.
    at_line_start: bool,
    /// When the path was last compared with the open file.
    checked_at: Instant,
    permissions: LogPermissions,
    /// The last failure to set the permissions of a file or directory that
    /// this writer opened, which it kept writing to.
    permission_error: Option<RotateError>,
}

impl RotatingLog {
    /// Opens `path` for appending, rotating it first when it is already
    /// full, with files that only root may read.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<Self, RotateError> {
        Self::open_with_permissions(path, max_size, keep, LogPermissions::PRIVATE)
    }

    /// Opens `path` like [`RotatingLog::open`], giving the file and every
    /// file and directory this writer creates later `permissions`.
    pub fn open_with_permissions(
        path: &Path,
        max_size: u64,
        keep: u32,
        permissions: LogPermissions,
    ) -> Result<Self, RotateError> {
        rotate_if_full(path, max_size, keep).map_err(|source| RotateError::Rotate {
            path: path.to_path_buf(),
            source,
        })?;
        let mut log = RotatingLog {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            keep,
            at_line_start: true,
            checked_at: Instant::now(),
            permissions,
            permission_error: None,
        };
        log.reopen()?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the current file as this writer counts it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the last byte that reached the file ended a line, also when
    /// the write of that byte failed after it.
    pub fn at_line_start(&self) -> bool {
        self.at_line_start
    }

    /// Takes the last failure to set the group or mode of a file or
    /// directory, after which this writer kept writing to it.
    pub fn take_permission_error(&mut self) -> Option<RotateError> {
        self.permission_error.take()
    }

    /// Applies new limits from the next write on. A smaller `keep` deletes
    /// the surplus generations at the next rotation.
    pub fn set_limits(&mut self, max_size: u64, keep: u32) {
        self.max_size = max_size;
        self.keep = keep;
    }

    /// Appends `data`, rotating as often as needed so that no file exceeds
    /// `max_size`. A failed write returns how many leading bytes of `data`
    /// reached the files, and those bytes stay there.
    pub fn write(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.write_pieces(data, PartialAppend::Keep)
    }

    /// Appends `data` like [`RotatingLog::write`], but when an append fails
    /// partway, truncates the file back to its length before that append,
    /// so no part of it stays. Meant for lines that must not appear cut,
    /// such as notices. Pieces that went to a file before a rotation stay,
    /// and so do the partial bytes when the truncation fails, which the
    /// returned count includes.
    pub fn write_all_or_nothing(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.write_pieces(data, PartialAppend::Remove)
    }

    fn write_pieces(&mut self, mut data: &[u8], partial: PartialAppend) -> Result<(), WriteError> {
        let mut written = 0;
        while !data.is_empty() {
            let room = self.max_size.saturating_sub(self.size);
            if self.max_size == 0 || (data.len() as u64) <= room {
                return self
                    .append(data, partial)
                    .map_err(|failure| failure.after(written));
            }
            let room = room as usize;
            match data[..room].iter().rposition(|&byte| byte == b'\n') {
                Some(last_newline) => {
                    let (head, tail) = data.split_at(last_newline + 1);
                    self.append(head, partial)
                        .map_err(|failure| failure.after(written))?;
                    written += head.len();
                    data = tail;
                }
                // A line that does not fit goes whole into a fresh file,
                // unless it is longer than a whole file.
                None if self.size > 0 => {}
                None => {
                    let (head, tail) = data.split_at(room);
                    self.append(head, partial)
                        .map_err(|failure| failure.after(written))?;
                    written += head.len();
                    data = tail;
                }
            }
            self.rotate()
                .map_err(|error| WriteError { written, error })?;
        }
        Ok(())
    }

    /// Closes the file when its path no longer names it, because someone
    /// deleted or renamed the file or its directory, so the next write
    /// opens the path again and creates it when it is missing. The path
    /// and the open file are compared by device and inode. Returns whether
    /// it closed the file.
    pub fn close_if_moved(&mut self) -> bool {
        self.checked_at = Instant::now();
        let Some(file) = self.file.as_ref() else {
            return false;
        };
        let Ok(open) = file.metadata() else {
            return false;
        };
        let moved = match fs::metadata(&self.path) {
            Ok(named) => (named.dev(), named.ino()) != (open.dev(), open.ino()),
            Err(error) => error.kind() == io::ErrorKind::NotFound || open.nlink() == 0,
        };
        if moved {
            self.file = None;
        }
        moved
    }

    /// Appends `data` to the current file, opening it first when it is
    /// closed.
    fn append(&mut self, data: &[u8], partial: PartialAppend) -> Result<(), WriteError> {
        if self.checked_at.elapsed() >= PATH_CHECK_INTERVAL {
            self.close_if_moved();
        }
        if self.file.is_none() {
            self.reopen()
                .map_err(|error| WriteError { written: 0, error })?;
        }
        let file = self.file.as_mut().expect("opened above");
        // The length to truncate back to. Counted from the file itself,
        // because `size` is only this writer's count.
        let length_before = match partial {
            PartialAppend::Keep => None,
            PartialAppend::Remove => file.metadata().ok().map(|meta| meta.len()),
        };
        let (mut written, result) = write_counting(file, data);
        if let (Err(_), Some(length)) = (&result, length_before) {
            if written > 0 && file.set_len(length).is_ok() {
                written = 0;
            }
        }
        self.size += written as u64;
        if written > 0 {
            self.at_line_start = data[written - 1] == b'\n';
        }
        result.map_err(|source| WriteError {
            written,
            error: RotateError::Write {
                path: self.path.clone(),
                source,
            },
        })
    }

    /// Closes the current file before renaming it, so this writer never
    /// keeps a descriptor to a renamed or deleted file.
    fn rotate(&mut self) -> Result<(), RotateError> {
        self.file = None;
        rotate(&self.path, self.keep).map_err(|source| RotateError::Rotate {
            path: self.path.clone(),
            source,
        })?;
        self.reopen()
    }

    fn reopen(&mut self) -> Result<(), RotateError> {
        let (file, dir_error) =
            open_append_creating_dir(&self.path, self.permissions).map_err(|source| {
                RotateError::Open {
                    path: self.path.clone(),
                    source,
                }
            })?;
        if let Some(source) = dir_error {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            self.permission_error = Some(RotateError::Permissions {
                path: dir.to_path_buf(),
                source,
            });
        }
        if let Err(source) = self.permissions.apply_to_file(&file) {
            self.permission_error = Some(RotateError::Permissions {
                path: self.path.clone(),
                source,
            });
        }
        self.size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        self.at_line_start = self.size == 0 || ends_with_newline(&self.path, self.size);
        self.file = Some(file);
        Ok(())
    }
}

/// Returns whether the byte at `size - 1` of the file at `path` is a
/// newline, which tells a writer that opens an existing log whether an
/// earlier writer left a line unfinished. The append descriptor cannot
/// read, so the file is opened again for this one read. An unreadable
/// byte counts as a newline, as an empty file does.
fn ends_with_newline(path: &Path, size: u64) -> bool {
    use std::os::unix::fs::FileExt;

    let mut last = [b'\n'];
    if let Ok(file) = File::open(path) {
        let _ = file.read_at(&mut last, size - 1);
    }
    last[0] == b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Tmpfs;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|_| "<missing>".to_string())
    }

    #[test]
    fn reopened_log_knows_its_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        fs::write(&path, "whole\ncut").unwrap();
        let log = RotatingLog::open(&path, 0, 1).unwrap();
        assert!(!log.at_line_start(), "the file ends in a cut line");

        fs::write(&path, "whole\n").unwrap();
        let log = RotatingLog::open(&path, 0, 1).unwrap();
        assert!(log.at_line_start());
    }

    #[test]
    fn deleted_directory_is_created_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        fs::create_dir(&dir).unwrap();
        let path = dir.join("stdout.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(b"before\n").unwrap();

        fs::remove_dir_all(&dir).unwrap();
        std::thread::sleep(PATH_CHECK_INTERVAL);
        log.write(b"after\n").unwrap();
        assert_eq!(read(&path), "after\n");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&dir).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn deleted_file_is_closed_and_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(b"first\n").unwrap();
        assert!(!log.close_if_moved(), "closed a file that still has a name");

        fs::remove_file(&path).unwrap();
        assert!(log.close_if_moved());
        assert!(
            !has_open_fd_to(&path),
            "the writer keeps the deleted file open"
        );
        log.write(b"second\n").unwrap();
        assert_eq!(read(&path), "second\n");
        assert_eq!(log.size(), 7);
    }

    #[test]
    fn renamed_file_is_closed_and_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        let moved = dir.path().join("moved.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(b"first\n").unwrap();

        fs::rename(&path, &moved).unwrap();
        assert!(log.close_if_moved(), "kept writing into the renamed file");
        log.write(b"second\n").unwrap();
        assert_eq!(read(&moved), "first\n");
        assert_eq!(read(&path), "second\n");
        assert_eq!(log.size(), 7);
    }

    #[test]
    fn replaced_file_is_reopened_by_the_periodic_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(b"old\n").unwrap();

        // logrotate's create mode: rename, then create an empty file.
        fs::rename(&path, numbered(&path, 1)).unwrap();
        fs::write(&path, b"").unwrap();
        std::thread::sleep(PATH_CHECK_INTERVAL);
        log.write(b"new\n").unwrap();
        assert_eq!(read(&numbered(&path, 1)), "old\n");
        assert_eq!(read(&path), "new\n");
    }

    fn mode_and_group(path: &Path) -> (u32, u32) {
        let meta = fs::metadata(path).unwrap();
        (meta.permissions().mode() & 0o777, meta.gid())
    }

    #[test]
    fn group_permissions_cover_new_and_rotated_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        let path = dir.join("stdout.log");
        // Any group works for root; 4242 need not exist.
        let group = if nix::unistd::geteuid().is_root() {
            4242
        } else {
            nix::unistd::getegid().as_raw()
        };
        let permissions = LogPermissions { group: Some(group) };
        let mut log = RotatingLog::open_with_permissions(&path, 8, 2, permissions).unwrap();
        log.write(b"1234567\nabc\n").unwrap();
        assert_eq!(mode_and_group(&dir), (0o750, group));
        assert_eq!(mode_and_group(&path), (0o640, group));
        assert_eq!(mode_and_group(&numbered(&path, 1)), (0o640, group));

        // A file that an earlier run left private is opened to the group.
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let mut log = RotatingLog::open_with_permissions(&path, 8, 2, permissions).unwrap();
        assert_eq!(mode_and_group(&path), (0o640, group));

        // The monitor creates a deleted file and directory again.
        fs::remove_dir_all(&dir).unwrap();
        assert!(log.close_if_moved());
        log.write(b"again\n").unwrap();
        assert_eq!(mode_and_group(&dir), (0o750, group));
        assert_eq!(mode_and_group(&path), (0o640, group));
        assert!(log.take_permission_error().is_none());
    }

    #[test]
    fn private_permissions_close_a_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let _log = RotatingLog::open(&path, 0, 1).unwrap();
        assert_eq!(mode_and_group(&path).0, 0o600);
    }

    /// Returns whether a descriptor of this process refers to `path`, as
    /// the kernel names it: with " (deleted)" once the file is gone.
    fn has_open_fd_to(path: &Path) -> bool {
        let wanted = path.display().to_string();
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|entry| fs::read_link(entry.path()).ok())
            .any(|target| target.display().to_string().starts_with(&wanted))
    }

    #[test]
    fn rotation_shifts_and_drops_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        for generation in 1..=4 {
            fs::write(&log, format!("generation {generation}")).unwrap();
            assert!(rotate_if_full(&log, 5, 2).unwrap());
        }
        assert_eq!(read(&log), "<missing>");
        assert_eq!(read(&numbered(&log, 1)), "generation 4");
        assert_eq!(read(&numbered(&log, 2)), "generation 3");
        assert_eq!(read(&numbered(&log, 3)), "<missing>");
    }

    #[test]
    fn kept_generation_never_goes_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        let oldest = numbered(&log, 1);
        fs::write(&log, "first").unwrap();
        rotate(&log, 1).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rotator = {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                for round in 0..5_000 {
                    fs::write(&log, format!("round {round}")).unwrap();
                    rotate(&log, 1).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let mut missing = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            if !oldest.exists() {
                missing += 1;
            }
        }
        rotator.join().unwrap();
        assert_eq!(
            missing,
            0,
            "{} was missing {missing} times",
            oldest.display()
        );
    }

    #[test]
    fn rotation_leaves_small_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        fs::write(&log, "tiny").unwrap();
        assert!(!rotate_if_full(&log, 100, 3).unwrap());
        assert_eq!(read(&log), "tiny");
        assert!(!rotate_if_full(&dir.path().join("absent.log"), 1, 3).unwrap());
    }

    #[test]
    fn rotation_with_keep_zero_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        fs::write(&log, "0123456789").unwrap();
        fs::write(numbered(&log, 1), "left from keep 1").unwrap();
        assert!(rotate_if_full(&log, 10, 0).unwrap());
        assert!(!log.exists());
        assert!(!numbered(&log, 1).exists());
    }

    #[test]
    fn smaller_keep_removes_surplus_generations() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        for number in 1..=5 {
            fs::write(numbered(&log, number), format!("old {number}")).unwrap();
        }
        fs::write(&log, "current").unwrap();
        rotate(&log, 2).unwrap();
        assert_eq!(read(&numbered(&log, 1)), "current");
        assert_eq!(read(&numbered(&log, 2)), "old 1");
        for number in 3..=6 {
            assert!(!numbered(&log, number).exists(), ".{number} is left");
        }
    }

    #[test]
    fn rotation_cost_is_independent_of_keep() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        let (done, finished) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for generation in 1..=3 {
                    fs::write(&log, format!("generation {generation}")).unwrap();
                    rotate(&log, u32::MAX).unwrap();
                }
                let _ = done.send(());
            });
        }
        let result = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert!(
            result.is_ok(),
            "3 rotations with keep u32::MAX took over 10 s"
        );
        assert_eq!(read(&numbered(&log, 1)), "generation 3");
        assert_eq!(read(&numbered(&log, 2)), "generation 2");
        assert_eq!(read(&numbered(&log, 3)), "generation 1");
        assert!(!numbered(&log, 4).exists());
    }

    #[test]
    fn rotation_shifts_generations_across_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        fs::write(numbered(&log, 1), "old 1").unwrap();
        fs::write(numbered(&log, 3), "old 3").unwrap();
        fs::write(&log, "current").unwrap();
        rotate(&log, 5).unwrap();
        assert_eq!(read(&numbered(&log, 1)), "current");
        assert_eq!(read(&numbered(&log, 2)), "old 1");
        assert_eq!(read(&numbered(&log, 3)), "<missing>");
        assert_eq!(read(&numbered(&log, 4)), "old 3");
        assert_eq!(read(&log), "<missing>");
    }

    #[test]
    fn surplus_generations_beyond_a_gap_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        for number in [1, 3, 7] {
            fs::write(numbered(&log, number), format!("old {number}")).unwrap();
        }
        let beyond_u32 = dir.path().join("stdout.log.4294967296");
        fs::write(&beyond_u32, "huge").unwrap();
        // Names that numbered() never writes are left alone.
        let others = [
            "stdout.log.07",
            "stdout.log.0",
            "stdout.log.1x",
            "stderr.log.9",
        ];
        for other in others {
            fs::write(dir.path().join(other), "other").unwrap();
        }
        fs::write(&log, "current").unwrap();
        rotate(&log, 2).unwrap();
        assert_eq!(read(&numbered(&log, 1)), "current");
        assert_eq!(read(&numbered(&log, 2)), "old 1");
        assert!(!numbered(&log, 3).exists(), ".3 is left");
        assert!(!numbered(&log, 7).exists(), ".7 is left");
        assert!(!beyond_u32.exists(), ".4294967296 is left");
        for other in others {
            assert!(dir.path().join(other).exists(), "{other} was removed");
        }
    }

    #[test]
    fn keep_zero_removes_generations_beyond_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        fs::write(numbered(&log, 2), "old 2").unwrap();
        fs::write(&log, "current").unwrap();
        rotate(&log, 0).unwrap();
        assert!(!log.exists());
        assert!(!numbered(&log, 2).exists(), ".2 is left");
    }

    #[test]
    fn writer_cuts_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 10, 3).unwrap();
        log.write(b"aaaa\nbbbb\ncccc\n").unwrap();
        assert_eq!(read(&numbered(&path, 1)), "aaaa\nbbbb\n");
        assert_eq!(read(&path), "cccc\n");
        log.write(b"dd\neeeeeeee").unwrap();
        assert_eq!(read(&numbered(&path, 2)), "aaaa\nbbbb\n");
        assert_eq!(read(&numbered(&path, 1)), "cccc\ndd\n");
        assert_eq!(read(&path), "eeeeeeee");
        assert!(!log.at_line_start());
    }

    #[test]
    fn writer_moves_a_line_that_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 10, 3).unwrap();
        log.write(b"12345\n").unwrap();
        log.write(b"abcdefgh\n").unwrap();
        assert_eq!(read(&numbered(&path, 1)), "12345\n");
        assert_eq!(read(&path), "abcdefgh\n");
        assert_eq!(log.size(), 9);
    }

    #[test]
    fn writer_splits_lines_longer_than_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 4, 5).unwrap();
        log.write(b"0123456789\n").unwrap();
        assert_eq!(read(&numbered(&path, 2)), "0123");
        assert_eq!(read(&numbered(&path, 1)), "4567");
        assert_eq!(read(&path), "89\n");
    }

    #[test]
    fn writer_keeps_every_byte_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 1000, 100).unwrap();
        let mut expected = Vec::new();
        for number in 0..2000 {
            let line = format!("line {number}\n");
            expected.extend_from_slice(line.as_bytes());
            log.write(line.as_bytes()).unwrap();
        }
        let mut files: Vec<PathBuf> = (1..=100)
            .rev()
            .map(|number| numbered(&path, number))
            .filter(|file| file.exists())
            .collect();
        files.push(path.clone());
        let mut joined = Vec::new();
        for file in &files {
            let content = fs::read(file).unwrap();
            assert!(
                content.len() <= 1000,
                "{}: {} bytes",
                file.display(),
                content.len()
            );
            assert!(content.ends_with(b"\n"), "{} ends mid-line", file.display());
            joined.extend_from_slice(&content);
        }
        assert_eq!(joined, expected);
    }

    #[test]
    fn writer_rotates_full_file_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        fs::write(&path, "old\n").unwrap();
        let mut log = RotatingLog::open(&path, 100, 1).unwrap();
        assert_eq!(log.size(), 4);
        log.write(b"new\n").unwrap();
        assert_eq!(read(&path), "old\nnew\n");

        fs::write(&path, "x".repeat(100)).unwrap();
        let log = RotatingLog::open(&path, 100, 1).unwrap();
        assert_eq!(log.size(), 0);
        assert_eq!(read(&numbered(&path, 1)).len(), 100);
    }

    #[test]
    fn writer_keeps_no_deleted_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 8, 0).unwrap();
        for _ in 0..10 {
            log.write(b"abcdefg\n").unwrap();
        }
        let fd_dir = fs::read_dir("/proc/self/fd").unwrap();
        for entry in fd_dir.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                assert!(
                    !(target.starts_with(&*dir.path().to_string_lossy())
                        && target.ends_with("(deleted)")),
                    "a deleted log is still open: {target}"
                );
            }
        }
        assert_eq!(read(&path), "abcdefg\n");
    }

    /// A writer that accepts `limit` bytes and then fails with ENOSPC.
    struct FillingWriter {
        accepted: Vec<u8>,
        limit: usize,
        interrupted: bool,
    }

    impl Write for FillingWriter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            // One EINTR first, which the caller retries.
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let room = self.limit - self.accepted.len();
            if room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            // Short writes of at most 3 bytes, as a pipe or a full disk may
            // return.
            let count = data.len().min(room).min(3);
            self.accepted.extend_from_slice(&data[..count]);
            Ok(count)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_counting_reports_bytes_before_error() {
        let mut writer = FillingWriter {
            accepted: Vec::new(),
            limit: 7,
            interrupted: false,
        };
        let (written, result) = write_counting(&mut writer, b"line 12\nline 13\n");
        assert_eq!(written, 7);
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(writer.accepted, b"line 12");

        let mut writer = FillingWriter {
            accepted: Vec::new(),
            limit: 100,
            interrupted: false,
        };
        let (written, result) = write_counting(&mut writer, b"line 12\n");
        assert_eq!(written, 8);
        assert!(result.is_ok());
    }

    #[test]
    fn partial_write_leaves_the_line_open() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        let Some(_tmpfs) = Tmpfs::mount("partial_write_leaves_the_line_open", &mount, "8k") else {
            return;
        };
        let path = mount.join("stdout.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(b"first line\n").unwrap();
        assert!(log.at_line_start());

        // 8 KiB of tmpfs has room for 8192 bytes, so 8181 of these fit.
        let mut long_line = vec![b'y'; 8192];
        long_line.push(b'\n');
        let failure = log.write(&long_line).unwrap_err();
        assert_eq!(failure.written, 8181);
        match &failure.error {
            RotateError::Write { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
            }
            other => panic!("expected a write error, got {other:?}"),
        }
        assert!(!log.at_line_start(), "the file ends in a cut line");
        assert_eq!(log.size(), 8192);
        assert_eq!(fs::metadata(&path).unwrap().len(), 8192);

        // A write that fails before its first byte changes nothing.
        let failure = log.write(b"\n").unwrap_err();
        assert_eq!(failure.written, 0);
        assert!(!log.at_line_start());
        assert_eq!(log.size(), 8192);
    }

    #[test]
    fn failed_whole_write_leaves_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mnt");
        let Some(_tmpfs) = Tmpfs::mount("failed_whole_write_leaves_no_part", &mount, "8k") else {
            return;
        };
        let path = mount.join("stdout.log");
        let mut log = RotatingLog::open(&path, 0, 1).unwrap();
        log.write(&[b'x'; 8000]).unwrap();

        let notice = format!("\n{}\n", "n".repeat(300));
        let failure = log.write_all_or_nothing(notice.as_bytes()).unwrap_err();
        assert_eq!(failure.written, 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), 8000);
        assert_eq!(log.size(), 8000);
        assert!(!log.at_line_start());

        // The same bytes through `write` keep what fits.
        let failure = log.write(notice.as_bytes()).unwrap_err();
        assert_eq!(failure.written, 192);
        assert_eq!(fs::metadata(&path).unwrap().len(), 8192);
        assert_eq!(log.size(), 8192);
    }

    #[test]
    fn new_limits_apply_to_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = RotatingLog::open(&path, 100, 1).unwrap();
        log.write(b"0123456789\n").unwrap();
        log.set_limits(12, 1);
        log.write(b"abc\n").unwrap();
        assert_eq!(read(&numbered(&path, 1)), "0123456789\n");
        assert_eq!(read(&path), "abc\n");
    }
}
