//! corral-monitor: runs one container's `corral shim`, writes its output to
//! the job's rotated log files and exits with the shim's status. supervisord
//! starts one per container; see `corral_supervisor::monitor`.

use clap::Parser;
use corral_supervisor::cli::monitor::Cli;
use corral_supervisor::logrotate::LogPermissions;
use corral_supervisor::monitor::{self, MonitorOptions};

fn main() {
    // supervisord may send a stop signal as soon as this process exists,
    // and its default action would end the monitor before the shim runs.
    let blocked = monitor::block_signals();
    // A session of its own keeps signals to supervisord's process group and
    // the end of supervisord's session away from the monitor and the shim.
    // supervisord cannot start one for it, because it spawns the monitor
    // with posix_spawn. A spawned child is not a process group leader, so
    // setsid succeeds unless the monitor was started some other way.
    let session = nix::unistd::setsid();
    let cli = Cli::parse();
    monitor::init_logging(cli.log_format, cli.job.clone(), cli.container_id.clone());
    if let Err(error) = session {
        monitor::warn(&format!("failed to start a session of its own: {error}"));
    }
    if let Err(error) = blocked {
        monitor::warn(&format!("{error}"));
    }
    if let Some(limit) = cli.open_files {
        if let Err(error) = corral_supervisor::daemon::limits::set_soft_limit(limit) {
            monitor::warn(&format!(
                "failed to set the open files limit to {limit}: {error}"
            ));
        }
    }
    let options = MonitorOptions {
        stdout_log: cli.stdout,
        stderr_log: cli.stderr,
        settings_file: cli.settings,
        command: cli.command,
        arg0: cli.arg0,
        fallback: cli.fallback,
        log_permissions: LogPermissions {
            group: cli.log_group,
        },
    };
    match monitor::run(&options) {
        Ok(exit) => monitor::exit_like(exit),
        Err(error) => {
            monitor::report_setup_error(&options.stderr_log, options.log_permissions, &error);
            std::process::exit(monitor::SETUP_FAILED);
        }
    }
}
