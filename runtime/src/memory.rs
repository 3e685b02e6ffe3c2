//! Keeps long-lived processes small with glibc's allocator: few arenas,
//! and memory that a burst of work leaves free goes back to the kernel.
//!
//! In supervisord a launch runs on tokio's blocking pool, and glibc gives each new thread
//! an arena of its own, up to eight per CPU. Those arenas keep their freed
//! pages after the threads exit, about 2.5 MiB after 500 launches, so
//! supervisord keeps one arena and trims the heap when a burst ends. With a
//! second arena for the blocking pool, that arena kept about 0.5 MiB
//! resident at 500 jobs, and the main heap was no smaller than with one.
//! The launch threads spend their time in system calls, not in malloc.
//!
//! A job list of 1000 jobs is a response body of about 500 KiB. glibc
//! raises its mmap threshold after such a buffer is freed, so the next
//! ones come from the heap and stay there. Fixed thresholds keep buffers
//! above 128 KiB in mappings of their own, which are unmapped when freed.
//! Other C libraries are left alone.

/// Buffers of this size or more get a mapping of their own.
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Free memory at the top of the heap above this size goes back to the
/// kernel at once.
const TRIM_THRESHOLD: libc::c_int = 256 * 1024;

/// Makes every thread share glibc's main malloc arena and fixes the mmap
/// and trim thresholds.
pub fn configure_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator settings. It is called before
    // any other thread exists, so no allocation races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Returns the free pages of every arena to the kernel. supervisord calls it
/// after a burst of starts, and a container's shim and minimal init once
/// their setup is done, since they then live as long as the container.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and only releases
    // memory that no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The environment variable from which glibc reads its tunables when a
/// program starts.
const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// glibc keeps the stacks of exited threads for later threads, up to
/// 40 MiB, and about 24 KiB of each stays resident. After a burst of
/// launches, supervisord's blocking pool leaves 11 to 15 of them. With a
/// cache of size 0, glibc unmaps a stack when its thread has exited.
const NO_STACK_CACHE: &str = "glibc.pthread.stack_cache_size=0";

/// Marks the environment of a program that [`turn_off_stack_cache`]
/// executed again, so that the second start does not repeat it.
const TUNED_VAR: &str = "CORRAL_GLIBC_TUNED";

/// A failure to turn off glibc's cache of thread stacks.
#[derive(Debug, thiserror::Error)]
pub enum StackCacheError {
    #[error("GLIBC_TUNABLES is set already, so glibc's thread stack cache stays on")]
    TunablesSet,
    #[error("failed to execute /proc/self/exe again with {NO_STACK_CACHE}")]
    Exec(#[source] std::io::Error),
}

/// Turns off glibc's cache of thread stacks for this program. glibc reads
/// tunables only at start, so the first call executes the program again
/// through /proc/self/exe, with the same PID and arguments and the tunable
/// in its environment. The second start removes the tunable and the mark
/// from its environment again, so that child processes do not inherit
/// them, and sets the process name, which the kernel set to `exe`, back. An environment that sets GLIBC_TUNABLES already is left as it is.
/// Returns only when the program runs with the cache off or stays as it
/// is; must be called before any other thread exists.
pub fn turn_off_stack_cache() -> Result<(), StackCacheError> {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(TUNED_VAR).is_some() {
        // No other thread exists yet, so nothing reads the environment
        // while it changes.
        std::env::remove_var(TUNED_VAR);
        std::env::remove_var(TUNABLES_VAR);
        crate::selfexe::name_process_after_argv0();
        return Ok(());
    }
    if std::env::var_os(TUNABLES_VAR).is_some() {
        return Err(StackCacheError::TunablesSet);
    }
    let mut arguments = std::env::args_os();
    let program = arguments.next().unwrap_or_default();
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(arguments)
        .env(TUNABLES_VAR, NO_STACK_CACHE)
        .env(TUNED_VAR, "1")
        .exec();
    Err(StackCacheError::Exec(error))
}
