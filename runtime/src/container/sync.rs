//! The channel between the runtime and the container's init during setup.
//!
//! The runtime sends one byte once the init is in its cgroup. The init
//! answers with newline-terminated records: any number of `W` warnings, then
//! `R` when its root is ready or `E` and a message when setup failed. EOF
//! without a final record means the init died.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

pub const GO: u8 = b'G';
const READY: u8 = b'R';
const FAILED: u8 = b'E';
const WARNING: u8 = b'W';

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

pub fn read_report(stream: &mut UnixStream) -> std::io::Result<InitReport> {
    let mut message = Vec::new();
    stream.read_to_end(&mut message)?;
    let text = String::from_utf8_lossy(&message);
    let mut warnings = Vec::new();
    for record in text.split_terminator('\n') {
        let (kind, body) = record.split_at(record.len().min(1));
        match kind.as_bytes().first() {
            Some(&WARNING) => warnings.push(body.to_string()),
            Some(&READY) => return Ok(InitReport::Ready { warnings }),
            Some(&FAILED) => return Ok(InitReport::Failed(body.to_string())),
            _ => break,
        }
    }
    Ok(InitReport::Vanished)
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
