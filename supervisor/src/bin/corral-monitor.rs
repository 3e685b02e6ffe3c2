//! corral-monitor: runs one container's `corral shim`, writes its output to
//! the job's rotated log files and exits with the shim's status. supervisord
//! starts one per container; see `corral_supervisor::monitor`.

use clap::Parser;
use corral_supervisor::cli::monitor::Cli;
use corral_supervisor::monitor::{self, MonitorOptions};

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
