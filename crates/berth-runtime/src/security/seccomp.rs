//! `linux.seccomp` → a classic-BPF program, compiled in the parent with libseccomp.
//!
//! The compiled program is plain bytes ([`SeccompProgram`]); the container's init only hands
//! them to `seccomp(2)` (see `sys::seccomp`). Compilation follows runc
//! (`libcontainer/seccomp/seccomp_linux.go`):
//! - syscall names neither libseccomp nor the kernel know are skipped, so a profile written for a
//!   newer kernel still loads;
//! - a rule whose action equals the default action is skipped (libseccomp refuses it, and it
//!   changes nothing);
//! - several conditions on the same argument become one rule each (OR), as libseccomp cannot
//!   AND two comparisons of one argument;
//! - `SCMP_ACT_NOTIFY` needs `listenerPath` and cannot be the default action.
//!
//! The default profile ([`default_seccomp_for_caps`]) is `profiles/default-seccomp.json`, in moby's
//! format (capability, architecture and kernel-version `includes`/`excludes`), resolved here the
//! way moby's `profiles/seccomp/seccomp_linux.go` does.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

use crate::sys;

/// The default profile, in moby's format.
pub const DEFAULT_PROFILE_JSON: &str = include_str!("../../profiles/default-seccomp.json");

/// Kernel filter flags (`SECCOMP_FILTER_FLAG_*`, seccomp(2)).
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 1 << 1;
const FLAG_SPEC_ALLOW: u32 = 1 << 2;
const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Why a seccomp profile cannot be compiled, or its listener reached.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The kernel does not implement a return action the profile uses.
    #[error("seccomp action {action} is not supported by the running kernel")]
    UnsupportedAction { action: &'static str },
    /// The kernel does not know a filter flag the profile sets.
    #[error("seccomp flag {flag} is not supported by the running kernel")]
    UnsupportedFlag { flag: &'static str },
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` only applies to a filter with a notify listener.
    #[error("seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule")]
    WaitKillableWithoutNotify,
    /// `SCMP_ACT_NOTIFY` as default action would send every syscall of the runtime's own last
    /// steps (and the agent's replies) through the agent; runc refuses it too.
    #[error("SCMP_ACT_NOTIFY cannot be the seccomp defaultAction")]
    NotifyAsDefault,
    /// A rule uses `SCMP_ACT_NOTIFY` but nobody would receive the notifications.
    #[error("seccomp rule for {syscall:?} uses SCMP_ACT_NOTIFY but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener { syscall: String },
    /// The listener socket does not exist (checked before anything is created).
    #[error("seccomp listener {path} is not reachable")]
    ListenerMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An argument index outside 0-5.
    #[error("seccomp rule for {syscall:?}: argument index {index} is out of range (0-5)")]
    ArgIndex { syscall: String, index: usize },
    /// libseccomp could not create the filter context.
    #[error("creating the seccomp filter (default action {action})")]
    Create {
        action: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused an architecture.
    #[error("adding seccomp architecture {arch}")]
    AddArch {
        arch: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused a rule.
    #[error("adding the seccomp rule for {syscall:?} (action {action})")]
    AddRule {
        syscall: String,
        action: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Exporting the compiled program failed.
    #[error("exporting the compiled seccomp filter")]
    Export {
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// The memory file the program is exported into failed.
    #[error("reading back the exported seccomp filter")]
    ExportBuffer {
        #[source]
        source: std::io::Error,
    },
    /// The default profile (a data file built into Berth) does not parse.
    #[error("parsing the built-in default seccomp profile")]
    DefaultProfile {
        #[source]
        source: serde_json::Error,
    },
    /// A profile in moby's format (`docker run --security-opt seccomp=FILE`) does not parse.
    #[error("parsing the seccomp profile")]
    Profile {
        #[source]
        source: serde_json::Error,
    },
    /// moby refuses a profile that gives both lists of architectures.
    #[error("the seccomp profile sets both 'architectures' and 'archMap'")]
    ArchitecturesAndArchMap,
    /// A capability name given to [`default_seccomp_for_caps`] is unknown.
    #[error(transparent)]
    UnknownCapability(#[from] super::caps::UnknownCapability),
}

/// Why the notify fd could not be handed to the seccomp agent.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The state JSON given by the caller is not JSON.
    #[error("parsing the container state for the seccomp listener")]
    State {
        #[source]
        source: serde_json::Error,
    },
    /// Connecting to `listenerPath` failed.
    #[error("connecting to the seccomp listener {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Sending the message with the fd failed.
    #[error("sending the seccomp notify fd to the listener {path}")]
    Send {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProgram {
    /// Exported `struct sock_filter` array (8 bytes per instruction, native endianness).
    pub bpf: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` for the load, `NEW_LISTENER` included when [`Self::notify`].
    pub flags: u32,
    /// Some rule uses `SCMP_ACT_NOTIFY`: loading returns a listener fd.
    pub notify: bool,
    /// `linux.seccomp.listenerPath`.
    pub listener_path: Option<PathBuf>,
    /// `linux.seccomp.listenerMetadata`.
    pub listener_metadata: Option<String>,
    /// Syscall names skipped because neither libseccomp nor the kernel knows them.
    pub skipped_syscalls: Vec<String>,
}

impl SeccompProgram {
    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.bpf.len() / sys::seccomp::BPF_INSN_LEN
    }
}

fn action_name(a: LinuxSeccompAction) -> &'static str {
    match a {
        LinuxSeccompAction::ScmpActKill => "SCMP_ACT_KILL",
        LinuxSeccompAction::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActTrap => "SCMP_ACT_TRAP",
        LinuxSeccompAction::ScmpActErrno => "SCMP_ACT_ERRNO",
        LinuxSeccompAction::ScmpActNotify => "SCMP_ACT_NOTIFY",
        LinuxSeccompAction::ScmpActTrace => "SCMP_ACT_TRACE",
        LinuxSeccompAction::ScmpActLog => "SCMP_ACT_LOG",
        LinuxSeccompAction::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

/// Every action of the runtime spec, for `features`.
pub const ALL_ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// The kernel's `SECCOMP_RET_*` value of an action, for `SECCOMP_GET_ACTION_AVAIL`.
fn kernel_action(a: LinuxSeccompAction) -> u32 {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => 0,
        LinuxSeccompAction::ScmpActKillProcess => 0x8000_0000,
        LinuxSeccompAction::ScmpActTrap => 0x0003_0000,
        LinuxSeccompAction::ScmpActErrno => 0x0005_0000,
        LinuxSeccompAction::ScmpActNotify => 0x7fc0_0000,
        LinuxSeccompAction::ScmpActTrace => 0x7ff0_0000,
        LinuxSeccompAction::ScmpActLog => 0x7ffc_0000,
        LinuxSeccompAction::ScmpActAllow => 0x7fff_0000,
    }
}

/// Whether the running kernel implements `action`.
pub fn action_supported(action: LinuxSeccompAction) -> bool {
    sys::seccomp::action_available(kernel_action(action))
}

fn to_scmp_action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> ScmpAction {
    // Without errnoRet, ERRNO returns EPERM and TRACE passes EPERM as its message, as in runc.
    let ret = errno_ret.map_or(libc::EPERM, |e| e as i32);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

/// Every architecture of the runtime spec with its libseccomp token and name.
pub const ALL_ARCHES: [(Arch, ScmpArch, &str); 24] = [
    (Arch::ScmpArchNative, ScmpArch::Native, "SCMP_ARCH_NATIVE"),
    (Arch::ScmpArchX86, ScmpArch::X86, "SCMP_ARCH_X86"),
    (Arch::ScmpArchX86_64, ScmpArch::X8664, "SCMP_ARCH_X86_64"),
    (Arch::ScmpArchX32, ScmpArch::X32, "SCMP_ARCH_X32"),
    (Arch::ScmpArchArm, ScmpArch::Arm, "SCMP_ARCH_ARM"),
    (
        Arch::ScmpArchAarch64,
        ScmpArch::Aarch64,
        "SCMP_ARCH_AARCH64",
    ),
    (Arch::ScmpArchMips, ScmpArch::Mips, "SCMP_ARCH_MIPS"),
    (Arch::ScmpArchMips64, ScmpArch::Mips64, "SCMP_ARCH_MIPS64"),
    (
        Arch::ScmpArchMips64n32,
        ScmpArch::Mips64N32,
        "SCMP_ARCH_MIPS64N32",
    ),
    (Arch::ScmpArchMipsel, ScmpArch::Mipsel, "SCMP_ARCH_MIPSEL"),
    (
        Arch::ScmpArchMipsel64,
        ScmpArch::Mipsel64,
        "SCMP_ARCH_MIPSEL64",
    ),
    (
        Arch::ScmpArchMipsel64n32,
        ScmpArch::Mipsel64N32,
        "SCMP_ARCH_MIPSEL64N32",
    ),
    (Arch::ScmpArchPpc, ScmpArch::Ppc, "SCMP_ARCH_PPC"),
    (Arch::ScmpArchPpc64, ScmpArch::Ppc64, "SCMP_ARCH_PPC64"),
    (
        Arch::ScmpArchPpc64le,
        ScmpArch::Ppc64Le,
        "SCMP_ARCH_PPC64LE",
    ),
    (Arch::ScmpArchS390, ScmpArch::S390, "SCMP_ARCH_S390"),
    (Arch::ScmpArchS390x, ScmpArch::S390X, "SCMP_ARCH_S390X"),
    (Arch::ScmpArchParisc, ScmpArch::Parisc, "SCMP_ARCH_PARISC"),
    (
        Arch::ScmpArchParisc64,
        ScmpArch::Parisc64,
        "SCMP_ARCH_PARISC64",
    ),
    (
        Arch::ScmpArchRiscv64,
        ScmpArch::Riscv64,
        "SCMP_ARCH_RISCV64",
    ),
    (
        Arch::ScmpArchLoongarch64,
        ScmpArch::Loongarch64,
        "SCMP_ARCH_LOONGARCH64",
    ),
    (Arch::ScmpArchM68k, ScmpArch::M68k, "SCMP_ARCH_M68K"),
    (Arch::ScmpArchSh, ScmpArch::Sh, "SCMP_ARCH_SH"),
    (Arch::ScmpArchSheb, ScmpArch::Sheb, "SCMP_ARCH_SHEB"),
];

/// Whether the linked libseccomp can build filters for `arch` (2.5 lacks LoongArch, M68k and
/// SuperH, for example).
pub fn arch_supported(arch: Arch) -> bool {
    let (token, _) = scmp_arch(arch);
    if token == ScmpArch::Native {
        return true;
    }
    let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return false;
    };
    ctx.is_arch_present(token).unwrap_or(false) || ctx.add_arch(token).is_ok()
}

fn scmp_arch(a: Arch) -> (ScmpArch, &'static str) {
    ALL_ARCHES
        .iter()
        .find(|(oci, _, _)| *oci == a)
        .map(|(_, s, n)| (*s, *n))
        .unwrap_or((ScmpArch::Native, "SCMP_ARCH_NATIVE"))
}

/// Every operator of the runtime spec, for `features`.
pub const ALL_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

fn to_condition(syscall: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    if arg.index() > 5 {
        return Err(SeccompError::ArgIndex {
            syscall: syscall.to_owned(),
            index: arg.index(),
        });
    }
    let index = arg.index() as u32;
    let value = arg.value();
    Ok(match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => {
            ScmpArgCompare::new(index, ScmpCompareOp::NotEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpLt => ScmpArgCompare::new(index, ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => {
            ScmpArgCompare::new(index, ScmpCompareOp::LessOrEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpEq => ScmpArgCompare::new(index, ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => {
            ScmpArgCompare::new(index, ScmpCompareOp::GreaterEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpGt => {
            ScmpArgCompare::new(index, ScmpCompareOp::Greater, value)
        }
        // runtime-spec: `(arg & value) == valueTwo`; libseccomp takes the mask in the operator.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpArgCompare::new(
            index,
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    })
}

fn flag_bits(flag: LinuxSeccompFilterFlag) -> (u32, &'static str) {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => (FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
            (FLAG_SPEC_ALLOW, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => (
            FLAG_WAIT_KILLABLE_RECV,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
    }
}

/// Every filter flag of the runtime spec, for `features`.
pub const ALL_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// Whether the running kernel knows `flag`.
pub fn flag_supported(flag: LinuxSeccompFilterFlag) -> bool {
    let (bits, _) = flag_bits(flag);
    // WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER, so probe the pair.
    let probe = if bits == FLAG_WAIT_KILLABLE_RECV {
        bits | sys::seccomp::FLAG_NEW_LISTENER
    } else {
        bits
    };
    sys::seccomp::flag_supported(probe)
}

/// The name of `flag` as the runtime spec spells it.
pub fn flag_name(flag: LinuxSeccompFilterFlag) -> &'static str {
    flag_bits(flag).1
}

/// The name of `action` as the runtime spec spells it.
pub fn action_spec_name(action: LinuxSeccompAction) -> &'static str {
    action_name(action)
}

/// Checks and compiles `linux.seccomp` into a BPF program for the running kernel, through the
/// cache when [`use_cache_dir`] enabled it.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    compile_cached(profile, CACHE_DIR.get().map(PathBuf::as_path))
}

fn compile_cached(
    profile: &LinuxSeccomp,
    cache: Option<&Path>,
) -> Result<SeccompProgram, SeccompError> {
    let default = profile.default_action();
    if default == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyAsDefault);
    }
    let syscalls: &[LinuxSyscall] = profile.syscalls().as_deref().unwrap_or(&[]);

    // Refuse what the kernel cannot do now, with the action's name, rather than failing in the
    // container's init after everything was created.
    let mut used = vec![default];
    used.extend(syscalls.iter().map(|s| s.action()));
    for action in used.iter().copied() {
        if !action_supported(action) {
            return Err(SeccompError::UnsupportedAction {
                action: action_name(action),
            });
        }
    }
    let notify = syscalls
        .iter()
        .find(|s| s.action() == LinuxSeccompAction::ScmpActNotify && !s.names().is_empty());
    if let Some(rule) = notify {
        let Some(path) = profile.listener_path() else {
            return Err(SeccompError::NotifyWithoutListener {
                syscall: rule.names()[0].clone(),
            });
        };
        std::fs::metadata(path).map_err(|source| SeccompError::ListenerMissing {
            path: path.clone(),
            source,
        })?;
    }

    let mut flags = 0u32;
    for flag in profile.flags().as_deref().unwrap_or(&[]) {
        let (bits, name) = flag_bits(*flag);
        if bits == FLAG_WAIT_KILLABLE_RECV && notify.is_none() {
            return Err(SeccompError::WaitKillableWithoutNotify);
        }
        if !flag_supported(*flag) {
            return Err(SeccompError::UnsupportedFlag { flag: name });
        }
        flags |= bits;
    }
    if notify.is_some() {
        flags |= sys::seccomp::FLAG_NEW_LISTENER;
        // TSYNC and NEW_LISTENER both want the return value; TSYNC_ESRCH makes them compatible
        // (seccomp(2)).
        if flags & FLAG_TSYNC != 0 {
            flags |= sys::seccomp::FLAG_TSYNC_ESRCH;
        }
    }

    let default_action = to_scmp_action(default, profile.default_errno_ret());
    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Create {
            action: action_name(default).to_owned(),
            source,
        })?;
    for arch in profile.architectures().as_deref().unwrap_or(&[]) {
        let (token, name) = scmp_arch(*arch);
        if token == ScmpArch::Native {
            continue;
        }
        // The native architecture is already in a new context; adding it again is EEXIST.
        if ctx.is_arch_present(token).unwrap_or(false) {
            continue;
        }
        ctx.add_arch(token)
            .map_err(|source| SeccompError::AddArch {
                arch: name.to_owned(),
                source,
            })?;
    }

    let key = cache.and_then(|dir| Some((dir, cache_key(profile)?)));
    if let Some(hit) = key.as_ref().and_then(|(dir, key)| cache_read(dir, key)) {
        return Ok(SeccompProgram {
            bpf: hit.bpf,
            flags,
            notify: notify.is_some(),
            listener_path: profile.listener_path().clone(),
            listener_metadata: profile.listener_metadata().clone(),
            skipped_syscalls: hit.skipped,
        });
    }

    let mut skipped = Vec::new();
    for rule in syscalls {
        let action = to_scmp_action(rule.action(), rule.errno_ret());
        if action == default_action {
            continue;
        }
        for name in rule.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                skipped.push(name.clone());
                continue;
            };
            add_rule(&mut ctx, nr, name, rule, action)?;
        }
    }

    let mut bpf = export(&ctx)?;
    if default != LinuxSeccompAction::ScmpActAllow && default != LinuxSeccompAction::ScmpActLog {
        let arches: Vec<ScmpArch> = std::iter::once(ScmpArch::native())
            .chain(
                profile
                    .architectures()
                    .iter()
                    .flatten()
                    .map(|a| scmp_arch(*a).0),
            )
            .collect();
        let names = syscalls.iter().flat_map(|r| r.names().iter());
        bpf = enosys_stub(&last_syscalls(&arches, names))
            .into_iter()
            .chain(bpf)
            .collect();
    }
    if let Some((dir, key)) = &key {
        cache_write(
            dir,
            key,
            &CachedFilter {
                bpf: bpf.clone(),
                skipped: skipped.clone(),
            },
        );
    }
    Ok(SeccompProgram {
        bpf,
        flags,
        notify: notify.is_some(),
        listener_path: profile.listener_path().clone(),
        listener_metadata: profile.listener_metadata().clone(),
        skipped_syscalls: skipped,
    })
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    nr: ScmpSyscall,
    name: &str,
    rule: &LinuxSyscall,
    action: ScmpAction,
) -> Result<(), SeccompError> {
    let add_err = |source| SeccompError::AddRule {
        syscall: name.to_owned(),
        action: action_name(rule.action()).to_owned(),
        source,
    };
    let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return ctx.add_rule(action, nr).map(drop).map_err(add_err);
    }
    let conditions = args
        .iter()
        .map(|a| to_condition(name, a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = [0u8; 6];
    for a in args {
        seen[a.index()] += 1;
    }
    if seen.iter().any(|&n| n > 1) {
        // libseccomp cannot AND two comparisons of one argument: one rule per condition (OR),
        // which is what runc does.
        for c in conditions {
            ctx.add_rule_conditional(action, nr, &[c])
                .map_err(add_err)?;
        }
        Ok(())
    } else {
        ctx.add_rule_conditional(action, nr, &conditions)
            .map(drop)
            .map_err(add_err)
    }
}

// ---------------------------------------------------------------------------------------------
// ENOSYS for syscalls newer than the profile (runc's libcontainer/seccomp/patchbpf).
//
// A syscall the profile has never heard of would get the default action, usually EPERM. For a
// syscall newer than everything in the profile, ENOSYS is the right answer: libc then falls back
// to the older call (as with clone3 and faccessat2 on older profiles), where EPERM makes programs
// fail. A short stub in front of libseccomp's program returns ENOSYS when the syscall number is
// above the highest one the profile names, per architecture.

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `__X32_SYSCALL_BIT`: x32 syscalls arrive with the x86_64 audit arch and this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The highest syscall number among `names` for each architecture: (audit arch, x32?, max).
fn last_syscalls<'a>(
    arches: &[ScmpArch],
    names: impl Iterator<Item = &'a String> + Clone,
) -> Vec<(u32, bool, u32)> {
    let mut out: Vec<(u32, bool, u32)> = Vec::new();
    for arch in arches {
        let (audit, x32) = match arch {
            ScmpArch::X32 => (AUDIT_ARCH_X86_64, true),
            other => {
                let Some((oci, _, _)) = ALL_ARCHES.iter().find(|(_, s, _)| s == other) else {
                    continue;
                };
                (*oci as u32, false)
            }
        };
        if out.iter().any(|(a, x, _)| *a == audit && *x == x32) {
            continue;
        }
        let max = names
            .clone()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, *arch).ok())
            .map(i32::from)
            .filter(|nr| *nr >= 0)
            .max();
        if let Some(max) = max {
            out.push((audit, x32, max as u32));
        }
    }
    out
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&code.to_ne_bytes());
    b[2] = jt;
    b[3] = jf;
    b[4..8].copy_from_slice(&k.to_ne_bytes());
    b
}

/// Classic BPF opcodes (`<linux/filter.h>`).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_JMP_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `.arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// A jump target in the stub, resolved once the layout is known.
#[derive(Clone, Copy)]
enum Target {
    /// The next instruction (offset 0).
    Fall,
    /// Skip one instruction.
    SkipOne,
    /// The next architecture's block (or END after the last one).
    NextArch,
    /// The `ja` over the ENOSYS return, into libseccomp's program.
    End,
    /// The `ret ERRNO(ENOSYS)`.
    Enosys,
}

enum Op {
    Load(u32),
    Jeq(u32, Target, Target),
    Jgt(u32, Target, Target),
    Jset(u32, Target, Target),
    JumpToEnd,
}

/// The stub: per architecture, `nr > max` goes to a final `ret ERRNO(ENOSYS)`; everything else
/// jumps past it into libseccomp's program, which reloads what it needs.
///
/// ```text
/// ld [arch]; jeq AUDIT, 0, NEXT; ld [nr]; jgt MAX, ENOSYS, END                 (other arches)
/// ld [arch]; jeq X86_64, 0, NEXT; ld [nr]; jset X32_BIT, +1, 0;
///            jgt MAX64, ENOSYS, END; jgt MAXX32, ENOSYS, END                    (x86_64 + x32)
/// END: ja +1; ENOSYS: ret ERRNO|ENOSYS; <libseccomp program>
/// ```
fn enosys_stub(last: &[(u32, bool, u32)]) -> Vec<u8> {
    let mut audits: Vec<u32> = Vec::new();
    for (a, _, _) in last {
        if !audits.contains(a) {
            audits.push(*a);
        }
    }
    if audits.is_empty() {
        return Vec::new();
    }
    let max_of = |audit: u32, x32: bool| {
        last.iter()
            .find(|(a, x, _)| *a == audit && *x == x32)
            .map(|l| l.2)
    };
    let bound = |max: Option<u32>| match max {
        Some(m) => Op::Jgt(m, Target::Enosys, Target::End),
        None => Op::JumpToEnd,
    };
    let mut blocks: Vec<Vec<Op>> = Vec::new();
    for audit in audits {
        let mut b = vec![
            Op::Load(DATA_ARCH),
            Op::Jeq(audit, Target::Fall, Target::NextArch),
            Op::Load(DATA_NR),
        ];
        if audit == AUDIT_ARCH_X86_64 {
            b.push(Op::Jset(X32_SYSCALL_BIT, Target::SkipOne, Target::Fall));
            b.push(bound(max_of(audit, false)));
            b.push(bound(max_of(audit, true)));
        } else {
            b.push(bound(max_of(audit, false)));
        }
        blocks.push(b);
    }
    let end_at = blocks.iter().map(Vec::len).sum::<usize>();
    let enosys_at = end_at + 1;
    let mut out = Vec::with_capacity((end_at + 2) * 8);
    let mut pos = 0usize;
    let count = blocks.len();
    for (i, block) in blocks.into_iter().enumerate() {
        let next_at = if i + 1 < count {
            pos + block.len()
        } else {
            end_at
        };
        for op in block {
            // Classic BPF jumps are relative to the next instruction and only go forward.
            let off = |t: Target| -> u8 {
                let to = match t {
                    Target::Fall => return 0,
                    Target::SkipOne => return 1,
                    Target::NextArch => next_at,
                    Target::End => end_at,
                    Target::Enosys => enosys_at,
                };
                (to - pos - 1) as u8
            };
            let i = match op {
                Op::Load(k) => insn(BPF_LD_W_ABS, 0, 0, k),
                Op::Jeq(k, t, f) => insn(BPF_JMP_JEQ_K, off(t), off(f), k),
                Op::Jgt(k, t, f) => insn(BPF_JMP_JGT_K, off(t), off(f), k),
                Op::Jset(k, t, f) => insn(BPF_JMP_JSET_K, off(t), off(f), k),
                Op::JumpToEnd => insn(BPF_JMP_JA, 0, 0, (end_at - pos - 1) as u32),
            };
            out.extend_from_slice(&i);
            pos += 1;
        }
    }
    out.extend_from_slice(&insn(BPF_JMP_JA, 0, 0, 1));
    out.extend_from_slice(&insn(BPF_RET_K, 0, 0, 0x0005_0000 | libc::ENOSYS as u32));
    out
}

fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    // seccomp_export_bpf_mem needs libseccomp 2.6; Debian 12 ships 2.5.4, so export into a
    // memfd and read it back.
    let io = |source| SeccompError::ExportBuffer { source };
    let fd =
        nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| io(std::io::Error::from(e)))?;
    ctx.export_bpf(fd.as_fd())
        .map_err(|source| SeccompError::Export { source })?;
    let mut file = std::fs::File::from(fd);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut bpf = Vec::new();
    file.read_to_end(&mut bpf).map_err(io)?;
    Ok(bpf)
}

// ---------------------------------------------------------------------------------------------
// The compiled-program cache.
//
// Building the default profile with libseccomp costs about 13 ms (991 instructions for
// x86_64 + x86 + x32) on every `create`, more than the rest of the runtime's own work; a cache
// hit costs a SHA-256 of the profile and one small file read. See docs/security.md.

static CACHE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Bumped whenever the compilation rules above change, so stale programs are never reused.
const CACHE_FORMAT: &str = "berth-seccomp-cache-v2";

/// Enables the on-disk cache of compiled programs in `dir` (e.g. `<runtime root>/seccomp-cache`;
/// created 0700 on first use). Without this call nothing is cached. The first call wins.
pub fn use_cache_dir(dir: impl Into<PathBuf>) {
    let _ = CACHE_DIR.set(dir.into());
}

struct CachedFilter {
    bpf: Vec<u8>,
    skipped: Vec<String>,
}

/// The cache key: SHA-256 over everything the compiled bytes depend on: the profile, the
/// kernel release (which syscalls and actions exist), the libseccomp version and the target.
fn cache_key(profile: &LinuxSeccomp) -> Option<String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(profile).ok()?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        CACHE_FORMAT.as_bytes(),
        std::env::consts::ARCH.as_bytes(),
        release.trim().as_bytes(),
        version.as_bytes(),
        &json,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn cache_read(dir: &Path, key: &str) -> Option<CachedFilter> {
    // Format: one JSON line with the skipped syscall names, then the raw program.
    let data = std::fs::read(dir.join(format!("{key}.bpf"))).ok()?;
    let newline = data.iter().position(|b| *b == b'\n')?;
    let skipped: Vec<String> = serde_json::from_slice(&data[..newline]).ok()?;
    let bpf = data[newline + 1..].to_vec();
    (!bpf.is_empty() && bpf.len().is_multiple_of(sys::seccomp::BPF_INSN_LEN))
        .then_some(CachedFilter { bpf, skipped })
}

/// Best effort: a cache that cannot be written only costs the next start a compilation.
fn cache_write(dir: &Path, key: &str, entry: &CachedFilter) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    let Ok(mut data) = serde_json::to_vec(&entry.skipped) else {
        return;
    };
    data.push(b'\n');
    data.extend_from_slice(&entry.bpf);
    // Written under a unique name and renamed, so a concurrent reader sees all or nothing.
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &data));
    if written.is_err() || std::fs::rename(&tmp, dir.join(format!("{key}.bpf"))).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Loads `program` on the calling thread. Returns the notify fd when the program has
/// `SCMP_ACT_NOTIFY` rules.
pub(crate) fn load(
    program: &SeccompProgram,
) -> Result<Option<std::os::fd::OwnedFd>, nix::errno::Errno> {
    sys::seccomp::load_filter(&program.bpf, program.flags)
}

// ---------------------------------------------------------------------------------------------
// The default profile (moby's format).

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MobyProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    /// The OCI form: architectures as given.
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<MobyArchMap>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<MobySyscall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MobyArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MobySyscall {
    #[serde(default)]
    names: Vec<String>,
    /// moby's deprecated single-name form.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: MobyFilter,
    #[serde(default)]
    excludes: MobyFilter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MobyFilter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The Go architecture name moby's profiles use for the build target.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips64" => "mips64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The libseccomp token of the build target.
fn native_arch() -> Option<Arch> {
    Some(match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "x86" => Arch::ScmpArchX86,
        "aarch64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "powerpc64" if cfg!(target_endian = "little") => Arch::ScmpArchPpc64le,
        "powerpc64" => Arch::ScmpArchPpc64,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "mips64" if cfg!(target_endian = "little") => Arch::ScmpArchMipsel64,
        "mips64" => Arch::ScmpArchMips64,
        "loongarch64" => Arch::ScmpArchLoongarch64,
        _ => return None,
    })
}

/// Parses a kernel release such as `6.18.44-fc-v669` or a `minKernel` such as `4.8` into
/// (major, minor).
fn kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn running_kernel() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    kernel_version(release.trim())
}

/// Docker's default seccomp profile (equivalent in effect to moby's `default.json`) resolved for
/// a container whose bounding set is `caps`: rules guarded by capabilities are kept or dropped,
/// as `docker run --cap-add` does, for the build architecture and the running kernel.
pub fn default_seccomp_for_caps<S: AsRef<str>>(caps: &[S]) -> Result<LinuxSeccomp, SeccompError> {
    let profile: MobyProfile = serde_json::from_str(DEFAULT_PROFILE_JSON)
        .map_err(|source| SeccompError::DefaultProfile { source })?;
    let mut have = Vec::new();
    for c in caps {
        let n = super::caps::cap_number(c.as_ref())?;
        have.push(super::caps::KNOWN_CAPABILITIES[n as usize]);
    }
    resolve_moby(profile, &have, go_arch(), native_arch(), running_kernel())
}

/// A seccomp profile in moby's format (the file of `docker run --security-opt seccomp=FILE`,
/// which the OCI `linux.seccomp` form is a subset of) resolved for a container whose bounding
/// set is `caps`, for the build architecture and the running kernel, as moby's
/// `profiles/seccomp/seccomp_linux.go` `setupSeccomp` does.
pub fn profile_for_caps<S: AsRef<str>>(
    json: &str,
    caps: &[S],
) -> Result<LinuxSeccomp, SeccompError> {
    let profile: MobyProfile =
        serde_json::from_str(json).map_err(|source| SeccompError::Profile { source })?;
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(SeccompError::ArchitecturesAndArchMap);
    }
    let mut have = Vec::new();
    for c in caps {
        let n = super::caps::cap_number(c.as_ref())?;
        have.push(super::caps::KNOWN_CAPABILITIES[n as usize]);
    }
    resolve_moby(profile, &have, go_arch(), native_arch(), running_kernel())
}

fn resolve_moby(
    profile: MobyProfile,
    caps: &[&str],
    arch: &str,
    native: Option<Arch>,
    kernel: Option<(u32, u32)>,
) -> Result<LinuxSeccomp, SeccompError> {
    let has_cap = |c: &String| {
        super::caps::cap_number(c)
            .ok()
            .and_then(super::caps::cap_name)
            .is_some_and(|name| caps.contains(&name))
    };
    let kernel_at_least = |min: &str| match (kernel, kernel_version(min)) {
        (Some(k), Some(m)) => k >= m,
        // An unknown running kernel is assumed new: Berth targets current kernels.
        (None, _) => true,
        (_, None) => false,
    };
    let mut syscalls = Vec::new();
    for call in profile.syscalls {
        // moby's seccomp_linux.go: excludes first, then includes, each all-or-nothing.
        if call.excludes.arches.iter().any(|a| a == arch)
            || call.excludes.caps.iter().any(has_cap)
            || call
                .excludes
                .min_kernel
                .as_deref()
                .is_some_and(kernel_at_least)
        {
            continue;
        }
        if (!call.includes.arches.is_empty() && !call.includes.arches.iter().any(|a| a == arch))
            || !call.includes.caps.iter().all(has_cap)
            || call
                .includes
                .min_kernel
                .as_deref()
                .is_some_and(|m| !kernel_at_least(m))
        {
            continue;
        }
        let mut s = LinuxSyscall::default();
        let mut names = call.names;
        names.extend(call.name);
        s.set_names(names);
        s.set_action(call.action);
        s.set_errno_ret(call.errno_ret);
        s.set_args(call.args);
        syscalls.push(s);
    }
    let mut architectures = profile.architectures;
    if let Some(native) = native {
        if let Some(m) = profile.arch_map.iter().find(|m| m.architecture == native) {
            architectures.push(m.architecture);
            architectures.extend(m.sub_architectures.iter().flatten().copied());
        }
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures((!architectures.is_empty()).then_some(architectures));
    out.set_syscalls(Some(syscalls));
    out.set_flags(profile.flags);
    out.set_listener_path(profile.listener_path);
    out.set_listener_metadata(profile.listener_metadata);
    Ok(out)
}

/// Hands the seccomp notify fd to the agent listening on `listener_path`, with the OCI
/// `containerProcessState` (runtime-spec config-linux.md, "Seccomp": ociVersion, fds
/// `["seccompFd"]`, pid, metadata, state). `state_json` is the container's OCI state
/// (`berth-runc state` output); its `pid` is the container process's pid.
pub fn send_to_listener(
    listener_path: &Path,
    listener_metadata: Option<&str>,
    notify_fd: BorrowedFd<'_>,
    state_json: &str,
) -> Result<(), ListenerError> {
    let state: serde_json::Value =
        serde_json::from_str(state_json).map_err(|source| ListenerError::State { source })?;
    let msg = serde_json::json!({
        "ociVersion": state.get("ociVersion").cloned().unwrap_or_else(|| "1.2.0".into()),
        "fds": ["seccompFd"],
        "pid": state.get("pid").cloned().unwrap_or(0.into()),
        "metadata": listener_metadata.unwrap_or(""),
        "state": state,
    });
    let stream = std::os::unix::net::UnixStream::connect(listener_path).map_err(|source| {
        ListenerError::Connect {
            path: listener_path.to_owned(),
            source,
        }
    })?;
    sys::socket::send(stream.as_fd(), msg.to_string().as_bytes(), Some(notify_fd)).map_err(
        |source| ListenerError::Send {
            path: listener_path.to_owned(),
            source,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscallBuilder {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .action(action)
    }

    fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .unwrap()
    }

    fn profile(default: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(default)
            .syscalls(syscalls)
            .build()
            .unwrap()
    }

    #[test]
    fn every_action_compiles() {
        for action in ALL_ACTIONS {
            if action == LinuxSeccompAction::ScmpActNotify || !action_supported(action) {
                continue;
            }
            let p = profile(
                LinuxSeccompAction::ScmpActAllow,
                vec![rule(&["getcwd"], action).errno_ret(13u32).build().unwrap()],
            );
            let prog = compile(&p).unwrap_or_else(|e| panic!("{}: {e}", action_name(action)));
            assert!(prog.instructions() > 0);
            assert!(!prog.notify);
        }
    }

    #[test]
    fn errno_ret_changes_the_program() {
        let with = |errno: u32| {
            compile(&profile(
                LinuxSeccompAction::ScmpActAllow,
                vec![rule(&["getcwd"], LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(errno)
                    .build()
                    .unwrap()],
            ))
            .unwrap()
        };
        assert_ne!(with(1).bpf, with(38).bpf);
        // SECCOMP_RET_ERRNO | 38 appears as an immediate in the program.
        let ret = (0x0005_0000u32 | 38).to_ne_bytes();
        assert!(with(38).bpf.chunks_exact(8).any(|i| i[4..8] == ret));
    }

    #[test]
    fn every_operator_compiles() {
        use LinuxSeccompOperator::*;
        for op in [
            ScmpCmpNe,
            ScmpCmpLt,
            ScmpCmpLe,
            ScmpCmpEq,
            ScmpCmpGe,
            ScmpCmpGt,
            ScmpCmpMaskedEq,
        ] {
            let p = profile(
                LinuxSeccompAction::ScmpActAllow,
                vec![rule(&["personality"], LinuxSeccompAction::ScmpActErrno)
                    .args(vec![arg(0, 8, op)])
                    .build()
                    .unwrap()],
            );
            compile(&p).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
    }

    #[test]
    fn two_conditions_on_one_argument_become_two_rules() {
        use LinuxSeccompOperator::*;
        let one = compile(&profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![rule(&["personality"], LinuxSeccompAction::ScmpActErrno)
                .args(vec![arg(0, 8, ScmpCmpEq)])
                .build()
                .unwrap()],
        ))
        .unwrap();
        let two = compile(&profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![rule(&["personality"], LinuxSeccompAction::ScmpActErrno)
                .args(vec![arg(0, 8, ScmpCmpEq), arg(0, 0, ScmpCmpEq)])
                .build()
                .unwrap()],
        ))
        .unwrap();
        assert!(two.instructions() > one.instructions());
    }

    #[test]
    fn argument_index_out_of_range_is_refused() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![rule(&["read"], LinuxSeccompAction::ScmpActErrno)
                .args(vec![arg(6, 0, LinuxSeccompOperator::ScmpCmpEq)])
                .build()
                .unwrap()],
        );
        let err = compile(&p).unwrap_err();
        assert!(
            matches!(err, SeccompError::ArgIndex { index: 6, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_syscalls_are_skipped() {
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![rule(
                &["read", "no_such_syscall_2077"],
                LinuxSeccompAction::ScmpActAllow,
            )
            .build()
            .unwrap()],
        );
        let prog = compile(&p).unwrap();
        assert_eq!(
            prog.skipped_syscalls,
            vec!["no_such_syscall_2077".to_string()]
        );
    }

    #[test]
    fn architectures_add_to_the_program() {
        let base = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![rule(&["read"], LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap()],
        );
        let native = compile(&base).unwrap();
        let mut multi = base.clone();
        multi.set_architectures(Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ]));
        let multi = compile(&multi).unwrap();
        assert!(multi.instructions() > native.instructions());
    }

    #[test]
    fn notify_needs_a_listener_and_cannot_be_default() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![rule(&["mkdir"], LinuxSeccompAction::ScmpActNotify)
                .build()
                .unwrap()],
        );
        assert!(matches!(
            compile(&p),
            Err(SeccompError::NotifyWithoutListener { .. })
        ));
        let mut missing = p.clone();
        missing.set_listener_path(Some("/nonexistent/berth-agent.sock".into()));
        let err = compile(&missing).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/berth-agent.sock"),
            "{err}"
        );
        let d = profile(LinuxSeccompAction::ScmpActNotify, vec![]);
        assert!(matches!(compile(&d), Err(SeccompError::NotifyAsDefault)));
    }

    #[test]
    fn bad_action_is_refused_by_name() {
        // Actions are an enum: an unknown one fails when config.json is parsed, naming it.
        let json = r#"{"defaultAction":"SCMP_ACT_EXPLODE"}"#;
        let err = serde_json::from_str::<LinuxSeccomp>(json).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_EXPLODE"), "{err}");
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#;
        let err = serde_json::from_str::<LinuxSeccomp>(json).unwrap_err();
        assert!(err.to_string().contains("SCMP_ARCH_Z80"), "{err}");
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ALMOST"}]}]}"#;
        let err = serde_json::from_str::<LinuxSeccomp>(json).unwrap_err();
        assert!(err.to_string().contains("SCMP_CMP_ALMOST"), "{err}");
    }

    #[test]
    fn wait_killable_without_notify_is_refused() {
        let mut p = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        p.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        ]));
        assert!(matches!(
            compile(&p),
            Err(SeccompError::WaitKillableWithoutNotify)
        ));
    }

    #[test]
    fn flags_are_passed_to_the_load() {
        let mut p = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        p.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        ]));
        let prog = compile(&p).unwrap();
        assert_eq!(prog.flags, FLAG_LOG | FLAG_SPEC_ALLOW);
    }

    fn names_of(p: &LinuxSeccomp) -> Vec<(String, LinuxSeccompAction, bool)> {
        p.syscalls()
            .iter()
            .flatten()
            .flat_map(|s| {
                s.names()
                    .iter()
                    .map(|n| (n.clone(), s.action(), s.args().is_some()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn unconditional(p: &LinuxSeccomp, name: &str) -> bool {
        names_of(p)
            .iter()
            .any(|(n, a, args)| n == name && *a == LinuxSeccompAction::ScmpActAllow && !args)
    }

    #[test]
    fn default_profile_follows_capabilities() {
        let docker =
            default_seccomp_for_caps(&super::super::caps::DOCKER_DEFAULT_CAPABILITIES).unwrap();
        assert_eq!(docker.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(docker.default_errno_ret(), Some(1));
        for blocked in [
            "mount",
            "unshare",
            "keyctl",
            "clock_settime",
            "setns",
            "bpf",
            "reboot",
        ] {
            assert!(
                !unconditional(&docker, blocked),
                "{blocked} allowed by default"
            );
        }
        for allowed in [
            "read",
            "execve",
            "chdir",
            "chroot",
            "ptrace",
            "setresuid",
            "capset",
        ] {
            assert!(
                unconditional(&docker, allowed),
                "{allowed} not allowed by default"
            );
        }
        // clone only without namespace flags; clone3 answers ENOSYS so libc falls back to clone.
        let clone3 = docker
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(38));
        assert!(!unconditional(&docker, "clone"));

        let admin = default_seccomp_for_caps(&["CAP_SYS_ADMIN", "CAP_SYS_TIME"]).unwrap();
        for allowed in [
            "mount",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "clock_settime",
        ] {
            assert!(
                unconditional(&admin, allowed),
                "{allowed} not allowed with caps"
            );
        }
        assert!(!unconditional(&admin, "keyctl"));
        assert!(default_seccomp_for_caps(&["CAP_NOPE"]).is_err());
    }

    #[test]
    fn moby_rules_follow_arch_and_kernel() {
        let parse = || serde_json::from_str::<MobyProfile>(DEFAULT_PROFILE_JSON).unwrap();
        let old = resolve_moby(
            parse(),
            &[],
            "amd64",
            Some(Arch::ScmpArchX86_64),
            Some((4, 4)),
        )
        .unwrap();
        assert!(
            !unconditional(&old, "ptrace"),
            "ptrace before 4.8 bypassed seccomp"
        );
        let s390 = resolve_moby(
            parse(),
            &[],
            "s390x",
            Some(Arch::ScmpArchS390x),
            Some((6, 1)),
        )
        .unwrap();
        assert!(unconditional(&s390, "s390_runtime_instr"));
        assert!(!unconditional(&s390, "arch_prctl"));
        assert_eq!(
            s390.architectures().clone().unwrap(),
            vec![Arch::ScmpArchS390x, Arch::ScmpArchS390]
        );
    }

    #[test]
    fn default_profile_compiles_for_docker_caps() {
        let p = default_seccomp_for_caps(&super::super::caps::DOCKER_DEFAULT_CAPABILITIES).unwrap();
        let start = std::time::Instant::now();
        let prog = compile(&p).unwrap();
        // Printed for docs/security.md (compile cost of the default profile); not asserted.
        eprintln!(
            "default profile: {} instructions, compiled in {:?}",
            prog.instructions(),
            start.elapsed()
        );
        assert!(prog.instructions() > 300);
        assert_eq!(prog.flags, 0);
        let dir = tempfile::tempdir().unwrap();
        compile_cached(&p, Some(dir.path())).unwrap();
        let start = std::time::Instant::now();
        let hit = compile_cached(&p, Some(dir.path())).unwrap();
        eprintln!("default profile: cache hit in {:?}", start.elapsed());
        assert_eq!(hit.bpf, prog.bpf);
    }

    #[test]
    fn compiled_programs_are_cached_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("seccomp-cache");
        let p = default_seccomp_for_caps(&super::super::caps::DOCKER_DEFAULT_CAPABILITIES).unwrap();
        let fresh = compile_cached(&p, Some(&cache)).unwrap();
        let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert_eq!(entries.len(), 1);
        let hit = compile_cached(&p, Some(&cache)).unwrap();
        assert_eq!(hit, fresh);
        assert_eq!(hit, compile_cached(&p, None).unwrap());
        // A different profile gets its own entry, never the first one's program.
        let mut other = p.clone();
        other.set_default_errno_ret(Some(38));
        let other = compile_cached(&other, Some(&cache)).unwrap();
        assert_ne!(other.bpf, fresh.bpf);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    }

    #[test]
    fn newer_syscalls_get_enosys_stub() {
        let p = default_seccomp_for_caps(&super::super::caps::DOCKER_DEFAULT_CAPABILITIES).unwrap();
        let arches = [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32];
        let names: Vec<String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        let last = last_syscalls(&arches, names.iter());
        // x86_64 and x32 share an audit arch; x86 has its own.
        assert_eq!(last.len(), 3, "{last:?}");
        let x64 = last
            .iter()
            .find(|l| l.0 == AUDIT_ARCH_X86_64 && !l.1)
            .unwrap();
        let x32 = last
            .iter()
            .find(|l| l.0 == AUDIT_ARCH_X86_64 && l.1)
            .unwrap();
        assert!(x64.2 >= 435, "clone3 (435) is in the profile: {x64:?}");
        assert_eq!(x32.2 & X32_SYSCALL_BIT, X32_SYSCALL_BIT);
        let stub = enosys_stub(&last);
        // 6 instructions for x86_64 (+x32), 4 for x86, then `ja +1` and `ret`.
        assert_eq!(stub.len(), (6 + 4 + 2) * 8);
        let ret = &stub[stub.len() - 8..];
        assert_eq!(u16::from_ne_bytes([ret[0], ret[1]]), BPF_RET_K);
        assert_eq!(
            u32::from_ne_bytes([ret[4], ret[5], ret[6], ret[7]]),
            0x0005_0000 | 38
        );
        // Every jump lands inside the stub (or at the program right after it).
        for (i, c) in stub.chunks_exact(8).enumerate() {
            let code = u16::from_ne_bytes([c[0], c[1]]);
            if code & 0x07 == 0x05 {
                let k = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) as usize;
                let far = if code == BPF_JMP_JA {
                    k
                } else {
                    c[2].max(c[3]) as usize
                };
                assert!(i + 1 + far <= stub.len() / 8, "insn {i} jumps out");
            }
        }
        assert!(enosys_stub(&[]).is_empty());
        // An ALLOW-by-default profile gets no stub.
        let allow = compile(&profile(LinuxSeccompAction::ScmpActAllow, vec![])).unwrap();
        let deny = compile(&profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![rule(&["read"], LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap()],
        ))
        .unwrap();
        assert_eq!(&deny.bpf[..8], &insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH));
        assert!(allow.instructions() < deny.instructions());
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("4.8"), Some((4, 8)));
        assert_eq!(kernel_version("5"), Some((5, 0)));
        assert_eq!(kernel_version("x"), None);
    }

    #[test]
    fn profile_file_accepts_dockers_and_the_oci_form() {
        let oci = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                        {"name":"rmdir","action":"SCMP_ACT_ERRNO"}]}"#;
        let p = profile_for_caps::<&str>(oci, &[]).unwrap();
        assert_eq!(
            p.architectures().as_ref().unwrap(),
            &vec![Arch::ScmpArchX86_64]
        );
        let names: Vec<String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        assert_eq!(names, vec!["mkdir", "rmdir"]);
        let guarded = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
        let without = profile_for_caps::<&str>(guarded, &[]).unwrap();
        assert!(without.syscalls().as_ref().unwrap().is_empty());
        let with = profile_for_caps(guarded, &["CAP_SYS_ADMIN"]).unwrap();
        assert_eq!(with.syscalls().as_ref().unwrap().len(), 1);
        let both = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#;
        assert!(matches!(
            profile_for_caps::<&str>(both, &[]),
            Err(SeccompError::ArchitecturesAndArchMap)
        ));
        assert!(matches!(
            profile_for_caps::<&str>("{}", &[]),
            Err(SeccompError::Profile { .. })
        ));
    }
}
