//! A small program that runs inside test containers and reports what it
//! sees, or creates load. It needs nothing from the image but itself, so
//! the same tests run on the host image and in a minimal VM.
//!
//! Usage: `corral-probe COMMAND [ARGS]`:
//! - `identity`: prints `pid=`, `hostname=`, `cwd=`, `uid=`, `gid=` and one
//!   `link=NAME` line per network interface.
//! - `env`: prints the environment, one `KEY=VALUE` per line, sorted.
//! - `alloc BYTES`: allocates and touches BYTES of memory, prints them, exits 0.
//! - `spin THREADS SECONDS`: keeps THREADS threads busy for SECONDS (0 = forever).
//! - `forkloop`: forks children that sleep, forever, retrying when fork fails.
//! - `exit CODE`: exits with CODE.
//! - `sleep SECONDS`: sleeps.

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
        other => usage(&format!("unknown command {other:?}")),
    }
}

fn usage(message: &str) -> ! {
    eprintln!("corral-probe: {message}; commands: identity, env, alloc BYTES, spin THREADS SECONDS, forkloop, exit CODE, sleep SECONDS");
    std::process::exit(2)
}

fn identity() {
    println!("pid={}", std::process::id());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    println!("hostname={}", hostname.trim());
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
