//! Runs one command and prints `CPU_SECONDS WALL_SECONDS MAX_RSS_KIB` from
//! wait4(2), optionally inside the mount namespace at `--mount-ns PATH`.
//!
//! CPU time is the user plus system time of the command and of every
//! descendant it waited for. The maximum RSS is the largest resident set
//! among them. A small launcher keeps that figure clean: a child forked from
//! a big process (such as a Python interpreter) would report the parent's
//! resident set as its own maximum, because the kernel carries the high-water
//! mark across execve.
//!
//! Built by bench/run-bench with plain rustc, so it uses no crates.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_long};
use std::time::Instant;

#[repr(C)]
struct Timeval {
    seconds: c_long,
    microseconds: c_long,
}

/// `struct rusage` of Linux on 64-bit targets.
#[repr(C)]
struct Rusage {
    user: Timeval,
    system: Timeval,
    max_rss_kib: c_long,
    rest: [c_long; 13],
}

extern "C" {
    fn fork() -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, usage: *mut Rusage) -> c_int;
    fn setns(fd: c_int, kind: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}

const CLONE_NEWNS: c_int = 0x0002_0000;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--mount-ns") {
        let path = args.get(1).cloned().unwrap_or_else(|| usage());
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|error| fail(&format!("failed to open {path}: {error}")));
        // SAFETY: setns takes a descriptor that `file` keeps open and a flag.
        if unsafe { setns(std::os::fd::AsRawFd::as_raw_fd(&file), CLONE_NEWNS) } != 0 {
            let error = std::io::Error::last_os_error();
            fail(&format!("failed to join the mount namespace {path}: {error}"));
        }
        args.drain(..2);
    }
    if args.is_empty() {
        usage();
    }
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_else(|_| fail("argument with a NUL byte")))
        .collect();
    let mut pointers: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());

    let started = Instant::now();
    // SAFETY: this program is single-threaded, so the child may call execvp
    // after fork. The child calls nothing else but _exit.
    let pid = unsafe { fork() };
    if pid == 0 {
        // SAFETY: `pointers` is a NULL-terminated array of pointers into
        // `argv`, which lives until execvp replaces the process.
        unsafe {
            execvp(pointers[0], pointers.as_ptr());
            _exit(127)
        }
    }
    if pid < 0 {
        fail(&format!("fork failed: {}", std::io::Error::last_os_error()));
    }
    let mut status: c_int = 0;
    let mut usage = Rusage {
        user: Timeval { seconds: 0, microseconds: 0 },
        system: Timeval { seconds: 0, microseconds: 0 },
        max_rss_kib: 0,
        rest: [0; 13],
    };
    // SAFETY: `status` and `usage` are valid for writes during the call.
    if unsafe { wait4(pid, &mut status, 0, &mut usage) } != pid {
        fail(&format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let wall = started.elapsed().as_secs_f64();
    let seconds = |t: &Timeval| t.seconds as f64 + t.microseconds as f64 / 1e6;
    let cpu = seconds(&usage.user) + seconds(&usage.system);
    println!("{cpu:.6} {wall:.6} {}", usage.max_rss_kib);
    // Exit as the command did: its code, or 128 plus the signal.
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    std::process::exit(code);
}

fn usage() -> ! {
    fail("usage: measure [--mount-ns PATH] COMMAND [ARGS]")
}

fn fail(message: &str) -> ! {
    eprintln!("measure: {message}");
    std::process::exit(125)
}
