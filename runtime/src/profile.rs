//! The seccomp profile every job gets unless it says otherwise.
//!
//! Like Docker's default profile, it keeps a container from the kernel's
//! administrative interfaces: modules, reboot, kexec, keyrings, bpf, perf
//! events, mounts and new namespaces, clocks, swap, accounting and a few
//! obsolete or dangerous calls. Blocked calls fail with EPERM (clone3 with
//! ENOSYS, so that C libraries fall back to clone, whose namespace flags the
//! profile can inspect), never by killing the process. Unlike Docker's, the
//! profile allows every other call rather than listing allowed ones, so new
//! harmless system calls work without an update.
//!
//! A capability added to the job unblocks the calls it governs, as Docker
//! does: with SYS_ADMIN a job may mount, with SYS_MODULE load modules.

use serde_json::{json, Value};

/// Calls blocked unless the job has the capability named beside them.
const BLOCKED: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "bpf",
            "perf_event_open",
            "fanotify_init",
            "name_to_handle_at",
            "open_by_handle_at",
            "swapon",
            "swapoff",
            "vhangup",
            "sethostname",
            "setdomainname",
            "keyctl",
            "add_key",
            "request_key",
            "nfsservctl",
            "userfaultfd",
        ],
    ),
    (
        "CAP_SYS_MODULE",
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot", "kexec_load", "kexec_file_load"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
        ],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_NICE",
        &["mbind", "set_mempolicy", "move_pages", "get_mempolicy"],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_SYS_PTRACE", &["kcmp"]),
    (
        "",
        &["uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old"],
    ),
];

/// clone flags that create namespaces, which only CAP_SYS_ADMIN may use.
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// Builds the OCI `linux.seccomp` object of the default profile for a job
/// whose capability set is `capabilities` (`CAP_` names).
pub fn default_profile(capabilities: &[String]) -> Value {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut syscalls = Vec::new();
    let mut blocked = Vec::new();
    for (capability, names) in BLOCKED {
        if capability.is_empty() || !has(capability) {
            blocked.extend(names.iter().copied());
        }
    }
    syscalls.push(json!({"names": blocked, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}));
    if !has("CAP_SYS_ADMIN") {
        for flag in NAMESPACE_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        syscalls.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": syscalls,
    })
}
