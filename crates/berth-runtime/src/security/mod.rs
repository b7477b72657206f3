//! The container process's privileges: user switch with capabilities kept, the five capability
//! sets, no_new_privs, AppArmor and SELinux labels, personality, seccomp.
//!
//! OWNER: security work area. [`plan`] runs in the parent (it compiles seccomp and resolves
//! capability names, so bad input fails before anything is created); [`finalize`] runs in the
//! init (and in an `exec`'d process) as the last step before `execve`.
//!
//! [`finalize`] follows runc's `standard_init_linux.go` / `finalizeNamespace`:
//! 1. LSM exec labels (AppArmor, SELinux) through a verified procfs fd;
//! 2. `personality(2)`;
//! 3. seccomp, *here* when `noNewPrivileges` is false: without no_new_privs, loading a filter
//!    needs CAP_SYS_ADMIN, which the steps below drop;
//! 4. the bounding set (needs CAP_SETPCAP in the effective set, which the uid switch clears);
//! 5. `PR_SET_KEEPCAPS`, `setgroups` (unless the user namespace denies it), `setresgid`,
//!    `setresuid`, `PR_SET_KEEPCAPS` off;
//! 6. effective/permitted/inheritable in one `capset`, then the ambient set;
//! 7. umask; 8. no_new_privs; 9. seccomp when `noNewPrivileges` is true, as late as possible.
//!
//! The caller then changes to `process.cwd` (after the uid switch, so permissions apply) and
//! calls `execve`: a seccomp profile must allow `chdir` and `execve`, as with runc.

pub mod caps;
pub mod lsm;
pub mod seccomp;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxPersonalityDomain, Process, Spec};
use serde::{Deserialize, Serialize};

pub use caps::{CapSets, UnknownCapability, DOCKER_DEFAULT_CAPABILITIES, KNOWN_CAPABILITIES};
pub use seccomp::{default_seccomp_for_caps, ListenerError, SeccompError, SeccompProgram};

use crate::procfs::ProcfsError;
use crate::sys;

/// Errors from planning or applying process security. Planning errors name the offending
/// setting; applying errors name the step and the values.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A capability name is unknown.
    #[error(transparent)]
    UnknownCapability(#[from] UnknownCapability),
    /// `/proc/sys/kernel/cap_last_cap` could not be read.
    #[error("reading /proc/sys/kernel/cap_last_cap")]
    LastCap(#[source] std::io::Error),
    /// `linux.seccomp` cannot be compiled.
    #[error("linux.seccomp")]
    Seccomp(#[from] SeccompError),
    /// `process.apparmorProfile` is set but AppArmor is not active.
    #[error("process.apparmorProfile is {profile:?} but AppArmor is not enabled on this host")]
    AppArmorDisabled { profile: String },
    /// `process.apparmorProfile` names a profile the kernel does not have.
    #[error("AppArmor profile {profile:?} (process.apparmorProfile) is not loaded")]
    AppArmorProfileNotLoaded { profile: String },
    /// A SELinux label is set but SELinux is not enabled (runc refuses this too).
    #[error("{setting} is {label:?} but SELinux is not enabled on this host")]
    SelinuxDisabled {
        setting: &'static str,
        label: String,
    },
    /// `linux.personality.flags` is not supported (runc ignores them; Berth refuses them).
    #[error("linux.personality.flags {flags:?} are not supported")]
    PersonalityFlags { flags: Vec<String> },
    /// `linux.intelRdt` is set but resctrl is not mounted.
    #[error("linux.intelRdt is set but resctrl is not mounted at /sys/fs/resctrl")]
    IntelRdtUnavailable,
    /// `linux.intelRdt` is set; Berth does not implement resctrl groups.
    #[error("linux.intelRdt is not supported by berth")]
    IntelRdtUnsupported,
    /// Writing an LSM exec label failed.
    #[error("setting the {lsm} exec label {label:?}")]
    ExecLabel {
        lsm: lsm::Lsm,
        label: String,
        #[source]
        source: ProcfsError,
    },
    /// `personality(2)` failed.
    #[error("setting personality {domain}")]
    Personality {
        domain: &'static str,
        #[source]
        source: Errno,
    },
    /// `prctl(PR_SET_KEEPCAPS)` failed.
    #[error("prctl(PR_SET_KEEPCAPS, {value})")]
    KeepCaps {
        value: bool,
        #[source]
        source: Errno,
    },
    /// Reading `/proc/self/setgroups` failed.
    #[error("reading /proc/self/setgroups")]
    SetgroupsPolicy(#[source] ProcfsError),
    /// The user namespace denies setgroups(2), but the spec asks for supplementary groups.
    #[error("process.user.additionalGids {gids:?} cannot be set: setgroups is denied in this user namespace")]
    SetgroupsDenied { gids: Vec<u32> },
    /// `setgroups(2)` failed.
    #[error("setting supplementary groups {gids:?} (process.user.additionalGids)")]
    SetGroups {
        gids: Vec<u32>,
        #[source]
        source: Errno,
    },
    /// `setresgid(2)` failed.
    #[error("setting gid {gid} (process.user.gid)")]
    SetGid {
        gid: u32,
        #[source]
        source: Errno,
    },
    /// `setresuid(2)` failed.
    #[error("setting uid {uid} (process.user.uid)")]
    SetUid {
        uid: u32,
        #[source]
        source: Errno,
    },
    /// Reading or dropping a bounding-set entry failed.
    #[error("dropping {cap} from the bounding set")]
    BoundingDrop {
        cap: &'static str,
        #[source]
        source: Errno,
    },
    /// `capset(2)` failed.
    #[error("setting capabilities effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}")]
    Capset {
        effective: u64,
        permitted: u64,
        inheritable: u64,
        #[source]
        source: Errno,
    },
    /// Clearing the ambient set failed.
    #[error("clearing the ambient capability set")]
    AmbientClear(#[source] Errno),
    /// Raising an ambient capability failed; it must also be permitted and inheritable.
    #[error(
        "raising ambient capability {cap} (it must also be in the permitted and inheritable sets)"
    )]
    AmbientRaise {
        cap: &'static str,
        #[source]
        source: Errno,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("setting no_new_privs")]
    NoNewPrivs(#[source] Errno),
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("loading the seccomp filter ({instructions} instructions, flags {flags:#x})")]
    SeccompLoad {
        instructions: usize,
        flags: u32,
        #[source]
        source: Errno,
    },
    /// The [`finalize_with`] callback could not deliver the notify fd.
    #[error("handing the seccomp notify fd to the runtime")]
    NotifyHandOff(#[source] std::io::Error),
    /// The notify fd could not be handed to the seccomp agent.
    #[error(transparent)]
    Listener(#[from] ListenerError),
}

/// `process.user`, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPlan {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// `process.user.umask`; runc's default 0022 when unset.
    pub umask: u32,
}

/// Security settings resolved before cloning.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecurityPlan {
    pub user: UserPlan,
    /// `None` when the spec has no `process.capabilities`: the sets are left as inherited.
    pub caps: Option<CapSets>,
    /// The running kernel's highest capability number.
    pub last_cap: u32,
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    /// `personality(2)` persona (`PER_LINUX` 0, `PER_LINUX32` 8).
    pub personality: Option<u32>,
    pub seccomp: Option<SeccompProgram>,
}

impl SecurityPlan {
    /// `exec --cap NAME`: adds capabilities to the bounding, effective and permitted sets, never
    /// to the inheritable (or ambient) set (CVE-2022-29162: runc used to put them in the
    /// inheritable set, so they survived `execve` of unprivileged programs).
    pub fn add_exec_capabilities<S: AsRef<str>>(
        &mut self,
        names: &[S],
    ) -> Result<(), SecurityError> {
        let mask = caps::mask_from_names(names, self.last_cap)?;
        let sets = self.caps.get_or_insert_with(CapSets::default);
        sets.bounding |= mask;
        sets.effective |= mask;
        sets.permitted |= mask;
        Ok(())
    }
}

/// Resolves `process` (user, capabilities, apparmor, selinux, noNewPrivileges) and
/// `linux.seccomp` into a plan.
pub fn plan(
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<SecurityPlan, SecurityError> {
    let last_cap = caps::kernel_last_cap().map_err(SecurityError::LastCap)?;
    let user = process.user();
    let caps = process
        .capabilities()
        .as_ref()
        .map(|c| caps::resolve(c, last_cap))
        .transpose()?;

    let apparmor_profile = process.apparmor_profile().clone().filter(|p| !p.is_empty());
    if let Some(profile) = &apparmor_profile {
        if !lsm::apparmor_enabled() {
            return Err(SecurityError::AppArmorDisabled {
                profile: profile.clone(),
            });
        }
        if lsm::apparmor_profile_loaded(profile) == Some(false) {
            return Err(SecurityError::AppArmorProfileNotLoaded {
                profile: profile.clone(),
            });
        }
    }
    let selinux_label = process.selinux_label().clone().filter(|l| !l.is_empty());
    if let Some(label) = &selinux_label {
        if !lsm::selinux_enabled() {
            return Err(SecurityError::SelinuxDisabled {
                setting: "process.selinuxLabel",
                label: label.clone(),
            });
        }
    }

    let seccomp = seccomp.map(seccomp::compile).transpose()?;
    Ok(SecurityPlan {
        user: UserPlan {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
        },
        caps,
        last_cap,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        apparmor_profile,
        selinux_label,
        personality: None,
        seccomp,
    })
}

/// [`plan`] for a whole spec: also `linux.personality`, `linux.mountLabel` (checked only; the
/// rootfs code applies it) and [`check_unsupported`].
pub fn plan_for_spec(spec: &Spec) -> Result<SecurityPlan, SecurityError> {
    check_unsupported(spec)?;
    let default_process = Process::default();
    let process = spec.process().as_ref().unwrap_or(&default_process);
    let linux = spec.linux().as_ref();
    let mut plan = plan(process, linux.and_then(|l| l.seccomp().as_ref()))?;
    if let Some(linux) = linux {
        if let Some(label) = linux.mount_label().as_ref().filter(|l| !l.is_empty()) {
            if !lsm::selinux_enabled() {
                return Err(SecurityError::SelinuxDisabled {
                    setting: "linux.mountLabel",
                    label: label.clone(),
                });
            }
        }
        if let Some(p) = linux.personality() {
            if let Some(flags) = p.flags().as_ref().filter(|f| !f.is_empty()) {
                return Err(SecurityError::PersonalityFlags {
                    flags: flags.clone(),
                });
            }
            plan.personality = Some(persona(p.domain()));
        }
    }
    Ok(plan)
}

fn persona(domain: LinuxPersonalityDomain) -> u32 {
    match domain {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => 8,
    }
}

fn persona_name(p: u32) -> &'static str {
    if p == 8 {
        "LINUX32"
    } else {
        "LINUX"
    }
}

/// Refuses spec settings Berth cannot honour on this host, before anything is created.
pub fn check_unsupported(spec: &Spec) -> Result<(), SecurityError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if linux.intel_rdt().is_some() {
        // resctrl shows its `info` directory only when mounted.
        if !Path::new("/sys/fs/resctrl/info").exists() {
            return Err(SecurityError::IntelRdtUnavailable);
        }
        return Err(SecurityError::IntelRdtUnsupported);
    }
    Ok(())
}

/// In the init: LSM exec labels, keep-caps user switch (setgroups, setresgid, setresuid),
/// capability sets, no_new_privs, seccomp. Returns the seccomp notify fd when the profile uses
/// `SCMP_ACT_NOTIFY`.
///
/// With `noNewPrivileges: false` the filter is loaded before the user switch, so a notify rule
/// on a syscall of the remaining steps (`setresuid`, `capset`, `umask`...) would block forever:
/// nobody holds the listener fd yet. Use [`finalize_with`] to hand the fd over as soon as it
/// exists, as runc does.
pub fn finalize(plan: &SecurityPlan) -> Result<Option<OwnedFd>, SecurityError> {
    finalize_with(plan, None)
}

/// A callback that delivers the seccomp notify fd to the agent (through the runtime's parent)
/// and returns once the agent has it.
pub type NotifyHandOff<'a> = &'a mut dyn FnMut(OwnedFd) -> std::io::Result<()>;

/// [`finalize`], but the notify fd goes to `hand_off` right after the filter is loaded (then
/// `Ok(None)` is returned); without a callback it is returned as by [`finalize`].
pub fn finalize_with(
    plan: &SecurityPlan,
    mut hand_off: Option<NotifyHandOff<'_>>,
) -> Result<Option<OwnedFd>, SecurityError> {
    // 1. LSM labels take effect at the next execve.
    if let Some(profile) = &plan.apparmor_profile {
        lsm::set_exec_label(lsm::Lsm::AppArmor, profile).map_err(|source| {
            SecurityError::ExecLabel {
                lsm: lsm::Lsm::AppArmor,
                label: profile.clone(),
                source,
            }
        })?;
    }
    if let Some(label) = &plan.selinux_label {
        lsm::set_exec_label(lsm::Lsm::SeLinux, label).map_err(|source| {
            SecurityError::ExecLabel {
                lsm: lsm::Lsm::SeLinux,
                label: label.clone(),
                source,
            }
        })?;
    }

    // 2. personality: before seccomp, since the default profile only allows a few personas.
    if let Some(p) = plan.personality {
        sys::security::set_personality(p).map_err(|source| SecurityError::Personality {
            domain: persona_name(p),
            source,
        })?;
    }

    // 3. Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: load now, while we have it.
    let mut deliver = |fd: Option<OwnedFd>| -> Result<Option<OwnedFd>, SecurityError> {
        match (fd, hand_off.as_mut()) {
            (Some(fd), Some(f)) => f(fd).map(|()| None).map_err(SecurityError::NotifyHandOff),
            (fd, _) => Ok(fd),
        }
    };
    let mut notify = None;
    if !plan.no_new_privileges {
        notify = deliver(load_seccomp(plan)?)?;
    }

    // 4. The bounding set, while CAP_SETPCAP is still effective.
    if let Some(sets) = &plan.caps {
        for n in 0..=plan.last_cap.min(63) {
            if sets.bounding & (1u64 << n) != 0 {
                continue;
            }
            let name = caps::cap_name(n).unwrap_or("CAP_UNKNOWN");
            let err = |source| SecurityError::BoundingDrop { cap: name, source };
            if sys::security::bounding_has(n).map_err(err)? {
                sys::security::bounding_drop(n).map_err(err)?;
            }
        }
    }

    // 5. The user switch, keeping the permitted set (capabilities(7), "Effect of user ID
    //    changes on capabilities").
    switch_user(plan)?;

    // 6. Effective, permitted and inheritable at once, then ambient (which needs both).
    if let Some(sets) = &plan.caps {
        let wanted = sys::security::ThreadCaps {
            effective: sets.effective,
            permitted: sets.permitted,
            inheritable: sets.inheritable,
        };
        sys::security::capset(wanted).map_err(|source| SecurityError::Capset {
            effective: sets.effective,
            permitted: sets.permitted,
            inheritable: sets.inheritable,
            source,
        })?;
        sys::security::ambient_clear_all().map_err(SecurityError::AmbientClear)?;
        // An ambient capability must also be permitted and inheritable. runc only warns when
        // it is not (its own default spec lists ambient capabilities without inheritable
        // ones), so such entries are skipped rather than failing the container.
        let raisable = sets.ambient & sets.permitted & sets.inheritable;
        for n in 0..=plan.last_cap.min(63) {
            if raisable & (1u64 << n) != 0 {
                sys::security::ambient_raise(n).map_err(|source| SecurityError::AmbientRaise {
                    cap: caps::cap_name(n).unwrap_or("CAP_UNKNOWN"),
                    source,
                })?;
            }
        }
    }

    // 7. umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.user.umask));

    // 8, 9. no_new_privs, then the filter as the very last step.
    if plan.no_new_privileges {
        sys::security::set_no_new_privs().map_err(SecurityError::NoNewPrivs)?;
        notify = deliver(load_seccomp(plan)?)?;
    }
    Ok(notify)
}

fn load_seccomp(plan: &SecurityPlan) -> Result<Option<OwnedFd>, SecurityError> {
    let Some(program) = &plan.seccomp else {
        return Ok(None);
    };
    seccomp::load(program).map_err(|source| SecurityError::SeccompLoad {
        instructions: program.instructions(),
        flags: program.flags,
        source,
    })
}

fn switch_user(plan: &SecurityPlan) -> Result<(), SecurityError> {
    let u = &plan.user;
    sys::security::set_keepcaps(true).map_err(|source| SecurityError::KeepCaps {
        value: true,
        source,
    })?;
    // In a user namespace whose setgroups is "deny" (rootless), setgroups(2) always fails; runc
    // skips it there (user_namespaces(7)). A container without /proc (or with something else
    // mounted there) cannot tell us: then setgroups is tried, and EPERM with nothing to set is
    // taken as "denied", as runc treats a missing /proc/self/setgroups.
    let denied = match crate::procfs::ProcFs::host().and_then(|p| p.read("self/setgroups")) {
        Ok(policy) => Some(policy.trim() == "deny"),
        Err(ProcfsError::NotProcfs { .. })
        | Err(ProcfsError::Open {
            source: Errno::ENOENT,
            ..
        }) => None,
        Err(e) => return Err(SecurityError::SetgroupsPolicy(e)),
    };
    if denied == Some(true) {
        // runc refuses this too rather than silently running with fewer groups.
        if !u.additional_gids.is_empty() {
            return Err(SecurityError::SetgroupsDenied {
                gids: u.additional_gids.clone(),
            });
        }
    } else {
        // Called even with an empty list: it clears the groups inherited from the runtime.
        let gids: Vec<Gid> = u
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        match nix::unistd::setgroups(&gids) {
            Ok(()) => {}
            Err(Errno::EPERM) if denied.is_none() && gids.is_empty() => {}
            Err(source) => {
                return Err(SecurityError::SetGroups {
                    gids: u.additional_gids.clone(),
                    source,
                })
            }
        }
    }
    let gid = Gid::from_raw(u.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|source| SecurityError::SetGid { gid: u.gid, source })?;
    let uid = Uid::from_raw(u.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|source| SecurityError::SetUid { uid: u.uid, source })?;
    sys::security::set_keepcaps(false).map_err(|source| SecurityError::KeepCaps {
        value: false,
        source,
    })
}

/// Hands the seccomp notify fd to the agent at `listener_path` with the OCI
/// `containerProcessState`; see [`seccomp::send_to_listener`].
pub fn send_to_listener(
    listener_path: &Path,
    listener_metadata: Option<&str>,
    notify_fd: BorrowedFd<'_>,
    state_json: &str,
) -> Result<(), SecurityError> {
    seccomp::send_to_listener(listener_path, listener_metadata, notify_fd, state_json)
        .map_err(SecurityError::from)
}

/// `{"enabled": bool}` in runc's `features` output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enabled {
    pub enabled: bool,
}

/// `linux.seccomp` of runc's `features` output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompFeatures {
    pub enabled: bool,
    pub actions: Vec<String>,
    pub operators: Vec<String>,
    pub archs: Vec<String>,
    pub known_flags: Vec<String>,
    pub supported_flags: Vec<String>,
}

/// What the running host and this build support, in the shape of runc's `features` `linux`
/// object (`capabilities`, `seccomp`, `apparmor`, `selinux`, `intelRdt`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityFeatures {
    pub capabilities: Vec<String>,
    pub seccomp: SeccompFeatures,
    pub apparmor: Enabled,
    pub selinux: Enabled,
    pub intel_rdt: Enabled,
}

/// Probes the kernel: seccomp actions and flags it implements, AppArmor and SELinux state.
pub fn features() -> SecurityFeatures {
    let seccomp_enabled = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    let actions = seccomp::ALL_ACTIONS
        .iter()
        .filter(|a| seccomp::action_supported(**a))
        .map(|a| seccomp::action_spec_name(*a).to_owned())
        .collect();
    let archs = seccomp::ALL_ARCHES
        .iter()
        .filter(|(arch, _, name)| *name != "SCMP_ARCH_NATIVE" && seccomp::arch_supported(*arch))
        .map(|(_, _, name)| (*name).to_owned())
        .collect();
    SecurityFeatures {
        capabilities: KNOWN_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        seccomp: SeccompFeatures {
            enabled: seccomp_enabled,
            actions,
            operators: seccomp::ALL_OPERATORS
                .iter()
                .map(|o| (*o).to_owned())
                .collect(),
            archs,
            known_flags: seccomp::ALL_FLAGS
                .iter()
                .map(|f| seccomp::flag_name(*f).to_owned())
                .collect(),
            supported_flags: seccomp::ALL_FLAGS
                .iter()
                .filter(|f| seccomp::flag_supported(**f))
                .map(|f| seccomp::flag_name(*f).to_owned())
                .collect(),
        },
        apparmor: Enabled {
            enabled: lsm::apparmor_enabled(),
        },
        selinux: Enabled {
            enabled: lsm::selinux_enabled(),
        },
        intel_rdt: Enabled {
            enabled: Path::new("/sys/fs/resctrl/info").exists(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_resolves_user_caps_and_nnp() {
        let process: Process = serde_json::from_str(
            r#"{"cwd":"/","user":{"uid":1000,"gid":1000,"additionalGids":[5,6]},
                "noNewPrivileges":true,
                "capabilities":{"bounding":["CAP_NET_RAW","CAP_CHOWN"],"effective":["CAP_NET_RAW"],
                                "permitted":["CAP_NET_RAW"]}}"#,
        )
        .unwrap();
        let p = plan(&process, None).unwrap();
        assert_eq!(p.user.uid, 1000);
        assert_eq!(p.user.additional_gids, vec![5, 6]);
        assert_eq!(p.user.umask, 0o022);
        assert!(p.no_new_privileges);
        let sets = p.caps.unwrap();
        assert_eq!(sets.bounding, (1 << 13) | 1);
        assert_eq!(sets.inheritable, 0);
        assert!(p.seccomp.is_none());
    }

    #[test]
    fn unknown_capability_in_config_is_refused_by_name() {
        let err = serde_json::from_str::<Process>(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_FLY"]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
    }

    #[test]
    fn exec_cap_never_reaches_inheritable() {
        // CVE-2022-29162
        let process: Process =
            serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{}}"#)
                .unwrap();
        let mut p = plan(&process, None).unwrap();
        p.add_exec_capabilities(&["CAP_NET_RAW"]).unwrap();
        let sets = p.caps.unwrap();
        assert_eq!(sets.permitted, 1 << 13);
        assert_eq!(sets.effective, 1 << 13);
        assert_eq!(sets.bounding, 1 << 13);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(sets.ambient, 0);
        assert!(p.add_exec_capabilities(&["CAP_NOPE"]).is_err());
    }

    #[test]
    fn lsm_labels_refused_when_the_lsm_is_off() {
        if !lsm::apparmor_enabled() {
            let process: Process = serde_json::from_str(
                r#"{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"berth-default"}"#,
            )
            .unwrap();
            let err = plan(&process, None).unwrap_err();
            assert!(err.to_string().contains("berth-default"), "{err}");
            assert!(err.to_string().contains("AppArmor is not enabled"), "{err}");
        }
        if !lsm::selinux_enabled() {
            let process: Process = serde_json::from_str(
                r#"{"cwd":"/","user":{"uid":0,"gid":0},"selinuxLabel":"system_u:system_r:container_t:s0"}"#,
            )
            .unwrap();
            let err = plan(&process, None).unwrap_err();
            assert!(
                matches!(err, SecurityError::SelinuxDisabled { .. }),
                "{err}"
            );
            // An empty label is fine, as in runc.
            let empty: Process =
                serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0},"selinuxLabel":""}"#)
                    .unwrap();
            plan(&empty, None).unwrap();
        }
    }

    fn spec_with_linux(linux: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.2.0","process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"args":["sh"]}},
                "root":{{"path":"rootfs"}},"linux":{linux}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn personality_and_intel_rdt() {
        let p = plan_for_spec(&spec_with_linux(r#"{"personality":{"domain":"LINUX32"}}"#)).unwrap();
        assert_eq!(p.personality, Some(8));
        let err = plan_for_spec(&spec_with_linux(
            r#"{"personality":{"domain":"LINUX","flags":["ADDR_NO_RANDOMIZE"]}}"#,
        ))
        .unwrap_err();
        assert!(matches!(err, SecurityError::PersonalityFlags { .. }));
        let rdt = spec_with_linux(r#"{"intelRdt":{"closID":"berth"}}"#);
        let err = check_unsupported(&rdt).unwrap_err();
        assert!(err.to_string().contains("linux.intelRdt"), "{err}");
    }

    #[test]
    fn unreachable_listener_is_named() {
        use std::os::fd::AsFd;
        let fd = std::fs::File::open("/dev/null").unwrap();
        let path = Path::new("/nonexistent/berth/agent.sock");
        let err = send_to_listener(path, None, fd.as_fd(), r#"{"pid":1}"#).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/berth/agent.sock"),
            "{err}"
        );
        let err = send_to_listener(path, None, fd.as_fd(), "not json").unwrap_err();
        assert!(matches!(
            err,
            SecurityError::Listener(ListenerError::State { .. })
        ));
    }

    #[test]
    fn features_are_truthful_for_this_kernel() {
        let f = features();
        eprintln!("{}", serde_json::to_string(&f).unwrap());
        assert!(f.seccomp.enabled);
        assert!(f.seccomp.actions.contains(&"SCMP_ACT_ERRNO".to_owned()));
        assert_eq!(f.seccomp.operators.len(), 7);
        assert_eq!(f.seccomp.known_flags.len(), 4);
        // Every flag reported as supported is one of the known ones.
        assert!(f
            .seccomp
            .supported_flags
            .iter()
            .all(|s| f.seccomp.known_flags.contains(s)));
        assert!(f.capabilities.contains(&"CAP_SYS_ADMIN".to_owned()));
        let json = serde_json::to_value(&f).unwrap();
        assert!(json["seccomp"]["knownFlags"].is_array());
        assert!(json["intelRdt"]["enabled"].is_boolean());
        assert_eq!(f.apparmor.enabled, lsm::apparmor_enabled());
        assert!(f.seccomp.archs.contains(&"SCMP_ARCH_X86_64".to_owned()));
        // Every architecture listed really compiles.
        for (arch, _, name) in seccomp::ALL_ARCHES {
            if f.seccomp.archs.iter().any(|a| a == name) {
                let mut p: oci_spec::runtime::LinuxSeccomp =
                    serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#)
                        .unwrap();
                p.set_architectures(Some(vec![arch]));
                seccomp::compile(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}
