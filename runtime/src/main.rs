//! `corral`, an OCI runtime with runc's command-line contract.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use corral_runtime::container::run::{run, RunOptions};
use corral_runtime::container::{self, CreateOptions};

/// Exit status of `run` and `shim` when the runtime itself failed before
/// the container's process ran, distinct from any status of the process.
const RUNTIME_FAILURE: u8 = 125;

#[derive(Parser)]
#[command(name = "corral", version, about = "Run containers from OCI bundles")]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/corral/containers")]
    root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of log lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (not supported).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container and leave its process waiting for `start`.
    Create {
        id: String,
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the console's pseudo-terminal (not supported yet).
        #[arg(long)]
        console_socket: Option<PathBuf>,
    },
    /// Start the process of a created container.
    Start { id: String },
    /// Print a container's OCI state as JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process in the container's cgroup.
        #[arg(long, short)]
        all: bool,
    },
    /// Remove a container and everything it owns.
    Delete {
        id: String,
        /// Kill the container first if it is running.
        #[arg(long, short)]
        force: bool,
    },
    /// Create, start and wait for a container; exits with its status.
    Run {
        id: String,
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Return once the container runs instead of waiting for it.
        #[arg(long, short)]
        detach: bool,
        /// Write the exit record (status, signal, OOM kills) to this file.
        #[arg(long)]
        exit_file: Option<PathBuf>,
    },
    /// Run a container for supervisord: as `run`, with the exit record
    /// written to --exit-file.
    #[command(hide = true)]
    Shim {
        id: String,
        #[arg(long, short)]
        bundle: PathBuf,
        #[arg(long)]
        exit_file: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// List the processes of a container.
    Ps {
        id: String,
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// List containers.
    List {
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the container ids.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(&cli) {
        eprintln!("corral: {error:#}");
        return ExitCode::FAILURE;
    }
    let runs_container = matches!(cli.command, Command::Run { .. } | Command::Shim { .. });
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("corral: {error:#}");
            if runs_container {
                ExitCode::from(RUNTIME_FAILURE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(cli: &Cli) -> Result<()> {
    let level = if cli.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
        LogFormat::Text => builder.with_ansi(false).with_writer(writer).init(),
        LogFormat::Json => builder.json().with_writer(writer).init(),
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: corral manages cgroups itself, so omit the flag");
    }
    let root = cli.root;
    match cli.command {
        Command::Spec { bundle } => write_default_spec(&bundle)?,
        Command::Create {
            id,
            bundle,
            pid_file,
            console_socket,
        } => {
            if console_socket.is_some() {
                bail!(
                    "--console-socket is not supported yet: run the container without a terminal"
                );
            }
            let options = CreateOptions {
                root,
                id,
                bundle,
                pid_file,
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
            };
            if detach {
                let state = container::create(&create)?;
                container::start(&create.root, &state.id)?;
                return Ok(ExitCode::SUCCESS);
            }
            let record = run(&RunOptions { create, exit_file })?;
            return Ok(ExitCode::from(record.status.clamp(0, 255) as u8));
        }
        Command::Shim {
            id,
            bundle,
            exit_file,
            pid_file,
        } => {
            let create = CreateOptions {
                root,
                id,
                bundle,
                pid_file,
            };
            let record = run(&RunOptions {
                create,
                exit_file: Some(exit_file),
            })?;
            return Ok(ExitCode::from(record.status.clamp(0, 255) as u8));
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
