//! A blocking HTTP/1.1 client for the control socket: one request per
//! connection (`Connection: close`), so supervisorctl needs no async runtime
//! and a status call costs one connect, one write and one read.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_config::DurationValue;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

use serde::de::DeserializeOwned;

use crate::api::ErrorBody;

/// An error talking to supervisord.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {socket}: supervisord is not running or the socket is not accessible"
    )]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "permission denied on {socket}: run supervisorctl as root, or as a member of \
         the group that supervisord's --socket-group names"
    )]
    Denied { socket: PathBuf },
    #[error(
        "{socket} is not a socket: pass the control socket, RUN_DIR/supervisor.sock, \
         with --socket or CORRAL_SUPERVISOR_SOCKET"
    )]
    NotSocket { socket: PathBuf },
    #[error(
        "supervisord on {socket} did not respond within {}: it may be stopped or overloaded; \
         pass a longer --timeout to wait longer",
        DurationValue(*timeout)
    )]
    Timeout { socket: PathBuf, timeout: Duration },
    #[error("failed to exchange a request with supervisord on {socket}")]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "supervisord on {socket} closed the connection without a reply: it may have \
         exited or restarted; check `supervisorctl status`"
    )]
    Closed { socket: PathBuf },
    #[error("malformed HTTP response from supervisord: {reason}")]
    Malformed { reason: String },
    #[error("invalid JSON in the response to {method} {path}")]
    Json {
        method: String,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// An error status and message that supervisord returned.
    #[error("{message}")]
    Api { status: u16, message: String },
}

impl ClientError {
    /// True when supervisord could not be reached at all, did not respond
    /// in time, closed the connection without a response, or served no
    /// request: a 503 reply, sent while it shuts down or when too many
    /// control connections are open.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Denied { .. }
                | ClientError::NotSocket { .. }
                | ClientError::Timeout { .. }
                | ClientError::Closed { .. }
                | ClientError::Api { status: 503, .. }
        )
    }

    /// Returns the HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Returns whether `path` exists and is something other than a socket.
fn exists_but_not_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;

    std::fs::metadata(path).is_ok_and(|metadata| !metadata.file_type().is_socket())
}

/// Returns whether `error` means that supervisord closed the connection,
/// as when it exits with a request unread.
fn is_dropped(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Returns the first header called `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Client for one control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// Limit of one whole request: connect, send and the complete response.
    timeout: Option<Duration>,
}

impl Client {
    /// Returns a client whose requests wait as long as supervisord takes.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            timeout: None,
        }
    }

    /// Sets the limit of each request; `None` waits without one.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sends `GET path` and decodes the JSON body, or the API error.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("GET", path, None)
    }

    /// Sends `POST path` with an optional JSON body and decodes the reply.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        self.call("POST", path, body)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let payload = body.map(|value| value.to_string().into_bytes());
        let response = self.request(method, path, payload.as_deref())?;
        if !(200..300).contains(&response.status) {
            return Err(api_error(&response));
        }
        serde_json::from_slice(&response.body).map_err(|source| ClientError::Json {
            method: method.to_string(),
            path: path.to_string(),
            source,
        })
    }

    /// Sends one request and reads the whole response, within the
    /// client's timeout when one is set.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let mut stream = self.connect(deadline)?;
        let io_error = |source: io::Error| {
            if matches!(
                source.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                return self.timed_out();
            }
            ClientError::Io {
                socket: self.socket.clone(),
                source,
            }
        };
        let closed = || ClientError::Closed {
            socket: self.socket.clone(),
        };

        let request = encode_request(method, path, body);
        let mut written = 0;
        while written < request.len() {
            stream
                .set_write_timeout(self.remaining(deadline)?)
                .map_err(io_error)?;
            match stream.write(&request[written..]) {
                Ok(0) => return Err(io_error(io::ErrorKind::WriteZero.into())),
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_dropped(&error) => return Err(closed()),
                Err(error) => return Err(io_error(error)),
            }
        }

        let mut raw = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            stream
                .set_read_timeout(self.remaining(deadline)?)
                .map_err(io_error)?;
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => raw.extend_from_slice(&buffer[..count]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if raw.is_empty() && is_dropped(&error) => return Err(closed()),
                Err(error) => return Err(io_error(error)),
            }
        }
        if raw.is_empty() {
            return Err(closed());
        }
        parse_response(&raw)
    }

    /// Connects to the socket. A listener whose backlog is full, as that of
    /// a stopped supervisord becomes, makes a blocking connect wait without
    /// a limit, so the connect is non-blocking and retried until the
    /// deadline.
    fn connect(&self, deadline: Option<Instant>) -> Result<UnixStream, ClientError> {
        let connect_error = |errno: Errno| match errno {
            Errno::EACCES => ClientError::Denied {
                socket: self.socket.clone(),
            },
            // connect(2) on a path that is not a socket fails with
            // ECONNREFUSED, the same error as a socket without a listener.
            Errno::ECONNREFUSED | Errno::ENOTSOCK if exists_but_not_socket(&self.socket) => {
                ClientError::NotSocket {
                    socket: self.socket.clone(),
                }
            }
            errno => ClientError::Connect {
                socket: self.socket.clone(),
                source: io::Error::from(errno),
            },
        };
        let address = UnixAddr::new(self.socket.as_path()).map_err(connect_error)?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(connect_error)?;
        loop {
            match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
                Ok(()) => break,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    self.remaining(deadline)?;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(errno) => return Err(connect_error(errno)),
            }
        }
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|source| ClientError::Io {
                socket: self.socket.clone(),
                source,
            })?;
        Ok(stream)
    }

    /// Returns the time left until `deadline`, `None` without one, or the
    /// timeout error once it passed.
    fn remaining(&self, deadline: Option<Instant>) -> Result<Option<Duration>, ClientError> {
        let Some(deadline) = deadline else {
            return Ok(None);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        Ok(Some(left))
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            socket: self.socket.clone(),
            timeout: self.timeout.unwrap_or_default(),
        }
    }
}

/// Builds the request bytes. The `Host` header is required by HTTP/1.1 and
/// has no meaning on a unix socket.
pub fn encode_request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/json\r\n"
    )
    .into_bytes();
    match body {
        Some(body) => {
            request.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            request.extend_from_slice(body);
        }
        None => request.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    request
}

/// Parses a complete HTTP/1.1 response: status line, headers, and a body
/// framed by `Content-Length`, by chunked transfer coding, or by the end of
/// the connection.
pub fn parse_response(raw: &[u8]) -> Result<Response, ClientError> {
    let malformed = |reason: &str| ClientError::Malformed {
        reason: reason.to_string(),
    };
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| malformed("no end of headers"))?;
    let head =
        std::str::from_utf8(&raw[..head_end]).map_err(|_| malformed("headers are not UTF-8"))?;
    let rest = &raw[head_end + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(&format!(
            "unexpected status line {status_line:?}"
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed(&format!("no status code in {status_line:?}")))?;

    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(&format!("header without colon: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };

    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"));
    if chunked {
        response.body = decode_chunked(rest)?;
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| malformed(&format!("invalid content-length {length:?}")))?;
        if rest.len() < length {
            return Err(malformed(&format!(
                "body has {} bytes, content-length is {length}",
                rest.len()
            )));
        }
        response.body = rest[..length].to_vec();
    } else {
        response.body = rest.to_vec();
    }
    Ok(response)
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let malformed = |reason: String| ClientError::Malformed { reason };
    let mut body = Vec::new();
    loop {
        let line_end =
            find(rest, b"\r\n").ok_or_else(|| malformed("truncated chunk size".to_string()))?;
        let size_field = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| malformed("chunk size is not UTF-8".to_string()))?;
        // Chunk extensions after ';' carry nothing this client uses.
        let size_hex = size_field.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| malformed(format!("invalid chunk size {size_hex:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(malformed(format!(
                "chunk of {size} bytes truncated at {}",
                rest.len()
            )));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn api_error(response: &Response) -> ClientError {
    let message = match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(body) => body.error,
        Err(_) => format!(
            "supervisord returned HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        ),
    };
    ClientError::Api {
        status: response.status,
        message,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn parses_content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"a\": true}";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.body, b"{\"a\": true}");
    }

    #[test]
    fn parses_chunked_body() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"hello, world");
    }

    #[test]
    fn parses_body_until_close() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nrest of stream";
        assert_eq!(parse_response(raw).unwrap().body, b"rest of stream");
    }

    #[test]
    fn rejects_malformed_responses() {
        let cases: [&[u8]; 6] = [
            b"",
            b"HTTP/1.1 200 OK\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ];
        for raw in cases {
            let error = parse_response(raw).unwrap_err();
            assert!(
                matches!(error, ClientError::Malformed { .. }),
                "{:?}: {error:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_has_host_and_length() {
        let request = encode_request("POST", "/v1/jobs/web/signal", Some(b"{\"signal\":\"HUP\"}"));
        let text = String::from_utf8(request).unwrap();
        assert!(
            text.starts_with("POST /v1/jobs/web/signal HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nHost: localhost\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Length: 16\r\n\r\n{\"signal\""),
            "{text}"
        );
        let get = String::from_utf8(encode_request("GET", "/v1/jobs", None)).unwrap();
        assert!(get.ends_with("Content-Length: 0\r\n\r\n"), "{get}");
    }

    #[test]
    fn api_error_message_from_json() {
        let body = r#"{"error":"no such job \"web\""}"#;
        let raw = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = parse_response(raw.as_bytes()).unwrap();
        let error = api_error(&response);
        assert_eq!(error.status(), Some(404));
        assert_eq!(error.to_string(), "no such job \"web\"");
    }

    #[test]
    fn service_unavailable_is_unreachable() {
        let body = r#"{"error":"supervisord (pid 7) is shutting down"}"#;
        let raw = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = parse_response(raw.as_bytes()).unwrap();
        let error = api_error(&response);
        assert!(error.is_unreachable(), "{error:?}");
        assert_eq!(error.to_string(), "supervisord (pid 7) is shutting down");

        let internal = ClientError::Api {
            status: 500,
            message: "failed".to_string(),
        };
        assert!(!internal.is_unreachable());
    }

    #[test]
    fn unreachable_socket_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("missing.sock");
        let error = Client::new(&socket)
            .get::<serde_json::Value>("/v1/jobs")
            .unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&socket.display().to_string()), "{message}");
        assert!(message.contains("supervisord is not running"), "{message}");
    }

    #[test]
    fn path_that_is_no_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        for path in [dir.path().to_path_buf(), file] {
            let error = Client::new(&path)
                .get::<serde_json::Value>("/v1/jobs")
                .unwrap_err();
            assert!(matches!(error, ClientError::NotSocket { .. }), "{error:?}");
            assert!(error.is_unreachable());
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("{} is not a socket", path.display())),
                "{message}"
            );
        }
    }

    #[test]
    fn connection_closed_without_response_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // A supervisord killed while it handled a request: the first
        // connection is closed with part of the request unread, which
        // resets it, the second after the whole request was read.
        let server = std::thread::spawn(move || {
            for unread in [true, false] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 16];
                while !request.ends_with(b"\r\n\r\n") {
                    let count = std::io::Read::read(&mut stream, &mut buffer).unwrap();
                    request.extend_from_slice(&buffer[..count]);
                    if unread {
                        break;
                    }
                }
            }
        });
        for _ in 0..2 {
            let error = Client::new(&socket)
                .get::<serde_json::Value>("/v1/jobs")
                .unwrap_err();
            assert!(matches!(error, ClientError::Closed { .. }), "{error:?}");
            assert!(error.is_unreachable());
        }
        server.join().unwrap();
    }

    #[test]
    fn silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        // The kernel completes connects into the backlog, but nothing ever
        // accepts or responds to them, as with a stopped supervisord.
        let _listener = UnixListener::bind(&socket).unwrap();
        let client = Client::new(&socket).with_timeout(Some(Duration::from_millis(300)));
        let started = Instant::now();
        let error = client.get::<serde_json::Value>("/v1/jobs").unwrap_err();
        let took = started.elapsed();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
        assert!(error.is_unreachable());
        assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
        assert!(took < Duration::from_secs(3), "gave up after {took:?}");
        let message = error.to_string();
        assert!(message.contains(&socket.display().to_string()), "{message}");
        assert!(message.contains("within 300ms"), "{message}");
    }

    #[test]
    fn round_trip_over_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while find(&request, b"\r\n\r\n").is_none() {
                let count = stream.read(&mut buffer).unwrap();
                request.extend_from_slice(&buffer[..count]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"jobs\": []}")
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let body: serde_json::Value = Client::new(&socket).get("/v1/jobs").unwrap();
        assert_eq!(body, serde_json::json!({"jobs": []}));
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /v1/jobs HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
