//! The control API: HTTP/1.1 with JSON bodies on the unix socket, served by
//! hyper. Each request becomes an [`Event::Request`] for the supervisor task
//! and waits for its reply. The routes are listed in [`crate::api`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::HttpBody as _;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::Http;
use hyper::service::service_fn;
use hyper::{Body, Method, StatusCode};
use serde::Serialize;
use serde_json::error::Category;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::api::{ErrorBody, SignalRequest};
use crate::daemon::connections::{reject_connection, Activity, RejectWarnings};
use crate::daemon::{stats, ApiError, Event, JsonBody, Request};

/// Largest request body accepted; the API's bodies are a few bytes.
const MAX_BODY: u64 = 64 * 1024;

/// Pause after a failed `accept`, so that a full descriptor table does not
/// turn the accept loop into a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Maximum time for a request head to arrive completely, counted from
/// accept for a connection's first request and, in hyper 0.14, from the
/// first byte of each later one. supervisorctl sends its request at once
/// after connecting, so only stalled clients reach it.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum time that a keep-alive connection may stay idle between the end
/// of one request and the next. A request being served, such as a stop
/// that waits for the job, does not count as idle.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

// NOTE: writing a response has no time limit, so a client that stops
// reading a large reply keeps its connection until it reads or closes.

/// Maximum time to read a request body once its head has arrived. The
/// API's bodies are a few bytes.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum number of open control connections. `supervisorctl stop all`
/// opens one connection per job at once and keeps it until the job has
/// stopped, so the limit must exceed the number of jobs.
/// It bounds the descriptors and memory that clients can hold.
pub const MAX_CONNECTIONS: usize = 4096;

type Events = mpsc::UnboundedSender<Event>;
type Response = hyper::Response<Body>;

/// Serves the API on `listener` until `shutdown` fires, then lets each open
/// connection finish the request it is serving and returns when all have
/// closed.
pub async fn serve(listener: UnixListener, events: Events, mut shutdown: oneshot::Receiver<()>) {
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut rejections = RejectWarnings::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= MAX_CONNECTIONS {
                        reject_connection(&stream);
                        let _ = rejections.record(Instant::now());
                        continue;
                    }
                    let events = events.clone();
                    let mut closing_seen = closing_seen.clone();
                    connections.spawn(async move {
                        let activity = Arc::new(Activity::new(Instant::now()));
                        let serving = activity.clone();
                        let service = service_fn(move |request| {
                            let events = events.clone();
                            let busy = serving.begin_request();
                            async move {
                                let reply = handle(events, request).await;
                                drop(busy);
                                Ok::<_, std::convert::Infallible>(reply)
                            }
                        });
                        let connection = Http::new()
                            .http1_only(true)
                            .http1_header_read_timeout(REQUEST_HEAD_TIMEOUT)
                            .serve_connection(stream, service);
                        tokio::pin!(connection);
                        let result = tokio::select! {
                            result = connection.as_mut() => result,
                            _ = closing_seen.changed() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                            // Closes at once, because no request is in
                            // progress.
                            _ = activity.idle_for(KEEP_ALIVE_TIMEOUT) => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                        };
                        if let Err(error) = result {
                            // Timeouts of idle or stalled clients are
                            // routine, so they log at debug too.
                            tracing::debug!(%error, "control connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a control connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// Handles one HTTP request.
async fn handle(events: Events, request: hyper::Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let body = if parts.method == Method::POST {
        let read = tokio::time::timeout(REQUEST_BODY_TIMEOUT, read_body(&parts.headers, body));
        match read.await {
            Ok(Ok(body)) => body,
            Ok(Err(reply)) => return reply,
            Err(_) => {
                tracing::debug!(%path, timeout = ?REQUEST_BODY_TIMEOUT, "timed out reading a control request body");
                return error_reply(&ApiError {
                    status: 408,
                    message: format!(
                        "timed out reading the request body of POST {path} after {}s",
                        REQUEST_BODY_TIMEOUT.as_secs()
                    ),
                });
            }
        }
    } else {
        Vec::new()
    };
    route(events, &parts.method, &path, &query, &body).await
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(headers: &hyper::HeaderMap, mut body: Body) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error_reply(&ApiError {
            status: 413,
            message: format!("request body larger than {MAX_BODY} bytes"),
        })
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|error| {
            error_reply(&ApiError::bad_request(format!(
                "failed to read the request body: {error}"
            )))
        })?;
        if bytes.len() as u64 + chunk.len() as u64 > MAX_BODY {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Maps a method and path to the supervisor's request. Paths match with or
/// without one trailing slash; a path that exists with another method is a
/// 405.
async fn route(events: Events, method: &Method, path: &str, query: &str, body: &[u8]) -> Response {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let (get, post) = (Method::GET, Method::POST);
    let (expected, request) = match segments.as_slice() {
        ["v1", "info"] => (get, Some(Request::Info)),
        ["v1", "jobs"] => (get, Some(Request::List)),
        ["v1", "reread"] => (post, Some(Request::Reread)),
        ["v1", "update"] => (post, Some(Request::Update)),
        ["v1", "shutdown"] => {
            let wait = match wait_query(query, false) {
                Ok(wait) => wait,
                Err(error) => return error_reply(&error),
            };
            (post, Some(Request::Shutdown { wait }))
        }
        ["v1", "stats"] => (get, None),
        ["v1", "jobs", name] if !name.is_empty() => (
            get,
            Some(Request::Get {
                name: percent_decode(name),
            }),
        ),
        ["v1", "jobs", name, "spec"] if !name.is_empty() => (
            get,
            Some(Request::Spec {
                name: percent_decode(name),
            }),
        ),
        ["v1", "jobs", name, "signal"] if !name.is_empty() => {
            if method != post {
                return method_not_allowed(method, path, &post);
            }
            return match signal_request(path, name, body) {
                Ok(request) => dispatch(events, request).await,
                Err(error) => error_reply(&error),
            };
        }
        ["v1", "jobs", name, action @ ("start" | "stop" | "restart")] if !name.is_empty() => {
            if method != post {
                return method_not_allowed(method, path, &post);
            }
            let wait = match wait_query(query, true) {
                Ok(wait) => wait,
                Err(error) => return error_reply(&error),
            };
            let name = percent_decode(name);
            let request = match *action {
                "start" => Request::Start { name, wait },
                "stop" => Request::Stop { name, wait },
                _ => Request::Restart { name, wait },
            };
            (post, Some(request))
        }
        _ => {
            return error_reply(&ApiError {
                status: 404,
                message: format!(
                    "no such API path {path}: the API serves /v1/info, /v1/jobs, \
                     /v1/jobs/NAME, /v1/jobs/NAME/{{start,stop,restart,signal,spec}}, \
                     /v1/stats, /v1/reread, /v1/update and /v1/shutdown"
                ),
            })
        }
    };
    if method != expected {
        return method_not_allowed(method, path, &expected);
    }
    match request {
        Some(request) => dispatch(events, request).await,
        None => job_stats(events).await,
    }
}

/// Parses the body as JSON whatever its content type, because
/// `curl -d` sends JSON labelled as a form.
fn signal_request(path: &str, name: &str, body: &[u8]) -> Result<Request, ApiError> {
    let name = percent_decode(name);
    match serde_json::from_slice::<SignalRequest>(body) {
        Ok(request) => Ok(Request::Signal {
            name,
            signal: request.signal,
        }),
        Err(error) => Err(body_error(
            &format!("POST {path} (job {name:?})"),
            "a JSON object with the signal name or number, such as {\"signal\": \"HUP\"}",
            &error,
        )),
    }
}

/// Builds the 400 error for a request body that `endpoint` could not parse.
/// serde's text alone names JSON tokens, so the message states whether the
/// body is empty, not JSON or JSON of the wrong shape, keeps the line and
/// column, and ends with what the endpoint `expected`.
fn body_error(endpoint: &str, expected: &str, error: &serde_json::Error) -> ApiError {
    let position = format!("line {}, column {}", error.line(), error.column());
    let problem = match error.classify() {
        Category::Eof if error.line() == 1 && error.column() == 0 => {
            "the body is empty".to_string()
        }
        Category::Eof => format!("the body is not valid JSON (it ends early at {position})"),
        Category::Syntax => format!("the body is not valid JSON (syntax error at {position})"),
        Category::Data => {
            // serde_json appends " at line L column C" to its message.
            let text = error.to_string();
            let suffix = format!(" at line {} column {}", error.line(), error.column());
            let detail = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("the body is valid JSON of the wrong shape ({detail} at {position})")
        }
        Category::Io => format!("failed to read the body: {error}"),
    };
    ApiError::bad_request(format!(
        "invalid request body for {endpoint}: {problem}. Expected {expected}"
    ))
}

/// Reads `wait=true` or `wait=false` from a query string; other keys are
/// ignored and a missing `wait` means true.
fn wait_query(query: &str, default: bool) -> Result<bool, ApiError> {
    let mut wait = default;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key) != "wait" {
            continue;
        }
        wait = match percent_decode(value).as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid query: wait={other:?}: expected wait=true or wait=false"
                )))
            }
        };
    }
    Ok(wait)
}

/// Gets the containers from the supervisor task and reads their counters
/// on the blocking pool.
async fn job_stats(events: Events) -> Response {
    let (reply, receiver) = oneshot::channel();
    if events.send(Event::StatsTargets(reply)).is_err() {
        return error_reply(&ApiError::unavailable());
    }
    let Ok(targets) = receiver.await else {
        return error_reply(&ApiError::unavailable());
    };
    match tokio::task::spawn_blocking(move || stats::read_stats(targets)).await {
        Ok(list) => json_reply(StatusCode::OK, &list),
        Err(error) => {
            tracing::error!(%error, "reading job stats failed");
            error_reply(&ApiError::internal(format!(
                "failed to read job stats: {error}"
            )))
        }
    }
}

async fn dispatch(events: Events, request: Request) -> Response {
    let (reply, receiver) = oneshot::channel();
    if events.send(Event::Request(request, reply)).is_err() {
        return error_reply(&ApiError::unavailable());
    }
    match receiver.await {
        Ok(Ok(body)) => body_reply(StatusCode::OK, body),
        Ok(Err(error)) => error_reply(&error),
        Err(_) => error_reply(&ApiError::unavailable()),
    }
}

/// Decodes `%XX` escapes of a path segment or query part. Bytes that are not UTF-8 become U+FFFD, as in the job names
/// that the job list shows for such file names.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => body_reply(status, JsonBody::from(bytes)),
        Err(error) => {
            tracing::error!(%error, "encoding an API reply failed");
            let fallback = ErrorBody {
                error: format!("failed to encode the reply: {error}"),
            };
            let bytes = serde_json::to_vec(&fallback).unwrap_or_default();
            body_reply(StatusCode::INTERNAL_SERVER_ERROR, JsonBody::from(bytes))
        }
    }
}

fn body_reply(status: StatusCode, body: JsonBody) -> Response {
    let mut response = hyper::Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_reply(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: error.message.clone(),
    };
    json_reply(status, &body)
}

/// Returns a 405 reply whose `Allow` header names the one method the path
/// takes.
fn method_not_allowed(method: &Method, path: &str, allowed: &Method) -> Response {
    let mut response = error_reply(&ApiError {
        status: 405,
        message: format!("method {method} is not allowed on {path}; use {allowed}"),
    });
    if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Replies to every request with its own debug text. It stands in for
    /// the supervisor task so that only the routing is tested.
    fn echo_events() -> Events {
        let (events, mut receiver) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let Event::StatsTargets(reply) = event {
                    let _ = reply.send(Vec::new());
                    continue;
                }
                if let Event::Request(request, reply) = event {
                    let result = match &request {
                        Request::Get { name } if name == "missing" => {
                            Err(ApiError::not_found(name))
                        }
                        _ => Ok(JsonBody::from(
                            serde_json::to_vec(
                                &serde_json::json!({ "request": format!("{request:?}") }),
                            )
                            .expect("encodable"),
                        )),
                    };
                    let _ = reply.send(result);
                }
            }
        });
        events
    }

    async fn call(method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .expect("test request");
        let response = handle(echo_events(), request).await;
        let status = response.status().as_u16();
        let bytes = hyper::body::to_bytes(response.into_body())
            .await
            .expect("reply body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[tokio::test]
    async fn routes_map_to_requests() {
        let cases = [
            ("GET", "/v1/jobs", "", "List"),
            ("GET", "/v1/jobs/web", "", "Get { name: \"web\" }"),
            ("GET", "/v1/jobs/web/spec", "", "Spec { name: \"web\" }"),
            (
                "POST",
                "/v1/jobs/web/start",
                "",
                "Start { name: \"web\", wait: true }",
            ),
            (
                "POST",
                "/v1/jobs/web/stop?wait=false",
                "",
                "Stop { name: \"web\", wait: false }",
            ),
            (
                "POST",
                "/v1/jobs/web/restart",
                "",
                "Restart { name: \"web\", wait: true }",
            ),
            (
                "POST",
                "/v1/jobs/web/signal",
                r#"{"signal":"HUP"}"#,
                "Signal { name: \"web\", signal: \"HUP\" }",
            ),
            (
                "POST",
                "/v1/jobs/web/signal",
                r#"{"signal":1}"#,
                "Signal { name: \"web\", signal: \"1\" }",
            ),
            ("POST", "/v1/reread", "", "Reread"),
            ("POST", "/v1/update", "", "Update"),
            ("POST", "/v1/shutdown", "", "Shutdown { wait: false }"),
            (
                "POST",
                "/v1/shutdown?wait=true",
                "",
                "Shutdown { wait: true }",
            ),
            ("GET", "/v1/info", "", "Info"),
        ];
        for (method, path, body, expected) in cases {
            let (status, json) = call(method, path, body).await;
            assert_eq!(status, 200, "{method} {path}: {json}");
            assert_eq!(json["request"], expected, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn errors_are_json() {
        let (status, json) = call("GET", "/v1/jobs/missing", "").await;
        assert_eq!(status, 404);
        assert_eq!(json["error"], "no such job \"missing\"");

        let (status, json) = call("POST", "/v1/jobs/web/explode", "").await;
        assert_eq!(status, 404, "{json}");
        assert!(json["error"].is_string());

        let (status, json) = call("POST", "/v1/jobs/web/signal", "HUP").await;
        assert_eq!(status, 400);
        assert!(
            json["error"].as_str().unwrap().contains("job \"web\""),
            "{json}"
        );
    }

    #[tokio::test]
    async fn body_errors_name_endpoint_and_position() {
        let expected = "Expected a JSON object with the signal name or number, \
                        such as {\"signal\": \"HUP\"}";
        let prefix = "invalid request body for POST /v1/jobs/web/signal (job \"web\"): ";
        let cases = [
            (
                "HUP",
                "the body is not valid JSON (syntax error at line 1, column 1)",
            ),
            ("", "the body is empty"),
            (
                "{\"signal\":",
                "the body is not valid JSON (it ends early at line 1, column 10)",
            ),
            (
                "\"HUP\"",
                "the body is valid JSON of the wrong shape (invalid type: string \"HUP\", \
                 expected an object with a \"signal\" key at line 1, column 5)",
            ),
            (
                "{}",
                "the body is valid JSON of the wrong shape (missing field `signal` \
                 at line 1, column 2)",
            ),
            (
                "{\"signal\":\"HUP\",\"extra\":1}",
                "the body is valid JSON of the wrong shape (unknown field `extra`, \
                 expected `signal` at line 1, column 23)",
            ),
        ];
        for (body, problem) in cases {
            let (status, json) = call("POST", "/v1/jobs/web/signal", body).await;
            assert_eq!(status, 400, "{body}: {json}");
            let message = json["error"].as_str().unwrap();
            assert_eq!(message, format!("{prefix}{problem}. {expected}"), "{body}");
        }

        let (status, json) = call("GET", "/v2/nothing", "").await;
        assert_eq!(status, 404, "{json}");
        let message = json["error"].as_str().unwrap();
        assert!(
            message.starts_with("no such API path /v2/nothing: the API serves /v1/info"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn wrong_method_names_the_allowed_one() {
        let cases = [
            ("POST", "/v1/jobs", "GET"),
            ("GET", "/v1/update", "POST"),
            ("GET", "/v1/jobs/web/signal", "POST"),
            ("PUT", "/v1/jobs/web/restart", "POST"),
        ];
        for (method, path, allowed) in cases {
            let request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .expect("test request");
            let response = handle(echo_events(), request).await;
            assert_eq!(response.status().as_u16(), 405, "{method} {path}");
            let allow = response.headers().get(header::ALLOW);
            assert_eq!(
                allow.and_then(|value| value.to_str().ok()),
                Some(allowed),
                "{method} {path}"
            );
            let bytes = hyper::body::to_bytes(response.into_body())
                .await
                .expect("reply body");
            let json: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON error");
            let expected = format!("method {method} is not allowed on {path}; use {allowed}");
            assert_eq!(json["error"], expected.as_str());
        }
    }

    #[tokio::test]
    async fn bad_methods_queries_and_bodies_are_refused() {
        let (status, json) = call("POST", "/v1/jobs", "").await;
        assert_eq!(status, 405, "{json}");
        let (status, json) = call("GET", "/v1/jobs/web/stop", "").await;
        assert_eq!(status, 405, "{json}");
        let (status, json) = call("DELETE", "/v1/jobs/web", "").await;
        assert_eq!(status, 405, "{json}");

        let (status, json) = call("POST", "/v1/jobs/web/stop?wait=maybe", "").await;
        assert_eq!(status, 400, "{json}");
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("wait=true or wait=false"),
            "{json}"
        );

        let (status, json) = call(
            "POST",
            "/v1/jobs/web/signal",
            r#"{"signal":"HUP","extra":1}"#,
        )
        .await;
        assert_eq!(status, 400, "{json}");
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("unknown field `extra`"),
            "{json}"
        );

        let large = format!(r#"{{"signal":"HUP","padding":"{}"}}"#, "x".repeat(70_000));
        let (status, json) = call("POST", "/v1/jobs/web/signal", &large).await;
        assert_eq!(status, 413, "{json}");

        let (status, json) = call("GET", "/v1/jobs/", "").await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["request"], "List");
        let (status, json) = call("GET", "/v1/jobs//spec", "").await;
        assert_eq!(status, 404, "{json}");
    }

    #[tokio::test]
    async fn other_query_keys_are_ignored() {
        let (status, json) = call("POST", "/v1/jobs/web/start?x=1&wait=false", "").await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["request"], "Start { name: \"web\", wait: false }");
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("web"), "web");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("twin%EF%BF%BD"), "twin\u{FFFD}");
        assert_eq!(percent_decode("twin%FF"), "twin\u{FFFD}");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[tokio::test]
    async fn escaped_names_reach_requests() {
        let (status, json) = call("POST", "/v1/jobs/a%2Eb/stop", "").await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["request"], "Stop { name: \"a.b\", wait: true }");
    }

    #[tokio::test]
    async fn stats_route_reads_targets() {
        let (status, json) = call("GET", "/v1/stats", "").await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json, serde_json::json!({"jobs": []}));
    }
}
