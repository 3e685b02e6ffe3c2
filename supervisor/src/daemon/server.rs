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
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::api::{BatchRequest, ErrorBody, SignalRequest, MAX_BATCH_BODY};
use crate::daemon::connections::{
    reject, send_unavailable, shutting_down, too_many_connections, Activity, RejectWarnings,
    MAX_LINGERING,
};
use crate::daemon::write_timeout::{WriteTimedOut, WriteTimeout};
use crate::daemon::{stats, ApiError, Event, JsonBody, Reply, Request};

/// Largest request body accepted outside `/v1/batch`; the other bodies
/// are a few bytes.
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

/// Maximum time that a response write may wait on a full socket while the
/// client reads none of it. The connection is closed then.
pub const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum time that supervisord waits, once its jobs are handled, for
/// the open control connections to finish their responses before it
/// exits. [`RESPONSE_WRITE_TIMEOUT`] ends a client that stops reading, and
/// this limit ends one that keeps reading too slowly to finish.
pub const EXIT_RESPONSE_LIMIT: Duration = Duration::from_secs(20);

/// Maximum time to read a request body once its head has arrived. The
/// API's bodies are a few bytes, and those of `/v1/batch` at most
/// [`MAX_BATCH_BODY`].
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Default maximum number of open control connections, which
/// `supervisord --max-connections` changes. It bounds the descriptors and
/// memory that clients can hold. supervisorctl uses one connection per
/// command, and one per [`MAX_BATCH_BODY`] of job names for actions on
/// many jobs.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

type Events = mpsc::UnboundedSender<Event>;
type Response = hyper::Response<Body>;

/// Serves the API on `listener` until `shutdown` fires, then lets each open
/// connection finish the request it is serving and write its response,
/// and returns when all have closed. Connections above `max_connections`,
/// and those accepted after `shutdown`, get a 503 reply.
pub async fn serve(
    listener: UnixListener,
    events: Events,
    max_connections: usize,
    mut shutdown: oneshot::Receiver<()>,
) {
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut rejected = Rejected::default();
    let mut rejections = RejectWarnings::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= max_connections {
                        rejected.add(stream, too_many_connections(max_connections));
                        let _ = rejections.record(Instant::now(), max_connections);
                        continue;
                    }
                    connections.spawn(serve_connection(stream, events.clone(), closing_seen.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a control connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
    let _ = closing.send(true);
    while connections.try_join_next().is_some() {}
    if !connections.is_empty() {
        tracing::info!(
            open = connections.len(),
            "finishing the responses of open control connections before exit"
        );
    }
    // The socket stays bound until the last response is written, and each
    // client that connects meanwhile gets a 503 reply saying that
    // supervisord is shutting down. A refused connect would read as
    // supervisord not running while its process still exists.
    let limit = tokio::time::sleep(EXIT_RESPONSE_LIMIT);
    tokio::pin!(limit);
    let mut cut = false;
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() {
                break;
            },
            () = &mut limit, if !cut => {
                cut = true;
                tracing::warn!(
                    open = connections.len(),
                    limit = ?EXIT_RESPONSE_LIMIT,
                    "closing control connections whose responses are still being read at exit"
                );
                connections.abort_all();
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => rejected.add(stream, shutting_down()),
                Err(error) => {
                    tracing::warn!(%error, "accepting a control connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
    drop(listener);
    rejected.finish().await;
}

/// Connections that got a 503 reply and are read until their clients
/// close them, at most [`MAX_LINGERING`] at a time.
#[derive(Default)]
struct Rejected {
    lingering: JoinSet<()>,
}

impl Rejected {
    /// Replies `message` on `stream` and keeps it open to read the request,
    /// or closes it after the reply when [`MAX_LINGERING`] are open.
    fn add(&mut self, stream: UnixStream, message: String) {
        while self.lingering.try_join_next().is_some() {}
        if self.lingering.len() >= MAX_LINGERING {
            send_unavailable(&stream, &message);
            return;
        }
        self.lingering.spawn(reject(stream, message));
    }

    /// Waits until every rejected connection has closed.
    async fn finish(mut self) {
        while self.lingering.join_next().await.is_some() {}
    }
}

/// Serves the requests of one connection until the client closes it, a
/// timeout ends it, or `closing` changes. After that change the request in
/// progress is finished and its response written first, and each response
/// carries `Connection: close`.
async fn serve_connection(stream: UnixStream, events: Events, mut closing: watch::Receiver<bool>) {
    let peer = describe_peer(&stream);
    let activity = Arc::new(Activity::new(Instant::now()));
    let serving = activity.clone();
    let closing_seen = closing.clone();
    let service = service_fn(move |request: hyper::Request<Body>| {
        let events = events.clone();
        let closing = closing_seen.clone();
        let busy = serving.begin_request(format!("{} {}", request.method(), request.uri()));
        async move {
            let mut reply = handle(events, request).await;
            // hyper closes the connection once this response is written,
            // so a keep-alive client sends no further request.
            if *closing.borrow() {
                reply
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(busy);
            Ok::<_, std::convert::Infallible>(reply)
        }
    });
    let stream = WriteTimeout::with_observer(stream, RESPONSE_WRITE_TIMEOUT, activity.clone());
    let connection = Http::new()
        .http1_only(true)
        .http1_header_read_timeout(REQUEST_HEAD_TIMEOUT)
        .serve_connection(stream, service);
    tokio::pin!(connection);
    // hyper 0.14 drops the unwritten rest of a response that ends its
    // connection, such as the reply to a `Connection: close` request, when
    // `graceful_shutdown` comes before the socket has taken all of it.
    // `Dispatcher::disable_keep_alive` (`src/proto/h1/dispatch.rs` of
    // hyper 0.14.32) closes such a connection at once. So both cases below
    // shut a connection down only while it is idle, and
    // RESPONSE_WRITE_TIMEOUT bounds the wait for a client that stops
    // reading.
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = closing.changed() => {
            tokio::select! {
                result = connection.as_mut() => result,
                _ = activity.idle_for(Duration::ZERO) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
        // Closes at once, because no request is in progress and no
        // response is being written.
        _ = activity.idle_for(KEEP_ALIVE_TIMEOUT) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    let Err(error) = result else {
        return;
    };
    let exiting = *closing.borrow();
    match WriteTimedOut::find(&error) {
        Some(timed_out) if exiting => tracing::warn!(
            %peer,
            request = %activity.last_request(),
            unread_bytes = timed_out.unread,
            timeout = ?timed_out.timeout,
            "cut a response at exit: the client stopped reading it"
        ),
        Some(timed_out) => tracing::warn!(
            %peer,
            request = %activity.last_request(),
            unread_bytes = timed_out.unread,
            timeout = ?timed_out.timeout,
            "closed a control connection whose client stopped reading the response"
        ),
        // Timeouts of idle or stalled clients are routine, so they log at
        // debug too.
        None => tracing::debug!(%peer, %error, "control connection ended with an error"),
    }
}

/// Names the process at the other end of `stream` by its PID and UID, as
/// the kernel recorded them at connect.
fn describe_peer(stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(credentials) => match credentials.pid() {
            Some(pid) => format!("pid {pid} uid {}", credentials.uid()),
            None => format!("uid {}", credentials.uid()),
        },
        Err(error) => format!("unknown ({error})"),
    }
}

/// Handles one HTTP request.
async fn handle(events: Events, request: hyper::Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let body = if parts.method == Method::POST {
        let limit = if is_batch_path(&path) {
            MAX_BATCH_BODY as u64
        } else {
            MAX_BODY
        };
        let read =
            tokio::time::timeout(REQUEST_BODY_TIMEOUT, read_body(&parts.headers, body, limit));
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

/// Returns whether `path` is below `/v1/batch/`, whose bodies may be up to
/// [`MAX_BATCH_BODY`] bytes.
fn is_batch_path(path: &str) -> bool {
    path.starts_with("/v1/batch/")
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    headers: &hyper::HeaderMap,
    mut body: Body,
    limit: u64,
) -> Result<Vec<u8>, Response> {
    let too_large = || {
        error_reply(&ApiError {
            status: 413,
            message: format!("request body larger than {limit} bytes"),
        })
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|error| {
            error_reply(&ApiError::bad_request(format!(
                "failed to read the request body: {error}"
            )))
        })?;
        if bytes.len() as u64 + chunk.len() as u64 > limit {
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
        ["v1", "batch", action @ ("start" | "stop" | "restart" | "signal")] => {
            if method != post {
                return method_not_allowed(method, path, &post);
            }
            return match batch_requests(path, action, query, body) {
                Ok(requests) => batch(events, requests).await,
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
                     /v1/batch/{{start,stop,restart,signal}}, /v1/stats, /v1/reread, \
                     /v1/update and /v1/shutdown"
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

/// Parses the body of `POST /v1/batch/ACTION` into one request per job
/// name, in the order of the names.
fn batch_requests(
    path: &str,
    action: &str,
    query: &str,
    body: &[u8],
) -> Result<Vec<(String, Request)>, ApiError> {
    let endpoint = format!("POST {path}");
    let expected = if action == "signal" {
        "a JSON object with the job names and the signal name or number, such as \
         {\"names\": [\"web\", \"db\"], \"signal\": \"HUP\"}"
    } else {
        "a JSON object with the job names, such as {\"names\": [\"web\", \"db\"]}"
    };
    let batch: BatchRequest =
        serde_json::from_slice(body).map_err(|error| body_error(&endpoint, expected, &error))?;
    let invalid = |problem: &str| {
        ApiError::bad_request(format!(
            "invalid request body for {endpoint}: {problem}. Expected {expected}"
        ))
    };
    let request_for: Box<dyn Fn(String) -> Request> = match (action, batch.signal) {
        ("signal", Some(signal)) => Box::new(move |name| Request::Signal {
            name,
            signal: signal.clone(),
        }),
        ("signal", None) => return Err(invalid("the signal is missing")),
        (_, Some(_)) => return Err(invalid("a signal is valid only for /v1/batch/signal")),
        ("start", None) => {
            let wait = wait_query(query, true)?;
            Box::new(move |name| Request::Start { name, wait })
        }
        ("stop", None) => {
            let wait = wait_query(query, true)?;
            Box::new(move |name| Request::Stop { name, wait })
        }
        (_, None) => {
            let wait = wait_query(query, true)?;
            Box::new(move |name| Request::Restart { name, wait })
        }
    };
    let requests = batch
        .names
        .into_iter()
        .map(|name| (name.clone(), request_for(name)))
        .collect();
    Ok(requests)
}

/// Sends every request to the supervisor task at once, so that the jobs
/// are handled in parallel, and replies with a
/// [`crate::api::BatchReply`] once every job's reply has arrived.
async fn batch(events: Events, requests: Vec<(String, Request)>) -> Response {
    let mut pending = Vec::with_capacity(requests.len());
    for (name, request) in requests {
        let (reply, receiver) = oneshot::channel();
        if events.send(Event::Request(request, reply)).is_err() {
            return error_reply(&ApiError::unavailable());
        }
        pending.push((name, receiver));
    }
    let mut body = b"{\"results\":[".to_vec();
    for (index, (name, receiver)) in pending.into_iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        let reply = receiver
            .await
            .unwrap_or_else(|_| Err(ApiError::unavailable()));
        write_batch_result(&mut body, &name, reply);
    }
    body.extend_from_slice(b"]}");
    body_reply(StatusCode::OK, JsonBody::from(body))
}

/// Appends one [`crate::api::BatchResult`] to `body`: the job's view as the
/// supervisor task encoded it, or the error that the request for that job
/// alone would have returned.
fn write_batch_result(body: &mut Vec<u8>, name: &str, reply: Reply) {
    let name = serde_json::Value::from(name).to_string();
    match reply {
        Ok(job) => {
            body.extend_from_slice(format!("{{\"name\":{name},\"status\":200,\"job\":").as_bytes());
            body.extend_from_slice(&job);
            body.push(b'}');
        }
        Err(error) => {
            let message = serde_json::Value::from(error.message).to_string();
            let status = error.status;
            body.extend_from_slice(
                format!("{{\"name\":{name},\"status\":{status},\"error\":{message}}}").as_bytes(),
            );
        }
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
                        Request::Get { name }
                        | Request::Stop { name, .. }
                        | Request::Signal { name, .. }
                            if name == "missing" =>
                        {
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
        assert_eq!(json["jobs"], serde_json::json!([]));
        assert!(
            json["host_memory_bytes"]
                .as_u64()
                .is_some_and(|bytes| bytes > 0),
            "{json}"
        );
    }

    #[tokio::test]
    async fn batch_routes_map_to_requests() {
        let cases = [
            (
                "/v1/batch/start",
                r#"{"names":["web","db"]}"#,
                [
                    "Start { name: \"web\", wait: true }",
                    "Start { name: \"db\", wait: true }",
                ],
            ),
            (
                "/v1/batch/stop?wait=false",
                r#"{"names":["web","db"]}"#,
                [
                    "Stop { name: \"web\", wait: false }",
                    "Stop { name: \"db\", wait: false }",
                ],
            ),
            (
                "/v1/batch/restart/",
                r#"{"names":["web","db"]}"#,
                [
                    "Restart { name: \"web\", wait: true }",
                    "Restart { name: \"db\", wait: true }",
                ],
            ),
            (
                "/v1/batch/signal",
                r#"{"names":["web","db"],"signal":1}"#,
                [
                    "Signal { name: \"web\", signal: \"1\" }",
                    "Signal { name: \"db\", signal: \"1\" }",
                ],
            ),
        ];
        for (path, body, expected) in cases {
            let (status, json) = call("POST", path, body).await;
            assert_eq!(status, 200, "{path}: {json}");
            let results = json["results"].as_array().expect("a results array");
            assert_eq!(results.len(), 2, "{path}: {json}");
            for (result, (name, request)) in results.iter().zip(["web", "db"].iter().zip(expected))
            {
                assert_eq!(result["name"], *name, "{path}");
                assert_eq!(result["status"], 200, "{path}");
                assert_eq!(result["job"]["request"], request, "{path}");
            }
        }

        let (status, json) = call("POST", "/v1/batch/stop", r#"{"names":[]}"#).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json, serde_json::json!({"results": []}));
    }

    #[tokio::test]
    async fn batch_results_carry_each_error() {
        let body = r#"{"names":["web","missing","web"],"signal":"HUP"}"#;
        let (status, json) = call("POST", "/v1/batch/signal", body).await;
        assert_eq!(status, 200, "{json}");
        let results = json["results"].as_array().unwrap();
        let names: Vec<&str> = results
            .iter()
            .map(|result| result["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "missing", "web"]);
        assert_eq!(results[1]["status"], 404);
        assert_eq!(results[1]["error"], "no such job \"missing\"");
        assert!(results[1].get("job").is_none(), "{json}");
        assert_eq!(results[2]["status"], 200);

        let reply: crate::api::BatchReply = serde_json::from_value(serde_json::json!({
            "results": [results[1].clone()]
        }))
        .expect("the error result decodes as a BatchResult");
        assert_eq!(reply.results[0].status, 404);
        assert_eq!(reply.results[0].job, None);
    }

    #[tokio::test]
    async fn bad_batch_requests_are_refused() {
        let cases = [
            (
                "/v1/batch/signal",
                r#"{"names":["web"]}"#,
                400,
                "the signal is missing",
            ),
            (
                "/v1/batch/stop",
                r#"{"names":["web"],"signal":"HUP"}"#,
                400,
                "a signal is valid only for /v1/batch/signal",
            ),
            (
                "/v1/batch/stop",
                r#"{"names":["web"],"x":1}"#,
                400,
                "unknown field `x`",
            ),
            (
                "/v1/batch/stop",
                r#"["web"]"#,
                400,
                "the body is valid JSON of the wrong shape",
            ),
            ("/v1/batch/stop", "", 400, "the body is empty"),
            (
                "/v1/batch/stop?wait=soon",
                r#"{"names":["web"]}"#,
                400,
                "wait=true or wait=false",
            ),
            (
                "/v1/batch/explode",
                r#"{"names":["web"]}"#,
                404,
                "no such API path",
            ),
        ];
        for (path, body, expected_status, expected_message) in cases {
            let (status, json) = call("POST", path, body).await;
            assert_eq!(status, expected_status, "{path} {body}: {json}");
            let message = json["error"].as_str().unwrap_or_default();
            assert!(
                message.contains(expected_message),
                "{path} {body}: {message}"
            );
        }
        let (status, json) = call("GET", "/v1/batch/stop", "").await;
        assert_eq!(status, 405, "{json}");
    }

    #[tokio::test]
    async fn batch_bodies_may_be_larger() {
        let names: Vec<String> = (0..5000)
            .map(|index| format!("a-longer-job-name-{index:05}"))
            .collect();
        let body = serde_json::json!({ "names": names }).to_string();
        assert!(body.len() as u64 > MAX_BODY, "{} bytes", body.len());
        let (status, json) = call("POST", "/v1/batch/stop", &body).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["results"].as_array().unwrap().len(), 5000);

        let large = format!(r#"{{"names":["{}"]}}"#, "x".repeat(MAX_BATCH_BODY));
        let (status, json) = call("POST", "/v1/batch/stop", &large).await;
        assert_eq!(status, 413, "{json}");
        // Other paths keep the smaller limit.
        let (status, json) = call("POST", "/v1/jobs/web/signal", &body).await;
        assert_eq!(status, 413, "{json}");
    }
}
