//! Finding the process's executable inside the container, and the error that
//! names why `process.args[0]` cannot be executed.

use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::unistd::{faccessat, AccessFlags};
use serde::{Deserialize, Serialize};

/// The executable of a container's process cannot be executed.
///
/// `create` returns it when the init's check fails, so the caller learns
/// the reason before `start` instead of from an exit status of 127 or 126.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("exec {program:?}: {reason}")]
pub struct ExecutableError {
    /// `process.args[0]` as config.json gives it.
    pub program: String,
    pub reason: ExecutableReason,
}

/// Reason that an executable cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ExecutableReason {
    #[error("no such file in the container")]
    NotFound,
    /// A name without a slash matched no file in any directory of `PATH`.
    #[error("not found in the container's PATH {search_path:?}")]
    NotInPath { search_path: String },
    /// The file lacks execute permission for the process's user, is on a
    /// noexec mount, or a directory on its path lacks search permission.
    #[error("permission denied: the process's user may not execute {} in the container", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{} is a directory", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    #[error("failed to check {}: {message}", path.display())]
    Inaccessible { path: PathBuf, message: String },
}

/// Returns the `PATH` of a process environment, or `default` without one.
pub(crate) fn search_path<'a>(env: &'a [String], default: &'a str) -> &'a str {
    env.iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(default)
}

/// Finds the file that execve would run for `program`, as the calling
/// process's user and relative to its working directory.
///
/// A `program` with a slash names the file itself. Otherwise each
/// directory of `search_path` is tried in order, as runc and execvp(3) do,
/// and the first executable regular file wins. When no directory has one
/// but one has a file that is not executable, the error is permission
/// denied on that file, as a shell reports it.
pub(crate) fn locate(program: &str, search_path: &str) -> Result<PathBuf, ExecutableError> {
    let fail = |reason| ExecutableError {
        program: program.to_string(),
        reason,
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return check_file(&path).map(|()| path).map_err(fail);
    }
    let mut denied = None;
    for directory in search_path.split(':').filter(|dir| !dir.is_empty()) {
        let candidate = Path::new(directory).join(program);
        match check_file(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(ExecutableReason::PermissionDenied { path }) if denied.is_none() => {
                denied = Some(path);
            }
            Err(_) => {}
        }
    }
    Err(fail(match denied {
        Some(path) => ExecutableReason::PermissionDenied { path },
        None => ExecutableReason::NotInPath {
            search_path: search_path.to_string(),
        },
    }))
}

/// Checks that `path` is a regular file that this process may execute.
fn check_file(path: &Path) -> Result<(), ExecutableReason> {
    let metadata = std::fs::metadata(path).map_err(|error| match error.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => ExecutableReason::NotFound,
        Some(libc::EACCES) => ExecutableReason::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ExecutableReason::Inaccessible {
            path: path.to_path_buf(),
            message: error.to_string(),
        },
    })?;
    if metadata.is_dir() {
        return Err(ExecutableReason::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !metadata.is_file() {
        return Err(ExecutableReason::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    // AT_EACCESS checks with the effective IDs and capabilities, which
    // execve uses too. The kernel also returns EACCES for a file on a
    // noexec mount.
    match faccessat(
        AT_FDCWD,
        path,
        AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(nix::Error::EACCES) => Err(ExecutableReason::PermissionDenied {
            path: path.to_path_buf(),
        }),
        // A seccomp profile may deny faccessat2 while it allows execve, so
        // the check gives way and execve decides.
        Err(nix::Error::EPERM | nix::Error::ENOSYS) => Ok(()),
        Err(error) => Err(ExecutableReason::Inaccessible {
            path: path.to_path_buf(),
            message: error.desc().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn locate_path_with_slash() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("run");
        write_file(&program, 0o755);
        let text = program.to_str().unwrap();
        assert_eq!(locate(text, "").unwrap(), program);

        let missing = dir.path().join("missing");
        let error = locate(missing.to_str().unwrap(), "/bin").unwrap_err();
        assert_eq!(error.reason, ExecutableReason::NotFound);
        assert_eq!(
            error.to_string(),
            format!(
                "exec {:?}: no such file in the container",
                missing.to_str().unwrap()
            )
        );

        let error = locate(dir.path().to_str().unwrap(), "").unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::IsDirectory {
                path: dir.path().to_path_buf()
            }
        );

        let error = locate("/dev/null", "").unwrap_err();
        assert!(matches!(
            error.reason,
            ExecutableReason::NotRegularFile { .. }
        ));
    }

    #[test]
    fn locate_searches_path_in_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write_file(&first.path().join("tool"), 0o644);
        write_file(&second.path().join("tool"), 0o755);
        let search = format!("{}::{}", first.path().display(), second.path().display());
        // A file without execute permission is skipped, as execvp(3) skips it.
        assert_eq!(locate("tool", &search).unwrap(), second.path().join("tool"));

        let error = locate("absent", &search).unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::NotInPath {
                search_path: search.clone()
            }
        );
        assert!(error
            .to_string()
            .contains("not found in the container's PATH"));
    }

    #[test]
    fn locate_reports_permission_denied() {
        // Root passes the mode check when any execute bit is set, so only
        // a file with none of them is denied for every user.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        write_file(&script, 0o644);
        let error = locate(script.to_str().unwrap(), "").unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::PermissionDenied {
                path: script.clone()
            }
        );
        let search = dir.path().display().to_string();
        let error = locate("script", &search).unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::PermissionDenied { path: script }
        );
    }

    #[test]
    fn search_path_from_env() {
        let env = vec!["HOME=/root".to_string(), "PATH=/opt/bin".to_string()];
        assert_eq!(search_path(&env, "/bin"), "/opt/bin");
        assert_eq!(search_path(&[], "/bin"), "/bin");
    }
}
