//! Job metrics from the supervisor's control socket, served here by a small
//! HTTP/1.1 server on a unix socket that returns a fixed job list, and the
//! checks over a complete scrape: every family exported, promtool's lint.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{assert_line, assert_no_sample, promtool_check, samples, Fixture};
use corral_metrics_agent::{families, Agent, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

const JOBS: &str = r#"[
  {"name": "web", "state": "RUNNING", "restarts": 2, "oom_kills": 0, "pid": 4242, "uptime": 61},
  {"name": "batch", "state": "BACKOFF", "restarts": 5, "oom_kills": 7},
  {"name": "odd", "state": "PAUSED"}
]"#;

/// Response of the fake supervisor.
#[derive(Clone)]
enum Reply {
    Status(u16, String),
    Never,
}

/// Serves `reply` to every connection on `socket` and records the request
/// heads it received.
fn serve(socket: &Path, reply: Reply) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(socket).expect("bind the fake supervisor socket");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = Arc::clone(&recorded);
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match reply {
                    Reply::Status(status, body) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                    }
                    Reply::Never => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    requests
}

fn settings_with_socket(fixture: &Fixture, socket: PathBuf) -> Settings {
    Settings {
        supervisor_socket: Some(socket),
        ..fixture.settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_jobs_exported() {
    let fixture = Fixture::new();
    let socket = fixture.path("supervisor.sock");
    let requests = serve(&socket, Reply::Status(200, JOBS.to_string()));
    let agent = Arc::new(Agent::new(settings_with_socket(&fixture, socket)).unwrap());
    let text = agent.scrape().await.unwrap();

    let heads = requests.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "one request per scrape: {heads:?}");
    assert!(
        heads[0].starts_with("GET /v1/jobs HTTP/1.1\r\n"),
        "request head: {:?}",
        heads[0]
    );

    assert_line(&text, r#"corral_job_up{name="web"} 1"#);
    assert_line(&text, r#"corral_job_up{name="batch"} 0"#);
    assert_line(&text, r#"corral_job_up{name="odd"} 0"#);
    assert_line(&text, r#"corral_job_restarts_total{name="web"} 2"#);
    assert_line(&text, r#"corral_job_restarts_total{name="batch"} 5"#);
    assert!(
        !text.contains(r#"corral_job_restarts_total{name="odd"}"#),
        "a job without a restart count has no restarts sample:\n{text}"
    );
    assert_line(&text, r#"corral_job_oom_kills_total{name="web"} 0"#);
    assert_line(&text, r#"corral_job_oom_kills_total{name="batch"} 7"#);
    assert!(
        !text.contains(r#"corral_job_oom_kills_total{name="odd"}"#),
        "a job without an OOM kill count has no OOM kills sample:\n{text}"
    );

    assert_line(&text, r#"corral_job_state{name="web",state="RUNNING"} 1"#);
    assert_line(&text, r#"corral_job_state{name="web",state="STOPPED"} 0"#);
    assert_line(&text, r#"corral_job_state{name="batch",state="BACKOFF"} 1"#);
    assert_line(&text, r#"corral_job_state{name="batch",state="RUNNING"} 0"#);
    assert_line(&text, r#"corral_job_state{name="odd",state="PAUSED"} 1"#);
    let states = samples(&text, "corral_job_state");
    let web: Vec<_> = states
        .iter()
        .filter(|l| l.contains(r#"name="web""#))
        .collect();
    let odd: Vec<_> = states
        .iter()
        .filter(|l| l.contains(r#"name="odd""#))
        .collect();
    assert_eq!(web.len(), 8, "one series per known state: {web:?}");
    assert_eq!(odd.len(), 9, "known states plus the unknown one: {odd:?}");
    let ones = states.iter().filter(|line| line.ends_with(" 1")).count();
    assert_eq!(ones, 3, "exactly one current state per job: {states:?}");

    assert_line(
        &text,
        r#"metrics_agent_read_errors_total{kind="supervisor"} 0"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_error_status_is_counted() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let socket = fixture.path("supervisor.sock");
    serve(
        &socket,
        Reply::Status(500, r#"{"message":"internal"}"#.to_string()),
    );
    let agent = Arc::new(Agent::new(settings_with_socket(&fixture, socket)).unwrap());
    let text = agent.scrape().await.unwrap();

    assert_no_sample(&text, "corral_job_");
    assert_line(
        &text,
        r#"metrics_agent_read_errors_total{kind="supervisor"} 1"#,
    );
    assert_line(&text, "metrics_agent_containers 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_unreachable_is_counted() {
    let fixture = Fixture::new();
    fixture.add_container("web", "web", fixture.v2_paths());
    let socket = fixture.path("missing.sock");
    let agent = Arc::new(Agent::new(settings_with_socket(&fixture, socket)).unwrap());
    let text = agent.scrape().await.unwrap();

    assert_no_sample(&text, "corral_job_");
    assert_line(
        &text,
        r#"metrics_agent_read_errors_total{kind="supervisor"} 1"#,
    );
    assert_line(
        &text,
        r#"container_memory_usage_bytes{id="/corral/web",image="busybox",name="web"} 10485760"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_without_answer_times_out() {
    let fixture = Fixture::new();
    let socket = fixture.path("supervisor.sock");
    serve(&socket, Reply::Never);
    let agent = Arc::new(Agent::new(settings_with_socket(&fixture, socket)).unwrap());

    let started = Instant::now();
    let text = agent.scrape().await.unwrap();
    let elapsed = started.elapsed();

    assert!(elapsed < Duration::from_secs(5), "scrape took {elapsed:?}");
    assert_no_sample(&text, "corral_job_");
    assert_line(
        &text,
        r#"metrics_agent_read_errors_total{kind="supervisor"} 1"#,
    );
}

/// Scrapes the v1 job, the v2 job and the supervisor's jobs in one exposition.
async fn full_scrape(fixture: &Fixture) -> String {
    fixture.add_container("web", "web", fixture.v1_paths());
    fixture.add_container("api", "api", fixture.v2_paths());
    let socket = fixture.path("supervisor.sock");
    serve(&socket, Reply::Status(200, JOBS.to_string()));
    let agent = Arc::new(Agent::new(settings_with_socket(fixture, socket)).unwrap());
    agent.scrape().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_exported() {
    let fixture = Fixture::new();
    let text = full_scrape(&fixture).await;

    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    for family in families::ALL {
        assert!(
            exported.contains(family.name),
            "{} has no sample in the full fixture scrape",
            family.name
        );
    }
    for name in [
        "metrics_agent_containers",
        "metrics_agent_read_errors_total",
        "metrics_agent_scrape_duration_seconds",
    ] {
        assert!(exported.contains(name), "{name} is not exported");
    }
    assert_line(&text, "metrics_agent_containers 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_fixture_scrape() {
    let fixture = Fixture::new();
    let text = full_scrape(&fixture).await;

    let Some((passed, report)) = promtool_check(&text) else {
        return;
    };
    assert!(passed, "promtool check metrics failed:\n{report}\n{text}");
}
