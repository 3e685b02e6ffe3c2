//! Device access rules on cgroup v2, where no devices controller exists and
//! the kernel runs a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the
//! cgroup instead.
//!
//! The rules of `linux.resources.devices` are first reduced to the state
//! that the v1 devices controller (`security/device_cgroup.c`) keeps after
//! the same rules are written to `devices.allow` and `devices.deny`: a
//! default decision and a list of exceptions to it. The program then
//! decides each access as the v1 controller decides it from that state, so
//! a rule list means the same on v1 and v2. In particular:
//!
//! - a rule of type `a` clears the exceptions and sets the default, whatever
//!   its numbers and access (so `{"allow": true, "type": "a", "major": 1}`
//!   allows every device);
//! - a rule that agrees with the default removes its access from the
//!   exception with the same type and numbers only. An exception it merely
//!   overlaps (`c *:* rwm` for a rule `c 1:3 rwm`) stays;
//! - with a deny default, one exception must grant the whole access
//!   requested; with an allow default, an exception that denies any part of
//!   it denies the access.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::bpf::{self, Instruction};
use super::{common, CgroupError};

/// Access bits, as the v1 controller and the program's context number them.
pub(crate) const ACCESS_MKNOD: u8 = 1;
pub(crate) const ACCESS_READ: u8 = 2;
pub(crate) const ACCESS_WRITE: u8 = 4;
const ACCESS_ALL: u8 = ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE;

/// Device type, as the v1 controller and the program's context number it
/// (`BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DeviceKind {
    Block = 1,
    Char = 2,
}

/// An exception to the default decision. `None` numbers match any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exception {
    pub(crate) kind: DeviceKind,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: u8,
}

/// The device access state of one cgroup: a default decision and the
/// exceptions to it, in the order the v1 controller lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceAccess {
    pub(crate) default_allow: bool,
    pub(crate) exceptions: Vec<Exception>,
}

impl DeviceAccess {
    /// Applies `rules` in order to the state of a new cgroup, which allows
    /// every device (the programs of ancestor cgroups still apply).
    pub(crate) fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Self, CgroupError> {
        let mut state = DeviceAccess {
            default_allow: true,
            exceptions: Vec::new(),
        };
        for (index, rule) in rules.iter().enumerate() {
            state.apply(index, rule)?;
        }
        Ok(state)
    }

    fn apply(&mut self, index: usize, rule: &LinuxDeviceCgroup) -> Result<(), CgroupError> {
        let invalid = |reason| CgroupError::InvalidDeviceRule {
            index,
            rule: common::device_rule(rule),
            reason,
        };
        let kind = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => {
                self.default_allow = rule.allow();
                self.exceptions.clear();
                return Ok(());
            }
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C => DeviceKind::Char,
            LinuxDeviceType::U | LinuxDeviceType::P => {
                return Err(invalid("the type must be a, b or c"))
            }
        };
        let exception = Exception {
            kind,
            major: device_number(rule.major()).ok_or_else(|| invalid("invalid major number"))?,
            minor: device_number(rule.minor()).ok_or_else(|| invalid("invalid minor number"))?,
            access: parse_access(rule.access().as_deref())
                .ok_or_else(|| invalid("the access must be made of r, w and m"))?,
        };
        if rule.allow() == self.default_allow {
            self.remove(&exception);
        } else {
            self.add(exception);
        }
        Ok(())
    }

    /// Merges `exception` into the one with the same type and numbers, or
    /// appends it.
    fn add(&mut self, exception: Exception) {
        match self
            .exceptions
            .iter_mut()
            .find(|old| same_device(old, &exception))
        {
            Some(old) => old.access |= exception.access,
            None => self.exceptions.push(exception),
        }
    }

    /// Removes the access of `exception` from the one with the same type and
    /// numbers, and drops that one once it has no access left.
    fn remove(&mut self, exception: &Exception) {
        for old in &mut self.exceptions {
            if same_device(old, exception) {
                old.access &= !exception.access;
            }
        }
        self.exceptions.retain(|old| old.access != 0);
    }

    /// Returns whether `access` (a combination of the `ACCESS_*` bits) to
    /// the device is allowed: the decision the program computes, which the
    /// tests compare it with.
    #[cfg(test)]
    pub(crate) fn allows(&self, kind: DeviceKind, major: u32, minor: u32, access: u8) -> bool {
        let matches = |exception: &&Exception| {
            exception.kind == kind
                && exception.major.is_none_or(|number| number == major)
                && exception.minor.is_none_or(|number| number == minor)
        };
        if self.default_allow {
            !self
                .exceptions
                .iter()
                .filter(matches)
                .any(|exception| access & exception.access != 0)
        } else {
            self.exceptions
                .iter()
                .filter(matches)
                .any(|exception| access & !exception.access == 0)
        }
    }

    /// Returns the program that decides each access as [`Self::allows`].
    ///
    /// The program loads the context into registers once, then checks one
    /// block per exception. A block that matches returns the exception's
    /// decision, and the last instructions return the default.
    pub(crate) fn program(&self) -> Vec<Instruction> {
        let mut program = vec![
            Instruction::new(LDX_MEM_W, REG_TYPE, REG_CONTEXT, CONTEXT_ACCESS_TYPE, 0),
            Instruction::new(ALU64_MOV_X, REG_ACCESS, REG_TYPE, 0, 0),
            Instruction::new(ALU64_RSH_K, REG_ACCESS, 0, 0, 16),
            Instruction::new(ALU64_AND_K, REG_TYPE, 0, 0, 0xffff),
            Instruction::new(LDX_MEM_W, REG_MAJOR, REG_CONTEXT, CONTEXT_MAJOR, 0),
            Instruction::new(LDX_MEM_W, REG_MINOR, REG_CONTEXT, CONTEXT_MINOR, 0),
        ];
        for exception in &self.exceptions {
            program.extend(self.exception_block(exception));
        }
        program.push(Instruction::new(
            ALU64_MOV_K,
            REG_RESULT,
            0,
            0,
            i32::from(self.default_allow),
        ));
        program.push(Instruction::new(JMP_EXIT, 0, 0, 0, 0));
        program
    }

    /// Returns the instructions that return the decision for `exception`
    /// when it matches the access, and otherwise fall through to the next
    /// block.
    fn exception_block(&self, exception: &Exception) -> Vec<Instruction> {
        // The kernel's device numbers have 12 and 20 bits. A larger number
        // in a rule matches no device, and would not survive the sign
        // extension of a 32-bit immediate.
        let number = |value: Option<u32>| value.map(i32::try_from);
        let (Ok(major), Ok(minor)) = (
            number(exception.major).transpose(),
            number(exception.minor).transpose(),
        ) else {
            return Vec::new();
        };

        // Each conditional jump skips to the end of the block; its offset
        // is set once the block's length is known.
        let mut block = vec![Instruction::new(
            JMP_JNE_K,
            REG_TYPE,
            0,
            0,
            exception.kind as i32,
        )];
        if self.default_allow {
            // Denied when any requested bit is in the exception.
            if exception.access != ACCESS_ALL {
                block.push(Instruction::new(ALU64_MOV_X, REG_SCRATCH, REG_ACCESS, 0, 0));
                block.push(Instruction::new(
                    ALU64_AND_K,
                    REG_SCRATCH,
                    0,
                    0,
                    i32::from(exception.access),
                ));
                block.push(Instruction::new(JMP_JEQ_K, REG_SCRATCH, 0, 0, 0));
            }
        } else if exception.access != ACCESS_ALL {
            // Allowed only when every requested bit is in the exception.
            block.push(Instruction::new(ALU64_MOV_X, REG_SCRATCH, REG_ACCESS, 0, 0));
            block.push(Instruction::new(
                ALU64_AND_K,
                REG_SCRATCH,
                0,
                0,
                i32::from(ACCESS_ALL & !exception.access),
            ));
            block.push(Instruction::new(JMP_JNE_K, REG_SCRATCH, 0, 0, 0));
        }
        if let Some(major) = major {
            block.push(Instruction::new(JMP_JNE_K, REG_MAJOR, 0, 0, major));
        }
        if let Some(minor) = minor {
            block.push(Instruction::new(JMP_JNE_K, REG_MINOR, 0, 0, minor));
        }
        let decision = i32::from(!self.default_allow);
        block.push(Instruction::new(ALU64_MOV_K, REG_RESULT, 0, 0, decision));
        block.push(Instruction::new(JMP_EXIT, 0, 0, 0, 0));

        let end = block.len();
        for (index, instruction) in block.iter_mut().enumerate() {
            if matches!(instruction.code, JMP_JNE_K | JMP_JEQ_K) {
                instruction.offset = (end - index - 1) as i16;
            }
        }
        block
    }
}

/// Compiles `rules` into a device program and puts it on the cgroup v2
/// directory `dir` in place of the one there before.
pub(crate) fn apply_program(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let access = DeviceAccess::from_rules(rules)?;
    let program = access.program();
    let error = |source| CgroupError::DeviceProgram {
        path: dir.to_path_buf(),
        source,
    };
    let loaded = bpf::load_device_program(&program).map_err(error)?;
    bpf::replace_device_program(dir, &loaded).map_err(error)?;
    tracing::debug!(
        dir = %dir.display(),
        rules = rules.len(),
        exceptions = access.exceptions.len(),
        instructions = program.len(),
        "attached device program"
    );
    Ok(())
}

/// Returns the shortest rule list that leaves the state `rules` leave: a
/// rule of type `a` for the default, then one rule per exception. Appending
/// rules to it means the same as appending them to `rules`.
pub(crate) fn compact_rules(
    rules: &[LinuxDeviceCgroup],
) -> Result<Vec<LinuxDeviceCgroup>, CgroupError> {
    let state = DeviceAccess::from_rules(rules)?;
    let rule = |allow: bool, typ, major: Option<u32>, minor: Option<u32>, access: u8| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(allow);
        rule.set_typ(Some(typ));
        rule.set_major(major.map(i64::from));
        rule.set_minor(minor.map(i64::from));
        let letters = [(ACCESS_READ, 'r'), (ACCESS_WRITE, 'w'), (ACCESS_MKNOD, 'm')];
        let access: String = letters
            .iter()
            .filter(|(bit, _)| access & bit != 0)
            .map(|(_, letter)| letter)
            .collect();
        rule.set_access(Some(access));
        rule
    };
    let mut compact = vec![rule(
        state.default_allow,
        LinuxDeviceType::A,
        None,
        None,
        ACCESS_ALL,
    )];
    for exception in &state.exceptions {
        let typ = match exception.kind {
            DeviceKind::Block => LinuxDeviceType::B,
            DeviceKind::Char => LinuxDeviceType::C,
        };
        compact.push(rule(
            !state.default_allow,
            typ,
            exception.major,
            exception.minor,
            exception.access,
        ));
    }
    Ok(compact)
}

fn same_device(a: &Exception, b: &Exception) -> bool {
    a.kind == b.kind && a.major == b.major && a.minor == b.minor
}

/// Returns the number of a rule: `Some(None)` for any number (unset, -1,
/// or u32::MAX, which the v1 controller reads as `*`), and `None` for a
/// number that the v1 controller rejects.
fn device_number(value: Option<i64>) -> Option<Option<u32>> {
    match value {
        None | Some(-1) => Some(None),
        Some(number) => match u32::try_from(number) {
            Ok(u32::MAX) => Some(None),
            Ok(number) => Some(Some(number)),
            Err(_) => None,
        },
    }
}

/// Parses `rwm` letters into access bits; unset or empty means all.
fn parse_access(access: Option<&str>) -> Option<u8> {
    let access = access.unwrap_or_default();
    if access.is_empty() {
        return Some(ACCESS_ALL);
    }
    access.chars().try_fold(0, |bits, letter| match letter {
        'r' => Some(bits | ACCESS_READ),
        'w' => Some(bits | ACCESS_WRITE),
        'm' => Some(bits | ACCESS_MKNOD),
        _ => None,
    })
}

// Instruction codes (`include/uapi/linux/bpf_common.h` and `bpf.h`).
pub(crate) const LDX_MEM_W: u8 = 0x61;
pub(crate) const ALU64_AND_K: u8 = 0x57;
pub(crate) const ALU64_RSH_K: u8 = 0x77;
pub(crate) const ALU64_MOV_K: u8 = 0xb7;
pub(crate) const ALU64_MOV_X: u8 = 0xbf;
pub(crate) const JMP_JEQ_K: u8 = 0x15;
pub(crate) const JMP_JNE_K: u8 = 0x55;
pub(crate) const JMP_EXIT: u8 = 0x95;

// Offsets in `struct bpf_cgroup_dev_ctx`: access_type is
// `(access << 16) | type`, then major and minor, each a u32.
pub(crate) const CONTEXT_ACCESS_TYPE: i16 = 0;
pub(crate) const CONTEXT_MAJOR: i16 = 4;
pub(crate) const CONTEXT_MINOR: i16 = 8;

// Registers: r0 returns 1 (allow) or 0 (deny), r1 points to the context.
const REG_RESULT: u8 = 0;
const REG_CONTEXT: u8 = 1;
const REG_TYPE: u8 = 2;
const REG_ACCESS: u8 = 3;
const REG_MAJOR: u8 = 4;
const REG_MINOR: u8 = 5;
const REG_SCRATCH: u8 = 6;

#[cfg(test)]
#[path = "devices_tests.rs"]
pub(crate) mod tests;
