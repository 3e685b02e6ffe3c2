//! Tests of the rule reduction and of the generated program: a small
//! interpreter runs the program on every access of a grid and must agree
//! with [`DeviceAccess::allows`]. As root, the same rule lists go to the
//! real kernel: through the v1 devices controller, and as a program
//! attached to a cgroup v2 directory, with a child process that creates and
//! opens device nodes there.

use super::*;
use serde_json::json;

const ACCESSES: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];

fn rules(value: serde_json::Value) -> Vec<LinuxDeviceCgroup> {
    serde_json::from_value(value).expect("device rules")
}

/// Returns the rules a job gets: every device denied, nodes of any device
/// may be created, and the standard devices used.
fn standard_rules() -> Vec<LinuxDeviceCgroup> {
    rules(json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
    ]))
}

/// Runs `program` on one access and returns r0.
fn run(program: &[Instruction], kind: DeviceKind, major: u32, minor: u32, access: u8) -> u64 {
    let context = [(u32::from(access) << 16) | kind as u32, major, minor];
    let load = |offset: i16| -> u64 {
        assert!(
            offset % 4 == 0 && (0..12).contains(&offset),
            "load at {offset}"
        );
        u64::from(context[offset as usize / 4])
    };
    // r1 is the context pointer; the interpreter only allows loads from it.
    let mut registers: [Option<u64>; 11] = [None; 11];
    registers[1] = Some(u64::MAX);
    let mut pc = 0usize;
    for _ in 0..program.len() {
        let instruction = program[pc];
        let destination = instruction.destination() as usize;
        let source = instruction.source() as usize;
        let immediate = instruction.immediate as i64 as u64;
        let at = pc;
        let read = |register: usize| {
            registers[register].unwrap_or_else(|| panic!("r{register} read before set at {at}"))
        };
        pc += 1;
        match instruction.code {
            LDX_MEM_W => {
                assert_eq!(source, 1, "load from r{source} at {}", pc - 1);
                registers[destination] = Some(load(instruction.offset));
            }
            ALU64_MOV_X => registers[destination] = Some(read(source)),
            ALU64_MOV_K => registers[destination] = Some(immediate),
            ALU64_AND_K => registers[destination] = Some(read(destination) & immediate),
            ALU64_RSH_K => registers[destination] = Some(read(destination) >> immediate),
            JMP_JEQ_K | JMP_JNE_K => {
                let equal = read(destination) == immediate;
                if equal == (instruction.code == JMP_JEQ_K) {
                    let target = pc as i64 + i64::from(instruction.offset);
                    assert!(
                        target > (pc as i64) - 1 && (target as usize) < program.len(),
                        "jump out of the program or backwards at {}",
                        pc - 1
                    );
                    pc = target as usize;
                }
            }
            JMP_EXIT => return read(0),
            code => panic!("unexpected instruction code {code:#x} at {}", pc - 1),
        }
    }
    panic!("the program ran past its end or looped");
}

/// Checks the program of `state` against `allows` on every access to a
/// grid of devices around the numbers the rules name.
fn assert_program_agrees(state: &DeviceAccess) {
    let program = state.program();
    let mut numbers: Vec<u32> = vec![0, 1, 2, 3, 5, 7, 136, 250];
    for exception in &state.exceptions {
        numbers.extend(exception.major);
        numbers.extend(exception.minor);
    }
    numbers.sort();
    numbers.dedup();
    for kind in [DeviceKind::Block, DeviceKind::Char] {
        for &major in &numbers {
            for &minor in &numbers {
                for access in ACCESSES {
                    let expected = state.allows(kind, major, minor, access);
                    let result = run(&program, kind, major, minor, access);
                    assert_eq!(
                        result,
                        u64::from(expected),
                        "{kind:?} {major}:{minor} access {access:#b} for {state:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn standard_rules_reduce_to_deny_with_exceptions() {
    let state = DeviceAccess::from_rules(&standard_rules()).unwrap();
    assert!(!state.default_allow);
    let exception = |kind, major, minor, access| Exception {
        kind,
        major,
        minor,
        access,
    };
    assert_eq!(
        state.exceptions,
        [
            exception(DeviceKind::Char, None, None, ACCESS_MKNOD),
            exception(DeviceKind::Block, None, None, ACCESS_MKNOD),
            exception(DeviceKind::Char, Some(1), Some(3), ACCESS_ALL),
            exception(DeviceKind::Char, Some(1), Some(5), ACCESS_ALL),
            exception(DeviceKind::Char, Some(5), Some(2), ACCESS_ALL),
            exception(DeviceKind::Char, Some(136), None, ACCESS_ALL),
        ]
    );
}

#[test]
fn standard_rules_decide_table() {
    let state = DeviceAccess::from_rules(&standard_rules()).unwrap();
    let program = state.program();
    let (block, char) = (DeviceKind::Block, DeviceKind::Char);
    let (m, r, w) = (ACCESS_MKNOD, ACCESS_READ, ACCESS_WRITE);
    let cases = [
        // /dev/null in every way.
        (char, 1, 3, r | w, true),
        (char, 1, 3, m, true),
        // /dev/mem: a node may be created but not opened.
        (char, 1, 1, m, true),
        (char, 1, 1, r, false),
        (char, 1, 1, r | m, false),
        // The host's disk.
        (block, 8, 0, m, true),
        (block, 8, 0, r, false),
        (block, 8, 0, w, false),
        // Block devices do not share the numbers of allowed char devices.
        (block, 1, 3, r, false),
        // Every pseudo-terminal, whatever its minor.
        (char, 136, 0, r | w, true),
        (char, 136, 4095, r | w, true),
        (char, 137, 0, r, false),
        (char, 5, 2, w, true),
        (char, 5, 1, w, false),
    ];
    for (kind, major, minor, access, allowed) in cases {
        let label = format!("{kind:?} {major}:{minor} access {access:#b}");
        assert_eq!(state.allows(kind, major, minor, access), allowed, "{label}");
        assert_eq!(
            run(&program, kind, major, minor, access),
            u64::from(allowed),
            "program: {label}"
        );
    }
}

#[test]
fn allow_default_denies_partial_overlap() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "w"},
        {"allow": false, "type": "b", "access": "m"},
    ])))
    .unwrap();
    assert!(state.default_allow);
    let char = DeviceKind::Char;
    assert!(state.allows(char, 61, 0, ACCESS_READ));
    assert!(!state.allows(char, 61, 0, ACCESS_WRITE));
    // Any denied bit denies the whole access.
    assert!(!state.allows(char, 61, 0, ACCESS_READ | ACCESS_WRITE));
    assert!(state.allows(char, 61, 1, ACCESS_WRITE));
    assert!(!state.allows(DeviceKind::Block, 8, 0, ACCESS_MKNOD));
    assert!(state.allows(DeviceKind::Block, 8, 0, ACCESS_READ));
    assert_program_agrees(&state);
}

#[test]
fn deny_default_needs_one_whole_exception() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false, "type": "a"},
        {"allow": true, "type": "c", "major": 61, "access": "r"},
        {"allow": true, "type": "c", "major": 61, "minor": 1, "access": "w"},
    ])))
    .unwrap();
    let char = DeviceKind::Char;
    assert!(state.allows(char, 61, 1, ACCESS_READ));
    assert!(state.allows(char, 61, 1, ACCESS_WRITE));
    // Read and write are granted by two exceptions, and v1 requires one
    // exception that grants both.
    assert!(!state.allows(char, 61, 1, ACCESS_READ | ACCESS_WRITE));
    assert!(!state.allows(char, 61, 0, ACCESS_WRITE));
    assert_program_agrees(&state);
}

#[test]
fn same_device_rules_merge_and_subtract() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false, "type": "a"},
        {"allow": true, "type": "c", "major": 61, "minor": 0, "access": "r"},
        {"allow": true, "type": "c", "major": 61, "minor": 0, "access": "wm"},
        {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "m"},
        // Removes nothing: no exception has exactly these numbers.
        {"allow": false, "type": "c", "major": 61, "access": "rwm"},
    ])))
    .unwrap();
    assert_eq!(
        state.exceptions,
        [Exception {
            kind: DeviceKind::Char,
            major: Some(61),
            minor: Some(0),
            access: ACCESS_READ | ACCESS_WRITE,
        }]
    );
    assert_program_agrees(&state);
}

#[test]
fn deny_rule_leaves_overlapping_wildcard() {
    // As in v1, a deny rule under a deny default only narrows the
    // exception with its exact numbers, so c 61:1 stays allowed.
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false, "type": "a"},
        {"allow": true, "type": "c", "access": "rwm"},
        {"allow": false, "type": "c", "major": 61, "minor": 1, "access": "rwm"},
    ])))
    .unwrap();
    assert!(state.allows(DeviceKind::Char, 61, 1, ACCESS_READ));
    assert_program_agrees(&state);
}

#[test]
fn type_a_rule_resets_whatever_its_numbers() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false, "type": "a"},
        {"allow": true, "type": "c", "major": 1, "minor": 3},
        {"allow": true, "type": "a", "major": 1, "minor": 3, "access": "r"},
    ])))
    .unwrap();
    assert_eq!(
        state,
        DeviceAccess {
            default_allow: true,
            exceptions: Vec::new()
        }
    );
    let program = state.program();
    assert_eq!(run(&program, DeviceKind::Block, 8, 0, ACCESS_WRITE), 1);
}

#[test]
fn empty_and_wildcard_fields() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false},
        {"allow": true, "type": "b", "major": -1, "minor": 4294967295_u64, "access": ""},
    ])))
    .unwrap();
    assert_eq!(
        state.exceptions,
        [Exception {
            kind: DeviceKind::Block,
            major: None,
            minor: None,
            access: ACCESS_ALL,
        }]
    );
    assert_program_agrees(&state);
}

#[test]
fn numbers_above_i32_match_nothing() {
    let state = DeviceAccess::from_rules(&rules(json!([
        {"allow": false},
        {"allow": true, "type": "c", "major": 3000000000_u64, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ])))
    .unwrap();
    let program = state.program();
    assert_eq!(run(&program, DeviceKind::Char, 1, 3, ACCESS_READ), 1);
    assert_eq!(
        run(&program, DeviceKind::Char, 3_000_000_000, 0, ACCESS_READ),
        0
    );
    assert_eq!(run(&program, DeviceKind::Char, 2, 0, ACCESS_READ), 0);
}

#[test]
fn invalid_rules_name_index_and_reason() {
    let cases = [
        (
            json!({"allow": true, "type": "u", "major": 1}),
            "the type must be a, b or c",
        ),
        (
            json!({"allow": true, "type": "p"}),
            "the type must be a, b or c",
        ),
        (
            json!({"allow": true, "type": "c", "major": -2}),
            "invalid major number",
        ),
        (
            json!({"allow": true, "type": "c", "minor": 5000000000_u64}),
            "invalid minor number",
        ),
        (
            json!({"allow": true, "type": "c", "access": "rx"}),
            "the access must be made of r, w and m",
        ),
    ];
    for (rule, reason) in cases {
        let list = rules(json!([{"allow": false}, rule]));
        let error = DeviceAccess::from_rules(&list).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, CgroupError::InvalidDeviceRule { index: 1, .. }),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
}

#[test]
fn compact_rules_keep_state() {
    let lists = [
        standard_rules(),
        rules(json!([
            {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "w"},
            {"allow": false, "type": "b", "access": "m"},
            {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "r"},
        ])),
        rules(json!([{"allow": true, "type": "c", "major": 61, "minor": 0, "access": "rw"}])),
        Vec::new(),
    ];
    let appended = rules(json!([
        {"allow": true, "type": "c", "major": 61, "minor": 1, "access": "rw"},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"},
    ]));
    for list in lists {
        let compact = compact_rules(&list).unwrap();
        assert_eq!(
            DeviceAccess::from_rules(&compact).unwrap(),
            DeviceAccess::from_rules(&list).unwrap(),
            "{compact:?}"
        );
        let longer = [list.clone(), appended.clone()].concat();
        let compact_longer = [compact, appended.clone()].concat();
        assert_eq!(
            DeviceAccess::from_rules(&compact_longer).unwrap(),
            DeviceAccess::from_rules(&longer).unwrap(),
            "{list:?} with more rules"
        );
    }
}

#[test]
fn program_of_many_rules_agrees() {
    // Every combination of a few rules, so that merges, removals and
    // resets meet in every order.
    let pool = [
        json!({"allow": false, "type": "a"}),
        json!({"allow": true, "type": "a"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}),
        json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}),
        json!({"allow": true, "type": "c", "major": 1, "access": "m"}),
        json!({"allow": false, "type": "b", "access": "rwm"}),
        json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"}),
    ];
    for first in &pool {
        for second in &pool {
            for third in &pool {
                let list = rules(json!([first, second, third]));
                let state = DeviceAccess::from_rules(&list).unwrap();
                assert_program_agrees(&state);
            }
        }
    }
}

/// Real-kernel checks, as root. Each case is one access to a device node
/// by a child process in the cgroup under test. Container tests use the
/// helpers too.
pub(crate) mod kernel {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::CString;
    use std::fs;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use crate::cgroups::{Cgroup, CgroupPaths};

    /// Majors 60 to 63 are reserved for local and experimental use, so no
    /// driver is registered for these nodes: an allowed open fails with
    /// ENXIO, and only the device cgroup fails it with EPERM.
    pub(crate) const FREE_MAJOR: u32 = 61;

    pub(crate) use crate::cgroups::devices::DeviceKind;

    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Operation {
        Mknod,
        Open(libc::c_int),
    }

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Case {
        pub(crate) kind: DeviceKind,
        pub(crate) major: u32,
        pub(crate) minor: u32,
        pub(crate) operation: Operation,
    }

    impl Case {
        fn access(&self) -> u8 {
            match self.operation {
                Operation::Mknod => ACCESS_MKNOD,
                Operation::Open(libc::O_RDONLY) => ACCESS_READ,
                Operation::Open(libc::O_WRONLY) => ACCESS_WRITE,
                Operation::Open(_) => ACCESS_READ | ACCESS_WRITE,
            }
        }
    }

    fn cases() -> Vec<Case> {
        let devices = [
            (DeviceKind::Char, 1, 3),
            (DeviceKind::Char, FREE_MAJOR, 0),
            (DeviceKind::Char, FREE_MAJOR, 1),
            (DeviceKind::Block, FREE_MAJOR, 0),
            (DeviceKind::Block, FREE_MAJOR, 1),
        ];
        let operations = [
            Operation::Mknod,
            Operation::Open(libc::O_RDONLY),
            Operation::Open(libc::O_WRONLY),
            Operation::Open(libc::O_RDWR),
        ];
        let mut cases = Vec::new();
        for (kind, major, minor) in devices {
            for operation in operations {
                cases.push(Case {
                    kind,
                    major,
                    minor,
                    operation,
                });
            }
        }
        cases
    }

    /// Rule lists that the kernel decides: the standard set and lists that
    /// reach each branch of the v1 controller's state.
    fn rule_lists() -> Vec<Vec<LinuxDeviceCgroup>> {
        vec![
            standard_rules(),
            rules(json!([
                {"allow": false, "type": "a"},
                {"allow": true, "type": "c", "major": 61, "access": "r"},
                {"allow": true, "type": "b", "major": 61, "minor": 1, "access": "rw"},
            ])),
            rules(json!([
                {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "w"},
                {"allow": false, "type": "b", "access": "m"},
            ])),
            rules(json!([
                {"allow": false, "type": "a"},
                {"allow": true, "type": "c", "major": 61, "minor": 0, "access": "rw"},
                {"allow": false, "type": "c", "major": 61, "minor": 0, "access": "w"},
                {"allow": true, "type": "c", "access": "rwm"},
                {"allow": false, "type": "c", "major": 61, "minor": 1, "access": "rwm"},
            ])),
            rules(json!([
                {"allow": false, "type": "c", "major": 61, "minor": 0},
                {"allow": true, "type": "a"},
                {"allow": false, "type": "a"},
                {"allow": true, "type": "b", "major": 61, "minor": 0, "access": "m"},
            ])),
        ]
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// A cgroup directory made by a test, removed on drop.
    pub(crate) struct TestCgroup {
        pub(crate) dir: PathBuf,
    }

    impl TestCgroup {
        pub(crate) fn create(parent: PathBuf, name: &str) -> std::io::Result<Self> {
            let dir = parent.join(format!("corral-devices-{name}-{}", std::process::id()));
            fs::create_dir(&dir)?;
            Ok(TestCgroup { dir })
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            // The child that was in it has exited and been reaped, but the
            // kernel may need a moment before the directory is empty.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(error) = fs::remove_dir(&self.dir) {
                if error.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Returns the directory of this process's cgroup in the hierarchy
    /// mounted with `fstype` (and, for v1, holding `controller`).
    fn own_cgroup(fstype: &str, controller: &str) -> Option<PathBuf> {
        let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
        let mount_point = mounts.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let matches = fields.get(2) == Some(&fstype)
                && (fstype == "cgroup2"
                    || fields
                        .get(3)
                        .is_some_and(|options| options.split(',').any(|o| o == controller)));
            matches.then(|| PathBuf::from(fields[1]))
        })?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = if fstype == "cgroup2" {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|name| name == controller)
            };
            wanted.then(|| path.trim_start_matches('/').to_string())
        })?;
        Some(mount_point.join(path))
    }

    /// Returns this process's cgroup in the cgroup2 mount for the root-only
    /// test `test`, or prints why it skips and returns `None`.
    pub(crate) fn cgroup2_parent(test: &str) -> Option<PathBuf> {
        if !is_root() {
            eprintln!("SKIP {test}: needs root");
            return None;
        }
        let parent = own_cgroup("cgroup2", "");
        if parent.is_none() {
            eprintln!("SKIP {test}: no cgroup2 mount");
        }
        parent
    }

    /// Runs every case in a child process that first moves into `procs`,
    /// and returns for each whether the kernel allowed it (anything but
    /// EPERM).
    pub(crate) fn decide_in_cgroup(procs: &std::path::Path, cases: &[Case]) -> Vec<bool> {
        let nodes = tempfile::tempdir().expect("temp dir for device nodes");
        // The nodes to open are made here, outside the cgroup; the child
        // makes the nodes of the mknod cases.
        let mut paths = Vec::new();
        for (index, case) in cases.iter().enumerate() {
            let path = nodes.path().join(format!("node-{index}"));
            let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
            if let Operation::Open(_) = case.operation {
                let mode = match case.kind {
                    DeviceKind::Block => libc::S_IFBLK,
                    DeviceKind::Char => libc::S_IFCHR,
                } | 0o600;
                // SAFETY: `c_path` is a NUL-terminated path.
                let made = unsafe {
                    libc::mknod(c_path.as_ptr(), mode, libc::makedev(case.major, case.minor))
                };
                assert_eq!(
                    made,
                    0,
                    "mknod {path:?}: {}",
                    std::io::Error::last_os_error()
                );
            }
            paths.push(c_path);
        }
        let procs_file = fs::OpenOptions::new().write(true).open(procs).unwrap();
        let (reader, writer) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe for the results");

        // SAFETY: the child calls only async-signal-safe functions (write,
        // mknod, open, close, unlink, _exit) on memory prepared before the
        // fork, so the locks other test threads held at the fork do not
        // matter.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see the fork above; every pointer is to memory the
            // parent prepared and the child does not free.
            unsafe { run_child(procs_file.as_raw_fd(), writer.as_raw_fd(), cases, &paths) }
        }
        drop(writer);
        let mut results = Vec::new();
        std::io::Read::read_to_end(&mut fs::File::from(reader), &mut results).unwrap();
        let mut status = 0;
        // SAFETY: `pid` is this process's child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed to join {procs:?}: status {status:#x}"
        );
        assert_eq!(results.len(), cases.len(), "results from the child");
        // One byte per case: the errno, capped at 255.
        results
            .iter()
            .map(|&errno| i32::from(errno) != libc::EPERM)
            .collect()
    }

    /// # Safety
    ///
    /// Call only in a child just forked, with `paths` as long as `cases`.
    unsafe fn run_child(procs: i32, results: i32, cases: &[Case], paths: &[CString]) -> ! {
        // SAFETY: b"0" is one readable byte; writing it moves this process.
        if unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) } != 1 {
            // SAFETY: _exit is always safe in a forked child.
            unsafe { libc::_exit(3) };
        }
        for (case, path) in cases.iter().zip(paths) {
            let result = match case.operation {
                Operation::Mknod => {
                    let mode = match case.kind {
                        DeviceKind::Block => libc::S_IFBLK,
                        DeviceKind::Char => libc::S_IFCHR,
                    } | 0o600;
                    // SAFETY: `path` is NUL-terminated.
                    let made = unsafe {
                        libc::mknod(path.as_ptr(), mode, libc::makedev(case.major, case.minor))
                    };
                    if made == 0 {
                        // SAFETY: as above.
                        unsafe { libc::unlink(path.as_ptr()) };
                    }
                    made
                }
                Operation::Open(flags) => {
                    let flags = flags | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
                    // SAFETY: `path` is NUL-terminated.
                    let fd = unsafe { libc::open(path.as_ptr(), flags) };
                    if fd >= 0 {
                        // SAFETY: `fd` was just opened here.
                        unsafe { libc::close(fd) };
                    }
                    fd.min(0)
                }
            };
            let errno = if result < 0 {
                // SAFETY: __errno_location returns this thread's errno.
                unsafe { *libc::__errno_location() }.clamp(1, 255) as u8
            } else {
                0
            };
            // SAFETY: one readable byte on the stack.
            unsafe { libc::write(results, (&errno as *const u8).cast(), 1) };
        }
        // SAFETY: _exit is always safe in a forked child.
        unsafe { libc::_exit(0) }
    }

    fn describe(cases: &[Case], decisions: &[bool]) -> String {
        cases
            .iter()
            .zip(decisions)
            .map(|(case, allowed)| {
                format!(
                    "{:?} {}:{} {:?} -> {}\n",
                    case.kind,
                    case.major,
                    case.minor,
                    case.operation,
                    if *allowed { "allowed" } else { "denied" }
                )
            })
            .collect()
    }

    fn expected(state: &DeviceAccess, cases: &[Case]) -> Vec<bool> {
        cases
            .iter()
            .map(|case| state.allows(case.kind, case.major, case.minor, case.access()))
            .collect()
    }

    /// Asserts that the kernel decides every case of [`cases`] in the
    /// cgroup `dir` as `state` does; `context` starts the failure message.
    fn assert_kernel_decides(dir: &std::path::Path, state: &DeviceAccess, context: &str) {
        let cases = cases();
        let kernel = decide_in_cgroup(&dir.join("cgroup.procs"), &cases);
        assert_eq!(
            kernel,
            expected(state, &cases),
            "{context}: the kernel decided\n{}for {state:?}",
            describe(&cases, &kernel)
        );
    }

    #[test]
    fn v1_controller_agrees_with_reduction() {
        if !is_root() {
            eprintln!("SKIP v1_controller_agrees_with_reduction: needs root");
            return;
        }
        let Some(parent) = own_cgroup("cgroup", "devices") else {
            eprintln!("SKIP v1_controller_agrees_with_reduction: no v1 devices controller");
            return;
        };
        for (number, list) in rule_lists().into_iter().enumerate() {
            let cgroup = TestCgroup::create(parent.clone(), &format!("v1-{number}")).unwrap();
            let paths = CgroupPaths::V1 {
                controllers: BTreeMap::from([("devices".to_string(), cgroup.dir.clone())]),
            };
            let mut resources = oci_spec::runtime::LinuxResources::default();
            resources.set_devices(Some(list.clone()));
            Cgroup::open(paths, String::new())
                .apply(&resources)
                .unwrap();

            let state = DeviceAccess::from_rules(&list).unwrap();
            assert_kernel_decides(&cgroup.dir, &state, &format!("v1, list {number}"));
        }
    }

    #[test]
    fn v2_program_decides_in_kernel() {
        let Some(parent) = cgroup2_parent("v2_program_decides_in_kernel") else {
            return;
        };
        for (number, list) in rule_lists().into_iter().enumerate() {
            let cgroup = TestCgroup::create(parent.clone(), &format!("v2-{number}")).unwrap();
            apply_program(&cgroup.dir, &list).unwrap();

            let state = DeviceAccess::from_rules(&list).unwrap();
            assert_kernel_decides(&cgroup.dir, &state, &format!("v2, list {number}"));
        }
    }

    #[test]
    fn v2_program_replaced_on_update() {
        let Some(parent) = cgroup2_parent("v2_program_replaced_on_update") else {
            return;
        };
        let cgroup = TestCgroup::create(parent, "update").unwrap();
        let lists = rule_lists();
        for list in [&lists[1], &lists[0], &lists[2]] {
            apply_program(&cgroup.dir, list).unwrap();
            let attached = bpf::attached_programs(&fs::File::open(&cgroup.dir).unwrap()).unwrap();
            assert_eq!(
                attached.len(),
                1,
                "programs on {:?}: {attached:?}",
                cgroup.dir
            );

            let state = DeviceAccess::from_rules(list).unwrap();
            assert_kernel_decides(&cgroup.dir, &state, "after the update");
        }
    }

    #[test]
    fn v2_update_keeps_foreign_program() {
        let Some(parent) = cgroup2_parent("v2_update_keeps_foreign_program") else {
            return;
        };
        let cgroup = TestCgroup::create(parent, "foreign").unwrap();
        // A program that another manager attached: it denies char 61:1.
        let foreign_rules = rules(json!([
            {"allow": false, "type": "c", "major": FREE_MAJOR, "minor": 1, "access": "rwm"},
        ]));
        let foreign_state = DeviceAccess::from_rules(&foreign_rules).unwrap();
        let foreign = bpf::load_named(&foreign_state.program(), b"other_manager").unwrap();
        let foreign_id = bpf::program_info(&foreign).unwrap().id;
        let directory = fs::File::open(&cgroup.dir).unwrap();
        bpf::attach(&directory, &foreign).unwrap();

        let allow_all = rules(json!([{"allow": true, "type": "a"}]));
        for round in 0..2 {
            apply_program(&cgroup.dir, &allow_all).unwrap();
            let attached = bpf::attached_programs(&directory).unwrap();
            assert!(
                attached.contains(&foreign_id),
                "round {round}: program {foreign_id} is gone from {attached:?}"
            );
            assert_eq!(attached.len(), 2, "round {round}: programs {attached:?}");
        }

        assert_kernel_decides(&cgroup.dir, &foreign_state, "with both programs");
    }

    #[test]
    fn v2_load_error_carries_verifier_log() {
        if !is_root() {
            eprintln!("SKIP v2_load_error_carries_verifier_log: needs root");
            return;
        }
        // Returns r0 without setting it, which the verifier rejects.
        let program = [Instruction::new(JMP_EXIT, 0, 0, 0, 0)];
        let error = bpf::load_device_program(&program).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, bpf::BpfError::Load { .. }), "{message}");
        assert!(message.contains("R0 !read_ok"), "{message}");
    }
}
