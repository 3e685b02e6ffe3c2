//! supervisord: runs the jobs of a jobs directory in corral containers,
//! restarts them by their policy and serves the control API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use corral_runtime::memory::StackCacheError;
use corral_supervisor::cli::daemon::{Cli, LogFormat};
use corral_supervisor::daemon::{self, DaemonConfig};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// Time after which an idle thread of tokio's blocking pool exits.
const BLOCKING_THREAD_IDLE: Duration = Duration::from_secs(1);

fn main() {
    corral_runtime::memory::configure_allocator();
    let cli = Cli::parse();
    let stack_cache = corral_runtime::memory::turn_off_stack_cache();
    init_logging(cli.log_format);
    match stack_cache {
        Ok(()) => {}
        Err(error @ StackCacheError::TunablesSet) => tracing::debug!(%error),
        Err(error) => tracing::warn!(
            error = format!("{:#}", anyhow::Error::from(error)),
            "thread stacks stay cached"
        ),
    }
    daemon::limits::raise_open_files_limit();
    let format = cli.log_format;
    if let Err(error) = run(cli) {
        // Both go to stderr, so the chain is printed once: as a JSON event
        // where stderr carries JSON lines, as a plain line otherwise.
        match format {
            LogFormat::Json => tracing::error!(error = format!("{error:#}"), "supervisord failed"),
            LogFormat::Text => eprintln!("supervisord: {error:#}"),
        }
        std::process::exit(1);
    }
}

fn init_logging(format: LogFormat) {
    let mut filter =
        corral_runtime::logfilter::from_env("supervisord", "RUST_LOG", LevelFilter::INFO);
    // hyper warns without any detail for each control connection that sent
    // no request head in time. supervisord logs those at debug with the
    // error, so hyper's own lines show only when RUST_LOG names hyper.
    if !filter.iter().any(|(target, _)| target.starts_with("hyper")) {
        filter = filter.with_target("hyper", LevelFilter::ERROR);
    }
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.finish().with(filter).init(),
        LogFormat::Json => builder.json().finish().with(filter).init(),
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = match cli.runtime {
        Some(path) => program_path(path, "--runtime")?,
        None => beside_or_on_path("corral"),
    };
    let monitor = match cli.monitor {
        Some(path) => program_path(path, "--monitor")?,
        None => beside_or_on_path("corral-monitor"),
    };
    let socket_group = cli.socket_group.as_deref().map(resolve_group).transpose()?;
    let config = DaemonConfig {
        jobs_dir: absolute(cli.jobs_dir, "--jobs-dir")?,
        run_dir: absolute(cli.run_dir, "--run-dir")?,
        data_dir: absolute(cli.data_dir, "--data-dir")?,
        log_dir: absolute(cli.log_dir, "--log-dir")?,
        cgroup_parent: cli.cgroup_parent,
        runtime,
        runtime_exec: None,
        monitor,
        live_restore: cli.live_restore,
        socket_group,
        max_connections: cli.max_connections,
        log_format: cli.log_format,
    };
    // One thread runs every task: the supervisor task handles one event at
    // a time anyway, and the API and the watchers only wait for it. Blocking
    // work (launches, cgroup kills, stats reads) goes to tokio's blocking
    // pool, whose idle threads exit after BLOCKING_THREAD_IDLE instead of
    // tokio's 10 s, so the stacks of a burst of launches go back soon.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_THREAD_IDLE)
        .build()
        .context("failed to start the tokio runtime")?;
    tokio.block_on(daemon::run(config))?;
    Ok(())
}

/// Returns `path`, given by `flag`, relative to the current directory when
/// it is relative. The runtime and the monitors run in other directories,
/// and container bundles record these paths, so every one is absolute.
fn absolute(path: PathBuf, flag: &str) -> Result<PathBuf> {
    std::path::absolute(&path)
        .with_context(|| format!("failed to make {flag} {} absolute", path.display()))
}

/// Returns the program `path` given by `flag`: a bare name stays a name to
/// look up on PATH, any other path becomes absolute.
fn program_path(path: PathBuf, flag: &str) -> Result<PathBuf> {
    if path.components().count() == 1 && path.is_relative() {
        return Ok(path);
    }
    absolute(path, flag)
}

/// Largest GID that `--socket-group` takes: 4294967295 is `(gid_t)-1`,
/// which chown(2) takes to mean "leave the group unchanged".
const MAX_GID: u32 = u32::MAX - 1;

/// Returns the GID of a group given by number or by name.
fn resolve_group(group: &str) -> Result<u32> {
    if !group.is_empty() && group.bytes().all(|byte| byte.is_ascii_digit()) {
        return match group.parse::<u32>() {
            Ok(gid) if gid <= MAX_GID => Ok(gid),
            _ => anyhow::bail!(
                "invalid GID {group} for --socket-group: out of range, the maximum is {MAX_GID}"
            ),
        };
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(entry)) => Ok(entry.gid.as_raw()),
        Ok(None) => {
            anyhow::bail!("unknown group {group:?} for --socket-group: create it or pass a number")
        }
        Err(error) => Err(error)
            .with_context(|| format!("failed to look up group {group:?} for --socket-group")),
    }
}

/// Returns `name` in the directory of this executable when it exists
/// there, so that a build tree or an install prefix uses its own binaries.
/// Otherwise returns `name`, to be looked up on PATH.
fn beside_or_on_path(name: &str) -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    match beside {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_group_numbers() {
        assert_eq!(resolve_group("0").unwrap(), 0);
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        assert_eq!(resolve_group("4294967294").unwrap(), MAX_GID);
        for out_of_range in ["4294967295", "99999999999"] {
            let error = resolve_group(out_of_range).unwrap_err().to_string();
            assert_eq!(
                error,
                format!(
                    "invalid GID {out_of_range} for --socket-group: out of range, the maximum \
                     is 4294967294"
                )
            );
        }
    }

    #[test]
    fn resolve_group_unknown_name() {
        let error = resolve_group("corral-no-such-group")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "unknown group \"corral-no-such-group\" for --socket-group: create it or pass a number"
        );
    }
}
