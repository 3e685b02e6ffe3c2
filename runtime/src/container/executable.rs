//! Finding the process's executable inside the container, and the error that
//! names why `process.args[0]` cannot be executed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, FsType};
use nix::unistd::{faccessat, AccessFlags};
use serde::{Deserialize, Serialize};

/// Number of bytes at the start of a file that execve reads to find its
/// format and the `#!` line of a script: BINPRM_BUF_SIZE, 256 in current
/// kernels and 128 in older ones.
const HEADER_SIZE: usize = 256;

/// Magic number at the start of an ELF file.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// The executable of a container's process cannot be executed.
///
/// `create` returns it when the init's check fails, so the caller learns
/// the reason before `start` instead of from an exit status of 127 or 126.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("exec {program:?}: {reason}")]
pub struct ExecutableError {
    /// `process.args[0]` as config.json gives it.
    pub program: String,
    pub reason: ExecutableReason,
}

/// Reason that an executable cannot be executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ExecutableReason {
    #[error("no such file in the container")]
    NotFound,
    /// A name without a slash matched no file in any directory of `PATH`.
    #[error("not found in the container's PATH {search_path:?}")]
    NotInPath { search_path: String },
    /// The file lacks execute permission for the process's user, is on a
    /// noexec mount, or a directory on its path lacks search permission.
    #[error("permission denied: the process's user may not execute {} in the container", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("{} is a directory", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    #[error("failed to check {}: {message}", path.display())]
    Inaccessible { path: PathBuf, message: String },
    /// The file starts with neither an ELF header nor `#!`, so execve
    /// fails with ENOEXEC.
    #[error("{} is not an executable format (no ELF header or #! line)", path.display())]
    UnknownFormat { path: PathBuf },
    /// The `#!` line of a script names no interpreter.
    #[error("{} has a #! line without an interpreter", path.display())]
    NoInterpreter { path: PathBuf },
    /// The interpreter on the `#!` line of `script` cannot be executed.
    #[error("interpreter {interpreter:?} of {}: {reason}", script.display())]
    Interpreter {
        interpreter: String,
        script: PathBuf,
        reason: Box<ExecutableReason>,
    },
}

/// Returns the `PATH` of a process environment, or `default` without one.
pub(crate) fn search_path<'a>(env: &'a [String], default: &'a str) -> &'a str {
    env.iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(default)
}

/// Directory where binfmt_misc lists its handlers, one file each besides
/// `register` and `status`.
/// Interpreters that the check follows from a script. Linux follows a few
/// more (the loop in `exec_binprm`, fs/exec.c, fails with ELOOP after six
/// format handlers), so a longer chain is left to execve.
const MAX_CHECKED_INTERPRETERS: usize = 4;

const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// Returns whether binfmt_misc is enabled with at least one enabled
/// handler, so that execve may run files that are neither ELF nor `#!`
/// scripts.
///
/// The container's own proc mount lacks binfmt_misc, so this is read
/// before pivot_root. A directory that is missing, unreadable or not a
/// mounted binfmt_misc counts as no handlers.
///
/// NOTE: the tests run only on hosts without handlers, because registering
/// one changes every process of the host.
pub(crate) fn binfmt_misc_handlers_enabled() -> bool {
    // O_PATH without O_DIRECTORY does not trigger an autofs mount point
    // (systemd's proc-sys-fs-binfmt_misc.automount), so the check does not
    // wait for an automounter that mounts in another namespace.
    let Ok(directory) =
        nix::fcntl::open(BINFMT_MISC, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
    else {
        return false;
    };
    // BINFMTFS_MAGIC of linux/magic.h.
    let mounted = fstatfs(&directory).is_ok_and(|fs| fs.filesystem_type() == FsType(0x4249_4e4d));
    if !mounted {
        return false;
    }
    let enabled =
        |path: &Path| std::fs::read_to_string(path).is_ok_and(|text| text.starts_with("enabled"));
    if !enabled(&Path::new(BINFMT_MISC).join("status")) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(BINFMT_MISC) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        name != "register" && name != "status" && enabled(&entry.path())
    })
}

/// Finds the file that execve would run for `program`, as the calling
/// process's user and relative to its working directory.
///
/// A `program` with a slash names the file itself. Otherwise each
/// directory of `search_path` is tried in order, as runc and execvp(3) do,
/// and the first executable regular file wins. When no directory has one
/// but one has a file that is not executable, the error is permission
/// denied on that file, as a shell reports it.
pub(crate) fn locate(program: &str, search_path: &str) -> Result<PathBuf, ExecutableError> {
    let fail = |reason| ExecutableError {
        program: program.to_string(),
        reason,
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return check_file(&path).map(|()| path).map_err(fail);
    }
    let mut denied = None;
    for directory in search_path.split(':').filter(|dir| !dir.is_empty()) {
        let candidate = Path::new(directory).join(program);
        match check_file(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(ExecutableReason::PermissionDenied { path }) if denied.is_none() => {
                denied = Some(path);
            }
            Err(_) => {}
        }
    }
    Err(fail(match denied {
        Some(path) => ExecutableReason::PermissionDenied { path },
        None => ExecutableReason::NotInPath {
            search_path: search_path.to_string(),
        },
    }))
}

/// Checks that `path`, the file that [`locate`] found for `program`,
/// starts with an ELF header or a `#!` line, and that the interpreter of a
/// script can be executed.
///
/// Files of other formats pass when `other_formats` is true, because a
/// binfmt_misc handler may run them. Each interpreter is checked as the
/// program is, and so is the interpreter of an interpreter that is itself
/// a script, up to [`MAX_CHECKED_INTERPRETERS`] deep. A file that cannot
/// be read passes, and execve decides.
pub(crate) fn check_format(
    program: &str,
    path: &Path,
    other_formats: bool,
) -> Result<(), ExecutableError> {
    check_header(path, other_formats).map_err(|reason| ExecutableError {
        program: program.to_string(),
        reason,
    })
}

fn check_header(path: &Path, other_formats: bool) -> Result<(), ExecutableReason> {
    let Some((header, size)) = read_header(path) else {
        return Ok(());
    };
    let mut interpreter = match parse_header(&header, size) {
        Format::Elf | Format::Undecided => return Ok(()),
        Format::Unknown if other_formats => return Ok(()),
        Format::Unknown => {
            return Err(ExecutableReason::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
        Format::Script(None) => {
            return Err(ExecutableReason::NoInterpreter {
                path: path.to_path_buf(),
            })
        }
        Format::Script(Some(interpreter)) => interpreter,
    };
    // Each interpreter is checked as the program was, and the error names
    // the script whose #! line led to it.
    let mut script = path.to_path_buf();
    for _ in 0..MAX_CHECKED_INTERPRETERS {
        let fail = |reason| ExecutableReason::Interpreter {
            interpreter: interpreter.to_string_lossy().into_owned(),
            script: script.clone(),
            reason: Box::new(reason),
        };
        check_file(&interpreter).map_err(fail)?;
        let Some((header, size)) = read_header(&interpreter) else {
            return Ok(());
        };
        let next = match parse_header(&header, size) {
            Format::Elf | Format::Undecided => return Ok(()),
            Format::Unknown if other_formats => return Ok(()),
            Format::Unknown => {
                return Err(fail(ExecutableReason::UnknownFormat {
                    path: interpreter.clone(),
                }))
            }
            Format::Script(None) => {
                return Err(fail(ExecutableReason::NoInterpreter {
                    path: interpreter.clone(),
                }))
            }
            Format::Script(Some(next)) => next,
        };
        script = std::mem::replace(&mut interpreter, next);
    }
    Ok(())
}

/// Reads the first [`HEADER_SIZE`] bytes of the file `path`, or all of a
/// shorter file, and returns them with the file's size in bytes.
///
/// Returns None when the file cannot be opened or read: execve needs no
/// read permission on an ELF binary (mode 0711 runs), and a seccomp profile
/// may deny open or read while it allows execve, so execve decides.
fn read_header(path: &Path) -> Option<(Vec<u8>, u64)> {
    // O_NONBLOCK keeps a FIFO swapped in after the check from blocking the
    // open. The std library adds O_CLOEXEC.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    let size = metadata.len();
    let expected = usize::try_from(size).map_or(HEADER_SIZE, |size| size.min(HEADER_SIZE));
    let mut header = vec![0; expected];
    let mut filled = 0;
    // One read returns the whole header of a regular file, except when a
    // signal or a short read of a network file system cuts it.
    while filled < expected {
        match file.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    // A file that shrank since its size was read is left to execve.
    (filled == expected).then_some((header, size))
}

/// Format of an executable, from the first bytes that execve reads.
#[derive(Debug, PartialEq, Eq)]
enum Format {
    Elf,
    /// A `#!` script with the interpreter its first line names, or None
    /// when the line names none.
    Script(Option<PathBuf>),
    /// A `#!` line whose interpreter runs past the header, which the
    /// kernel rejects. The check leaves that case to execve.
    Undecided,
    Unknown,
}

/// Parses the first bytes of a file of `size` bytes as Linux's
/// binfmt_script does: blanks (space, tab) after `#!` are skipped, and the
/// interpreter ends at a blank, a newline, a NUL or the end of the file.
fn parse_header(header: &[u8], size: u64) -> Format {
    if header.starts_with(ELF_MAGIC) {
        return Format::Elf;
    }
    let Some(line) = header.strip_prefix(b"#!") else {
        return Format::Unknown;
    };
    let is_blank = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = line
        .iter()
        .position(|byte| !is_blank(byte))
        .unwrap_or(line.len());
    let rest = &line[start..];
    let end = rest
        .iter()
        .position(|byte| is_blank(byte) || *byte == b'\n' || *byte == 0);
    let name = match end {
        Some(end) => &rest[..end],
        None if (header.len() as u64) < size => return Format::Undecided,
        None => rest,
    };
    if name.is_empty() {
        return Format::Script(None);
    }
    Format::Script(Some(PathBuf::from(OsStr::from_bytes(name))))
}

/// Checks that `path` is a regular file that this process may execute.
fn check_file(path: &Path) -> Result<(), ExecutableReason> {
    let metadata = std::fs::metadata(path).map_err(|error| match error.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => ExecutableReason::NotFound,
        Some(libc::EACCES) => ExecutableReason::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ExecutableReason::Inaccessible {
            path: path.to_path_buf(),
            message: error.to_string(),
        },
    })?;
    if metadata.is_dir() {
        return Err(ExecutableReason::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !metadata.is_file() {
        return Err(ExecutableReason::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    // AT_EACCESS checks with the effective IDs and capabilities, which
    // execve uses too. The kernel also returns EACCES for a file on a
    // noexec mount.
    match faccessat(
        AT_FDCWD,
        path,
        AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(nix::Error::EACCES) => Err(ExecutableReason::PermissionDenied {
            path: path.to_path_buf(),
        }),
        // A seccomp profile may deny faccessat2 while it allows execve, so
        // the check gives way and execve decides.
        Err(nix::Error::EPERM | nix::Error::ENOSYS) => Ok(()),
        Err(error) => Err(ExecutableReason::Inaccessible {
            path: path.to_path_buf(),
            message: error.desc().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn locate_path_with_slash() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("run");
        write_file(&program, 0o755);
        let text = program.to_str().unwrap();
        assert_eq!(locate(text, "").unwrap(), program);

        let missing = dir.path().join("missing");
        let error = locate(missing.to_str().unwrap(), "/bin").unwrap_err();
        assert_eq!(error.reason, ExecutableReason::NotFound);
        assert_eq!(
            error.to_string(),
            format!(
                "exec {:?}: no such file in the container",
                missing.to_str().unwrap()
            )
        );

        let error = locate(dir.path().to_str().unwrap(), "").unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::IsDirectory {
                path: dir.path().to_path_buf()
            }
        );

        let error = locate("/dev/null", "").unwrap_err();
        assert!(matches!(
            error.reason,
            ExecutableReason::NotRegularFile { .. }
        ));
    }

    #[test]
    fn locate_searches_path_in_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write_file(&first.path().join("tool"), 0o644);
        write_file(&second.path().join("tool"), 0o755);
        let search = format!("{}::{}", first.path().display(), second.path().display());
        // A file without execute permission is skipped, as execvp(3) skips it.
        assert_eq!(locate("tool", &search).unwrap(), second.path().join("tool"));

        let error = locate("absent", &search).unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::NotInPath {
                search_path: search.clone()
            }
        );
        assert!(error
            .to_string()
            .contains("not found in the container's PATH"));
    }

    #[test]
    fn locate_reports_permission_denied() {
        // Root passes the mode check when any execute bit is set, so only
        // a file with none of them is denied for every user.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        write_file(&script, 0o644);
        let error = locate(script.to_str().unwrap(), "").unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::PermissionDenied {
                path: script.clone()
            }
        );
        let search = dir.path().display().to_string();
        let error = locate("script", &search).unwrap_err();
        assert_eq!(
            error.reason,
            ExecutableReason::PermissionDenied { path: script }
        );
    }

    #[test]
    fn parse_header_formats() {
        let script = |name: &str| Format::Script(Some(PathBuf::from(name)));
        let cases: [(&[u8], Format); 10] = [
            (b"\x7fELF\x02\x01\x01", Format::Elf),
            (b"#!/bin/sh\necho\n", script("/bin/sh")),
            (b"#! /bin/sh -e\n", script("/bin/sh")),
            (b"#!\t/usr/bin/env python3\n", script("/usr/bin/env")),
            (b"#!/bin/sh", script("/bin/sh")),
            (b"#!/bin/sh\0ignored\n", script("/bin/sh")),
            (b"#!\n/bin/sh\n", Format::Script(None)),
            (b"#! \t \n", Format::Script(None)),
            (b"echo hello\n", Format::Unknown),
            (b"", Format::Unknown),
        ];
        for (header, expected) in cases {
            let size = header.len() as u64;
            assert_eq!(
                parse_header(header, size),
                expected,
                "header {:?}",
                String::from_utf8_lossy(header)
            );
        }
        // An interpreter that runs to the end of the header of a longer
        // file is cut, so execve decides.
        let long = format!("#!/{}", "x".repeat(HEADER_SIZE - 3));
        assert_eq!(
            parse_header(long.as_bytes(), HEADER_SIZE as u64 + 10),
            Format::Undecided
        );
    }

    fn write_script(path: &Path, body: &str) {
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn format_error(path: &Path) -> ExecutableError {
        let program = path.to_str().unwrap();
        check_format(program, path, false).unwrap_err()
    }

    #[test]
    fn check_format_accepts_elf_and_scripts() {
        let exe = std::env::current_exe().unwrap();
        check_format("test", &exe, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        write_script(&script, "#!/bin/sh\nexit 0\n");
        check_format("script", &script, false).unwrap();

        // The interpreter may be a script itself.
        let nested = dir.path().join("nested");
        write_script(&nested, &format!("#!{}\n", script.display()));
        check_format("nested", &nested, false).unwrap();
    }

    #[test]
    fn check_format_follows_nested_interpreters() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        let outer = dir.path().join("outer");
        write_script(&outer, &format!("#!{}\n", inner.display()));

        // The error names the interpreter that is missing and the script
        // whose #! line names it, not the program.
        write_script(&inner, "#!/nonexistent/interp\n");
        assert_eq!(
            format_error(&outer).reason,
            ExecutableReason::Interpreter {
                interpreter: "/nonexistent/interp".to_string(),
                script: inner.clone(),
                reason: Box::new(ExecutableReason::NotFound),
            }
        );

        write_script(&inner, "#!\n");
        assert_eq!(
            format_error(&outer).reason,
            ExecutableReason::Interpreter {
                interpreter: inner.display().to_string(),
                script: outer.clone(),
                reason: Box::new(ExecutableReason::NoInterpreter {
                    path: inner.clone()
                }),
            }
        );

        // levelN runs through N + 1 interpreters, the last one missing. A
        // chain longer than the check follows is left to execve.
        let mut program = dir.path().join("level0");
        write_script(&program, "#!/nonexistent/interp\n");
        for level in 1..=MAX_CHECKED_INTERPRETERS {
            let next = dir.path().join(format!("level{level}"));
            write_script(&next, &format!("#!{}\n", program.display()));
            program = next;
        }
        check_format("deep", &program, false).unwrap();
        // The same chain one level shorter is checked to its end.
        let shorter = dir
            .path()
            .join(format!("level{}", MAX_CHECKED_INTERPRETERS - 1));
        assert!(matches!(
            format_error(&shorter).reason,
            ExecutableReason::Interpreter { .. }
        ));
    }

    #[test]
    fn check_format_reports_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        write_script(&script, "#!/nonexistent/interp -x\n");
        let error = format_error(&script);
        assert_eq!(
            error.to_string(),
            format!(
                "exec {:?}: interpreter \"/nonexistent/interp\" of {}: no such file in the \
                 container",
                script.to_str().unwrap(),
                script.display()
            )
        );

        let interpreter = dir.path().join("interp");
        write_file(&interpreter, 0o644);
        write_script(&script, &format!("#! {}\n", interpreter.display()));
        assert_eq!(
            format_error(&script).reason,
            ExecutableReason::Interpreter {
                interpreter: interpreter.display().to_string(),
                script: script.clone(),
                reason: Box::new(ExecutableReason::PermissionDenied {
                    path: interpreter.clone()
                }),
            }
        );

        write_script(&script, &format!("#!{}\n", dir.path().display()));
        assert_eq!(
            format_error(&script).reason,
            ExecutableReason::Interpreter {
                interpreter: dir.path().display().to_string(),
                script: script.clone(),
                reason: Box::new(ExecutableReason::IsDirectory {
                    path: dir.path().to_path_buf()
                }),
            }
        );

        std::fs::write(&interpreter, "plain text\n").unwrap();
        std::fs::set_permissions(&interpreter, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_script(&script, &format!("#!{}\n", interpreter.display()));
        assert_eq!(
            format_error(&script).reason,
            ExecutableReason::Interpreter {
                interpreter: interpreter.display().to_string(),
                script: script.clone(),
                reason: Box::new(ExecutableReason::UnknownFormat {
                    path: interpreter.clone()
                }),
            }
        );
        // With binfmt_misc handlers, execve may run such an interpreter.
        check_format("script", &script, true).unwrap();
    }

    #[test]
    fn check_format_reports_unknown_format() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        write_script(&text, "echo hello\n");
        let error = format_error(&text);
        assert_eq!(
            error.reason,
            ExecutableReason::UnknownFormat { path: text.clone() }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "exec {:?}: {} is not an executable format (no ELF header or #! line)",
                text.to_str().unwrap(),
                text.display()
            )
        );
        check_format("text", &text, true).unwrap();

        let empty = dir.path().join("empty");
        write_script(&empty, "");
        assert_eq!(
            format_error(&empty).reason,
            ExecutableReason::UnknownFormat {
                path: empty.clone()
            }
        );

        let bare = dir.path().join("bare");
        write_script(&bare, "#!\n");
        assert_eq!(
            format_error(&bare).reason,
            ExecutableReason::NoInterpreter { path: bare.clone() }
        );
    }

    #[test]
    fn binfmt_misc_check_matches_host() {
        // The test host may or may not have handlers, but a host without a
        // mounted binfmt_misc has none.
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|line| line.contains(" - binfmt_misc "));
        if !mounted {
            assert!(!binfmt_misc_handlers_enabled());
        }
    }

    #[test]
    fn search_path_from_env() {
        let env = vec!["HOME=/root".to_string(), "PATH=/opt/bin".to_string()];
        assert_eq!(search_path(&env, "/bin"), "/opt/bin");
        assert_eq!(search_path(&[], "/bin"), "/bin");
    }
}
