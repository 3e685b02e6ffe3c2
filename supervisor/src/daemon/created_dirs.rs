//! Directories that a starting supervisord creates, removed again when its
//! start fails, so that a rejected daemon leaves nothing behind.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The directories this process created, in the order of creation. Dropping
/// it removes them, newest first, unless [`CreatedDirs::keep`] was called.
#[derive(Debug, Default)]
pub struct CreatedDirs {
    created: Vec<PathBuf>,
}

impl CreatedDirs {
    /// Creates `dir` and its missing ancestors with `mode`, and notes each
    /// directory that this call created. A directory that another process
    /// creates at the same moment counts as existing, so it is not removed.
    pub fn create_all(&mut self, dir: &Path, mode: u32) -> io::Result<()> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|ancestor| !ancestor.as_os_str().is_empty() && !ancestor.exists())
            .collect();
        for ancestor in missing.into_iter().rev() {
            match fs::DirBuilder::new().mode(mode).create(ancestor) {
                Ok(()) => self.created.push(ancestor.to_path_buf()),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
        // A path that names a file is not a directory, and the loop above
        // took it for an existing one.
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        Ok(())
    }

    /// Keeps the created directories: the start succeeded.
    pub fn keep(mut self) {
        self.created.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // The directory contains only what this process wrote there
            // since it created it, such as its lock file.
            match fs::remove_dir_all(dir) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "removed a directory of a failed start")
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "failed to remove a directory of a failed start")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn drop_removes_only_created_dirs() {
        let root = tempfile::tempdir().unwrap();
        let existing = root.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::write(existing.join("kept"), "x").unwrap();

        let mut created = CreatedDirs::default();
        created
            .create_all(&existing.join("new/deeper"), 0o700)
            .unwrap();
        created.create_all(&existing, 0o700).unwrap();
        let new = existing.join("new");
        assert!(new.join("deeper").is_dir());
        let mode = fs::metadata(&new).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::write(new.join("deeper/.supervisord.lock"), "1").unwrap();
        drop(created);

        assert!(!new.exists(), "a created directory is left");
        assert!(
            existing.join("kept").exists(),
            "an existing file was removed"
        );
    }

    #[test]
    fn keep_leaves_created_dirs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let mut created = CreatedDirs::default();
        created.create_all(&dir, 0o700).unwrap();
        created.keep();
        assert!(dir.is_dir());
    }

    #[test]
    fn file_in_the_way_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        fs::write(&file, "x").unwrap();
        let mut created = CreatedDirs::default();
        let error = created.create_all(&file, 0o700).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory);
        drop(created);
        assert!(file.is_file());
    }
}
