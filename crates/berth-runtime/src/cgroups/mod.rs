//! cgroups: detect the host's layout (v1, v2, hybrid), create a container's cgroup, apply
//! `linux.resources`, move processes in, freeze/thaw, read stats, kill everything inside and
//! remove what we created.
//!
//! OWNER: cgroups work area. The public surface below is what the rest of the runtime calls;
//! keep these signatures (add to them freely).

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Errors from cgroup operations. Each variant names the file or setting involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// systemd-style `slice:prefix:name` paths need a systemd driver.
    #[error("cgroupsPath {0:?} is systemd-style (slice:prefix:name); the systemd cgroup driver is not supported yet")]
    SystemdPath(String),
    /// Placeholder until the module is written.
    #[error("cgroups: {0}")]
    Unimplemented(&'static str),
}

/// A container's cgroup as resolved on this host. Serializable: it is stored in the
/// container's state so later commands (`delete`, `ps`, `pause`, `update`) find it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    /// The cgroup path inside each hierarchy, e.g. `/berth-test/abc`.
    pub path: String,
    /// Absolute directories this cgroup occupies (one per v1 controller, or the v2 one).
    pub dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Resolves `linux.cgroupsPath` (absolute, relative to the caller's cgroup, or empty meaning
    /// the container id relative to the caller's cgroup, as runc does) on this host.
    pub fn resolve(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        let _ = (cgroups_path, container_id);
        Err(CgroupError::Unimplemented("resolve"))
    }

    /// Creates the directories (recording which ones this call created) and applies `resources`.
    pub fn create(&mut self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let _ = resources;
        Err(CgroupError::Unimplemented("create"))
    }

    /// Moves `pid` into the cgroup (every hierarchy).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let _ = pid;
        Err(CgroupError::Unimplemented("add_pid"))
    }

    /// Pids currently in the cgroup (from `cgroup.procs`).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Err(CgroupError::Unimplemented("pids"))
    }

    /// Kills every process in the cgroup and removes the directories this cgroup created.
    /// Idempotent: "already gone" is success.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unimplemented("destroy"))
    }
}
