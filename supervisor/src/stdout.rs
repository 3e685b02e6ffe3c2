//! Standard output for supervisorctl, whose output often goes into a pipe.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has exited fails
//! with EPIPE instead of ending the process. SIGPIPE stays ignored, because
//! EPIPE on the control socket must become an error that names the socket.
//! [`Stdout`] turns EPIPE on standard output into [`StdoutClosed`], which
//! supervisorctl ends on without a message.
//!
//! `tail -f` and `top` write only when there is something new, so they
//! also poll a pipe or socket on standard output ([`hangup_watch`],
//! [`wait_readable`]) and end as soon as its reader has gone.

use std::error::Error;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

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

/// Returns the error of a write to standard output after its reader
/// closed it.
pub fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
}

/// Returns a duplicate of the standard output descriptor when standard
/// output is a pipe or a socket, for [`wait_readable`] to watch. Returns
/// `None` for other files, and when standard output is closed or cannot
/// be inspected, so that its reader is noticed at the next write as
/// before. poll(2) reports POLLERR for a pipe whose readers have all
/// closed it, and POLLHUP for a unix socket whose peer closed it. A TCP
/// peer that only shut down its side shows neither.
pub fn hangup_watch() -> Option<OwnedFd> {
    let duplicate = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned().ok()?);
    let kind = duplicate.metadata().ok()?.file_type();
    (kind.is_fifo() || kind.is_socket()).then(|| OwnedFd::from(duplicate))
}

/// Waits until `input` is readable, or until `timeout` has passed when
/// one is given, and returns whether `input` became readable. Fails with
/// [`closed_error`] as soon as poll(2) reports POLLERR or POLLHUP on
/// `hangup`. Without `input` it returns only on the timeout or a hangup.
pub fn wait_readable(
    input: Option<BorrowedFd<'_>>,
    hangup: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    loop {
        let mut fds = Vec::with_capacity(2);
        if let Some(input) = input {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
        }
        // POLLERR and POLLHUP are reported whatever the requested events.
        if let Some(hangup) = hangup {
            fds.push(PollFd::new(hangup, PollFlags::empty()));
        }
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                // Rounded up, so that the last wait does not return early
                // and poll again at once.
                let millis = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut fds, wait) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(io::Error::from(errno)),
        }
        let events = |fd: &PollFd<'_>| fd.revents().unwrap_or(PollFlags::empty());
        if hangup.is_some() {
            let hung_up = events(fds.last().expect("the hangup descriptor is polled"));
            if hung_up.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                return Err(closed_error());
            }
        }
        if input.is_some() && !events(&fds[0]).is_empty() {
            return Ok(true);
        }
    }
}

/// Replaces a broken-pipe error with one that wraps [`StdoutClosed`].
fn mark_closed(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        closed_error()
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
    fn closed_pipe_ends_the_wait() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let began = Instant::now();
        let wait = wait_readable(None, Some(writer.as_fd()), Some(Duration::from_millis(100)));
        assert!(!wait.unwrap(), "an open pipe ended the wait");
        assert!(began.elapsed() >= Duration::from_millis(100));

        drop(reader);
        let began = Instant::now();
        let error = wait_readable(None, Some(writer.as_fd()), None).unwrap_err();
        assert!(is_stdout_closed(&error), "{error}");
        assert!(began.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn closed_socket_ends_the_wait() {
        let (peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(peer);
        });
        let error =
            wait_readable(None, Some(ours.as_fd()), Some(Duration::from_secs(10))).unwrap_err();
        assert!(is_stdout_closed(&error), "{error}");
        closer.join().unwrap();
    }

    #[test]
    fn readable_input_ends_the_wait() {
        let (input, mut feeder) = std::os::unix::net::UnixStream::pair().unwrap();
        let (_reader, writer) = nix::unistd::pipe().unwrap();
        feeder.write_all(b"x").unwrap();
        let readable = wait_readable(Some(input.as_fd()), Some(writer.as_fd()), None).unwrap();
        assert!(readable);
    }

    #[test]
    fn closed_stdout_found_in_anyhow_chain() {
        let error = anyhow::Error::from(mark_closed(io::Error::from(io::ErrorKind::BrokenPipe)))
            .context("failed to follow log /var/log/corral/web/stdout.log");
        assert!(error.chain().any(is_stdout_closed));
    }
}
