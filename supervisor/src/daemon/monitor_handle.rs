//! supervisord's handle on one container's `corral-monitor`.
//!
//! A monitor that this supervisord spawned is its child and is addressed by
//! PID: the kernel does not reuse the PID of an unreaped child. Only the
//! supervisor task reaps monitors, on SIGCHLD, and it drops the container
//! in the same step. So a running job costs no file descriptor. A monitor
//! adopted from an earlier supervisord is not a child, so it is addressed
//! through a pidfd instead, which its own wait task watches.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::daemon::pidfd::PidFd;

#[derive(Debug, Clone)]
pub enum MonitorHandle {
    /// A child of this supervisord, not reaped yet.
    Child { pid: i32 },
    /// A monitor started by an earlier supervisord.
    Adopted(PidFd),
}

impl MonitorHandle {
    pub fn pid(&self) -> i32 {
        match self {
            MonitorHandle::Child { pid } => *pid,
            MonitorHandle::Adopted(pidfd) => pidfd.pid(),
        }
    }

    /// Returns whether the monitor blocks `signal`, from the `SigBlk` mask
    /// of /proc/PID/status. A monitor blocks the signals it handles as the
    /// first step of its `main`, so before that the default action of a
    /// stop signal would end it. False when the status cannot be read.
    pub fn blocks_signal(&self, signal: Signal) -> bool {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid())) else {
            return false;
        };
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigBlk:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal as u32 - 1)) != 0)
    }

    /// Sends `signal`. Fails with ESRCH once the monitor has exited.
    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        self.send_raw_signal(signal as libc::c_int)
    }

    /// Sends the signal numbered `signal`, which may be a real-time signal
    /// that [`Signal`] cannot name.
    pub fn send_raw_signal(&self, signal: libc::c_int) -> io::Result<()> {
        match self {
            MonitorHandle::Child { pid } => {
                // SAFETY: kill takes two integers and reads no memory. The
                // PID is an unreaped child's, so it names no other process.
                let result = unsafe { libc::kill(*pid, signal) };
                if result < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            MonitorHandle::Adopted(pidfd) => pidfd.send_raw_signal(signal),
        }
    }

    /// Reaps a child monitor that has exited, without waiting. Returns
    /// `None` while it runs and for adopted monitors, which are not
    /// children.
    pub fn try_reap(&self) -> Option<io::Result<ExitStatus>> {
        let MonitorHandle::Child { pid } = self else {
            return None;
        };
        match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(Ok(ExitStatus::from_raw((code & 0xff) << 8))),
            Ok(WaitStatus::Signaled(_, signal, core_dumped)) => {
                let core = if core_dumped { 0x80 } else { 0 };
                Some(Ok(ExitStatus::from_raw(signal as i32 | core)))
            }
            Ok(_) => None,
            // Someone else reaped it: the exit record is all that is left.
            Err(Errno::ECHILD) => Some(Err(io::Error::from_raw_os_error(libc::ECHILD))),
            Err(error) => {
                tracing::warn!(pid, %error, "failed to wait for a monitor");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;

    fn reap_within(handle: &MonitorHandle, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = handle.try_reap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn child_is_signalled_and_reaped() {
        let child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let handle = MonitorHandle::Child {
            pid: child.id() as i32,
        };
        drop(child);
        assert!(handle.try_reap().is_none(), "a running child is not reaped");
        handle.send_signal(Signal::SIGTERM).unwrap();
        let status = reap_within(&handle, Duration::from_secs(5)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        let again = handle.try_reap().unwrap().unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::ECHILD));
    }

    #[test]
    fn exit_code_is_kept() {
        let child = Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let handle = MonitorHandle::Child {
            pid: child.id() as i32,
        };
        drop(child);
        let status = reap_within(&handle, Duration::from_secs(5)).unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[test]
    fn adopted_monitor_is_never_reaped() {
        let handle = MonitorHandle::Adopted(PidFd::open(1).unwrap());
        assert_eq!(handle.pid(), 1);
        assert!(handle.try_reap().is_none());
    }
}
