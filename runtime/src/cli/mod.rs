//! The command line of `corral`, shared by the binary and the generator
//! of its completions and man pages.

pub mod image;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "corral", version, about = "Run containers from OCI bundles")]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/corral/containers")]
    pub root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of log lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (not supported).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Format of the runtime's log lines.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Output format of `ps` and `list`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write a default config.json into the bundle directory.
    Spec {
        /// Bundle directory to write config.json into.
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container and leave its process waiting for `start`.
    Create {
        /// Container ID.
        id: String,
        /// Bundle directory that contains config.json.
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Write the PID of the container's process to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the master of the process's terminal
        /// when config.json sets process.terminal.
        #[arg(long)]
        console_socket: Option<PathBuf>,
    },
    /// Start the process of a created container.
    Start {
        /// Container ID.
        id: String,
    },
    /// Print a container's OCI state as JSON.
    State {
        /// Container ID.
        id: String,
    },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        /// Container ID.
        id: String,
        /// Signal name (KILL or SIGKILL) or number [default: SIGTERM].
        signal: Option<String>,
        /// Signal every process in the container's cgroup.
        #[arg(long, short)]
        all: bool,
    },
    /// Remove a container and everything it owns.
    Delete {
        /// Container ID.
        id: String,
        /// Kill the container first if it is running.
        #[arg(long, short)]
        force: bool,
    },
    /// Create, start and wait for a container; exits with its status.
    Run {
        /// Container ID.
        id: String,
        /// Bundle directory that contains config.json.
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Write the PID of the container's process to this file.
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
        /// Container ID.
        id: String,
        /// Bundle directory that contains config.json.
        #[arg(long, short)]
        bundle: PathBuf,
        /// Write the exit record (status, signal, OOM kills) to this file.
        #[arg(long)]
        exit_file: PathBuf,
        /// Write the PID of the container's process to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Create this file, containing the signal's name, while the
        /// container's process is stopped by a signal.
        #[arg(long)]
        stopped_file: Option<PathBuf>,
    },
    /// Run another process inside a running container.
    Exec {
        /// Container ID.
        id: String,
        /// JSON file with an OCI process object to run.
        #[arg(long, short)]
        process: Option<PathBuf>,
        /// Give the process a terminal, sent to --console-socket.
        #[arg(long, short)]
        tty: bool,
        /// Return once the process runs instead of waiting for it.
        #[arg(long, short)]
        detach: bool,
        /// Set an environment variable, KEY=VALUE.
        #[arg(long, short)]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// UID[:GID] to run as.
        #[arg(long, short)]
        user: Option<String>,
        /// Write the PID of the new process to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the master of the terminal.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Command and arguments, when --process is not given.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause {
        /// Container ID.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container ID.
        id: String,
    },
    /// Change a container's resource limits.
    Update {
        /// Container ID.
        id: String,
        /// JSON file with OCI linux.resources ("-" reads stdin); flags override it.
        #[arg(long, short)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes or with a K, M or G suffix.
        #[arg(long)]
        memory: Option<String>,
        /// Memory plus swap limit.
        #[arg(long)]
        memory_swap: Option<String>,
        /// Memory soft limit.
        #[arg(long)]
        memory_reservation: Option<String>,
        /// CFS quota in microseconds per period (-1 for none).
        #[arg(long, allow_hyphen_values = true)]
        cpu_quota: Option<i64>,
        /// CFS period in microseconds.
        #[arg(long)]
        cpu_period: Option<u64>,
        /// Relative CPU shares (v1 scale; converted on cgroup v2).
        #[arg(long)]
        cpu_share: Option<u64>,
        /// CPUs the container may use, e.g. 0-2,4.
        #[arg(long)]
        cpuset_cpus: Option<String>,
        /// Memory nodes the container may use.
        #[arg(long)]
        cpuset_mems: Option<String>,
        /// Maximum number of tasks.
        #[arg(long)]
        pids_limit: Option<i64>,
        /// Block I/O weight, 10 to 1000.
        #[arg(long)]
        blkio_weight: Option<u16>,
    },
    /// Print resource statistics and OOM events as JSON lines.
    Events {
        /// Container ID.
        id: String,
        /// Print statistics once and exit.
        #[arg(long)]
        stats: bool,
        /// Seconds between statistics.
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
    /// Print the features this runtime supports, as JSON.
    Features,
    /// List the processes of a container.
    Ps {
        /// Container ID.
        id: String,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// List containers.
    List {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only the container ids.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Manage the image store: import, ls, inspect, rm, gc.
    Image(image::ImageArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_passes_clap_checks() {
        Cli::command().debug_assert();
    }

    /// Returns `command` and all its subcommands, hidden ones included.
    fn all_commands(command: &clap::Command) -> Vec<&clap::Command> {
        let mut commands = vec![command];
        for subcommand in command.get_subcommands() {
            commands.extend(all_commands(subcommand));
        }
        commands
    }

    #[test]
    fn every_argument_has_help() {
        let command = Cli::command();
        let mut missing = Vec::new();
        for subcommand in all_commands(&command) {
            for argument in subcommand.get_arguments() {
                if argument.is_hide_set() || argument.get_help().is_some() {
                    continue;
                }
                missing.push(format!("{} {}", subcommand.get_name(), argument.get_id()));
            }
        }
        assert!(
            missing.is_empty(),
            "arguments without help text: {missing:?}"
        );
    }

    #[test]
    fn shim_is_hidden() {
        let command = Cli::command();
        let shim = command.find_subcommand("shim").unwrap();
        assert!(shim.is_hide_set(), "shim belongs to supervisord, not users");
    }

    #[test]
    fn global_options_parse_after_verb() {
        let cli = Cli::try_parse_from(["corral", "state", "c1", "--root", "/tmp/r"]).unwrap();
        assert_eq!(cli.root, PathBuf::from("/tmp/r"));
        assert!(matches!(cli.command, Command::State { id } if id == "c1"));
    }

    #[test]
    fn image_verbs_parse() {
        let cli =
            Cli::try_parse_from(["corral", "image", "--store", "/s", "rm", "a", "b"]).unwrap();
        let Command::Image(args) = cli.command else {
            panic!("expected the image verb");
        };
        assert_eq!(args.store, PathBuf::from("/s"));
        assert!(matches!(args.command, image::ImageCommand::Rm { names } if names == ["a", "b"]));
    }
}
