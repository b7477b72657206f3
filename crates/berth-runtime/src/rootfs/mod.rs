//! The container's root filesystem: the spec's mounts, `/dev`, `pivot_root` (or `MS_MOVE` +
//! `chroot`), the console, masked and read-only paths.
//!
//! OWNER: rootfs work area. [`plan`] runs in the parent and is pure apart from reading the
//! host's cgroup layout; the other functions run in the container's init, inside its new mount
//! namespace, in this order:
//! [`prepare`] → (createContainer hooks) → [`pivot`] → [`setup_console`] (when `terminal`) →
//! (hostname, sysctls) → [`finalize`].
//!
//! Every path inside the rootfs is resolved relative to a directory fd that stands for the
//! rootfs (see [`resolve`] and `docs/decisions/0002-safe-path-resolution.md`), and every
//! mount lands on a file descriptor, never on a string path a symlink could redirect
//! (CVE-2021-30465, CVE-2024-45310, CVE-2025-52565, CVE-2025-31133).

mod dev;
mod masked;
mod mounts;
mod pivot;
mod plan;
pub mod resolve;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub use plan::{
    parse_mount_options, CgroupHierarchy, DeviceKind, DevicePlan, MountKind, MountOptions,
    MountPlan,
};

/// The step of building the rootfs that failed; shown first in the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    OpenRootfs,
    RootPropagation,
    BindRootfs,
    ResolveTarget,
    CreateTarget,
    OpenSource,
    Mount,
    Remount,
    Propagation,
    MountAttributes,
    ReadCgroups,
    Mknod,
    BindDevice,
    ChownDevice,
    Symlink,
    PivotRoot,
    MoveRoot,
    Chroot,
    Chdir,
    DetachOldRoot,
    Console,
    ReadonlyPath,
    MaskPath,
    ReadonlyRoot,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::OpenRootfs => "opening the rootfs",
            Step::RootPropagation => "setting the propagation of /",
            Step::BindRootfs => "bind-mounting the rootfs onto itself",
            Step::ResolveTarget => "resolving mount target",
            Step::CreateTarget => "creating mount target",
            Step::OpenSource => "opening mount source",
            Step::Mount => "mounting",
            Step::Remount => "remounting",
            Step::Propagation => "setting mount propagation of",
            Step::MountAttributes => "setting recursive mount attributes of",
            Step::ReadCgroups => "reading the cgroup layout from",
            Step::Mknod => "creating device node",
            Step::BindDevice => "bind-mounting host device onto",
            Step::ChownDevice => "setting owner and mode of device",
            Step::Symlink => "creating symlink",
            Step::PivotRoot => "pivot_root into",
            Step::MoveRoot => "moving the rootfs onto / from",
            Step::Chroot => "chroot into",
            Step::Chdir => "changing directory to",
            Step::DetachOldRoot => "detaching the old root",
            Step::Console => "setting up the console at",
            Step::ReadonlyPath => "making path read-only",
            Step::MaskPath => "masking path",
            Step::ReadonlyRoot => "remounting the root read-only",
        })
    }
}

/// Errors from planning or applying the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A spec field holds a value the runtime cannot use, e.g.
    /// `mounts[3].destination "foo" is not absolute`.
    #[error("{field} {value:?} {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: &'static str,
    },
    /// `root.path` does not name a usable directory.
    #[error("root.path {path}: {reason}")]
    Root {
        path: PathBuf,
        reason: &'static str,
        #[source]
        source: Option<std::io::Error>,
    },
    /// A system call of one step failed.
    #[error("{step} {path}")]
    Sys {
        step: Step,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    /// A path that must be reached without symlinks (`/proc`, `/sys`, `/dev` and below) goes
    /// through one in the rootfs (CVE-2019-19921, CVE-2023-27561, CVE-2023-28642).
    #[error("{step} {path}: the rootfs has a symlink on this path, refused")]
    Symlink { step: Step, path: PathBuf },
    /// After mounting, the target is not the filesystem just mounted: something raced the
    /// mount or is mounted over it.
    #[error("{path} is not {expected} after mounting it")]
    WrongFilesystem {
        path: PathBuf,
        expected: &'static str,
    },
    /// A mount target is a directory while the source is a file, or the reverse.
    #[error("{field}: cannot mount a {source_kind} onto {path}, which is a {target_kind}")]
    TargetKind {
        field: String,
        path: PathBuf,
        source_kind: &'static str,
        target_kind: &'static str,
    },
    /// A file that must be a given device is something else (CVE-2025-31133, CVE-2025-52565).
    #[error("{path} is not the character device {major}:{minor}")]
    NotDevice {
        path: PathBuf,
        major: u64,
        minor: u64,
    },
}

impl RootfsError {
    /// The errno behind the failure, when a system call failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RootfsError::Sys { source, .. } => Some(*source),
            RootfsError::Symlink { .. } => Some(Errno::ELOOP),
            _ => None,
        }
    }

    fn sys(step: Step, path: impl Into<PathBuf>) -> impl FnOnce(Errno) -> RootfsError {
        let path = path.into();
        move |source| {
            if source == Errno::ELOOP {
                RootfsError::Symlink { step, path }
            } else {
                RootfsError::Sys { step, path, source }
            }
        }
    }
}

/// Options from the command line that shape the rootfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootfsOptions {
    /// `--no-pivot`: use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
}

/// Everything the init needs to build the rootfs, computed before cloning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Absolute, canonical host path of the rootfs.
    pub rootfs: PathBuf,
    /// `root.readonly`.
    pub readonly: bool,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `MS_*` propagation flags for `/` while preparing (default `MS_SLAVE|MS_REC`).
    pub root_propagation: u64,
    /// `linux.rootfsPropagation`, applied to `/` again in [`finalize`].
    pub rootfs_propagation: Option<u64>,
    /// The mounts, in order (the spec's, plus the default `/dev/pts` and `/dev/shm` when the
    /// runtime sets up `/dev`).
    pub mounts: Vec<MountPlan>,
    /// Whether the runtime populates `/dev` (no `/dev` mount, or a tmpfs one).
    pub setup_dev: bool,
    /// Device nodes to create (defaults merged with `linux.devices`).
    pub devices: Vec<DevicePlan>,
    /// Symlinks to create in `/dev`: (name, target).
    pub dev_symlinks: Vec<(String, String)>,
    /// `linux.maskedPaths`, normalised.
    pub masked_paths: Vec<PathBuf>,
    /// `linux.readonlyPaths`, normalised.
    pub readonly_paths: Vec<PathBuf>,
}

/// Builds the plan from the spec. `bundle` is the absolute bundle directory (`root.path` is
/// relative to it).
pub fn plan(spec: &Spec, bundle: &Path, opts: &RootfsOptions) -> Result<RootfsPlan, RootfsError> {
    plan::build(spec, bundle, opts)
}

/// In the init, new mount namespace: propagation, rootfs bind, every mount, `/dev`.
pub fn prepare(plan: &RootfsPlan) -> Result<(), RootfsError> {
    mounts::prepare(plan)
}

/// In the init: switch root and `chdir("/")`.
pub fn pivot(plan: &RootfsPlan) -> Result<(), RootfsError> {
    pivot::pivot(plan)
}

/// In the init, after [`pivot`]: bind the pty slave (by fd) onto `/dev/console` safely.
pub fn setup_console(slave: BorrowedFd<'_>) -> Result<(), RootfsError> {
    dev::setup_console(slave)
}

/// In the init, last: masked paths, read-only paths, read-only root, `rootfsPropagation`.
pub fn finalize(plan: &RootfsPlan) -> Result<(), RootfsError> {
    masked::finalize(plan)
}
