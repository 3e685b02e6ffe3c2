//! A process referred to by a pidfd (Linux 5.3 or later), so that a signal
//! meant for a shim never reaches another process that reused its PID after
//! the shim was reaped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

/// A pidfd and the PID it was opened for.
#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
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
        Ok(PidFd { pid, fd })
    }

    /// Returns a second handle on the same process, through a duplicated
    /// descriptor.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(PidFd {
            pid: self.pid,
            fd: self.fd.try_clone()?,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the process has exited. This works for processes that are
    /// not children of this one, because a pidfd becomes readable when its
    /// process ends. The exit status stays with the process's parent.
    pub async fn wait_exited(&self) -> io::Result<()> {
        let fd = self.fd.try_clone()?;
        // SAFETY: `fd` is an open descriptor owned by the OwnedFd that moves
        // into the AsyncFd, so it stays open and keeps its number until the
        // AsyncFd is dropped at the end of this function.
        let watched = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?;
        let _ready = watched.readable().await?;
        Ok(())
    }

    /// Sends `signal` to the process. Fails with ESRCH once it has exited.
    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: the descriptor is a valid pidfd owned by `self`, the info
        // pointer may be null, and the flags must be 0.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
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
        pidfd.send_signal(Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        let error = pidfd.send_signal(Signal::SIGTERM).unwrap_err();
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
