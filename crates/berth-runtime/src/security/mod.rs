//! The container process's privileges: user switch with capabilities kept, the five capability
//! sets, no_new_privs, AppArmor and SELinux labels, seccomp.
//!
//! OWNER: security work area. [`plan`] runs in the parent (it compiles seccomp and resolves
//! capability names, so bad input fails before anything is created); [`finalize`] runs in the
//! init (and in an `exec`'d process) as the last step before `execve`.

use std::os::fd::OwnedFd;

use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

/// Errors from planning or applying process security.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Placeholder until the module is written.
    #[error("security: {0}")]
    Unimplemented(&'static str),
}

/// Security settings resolved before cloning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityPlan {}

/// Resolves `process` (user, capabilities, apparmor, selinux, noNewPrivileges) and
/// `linux.seccomp` into a plan.
pub fn plan(
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<SecurityPlan, SecurityError> {
    let _ = (process, seccomp);
    Err(SecurityError::Unimplemented("plan"))
}

/// In the init: LSM exec labels, keep-caps user switch (setgroups, setresgid, setresuid),
/// capability sets, no_new_privs, seccomp. Returns the seccomp notify fd when the profile uses
/// `SCMP_ACT_NOTIFY`.
pub fn finalize(plan: &SecurityPlan) -> Result<Option<OwnedFd>, SecurityError> {
    let _ = plan;
    Err(SecurityError::Unimplemented("finalize"))
}
