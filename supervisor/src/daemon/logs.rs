//! Job log files: `LOG_DIR/NAME/stdout.log` and `stderr.log`.
//!
//! supervisord prepares them when a container starts: a file of `max_size`
//! or more becomes `.1`, older ones shift up to `.KEEP`, and the oldest is
//! deleted. While the container runs, its `corral-monitor` writes and
//! rotates them (see [`crate::monitor`]).

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use corral_config::LogConfig;

use crate::daemon::listing::{self, DotFiles};
use crate::logrotate::{self, LogPermissions};

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
    #[error("failed to set the group or mode of {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Gives every job's log directory below `log_dir`, and the log files in
/// it, the group and modes of `permissions`. Dot files, such as the lock
/// file, and symbolic links are left alone. Failures are logged.
pub fn apply_to_existing_logs(log_dir: &Path, permissions: LogPermissions) {
    let apply = |path: &Path, is_dir: bool| {
        if let Err(error) = permissions.apply_to_path(path, is_dir) {
            tracing::warn!(path = %path.display(), %error, "failed to set the group or mode of a log");
        }
    };
    for entry in listing::list_dir(log_dir, DotFiles::Skip) {
        let job_dir = entry.path();
        let Ok(metadata) = fs::symlink_metadata(&job_dir) else {
            continue;
        };
        if !metadata.is_dir() {
            continue;
        }
        apply(&job_dir, true);
        for entry in listing::list_dir(&job_dir, DotFiles::Skip) {
            let file = entry.path();
            if fs::symlink_metadata(&file).is_ok_and(|metadata| metadata.is_file()) {
                apply(&file, false);
            }
        }
    }
}

/// Creates `dir`, rotates the files that reached `config.max_size`,
/// creates both files and returns the size of the stderr file, after which
/// a setup error of the new container starts. The directory, both files and
/// their kept generations get `permissions`, also when they exist from a
/// run with other permissions.
pub fn prepare_job_logs(
    dir: &Path,
    stdout_path: &Path,
    stderr_path: &Path,
    config: &LogConfig,
    permissions: LogPermissions,
) -> Result<u64, LogError> {
    DirBuilder::new()
        .recursive(true)
        .mode(permissions.dir_mode())
        .create(dir)
        .map_err(|source| LogError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    permissions
        .apply_to_path(dir, true)
        .map_err(|source| LogError::Permissions {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut stderr_offset = 0;
    for path in [stdout_path, stderr_path] {
        logrotate::rotate_if_full(path, config.max_size.bytes(), config.keep).map_err(
            |source| LogError::Rotate {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let file = open_append(path, permissions)?;
        stderr_offset = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        apply_to_generations(path, config.keep, permissions)?;
    }
    Ok(stderr_offset)
}

/// Applies `permissions` to each existing kept generation `.1` to `.keep`
/// of `path`.
fn apply_to_generations(
    path: &Path,
    keep: u32,
    permissions: LogPermissions,
) -> Result<(), LogError> {
    for number in 1..=keep {
        let generation = logrotate::numbered(path, number);
        match permissions.apply_to_path(&generation, false) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => break,
            Err(source) => {
                return Err(LogError::Permissions {
                    path: generation,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn open_append(path: &Path, permissions: LogPermissions) -> Result<File, LogError> {
    let file = logrotate::open_append(path, permissions).map_err(|source| LogError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    permissions
        .apply_to_file(&file)
        .map_err(|source| LogError::Permissions {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(file)
}

/// Reads the setup error the shim or its monitor printed to stderr after
/// `offset`: the last line that starts with `corral:` or `corral-monitor:`,
/// or the last non-empty line. Reads at most the final 4 KiB.
pub fn read_setup_error(stderr_path: &Path, offset: u64) -> Option<String> {
    let lines = read_tail_lines(stderr_path, offset)?;
    runtime_line(&lines)
        .or(lines.last())
        .map(|line| line.to_string())
}

/// Reads the last line after `offset` that starts with `corral:` or
/// `corral-monitor:`, within the final 4 KiB of stderr, if any.
pub fn read_runtime_error(stderr_path: &Path, offset: u64) -> Option<String> {
    let lines = read_tail_lines(stderr_path, offset)?;
    runtime_line(&lines).map(|line| line.to_string())
}

fn runtime_line(lines: &[String]) -> Option<&String> {
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("corral:") || line.starts_with("corral-monitor:"))
}

/// Returns the non-empty lines of the stderr log after `offset`, trimmed,
/// from at most its final 4 KiB.
fn read_tail_lines(stderr_path: &Path, offset: u64) -> Option<Vec<String>> {
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
    Some(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|_| "<missing>".to_string())
    }

    #[test]
    fn prepare_creates_private_files_and_rotates() {
        use std::os::unix::fs::PermissionsExt;

        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let config = LogConfig {
            max_size: corral_config::ByteSize(8),
            keep: 1,
        };
        assert_eq!(
            prepare_job_logs(&dir, &stdout, &stderr, &config, LogPermissions::PRIVATE).unwrap(),
            0
        );
        fs::write(&stderr, "first\n").unwrap();
        assert_eq!(
            prepare_job_logs(&dir, &stdout, &stderr, &config, LogPermissions::PRIVATE).unwrap(),
            6
        );
        fs::write(&stdout, "0123456789").unwrap();
        prepare_job_logs(&dir, &stdout, &stderr, &config, LogPermissions::PRIVATE).unwrap();
        assert_eq!(read(&stdout), "");
        assert_eq!(read(&logrotate::numbered(&stdout, 1)), "0123456789");
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file_mode = fs::metadata(&stdout).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
    }

    #[test]
    fn prepare_opens_logs_to_the_group_and_back() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};

        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let config = LogConfig {
            max_size: corral_config::ByteSize(8),
            keep: 2,
        };
        // Any group works for root; 4242 need not exist.
        let group = if nix::unistd::geteuid().is_root() {
            4242
        } else {
            nix::unistd::getegid().as_raw()
        };
        let shared = LogPermissions { group: Some(group) };
        prepare_job_logs(&dir, &stdout, &stderr, &config, LogPermissions::PRIVATE).unwrap();
        fs::write(&stdout, "0123456789").unwrap();
        prepare_job_logs(&dir, &stdout, &stderr, &config, shared).unwrap();
        let rotated = logrotate::numbered(&stdout, 1);
        for (path, mode) in [
            (&dir, 0o750),
            (&stdout, 0o640),
            (&stderr, 0o640),
            (&rotated, 0o640),
        ] {
            let meta = fs::metadata(path).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
            assert_eq!(meta.gid(), group, "{}", path.display());
        }

        prepare_job_logs(&dir, &stdout, &stderr, &config, LogPermissions::PRIVATE).unwrap();
        for (path, mode) in [
            (&dir, 0o700),
            (&stdout, 0o600),
            (&stderr, 0o600),
            (&rotated, 0o600),
        ] {
            let meta = fs::metadata(path).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
        }
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
        fs::write(&log, &text).unwrap();
        assert_eq!(
            read_setup_error(&log, offset).as_deref(),
            Some("corral: failed to mount overlay on /x")
        );

        let monitor = "corral-monitor: failed to read log settings /x/logs.json: no such file";
        fs::write(&log, format!("{text}{monitor}\nlater noise\n")).unwrap();
        assert_eq!(read_setup_error(&log, offset).as_deref(), Some(monitor));
    }

    #[test]
    fn runtime_error_needs_a_corral_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        fs::write(&log, "corral: old error\n").unwrap();
        let offset = fs::metadata(&log).unwrap().len();
        let mut text = read(&log);
        text.push_str("the job's own error\n");
        fs::write(&log, &text).unwrap();
        assert_eq!(read_runtime_error(&log, offset), None);
        assert_eq!(
            read_setup_error(&log, offset).as_deref(),
            Some("the job's own error")
        );

        text.push_str("corral: init failed to fork the process: EAGAIN\n");
        fs::write(&log, &text).unwrap();
        assert_eq!(
            read_runtime_error(&log, offset).as_deref(),
            Some("corral: init failed to fork the process: EAGAIN")
        );
    }
}
