//! Unpacking one layer tarball into a directory that overlayfs can stack as
//! a lower layer.
//!
//! Layer whiteouts become overlayfs whiteouts: `DIR/.wh.NAME` becomes a
//! character device 0/0 named `DIR/NAME`, and `DIR/.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on `DIR`. Owners, modes, times, symlinks, hard
//! links, device nodes and `SCHILY.xattr.*` extended attributes are kept.
//!
//! Every entry is created relative to a directory descriptor that was
//! reached from the layer root one component at a time with `O_NOFOLLOW`,
//! so a symlink in the archive is never followed. An entry whose parent
//! path passes through a symlink is rejected, as is any path with `..`. A
//! leading `/` is dropped, as GNU tar does, so `/etc/passwd` lands in the
//! layer's `etc/`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;
use xattr::FileExt;

/// Prefix of layer whiteout entries.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the entry that makes its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Extended attribute that marks an opaque directory for overlayfs.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of the extended attributes overlayfs interprets. Archives may not
/// set them: only a `.wh..wh..opq` entry makes a directory opaque.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// PAX record prefix of extended attributes, as GNU tar, Docker and podman
/// write them.
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// An error unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("failed to read the layer archive")]
    Read {
        #[source]
        source: io::Error,
    },
    #[error("invalid entry path {path:?} in layer: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("entry {path:?} in layer passes through the symbolic link {component:?}, which unpacking never follows")]
    ThroughSymlink { path: String, component: String },
    #[error("entry {path:?} in layer needs {component:?} to be a directory, but it is not")]
    NotADirectory { path: String, component: String },
    #[error("entry {path:?} in layer has the unsupported tar type {kind:?}")]
    UnsupportedType { path: String, kind: String },
    #[error("failed to {operation} {path:?} in layer")]
    Sys {
        operation: &'static str,
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("failed to {operation} {path:?} in layer")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Counts of what one layer contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive entries unpacked, whiteouts included.
    pub entries: u64,
    /// Bytes of regular file contents.
    pub bytes: u64,
    /// Whiteouts and opaque directory markers converted.
    pub whiteouts: u64,
}

/// Unpacks the tar stream `reader` into `root`, an existing directory that
/// the caller created for this layer alone.
pub fn unpack_layer<R: Read>(reader: R, root: &Path) -> Result<UnpackStats, UnpackError> {
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| UnpackError::Sys {
        operation: "open the layer directory",
        path: root.display().to_string(),
        source,
    })?;
    let mut unpacker = Unpacker {
        root: root_fd,
        root_path: root.to_path_buf(),
        stats: UnpackStats::default(),
        directory_times: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|source| UnpackError::Read { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Read { source })?;
        unpacker.unpack_entry(&mut entry)?;
    }
    unpacker.restore_directory_times()?;
    Ok(unpacker.stats)
}

/// The parts of an entry's header and PAX records that unpacking applies.
struct Metadata {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    root_path: PathBuf,
    stats: UnpackStats,
    /// Directory modification times, set after every entry is written,
    /// because writing an entry changes its directory's time.
    directory_times: Vec<(Vec<OsString>, TimeSpec)>,
}

impl Unpacker {
    fn unpack_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let components = normalize(&raw_path, &display)?;
        let metadata = read_metadata(entry, &display)?;
        self.stats.entries += 1;

        let Some((name, parents)) = components.split_last() else {
            // The archive's own root ("./"): its owner and mode become the
            // layer root's.
            if kind != EntryType::Directory {
                return Err(UnpackError::InvalidPath {
                    path: display,
                    reason: "the root entry must be a directory",
                });
            }
            let root = self.root.try_clone().map_err(|source| UnpackError::Io {
                operation: "duplicate the descriptor of",
                path: display.clone(),
                source,
            })?;
            apply_to_descriptor(File::from(root), &metadata, &display, false)?;
            self.directory_times.push((Vec::new(), metadata.mtime));
            return Ok(());
        };

        let parent = self.open_directory(parents, &display, true)?;
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&parent, name, hidden, &components, &display);
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.create_file(&parent, name, entry, &components, &metadata, &display)
            }
            EntryType::Directory => {
                self.create_directory(&parent, name, &components, &metadata, &display)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidPath {
                        path: display.clone(),
                        reason: "symbolic link without a target",
                    })?
                    .into_owned();
                self.create_symlink(&parent, name, &target, &components, &metadata, &display)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidPath {
                        path: display.clone(),
                        reason: "hard link without a target",
                    })?
                    .into_owned();
                self.create_hard_link(&parent, name, &target, &components, &display)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let file_type = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.create_node(
                    &parent,
                    name,
                    file_type,
                    makedev(major.into(), minor.into()),
                    &components,
                    &metadata,
                    &display,
                )
            }
            other => Err(UnpackError::UnsupportedType {
                path: display,
                kind: format!("{other:?}"),
            }),
        }
    }

    /// Opens the directory `components` below the root without following
    /// any symlink, creating missing directories (mode 0755, owned by root,
    /// as Docker creates implied parents) when `create` is set.
    fn open_directory(
        &self,
        components: &[OsString],
        display: &str,
        create: bool,
    ) -> Result<OwnedFd, UnpackError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut current = self.root.try_clone().map_err(|source| UnpackError::Io {
            operation: "duplicate the layer root descriptor for",
            path: display.to_string(),
            source,
        })?;
        for component in components {
            let next = match openat(&current, component.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(
                        &current,
                        component.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(source) => {
                            return Err(UnpackError::Sys {
                                operation: "create the parent directory of",
                                path: display.to_string(),
                                source,
                            })
                        }
                    }
                    let fd = openat(&current, component.as_os_str(), flags, Mode::empty())
                        .map_err(|source| UnpackError::Sys {
                            operation: "open the parent directory of",
                            path: display.to_string(),
                            source,
                        })?;
                    // The process umask must not narrow an implied directory.
                    fchmod(&fd, Mode::from_bits_truncate(0o755)).map_err(|source| {
                        UnpackError::Sys {
                            operation: "set the mode of the parent directory of",
                            path: display.to_string(),
                            source,
                        }
                    })?;
                    fd
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let is_symlink = fstatat(
                        &current,
                        component.as_os_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    let component = component.to_string_lossy().into_owned();
                    let path = display.to_string();
                    return Err(if is_symlink {
                        UnpackError::ThroughSymlink { path, component }
                    } else {
                        UnpackError::NotADirectory { path, component }
                    });
                }
                Err(source) => {
                    return Err(UnpackError::Sys {
                        operation: "open the parent directory of",
                        path: display.to_string(),
                        source,
                    })
                }
            };
            current = next;
        }
        Ok(current)
    }

    /// Removes whatever `name` is in `parent`, unless it is a directory and
    /// `keep_directory` is set. Returns whether a directory was kept.
    fn clear(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        components: &[OsString],
        keep_directory: bool,
        display: &str,
    ) -> Result<bool, UnpackError> {
        let stat = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(false),
            Err(source) => {
                return Err(UnpackError::Sys {
                    operation: "inspect",
                    path: display.to_string(),
                    source,
                })
            }
        };
        let is_directory = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_directory && keep_directory {
            return Ok(true);
        }
        if is_directory {
            // Every component was opened with O_NOFOLLOW, so this path names
            // the same directory and remove_dir_all does not follow links
            // inside it.
            let mut path = self.root_path.clone();
            path.extend(components);
            std::fs::remove_dir_all(&path).map_err(|source| UnpackError::Io {
                operation: "replace the directory",
                path: display.to_string(),
                source,
            })?;
        } else {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|source| {
                UnpackError::Sys {
                    operation: "replace",
                    path: display.to_string(),
                    source,
                }
            })?;
        }
        Ok(false)
    }

    fn whiteout(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        hidden: &[u8],
        components: &[OsString],
        display: &str,
    ) -> Result<(), UnpackError> {
        self.stats.whiteouts += 1;
        if name == OPAQUE_WHITEOUT {
            let directory = File::from(parent.try_clone().map_err(|source| UnpackError::Io {
                operation: "duplicate the descriptor for",
                path: display.to_string(),
                source,
            })?);
            return directory
                .set_xattr(OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|source| UnpackError::Io {
                    operation: "mark opaque the directory of",
                    path: display.to_string(),
                    source,
                });
        }
        // Other `.wh..wh.` names are AUFS bookkeeping (hard link directories),
        // not whiteouts.
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            self.stats.whiteouts -= 1;
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::InvalidPath {
                path: display.to_string(),
                reason: "whiteout without a valid name",
            });
        }
        let hidden = OsStr::from_bytes(hidden);
        let mut hidden_components = components.to_vec();
        if let Some(last) = hidden_components.last_mut() {
            *last = hidden.to_os_string();
        }
        self.clear(parent, hidden, &hidden_components, false, display)?;
        mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|source| {
            UnpackError::Sys {
                operation: "create the overlayfs whiteout for",
                path: display.to_string(),
                source,
            }
        })
    }

    fn create_file<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        components: &[OsString],
        metadata: &Metadata,
        display: &str,
    ) -> Result<(), UnpackError> {
        self.clear(parent, name, components, false, display)?;
        let fd = openat(
            parent,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|source| UnpackError::Sys {
            operation: "create",
            path: display.to_string(),
            source,
        })?;
        let mut file = File::from(fd);
        let mut buffer = vec![0u8; 128 * 1024];
        loop {
            let count = entry
                .read(&mut buffer)
                .map_err(|source| UnpackError::Read { source })?;
            if count == 0 {
                break;
            }
            file.write_all(&buffer[..count])
                .map_err(|source| UnpackError::Io {
                    operation: "write",
                    path: display.to_string(),
                    source,
                })?;
            self.stats.bytes += count as u64;
        }
        apply_to_descriptor(file, metadata, display, true)
    }

    fn create_directory(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        components: &[OsString],
        metadata: &Metadata,
        display: &str,
    ) -> Result<(), UnpackError> {
        let exists = self.clear(parent, name, components, true, display)?;
        if !exists {
            mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(|source| {
                UnpackError::Sys {
                    operation: "create directory",
                    path: display.to_string(),
                    source,
                }
            })?;
        }
        let fd = openat(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| UnpackError::Sys {
            operation: "open directory",
            path: display.to_string(),
            source,
        })?;
        apply_to_descriptor(File::from(fd), metadata, display, false)?;
        self.directory_times
            .push((components.to_vec(), metadata.mtime));
        Ok(())
    }

    fn create_symlink(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        target: &[u8],
        components: &[OsString],
        metadata: &Metadata,
        display: &str,
    ) -> Result<(), UnpackError> {
        self.clear(parent, name, components, false, display)?;
        symlinkat(OsStr::from_bytes(target), parent, name).map_err(|source| UnpackError::Sys {
            operation: "create symbolic link",
            path: display.to_string(),
            source,
        })?;
        apply_to_name(parent, name, metadata, display, false)
    }

    fn create_hard_link(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        target: &[u8],
        components: &[OsString],
        display: &str,
    ) -> Result<(), UnpackError> {
        let target_display = String::from_utf8_lossy(target).into_owned();
        let target_components = normalize(target, &target_display)?;
        let Some((target_name, target_parents)) = target_components.split_last() else {
            return Err(UnpackError::InvalidPath {
                path: display.to_string(),
                reason: "hard link to the layer root",
            });
        };
        if target_components == components {
            return Ok(());
        }
        let target_parent = self.open_directory(target_parents, &target_display, false)?;
        self.clear(parent, name, components, false, display)?;
        linkat(
            &target_parent,
            target_name.as_os_str(),
            parent,
            name,
            AtFlags::empty(),
        )
        .map_err(|source| UnpackError::Sys {
            operation: "create hard link",
            path: format!("{display} -> {target_display}"),
            source,
        })
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    fn create_node(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        file_type: SFlag,
        device: libc::dev_t,
        components: &[OsString],
        metadata: &Metadata,
        display: &str,
    ) -> Result<(), UnpackError> {
        self.clear(parent, name, components, false, display)?;
        mknodat(
            parent,
            name,
            file_type,
            Mode::from_bits_truncate(0o600),
            device,
        )
        .map_err(|source| UnpackError::Sys {
            operation: "create device node",
            path: display.to_string(),
            source,
        })?;
        apply_to_name(parent, name, metadata, display, true)
    }

    fn restore_directory_times(&self) -> Result<(), UnpackError> {
        for (components, mtime) in &self.directory_times {
            let display = components
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let result = match components.split_last() {
                None => futimens(&self.root, mtime, mtime),
                Some((name, parents)) => {
                    let parent = self.open_directory(parents, &display, false)?;
                    utimensat(
                        &parent,
                        name.as_os_str(),
                        mtime,
                        mtime,
                        UtimensatFlags::NoFollowSymlink,
                    )
                }
            };
            // A later entry may have replaced the directory with a file,
            // whose own time was already set.
            match result {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(source) => {
                    return Err(UnpackError::Sys {
                        operation: "set the modification time of",
                        path: display,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Splits an archive path into its normal components, rejecting `..` and
/// dropping `.` and a leading `/`.
fn normalize(raw: &[u8], display: &str) -> Result<Vec<OsString>, UnpackError> {
    if raw.contains(&0) {
        return Err(UnpackError::InvalidPath {
            path: display.to_string(),
            reason: "contains a NUL byte",
        });
    }
    let mut components = Vec::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => components.push(part.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::InvalidPath {
                    path: display.to_string(),
                    reason: "contains '..', which could escape the layer",
                })
            }
            Component::Prefix(_) => {
                return Err(UnpackError::InvalidPath {
                    path: display.to_string(),
                    reason: "has a path prefix",
                })
            }
        }
    }
    Ok(components)
}

fn read_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    display: &str,
) -> Result<Metadata, UnpackError> {
    let header = entry.header();
    let invalid = |reason| UnpackError::InvalidPath {
        path: display.to_string(),
        reason,
    };
    let mode = header.mode().map_err(|_| invalid("invalid mode field"))? & 0o7777;
    let mut uid = header.uid().map_err(|_| invalid("invalid uid field"))?;
    let mut gid = header.gid().map_err(|_| invalid("invalid gid field"))?;
    let mut mtime = TimeSpec::new(
        header.mtime().map_err(|_| invalid("invalid mtime field"))? as i64,
        0,
    );
    let mut xattrs = Vec::new();
    let extensions = entry
        .pax_extensions()
        .map_err(|source| UnpackError::Read { source })?;
    for extension in extensions.into_iter().flatten() {
        let extension = extension.map_err(|source| UnpackError::Read { source })?;
        let Ok(key) = extension.key() else { continue };
        let value = extension.value_bytes();
        if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
            if name.starts_with(OVERLAY_XATTR_PREFIX) {
                let entry_path = display;
                tracing::debug!(
                    path = entry_path,
                    xattr = name,
                    "ignoring an overlayfs attribute set by the archive"
                );
                continue;
            }
            xattrs.push((name.to_string(), value.to_vec()));
            continue;
        }
        let text = std::str::from_utf8(value).unwrap_or_default();
        match key {
            "uid" => uid = text.parse().map_err(|_| invalid("invalid PAX uid"))?,
            "gid" => gid = text.parse().map_err(|_| invalid("invalid PAX gid"))?,
            "mtime" => mtime = parse_pax_time(text).ok_or_else(|| invalid("invalid PAX mtime"))?,
            _ => {}
        }
    }
    Ok(Metadata {
        mode,
        uid: u32::try_from(uid).map_err(|_| invalid("uid out of range"))?,
        gid: u32::try_from(gid).map_err(|_| invalid("gid out of range"))?,
        mtime,
        xattrs,
    })
}

/// Parses a PAX time, decimal seconds with an optional fraction.
fn parse_pax_time(text: &str) -> Option<TimeSpec> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    let nanoseconds = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(TimeSpec::new(seconds, nanoseconds))
}

/// Applies owner, mode, extended attributes and (with `set_time`) the
/// modification time through an open descriptor. The owner is set first,
/// because chown clears set-user-ID bits and file capabilities.
fn apply_to_descriptor(
    file: File,
    metadata: &Metadata,
    display: &str,
    set_time: bool,
) -> Result<(), UnpackError> {
    let sys = |operation| {
        move |source| UnpackError::Sys {
            operation,
            path: display.to_string(),
            source,
        }
    };
    fchown(
        &file,
        Some(Uid::from_raw(metadata.uid)),
        Some(Gid::from_raw(metadata.gid)),
    )
    .map_err(sys("set the owner of"))?;
    fchmod(&file, Mode::from_bits_truncate(metadata.mode)).map_err(sys("set the mode of"))?;
    for (name, value) in &metadata.xattrs {
        file.set_xattr(name, value)
            .map_err(|source| UnpackError::Io {
                operation: "set an extended attribute of",
                path: format!("{display} ({name})"),
                source,
            })?;
    }
    if set_time {
        futimens(&file, &metadata.mtime, &metadata.mtime)
            .map_err(sys("set the modification time of"))?;
    }
    Ok(())
}

/// Applies owner, mode (with `set_mode`), extended attributes and the
/// modification time to `name` in `parent` without following it, for
/// entries that cannot be opened: symbolic links and device nodes.
fn apply_to_name(
    parent: &OwnedFd,
    name: &OsStr,
    metadata: &Metadata,
    display: &str,
    set_mode: bool,
) -> Result<(), UnpackError> {
    let sys = |operation| {
        move |source| UnpackError::Sys {
            operation,
            path: display.to_string(),
            source,
        }
    };
    fchownat(
        parent,
        name,
        Some(Uid::from_raw(metadata.uid)),
        Some(Gid::from_raw(metadata.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys("set the owner of"))?;
    if set_mode {
        // The node was just created by this process and is not a symlink.
        fchmodat(
            parent,
            name,
            Mode::from_bits_truncate(metadata.mode),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(sys("set the mode of"))?;
    }
    if !metadata.xattrs.is_empty() {
        // lsetxattr on /proc/self/fd/N/NAME resolves the directory through
        // the descriptor and does not follow NAME itself.
        let path = proc_fd_path(parent.as_fd()).join(name);
        for (xattr_name, value) in &metadata.xattrs {
            xattr::set(&path, xattr_name, value).map_err(|source| UnpackError::Io {
                operation: "set an extended attribute of",
                path: format!("{display} ({xattr_name})"),
                source,
            })?;
        }
    }
    utimensat(
        parent,
        name,
        &metadata.mtime,
        &metadata.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(sys("set the modification time of"))
}

fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_root_and_dot() {
        let parts = normalize(b"/./etc//passwd", "x").unwrap();
        assert_eq!(parts, vec![OsString::from("etc"), OsString::from("passwd")]);
        assert!(normalize(b"./", "x").unwrap().is_empty());
    }

    #[test]
    fn normalize_rejects_parent_components() {
        for path in [&b"../x"[..], b"a/../../x", b"a/.."] {
            assert!(matches!(
                normalize(path, "x"),
                Err(UnpackError::InvalidPath { .. })
            ));
        }
    }

    #[test]
    fn pax_time_keeps_the_fraction() {
        let time = parse_pax_time("1700000000.5").unwrap();
        assert_eq!(time.tv_sec(), 1_700_000_000);
        assert_eq!(time.tv_nsec(), 500_000_000);
        assert_eq!(parse_pax_time("-1").unwrap().tv_sec(), -1);
        assert!(parse_pax_time("soon").is_none());
    }
}
