//! Job states from the supervisor's control socket: `GET /v1/jobs` over
//! HTTP/1.1 on a unix socket, which returns a JSON array of jobs.
//!
//! Only `name`, `state`, `restarts` and `oom_kills` are read and other keys
//! are ignored, so the agent keeps working while the supervisor's API grows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::body::HttpBody;
use hyper::{Body, Request, StatusCode};
use serde::Deserialize;
use tokio::net::UnixStream;

use crate::exposition::Exposition;
use crate::families;

/// Supervisor states, each a value of the `state` label of `corral_job_state`.
pub const STATES: [&str; 8] = [
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "INVALID",
];

/// Maximum size of a job list. A supervisor with thousands of jobs stays far
/// below it, so a larger body means that another server owns the socket.
const MAX_BODY_BYTES: usize = 8 << 20;

/// One job as the supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub restarts: Option<u64>,
    /// OOM kills in the job's ended containers since the supervisor loaded
    /// the job: the sum of the counts in their exit records.
    #[serde(default)]
    pub oom_kills: Option<u64>,
}

/// An error fetching the job list.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("failed to connect to the supervisor at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("request GET /v1/jobs to {path} failed")]
    Request {
        path: PathBuf,
        #[source]
        source: hyper::Error,
    },
    #[error("GET /v1/jobs to {path} timed out after {timeout:?}")]
    TimedOut { path: PathBuf, timeout: Duration },
    #[error("GET /v1/jobs to {path} returned status {status}")]
    Status { path: PathBuf, status: StatusCode },
    #[error("job list from {path} is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("invalid job list from {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Fetches the job list, giving up after `timeout`.
pub async fn fetch_jobs(
    socket: &Path,
    timeout: Duration,
) -> Result<Vec<JobStatus>, SupervisorError> {
    match tokio::time::timeout(timeout, request_jobs(socket)).await {
        Ok(result) => result,
        Err(_) => Err(SupervisorError::TimedOut {
            path: socket.to_path_buf(),
            timeout,
        }),
    }
}

async fn request_jobs(socket: &Path) -> Result<Vec<JobStatus>, SupervisorError> {
    let path = socket.to_path_buf();
    let request_error = |source| SupervisorError::Request {
        path: path.clone(),
        source,
    };

    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| SupervisorError::Connect {
            path: path.clone(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::handshake(stream)
        .await
        .map_err(request_error)?;
    // The connection task ends when the response is read and the sender is
    // dropped; its errors also fail the request, which reports them.
    tokio::spawn(connection);

    let request = Request::get("/v1/jobs")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Body::empty())
        .expect("a GET request with constant parts is valid");
    let response = sender.send_request(request).await.map_err(request_error)?;
    if !response.status().is_success() {
        return Err(SupervisorError::Status {
            path,
            status: response.status(),
        });
    }

    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(request_error)?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(SupervisorError::TooLarge { path });
        }
        bytes.extend_from_slice(&chunk);
    }
    parse_jobs(&bytes).map_err(|source| SupervisorError::Parse { path, source })
}

/// Parses the job list: a JSON array, or an object holding it under `jobs`.
pub fn parse_jobs(body: &[u8]) -> Result<Vec<JobStatus>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum JobList {
        Array(Vec<JobStatus>),
        Object { jobs: Vec<JobStatus> },
    }
    Ok(match serde_json::from_slice(body)? {
        JobList::Array(jobs) | JobList::Object { jobs } => jobs,
    })
}

/// Adds `corral_job_up`, `corral_job_restarts_total`,
/// `corral_job_oom_kills_total` and the one-hot `corral_job_state` of
/// every job. A state outside [`STATES`] gets its own
/// series with value 1 beside the known states at 0.
pub(crate) fn add_job_samples(jobs: &[JobStatus], exposition: &mut Exposition) {
    for job in jobs {
        let state = job.state.to_ascii_uppercase();
        let name = || vec![("name", job.name.clone())];

        let up = if state == "RUNNING" { 1.0 } else { 0.0 };
        exposition.add(&families::JOB_UP, &name(), up);
        if let Some(restarts) = job.restarts {
            exposition.add(&families::JOB_RESTARTS, &name(), restarts as f64);
        }
        if let Some(kills) = job.oom_kills {
            exposition.add(&families::JOB_OOM_KILLS, &name(), kills as f64);
        }

        let mut states: Vec<&str> = STATES.to_vec();
        if !STATES.contains(&state.as_str()) {
            states.push(&state);
        }
        for candidate in states {
            let mut labels = name();
            labels.push(("state", candidate.to_string()));
            let value = if candidate == state { 1.0 } else { 0.0 };
            exposition.add(&families::JOB_STATE, &labels, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_array_with_unknown_keys() {
        let body =
            br#"[{"name":"web","state":"RUNNING","restarts":2,"pid":42,"uptime":"0:01:00"}]"#;
        let jobs = parse_jobs(body).unwrap();
        assert_eq!(
            jobs,
            vec![JobStatus {
                name: "web".to_string(),
                state: "RUNNING".to_string(),
                restarts: Some(2),
                oom_kills: None,
            }]
        );
    }

    #[test]
    fn parse_object_with_jobs_key() {
        let body = br#"{"jobs":[{"name":"db","state":"FATAL"}]}"#;
        let jobs = parse_jobs(body).unwrap();
        assert_eq!(jobs[0].name, "db");
        assert_eq!(jobs[0].restarts, None);
    }

    #[test]
    fn parse_rejects_missing_state() {
        assert!(parse_jobs(br#"[{"name":"web"}]"#).is_err());
    }
}
