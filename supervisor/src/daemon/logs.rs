//! Job log files: `LOG_DIR/NAME/stdout.log` and `stderr.log`.
//!
//! supervisord prepares them when a container starts: a file of `max_size`
//! or more becomes `.1`, older ones shift up to `.KEEP`, and the oldest is
//! deleted. While the container runs, its `corral-monitor` writes and
//! rotates them (see [`crate::monitor`]).

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use corral_config::LogConfig;

use crate::logrotate;

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

/// Creates `dir` (mode 0700), rotates the files that reached
/// `config.max_size`, creates both files (mode 0600) and returns the size
/// of the stderr file, after which a setup error of the new container
/// starts.
pub fn prepare_job_logs(
    dir: &Path,
    stdout_path: &Path,
    stderr_path: &Path,
    config: &LogConfig,
) -> Result<u64, LogError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LogError::CreateDir {
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
        let file = open_append(path)?;
        stderr_offset = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    }
    Ok(stderr_offset)
}

fn open_append(path: &Path) -> Result<File, LogError> {
    logrotate::open_append(path).map_err(|source| LogError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the setup error the shim or its monitor printed to stderr after
/// `offset`: the last line that starts with `corral:` or `corral-monitor:`,
/// or the last non-empty line. Reads at most the final 4 KiB.
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
        .find(|line| line.starts_with("corral:") || line.starts_with("corral-monitor:"))
        .or(lines.last())
        .map(|line| line.to_string())
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
            prepare_job_logs(&dir, &stdout, &stderr, &config).unwrap(),
            0
        );
        fs::write(&stderr, "first\n").unwrap();
        assert_eq!(
            prepare_job_logs(&dir, &stdout, &stderr, &config).unwrap(),
            6
        );
        fs::write(&stdout, "0123456789").unwrap();
        prepare_job_logs(&dir, &stdout, &stderr, &config).unwrap();
        assert_eq!(read(&stdout), "");
        assert_eq!(read(&logrotate::numbered(&stdout, 1)), "0123456789");
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
        fs::write(&log, &text).unwrap();
        assert_eq!(
            read_setup_error(&log, offset).as_deref(),
            Some("corral: failed to mount overlay on /x")
        );

        let monitor = "corral-monitor: failed to read log settings /x/logs.json: no such file";
        fs::write(&log, format!("{text}{monitor}\nlater noise\n")).unwrap();
        assert_eq!(read_setup_error(&log, offset).as_deref(), Some(monitor));
    }
}
