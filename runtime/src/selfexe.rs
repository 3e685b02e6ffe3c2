//! Protection of the runtime's own binary from writes through
//! `/proc/PID/exe` by processes inside a container.
//!
//! A container process can reach the binary of any corral process it can
//! see (the init before it executes, the minimal init, an `exec` child), or
//! run the binary itself through `/proc/self/exe`; with write access it could
//! replace the host's runtime. Before it starts container processes, corral
//! executes itself again from a detached, read-only bind mount of its binary
//! (open_tree and mount_setattr, Linux 5.12). Every later `/proc/PID/exe` of
//! these processes then names that mount, where opening the binary for
//! writing fails with EROFS even for root. No file is copied, so this costs
//! one execve. A binary that already runs from a read-only mount (for
//! example a read-only bind mount of the installed file onto itself) skips
//! it.
//!
//! Every `create`, `run`, `shim` and `exec` needs the re-execution, including
//! a container with a new PID namespace and nothing joined, where no
//! container process can see a runtime process:
//!
//! - `exec` forks a child into the container's PID namespace, where every
//!   process of the container can see it until it executes.
//! - Without a new PID namespace, or with one joined by path, the container
//!   shares its PID namespace with the runtime or with other processes, and
//!   the init is visible while it builds the root.
//! - createContainer and startContainer hooks run as children of the init
//!   and see it as PID 1. A startContainer hook is a program of the image.
//! - The init's own `execve` can land on the runtime's binary: the image may
//!   make the command, a symlink on its path, its `#!` interpreter or a
//!   binfmt_misc interpreter resolve to `/proc/self/exe`, which names the
//!   init's binary. The job then runs the runtime's binary from its
//!   original mount, and any process of the job reaches it through
//!   `/proc/1/exe`, keeps an `O_PATH` descriptor, and reopens it for writing
//!   once no process executes it. A check of the path before `execve` races
//!   with other writers of a shared volume, and a check after `execve` comes
//!   too late, so no cheaper test proves this case safe.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// Returns whether the binary of this process sits on a read-only mount.
pub fn is_protected() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .map(|stat| stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

/// Opens a detached, read-only bind mount of the file at `path`. Executing
/// it, through the descriptor or through `/proc/PID/fd/N`, runs a binary
/// that [`is_protected`] finds read-only, because no process can open it
/// for writing.
pub fn read_only_tree(path: &Path) -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 1;

    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }

    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: open_tree reads a NUL-terminated path and returns a new
    // descriptor or -1; the result is checked before use.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attributes = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = CString::new("").expect("no NUL");
    // SAFETY: `attributes` is a complete mount_attr that outlives the call
    // and its size is passed; the empty path with AT_EMPTY_PATH names `tree`.
    let changed = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attributes as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if changed < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Executes this program again from a read-only bind mount of its binary,
/// with the same arguments and environment. Returns only on failure, with
/// the reason; the caller decides whether to continue unprotected.
pub fn reexec_read_only() -> std::io::Error {
    let tree = match read_only_tree(Path::new("/proc/self/exe")) {
        Ok(tree) => tree,
        Err(error) => return error,
    };
    let empty = CString::new("").expect("no NUL");
    let to_c = |value: OsString| CString::new(value.into_vec()).ok();
    let args: Vec<CString> = std::env::args_os().filter_map(to_c).collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(key, value)| {
            let mut entry = key;
            entry.push("=");
            entry.push(value);
            to_c(entry)
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into
    // CStrings that outlive the call; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            tree.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    std::io::Error::last_os_error()
}
/// Sets this process's name (`/proc/self/comm`, which ps, top and pgrep
/// show) to the file name of argv[0]. The kernel names a process after the
/// path it executed, which is a bare descriptor number when corral runs
/// from `/proc/PID/fd/N` (as supervisord's monitors start the shim) or
/// after [`reexec_read_only`], and `exe` after an execution of
/// `/proc/self/exe`. Children forked later, such as a container's init,
/// inherit the name.
pub fn name_process_after_argv0() {
    use std::os::unix::ffi::OsStrExt;

    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let Some(name) = Path::new(&arg0).file_name() else {
        return;
    };
    let Ok(name) = std::ffi::CString::new(name.as_bytes()) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which `name`
    // keeps alive for the call; the kernel copies at most 15 bytes of it.
    // A failure leaves the old name, which is only cosmetic.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}
