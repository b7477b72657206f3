//! Container snapshots: a root filesystem made of an image's layers plus a private upper layer.
//!
//! The engine calls [`Snapshotter::create`] when it creates a container, [`Snapshotter::mount`]
//! before starting it, [`Snapshotter::unmount`] when it stops and [`Snapshotter::remove`] when it
//! is deleted. With overlayfs the layers are `lowerdir`s (top first) and the snapshot owns
//! `upper/` and `work/`; where overlay is unavailable the copy fallback materialises the layers
//! into `rootfs/` once, applying whiteouts.
//!
//! Many layers: the classic `mount(2)` data string is limited to one page (4096 bytes), about 40
//! store paths. Berth uses the new mount API and passes each layer with `fsconfig(lowerdir+)`
//! (Linux 6.8, Documentation/filesystems/overlayfs.rst "Multiple lower layers"), which has no
//! such limit; older kernels get the one-string form, refused with a clear error when too long.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::mount::{
    self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags,
    UnmountFlags,
};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::store::{ImageRecord, Store, StoreError};

/// How a snapshot's root filesystem is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Overlay,
    Copy,
}

/// Persisted next to the snapshot, read by the store to count layer references.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub container_id: String,
    pub image_id: Digest,
    /// Bottom layer first.
    pub chain_ids: Vec<Digest>,
    pub kind: SnapshotKind,
    /// The writable layer is disposable (a `--rm` container): the overlay is mounted with
    /// `volatile`, so the kernel skips every sync of the upper directory, including the one of
    /// the whole upper filesystem that an unmount otherwise does (podman does the same for
    /// `--rm`). Such a layer does not survive a host crash or reboot: see [`Snapshotter::mount`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
    /// For a volatile snapshot, the boot (`/proc/sys/kernel/random/boot_id`) of its last mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// Paths of a created snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub kind: SnapshotKind,
    /// Overlay lower directories, top layer first (overlay's order).
    pub lowerdirs: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// For the copy fallback: the materialised root filesystem.
    pub rootfs: PathBuf,
    /// Mount the overlay with `volatile` ([`SnapshotRecord::volatile`]).
    pub volatile: bool,
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid container id {id:?}")]
    InvalidId { id: String },
    #[error("snapshot for container {id} already exists")]
    Exists { id: String },
    #[error("no snapshot for container {id}")]
    NotFound { id: String },
    #[error("layer {chain} of image {image} is not in the store")]
    MissingLayer { image: Digest, chain: Digest },
    #[error(
        "overlay mount data for {layers} layers exceeds one page; this kernel lacks lowerdir+"
    )]
    TooManyLayers { layers: usize },
    #[error("cannot {step} for snapshot {id}")]
    Io {
        id: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("mounting overlay on {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmounting {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates, mounts and removes container snapshots in a store.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    store: Store,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

impl Snapshotter {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn dir(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        if !valid_id(id) {
            return Err(SnapshotError::InvalidId { id: id.into() });
        }
        Ok(self.store.snapshots_dir().join(id))
    }

    /// Whether overlayfs is usable here (listed in /proc/filesystems).
    pub fn overlay_supported() -> bool {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            fs::read_to_string("/proc/filesystems")
                .map(|s| s.lines().any(|l| l.ends_with("\toverlay")))
                .unwrap_or(false)
        })
    }

    /// Creates the snapshot of `image` for container `id`. `kind` None picks overlay when
    /// the kernel has it.
    pub fn create(
        &self,
        id: &str,
        image: &ImageRecord,
        kind: Option<SnapshotKind>,
    ) -> Result<Snapshot, SnapshotError> {
        self.create_with(id, image, kind, false)
    }

    /// [`Snapshotter::create`], with a disposable writable layer when `volatile`
    /// ([`SnapshotRecord::volatile`]).
    pub fn create_with(
        &self,
        id: &str,
        image: &ImageRecord,
        kind: Option<SnapshotKind>,
        volatile: bool,
    ) -> Result<Snapshot, SnapshotError> {
        let dir = self.dir(id)?;
        let kind = kind.unwrap_or(if Self::overlay_supported() {
            SnapshotKind::Overlay
        } else {
            SnapshotKind::Copy
        });
        let chain_ids: Vec<Digest> = image.layers.iter().map(|l| l.chain_id.clone()).collect();
        for c in &chain_ids {
            if !self.store.has_layer(c) {
                return Err(SnapshotError::MissingLayer {
                    image: image.id.clone(),
                    chain: c.clone(),
                });
            }
        }
        let io = |step| {
            let id = id.to_string();
            move |source| SnapshotError::Io { id, step, source }
        };
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SnapshotError::Exists { id: id.into() })
            }
            Err(e) => return Err(io("create snapshot directory")(e)),
        }
        let volatile = volatile && kind == SnapshotKind::Overlay;
        let rec = SnapshotRecord {
            container_id: id.into(),
            image_id: image.id.clone(),
            chain_ids,
            kind,
            volatile,
            boot_id: volatile.then(boot_id).flatten(),
        };
        let result = (|| {
            // `rootfs/` only for the copy fallback: an overlay is mounted from upper and work.
            let dirs: &[&str] = match kind {
                SnapshotKind::Overlay => &["upper", "work"],
                SnapshotKind::Copy => &["upper", "work", "rootfs"],
            };
            for d in dirs {
                fs::create_dir(dir.join(d)).map_err(io("create snapshot directory"))?;
            }
            // Recorded before the copy so the layers stay referenced while it runs. Renamed
            // into place, never seen half written, but not fsynced: like the container record
            // it belongs to, it only has to survive a crash of berth, not of the host (an
            // fsync here cost a millisecond of every `run` on this machine's disk).
            let json = serde_json::to_vec_pretty(&rec).expect("snapshot record serialises");
            let tmp = dir.join(format!(".tmp-{}-snapshot.json", std::process::id()));
            fs::write(&tmp, json)
                .and_then(|()| fs::rename(&tmp, dir.join("snapshot.json")))
                .map_err(io("write snapshot.json"))?;
            if kind == SnapshotKind::Copy {
                for c in &rec.chain_ids {
                    copy_layer(&self.store.layer_diff(c), &dir.join("rootfs"))
                        .map_err(io("copy layer"))?;
                }
            }
            Ok(self.paths(&dir, &rec))
        })();
        if result.is_err() {
            let _ = crate::extract::remove_tree(&dir);
        }
        result
    }

    fn paths(&self, dir: &Path, rec: &SnapshotRecord) -> Snapshot {
        Snapshot {
            kind: rec.kind,
            lowerdirs: rec
                .chain_ids
                .iter()
                .rev()
                .map(|c| self.store.layer_diff(c))
                .collect(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            rootfs: dir.join("rootfs"),
            volatile: rec.volatile,
        }
    }

    /// Before mounting a volatile overlay again: the kernel leaves `work/work/incompat/volatile`
    /// behind and refuses any later mount while it exists, because after a crash the upper
    /// directory may have lost writes. Within the boot that wrote it nothing was lost (the page
    /// cache is intact), so the marker goes. After a reboot the writable layer is reset to
    /// empty: a `--rm` container's changes are not kept across a host restart.
    fn prepare_volatile(&self, id: &str, rec: &SnapshotRecord) -> Result<(), SnapshotError> {
        if !rec.volatile {
            return Ok(());
        }
        let dir = self.dir(id)?;
        let io = |step| {
            let id = id.to_string();
            move |source| SnapshotError::Io { id, step, source }
        };
        let marker = dir.join("work/work/incompat/volatile");
        if fs::symlink_metadata(&marker).is_err() {
            return Ok(());
        }
        let now = boot_id();
        if now.is_some() && now == rec.boot_id {
            return crate::extract::remove_tree(&marker).map_err(io("remove the volatile marker"));
        }
        for d in ["upper", "work"] {
            crate::extract::remove_tree(&dir.join(d)).map_err(io("reset the writable layer"))?;
            fs::create_dir(dir.join(d)).map_err(io("reset the writable layer"))?;
        }
        let mut rec = rec.clone();
        rec.boot_id = now;
        let json = serde_json::to_vec_pretty(&rec).expect("snapshot record serialises");
        let tmp = dir.join(format!(".tmp-{}-snapshot.json", std::process::id()));
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, dir.join("snapshot.json")))
            .map_err(io("write snapshot.json"))
    }

    /// The snapshot of container `id`.
    pub fn get(&self, id: &str) -> Result<(SnapshotRecord, Snapshot), SnapshotError> {
        let dir = self.dir(id)?;
        let p = dir.join("snapshot.json");
        let b = fs::read(&p).map_err(|_| SnapshotError::NotFound { id: id.into() })?;
        let rec: SnapshotRecord =
            serde_json::from_slice(&b).map_err(|source| StoreError::Json { path: p, source })?;
        let snap = self.paths(&dir, &rec);
        Ok((rec, snap))
    }

    /// Mounts the snapshot's root filesystem on `target` (an overlay, or a bind mount of the
    /// copied rootfs).
    pub fn mount(&self, id: &str, target: &Path) -> Result<(), SnapshotError> {
        let (rec, s) = self.get(id)?;
        self.prepare_volatile(id, &rec)?;
        let merr = |source| SnapshotError::Mount {
            target: target.into(),
            source,
        };
        if s.kind == SnapshotKind::Copy {
            return rmount::mount_bind(&s.rootfs, target).map_err(|e| merr(errno(e)));
        }
        let userxattr = !rustix::process::geteuid().is_root();
        let (einval, enosys) = (
            rustix::io::Errno::INVAL.raw_os_error(),
            rustix::io::Errno::NOSYS.raw_os_error(),
        );
        match mount_overlay_new_api(&s, target, userxattr) {
            Ok(()) => Ok(()),
            // EINVAL from lowerdir+ (before 6.8) or ENOSYS (no fsopen): the one-string form.
            Err(e) if e.raw_os_error() == Some(einval) || e.raw_os_error() == Some(enosys) => {
                mount_overlay_legacy(&s, target, userxattr)
            }
            Err(e) => Err(merr(e)),
        }
    }

    /// Unmounts `target`; an already unmounted target is success.
    pub fn unmount(&self, target: &Path) -> Result<(), SnapshotError> {
        match rmount::unmount(target, UnmountFlags::NOFOLLOW) {
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(SnapshotError::Unmount {
                target: target.into(),
                source: errno(e),
            }),
        }
    }

    /// Deletes the snapshot of `id` (idempotent). The layers stay until garbage collection.
    pub fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        let dir = self.dir(id)?;
        match crate::extract::remove_tree(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SnapshotError::Io {
                id: id.into(),
                step: "remove snapshot",
                source,
            }),
        }
    }
}

/// An overlay superblock for `s` as a detached mount (fsmount(2)): a directory descriptor that
/// is attached nowhere, so nobody else can see or reach it, and that disappears when the last
/// descriptor into it is closed. `lowerdir_plus` false passes the layers as one `lowerdir`
/// string (kernels before 6.8).
fn overlay_detached(
    s: &Snapshot,
    userxattr: bool,
    lowerdir_plus: bool,
    attrs: MountAttrFlags,
) -> Result<OwnedFd, io::Error> {
    // 1. A filesystem context for overlay (fsopen(2)).
    let fsfd = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno)?;
    // 2. One lower layer per call, top first: no page-sized limit on the total.
    if lowerdir_plus {
        for l in &s.lowerdirs {
            rmount::fsconfig_set_string(&fsfd, "lowerdir+", l.as_os_str()).map_err(errno)?;
        }
    } else {
        let joined: Vec<String> = s
            .lowerdirs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        rmount::fsconfig_set_string(&fsfd, "lowerdir", joined.join(":")).map_err(errno)?;
    }
    rmount::fsconfig_set_string(&fsfd, "upperdir", s.upper.as_os_str()).map_err(errno)?;
    rmount::fsconfig_set_string(&fsfd, "workdir", s.work.as_os_str()).map_err(errno)?;
    if userxattr {
        rmount::fsconfig_set_flag(&fsfd, "userxattr").map_err(errno)?;
    }
    set_volatile(&fsfd, s)?;
    // 3. Create the superblock and make a detached mount of it.
    rmount::fsconfig_create(&fsfd).map_err(errno)?;
    rmount::fsmount(&fsfd, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(errno)
}

impl Snapshotter {
    /// The snapshot's root filesystem as a directory descriptor that is mounted nowhere (an
    /// overlay as a detached mount, or the copied rootfs opened `O_PATH`). The engine uses it
    /// to read or change a stopped container's files without a mount point anyone could see
    /// or leak; the caller must make sure the container is not started meanwhile (two overlay
    /// mounts of one upper directory are undefined behaviour).
    pub fn open_detached(&self, id: &str) -> Result<OwnedFd, SnapshotError> {
        let (rec, s) = self.get(id)?;
        self.prepare_volatile(id, &rec)?;
        let merr = |source| SnapshotError::Mount {
            target: s.rootfs.clone(),
            source,
        };
        if s.kind == SnapshotKind::Copy {
            return rustix::fs::open(
                &s.rootfs,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC
                    | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| merr(errno(e)));
        }
        let userxattr = !rustix::process::geteuid().is_root();
        let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
        match overlay_detached(&s, userxattr, true, attrs) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                overlay_detached(&s, userxattr, false, attrs)
            }
            other => other,
        }
        .map_err(merr)
    }
}

fn mount_overlay_new_api(s: &Snapshot, target: &Path, userxattr: bool) -> Result<(), io::Error> {
    // 1. A filesystem context for overlay (fsopen(2)).
    let fsfd = rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno)?;
    // 2. One lower layer per call, top first: no page-sized limit on the total.
    for l in &s.lowerdirs {
        rmount::fsconfig_set_string(&fsfd, "lowerdir+", l.as_os_str()).map_err(errno)?;
    }
    rmount::fsconfig_set_string(&fsfd, "upperdir", s.upper.as_os_str()).map_err(errno)?;
    rmount::fsconfig_set_string(&fsfd, "workdir", s.work.as_os_str()).map_err(errno)?;
    if userxattr {
        rmount::fsconfig_set_flag(&fsfd, "userxattr").map_err(errno)?;
    }
    set_volatile(&fsfd, s)?;
    // 3. Create the superblock, make a detached mount of it, attach it at the target.
    rmount::fsconfig_create(&fsfd).map_err(errno)?;
    let mfd = rmount::fsmount(
        &fsfd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(errno)?;
    rmount::move_mount(
        &mfd,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(errno)
}

fn mount_overlay_legacy(s: &Snapshot, target: &Path, userxattr: bool) -> Result<(), SnapshotError> {
    let lower: Vec<String> = s
        .lowerdirs
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        s.upper.display(),
        s.work.display()
    );
    if userxattr {
        data.push_str(",userxattr");
    }
    // `volatile` arrived in Linux 5.10, `lowerdir+` (the other path) in 6.8: every kernel that
    // takes this path and can mount overlay at all has it, except 5.4-5.9.
    if s.volatile && volatile_supported() {
        data.push_str(",volatile");
    }
    if data.len() >= 4096 {
        return Err(SnapshotError::TooManyLayers {
            layers: s.lowerdirs.len(),
        });
    }
    let data = std::ffi::CString::new(data).map_err(|e| SnapshotError::Mount {
        target: target.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    rmount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| SnapshotError::Mount {
        target: target.into(),
        source: errno(e),
    })
}

/// Adds `volatile` to an overlay context when the snapshot asks for it. A kernel without the
/// option (before 5.10) refuses it here, and the snapshot is then mounted without it.
fn set_volatile(fsfd: &OwnedFd, s: &Snapshot) -> Result<(), io::Error> {
    if !s.volatile {
        return Ok(());
    }
    match rmount::fsconfig_set_flag(fsfd, "volatile") {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

/// Whether this kernel's overlay knows `volatile` (Linux 5.10 and later): its module lists its
/// parameters, not its mount options, so the kernel release decides.
fn volatile_supported() -> bool {
    let rel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 10)
}

/// This boot's identity, which changes at every boot.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Copies one layer onto `dst`, applying overlay-form whiteouts (0:0 character devices remove,
/// opaque directories clear), for hosts without overlayfs. Hardlinks inside a layer become
/// copies. Never follows symlinks: `symlink_metadata` everywhere, symlinks recreated as such.
fn copy_layer(src: &Path, dst: &Path) -> io::Result<()> {
    let root = rustix::process::geteuid().is_root();
    for e in fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        let sp = e.path();
        let dp = dst.join(&name);
        let m = sp.symlink_metadata()?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            remove_any(&dp)?;
            continue;
        }
        if ft.is_dir() {
            let opaque = rustix::fs::lgetxattr(&sp, "trusted.overlay.opaque", &mut [0u8; 1])
                .or_else(|_| rustix::fs::lgetxattr(&sp, "user.overlay.opaque", &mut [0u8; 1]))
                .is_ok();
            let existing = dp.symlink_metadata().ok();
            if opaque || existing.as_ref().is_some_and(|m| !m.is_dir()) {
                remove_any(&dp)?;
            }
            if !dp.exists() {
                fs::create_dir(&dp)?;
            }
            copy_layer(&sp, &dp)?;
        } else {
            remove_any(&dp)?;
            if ft.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&sp)?, &dp)?;
            } else if ft.is_file() {
                fs::copy(&sp, &dp)?;
            } else {
                let kind = if ft.is_char_device() {
                    rustix::fs::FileType::CharacterDevice
                } else if ft.is_block_device() {
                    rustix::fs::FileType::BlockDevice
                } else if ft.is_fifo() {
                    rustix::fs::FileType::Fifo
                } else {
                    // sockets are not part of images
                    continue;
                };
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dp,
                    kind,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    m.rdev(),
                )
                .map_err(errno)?;
            }
        }
        if root {
            std::os::unix::fs::lchown(&dp, Some(m.uid()), Some(m.gid()))?;
        }
        if !ft.is_symlink() {
            fs::set_permissions(&dp, std::os::unix::fs::PermissionsExt::from_mode(m.mode()))?;
        }
        let t = rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &dp,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)?;
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match p.symlink_metadata() {
        Ok(_) => crate::extract::remove_tree(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
