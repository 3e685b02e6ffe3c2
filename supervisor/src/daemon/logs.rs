//! Job log files: `LOG_DIR/NAME/stdout.log` and `stderr.log`, opened for
//! appending and handed to the shim as its stdout and stderr.
//!
//! Rotation happens when a container starts: a file of `max_size` or more
//! becomes `.1`, older ones shift up to `.KEEP`, and the oldest is deleted.
//! While a container runs, the log watcher rotates full files with
//! [`copy_truncate`].

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use corral_config::LogConfig;

/// An error preparing a job's log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to create log directory {path}")]
    CreateDir {
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
    #[error("failed to open log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The open log files of one container.
#[derive(Debug)]
pub struct JobLogs {
    pub stdout: File,
    pub stderr: File,
    /// Size of the stderr file when it was opened.
    pub stderr_offset: u64,
}

/// Creates `dir` (mode 0700), rotates the files that reached
/// `config.max_size` and opens both for appending.
pub fn open_job_logs(
    dir: &Path,
    stdout_path: &Path,
    stderr_path: &Path,
    config: &LogConfig,
) -> Result<JobLogs, LogError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LogError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    rotate_if_full(stdout_path, config.max_size.bytes(), config.keep)?;
    rotate_if_full(stderr_path, config.max_size.bytes(), config.keep)?;
    let stdout = open_append(stdout_path)?;
    let stderr = open_append(stderr_path)?;
    let stderr_offset = stderr.metadata().map(|meta| meta.len()).unwrap_or(0);
    Ok(JobLogs {
        stdout,
        stderr,
        stderr_offset,
    })
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Shifts `path` to `path.1` (and `.1` to `.2` and so on up to `.keep`)
/// when it contains `max_size` bytes or more. With `keep` 0 the full file is
/// deleted.
pub fn rotate_if_full(path: &Path, max_size: u64, keep: u32) -> Result<(), LogError> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LogError::Rotate {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if size < max_size || max_size == 0 {
        return Ok(());
    }
    let rotate_error = |source| LogError::Rotate {
        path: path.to_path_buf(),
        source,
    };
    if keep == 0 {
        return fs::remove_file(path).map_err(rotate_error);
    }
    remove_if_exists(&numbered(path, keep)).map_err(rotate_error)?;
    for number in (1..keep).rev() {
        rename_if_exists(&numbered(path, number), &numbered(path, number + 1))
            .map_err(rotate_error)?;
    }
    fs::rename(path, numbered(path, 1)).map_err(rotate_error)
}

/// Copies `path` to `path.1`, shifting older files up to `.keep`, and
/// truncates `path` in place, for a file that a running container still
/// writes to. With `keep` 0 the file is only truncated.
pub fn copy_truncate(path: &Path, keep: u32) -> Result<(), LogError> {
    let rotate_error = |source| LogError::Rotate {
        path: path.to_path_buf(),
        source,
    };
    if keep > 0 {
        remove_if_exists(&numbered(path, keep)).map_err(rotate_error)?;
        for number in (1..keep).rev() {
            rename_if_exists(&numbered(path, number), &numbered(path, number + 1))
                .map_err(rotate_error)?;
        }
        fs::copy(path, numbered(path, 1)).map_err(rotate_error)?;
    }
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(0))
        .map_err(rotate_error)
}

fn numbered(path: &Path, number: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{number}"));
    PathBuf::from(name)
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

/// Reads the setup error the shim printed to stderr after `offset`: the last
/// line that starts with `corral:`, or the last non-empty line. Reads at
/// most the final 4 KiB.
pub fn read_setup_error(stderr_path: &Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};

    const MAX_READ: u64 = 4096;
    let mut file = File::open(stderr_path).ok()?;
    let size = file.metadata().ok()?.len();
    if size <= offset {
        return None;
    }
    let start = offset.max(size.saturating_sub(MAX_READ));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    file.take(size - start).read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("corral:"))
        .or(lines.last())
        .map(|line| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|_| "<missing>".to_string())
    }

    #[test]
    fn rotation_shifts_and_drops_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        for generation in 1..=4 {
            fs::write(&log, format!("generation {generation}")).unwrap();
            rotate_if_full(&log, 5, 2).unwrap();
        }
        assert_eq!(read(&log), "<missing>");
        assert_eq!(read(&numbered(&log, 1)), "generation 4");
        assert_eq!(read(&numbered(&log, 2)), "generation 3");
        assert_eq!(read(&numbered(&log, 3)), "<missing>");
    }

    #[test]
    fn copy_truncate_keeps_writer_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        fs::write(numbered(&log, 1), "older").unwrap();
        fs::write(&log, "current").unwrap();
        copy_truncate(&log, 2).unwrap();
        assert_eq!(read(&log), "");
        assert_eq!(read(&numbered(&log, 1)), "current");
        assert_eq!(read(&numbered(&log, 2)), "older");

        fs::write(&log, "again").unwrap();
        copy_truncate(&log, 0).unwrap();
        assert_eq!(read(&log), "");
        assert_eq!(read(&numbered(&log, 1)), "current");
    }

    #[test]
    fn rotation_leaves_small_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        fs::write(&log, "tiny").unwrap();
        rotate_if_full(&log, 100, 3).unwrap();
        assert_eq!(read(&log), "tiny");
        rotate_if_full(&dir.path().join("absent.log"), 1, 3).unwrap();
    }

    #[test]
    fn rotation_with_keep_zero_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        fs::write(&log, "0123456789").unwrap();
        rotate_if_full(&log, 10, 0).unwrap();
        assert!(!log.exists());
        assert!(!numbered(&log, 1).exists());
    }

    #[test]
    fn open_creates_private_dir_and_appends() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;

        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let config = LogConfig::default();
        let mut logs = open_job_logs(&dir, &stdout, &stderr, &config).unwrap();
        logs.stderr.write_all(b"first\n").unwrap();
        drop(logs);
        let logs = open_job_logs(&dir, &stdout, &stderr, &config).unwrap();
        assert_eq!(logs.stderr_offset, 6);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file_mode = fs::metadata(&stdout).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
    }

    #[test]
    fn setup_error_is_last_corral_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        fs::write(&log, "old output\ncorral: old error\n").unwrap();
        let offset = fs::metadata(&log).unwrap().len();
        assert_eq!(read_setup_error(&log, offset), None);
        let mut text = read(&log);
        text.push_str("corral: failed to mount overlay on /x\nnoise\n");
        fs::write(&log, text).unwrap();
        assert_eq!(
            read_setup_error(&log, offset).as_deref(),
            Some("corral: failed to mount overlay on /x")
        );
    }
}
