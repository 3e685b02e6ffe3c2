//! OCI lifecycle hooks: each is a program run with the container's state
//! as JSON on its stdin, killed when it outlives its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

/// The points of the container's life at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// Deprecated; run with createRuntime, before it.
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookPoint {
    fn name(self) -> &'static str {
        match self {
            HookPoint::Prestart => "prestart",
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        }
    }

    fn select(self, hooks: &Hooks) -> Option<&Vec<Hook>> {
        #[allow(
            deprecated,
            reason = "prestart hooks are still part of the runtime-spec"
        )]
        let prestart = hooks.prestart();
        match self {
            HookPoint::Prestart => prestart.as_ref(),
            HookPoint::CreateRuntime => hooks.create_runtime().as_ref(),
            HookPoint::CreateContainer => hooks.create_container().as_ref(),
            HookPoint::StartContainer => hooks.start_container().as_ref(),
            HookPoint::Poststart => hooks.poststart().as_ref(),
            HookPoint::Poststop => hooks.poststop().as_ref(),
        }
    }
}

/// A hook that could not run or failed.
#[derive(Debug, thiserror::Error)]
#[error("{point} hook {path} failed: {reason}")]
pub struct HookError {
    pub point: &'static str,
    pub path: String,
    pub reason: String,
}

/// Returns whether the spec has hooks at `point`.
pub fn has_hooks(spec: &Spec, point: HookPoint) -> bool {
    spec.hooks()
        .as_ref()
        .and_then(|hooks| point.select(hooks))
        .is_some_and(|list| !list.is_empty())
}

/// Runs the spec's hooks at `point` in order, stopping at the first failure.
pub fn run_hooks(spec: &Spec, point: HookPoint, state_json: &str) -> Result<(), HookError> {
    let Some(list) = spec.hooks().as_ref().and_then(|hooks| point.select(hooks)) else {
        return Ok(());
    };
    for hook in list {
        run_hook(hook, point, state_json)?;
    }
    Ok(())
}

fn run_hook(hook: &Hook, point: HookPoint, state_json: &str) -> Result<(), HookError> {
    let failure = |reason: String| HookError {
        point: point.name(),
        path: hook.path().display().to_string(),
        reason,
    };
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args() {
        // args[0] is the program's argv[0], as in execve.
        if let Some((first, rest)) = args.split_first() {
            command.arg0(first).args(rest);
        }
    }
    command.env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| failure(format!("cannot execute: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = hook
        .timeout()
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(seconds as u64));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(failure(format!("exited with {status}"))),
            Ok(None) => {}
            Err(error) => return Err(failure(format!("cannot wait: {error}"))),
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failure(format!("timed out after {} s", limit.as_secs())));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
