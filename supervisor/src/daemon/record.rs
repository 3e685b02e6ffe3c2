//! Reading back the files that supervisord, its shims and the runtime
//! write into the run directory: settled states, shim and exit records,
//! pid files and bundles.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Maximum size of a record in bytes (16 MiB): 16 times the maximum size
/// of a job file, because the largest records, the OCI config and the job
/// spec in a bundle, are built from one job file.
pub const MAX_RECORD_SIZE: u64 = 16 * 1024 * 1024;

/// Reads a record file, like [`std::fs::read`] but without blocking on a
/// FIFO and without reading more than [`MAX_RECORD_SIZE`] bytes.
///
/// The open uses `O_NONBLOCK` and `O_NOCTTY`, and a file that fstat does
/// not report as a regular file, or that is larger than the maximum, is
/// an [`io::ErrorKind::InvalidData`] error that names the file type or
/// the size. A missing file is [`io::ErrorKind::NotFound`], as with
/// [`std::fs::read`].
pub fn read_record(path: &Path) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        let kind = corral_config::file_type_name(metadata.file_type());
        return Err(invalid(format!("not a regular file ({kind})")));
    }
    if metadata.len() > MAX_RECORD_SIZE {
        return Err(too_large(metadata.len()));
    }
    let bytes = read_at_most(file, MAX_RECORD_SIZE)?;
    if bytes.len() as u64 > MAX_RECORD_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn read_at_most(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn too_large(size: u64) -> io::Error {
    invalid(format!(
        "the file is {size} bytes, larger than the maximum of {MAX_RECORD_SIZE} bytes for a record"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_record_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(read_record(&path).unwrap(), b"{}");
        let missing = read_record(&dir.path().join("missing.json")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn read_record_rejects_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let error = read_record(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "not a regular file (FIFO)");
    }

    #[test]
    fn read_record_rejects_device() {
        let error = read_record(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "not a regular file (character device)");
    }

    #[test]
    fn read_record_enforces_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_RECORD_SIZE).unwrap();
        assert_eq!(read_record(&path).unwrap().len() as u64, MAX_RECORD_SIZE);
        file.set_len(MAX_RECORD_SIZE + 1).unwrap();
        let error = read_record(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            error.to_string(),
            "the file is 16777217 bytes, larger than the maximum of 16777216 bytes for a record"
        );
    }
}
