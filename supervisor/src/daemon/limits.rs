//! The open files limit: raised for supervisord, restored for the jobs.
//!
//! supervisord keeps a descriptor per adopted job, per API connection and
//! per published port, and 1024, a common default soft limit, would cap
//! those. Its children get the soft limit supervisord started with, as
//! systemd recommends for services that raise their own, because some
//! programs misbehave with a large soft limit (`select` cannot watch
//! descriptors above 1023, and some loop over every possible descriptor).

use std::sync::atomic::{AtomicU64, Ordering};

/// The soft limit supervisord started with; `u64::MAX` until it raised it.
static ORIGINAL_SOFT_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raises the soft limit of open files to the hard limit and remembers the
/// old one for [`restore_for_child`].
pub fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "failed to read the open files limit");
            return;
        }
    };
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            ORIGINAL_SOFT_LIMIT.store(soft, Ordering::Relaxed);
            tracing::debug!(from = soft, to = hard, "raised the open files limit");
        }
        Err(error) => tracing::warn!(soft, hard, %error, "failed to raise the open files limit"),
    }
}

/// Sets the soft limit back to the one supervisord started with. Meant for a
/// forked child before exec: it only reads an atomic and makes two system
/// calls, which is async-signal-safe.
pub fn restore_for_child() -> std::io::Result<()> {
    let original = ORIGINAL_SOFT_LIMIT.load(Ordering::Relaxed);
    if original == u64::MAX {
        return Ok(());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which lives on the
    // stack for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    limit.rlim_cur = original.min(limit.rlim_max);
    // SAFETY: setrlimit reads the rlimit, which lives on the stack for the
    // whole call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
