//! supervisord: runs the jobs of a jobs directory in corral containers,
//! restarts them by their policy and serves the control API.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use corral_config::paths;
use corral_supervisor::daemon::{self, DaemonConfig};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(name = "supervisord", version, about = "The corral job daemon")]
struct Cli {
    /// Directory of job files (NAME.json, drop-ins in NAME.json.d/)
    #[arg(long, default_value = paths::JOBS_DIR)]
    jobs_dir: PathBuf,
    /// Directory of the control socket, runtime state, exit records and pid files
    #[arg(long, default_value = paths::RUN_DIR)]
    run_dir: PathBuf,
    /// Directory of container bundles and overlay directories
    #[arg(long, default_value = paths::DATA_DIR)]
    data_dir: PathBuf,
    /// Directory of job logs, one subdirectory per job
    #[arg(long, default_value = paths::LOG_DIR)]
    log_dir: PathBuf,
    /// Cgroup, relative to supervisord's own, that contains the containers' cgroups
    #[arg(long, default_value = "corral")]
    cgroup_parent: String,
    /// The corral runtime binary [default: corral beside supervisord, else on PATH]
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The per-container monitor binary [default: corral-monitor beside
    /// supervisord, else on PATH]
    #[arg(long)]
    monitor: Option<PathBuf>,
    /// Format of supervisord's own log on stderr; RUST_LOG sets the level
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Err(error) = run(cli) {
        tracing::error!(error = format!("{error:#}"), "supervisord failed");
        eprintln!("supervisord: {error:#}");
        std::process::exit(1);
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = cli.runtime.unwrap_or_else(|| beside_or_on_path("corral"));
    let monitor = cli
        .monitor
        .unwrap_or_else(|| beside_or_on_path("corral-monitor"));
    let config = DaemonConfig {
        jobs_dir: cli.jobs_dir,
        run_dir: cli.run_dir,
        data_dir: cli.data_dir,
        log_dir: cli.log_dir,
        cgroup_parent: cli.cgroup_parent,
        runtime,
        monitor,
    };
    let tokio = tokio::runtime::Runtime::new().context("failed to start the tokio runtime")?;
    tokio.block_on(daemon::run(config))?;
    Ok(())
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
