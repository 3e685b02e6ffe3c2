//! The command line of `corral-monitor`, shared by the binary and the
//! generator of its man page.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::cli::daemon::LogFormat;

const LONG_ABOUT: &str = "\
Run a corral shim and write its output to rotated log files. supervisord \
starts one corral-monitor per container; it is not meant to be run by hand.

The monitor reads the shim's stdout and stderr through pipes and appends \
them to the log files, renaming a file to NAME.1 (and older ones up to \
NAME.KEEP) whenever the next write would take it above max_size. When the \
disk falls behind by 1 MiB of a stream, further output of that stream is \
dropped, and a notice in the log states how many bytes. SIGTERM, SIGINT, \
SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the shim, and \
SIGRTMIN+1 makes the monitor read the settings file again. The monitor \
exits with the shim's exit status, or is killed by the signal that killed \
the shim.";

#[derive(Parser, Debug)]
#[command(
    name = "corral-monitor",
    version,
    about = "Run a corral shim and write its output to rotated log files",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    /// Log file for the shim's stdout
    #[arg(long)]
    pub stdout: PathBuf,
    /// Log file for the shim's stderr
    #[arg(long)]
    pub stderr: PathBuf,
    /// JSON file with the rotation limits, {"max_size": BYTES, "keep": N}; read
    /// again on SIGRTMIN+1
    #[arg(long)]
    pub settings: PathBuf,
    /// Soft limit of open files for the shim and the container, which
    /// inherit it; supervisord passes the limit it started with
    #[arg(long, value_name = "N")]
    pub open_files: Option<u64>,
    /// Format of the monitor's own log lines on stderr, which is
    /// supervisord's stderr. supervisord passes its own --log-format
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Job name that each JSON log line carries in its `job` field
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Container id that each JSON log line carries in its `container_id`
    /// field
    #[arg(long, value_name = "ID")]
    pub container_id: Option<String>,
    /// GID of the group that may read the log files: files the monitor
    /// opens or creates get mode 0640 and that group, a directory it
    /// creates 0750 [default: root only, files 0600, directories 0700]
    #[arg(long, value_name = "GID")]
    pub log_group: Option<u32>,
    /// Program name (argument zero) of the shim in place of the program path after `--`, which
    /// ps shows and corral names its process after. supervisord passes the
    /// runtime's file name, because that path is a /proc/PID/fd/N path
    /// of supervisord
    #[arg(long, value_name = "NAME")]
    pub arg0: Option<OsString>,
    /// Program to run in place of the program after `--` when that one is
    /// not found (ENOENT), with the same arguments. supervisord passes its
    /// --runtime, because the /proc/PID/fd/N path after `--` is gone once
    /// supervisord has exited
    #[arg(long, value_name = "PATH")]
    pub fallback: Option<PathBuf>,
    /// The shim's command line, after `--`
    #[arg(required = true, last = true)]
    pub command: Vec<OsString>,
}
