//! Parsing of `/proc/self/mountinfo` and `/proc/self/cgroup`, reduced to what
//! locating the cgroup hierarchies needs.

use std::path::{Path, PathBuf};

use super::CgroupError;

/// A `cgroup` or `cgroup2` line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The cgroup at the root of this mount, from the hierarchy root
    /// (`/` unless a subtree was bind-mounted or a cgroup namespace is in use).
    pub root: String,
    pub mount_point: PathBuf,
    /// True for `cgroup2`, false for a v1 `cgroup` hierarchy.
    pub unified: bool,
    /// Super options: v1 controller names (`memory`, `cpu`), `name=systemd`
    /// and flags such as `rw`.
    pub options: Vec<String>,
}

/// A line of `/proc/self/cgroup`: `HIERARCHY-ID:CONTROLLERS:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Zero for the unified (v2) hierarchy.
    pub hierarchy_id: u32,
    /// Comma-separated names as the kernel lists them, split. Empty for v2.
    pub controllers: Vec<String>,
    /// The process's cgroup, from the root of that hierarchy.
    pub path: String,
}

/// Parses the cgroup mounts out of mountinfo text. `source` names the file
/// in errors.
pub(crate) fn parse_mountinfo(text: &str, source: &Path) -> Result<Vec<CgroupMount>, CgroupError> {
    let mut mounts = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let invalid = |reason| CgroupError::Parse {
            path: source.to_path_buf(),
            line: line.to_string(),
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Fields: ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS.
        let separator = fields
            .iter()
            .position(|field| *field == "-")
            .ok_or_else(|| invalid("no \" - \" separator"))?;
        if separator < 6 || fields.len() < separator + 4 {
            return Err(invalid("too few fields"));
        }
        let unified = match fields[separator + 1] {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            unified,
            options: fields[separator + 3]
                .split(',')
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(mounts)
}

/// Parses `/proc/self/cgroup` text. `source` names the file in errors.
pub(crate) fn parse_self_cgroup(text: &str, source: &Path) -> Result<Vec<Membership>, CgroupError> {
    let mut memberships = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let invalid = |reason| CgroupError::Parse {
            path: source.to_path_buf(),
            line: line.to_string(),
            reason,
        };
        // The path may itself contain ':', so split at the first two only.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected HIERARCHY-ID:CONTROLLERS:PATH"));
        };
        let hierarchy_id = id.parse().map_err(|_| invalid("invalid hierarchy id"))?;
        if !path.starts_with('/') {
            return Err(invalid("cgroup path is not absolute"));
        }
        memberships.push(Membership {
            hierarchy_id,
            controllers: controllers
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect(),
            path: path.to_string(),
        });
    }
    Ok(memberships)
}

/// Decodes the octal escapes (`\040` for a space) that mountinfo uses for
/// whitespace and backslashes in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4);
        let octal = escape.filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_keeps_only_cgroup_mounts() {
        let text = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        let mounts = parse_mountinfo(text, Path::new("mountinfo")).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/cpu"));
        assert!(!mounts[0].unified);
        assert_eq!(mounts[0].options, ["rw", "cpu"]);
        assert_eq!(mounts[1].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert!(mounts[1].unified);
    }

    #[test]
    fn mountinfo_unescapes_paths() {
        let text = "50 31 0:40 /a\\040b /mnt/cg\\134x rw - cgroup2 none rw\n";
        let mounts = parse_mountinfo(text, Path::new("mountinfo")).unwrap();
        assert_eq!(mounts[0].root, "/a b");
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/cg\\x"));
    }

    #[test]
    fn mountinfo_rejects_line_without_separator() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw cgroup cgroup rw,cpu\n";
        let error = parse_mountinfo(text, Path::new("mountinfo")).unwrap_err();
        assert!(matches!(error, CgroupError::Parse { .. }), "{error}");
    }

    #[test]
    fn self_cgroup_splits_controllers_and_path() {
        let text = "4:memory:/process_api/ab:c\n2:cpu,cpuacct:/\n1:name=systemd:/x\n0::/\n";
        let lines = parse_self_cgroup(text, Path::new("cgroup")).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].controllers, ["memory"]);
        assert_eq!(lines[0].path, "/process_api/ab:c");
        assert_eq!(lines[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(lines[3].hierarchy_id, 0);
        assert!(lines[3].controllers.is_empty());
    }

    #[test]
    fn self_cgroup_rejects_relative_path() {
        let error = parse_self_cgroup("4:memory:relative\n", Path::new("cgroup")).unwrap_err();
        assert!(matches!(error, CgroupError::Parse { .. }), "{error}");
    }
}

/// A cgroup filesystem as a container's `/sys/fs/cgroup` should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCgroupMount {
    /// Directory name below `/sys/fs/cgroup` (`memory`, `cpu,cpuacct`,
    /// `unified`), or empty for a cgroup2 mount at `/sys/fs/cgroup` itself.
    pub name: String,
    pub unified: bool,
    /// Options that select the same hierarchy in a new mount: the v1
    /// controllers and `name=` of the hierarchy.
    pub selection: Vec<String>,
}

/// Lists the calling process's cgroup mounts below `/sys/fs/cgroup`.
pub fn host_cgroup_mounts() -> Result<Vec<HostCgroupMount>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = Path::new("/sys/fs/cgroup");
    let mut mounts = Vec::new();
    for mount in parse_mountinfo(&text, path)? {
        let Ok(relative) = mount.mount_point.strip_prefix(base) else {
            continue;
        };
        let selection = mount
            .options
            .iter()
            .filter(|option| !matches!(option.as_str(), "rw" | "ro") && !option.contains("xattr"))
            .filter(|option| !mount.unified || option.starts_with("nsdelegate"))
            .filter(|option| !option.starts_with("nsdelegate"))
            .cloned()
            .collect();
        mounts.push(HostCgroupMount {
            name: relative.display().to_string(),
            unified: mount.unified,
            selection,
        });
    }
    Ok(mounts)
}
