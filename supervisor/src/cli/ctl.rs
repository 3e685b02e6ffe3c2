//! The command line of `supervisorctl`, shared by the binary and the
//! generator of its completions and man pages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueHint};
use corral_config::{paths, DurationValue, UnitError};

const LONG_ABOUT: &str = "\
Control supervisord, the corral job daemon, through its control socket.

Exit status: 0 when every listed job is RUNNING or an action succeeded; 1 \
when an action failed; 2 for invalid command-line usage; 3 from status when a listed job is in any other \
state and from pid when the job is not running; 4 for an unknown job name \
or when supervisord cannot be reached, does not respond within --timeout or \
is shutting down; \
5 from stop, restart and shutdown when a job stopped only by SIGKILL after \
its stop timeout; 141 without a message when the reader of standard output \
closed it, as a shell reports for a command killed by SIGPIPE.";

#[derive(Parser, Debug)]
#[command(
    name = "supervisorctl",
    version,
    about = "Control supervisord, the corral job daemon",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    /// Control socket of supervisord [default: $CORRAL_SUPERVISOR_SOCKET if
    /// not empty, else /run/corral/supervisor.sock]
    // The variable is read in `socket_path`, not through clap's `env`,
    // because clap lists an option set from the environment in the usage
    // line of a subcommand's error as if the option were required.
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,

    /// Limit of each request to supervisord: seconds (30) or with a unit
    /// (500ms, 30s, 2m); 0 waits without a limit. start, stop and restart
    /// wait past it for the job to settle once supervisord responded, and
    /// `top` and `tail -f` wait without a limit between requests
    #[arg(
        long,
        global = true,
        default_value = "30s",
        value_parser = parse_duration,
        value_hint = ValueHint::Other
    )]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

/// Environment variable that sets the control socket when `--socket` is
/// absent.
pub const SOCKET_ENV: &str = "CORRAL_SUPERVISOR_SOCKET";

impl Cli {
    /// Returns the control socket: `--socket`, else a non-empty
    /// [`SOCKET_ENV`], else `RUN_DIR/supervisor.sock`.
    pub fn socket_path(&self) -> PathBuf {
        resolve_socket(self.socket.as_deref(), std::env::var_os(SOCKET_ENV))
    }
}

fn resolve_socket(option: Option<&Path>, env_value: Option<OsString>) -> PathBuf {
    if let Some(path) = option {
        return path.to_path_buf();
    }
    match env_value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => Path::new(paths::RUN_DIR).join(paths::SOCKET_NAME),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the state of every job, or of the named ones. Exits 0 when all
    /// of them are RUNNING, 3 when any is not, 4 for an unknown name.
    Status {
        /// Job names, or `all` [default: all]
        names: Vec<String>,
        /// Print the API's JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Start jobs and wait until they are RUNNING or failed to start
    Start {
        /// Job names, or `all`
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop jobs and wait until their containers ended
    Stop {
        /// Job names, or `all`
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop jobs, then start them again
    Restart {
        /// Job names, or `all`
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to the main process of jobs; STOP and CONT pause and
    /// resume every process of the job
    Signal {
        /// Signal name or number: HUP, SIGUSR1, 15
        #[arg(value_parser = parse_signal_argument)]
        signal: String,
        /// Job names, or `all`
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print the host PID of PID 1 of a job's container (the job's command,
    /// or the minimal init with "init": true), or supervisord's PID without
    /// a name. Exits 3 when the job is not running.
    Pid {
        /// Job name, or none for supervisord's own PID
        name: Option<String>,
    },
    /// Print the end of a job's stdout (or stderr) log
    Tail {
        /// Job name
        name: String,
        /// Keep printing lines as the job writes them
        #[arg(short = 'f', long)]
        follow: bool,
        /// Read the stderr log instead of stdout
        #[arg(long)]
        stderr: bool,
        /// Number of lines to print from the end
        #[arg(
            short = 'n',
            long = "lines",
            default_value_t = 10,
            allow_negative_numbers = true,
            value_hint = ValueHint::Other
        )]
        lines: usize,
        /// Read logs below this directory without asking supervisord for the
        /// path (LOG_DIR/NAME/stdout.log)
        #[arg(long, value_hint = ValueHint::DirPath)]
        log_dir: Option<PathBuf>,
    },
    /// Re-scan the jobs directory and print what `update` would change
    Reread,
    /// Re-scan the jobs directory and apply the changes
    Update,
    /// Print the OCI config.json generated for a job
    Spec {
        /// Job name
        name: String,
    },
    /// Show live CPU, memory against its limit, network and block I/O and
    /// processes of every job, or of the named ones, refreshing
    #[command(visible_alias = "stats")]
    Top {
        /// Job names [default: every job]
        names: Vec<String>,
        /// Time between refreshes: seconds (2, 0.5) or with a unit (500ms,
        /// 2s, 1m)
        #[arg(
            short = 'd',
            long,
            default_value = "2s",
            value_parser = parse_interval,
            value_hint = ValueHint::Other
        )]
        interval: Duration,
        /// Print this many tables, then exit
        #[arg(
            short = 'n',
            long,
            allow_negative_numbers = true,
            value_hint = ValueHint::Other
        )]
        iterations: Option<u64>,
        /// Print one table and exit, as `docker stats --no-stream` does
        #[arg(long)]
        no_stream: bool,
    },
    /// Stop every job and then supervisord, and wait until it exited
    Shutdown {
        /// Return once supervisord accepted the request
        #[arg(long)]
        no_wait: bool,
    },
    /// Print a completion script for this command
    ///
    /// packaging/install.sh installs the bash, zsh and fish scripts below
    /// PREFIX/share, which is /usr/local/share by default. To install one
    /// by hand to the same place:
    ///
    ///   supervisorctl completions bash > /usr/local/share/bash-completion/completions/supervisorctl
    ///
    ///   supervisorctl completions zsh > /usr/local/share/zsh/site-functions/_supervisorctl
    ///
    ///   supervisorctl completions fish > /usr/local/share/fish/vendor_completions.d/supervisorctl.fish
    Completions {
        /// Shell to print the script for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Parses a duration as job files write it: a plain number of seconds
/// (`2`, `0.5`) or a number with an `ms`, `s`, `m` or `h` suffix (`500ms`,
/// `2s`, `1m`). clap prefixes the error with the option's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let with_unit = if is_digits(whole) && is_digits(fraction) {
        format!("{text}s")
    } else {
        text.to_string()
    };
    match DurationValue::parse(&with_unit) {
        Ok(value) => Ok(value.as_duration()),
        Err(UnitError::DurationOverflow { .. }) => Err(format!(
            "duration {text:?} is too long: the maximum is {}",
            DurationValue::MAX
        )),
        Err(_) => Err(format!(
            "invalid duration {text:?}: expected seconds (30, 0.5) or a number with an \
             ms, s, m or h suffix (500ms, 30s, 2m)"
        )),
    }
}

/// Checks the signal of `signal` with supervisord's own parser, so that a
/// bad name fails once as a usage error instead of once per job, and
/// keeps it as typed.
fn parse_signal_argument(text: &str) -> Result<String, String> {
    crate::signals::parse_signal(text)
        .map(|_| text.to_string())
        .map_err(|error| error.to_string())
}

/// Parses `--interval`: a duration of 100ms or more.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < Duration::from_millis(100) {
        return Err(format!("interval {text} is below the minimum of 100ms"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_tail_flags() {
        let cli =
            Cli::try_parse_from(["supervisorctl", "tail", "-f", "--stderr", "-n", "5", "web"])
                .unwrap();
        match cli.command {
            Command::Tail {
                name,
                follow,
                stderr,
                lines,
                ..
            } => {
                assert_eq!(name, "web");
                assert!(follow);
                assert!(stderr);
                assert_eq!(lines, 5);
            }
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn cli_parses_top_and_its_alias() {
        for command in ["top", "stats"] {
            let cli =
                Cli::try_parse_from(["supervisorctl", command, "-d", "500ms", "-n", "3", "web"])
                    .unwrap();
            match cli.command {
                Command::Top {
                    names,
                    interval,
                    iterations,
                    no_stream,
                } => {
                    assert_eq!(names, ["web"]);
                    assert_eq!(interval, Duration::from_millis(500));
                    assert_eq!(iterations, Some(3));
                    assert!(!no_stream);
                }
                other => panic!("parsed {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["supervisorctl", "top", "-d", "10ms"]).is_err());
        assert!(Cli::try_parse_from(["supervisorctl", "top", "-d", "0.01"]).is_err());
        assert!(Cli::try_parse_from(["supervisorctl", "top", "-d", "soon"]).is_err());
    }

    #[test]
    fn top_interval_accepts_job_file_durations() {
        for (text, expected) in [
            ("1", Duration::from_secs(1)),
            ("0.5", Duration::from_millis(500)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("1m", Duration::from_secs(60)),
        ] {
            let cli = Cli::try_parse_from(["supervisorctl", "top", "-d", text]).unwrap();
            match cli.command {
                Command::Top { interval, .. } => assert_eq!(interval, expected, "{text}"),
                other => panic!("parsed {other:?}"),
            }
        }
        for text in ["-1", "1x", "", "s"] {
            assert!(parse_duration(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn signal_is_checked_before_any_request() {
        let cli = Cli::try_parse_from(["supervisorctl", "signal", "usr1", "web"]).unwrap();
        match cli.command {
            Command::Signal { signal, names } => {
                assert_eq!(signal, "usr1");
                assert_eq!(names, ["web"]);
            }
            other => panic!("parsed {other:?}"),
        }
        for bad in ["NOPE", "0", "64", ""] {
            let error = Cli::try_parse_from(["supervisorctl", "signal", bad, "all"]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
            let text = error.to_string();
            assert!(text.contains("invalid signal"), "{bad:?}: {text}");
        }
    }

    #[test]
    fn timeout_error_names_option_and_forms() {
        let error = Cli::try_parse_from(["supervisorctl", "--timeout", "soon", "status"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--timeout"), "{error}");
        assert!(error.contains("\"soon\""), "{error}");
        assert!(error.contains("seconds (30, 0.5)"), "{error}");
        assert!(error.contains("500ms"), "{error}");
        assert!(!error.contains("JSON"), "{error}");

        let too_long = parse_duration("99999999999999999999").unwrap_err();
        assert!(too_long.contains("too long"), "{too_long}");
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn every_positional_has_help() {
        use clap::CommandFactory;

        let command = Cli::command();
        for subcommand in command.get_subcommands() {
            for argument in subcommand.get_positionals() {
                assert!(
                    argument.get_help().is_some(),
                    "{} {} has no help text",
                    subcommand.get_name(),
                    argument.get_id()
                );
            }
        }
    }

    #[test]
    fn negative_counts_are_invalid_values() {
        for args in [
            ["supervisorctl", "tail", "-n", "-1", "web"],
            ["supervisorctl", "top", "-n", "-1", "web"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
            let message = error.to_string();
            assert!(message.contains("invalid value '-1'"), "{message}");
            assert!(!message.contains("'-- -1'"), "{message}");
        }
    }

    #[test]
    fn long_help_lists_usage_exit_code() {
        assert!(
            LONG_ABOUT.contains("2 for invalid command-line usage"),
            "{LONG_ABOUT}"
        );
    }

    #[test]
    fn long_help_lists_closed_stdout_exit_code() {
        let code = crate::stdout::EXIT_STDOUT_CLOSED;
        assert!(
            LONG_ABOUT.contains(&format!("{code} without a message")),
            "{LONG_ABOUT}"
        );
    }

    #[test]
    fn socket_option_then_env_then_default() {
        let default = Path::new("/run/corral/supervisor.sock");
        let option = Path::new("/tmp/option.sock");
        let from_env = || Some(OsString::from("/tmp/env.sock"));
        assert_eq!(resolve_socket(Some(option), from_env()), option);
        assert_eq!(resolve_socket(None, from_env()), Path::new("/tmp/env.sock"));
        assert_eq!(resolve_socket(None, Some(OsString::new())), default);
        assert_eq!(resolve_socket(None, None), default);
    }

    #[test]
    fn socket_option_has_no_clap_env() {
        // clap shows an option that `env` set in the usage line of a
        // subcommand's error, `supervisorctl stop --socket <SOCKET>
        // <NAMES>...`, as if it were required.
        use clap::CommandFactory;

        let command = Cli::command();
        let socket = command
            .get_arguments()
            .find(|argument| argument.get_id() == "socket")
            .expect("--socket is defined");
        assert_eq!(socket.get_env(), None);
        let help = socket
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(help.contains(SOCKET_ENV), "{help}");
    }

    #[test]
    fn cli_requires_names_for_actions() {
        assert!(Cli::try_parse_from(["supervisorctl", "stop"]).is_err());
        assert!(Cli::try_parse_from(["supervisorctl", "signal", "HUP"]).is_err());
    }
}
