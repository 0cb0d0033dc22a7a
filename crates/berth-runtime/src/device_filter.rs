//! Device control on cgroup v2: the OCI device rules as a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the container's cgroup.
//!
//! cgroup v2 has no `devices.allow`/`devices.deny` files; the kernel asks
//! the BPF programs attached to a task's cgroup (and, with
//! `BPF_F_ALLOW_MULTI`, its ancestors') on every device open and mknod.
//! Without one, every device a process can name is open to it — with
//! CAP_MKNOD in the default set, the host's disks.
//!
//! The rules are first reduced the way the v1 kernel's devices controller
//! reduces writes to `devices.allow`/`devices.deny` (an `a` rule resets the
//! default and clears the exceptions; other rules add or remove exceptions
//! by exact type, major and minor), so a container sees the same devices
//! on v1 and v2. The program then checks the exceptions and returns the
//! default. It is generated here, a few dozen instructions loaded with the
//! bpf(2) syscall: no BPF toolchain, no C library to build, and the
//! semantics stay in one place that unit tests can run.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("device rule {index} ({rule}): {reason}")]
    BadRule {
        index: usize,
        rule: String,
        reason: &'static str,
    },
    #[error("cannot load the device filter program: bpf(BPF_PROG_LOAD): {source}{}", verifier_log(.log))]
    Load { source: io::Error, log: String },
    #[error("cannot open cgroup {}: {source}", .cgroup.display())]
    OpenCgroup { cgroup: PathBuf, source: io::Error },
    #[error("cannot attach the device filter to cgroup {}: bpf(BPF_PROG_ATTACH): {source}", .cgroup.display())]
    Attach { cgroup: PathBuf, source: io::Error },
}

fn verifier_log(log: &str) -> String {
    match log.trim() {
        "" => String::new(),
        l => format!(" (verifier: {l})"),
    }
}

/// The kind of device a rule or an access names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Char,
    Block,
}

impl Kind {
    /// `BPF_DEVCG_DEV_*`, the low half of `bpf_cgroup_dev_ctx.access_type`.
    fn bpf(self) -> i32 {
        match self {
            Kind::Block => 1,
            Kind::Char => 2,
        }
    }

    fn letter(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// Access bits, as `BPF_DEVCG_ACC_*` (the high half of `access_type`).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
const ALL_ACCESS: u8 = MKNOD | READ | WRITE;

/// One exception to the default: `kind major:minor access`, `None` being
/// the wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl Exception {
    fn matches(&self, kind: Kind, major: u32, minor: u32) -> bool {
        self.kind == kind && self.major.is_none_or(|m| m == major) && self.minor.is_none_or(|m| m == minor)
    }
}

/// The device rules of one container after reduction: a default and the
/// exceptions to it (allowed devices when the default denies, denied ones
/// when it allows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRules {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

/// The devices every container may use and make, after the spec's own
/// rules (as runc and containerd add them): the standard character
/// devices, mknod of any node (harmless while access stays denied),
/// /dev/console, the ptys and /dev/net/tun.
pub const DEFAULT_ALLOWED: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),    // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),    // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),    // full
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),    // tty
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),    // urandom
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),    // random
    (LinuxDeviceType::C, None, None, "m"),            // mknod of any char device
    (LinuxDeviceType::B, None, None, "m"),            // mknod of any block device
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),    // console
    (LinuxDeviceType::C, Some(136), None, "rwm"),     // pty slaves
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),    // ptmx
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"), // net/tun
];

/// One OCI device cgroup rule.
pub fn cgroup_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_owned()));
    r
}

/// [`DEFAULT_ALLOWED`] as OCI rules.
pub fn default_rules() -> Vec<LinuxDeviceCgroup> {
    DEFAULT_ALLOWED
        .iter()
        .map(|&(typ, major, minor, access)| cgroup_rule(true, typ, major, minor, access))
        .collect()
}

impl DeviceRules {
    /// Reduces `rules` in order, starting from "deny everything" (a fresh
    /// v1 cgroup below a restricted parent, and what v2 means once a
    /// program is attached).
    pub fn from_oci<'a>(
        rules: impl IntoIterator<Item = &'a LinuxDeviceCgroup>,
    ) -> Result<Self, DeviceFilterError> {
        let mut out = DeviceRules {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for (index, r) in rules.into_iter().enumerate() {
            let bad = |reason| DeviceFilterError::BadRule {
                index,
                rule: r.to_string(),
                reason,
            };
            // No access is no access, as the v1 kernel parses it (and as
            // runc's v2 program treats it): never "everything".
            let access = match r.access().as_deref() {
                None | Some("") => 0,
                Some(s) => s.chars().try_fold(0u8, |acc, c| match c {
                    'r' => Ok(acc | READ),
                    'w' => Ok(acc | WRITE),
                    'm' => Ok(acc | MKNOD),
                    _ => Err(bad("access may hold only r, w and m")),
                })?,
            };
            let number = |n: Option<i64>| match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| bad("device number out of range")),
            };
            let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => {
                    // As the v1 kernel: `a` resets, whatever else it says.
                    out.default_allow = r.allow();
                    out.exceptions.clear();
                    continue;
                }
                LinuxDeviceType::C => Kind::Char,
                LinuxDeviceType::B => Kind::Block,
                _ => return Err(bad("a device cgroup rule's type is a, b or c")),
            };
            let ex = Exception {
                kind,
                major: number(r.major())?,
                minor: number(r.minor())?,
                access,
            };
            if ex.access == 0 {
                continue;
            }
            if r.allow() == out.default_allow {
                out.remove(&ex).map_err(bad)?;
            } else {
                out.add(ex);
            }
        }
        Ok(out)
    }

    fn same_key(a: &Exception, b: &Exception) -> bool {
        a.kind == b.kind && a.major == b.major && a.minor == b.minor
    }

    fn add(&mut self, ex: Exception) {
        match self.exceptions.iter_mut().find(|e| Self::same_key(e, &ex)) {
            Some(e) => e.access |= ex.access,
            None => self.exceptions.push(ex),
        }
    }

    /// Takes `ex`'s bits from the exception with exactly its key, as v1
    /// does. A wider wildcard exception sharing those bits would stay as it
    /// is (v1 removes by exact key only), so the rule would seem to deny what
    /// is still allowed: refused, as runc refuses it.
    fn remove(&mut self, ex: &Exception) -> Result<(), &'static str> {
        let covers = |e: &Exception| {
            e.kind == ex.kind
                && (e.major.is_none() || e.major == ex.major)
                && (e.minor.is_none() || e.minor == ex.minor)
                && e.access & ex.access != 0
                && !Self::same_key(e, ex)
        };
        if self.exceptions.iter().any(covers) {
            return Err("cannot take access from part of a wildcard rule before it (it would stay granted)");
        }
        for e in self.exceptions.iter_mut().filter(|e| Self::same_key(e, ex)) {
            e.access &= !ex.access;
        }
        self.exceptions.retain(|e| e.access != 0);
        Ok(())
    }

    /// True when nothing is denied: a privileged container's rules.
    pub fn allows_everything(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }

    /// The decision the kernel's v1 controller makes, and the program
    /// below makes on v2: with a deny default, one exception must grant
    /// every requested bit; with an allow default, any exception that
    /// names one of them denies.
    pub fn allows(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let mut hits = self.exceptions.iter().filter(|e| e.matches(kind, major, minor));
        if self.default_allow {
            !hits.any(|e| e.access & access != 0)
        } else {
            hits.any(|e| access & !e.access == 0)
        }
    }

    /// The rules as the program the kernel runs on every device access.
    ///
    /// Context (`struct bpf_cgroup_dev_ctx`): `access_type` at 0 (device
    /// kind in the low 16 bits, access bits in the high 16), `major` at 4,
    /// `minor` at 8. R2 = kind, R3 = access, R4 = major, R5 = minor; each
    /// exception is a block that jumps to the next block on a mismatch and
    /// returns its verdict on a match; the last block returns the default.
    pub fn program(&self) -> Vec<Insn> {
        let mut p = vec![
            Insn::ldx_w(2, 1, 0),
            Insn::alu64_imm(AND, 2, 0xffff),
            Insn::ldx_w(3, 1, 0),
            Insn::alu64_imm(RSH, 3, 16),
            Insn::ldx_w(4, 1, 4),
            Insn::ldx_w(5, 1, 8),
        ];
        let verdict = i32::from(!self.default_allow);
        for ex in &self.exceptions {
            let mut block = vec![Insn::jmp32_imm(JNE, 2, ex.kind.bpf(), NEXT)];
            if self.default_allow {
                // Denies when it names any requested bit.
                if ex.access != ALL_ACCESS {
                    block.push(Insn::mov64_reg(0, 3));
                    block.push(Insn::alu64_imm(AND, 0, i32::from(ex.access)));
                    block.push(Insn::jmp32_imm(JEQ, 0, 0, NEXT));
                }
            } else if ex.access != ALL_ACCESS {
                // Allows only when it grants every requested bit.
                block.push(Insn::mov64_reg(0, 3));
                block.push(Insn::alu64_imm(AND, 0, i32::from(!ex.access & ALL_ACCESS)));
                block.push(Insn::jmp32_imm(JNE, 0, 0, NEXT));
            }
            if let Some(major) = ex.major {
                block.push(Insn::jmp32_imm(JNE, 4, major as i32, NEXT));
            }
            if let Some(minor) = ex.minor {
                block.push(Insn::jmp32_imm(JNE, 5, minor as i32, NEXT));
            }
            block.push(Insn::mov64_imm(0, verdict));
            block.push(Insn::exit());
            // Resolve "next": the instruction after this block.
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.off == NEXT {
                    insn.off = (len - i - 1) as i16;
                }
            }
            p.extend(block);
        }
        p.push(Insn::mov64_imm(0, i32::from(self.default_allow)));
        p.push(Insn::exit());
        p
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        write!(
            f,
            "{} {}:{} {access}",
            self.kind.letter(),
            n(self.major),
            n(self.minor)
        )
    }
}

/// A placeholder jump offset, resolved when its block is complete.
const NEXT: i16 = i16::MIN;

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const AND: u8 = 0x50;
const RSH: u8 = 0x70;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;

/// One eBPF instruction, laid out as `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        }
    }
    /// dst = *(u32 *)(src + off)
    const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(0x61, dst, src, off, 0)
    }
    /// dst op= imm, 64-bit
    const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(0x07 | op, dst, 0, 0, imm)
    }
    const fn mov64_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0xb7, dst, 0, 0, imm)
    }
    const fn mov64_reg(dst: u8, src: u8) -> Insn {
        Insn::new(0xbf, dst, src, 0, 0)
    }
    /// if (u32)dst op imm goto +off; 32-bit compares, so device numbers
    /// above 2^31 are not sign-extended against a zero-extended register.
    const fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(0x06 | op, dst, 0, off, imm)
    }
    const fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0)
    }
}

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Lets the programs of ancestors and descendants all apply (a device is
/// allowed only if every one allows it); what systemd and runc use, so
/// neither can lock the other out.
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
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
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a properly laid out, zero-padded `union bpf_attr`
    // prefix of the size passed; the kernel reads at most that many bytes
    // and any pointers in it point to live buffers of the caller.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads `program` into the kernel; the program lives as long as the
/// returned descriptor or an attachment holds it.
pub fn load(program: &[Insn]) -> Result<OwnedFd, DeviceFilterError> {
    const LICENSE: &CStr = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_device");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor
        // that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(source) => {
            // Only on failure: load again with the verifier's log.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                // SAFETY: as above; loaded after all, closed at once.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            Err(DeviceFilterError::Load {
                source,
                log: tail.into_iter().rev().collect::<Vec<_>>().join("; "),
            })
        }
    }
}

/// Loads the program for `rules` and attaches it to the cgroup v2
/// directory `cgroup`. The attachment keeps the program for as long as the
/// cgroup exists; nothing needs to be detached at removal.
pub fn attach(cgroup: &Path, rules: &DeviceRules) -> Result<(), DeviceFilterError> {
    let prog = load(&rules.program())?;
    let dir = File::open(cgroup).map_err(|source| DeviceFilterError::OpenCgroup {
        cgroup: cgroup.to_owned(),
        source,
    })?;
    let mut attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|source| DeviceFilterError::Attach {
        cgroup: cgroup.to_owned(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::cgroup_rule as rule;

    /// Runs the subset of eBPF the generator emits, as the kernel would.
    fn run(program: &[Insn], kind: Kind, major: u32, minor: u32, access: u8) -> u64 {
        let ctx = [(u32::from(access) << 16) | kind.bpf() as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0x61 => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                0x57 => r[dst] &= i.imm as i64 as u64,
                0x77 => r[dst] >>= i.imm,
                0xb7 => r[dst] = i.imm as i64 as u64,
                0xbf => r[dst] = r[src],
                0x16 | 0x56 => {
                    let eq = r[dst] as u32 == i.imm as u32;
                    if eq == (i.code == 0x16) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn container_rules() -> Vec<LinuxDeviceCgroup> {
        // What berth's spec generation writes, then the defaults.
        let mut rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, None, None, "m"),
            rule(true, LinuxDeviceType::B, None, None, "m"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::B, Some(7), Some(0), "r"),
        ];
        rules.extend(default_rules());
        rules
    }

    #[test]
    fn a_default_container_may_make_any_node_but_open_only_its_own() {
        let rules = DeviceRules::from_oci(&container_rules()).unwrap();
        assert!(!rules.default_allow);
        // The host's disk: mknod yes (as with runc), read and write no.
        assert!(rules.allows(Kind::Block, 254, 0, MKNOD));
        assert!(!rules.allows(Kind::Block, 254, 0, READ));
        assert!(!rules.allows(Kind::Block, 254, 0, WRITE));
        assert!(!rules.allows(Kind::Char, 1, 1, READ), "/dev/mem");
        assert!(rules.allows(Kind::Char, 1, 3, READ | WRITE));
        assert!(rules.allows(Kind::Char, 136, 42, READ | WRITE));
        // Granted read only: a read-write open is refused.
        assert!(rules.allows(Kind::Block, 7, 0, READ));
        assert!(!rules.allows(Kind::Block, 7, 0, READ | WRITE));
        // A char rule says nothing about block devices of the same number.
        assert!(!rules.allows(Kind::Block, 1, 3, READ));
    }

    #[test]
    fn an_all_rule_resets_and_later_rules_are_exceptions_to_it() {
        let r = DeviceRules::from_oci(&[
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::A, Some(5), None, "r"),
        ])
        .unwrap();
        assert!(r.allows_everything(), "{r:?}");
        let r = DeviceRules::from_oci(&[
            rule(true, LinuxDeviceType::A, None, None, "rwm"),
            rule(false, LinuxDeviceType::B, Some(8), None, "w"),
        ])
        .unwrap();
        assert!(!r.allows_everything());
        assert!(r.allows(Kind::Block, 8, 1, READ));
        assert!(!r.allows(Kind::Block, 8, 1, READ | WRITE));
        assert!(r.allows(Kind::Char, 8, 1, WRITE));
    }

    #[test]
    fn a_deny_takes_bits_away_from_the_exact_exception_only() {
        let r = DeviceRules::from_oci(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(5), "w"),
            rule(true, LinuxDeviceType::C, Some(4), None, "rw"),
        ])
        .unwrap();
        assert!(r.allows(Kind::Char, 1, 5, READ | MKNOD));
        assert!(!r.allows(Kind::Char, 1, 5, WRITE));
        assert!(r.allows(Kind::Char, 4, 1, READ));
        assert_eq!(r.exceptions.len(), 2, "{r:?}");
        // A deny of part of 4:* would leave it granted (v1 removes by
        // exact key): refused, naming the rule.
        let e = DeviceRules::from_oci(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(4), None, "rw"),
            rule(false, LinuxDeviceType::C, Some(4), Some(1), "rw"),
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("rule 2") && e.to_string().contains("wildcard"),
            "{e}"
        );
        // Removing every bit drops the exception.
        let r = DeviceRules::from_oci(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::B, Some(7), None, "rw"),
            rule(false, LinuxDeviceType::B, Some(7), None, "rwm"),
        ])
        .unwrap();
        assert!(r.exceptions.is_empty());
    }

    #[test]
    fn wildcards_and_missing_fields_mean_all() {
        let mut open = LinuxDeviceCgroup::default();
        open.set_allow(true);
        let r = DeviceRules::from_oci(&[rule(false, LinuxDeviceType::A, None, None, "rwm"), open]).unwrap();
        assert!(r.allows_everything(), "no type means a (whatever the access)");
        // A c or b rule without access grants nothing.
        let mut no_access = rule(true, LinuxDeviceType::C, Some(1), Some(1), "");
        no_access.set_access(None);
        let r =
            DeviceRules::from_oci(&[rule(false, LinuxDeviceType::A, None, None, "rwm"), no_access]).unwrap();
        assert!(!r.allows(Kind::Char, 1, 1, READ), "{r:?}");
        let r = DeviceRules::from_oci(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::B, Some(-1), Some(-1), "m"),
        ])
        .unwrap();
        assert_eq!(r.exceptions[0].to_string(), "b *:* m");
    }

    #[test]
    fn bad_rules_are_named() {
        let e =
            DeviceRules::from_oci(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwx")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("rule 0") && msg.contains("r, w and m"), "{msg}");
        let e = DeviceRules::from_oci(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::U, Some(1), Some(3), "rwm"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("rule 1"), "{e}");
        let e = DeviceRules::from_oci(&[rule(true, LinuxDeviceType::C, Some(1 << 40), Some(3), "r")])
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    /// The program decides exactly as the reduced rules do, for every kind,
    /// access combination and a spread of numbers, on several rule sets
    /// (deny default, allow default, high device numbers).
    #[test]
    fn the_program_agrees_with_the_rules_everywhere() {
        let sets = [
            container_rules(),
            vec![
                rule(true, LinuxDeviceType::A, None, None, "rwm"),
                rule(false, LinuxDeviceType::B, Some(8), None, "w"),
                rule(false, LinuxDeviceType::C, None, Some(3), "rm"),
                rule(false, LinuxDeviceType::C, Some(4_000_000_000), Some(1), "rwm"),
            ],
            vec![
                rule(false, LinuxDeviceType::A, None, None, "rwm"),
                rule(true, LinuxDeviceType::C, Some(3_000_000_000), None, "rw"),
                rule(true, LinuxDeviceType::B, None, Some(0), "r"),
            ],
            vec![rule(true, LinuxDeviceType::A, None, None, "rwm")],
            vec![],
        ];
        let numbers = [
            0u32,
            1,
            3,
            5,
            7,
            8,
            136,
            254,
            3_000_000_000,
            4_000_000_000,
            u32::MAX,
        ];
        for rules in &sets {
            let reduced = DeviceRules::from_oci(rules).unwrap();
            let program = reduced.program();
            for kind in [Kind::Char, Kind::Block] {
                for access in 1..=ALL_ACCESS {
                    for &major in &numbers {
                        for &minor in &numbers {
                            let want = u64::from(reduced.allows(kind, major, minor, access));
                            assert_eq!(
                                run(&program, kind, major, minor, access),
                                want,
                                "{kind:?} {major}:{minor} access {access} under {reduced:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
