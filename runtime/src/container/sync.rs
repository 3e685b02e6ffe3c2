//! The channel between the runtime and the container's init during setup.
//!
//! The runtime sends one byte once the init is in its cgroup. The init
//! answers with newline-terminated records: `W` warnings; `H` when it
//! reached the point where the runtime's createRuntime hooks run, after
//! which it waits for a `G` line carrying the state JSON; then `R` when its
//! root is ready, `E` and a message when setup failed, or `X` and an
//! [`ExecutableError`] as JSON when the process's executable cannot be
//! executed. EOF without a final record means the init died.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use super::executable::ExecutableError;

pub const GO: u8 = b'G';
const READY: u8 = b'R';
const FAILED: u8 = b'E';
const WARNING: u8 = b'W';
const HOOKS: u8 = b'H';
const EXECUTABLE_FAILED: u8 = b'X';

/// One record sent by the init.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Warning(String),
    /// The init waits for the runtime's hooks and a `G` line.
    Hooks,
    Ready,
    Failed(String),
    Executable(ExecutableError),
}

/// Reads the next record; None at EOF.
pub fn read_record(reader: &mut impl BufRead) -> std::io::Result<Option<Record>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end_matches('\n');
    let (kind, body) = line.split_at(line.len().min(1));
    Ok(match kind.as_bytes().first() {
        Some(&WARNING) => Some(Record::Warning(body.to_string())),
        Some(&HOOKS) => Some(Record::Hooks),
        Some(&READY) => Some(Record::Ready),
        Some(&FAILED) => Some(Record::Failed(body.to_string())),
        Some(&EXECUTABLE_FAILED) => Some(match serde_json::from_str(body) {
            Ok(error) => Record::Executable(error),
            Err(error) => Record::Failed(format!(
                "invalid executable error from the init ({error}): {body}"
            )),
        }),
        _ => None,
    })
}

/// What the init reported at the end of setup.
#[derive(Debug, PartialEq, Eq)]
pub enum InitReport {
    Ready {
        warnings: Vec<String>,
    },
    Failed(String),
    /// The init closed the channel without a final record: it died.
    Vanished,
}

/// Reads records up to the final one, for a child that requests no hooks.
pub fn read_report(stream: &mut UnixStream) -> std::io::Result<InitReport> {
    let mut reader = BufReader::new(stream);
    let mut warnings = Vec::new();
    loop {
        match read_record(&mut reader)? {
            Some(Record::Warning(warning)) => warnings.push(warning),
            Some(Record::Ready) => return Ok(InitReport::Ready { warnings }),
            Some(Record::Failed(message)) => return Ok(InitReport::Failed(message)),
            Some(Record::Executable(error)) => return Ok(InitReport::Failed(error.to_string())),
            Some(Record::Hooks) | None => return Ok(InitReport::Vanished),
        }
    }
}

fn send(stream: &mut UnixStream, kind: u8, text: &str) {
    let mut bytes = vec![kind];
    bytes.extend_from_slice(text.replace('\n', " ").as_bytes());
    bytes.push(b'\n');
    // The runtime reports a missing record as a vanished init, which is the
    // best that can be done when this write fails.
    let _ = stream.write_all(&bytes);
}

pub fn send_warning(stream: &mut UnixStream, message: &str) {
    send(stream, WARNING, message);
}

pub fn send_ready(stream: &mut UnixStream) {
    send(stream, READY, "");
}

pub fn send_failure(stream: &mut UnixStream, message: &str) {
    send(stream, FAILED, message);
}

pub fn send_executable_failure(stream: &mut UnixStream, error: &ExecutableError) {
    match serde_json::to_string(error) {
        Ok(json) => send(stream, EXECUTABLE_FAILED, &json),
        Err(_) => send(stream, FAILED, &error.to_string()),
    }
}

/// Asks the runtime to run its hooks and returns the state JSON it sends back.
pub fn request_hooks(stream: &mut UnixStream) -> std::io::Result<String> {
    send(stream, HOOKS, "");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    match line.split_first() {
        Some((&GO, state)) => Ok(String::from_utf8_lossy(state).into_owned()),
        _ => Err(std::io::Error::other(
            "the runtime did not answer the hooks request",
        )),
    }
}

/// Answers a hooks request with the state JSON.
pub fn answer_hooks(stream: &mut UnixStream, state_json: &str) -> std::io::Result<()> {
    let mut bytes = vec![GO];
    bytes.extend_from_slice(state_json.replace('\n', " ").as_bytes());
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ExecutableReason;

    #[test]
    fn executable_failure_round_trips() {
        let (mut init, mut runtime) = UnixStream::pair().unwrap();
        let error = ExecutableError {
            program: "web\nserver".to_string(),
            reason: ExecutableReason::NotInPath {
                search_path: "/usr/bin:/bin".to_string(),
            },
        };
        send_executable_failure(&mut init, &error);
        drop(init);
        let mut reader = BufReader::new(&mut runtime);
        assert_eq!(
            read_record(&mut reader).unwrap(),
            Some(Record::Executable(error))
        );
        assert_eq!(read_record(&mut reader).unwrap(), None);
    }
}
