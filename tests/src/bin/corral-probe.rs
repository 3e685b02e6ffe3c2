//! A small program that runs inside test containers and reports what it
//! sees, or creates load. It needs nothing from the image but itself, so
//! the same tests run on the host image and in a minimal VM.
//!
//! Usage: `corral-probe COMMAND [ARGS]`:
//! - `identity`: prints `pid=`, `hostname=`, `domainname=`, `cwd=`, `uid=`,
//!   `gid=` and one `link=NAME` line per network interface.
//! - `env`: prints the environment, one `KEY=VALUE` per line, sorted.
//! - `alloc BYTES`: allocates and touches BYTES of memory, prints them, exits 0.
//! - `spin THREADS SECONDS`: keeps THREADS threads busy for SECONDS (0 = forever).
//! - `forkloop`: forks children that sleep, forever, retrying when fork fails.
//! - `exit CODE`: exits with CODE.
//! - `sleep SECONDS`: sleeps.
//! - `args [ARGS]`: prints its arguments as one JSON array of strings.
//! - `status`: prints the `Uid`, `Gid`, `Groups`, `Umask`, `Cap*`,
//!   `NoNewPrivs` and `Seccomp` lines of /proc/self/status.
//! - `rlimits`: prints `NAME SOFT HARD` per resource limit.
//! - `mounts`: prints `TARGET FSTYPE MOUNT_OPTIONS SUPER_OPTIONS TAGS` per
//!   line of /proc/self/mountinfo, `-` for no propagation tags.
//! - `sysctl KEYS`: prints `KEY=VALUE` read from /proc/sys, or
//!   `KEY!errno=N` when the read fails.
//! - `syscall NAME [ARG]`: makes one system call (`getppid`, `sync`,
//!   `uname`, `personality ARG`, `mkdir PATH`, `getpriority`) and prints
//!   `NAME=RESULT` or `NAME!errno=N`.
//! - `write PATH`: creates PATH and writes to it; prints `ok` or `errno=N`.
//! - `read PATH`: prints `bytes=N` read from PATH or `errno=N`.
//! - `stat PATHS`: prints `PATH TYPE MAJOR:MINOR MODE UID GID` (octal mode,
//!   type `c`, `b`, `d`, `f`, `l`, `p` or `s`) or `PATH missing`.
//! - `namespaces`: prints `NAME=INODE` for each entry of /proc/self/ns.
//! - `sched`: prints the scheduling policy, nice value and I/O priority.
//! - `tty`: prints whether stdin, stdout and stderr are terminals.
//!
//! Attempts to escape, each printing `NAME=RESULT` or `NAME!errno=N` lines
//! (see `attacks.rs`):
//! - `write-exe PID`: appends to the binary of PID through /proc/PID/exe,
//!   directly and by reopening an O_PATH descriptor.
//! - `hijack-exe DIR SECONDS`: as PID 1, waits for another binary to run in
//!   the container, holds its /proc/PID/exe, kills it and then writes it.
//! - `fds`: lists the probe's open descriptors and opens `..` of each.
//! - `fds-of PID`: lists /proc/PID/fd and opens each entry.
//! - `raw-device MAJOR MINOR`: creates a block device node and reads it.
//! - `masked PATHS`: counts the entries or bytes readable at each path.
//! - `open-write PATHS`: opens each path for writing without writing.
//! - `privileged-call NAME`: one call that needs a capability the job lacks
//!   (`mount`, `umount2`, `init_module`, `finit_module`, `delete_module`,
//!   `reboot`, `keyctl`, `add_key`, `bpf`, `perf_event_open`,
//!   `open_by_handle_at`, `unshare`, `swapon`, `settimeofday`).

// The module sits in a directory named after the probe, which has no
// main.rs, so cargo does not build it as a binary of its own.
#[path = "corral-probe/attacks.rs"]
mod attacks;

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("");
    let number = |index: usize| -> u64 {
        args.get(index)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| usage(&format!("{command} needs a number as argument {index}")))
    };
    match command {
        "identity" => identity(),
        "env" => {
            let mut entries: Vec<String> = std::env::vars_os()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect();
            entries.sort();
            for entry in entries {
                println!("{entry}");
            }
        }
        "alloc" => {
            let bytes = number(1) as usize;
            let mut memory = vec![0u8; bytes];
            // Writing every page makes the kernel charge it to the cgroup.
            for page in memory.chunks_mut(4096) {
                page[0] = 1;
            }
            println!("{}", std::hint::black_box(&memory).len());
        }
        "spin" => spin(number(1), number(2)),
        "forkloop" => forkloop(),
        "exit" => std::process::exit(number(1) as i32),
        "sleep" => std::thread::sleep(Duration::from_secs(number(1))),
        "args" => {
            let rest: Vec<String> = std::env::args_os()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            println!(
                "{}",
                serde_json::to_string(&rest).expect("strings serialize")
            );
        }
        "status" => status(),
        "rlimits" => rlimits(),
        "mounts" => mounts(),
        "sysctl" => {
            for key in &args[1..] {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                match std::fs::read_to_string(&path) {
                    Ok(value) => println!("{key}={}", value.trim()),
                    Err(error) => println!("{key}!errno={}", error.raw_os_error().unwrap_or(0)),
                }
            }
        }
        "syscall" => syscall(&args[1..]),
        "write" => write(argument(&args, 1)),
        "read" => match std::fs::read(argument(&args, 1)) {
            Ok(bytes) => println!("bytes={}", bytes.len()),
            Err(error) => println!("errno={}", error.raw_os_error().unwrap_or(0)),
        },
        "stat" => {
            for path in &args[1..] {
                stat(path);
            }
        }
        "namespaces" => namespaces(),
        "sched" => sched(),
        "tty" => {
            for (name, fd) in [("stdin", 0), ("stdout", 1), ("stderr", 2)] {
                // SAFETY: isatty only inspects the descriptor number.
                let is_tty = unsafe { libc::isatty(fd) } == 1;
                println!("{name}={is_tty}");
            }
        }
        "write-exe" => attacks::write_exe(argument(&args, 1)),
        "hijack-exe" => attacks::hijack_exe(argument(&args, 1), number(2)),
        "fds" => attacks::own_descriptors(),
        "fds-of" => attacks::descriptors_of(argument(&args, 1)),
        "raw-device" => attacks::raw_device(number(1), number(2)),
        "masked" => attacks::masked(&args[1..]),
        "open-write" => attacks::open_write(&args[1..]),
        "privileged-call" => attacks::privileged_call(argument(&args, 1)),
        other => usage(&format!("unknown command {other:?}")),
    }
}

fn usage(message: &str) -> ! {
    eprintln!(
        "corral-probe: {message}; commands: identity, env, alloc BYTES, spin THREADS SECONDS, \
         forkloop, exit CODE, sleep SECONDS, args, status, rlimits, mounts, sysctl KEYS, \
         syscall NAME [ARG], write PATH, read PATH, stat PATHS, namespaces, sched, tty, \
         write-exe PID, hijack-exe DIR SECONDS, fds, fds-of PID, raw-device MAJOR MINOR, masked PATHS, \
         open-write PATHS, privileged-call NAME"
    );
    std::process::exit(2)
}

fn argument(args: &[String], index: usize) -> &str {
    args.get(index)
        .map(String::as_str)
        .unwrap_or_else(|| usage(&format!("{} needs argument {index}", args[0])))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn status() {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let keys = [
        "Uid",
        "Gid",
        "Groups",
        "Umask",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if keys.contains(&key) {
            println!(
                "{key}={}",
                value.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
}

fn rlimits() {
    let resources = [
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_CORE", libc::RLIMIT_CORE),
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", libc::RLIMIT_NICE),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_RSS", libc::RLIMIT_RSS),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ];
    let show = |value: libc::rlim_t| {
        if value == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            value.to_string()
        }
    };
    for (name, resource) in resources {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid `limit`.
        if unsafe { libc::getrlimit(resource, &mut limit) } == 0 {
            println!("{name} {} {}", show(limit.rlim_cur), show(limit.rlim_max));
        } else {
            println!("{name} errno={}", errno());
        }
    }
}

/// Prints the fields of each mountinfo line that tests compare: the mount
/// point (field 5), per-mount options (6), the optional propagation tags
/// (from 7 up to the `-` separator), filesystem type and superblock options.
fn mounts() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < separator + 4 || separator < 6 {
            continue;
        }
        let tags = fields[6..separator].join(",");
        let tags = if tags.is_empty() {
            "-".to_string()
        } else {
            tags
        };
        println!(
            "{} {} {} {} {}",
            fields[4],
            fields[separator + 1],
            fields[5],
            fields[separator + 3],
            tags
        );
    }
}

fn syscall(args: &[String]) {
    let name = args.first().map(String::as_str).unwrap_or("");
    // SAFETY: each call passes integer arguments or pointers to live,
    // NUL-terminated or correctly sized buffers owned by this frame.
    let result: libc::c_long = unsafe {
        match name {
            "getppid" => libc::syscall(libc::SYS_getppid),
            "sync" => libc::syscall(libc::SYS_sync),
            "getpriority" => libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, 0),
            "uname" => {
                let mut buffer: libc::utsname = std::mem::zeroed();
                libc::syscall(libc::SYS_uname, &mut buffer as *mut libc::utsname)
            }
            "personality" => {
                let value = args
                    .get(1)
                    .and_then(|v| parse_number(v))
                    .unwrap_or_else(|| usage("personality needs a number"));
                libc::syscall(libc::SYS_personality, value as libc::c_ulong)
            }
            "mkdir" => {
                let path = std::ffi::CString::new(argument(args, 1)).expect("path without NUL");
                libc::syscall(libc::SYS_mkdir, path.as_ptr(), 0o755)
            }
            other => usage(&format!("unknown system call {other:?}")),
        }
    };
    if result < 0 {
        println!("{name}!errno={}", errno());
    } else {
        println!("{name}={result}");
    }
}

/// Parses decimal or `0x` hexadecimal.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn write(path: &str) {
    use std::io::Write;
    let result = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .and_then(|mut file| file.write_all(b"probe\n"));
    match result {
        Ok(()) => println!("ok"),
        Err(error) => println!("errno={}", error.raw_os_error().unwrap_or(0)),
    }
}

fn stat(path: &str) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        println!("{path} missing");
        return;
    };
    let kind = metadata.file_type();
    let letter = if kind.is_char_device() {
        "c"
    } else if kind.is_block_device() {
        "b"
    } else if kind.is_dir() {
        "d"
    } else if kind.is_symlink() {
        "l"
    } else if kind.is_fifo() {
        "p"
    } else if kind.is_socket() {
        "s"
    } else {
        "f"
    };
    let rdev = metadata.rdev();
    println!(
        "{path} {letter} {}:{} {:o} {} {}",
        libc::major(rdev),
        libc::minor(rdev),
        metadata.mode() & 0o7777,
        metadata.uid(),
        metadata.gid()
    );
}

fn namespaces() {
    use std::os::unix::fs::MetadataExt;
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/ns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        if let Ok(metadata) = std::fs::metadata(format!("/proc/self/ns/{name}")) {
            println!("{name}={}", metadata.ino());
        }
    }
}

fn sched() {
    // SAFETY: sched_getscheduler takes a PID only; 0 is the caller.
    let policy = unsafe { libc::sched_getscheduler(0) };
    println!("policy={policy}");
    // SAFETY: getpriority takes integers only. errno tells a nice value of
    // -1 from a failure, and no failure is possible for the caller itself.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    println!("nice={nice}");
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: ioprio_get takes integers only.
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
    if ioprio < 0 {
        println!("ioprio!errno={}", errno());
    } else {
        // The kernel packs the class above 13 bits of level.
        println!("ioprio_class={}", ioprio >> 13);
        println!("ioprio_level={}", ioprio & 0x1fff);
    }
}

fn identity() {
    println!("pid={}", std::process::id());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    println!("hostname={}", hostname.trim());
    let domainname = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap_or_default();
    println!("domainname={}", domainname.trim());
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("cwd={cwd}");
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    println!("uid={uid}");
    println!("gid={gid}");
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    links.sort();
    for link in links {
        println!("link={link}");
    }
}

fn spin(threads: u64, seconds: u64) {
    let deadline = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let mut counter = 0u64;
                loop {
                    for _ in 0..1_000_000 {
                        counter = std::hint::black_box(counter.wrapping_add(1));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

fn forkloop() -> ! {
    loop {
        // SAFETY: the probe is single-threaded here, so the child may run
        // any code after fork; it only sleeps and exits.
        match unsafe { libc::fork() } {
            0 => {
                std::thread::sleep(Duration::from_secs(60));
                // SAFETY: ends the child without running the parent's
                // destructors.
                unsafe { libc::_exit(0) }
            }
            -1 => std::thread::sleep(Duration::from_millis(10)),
            _ => {}
        }
    }
}
