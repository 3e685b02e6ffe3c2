//! Unit tests on a cgroup tree in a temp dir: detection, creation, limits,
//! membership and counters, with no root and no real cgroup file system.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde_json::json;
use tempfile::TempDir;

use super::files::record;
use super::*;

/// This host's layout: a v1 hybrid with cpu and cpuacct mounted apart, a
/// cgroup2 mount at /sys/fs/cgroup/unified holding only hugetlb, and the
/// process at a nested memory cgroup but at the root of every other one.
const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_SELF_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/956b9a808b4aefcb2ae2edac3954726d
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

/// A systemd host of the hybrid era: cpu and cpuacct co-mounted, the process
/// in a service cgroup in every hierarchy.
const COMOUNTED_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
";

const COMOUNTED_SELF_CGROUP: &str = "\
4:memory:/system.slice/x.service
3:cpu,cpuacct:/system.slice/x.service
1:name=systemd:/system.slice/x.service
0::/system.slice/x.service
";

const PURE_V2_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const SERVICE_SELF_CGROUP: &str = "0::/system.slice/x.service\n";

const MEMORY_OWN: &str = "sys/fs/cgroup/memory/process_api/956b9a808b4aefcb2ae2edac3954726d";

/// A temp dir standing in for the file system root.
struct Tree {
    temp: TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            temp: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    fn root(&self) -> &Path {
        self.temp.path()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    /// Creates a file with its parents, as the kernel would show it.
    fn file(&self, relative: &str, contents: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        let path = self.path(relative);
        fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {path:?}: {error}"))
    }

    /// Drops the temp dir prefix from recorded writes.
    fn relative_writes(&self) -> Vec<(String, String)> {
        record::take()
            .into_iter()
            .map(|(path, value)| {
                let relative = path.strip_prefix(self.root()).unwrap_or(&path);
                (relative.display().to_string(), value)
            })
            .collect()
    }
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(path, value)| (path.to_string(), value.to_string()))
        .collect()
}

fn resources(value: serde_json::Value) -> LinuxResources {
    serde_json::from_value(value).expect("valid linux.resources JSON")
}

fn v1_dirs(cgroup: &Cgroup) -> &BTreeMap<String, PathBuf> {
    match cgroup.paths() {
        CgroupPaths::V1 { controllers } => controllers,
        other => panic!("expected v1 paths, got {other:?}"),
    }
}

fn v2_dir(cgroup: &Cgroup) -> &Path {
    match cgroup.paths() {
        CgroupPaths::V2 { path } => path,
        other => panic!("expected v2 paths, got {other:?}"),
    }
}

// Detection.

#[test]
fn detect_hybrid_host_is_v1() {
    let tree = Tree::new();
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    assert_eq!(hierarchy.version(), Version::V1);

    let (paths, id) = hierarchy.locate("corral/web").unwrap();
    assert_eq!(
        id,
        "/process_api/956b9a808b4aefcb2ae2edac3954726d/corral/web"
    );
    let CgroupPaths::V1 { controllers } = paths else {
        panic!("expected v1 paths");
    };
    let names: Vec<&str> = controllers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"]
    );
    assert_eq!(
        controllers["memory"],
        tree.path(&format!("{MEMORY_OWN}/corral/web"))
    );
    assert_eq!(
        controllers["cpu"],
        tree.path("sys/fs/cgroup/cpu/corral/web")
    );
    assert_eq!(
        controllers["cpuacct"],
        tree.path("sys/fs/cgroup/cpuacct/corral/web")
    );
}

#[test]
fn detect_comounted_controllers_share_dir() {
    let tree = Tree::new();
    let hierarchy =
        Hierarchy::from_texts(COMOUNTED_MOUNTINFO, COMOUNTED_SELF_CGROUP, tree.root()).unwrap();
    assert_eq!(hierarchy.version(), Version::V1);

    let (paths, id) = hierarchy.locate("web").unwrap();
    assert_eq!(id, "/system.slice/x.service/web");
    let CgroupPaths::V1 { controllers } = &paths else {
        panic!("expected v1 paths");
    };
    let expected = tree.path("sys/fs/cgroup/cpu,cpuacct/system.slice/x.service/web");
    assert_eq!(controllers["cpu"], expected);
    assert_eq!(controllers["cpuacct"], expected);
    assert!(!controllers.contains_key("name=systemd"));
    assert_eq!(unique_dirs(&paths).len(), 2);
}

#[test]
fn detect_pure_v2() {
    let tree = Tree::new();
    let hierarchy = Hierarchy::from_texts(PURE_V2_MOUNTINFO, "0::/\n", tree.root()).unwrap();
    assert_eq!(hierarchy.version(), Version::V2);

    let (paths, id) = hierarchy.locate("corral/web").unwrap();
    assert_eq!(id, "/corral/web");
    assert_eq!(
        paths,
        CgroupPaths::V2 {
            path: tree.path("sys/fs/cgroup/corral/web")
        }
    );
}

#[test]
fn detect_v2_below_service() {
    let tree = Tree::new();
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    assert_eq!(hierarchy.version(), Version::V2);

    let (paths, id) = hierarchy.locate("corral/web").unwrap();
    assert_eq!(id, "/system.slice/x.service/corral/web");
    assert_eq!(
        paths,
        CgroupPaths::V2 {
            path: tree.path("sys/fs/cgroup/system.slice/x.service/corral/web")
        }
    );

    let (paths, id) = hierarchy.locate("/corral.slice/web").unwrap();
    assert_eq!(id, "/corral.slice/web");
    assert_eq!(
        paths,
        CgroupPaths::V2 {
            path: tree.path("sys/fs/cgroup/corral.slice/web")
        }
    );
}

#[test]
fn detect_named_hierarchy_only_is_v2() {
    let mountinfo = format!(
        "{PURE_V2_MOUNTINFO}40 35 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    );
    let hierarchy =
        Hierarchy::from_texts(&mountinfo, "1:name=systemd:/\n0::/\n", Path::new("/")).unwrap();
    assert_eq!(hierarchy.version(), Version::V2);
}

#[test]
fn detect_without_cgroup_mount_fails() {
    let mountinfo = "22 1 0:21 / /proc rw - proc proc rw\n";
    let error = Hierarchy::from_texts(mountinfo, "0::/\n", Path::new("/")).unwrap_err();
    assert!(matches!(error, CgroupError::NoHierarchy { .. }), "{error}");
}

#[test]
fn detect_mount_of_subtree() {
    // A cgroup namespace or bind mount shows only a subtree at the mount point.
    let mountinfo = "35 24 0:30 /kube/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let tree = Tree::new();
    let hierarchy = Hierarchy::from_texts(mountinfo, "0::/kube/pod1\n", tree.root()).unwrap();
    let (paths, id) = hierarchy.locate("web").unwrap();
    assert_eq!(id, "/kube/pod1/web");
    assert_eq!(
        paths,
        CgroupPaths::V2 {
            path: tree.path("sys/fs/cgroup/web")
        }
    );

    let error = hierarchy.locate("/other/web").unwrap_err();
    assert!(matches!(error, CgroupError::OutsideMount { .. }), "{error}");
}

#[test]
fn locate_rejects_invalid_paths() {
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, Path::new("/")).unwrap();
    for path in [
        "",
        "/",
        "a//b",
        "../x",
        "a/./b",
        "a/..",
        "/system.slice/x.service",
    ] {
        let error = hierarchy.locate(path).unwrap_err();
        assert!(
            matches!(error, CgroupError::InvalidPath { .. }),
            "{path:?}: {error}"
        );
    }
    let (_, id) = hierarchy.locate("corral/web/").unwrap();
    assert_eq!(id, "/system.slice/x.service/corral/web");
}

// Creation on v1.

/// Fills the own cpuset directory of the hybrid layout and the empty cpuset
/// files that the kernel would show in `levels` below it.
fn hybrid_cpuset(tree: &Tree, levels: &[&str]) {
    tree.file("sys/fs/cgroup/cpuset/cpuset.cpus", "0-1\n");
    tree.file("sys/fs/cgroup/cpuset/cpuset.mems", "0\n");
    for level in levels {
        tree.file(&format!("sys/fs/cgroup/cpuset/{level}/cpuset.cpus"), "\n");
        tree.file(&format!("sys/fs/cgroup/cpuset/{level}/cpuset.mems"), "\n");
    }
}

#[test]
fn create_v1_relative_path() {
    let tree = Tree::new();
    hybrid_cpuset(&tree, &["corral", "corral/web"]);
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();

    let cgroup = hierarchy.create("corral/web").unwrap();
    assert_eq!(
        cgroup.id(),
        "/process_api/956b9a808b4aefcb2ae2edac3954726d/corral/web"
    );
    let dirs = v1_dirs(&cgroup);
    assert_eq!(dirs.len(), 8);
    for (name, dir) in dirs {
        assert!(dir.is_dir(), "{name}: {dir:?} was not created");
    }
    assert!(tree.path(&format!("{MEMORY_OWN}/corral/web")).is_dir());
    assert!(tree.path("sys/fs/cgroup/pids/corral/web").is_dir());
    assert!(!tree.path("sys/fs/cgroup/systemd/corral").exists());
    assert!(!tree.path("sys/fs/cgroup/unified/corral").exists());
}

#[test]
fn create_v1_absolute_path() {
    let tree = Tree::new();
    hybrid_cpuset(&tree, &["jobs", "jobs/web"]);
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();

    let cgroup = hierarchy.create("/jobs/web").unwrap();
    assert_eq!(cgroup.id(), "/jobs/web");
    let dirs = v1_dirs(&cgroup);
    assert_eq!(dirs["memory"], tree.path("sys/fs/cgroup/memory/jobs/web"));
    assert!(dirs["memory"].is_dir());
    assert_eq!(dirs["cpu"], tree.path("sys/fs/cgroup/cpu/jobs/web"));
    assert!(dirs["cpu"].is_dir());
}

#[test]
fn create_v1_copies_cpuset_from_parent() {
    let tree = Tree::new();
    hybrid_cpuset(&tree, &["corral", "corral/web"]);
    // A level that already has values keeps them, and its child copies them.
    tree.file("sys/fs/cgroup/cpuset/corral/cpuset.cpus", "1\n");
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    hierarchy.create("corral/web").unwrap();
    assert_eq!(tree.read("sys/fs/cgroup/cpuset/corral/cpuset.cpus"), "1\n");
    assert_eq!(tree.read("sys/fs/cgroup/cpuset/corral/cpuset.mems"), "0");
    assert_eq!(
        tree.read("sys/fs/cgroup/cpuset/corral/web/cpuset.cpus"),
        "1"
    );
    assert_eq!(
        tree.read("sys/fs/cgroup/cpuset/corral/web/cpuset.mems"),
        "0"
    );
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("sys/fs/cgroup/cpuset/corral/cpuset.mems", "0"),
            ("sys/fs/cgroup/cpuset/corral/web/cpuset.cpus", "1"),
            ("sys/fs/cgroup/cpuset/corral/web/cpuset.mems", "0"),
        ])
    );
}

// Creation on v2.

/// Builds the service cgroup of the v2 layout with `procs` in it, and the
/// files the kernel would show in the `corral` child.
fn v2_service_tree(tree: &Tree, procs: &str, subtree_control: &str) {
    let own = "sys/fs/cgroup/system.slice/x.service";
    tree.file(
        &format!("{own}/cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    tree.file(&format!("{own}/cgroup.subtree_control"), subtree_control);
    tree.file(&format!("{own}/cgroup.procs"), procs);
    tree.file(&format!("{own}/{SELF_LEAF}/cgroup.procs"), "");
    tree.file(
        &format!("{own}/corral/cgroup.controllers"),
        "cpu memory pids\n",
    );
    tree.file(&format!("{own}/corral/cgroup.subtree_control"), "\n");
    tree.file(&format!("{own}/corral/cgroup.procs"), "");
}

#[test]
fn create_v2_enables_controllers_per_level() {
    let tree = Tree::new();
    v2_service_tree(&tree, "", "\n");
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    let cgroup = hierarchy.create("corral/web").unwrap();
    assert_eq!(cgroup.id(), "/system.slice/x.service/corral/web");
    let own = "sys/fs/cgroup/system.slice/x.service";
    assert_eq!(v2_dir(&cgroup), tree.path(&format!("{own}/corral/web")));
    assert!(v2_dir(&cgroup).is_dir());
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            (
                &format!("{own}/cgroup.subtree_control"),
                "+cpuset +cpu +io +memory +hugetlb +pids"
            ),
            (
                &format!("{own}/corral/cgroup.subtree_control"),
                "+cpu +memory +pids"
            ),
        ])
    );
}

#[test]
fn create_v2_moves_self_into_leaf() {
    let tree = Tree::new();
    v2_service_tree(&tree, &format!("{}\n", std::process::id()), "\n");
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    hierarchy.create("corral/web").unwrap();
    let own = "sys/fs/cgroup/system.slice/x.service";
    let leaf_procs = format!("{own}/{SELF_LEAF}/cgroup.procs");
    let writes = tree.relative_writes();
    assert_eq!(writes[0], (leaf_procs, std::process::id().to_string()));
    assert_eq!(writes[1].0, format!("{own}/cgroup.subtree_control"));
}

#[test]
fn create_v2_stays_beside_other_processes() {
    // Moving out would not empty the cgroup, so the calling process stays.
    // A real kernel then rejects the write with EBUSY.
    let tree = Tree::new();
    v2_service_tree(&tree, &format!("4242\n{}\n", std::process::id()), "\n");
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    hierarchy.create("corral/web").unwrap();
    let own = "sys/fs/cgroup/system.slice/x.service";
    let writes = tree.relative_writes();
    assert_eq!(writes[0].0, format!("{own}/cgroup.subtree_control"));
    assert!(
        !writes.iter().any(|(path, _)| path.contains(SELF_LEAF)),
        "moved into the leaf: {writes:?}"
    );
}

#[test]
fn delegate_v2_moves_self_and_returns_absolute_parent() {
    let tree = Tree::new();
    v2_service_tree(&tree, &format!("{}\n", std::process::id()), "\n");
    let mut hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    let parent = hierarchy.delegate("corral").unwrap();
    assert_eq!(parent, "/system.slice/x.service/corral");
    let own = "sys/fs/cgroup/system.slice/x.service";
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            (
                &format!("{own}/{SELF_LEAF}/cgroup.procs"),
                &std::process::id().to_string()
            ),
            (
                &format!("{own}/cgroup.subtree_control"),
                "+cpuset +cpu +io +memory +hugetlb +pids"
            ),
        ])
    );

    // The runtime started from the leaf creates the container's cgroup by
    // the absolute path, beside the leaf.
    let runtime = Hierarchy::from_texts(
        PURE_V2_MOUNTINFO,
        &format!("0::/system.slice/x.service/{SELF_LEAF}\n"),
        tree.root(),
    )
    .unwrap();
    tree.file(
        &format!("{own}/cgroup.subtree_control"),
        "cpuset cpu io memory hugetlb pids\n",
    );
    let cgroup = runtime.create(&format!("{parent}/web")).unwrap();
    assert_eq!(cgroup.id(), "/system.slice/x.service/corral/web");
    assert_eq!(v2_dir(&cgroup), tree.path(&format!("{own}/corral/web")));
    assert_eq!(
        tree.relative_writes(),
        pairs(&[(
            &format!("{own}/corral/cgroup.subtree_control"),
            "+cpu +memory +pids"
        )])
    );

    // Relative paths of the delegating process now resolve below its leaf,
    // as they would for a process that detects its cgroup afresh.
    let (_, id) = hierarchy.locate("other").unwrap();
    assert_eq!(id, format!("/system.slice/x.service/{SELF_LEAF}/other"));
}

#[test]
fn delegate_v2_root_moves_nothing() {
    let tree = Tree::new();
    tree.file("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    tree.file("sys/fs/cgroup/cgroup.subtree_control", "\n");
    tree.file("sys/fs/cgroup/cgroup.procs", "1\n");
    let mut hierarchy = Hierarchy::from_texts(PURE_V2_MOUNTINFO, "0::/\n", tree.root()).unwrap();
    record::take();

    assert_eq!(hierarchy.delegate("corral").unwrap(), "/corral");
    assert_eq!(tree.relative_writes(), pairs(&[]));
    assert!(!tree.path(&format!("sys/fs/cgroup/{SELF_LEAF}")).exists());
}

#[test]
fn delegate_v1_keeps_relative_parent() {
    let tree = Tree::new();
    let mut hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    assert_eq!(hierarchy.delegate("corral").unwrap(), "corral");
    assert_eq!(tree.relative_writes(), pairs(&[]));
    assert!(matches!(
        hierarchy.delegate("../corral"),
        Err(CgroupError::InvalidPath { .. })
    ));
}

#[test]
fn create_v2_skips_enabled_controllers() {
    let tree = Tree::new();
    v2_service_tree(&tree, "4242\n", "cpuset cpu io memory hugetlb pids\n");
    tree.file(
        "sys/fs/cgroup/system.slice/x.service/corral/cgroup.subtree_control",
        "cpu memory pids\n",
    );
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    hierarchy.create("corral/web").unwrap();
    assert_eq!(tree.relative_writes(), pairs(&[]));
}

#[test]
fn create_v2_root_cgroup_keeps_processes() {
    // The root cgroup is exempt from the no-internal-processes rule.
    let tree = Tree::new();
    tree.file("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    tree.file("sys/fs/cgroup/cgroup.subtree_control", "\n");
    tree.file("sys/fs/cgroup/cgroup.procs", "1\n4242\n");
    let hierarchy = Hierarchy::from_texts(PURE_V2_MOUNTINFO, "0::/\n", tree.root()).unwrap();
    record::take();

    hierarchy.create("web").unwrap();
    assert!(!tree.path(&format!("sys/fs/cgroup/{SELF_LEAF}")).exists());
    assert_eq!(
        tree.relative_writes(),
        pairs(&[("sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory")])
    );
}

#[test]
fn create_v2_absolute_path_starts_at_existing_parent() {
    let tree = Tree::new();
    tree.file("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    tree.file("sys/fs/cgroup/cgroup.subtree_control", "cpu memory\n");
    tree.file(
        "sys/fs/cgroup/jobs.slice/cgroup.controllers",
        "cpu memory\n",
    );
    tree.file("sys/fs/cgroup/jobs.slice/cgroup.subtree_control", "\n");
    tree.file("sys/fs/cgroup/jobs.slice/cgroup.procs", "");
    let hierarchy =
        Hierarchy::from_texts(PURE_V2_MOUNTINFO, SERVICE_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    let cgroup = hierarchy.create("/jobs.slice/web").unwrap();
    assert_eq!(cgroup.id(), "/jobs.slice/web");
    assert!(tree.path("sys/fs/cgroup/jobs.slice/web").is_dir());
    assert_eq!(
        tree.relative_writes(),
        pairs(&[(
            "sys/fs/cgroup/jobs.slice/cgroup.subtree_control",
            "+cpu +memory"
        )])
    );
}

// Limits on v1.

/// Control files of a v1 container cgroup, with the kernel's initial values.
const V1_FILES: &[(&str, &str, &str)] = &[
    ("memory", "memory.limit_in_bytes", "9223372036854771712\n"),
    (
        "memory",
        "memory.memsw.limit_in_bytes",
        "9223372036854771712\n",
    ),
    (
        "memory",
        "memory.soft_limit_in_bytes",
        "9223372036854771712\n",
    ),
    ("memory", "memory.swappiness", "60\n"),
    (
        "memory",
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    ),
    ("cpu", "cpu.shares", "1024\n"),
    ("cpu", "cpu.cfs_quota_us", "-1\n"),
    ("cpu", "cpu.cfs_period_us", "100000\n"),
    ("cpu", "cpu.cfs_burst_us", "0\n"),
    ("cpu", "cpu.idle", "0\n"),
    ("cpu", "cpu.rt_period_us", "1000000\n"),
    ("cpu", "cpu.rt_runtime_us", "0\n"),
    ("cpuset", "cpuset.cpus", "0-1\n"),
    ("cpuset", "cpuset.mems", "0\n"),
    ("pids", "pids.max", "max\n"),
    ("blkio", "blkio.weight", "500\n"),
    ("blkio", "blkio.weight_device", ""),
    ("blkio", "blkio.leaf_weight", "500\n"),
    ("blkio", "blkio.leaf_weight_device", ""),
    ("blkio", "blkio.throttle.read_bps_device", ""),
    ("blkio", "blkio.throttle.write_bps_device", ""),
    ("blkio", "blkio.throttle.read_iops_device", ""),
    ("blkio", "blkio.throttle.write_iops_device", ""),
    (
        "hugetlb",
        "hugetlb.2MB.limit_in_bytes",
        "9223372036854771712\n",
    ),
    (
        "hugetlb",
        "hugetlb.2MB.rsvd.limit_in_bytes",
        "9223372036854771712\n",
    ),
    ("devices", "devices.allow", ""),
    ("devices", "devices.deny", ""),
    ("freezer", "freezer.state", "THAWED\n"),
    ("net_cls", "net_cls.classid", "0\n"),
    ("net_prio", "net_prio.ifpriomap", ""),
];

/// Builds a v1 container cgroup at `v1/CONTROLLER/web` with the files of
/// [`V1_FILES`], leaving out the controllers and files in `without`.
fn v1_cgroup(tree: &Tree, without: &[&str]) -> Cgroup {
    let mut controllers = BTreeMap::new();
    for (controller, file, contents) in V1_FILES {
        if without.contains(controller) {
            continue;
        }
        tree.file(&format!("v1/{controller}/web/cgroup.procs"), "");
        if !without.contains(file) {
            tree.file(&format!("v1/{controller}/web/{file}"), contents);
        }
        controllers.insert(
            controller.to_string(),
            tree.path(&format!("v1/{controller}/web")),
        );
    }
    Cgroup::open(CgroupPaths::V1 { controllers }, "/web".to_string())
}

fn full_resources() -> serde_json::Value {
    json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ],
        "memory": {
            "limit": 134217728,
            "reservation": 67108864,
            "swap": 268435456,
            "swappiness": 10,
            "disableOOMKiller": false
        },
        "cpu": {
            "shares": 512,
            "quota": 50000,
            "period": 100000,
            "realtimePeriod": 1000000,
            "realtimeRuntime": 950000,
            "cpus": "0",
            "mems": "0"
        },
        "pids": {"limit": 64},
        "blockIO": {
            "weight": 300,
            "weightDevice": [{"major": 254, "minor": 0, "weight": 200}],
            "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 20971520}],
            "throttleWriteBpsDevice": [{"major": 254, "minor": 0, "rate": 10485760}],
            "throttleReadIOPSDevice": [{"major": 254, "minor": 0, "rate": 1000}],
            "throttleWriteIOPSDevice": [
                {"major": 254, "minor": 0, "rate": 500},
                {"major": 8, "minor": 16, "rate": 0}
            ]
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
    })
}

#[test]
fn apply_v1_full_resources() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    record::take();

    cgroup.apply(&resources(full_resources())).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            // The limit goes down from unlimited, so it is written first.
            ("v1/memory/web/memory.limit_in_bytes", "134217728"),
            ("v1/memory/web/memory.memsw.limit_in_bytes", "268435456"),
            ("v1/memory/web/memory.soft_limit_in_bytes", "67108864"),
            ("v1/memory/web/memory.swappiness", "10"),
            ("v1/memory/web/memory.oom_control", "0"),
            ("v1/cpu/web/cpu.shares", "512"),
            ("v1/cpu/web/cpu.cfs_period_us", "100000"),
            ("v1/cpu/web/cpu.cfs_quota_us", "50000"),
            ("v1/cpu/web/cpu.rt_period_us", "1000000"),
            ("v1/cpu/web/cpu.rt_runtime_us", "950000"),
            ("v1/cpuset/web/cpuset.cpus", "0"),
            ("v1/cpuset/web/cpuset.mems", "0"),
            ("v1/pids/web/pids.max", "64"),
            ("v1/blkio/web/blkio.weight", "300"),
            ("v1/blkio/web/blkio.weight_device", "254:0 200"),
            (
                "v1/blkio/web/blkio.throttle.read_bps_device",
                "254:0 20971520"
            ),
            (
                "v1/blkio/web/blkio.throttle.write_bps_device",
                "254:0 10485760"
            ),
            ("v1/blkio/web/blkio.throttle.read_iops_device", "254:0 1000"),
            ("v1/blkio/web/blkio.throttle.write_iops_device", "254:0 500"),
            ("v1/blkio/web/blkio.throttle.write_iops_device", "8:16 0"),
            ("v1/hugetlb/web/hugetlb.2MB.limit_in_bytes", "4194304"),
            ("v1/hugetlb/web/hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
            ("v1/devices/web/devices.deny", "a *:* rwm"),
            ("v1/devices/web/devices.allow", "c 1:3 rwm"),
        ])
    );
    assert_eq!(
        tree.read("v1/memory/web/memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(tree.read("v1/pids/web/pids.max"), "64");
}

#[test]
fn apply_v1_raises_memsw_first() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    tree.file("v1/memory/web/memory.limit_in_bytes", "67108864\n");
    tree.file("v1/memory/web/memory.memsw.limit_in_bytes", "67108864\n");
    record::take();

    let raise = json!({"memory": {"limit": 134217728, "swap": 268435456}});
    cgroup.apply(&resources(raise)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v1/memory/web/memory.memsw.limit_in_bytes", "268435456"),
            ("v1/memory/web/memory.limit_in_bytes", "134217728"),
        ])
    );
}

#[test]
fn apply_v1_quota_without_period() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    record::take();

    cgroup
        .apply(&resources(json!({"cpu": {"quota": -1, "shares": 0}})))
        .unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[("v1/cpu/web/cpu.cfs_quota_us", "-1")])
    );
}

#[test]
fn apply_v1_swap_needs_accounting() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["memory.memsw.limit_in_bytes"]);
    record::take();

    let spec = json!({"memory": {"limit": 134217728, "swap": 268435456}});
    let error = cgroup.apply(&resources(spec)).unwrap_err();
    assert!(matches!(error, CgroupError::Unsupported { .. }), "{error}");
    assert!(
        error.to_string().contains("linux.resources.memory.swap"),
        "{error}"
    );
    assert_eq!(tree.relative_writes(), pairs(&[]));

    // An unlimited swap needs no accounting.
    let unlimited = json!({"memory": {"limit": 134217728, "swap": -1}});
    cgroup.apply(&resources(unlimited)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[("v1/memory/web/memory.limit_in_bytes", "134217728")])
    );
}

#[test]
fn apply_v1_missing_controller_names_field() {
    // This host has no v1 hugetlb controller.
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["hugetlb"]);
    let spec = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    let error = cgroup.apply(&resources(spec)).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "linux.resources.hugepageLimits is set but the v1 hugetlb controller is not mounted"
        ),
        "{error}"
    );
}

#[test]
fn apply_v1_uses_bfq_weight() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["blkio.weight", "blkio.weight_device"]);
    tree.file("v1/blkio/web/blkio.bfq.weight", "100\n");
    tree.file("v1/blkio/web/blkio.bfq.weight_device", "");
    record::take();

    let spec = json!({"blockIO": {
        "weight": 300,
        "weightDevice": [{"major": 254, "minor": 0, "weight": 200}]
    }});
    cgroup.apply(&resources(spec)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v1/blkio/web/blkio.bfq.weight", "300"),
            ("v1/blkio/web/blkio.bfq.weight_device", "254:0 200"),
        ])
    );

    let cgroup = v1_cgroup(&Tree::new(), &["blkio.weight"]);
    let error = cgroup
        .apply(&resources(json!({"blockIO": {"weight": 300}})))
        .unwrap_err();
    assert!(
        error.to_string().contains("linux.resources.blockIO.weight"),
        "{error}"
    );
}

#[test]
fn apply_v1_rejects_unified() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    let spec = json!({"unified": {"memory.high": "1000000"}});
    let error = cgroup.apply(&resources(spec)).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("linux.resources.unified is set"),
        "{error}"
    );
}

#[test]
fn apply_v1_network_classes() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    record::take();

    let spec = json!({"network": {
        "classID": 1048577,
        "priorities": [{"name": "eth0", "priority": 5}]
    }});
    cgroup.apply(&resources(spec)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v1/net_cls/web/net_cls.classid", "1048577"),
            ("v1/net_prio/web/net_prio.ifpriomap", "eth0 5"),
        ])
    );
}

#[test]
fn apply_write_error_names_file_and_value() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["pids.max"]);
    let error = cgroup
        .apply(&resources(json!({"pids": {"limit": 64}})))
        .unwrap_err();
    let path = tree.path("v1/pids/web/pids.max");
    assert_eq!(
        error.to_string(),
        format!("writing \"64\" to {}", path.display())
    );
}

// Limits on v2.

const V2_FILES: &[(&str, &str)] = &[
    ("memory.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.swap.max", "max\n"),
    (
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    ),
    ("memory.high", "max\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.weight", "100\n"),
    ("cpuset.cpus", "\n"),
    ("cpuset.mems", "\n"),
    ("pids.max", "max\n"),
    ("io.weight", "default 100\n"),
    ("io.max", ""),
    ("hugetlb.2MB.max", "max\n"),
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0\n"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
];

fn v2_cgroup(tree: &Tree, without: &[&str]) -> Cgroup {
    for (file, contents) in V2_FILES {
        if !without.contains(file) {
            tree.file(&format!("v2/web/{file}"), contents);
        }
    }
    let paths = CgroupPaths::V2 {
        path: tree.path("v2/web"),
    };
    Cgroup::open(paths, "/web".to_string())
}

#[test]
fn apply_v2_full_resources() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    record::take();

    let mut spec = full_resources();
    spec["cpu"]["shares"] = json!(1024);
    spec["cpu"]
        .as_object_mut()
        .unwrap()
        .retain(|key, _| !key.starts_with("realtime"));
    spec["memory"].as_object_mut().unwrap().remove("swappiness");
    spec["unified"] = json!({"memory.high": "100000000", "cpu.weight": "200"});
    // A temp directory cannot hold a device program; devices_tests.rs
    // attaches programs to real cgroups.
    spec.as_object_mut().unwrap().remove("devices");
    cgroup.apply(&resources(spec)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v2/web/memory.max", "134217728"),
            ("v2/web/memory.low", "67108864"),
            // 256 MiB of memory plus swap with 128 MiB of memory: 128 MiB of swap.
            ("v2/web/memory.swap.max", "134217728"),
            // cpu.shares 1024 is the v1 default and maps to the v2 default.
            ("v2/web/cpu.weight", "100"),
            ("v2/web/cpu.max", "50000 100000"),
            ("v2/web/cpuset.cpus", "0"),
            ("v2/web/cpuset.mems", "0"),
            ("v2/web/pids.max", "64"),
            // blkio weight 300 becomes 1 + 290 * 9999 / 990 = 2930.
            ("v2/web/io.weight", "2930"),
            ("v2/web/io.weight", "254:0 1920"),
            ("v2/web/io.max", "8:16 wiops=max"),
            (
                "v2/web/io.max",
                "254:0 rbps=20971520 wbps=10485760 riops=1000 wiops=500"
            ),
            ("v2/web/hugetlb.2MB.max", "4194304"),
            ("v2/web/cpu.weight", "200"),
            ("v2/web/memory.high", "100000000"),
        ])
    );
    assert_eq!(tree.read("v2/web/cpu.weight"), "200");
}

#[test]
fn apply_v2_cpu_max_defaults() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    record::take();

    cgroup
        .apply(&resources(json!({"cpu": {"quota": -1}})))
        .unwrap();
    cgroup
        .apply(&resources(json!({"cpu": {"period": 50000}})))
        .unwrap();
    cgroup
        .apply(&resources(json!({"cpu": {"quota": 20000}})))
        .unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v2/web/cpu.max", "max 100000"),
            ("v2/web/cpu.max", "max 50000"),
            ("v2/web/cpu.max", "20000 100000"),
        ])
    );
}

#[test]
fn apply_v2_memory_unlimited() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    record::take();

    let spec = json!({"memory": {"limit": -1, "swap": -1}});
    cgroup.apply(&resources(spec)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("v2/web/memory.max", "max"),
            ("v2/web/memory.swap.max", "max"),
        ])
    );
}

#[test]
fn apply_v2_rejects_unsafe_unified_keys() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    record::take();

    for key in ["../cgroup.procs", "a/b", "..", "", "x..y"] {
        let spec = json!({"pids": {"limit": 10}, "unified": {key: "1"}});
        let error = cgroup.apply(&resources(spec)).unwrap_err();
        assert!(
            matches!(error, CgroupError::InvalidUnifiedKey { .. }),
            "{key:?}: {error}"
        );
    }
    assert_eq!(tree.relative_writes(), pairs(&[]), "a rejected spec wrote");
}

#[test]
fn apply_v2_rejects_v1_only_fields() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    let cases = [
        (
            json!({"memory": {"swappiness": 10}}),
            "linux.resources.memory.swappiness",
        ),
        (
            json!({"memory": {"disableOOMKiller": true}}),
            "linux.resources.memory.disableOOMKiller",
        ),
        (
            json!({"cpu": {"realtimeRuntime": 1000}}),
            "linux.resources.cpu.realtimeRuntime",
        ),
        (
            json!({"blockIO": {"leafWeight": 100}}),
            "linux.resources.blockIO.leafWeight",
        ),
        (
            json!({"network": {"classID": 1}}),
            "linux.resources.network",
        ),
    ];
    for (spec, field) in cases {
        let error = cgroup.apply(&resources(spec)).unwrap_err();
        assert!(error.to_string().starts_with(field), "{field}: {error}");
    }
}

#[test]
fn apply_v2_swap_needs_accounting() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &["memory.swap.max"]);
    let spec = json!({"memory": {"limit": 134217728, "swap": 268435456}});
    let error = cgroup.apply(&resources(spec)).unwrap_err();
    assert!(
        error.to_string().contains("linux.resources.memory.swap"),
        "{error}"
    );
}

// Membership, counters, freezing and removal.

#[test]
fn processes_include_descendants() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    tree.file("v1/memory/web/cgroup.procs", "30\n10\n");
    tree.file("v1/memory/web/init/cgroup.procs", "20\n");
    tree.file("v1/pids/web/cgroup.procs", "10\n40\n");
    assert_eq!(cgroup.processes().unwrap(), [10, 20, 30, 40]);
}

#[test]
fn add_process_writes_every_controller() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &[]);
    record::take();

    cgroup.add_process(4242).unwrap();
    let writes = tree.relative_writes();
    assert_eq!(writes.len(), v1_dirs(&cgroup).len());
    for (path, value) in writes {
        assert!(path.ends_with("/web/cgroup.procs"), "{path}");
        assert_eq!(value, "4242");
    }
}

#[test]
fn oom_kills_v1_and_v2() {
    let tree = Tree::new();
    let v1 = v1_cgroup(&tree, &[]);
    tree.file(
        "v1/memory/web/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    assert_eq!(v1.oom_kills().unwrap(), 3);

    let v2 = v2_cgroup(&tree, &[]);
    tree.file(
        "v2/web/memory.events",
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n",
    );
    assert_eq!(v2.oom_kills().unwrap(), 2);

    tree.file("v2/web/memory.events", "low 0\n");
    let error = v2.oom_kills().unwrap_err();
    assert!(matches!(error, CgroupError::MissingKey { .. }), "{error}");
}

#[test]
fn freeze_v2_waits_for_events() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    tree.file("v2/web/cgroup.events", "populated 1\nfrozen 1\n");
    record::take();

    cgroup.freeze().unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[("v2/web/cgroup.freeze", "1")])
    );
}

#[test]
fn freeze_v1_without_freezer_fails() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["freezer"]);
    let error = cgroup.freeze().unwrap_err();
    assert!(
        matches!(error, CgroupError::MissingController { .. }),
        "{error}"
    );
}

#[test]
fn signal_all_rejects_invalid_signal() {
    let tree = Tree::new();
    let cgroup = v2_cgroup(&tree, &[]);
    let error = cgroup.signal_all(1000).unwrap_err();
    assert!(
        matches!(error, CgroupError::InvalidSignal { .. }),
        "{error}"
    );
}

#[test]
fn remove_if_empty_keeps_busy_dirs() {
    let tree = Tree::new();
    let hierarchy = Hierarchy::from_texts(PURE_V2_MOUNTINFO, "0::/\n", tree.root()).unwrap();
    fs::create_dir_all(tree.path("sys/fs/cgroup/corral")).unwrap();
    tree.file("sys/fs/cgroup/busy/web/cgroup.procs", "");

    hierarchy.remove_if_empty("corral").unwrap();
    assert!(!tree.path("sys/fs/cgroup/corral").exists());
    hierarchy.remove_if_empty("busy").unwrap();
    assert!(tree.path("sys/fs/cgroup/busy/web").is_dir());
    hierarchy.remove_if_empty("missing").unwrap();
}

#[test]
fn parent_paths_remove_only_empty_parents() {
    let tree = Tree::new();
    let mut controllers = BTreeMap::new();
    controllers.insert("cpu".to_string(), tree.path("cpu/old/web-1"));
    controllers.insert("memory".to_string(), tree.path("memory/own/old/web-1"));
    let container = CgroupPaths::V1 { controllers };
    let parents = parent_paths(&container).unwrap();
    let CgroupPaths::V1 { controllers } = &parents else {
        panic!("a v1 container has v1 parents: {parents:?}");
    };
    assert_eq!(controllers["cpu"], tree.path("cpu/old"));
    assert_eq!(controllers["memory"], tree.path("memory/own/old"));

    fs::create_dir_all(tree.path("cpu/old")).unwrap();
    tree.file("memory/own/old/web-2/cgroup.procs", "");
    remove_paths_if_empty(&parents).unwrap();
    assert!(!tree.path("cpu/old").exists());
    assert!(tree.path("memory/own/old/web-2").is_dir());

    let v2 = CgroupPaths::V2 {
        path: tree.path("unified/old/web-1"),
    };
    let expected = CgroupPaths::V2 {
        path: tree.path("unified/old"),
    };
    assert_eq!(parent_paths(&v2), Some(expected));
}

#[test]
fn remove_deletes_children_first() {
    // Plain directories stand in for cgroups, which rmdir removes with
    // their control files.
    let tree = Tree::new();
    fs::create_dir_all(tree.path("v2/web/init/deep")).unwrap();
    fs::create_dir_all(tree.path("v2/web/other")).unwrap();
    let paths = CgroupPaths::V2 {
        path: tree.path("v2/web"),
    };
    let cgroup = Cgroup::open(paths, "/web".to_string());
    cgroup.remove().unwrap();
    assert!(!tree.path("v2/web").exists());
    // Removing again finds nothing and succeeds.
    cgroup.remove().unwrap();
}

// Hybrid hosts whose cgroup2 mount offers a controller that v1 lacks.

const UNIFIED: &str = "sys/fs/cgroup/unified";

/// Builds the hybrid layout with `enabled` in the cgroup2 root's
/// `cgroup.subtree_control` and the files the kernel would show in the
/// `corral` child of the cgroup2 root.
fn hybrid_unified_tree(tree: &Tree, enabled: &str) {
    hybrid_cpuset(tree, &["corral", "corral/web"]);
    tree.file(&format!("{UNIFIED}/cgroup.controllers"), "hugetlb\n");
    tree.file(&format!("{UNIFIED}/cgroup.subtree_control"), enabled);
    tree.file(&format!("{UNIFIED}/corral/cgroup.controllers"), "hugetlb\n");
    tree.file(&format!("{UNIFIED}/corral/cgroup.subtree_control"), "\n");
    tree.file(&format!("{UNIFIED}/corral/cgroup.procs"), "");
}

#[test]
fn detect_hybrid_unified_controller() {
    let tree = Tree::new();
    hybrid_unified_tree(&tree, "hugetlb\n");
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    assert_eq!(hierarchy.version(), Version::V1);

    let (paths, id) = hierarchy.locate("corral/web").unwrap();
    assert_eq!(
        id,
        "/process_api/956b9a808b4aefcb2ae2edac3954726d/corral/web"
    );
    let CgroupPaths::V1 { controllers } = &paths else {
        panic!("expected v1 paths");
    };
    assert_eq!(
        controllers[UNIFIED_KEY],
        tree.path(&format!("{UNIFIED}/corral/web"))
    );
    assert_eq!(
        controllers["memory"],
        tree.path(&format!("{MEMORY_OWN}/corral/web"))
    );
    assert_eq!(unique_dirs(&paths).len(), 9);
}

#[test]
fn detect_hybrid_without_enabled_controller() {
    // hugetlb is available in the cgroup2 root but not enabled for its
    // children, and the runtime does not enable it in a cgroup it did not
    // create.
    let tree = Tree::new();
    hybrid_unified_tree(&tree, "\n");
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    let (paths, _) = hierarchy.locate("corral/web").unwrap();
    let CgroupPaths::V1 { controllers } = &paths else {
        panic!("expected v1 paths");
    };
    assert!(!controllers.contains_key(UNIFIED_KEY), "{controllers:?}");
}

#[test]
fn detect_hybrid_absolute_path_outside_own() {
    let tree = Tree::new();
    let own = format!("{UNIFIED}/system.slice/x.service");
    tree.file(&format!("{own}/cgroup.subtree_control"), "hugetlb\n");
    let hierarchy =
        Hierarchy::from_texts(COMOUNTED_MOUNTINFO, COMOUNTED_SELF_CGROUP, tree.root()).unwrap();

    let (paths, _) = hierarchy.locate("web").unwrap();
    let CgroupPaths::V1 { controllers } = &paths else {
        panic!("expected v1 paths");
    };
    assert_eq!(controllers[UNIFIED_KEY], tree.path(&format!("{own}/web")));

    let (paths, _) = hierarchy.locate("/jobs/web").unwrap();
    let CgroupPaths::V1 { controllers } = &paths else {
        panic!("expected v1 paths");
    };
    assert!(!controllers.contains_key(UNIFIED_KEY), "{controllers:?}");
    assert!(controllers.contains_key("memory"));
}

#[test]
fn create_hybrid_enables_below_own_only() {
    let tree = Tree::new();
    hybrid_unified_tree(&tree, "hugetlb\n");
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();
    record::take();

    let cgroup = hierarchy.create("corral/web").unwrap();
    assert!(v1_dirs(&cgroup)[UNIFIED_KEY].is_dir());
    let unified_writes: Vec<(String, String)> = tree
        .relative_writes()
        .into_iter()
        .filter(|(path, _)| path.starts_with(UNIFIED))
        .collect();
    assert_eq!(
        unified_writes,
        pairs(&[(
            "sys/fs/cgroup/unified/corral/cgroup.subtree_control",
            "+hugetlb"
        )])
    );
}

#[test]
fn create_hybrid_failure_removes_v1_dirs() {
    let tree = Tree::new();
    hybrid_unified_tree(&tree, "hugetlb\n");
    // The intermediate cgroup2 level has no control files, so enabling
    // controllers in it fails.
    fs::remove_file(tree.path(&format!("{UNIFIED}/corral/cgroup.controllers"))).unwrap();
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();

    let error = hierarchy.create("corral/web").unwrap_err();
    assert!(matches!(error, CgroupError::Read { .. }), "{error}");
    // The cpuset directory existed before the create (the tree contains its
    // control files), so it stays and is not checked.
    for controller in ["blkio", "cpu", "cpuacct"] {
        let dir = tree.path(&format!("sys/fs/cgroup/{controller}/corral/web"));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}

#[test]
fn create_v1_failure_removes_made_dirs() {
    let tree = Tree::new();
    // The cpuset parent has no cpuset.cpus to copy, so creation fails at
    // the cpuset controller, after blkio, cpu and cpuacct.
    fs::create_dir_all(tree.path("sys/fs/cgroup/cpuset/corral")).unwrap();
    // A directory that existed before the create stays.
    fs::create_dir_all(tree.path("sys/fs/cgroup/cpu/corral/web")).unwrap();
    let hierarchy =
        Hierarchy::from_texts(HYBRID_MOUNTINFO, HYBRID_SELF_CGROUP, tree.root()).unwrap();

    let error = hierarchy.create("corral/web").unwrap_err();
    assert!(matches!(error, CgroupError::Read { .. }), "{error}");
    for controller in ["blkio", "cpuacct", "cpuset", "devices", "pids"] {
        let dir = tree.path(&format!("sys/fs/cgroup/{controller}/corral/web"));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    assert!(tree.path("sys/fs/cgroup/cpu/corral/web").is_dir());
}

#[test]
fn remove_continues_past_failed_dir() {
    let tree = Tree::new();
    // A regular file makes the first directory impossible to remove.
    tree.file("a/web/stray", "");
    fs::create_dir_all(tree.path("b/web")).unwrap();
    let controllers = BTreeMap::from([
        ("blkio".to_string(), tree.path("a/web")),
        ("memory".to_string(), tree.path("b/web")),
    ]);
    let cgroup = Cgroup::open(CgroupPaths::V1 { controllers }, "/web".to_string());

    let error = cgroup.remove().unwrap_err();
    assert!(matches!(error, CgroupError::RemoveDir { .. }), "{error}");
    assert!(error.to_string().contains("a/web"), "{error}");
    assert!(!tree.path("b/web").exists(), "b/web was left behind");
}

#[test]
fn apply_hybrid_hugetlb_in_unified_dir() {
    let tree = Tree::new();
    let mut controllers = BTreeMap::new();
    for controller in ["memory", "pids"] {
        fs::create_dir_all(tree.path(&format!("v1/{controller}/web"))).unwrap();
        controllers.insert(
            controller.to_string(),
            tree.path(&format!("v1/{controller}/web")),
        );
    }
    tree.file("unified/web/cgroup.controllers", "hugetlb\n");
    tree.file("unified/web/hugetlb.2MB.max", "max\n");
    tree.file("unified/web/hugetlb.2MB.rsvd.max", "max\n");
    tree.file("unified/web/hugetlb.1GB.max", "max\n");
    controllers.insert(UNIFIED_KEY.to_string(), tree.path("unified/web"));
    let cgroup = Cgroup::open(CgroupPaths::V1 { controllers }, "/web".to_string());
    record::take();

    let spec = json!({"hugepageLimits": [
        {"pageSize": "2MB", "limit": 4194304},
        {"pageSize": "1GB", "limit": -1}
    ]});
    cgroup.apply(&resources(spec)).unwrap();
    assert_eq!(
        tree.relative_writes(),
        pairs(&[
            ("unified/web/hugetlb.2MB.max", "4194304"),
            ("unified/web/hugetlb.2MB.rsvd.max", "4194304"),
            ("unified/web/hugetlb.1GB.max", "max"),
        ])
    );
}

#[test]
fn apply_v1_hugetlb_missing_everywhere() {
    let tree = Tree::new();
    let cgroup = v1_cgroup(&tree, &["hugetlb"]);
    let spec = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    let error = cgroup.apply(&resources(spec)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("linux.resources.hugepageLimits"),
        "{message}"
    );
    assert!(message.contains("cgroup.subtree_control"), "{message}");
    // An empty list needs no controller.
    cgroup
        .apply(&resources(json!({"hugepageLimits": []})))
        .unwrap();
}
