//! Reads and writes of cgroup control files, with errors that name the file
//! and the value.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::CgroupError;

/// Writes `value` to an existing control file in one `write(2)`.
///
/// The file is never created: a missing control file means the kernel lacks
/// the feature, and creating a regular file in its place would hide that.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let error = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    tracing::debug!(path = %path.display(), value, "writing cgroup file");
    #[cfg(test)]
    record::push(path, value);

    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(error)?;
    file.write_all(value.as_bytes()).map_err(error)
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file of one PID per line, such as `cgroup.procs`.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read(path)?;
    let mut pids = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let pid = line.parse().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            line: line.to_string(),
            reason: "expected a process id",
        })?;
        pids.push(pid);
    }
    Ok(pids)
}

/// Returns the number after `key` in a flat keyed file such as
/// `memory.events` (`oom_kill 3`).
pub(crate) fn read_keyed(path: &Path, key: &'static str) -> Result<u64, CgroupError> {
    let text = read(path)?;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let value = fields.next().and_then(|value| value.parse().ok());
        return value.ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            line: line.to_string(),
            reason: "expected a key and an unsigned number",
        });
    }
    Err(CgroupError::MissingKey {
        file: path.to_path_buf(),
        key,
    })
}

/// A per-thread log of every `write` call, so unit tests on a temp tree can
/// check the values and order of writes that land in the same file.
#[cfg(test)]
pub(crate) mod record {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static WRITES: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn push(path: &Path, value: &str) {
        WRITES.with(|writes| {
            writes
                .borrow_mut()
                .push((path.to_path_buf(), value.to_string()))
        });
    }

    /// Returns and clears the writes this thread made so far.
    pub(crate) fn take() -> Vec<(PathBuf, String)> {
        WRITES.with(|writes| std::mem::take(&mut *writes.borrow_mut()))
    }
}
