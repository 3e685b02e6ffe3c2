//! supervisorctl: the control CLI of supervisord.
//!
//! Blocking HTTP requests over the unix socket, without an async runtime,
//! so `status` returns within a few milliseconds. Actions on several jobs
//! send their names in one `/v1/batch` request ([`batch`]).

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::{CommandFactory, Parser};
use corral_config::DurationValue;
use corral_supervisor::api::{ChangeKind, JobList, JobView, Message, ReloadReport, StatsList};
use corral_supervisor::batch::{self, job_path, Action};
use corral_supervisor::cli::completion_script;
use corral_supervisor::cli::ctl::{Cli, Command};
use corral_supervisor::client::{Client, ClientError};
use corral_supervisor::machine::JobState;
use corral_supervisor::status::{self, EXIT_NOT_RUNNING, EXIT_UNKNOWN};
use corral_supervisor::stdout::{self, is_stdout_closed, Stdout, EXIT_STDOUT_CLOSED};
use corral_supervisor::{tail, top};

/// Exit code for a failed action other than an unknown job.
const EXIT_FAILED: i32 = 1;
/// Exit code for invalid command-line usage, the one clap exits with.
const EXIT_USAGE: i32 = 2;
/// Exit code for a stop, restart or shutdown that ended a job's run only by SIGKILL
/// after its stop timeout, when no action failed otherwise.
const EXIT_KILLED: i32 = 5;

/// Returns the more severe of two exit codes: an unknown job over a failed
/// action, a failed action over a stop by SIGKILL, any code over 0.
fn worse(code: i32, other: i32) -> i32 {
    let rank = |code: i32| match code {
        0 => 0,
        EXIT_KILLED => 1,
        EXIT_FAILED => 2,
        _ => 3,
    };
    if rank(other) > rank(code) {
        other
    } else {
        code
    }
}

/// An unknown job name, printed without the `supervisorctl:` prefix so
/// that it reads as in `status`, `start` and `stop`.
#[derive(Debug, thiserror::Error)]
enum UnknownJob {
    #[error("{name}: ERROR (no such job)")]
    NotFound { name: String },
    #[error(
        "{name}: ERROR (no log directory {}: the job does not exist or has never started)",
        dir.display()
    )]
    NoLogDirectory { name: String, dir: PathBuf },
}

/// A name that is not a valid job name, given where supervisorctl builds a
/// path from it. It counts as invalid usage.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct InvalidName(tail::LogPathError);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_failure(&error),
    };
    let socket = cli.socket_path();
    let timeout = (!cli.timeout.is_zero()).then_some(cli.timeout);
    let client = Client::new(socket).with_timeout(timeout);
    match run(&client, cli.command) {
        Ok(code) => exit_code(code),
        // Like a command killed by SIGPIPE, without a message.
        Err(error) if error.chain().any(is_stdout_closed) => exit_code(EXIT_STDOUT_CLOSED),
        Err(error) if error.is::<InvalidName>() => {
            eprintln!("supervisorctl: {error}");
            exit_code(EXIT_USAGE)
        }
        Err(error) if error.is::<UnknownJob>() => {
            eprintln!("{error}");
            exit_code(EXIT_UNKNOWN)
        }
        Err(error) => {
            eprintln!("supervisorctl: {error:#}");
            let unreachable = error
                .downcast_ref::<ClientError>()
                .is_some_and(|error| error.is_unreachable() || error.status() == Some(404));
            exit_code(if unreachable {
                EXIT_UNKNOWN
            } else {
                EXIT_FAILED
            })
        }
    }
}

/// Prints clap's usage error, help or version and returns the exit code:
/// clap's own, or the one of a closed standard output when help or the
/// version found its reader gone.
fn parse_failure(error: &clap::Error) -> ExitCode {
    let printed = error.print();
    if !error.use_stderr()
        && printed.is_err_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return exit_code(EXIT_STDOUT_CLOSED);
    }
    exit_code(error.exit_code())
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Status { names, json } => status_command(client, &names, json),
        Command::Start { names } => act_on_jobs(client, Action::Start, &names),
        Command::Stop { names } => act_on_jobs(client, Action::Stop, &names),
        Command::Restart { names } => act_on_jobs(client, Action::Restart, &names),
        Command::Signal { signal, names } => act_on_jobs(client, Action::Signal(signal), &names),
        Command::Pid { name } => pid_command(client, name.as_deref()),
        Command::Tail {
            name,
            follow,
            stderr,
            lines,
            log_dir,
        } => tail_command(client, &name, follow, stderr, lines, log_dir),
        Command::Reread => reload_command(client, "/v1/reread", false),
        Command::Update => reload_command(client, "/v1/update", true),
        Command::Spec { name } => {
            let spec: serde_json::Value = get_job(client, &name, "/spec")?;
            writeln!(Stdout::lock(), "{}", serde_json::to_string_pretty(&spec)?)?;
            Ok(0)
        }
        Command::Top {
            names,
            interval,
            iterations,
            no_stream,
        } => {
            let iterations = if no_stream { Some(1) } else { iterations };
            // `all` means every job here too, as with start or stop.
            let names = if names.iter().any(|name| name == "all") {
                Vec::new()
            } else {
                names
            };
            top_command(client, &names, interval, iterations)
        }
        Command::Completions { shell } => {
            // The same command definition as the packaged scripts, so the
            // output equals packaging/completions.
            let mut command = Cli::command().disable_help_subcommand(true);
            Stdout::lock().write_all(&completion_script(shell, &mut command))?;
            Ok(0)
        }
        Command::Shutdown { no_wait: true } => {
            let reply: Message = client.post("/v1/shutdown", None)?;
            writeln!(Stdout::lock(), "{}", reply.message)?;
            Ok(0)
        }
        Command::Shutdown { no_wait: false } => shutdown_command(client),
    }
}

/// Stops every job and supervisord, names the jobs whose stop needed
/// SIGKILL, and returns once supervisord has exited.
fn shutdown_command(client: &Client) -> Result<i32> {
    let info: serde_json::Value = client.get("/v1/info")?;
    let pid = info["pid"].as_i64().and_then(|pid| i32::try_from(pid).ok());
    let sent = SystemTime::now();
    // The reply comes once every job has stopped, which their stop
    // timeouts bound.
    let waiting = client.clone().with_timeout(None);
    let reply: serde_json::Value = waiting.post("/v1/shutdown?wait=true", None)?;
    let mut code = 0;
    let mut out = Stdout::lock();
    // A supervisord that does not know `wait` replies with a message.
    if let Ok(list) = serde_json::from_value::<JobList>(reply) {
        for job in &list.jobs {
            if let Some(timeout) = killed_by_stop(&Action::Stop, job, sent) {
                writeln!(
                    out,
                    "{}: stopped by SIGKILL after {} timeout",
                    job.name,
                    DurationValue(timeout)
                )?;
                code = EXIT_KILLED;
            }
        }
    }
    if let Some(pid) = pid {
        wait_for_exit(pid);
    }
    writeln!(out, "Shut down")?;
    Ok(code)
}

/// Waits until process `pid` has exited, so that a new supervisord can
/// start on the same directories right after `shutdown`. The jobs' stop
/// timeouts bound the wait. An exited process that its parent has not
/// reaped yet counts as exited, and a supervisord in another PID namespace
/// looks exited at once.
fn wait_for_exit(pid: i32) {
    let exited = || {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        matches!(state, Some("Z" | "X"))
    };
    while !exited() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_command(client: &Client, names: &[String], json: bool) -> Result<i32> {
    let list: JobList = client.get("/v1/jobs")?;
    let mut unknown = Vec::new();
    let jobs: Vec<JobView> = if names.is_empty() || names.iter().any(|name| name == "all") {
        // Names given next to `all` add no job, but an unknown one is
        // still reported.
        for name in names.iter().filter(|name| *name != "all") {
            if !list.jobs.iter().any(|job| &job.name == name) {
                unknown.push(name.clone());
            }
        }
        list.jobs
    } else {
        let mut selected = Vec::new();
        for name in names {
            match list.jobs.iter().find(|job| &job.name == name) {
                Some(job) => selected.push(job.clone()),
                None => unknown.push(name.clone()),
            }
        }
        selected
    };

    let mut out = Stdout::lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&jobs)?)?;
    } else {
        write!(out, "{}", status::format_table(&jobs))?;
    }
    for name in &unknown {
        eprintln!("{name}: ERROR (no such job)");
    }
    if !unknown.is_empty() {
        return Ok(EXIT_UNKNOWN);
    }
    Ok(status::exit_code(&jobs))
}

/// Runs one action on each job in parallel, as stopping jobs one after the
/// other would add their stop timeouts up.
fn act_on_jobs(client: &Client, action: Action, names: &[String]) -> Result<i32> {
    // The first request, limited by --timeout, shows that supervisord
    // responds. Start, stop and restart then wait as long as the job takes
    // to settle, which its start_seconds and stop timeout bound.
    let targets: Vec<String> = if names.iter().any(|name| name == "all") {
        let list: JobList = client.get("/v1/jobs")?;
        let mut targets: Vec<String> = list
            .jobs
            .into_iter()
            // A job whose file turned invalid keeps its last valid
            // version, which `all` covers like any other job. A job whose
            // file never was valid cannot start, so start and restart name
            // it with its error instead of passing over it.
            .filter(|job| {
                let never_valid = job.process_state == JobState::Invalid
                    && matches!(action, Action::Start | Action::Restart);
                (action.applies_to(job.process_state) || never_valid) && !job.removing
            })
            .map(|job| job.name)
            .collect();
        // A name given next to `all` is acted on as if given alone, so an
        // unknown one gets its error and exit code instead of vanishing.
        let mut included: std::collections::HashSet<String> = targets.iter().cloned().collect();
        for name in names.iter().filter(|name| *name != "all") {
            if included.insert(name.clone()) {
                targets.push(name.clone());
            }
        }
        targets
    } else {
        client.get::<serde_json::Value>("/v1/info")?;
        names.to_vec()
    };
    let waiting = client.clone().with_timeout(None);
    let client = match action {
        Action::Signal(_) => client,
        Action::Start | Action::Stop | Action::Restart => &waiting,
    };
    let outcomes = batch::act_on_jobs(client, &action, &targets);

    let mut code = 0;
    let mut out = Stdout::lock();
    for outcome in outcomes {
        let name = outcome.name;
        match outcome.result {
            Ok(job) if action_failed(&action, &job) => {
                writeln!(out, "{name}: ERROR ({} {})", job.state, job.description)?;
                code = worse(code, EXIT_FAILED);
            }
            Ok(job) => {
                let killed = killed_by_stop(&action, &job, outcome.sent);
                writeln!(out, "{name}: {}", action_result(&action, killed))?;
                if killed.is_some() {
                    code = worse(code, EXIT_KILLED);
                }
            }
            // An unknown name reads as in status.
            Err(error) if error.status() == Some(404) => {
                writeln!(out, "{name}: ERROR (no such job)")?;
                code = worse(code, EXIT_UNKNOWN);
            }
            Err(error) => {
                writeln!(out, "{name}: ERROR ({error})")?;
                let unknown = error.is_unreachable();
                code = worse(code, if unknown { EXIT_UNKNOWN } else { EXIT_FAILED });
            }
        }
    }
    Ok(code)
}

/// Returns the stop timeout after which SIGKILL ended the run that the
/// stop or restart request sent at `sent` stopped. A run that ended before
/// `sent` belongs to an earlier request.
fn killed_by_stop(action: &Action, job: &JobView, sent: SystemTime) -> Option<Duration> {
    if !matches!(action, Action::Stop | Action::Restart) {
        return None;
    }
    let sent = sent.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let timeout = job.killed_after_timeout?;
    if job.exited_at? < sent {
        return None;
    }
    Duration::try_from_secs_f64(timeout).ok()
}

/// Returns the text printed after a job's name for a successful action. A
/// stop that needed SIGKILL names it, as the status does.
fn action_result(action: &Action, killed: Option<Duration>) -> String {
    match (action, killed) {
        (Action::Stop, Some(timeout)) => {
            format!(
                "stopped by SIGKILL after {} timeout",
                DurationValue(timeout)
            )
        }
        (Action::Restart, Some(timeout)) => format!(
            "restarted; the stop needed SIGKILL after {} timeout",
            DurationValue(timeout)
        ),
        _ => action.past_tense().to_string(),
    }
}

/// Returns whether the action failed: a start or restart that settled in
/// any state but RUNNING.
fn action_failed(action: &Action, job: &JobView) -> bool {
    match action {
        Action::Start | Action::Restart => job.process_state != JobState::Running,
        Action::Stop | Action::Signal(_) => false,
    }
}

fn pid_command(client: &Client, name: Option<&str>) -> Result<i32> {
    let Some(name) = name else {
        let info: serde_json::Value = client.get("/v1/info")?;
        writeln!(Stdout::lock(), "{}", info["pid"])?;
        return Ok(0);
    };
    let job: JobView = get_job(client, name, "")?;
    match job.pid {
        Some(pid) => {
            writeln!(Stdout::lock(), "{pid}")?;
            Ok(0)
        }
        None => {
            eprintln!("{name}: not running ({})", job.state);
            Ok(EXIT_NOT_RUNNING)
        }
    }
}

fn tail_command(
    client: &Client,
    name: &str,
    follow: bool,
    stderr: bool,
    lines: usize,
    log_dir: Option<PathBuf>,
) -> Result<i32> {
    // tail follows one job, so `all` is invalid usage, not an unknown job.
    // A job whose name is invalid, such as `../x`, never runs and has no
    // log, so that name is invalid usage too, with or without --log-dir.
    if !corral_config::is_valid_job_name(name) || corral_config::is_reserved_job_name(name) {
        return Err(InvalidName(tail::LogPathError::InvalidName {
            name: name.to_string(),
        })
        .into());
    }
    let file_name = if stderr { "stderr.log" } else { "stdout.log" };
    let path = match log_dir {
        Some(dir) => match tail::job_log_path(&dir, name, file_name) {
            Ok(path) => path,
            Err(tail::LogPathError::NotFound { dir, .. }) => {
                return Err(UnknownJob::NoLogDirectory {
                    name: name.to_string(),
                    dir,
                }
                .into());
            }
            Err(error @ tail::LogPathError::InvalidName { .. }) => {
                return Err(InvalidName(error).into());
            }
            Err(error) => return Err(anyhow::Error::new(error).context(name.to_string())),
        },
        None => {
            let job: JobView = get_job(client, name, "")?;
            if stderr {
                job.stderr_log
            } else {
                job.stdout_log
            }
        }
    };
    let mut out = Stdout::lock();
    let offset = tail::print_last_lines(&path, lines, &mut out)
        .map_err(|error| log_error(name, &path, error, "read"))?;
    if follow {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let mut notices = tail::SkipNotices::default();
        let mut report_skip = |skipped: tail::Skipped| {
            let Some(skipped) = notices.add(skipped, std::time::Instant::now()) else {
                return;
            };
            let prefix = format!("supervisorctl: {name}: skipped");
            let rest = format!("of {file} that were rotated away before they were read");
            match skipped {
                tail::Skipped::Exactly(bytes) => eprintln!("{prefix} {bytes} bytes {rest}"),
                tail::Skipped::AtLeast(bytes) => eprintln!(
                    "{prefix} at least {bytes} bytes {rest}; the exact amount is unknown \
                     because rotation may have deleted more unread"
                ),
            }
        };
        let hangup = stdout::hangup_watch();
        tail::follow(
            &path,
            offset,
            &mut out,
            hangup.as_ref().map(AsFd::as_fd),
            &mut report_skip,
        )
        .map_err(|error| log_error(name, &path, error, "follow"))?;
    }
    Ok(0)
}

/// Returns the error of reading or following the log of job `name` at
/// `path`. A permission error names the path and what gives access.
fn log_error(name: &str, path: &Path, error: io::Error, operation: &str) -> anyhow::Error {
    if error.kind() == io::ErrorKind::PermissionDenied {
        let message = tail::permission_denied_message(path);
        return anyhow::Error::new(error).context(format!("{name}: {message}"));
    }
    anyhow::Error::new(error).context(format!("failed to {operation} log {}", path.display()))
}

/// Prints a table every `interval`, or `iterations` of them. On a terminal
/// each table replaces the last, as `top` does; otherwise they follow each
/// other, separated by a blank line.
fn top_command(
    client: &Client,
    names: &[String],
    interval: Duration,
    iterations: Option<u64>,
) -> Result<i32> {
    let select = |list: StatsList| StatsList {
        jobs: list
            .jobs
            .into_iter()
            .filter(|job| names.is_empty() || names.contains(&job.name))
            .collect(),
        host_memory_bytes: list.host_memory_bytes,
    };
    let first: StatsList = client.get("/v1/stats")?;
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| !first.jobs.iter().any(|job| &job.name == *name))
        .collect();
    if !unknown.is_empty() {
        for name in unknown {
            eprintln!("{name}: ERROR (no such job)");
        }
        return Ok(EXIT_UNKNOWN);
    }

    let terminal = io::stdout().is_terminal();
    let hangup = stdout::hangup_watch();
    let mut previous = select(first);
    let mut printed = 0u64;
    loop {
        // Ends at once, not at the next table, when the reader has gone.
        stdout::wait_readable(None, hangup.as_ref().map(AsFd::as_fd), Some(interval))?;
        let current = select(client.get("/v1/stats")?);
        let table = top::format_table(Some(&previous), &current);
        let mut out = Stdout::lock();
        if terminal {
            // Home the cursor and clear the screen, so the table redraws in
            // place.
            write!(out, "\x1b[H\x1b[2J")?;
        } else if printed > 0 {
            writeln!(out)?;
        }
        write!(out, "{table}")?;
        out.flush()?;
        printed += 1;
        if iterations.is_some_and(|count| printed >= count) {
            return Ok(0);
        }
        previous = current;
    }
}

fn reload_command(client: &Client, path: &str, applied: bool) -> Result<i32> {
    let report: ReloadReport = client.post(path, None)?;
    let mut code = 0;
    let mut out = Stdout::lock();
    if let Some(error) = &report.dir_error {
        eprintln!("supervisorctl: failed to read the jobs directory: {error}");
        code = EXIT_FAILED;
    }
    if report.changes.is_empty() {
        if report.dir_error.is_none() {
            writeln!(out, "No config updates to jobs")?;
        }
        return Ok(code);
    }
    for change in &report.changes {
        let changed = if change.fields.is_empty() {
            "changed".to_string()
        } else {
            format!("changed {}", change.fields.join(", "))
        };
        let what = match (change.kind, applied) {
            (ChangeKind::Added, false) => "available".to_string(),
            (ChangeKind::Added, true) => "added".to_string(),
            (ChangeKind::Removed, false) => "disappeared".to_string(),
            (ChangeKind::Removed, true) => "removed".to_string(),
            (ChangeKind::Changed, false) if change.restart => {
                format!("{changed}; needs a restart")
            }
            (ChangeKind::Changed, true) if change.restart => format!("{changed}; restarted"),
            (ChangeKind::Changed, _) if change.next_start => {
                format!("{changed}; applies at the next start")
            }
            (ChangeKind::Changed, _) => changed,
            (ChangeKind::Invalid, _) => {
                code = EXIT_FAILED;
                format!(
                    "invalid: {}",
                    change.error.as_deref().unwrap_or("unknown error")
                )
            }
        };
        writeln!(out, "{}: {what}", change.name)?;
    }
    Ok(code)
}

/// Sends `GET /v1/jobs/NAME` plus `suffix` and decodes the reply. A 404
/// becomes [`UnknownJob::NotFound`].
fn get_job<T: serde::de::DeserializeOwned>(client: &Client, name: &str, suffix: &str) -> Result<T> {
    client.get(&job_path(name, suffix)).map_err(|error| {
        if error.status() == Some(404) {
            UnknownJob::NotFound {
                name: name.to_string(),
            }
            .into()
        } else {
            anyhow::Error::from(error)
        }
    })
}
