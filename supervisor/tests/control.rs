//! End-to-end tests of the control channel: supervisorctl writing into a
//! pipe whose reader has gone, the control socket's limits on slow and
//! idle clients, actions on more jobs than the connection limit, and a
//! shutdown reply larger than the socket buffer. They run as root and skip
//! with a SKIP line otherwise.

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use corral_supervisor::api::JobList;
use corral_supervisor::daemon::{
    DEFAULT_MAX_CONNECTIONS, EXIT_RESPONSE_LIMIT, KEEP_ALIVE_TIMEOUT, REQUEST_BODY_TIMEOUT,
    REQUEST_HEAD_TIMEOUT, RESPONSE_WRITE_TIMEOUT,
};
use corral_supervisor::machine::JobState;
use harness::{shell_job, skip, stderr_of, stdout_of, Daemon};
use nix::fcntl::OFlag;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(15);

/// The exit status of supervisorctl after its reader closed standard output.
const EXIT_STDOUT_CLOSED: i32 = 141;

/// Returns a job that logs a numbered line every 200 ms.
fn ticker() -> String {
    shell_job(
        "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done",
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "2s"}}),
    )
}

/// Creates a pipe whose ends children do not inherit, so that the read
/// end is closed once the test drops it, also while other tests of this
/// binary spawn processes. The write end given to a child as its standard
/// output is inherited, as a standard descriptor.
fn cloexec_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("create a pipe")
}

/// Runs supervisorctl with `args` and a standard output pipe whose read end
/// is closed before supervisorctl starts. Returns its exit status and
/// standard error.
fn ctl_with_closed_stdout(daemon: &Daemon, args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = cloexec_pipe();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supervisorctl");
    let status = wait_with_deadline(&mut child, Duration::from_secs(10), args);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

/// Waits for `child`, and kills it and fails when it runs past `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration, args: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("supervisorctl {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn closed_stdout_exits_quietly() {
    if skip("closed_stdout_exits_quietly") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job logged a line", |daemon| {
        daemon.job_log("web", "stdout").contains("tick 1")
    });

    let commands: [&[&str]; 17] = [
        &["--help"],
        &["-h"],
        &["help"],
        &["help", "status"],
        &["status", "--help"],
        &["--version"],
        &["spec", "web"],
        &["status"],
        &["status", "web"],
        &["status", "--json"],
        &["pid", "web"],
        &["pid"],
        &["reread"],
        &["completions", "bash"],
        &["tail", "web"],
        &["tail", "-f", "web"],
        &["top", "-d", "100ms", "-n", "1"],
    ];
    for args in commands {
        let (status, stderr) = ctl_with_closed_stdout(&daemon, args);
        assert_eq!(
            status.code(),
            Some(EXIT_STDOUT_CLOSED),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn tail_follow_ends_at_next_line() {
    if skip("tail_follow_ends_at_next_line") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    // With -n 0 the first write is a line the job logs while tail follows.
    let (status, stderr) = ctl_with_closed_stdout(&daemon, &["tail", "-n", "0", "-f", "web"]);
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert!(!stderr.contains("failed to follow"), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn stop_with_closed_stdout_still_stops() {
    if skip("stop_with_closed_stdout_still_stops") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    let (status, stderr) = ctl_with_closed_stdout(&daemon, &["stop", "web"]);
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert_eq!(stderr, "");
    daemon.wait_for_state("web", JobState::Stopped, SETTLE);
}

/// Connects to the daemon's control socket, with a read timeout well above
/// the server's timeouts.
fn connect(daemon: &Daemon) -> UnixStream {
    let stream = UnixStream::connect(daemon.socket()).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(KEEP_ALIVE_TIMEOUT * 2))
        .unwrap();
    stream
}

/// Reads until the server closes `stream` and returns what it sent and how
/// long that took. Fails when the server keeps it open past the read
/// timeout.
fn read_until_closed(stream: &mut UnixStream) -> (String, Duration) {
    let began = Instant::now();
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("the server closes the connection before the read timeout");
    (
        String::from_utf8_lossy(&received).into_owned(),
        began.elapsed(),
    )
}

/// Reads one response with a `content-length` body and returns its status
/// line and body.
fn read_response(reader: &mut BufReader<UnixStream>) -> (String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
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
    (
        status.trim_end().to_string(),
        String::from_utf8(body).unwrap(),
    )
}

/// Asserts that the server closed a connection after about
/// `timeout`.
fn assert_closed_after(elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed >= timeout - Duration::from_millis(100),
        "closed after {elapsed:?}, before the {timeout:?} timeout"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "closed only after {elapsed:?}, timeout {timeout:?}"
    );
}

#[test]
fn partial_request_head_is_closed() {
    if skip("partial_request_head_is_closed") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut stream = connect(&daemon);
    stream
        .write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();

    let (received, elapsed) = read_until_closed(&mut stream);
    assert_closed_after(elapsed, REQUEST_HEAD_TIMEOUT);
    assert!(!received.contains("\"jobs\""), "{received}");

    // The daemon still serves other clients.
    let status = daemon.ctl(&["status"]);
    assert_eq!(status.status.code(), Some(0));
    // A routine timeout logs no warning at the default level.
    let log = daemon.daemon_log();
    assert!(!log.contains("read header from client timeout"), "{log}");
}

#[test]
fn silent_connection_is_closed() {
    if skip("silent_connection_is_closed") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut stream = connect(&daemon);

    let (received, elapsed) = read_until_closed(&mut stream);
    assert_closed_after(elapsed, REQUEST_HEAD_TIMEOUT);
    assert_eq!(received, "");
}

/// Sends `GET /v1/info` on `stream` and checks the response.
fn request_info(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>) {
    stream
        .write_all(b"GET /v1/info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, body) = read_response(reader);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("\"pid\""), "{body}");
}

#[test]
fn idle_keep_alive_is_closed() {
    if skip("idle_keep_alive_is_closed") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut stream = connect(&daemon);
    let mut reader = BufReader::new(stream.try_clone().unwrap());

    // Requests back to back share the connection, each well within the
    // timeouts, together longer than both.
    let began = Instant::now();
    let mut requests = 0;
    loop {
        request_info(&mut stream, &mut reader);
        requests += 1;
        if began.elapsed() > KEEP_ALIVE_TIMEOUT + Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(requests > 10, "{requests} requests");

    let idle_since = Instant::now();
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the server closes the idle connection before the read timeout");
    assert_closed_after(idle_since.elapsed(), KEEP_ALIVE_TIMEOUT);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn partial_second_request_is_closed() {
    if skip("partial_second_request_is_closed") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut stream = connect(&daemon);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    request_info(&mut stream, &mut reader);

    let sent = Instant::now();
    stream
        .write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the server closes the connection before the read timeout");
    assert_closed_after(sent.elapsed(), REQUEST_HEAD_TIMEOUT);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn stalled_request_body_gets_408() {
    if skip("stalled_request_body_gets_408") {
        return;
    }
    let daemon = Daemon::start(&[]);
    let mut stream = connect(&daemon);
    stream
        .write_all(
            b"POST /v1/jobs/web/signal HTTP/1.1\r\nHost: localhost\r\n\
              Content-Length: 20\r\n\r\n{\"sig",
        )
        .unwrap();

    let (received, elapsed) = read_until_closed(&mut stream);
    assert_closed_after(elapsed, REQUEST_BODY_TIMEOUT);
    assert!(received.starts_with("HTTP/1.1 408 "), "{received}");
    assert!(
        received.contains("timed out reading the request body"),
        "{received}"
    );
}

#[test]
fn tail_follow_outlasts_timeouts() {
    if skip("tail_follow_outlasts_timeouts") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(["tail", "-n", "0", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supervisorctl");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let began = Instant::now();
    let mut last = String::new();
    while began.elapsed() < KEEP_ALIVE_TIMEOUT + REQUEST_HEAD_TIMEOUT {
        match lines.next() {
            Some(Ok(line)) => last = line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tail -f ended after {:?}: {other:?}", began.elapsed());
            }
        }
    }
    assert!(last.starts_with("tick "), "{last}");
    let running = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running.is_none(), "tail -f exited: {running:?}");
}

#[test]
fn slow_stop_outlasts_timeouts() {
    if skip("slow_stop_outlasts_timeouts") {
        return;
    }
    // PID 1 of the container ignores SIGTERM, so the stop takes the whole
    // stop timeout, longer than the server's timeouts.
    let stubborn = shell_job(
        "while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "12s"}}),
    );
    let daemon = Daemon::start(&[("stubborn", &stubborn)]);
    daemon.wait_for_state("stubborn", JobState::Running, SETTLE);

    let began = Instant::now();
    let stop = daemon.ctl(&["stop", "stubborn"]);
    let elapsed = began.elapsed();
    let output = String::from_utf8_lossy(&stop.stdout);
    assert!(elapsed > KEEP_ALIVE_TIMEOUT, "{elapsed:?}");
    assert_eq!(stop.status.code(), Some(5), "{output}");
    assert!(
        output.contains("stubborn: stopped by SIGKILL after 12s timeout"),
        "{output}"
    );
}

#[test]
fn top_and_tail_take_all() {
    if skip("top_and_tail_take_all") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker()), ("api", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    daemon.wait_for_state("api", JobState::Running, SETTLE);

    let top = daemon.ctl(&["top", "--no-stream", "all"]);
    let output = stdout_of(&top);
    assert_eq!(top.status.code(), Some(0), "{output}{}", stderr_of(&top));
    assert!(output.contains("web "), "{output}");
    assert!(output.contains("api "), "{output}");

    // tail reads one job's log, so `all` is invalid usage.
    let tail = daemon.ctl(&["tail", "all"]);
    assert_eq!(tail.status.code(), Some(2), "{}", stderr_of(&tail));
    assert!(
        stderr_of(&tail).contains("must not be `all`"),
        "{}",
        stderr_of(&tail)
    );
}

#[test]
fn top_with_long_interval_works() {
    if skip("top_with_long_interval_works") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);

    let interval = KEEP_ALIVE_TIMEOUT + Duration::from_secs(1);
    let interval = format!("{}s", interval.as_secs());
    let top = daemon.ctl(&["top", "-d", &interval, "-n", "2"]);
    let output = String::from_utf8_lossy(&top.stdout);
    assert_eq!(top.status.code(), Some(0), "{output}");
    assert_eq!(output.matches("web ").count(), 2, "{output}");
}

#[test]
fn connections_above_limit_get_503() {
    if skip("connections_above_limit_get_503") {
        return;
    }
    // The test keeps every connection open, so it needs a descriptor each.
    let needed = DEFAULT_MAX_CONNECTIONS as u64 + 64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < needed {
        eprintln!("SKIP connections_above_limit_get_503: open files limit {hard} < {needed}");
        return;
    }
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).unwrap();
    }
    let daemon = Daemon::start(&[]);

    // Silent connections stay open until the request head timeout.
    let began = Instant::now();
    let open: Vec<UnixStream> = (0..DEFAULT_MAX_CONNECTIONS)
        .map(|_| connect(&daemon))
        .collect();
    let mut extra = connect(&daemon);
    let (received, _) = read_until_closed(&mut extra);
    assert!(
        began.elapsed() < REQUEST_HEAD_TIMEOUT,
        "opening the connections took {:?}, so some had timed out",
        began.elapsed()
    );
    assert!(
        received.starts_with("HTTP/1.1 503 "),
        "{}",
        received.lines().next().unwrap_or("")
    );
    assert!(
        received.contains("too many open control connections"),
        "{received}"
    );
    // supervisorctl writes its request before it reads, so it gets the
    // reply only when supervisord reads that request before closing.
    let status = daemon.ctl(&["status"]);
    assert!(
        stderr_of(&status).contains("too many open control connections"),
        "{}",
        stderr_of(&status)
    );
    assert_eq!(status.status.code(), Some(4));
    drop(open);

    daemon.wait_until(SETTLE, "the daemon logged the rejection", |daemon| {
        daemon
            .daemon_log()
            .contains("rejected control connections: too many are open")
    });
    // The open connections closed, so new clients are served again.
    let status = daemon.ctl(&["status"]);
    assert_eq!(status.status.code(), Some(0));
}

/// Size of the environment in one drop-in of [`start_with_large_spec`],
/// half of the maximum size of a job file or drop-in.
const PADDING_PER_DROPIN: usize = 512 * 1024;

/// Starts a daemon with job `big`, which is never started and whose
/// generated OCI config carries `size` bytes of environment, so that `GET
/// /v1/jobs/big/spec` returns a body larger than a socket buffer. The
/// environment comes from drop-ins, because one job file may hold at most
/// 1 MiB.
fn start_with_large_spec(size: usize) -> Daemon {
    let daemon = Daemon::start(&[]);
    let dropins = daemon.jobs_dir().join("big.json.d");
    std::fs::create_dir(&dropins).unwrap();
    for index in 0..size.div_ceil(PADDING_PER_DROPIN) {
        let length = PADDING_PER_DROPIN.min(size - index * PADDING_PER_DROPIN);
        let body = json!({"env": {format!("PADDING{index}"): "x".repeat(length)}});
        std::fs::write(dropins.join(format!("{index:02}.json")), body.to_string()).unwrap();
    }
    daemon.write_job("big", &shell_job("sleep 1000", json!({"autostart": false})));
    let update = daemon.ctl(&["update"]);
    assert_eq!(update.status.code(), Some(0), "{}", stdout_of(&update));
    assert_eq!(daemon.job("big").unwrap().state, JobState::Stopped);
    daemon
}

/// Sends `GET /v1/jobs/NAME/spec` on a new connection, without reading.
fn request_spec(daemon: &Daemon, name: &str) -> UnixStream {
    request_spec_with_headers(daemon, name, "")
}

/// Sends `GET /v1/jobs/NAME/spec` with extra `headers`, each line ending in
/// CRLF, on a new connection, without reading.
fn request_spec_with_headers(daemon: &Daemon, name: &str, headers: &str) -> UnixStream {
    let mut stream = connect(daemon);
    write!(
        stream,
        "GET /v1/jobs/{name}/spec HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    )
    .unwrap();
    stream
}

#[test]
fn unread_response_is_closed() {
    if skip("unread_response_is_closed") {
        return;
    }
    let daemon = start_with_large_spec(2 * 1024 * 1024);
    let mut stream = request_spec(&daemon, "big");
    let sent = Instant::now();

    let closing = "closed a control connection whose client stopped reading the response";
    daemon.wait_until(
        RESPONSE_WRITE_TIMEOUT + Duration::from_secs(5),
        "the daemon closed the unread connection",
        |daemon| daemon.daemon_log().contains(closing),
    );
    assert_closed_after(sent.elapsed(), RESPONSE_WRITE_TIMEOUT);
    let log = daemon.daemon_log();
    let line = log
        .lines()
        .find(|line| line.contains(closing))
        .expect("the closing line");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("request=GET /v1/jobs/big/spec"), "{line}");
    let peer = format!("peer=pid {} uid 0", std::process::id());
    assert!(line.contains(&peer), "{line}");

    // The client gets what the socket held, then the end of the stream.
    let (received, _) = read_until_closed(&mut stream);
    let head: String = received.chars().take(40).collect();
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(received.len() < 2 * 1024 * 1024, "{} bytes", received.len());
    let status = daemon.ctl(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", stdout_of(&status));
}

#[test]
fn slow_reader_gets_whole_response() {
    if skip("slow_reader_gets_whole_response") {
        return;
    }
    assert_slow_reader_gets_whole_response("");
}

/// The response ends the connection here, as those to supervisorctl do, so
/// the connection must not count as idle while the response is written.
#[test]
fn slow_reader_gets_whole_closing_response() {
    if skip("slow_reader_gets_whole_closing_response") {
        return;
    }
    assert_slow_reader_gets_whole_response("Connection: close\r\n");
}

/// Reads a spec of more than 1 MiB slowly, for longer than the response
/// write timeout, after a request with the extra `headers`.
fn assert_slow_reader_gets_whole_response(headers: &str) {
    let size = 1024 * 1024;
    let daemon = start_with_large_spec(size);
    let stream = request_spec_with_headers(&daemon, "big", headers);
    let mut reader = BufReader::new(stream);

    let (status, body) = {
        // 4 KiB every 500 ms for longer than the timeout. Draining enough
        // of the daemon's send buffer for its next write takes longer, so
        // only the reads show the daemon that the client makes progress.
        let began = Instant::now();
        let mut slow = Vec::new();
        let mut chunk = [0u8; 4096];
        while began.elapsed() < RESPONSE_WRITE_TIMEOUT + Duration::from_secs(2) {
            let count = reader.read(&mut chunk).unwrap();
            assert_ne!(count, 0, "closed after {:?}", began.elapsed());
            slow.extend_from_slice(&chunk[..count]);
            std::thread::sleep(Duration::from_millis(500));
        }

        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        slow.extend_from_slice(&rest);
        let text = String::from_utf8(slow).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        (head.lines().next().unwrap().to_string(), body.to_string())
    };
    assert_eq!(status, "HTTP/1.1 200 OK");

    let spec: serde_json::Value = serde_json::from_str(&body).expect("the whole spec");
    let env = spec["process"]["env"].as_array().unwrap();
    let padding: usize = env
        .iter()
        .filter_map(|entry| entry.as_str()?.strip_prefix("PADDING"))
        .map(str::len)
        .sum();
    assert!(
        padding > size,
        "{padding} bytes of PADDING variables in {} entries",
        env.len()
    );
    let log = daemon.daemon_log();
    assert!(!log.contains("stopped reading the response"), "{log}");
}

/// A client that reads a response without pause but too slowly to finish
/// it does not hold supervisord's exit past EXIT_RESPONSE_LIMIT.
#[test]
fn slow_reader_cannot_hold_exit() {
    if skip("slow_reader_cannot_hold_exit") {
        return;
    }
    let size = 1024 * 1024;
    let mut daemon = start_with_large_spec(size);
    let stream = request_spec(&daemon, "big");

    // 4 KiB every 500 ms reads 1 MiB in more than two minutes, and each
    // read lets the daemon's next write progress.
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut chunk = [0u8; 4096];
        let mut total = 0;
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => return total,
                Ok(count) => total += count,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    std::thread::sleep(Duration::from_secs(1));

    let signalled = Instant::now();
    let exit = daemon.terminate(EXIT_RESPONSE_LIMIT + Duration::from_secs(15));
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0));
    assert!(
        took >= EXIT_RESPONSE_LIMIT - Duration::from_millis(100),
        "supervisord exited {took:?} after SIGTERM, before the slow reader was cut"
    );
    assert!(
        took < EXIT_RESPONSE_LIMIT + Duration::from_secs(5),
        "supervisord exited only {took:?} after SIGTERM"
    );
    let read = reader.join().unwrap();
    assert!(read < size, "the slow reader read all {read} bytes");
    let log = daemon.daemon_log();
    let line = log
        .lines()
        .find(|line| {
            line.contains(
                "closing control connections whose responses are still being read at exit",
            )
        })
        .unwrap_or_else(|| panic!("no line about the cut connection in\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("open=1"), "{line}");
}

/// Returns a job that logs one line and then nothing.
fn quiet() -> String {
    shell_job(
        "echo started; while :; do sleep 1; done",
        json!({"init": true, "start_seconds": "300ms", "stop": {"timeout": "2s"}}),
    )
}

/// Runs `supervisorctl tail -n 1 -f quiet` with `stdout` as standard
/// output, calls `close_reader` once tail had time to print the job's
/// line, and returns how long supervisorctl ran after that, its exit
/// status and standard error.
fn tail_until_reader_closes(
    daemon: &Daemon,
    stdout: Stdio,
    close_reader: impl FnOnce(),
) -> (Duration, ExitStatus, String) {
    let args = ["tail", "-n", "1", "-f", "quiet"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisorctl"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supervisorctl");
    // Time for tail to print the line and wait for the next.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "tail -f ended early");
    let closed = Instant::now();
    close_reader();
    let status = wait_with_deadline(&mut child, Duration::from_secs(10), &args);
    let elapsed = closed.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (elapsed, status, stderr)
}

#[test]
fn tail_follow_ends_when_pipe_reader_closes() {
    if skip("tail_follow_ends_when_pipe_reader_closes") {
        return;
    }
    let daemon = Daemon::start(&[("quiet", &quiet())]);
    daemon.wait_for_state("quiet", JobState::Running, SETTLE);
    daemon.wait_until(SETTLE, "the job logged its line", |daemon| {
        daemon.job_log("quiet", "stdout").contains("started")
    });

    // As `supervisorctl tail -f quiet | head -1` does.
    let (reader, writer) = cloexec_pipe();
    let mut reader = BufReader::new(std::fs::File::from(reader));
    let (elapsed, status, stderr) = tail_until_reader_closes(&daemon, Stdio::from(writer), || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "started\n");
        drop(reader);
    });
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        elapsed < Duration::from_secs(2),
        "ended {elapsed:?} after the close"
    );
}

#[test]
fn tail_follow_ends_when_socket_peer_closes() {
    if skip("tail_follow_ends_when_socket_peer_closes") {
        return;
    }
    let daemon = Daemon::start(&[("quiet", &quiet())]);
    daemon.wait_for_state("quiet", JobState::Running, SETTLE);

    let (peer, ours) = UnixStream::pair().unwrap();
    let stdout = Stdio::from(OwnedFd::from(ours));
    let (elapsed, status, stderr) = tail_until_reader_closes(&daemon, stdout, || drop(peer));
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        elapsed < Duration::from_secs(2),
        "ended {elapsed:?} after the close"
    );
}

#[test]
fn top_ends_when_reader_closes() {
    if skip("top_ends_when_reader_closes") {
        return;
    }
    let daemon = Daemon::start(&[("quiet", &quiet())]);
    daemon.wait_for_state("quiet", JobState::Running, SETTLE);

    // The first table is due after a minute, longer than the deadline of
    // ctl_with_closed_stdout.
    let began = Instant::now();
    let (status, stderr) = ctl_with_closed_stdout(&daemon, &["top", "-d", "60s"]);
    assert_eq!(status.code(), Some(EXIT_STDOUT_CLOSED), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

/// Returns a job whose shell, PID 1 of its container, takes about a
/// second to exit after SIGTERM, so that a stop request keeps its
/// connection that long. The shell logs `ready` once its handlers are set,
/// because as PID 1 it ignores SIGTERM and SIGUSR1 before that.
fn slow_to_stop() -> String {
    shell_job(
        "trap 'sleep 1; exit 0' TERM; trap : USR1; echo ready; while :; do sleep 0.1; done",
        json!({"start_seconds": "300ms", "stop": {"timeout": "10s"}}),
    )
}

/// Waits until each of `names` has logged `ready` `runs` times.
fn wait_ready(daemon: &Daemon, names: &[String], runs: usize) {
    for name in names {
        daemon.wait_until(
            SETTLE,
            &format!("{name} logged ready {runs} times"),
            |daemon| daemon.job_log(name, "stdout").matches("ready").count() >= runs,
        );
    }
}

/// Runs supervisorctl with `args` and checks that it exits 0 and prints
/// `NAME: result` for each of `names`, in that order.
fn assert_each_job(daemon: &Daemon, args: &[&str], names: &[String], result: &str) {
    let output = daemon.ctl(args);
    let text = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{args:?}: {text}{}",
        stderr_of(&output)
    );
    let expected: Vec<String> = names
        .iter()
        .map(|name| format!("{name}: {result}"))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected, "{args:?}");
}

#[test]
fn actions_on_more_jobs_than_connections() {
    if skip("actions_on_more_jobs_than_connections") {
        return;
    }
    let names: Vec<String> = (1..=6).map(|number| format!("job{number}")).collect();
    let job = slow_to_stop();
    let jobs: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), job.as_str()))
        .collect();
    // Each stop takes a second, so one connection per job would hold six
    // at once.
    let daemon = Daemon::start_with_args(&jobs, &["--max-connections", "2"]);
    wait_ready(&daemon, &names, 1);

    assert_each_job(&daemon, &["stop", "all"], &names, "stopped");
    assert_each_job(&daemon, &["start", "all"], &names, "started");
    wait_ready(&daemon, &names, 2);
    let mut args = vec!["restart"];
    args.extend(names.iter().map(String::as_str));
    assert_each_job(&daemon, &args, &names, "restarted");
    wait_ready(&daemon, &names, 3);
    let mut args = vec!["signal", "USR1"];
    args.extend(names.iter().map(String::as_str));
    assert_each_job(&daemon, &args, &names, "signalled");
    assert_each_job(
        &daemon,
        &["stop", "job2", "job1"],
        &["job2".into(), "job1".into()],
        "stopped",
    );

    let log = daemon.daemon_log();
    assert!(!log.contains("rejected control connections"), "{log}");
}

/// The user and group `nobody` on Debian and Fedora alike.
const NOBODY: u32 = 65534;

/// Runs supervisorctl with `args` against `daemon` as user and group
/// `nobody`, without supplementary groups. The caller makes the daemon's
/// directory searchable for others.
fn ctl_as_nobody(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    // The build's own copy may sit below a directory that only root can
    // search, such as a checkout in a mktemp -d directory (mode 0700).
    let binary = daemon.dir.path().join("supervisorctl-for-nobody");
    if !binary.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_supervisorctl"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = Command::new(&binary);
    command.arg("--socket").arg(daemon.socket()).args(args);
    // SAFETY: the closure runs in the forked child before exec, where only
    // the forking thread exists, and calls only setgroups, setgid and
    // setuid, which make one system call each and touch no lock or heap.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(NOBODY))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(NOBODY))?;
            Ok(())
        });
    }
    command.output().expect("run supervisorctl as nobody")
}

#[test]
fn tail_reports_unreadable_log_dir() {
    if skip("tail_reports_unreadable_log_dir") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;

    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let log_dir = daemon.log_dir();
    // User nobody may pass through the test's directory but not list or search
    // the log directory, which supervisord keeps at 0700 without
    // --socket-group.
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mode = std::fs::metadata(&log_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let log_dir_arg = log_dir.to_str().unwrap();
    let output = ctl_as_nobody(&daemon, &["tail", "--log-dir", log_dir_arg, "web"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(
        stderr.contains(&log_dir.join("web").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("run as root"), "{stderr}");
    assert!(!stderr.contains("does not exist"), "{stderr}");
    assert_eq!(stdout_of(&output), "");
}

#[test]
fn tail_rejects_invalid_job_names() {
    if skip("tail_rejects_invalid_job_names") {
        return;
    }
    let daemon = Daemon::start(&[("web", &ticker())]);
    daemon.wait_for_state("web", JobState::Running, SETTLE);
    let log_dir = daemon.log_dir();
    // A directory next to the log directory that `../x` would name.
    let outside = daemon.dir.path().join("x");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("stdout.log"), "outside the log directory\n").unwrap();

    let log_dir_arg = log_dir.to_str().unwrap();
    for name in ["../x", "..", "all", "Web"] {
        let output = daemon.ctl(&["tail", "--log-dir", log_dir_arg, name]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("invalid job name"), "{name}: {stderr}");
        assert_eq!(stdout_of(&output), "", "{name}");
    }
    // Without --log-dir the name is checked before supervisord is asked.
    for name in ["../x", "..", "all", "Web"] {
        let output = daemon.ctl(&["tail", name]);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("invalid job name"), "{name}: {stderr}");
        assert_eq!(stdout_of(&output), "", "{name}");
    }
    let output = daemon.ctl(&["tail", "--log-dir", log_dir_arg, "-n", "1", "web"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
}

/// Number of jobs whose list makes the reply to a shutdown request several
/// times larger than a unix socket's send buffer. Jobs without `autostart`
/// create no container, so they start and stop at no cost.
const MANY_JOBS: usize = 1000;

/// Starts a daemon on [`MANY_JOBS`] jobs that are not started.
fn start_with_many_jobs() -> Daemon {
    let job = shell_job("sleep 1000", json!({"autostart": false}));
    let names: Vec<String> = (0..MANY_JOBS)
        .map(|index| format!("idle{index:04}"))
        .collect();
    let jobs: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), job.as_str()))
        .collect();
    Daemon::start(&jobs)
}

/// Returns net.core.wmem_default, the send buffer size of a new socket in
/// bytes. supervisord can write about that much before its client reads.
fn default_send_buffer() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .expect("read net.core.wmem_default")
        .trim()
        .parse()
        .expect("net.core.wmem_default is a number")
}

/// Sends `POST /v1/shutdown?wait=true` with the header `Connection:
/// CONNECTION` on a new connection, without reading. supervisorctl sends
/// `Connection: close`, curl sends none, which means keep-alive.
fn request_shutdown(daemon: &Daemon, connection: &str) -> UnixStream {
    let mut stream = connect(daemon);
    write!(
        stream,
        "POST /v1/shutdown?wait=true HTTP/1.1\r\nHost: localhost\r\n\
         Connection: {connection}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    stream
}

/// Splits a whole response into its status line, its `content-length`
/// value and the bytes after its head.
fn split_response(raw: &[u8]) -> (String, usize, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(raw[..end].to_vec()).expect("an ASCII response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse().expect("a numeric content-length"))
        .expect("a content-length header");
    (status, length, raw[end + 4..].to_vec())
}

#[test]
fn shutdown_reply_waits_for_reader() {
    if skip("shutdown_reply_waits_for_reader") {
        return;
    }
    // The client reads nothing for this long, which is shorter than
    // RESPONSE_WRITE_TIMEOUT, so supervisord has to wait for it.
    let pause = Duration::from_secs(4);
    assert!(pause < RESPONSE_WRITE_TIMEOUT);
    for connection in ["close", "keep-alive"] {
        let mut daemon = start_with_many_jobs();
        let mut stream = request_shutdown(&daemon, connection);
        let sent = Instant::now();
        let mut exited = None;
        while exited.is_none() && sent.elapsed() < pause {
            exited = daemon.try_exit();
            std::thread::sleep(Duration::from_millis(50));
        }

        let reading = Instant::now();
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .expect("supervisord closes the connection before the read timeout");
        let read_took = reading.elapsed();
        let (status, length, body) = split_response(&raw);
        assert_eq!(status, "HTTP/1.1 200 OK", "Connection: {connection}");
        assert_eq!(
            body.len(),
            length,
            "Connection: {connection}: body length differs from content-length"
        );
        assert!(
            length > 2 * default_send_buffer(),
            "Connection: {connection}: a reply of {length} bytes fits into the socket"
        );
        let list: JobList = serde_json::from_slice(&body).expect("a job list");
        assert_eq!(list.jobs.len(), MANY_JOBS, "Connection: {connection}");

        assert_eq!(
            exited, None,
            "Connection: {connection}: supervisord exited while its reply was unread"
        );
        // A keep-alive connection is closed once the reply is written, not
        // after the keep-alive timeout.
        assert!(
            read_took < KEEP_ALIVE_TIMEOUT,
            "Connection: {connection}: closed {read_took:?} after the client began to read"
        );
        let exit = daemon.wait_exit(Duration::from_secs(5));
        assert_eq!(exit.code(), Some(0), "Connection: {connection}");
        let log = daemon.daemon_log();
        assert!(!log.contains("cut a response at exit"), "{log}");
    }
}

#[test]
fn unread_shutdown_reply_is_cut() {
    if skip("unread_shutdown_reply_is_cut") {
        return;
    }
    let mut daemon = start_with_many_jobs();
    let mut stream = request_shutdown(&daemon, "close");
    let sent = Instant::now();

    let exit = daemon.wait_exit(RESPONSE_WRITE_TIMEOUT + Duration::from_secs(10));
    assert_closed_after(sent.elapsed(), RESPONSE_WRITE_TIMEOUT);
    assert_eq!(exit.code(), Some(0));
    let log = daemon.daemon_log();
    let line = log
        .lines()
        .find(|line| line.contains("cut a response at exit: the client stopped reading it"))
        .unwrap_or_else(|| panic!("no line about the cut response in\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("request=POST /v1/shutdown?wait=true"),
        "{line}"
    );
    let peer = format!("peer=pid {} uid 0", std::process::id());
    assert!(line.contains(&peer), "{line}");

    // The client receives the bytes that the socket buffered, then the
    // end of the stream.
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let (status, length, body) = split_response(&raw);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.len() < length, "{} of {length} bytes", body.len());
}

#[test]
fn ctl_shutdown_with_many_jobs() {
    if skip("ctl_shutdown_with_many_jobs") {
        return;
    }
    let mut daemon = start_with_many_jobs();
    let shutdown = daemon.ctl(&["shutdown"]);
    assert_eq!(stderr_of(&shutdown), "");
    assert_eq!(shutdown.status.code(), Some(0));
    assert_eq!(stdout_of(&shutdown), "Shut down\n");
    // supervisorctl returned after supervisord had exited.
    let exit = daemon.wait_exit(Duration::from_secs(1));
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn ctl_while_exiting_says_shutting_down() {
    if skip("ctl_while_exiting_says_shutting_down") {
        return;
    }
    let mut daemon = start_with_many_jobs();
    // The unread reply delays supervisord's exit by up to
    // RESPONSE_WRITE_TIMEOUT.
    let mut stream = request_shutdown(&daemon, "close");
    daemon.wait_until(
        Duration::from_secs(5),
        "supervisord writing its last responses",
        |daemon| {
            daemon
                .daemon_log()
                .contains("finishing the responses of open control connections before exit")
        },
    );

    let status = daemon.ctl(&["status"]);
    let expected = format!("supervisord (pid {}) is shutting down", daemon.pid());
    assert!(
        stderr_of(&status).contains(&expected),
        "{}",
        stderr_of(&status)
    );
    assert_eq!(status.status.code(), Some(4));
    assert_eq!(stdout_of(&status), "");
    assert!(
        daemon.socket().exists(),
        "socket removed before the last response was written"
    );

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let (status, length, body) = split_response(&raw);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.len(), length);
    let exit = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(exit.code(), Some(0));
    assert!(!daemon.socket().exists(), "socket left after exit");
}
