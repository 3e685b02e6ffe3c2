//! Writing a root filesystem directory as a tar stream, so that importing a
//! directory goes through the same unpacking, digest and store path as a
//! tarball, and the layer's diff ID is the digest of that stream.
//!
//! The walk never follows symlinks, visits names in byte order so the same
//! tree gives the same stream, records hard links once, and keeps owners,
//! modes, modification times, device numbers and extended attributes (as
//! `SCHILY.xattr.*` PAX records). Sockets are skipped: tar cannot hold them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

/// Writes `root` and everything below it to `out` as a tar archive with
/// paths relative to `root` (the root itself is `./`).
pub(crate) fn write_tree<W: Write>(root: &Path, out: W) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut writer = TreeWriter {
        builder,
        hard_links: HashMap::new(),
    };
    writer.append(root, Path::new("./"))?;
    writer.walk(root, Path::new(""))?;
    writer.builder.into_inner()?.flush()
}

struct TreeWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First archive path of each multiply-linked inode, by (device, inode).
    hard_links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWriter<W> {
    fn walk(&mut self, dir: &Path, relative: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let archive_path = relative.join(&name);
            let is_dir = self.append(&path, &archive_path)?;
            if is_dir {
                self.walk(&path, &archive_path)?;
            }
        }
        Ok(())
    }

    /// Appends one entry; returns whether it is a directory to descend into.
    fn append(&mut self, path: &Path, archive_path: &Path) -> io::Result<bool> {
        let metadata = fs::symlink_metadata(path)?;
        let file_type = metadata.file_type();
        if file_type.is_socket() {
            tracing::debug!(path = %path.display(), "skipping a socket, which tar cannot hold");
            return Ok(false);
        }
        self.append_xattrs(path)?;

        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&metadata, HeaderMode::Complete);

        if !file_type.is_dir() && metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.hard_links.get(&key) {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                self.builder.append_link(&mut header, archive_path, first)?;
                return Ok(false);
            }
            self.hard_links.insert(key, archive_path.to_path_buf());
        }

        if file_type.is_symlink() {
            let target = fs::read_link(path)?;
            header.set_size(0);
            self.builder
                .append_link(&mut header, archive_path, target)?;
        } else if file_type.is_file() {
            let file = File::open(path)?;
            self.builder.append_data(&mut header, archive_path, file)?;
        } else {
            if file_type.is_char_device() || file_type.is_block_device() {
                let device = metadata.rdev();
                header.set_device_major(libc::major(device))?;
                header.set_device_minor(libc::minor(device))?;
            }
            header.set_size(0);
            self.builder
                .append_data(&mut header, archive_path, io::empty())?;
        }
        Ok(file_type.is_dir())
    }

    fn append_xattrs(&mut self, path: &Path) -> io::Result<()> {
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        let names = match xattr::list(path) {
            Ok(names) => names,
            // Symlinks on some filesystems do not support listing.
            Err(error) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
            Err(error) => return Err(error),
        };
        for name in names {
            let Some(text) = name.to_str() else { continue };
            if let Some(value) = xattr::get(path, &name)? {
                records.push((format!("SCHILY.xattr.{text}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        records.sort();
        self.builder.append_pax_extensions(
            records
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_slice())),
        )
    }
}
