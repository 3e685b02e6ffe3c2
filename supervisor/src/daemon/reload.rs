//! Re-scanning the jobs directory: which jobs are new, changed, invalid or
//! gone, and whether a change needs the running container restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_config::{ConfigError, JobSpec, JOB_NAME_RULE};

use corral_runtime::job::JobSpecError;

use crate::api::{ChangeKind, InvalidJob, JobChange, ReloadReport};
use crate::daemon::error_chain;
use crate::daemon::job::{AfterStop, Job};
use crate::machine::JobState;

/// One job file as the scan found it.
#[derive(Debug, Clone)]
pub struct ScannedJob {
    pub name: String,
    pub file: PathBuf,
    pub spec: Result<Arc<JobSpec>, InvalidJob>,
}

/// Everything a scan of the jobs directory found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub jobs: Vec<ScannedJob>,
    /// The error that kept the directory from being listed. Jobs are never
    /// removed on the strength of such a scan.
    pub dir_error: Option<String>,
}

/// Loads every job file of `jobs_dir` with its drop-ins. A job is invalid
/// when its user name does not resolve in its root, looked up in the image
/// store under `data_dir` for a stored image.
pub fn scan(jobs_dir: &Path, data_dir: &Path) -> Scan {
    let result = corral_config::load_jobs_dir(jobs_dir);
    let jobs = result
        .jobs
        .into_iter()
        .map(|(name, loaded)| match loaded {
            Ok(job) => {
                let spec = match unknown_user(&job.spec, &job.file, data_dir) {
                    Some(invalid) => Err(invalid),
                    None => Ok(Arc::new(job.spec)),
                };
                ScannedJob {
                    name,
                    file: job.file,
                    spec,
                }
            }
            Err(error) => ScannedJob {
                name: name.clone(),
                file: error.file().to_path_buf(),
                spec: Err(invalid_job(&error)),
            },
        })
        .collect();
    Scan {
        jobs,
        dir_error: result.dir_error.map(|error| error.to_string()),
    }
}

/// Returns the error of a job whose user name does not resolve in the root
/// the job will see. Image errors are left to the start, which reports them
/// again, because an image may be imported after the job file is written.
fn unknown_user(spec: &JobSpec, file: &Path, data_dir: &Path) -> Option<InvalidJob> {
    let error = match corral_runtime::job::resolve_job_user(spec, data_dir) {
        Err(error @ JobSpecError::User { .. }) => error,
        _ => return None,
    };
    let message = error_chain(&error);
    let field = spec.user.is_some().then(|| "user".to_string());
    // The message starts by naming the field, so the text leaves out the
    // `field: ` prefix of other job file errors.
    let text = format!("{}: {message}", file.display());
    Some(InvalidJob {
        file: file.to_path_buf(),
        line: None,
        column: None,
        field,
        message,
        text,
    })
}

/// Splits a config error into the API's fields. The message is the
/// error's text after the `file:line:column: field: ` prefix, except for
/// an invalid file name: its message leaves out the name, which can be
/// long and is the job's name.
pub fn invalid_job(error: &ConfigError) -> InvalidJob {
    let text = error.to_string();
    if let ConfigError::InvalidName { file, .. } = error {
        return InvalidJob {
            file: file.clone(),
            line: None,
            column: None,
            field: None,
            message: format!("invalid job name: {JOB_NAME_RULE}"),
            text,
        };
    }
    let file = error.file().to_path_buf();
    let mut prefix = file.display().to_string();
    if let (Some(line), Some(column)) = (error.line(), error.column()) {
        prefix.push_str(&format!(":{line}:{column}"));
    }
    prefix.push_str(": ");
    let mut message = text.strip_prefix(&prefix).unwrap_or(&text);
    let field = error.field().filter(|field| !field.is_empty());
    if let Some(field) = field {
        message = message
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(message);
    }
    InvalidJob {
        file,
        line: error.line().map(|line| line as u64),
        column: error.column().map(|column| column as u64),
        field: field.map(str::to_string),
        message: message.to_string(),
        text,
    }
}

/// One change to apply.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A job file supervisord does not know yet.
    Add {
        name: String,
        file: PathBuf,
        spec: Result<Arc<JobSpec>, InvalidJob>,
    },
    /// A new valid version of a known job. `restart` is true when a field
    /// that only takes effect in a new container changed. `fields` are the
    /// paths of the changed fields, empty when no earlier valid version
    /// exists.
    Update {
        name: String,
        spec: Arc<JobSpec>,
        restart: bool,
        fields: Vec<String>,
    },
    /// A known job whose file became invalid.
    Invalidate { name: String, error: InvalidJob },
    /// A known job whose file is gone.
    Remove { name: String },
}

/// Returns whether a change to `new` that needs a new container leaves
/// `job` as it is until its next start, as `Supervisor::update_job` does
/// with a job that was stopped, exited or went FATAL, or that a stop
/// request stops. Jobs that are starting, running, restarting or in
/// BACKOFF restart or start, and so does a job that never ran when `new`
/// has `autostart`.
fn waits_for_next_start(job: &Job, new: &JobSpec) -> bool {
    match job.state {
        JobState::Starting | JobState::Running | JobState::Backoff => false,
        JobState::Stopping => match job.after_stop {
            AfterStop::Stay => true,
            AfterStop::Start => false,
            AfterStop::Remove => !new.autostart,
        },
        JobState::Stopped => !(new.autostart && job.last_run.is_none()),
        JobState::Exited | JobState::Fatal | JobState::Invalid => true,
    }
}

/// Compares a scan with the jobs supervisord runs.
pub fn plan(current: &BTreeMap<String, Box<Job>>, scan: &Scan) -> Vec<Planned> {
    let mut plans = Vec::new();
    for scanned in &scan.jobs {
        let Some(job) = current.get(&scanned.name) else {
            plans.push(Planned::Add {
                name: scanned.name.clone(),
                file: scanned.file.clone(),
                spec: scanned.spec.clone(),
            });
            continue;
        };
        match (&scanned.spec, &job.spec) {
            (Ok(new), Some(old)) => {
                // A job whose file came back while its container stops for
                // the removal is started again, as a new file would be.
                let returned = job.after_stop == AfterStop::Remove;
                if new != old || job.invalid.is_some() || returned {
                    plans.push(Planned::Update {
                        name: scanned.name.clone(),
                        spec: new.clone(),
                        restart: returned || needs_restart(old, new),
                        fields: changed_fields(old, new),
                    });
                }
            }
            (Ok(new), None) => plans.push(Planned::Update {
                name: scanned.name.clone(),
                spec: new.clone(),
                restart: false,
                fields: Vec::new(),
            }),
            (Err(error), _) => {
                let unchanged = job
                    .invalid
                    .as_ref()
                    .is_some_and(|current| current.text == error.text);
                if !unchanged {
                    plans.push(Planned::Invalidate {
                        name: scanned.name.clone(),
                        error: error.clone(),
                    });
                }
            }
        }
    }
    if scan.dir_error.is_none() {
        for name in current.keys() {
            if !scan.jobs.iter().any(|scanned| &scanned.name == name) {
                plans.push(Planned::Remove { name: name.clone() });
            }
        }
    }
    plans
}

/// Returns whether going from `old` to `new` needs a new container.
///
/// The restart policy, the log rotation, `autostart`, the stop settings and
/// `start_seconds` are read by supervisord at the next decision, so changing
/// them alone restarts nothing. Every other field, labels included because
/// they are written into the container's state, shapes the container.
pub fn needs_restart(old: &JobSpec, new: &JobSpec) -> bool {
    let mut comparable = new.clone();
    comparable.restart = old.restart.clone();
    comparable.logs = old.logs.clone();
    comparable.autostart = old.autostart;
    comparable.stop = old.stop.clone();
    comparable.start_seconds = old.start_seconds;
    comparable != *old
}

/// Returns the dotted paths of the fields that differ between `old` and
/// `new`, such as `command` or `resources.memory`, sorted by name. Objects are compared key by key, and an array or a
/// scalar that differs is one field.
pub fn changed_fields(old: &JobSpec, new: &JobSpec) -> Vec<String> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        // A spec always serializes. Naming no field still reports the change.
        return Vec::new();
    };
    let mut fields = Vec::new();
    diff_values("", &old, &new, &mut fields);
    fields
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;

    if old == new {
        return;
    }
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        out.push(path.to_string());
        return;
    };
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let missing = serde_json::Value::Null;
        let old_value = old.get(key).unwrap_or(&missing);
        let new_value = new.get(key).unwrap_or(&missing);
        diff_values(&child, old_value, new_value, out);
    }
}

/// Returns the API's view of a plan made from `scan`. The view lists every
/// invalid file of the scan, also one whose error supervisord already
/// showed, so that a re-read names each file that needs fixing. It also
/// carries the error that kept the directory from being listed.
pub fn report(
    plans: &[Planned],
    scan: &Scan,
    current: &BTreeMap<String, Box<Job>>,
) -> ReloadReport {
    let mut changes: Vec<JobChange> = plans
        .iter()
        .map(|plan| match plan {
            Planned::Add { name, spec, .. } => JobChange {
                name: name.clone(),
                kind: match spec {
                    Ok(_) => ChangeKind::Added,
                    Err(_) => ChangeKind::Invalid,
                },
                restart: false,
                next_start: false,
                fields: Vec::new(),
                error: spec.as_ref().err().map(|error| error.text.clone()),
            },
            Planned::Update {
                name,
                spec,
                restart,
                fields,
            } => {
                let next_start = *restart
                    && current
                        .get(name)
                        .is_some_and(|job| waits_for_next_start(job, spec));
                JobChange {
                    name: name.clone(),
                    kind: ChangeKind::Changed,
                    restart: *restart && !next_start,
                    next_start,
                    fields: fields.clone(),
                    error: None,
                }
            }
            Planned::Invalidate { name, error } => JobChange {
                name: name.clone(),
                kind: ChangeKind::Invalid,
                restart: false,
                next_start: false,
                fields: Vec::new(),
                error: Some(error.text.clone()),
            },
            Planned::Remove { name } => JobChange {
                name: name.clone(),
                kind: ChangeKind::Removed,
                restart: false,
                next_start: false,
                fields: Vec::new(),
                error: None,
            },
        })
        .collect();
    for scanned in &scan.jobs {
        let Err(error) = &scanned.spec else {
            continue;
        };
        if !changes.iter().any(|change| change.name == scanned.name) {
            changes.push(JobChange {
                name: scanned.name.clone(),
                kind: ChangeKind::Invalid,
                restart: false,
                next_start: false,
                fields: Vec::new(),
                error: Some(error.text.clone()),
            });
        }
    }
    ReloadReport {
        changes,
        dir_error: scan.dir_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Arc<JobSpec> {
        Arc::new(serde_json::from_str(json).unwrap())
    }

    fn invalid(text: &str) -> InvalidJob {
        InvalidJob {
            file: PathBuf::from("x.json"),
            line: Some(1),
            column: Some(1),
            field: None,
            message: text.to_string(),
            text: text.to_string(),
        }
    }

    fn job(name: &str, spec: Option<Arc<JobSpec>>, error: Option<InvalidJob>) -> Box<Job> {
        Box::new(Job::new(
            name,
            PathBuf::from(format!("{name}.json")),
            spec,
            error,
            Path::new("/log"),
        ))
    }

    fn scanned(name: &str, spec: Result<Arc<JobSpec>, InvalidJob>) -> ScannedJob {
        ScannedJob {
            name: name.to_string(),
            file: PathBuf::from(format!("{name}.json")),
            spec,
        }
    }

    #[test]
    fn hot_fields_need_no_restart() {
        let old = spec(r#"{"command": ["/bin/sleep", "1"]}"#);
        let hot = spec(
            r#"{"command": ["/bin/sleep", "1"], "autostart": false,
                "restart": {"policy": "always", "max_restarts": 9},
                "logs": {"max_size": "20M", "keep": 1},
                "stop": {"signal": "SIGINT", "timeout": "3s"}, "start_seconds": 5}"#,
        );
        assert!(!needs_restart(&old, &hot));
        for changed in [
            r#"{"command": ["/bin/sleep", "2"]}"#,
            r#"{"command": ["/bin/sleep", "1"], "env": {"A": "b"}}"#,
            r#"{"command": ["/bin/sleep", "1"], "labels": {"team": "web"}}"#,
            r#"{"command": ["/bin/sleep", "1"], "network": "host"}"#,
            r#"{"command": ["/bin/sleep", "1"], "resources": {"pids": 10}}"#,
        ] {
            assert!(needs_restart(&old, &spec(changed)), "{changed}");
        }
    }

    #[test]
    fn plan_classifies_every_case() {
        let sleep = spec(r#"{"command": ["/bin/sleep", "1"]}"#);
        let mut current = BTreeMap::new();
        current.insert("same".to_string(), job("same", Some(sleep.clone()), None));
        current.insert(
            "edited".to_string(),
            job("edited", Some(sleep.clone()), None),
        );
        current.insert(
            "broken".to_string(),
            job("broken", Some(sleep.clone()), None),
        );
        current.insert(
            "fixed".to_string(),
            job("fixed", Some(sleep.clone()), Some(invalid("e1"))),
        );
        current.insert("gone".to_string(), job("gone", Some(sleep.clone()), None));
        current.insert(
            "still-bad".to_string(),
            job("still-bad", None, Some(invalid("e2"))),
        );

        let scan = Scan {
            jobs: vec![
                scanned("same", Ok(sleep.clone())),
                scanned("edited", Ok(spec(r#"{"command": ["/bin/sleep", "2"]}"#))),
                scanned("broken", Err(invalid("e3"))),
                scanned("fixed", Ok(sleep.clone())),
                scanned("still-bad", Err(invalid("e2"))),
                scanned("new", Ok(sleep.clone())),
            ],
            dir_error: None,
        };
        let report = report(&plan(&current, &scan), &scan, &current);
        let summary: Vec<(String, ChangeKind, bool)> = report
            .changes
            .iter()
            .map(|change| (change.name.clone(), change.kind, change.restart))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("edited".to_string(), ChangeKind::Changed, true),
                ("broken".to_string(), ChangeKind::Invalid, false),
                ("fixed".to_string(), ChangeKind::Changed, false),
                ("new".to_string(), ChangeKind::Added, false),
                ("gone".to_string(), ChangeKind::Removed, false),
                ("still-bad".to_string(), ChangeKind::Invalid, false),
            ]
        );
        assert_eq!(report.changes[5].error.as_deref(), Some("e2"));
        assert_eq!(report.dir_error, None);
        let broken = &report.changes[1];
        assert_eq!(broken.error.as_deref(), Some("e3"));
    }

    #[test]
    fn changed_fields_name_paths() {
        let old = spec(
            r#"{"command": ["/bin/sleep", "1"], "resources": {"memory": "64M", "pids": 10},
                "env": {"A": "1", "B": "2"}}"#,
        );
        let new = spec(
            r#"{"command": ["/bin/sleep", "2"], "resources": {"memory": "128M", "pids": 10},
                "env": {"A": "1", "C": "3"}, "stop": {"timeout": "3s"}}"#,
        );
        assert_eq!(
            changed_fields(&old, &new),
            [
                "command",
                "env.B",
                "env.C",
                "resources.memory",
                "stop.timeout"
            ]
        );
        assert!(changed_fields(&old, &old).is_empty());
    }

    #[test]
    fn report_lists_changed_fields() {
        let mut current = BTreeMap::new();
        current.insert(
            "web".to_string(),
            job("web", Some(spec(r#"{"command": ["/x"]}"#)), None),
        );
        let scan = Scan {
            jobs: vec![scanned(
                "web",
                Ok(spec(
                    r#"{"command": ["/x"], "resources": {"memory": "64M"}, "autostart": false}"#,
                )),
            )],
            dir_error: None,
        };
        current.get_mut("web").unwrap().state = JobState::Running;
        let report = report(&plan(&current, &scan), &scan, &current);
        assert_eq!(report.changes.len(), 1);
        assert_eq!(report.changes[0].fields, ["autostart", "resources.memory"]);
        assert!(report.changes[0].restart);
        assert!(!report.changes[0].next_start);
    }

    #[test]
    fn report_defers_changes_of_ended_jobs() {
        let cases = [
            (JobState::Running, AfterStop::Stay, true, false),
            (JobState::Backoff, AfterStop::Stay, true, false),
            (JobState::Exited, AfterStop::Stay, false, true),
            (JobState::Fatal, AfterStop::Stay, false, true),
            (JobState::Stopping, AfterStop::Stay, false, true),
            (JobState::Stopping, AfterStop::Start, true, false),
        ];
        for (state, after_stop, restart, next_start) in cases {
            let mut current = BTreeMap::new();
            let mut web = job("web", Some(spec(r#"{"command": ["/x"]}"#)), None);
            web.state = state;
            web.after_stop = after_stop;
            current.insert("web".to_string(), web);
            let scan = Scan {
                jobs: vec![scanned("web", Ok(spec(r#"{"command": ["/y"]}"#)))],
                dir_error: None,
            };
            let report = report(&plan(&current, &scan), &scan, &current);
            assert_eq!(report.changes[0].restart, restart, "{state} {after_stop:?}");
            assert_eq!(
                report.changes[0].next_start, next_start,
                "{state} {after_stop:?}"
            );
        }
    }

    #[test]
    fn returned_file_cancels_removal() {
        let sleep = spec(r#"{"command": ["/bin/sleep", "1"]}"#);
        let mut leaving = job("web", Some(sleep.clone()), None);
        leaving.after_stop = AfterStop::Remove;
        let mut current = BTreeMap::new();
        current.insert("web".to_string(), leaving);
        let scan = Scan {
            jobs: vec![scanned("web", Ok(sleep))],
            dir_error: None,
        };
        let plans = plan(&current, &scan);
        assert_eq!(plans.len(), 1);
        assert!(
            matches!(&plans[0], Planned::Update { restart: true, .. }),
            "{:?}",
            plans[0]
        );
    }

    #[test]
    fn unreadable_dir_removes_nothing() {
        let mut current = BTreeMap::new();
        current.insert(
            "web".to_string(),
            job("web", Some(spec(r#"{"command": ["/x"]}"#)), None),
        );
        let scan = Scan {
            jobs: Vec::new(),
            dir_error: Some("permission denied".to_string()),
        };
        assert!(plan(&current, &scan).is_empty());
    }

    #[test]
    fn scan_marks_unknown_user_invalid() {
        let jobs = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1001:1001::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
        let job = |user: &str| {
            serde_json::json!({"image": {"path": root.path()}, "command": ["/bin/true"],
                               "user": user})
            .to_string()
        };
        std::fs::write(jobs.path().join("known.json"), job("web")).unwrap();
        std::fs::write(jobs.path().join("unknown.json"), job("nosuchuser")).unwrap();

        let scan = scan(jobs.path(), jobs.path());
        let known = scan.jobs.iter().find(|job| job.name == "known").unwrap();
        assert!(known.spec.is_ok(), "{:?}", known.spec);
        let unknown = scan.jobs.iter().find(|job| job.name == "unknown").unwrap();
        let error = unknown.spec.as_ref().unwrap_err();
        assert_eq!(error.field.as_deref(), Some("user"));
        let passwd = root.path().join("etc/passwd");
        let message = format!(
            "failed to resolve user \"nosuchuser\" in image {:?}: no such user in {}: use a \
             numeric UID or add an entry there",
            root.path().display().to_string(),
            passwd.display()
        );
        assert_eq!(error.message, message);
        assert_eq!(
            error.text,
            format!("{}: {message}", jobs.path().join("unknown.json").display())
        );
    }

    #[test]
    fn scan_reports_positions_of_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.json"),
            r#"{"command": ["/bin/true"]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.json"),
            "{\n  \"command\": [\"/bin/true\"],\n  \"resources\": {\"memory\": \"12X\"}\n}\n",
        )
        .unwrap();

        let scan = scan(dir.path(), dir.path());
        assert!(scan.dir_error.is_none());
        let good = scan.jobs.iter().find(|job| job.name == "good").unwrap();
        assert!(good.spec.is_ok());

        let bad = scan.jobs.iter().find(|job| job.name == "bad").unwrap();
        let error = bad.spec.as_ref().unwrap_err();
        assert_eq!(error.file, dir.path().join("bad.json"));
        assert_eq!(error.line, Some(3));
        assert!(error.column.is_some());
        assert_eq!(error.field.as_deref(), Some("resources.memory"));
        assert!(
            error
                .text
                .starts_with(&format!("{}:3:", dir.path().join("bad.json").display())),
            "{}",
            error.text
        );
        assert!(
            !error.message.starts_with(dir.path().to_str().unwrap()),
            "{}",
            error.message
        );
    }
}
