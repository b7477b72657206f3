//! Volumes: Docker's `local` driver, daemonless.
//!
//! A volume is `<root>/volumes/<name>/`: `volume.json` (its record) and `_data/` (its content,
//! bound into containers). A volume created with `-o type=..,device=..,o=..` has no content of
//! its own: each container mounts that filesystem (or, with `type=none,o=bind`, binds that
//! device) at the volume's target.
//!
//! Concurrency: creating, removing and populating volumes, and creating the container records
//! that reference them, happen under one `flock(2)` on `<root>/volumes/.lock`; so `volume rm`
//! either sees the container that uses a volume or the container's `create` sees the volume
//! gone and creates it again. A volume is "in use" while any container record (running or
//! not, as Docker counts) mounts it.
//!
//! Copy-up (Docker's behaviour for a new or empty volume): the image's content at the target
//! is copied into the volume before the first start. The source is resolved inside the
//! container's rootfs with `openat2(RESOLVE_IN_ROOT)` and walked one descriptor at a time
//! without following symlinks, so an image cannot make Berth copy host files into a volume
//! (CVE-2022-23648); the destination is walked the same way, so a container writing into a
//! shared volume meanwhile cannot redirect the copy.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use crate::record::{self, Lock, RecordError};
use crate::Engine;

/// The only driver Berth has.
pub const LOCAL_DRIVER: &str = "local";

/// The label Docker (since 23.0) puts on anonymous volumes; `volume prune` without `--all`
/// removes only those.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What Berth keeps about a volume (`volume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The `local` driver's options: `type`, `device`, `o`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub created: i64,
    /// Made for a container (`-v /path`, an image's `Volumes`), not by name.
    #[serde(default)]
    pub anonymous: bool,
}

/// The filesystem a volume with `type`/`device`/`o` options mounts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FsMount {
    pub fstype: String,
    pub device: String,
    pub options: String,
}

impl VolumeRecord {
    /// `Some` for a volume that mounts a filesystem (or binds a host path) of its own.
    pub fn fs_mount(&self) -> Option<FsMount> {
        let fstype = self.options.get("type")?;
        Some(FsMount {
            fstype: fstype.clone(),
            device: self.options.get("device").cloned().unwrap_or_default(),
            options: self.options.get("o").cloned().unwrap_or_default(),
        })
    }
}

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("volume record {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error(
        "{0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
    )]
    InvalidName(String),
    #[error("volume {0} already exists with other options")]
    Conflict(String),
    #[error("volume driver {0:?} is not supported (only \"local\")")]
    Driver(String),
    #[error("invalid option key {0:?} for the local volume driver (known: type, device, o)")]
    OptionKey(String),
    #[error("invalid option {0:?}: expected KEY=VALUE")]
    Option(String),
    #[error("invalid label {0:?}: expected KEY=VALUE")]
    Label(String),
    #[error("the local volume options need both type and device (got {0})")]
    TypeWithoutDevice(String),
    #[error("removing volume {name}: volume is in use - [{}]", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("copying {path} of the image into volume {name}")]
    CopyUp {
        name: String,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_owned();
    move |source| VolumeError::Io { step, path, source }
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    record::valid_name(name)
}

/// The volumes directory of a Berth root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// `<root>/volumes` (created when first needed).
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("volumes"),
        }
    }

    fn ensure_dir(&self) -> Result<(), VolumeError> {
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))
    }

    /// The lock that orders volume changes against container creation. Taking it also
    /// sweeps what a `berth` killed while holding it left: volume directories without a
    /// record (a creation or removal cut short), invisible to every command otherwise.
    pub fn lock(&self) -> Result<Lock, VolumeError> {
        self.ensure_dir()?;
        let lock = record::lock_file(&self.dir.join(".lock"))?;
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let half =
                    name.to_str().is_some_and(valid_name) && !e.path().join("volume.json").exists();
                if half {
                    let _ = remove_tree(&e.path());
                }
            }
        }
        Ok(lock)
    }

    /// `<root>/volumes/<name>`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where the volume's content lives on the host (Docker's `Mountpoint`).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    /// The record of volume `name`. A directory without a record is a creation that never
    /// finished: no volume.
    pub fn load(&self, name: &str) -> Result<VolumeRecord, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let p = self.dir(name).join("volume.json");
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &p)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| VolumeError::Corrupt { path: p, source })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>, VolumeError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err("listing", &self.dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match self.load(&name) {
                Ok(v) => out.push(v),
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates the volume (the caller holds [`Self::lock`]). The record is written last, so a
    /// crash leaves no half volume.
    fn create_locked(&self, v: &VolumeRecord) -> Result<(), VolumeError> {
        let dir = self.dir(&v.name);
        let data = self.mountpoint(&v.name);
        fs::create_dir_all(&data).map_err(io_err("creating", &data))?;
        let json = serde_json::to_vec_pretty(v).expect("a volume record serialises");
        record::write_atomic(&dir.join("volume.json"), &json)?;
        Ok(())
    }

    /// Removes the volume and its content (the caller holds [`Self::lock`] and checked that
    /// no container uses it). The record goes first: a crash leaves no volume, only files.
    pub(crate) fn remove_locked(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.dir(name);
        let rec = dir.join("volume.json");
        match fs::remove_file(&rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &rec)(e)),
        }
        remove_tree(&dir)
    }
}

/// `rm -rf` that never crosses into another filesystem mounted below `dir` (a volume's content
/// is ours; whatever someone mounted inside it is not).
fn remove_tree(dir: &Path) -> Result<(), VolumeError> {
    use std::os::unix::fs::MetadataExt;
    let dev = match fs::symlink_metadata(dir) {
        Ok(m) => m.dev(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("removing", dir)(e)),
    };
    fn walk(p: &Path, dev: u64) -> io::Result<()> {
        let m = fs::symlink_metadata(p)?;
        if m.dev() != dev {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another filesystem is mounted here",
            ));
        }
        if m.is_dir() {
            for e in fs::read_dir(p)? {
                walk(&e?.path(), dev)?;
            }
            fs::remove_dir(p)
        } else {
            fs::remove_file(p)
        }
    }
    walk(dir, dev).map_err(io_err("removing", dir))
}

/// A random 64-hex name for an anonymous volume.
pub fn anonymous_name() -> Result<String, RecordError> {
    record::new_id()
}

/// Options of `berth volume create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Empty: a random (anonymous-style) name, as Docker does.
    pub name: Option<String>,
    pub driver: Option<String>,
    /// `KEY=VALUE`.
    pub labels: Vec<String>,
    /// `KEY=VALUE`: `type`, `device`, `o`.
    pub options: Vec<String>,
}

fn key_values(
    items: &[String],
    bad: impl Fn(String) -> VolumeError,
) -> Result<BTreeMap<String, String>, VolumeError> {
    let mut out = BTreeMap::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i.as_str(), ""));
        if k.is_empty() {
            return Err(bad(i.clone()));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Checks the `local` driver's options (moby `volume/local`): `type`, `device` and `o`, where
/// `type` and `device` go together.
pub fn check_options(options: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    for k in options.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(VolumeError::OptionKey(k.clone()));
        }
    }
    let has = |k: &str| options.get(k).is_some_and(|v| !v.is_empty());
    if has("type") != has("device") || (has("o") && !has("type")) {
        let given: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(VolumeError::TypeWithoutDevice(given.join(",")));
    }
    Ok(())
}

/// How a volume mount ended up (for [`Engine::ensure_volume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub record: VolumeRecord,
    /// This call created it.
    pub created: bool,
}

impl Engine {
    /// The volumes of this root.
    pub fn volumes(&self) -> Volumes {
        Volumes::new(&self.root)
    }

    /// `berth volume create`: creates a volume, or returns the existing one of that name when
    /// the options agree (Docker's behaviour).
    pub fn volume_create(&self, opts: &CreateOptions) -> Result<VolumeRecord, VolumeError> {
        let driver = opts.driver.clone().unwrap_or_else(|| LOCAL_DRIVER.into());
        if driver != LOCAL_DRIVER {
            return Err(VolumeError::Driver(driver));
        }
        let labels = key_values(&opts.labels, VolumeError::Label)?;
        let options = key_values(&opts.options, VolumeError::Option)?;
        check_options(&options)?;
        // Without a name the volume gets a random one, but is not anonymous: it was asked for
        // (Docker's `volume prune` keeps it too).
        let name = match &opts.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => anonymous_name()?,
        };
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        let vols = self.volumes();
        let _lock = vols.lock()?;
        match vols.load(&name) {
            Ok(v) if v.options == options && (labels.is_empty() || v.labels == labels) => Ok(v),
            Ok(_) => Err(VolumeError::Conflict(name)),
            Err(VolumeError::NotFound(_)) => {
                let v = VolumeRecord {
                    name,
                    driver,
                    labels,
                    options,
                    created: crate::now_secs(),
                    anonymous: false,
                };
                vols.create_locked(&v)?;
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }

    /// The volume a container mounts by `name` (`None`: a new anonymous one), created if it
    /// does not exist. The caller holds the volumes lock.
    pub(crate) fn ensure_volume(&self, name: Option<&str>) -> Result<Ensured, VolumeError> {
        let vols = self.volumes();
        let (name, anonymous) = match name {
            Some(n) => (n.to_owned(), false),
            None => (anonymous_name()?, true),
        };
        if !valid_name(&name) {
            return Err(VolumeError::InvalidName(name));
        }
        match vols.load(&name) {
            Ok(record) => Ok(Ensured {
                record,
                created: false,
            }),
            Err(VolumeError::NotFound(_)) => {
                let mut labels = BTreeMap::new();
                if anonymous {
                    labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
                }
                let record = VolumeRecord {
                    name,
                    driver: LOCAL_DRIVER.into(),
                    labels,
                    options: BTreeMap::new(),
                    created: crate::now_secs(),
                    anonymous,
                };
                vols.create_locked(&record)?;
                Ok(Ensured {
                    record,
                    created: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The ids of the containers (any state) that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, VolumeError> {
        Ok(self
            .records
            .list()?
            .into_iter()
            .filter(|r| {
                r.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == name)
            })
            .map(|r| r.id)
            .collect())
    }

    /// `berth volume rm`: refused while any container uses the volume (also with `force`,
    /// which only makes a missing volume no error, as in Docker).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let vols = self.volumes();
        let _lock = vols.lock()?;
        match vols.load(name) {
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                containers: users,
            });
        }
        vols.remove_locked(name)
    }

    /// Removes volume `name` if no container uses it (teardown of anonymous volumes and of
    /// volumes a failed `create` made). "Already gone" and "in use" are no error.
    pub(crate) fn volume_remove_if_unused(&self, name: &str) -> Result<(), VolumeError> {
        match self.volume_remove(name, true) {
            Err(VolumeError::InUse { .. }) => Ok(()),
            other => other,
        }
    }

    /// `berth volume prune`: removes unused volumes, only anonymous ones unless `all` (Docker
    /// since API 1.42), and only those `keep` does not exclude. Returns the removed names and
    /// the bytes they held.
    pub fn volume_prune(
        &self,
        all: bool,
        keep: impl Fn(&VolumeRecord) -> bool,
    ) -> Result<(Vec<String>, u64), VolumeError> {
        let vols = self.volumes();
        let _lock = vols.lock()?;
        let used: Vec<String> = self
            .records
            .list()?
            .into_iter()
            .flat_map(|r| r.mounts.into_iter())
            .filter(|m| m.kind == "volume")
            .map(|m| m.name)
            .collect();
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in vols.list()? {
            if used.contains(&v.name) || (!all && !v.anonymous) || keep(&v) {
                continue;
            }
            bytes += disk_usage(&vols.mountpoint(&v.name));
            vols.remove_locked(&v.name)?;
            removed.push(v.name);
        }
        Ok((removed, bytes))
    }

    /// Docker's copy-up: when the volume mounted at `target` is empty, copies what the image
    /// has at `target` (resolved inside `rootfs`) into it, with owners, modes and times, and
    /// gives the volume's root the owner and mode of the image's directory. Nothing to copy
    /// (no such path in the image, or not a directory) is no error.
    pub(crate) fn copy_up(
        &self,
        rootfs: &Path,
        target: &str,
        name: &str,
    ) -> Result<(), VolumeError> {
        let vols = self.volumes();
        let _lock = vols.lock()?;
        let dest = vols.mountpoint(name);
        let err = |source| VolumeError::CopyUp {
            name: name.to_owned(),
            path: target.to_owned(),
            source,
        };
        let Some(src) = open_dir_in_root(rootfs, target).map_err(err)? else {
            return Ok(());
        };
        let dst = rustix::fs::open(
            &dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        if !dir_is_empty(dst.as_fd()).map_err(err)? {
            return Ok(());
        }
        copy_dir(src.as_fd(), dst.as_fd(), 0).map_err(err)?;
        copy_attrs(src.as_fd(), dst.as_fd()).map_err(err)
    }
}

/// Bytes in regular files below `dir` (not crossing into other filesystems).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn walk(p: &Path, dev: u64) -> u64 {
        let Ok(m) = fs::symlink_metadata(p) else {
            return 0;
        };
        if m.dev() != dev {
            return 0;
        }
        if m.is_dir() {
            fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path(), dev)).sum())
                .unwrap_or(0)
        } else if m.is_file() {
            m.len()
        } else {
            0
        }
    }
    fs::symlink_metadata(dir)
        .map(|m| walk(dir, m.dev()))
        .unwrap_or(0)
}

/// Lexically normalises an absolute path inside a container (drops `.`, empty components and
/// a trailing slash); `None` when it is relative, is `/`, or climbs with `..` — no image or
/// command line needs `..` in a volume path, and CVE-2022-23648 used exactly that.
pub fn clean_container_path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut out = String::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(n.to_str()?);
            }
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Opens `path` below `rootfs` as a readable directory, every component resolved as if
/// `rootfs` were `/` (symlinks included) and never leaving it. `None` when it does not exist
/// or is not a directory.
fn open_dir_in_root(rootfs: &Path, path: &str) -> io::Result<Option<OwnedFd>> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    // Retried on EAGAIN: a rename or mount elsewhere raced a `..` step (openat2(2)).
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        ) {
            Ok(fd) => return Ok(Some(fd)),
            Err(rustix::io::Errno::AGAIN) if tries < 64 => tries += 1,
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn dir_is_empty(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let d = rustix::fs::Dir::read_from(dir)?;
    for e in d {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deeper trees than this are not copied (an image is not a fork bomb for Berth's stack).
const MAX_DEPTH: usize = 256;

/// Copies the entries of `src` into the empty directory `dst`, both descriptors, never
/// following a symlink on either side.
fn copy_dir(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other("directory tree too deep"));
    }
    let entries = rustix::fs::Dir::read_from(src)?;
    for e in entries {
        let e = e?;
        let name: &CStr = e.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_raw_mode(st.st_mode);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rustix::fs::mkdirat(dst, name, Mode::from_bits_truncate(0o700))?;
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_dir(s.as_fd(), d.as_fd(), depth + 1)?;
                copy_attrs(s.as_fd(), d.as_fd())?;
            }
            FileType::RegularFile => {
                let s = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let d = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut from = fs::File::from(s);
                let mut to = fs::File::from(d);
                io::copy(&mut from, &mut to)?;
                copy_attrs(from.as_fd(), to.as_fd())?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
                set_owner_and_times(dst, name, &st)?;
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                rustix::fs::mknodat(dst, name, kind, mode, st.st_rdev)?;
                set_owner_and_times(dst, name, &st)?;
            }
            // Sockets are not content.
            _ => {}
        }
    }
    Ok(())
}

fn timestamps(st: &rustix::fs::Stat) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Owner, then mode (chown clears set-id bits), then times, from `src` to `dst`.
fn copy_attrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::fstat(src)?;
    rustix::fs::fchown(
        dst,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode))?;
    rustix::fs::futimens(dst, &timestamps(&st))?;
    Ok(())
}

/// For entries that cannot be opened (symlinks, device nodes): owner and times by name,
/// without following a symlink.
fn set_owner_and_times(dir: BorrowedFd<'_>, name: &CStr, st: &rustix::fs::Stat) -> io::Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    rustix::fs::utimensat(dir, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_cleaned_and_traversal_refused() {
        assert_eq!(clean_container_path("/data/").as_deref(), Some("/data"));
        assert_eq!(clean_container_path("//a/./b").as_deref(), Some("/a/b"));
        assert_eq!(clean_container_path("/../../../etc/shadow"), None);
        assert_eq!(clean_container_path("/a/../b"), None);
        assert_eq!(clean_container_path("rel"), None);
        assert_eq!(clean_container_path("/"), None);
    }

    #[test]
    fn local_driver_options() {
        let m = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(check_options(&m(&[])).is_ok());
        assert!(check_options(&m(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m")
        ]))
        .is_ok());
        assert!(matches!(
            check_options(&m(&[("foo", "bar")])),
            Err(VolumeError::OptionKey(_))
        ));
        assert!(check_options(&m(&[("type", "tmpfs")])).is_err());
        assert!(check_options(&m(&[("o", "size=1m")])).is_err());
    }

    #[test]
    fn copy_up_stays_inside_the_rootfs_and_keeps_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        let host = t.path().join("host");
        fs::create_dir_all(rootfs.join("data/sub")).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), "host").unwrap();
        fs::write(rootfs.join("data/sub/f"), "image").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("data/link")).unwrap();
        // An absolute symlink to a host directory is resolved inside the rootfs, where it
        // does not exist: nothing to copy.
        std::os::unix::fs::symlink(&host, rootfs.join("evil")).unwrap();
        assert!(open_dir_in_root(&rootfs, host.to_str().unwrap())
            .unwrap()
            .is_none());
        assert!(open_dir_in_root(&rootfs, "/evil").unwrap().is_none());
        let src = open_dir_in_root(&rootfs, "/data").unwrap().unwrap();
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        let dst =
            rustix::fs::open(&out, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        copy_dir(src.as_fd(), dst.as_fd(), 0).unwrap();
        assert_eq!(fs::read_to_string(out.join("sub/f")).unwrap(), "image");
        assert_eq!(
            fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
    }
}
