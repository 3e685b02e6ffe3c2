//! `start`, `stop`, `restart` and `signal` of supervisorctl on several jobs.
//!
//! The names go to `POST /v1/batch/ACTION` in as few requests as the
//! body limit [`MAX_BATCH_BODY`] allows, at most [`MAX_CONCURRENT_BATCHES`]
//! at a time, so that a command uses a few control connections whatever
//! the number of jobs. A supervisord older than `/v1/batch` replies 404 to
//! it, so its jobs then get one request each, at most
//! [`MAX_CONCURRENT_JOB_REQUESTS`] at a time.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::{BatchReply, BatchRequest, BatchResult, JobView, MAX_BATCH_BODY};
use crate::client::{Client, ClientError};
use crate::machine::JobState;

/// Maximum number of `/v1/batch` requests in flight. One request carries
/// thousands of names, so more than one is in flight only for more jobs
/// than that.
pub const MAX_CONCURRENT_BATCHES: usize = 16;

/// Maximum number of per-job requests in flight for a supervisord without
/// `/v1/batch`. It stays well below supervisord's default connection
/// limit, [`crate::daemon::DEFAULT_MAX_CONNECTIONS`], and jobs beyond it
/// wait for a free slot.
pub const MAX_CONCURRENT_JOB_REQUESTS: usize = 256;

/// An action on jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// Send the signal, a name or number as `supervisorctl signal` takes it.
    Signal(String),
}

impl Action {
    /// Returns the last segment of the action's API paths.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Signal(_) => "signal",
        }
    }

    pub fn past_tense(&self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Restart => "restarted",
            Action::Signal(_) => "signalled",
        }
    }

    /// Returns whether `all` includes a job in this state.
    pub fn applies_to(&self, state: JobState) -> bool {
        match self {
            Action::Start => !state.is_active() && state != JobState::Invalid,
            Action::Stop => state.is_active(),
            Action::Restart => state != JobState::Invalid,
            Action::Signal(_) => matches!(state, JobState::Starting | JobState::Running),
        }
    }

    fn signal(&self) -> Option<&str> {
        match self {
            Action::Signal(signal) => Some(signal),
            _ => None,
        }
    }
}

/// The outcome of an action on one job.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// When the request that carried this job was sent.
    pub sent: SystemTime,
    /// The job after the action, or the error. A batch that failed as a
    /// whole, such as on a lost connection, gives each of its jobs the
    /// same error.
    pub result: Result<JobView, Arc<ClientError>>,
}

/// Runs `action` on each of `names` in parallel and returns the outcomes
/// in the order of `names`. `client`'s timeout bounds each request.
pub fn act_on_jobs(client: &Client, action: &Action, names: &[String]) -> Vec<Outcome> {
    let groups = group_names(names, action.signal(), MAX_BATCH_BODY);
    let batches = run_bounded(&groups, MAX_CONCURRENT_BATCHES, |range| {
        send_batch(client, action, &names[range.clone()])
    });
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(names.len());
    let mut without_batch = Vec::new();
    for (range, batch) in groups.into_iter().zip(batches) {
        match batch {
            Some(batch_outcomes) => outcomes.extend(batch_outcomes.into_iter().map(Some)),
            None => {
                without_batch.extend(range.clone());
                outcomes.extend(range.map(|_| None));
            }
        }
    }
    let singles = run_bounded(&without_batch, MAX_CONCURRENT_JOB_REQUESTS, |&index| {
        let name = &names[index];
        let sent = SystemTime::now();
        Outcome {
            name: name.clone(),
            sent,
            result: send_one(client, action, name).map_err(Arc::new),
        }
    });
    for (index, outcome) in without_batch.into_iter().zip(singles) {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every name got a batch or a request of its own"))
        .collect()
}

/// Splits `names` into consecutive groups whose [`BatchRequest`] body
/// encodes to at most `limit` bytes. A name too long for any body gets a
/// group of its own, which supervisord then rejects with 413.
fn group_names(names: &[String], signal: Option<&str>, limit: usize) -> Vec<Range<usize>> {
    let empty = BatchRequest {
        names: Vec::new(),
        signal: signal.map(str::to_string),
    };
    let framing = serde_json::to_vec(&empty).map_or(0, |body| body.len());
    let mut groups = Vec::new();
    let mut start = 0;
    let mut size = framing;
    for (index, name) in names.iter().enumerate() {
        let encoded = serde_json::Value::from(name.as_str()).to_string().len();
        let added = if index == start { encoded } else { encoded + 1 };
        if index > start && size + added > limit {
            groups.push(start..index);
            start = index;
            size = framing + encoded;
        } else {
            size += added;
        }
    }
    if start < names.len() {
        groups.push(start..names.len());
    }
    groups
}

/// Sends one `/v1/batch` request for `names` and returns an outcome per
/// name, or `None` when supervisord does not know `/v1/batch`.
fn send_batch(client: &Client, action: &Action, names: &[String]) -> Option<Vec<Outcome>> {
    let request = BatchRequest {
        names: names.to_vec(),
        signal: action.signal().map(str::to_string),
    };
    let body = serde_json::to_value(&request).expect("a BatchRequest encodes to JSON");
    let path = format!("/v1/batch/{}", action.verb());
    let sent = SystemTime::now();
    let results = match client.post::<BatchReply>(&path, Some(&body)) {
        Ok(reply) => check_results(names, reply.results),
        Err(error) if error.status() == Some(404) => return None,
        Err(error) => Err(error),
    };
    let outcomes = match results {
        Ok(results) => names
            .iter()
            .zip(results)
            .map(|(name, result)| Outcome {
                name: name.clone(),
                sent,
                result: job_result(result).map_err(Arc::new),
            })
            .collect(),
        Err(error) => {
            let error = Arc::new(error);
            names
                .iter()
                .map(|name| Outcome {
                    name: name.clone(),
                    sent,
                    result: Err(error.clone()),
                })
                .collect()
        }
    };
    Some(outcomes)
}

/// Checks that `results` has one result per name, in the order of `names`.
fn check_results(
    names: &[String],
    results: Vec<BatchResult>,
) -> Result<Vec<BatchResult>, ClientError> {
    if results.len() != names.len() {
        return Err(ClientError::Malformed {
            reason: format!(
                "the batch reply has {} results for {} job names",
                results.len(),
                names.len()
            ),
        });
    }
    if let Some((name, result)) = names
        .iter()
        .zip(&results)
        .find(|(name, result)| **name != result.name)
    {
        return Err(ClientError::Malformed {
            reason: format!(
                "the batch reply has a result for job {:?} where job {name:?} was expected",
                result.name
            ),
        });
    }
    Ok(results)
}

/// Returns the job view of a successful result, or the error that the
/// request for that job alone would have returned.
fn job_result(result: BatchResult) -> Result<JobView, ClientError> {
    match (result.status, result.job) {
        (200, Some(job)) => Ok(job),
        (200, None) => Err(ClientError::Malformed {
            reason: format!("the batch result of job {:?} has no job", result.name),
        }),
        (status, _) => Err(ClientError::Api {
            status,
            message: result
                .error
                .unwrap_or_else(|| format!("supervisord returned HTTP {status} without a message")),
        }),
    }
}

/// Sends the action for one job to `/v1/jobs/NAME/ACTION`.
fn send_one(client: &Client, action: &Action, name: &str) -> Result<JobView, ClientError> {
    let path = job_path(name, &format!("/{}", action.verb()));
    match action.signal() {
        Some(signal) => {
            let body = serde_json::json!({ "signal": signal });
            client.post(&path, Some(&body))
        }
        None => client.post(&path, None),
    }
}

/// Returns `/v1/jobs/NAME` plus `suffix`, with the name percent-encoded.
pub fn job_path(name: &str, suffix: &str) -> String {
    let mut path = String::from("/v1/jobs/");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(suffix);
    path
}

/// Calls `work` on each of `items`, on at most `limit` threads at a time,
/// and returns the results in the order of `items`.
fn run_bounded<T: Sync, R: Send>(
    items: &[T],
    limit: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let threads = limit.min(items.len());
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::Mutex;

    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("job-{index:03}")).collect()
    }

    #[test]
    fn groups_fit_the_limit() {
        let names = names(100);
        // Each name encodes to 9 bytes, plus a comma after the first.
        let framing = br#"{"names":[]}"#.len();
        let limit = framing + 9 + 10 * 9;
        let groups = group_names(&names, None, limit);
        assert_eq!(groups.len(), 10, "{groups:?}");
        assert!(groups.iter().all(|group| group.len() == 10), "{groups:?}");
        assert_eq!(groups[0], 0..10);
        assert_eq!(groups[9], 90..100);
        for group in &groups {
            let body = serde_json::to_vec(&BatchRequest {
                names: names[group.clone()].to_vec(),
                signal: None,
            })
            .unwrap();
            assert!(body.len() <= limit, "{} > {limit}", body.len());
        }

        let single = group_names(&names, None, MAX_BATCH_BODY);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0], 0..100);
        assert!(group_names(&[], None, MAX_BATCH_BODY).is_empty());
    }

    #[test]
    fn groups_count_the_signal_and_long_names() {
        let names = vec!["a".repeat(50), "b".to_string(), "c".to_string()];
        let groups = group_names(&names, Some("HUP"), 40);
        assert_eq!(groups, [0..1, 1..3]);
        let without_signal = group_names(&names[1..], None, 20);
        assert_eq!(without_signal.len(), 1);
        assert_eq!(without_signal[0], 0..2);
        let with_signal = group_names(&names[1..], Some("SIGUSR1"), 36);
        assert_eq!(with_signal, [0..1, 1..2]);
    }

    #[test]
    fn bounded_runs_keep_order() {
        let items: Vec<usize> = (0..500).collect();
        let running = AtomicUsize::new(0);
        let max_running = AtomicUsize::new(0);
        let results = run_bounded(&items, 7, |item| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max_running.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_micros(200));
            running.fetch_sub(1, Ordering::SeqCst);
            item * 2
        });
        assert_eq!(
            results,
            items.iter().map(|item| item * 2).collect::<Vec<_>>()
        );
        assert!(max_running.load(Ordering::SeqCst) <= 7);
        assert!(run_bounded(&[] as &[usize], 7, |item| *item).is_empty());
    }

    #[test]
    fn job_path_encodes_name() {
        assert_eq!(job_path("web-1.a_b", "/stop"), "/v1/jobs/web-1.a_b/stop");
        assert_eq!(job_path("a b/c", ""), "/v1/jobs/a%20b%2Fc");
    }

    fn job_json(name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "state": "STOPPED",
            "process_state": "STOPPED",
            "description": "stopped",
            "pid": null,
            "exit_status": null,
            "signal": null,
            "oom_killed": false,
            "restarts": 0,
            "since": 0,
            "container_id": null,
            "file": format!("/jobs/{name}.json"),
            "error": null,
            "stdout_log": "/log/stdout.log",
            "stderr_log": "/log/stderr.log",
        })
    }

    /// Returns the status and JSON body of the reply to a method, path
    /// and body.
    type Respond = dyn Fn(&str, &str, &[u8]) -> (u16, serde_json::Value) + Send + Sync;

    /// A stand-in for supervisord that replies to each request with
    /// `respond(method, path, body)` and records the request lines.
    struct FakeDaemon {
        dir: tempfile::TempDir,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl FakeDaemon {
        fn start(
            respond: impl Fn(&str, &str, &[u8]) -> (u16, serde_json::Value) + Send + Sync + 'static,
        ) -> FakeDaemon {
            let dir = tempfile::tempdir().unwrap();
            let listener = UnixListener::bind(dir.path().join("api.sock")).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let recorded = requests.clone();
            let respond = Arc::new(respond);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let respond = respond.clone();
                    let recorded = recorded.clone();
                    std::thread::spawn(move || serve_one(stream, &*respond, &recorded));
                }
            });
            FakeDaemon { dir, requests }
        }

        fn client(&self) -> Client {
            Client::new(self.dir.path().join("api.sock"))
                .with_timeout(Some(std::time::Duration::from_secs(10)))
        }

        fn requests(&self) -> Vec<String> {
            let mut requests = self.requests.lock().unwrap().clone();
            requests.sort();
            requests
        }
    }

    fn serve_one(
        stream: std::os::unix::net::UnixStream,
        respond: &Respond,
        recorded: &Mutex<Vec<String>>,
    ) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
        recorded.lock().unwrap().push(format!("{method} {path}"));
        let (status, reply) = respond(method, path, &body);
        let reply = reply.to_string();
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
    }

    #[test]
    fn batch_results_map_to_outcomes() {
        let daemon = FakeDaemon::start(|method, path, body| {
            assert_eq!((method, path), ("POST", "/v1/batch/signal"));
            let request: BatchRequest = serde_json::from_slice(body).unwrap();
            assert_eq!(request.signal.as_deref(), Some("HUP"));

            let results: Vec<serde_json::Value> = request
                .names
                .iter()
                .map(|name| match name.as_str() {
                    "missing" => serde_json::json!({
                        "name": name, "status": 404, "error": "no such job \"missing\""
                    }),
                    "stopped" => serde_json::json!({
                        "name": name, "status": 409, "error": "job \"stopped\" is not running"
                    }),
                    _ => serde_json::json!({"name": name, "status": 200, "job": job_json(name)}),
                })
                .collect();
            (200, serde_json::json!({ "results": results }))
        });

        let names: Vec<String> = ["web", "missing", "stopped", "web"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        let outcomes = act_on_jobs(&daemon.client(), &Action::Signal("HUP".into()), &names);

        let got: Vec<&str> = outcomes
            .iter()
            .map(|outcome| outcome.name.as_str())
            .collect();
        assert_eq!(got, ["web", "missing", "stopped", "web"]);
        assert_eq!(outcomes[0].result.as_ref().unwrap().name, "web");
        let missing = outcomes[1].result.as_ref().unwrap_err();
        assert_eq!(missing.status(), Some(404));
        assert_eq!(missing.to_string(), "no such job \"missing\"");
        let stopped = outcomes[2].result.as_ref().unwrap_err();
        assert_eq!(stopped.status(), Some(409));
        assert!(outcomes[3].result.is_ok());
        assert_eq!(daemon.requests(), ["POST /v1/batch/signal"]);
    }

    #[test]
    fn failed_batch_fails_each_job() {
        let daemon = FakeDaemon::start(|_, _, _| {
            (
                503,
                serde_json::json!({"error": "supervisord is shutting down"}),
            )
        });
        let names = names(3);
        let outcomes = act_on_jobs(&daemon.client(), &Action::Stop, &names);
        assert_eq!(outcomes.len(), 3);
        for outcome in &outcomes {
            let error = outcome.result.as_ref().unwrap_err();
            assert_eq!(error.status(), Some(503), "{}", outcome.name);
        }
        assert_eq!(daemon.requests(), ["POST /v1/batch/stop"]);
    }

    #[test]
    fn mismatched_batch_reply_is_malformed() {
        let daemon = FakeDaemon::start(|_, _, _| {
            let result =
                serde_json::json!({"name": "other", "status": 200, "job": job_json("other")});
            (200, serde_json::json!({ "results": [result] }))
        });
        let outcomes = act_on_jobs(&daemon.client(), &Action::Start, &names(1));
        let error = outcomes[0].result.as_ref().unwrap_err();
        assert!(
            matches!(**error, ClientError::Malformed { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("\"other\""), "{error}");
    }

    #[test]
    fn daemon_without_batch_gets_one_request_per_job() {
        // The routes of a supervisord older than /v1/batch.
        let daemon = FakeDaemon::start(|method, path, _| {
            assert_eq!(method, "POST");
            match path {
                "/v1/jobs/missing/restart" => {
                    (404, serde_json::json!({"error": "no such job \"missing\""}))
                }
                _ if path.starts_with("/v1/jobs/") => {
                    let name = path.split('/').nth(3).unwrap();
                    (200, job_json(name))
                }
                _ => (
                    404,
                    serde_json::json!({"error": format!("no such API path {path}")}),
                ),
            }
        });
        let mut names = names(3);
        names.insert(1, "missing".to_string());
        let outcomes = act_on_jobs(&daemon.client(), &Action::Restart, &names);
        let got: Vec<&str> = outcomes
            .iter()
            .map(|outcome| outcome.name.as_str())
            .collect();
        assert_eq!(got, ["job-000", "missing", "job-001", "job-002"]);
        assert_eq!(outcomes[0].result.as_ref().unwrap().name, "job-000");
        assert_eq!(outcomes[1].result.as_ref().unwrap_err().status(), Some(404));
        assert_eq!(outcomes[3].result.as_ref().unwrap().name, "job-002");
        assert_eq!(
            daemon.requests(),
            [
                "POST /v1/batch/restart",
                "POST /v1/jobs/job-000/restart",
                "POST /v1/jobs/job-001/restart",
                "POST /v1/jobs/job-002/restart",
                "POST /v1/jobs/missing/restart",
            ]
        );
    }
}
