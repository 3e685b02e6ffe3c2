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
