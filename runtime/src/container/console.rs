//! A pseudo-terminal for the container's process: the init opens it in the
//! container's own devpts and sends the master to the client's console
//! socket (`--console-socket`), as runc does; the slave becomes the
//! process's stdin, stdout, stderr and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use nix::sys::stat::Mode;

use super::init::InitError;

fn failed(operation: &str) -> impl FnOnce(nix::Error) -> InitError + '_ {
    move |source| InitError::Sys {
        operation: operation.to_string(),
        source,
    }
}

/// Opens a pseudo-terminal in the current devpts, sends its master over
/// `socket` and returns the slave.
pub(crate) fn open_console(socket: &UnixStream) -> Result<OwnedFd, InitError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(failed("open /dev/ptmx"))?;
    grantpt(&master).map_err(failed("grant the pseudo-terminal"))?;
    unlockpt(&master).map_err(failed("unlock the pseudo-terminal"))?;
    let name = ptsname_r(&master).map_err(failed("name the pseudo-terminal"))?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| InitError::Sys {
        operation: format!("open {name}"),
        source,
    })?;

    let fds = [master.as_raw_fd()];
    let payload = [IoSlice::new(name.as_bytes())];
    sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &payload,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(failed("send the terminal to the console socket"))?;
    Ok(slave)
}

/// Makes `slave` the controlling terminal of a new session and the
/// process's stdin, stdout and stderr.
pub(crate) fn attach(slave: OwnedFd) -> Result<(), InitError> {
    nix::unistd::setsid().map_err(failed("start a session for the terminal"))?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal the
    // terminal from another session) and the descriptor is open.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(failed("make the terminal the controlling terminal")(
            nix::Error::last(),
        ));
    }
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors replaces them with the
        // open slave; no Rust object owns descriptors 0 to 2 in the init.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(failed("attach the terminal to stdio")(nix::Error::last()));
        }
    }
    Ok(())
}
