//! The command line of `supervisord`, shared by the binary and the
//! generator of its completions and man page.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use corral_config::paths;

/// Format of supervisord's own log lines.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event
    Text,
    /// One JSON object per line
    Json,
}

impl LogFormat {
    /// Returns the value of `--log-format` that selects this format.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

const LONG_ABOUT: &str = "\
The corral job daemon. supervisord runs each job of the jobs directory in \
its own corral container, restarts jobs by their restart policy, keeps \
their logs through one corral-monitor process per container, and serves \
the control API that supervisorctl uses on RUN_DIR/supervisor.sock.

supervisord reloads job files by itself when they change; SIGHUP and \
`supervisorctl update` reload them too. SIGTERM, SIGINT and SIGQUIT stop \
every job and then supervisord, or with --live-restore end supervisord at \
once and leave the jobs to the next supervisord, which adopts them. \
SIGUSR1, SIGUSR2 and SIGALRM are logged and ignored.

Cgroups of the jobs are created below supervisord's own cgroup, which must \
be delegated to it (systemd's Delegate=yes).";

#[derive(Parser, Debug)]
#[command(
    name = "supervisord",
    version,
    about = "The corral job daemon",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    /// Directory of job files (NAME.json, drop-ins in NAME.json.d/)
    #[arg(long, default_value = paths::JOBS_DIR)]
    pub jobs_dir: PathBuf,
    /// Directory of the control socket, runtime state, exit records and pid files
    #[arg(long, default_value = paths::RUN_DIR)]
    pub run_dir: PathBuf,
    /// Directory of container bundles and overlay directories
    #[arg(long, default_value = paths::DATA_DIR)]
    pub data_dir: PathBuf,
    /// Directory of job logs, one subdirectory per job
    #[arg(long, default_value = paths::LOG_DIR)]
    pub log_dir: PathBuf,
    /// Cgroup, relative to supervisord's own, that contains the containers' cgroups
    #[arg(long, default_value = "corral")]
    pub cgroup_parent: String,
    /// The corral runtime binary [default: corral beside supervisord, else on PATH]
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// The per-container monitor binary [default: corral-monitor beside
    /// supervisord, else on PATH]
    #[arg(long)]
    pub monitor: Option<PathBuf>,
    /// Exit at once on SIGTERM, SIGINT and SIGQUIT and leave every job running, for
    /// the next supervisord to adopt (`supervisorctl shutdown` still stops
    /// every job first); the systemd unit sets it, with KillMode=process
    #[arg(long)]
    pub live_restore: bool,
    /// Group, by name or number, whose members may use the control socket:
    /// the socket becomes mode 0660 and the run directory 0710, both owned
    /// by that group [default: root only, mode 0600]
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Maximum number of open control socket connections. A connection
    /// above it gets a 503 reply and is closed
    #[arg(
        long,
        value_name = "COUNT",
        default_value_t = crate::daemon::DEFAULT_MAX_CONNECTIONS,
        value_parser = parse_max_connections
    )]
    pub max_connections: usize,
    /// Format of supervisord's own log on stderr; RUST_LOG sets the level
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Parses `--max-connections`: a whole number of 1 or more. clap prefixes
/// the error with the option and the value.
fn parse_max_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err(
            "expected a whole number of 1 or more, because 0 would reject every connection"
                .to_string(),
        ),
        Ok(count) => Ok(count),
        Err(_) => Err("expected a whole number of 1 or more".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_connections_default_and_bounds() {
        let cli = Cli::try_parse_from(["supervisord"]).unwrap();
        assert_eq!(cli.max_connections, crate::daemon::DEFAULT_MAX_CONNECTIONS);
        let cli = Cli::try_parse_from(["supervisord", "--max-connections", "2"]).unwrap();
        assert_eq!(cli.max_connections, 2);
        for text in ["0", "-1", "many", ""] {
            let error = Cli::try_parse_from(["supervisord", "--max-connections", text]);
            assert!(error.is_err(), "{text:?} parsed");
        }
    }
}
