//! corral-monitor: runs one container's `corral shim`, writes its output to
//! the job's rotated log files and exits with the shim's status. supervisord
//! starts one per container; see `corral_supervisor::monitor`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use corral_supervisor::monitor::{self, MonitorOptions};

#[derive(Parser, Debug)]
#[command(
    name = "corral-monitor",
    version,
    about = "Run a corral shim and write its output to rotated log files"
)]
struct Cli {
    /// Log file for the shim's stdout
    #[arg(long)]
    stdout: PathBuf,
    /// Log file for the shim's stderr
    #[arg(long)]
    stderr: PathBuf,
    /// JSON file with the rotation limits, {"max_size": BYTES, "keep": N}; read
    /// again on SIGRTMIN+1
    #[arg(long)]
    settings: PathBuf,
    /// The shim's command line, after `--`
    #[arg(required = true, last = true)]
    command: Vec<OsString>,
}

fn main() {
    let cli = Cli::parse();
    let options = MonitorOptions {
        stdout_log: cli.stdout,
        stderr_log: cli.stderr,
        settings_file: cli.settings,
        command: cli.command,
    };
    match monitor::run(&options) {
        Ok(exit) => monitor::exit_like(exit),
        Err(error) => {
            monitor::report_setup_error(&options.stderr_log, &error);
            std::process::exit(monitor::SETUP_FAILED);
        }
    }
}
