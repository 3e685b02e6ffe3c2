//! The spec's `linux.seccomp` compiled to BPF with seccompiler.
//!
//! seccompiler gives a filter one action for matching syscalls and one for
//! the rest, while OCI gives each syscall rule its own action. The profile
//! becomes several filters: a first one with the default action for every
//! syscall no rule matches, then one per other action. The kernel runs every
//! installed filter and keeps the most restrictive result, and for equal
//! actions the filter installed last, so each rule's own action wins.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};

/// An error compiling or installing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp is not supported on architecture {arch}")]
    UnsupportedArch { arch: &'static str },
    #[error("seccomp action {action} of {syscalls} is not supported")]
    UnsupportedAction { action: String, syscalls: String },
    #[error("failed to compile the seccomp profile: {message}")]
    Compile { message: String },
    #[error("failed to install the seccomp filter: {message}")]
    Install { message: String },
}

fn native_arch() -> Result<TargetArch, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        arch => Err(SeccompError::UnsupportedArch { arch }),
    }
}

fn action_json(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    syscalls: &str,
) -> Result<Value, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => json!({"errno": errno.unwrap_or(libc::EPERM as u32)}),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({"trace": errno.unwrap_or(0)}),
        other => {
            return Err(SeccompError::UnsupportedAction {
                action: format!("{other:?}"),
                syscalls: syscalls.to_string(),
            })
        }
    })
}

fn operator_json(operator: LinuxSeccompOperator) -> Value {
    match operator {
        LinuxSeccompOperator::ScmpCmpNe => json!("ne"),
        LinuxSeccompOperator::ScmpCmpLt => json!("lt"),
        LinuxSeccompOperator::ScmpCmpLe => json!("le"),
        LinuxSeccompOperator::ScmpCmpEq | LinuxSeccompOperator::ScmpCmpMaskedEq => json!("eq"),
        LinuxSeccompOperator::ScmpCmpGe => json!("ge"),
        LinuxSeccompOperator::ScmpCmpGt => json!("gt"),
    }
}

/// Returns the names among `names` that seccompiler can compile on this
/// architecture. Profiles list syscalls of many kernels and architectures,
/// and unknown ones are skipped, as libseccomp does.
///
/// Every seccompiler compile first builds its table of all syscall names,
/// which costs more than the rules. Probing the 65 names of the default
/// profile one by one added 7 ms of CPU to each container start of a debug
/// build (20 ms in all, measured with perf stat on x86_64) and 8 s under
/// qemu's TCG. So one filter probes all names. seccompiler 0.5 stops at the
/// first unknown name and puts it in its error message, so that name is
/// dropped and the rest probed again: one compile plus one per unknown
/// name. If the message names none of the candidates, each name is probed
/// alone.
fn known_syscalls<'a>(
    arch: TargetArch,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let mut candidates: BTreeSet<&str> = names.into_iter().collect();
    while !candidates.is_empty() {
        let message = match compile_probe(arch, &candidates) {
            Ok(()) => break,
            Err(message) => message,
        };
        let reported = unknown_syscall_in(&message).and_then(|name| candidates.take(name));
        if reported.is_none() {
            candidates.retain(|name| compile_probe(arch, &BTreeSet::from([*name])).is_ok());
            break;
        }
    }
    candidates.into_iter().map(str::to_string).collect()
}

/// Compiles one filter that matches every syscall in `names`, and returns
/// seccompiler's error message on failure.
fn compile_probe(arch: TargetArch, names: &BTreeSet<&str>) -> Result<(), String> {
    let rules: Vec<Value> = names.iter().map(|name| json!({"syscall": name})).collect();
    let probe = json!({"probe": {"mismatch_action": "allow", "match_action": "trap",
                                  "filter": rules}});
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch)
        .map(drop)
        .map_err(|error| error.to_string())
}

/// Returns the syscall name in seccompiler's error for an unknown name
/// ("... Invalid syscall name: NAME for given arch: ...").
fn unknown_syscall_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("Invalid syscall name: ")?;
    let (name, _) = rest.split_once(" for given arch")?;
    Some(name)
}

/// Compiles the profile into filters, in the order they must be installed.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = native_arch()?;
    let default = profile.default_action();
    let default_errno = profile.default_errno_ret();

    let rules = profile.syscalls().as_deref().unwrap_or_default();
    let known = known_syscalls(
        arch,
        rules
            .iter()
            .flat_map(|rule| rule.names().iter().map(String::as_str)),
    );

    // Rules by action (as its JSON), keeping the order of first appearance.
    let mut by_action: Vec<(Value, Vec<Value>)> = Vec::new();
    let mut every_rule: Vec<Value> = Vec::new();
    for rule in rules {
        let names: Vec<&String> = rule
            .names()
            .iter()
            .filter(|name| known.contains(name.as_str()))
            .collect();
        if names.is_empty() {
            continue;
        }
        let label = rule.names().join(",");
        let action = action_json(rule.action(), rule.errno_ret(), &label)?;
        let args: Vec<Value> = rule
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|arg| {
                // libseccomp's MASKED_EQ compares (arg & value) with
                // valueTwo; seccompiler takes the mask in the operator.
                let (op, compared) = match arg.op() {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => (
                        json!({"masked_eq": arg.value()}),
                        arg.value_two().unwrap_or(0),
                    ),
                    other => (operator_json(other), arg.value()),
                };
                json!({"index": arg.index(), "type": "qword", "op": op, "val": compared})
            })
            .collect();
        for name in names {
            let entry = if args.is_empty() {
                json!({"syscall": name})
            } else {
                json!({"syscall": name, "args": args})
            };
            every_rule.push(entry.clone());
            match by_action
                .iter_mut()
                .find(|(existing, _)| *existing == action)
            {
                Some((_, rules)) => rules.push(entry),
                None => by_action.push((action.clone(), vec![entry])),
            }
        }
    }

    let default_json = action_json(default, default_errno, "the default action")?;
    let mut filters: BTreeMap<String, Value> = BTreeMap::new();
    let mut order = Vec::new();
    if default_json != json!("allow") {
        filters.insert(
            "f000".to_string(),
            json!({"mismatch_action": default_json, "match_action": "allow", "filter": every_rule}),
        );
        order.push("f000".to_string());
    }
    for (index, (action, rules)) in by_action.into_iter().enumerate() {
        if action == json!("allow") {
            continue;
        }
        let name = format!("f{:03}", index + 1);
        filters.insert(
            name.clone(),
            json!({"mismatch_action": "allow", "match_action": action, "filter": rules}),
        );
        order.push(name);
    }
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    let document = Value::Object(filters.into_iter().collect()).to_string();
    let mut compiled =
        seccompiler::compile_from_json(document.as_bytes(), arch).map_err(|error| {
            SeccompError::Compile {
                message: error.to_string(),
            }
        })?;
    Ok(order
        .iter()
        .filter_map(|name| compiled.remove(name))
        .collect())
}

/// Installs the compiled filters on the calling thread, first to last.
///
/// seccompiler's own `apply_filter` always sets no_new_privs first, which
/// would ignore a process's `noNewPrivileges: false`. The filters go in
/// through seccomp(2) directly instead, so the caller decides: without
/// no_new_privs the kernel requires CAP_SYS_ADMIN.
pub fn install(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    // seccompiler's sock_filter is the kernel's struct sock_filter.
    const _: () = assert!(
        std::mem::size_of::<seccompiler::sock_filter>() == std::mem::size_of::<libc::sock_filter>()
    );
    for filter in filters {
        let len = u16::try_from(filter.len())
            .ok()
            .filter(|len| *len > 0)
            .ok_or_else(|| SeccompError::Install {
                message: format!("a filter of {} instructions cannot be loaded", filter.len()),
            })?;
        let program = libc::sock_fprog {
            len,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points to `len` instructions of `filter`, which
        // outlives the call; the kernel copies them and writes nothing back.
        let result = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        };
        if result != 0 {
            return Err(SeccompError::Install {
                message: std::io::Error::last_os_error().to_string(),
            });
        }
    }
    Ok(())
}

/// Names of the syscalls a profile lists that this architecture lacks.
pub fn unknown_syscalls(profile: &LinuxSeccomp) -> BTreeSet<String> {
    let Ok(arch) = native_arch() else {
        return BTreeSet::new();
    };
    let names: BTreeSet<&str> = profile
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| rule.names().iter().map(String::as_str))
        .collect();
    let known = known_syscalls(arch, names.iter().copied());
    names
        .into_iter()
        .filter(|name| !known.contains(*name))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> LinuxSeccomp {
        serde_json::from_str(text).expect("valid seccomp JSON")
    }

    #[test]
    fn compile_splits_filters_by_action() {
        let filters = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["unshare", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
    }

    #[test]
    fn known_syscalls_drops_every_unknown_name() {
        let arch = native_arch().unwrap();
        let known = known_syscalls(
            arch,
            [
                "read",
                "no_such_syscall",
                "mkdirat",
                "another_missing",
                "write",
            ],
        );
        assert_eq!(
            known,
            BTreeSet::from(["mkdirat", "read", "write"].map(String::from))
        );
        assert!(known_syscalls(arch, ["no_such_syscall"]).is_empty());
        assert!(known_syscalls(arch, []).is_empty());
    }

    #[test]
    fn unknown_name_read_from_seccompiler_error() {
        // The batch probe reads the unknown name from this message. With
        // another wording it still works, but probes each name alone.
        let arch = native_arch().unwrap();
        let message = compile_probe(arch, &BTreeSet::from(["read", "no_such_syscall"]))
            .expect_err("an unknown name fails the probe");
        assert_eq!(unknown_syscall_in(&message), Some("no_such_syscall"));
    }

    #[test]
    fn unknown_syscalls_of_profile() {
        let unknown = unknown_syscalls(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["no_such_syscall", "other_missing"], "action": "SCMP_ACT_LOG"}]}"#,
        ));
        assert_eq!(
            unknown,
            BTreeSet::from(["no_such_syscall", "other_missing"].map(String::from))
        );
    }
}
