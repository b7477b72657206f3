//! Raw calls of the new mount API that neither `nix` nor `libc` wrap: `open_tree(2)`,
//! `move_mount(2)` and `mount_setattr(2)` (Linux 5.2 / 5.12).
//!
//! The rootfs code uses them to bind one file descriptor onto another without ever naming a
//! path that a symlink could redirect (CVE-2021-30465, CVE-2025-52565), and to change mount
//! attributes of a whole tree (`rro`, `rnosuid`, ...) or of a detached mount before it is
//! attached.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

// From <linux/mount.h>; libc 0.2 does not export them.
pub(crate) const OPEN_TREE_CLONE: u32 = 1;
pub(crate) const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x0000_0004;
pub(crate) const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x0000_0040;

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub(crate) const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` from <linux/mount.h> (`MOUNT_ATTR_SIZE_VER0` = 32 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

const EMPTY: &CStr = c"";

/// `open_tree(fd, "", flags | AT_EMPTY_PATH)`: with `OPEN_TREE_CLONE`, a detached copy of the
/// mount (or, with `AT_RECURSIVE`, the mount tree) at `fd`, as a new file descriptor.
pub(crate) fn open_tree(fd: BorrowedFd<'_>, flags: u32) -> Result<OwnedFd, Errno> {
    let flags = flags | libc::AT_EMPTY_PATH as u32;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call and `EMPTY` is a
    // NUL-terminated static string; the kernel returns a new descriptor that nothing else
    // owns, so wrapping it in `OwnedFd` gives it exactly one owner.
    let res = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), EMPTY.as_ptr(), flags) };
    let raw = Errno::result(res)?;
    // SAFETY: see above: `raw` is a fresh descriptor returned by open_tree(2).
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attaches the detached mount
/// `from` (from [`open_tree`]) on top of the file or directory that `to` refers to.
pub(crate) fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: both descriptors are live borrows for the duration of the call; the two path
    // arguments are the same NUL-terminated static empty string, read only by the kernel.
    let res = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            EMPTY.as_ptr(),
            to.as_raw_fd(),
            EMPTY.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(res).map(drop)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | (AT_RECURSIVE), attr)`: changes the attributes of
/// the mount at `fd` (and of every mount below it when `recursive`).
pub(crate) fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    attr: &MountAttr,
) -> Result<(), Errno> {
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: `fd` is a live borrow, `EMPTY` a static NUL-terminated string, and `attr` points
    // to a properly laid out `struct mount_attr` whose size we pass, valid for the whole call;
    // the kernel only reads it.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}
