//! The `supervisorctl status` table and its exit code.

use std::borrow::Cow;

use corral_config::MAX_JOB_NAME_LEN;

use crate::api::JobView;
use crate::machine::JobState;

/// Minimum width of the name column, as supervisord lays it out.
pub const MIN_NAME_WIDTH: usize = 32;
/// Maximum width of the name column: the longest valid job name and one
/// space. Only invalid file names are longer, and the table cuts them.
pub const MAX_NAME_WIDTH: usize = MAX_JOB_NAME_LEN + 1;
/// Marks a name cut to fit [`MAX_NAME_WIDTH`].
const ELLIPSIS: char = '\u{2026}';
/// Width of the state column.
pub const STATE_WIDTH: usize = 10;

/// Exit code of `status` when every listed job is RUNNING.
pub const EXIT_ALL_RUNNING: i32 = 0;
/// Exit code of `status` when a listed job is in any other state, as the LSB
/// init script convention uses 3 for "not running".
pub const EXIT_NOT_RUNNING: i32 = 3;
/// Exit code for an unknown job name or an unreachable daemon.
pub const EXIT_UNKNOWN: i32 = 4;

/// Formats one line per job: the name padded to at least
/// [`MIN_NAME_WIDTH`] or the longest name plus one, the state padded to
/// [`STATE_WIDTH`], then the description. A name longer than
/// [`MAX_NAME_WIDTH`] minus one is cut and ends with an ellipsis, so one
/// long invalid file name does not widen every line.
pub fn format_table(jobs: &[JobView]) -> String {
    let names: Vec<Cow<'_, str>> = jobs.iter().map(|job| name_cell(&job.name)).collect();
    let longest = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0);
    let name_width = MIN_NAME_WIDTH.max(longest + 1);
    let mut table = String::new();
    for (job, name) in jobs.iter().zip(&names) {
        let line = format!(
            "{:<name_width$}{:<STATE_WIDTH$}{}",
            name,
            job.state.as_str(),
            job.description
        );
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// Returns `name`, or its start and an ellipsis in [`MAX_NAME_WIDTH`] minus
/// one characters when it is longer.
fn name_cell(name: &str) -> Cow<'_, str> {
    let limit = MAX_NAME_WIDTH - 1;
    if name.chars().count() <= limit {
        return Cow::Borrowed(name);
    }
    let mut cut: String = name.chars().take(limit - 1).collect();
    cut.push(ELLIPSIS);
    Cow::Owned(cut)
}

/// Returns [`EXIT_ALL_RUNNING`] when every job is RUNNING, else
/// [`EXIT_NOT_RUNNING`].
pub fn exit_code(jobs: &[JobView]) -> i32 {
    if jobs.iter().all(|job| job.state == JobState::Running) {
        EXIT_ALL_RUNNING
    } else {
        EXIT_NOT_RUNNING
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn job(name: &str, state: JobState, description: &str) -> JobView {
        JobView {
            name: name.to_string(),
            state,
            process_state: state,
            description: description.to_string(),
            pid: None,
            exit_status: None,
            signal: None,
            oom_killed: false,
            killed_after_timeout: None,
            exited_at: None,
            restarts: 0,
            oom_kills: 0,
            since: 0,
            container_id: None,
            file: PathBuf::from(format!("/etc/corral/jobs.d/{name}.json")),
            error: None,
            removing: false,
            paused: false,
            stdout_log: PathBuf::new(),
            stderr_log: PathBuf::new(),
        }
    }

    #[test]
    fn table_pads_like_supervisord() {
        let jobs = [
            job("web", JobState::Running, "pid 1234, uptime 0:12:03"),
            job(
                "worker",
                JobState::Exited,
                "exited 3 at 2026-12-04 10:00:01",
            ),
        ];
        let expected = format!(
            "{}{}\n{}{}\n",
            "web                             ",
            "RUNNING   pid 1234, uptime 0:12:03",
            "worker                          ",
            "EXITED    exited 3 at 2026-12-04 10:00:01"
        );
        assert_eq!(format_table(&jobs), expected);
    }

    #[test]
    fn table_widens_for_long_names() {
        let long = "a".repeat(40);
        let jobs = [
            job(&long, JobState::Stopping, "pid 9, stopping"),
            job("b", JobState::Stopped, "Not started"),
        ];
        let table = format_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], format!("{long} STOPPING  pid 9, stopping"));
        assert_eq!(
            lines[1],
            format!("b{}STOPPED   Not started", " ".repeat(40))
        );
    }

    #[test]
    fn table_caps_name_column() {
        let longest_valid = "v".repeat(63);
        let too_long = "x".repeat(200);
        let jobs = [
            job(&too_long, JobState::Invalid, "invalid job name"),
            job("web", JobState::Running, "pid 7, uptime 0:00:01"),
        ];
        let table = format_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        let cut = format!("{}\u{2026}", "x".repeat(62));
        assert_eq!(lines[0], format!("{cut} INVALID   invalid job name"));
        assert_eq!(
            lines[1],
            format!("web{}RUNNING   pid 7, uptime 0:00:01", " ".repeat(61))
        );

        let valid = format_table(&[job(&longest_valid, JobState::Stopped, "")]);
        assert_eq!(valid, format!("{longest_valid} STOPPED\n"));
    }

    #[test]
    fn table_cuts_names_by_character() {
        let name = "\u{fffd}".repeat(70);
        let table = format_table(&[job(&name, JobState::Invalid, "bad")]);
        let cut = format!("{}\u{2026}", "\u{fffd}".repeat(62));
        assert_eq!(table, format!("{cut} INVALID   bad\n"));
    }

    #[test]
    fn table_has_no_trailing_spaces() {
        let table = format_table(&[job("idle", JobState::Starting, "")]);
        assert_eq!(table, format!("idle{}STARTING\n", " ".repeat(28)));
    }

    #[test]
    fn exit_code_running_only() {
        let running = job("a", JobState::Running, "");
        assert_eq!(exit_code(std::slice::from_ref(&running)), EXIT_ALL_RUNNING);
        assert_eq!(exit_code(&[]), EXIT_ALL_RUNNING);
        for state in JobState::ALL {
            if state == JobState::Running {
                continue;
            }
            let other = job("b", state, "");
            assert_eq!(
                exit_code(&[running.clone(), other]),
                EXIT_NOT_RUNNING,
                "{state}"
            );
        }
    }
}
