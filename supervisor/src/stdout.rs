//! Standard output for supervisorctl, whose output often goes into a pipe.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has exited fails
//! with EPIPE instead of ending the process. SIGPIPE stays ignored, because
//! EPIPE on the control socket must become an error that names the socket.
//! [`Stdout`] turns EPIPE on standard output into [`StdoutClosed`], which
//! supervisorctl ends on without a message.

use std::error::Error;
use std::io::{self, Write};

/// Exit status of supervisorctl when its standard output was closed: 128
/// plus SIGPIPE (13), which a shell reports for a command killed by SIGPIPE.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// The error of a write to standard output after its reader closed the
/// pipe or socket.
#[derive(Debug, thiserror::Error)]
#[error("failed to write to standard output: the reader closed it")]
pub struct StdoutClosed;

/// A locked handle to standard output whose writes fail with an
/// [`io::Error`] that wraps [`StdoutClosed`] when the reader is gone.
pub struct Stdout {
    inner: io::StdoutLock<'static>,
}

impl Stdout {
    /// Locks standard output for this handle's lifetime.
    pub fn lock() -> Stdout {
        Stdout {
            inner: io::stdout().lock(),
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write(bytes).map_err(mark_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(mark_closed)
    }
}

/// Replaces a broken-pipe error with one that wraps [`StdoutClosed`].
fn mark_closed(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        error
    }
}

/// Returns whether `error` is [`StdoutClosed`] or an [`io::Error`] that
/// wraps it. Walk an error's chain with it, because
/// [`io::Error::source`] skips the error it wraps.
pub fn is_stdout_closed(error: &(dyn Error + 'static)) -> bool {
    if error.is::<StdoutClosed>() {
        return true;
    }
    error
        .downcast_ref::<io::Error>()
        .and_then(|error| error.get_ref())
        .is_some_and(|inner| inner.is::<StdoutClosed>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_becomes_stdout_closed() {
        let error = mark_closed(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        assert!(is_stdout_closed(&error));
    }

    #[test]
    fn other_errors_stay_unchanged() {
        let error = mark_closed(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(!is_stdout_closed(&error));
        // A broken pipe elsewhere, such as on the control socket, is not
        // a closed standard output.
        let socket = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(!is_stdout_closed(&socket));
    }

    #[test]
    fn closed_stdout_found_in_anyhow_chain() {
        let error = anyhow::Error::from(mark_closed(io::Error::from(io::ErrorKind::BrokenPipe)))
            .context("failed to follow log /var/log/corral/web/stdout.log");
        assert!(error.chain().any(is_stdout_closed));
    }
}
