//! [`finalize`]: read-only paths, masked paths, read-only root, `rootfsPropagation`.
//!
//! Runs after `pivot_root`: `/` is the container's root, and paths are resolved relative to a
//! descriptor on it, so a symlink in the image cannot point a mask elsewhere.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::mounts::{bind_fd, remount_bind, symlink_policy};
use super::resolve::{fd_path, open_in_root, Symlinks, Want};
use super::{RootfsError, RootfsPlan, Step};
use crate::sys::mount as sys;

const NONE: Option<&str> = None;

pub(super) fn finalize(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let root = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(RootfsError::sys(Step::OpenRootfs, "/"))?;
    for p in &plan.readonly_paths {
        readonly_path(root.as_fd(), p)?;
    }
    for p in &plan.masked_paths {
        mask_path(root.as_fd(), p)?;
    }
    if plan.readonly {
        let fd = open_in_root(root.as_fd(), Path::new("/"), Want::Dir, Symlinks::Contain)
            .map_err(RootfsError::sys(Step::ReadonlyRoot, "/"))?;
        remount_bind(fd.as_fd(), MsFlags::MS_RDONLY)
            .map_err(RootfsError::sys(Step::ReadonlyRoot, "/"))?;
    }
    if let Some(p) = plan.rootfs_propagation {
        mount(NONE, "/", NONE, MsFlags::from_bits_retain(p), NONE)
            .map_err(RootfsError::sys(Step::Propagation, "/"))?;
    }
    Ok(())
}

/// Bind the path onto itself and remount that bind read-only (runc's readonlyPath). A
/// missing path is skipped, as the spec's defaults list paths not every kernel has.
fn readonly_path(root: BorrowedFd<'_>, p: &Path) -> Result<(), RootfsError> {
    let policy = symlink_policy(p);
    let fd = match open_in_root(root, p, Want::Any, policy) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other.map_err(RootfsError::sys(Step::ReadonlyPath, p))?,
    };
    bind_fd(fd.as_fd(), fd.as_fd(), true).map_err(RootfsError::sys(Step::ReadonlyPath, p))?;
    let mounted = open_in_root(root, p, Want::Any, policy)
        .map_err(RootfsError::sys(Step::ReadonlyPath, p))?;
    remount_bind(mounted.as_fd(), MsFlags::MS_RDONLY)
        .map_err(RootfsError::sys(Step::ReadonlyPath, p))
}

fn is_dev_null(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
            && libc::major(st.st_rdev) == 1
            && libc::minor(st.st_rdev) == 3,
    )
}

/// Directories get a read-only empty tmpfs; files get the container's `/dev/null`, opened
/// without following symlinks and checked to be the char device 1:3 before and after the
/// bind, read-only (CVE-2025-31133: a `/dev/null` swapped for a symlink to a procfs file
/// would otherwise be bound, writable, over the masked path).
fn mask_path(root: BorrowedFd<'_>, p: &Path) -> Result<(), RootfsError> {
    let err = RootfsError::sys(Step::MaskPath, p);
    let policy = symlink_policy(p);
    let fd = match open_in_root(root, p, Want::Any, policy) {
        Err(Errno::ENOENT) => return Ok(()),
        other => other.map_err(RootfsError::sys(Step::MaskPath, p))?,
    };
    let st = fstat(fd.as_fd()).map_err(RootfsError::sys(Step::MaskPath, p))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        return mount(
            Some("tmpfs"),
            fd_path(&fd).as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            NONE,
        )
        .map_err(err);
    }
    let null_path = Path::new("/dev/null");
    let null = open_in_root(root, null_path, Want::Any, Symlinks::Refuse)
        .map_err(RootfsError::sys(Step::MaskPath, null_path))?;
    let not_null = || RootfsError::NotDevice {
        path: null_path.to_owned(),
        major: 1,
        minor: 3,
    };
    if !is_dev_null(null.as_fd()).map_err(RootfsError::sys(Step::MaskPath, null_path))? {
        return Err(not_null());
    }
    match sys::open_tree(null.as_fd(), sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC) {
        Ok(tree) => {
            // Read-only before it becomes visible: no window where it is writable.
            let attr = sys::MountAttr {
                attr_set: sys::MOUNT_ATTR_RDONLY,
                ..Default::default()
            };
            sys::mount_setattr(tree.as_fd(), false, &attr)
                .map_err(RootfsError::sys(Step::MaskPath, p))?;
            sys::move_mount(tree.as_fd(), fd.as_fd())
                .map_err(RootfsError::sys(Step::MaskPath, p))?;
        }
        Err(Errno::ENOSYS) => {
            bind_fd(null.as_fd(), fd.as_fd(), false)
                .map_err(RootfsError::sys(Step::MaskPath, p))?;
            let mounted = open_in_root(root, p, Want::Any, policy)
                .map_err(RootfsError::sys(Step::MaskPath, p))?;
            remount_bind(mounted.as_fd(), MsFlags::MS_RDONLY)
                .map_err(RootfsError::sys(Step::MaskPath, p))?;
        }
        Err(e) => return Err(RootfsError::sys(Step::MaskPath, p)(e)),
    }
    let masked =
        open_in_root(root, p, Want::Any, policy).map_err(RootfsError::sys(Step::MaskPath, p))?;
    if !is_dev_null(masked.as_fd()).map_err(RootfsError::sys(Step::MaskPath, p))? {
        return Err(not_null());
    }
    Ok(())
}
