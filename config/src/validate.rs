//! Semantic checks of a deserialized job spec, run before anything is created.
//!
//! Each check names the offending field and, in its message, the allowed
//! range. Checks that depend on the host (CPU count, online CPUs) take them
//! from a [`HostContext`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::convert::{
    parse_cpu_list, signal_name, signal_names, signal_number, CFS_MIN_QUOTA_US, CFS_PERIOD_US,
    WEIGHT_MAX, WEIGHT_MIN,
};
use crate::field::FieldPath;
use crate::host::HostContext;
use crate::substitute::substitute_spec;
use crate::types::{ImageRef, IoLimits, JobSpec, MountSpec, Network, Resources};
use crate::units::ByteSize;

/// Smallest memory limit, in bytes.
pub const MIN_MEMORY: u64 = 1 << 20;

/// Smallest log file size before rotation, in bytes.
pub const MIN_LOG_SIZE: u64 = 4 << 10;

/// Largest `logs.keep`. Each rotation renames every kept file, so its cost
/// grows with the number of files kept, and `supervisorctl tail -f` looks
/// at this many generations when it counts output skipped by rotation.
pub const MAX_LOG_KEEP: u32 = 1000;

/// Smallest `resources.cpus`: its quota per period is the kernel's minimum.
pub const MIN_CPUS: f64 = CFS_MIN_QUOTA_US as f64 / CFS_PERIOD_US as f64;

/// The largest `pids` limit: the kernel's PID_MAX_LIMIT on 64-bit, above
/// which `pids.max` rejects a value.
pub const MAX_PIDS: u64 = 4_194_304;

/// Maximum host name length that `sethostname(2)` accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// Maximum job name length.
pub const MAX_JOB_NAME_LEN: usize = 63;

/// The rule that a job file's name must follow, as error messages state it.
pub const JOB_NAME_RULE: &str = "a job name is the file name without `.json` and must match \
     [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.' and '-', starting with a \
     letter or digit, at most 63 characters)";

/// A job spec value that fails a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field_prefix(path))]
pub struct ValidationError {
    pub(crate) path: FieldPath,
    /// Whether the error is about an object key (an env name, a device path)
    /// rather than its value, so that its position is the key's.
    pub(crate) at_key: bool,
    pub(crate) message: String,
}

fn field_prefix(path: &FieldPath) -> String {
    if path.is_root() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl ValidationError {
    pub(crate) fn new(path: FieldPath, message: impl fmt::Display) -> Self {
        ValidationError {
            path,
            at_key: false,
            message: message.to_string(),
        }
    }

    pub(crate) fn at_key(path: FieldPath, message: impl fmt::Display) -> Self {
        ValidationError {
            path,
            at_key: true,
            message: message.to_string(),
        }
    }

    /// Returns the path of the offending value, such as `resources.memory`, or
    /// the empty string for the whole spec.
    pub fn field(&self) -> String {
        self.path.to_string()
    }

    /// Returns what is wrong, with the allowed range.
    pub fn message(&self) -> &str {
        &self.message
    }
}

type Check = Result<(), ValidationError>;

/// Returns whether `name` is a valid job name: `[a-z0-9][a-z0-9_.-]{0,62}`.
pub fn is_valid_job_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let valid_first = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'));
    valid_first
        && bytes.len() <= MAX_JOB_NAME_LEN
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// Job names that match the job name syntax but are not allowed, because
/// supervisorctl gives them another meaning: `all` selects every job.
pub const RESERVED_JOB_NAMES: [&str; 1] = ["all"];

/// Returns whether `name` is one of [`RESERVED_JOB_NAMES`].
pub fn is_reserved_job_name(name: &str) -> bool {
    RESERVED_JOB_NAMES.contains(&name)
}

/// Substitutes `${VAR}` references in `spec`, checks every field and stores
/// `stop.signal` in its canonical form (`SIGTERM`).
///
/// Returns the first failed check. `spec` may be partly substituted when
/// this fails.
pub fn validate_spec(name: &str, spec: &mut JobSpec, host: &HostContext) -> Check {
    if !is_valid_job_name(name) {
        return Err(ValidationError::new(
            FieldPath::root(),
            format!(
                "invalid job name {name:?}: must match [a-z0-9][a-z0-9_.-]{{0,62}} (lower-case \
                 letters, digits, '_', '.' and '-', starting with a letter or digit)"
            ),
        ));
    }
    if is_reserved_job_name(name) {
        return Err(ValidationError::new(
            FieldPath::root(),
            format!(
                "job name {name:?} is reserved: supervisorctl commands take `{name}` to mean \
                 every job; rename the file"
            ),
        ));
    }
    check_image_and_command(spec)?;
    check_env(&spec.env)?;
    substitute_spec(spec, host)?;
    check_command_strings(&spec.command)?;
    check_process(spec)?;
    check_resources(&spec.resources, host)?;
    check_init_pids(spec)?;
    check_ports(spec)?;
    check_mounts(&spec.mounts)?;
    check_policies(spec)?;
    check_labels(&spec.labels)?;
    check_security(spec)
}

/// Linux capability names, without the `CAP_` prefix.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Returns the canonical `CAP_NAME` of a capability written with or without
/// the prefix, in any case, or None for an unknown name.
pub fn canonical_capability(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.contains(&bare).then(|| format!("CAP_{bare}"))
}

fn check_security(spec: &mut JobSpec) -> Check {
    for (field, list) in [
        ("cap_add", &mut spec.cap_add),
        ("cap_drop", &mut spec.cap_drop),
    ] {
        for (index, name) in list.iter_mut().enumerate() {
            if field == "cap_drop" && name.eq_ignore_ascii_case("ALL") {
                *name = "ALL".to_string();
                continue;
            }
            match canonical_capability(name) {
                Some(canonical) => *name = canonical,
                None => {
                    return Err(ValidationError::new(
                        FieldPath::of(&[field]).index(index),
                        format!(
                            "unknown capability {name:?}: use a Linux capability name such as \
                             NET_ADMIN or CAP_NET_ADMIN{}",
                            if field == "cap_drop" { ", or ALL" } else { "" }
                        ),
                    ))
                }
            }
        }
    }
    let seccomp = spec.seccomp.as_str();
    if seccomp != "default" && seccomp != "unconfined" && !seccomp.starts_with('/') {
        return Err(ValidationError::new(
            FieldPath::of(&["seccomp"]),
            format!(
                "invalid seccomp {seccomp:?}: use \"default\", \"unconfined\" or the absolute \
                 path of an OCI seccomp profile"
            ),
        ));
    }
    if let Some(namespace) = spec.user_namespace {
        if namespace.size == 0 {
            return Err(ValidationError::new(
                FieldPath::of(&["user_namespace", "size"]),
                "size must be at least 1",
            ));
        }
        for (key, start) in [("uid", namespace.uid), ("gid", namespace.gid)] {
            if u64::from(start) + u64::from(namespace.size) > u64::from(u32::MAX) + 1 {
                return Err(ValidationError::new(
                    FieldPath::of(&["user_namespace", key]),
                    format!(
                        "{key} {start} plus size {} runs past 4294967295",
                        namespace.size
                    ),
                ));
            }
        }
        if namespace.uid == 0 || namespace.gid == 0 {
            let key = if namespace.uid == 0 { "uid" } else { "gid" };
            return Err(ValidationError::new(
                FieldPath::of(&["user_namespace", key]),
                "must not be 0: mapping the host's root into the namespace gives no isolation",
            ));
        }
    }
    Ok(())
}

fn check_image_and_command(spec: &JobSpec) -> Check {
    let image_path = FieldPath::of(&["image"]);
    match &spec.image {
        ImageRef::Named(name) if name.is_empty() => {
            return Err(ValidationError::new(
                image_path,
                "image name must not be empty: use \"host\", an image name, or {\"path\": DIR}",
            ));
        }
        ImageRef::Named(name) if name.starts_with('/') => {
            return Err(ValidationError::new(
                image_path,
                format!(
                    "invalid image name {name:?}: a directory is written {{\"path\": {name:?}}}"
                ),
            ));
        }
        ImageRef::Path { path } if !path.is_absolute() => {
            return Err(ValidationError::new(
                image_path.key("path"),
                format!("invalid image path {path:?}: must be an absolute path"),
            ));
        }
        _ => {}
    }

    let needs_command = matches!(spec.image, ImageRef::Host | ImageRef::Path { .. });
    if needs_command && spec.command.is_empty() {
        return Err(ValidationError::new(
            FieldPath::of(&["command"]),
            "missing command: a command is required when image is \"host\" or a path (only a \
             named image may supply one)",
        ));
    }
    Ok(())
}

fn check_command_strings(command: &[String]) -> Check {
    let path = FieldPath::of(&["command"]);
    if command.first().is_some_and(|program| program.is_empty()) {
        return Err(ValidationError::new(
            path.index(0),
            "the program (command[0]) must not be empty",
        ));
    }
    for (index, argument) in command.iter().enumerate() {
        if argument.contains('\0') {
            return Err(ValidationError::new(
                path.index(index),
                format!("invalid argument {argument:?}: must not contain a NUL byte"),
            ));
        }
    }
    Ok(())
}

fn check_env(env: &BTreeMap<String, String>) -> Check {
    for (key, value) in env {
        let path = FieldPath::of(&["env"]).key(key);
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(ValidationError::at_key(
                path,
                format!(
                    "invalid variable name {key:?}: must be non-empty and contain neither '=' \
                     nor a NUL byte"
                ),
            ));
        }
        if value.contains('\0') {
            return Err(ValidationError::new(
                path,
                format!("invalid value {value:?}: must not contain a NUL byte"),
            ));
        }
    }
    Ok(())
}

fn check_process(spec: &JobSpec) -> Check {
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') || dir.contains('\0') {
            return Err(ValidationError::new(
                FieldPath::of(&["working_dir"]),
                format!("invalid working directory {dir:?}: must be an absolute path"),
            ));
        }
    }

    if let Some(hostname) = &spec.hostname {
        let valid_chars = hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if hostname.is_empty() || hostname.len() > MAX_HOSTNAME_LEN || !valid_chars {
            return Err(ValidationError::new(
                FieldPath::of(&["hostname"]),
                format!(
                    "invalid hostname {hostname:?}: must be 1 to {MAX_HOSTNAME_LEN} characters of \
                     letters, digits, '-' and '.'"
                ),
            ));
        }
    }

    if let Some(user) = &spec.user {
        if !is_valid_user(user) {
            return Err(ValidationError::new(
                FieldPath::of(&["user"]),
                format!(
                    "invalid user {user:?}: expected USER or USER:GROUP, where each is a number \
                     from 0 to 4294967294 or a name of letters, digits, '_', '.' and '-' (at most \
                     32 characters, not starting with a digit, '.' or '-')"
                ),
            ));
        }
    }
    Ok(())
}

/// Accepts `UID`, `UID:GID`, `NAME` and `NAME:GROUP`, in any mix of numbers
/// and names. The runtime resolves names in the image's /etc/passwd and
/// /etc/group.
fn is_valid_user(user: &str) -> bool {
    let mut parts = user.splitn(2, ':');
    let user_part = parts.next().unwrap_or_default();
    let group_part = parts.next();
    is_valid_id(user_part) && group_part.is_none_or(is_valid_id)
}

fn is_valid_id(id: &str) -> bool {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        // (uid_t)-1 is the "no change" value of setresuid(2), not a user.
        return id.parse::<u32>().is_ok_and(|number| number != u32::MAX);
    }
    let bytes = id.as_bytes();
    let valid_first = matches!(bytes.first(), Some(b) if b.is_ascii_alphabetic() || *b == b'_');
    valid_first
        && bytes.len() <= 32
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Rejects `resources.pids` 1 with `init`: the init is the job's first
/// process, so its fork of the command would fail with EAGAIN at every
/// start.
fn check_init_pids(spec: &JobSpec) -> Check {
    if spec.init && spec.resources.pids == Some(1) {
        return Err(ValidationError::new(
            FieldPath::of(&["resources", "pids"]),
            "pids 1 leaves no process for the command with init true, because the init \
             counts as the job's first process; set pids to at least 2",
        ));
    }
    Ok(())
}

fn check_resources(resources: &Resources, host: &HostContext) -> Check {
    let path = FieldPath::of(&["resources"]);

    if let Some(memory) = resources.memory {
        if memory.bytes() < MIN_MEMORY {
            return Err(ValidationError::new(
                path.key("memory"),
                format!(
                    "memory {memory} is below the minimum of 1M, because a job cannot even start \
                     within a smaller limit"
                ),
            ));
        }
    }

    if let Some(total) = resources.memory_swap {
        let Some(memory) = resources.memory else {
            return Err(ValidationError::new(
                path.key("memory_swap"),
                "memory_swap requires resources.memory to be set, because it limits memory \
                 plus swap",
            ));
        };
        if total < memory {
            return Err(ValidationError::new(
                path.key("memory_swap"),
                format!(
                    "memory_swap {total} is below memory {memory}, but memory_swap is memory \
                     plus swap and must be at least memory (equal means no swap)"
                ),
            ));
        }
    }

    if let Some(cpus) = resources.cpus {
        check_cpus(cpus, host)
            .map_err(|message| ValidationError::new(path.key("cpus"), message))?;
    }

    if let Some(weight) = resources.cpu_weight {
        check_weight(weight)
            .map_err(|message| ValidationError::new(path.key("cpu_weight"), message))?;
    }

    if let Some(cpuset) = &resources.cpuset {
        check_cpuset(cpuset, host)
            .map_err(|message| ValidationError::new(path.key("cpuset"), message))?;
    }

    if resources.pids == Some(0) {
        return Err(ValidationError::new(
            path.key("pids"),
            "pids 0 is below the minimum of 1, because the job's first process counts too",
        ));
    }
    if let Some(pids) = resources.pids.filter(|pids| *pids > MAX_PIDS) {
        return Err(ValidationError::new(
            path.key("pids"),
            format!("pids {pids} is above the kernel's maximum of {MAX_PIDS} (PID_MAX_LIMIT)"),
        ));
    }

    if let Some(io) = &resources.io {
        check_io(io, &path.key("io"))?;
    }
    Ok(())
}

fn check_cpus(cpus: f64, host: &HostContext) -> Result<(), String> {
    let count = host.cpu_count();
    let range = format!("allowed: {MIN_CPUS} to {count}, the number of online CPUs");
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(format!("cpus {cpus} must be greater than 0 ({range})"));
    }
    if cpus < MIN_CPUS {
        return Err(format!(
            "cpus {cpus} is below the minimum of {MIN_CPUS}, because its CFS quota per 100ms \
             period would be under the kernel's 1ms minimum ({range})"
        ));
    }
    if cpus > count as f64 {
        return Err(format!("cpus {cpus} is more than the host has ({range})"));
    }
    Ok(())
}

fn check_weight(weight: u64) -> Result<(), String> {
    if (WEIGHT_MIN..=WEIGHT_MAX).contains(&weight) {
        Ok(())
    } else {
        Err(format!(
            "weight {weight} is out of range: allowed {WEIGHT_MIN} to {WEIGHT_MAX} (100 is the \
             kernel default)"
        ))
    }
}

fn check_cpuset(cpuset: &str, host: &HostContext) -> Result<(), String> {
    let online = format_cpu_list(host.online_cpus.iter().copied());
    let cpus =
        parse_cpu_list(cpuset).map_err(|error| format!("{error} (online CPUs: {online})"))?;
    if cpus.is_empty() {
        return Err(format!(
            "cpuset must name at least one CPU, such as \"0-2,4\" (online CPUs: {online})"
        ));
    }
    if let Some(cpu) = cpus.iter().find(|cpu| !host.online_cpus.contains(cpu)) {
        return Err(format!(
            "CPU {cpu} in cpuset {cpuset:?} is not online (online CPUs: {online})"
        ));
    }
    Ok(())
}

/// Formats CPU numbers in the kernel's list format, such as `0-3,6`.
fn format_cpu_list(cpus: impl Iterator<Item = u32>) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    let items: Vec<String> = ranges
        .into_iter()
        .map(|(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    items.join(",")
}

fn check_io(io: &IoLimits, path: &FieldPath) -> Check {
    if let Some(weight) = io.weight {
        check_weight(weight)
            .map_err(|message| ValidationError::new(path.key("weight"), message))?;
    }

    let throttles: [(&str, Vec<(&String, u64)>); 4] = [
        (
            "read_bps",
            io.read_bps.iter().map(|(d, v)| (d, v.bytes())).collect(),
        ),
        (
            "write_bps",
            io.write_bps.iter().map(|(d, v)| (d, v.bytes())).collect(),
        ),
        (
            "read_iops",
            io.read_iops.iter().map(|(d, v)| (d, *v)).collect(),
        ),
        (
            "write_iops",
            io.write_iops.iter().map(|(d, v)| (d, *v)).collect(),
        ),
    ];
    for (key, limits) in throttles {
        for (device, limit) in limits {
            let field = path.key(key).key(device);
            if !is_device_path(device) {
                return Err(ValidationError::at_key(
                    field,
                    format!(
                        "invalid device {device:?}: must be an absolute path under /dev, such \
                         as \"/dev/vda\""
                    ),
                ));
            }
            if limit == 0 {
                return Err(ValidationError::new(
                    field,
                    format!("{key} limit 0 must be greater than 0 (omit the device for no limit)"),
                ));
            }
        }
    }
    Ok(())
}

fn is_device_path(device: &str) -> bool {
    match device.strip_prefix("/dev/") {
        Some(rest) => !rest.is_empty() && !rest.split('/').any(|part| part == ".."),
        None => false,
    }
}

fn check_ports(spec: &JobSpec) -> Check {
    if !spec.ports.is_empty() {
        let reason = match spec.network {
            Network::Loopback => None,
            Network::None => Some(
                "with \"network\": \"none\" no interface is up inside the job, so no \
                 connection could reach it",
            ),
            Network::Host => Some(
                "with \"network\": \"host\" the job listens on the host's own addresses \
                 and needs no relay; remove \"ports\"",
            ),
        };
        if let Some(reason) = reason {
            return Err(ValidationError::new(
                FieldPath::of(&["ports"]),
                format!("published ports need \"network\": \"loopback\": {reason}"),
            ));
        }
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (index, port) in spec.ports.iter().enumerate() {
        let path = FieldPath::of(&["ports"]).index(index);
        let address: SocketAddr = port
            .host
            .parse()
            .map_err(|_| ValidationError::new(path.key("host"), bad_host_address(&port.host)))?;
        if !can_accept_tcp(address.ip()) {
            return Err(ValidationError::new(
                path.key("host"),
                format!(
                    "invalid host address {:?}: {} is a multicast or broadcast address, which \
                     never receives TCP connections. Use a local address such as \"127.0.0.1\", \
                     or \"0.0.0.0\" for every interface",
                    port.host,
                    address.ip()
                ),
            ));
        }
        if address.port() == 0 {
            return Err(ValidationError::new(
                path.key("host"),
                format!(
                    "host port 0 in {:?} is out of range: allowed 1 to 65535",
                    port.host
                ),
            ));
        }
        if port.container == 0 {
            return Err(ValidationError::new(
                path.key("container"),
                "container port 0 is out of range: allowed 1 to 65535",
            ));
        }
        if let Some(first) = seen.insert(address, index) {
            return Err(ValidationError::new(
                path.key("host"),
                format!("duplicate host address {address}: ports[{first}] already uses it"),
            ));
        }
    }
    Ok(())
}

/// Explains why `host` is not an `IP:PORT` address, naming the part that is
/// wrong when the rest is fine.
fn bad_host_address(host: &str) -> String {
    const EXPECTED: &str = "expected IP:PORT, such as \"127.0.0.1:8080\" or \"[::1]:8080\"";
    let bracketed = host
        .strip_prefix('[')
        .and_then(|ip| ip.strip_suffix(']'))
        .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    if bracketed || host.parse::<IpAddr>().is_ok() {
        return format!("invalid host address {host:?}: the port is missing; {EXPECTED}");
    }
    if let Some((ip, port)) = host.rsplit_once(':') {
        let bare_ip = ip
            .strip_prefix('[')
            .and_then(|ip| ip.strip_suffix(']'))
            .unwrap_or(ip);
        let valid_ip = match bare_ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => ip.starts_with('['),
            Ok(IpAddr::V4(_)) => true,
            Err(_) => false,
        };
        let digits = !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit());
        if valid_ip && digits {
            return format!("host port {port} in {host:?} is out of range: allowed 1 to 65535");
        }
        if !valid_ip && digits && !ip.is_empty() && !ip.contains(':') {
            return format!(
                "invalid host address {host:?}: {ip:?} is not an IP address (host names are \
                 not resolved); {EXPECTED}"
            );
        }
    }
    format!("invalid host address {host:?}: {EXPECTED}")
}

/// Returns whether TCP can deliver connections to `ip`. TCP is unicast only,
/// so a multicast or limited broadcast address never receives a connection.
///
/// NOTE: Whether a unicast address belongs to one of the host's interfaces
/// is not checked here, because addresses can be assigned after the job file
/// loads. An address that is not local fails when the job starts.
fn can_accept_tcp(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => !ip.is_multicast() && !ip.is_broadcast(),
        IpAddr::V6(ip) => !ip.is_multicast(),
    }
}

fn check_mounts(mounts: &[MountSpec]) -> Check {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, mount) in mounts.iter().enumerate() {
        let path = FieldPath::of(&["mounts"]).index(index);
        let target = match mount {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target,
        };
        let normalized = check_mount_target(target)
            .map_err(|message| ValidationError::new(path.key("target"), message))?;
        if let Some(first) = seen.insert(normalized.clone(), index) {
            return Err(ValidationError::new(
                path.key("target"),
                format!("duplicate mount target {normalized:?}: mounts[{first}] already uses it"),
            ));
        }

        match mount {
            MountSpec::Bind { source, .. } if !source.is_absolute() => {
                return Err(ValidationError::new(
                    path.key("source"),
                    format!("invalid bind source {source:?}: must be an absolute host path"),
                ));
            }
            MountSpec::Tmpfs {
                size: Some(ByteSize(0)),
                ..
            } => {
                return Err(ValidationError::new(
                    path.key("size"),
                    "tmpfs size 0 must be greater than 0 (omit it for the kernel default of half \
                     of RAM)",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a mount target and returns it without repeated or trailing slashes
/// and `.` components, for duplicate detection.
fn check_mount_target(target: &str) -> Result<String, String> {
    if !target.starts_with('/') || target.contains('\0') {
        return Err(format!(
            "invalid mount target {target:?}: must be an absolute path inside the container"
        ));
    }
    let parts: Vec<&str> = target
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!(
            "invalid mount target {target:?}: must not contain \"..\""
        ));
    }
    if parts.is_empty() {
        return Err(format!(
            "invalid mount target {target:?}: must not be \"/\", which is the image's root (use \
             readonly_rootfs or the image to change the root)"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn check_policies(spec: &mut JobSpec) -> Check {
    let signal = &spec.stop.signal;
    let Some(number) = signal_number(signal) else {
        let hint = closest_signal(signal)
            .map(|name| format!("did you mean {name}? "))
            .unwrap_or_default();
        return Err(ValidationError::new(
            FieldPath::of(&["stop", "signal"]),
            format!(
                "unknown signal {signal:?}: {hint}expected a Linux signal name such as SIGTERM, \
                 TERM or sigterm (real-time signals are not supported)"
            ),
        ));
    };
    // SIGSTOP cannot be caught or ignored, so it suspends the job instead
    // of ending it, and every stop would end in SIGKILL after the timeout.
    if signal_name(number) == Some("SIGSTOP") {
        return Err(ValidationError::new(
            FieldPath::of(&["stop", "signal"]),
            format!(
                "invalid stop signal {signal:?}: SIGSTOP suspends the job instead of ending it; \
                 use the signal the program handles to exit, such as SIGTERM, SIGINT or SIGQUIT"
            ),
        ));
    }
    if let Some(canonical) = signal_name(number) {
        spec.stop.signal = canonical.to_string();
    }

    check_positive(spec.stop.timeout.as_duration(), &["stop", "timeout"])?;
    check_positive(spec.restart.window.as_duration(), &["restart", "window"])?;
    check_positive(
        spec.restart.backoff.initial.as_duration(),
        &["restart", "backoff", "initial"],
    )?;
    check_positive(
        spec.restart.backoff.max.as_duration(),
        &["restart", "backoff", "max"],
    )?;
    let backoff = &spec.restart.backoff;
    if backoff.initial > backoff.max {
        return Err(ValidationError::new(
            FieldPath::of(&["restart", "backoff", "initial"]),
            format!(
                "initial backoff {} is greater than restart.backoff.max {}: must be greater than \
                 0 and at most max",
                backoff.initial, backoff.max
            ),
        ));
    }

    let max_size = spec.logs.max_size;
    if max_size.bytes() < MIN_LOG_SIZE {
        return Err(ValidationError::new(
            FieldPath::of(&["logs", "max_size"]),
            format!("log max_size {max_size} is below the minimum of 4K"),
        ));
    }
    let keep = spec.logs.keep;
    if keep > MAX_LOG_KEEP {
        return Err(ValidationError::new(
            FieldPath::of(&["logs", "keep"]),
            format!(
                "log keep {keep} is above the maximum of {MAX_LOG_KEEP}: each rotation renames \
                 every kept file, so keep fewer files or raise max_size"
            ),
        ));
    }
    Ok(())
}

fn check_positive(duration: Duration, keys: &[&str]) -> Check {
    if duration.is_zero() {
        return Err(ValidationError::new(
            FieldPath::of(keys),
            "0 is not allowed: the duration must be greater than 0".to_string(),
        ));
    }
    Ok(())
}

/// Returns the signal name closest to `input` if it is a likely typo of
/// one. The `SIG` prefix is left out of the comparison, so that it does not
/// make short names such as BUS look near unrelated words.
fn closest_signal(input: &str) -> Option<&'static str> {
    let upper = input.trim().to_ascii_uppercase();
    let typed = upper.strip_prefix("SIG").unwrap_or(&upper);
    signal_names()
        .map(|name| {
            let short = name.strip_prefix("SIG").unwrap_or(name);
            (strsim::damerau_levenshtein(typed, short), short, name)
        })
        .filter(|&(distance, short, _)| distance <= crate::source::max_typo_distance(typed, short))
        .min_by_key(|&(distance, _, _)| distance)
        .map(|(_, _, name)| name)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Check {
    if labels.contains_key("") {
        return Err(ValidationError::at_key(
            FieldPath::of(&["labels"]).key(""),
            "label name must not be empty",
        ));
    }
    Ok(())
}
