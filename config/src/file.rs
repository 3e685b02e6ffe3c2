//! Reading job files and drop-ins from disk without blocking on special
//! files and without unbounded memory use.

use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::ConfigError;

/// Maximum size of a job file or drop-in in bytes (1 MiB). It is far above
/// the size of a hand-written job file, so it only stops a link to a huge
/// file from being read into memory.
pub const MAX_JOB_FILE_SIZE: u64 = 1024 * 1024;

/// Reads a job file or drop-in as UTF-8 text, following symbolic links.
///
/// Rejects anything that is not a regular file, such as a FIFO or a device,
/// and a file larger than [`MAX_JOB_FILE_SIZE`]. The path is checked with
/// stat before the open, so that a device is never opened, and the opened
/// file is checked again with fstat, because the path may be replaced in
/// between. The open uses `O_NONBLOCK`, so that a FIFO put in place after
/// the stat does not block it, and `O_NOCTTY`, so that a terminal never
/// becomes the controlling terminal of the process.
pub(crate) fn read_job_text(path: &Path) -> Result<String, ConfigError> {
    let read_error = |error| ConfigError::io(path, "read", error);
    // A missing file or dangling link is left to the open, which reports it.
    if let Ok(metadata) = fs::metadata(path) {
        check_regular(path, metadata.file_type())?;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    check_regular(path, metadata.file_type())?;
    check_size(path, metadata.len())?;

    let bytes = read_at_most(file, MAX_JOB_FILE_SIZE).map_err(read_error)?;
    // The file grew after the fstat.
    check_size(path, bytes.len() as u64)?;
    String::from_utf8(bytes).map_err(|error| {
        read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is not valid UTF-8: {}", error.utf8_error()),
        ))
    })
}

/// Reads up to `limit + 1` bytes, so that the caller can tell a file of
/// exactly `limit` bytes from a larger one.
fn read_at_most(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn check_regular(path: &Path, file_type: FileType) -> Result<(), ConfigError> {
    if file_type.is_file() {
        return Ok(());
    }
    Err(ConfigError::NotRegularFile {
        file: path.to_path_buf(),
        kind: file_type_name(file_type),
    })
}

fn check_size(path: &Path, size: u64) -> Result<(), ConfigError> {
    if size <= MAX_JOB_FILE_SIZE {
        return Ok(());
    }
    Err(ConfigError::TooLarge {
        file: path.to_path_buf(),
        size,
        limit: MAX_JOB_FILE_SIZE,
    })
}

/// Returns the name of a file type as `ls` and stat(1) call it.
pub fn file_type_name(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "unknown file type"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn mkfifo(path: &Path) {
        let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let result = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
        assert_eq!(result, 0, "mkfifo: {}", io::Error::last_os_error());
    }

    #[test]
    fn read_rejects_special_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        mkfifo(&fifo);
        let socket = dir.path().join("socket.json");
        let _listener = UnixListener::bind(&socket).unwrap();
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let null = dir.path().join("null.json");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        for (path, kind) in [
            (&fifo, "FIFO"),
            (&socket, "socket"),
            (&zero, "character device"),
            (&null, "character device"),
            (&dir.path().to_path_buf(), "directory"),
        ] {
            let error = read_job_text(path).unwrap_err();
            let ConfigError::NotRegularFile { file, kind: found } = &error else {
                panic!("{}: expected NotRegularFile, got {error}", path.display());
            };
            assert_eq!(file, path);
            assert_eq!(*found, kind, "{}", path.display());
            assert_eq!(
                error.to_string(),
                format!(
                    "{}: not a regular file ({kind}): a job file or drop-in must be a regular \
                     file or a symbolic link to one",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn read_follows_symlinks_to_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_job_text(&link).unwrap(), "{}");
    }

    #[test]
    fn read_enforces_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at-limit.json");
        fs::write(&at_limit, vec![b' '; MAX_JOB_FILE_SIZE as usize]).unwrap();
        assert_eq!(
            read_job_text(&at_limit).unwrap().len() as u64,
            MAX_JOB_FILE_SIZE
        );

        let over = dir.path().join("over.json");
        fs::write(&over, vec![b' '; MAX_JOB_FILE_SIZE as usize + 1]).unwrap();
        let error = read_job_text(&over).unwrap_err();
        assert!(
            matches!(error, ConfigError::TooLarge { size, limit, .. }
                if size == MAX_JOB_FILE_SIZE + 1 && limit == MAX_JOB_FILE_SIZE),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{}: the file is 1048577 bytes, larger than the maximum of 1048576 bytes \
                 for a job file or drop-in",
                over.display()
            )
        );

        // A sparse file takes no disk space but would take memory.
        let sparse = dir.path().join("sparse.json");
        File::create(&sparse).unwrap().set_len(1 << 40).unwrap();
        let error = read_job_text(&sparse).unwrap_err();
        assert!(
            matches!(error, ConfigError::TooLarge { size, .. } if size == 1 << 40),
            "{error}"
        );
    }

    #[test]
    fn read_rejects_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.json");
        fs::write(&path, b"{\"command\": [\"caf\xe9\"]}").unwrap();
        let error = read_job_text(&path).unwrap_err();
        assert!(matches!(error, ConfigError::Io { .. }), "{error}");
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");
    }
}
