//! The channel between the runtime and the container's init during setup.
//!
//! The runtime sends one byte once the init is in its cgroup; the init
//! answers `R` when its root is ready, or `E` and a message when setup
//! failed. EOF without an answer means the init died.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

pub const GO: u8 = b'G';
pub const READY: u8 = b'R';
pub const FAILED: u8 = b'E';

/// What the init reported at the end of setup.
#[derive(Debug, PartialEq, Eq)]
pub enum InitReport {
    Ready,
    Failed(String),
    /// The init closed the channel without a report: it died.
    Vanished,
}

pub fn read_report(stream: &mut UnixStream) -> std::io::Result<InitReport> {
    let mut message = Vec::new();
    stream.read_to_end(&mut message)?;
    Ok(match message.split_first() {
        Some((&READY, _)) => InitReport::Ready,
        Some((&FAILED, text)) => InitReport::Failed(String::from_utf8_lossy(text).into_owned()),
        _ => InitReport::Vanished,
    })
}

pub fn send_failure(stream: &mut UnixStream, message: &str) {
    let mut bytes = vec![FAILED];
    bytes.extend_from_slice(message.as_bytes());
    // The runtime reports a missing message as a vanished init, which is the
    // best that can be done when this write fails.
    let _ = stream.write_all(&bytes);
}
