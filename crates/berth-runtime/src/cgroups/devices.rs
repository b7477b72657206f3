//! Device access rules: the v1 `devices.allow`/`devices.deny` lines and, for cgroup v2 (which
//! has no device files), a `BPF_PROG_TYPE_CGROUP_DEVICE` program with the same meaning.
//!
//! Semantics (Documentation/admin-guide/cgroup-v1/devices.rst): rules apply in order and a later
//! rule overrides an earlier one for the devices and accesses it names; a fresh cgroup inherits
//! "allow everything" unless a rule denies it. The eBPF program therefore checks the rules from
//! last to first and returns the verdict of the first one that matches; when none matches it
//! allows, like the v1 default. OCI specs start with `deny a *:* rwm`, which matches everything.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// Access bits as `struct bpf_cgroup_dev_ctx` encodes them (include/uapi/linux/bpf.h:
/// `BPF_DEVCG_ACC_MKNOD = 1, BPF_DEVCG_ACC_READ = 2, BPF_DEVCG_ACC_WRITE = 4`).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device types as the eBPF context encodes them (`BPF_DEVCG_DEV_BLOCK = 1`, `CHAR = 2`).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Char,
    Block,
}

/// One normalised rule. `None` major/minor is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl DeviceRule {
    /// Normalises an OCI rule; `Ok(None)` for fifo rules, which the device cgroup ignores.
    pub fn from_oci(d: &LinuxDeviceCgroup) -> Result<Option<Self>, CgroupError> {
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DeviceKind::All,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::P => return Ok(None),
        };
        let number = |n: Option<i64>, setting: &'static str| -> Result<Option<u32>, CgroupError> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                // Majors fit 12 bits and minors 20 bits (MKDEV in include/linux/kdev_t.h).
                Some(n) if n < (1 << 20) => Ok(Some(n as u32)),
                Some(n) => Err(CgroupError::InvalidValue {
                    setting,
                    value: n.to_string(),
                    reason: "not a valid device number",
                }),
            }
        };
        let major = number(d.major(), "devices.major")?;
        let minor = number(d.minor(), "devices.minor")?;
        let access_str = d.access().as_deref().unwrap_or("rwm");
        let mut access = 0;
        for c in access_str.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(CgroupError::InvalidValue {
                        setting: "devices.access",
                        value: access_str.to_owned(),
                        reason: "only the letters r, w and m are allowed",
                    })
                }
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        Ok(Some(DeviceRule {
            allow: d.allow(),
            kind,
            major,
            minor,
            access,
        }))
    }

    /// The line for `devices.allow` / `devices.deny`, e.g. `c 1:3 rwm`.
    pub fn to_v1(self) -> String {
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        if self.access & ACC_READ != 0 {
            access.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            access.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            access.push('m');
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// The devices every container gets whatever its spec says, the same list as runc's
/// `AllowedDevices` (libcontainer/specconv): mknod of any node (creating a node is not opening
/// it), the standard character devices the runtime creates in `/dev`, `/dev/pts/*`,
/// `/dev/ptmx` and `/dev/net/tun`.
pub fn default_allowed() -> Vec<DeviceRule> {
    let rule = |kind, major, minor, access| DeviceRule {
        allow: true,
        kind,
        major,
        minor,
        access,
    };
    use DeviceKind::{Block, Char};
    vec![
        rule(Char, None, None, ACC_MKNOD),
        rule(Block, None, None, ACC_MKNOD),
        rule(Char, Some(1), Some(3), ACC_ALL),    // /dev/null
        rule(Char, Some(1), Some(8), ACC_ALL),    // /dev/random
        rule(Char, Some(1), Some(7), ACC_ALL),    // /dev/full
        rule(Char, Some(5), Some(0), ACC_ALL),    // /dev/tty
        rule(Char, Some(1), Some(5), ACC_ALL),    // /dev/zero
        rule(Char, Some(1), Some(9), ACC_ALL),    // /dev/urandom
        rule(Char, Some(136), None, ACC_ALL),     // /dev/pts/*
        rule(Char, Some(5), Some(2), ACC_ALL),    // /dev/ptmx
        rule(Char, Some(10), Some(200), ACC_ALL), // /dev/net/tun
    ]
}

/// One eBPF instruction, laid out as `struct bpf_insn` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used below (include/uapi/linux/bpf_common.h, bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// Compiles `rules` into a cgroup device program.
///
/// Registers: r1 = ctx on entry; r2 = device type, r3 = requested access, r4 = major,
/// r5 = minor, r1 is then scratch. `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
/// u32 minor; }` with `access_type = (access << 16) | type`.
pub fn compile(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_MOV_X, 3, 2, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each block ends with "r0 = verdict; exit"; every failed test jumps past the block.
        let mut block: Vec<(u8, u8, u8, i32)> = Vec::new(); // (code, dst, src, imm); off filled later
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Char => block.push((JMP_JNE_K, 2, 0, DEV_CHAR)),
            DeviceKind::Block => block.push((JMP_JNE_K, 2, 0, DEV_BLOCK)),
        }
        if rule.allow {
            // Allow only when every requested access is in the rule.
            if rule.access != ACC_ALL {
                block.push((ALU64_MOV_X, 1, 3, 0));
                block.push((ALU64_AND_K, 1, 0, i32::from(!rule.access & ACC_ALL)));
                block.push((JMP_JNE_K, 1, 0, 0));
            }
        } else if rule.access != ACC_ALL {
            // Deny as soon as one requested access is denied.
            block.push((ALU64_MOV_X, 1, 3, 0));
            block.push((ALU64_AND_K, 1, 0, i32::from(rule.access)));
            block.push((JMP_JEQ_K, 1, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push((JMP_JNE_K, 4, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push((JMP_JNE_K, 5, 0, minor as i32));
        }
        let len = block.len();
        for (i, (code, dst, src, imm)) in block.into_iter().enumerate() {
            let is_jump = code == JMP_JNE_K || code == JMP_JEQ_K;
            // Jump over the rest of this block plus the verdict's two instructions.
            let off = if is_jump { (len - i - 1 + 2) as i16 } else { 0 };
            prog.push(insn(code, dst, src, off, imm));
        }
        prog.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if len == 0 {
            // A rule that matches everything (`a *:* rwm`) decides every access: the earlier
            // rules and the default are dead code, which the verifier refuses ("unreachable
            // insn").
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    /// Runs a program from [`compile`] on one access: a tiny interpreter for exactly the
    /// instructions `compile` emits, so the verdicts are tested without loading anything.
    fn run(prog: &[BpfInsn], kind: i32, access: u8, major: u32, minor: u32) -> bool {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from ctx");
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JEQ_K if r[dst] == i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JNE_K | JMP_JEQ_K => {}
                JMP_EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn oci(allow: bool, typ: LinuxDeviceType, major: i64, minor: i64, access: &str) -> DeviceRule {
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .major(major)
            .minor(minor)
            .access(access)
            .build()
            .unwrap();
        DeviceRule::from_oci(&d).unwrap().unwrap()
    }

    fn spec_rules() -> Vec<DeviceRule> {
        let mut rules = vec![oci(false, LinuxDeviceType::A, -1, -1, "rwm")];
        rules.extend(default_allowed());
        rules.push(oci(true, LinuxDeviceType::B, 8, 0, "r"));
        rules.push(oci(false, LinuxDeviceType::C, 1, 9, "w"));
        rules
    }

    #[test]
    fn program_allows_listed_devices_and_denies_the_rest() {
        let prog = compile(&spec_rules());
        // /dev/null read+write allowed.
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3));
        // An unlisted char device (e.g. /dev/mem 1:1) denied.
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 1, 1));
        // Block 8:0: read allowed, write denied (the allow rule is read-only).
        assert!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0));
        assert!(!run(&prog, DEV_BLOCK, ACC_WRITE, 8, 0));
        // Type matters: char 8:0 is not block 8:0.
        assert!(!run(&prog, DEV_CHAR, ACC_READ, 8, 0));
        // A later deny overrides an earlier allow: urandom readable, not writable.
        assert!(run(&prog, DEV_CHAR, ACC_READ, 1, 9));
        assert!(!run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 9));
        // mknod of anything is allowed, as runc allows it.
        assert!(run(&prog, DEV_BLOCK, ACC_MKNOD, 259, 1));
        // Wildcard minors: any pts.
        assert!(run(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 42));
    }

    #[test]
    fn nothing_follows_a_rule_that_matches_everything() {
        let prog = compile(&spec_rules());
        // The verifier refuses unreachable instructions: the program must end with the
        // deny-all rule's verdict, not with an unreachable default.
        let n = prog.len();
        assert_eq!(prog[n - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(prog[n - 1], insn(JMP_EXIT, 0, 0, 0, 0));
        // Every jump lands inside the program.
        for (pc, i) in prog.iter().enumerate() {
            if i.code == JMP_JNE_K || i.code == JMP_JEQ_K {
                assert!(
                    pc + 1 + (i.off as usize) < n,
                    "jump at {pc} leaves the program"
                );
            }
        }
    }

    #[test]
    fn no_rules_allow_everything_like_a_fresh_v1_cgroup() {
        let prog = compile(&[]);
        assert!(run(&prog, DEV_CHAR, ACC_ALL, 1, 1));
    }

    #[test]
    fn v1_lines_use_wildcards_and_access_letters() {
        assert_eq!(
            oci(false, LinuxDeviceType::A, -1, -1, "rwm").to_v1(),
            "a *:* rwm"
        );
        assert_eq!(
            oci(true, LinuxDeviceType::C, 1, 3, "mr").to_v1(),
            "c 1:3 rm"
        );
        assert_eq!(oci(true, LinuxDeviceType::U, 4, -1, "w").to_v1(), "c 4:* w");
    }

    #[test]
    fn bad_access_letters_are_refused() {
        let d = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rx")
            .build()
            .unwrap();
        let err = DeviceRule::from_oci(&d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid devices.access \"rx\": only the letters r, w and m are allowed"
        );
    }
}
