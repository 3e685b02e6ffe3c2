//! `corral`, an OCI runtime with runc's command-line contract.

mod image_cli;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use corral_runtime::cli::{Cli, Command, ListFormat, LogFormat};
use corral_runtime::container::exec::ExecOptions;
use corral_runtime::container::run::{run, RunOptions};
use corral_runtime::container::{self, CreateOptions};
use oci_spec::runtime::LinuxResources;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// Exit status of `run` and `shim` when the runtime itself failed before
/// the container's process ran, distinct from any status of the process.
const RUNTIME_FAILURE: u8 = 125;

/// Verbs that start processes inside a container, which must run from a
/// read-only mount of the binary (see [`corral_runtime::selfexe`]).
const PROCESS_VERBS: [&str; 4] = ["create", "run", "shim", "exec"];

fn main() -> ExitCode {
    // The first of the two executions ends here, before clap builds its
    // parser. clap selects a verb only when an argument equals its name, so
    // this test matches every invocation of those verbs, and a few others
    // (a container named "run") that then pay for one needless execve.
    if names_process_verb(std::env::args_os().skip(1)) && !corral_runtime::selfexe::is_protected() {
        // Returns only when the re-execution failed.
        let error = corral_runtime::selfexe::reexec_read_only();
        eprintln!(
            "corral: warning: running without write protection of the runtime binary: \
             re-executing from a read-only mount failed: {error}"
        );
    }
    corral_runtime::selfexe::name_process_after_argv0();
    let cli = Cli::parse();
    if let Err(error) = init_logging(&cli) {
        eprintln!("corral: {error:#}");
        return ExitCode::FAILURE;
    }
    let runs_container = matches!(cli.command, Command::Run { .. } | Command::Shim { .. });
    let logs_to_file = cli.log.is_some();
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            // Clients such as containerd read the error from the log file;
            // stderr gets it once either way.
            if logs_to_file {
                tracing::error!("{error:#}");
            }
            eprintln!("corral: {error:#}");
            if runs_container {
                ExitCode::from(RUNTIME_FAILURE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Returns whether any argument is the name of a verb in [`PROCESS_VERBS`].
fn names_process_verb(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.any(|arg| PROCESS_VERBS.iter().any(|verb| arg == *verb))
}

fn init_logging(cli: &Cli) -> Result<()> {
    let level = if cli.debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let filter = corral_runtime::logfilter::from_env("corral", "CORRAL_LOG", level);
    let builder = tracing_subscriber::fmt();
    let writer: Box<dyn Fn() -> Box<dyn Write> + Send + Sync> = match &cli.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("failed to open log file {}", path.display()))?;
            Box::new(move || {
                Box::new(
                    file.try_clone()
                        .expect("log file descriptor can be duplicated"),
                )
            })
        }
        None => Box::new(|| Box::new(std::io::stderr())),
    };
    match cli.log_format {
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(writer)
            .finish()
            .with(filter)
            .init(),
        LogFormat::Json => builder
            .json()
            .with_writer(writer)
            .finish()
            .with(filter)
            .init(),
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: corral manages cgroups itself, so omit the flag");
    }
    let root = cli.root;
    match cli.command {
        Command::Image(args) => image_cli::run(args, &root)?,
        Command::Spec { bundle } => write_default_spec(&bundle)?,
        Command::Create {
            id,
            bundle,
            pid_file,
            console_socket,
        } => {
            let options = CreateOptions {
                root,
                id,
                bundle,
                pid_file,
                console_socket,
            };
            container::create(&options)?;
        }
        Command::Start { id } => {
            container::start(&root, &id)?;
        }
        Command::State { id } => {
            let state = container::load(&root, &id)?;
            println!("{}", serde_json::to_string_pretty(&state.oci_view())?);
        }
        Command::Kill { id, signal, all } => {
            let signal = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            container::kill(&root, &id, signal, all)?;
        }
        Command::Delete { id, force } => container::delete(&root, &id, force)?,
        Command::Run {
            id,
            bundle,
            pid_file,
            detach,
            exit_file,
        } => {
            let create = CreateOptions {
                root,
                id,
                bundle,
                pid_file,
                console_socket: None,
            };
            if detach {
                let state = container::create(&create)?;
                container::start(&create.root, &state.id)?;
                return Ok(ExitCode::SUCCESS);
            }
            let record = run(&RunOptions {
                create,
                exit_file,
                stopped_file: None,
            })?;
            return Ok(ExitCode::from(record.status.clamp(0, 255) as u8));
        }
        Command::Shim {
            id,
            bundle,
            exit_file,
            pid_file,
            stopped_file,
        } => {
            let create = CreateOptions {
                root,
                id,
                bundle,
                pid_file,
                console_socket: None,
            };
            let record = run(&RunOptions {
                create,
                exit_file: Some(exit_file),
                stopped_file,
            })?;
            return Ok(ExitCode::from(record.status.clamp(0, 255) as u8));
        }
        Command::Exec {
            id,
            process,
            tty,
            detach,
            env,
            cwd,
            user,
            pid_file,
            console_socket,
            command,
        } => {
            if tty && console_socket.is_none() {
                bail!("exec --tty needs --console-socket to hand the terminal to");
            }
            let options = ExecOptions {
                tty,
                console_socket,
                process_file: process,
                args: command,
                env,
                cwd,
                user,
                detach,
                pid_file,
            };
            let status = container::exec::exec(&root, &id, &options)?;
            return Ok(ExitCode::from(status.clamp(0, 255) as u8));
        }
        Command::Pause { id } => container::pause(&root, &id)?,
        Command::Resume { id } => container::resume(&root, &id)?,
        Command::Update {
            id,
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_quota,
            cpu_period,
            cpu_share,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight,
        } => {
            let mut value = match resources {
                Some(path) => read_json(&path)?,
                None => serde_json::json!({}),
            };
            let size = |text: &str| -> Result<u64> {
                Ok(corral_config::ByteSize::parse(text)
                    .with_context(|| format!("invalid size {text:?}"))?
                    .bytes())
            };
            if let Some(memory) = memory {
                value["memory"]["limit"] = size(&memory)?.into();
            }
            if let Some(swap) = memory_swap {
                value["memory"]["swap"] = size(&swap)?.into();
            }
            if let Some(reservation) = memory_reservation {
                value["memory"]["reservation"] = size(&reservation)?.into();
            }
            if let Some(quota) = cpu_quota {
                value["cpu"]["quota"] = quota.into();
            }
            if let Some(period) = cpu_period {
                value["cpu"]["period"] = period.into();
            }
            if let Some(shares) = cpu_share {
                value["cpu"]["shares"] = shares.into();
            }
            if let Some(cpus) = cpuset_cpus {
                value["cpu"]["cpus"] = cpus.into();
            }
            if let Some(mems) = cpuset_mems {
                value["cpu"]["mems"] = mems.into();
            }
            if let Some(limit) = pids_limit {
                value["pids"]["limit"] = limit.into();
            }
            if let Some(weight) = blkio_weight {
                value["blockIO"]["weight"] = weight.into();
            }
            let resources: LinuxResources = serde_json::from_value(value)
                .context("invalid resources: expected OCI linux.resources")?;
            container::update(&root, &id, &resources)?;
        }
        Command::Events {
            id,
            stats,
            interval,
        } => {
            let interval = std::time::Duration::from_secs(interval.max(1));
            container::events::events(&root, &id, !stats, interval, |event| {
                println!("{event}");
            })?;
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&container::events::features())?
            );
        }
        Command::Ps { id, format } => {
            let state = container::load(&root, &id)?;
            let pids = container::processes(&state)?;
            if format == ListFormat::Json {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID");
                for pid in pids {
                    println!("{pid}");
                }
            }
        }
        Command::List { format, quiet } => {
            let states = container::list(&root)?;
            if quiet {
                for state in &states {
                    println!("{}", state.id);
                }
            } else if format == ListFormat::Json {
                let views: Vec<_> = states.iter().map(|s| s.oci_view()).collect();
                println!("{}", serde_json::to_string(&views)?);
            } else {
                println!("{:<24} {:<8} {:<9} BUNDLE", "ID", "PID", "STATUS");
                for state in &states {
                    let pid = state.pid.map(|p| p.to_string()).unwrap_or_default();
                    let status = serde_json::to_value(state.status)?;
                    let status = status.as_str().unwrap_or_default();
                    println!(
                        "{:<24} {:<8} {:<9} {}",
                        state.id,
                        pid,
                        status,
                        state.bundle.display()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a JSON file, or stdin for `-`.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("failed to read stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("invalid JSON in {}", path.display()))
}

/// Accepts `TERM`, `SIGTERM`, `sigterm` or `15`.
fn parse_signal(text: &str) -> Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return Ok(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    let signal: nix::sys::signal::Signal = name
        .parse()
        .with_context(|| format!("invalid signal {text:?}: use a name such as TERM or a number"))?;
    Ok(signal as i32)
}

fn write_default_spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists: remove it first", path.display());
    }
    let spec = serde_json::json!({
        "ociVersion": corral_runtime::state::OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": corral_runtime::job::DEFAULT_CAPABILITIES,
                "effective": corral_runtime::job::DEFAULT_CAPABILITIES,
                "permitted": corral_runtime::job::DEFAULT_CAPABILITIES,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "corral",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": corral_runtime::job::MASKED_PATHS,
            "readonlyPaths": corral_runtime::job::READONLY_PATHS
        }
    });
    let body = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, body + "\n")
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command line that clap parses into a process-starting verb
    /// must be caught by the raw scan that decides the re-execution.
    #[test]
    fn process_verbs_found_before_parsing() {
        let lines: [&[&str]; 9] = [
            &["corral", "run", "c1"],
            &["corral", "--root", "/tmp/r", "run", "--bundle", "/b", "c1"],
            &[
                "corral",
                "--root=/tmp/r",
                "--debug",
                "create",
                "-b",
                "/b",
                "c1",
            ],
            &[
                "corral",
                "--log",
                "/l",
                "--log-format",
                "json",
                "shim",
                "c1",
                "--bundle",
                "/b",
                "--exit-file",
                "/e",
            ],
            &["corral", "exec", "c1", "--", "sh", "-c", "true"],
            &["corral", "exec", "-p", "/p.json", "c1"],
            &["corral", "state", "run"],
            &["corral", "list"],
            &["corral", "delete", "--force", "exec"],
        ];
        for line in lines {
            let cli = Cli::try_parse_from(line).expect("command line parses");
            let starts = matches!(
                cli.command,
                Command::Create { .. }
                    | Command::Run { .. }
                    | Command::Shim { .. }
                    | Command::Exec { .. }
            );
            let found = names_process_verb(line.iter().skip(1).map(std::ffi::OsString::from));
            if starts {
                assert!(found, "{line:?} starts processes but the scan missed it");
            }
        }
        let quiet = ["corral", "--root", "/tmp/r", "state", "c1"];
        assert!(!names_process_verb(
            quiet.iter().skip(1).map(std::ffi::OsString::from)
        ));
    }
}
