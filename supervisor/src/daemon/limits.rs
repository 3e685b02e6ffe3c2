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
/// old one for [`original_soft_limit`].
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

/// Returns the soft limit supervisord started with, when it raised its
/// own, for the monitors to set back for the jobs.
pub fn original_soft_limit() -> Option<u64> {
    let original = ORIGINAL_SOFT_LIMIT.load(Ordering::Relaxed);
    (original != u64::MAX).then_some(original)
}

/// Sets the soft limit of open files to `soft`, at most the hard limit.
pub fn set_soft_limit(soft: u64) -> nix::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)
}
