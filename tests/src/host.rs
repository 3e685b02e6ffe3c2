//! What a test may leave on the host, checked from outside: overlay mounts,
//! cgroups and processes.

use std::fs;
use std::path::{Path, PathBuf};

/// Overlay mounts in the host's mount table whose target is below `dir`.
pub fn overlay_mounts_below(dir: &Path) -> Vec<String> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.display().to_string();
    mountinfo
        .lines()
        .filter(|line| line.contains(" - overlay "))
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|target| target.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Cgroup directories named `name` anywhere in the host's v1 and v2
/// hierarchies (searched up to six levels deep).
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy() == name {
                found.push(path.clone());
            }
            if depth < 6 {
                pending.push((path, depth + 1));
            }
        }
    }
    found
}

/// Processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command = String::from_utf8_lossy(&raw).replace('\0', " ");
        if command.contains(needle) && pid != std::process::id() as i32 {
            found.push((pid, command));
        }
    }
    found
}

/// The cgroup of this process on the v1 `memory` controller or in the v2
/// hierarchy, as an absolute directory.
pub fn own_cgroup_dir(controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == controller) {
            return Some(PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}")));
        }
    }
    let unified = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(format!("/sys/fs/cgroup{unified}")))
}

/// Whether the host runs the unified (v2-only) hierarchy.
pub fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A short description of the host's cgroup setup, for failure messages.
pub fn cgroup_report() -> String {
    let mode = if is_cgroup_v2() {
        "v2"
    } else {
        "v1 (or hybrid)"
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    format!("cgroup mode {mode}; /proc/self/cgroup:\n{own}")
}
