//! Random access to the files of an image source: an OCI layout directory,
//! or a plain tar archive (oci-archive, `docker save`) indexed once so that
//! blobs can be read in the order the manifests name them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::import::ImportError;

/// Links followed when resolving a member of an archive, as the kernel's
/// limit for path resolution.
const MAX_LINK_HOPS: usize = 40;

/// Files of an image source, by their path relative to its root.
pub(crate) trait Blobs {
    /// Opens `name`, returning [`ImportError::Missing`] when it does not exist.
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImportError>;
    /// Returns the size of `name`, when it exists.
    fn size(&self, name: &str) -> Option<u64>;
    /// Returns the path of the source, for messages.
    fn source(&self) -> &Path;
}

/// The files of a directory (an OCI image layout).
pub(crate) struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    pub fn new(root: &Path) -> Self {
        DirBlobs {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        let parts = normalize(name)?;
        let mut path = self.root.clone();
        path.extend(parts);
        Some(path)
    }
}

impl Blobs for DirBlobs {
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let missing = || ImportError::Missing {
            name: name.to_string(),
            source_path: self.root.clone(),
        };
        let path = self.path(name).ok_or_else(missing)?;
        match File::open(&path) {
            Ok(file) => Ok(Box::new(file)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(missing()),
            Err(source) => Err(ImportError::Io {
                operation: "open",
                path,
                source,
            }),
        }
    }

    fn size(&self, name: &str) -> Option<u64> {
        let path = self.path(name)?;
        std::fs::metadata(path).ok().map(|m| m.len())
    }

    fn source(&self) -> &Path {
        &self.root
    }
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Symlink(String),
    HardLink(String),
    Other,
}

/// The members of a plain tar file, indexed by normalized path.
pub(crate) struct TarBlobs {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl TarBlobs {
    /// Reads every header of the plain tar file at `path`, seeking over the
    /// contents.
    pub fn index(path: &Path) -> Result<Self, ImportError> {
        let read_error = |source| ImportError::Io {
            operation: "read the tar archive",
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            for entry in archive.entries_with_seek().map_err(read_error)? {
                let entry = entry.map_err(read_error)?;
                let raw = entry.path_bytes();
                let Some(name) = normalize(&String::from_utf8_lossy(&raw)).map(|p| p.join("/"))
                else {
                    continue;
                };
                let link = || {
                    entry
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default()
                };
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                    tar::EntryType::Symlink => Member::Symlink(link()),
                    tar::EntryType::Link => Member::HardLink(link()),
                    _ => Member::Other,
                };
                members.insert(name, member);
            }
        }
        Ok(TarBlobs {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Follows symbolic and hard links inside the archive (podman's
    /// docker-archive links `ID/layer.tar` to `DIFFID.tar`) to a file.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut current = normalize(name)?.join("/");
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&current)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::HardLink(target) => current = normalize(target)?.join("/"),
                Member::Symlink(target) => {
                    let base = match current.rsplit_once('/') {
                        Some((dir, _)) if !target.starts_with('/') => format!("{dir}/{target}"),
                        _ => target.clone(),
                    };
                    current = normalize(&base)?.join("/");
                }
                Member::Other => return None,
            }
        }
        None
    }
}

impl Blobs for TarBlobs {
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let (offset, size) = self.resolve(name).ok_or_else(|| ImportError::Missing {
            name: name.to_string(),
            source_path: self.path.clone(),
        })?;
        Ok(Box::new(Section {
            file: &self.file,
            offset,
            remaining: size,
        }))
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.resolve(name).map(|(_, size)| size)
    }

    fn source(&self) -> &Path {
        &self.path
    }
}

/// A byte range of a file, read with positional reads so that several
/// sections of one file can be open at once.
struct Section<'a> {
    file: &'a File,
    offset: u64,
    remaining: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let wanted = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let count = self.file.read_at(&mut buf[..wanted], self.offset)?;
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a member",
            ));
        }
        self.offset += count as u64;
        self.remaining -= count as u64;
        Ok(count)
    }
}

/// Splits a path inside a source into components, dropping `.`, empty
/// parts and a leading `/`, and resolving `..`. Returns None when `..`
/// would leave the root.
fn normalize(name: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part.to_string()),
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_stays_inside_the_root() {
        assert_eq!(
            normalize("./blobs//sha256/ab"),
            Some(vec!["blobs".into(), "sha256".into(), "ab".into()])
        );
        assert_eq!(normalize("a/../b"), Some(vec!["b".to_string()]));
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("/"), Some(Vec::new()));
    }
}
