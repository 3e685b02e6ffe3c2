//! The bpf(2) calls that put a device program on a cgroup v2 directory:
//! loading a `BPF_PROG_TYPE_CGROUP_DEVICE` program, attaching it with
//! `BPF_F_ALLOW_MULTI`, and detaching the programs it replaces.
//!
//! The attribute structs below are the leading fields of `union bpf_attr`
//! for each command, as in `include/uapi/linux/bpf.h`. The kernel accepts a
//! shorter attribute than its own and treats the missing fields as zero.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `enum bpf_cmd` values.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Lets programs of descendant cgroups and further programs of the same
/// cgroup run too; each of them must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// Verifier log size for the second load after a failure. The verifier
/// fails with ENOSPC when the log does not fit, so this is generous.
const LOG_SIZE: usize = 1 << 20;

/// Program name in `bpftool prog` listings (at most 15 bytes). A device
/// program with another name was attached by someone else, and replacing
/// the rules leaves it attached.
const PROGRAM_NAME: &[u8] = b"corral_devices";
/// License string the kernel records. Device programs call no GPL-only
/// helper, so any string is accepted.
const LICENSE: &CStr = c"Apache-2.0";

/// An error from a bpf(2) call, naming the command and the cgroup.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "loading the device program of {instructions} instructions failed: verifier log:\n{log}"
    )]
    Load {
        instructions: usize,
        log: String,
        #[source]
        source: io::Error,
    },

    #[error("opening cgroup directory {path}")]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{command} on cgroup {path} failed")]
    Cgroup {
        command: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("opening attached program {id} of cgroup {path}")]
    ProgramById {
        id: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("reading the name of attached program {id} of cgroup {path}")]
    ProgramInfo {
        id: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instruction {
    pub(crate) code: u8,
    /// Destination register in the low four bits, source in the high four
    /// on little-endian machines.
    registers: u8,
    pub(crate) offset: i16,
    pub(crate) immediate: i32,
}

impl Instruction {
    pub(crate) const fn new(code: u8, destination: u8, source: u8, offset: i16, imm: i32) -> Self {
        #[cfg(target_endian = "little")]
        let registers = (source << 4) | (destination & 0xf);
        #[cfg(target_endian = "big")]
        let registers = (destination << 4) | (source & 0xf);
        Instruction {
            code,
            registers,
            offset,
            immediate: imm,
        }
    }

    #[cfg(test)]
    pub(crate) fn destination(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.registers & 0xf
        } else {
            self.registers >> 4
        }
    }

    #[cfg(test)]
    pub(crate) fn source(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.registers >> 4
        } else {
            self.registers & 0xf
        }
    }
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    /// Zero, because the kernel rejects nonzero bytes past the fields it
    /// defines for the command.
    padding: u32,
}

#[repr(C)]
struct GetIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
struct GetInfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading fields of `struct bpf_prog_info`, up to the name. The
/// kernel fills only the `info_len` bytes given, and copies no arrays while
/// their lengths (`jited_prog_len`, `xlated_prog_len`, `nr_map_ids`) are 0.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

// The kernel reads every byte of an attribute, so none may be implicit
// padding, whose value Rust leaves undefined. Each size is the sum of the
// fields' sizes, which rules padding out.
const _: () = assert!(std::mem::size_of::<Instruction>() == 8);
const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(std::mem::size_of::<ProgAttachAttr>() == 16);
const _: () = assert!(std::mem::size_of::<ProgQueryAttr>() == 32);
const _: () = assert!(std::mem::size_of::<GetIdAttr>() == 12);
const _: () = assert!(std::mem::size_of::<GetInfoAttr>() == 16);
const _: () = assert!(std::mem::size_of::<ProgInfo>() == 80);

/// Calls bpf(2) with `attr` and returns its non-negative result.
fn bpf<T>(command: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live `#[repr(C)]` struct laid out as the leading
    // fields of `union bpf_attr` for `command`, with no implicit padding
    // (the size assertions above), so every byte the kernel reads is
    // initialized. The size passed is its own, so the kernel reads and
    // writes only inside it. The pointers inside it, if any, are set by the
    // caller to buffers of the lengths given beside them, which outlive this
    // call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Wraps a descriptor that bpf(2) returned.
fn owned_fd(raw: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) }
}

/// Loads `program` as a device program. On failure the program is loaded
/// again with the verifier log on, and the error carries that log.
pub(crate) fn load_device_program(program: &[Instruction]) -> Result<OwnedFd, BpfError> {
    load_named(program, PROGRAM_NAME)
}

/// Loads `program` as a device program named `name` (at most 15 bytes).
pub(crate) fn load_named(program: &[Instruction], name: &[u8]) -> Result<OwnedFd, BpfError> {
    match load(program, name, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; LOG_SIZE];
            let log_text = match load(program, name, Some(&mut log)) {
                // A load that succeeds with the log on leaves no log of the
                // first failure.
                Ok(_) => String::from("(the load with the log on succeeded)"),
                Err(_) => {
                    let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
                    String::from_utf8_lossy(&log[..end]).trim_end().to_string()
                }
            };
            Err(BpfError::Load {
                instructions: program.len(),
                log: log_text,
                source: first,
            })
        }
    }
}

fn load(program: &[Instruction], name: &[u8], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    // The last byte stays 0, because the kernel expects a NUL-terminated name.
    let mut prog_name = [0u8; 16];
    let length = name.len().min(prog_name.len() - 1);
    prog_name[..length].copy_from_slice(&name[..length]);
    let (log_level, log_size, log_buf) = match log {
        Some(buffer) => (1, buffer.len() as u32, buffer.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    bpf(BPF_PROG_LOAD, &mut attr).map(owned_fd)
}

/// Attaches `program` to the cgroup v2 directory `cgroup` with
/// `BPF_F_ALLOW_MULTI`, beside the programs attached there already.
pub(crate) fn attach(cgroup: &File, program: &OwnedFd) -> io::Result<()> {
    let mut attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map(drop)
}

/// Attaches `program` to the cgroup v2 directory `dir` and detaches every
/// device program that the runtime attached there before, which it recognizes
/// by the name [`PROGRAM_NAME`]. Device programs of other names stay, so
/// an access must still pass them too.
///
/// The new program is attached first, so that until the old ones are gone
/// an access must pass both: the cgroup is never less restricted than by
/// either list. Programs of ancestor cgroups are not touched.
pub(crate) fn replace_device_program(dir: &Path, program: &OwnedFd) -> Result<(), BpfError> {
    let cgroup = File::open(dir).map_err(|source| BpfError::OpenCgroup {
        path: dir.to_path_buf(),
        source,
    })?;
    let cgroup_error = |command| {
        move |source| BpfError::Cgroup {
            command,
            path: dir.to_path_buf(),
            source,
        }
    };

    let old = attached_programs(&cgroup).map_err(cgroup_error("BPF_PROG_QUERY"))?;
    attach(&cgroup, program).map_err(cgroup_error("BPF_PROG_ATTACH"))?;

    for id in old {
        let mut get = GetIdAttr {
            prog_id: id,
            next_id: 0,
            open_flags: 0,
        };
        let old_program = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned_fd(fd),
            // Detached and freed since the query.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(BpfError::ProgramById {
                    id,
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let info = program_info(&old_program).map_err(|source| BpfError::ProgramInfo {
            id,
            path: dir.to_path_buf(),
            source,
        })?;
        if !info.has_name(PROGRAM_NAME) {
            tracing::debug!(
                id,
                name = %String::from_utf8_lossy(info.name()),
                dir = %dir.display(),
                "keeping a device program that the runtime did not attach"
            );
            continue;
        }
        let mut detach = ProgAttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) => tracing::debug!(id, dir = %dir.display(), "detached old device program"),
            // Detached by someone else since the query.
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(source) => return Err(cgroup_error("BPF_PROG_DETACH")(source)),
        }
    }
    Ok(())
}

/// The id and name of a loaded program.
pub(crate) struct ProgramInfo {
    #[cfg(test)]
    pub(crate) id: u32,
    name: [u8; 16],
}

impl ProgramInfo {
    /// Returns the name up to its terminating NUL.
    pub(crate) fn name(&self) -> &[u8] {
        let end = self.name.iter().position(|&byte| byte == 0);
        &self.name[..end.unwrap_or(self.name.len())]
    }

    fn has_name(&self, name: &[u8]) -> bool {
        self.name() == name
    }
}

/// Reads the id and name of the program behind `program`.
pub(crate) fn program_info(program: &OwnedFd) -> io::Result<ProgramInfo> {
    let mut info = ProgInfo::default();
    let mut attr = GetInfoAttr {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(ProgramInfo {
        #[cfg(test)]
        id: info.id,
        name: info.name,
    })
}

/// Returns the ids of the device programs attached to `cgroup` itself, not
/// those it inherits.
pub(crate) fn attached_programs(cgroup: &File) -> io::Result<Vec<u32>> {
    let mut query = ProgQueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: 0,
        prog_cnt: 0,
        padding: 0,
    };
    // The first call only counts, the second fills. A program attached in
    // between makes the second fail with ENOSPC, and the count is retried.
    loop {
        bpf(BPF_PROG_QUERY, &mut query)?;
        if query.prog_cnt == 0 {
            return Ok(Vec::new());
        }
        let mut ids = vec![0u32; query.prog_cnt as usize];
        query.prog_ids = ids.as_mut_ptr() as u64;
        match bpf(BPF_PROG_QUERY, &mut query) {
            Ok(_) => {
                ids.truncate(query.prog_cnt as usize);
                return Ok(ids);
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => {
                query.prog_ids = 0;
            }
            Err(error) => return Err(error),
        }
    }
}
