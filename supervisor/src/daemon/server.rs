//! The control API: HTTP/1.1 with JSON bodies on the unix socket, served by
//! warp. Each request becomes an [`Event::Request`] for the supervisor task
//! and waits for its reply. The routes are listed in [`crate::api`].

use std::convert::Infallible;

use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply as _};

use crate::api::{ErrorBody, SignalRequest};
use crate::daemon::{stats, ApiError, Event, Request};

/// Largest request body accepted; the API's bodies are a few bytes.
const MAX_BODY: u64 = 64 * 1024;

type Events = mpsc::UnboundedSender<Event>;

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<bool>,
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(listener: UnixListener, events: Events, shutdown: oneshot::Receiver<()>) {
    let incoming = UnixListenerStream::new(listener);
    warp::serve(routes(events))
        .serve_incoming_with_graceful_shutdown(incoming, async {
            let _ = shutdown.await;
        })
        .await;
}

fn routes(events: Events) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_events = warp::any().map(move || events.clone());

    let info = warp::path!("v1" / "info")
        .and(warp::get())
        .and(with_events.clone())
        .and_then(|events| dispatch(events, Request::Info));
    let list = warp::path!("v1" / "jobs")
        .and(warp::get())
        .and(with_events.clone())
        .and_then(|events| dispatch(events, Request::List));
    let get = warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(with_events.clone())
        .and_then(|name: String, events| {
            let name = percent_decode(&name);
            dispatch(events, Request::Get { name })
        });
    let spec = warp::path!("v1" / "jobs" / String / "spec")
        .and(warp::get())
        .and(with_events.clone())
        .and_then(|name: String, events| {
            let name = percent_decode(&name);
            dispatch(events, Request::Spec { name })
        });
    let signal = warp::path!("v1" / "jobs" / String / "signal")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(with_events.clone())
        .and_then(signal_job);
    let action = warp::path!("v1" / "jobs" / String / String)
        .and(warp::post())
        .and(warp::query::<WaitQuery>())
        .and(with_events.clone())
        .and_then(job_action);
    let reread = warp::path!("v1" / "reread")
        .and(warp::post())
        .and(with_events.clone())
        .and_then(|events| dispatch(events, Request::Reread));
    let update = warp::path!("v1" / "update")
        .and(warp::post())
        .and(with_events.clone())
        .and_then(|events| dispatch(events, Request::Update));
    let stats = warp::path!("v1" / "stats")
        .and(warp::get())
        .and(with_events.clone())
        .and_then(job_stats);
    let shutdown = warp::path!("v1" / "shutdown")
        .and(warp::post())
        .and(with_events)
        .and_then(|events| dispatch(events, Request::Shutdown));

    info.or(list)
        .unify()
        .or(get)
        .unify()
        .or(spec)
        .unify()
        .or(signal)
        .unify()
        .or(action)
        .unify()
        .or(reread)
        .unify()
        .or(update)
        .unify()
        .or(stats)
        .unify()
        .or(shutdown)
        .unify()
        .recover(rejection_reply)
        .unify()
}

async fn job_action(
    name: String,
    action: String,
    query: WaitQuery,
    events: Events,
) -> Result<Response, Rejection> {
    let wait = query.wait.unwrap_or(true);
    let name = percent_decode(&name);
    let request = match action.as_str() {
        "start" => Request::Start { name, wait },
        "stop" => Request::Stop { name, wait },
        "restart" => Request::Restart { name, wait },
        _ => return Err(warp::reject::not_found()),
    };
    dispatch(events, request).await
}

/// Parses the body as JSON whatever its content type, because
/// `curl -d` sends JSON labelled as a form.
async fn signal_job(
    name: String,
    body: warp::hyper::body::Bytes,
    events: Events,
) -> Result<Response, Rejection> {
    let name = percent_decode(&name);
    let request: SignalRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return Ok(error_reply(&ApiError::bad_request(format!(
                "invalid signal request for job {name:?}: {error}: expected {{\"signal\": \"HUP\"}}"
            ))))
        }
    };
    dispatch(
        events,
        Request::Signal {
            name,
            signal: request.signal,
        },
    )
    .await
}

/// Gets the containers from the supervisor task and reads their counters
/// on the blocking pool.
async fn job_stats(events: Events) -> Result<Response, Rejection> {
    let (reply, receiver) = oneshot::channel();
    if events.send(Event::StatsTargets(reply)).is_err() {
        return Ok(error_reply(&ApiError::unavailable()));
    }
    let Ok(targets) = receiver.await else {
        return Ok(error_reply(&ApiError::unavailable()));
    };
    match tokio::task::spawn_blocking(move || stats::read_stats(targets)).await {
        Ok(list) => Ok(warp::reply::json(&list).into_response()),
        Err(error) => {
            tracing::error!(%error, "reading job stats failed");
            Ok(error_reply(&ApiError::internal(format!(
                "failed to read job stats: {error}"
            ))))
        }
    }
}

async fn dispatch(events: Events, request: Request) -> Result<Response, Rejection> {
    let (reply, receiver) = oneshot::channel();
    if events.send(Event::Request(request, reply)).is_err() {
        return Ok(error_reply(&ApiError::unavailable()));
    }
    let response = match receiver.await {
        Ok(Ok(body)) => warp::reply::json(&body).into_response(),
        Ok(Err(error)) => error_reply(&error),
        Err(_) => error_reply(&ApiError::unavailable()),
    };
    Ok(response)
}

/// Decodes `%XX` escapes of a path segment, which warp leaves in path
/// parameters. Bytes that are not UTF-8 become U+FFFD, as in the job names
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

fn error_reply(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: error.message.clone(),
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

async fn rejection_reply(rejection: Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (404, "no such API path: see /v1/jobs".to_string())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (405, "method not allowed on this API path".to_string())
    } else if let Some(error) = rejection.find::<warp::reject::InvalidQuery>() {
        (
            400,
            format!("invalid query: {error}: expected wait=true or wait=false"),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (413, format!("request body larger than {MAX_BODY} bytes"))
    } else {
        tracing::error!(?rejection, "unhandled API rejection");
        (500, format!("internal error: {rejection:?}"))
    };
    Ok(error_reply(&ApiError { status, message }))
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
                        _ => Ok(serde_json::json!({ "request": format!("{request:?}") })),
                    };
                    let _ = reply.send(result);
                }
            }
        });
        events
    }

    async fn call(method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let response = warp::test::request()
            .method(method)
            .path(path)
            .body(body)
            .reply(&routes(echo_events()))
            .await;
        let json = serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
        (response.status().as_u16(), json)
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
            ("POST", "/v1/reread", "", "Reread"),
            ("POST", "/v1/update", "", "Update"),
            ("POST", "/v1/shutdown", "", "Shutdown"),
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
        assert_eq!(json["error"], "job \"missing\" not found");

        let (status, json) = call("POST", "/v1/jobs/web/explode", "").await;
        assert_eq!(status, 404, "{json}");
        assert!(json["error"].is_string());

        let (status, json) = call("POST", "/v1/jobs/web/signal", "HUP").await;
        assert_eq!(status, 400);
        assert!(
            json["error"].as_str().unwrap().contains("job \"web\""),
            "{json}"
        );

        let (status, json) = call("GET", "/v2/nothing", "").await;
        assert_eq!(status, 404, "{json}");
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
