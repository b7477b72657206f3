//! Turning the spec's root, mounts, devices and paths into a [`RootfsPlan`], in the parent.
//!
//! Everything that can be decided without being inside the container is decided here, so a
//! bad spec fails before anything is created, with the field's name.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::resolve::normalize;
use super::{RootfsError, RootfsOptions, RootfsPlan, Step};
use crate::sys::mount as attr;

/// What a mount is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// `bind` / `rbind`: `source` is a host path (absolute; relative ones were joined to the
    /// bundle).
    Bind { source: PathBuf, recursive: bool },
    /// A new filesystem instance (`tmpfs`, `proc`, `sysfs`, `devpts`, `mqueue`, ...).
    Filesystem { fstype: String, source: String },
    /// `cgroup`: the host's hierarchies as the container should see them.
    Cgroup {
        hierarchies: Vec<CgroupHierarchy>,
        /// The container has its own cgroup namespace: mount the filesystems directly (the
        /// kernel then shows the namespace root); otherwise bind the container's own cgroup
        /// directory, so the host tree is not exposed.
        namespaced: bool,
    },
}

/// One cgroup hierarchy mounted on the host below `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupHierarchy {
    /// Directory name below `/sys/fs/cgroup` (`memory`, `unified`); empty for a pure cgroup v2
    /// host, where the hierarchy is `/sys/fs/cgroup` itself.
    pub name: String,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// The controllers (`cpu,cpuacct`, `name=systemd`), as in `/proc/self/cgroup`; empty for
    /// cgroup2.
    pub controllers: String,
}

/// The parsed `options` of one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOptions {
    /// `MS_*` flags set by the options (without propagation flags).
    pub flags: u64,
    /// `MS_*` flags the options explicitly cleared (`rw`, `suid`, `dev`, ...).
    pub cleared: u64,
    /// Propagation changes (`MS_SHARED`, `MS_SLAVE|MS_REC`, ...), applied in order after
    /// the mount.
    pub propagation: Vec<u64>,
    /// `mount_setattr(AT_RECURSIVE)` attributes set by `rro`, `rnosuid`, ... (`MOUNT_ATTR_*`).
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` attributes cleared by `rrw`, `rsuid`, ...
    pub attr_clr: u64,
    /// Everything else, comma-joined, passed to the filesystem as `data`.
    pub data: String,
}

impl MountOptions {
    /// Whether the options contain `bind` or `rbind`.
    pub fn is_bind(&self) -> bool {
        self.flags & MsFlags::MS_BIND.bits() != 0
    }
}

/// One mount, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The spec field (`mounts[3]`) or `default /dev/pts`, for error messages.
    pub field: String,
    /// Normalised absolute destination inside the container.
    pub destination: PathBuf,
    pub kind: MountKind,
    /// `MS_*` flags for mount(2) (for binds: for the remount after the bind), without
    /// `MS_BIND`, `MS_REC` and propagation.
    pub flags: u64,
    /// Propagation changes, in order.
    pub propagation: Vec<u64>,
    /// Recursive attributes (`MOUNT_ATTR_*`) to set and clear.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Filesystem data (`mode=755,size=65536k`).
    pub data: String,
}

impl MountPlan {
    pub(crate) fn ms_flags(&self) -> MsFlags {
        MsFlags::from_bits_retain(self.flags)
    }
}

/// The type of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

/// One device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// Normalised absolute path inside the container (`/dev/null`).
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What an option word does.
enum Opt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    AttrSet(u64),
    AttrClr(u64),
    /// Atime modes form a group: setting one clears the others (mount_setattr(2)).
    AttrAtime(u64),
    Refused(&'static str),
}

fn option(word: &str) -> Option<Opt> {
    use MsFlags as F;
    Some(match word {
        "ro" => Opt::Set(F::MS_RDONLY),
        "rw" => Opt::Clear(F::MS_RDONLY),
        "suid" => Opt::Clear(F::MS_NOSUID),
        "nosuid" => Opt::Set(F::MS_NOSUID),
        "dev" => Opt::Clear(F::MS_NODEV),
        "nodev" => Opt::Set(F::MS_NODEV),
        "exec" => Opt::Clear(F::MS_NOEXEC),
        "noexec" => Opt::Set(F::MS_NOEXEC),
        "sync" => Opt::Set(F::MS_SYNCHRONOUS),
        "async" => Opt::Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Opt::Set(F::MS_DIRSYNC),
        "remount" => Opt::Set(F::MS_REMOUNT),
        "mand" => Opt::Set(F::MS_MANDLOCK),
        "nomand" => Opt::Clear(F::MS_MANDLOCK),
        "atime" => Opt::Clear(F::MS_NOATIME),
        "noatime" => Opt::Set(F::MS_NOATIME),
        "diratime" => Opt::Clear(F::MS_NODIRATIME),
        "nodiratime" => Opt::Set(F::MS_NODIRATIME),
        "bind" => Opt::Set(F::MS_BIND),
        "rbind" => Opt::Set(F::MS_BIND | F::MS_REC),
        "relatime" => Opt::Set(F::MS_RELATIME),
        "norelatime" => Opt::Clear(F::MS_RELATIME),
        "strictatime" => Opt::Set(F::MS_STRICTATIME),
        "nostrictatime" => Opt::Clear(F::MS_STRICTATIME),
        "lazytime" => Opt::Set(F::MS_LAZYTIME),
        "nolazytime" => Opt::Clear(F::MS_LAZYTIME),
        "iversion" => Opt::Set(F::MS_I_VERSION),
        "noiversion" => Opt::Clear(F::MS_I_VERSION),
        "silent" => Opt::Set(F::MS_SILENT),
        "loud" => Opt::Clear(F::MS_SILENT),
        "nosymfollow" => Opt::Set(F::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        "symfollow" => Opt::Clear(F::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        "shared" => Opt::Propagation(F::MS_SHARED),
        "rshared" => Opt::Propagation(F::MS_SHARED | F::MS_REC),
        "slave" => Opt::Propagation(F::MS_SLAVE),
        "rslave" => Opt::Propagation(F::MS_SLAVE | F::MS_REC),
        "private" => Opt::Propagation(F::MS_PRIVATE),
        "rprivate" => Opt::Propagation(F::MS_PRIVATE | F::MS_REC),
        "unbindable" => Opt::Propagation(F::MS_UNBINDABLE),
        "runbindable" => Opt::Propagation(F::MS_UNBINDABLE | F::MS_REC),
        "rro" => Opt::AttrSet(attr::MOUNT_ATTR_RDONLY),
        "rrw" => Opt::AttrClr(attr::MOUNT_ATTR_RDONLY),
        "rnosuid" => Opt::AttrSet(attr::MOUNT_ATTR_NOSUID),
        "rsuid" => Opt::AttrClr(attr::MOUNT_ATTR_NOSUID),
        "rnodev" => Opt::AttrSet(attr::MOUNT_ATTR_NODEV),
        "rdev" => Opt::AttrClr(attr::MOUNT_ATTR_NODEV),
        "rnoexec" => Opt::AttrSet(attr::MOUNT_ATTR_NOEXEC),
        "rexec" => Opt::AttrClr(attr::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => Opt::AttrSet(attr::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => Opt::AttrClr(attr::MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => Opt::AttrSet(attr::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => Opt::AttrClr(attr::MOUNT_ATTR_NOSYMFOLLOW),
        "rrelatime" => Opt::AttrAtime(attr::MOUNT_ATTR_RELATIME),
        "rnoatime" => Opt::AttrAtime(attr::MOUNT_ATTR_NOATIME),
        "rstrictatime" => Opt::AttrAtime(attr::MOUNT_ATTR_STRICTATIME),
        // As runc: the "no" forms of atime modes reset to the default (relatime).
        "ratime" | "rnorelatime" | "rnostrictatime" => Opt::AttrAtime(attr::MOUNT_ATTR_RELATIME),
        "tmpcopyup" => Opt::Refused("is not supported (copying the image's files into the tmpfs)"),
        "idmap" | "ridmap" => Opt::Refused("is not supported (idmapped mounts)"),
        _ => return None,
    })
}

/// Parses the fstab-style `options` of `field` (e.g. `mounts[2].options`).
pub fn parse_mount_options(field: &str, options: &[String]) -> Result<MountOptions, RootfsError> {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for word in options {
        match option(word) {
            Some(Opt::Set(f)) => {
                out.flags |= f.bits();
                out.cleared &= !f.bits();
            }
            Some(Opt::Clear(f)) => {
                out.flags &= !f.bits();
                out.cleared |= f.bits();
            }
            Some(Opt::Propagation(f)) => out.propagation.push(f.bits()),
            Some(Opt::AttrSet(a)) => {
                out.attr_set |= a;
                out.attr_clr &= !a;
            }
            Some(Opt::AttrClr(a)) => {
                out.attr_clr |= a;
                out.attr_set &= !a;
            }
            Some(Opt::AttrAtime(a)) => {
                out.attr_set = (out.attr_set & !attr::MOUNT_ATTR__ATIME) | a;
                out.attr_clr |= attr::MOUNT_ATTR__ATIME;
            }
            Some(Opt::Refused(reason)) => {
                return Err(RootfsError::Invalid {
                    field: field.to_owned(),
                    value: word.clone(),
                    reason,
                })
            }
            None => data.push(word),
        }
    }
    out.data = data.join(",");
    Ok(out)
}

fn invalid(field: String, value: impl Into<String>, reason: &'static str) -> RootfsError {
    RootfsError::Invalid {
        field,
        value: value.into(),
        reason,
    }
}

/// The default devices of runtime-spec config-linux.md#default-devices.
fn default_devices() -> Vec<DevicePlan> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| DevicePlan {
        path: PathBuf::from(path),
        kind: DeviceKind::Char,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub(super) fn build(
    spec: &Spec,
    bundle: &Path,
    opts: &RootfsOptions,
) -> Result<RootfsPlan, RootfsError> {
    let root = spec.root().as_ref().ok_or_else(|| RootfsError::Root {
        path: PathBuf::new(),
        reason: "missing from config.json",
        source: None,
    })?;
    let rootfs = bundle.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| RootfsError::Root {
        path: rootfs.clone(),
        reason: "cannot be resolved",
        source: Some(e),
    })?;
    if !rootfs.is_dir() {
        return Err(RootfsError::Root {
            path: rootfs,
            reason: "is not a directory",
            source: None,
        });
    }
    if rootfs == Path::new("/") {
        return Err(RootfsError::Root {
            path: rootfs,
            reason: "is the host's root directory",
            source: None,
        });
    }

    let linux = spec.linux().as_ref();
    // A new or a joined cgroup namespace: either way /proc/self/cgroup inside is relative to
    // the namespace's root, so the hierarchies are mounted directly (as runc does).
    let namespaced_cgroup = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));

    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(invalid(
                format!("{field}.destination"),
                dest.display().to_string(),
                "is not absolute",
            ));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(invalid(
                format!("{field}.uidMappings"),
                "",
                "is set, but idmapped mounts are not supported",
            ));
        }
        let opts = parse_mount_options(
            &format!("{field}.options"),
            m.options().as_deref().unwrap_or_default(),
        )?;
        let typ = m.typ().clone().unwrap_or_default();
        let bind = opts.is_bind() || typ == "bind";
        let destination = normalize(dest);
        let kind = if bind {
            let source = m.source().as_ref().ok_or_else(|| {
                invalid(
                    format!("{field}.source"),
                    "",
                    "is required for a bind mount",
                )
            })?;
            if source.as_os_str().is_empty() {
                return Err(invalid(
                    format!("{field}.source"),
                    "",
                    "is required for a bind mount",
                ));
            }
            MountKind::Bind {
                source: bundle.join(source),
                recursive: opts.flags & MsFlags::MS_REC.bits() != 0,
            }
        } else if typ == "cgroup" || typ == "cgroup2" {
            MountKind::Cgroup {
                hierarchies: host_cgroup_hierarchies(&field)?,
                namespaced: namespaced_cgroup,
            }
        } else if typ.is_empty() || typ == "none" {
            return Err(invalid(
                format!("{field}.type"),
                typ,
                "is missing and the options are not bind or rbind",
            ));
        } else {
            MountKind::Filesystem {
                source: m
                    .source()
                    .as_ref()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| typ.clone()),
                fstype: typ,
            }
        };
        let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC).bits();
        mounts.push(MountPlan {
            field,
            destination,
            kind,
            flags,
            propagation: opts.propagation,
            attr_set: opts.attr_set,
            attr_clr: opts.attr_clr,
            data: opts.data,
        });
    }

    if let Some(label) = linux.and_then(|l| l.mount_label().as_deref()) {
        if !label.is_empty() {
            // SELinux is not available on the hosts Berth supports yet; runc refuses a label
            // it cannot apply, and so do we rather than ignore it silently.
            return Err(invalid(
                "linux.mountLabel".into(),
                label,
                "is set, but SELinux mount labels are not supported",
            ));
        }
    }

    // runc's rule: the runtime populates /dev unless the spec mounts something other than a
    // tmpfs there (a bind of the host's /dev, typically).
    let dev_mount = mounts
        .iter()
        .rev()
        .find(|m| m.destination == Path::new("/dev"));
    let setup_dev = match dev_mount {
        None => true,
        Some(m) => matches!(&m.kind, MountKind::Filesystem { fstype, .. } if fstype == "tmpfs"),
    };

    let mut devices = Vec::new();
    let mut dev_symlinks = Vec::new();
    if setup_dev {
        devices = default_devices();
        for (i, d) in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("linux.devices[{i}]");
            if !d.path().is_absolute() {
                return Err(invalid(
                    format!("{field}.path"),
                    d.path().display().to_string(),
                    "is not absolute",
                ));
            }
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
                LinuxDeviceType::B => DeviceKind::Block,
                LinuxDeviceType::P => DeviceKind::Fifo,
                LinuxDeviceType::A => {
                    return Err(invalid(
                        format!("{field}.type"),
                        "a",
                        "is not a device type (use c, b, u or p)",
                    ))
                }
            };
            // makedev(3) takes 32-bit numbers.
            let major = u32::try_from(d.major()).map(u64::from).map_err(|_| {
                invalid(
                    format!("{field}.major"),
                    d.major().to_string(),
                    "is out of range (0 to 4294967295)",
                )
            })?;
            // makedev(3) takes 32-bit numbers.
            let minor = u32::try_from(d.minor()).map(u64::from).map_err(|_| {
                invalid(
                    format!("{field}.minor"),
                    d.minor().to_string(),
                    "is out of range (0 to 4294967295)",
                )
            })?;
            let mode = d.file_mode().unwrap_or(0o666);
            if mode & !0o7777 != 0 {
                return Err(invalid(
                    format!("{field}.fileMode"),
                    format!("{mode:o}"),
                    "has bits other than permission bits",
                ));
            }
            let plan = DevicePlan {
                path: normalize(d.path()),
                kind,
                major,
                minor,
                mode,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            };
            devices.retain(|x| x.path != plan.path);
            devices.push(plan);
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            dev_symlinks.push((name.to_owned(), target.to_owned()));
        }
        if Path::new("/proc/kcore").exists() {
            dev_symlinks.push(("core".to_owned(), "/proc/kcore".to_owned()));
        }
        // /dev/pts and /dev/shm are part of the runtime's /dev; add them when the spec does not.
        let has = |p: &str| mounts.iter().any(|m| m.destination == Path::new(p));
        let (has_pts, has_shm) = (has("/dev/pts"), has("/dev/shm"));
        if !has_pts {
            mounts.push(MountPlan {
                field: "default /dev/pts".into(),
                destination: PathBuf::from("/dev/pts"),
                kind: MountKind::Filesystem {
                    fstype: "devpts".into(),
                    source: "devpts".into(),
                },
                flags: (MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC).bits(),
                propagation: Vec::new(),
                attr_set: 0,
                attr_clr: 0,
                data: "newinstance,ptmxmode=0666,mode=0620".into(),
            });
        }
        if !has_shm {
            mounts.push(MountPlan {
                field: "default /dev/shm".into(),
                destination: PathBuf::from("/dev/shm"),
                kind: MountKind::Filesystem {
                    fstype: "tmpfs".into(),
                    source: "shm".into(),
                },
                flags: (MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV).bits(),
                propagation: Vec::new(),
                attr_set: 0,
                attr_clr: 0,
                data: "mode=1777,size=65536k".into(),
            });
        }
    } else if let Some(d) = linux.and_then(|l| l.devices().as_ref()) {
        if !d.is_empty() {
            return Err(invalid(
                "linux.devices".into(),
                format!("{} entries", d.len()),
                "cannot be created when /dev is a bind mount",
            ));
        }
    }

    let rootfs_propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => None,
        Some(p) => match option(p) {
            Some(Opt::Propagation(f)) => Some(f.bits()),
            _ => return Err(invalid(
                "linux.rootfsPropagation".into(),
                p,
                "is not a propagation mode (shared, slave, private, unbindable or their r* forms)",
            )),
        },
    };
    // While preparing, / must not be shared with the host, or every container mount would
    // appear there; a shared rootfsPropagation is applied at the end, in finalize.
    let root_propagation = match rootfs_propagation {
        Some(f) if f & MsFlags::MS_SHARED.bits() == 0 => f | MsFlags::MS_REC.bits(),
        _ => (MsFlags::MS_SLAVE | MsFlags::MS_REC).bits(),
    };

    let paths = |field: &str, list: Option<&Vec<String>>| -> Result<Vec<PathBuf>, RootfsError> {
        list.into_iter()
            .flatten()
            .enumerate()
            .map(|(i, p)| {
                if Path::new(p).is_absolute() {
                    Ok(normalize(Path::new(p)))
                } else {
                    Err(invalid(
                        format!("{field}[{i}]"),
                        p.clone(),
                        "is not absolute",
                    ))
                }
            })
            .collect()
    };
    let masked_paths = paths(
        "linux.maskedPaths",
        linux.and_then(|l| l.masked_paths().as_ref()),
    )?;
    let readonly_paths = paths(
        "linux.readonlyPaths",
        linux.and_then(|l| l.readonly_paths().as_ref()),
    )?;

    Ok(RootfsPlan {
        rootfs,
        readonly: root.readonly().unwrap_or(false),
        no_pivot: opts.no_pivot,
        root_propagation,
        rootfs_propagation,
        mounts,
        setup_dev,
        devices,
        dev_symlinks,
        masked_paths,
        readonly_paths,
    })
}

/// Reads the host's cgroup hierarchies from `/proc/self/mountinfo`.
fn host_cgroup_hierarchies(field: &str) -> Result<Vec<CgroupHierarchy>, RootfsError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Sys {
            step: Step::ReadCgroups,
            path: PathBuf::from("/proc/self/mountinfo"),
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    let found = parse_cgroup_hierarchies(&mountinfo);
    if found.is_empty() {
        return Err(invalid(
            format!("{field}.type"),
            "cgroup",
            "is requested but the host has no cgroup filesystem at /sys/fs/cgroup",
        ));
    }
    Ok(found)
}

/// Finds the cgroup filesystems mounted at `/sys/fs/cgroup` (v2) or directly below it (v1 and
/// hybrid) in mountinfo text (proc(5)).
pub(super) fn parse_cgroup_hierarchies(mountinfo: &str) -> Vec<CgroupHierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_src), Some(super_opts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let name = if mount_point == "/sys/fs/cgroup" {
            String::new()
        } else if let Some(n) = mount_point.strip_prefix("/sys/fs/cgroup/") {
            if n.contains('/') {
                continue;
            }
            n.to_owned()
        } else {
            continue;
        };
        let controllers = if fstype == "cgroup" {
            super_opts
                .split(',')
                .filter(|o| {
                    !matches!(
                        *o,
                        "rw" | "ro" | "xattr" | "noprefix" | "clone_children" | "cpuset_v2_mode"
                    ) && !o.starts_with("release_agent=")
                })
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        };
        out.retain(|h: &CgroupHierarchy| h.name != name);
        out.push(CgroupHierarchy {
            name,
            fstype: fstype.to_owned(),
            controllers,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> MountOptions {
        let v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse_mount_options("mounts[0].options", &v).unwrap()
    }

    #[test]
    fn every_documented_flag_option_sets_or_clears_its_flag() {
        use MsFlags as F;
        let set = [
            ("ro", F::MS_RDONLY),
            ("nosuid", F::MS_NOSUID),
            ("nodev", F::MS_NODEV),
            ("noexec", F::MS_NOEXEC),
            ("sync", F::MS_SYNCHRONOUS),
            ("dirsync", F::MS_DIRSYNC),
            ("remount", F::MS_REMOUNT),
            ("mand", F::MS_MANDLOCK),
            ("noatime", F::MS_NOATIME),
            ("nodiratime", F::MS_NODIRATIME),
            ("bind", F::MS_BIND),
            ("rbind", F::MS_BIND | F::MS_REC),
            ("relatime", F::MS_RELATIME),
            ("strictatime", F::MS_STRICTATIME),
        ];
        for (word, flag) in set {
            let o = opts(&[word]);
            assert_eq!(o.flags, flag.bits(), "{word}");
            assert!(o.data.is_empty(), "{word}");
        }
        let clear = [
            ("rw", "ro", F::MS_RDONLY),
            ("suid", "nosuid", F::MS_NOSUID),
            ("dev", "nodev", F::MS_NODEV),
            ("exec", "noexec", F::MS_NOEXEC),
            ("async", "sync", F::MS_SYNCHRONOUS),
            ("nomand", "mand", F::MS_MANDLOCK),
            ("atime", "noatime", F::MS_NOATIME),
            ("diratime", "nodiratime", F::MS_NODIRATIME),
            ("norelatime", "relatime", F::MS_RELATIME),
            ("nostrictatime", "strictatime", F::MS_STRICTATIME),
        ];
        for (word, opposite, flag) in clear {
            let o = opts(&[opposite, word]);
            assert_eq!(o.flags, 0, "{opposite},{word}");
            assert_eq!(o.cleared, flag.bits(), "{word}");
            // The last word wins, as in mount(8).
            assert_eq!(
                opts(&[word, opposite]).flags,
                flag.bits(),
                "{word},{opposite}"
            );
        }
    }

    #[test]
    fn propagation_options_are_kept_in_order() {
        use MsFlags as F;
        let words = [
            ("shared", F::MS_SHARED),
            ("rshared", F::MS_SHARED | F::MS_REC),
            ("slave", F::MS_SLAVE),
            ("rslave", F::MS_SLAVE | F::MS_REC),
            ("private", F::MS_PRIVATE),
            ("rprivate", F::MS_PRIVATE | F::MS_REC),
            ("unbindable", F::MS_UNBINDABLE),
            ("runbindable", F::MS_UNBINDABLE | F::MS_REC),
        ];
        for (word, flag) in words {
            let o = opts(&[word]);
            assert_eq!(o.propagation, vec![flag.bits()], "{word}");
            assert_eq!(o.flags, 0, "{word}");
        }
        let o = opts(&["rprivate", "shared"]);
        assert_eq!(
            o.propagation,
            vec![(F::MS_PRIVATE | F::MS_REC).bits(), F::MS_SHARED.bits()]
        );
    }

    #[test]
    fn recursive_attributes_map_to_mount_setattr() {
        let o = opts(&[
            "rbind",
            "rro",
            "rnosuid",
            "rnodev",
            "rnoexec",
            "rnodiratime",
            "rnosymfollow",
        ]);
        assert_eq!(
            o.attr_set,
            attr::MOUNT_ATTR_RDONLY
                | attr::MOUNT_ATTR_NOSUID
                | attr::MOUNT_ATTR_NODEV
                | attr::MOUNT_ATTR_NOEXEC
                | attr::MOUNT_ATTR_NODIRATIME
                | attr::MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(o.attr_clr, 0);
        let o = opts(&[
            "rro",
            "rrw",
            "rsuid",
            "rdev",
            "rexec",
            "rdiratime",
            "rsymfollow",
        ]);
        assert_eq!(o.attr_set, 0);
        assert_eq!(
            o.attr_clr,
            attr::MOUNT_ATTR_RDONLY
                | attr::MOUNT_ATTR_NOSUID
                | attr::MOUNT_ATTR_NODEV
                | attr::MOUNT_ATTR_NOEXEC
                | attr::MOUNT_ATTR_NODIRATIME
                | attr::MOUNT_ATTR_NOSYMFOLLOW
        );
        let o = opts(&["rnoatime"]);
        assert_eq!(o.attr_set, attr::MOUNT_ATTR_NOATIME);
        assert_eq!(o.attr_clr, attr::MOUNT_ATTR__ATIME);
        let o = opts(&["rnoatime", "rstrictatime"]);
        assert_eq!(o.attr_set, attr::MOUNT_ATTR_STRICTATIME);
        let o = opts(&["rstrictatime", "rrelatime"]);
        assert_eq!(o.attr_set, attr::MOUNT_ATTR_RELATIME);
        assert_eq!(o.attr_clr, attr::MOUNT_ATTR__ATIME);
    }

    #[test]
    fn unknown_words_become_filesystem_data() {
        let o = opts(&["nosuid", "mode=755", "size=65536k", "newinstance"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID.bits());
        assert_eq!(o.data, "mode=755,size=65536k,newinstance");
    }

    #[test]
    fn tmpcopyup_and_idmap_are_refused_by_name() {
        for word in ["tmpcopyup", "idmap", "ridmap"] {
            let err = parse_mount_options("mounts[4].options", &[word.to_string()]).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("mounts[4].options \"{word}\"")),
                "{msg}"
            );
            assert!(msg.contains("not supported"), "{msg}");
        }
    }

    fn bundle_with(config: serde_json::Value) -> (tempfile::TempDir, Spec) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let mut base = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "linux": {}
        });
        for (k, v) in config.as_object().unwrap() {
            base[k] = v.clone();
        }
        let spec = serde_json::from_value(base).unwrap();
        (d, spec)
    }

    fn plan_of(config: serde_json::Value) -> Result<RootfsPlan, RootfsError> {
        let (d, spec) = bundle_with(config);
        let r = build(&spec, d.path(), &RootfsOptions::default());
        drop(d);
        r
    }

    #[test]
    fn relative_destination_is_refused_with_the_field_name() {
        let err = plan_of(serde_json::json!({
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/tmp", "type": "tmpfs"},
                {"destination": "/a", "type": "tmpfs"},
                {"destination": "foo", "type": "tmpfs"}
            ]
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mounts[3].destination \"foo\" is not absolute"
        );
    }

    #[test]
    fn missing_or_file_rootfs_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "root": {"path": "nope"}
        }))
        .unwrap();
        let err = build(&spec, d.path(), &RootfsOptions::default()).unwrap_err();
        assert!(err.to_string().starts_with("root.path"), "{err}");
        std::fs::write(d.path().join("nope"), b"").unwrap();
        let err = build(&spec, d.path(), &RootfsOptions::default()).unwrap_err();
        assert!(err.to_string().ends_with("is not a directory"), "{err}");
    }

    #[test]
    fn mounts_are_planned_with_flags_data_and_bundle_relative_sources() {
        let (d, spec) = bundle_with(serde_json::json!({
            "mounts": [
                {"destination": "/data/../vol", "source": "vol", "options": ["rbind", "ro", "nosuid", "rslave"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]},
            ],
            "root": {"path": "rootfs", "readonly": true}
        }));
        let p = build(&spec, d.path(), &RootfsOptions { no_pivot: true }).unwrap();
        assert!(p.readonly && p.no_pivot);
        assert_eq!(p.rootfs, d.path().join("rootfs").canonicalize().unwrap());
        let m = &p.mounts[0];
        assert_eq!(m.destination, Path::new("/vol"));
        assert_eq!(
            m.kind,
            MountKind::Bind {
                source: d.path().join("vol"),
                recursive: true
            }
        );
        assert_eq!(m.flags, (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID).bits());
        assert_eq!(
            m.propagation,
            vec![(MsFlags::MS_SLAVE | MsFlags::MS_REC).bits()]
        );
        let t = &p.mounts[1];
        assert_eq!(
            t.kind,
            MountKind::Filesystem {
                fstype: "tmpfs".into(),
                source: "tmpfs".into()
            }
        );
        assert_eq!(t.data, "mode=1777");
    }

    #[test]
    fn default_dev_is_populated_unless_dev_is_a_bind() {
        let p = plan_of(serde_json::json!({
            "linux": {"devices": [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 384}
            ]}
        }))
        .unwrap();
        assert!(p.setup_dev);
        let names: Vec<_> = p.devices.iter().map(|d| d.path.to_str().unwrap()).collect();
        for n in [
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/fuse",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        let null: Vec<_> = p
            .devices
            .iter()
            .filter(|d| d.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!(null[0].mode, 0o600);
        assert!(p.dev_symlinks.contains(&("ptmx".into(), "pts/ptmx".into())));
        assert!(p
            .dev_symlinks
            .contains(&("fd".into(), "/proc/self/fd".into())));
        let dests: Vec<_> = p.mounts.iter().map(|m| m.destination.clone()).collect();
        assert!(dests.contains(&PathBuf::from("/dev/pts")));
        assert!(dests.contains(&PathBuf::from("/dev/shm")));

        let p = plan_of(serde_json::json!({
            "mounts": [{"destination": "/dev", "source": "/dev", "options": ["rbind"]}]
        }))
        .unwrap();
        assert!(!p.setup_dev && p.devices.is_empty() && p.dev_symlinks.is_empty());
        assert_eq!(p.mounts.len(), 1);
    }

    #[test]
    fn bad_devices_are_refused_by_field() {
        let err = plan_of(serde_json::json!({
            "linux": {"devices": [{"path": "dev/x", "type": "c", "major": 1, "minor": 1}]}
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.devices[0].path \"dev/x\" is not absolute"
        );
        let err = plan_of(serde_json::json!({
            "linux": {"devices": [{"path": "/dev/x", "type": "a", "major": 1, "minor": 1}]}
        }))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("linux.devices[0].type \"a\""),
            "{err}"
        );
        let err = plan_of(serde_json::json!({
            "linux": {"devices": [{"path": "/dev/x", "type": "c", "major": -1, "minor": 1}]}
        }))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("linux.devices[0].major"),
            "{err}"
        );
    }

    #[test]
    fn other_bad_fields_are_named() {
        let cases = [
            (
                serde_json::json!({"mounts": [{"destination": "/x", "options": ["rbind"]}]}),
                "mounts[0].source",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/x"}]}),
                "mounts[0].type",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/x", "type": "tmpfs", "options": ["tmpcopyup"]}]}),
                "mounts[0].options",
            ),
            (
                serde_json::json!({"linux": {"rootfsPropagation": "sideways"}}),
                "linux.rootfsPropagation",
            ),
            (
                serde_json::json!({"linux": {"maskedPaths": ["proc/kcore"]}}),
                "linux.maskedPaths[0]",
            ),
            (
                serde_json::json!({"linux": {"readonlyPaths": ["/ok", "bad"]}}),
                "linux.readonlyPaths[1]",
            ),
            (
                serde_json::json!({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}),
                "linux.mountLabel",
            ),
        ];
        for (config, field) in cases {
            let err = plan_of(config).unwrap_err();
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
        // An empty label is ignored, as runc does with SELinux off.
        assert!(plan_of(serde_json::json!({"linux": {"mountLabel": ""}})).is_ok());
    }

    #[test]
    fn shared_root_propagation_is_deferred_to_finalize() {
        let p = plan_of(serde_json::json!({"linux": {"rootfsPropagation": "rshared"}})).unwrap();
        assert_eq!(
            p.root_propagation,
            (MsFlags::MS_SLAVE | MsFlags::MS_REC).bits()
        );
        assert_eq!(
            p.rootfs_propagation,
            Some((MsFlags::MS_SHARED | MsFlags::MS_REC).bits())
        );
        let p = plan_of(serde_json::json!({"linux": {"rootfsPropagation": "private"}})).unwrap();
        assert_eq!(
            p.root_propagation,
            (MsFlags::MS_PRIVATE | MsFlags::MS_REC).bits()
        );
    }

    #[test]
    fn cgroup_hierarchies_of_hybrid_and_v2_hosts() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory,clone_children
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let h = parse_cgroup_hierarchies(hybrid);
        let got: Vec<_> = h
            .iter()
            .map(|h| (h.name.as_str(), h.fstype.as_str(), h.controllers.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cpu", "cgroup", "cpu"),
                ("memory", "cgroup", "memory"),
                ("systemd", "cgroup", "name=systemd"),
                ("unified", "cgroup2", ""),
            ]
        );
        let v2 = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = parse_cgroup_hierarchies(v2);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].name.as_str(), h[0].fstype.as_str()), ("", "cgroup2"));
    }

    #[test]
    fn plan_round_trips_through_json() {
        let p = plan_of(serde_json::json!({
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
        }))
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: RootfsPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.mounts, p.mounts);
        assert_eq!(back.masked_paths, vec![PathBuf::from("/proc/kcore")]);
    }
}
