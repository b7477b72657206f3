//! [`pivot`]: making the prepared rootfs the process's `/`.

use std::os::fd::AsFd;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};

use super::{RootfsError, RootfsPlan, Step};

const NONE: Option<&str> = None;

pub(super) fn pivot(plan: &RootfsPlan) -> Result<(), RootfsError> {
    let rootfs = &plan.rootfs;
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let new_root =
        open(rootfs, dir, Mode::empty()).map_err(RootfsError::sys(Step::OpenRootfs, rootfs))?;
    if plan.no_pivot {
        // --no-pivot (for a rootfs on ramfs, where pivot_root(2) is refused): move the rootfs
        // mount onto / and chroot into it. Weaker: the old root stays reachable to a process
        // that can escape the chroot, which is why it is not the default.
        fchdir(new_root.as_fd()).map_err(RootfsError::sys(Step::Chdir, rootfs))?;
        mount(Some("."), "/", NONE, MsFlags::MS_MOVE, NONE)
            .map_err(RootfsError::sys(Step::MoveRoot, rootfs))?;
        chroot(".").map_err(RootfsError::sys(Step::Chroot, rootfs))?;
    } else {
        let old_root =
            open("/", dir, Mode::empty()).map_err(RootfsError::sys(Step::OpenRootfs, "/"))?;
        // pivot_root(".", ".") stacks the old root on top of the new one at the same place
        // (pivot_root(2), NOTES), so no directory for it is needed inside the rootfs.
        fchdir(new_root.as_fd()).map_err(RootfsError::sys(Step::Chdir, rootfs))?;
        pivot_root(".", ".").map_err(RootfsError::sys(Step::PivotRoot, rootfs))?;
        // Detach the old root, after making it a slave so the unmount does not propagate to
        // the host's mounts (it may still be a peer of them).
        fchdir(old_root.as_fd()).map_err(RootfsError::sys(Step::Chdir, "the old root"))?;
        mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
            .map_err(RootfsError::sys(Step::DetachOldRoot, "/"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(RootfsError::sys(Step::DetachOldRoot, "/"))?;
    }
    chdir("/").map_err(RootfsError::sys(Step::Chdir, "/"))?;
    Ok(())
}
