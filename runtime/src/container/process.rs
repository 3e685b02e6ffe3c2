//! The process half of the init: rlimits, user and groups, capabilities,
//! no_new_privs, and finding the executable.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use oci_spec::runtime::Process;

use super::executable;
use super::init::InitError;
use crate::job::DEFAULT_PATH;

/// The executable and its argv and envp as C strings.
pub(crate) struct Resolved {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

fn invalid(message: String) -> InitError {
    InitError::Process(message)
}

fn c_string(value: &str, what: &str) -> Result<CString, InitError> {
    CString::new(value).map_err(|_| invalid(format!("{what} {value:?} contains a NUL byte")))
}

/// Finds the executable: `args[0]` as given when it has a `/`, else the
/// first match in the process's `PATH`, or in the default search path when
/// the environment has none.
///
/// With `check`, an executable that cannot be executed fails with
/// [`InitError::Executable`]. Without it, a missing program keeps its bare
/// name, so execve fails with ENOENT and the message names what was asked
/// for. With `other_formats`, the check accepts files that are neither ELF
/// nor `#!` scripts, because binfmt_misc handlers may run them.
pub(crate) fn resolve(
    process: &Process,
    check: bool,
    other_formats: bool,
) -> Result<Resolved, InitError> {
    let args = process.args().clone().unwrap_or_default();
    let Some(program) = args.first() else {
        return Err(invalid("process.args is empty".to_string()));
    };
    let env = process.env().clone().unwrap_or_default();
    let search_path = executable::search_path(&env, DEFAULT_PATH);
    let path = match executable::locate(program, search_path) {
        Ok(path) if check => {
            executable::check_format(program, &path, other_formats)?;
            path
        }
        Ok(path) => path,
        Err(error) if check => return Err(InitError::Executable(error)),
        Err(_) => PathBuf::from(program),
    };
    Ok(Resolved {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| invalid(format!("program {program:?} contains a NUL byte")))?,
        args: args
            .iter()
            .map(|a| c_string(a, "argument"))
            .collect::<Result<_, _>>()?,
        env: env
            .iter()
            .map(|e| c_string(e, "environment entry"))
            .collect::<Result<_, _>>()?,
    })
}

/// Applies the spec's rlimits to the init, which the process inherits, and
/// returns warnings for limits that had to be lowered.
///
/// Raising a hard limit needs CAP_SYS_RESOURCE. Without it (some hosts drop
/// it from root's bounding set), a limit above the current hard limit is
/// lowered to that hard limit and a warning is returned, instead of failing
/// the container: clients such as podman ask for a high RLIMIT_NOFILE by default.
pub(crate) fn apply_rlimits(process: &Process) -> Result<Vec<String>, InitError> {
    let mut warnings = Vec::new();
    for rlimit in process.rlimits().as_deref().unwrap_or_default() {
        let name = rlimit.typ().to_string();
        let resource = rlimit_resource(&name)
            .ok_or_else(|| invalid(format!("unknown rlimit type {name:?}")))?;
        let mut limit = libc::rlimit {
            rlim_cur: rlimit.soft(),
            rlim_max: rlimit.hard(),
        };
        // SAFETY: `limit` is an initialized rlimit that outlives the call.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            continue;
        }
        let error = nix::Error::last();
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid `current`.
        let known = unsafe { libc::getrlimit(resource, &mut current) } == 0;
        if error != nix::Error::EPERM || !known || limit.rlim_max <= current.rlim_max {
            return Err(InitError::Sys {
                operation: format!(
                    "set {name} to soft {} hard {}",
                    rlimit.soft(),
                    rlimit.hard()
                ),
                source: error,
            });
        }
        limit.rlim_max = current.rlim_max;
        limit.rlim_cur = limit.rlim_cur.min(current.rlim_max);
        // SAFETY: as above.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(InitError::Sys {
                operation: format!(
                    "set {name} to soft {} hard {}",
                    limit.rlim_cur, limit.rlim_max
                ),
                source: nix::Error::last(),
            });
        }
        warnings.push(format!(
            "{name} lowered from soft {} hard {} to soft {} hard {}: raising a hard limit needs CAP_SYS_RESOURCE",
            rlimit.soft(),
            rlimit.hard(),
            limit.rlim_cur,
            limit.rlim_max
        ));
    }
    Ok(warnings)
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Switches to the process's user and groups and applies its capability
/// sets and no_new_privs, in the order the kernel requires: the bounding set
/// while still privileged, then the IDs (keeping permitted capabilities
/// across setuid), then the remaining sets.
pub(crate) fn switch_user(process: &Process) -> Result<(), InitError> {
    let user = process.user();
    let capabilities = process.capabilities().clone().unwrap_or_default();
    let to_set = |list: &Option<oci_spec::runtime::Capabilities>| -> CapsHashSet {
        list.as_ref()
            .map(|set| {
                set.iter()
                    .filter_map(|c| capability(&c.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let bounding = to_set(capabilities.bounding());
    let effective = to_set(capabilities.effective());
    let permitted = to_set(capabilities.permitted());
    let inheritable = to_set(capabilities.inheritable());
    let ambient = to_set(capabilities.ambient());

    let caps_error = |what: &'static str| {
        move |error: caps::errors::CapsError| {
            invalid(format!("failed to set the {what} capability set: {error}"))
        }
    };
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_error("bounding"))?;
        }
    }

    if let Some(umask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    }
    // SAFETY: PR_SET_KEEPCAPS takes an integer flag and no pointers.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let mut groups: Vec<Gid> = vec![Gid::from_raw(user.gid())];
    groups.extend(
        user.additional_gids()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|g| Gid::from_raw(*g)),
    );
    setgroups(&groups).map_err(|source| InitError::Sys {
        operation: format!("set supplementary groups {groups:?}"),
        source,
    })?;
    setgid(Gid::from_raw(user.gid())).map_err(|source| InitError::Sys {
        operation: format!("setgid {}", user.gid()),
        source,
    })?;
    setuid(Uid::from_raw(user.uid())).map_err(|source| InitError::Sys {
        operation: format!("setuid {}", user.uid()),
        source,
    })?;

    // Effective must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &(&effective & &permitted))
        .map_err(caps_error("effective"))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(caps_error("permitted"))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(caps_error("inheritable"))?;
    caps::set(None, CapSet::Effective, &effective).map_err(caps_error("effective"))?;
    if !ambient.is_empty() {
        caps::set(None, CapSet::Ambient, &ambient).map_err(caps_error("ambient"))?;
    }

    if process.no_new_privileges() == Some(true) {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(InitError::Sys {
                operation: "set no_new_privs".to_string(),
                source: nix::Error::last(),
            });
        }
    }
    Ok(())
}

/// Parses a capability name; oci-spec displays its capabilities without
/// the `CAP_` prefix that the caps crate expects.
fn capability(name: &str) -> Option<Capability> {
    if name.starts_with("CAP_") {
        name.parse().ok()
    } else {
        format!("CAP_{name}").parse().ok()
    }
}

/// Applies the process's I/O priority, scheduling policy and nice value,
/// and the container's execution domain (personality).
pub(crate) fn apply_scheduling(
    process: &Process,
    personality: Option<&oci_spec::runtime::LinuxPersonality>,
) -> Result<(), InitError> {
    use oci_spec::runtime::{IOPriorityClass, LinuxPersonalityDomain, LinuxSchedulerPolicy};

    let failed = |operation: String| InitError::Sys {
        operation,
        source: nix::Error::last(),
    };
    if let Some(priority) = process.io_priority() {
        // The class sits in the top bits of the ioprio value (IOPRIO_CLASS_SHIFT).
        let class: i64 = match priority.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        let value = (class << 13) | priority.priority();
        // SAFETY: ioprio_set takes integers only; "who" 0 is this process
        // (IOPRIO_WHO_PROCESS = 1).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) } != 0 {
            return Err(failed(format!(
                "set I/O priority class {class} level {}",
                priority.priority()
            )));
        }
    }
    if let Some(scheduler) = process.scheduler() {
        let policy = match scheduler.policy() {
            LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
            LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
            LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
            LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
            LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
            other => {
                return Err(InitError::Process(format!(
                    "scheduler policy {other:?} is not supported"
                )))
            }
        };
        let parameters = libc::sched_param {
            sched_priority: scheduler.priority().unwrap_or(0),
        };
        // SAFETY: `parameters` is an initialized sched_param that outlives the call.
        if unsafe { libc::sched_setscheduler(0, policy, &parameters) } != 0 {
            return Err(failed(format!("set scheduler policy {policy}")));
        }
        if let Some(nice) = scheduler.nice() {
            // SAFETY: setpriority takes integers only.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, *nice) } != 0 {
                return Err(failed(format!("set nice value {nice}")));
            }
        }
    }
    if let Some(personality) = personality {
        let domain = match personality.domain() {
            LinuxPersonalityDomain::PerLinux => 0x0000,
            LinuxPersonalityDomain::PerLinux32 => 0x0008,
        };
        // SAFETY: personality takes an integer persona and no pointers.
        if unsafe { libc::personality(domain) } == -1 {
            return Err(failed(format!("set personality {domain:#x}")));
        }
    }
    Ok(())
}
