//! The container's root filesystem: the spec's mounts, `/dev`, `pivot_root` (or `MS_MOVE` +
//! `chroot`), the console, masked and read-only paths.
//!
//! OWNER: rootfs work area. [`plan`] runs in the parent and is pure; the other functions run in
//! the container's init, inside its new mount namespace, in this order:
//! [`prepare`] → (createContainer hooks) → [`pivot`] → [`setup_console`] (when `terminal`) →
//! (hostname, sysctls) → [`finalize`].

use std::path::Path;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// Errors from planning or applying the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Placeholder until the module is written.
    #[error("rootfs: {0}")]
    Unimplemented(&'static str),
}

/// Options from the command line that shape the rootfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootfsOptions {
    /// `--no-pivot`: use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
}

/// Everything the init needs to build the rootfs, computed before cloning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsPlan {}

/// Builds the plan from the spec. `bundle` is the absolute bundle directory (`root.path` is
/// relative to it).
pub fn plan(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> Result<RootfsPlan, RootfsError> {
    let _ = (spec, bundle, opts);
    Err(RootfsError::Unimplemented("plan"))
}

/// In the init, new mount namespace: propagation, rootfs bind, every mount, `/dev`.
pub fn prepare(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let _ = plan;
    Err(RootfsError::Unimplemented("prepare"))
}

/// In the init: switch root and `chdir("/")`.
pub fn pivot(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let _ = plan;
    Err(RootfsError::Unimplemented("pivot"))
}

/// In the init, after [`pivot`]: bind the pty slave (by fd) onto `/dev/console` safely.
pub fn setup_console(slave: std::os::fd::BorrowedFd<'_>) -> Result<(), RootfsError> {
    let _ = slave;
    Err(RootfsError::Unimplemented("setup_console"))
}

/// In the init, last: masked paths, read-only paths, read-only root, `rootfsPropagation`.
pub fn finalize(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let _ = plan;
    Err(RootfsError::Unimplemented("finalize"))
}
