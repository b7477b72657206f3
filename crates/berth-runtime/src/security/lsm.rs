//! AppArmor and SELinux: availability checks for `plan`, and the exec labels `finalize` writes.
//!
//! Labels are written through [`crate::procfs::ProcFs`]: `/proc` is opened and checked with
//! `fstatfs` (PROC_SUPER_MAGIC), and the attribute file is opened beneath it with
//! `RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV | RESOLVE_BENEATH` and checked again. A volume
//! mounted over `/proc` (CVE-2019-16884) or a racing bind mount over `attr/exec`
//! (CVE-2025-52881) makes the write fail instead of landing in a plain file, which would leave
//! the container unconfined.
//!
//! `thread-self` rather than `self`: the kernel only lets a task write its own attributes, and
//! `self` names the thread-group leader (proc(5), "/proc/pid/attr").

use std::path::Path;

use nix::errno::Errno;

use crate::procfs::{ProcFs, ProcfsError};

/// Whether AppArmor is the active LSM with its securityfs interface, as runc decides it
/// (`libcontainer/apparmor/apparmor_linux.go`).
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// Whether `profile` is loaded, from `/sys/kernel/security/apparmor/profiles` (lines
/// `name (mode)`). `None` when the list cannot be read (then the kernel decides at exec time).
pub fn apparmor_profile_loaded(profile: &str) -> Option<bool> {
    if profile == "unconfined" {
        return Some(true);
    }
    let list = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").ok()?;
    Some(list.lines().any(|line| {
        let name = line.rsplit_once(" (").map_or(line, |(name, _)| name);
        name == profile
    }))
}

/// Whether SELinux is enabled: selinuxfs is mounted at its standard place.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Which LSM an exec label is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lsm {
    AppArmor,
    SeLinux,
}

impl std::fmt::Display for Lsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lsm::AppArmor => "apparmor",
            Lsm::SeLinux => "selinux",
        })
    }
}

/// Sets the label the next `execve` of this thread switches to.
pub(crate) fn set_exec_label(lsm: Lsm, label: &str) -> Result<(), ProcfsError> {
    let proc = ProcFs::host()?;
    match lsm {
        Lsm::AppArmor => {
            // AppArmor's own directory (Linux 5.8+) first, so a stacked LSM owning the legacy
            // `attr/exec` cannot take the write; the legacy file on older kernels.
            let value = format!("exec {label}");
            match proc.write("thread-self/attr/apparmor/exec", &value) {
                Err(ProcfsError::Open {
                    source: Errno::ENOENT,
                    ..
                }) => proc.write("thread-self/attr/exec", &value),
                other => other,
            }
        }
        Lsm::SeLinux => proc.write("thread-self/attr/exec", label),
    }
}
