//! `linux.resources` read back from the container's cgroup files: memory,
//! cpu, cpuset, pids, blockIO and hugepageLimits on cgroup v1, `unified`
//! on cgroup v2, and errors that name a field the host cannot enforce.

use std::fs;
use std::path::{Path, PathBuf};

use corral_runtime::cgroups::UNIFIED_KEY;
use corral_runtime::state::CgroupPaths;
use corral_tests::oci::{describe, text, Bundle, PROBE};
use corral_tests::require_root;
use serde_json::json;

fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Starts a sleeping container with `resources` as linux.resources.
fn with_resources(test: &str, resources: serde_json::Value) -> Bundle {
    let mut bundle = Bundle::new(test);
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set("/linux/resources", resources);
    bundle.start_ok();
    bundle
}

/// Returns the major and minor numbers of the block device behind `/`. Where
/// `/` is no block device (an initramfs root), it returns the device of the
/// nearest directory above this test binary that has one, such as the test
/// VM's scratch disk on `target/`.
fn block_device() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let exe = std::env::current_exe().unwrap();
    let (major, minor) = std::iter::once(Path::new("/"))
        .chain(exe.ancestors().skip(1))
        .map(|path| {
            let dev = fs::metadata(path).unwrap().dev();
            (libc::major(dev) as u64, libc::minor(dev) as u64)
        })
        .find(|(major, minor)| Path::new(&format!("/sys/dev/block/{major}:{minor}")).exists())
        .expect("neither / nor a directory above the test binary is on a block device");
    // A partition's throttle rules go to its whole disk, which
    // /sys/dev/block/M:m/.. names when the device is a partition.
    let sys = format!("/sys/dev/block/{major}:{minor}");
    if Path::new(&sys).join("partition").exists() {
        let parent = fs::read_to_string(format!("{sys}/../dev")).unwrap();
        let (ma, mi) = parent.trim().split_once(':').unwrap();
        return (ma.parse().unwrap(), mi.parse().unwrap());
    }
    (major, minor)
}

#[test]
fn resources_memory_v1() {
    if !require_root("resources_memory_v1") {
        return;
    }
    if is_v2() {
        eprintln!("SKIP resources_memory_v1: the host runs cgroup v2");
        return;
    }
    let bundle = with_resources(
        "memory",
        json!({"memory": {"limit": 200 << 20, "reservation": 100 << 20, "swappiness": 10,
                          "disableOOMKiller": true}}),
    );
    assert_eq!(
        bundle.cgroup_file("memory", "memory.limit_in_bytes"),
        (200u64 << 20).to_string()
    );
    assert_eq!(
        bundle.cgroup_file("memory", "memory.soft_limit_in_bytes"),
        (100u64 << 20).to_string()
    );
    assert_eq!(bundle.cgroup_file("memory", "memory.swappiness"), "10");
    let oom = bundle.cgroup_file("memory", "memory.oom_control");
    assert!(oom.contains("oom_kill_disable 1"), "{oom}");
}

#[test]
fn resources_memory_swap_v1() {
    if !require_root("resources_memory_swap_v1") {
        return;
    }
    if is_v2() {
        eprintln!("SKIP resources_memory_swap_v1: the host runs cgroup v2");
        return;
    }
    let memsw = corral_tests::host::own_cgroup_dir("memory")
        .map(|dir| dir.join("memory.memsw.limit_in_bytes"))
        .is_some_and(|file| file.exists());
    let mut bundle = Bundle::new("memory-swap");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set(
        "/linux/resources",
        json!({"memory": {"limit": 64 << 20, "swap": 96 << 20}}),
    );
    if !memsw {
        let output = bundle.create();
        assert!(!output.status.success(), "{}", describe(&output));
        assert!(text(&output.stderr).contains("linux.resources.memory.swap"));
        return;
    }
    bundle.start_ok();
    assert_eq!(
        bundle.cgroup_file("memory", "memory.memsw.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        bundle.cgroup_file("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
}

#[test]
fn resources_cpu_and_cpuset_v1() {
    if !require_root("resources_cpu_and_cpuset_v1") {
        return;
    }
    if is_v2() {
        eprintln!("SKIP resources_cpu_and_cpuset_v1: the host runs cgroup v2");
        return;
    }
    let bundle = with_resources(
        "cpu",
        json!({"cpu": {"shares": 256, "quota": 25000, "period": 50000, "cpus": "0", "mems": "0"}}),
    );
    assert_eq!(bundle.cgroup_file("cpu", "cpu.shares"), "256");
    assert_eq!(bundle.cgroup_file("cpu", "cpu.cfs_quota_us"), "25000");
    assert_eq!(bundle.cgroup_file("cpu", "cpu.cfs_period_us"), "50000");
    assert_eq!(bundle.cgroup_file("cpuset", "cpuset.cpus"), "0");
    assert_eq!(bundle.cgroup_file("cpuset", "cpuset.mems"), "0");
}

#[test]
fn resources_cpu_realtime_v1() {
    if !require_root("resources_cpu_realtime_v1") {
        return;
    }
    if is_v2() || !Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        eprintln!("SKIP resources_cpu_realtime_v1: no cpu.rt_runtime_us (CONFIG_RT_GROUP_SCHED)");
        return;
    }
    let bundle = with_resources(
        "cpu-rt",
        json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 0}}),
    );
    assert_eq!(bundle.cgroup_file("cpu", "cpu.rt_period_us"), "1000000");
    assert_eq!(bundle.cgroup_file("cpu", "cpu.rt_runtime_us"), "0");
}

#[test]
fn resources_pids_limit() {
    if !require_root("resources_pids_limit") {
        return;
    }
    let bundle = with_resources("pids", json!({"pids": {"limit": 5}}));
    assert_eq!(bundle.cgroup_file("pids", "pids.max"), "5");
    let output = bundle.corral_output(&[
        "exec",
        &bundle.id,
        "/bin/sh",
        "-c",
        "for i in 1 2 3 4 5 6; do sleep 2 & done; wait",
    ]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("can't fork") || stderr.contains("Resource temporarily unavailable"),
        "the pids limit was not enforced: {}",
        describe(&output)
    );
}

#[test]
fn resources_block_io_v1() {
    if !require_root("resources_block_io_v1") {
        return;
    }
    if is_v2() {
        eprintln!("SKIP resources_block_io_v1: the host runs cgroup v2");
        return;
    }
    let (major, minor) = block_device();
    let device = |rate: u64| json!([{"major": major, "minor": minor, "rate": rate}]);
    let bundle = with_resources(
        "blkio",
        json!({"blockIO": {
            "throttleReadBpsDevice": device(1 << 20),
            "throttleWriteBpsDevice": device(2 << 20),
            "throttleReadIOPSDevice": device(100),
            "throttleWriteIOPSDevice": device(200)}}),
    );
    for (file, value) in [
        ("blkio.throttle.read_bps_device", 1u64 << 20),
        ("blkio.throttle.write_bps_device", 2 << 20),
        ("blkio.throttle.read_iops_device", 100),
        ("blkio.throttle.write_iops_device", 200),
    ] {
        assert_eq!(
            bundle.cgroup_file("blkio", file),
            format!("{major}:{minor} {value}"),
            "{file}"
        );
    }
}

#[test]
fn resources_block_io_weight() {
    if !require_root("resources_block_io_weight") {
        return;
    }
    let (major, minor) = block_device();
    let mut bundle = Bundle::new("blkio-weight");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set(
        "/linux/resources",
        json!({"blockIO": {"weight": 300,
                           "weightDevice": [{"major": major, "minor": minor, "weight": 400}]}}),
    );
    let own = corral_tests::host::own_cgroup_dir("blkio");
    let has_weight = own.is_some_and(|dir| {
        dir.join("blkio.weight").exists() || dir.join("blkio.bfq.weight").exists()
    });
    if is_v2() && !v2_weighs_device(major, minor) {
        // Without io.cost for the device (or BFQ), the kernel rejects a
        // device's weight, and the error must name the field and the reason.
        let output = bundle.create();
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("linux.resources.blockIO.weightDevice"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("device {major}:{minor}")),
            "{stderr}"
        );
        assert!(bundle.state().is_none(), "a failed create left state");
    } else if is_v2() || has_weight {
        bundle.start_ok();
        let dir = bundle.cgroup_dir("blkio");
        let file = [
            "blkio.weight",
            "blkio.bfq.weight",
            "io.weight",
            "io.bfq.weight",
        ]
        .into_iter()
        .find(|f| dir.join(f).exists())
        .expect("a weight file");
        let value = fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            value.contains("300") || value.contains("default"),
            "{file}: {value}"
        );
    } else {
        // Without an I/O scheduler that has weights, the runtime cannot apply
        // the field, and the error must name it and the reason.
        let output = bundle.create();
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("linux.resources.blockIO.weight"),
            "{stderr}"
        );
    }
}

/// Returns whether cgroup v2 takes per-device I/O weights for the device:
/// the io.cost controller is enabled for it, or it uses the BFQ scheduler.
fn v2_weighs_device(major: u64, minor: u64) -> bool {
    let device = format!("{major}:{minor}");
    let iocost = fs::read_to_string("/sys/fs/cgroup/io.cost.qos").unwrap_or_default();
    let enabled = iocost
        .lines()
        .any(|line| line.starts_with(&format!("{device} ")) && line.contains("enable=1"));
    let scheduler =
        fs::read_to_string(format!("/sys/dev/block/{device}/queue/scheduler")).unwrap_or_default();
    enabled || scheduler.contains("[bfq]")
}

/// Returns the directory that takes hugetlb limits for `bundle` and the
/// limit file's suffix. The directory is the v2 cgroup, the v1 hugetlb
/// controller's, or on a hybrid host the container's cgroup in the cgroup2
/// mount, and `None` when the host offers hugetlb nowhere.
fn hugetlb_dir(bundle: &Bundle) -> Option<(PathBuf, &'static str)> {
    match bundle.cgroup_paths() {
        CgroupPaths::V2 { path } => Some((path, "max")),
        CgroupPaths::V1 { controllers } => match controllers.get("hugetlb") {
            Some(dir) => Some((dir.clone(), "limit_in_bytes")),
            None => controllers.get(UNIFIED_KEY).map(|dir| (dir.clone(), "max")),
        },
    }
}

/// Returns the path of `pid`'s cgroup in the unified hierarchy (the `0::`
/// line of /proc/PID/cgroup).
fn unified_cgroup_of(pid: i32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no cgroup2 line in {text}"))
        .to_string()
}

#[test]
fn resources_hugepage_limits() {
    if !require_root("resources_hugepage_limits") {
        return;
    }
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        eprintln!("SKIP resources_hugepage_limits: the kernel has no 2 MB huge pages");
        return;
    }
    let limits = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]});
    let probe = Bundle::new("hugetlb-layout");
    let Some((_, suffix)) = hugetlb_dir(&probe) else {
        // A hybrid host whose cgroup2 mount has hugetlb but does not enable
        // it for this process's children: the runtime does not write to a
        // cgroup it did not create, so it must reject the limit and say how
        // to enable the controller.
        eprintln!(
            "SKIP resources_hugepage_limits: no v1 hugetlb controller, and this process's \
             cgroup in the cgroup2 mount does not enable hugetlb in cgroup.subtree_control; \
             only the error is checked"
        );
        let mut bundle = Bundle::new("hugetlb-missing");
        bundle.args(&[PROBE, "sleep", "600"]);
        bundle.set("/linux/resources", limits);
        let output = bundle.create();
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("linux.resources.hugepageLimits"),
            "the message does not name the field: {stderr}"
        );
        assert!(
            stderr.contains("cgroup.subtree_control"),
            "the message does not say how to enable hugetlb: {stderr}"
        );
        assert!(bundle.state().is_none(), "a failed create left state");
        let CgroupPaths::V1 { controllers } = bundle.cgroup_paths() else {
            panic!("a v2 host always offers hugetlb paths");
        };
        for (name, dir) in controllers {
            assert!(!dir.exists(), "{name}: {} was left behind", dir.display());
        }
        return;
    };
    drop(probe);

    let bundle = with_resources("hugetlb", limits);
    let (dir, _) = hugetlb_dir(&bundle).expect("the probe found hugetlb");
    let file = dir.join(format!("hugetlb.2MB.{suffix}"));
    let value = fs::read_to_string(&file)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", file.display()));
    assert_eq!(value.trim(), (4u64 << 20).to_string(), "{}", file.display());

    let hybrid = matches!(bundle.cgroup_paths(), CgroupPaths::V1 { .. }) && suffix == "max";
    if hybrid {
        // The init runs in the cgroup2 directory beside its v1 cgroups.
        let own = unified_cgroup_of(std::process::id() as i32);
        let expected = Path::new(&own).join(&bundle.cgroup_path);
        assert_eq!(
            Path::new(&unified_cgroup_of(bundle.pid())),
            expected,
            "the init is not in the container's cgroup2 directory"
        );
    }
    let delete = bundle.corral_output(&["delete", "--force", &bundle.id]);
    assert!(delete.status.success(), "{}", describe(&delete));
    assert!(!dir.exists(), "delete left {}", dir.display());

    if hybrid {
        // A create that fails after the cgroup exists removes the cgroup2
        // directory too: 3MB is no huge page size.
        let mut failing = Bundle::new("hugetlb-invalid");
        failing.args(&[PROBE, "sleep", "600"]);
        failing.set(
            "/linux/resources",
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 4 << 20}]}),
        );
        let output = failing.create();
        assert!(!output.status.success(), "{}", describe(&output));
        let (unified, _) = hugetlb_dir(&failing).expect("hybrid cgroup2 directory");
        assert!(
            !unified.exists(),
            "a failed create left {}",
            unified.display()
        );
    }
}

#[test]
fn resources_unified_by_version() {
    if !require_root("resources_unified_by_version") {
        return;
    }
    let mut bundle = Bundle::new("unified");
    bundle.args(&[PROBE, "sleep", "600"]);
    bundle.set(
        "/linux/resources",
        json!({"unified": {"memory.high": "104857600", "pids.max": "40"}}),
    );
    if is_v2() {
        bundle.start_ok();
        assert_eq!(bundle.cgroup_file("memory", "memory.high"), "104857600");
        assert_eq!(bundle.cgroup_file("pids", "pids.max"), "40");
    } else {
        let output = bundle.create();
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = text(&output.stderr);
        assert!(stderr.contains("linux.resources.unified"), "{stderr}");
    }
}
