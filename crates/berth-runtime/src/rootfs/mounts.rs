//! [`prepare`]: propagation, the rootfs bind, the spec's mounts, `/dev`.
//!
//! Runs in the container's init, in its new mount namespace, before `pivot_root`, so `/proc`
//! here is still the host's procfs (trusted, and needed for the `/proc/self/fd/N` targets).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, FsType, PROC_SUPER_MAGIC, SYSFS_MAGIC};
use nix::sys::statvfs::{fstatvfs, FsFlags};

use super::plan::{CgroupHierarchy, MountKind, MountPlan};
use super::resolve::{ensure_in_root, fd_path, open_in_root, Create, Symlinks, Want};
use super::{dev, RootfsError, RootfsPlan, Step};
use crate::sys::mount as sys;

const NONE: Option<&str> = None;

pub(super) fn prepare(plan: &RootfsPlan) -> Result<(), RootfsError> {
    // 1. Stop mounts made below from propagating to the host (mount_namespaces(7)): the new
    //    namespace starts with copies of the host's shared mounts.
    let root_flags = MsFlags::from_bits_retain(plan.root_propagation);
    mount(NONE, "/", NONE, root_flags, NONE)
        .map_err(RootfsError::sys(Step::RootPropagation, "/"))?;

    // 2. pivot_root(2) refuses a new root whose parent mount is shared: make it private, as
    //    runc's rootfsParentMountPrivate does.
    make_parent_private(&plan.rootfs)?;

    // 3. Bind the rootfs onto itself so it is a mount point, which pivot_root(2) requires.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(RootfsError::sys(Step::BindRootfs, &plan.rootfs))?;

    // 4. From here on, the rootfs is only reached through this descriptor.
    let mut root = open_rootfs(&plan.rootfs)?;
    for m in &plan.mounts {
        mount_one(root.as_fd(), m)?;
        if m.destination == Path::new("/") {
            // Something is now mounted over the rootfs itself: later mounts go on top of it,
            // not into the directory it hides.
            root = open_rootfs(&plan.rootfs)?;
        }
    }

    // 5. Device nodes and /dev symlinks, after the /dev tmpfs (if any) is in place.
    if plan.setup_dev {
        dev::populate(root.as_fd(), plan)?;
    }
    Ok(())
}

pub(super) fn open_rootfs(path: &Path) -> Result<OwnedFd, RootfsError> {
    open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(RootfsError::sys(Step::OpenRootfs, path))
}

/// Destinations in `/proc`, `/sys` and `/dev` are resolved without following any symlink: the
/// runtime writes through them (sysctls, LSM labels, device nodes), so a rootfs that makes
/// them symlinks is refused (CVE-2019-19921, CVE-2023-27561, CVE-2023-28642, CVE-2026-41579).
pub(super) fn symlink_policy(dest: &Path) -> Symlinks {
    let first = dest.components().nth(1).map(|c| c.as_os_str().to_owned());
    match first.as_ref().and_then(|f| f.to_str()) {
        Some("proc" | "sys" | "dev") => Symlinks::Refuse,
        _ => Symlinks::Contain,
    }
}

/// Opens the mount just made at `dest` (the descriptor used to create it still points at the
/// directory underneath).
fn reopen(root: BorrowedFd<'_>, dest: &Path) -> Result<OwnedFd, RootfsError> {
    open_in_root(root, dest, Want::Any, symlink_policy(dest))
        .map_err(RootfsError::sys(Step::ResolveTarget, dest))
}

fn is_dir(fd: BorrowedFd<'_>, step: Step, path: &Path) -> Result<bool, RootfsError> {
    let st = fstat(fd).map_err(RootfsError::sys(step, path))?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

fn mount_one(root: BorrowedFd<'_>, m: &MountPlan) -> Result<(), RootfsError> {
    let dest = &m.destination;
    let policy = symlink_policy(dest);
    let flags = m.ms_flags();
    match &m.kind {
        MountKind::Bind { source, recursive } => {
            // The source is a host path chosen by whoever wrote the bundle: it is trusted, as
            // in runc; the destination is not.
            let src = open(source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(RootfsError::sys(Step::OpenSource, source))?;
            let src_dir = is_dir(src.as_fd(), Step::OpenSource, source)?;
            let create = if src_dir { Create::Dir } else { Create::File };
            let target = ensure_in_root(root, dest, create, policy)
                .map_err(RootfsError::sys(Step::CreateTarget, dest))?;
            let target_dir = is_dir(target.as_fd(), Step::ResolveTarget, dest)?;
            if src_dir != target_dir {
                let kind = |d| if d { "directory" } else { "file" };
                return Err(RootfsError::TargetKind {
                    field: m.field.clone(),
                    path: dest.clone(),
                    source_kind: kind(src_dir),
                    target_kind: kind(target_dir),
                });
            }
            bind_fd(src.as_fd(), target.as_fd(), *recursive)
                .map_err(RootfsError::sys(Step::Mount, dest))?;
            let mounted = reopen(root, dest)?;
            if !(flags & !MsFlags::MS_REMOUNT).is_empty() {
                remount_bind(mounted.as_fd(), flags & !MsFlags::MS_REMOUNT)
                    .map_err(RootfsError::sys(Step::Remount, dest))?;
            }
            finish(mounted.as_fd(), m)
        }
        MountKind::Filesystem { fstype, source } => {
            let target = ensure_in_root(root, dest, Create::Dir, policy)
                .map_err(RootfsError::sys(Step::CreateTarget, dest))?;
            let data = (!m.data.is_empty()).then_some(m.data.as_str());
            let res = mount(
                Some(source.as_str()),
                fd_path(&target).as_str(),
                Some(fstype.as_str()),
                flags,
                data,
            );
            let host_fallback = match fstype.as_str() {
                // sysfs cannot be mounted from a user namespace that does not own the network
                // namespace, nor mqueue without owning the IPC namespace: bind the host's
                // instead, as runc does.
                "sysfs" => Some("/sys"),
                "mqueue" => Some("/dev/mqueue"),
                _ => None,
            };
            match (res, host_fallback) {
                (Err(Errno::EPERM), Some(host_path)) => {
                    let host = open(
                        host_path,
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(RootfsError::sys(Step::OpenSource, host_path))?;
                    bind_fd(host.as_fd(), target.as_fd(), true)
                        .map_err(RootfsError::sys(Step::Mount, dest))?;
                    let mounted = reopen(root, dest)?;
                    remount_bind(mounted.as_fd(), flags)
                        .map_err(RootfsError::sys(Step::Remount, dest))?;
                }
                (other, _) => other.map_err(RootfsError::sys(Step::Mount, dest))?,
            }
            let mounted = reopen(root, dest)?;
            if !flags.contains(MsFlags::MS_REMOUNT) {
                match fstype.as_str() {
                    "proc" => expect_fs(mounted.as_fd(), dest, PROC_SUPER_MAGIC, "procfs")?,
                    "sysfs" => expect_fs(mounted.as_fd(), dest, SYSFS_MAGIC, "sysfs")?,
                    _ => {}
                }
            }
            finish(mounted.as_fd(), m)
        }
        MountKind::Cgroup {
            hierarchies,
            namespaced,
        } => {
            let target = ensure_in_root(root, dest, Create::Dir, policy)
                .map_err(RootfsError::sys(Step::CreateTarget, dest))?;
            mount_cgroups(root, target, m, hierarchies, *namespaced)?;
            let mounted = reopen(root, dest)?;
            finish(mounted.as_fd(), m)
        }
    }
}

/// After a mount is in place: propagation changes, then recursive attributes.
fn finish(mounted: BorrowedFd<'_>, m: &MountPlan) -> Result<(), RootfsError> {
    for p in &m.propagation {
        mount(
            NONE,
            fd_path(mounted).as_str(),
            NONE,
            MsFlags::from_bits_retain(*p),
            NONE,
        )
        .map_err(RootfsError::sys(Step::Propagation, &m.destination))?;
    }
    if m.attr_set != 0 || m.attr_clr != 0 {
        let attr = sys::MountAttr {
            attr_set: m.attr_set,
            attr_clr: m.attr_clr,
            ..Default::default()
        };
        sys::mount_setattr(mounted, true, &attr)
            .map_err(RootfsError::sys(Step::MountAttributes, &m.destination))?;
    }
    Ok(())
}

fn expect_fs(
    fd: BorrowedFd<'_>,
    dest: &Path,
    magic: FsType,
    name: &'static str,
) -> Result<(), RootfsError> {
    let st = fstatfs(fd).map_err(RootfsError::sys(Step::ResolveTarget, dest))?;
    if st.filesystem_type() != magic {
        return Err(RootfsError::WrongFilesystem {
            path: dest.to_owned(),
            expected: name,
        });
    }
    Ok(())
}

/// Binds what `src` refers to onto what `target` refers to, without naming a path:
/// `open_tree(OPEN_TREE_CLONE)` + `move_mount`, or on kernels before 5.2 mount(2) through the
/// `/proc/self/fd` magic links of both descriptors.
pub(super) fn bind_fd(
    src: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    recursive: bool,
) -> Result<(), Errno> {
    let mut flags = sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    match sys::open_tree(src, flags) {
        Ok(tree) => sys::move_mount(tree.as_fd(), target),
        Err(Errno::ENOSYS) => {
            let mut ms = MsFlags::MS_BIND;
            if recursive {
                ms |= MsFlags::MS_REC;
            }
            mount(
                Some(fd_path(src).as_str()),
                fd_path(target).as_str(),
                NONE,
                ms,
                NONE,
            )
        }
        Err(e) => Err(e),
    }
}

/// The per-mount flags the kernel reports for the mount at `fd`, as `MS_*` flags.
fn current_flags(fd: BorrowedFd<'_>) -> Result<MsFlags, Errno> {
    let st = fstatvfs(fd)?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st) {
            out |= ms;
        }
    }
    Ok(out)
}

/// `MS_REMOUNT|MS_BIND|flags` on the mount at `fd`. In a user namespace the kernel locks the
/// flags a mount had when the namespace was created (mount_namespaces(7), "locked mounts")
/// and refuses, with EPERM, a remount that would clear one; like runc, retry once with the
/// mount's current flags added.
pub(super) fn remount_bind(fd: BorrowedFd<'_>, flags: MsFlags) -> Result<(), Errno> {
    let path = fd_path(fd);
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    match mount(NONE, path.as_str(), NONE, base | flags, NONE) {
        Err(Errno::EPERM) => {
            let locked = current_flags(fd)?;
            mount(NONE, path.as_str(), NONE, base | flags | locked, NONE)
        }
        Err(Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
            // No procfs in the container (after pivot_root): mount_setattr(2) acts on the
            // descriptor directly, and never clears a flag it is not asked to.
            let attr = sys::MountAttr {
                attr_set: to_attr(flags),
                ..Default::default()
            };
            sys::mount_setattr(fd, false, &attr)
        }
        other => other,
    }
}

fn to_attr(flags: MsFlags) -> u64 {
    let mut a = 0;
    for (ms, at) in [
        (MsFlags::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, sys::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, sys::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(ms) {
            a |= at;
        }
    }
    a
}

/// Makes the mount that contains `rootfs` private if it is shared: pivot_root(2) fails with
/// EINVAL when the parent mount of the new root is shared.
fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Sys {
        step: Step::RootPropagation,
        path: PathBuf::from("/proc/self/mountinfo"),
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mp = PathBuf::from(crate::procfs::unescape_mountinfo(mp));
        if !rootfs.starts_with(&mp) {
            continue;
        }
        let shared = fields[6..].iter().any(|f| f.starts_with("shared:"));
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len());
        if longer {
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount(NONE, &mp, NONE, MsFlags::MS_PRIVATE, NONE)
            .map_err(RootfsError::sys(Step::RootPropagation, mp))?;
    }
    Ok(())
}

/// This process's cgroup per hierarchy, keyed by the controllers field of `/proc/self/cgroup`
/// (`memory`, `name=systemd`, and `""` for cgroup2).
fn own_cgroups() -> Result<HashMap<String, String>, RootfsError> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| RootfsError::Sys {
        step: Step::ReadCgroups,
        path: PathBuf::from("/proc/self/cgroup"),
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            Some((normalize_controllers(ctrl), path.to_owned()))
        })
        .collect())
}

fn normalize_controllers(s: &str) -> String {
    let mut v: Vec<&str> = s.split(',').filter(|c| !c.is_empty()).collect();
    v.sort_unstable();
    v.join(",")
}

/// A `cgroup` mount: cgroup2 on a v2 host; on v1 and hybrid hosts a tmpfs holding one
/// directory per hierarchy, as runc and Docker lay it out.
fn mount_cgroups(
    root: BorrowedFd<'_>,
    target: OwnedFd,
    m: &MountPlan,
    hierarchies: &[CgroupHierarchy],
    namespaced: bool,
) -> Result<(), RootfsError> {
    let dest = &m.destination;
    let flags = m.ms_flags() & !MsFlags::MS_REMOUNT;
    let own = if namespaced {
        HashMap::new()
    } else {
        own_cgroups()?
    };
    if let [h] = hierarchies {
        if h.name.is_empty() {
            return mount_hierarchy(root, target, dest, h, namespaced, flags, &own);
        }
    }
    let tmpfs_flags = flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .map_err(RootfsError::sys(Step::Mount, dest))?;
    for h in hierarchies {
        let sub = dest.join(&h.name);
        let fd = ensure_in_root(root, &sub, Create::Dir, Symlinks::Refuse)
            .map_err(RootfsError::sys(Step::CreateTarget, &sub))?;
        mount_hierarchy(root, fd, &sub, h, namespaced, flags, &own)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let tmpfs = reopen(root, dest)?;
        remount_bind(tmpfs.as_fd(), flags).map_err(RootfsError::sys(Step::Remount, dest))?;
    }
    Ok(())
}

fn mount_hierarchy(
    root: BorrowedFd<'_>,
    target: OwnedFd,
    dest: &Path,
    h: &CgroupHierarchy,
    namespaced: bool,
    flags: MsFlags,
    own: &HashMap<String, String>,
) -> Result<(), RootfsError> {
    if namespaced {
        // Inside its own cgroup namespace the kernel shows the namespace's root as the root of
        // the hierarchy (cgroup_namespaces(7)).
        let data = (!h.controllers.is_empty()).then_some(h.controllers.as_str());
        return mount(
            Some(h.fstype.as_str()),
            fd_path(&target).as_str(),
            Some(h.fstype.as_str()),
            flags,
            data,
        )
        .map_err(RootfsError::sys(Step::Mount, dest));
    }
    // Without a cgroup namespace, show only the container's own cgroup, not the host's tree.
    let rel = own
        .get(&normalize_controllers(&h.controllers))
        .map(String::as_str)
        .unwrap_or("/");
    let mut host = PathBuf::from("/sys/fs/cgroup");
    host.push(&h.name);
    host.push(rel.trim_start_matches('/'));
    let src = open(
        &host,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(RootfsError::sys(Step::OpenSource, &host))?;
    bind_fd(src.as_fd(), target.as_fd(), false).map_err(RootfsError::sys(Step::Mount, dest))?;
    let mounted = reopen(root, dest)?;
    if !flags.is_empty() {
        remount_bind(mounted.as_fd(), flags).map_err(RootfsError::sys(Step::Remount, dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_sys_dev_destinations_refuse_symlinks() {
        for p in ["/proc", "/proc/sys", "/sys/fs/cgroup", "/dev", "/dev/pts"] {
            assert_eq!(symlink_policy(Path::new(p)), Symlinks::Refuse, "{p}");
        }
        for p in ["/", "/tmp", "/data/proc", "/devices"] {
            assert_eq!(symlink_policy(Path::new(p)), Symlinks::Contain, "{p}");
        }
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            crate::procfs::unescape_mountinfo(r"/a\040b\011c"),
            "/a b\tc"
        );
        assert_eq!(crate::procfs::unescape_mountinfo(r"/plain\\"), r"/plain\\");
    }

    #[test]
    fn controller_lists_compare_in_any_order() {
        assert_eq!(normalize_controllers("cpuacct,cpu"), "cpu,cpuacct");
        assert_eq!(normalize_controllers(""), "");
    }
}
