//! Limits of the control socket that hyper 0.14 does not provide: a cap on
//! open connections and a timeout for idle keep-alive connections. The
//! response write timeout is in [`super::write_timeout`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio::sync::Notify;

use crate::api::ErrorBody;
use crate::daemon::write_timeout::OutputObserver;

/// Minimum time between two warnings about rejected connections.
const REJECT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Maximum number of rejected connections kept open at once to read what
/// their clients send, see [`reject`]. Connections rejected beyond it are
/// closed right after the reply.
pub(super) const MAX_LINGERING: usize = 64;

/// Maximum time that a rejected connection stays open after its reply.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Returns the error message of a connection above `max_connections`.
pub(super) fn too_many_connections(max_connections: usize) -> String {
    format!(
        "too many open control connections (maximum {max_connections}): \
         try again once other clients have closed theirs"
    )
}

/// Returns the error message of a connection accepted while supervisord
/// writes its last responses before it exits.
pub(super) fn shutting_down() -> String {
    format!(
        "supervisord (pid {}) is shutting down: it exits once it has written \
         the responses of its open control connections",
        std::process::id()
    )
}

/// Sends a 503 reply with the error `message` on a connection that is not
/// served, then reads and discards what the client sends until it closes
/// the connection, or for at most [`LINGER_TIMEOUT`]. Linux resets a unix
/// socket connection that is closed with unread data, and the client's
/// read then fails with ECONNRESET instead of returning the reply.
pub(super) async fn reject(mut stream: UnixStream, message: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    send_unavailable(&stream, &message);
    let _ = stream.shutdown().await;
    let mut discard = [0u8; 4096];
    let drain = async {
        while let Ok(read) = stream.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// Writes a 503 reply with the error `message`. The reply fits into the
/// empty send buffer of a new unix socket, so the non-blocking write does
/// not hold up the accept loop, and a failed or short write only costs the
/// client the error message.
pub(super) fn send_unavailable(stream: &UnixStream, message: &str) {
    let body = serde_json::to_string(&ErrorBody {
        error: message.to_string(),
    })
    .unwrap_or_default();
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// Counter of rejected connections that logs at most one warning per
/// [`REJECT_WARNING_INTERVAL`], with the number rejected since the last one.
#[derive(Default)]
pub(super) struct RejectWarnings {
    last_warning: Option<Instant>,
    rejected: u64,
}

impl RejectWarnings {
    /// Counts one rejected connection and logs a warning unless one was
    /// logged within the interval. Returns the number that warning
    /// reported, or `None` when it was left out.
    pub(super) fn record(&mut self, now: Instant, max_connections: usize) -> Option<u64> {
        self.rejected += 1;
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < REJECT_WARNING_INTERVAL)
        {
            return None;
        }
        self.last_warning = Some(now);
        let rejected = std::mem::take(&mut self.rejected);
        tracing::warn!(
            rejected,
            max_connections,
            "rejected control connections: too many are open"
        );
        Some(rejected)
    }
}

/// Requests in progress on one connection, whether hyper has response
/// bytes that it has not written to the socket yet, when the connection
/// last became idle, and the last request's method and URI.
pub(super) struct Activity {
    state: Mutex<ActivityState>,
    /// Notified whenever the connection may have become idle.
    idle_changed: Notify,
}

struct ActivityState {
    in_progress: usize,
    output_pending: bool,
    idle_since: Instant,
    last_request: String,
}

/// A request in progress. Dropping it marks the connection idle from then
/// on when no other request is in progress and no response is being
/// written.
pub(super) struct Busy {
    activity: Arc<Activity>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.end_request(Instant::now());
    }
}

impl Activity {
    pub(super) fn new(now: Instant) -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                output_pending: false,
                idle_since: now,
                last_request: String::new(),
            }),
            idle_changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection busy with `request`, such as `GET /v1/jobs`,
    /// until the returned guard is dropped.
    pub(super) fn begin_request(self: &Arc<Self>, request: String) -> Busy {
        let mut state = self.lock();
        state.in_progress += 1;
        state.last_request = request;
        Busy {
            activity: self.clone(),
        }
    }

    /// Returns the method and URI of the last request that began, whose
    /// response hyper writes after the request ended. It is empty before
    /// the first request.
    pub(super) fn last_request(&self) -> String {
        self.lock().last_request.clone()
    }

    /// Returns the deadline at which the connection has been idle for
    /// `timeout`, or `None` while a request is in progress or a response
    /// is being written.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let state = self.lock();
        (state.in_progress == 0 && !state.output_pending).then(|| state.idle_since + timeout)
    }

    /// Completes once the connection has had no request in progress and
    /// no response being written for `timeout`. With a zero `timeout` it
    /// completes as soon as the connection is idle.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        loop {
            // Registered before the state is read, so that a change in
            // between still wakes this task.
            let changed = self.idle_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.idle_deadline(timeout) {
                Some(deadline) if deadline <= Instant::now() => return,
                // A request that begins and ends meanwhile moves the
                // deadline later, which the check at this one finds.
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => changed.await,
            }
        }
    }

    fn end_request(&self, now: Instant) {
        let mut state = self.lock();
        state.in_progress = state.in_progress.saturating_sub(1);
        state.idle_since = now;
        drop(state);
        self.idle_changed.notify_waiters();
    }

    fn begin_output(&self) {
        self.lock().output_pending = true;
    }

    fn end_output(&self, now: Instant) {
        let mut state = self.lock();
        if !state.output_pending {
            return;
        }
        state.output_pending = false;
        state.idle_since = now;
        drop(state);
        self.idle_changed.notify_waiters();
    }
}

/// An activity observes the output of its connection's stream: response
/// bytes are pending from hyper's first write of a response until its next
/// completed flush.
impl OutputObserver for Arc<Activity> {
    fn output_began(&self) {
        self.begin_output();
    }

    fn output_flushed(&self) {
        self.end_output(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::write_timeout::WriteTimeout;

    #[test]
    fn reject_warnings_are_rate_limited() {
        let mut warnings = RejectWarnings::default();
        let start = Instant::now();
        assert_eq!(warnings.record(start, 8), Some(1));
        assert_eq!(warnings.record(start + Duration::from_secs(1), 8), None);
        assert_eq!(warnings.record(start + Duration::from_secs(2), 8), None);
        let later = start + REJECT_WARNING_INTERVAL;
        assert_eq!(warnings.record(later, 8), Some(3));
    }

    #[tokio::test]
    async fn idle_waits_for_response_flush() {
        use tokio::io::AsyncWriteExt;

        let activity = Arc::new(Activity::new(Instant::now()));
        let (server, _client) = UnixStream::pair().unwrap();
        let mut stream =
            WriteTimeout::with_observer(server, Duration::from_secs(10), activity.clone());
        stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let timeout = Duration::from_millis(300);
        let idle = tokio::time::timeout(timeout, activity.idle_for(Duration::ZERO)).await;
        assert!(idle.is_err(), "idle while a response was not flushed");

        let waiting = activity.clone();
        let idle = tokio::spawn(async move { waiting.idle_for(Duration::ZERO).await });
        stream.flush().await.unwrap();
        tokio::time::timeout(timeout, idle)
            .await
            .expect("idle once the response was flushed")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_waits_for_requests_to_end() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let busy = activity.begin_request("POST /v1/jobs/web/stop".to_string());
        assert_eq!(activity.last_request(), "POST /v1/jobs/web/stop");
        let timeout = Duration::from_millis(100);
        let idle = tokio::time::timeout(timeout * 3, activity.idle_for(timeout)).await;
        assert!(idle.is_err(), "idle while a request was in progress");

        drop(busy);
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert!(ended.elapsed() >= timeout);
    }
}
