//! `/dev`: device nodes, the standard symlinks, and the console.
//!
//! Every entry is created relative to the descriptor of its resolved parent directory, and an
//! existing entry (a symlink planted by the image, say `/dev/null -> /etc/passwd` or
//! `/dev/console -> /host/file`) is removed, never followed (CVE-2025-52565, CVE-2026-41579
//! and crun's 2025-2026 `/dev` CVEs).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::mounts::bind_fd;
use super::plan::{DeviceKind, DevicePlan};
use super::resolve::{ensure_in_root, fd_path, open_in_root, Create, Symlinks, Want};
use super::{RootfsError, RootfsPlan, Step};

/// Creates the planned device nodes and `/dev` symlinks below `root`.
pub(super) fn populate(root: BorrowedFd<'_>, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let dev_path = Path::new("/dev");
    let dev = ensure_in_root(root, dev_path, Create::Dir, Symlinks::Refuse)
        .map_err(RootfsError::sys(Step::CreateTarget, dev_path))?;
    for d in &plan.devices {
        create_device(root, d)?;
    }
    for (name, target) in &plan.dev_symlinks {
        let path = dev_path.join(name);
        remove_entry(dev.as_fd(), name).map_err(RootfsError::sys(Step::Symlink, &path))?;
        symlinkat(target.as_str(), dev.as_fd(), name.as_str())
            .map_err(RootfsError::sys(Step::Symlink, &path))?;
    }
    Ok(())
}

/// Removes whatever non-directory entry `name` is in `dir`, without following it.
fn remove_entry(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn file_type(kind: DeviceKind) -> SFlag {
    match kind {
        DeviceKind::Char => SFlag::S_IFCHR,
        DeviceKind::Block => SFlag::S_IFBLK,
        DeviceKind::Fifo => SFlag::S_IFIFO,
    }
}

/// Whether `fd` is the device `d` describes (for FIFOs: any FIFO).
fn is_device(fd: BorrowedFd<'_>, kind: DeviceKind, major: u64, minor: u64) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    let t = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if t != file_type(kind) {
        return Ok(false);
    }
    Ok(kind == DeviceKind::Fifo
        || (libc::major(st.st_rdev) as u64 == major && libc::minor(st.st_rdev) as u64 == minor))
}

fn create_device(root: BorrowedFd<'_>, d: &DevicePlan) -> Result<(), RootfsError> {
    let path = &d.path;
    let (Some(parent_path), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RootfsError::Sys {
            step: Step::Mknod,
            path: path.clone(),
            source: Errno::EINVAL,
        });
    };
    let parent = ensure_in_root(root, parent_path, Create::Dir, Symlinks::Refuse)
        .map_err(RootfsError::sys(Step::CreateTarget, parent_path))?;
    let name = name.to_string_lossy().into_owned();
    remove_entry(parent.as_fd(), &name).map_err(RootfsError::sys(Step::Mknod, path))?;
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    let perm = Mode::from_bits_truncate(d.mode);
    match mknodat(parent.as_fd(), name.as_str(), file_type(d.kind), perm, dev) {
        Ok(()) => {}
        // Without CAP_MKNOD in the initial user namespace (a rootless container), bind the
        // host's node onto an empty file instead, as runc does.
        Err(Errno::EPERM) if d.kind != DeviceKind::Fifo => {
            return bind_host_device(&parent, &name, d)
        }
        Err(e) => return Err(RootfsError::sys(Step::Mknod, path)(e)),
    }
    let node = openat(
        parent.as_fd(),
        name.as_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(RootfsError::sys(Step::Mknod, path))?;
    if !is_device(node.as_fd(), d.kind, d.major, d.minor)
        .map_err(RootfsError::sys(Step::Mknod, path))?
    {
        return Err(RootfsError::NotDevice {
            path: path.clone(),
            major: d.major,
            minor: d.minor,
        });
    }
    // mknod(2) applies the umask; set the exact mode through the node's own descriptor.
    std::fs::set_permissions(fd_path(&node), std::fs::Permissions::from_mode(d.mode)).map_err(
        |e| RootfsError::Sys {
            step: Step::ChownDevice,
            path: path.clone(),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        },
    )?;
    fchownat(
        node.as_fd(),
        "",
        Some(Uid::from_raw(d.uid)),
        Some(Gid::from_raw(d.gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(RootfsError::sys(Step::ChownDevice, path))?;
    Ok(())
}

fn bind_host_device(parent: &OwnedFd, name: &str, d: &DevicePlan) -> Result<(), RootfsError> {
    let path = &d.path;
    let host = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RootfsError::sys(Step::BindDevice, path))?;
    if !is_device(host.as_fd(), d.kind, d.major, d.minor)
        .map_err(RootfsError::sys(Step::BindDevice, path))?
    {
        return Err(RootfsError::NotDevice {
            path: path.clone(),
            major: d.major,
            minor: d.minor,
        });
    }
    let file = openat(
        parent.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(RootfsError::sys(Step::BindDevice, path))?;
    bind_fd(host.as_fd(), file.as_fd(), false).map_err(RootfsError::sys(Step::BindDevice, path))
}

/// Binds the pty `slave` onto `/dev/console` of the current root (after pivot_root).
pub(super) fn setup_console(slave: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    let err = |e| RootfsError::sys(Step::Console, console)(e);
    let root = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let dev =
        open_in_root(root.as_fd(), Path::new("/dev"), Want::Dir, Symlinks::Refuse).map_err(err)?;
    // Whatever the image put there (a symlink to a host path, a regular file, an old node)
    // is replaced by a fresh empty file created without following anything
    // (CVE-2025-52565).
    remove_entry(dev.as_fd(), "console").map_err(err)?;
    let target = openat(
        dev.as_fd(),
        "console",
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(err)?;
    bind_fd(slave, target.as_fd(), false).map_err(err)?;
    // Check what the container will see at /dev/console is the slave itself.
    let now = openat(
        dev.as_fd(),
        "console",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let (a, b) = (fstat(now.as_fd()).map_err(err)?, fstat(slave).map_err(err)?);
    if a.st_rdev != b.st_rdev
        || SFlag::from_bits_truncate(a.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
    {
        return Err(RootfsError::NotDevice {
            path: console.to_owned(),
            major: libc::major(b.st_rdev) as u64,
            minor: libc::minor(b.st_rdev) as u64,
        });
    }
    Ok(())
}
