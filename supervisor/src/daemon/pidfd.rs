//! A process referred to by a pidfd (Linux 5.3 or later), so that a signal
//! meant for a monitor adopted from an earlier supervisord never reaches
//! another process that reused its PID.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// A pidfd and the PID it was opened for. Clones share one descriptor, so
/// a job costs supervisord one descriptor however many handles it holds.
#[derive(Debug, Clone)]
pub struct PidFd {
    pid: i32,
    fd: Arc<OwnedFd>,
}

impl PidFd {
    /// Opens a pidfd for `pid`. The caller must not have reaped `pid` yet,
    /// or the PID may already name another process.
    pub fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a PID and a flags word and returns a new
        // file descriptor or -1; it reads no memory of this process.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(raw).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: `raw` is a descriptor that pidfd_open just returned, so
        // nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PidFd {
            pid,
            fd: Arc::new(fd),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the process has exited. This works for processes that are
    /// not children of this one, because a pidfd becomes readable when its
    /// process ends. The exit status stays with the process's parent.
    ///
    /// Only one wait may run per process at a time: epoll accepts each
    /// descriptor once, and the clones share the descriptor.
    pub async fn wait_exited(&self) -> io::Result<()> {
        // SAFETY: the AsyncFd owns a reference to the shared OwnedFd, so the
        // descriptor stays open, and keeps its number and file description,
        // until the AsyncFd is dropped at the end of this function, even if
        // every other handle is dropped first.
        let watched = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                Arc::clone(&self.fd),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(io::Error::from)?;
        let _ready = watched.readable().await?;
        Ok(())
    }

    /// Sends the signal numbered `signal`, which may be a real-time signal
    /// that `nix`'s `Signal` cannot name. Fails with ESRCH once the process
    /// has exited.
    pub fn send_raw_signal(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: the descriptor is a valid pidfd owned by `self`, the info
        // pointer may be null, and the flags must be 0.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn signal_reaches_child_then_fails_after_exit() {
        let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pidfd = PidFd::open(child.id() as i32).unwrap();
        assert_eq!(pidfd.pid(), child.id() as i32);
        pidfd.send_raw_signal(libc::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        let error = pidfd.send_raw_signal(libc::SIGTERM).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
    }

    #[tokio::test]
    async fn wait_returns_after_exit() {
        let mut child = Command::new("/bin/sleep").arg("0.2").spawn().unwrap();
        let pidfd = PidFd::open(child.id() as i32).unwrap();
        let started = std::time::Instant::now();
        tokio::time::timeout(std::time::Duration::from_secs(5), pidfd.wait_exited())
            .await
            .expect("pidfd became readable")
            .unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        child.wait().unwrap();
    }
}
