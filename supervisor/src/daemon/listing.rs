//! Listing the directories that supervisord keeps its files in.

use std::fs::{self, DirEntry};
use std::io;
use std::path::Path;

/// The entries whose names start with a dot that [`list_dir`] returns:
/// all or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotFiles {
    Include,
    Skip,
}

/// Lists the entries of `dir`. A missing directory has no entries. A
/// directory that cannot be read is logged and has none, and an entry that
/// cannot be read is left out.
pub fn list_dir(dir: &Path, dot_files: DotFiles) -> Vec<DirEntry> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "failed to list a directory");
            }
            return Vec::new();
        }
    };
    entries
        .flatten()
        .filter(|entry| {
            dot_files == DotFiles::Include
                || !entry.file_name().as_encoded_bytes().starts_with(b".")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: Vec<DirEntry>) -> Vec<String> {
        let mut names: Vec<String> = entries
            .into_iter()
            .map(|entry| entry.file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn list_dir_dot_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["web", ".supervisord.lock"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let all = names(list_dir(dir.path(), DotFiles::Include));
        assert_eq!(all, [".supervisord.lock", "web"]);
        let visible = names(list_dir(dir.path(), DotFiles::Skip));
        assert_eq!(visible, ["web"]);
    }

    #[test]
    fn list_dir_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(list_dir(&missing, DotFiles::Include).is_empty());
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(list_dir(&file, DotFiles::Include).is_empty());
    }
}
