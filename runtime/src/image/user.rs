//! Resolution of a container user (`USER`, `UID`, `USER:GROUP`, `UID:GID`)
//! against the /etc/passwd and /etc/group of the root the container sees:
//! a stored image's layers, or a directory such as the host's `/`.
//!
//! Names resolve as Docker resolves them: the passwd entry gives the UID and
//! the primary GID, an explicit group replaces the primary GID, and every
//! /etc/group entry that lists the user's name is a supplementary group.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::store::{ImageRecord, Store, StoreError};

/// Maximum size of an /etc/passwd or /etc/group that is read, so that a
/// root whose file is huge cannot make the reader allocate without bound.
const MAX_ACCOUNT_FILE: u64 = 16 << 20;

/// An error resolving a container user.
///
/// The message of an unknown user leaves out the name, because the caller's
/// error, such as [`crate::job::JobSpecError::User`], names the whole user
/// string.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no such user in {file}: use a numeric UID or add an entry there")]
    UnknownUser { user: String, file: String },
    #[error("no such group {group:?} in {file}: use a numeric GID or add an entry there")]
    UnknownGroup { group: String, file: String },
    #[error("failed to {operation} {path}")]
    Read {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} is larger than {MAX_ACCOUNT_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The root whose account files name the container's users.
#[derive(Debug, Clone, Copy)]
pub enum AccountRoot<'a> {
    /// A stored image, read through its layers as overlayfs stacks them.
    Image {
        store: &'a Store,
        record: &'a ImageRecord,
    },
    /// A directory that is the container's root (the host's `/` for the
    /// `host` image). Symlinks are followed only inside it.
    Dir(&'a Path),
}

impl AccountRoot<'_> {
    /// Returns how errors name `path` (relative, such as `etc/passwd`).
    fn describe(&self, path: &str) -> String {
        match self {
            AccountRoot::Image { record, .. } => format!("/{path} of image {:?}", record.name),
            AccountRoot::Dir(dir) => dir.join(path).display().to_string(),
        }
    }

    /// Reads `path` (relative); a missing file reads as empty.
    fn read(&self, path: &str) -> Result<String, UserError> {
        let body = match self {
            AccountRoot::Image { store, record } => {
                store.read_image_file(record, Path::new(path))?
            }
            AccountRoot::Dir(dir) => read_in_root(dir, path)?,
        };
        Ok(String::from_utf8_lossy(&body.unwrap_or_default()).into_owned())
    }
}

/// The IDs a container process runs with: `process.user` of the OCI config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups other than `gid`, in /etc/group order.
    pub additional_gids: Vec<u32>,
    /// Home directory from the user's passwd entry, or None when no entry
    /// matches or its home field is empty.
    pub home: Option<String>,
}

/// Resolves `user` in the account files of `root`.
///
/// A name that the files do not define is an error. A numeric UID without
/// a passwd entry runs with the GID of the same number, and a numeric UID
/// with an entry takes that entry's primary group and memberships.
/// `UID:GID` is taken as written and gets no supplementary groups, but its
/// passwd entry, if any, still gives the home directory. A missing
/// /etc/passwd reads as empty.
pub fn resolve_user(root: &AccountRoot<'_>, user: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    let numeric_uid = user_part.parse::<u32>().ok();
    let passwd = root.read("etc/passwd")?;
    let entry = passwd
        .lines()
        .filter_map(parse_passwd_line)
        .find(|entry| match numeric_uid {
            Some(uid) => entry.uid == uid,
            None => entry.name == user_part,
        });
    let home = entry
        .as_ref()
        .map(|entry| entry.home)
        .filter(|home| !home.is_empty())
        .map(str::to_string);
    if let (Some(uid), Some(gid)) = (numeric_uid, group_part.and_then(numeric_id)) {
        return Ok(ExecUser {
            uid,
            gid,
            additional_gids: Vec::new(),
            home,
        });
    }
    let (uid, primary_gid, name) = match (entry, numeric_uid) {
        (Some(entry), _) => (entry.uid, entry.gid, Some(entry.name)),
        (None, Some(uid)) => (uid, uid, None),
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_string(),
                file: root.describe("etc/passwd"),
            })
        }
    };

    let needs_groups = name.is_some() || group_part.is_some_and(|group| !is_numeric(group));
    let groups = if needs_groups {
        root.read("etc/group")?
    } else {
        String::new()
    };
    let gid = match group_part {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .lines()
                .filter_map(parse_group_line)
                .find(|entry| entry.name == group)
                .map(|entry| entry.gid)
                .ok_or_else(|| UserError::UnknownGroup {
                    group: group.to_string(),
                    file: root.describe("etc/group"),
                })?,
        },
    };
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for entry in groups.lines().filter_map(parse_group_line) {
            let member = entry.members.split(',').any(|member| member == name);
            if member && entry.gid != gid && !additional_gids.contains(&entry.gid) {
                additional_gids.push(entry.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

fn is_numeric(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `id` when it is all digits and fits a `u32`.
fn numeric_id(id: &str) -> Option<u32> {
    if is_numeric(id) {
        id.parse().ok()
    } else {
        None
    }
}

/// Reads the regular file `path` (relative) of the root `dir`, with `..`
/// and symlinks resolved as if `dir` were `/`, so a link in the root cannot
/// make the runtime read a host file. Returns None when it is missing.
fn read_in_root(dir: &Path, path: &str) -> Result<Option<Vec<u8>>, UserError> {
    let full = dir.join(path);
    let root = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UserError::Read {
        operation: "open the root",
        path: dir.to_path_buf(),
        source: io::Error::from(errno),
    })?;
    // O_NONBLOCK keeps a FIFO planted at the path from blocking the open;
    // anything but a regular file is rejected below.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd: OwnedFd = match openat2(&root, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(errno) => {
            return Err(UserError::Read {
                operation: "open",
                path: full,
                source: io::Error::from(errno),
            })
        }
    };
    let file = File::from(fd);
    let metadata = file.metadata().map_err(|source| UserError::Read {
        operation: "inspect",
        path: full.clone(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(UserError::NotRegular { path: full });
    }
    if metadata.len() > MAX_ACCOUNT_FILE {
        return Err(UserError::TooLarge { path: full });
    }
    let mut body = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_ACCOUNT_FILE)
        .read_to_end(&mut body)
        .map_err(|source| UserError::Read {
            operation: "read",
            path: full,
            source,
        })?;
    Ok(Some(body))
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    /// Empty when the line has no home field.
    home: &'a str,
}

/// Parses `name:password:uid:gid:gecos:home:shell`.
fn parse_passwd_line(line: &str) -> Option<PasswdEntry<'_>> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    let _gecos = fields.next();
    let home = fields.next().unwrap_or_default();
    Some(PasswdEntry {
        name,
        uid,
        gid,
        home,
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

/// Parses `name:password:gid:members`.
fn parse_group_line(line: &str) -> Option<GroupEntry<'_>> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let gid = fields.next()?.parse().ok()?;
    let members = fields.next().unwrap_or_default();
    Some(GroupEntry { name, gid, members })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn passwd_and_group_lines_parse() {
        let entry = parse_passwd_line("www-data:x:33:34:www-data:/var/www:/usr/sbin/nologin")
            .expect("valid line");
        assert_eq!((entry.name, entry.uid, entry.gid), ("www-data", 33, 34));
        assert!(parse_passwd_line("# comment").is_none());
        assert!(parse_passwd_line("broken:x:notanumber:1").is_none());
        let group = parse_group_line("staff:x:50:alice,bob").expect("valid line");
        assert_eq!(
            (group.name, group.gid, group.members),
            ("staff", 50, "alice,bob")
        );
        assert!(parse_group_line("").is_none());
    }

    /// Returns a root with users root, web (1000:1000) and nobody, where
    /// web is also in staff and audio.
    fn root_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/srv:/bin/sh\n\
             nobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:alice,web\nweb:x:1000:\naudio:x:29:web\n\
             nogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    fn resolve(dir: &Path, user: &str) -> Result<ExecUser, UserError> {
        resolve_user(&AccountRoot::Dir(dir), user)
    }

    #[test]
    fn names_resolve_with_memberships() {
        let dir = root_dir();
        let web = resolve(dir.path(), "web").unwrap();
        assert_eq!((web.uid, web.gid), (1000, 1000));
        assert_eq!(web.additional_gids, [50, 29]);
        let nobody = resolve(dir.path(), "nobody").unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert!(nobody.additional_gids.is_empty());
        let by_uid = resolve(dir.path(), "1000").unwrap();
        assert_eq!(by_uid, web);
    }

    #[test]
    fn home_comes_from_the_passwd_entry() {
        let dir = root_dir();
        let cases = [
            ("web", Some("/srv")),
            ("1000", Some("/srv")),
            ("1000:7", Some("/srv")),
            ("web:staff", Some("/srv")),
            ("0:0", Some("/root")),
            ("nobody", Some("/")),
            ("4242", None),
            ("4242:7", None),
        ];
        for (user, home) in cases {
            let resolved = resolve(dir.path(), user).unwrap();
            assert_eq!(resolved.home.as_deref(), home, "user {user}");
        }
    }

    #[test]
    fn uid_and_gid_need_no_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let user = resolve(dir.path(), "1000:7").unwrap();
        assert_eq!((user.uid, user.gid, user.home), (1000, 7, None));
        assert!(user.additional_gids.is_empty());
    }

    #[test]
    fn uid_and_gid_get_no_memberships() {
        let dir = root_dir();
        let user = resolve(dir.path(), "1000:1000").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert!(user.additional_gids.is_empty());
    }

    #[test]
    fn explicit_group_replaces_primary() {
        let dir = root_dir();
        let user = resolve(dir.path(), "1000:nogroup").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 65534));
        let user = resolve(dir.path(), "web:staff").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 50));
        assert_eq!(user.additional_gids, [29]);
        let numeric = resolve(dir.path(), "4242:7").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (4242, 7));
        let unknown_uid = resolve(dir.path(), "4242").unwrap();
        assert_eq!((unknown_uid.uid, unknown_uid.gid), (4242, 4242));
    }

    #[test]
    fn unknown_names_are_errors() {
        let dir = root_dir();
        let error = resolve(dir.path(), "nosuchuser").unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, UserError::UnknownUser { user, .. } if user == "nosuchuser"),
            "{message}"
        );
        let passwd = dir.path().join("etc/passwd").display().to_string();
        assert_eq!(
            message,
            format!("no such user in {passwd}: use a numeric UID or add an entry there")
        );

        let error = resolve(dir.path(), "1000:nosuchgroup").unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, UserError::UnknownGroup { .. }), "{message}");
        let group = dir.path().join("etc/group").display().to_string();
        assert_eq!(
            message,
            format!(
                "no such group \"nosuchgroup\" in {group}: use a numeric GID or add an entry there"
            )
        );
    }

    #[test]
    fn symlink_stays_inside_root() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        // An absolute link resolves inside the root, where the target is
        // missing, so the host file is never read.
        std::os::unix::fs::symlink(host.path().join("passwd"), dir.path().join("etc/passwd"))
            .unwrap();
        assert!(matches!(
            resolve(dir.path(), "evil"),
            Err(UserError::UnknownUser { .. })
        ));
        fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        let up = "../".repeat(host.path().components().count() + 2);
        std::os::unix::fs::symlink(
            format!("{up}{}", host.path().join("passwd").display()),
            dir.path().join("etc/passwd"),
        )
        .unwrap();
        assert!(matches!(
            resolve(dir.path(), "evil"),
            Err(UserError::UnknownUser { .. })
        ));
    }

    #[test]
    fn fifo_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(matches!(
            resolve(dir.path(), "web"),
            Err(UserError::NotRegular { .. })
        ));
    }
}
