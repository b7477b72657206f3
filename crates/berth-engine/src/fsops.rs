//! The container's filesystem seen from the host: `cp`, `diff`, `export`, `commit`.
//!
//! Where the files are:
//! - a **running** container is reached through `/proc/<init pid>/root` (its own mount
//!   namespace, so `cp` sees its volumes and tmpfs mounts as Docker's does); the descriptor is
//!   checked to be the same overlay superblock as the host-side rootfs mount, so a recycled
//!   pid cannot point us at another process's root. `export` uses the host-side rootfs mount
//!   (the image plus the container's changes, no volumes, as Docker exports).
//! - a **stopped** container (created, exited) gets its overlay as a *detached* mount
//!   (`fsmount(2)` without `move_mount`): a descriptor that is attached nowhere and vanishes
//!   when closed, so nothing can leak even if `berth` is killed. The record lock is held
//!   meanwhile, so `start` waits rather than mounting the same upper directory twice.
//!
//! Path safety (CVE-2018-15664, docs/decisions/0002-safe-path-resolution.md): every path inside
//! the container is resolved relative to the root descriptor with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` stops at the root and a symlink
//! (even one swapped in between two calls) is followed *inside* the root. Final components are
//! handled relative to their parent's descriptor with `*at` calls that never follow symlinks
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`). Archives are never unpacked by path string:
//! the same in-root resolution confines what a container-made archive writes on the host to
//! the destination directory. Files on procfs or sysfs are refused (Docker cannot copy them
//! either), so host root cannot be used to write through the container's `/proc`.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use berth_image::snapshot::{SnapshotError, SnapshotKind, Snapshotter};
use berth_image::store::{ImageRecord, Store, StoreError};
use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

use crate::record::{ContainerRecord, RecordError, Status};
use crate::Engine;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Why a filesystem command failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("could not find the file {path} in container {container}")]
    NoSuchPath { container: String, path: String },
    #[error("{path}: no such file or directory")]
    NoSuchHostPath { path: PathBuf },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("cannot copy a directory to a file: {path}")]
    DirectoryToFile { path: String },
    #[error("destination directory {path} does not exist")]
    MissingDestinationDir { path: String },
    #[error("destination {path} must be a directory")]
    DestinationNotDir { path: String },
    #[error("cannot overwrite directory {path} with a non-directory")]
    OverwriteDir { path: String },
    #[error("cannot overwrite non-directory {path} with a directory")]
    OverwriteNonDir { path: String },
    #[error("copying {path} is not supported: it is on procfs or sysfs")]
    Special { path: String },
    #[error("archive entry {entry:?} is refused: {reason}")]
    BadEntry { entry: String, reason: &'static str },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("reading the archive")]
    Archive(#[source] io::Error),
    #[error("writing the archive")]
    WriteArchive(#[source] io::Error),
    #[error("opening the image store")]
    Store(#[source] StoreError),
    #[error("mounting the root filesystem of container {id}")]
    Mount {
        id: String,
        #[source]
        source: SnapshotError,
    },
    #[error("container {id} has a copied root filesystem (no overlayfs): {what} needs overlay")]
    NoOverlay { id: String, what: &'static str },
    #[error("container {0} stopped while its filesystem was being opened")]
    Gone(String),
    #[error("the image {image} of container {id} is gone")]
    NoImage {
        id: String,
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("invalid reference format: {0}")]
    Reference(String),
    #[error("committing container {id}")]
    Commit {
        id: String,
        #[source]
        source: berth_image::archive::ArchiveError,
    },
    #[error("pausing container {id} for the commit")]
    Pause {
        id: String,
        #[source]
        source: Box<crate::manage::ManageError>,
    },
}

fn io_at(op: &'static str, path: impl Into<String>) -> impl FnOnce(Errno) -> FsError {
    let path = path.into();
    move |e| FsError::Io {
        op,
        path,
        source: io::Error::from_raw_os_error(e.raw_os_error()),
    }
}

/// A container's root directory, opened for reading or changing its files.
pub struct ContainerFs {
    root: OwnedFd,
    /// The container's id and name, for messages.
    pub id: String,
    pub name: String,
    // Dropped after `root` (field order): a stopped container's detached mount is gone
    // before anyone may start it.
    _lock: Option<crate::record::Lock>,
}

impl ContainerFs {
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// Which view of the container's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// What the container's processes see, mounts included (`cp`).
    Live,
    /// The root filesystem only: image layers plus the container's changes (`export`).
    Rootfs,
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rfs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A path inside the container made relative, lexically cleaned of `.` and `..` (which can
/// never climb above `/`).
pub fn clean_in_root(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn display_in_root(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` of `rel` below `root`, retried on the
/// EAGAIN the kernel returns when a rename or mount raced a `..` lookup.
fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut tries = 0;
    loop {
        match rfs::openat2(
            root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 128 => tries += 1,
            other => return other,
        }
    }
}

/// Refuses descriptors on procfs or sysfs.
fn refuse_special(fd: BorrowedFd<'_>, path: &str) -> Result<(), FsError> {
    let st = rfs::fstatfs(fd).map_err(io_at("checking the filesystem of", path))?;
    let t = st.f_type as i64;
    if t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC {
        return Err(FsError::Special { path: path.into() });
    }
    Ok(())
}

fn file_type(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

impl Engine {
    /// Opens the files of container `what` (see the module docs for which view is used when).
    pub fn open_fs(&self, what: &str, view: View) -> Result<ContainerFs, FsError> {
        let rec = self.reconcile(self.find(what)?);
        if let Some(fs) = self.open_running(&rec, view)? {
            return Ok(fs);
        }
        let lock = self.records.lock(&rec.id)?;
        let rec = self.records.load(&rec.id)?;
        if rec.state.status == Status::Running {
            drop(lock);
            return self
                .open_running(&rec, view)?
                .ok_or_else(|| FsError::Gone(rec.id.clone()));
        }
        let rootfs = rec.bundle.join("rootfs");
        // A rootfs already mounted on the host (a `run` between create and start) is used as
        // is: a second overlay on the same upper directory would be undefined behaviour.
        let root = if crate::lifecycle::is_mounted(&rootfs) {
            open_dir(&rootfs).map_err(io_at("opening", rootfs.display().to_string()))?
        } else {
            let store = Store::open(&self.root).map_err(FsError::Store)?;
            Snapshotter::new(store)
                .open_detached(&rec.id)
                .map_err(|source| FsError::Mount {
                    id: rec.id.clone(),
                    source,
                })?
        };
        Ok(ContainerFs {
            root,
            id: rec.id,
            name: rec.name,
            _lock: Some(lock),
        })
    }

    fn open_running(
        &self,
        rec: &ContainerRecord,
        view: View,
    ) -> Result<Option<ContainerFs>, FsError> {
        if rec.state.status != Status::Running || rec.state.pid <= 0 {
            return Ok(None);
        }
        let rootfs = rec.bundle.join("rootfs");
        let host = open_dir(&rootfs).map_err(io_at("opening", rootfs.display().to_string()))?;
        let root = match view {
            View::Rootfs => host,
            View::Live => {
                let proc_root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
                let fd = match open_dir(&proc_root) {
                    Ok(fd) => fd,
                    Err(_) => return Err(FsError::Gone(rec.id.clone())),
                };
                // The very directory our rootfs mount shows (same device and inode: the
                // overlay's root, or the bound directory of a copy snapshot), or the pid was
                // recycled. The device alone would not tell a copy snapshot from the host's
                // own filesystem.
                let (a, b) = (
                    rfs::fstat(&fd)
                        .map_err(io_at("inspecting", proc_root.display().to_string()))?,
                    rfs::fstat(&host).map_err(io_at("inspecting", rootfs.display().to_string()))?,
                );
                if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
                    return Err(FsError::Gone(rec.id.clone()));
                }
                fd
            }
        };
        Ok(Some(ContainerFs {
            root,
            id: rec.id.clone(),
            name: rec.name.clone(),
            _lock: None,
        }))
    }
}

// ---- writing archives

/// Writes a tar archive of files reached through descriptors, never following a symlink.
pub struct TarWriter<W: Write> {
    b: tar::Builder<W>,
    /// (dev, inode) of files with several links -> the archive name of the first one.
    links: HashMap<(u64, u64), PathBuf>,
    /// For `commit`: overlay whiteouts (0:0 character devices, opaque directories) become OCI
    /// `.wh.` entries.
    pub oci_whiteouts: bool,
    /// Archive names to leave out (with everything below them).
    pub skip: BTreeSet<PathBuf>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        Self {
            b,
            links: HashMap::new(),
            oci_whiteouts: false,
            skip: BTreeSet::new(),
        }
    }

    pub fn finish(self) -> Result<W, FsError> {
        self.b.into_inner().map_err(FsError::WriteArchive)
    }

    fn header(st: &rfs::Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Adds every entry of the directory `dir` under the archive prefix `arc` (empty: at the
    /// top of the archive).
    pub fn add_contents(&mut self, dir: BorrowedFd<'_>, arc: &Path) -> Result<(), FsError> {
        let d = rfs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_at("opening directory", arc.display().to_string()))?;
        for name in list_dir(&d, arc)? {
            self.add(d.as_fd(), &name, &arc.join(&name))?;
        }
        Ok(())
    }

    /// Adds `name` in directory `parent` as `arc`, recursively for a directory.
    pub fn add(&mut self, parent: BorrowedFd<'_>, name: &OsStr, arc: &Path) -> Result<(), FsError> {
        if self.skip.contains(arc) {
            return Ok(());
        }
        let shown = arc.display().to_string();
        let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed while we walk (a running container): it is simply not in the archive.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_at("inspecting", shown)(e)),
        };
        let w = |e| FsError::WriteArchive(e);
        match file_type(&st) {
            FileType::Directory => {
                let d = match rfs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(d) => d,
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
                    Err(e) => return Err(io_at("opening directory", shown)(e)),
                };
                let st = rfs::fstat(&d).map_err(io_at("inspecting", shown.clone()))?;
                let mut h = Self::header(&st, tar::EntryType::Directory);
                self.b.append_data(&mut h, arc, io::empty()).map_err(w)?;
                if self.oci_whiteouts && is_opaque(d.as_fd()) {
                    self.whiteout_file(&st, &arc.join(".wh..wh..opq"))?;
                }
                for child in list_dir(&d, arc)? {
                    self.add(d.as_fd(), &child, &arc.join(&child))?;
                }
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let mut h = Self::header(&st, tar::EntryType::Link);
                        self.b.append_link(&mut h, arc, &first).map_err(w)?;
                        return Ok(());
                    }
                    self.links.insert(key, arc.to_owned());
                }
                let f = match rfs::openat(
                    parent,
                    name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(f) => f,
                    Err(Errno::NOENT | Errno::LOOP) => return Ok(()),
                    Err(e) => return Err(io_at("opening", shown)(e)),
                };
                // What we opened is what we describe (it may have been swapped since statat).
                let st = rfs::fstat(&f).map_err(io_at("inspecting", shown.clone()))?;
                if file_type(&st) != FileType::RegularFile {
                    return Ok(());
                }
                let size = st.st_size.max(0) as u64;
                let mut h = Self::header(&st, tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes even if the file shrinks or grows meanwhile.
                let data = std::fs::File::from(f)
                    .take(size)
                    .chain(io::repeat(0))
                    .take(size);
                self.b.append_data(&mut h, arc, data).map_err(w)?;
            }
            FileType::Symlink => {
                let target = match rfs::readlinkat(parent, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => return Ok(()),
                    Err(e) => return Err(io_at("reading link", shown)(e)),
                };
                let mut h = Self::header(&st, tar::EntryType::Symlink);
                self.b
                    .append_link(&mut h, arc, OsStr::from_bytes(target.to_bytes()))
                    .map_err(w)?;
            }
            FileType::CharacterDevice if self.oci_whiteouts && st.st_rdev == 0 => {
                let wh = arc.with_file_name(format!(".wh.{}", name.to_string_lossy()));
                self.whiteout_file(&st, &wh)?;
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                let et = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(&st, et);
                if kind != FileType::Fifo {
                    h.set_device_major(rfs::major(st.st_rdev)).map_err(w)?;
                    h.set_device_minor(rfs::minor(st.st_rdev)).map_err(w)?;
                }
                self.b.append_data(&mut h, arc, io::empty()).map_err(w)?;
            }
            // Sockets do not go into archives (Docker and tar skip them too).
            _ => {}
        }
        Ok(())
    }

    fn whiteout_file(&mut self, st: &rfs::Stat, arc: &Path) -> Result<(), FsError> {
        let mut h = Self::header(st, tar::EntryType::Regular);
        h.set_mode(0o600);
        self.b
            .append_data(&mut h, arc, io::empty())
            .map_err(FsError::WriteArchive)
    }
}

/// The names in an open directory, sorted (archives come out the same every time).
fn list_dir(d: &OwnedFd, shown: &Path) -> Result<Vec<OsString>, FsError> {
    let mut names = Vec::new();
    let dir = rfs::Dir::read_from(d).map_err(io_at("listing", shown.display().to_string()))?;
    for e in dir {
        let e = e.map_err(io_at("listing", shown.display().to_string()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

fn is_opaque(d: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 1];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(rfs::fgetxattr(d, *n, &mut v), Ok(1) if v[0] == b'y'))
}

// ---- unpacking archives

/// Unpacks archives below a root descriptor: every entry's parent is resolved in the root,
/// every final component created without following symlinks.
pub struct Unpacker<'a> {
    pub root: BorrowedFd<'a>,
    /// The directory (relative to the root) the archive's names are relative to.
    pub base: PathBuf,
    /// `-a`: give entries the archive's uid/gid; otherwise they belong to the caller (root).
    pub preserve_owner: bool,
}

fn entry_rel(raw: &[u8]) -> Result<PathBuf, FsError> {
    let mut out = PathBuf::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(FsError::BadEntry {
                    entry: String::from_utf8_lossy(raw).into_owned(),
                    reason: "it contains ..",
                })
            }
            n => out.push(OsStr::from_bytes(n)),
        }
    }
    Ok(out)
}

impl Unpacker<'_> {
    /// Opens directory `rel` in the root, creating what is missing (mode 0755).
    fn ensure_dir(&self, rel: &Path) -> Result<OwnedFd, FsError> {
        match open_in_root(self.root, rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) => {
                let (parent, name) = match (rel.parent(), rel.file_name()) {
                    (Some(p), Some(n)) => (p, n),
                    _ => return Err(io_at("opening", display_in_root(rel))(Errno::NOENT)),
                };
                let pfd = self.ensure_dir(parent)?;
                match rfs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_at("creating directory", display_in_root(rel))(e)),
                }
                open_in_root(self.root, rel, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(io_at("opening", display_in_root(rel)))
            }
            Err(e) => Err(io_at("opening", display_in_root(rel))(e)),
        }
    }

    /// Unpacks the (possibly compressed) archive `r`.
    pub fn unpack<R: Read>(&self, r: R) -> Result<(), FsError> {
        let r = berth_image::extract::decompress(r).map_err(FsError::Archive)?;
        let mut ar = tar::Archive::new(r);
        for entry in ar.entries().map_err(FsError::Archive)? {
            let mut e = entry.map_err(FsError::Archive)?;
            let raw = e.path_bytes().into_owned();
            let rel = entry_rel(&raw)?;
            let full = self.base.join(&rel);
            let (parent, name) = match (full.parent(), full.file_name()) {
                (Some(p), Some(n)) => (p.to_owned(), n.to_owned()),
                // The destination directory itself ("./"): it exists already.
                _ => continue,
            };
            let shown = display_in_root(&full);
            let pfd = self.ensure_dir(&parent)?;
            refuse_special(pfd.as_fd(), &shown)?;
            let h = e.header().clone();
            let mode = Mode::from_raw_mode(h.mode().map_err(FsError::Archive)? & 0o7777);
            let owner = if self.preserve_owner {
                Some((
                    Uid::from_raw(h.uid().map_err(FsError::Archive)? as u32),
                    Gid::from_raw(h.gid().map_err(FsError::Archive)? as u32),
                ))
            } else {
                None
            };
            let mtime = h.mtime().unwrap_or(0) as i64;
            let times = rfs::Timestamps {
                last_access: rfs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
                last_modification: rfs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
            };
            let existing = rfs::statat(&pfd, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
            let existing_dir = existing
                .as_ref()
                .is_some_and(|st| file_type(st) == FileType::Directory);
            let et = h.entry_type();
            if et.is_dir() {
                match existing {
                    Some(_) if existing_dir => {}
                    Some(_) => return Err(FsError::OverwriteNonDir { path: shown }),
                    None => rfs::mkdirat(&pfd, &name, Mode::from_raw_mode(0o700))
                        .map_err(io_at("creating directory", shown.clone()))?,
                }
                let d = rfs::openat(
                    &pfd,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_at("opening directory", shown.clone()))?;
                if let Some((u, g)) = owner {
                    rfs::fchown(&d, Some(u), Some(g)).map_err(io_at("chown", shown.clone()))?;
                }
                rfs::fchmod(&d, mode).map_err(io_at("chmod", shown.clone()))?;
                continue;
            }
            if !(et.is_file()
                || et.is_symlink()
                || et.is_hard_link()
                || et.is_character_special()
                || et.is_block_special()
                || et.is_fifo())
            {
                // Extension headers are consumed by the tar reader; anything else (sparse
                // files, sockets) is not something Berth writes or Docker copies.
                continue;
            }
            if existing_dir {
                return Err(FsError::OverwriteDir { path: shown });
            }
            if existing.is_some() {
                rfs::unlinkat(&pfd, &name, AtFlags::empty())
                    .map_err(io_at("replacing", shown.clone()))?;
            }
            if et.is_file() {
                let f = rfs::openat(
                    &pfd,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_at("creating", shown.clone()))?;
                let mut file = std::fs::File::from(f);
                io::copy(&mut e, &mut file).map_err(|source| FsError::Io {
                    op: "writing",
                    path: shown.clone(),
                    source,
                })?;
                // chown before chmod: chown clears the set-id bits.
                if let Some((u, g)) = owner {
                    rfs::fchown(&file, Some(u), Some(g)).map_err(io_at("chown", shown.clone()))?;
                }
                rfs::fchmod(&file, mode).map_err(io_at("chmod", shown.clone()))?;
                rfs::futimens(&file, &times).map_err(io_at("setting times of", shown))?;
                continue;
            }
            if et.is_symlink() {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                rfs::symlinkat(OsStr::from_bytes(&target), &pfd, &name)
                    .map_err(io_at("creating symlink", shown.clone()))?;
            } else if et.is_hard_link() {
                let t = e.link_name_bytes().unwrap_or_default().into_owned();
                let target = self.base.join(entry_rel(&t)?);
                let tfd = open_in_root(self.root, &target, OFlags::PATH | OFlags::NOFOLLOW)
                    .map_err(io_at("opening link target", display_in_root(&target)))?;
                // linkat(AT_EMPTY_PATH) links the inode we resolved in the root, whatever
                // the path says by now.
                rfs::linkat(&tfd, "", &pfd, &name, AtFlags::EMPTY_PATH)
                    .map_err(io_at("linking", shown.clone()))?;
                continue;
            } else {
                let kind = if et.is_character_special() {
                    FileType::CharacterDevice
                } else if et.is_block_special() {
                    FileType::BlockDevice
                } else {
                    FileType::Fifo
                };
                let dev = rfs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                rfs::mknodat(&pfd, &name, kind, mode, dev)
                    .map_err(io_at("creating node", shown.clone()))?;
                rfs::chmodat(&pfd, &name, mode, AtFlags::empty())
                    .map_err(io_at("chmod", shown.clone()))?;
            }
            if let Some((u, g)) = owner {
                rfs::chownat(&pfd, &name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_at("chown", shown.clone()))?;
            }
            rfs::utimensat(&pfd, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_at("setting times of", shown))?;
        }
        Ok(())
    }
}

// ---- cp

/// One side of `berth cp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpEndpoint {
    /// `CONTAINER:PATH`.
    Container { container: String, path: String },
    /// A path on the host.
    Host(PathBuf),
    /// `-`: a tar stream on standard input or output.
    Stream,
}

impl CpEndpoint {
    /// Docker's reading of a `cp` argument: `-`, a local path (absolute, or starting with `.`,
    /// or without a colon), or `CONTAINER:PATH`.
    pub fn parse(arg: &str) -> CpEndpoint {
        if arg == "-" {
            return CpEndpoint::Stream;
        }
        if arg.starts_with('/') || arg.starts_with('.') {
            return CpEndpoint::Host(arg.into());
        }
        match arg.split_once(':') {
            Some((c, p)) if !c.is_empty() => CpEndpoint::Container {
                container: c.into(),
                path: p.into(),
            },
            _ => CpEndpoint::Host(arg.into()),
        }
    }
}

/// `cp` flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpOptions {
    /// `-a`: keep uid/gid.
    pub archive: bool,
    /// `-L`: follow a symlink given as the source.
    pub follow: bool,
}

/// A path as `cp` reads it: the cleaned path plus Docker's trailing `/` and `/.` markers.
struct CpPath {
    rel: PathBuf,
    trailing_sep: bool,
    contents: bool,
}

fn cp_path(s: &str) -> CpPath {
    CpPath {
        rel: clean_in_root(s),
        trailing_sep: s.ends_with('/') || s.ends_with("/.") || s == ".",
        contents: s.ends_with("/.") || s == ".",
    }
}

/// A resolved copy source: its parent directory's descriptor and its name there.
struct Source {
    parent: OwnedFd,
    name: OsString,
    is_dir: bool,
    /// Copy the directory's contents rather than the directory (`SRC/.`).
    contents: bool,
}

impl Source {
    /// Writes the source as `top`, or its contents at the top of the archive (`None`).
    fn write<W: Write>(&self, tw: &mut TarWriter<W>, top: Option<&OsStr>) -> Result<(), FsError> {
        match top {
            Some(top) => tw.add(self.parent.as_fd(), &self.name, Path::new(top)),
            None => {
                let d = rfs::openat(
                    &self.parent,
                    &self.name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_at("opening", self.name.to_string_lossy().into_owned()))?;
                tw.add_contents(d.as_fd(), Path::new(""))
            }
        }
    }
}

/// What is at a copy destination.
enum DestKind {
    Missing,
    Dir,
    File,
}

/// Follows symlinks of `rel` inside the root, one at a time, to the final non-link path.
fn follow_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<PathBuf, Errno> {
    let mut cur = rel.to_owned();
    for _ in 0..40 {
        let (parent, name) = match (cur.parent(), cur.file_name()) {
            (Some(p), Some(n)) => (p.to_owned(), n.to_owned()),
            _ => return Ok(cur),
        };
        let pfd = open_in_root(root, &parent, OFlags::PATH | OFlags::DIRECTORY)?;
        let st = rfs::statat(&pfd, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if file_type(&st) != FileType::Symlink {
            return Ok(cur);
        }
        let t = rfs::readlinkat(&pfd, &name, Vec::new())?;
        let t = OsStr::from_bytes(t.to_bytes());
        let next = if t.as_bytes().starts_with(b"/") {
            clean_in_root(&t.to_string_lossy())
        } else {
            clean_in_root(&parent.join(t).to_string_lossy())
        };
        cur = next;
    }
    Err(Errno::LOOP)
}

impl Engine {
    fn container_source(
        &self,
        fs: &ContainerFs,
        path: &str,
        follow: bool,
    ) -> Result<Source, FsError> {
        let cp = cp_path(path);
        let not_found = || FsError::NoSuchPath {
            container: fs.name.clone(),
            path: path.into(),
        };
        let rel = if follow {
            follow_in_root(fs.root(), &cp.rel).map_err(|_| not_found())?
        } else {
            cp.rel.clone()
        };
        let (parent_rel, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p.to_owned(), n.to_owned()),
            // "/": the root's contents.
            _ => (PathBuf::new(), OsString::from(".")),
        };
        let parent = open_in_root(fs.root(), &parent_rel, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| match e {
                Errno::NOENT | Errno::NOTDIR => not_found(),
                e => io_at("opening", path)(e),
            })?;
        let st = rfs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| match e {
            Errno::NOENT => not_found(),
            e => io_at("inspecting", path)(e),
        })?;
        let target = rfs::openat(
            &parent,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_at("opening", path))?;
        refuse_special(target.as_fd(), path)?;
        let is_dir = file_type(&st) == FileType::Directory;
        if cp.trailing_sep && !is_dir {
            return Err(FsError::NotADirectory { path: path.into() });
        }
        Ok(Source {
            parent,
            name: if rel.file_name().is_none() {
                OsString::from(".")
            } else {
                name
            },
            is_dir,
            contents: cp.contents || rel.file_name().is_none(),
        })
    }
}

fn host_source(path: &Path, follow: bool) -> Result<Source, FsError> {
    let s = path.to_string_lossy();
    let trailing_sep = s.ends_with('/') || s.ends_with("/.");
    let contents = s.ends_with("/.") || s == ".";
    let path = if follow {
        std::fs::canonicalize(path).map_err(|_| FsError::NoSuchHostPath { path: path.into() })?
    } else {
        std::path::absolute(path).map_err(|source| FsError::Io {
            op: "resolving",
            path: s.to_string(),
            source,
        })?
    };
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p.to_owned(), n.to_owned()),
        _ => (path.clone(), OsString::from(".")),
    };
    let pfd = open_dir(&parent).map_err(|_| FsError::NoSuchHostPath { path: path.clone() })?;
    let st = rfs::statat(&pfd, &name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|_| FsError::NoSuchHostPath { path: path.clone() })?;
    let is_dir = file_type(&st) == FileType::Directory;
    if trailing_sep && !is_dir {
        return Err(FsError::NotADirectory {
            path: s.into_owned(),
        });
    }
    Ok(Source {
        parent: pfd,
        name,
        is_dir,
        contents,
    })
}

/// Docker's rules for where a copy lands: the directory to unpack into and the name the
/// source gets there (`None`: the source directory's contents go straight in).
fn placement(
    src: &Source,
    dest_rel: &Path,
    dest_kind: DestKind,
    dest_trailing_sep: bool,
    shown: &str,
) -> Result<(PathBuf, Option<OsString>), FsError> {
    let (dparent, dname) = (
        dest_rel.parent().map(Path::to_owned).unwrap_or_default(),
        dest_rel.file_name().map(OsStr::to_owned),
    );
    match (src.is_dir, dest_kind) {
        (_, DestKind::Dir) => {
            if src.contents && src.is_dir {
                Ok((dest_rel.to_owned(), None))
            } else {
                Ok((dest_rel.to_owned(), Some(src.name.clone())))
            }
        }
        (true, DestKind::File) => Err(FsError::DirectoryToFile { path: shown.into() }),
        (false, DestKind::File) => Ok((dparent, dname)),
        (false, DestKind::Missing) if dest_trailing_sep => {
            Err(FsError::MissingDestinationDir { path: shown.into() })
        }
        (_, DestKind::Missing) => match dname {
            Some(n) => Ok((dparent, Some(n))),
            None => Err(FsError::MissingDestinationDir { path: shown.into() }),
        },
    }
}

/// Streams `src` as a tar archive (its top entry named `top`) into `unpack`, through a pipe
/// and a second thread.
fn pipe_copy(
    src: &Source,
    top: Option<&OsStr>,
    unpack: impl FnOnce(&mut dyn Read) -> Result<(), FsError>,
) -> Result<(), FsError> {
    let (mut r, w) = io::pipe().map_err(|source| FsError::Io {
        op: "creating",
        path: "a pipe".into(),
        source,
    })?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let mut tw = TarWriter::new(w);
            src.write(&mut tw, top)?;
            tw.finish().map(drop)
        });
        let unpacked = unpack(&mut r);
        // Unblock a writer stuck on a full pipe if the unpacking stopped early.
        drop(r);
        let written = writer.join().unwrap_or_else(|_| {
            Err(FsError::WriteArchive(io::Error::other(
                "the archive writer panicked",
            )))
        });
        unpacked.and(written)
    })
}

impl Engine {
    /// `berth cp SRC DEST`; `stdin`/`stdout` serve `-`.
    pub fn copy(
        &self,
        src: &CpEndpoint,
        dest: &CpEndpoint,
        opts: CpOptions,
        stdin: &mut dyn Read,
        stdout: &mut dyn Write,
    ) -> Result<(), FsError> {
        match (src, dest) {
            (CpEndpoint::Container { container, path }, CpEndpoint::Stream) => {
                let fs = self.open_fs(container, View::Live)?;
                let source = self.container_source(&fs, path, opts.follow)?;
                let top = if source.contents {
                    None
                } else {
                    Some(source.name.clone())
                };
                let mut tw = TarWriter::new(stdout);
                source.write(&mut tw, top.as_deref())?;
                tw.finish()?.flush().map_err(FsError::WriteArchive)
            }
            (CpEndpoint::Stream, CpEndpoint::Container { container, path }) => {
                let fs = self.open_fs(container, View::Live)?;
                let rel = clean_in_root(path);
                let shown = format!("{container}:{path}");
                match open_in_root(fs.root(), &rel, OFlags::PATH) {
                    Ok(fd) => {
                        let st = rfs::fstat(&fd).map_err(io_at("inspecting", path.clone()))?;
                        if file_type(&st) != FileType::Directory {
                            return Err(FsError::DestinationNotDir { path: shown });
                        }
                        refuse_special(fd.as_fd(), path)?;
                    }
                    Err(Errno::NOENT | Errno::NOTDIR) => {
                        return Err(FsError::NoSuchPath {
                            container: fs.name.clone(),
                            path: path.clone(),
                        })
                    }
                    Err(e) => return Err(io_at("opening", path.clone())(e)),
                }
                Unpacker {
                    root: fs.root(),
                    base: rel,
                    preserve_owner: opts.archive,
                }
                .unpack(stdin)
            }
            (CpEndpoint::Container { container, path }, CpEndpoint::Host(dest)) => {
                let fs = self.open_fs(container, View::Live)?;
                let source = self.container_source(&fs, path, opts.follow)?;
                let ds = dest.to_string_lossy();
                let trailing = ds.ends_with('/') || ds.ends_with("/.");
                let dest_abs = std::path::absolute(dest).map_err(|source| FsError::Io {
                    op: "resolving",
                    path: ds.to_string(),
                    source,
                })?;
                let kind = match std::fs::metadata(&dest_abs) {
                    Ok(m) if m.is_dir() => DestKind::Dir,
                    Ok(_) => DestKind::File,
                    Err(_) => DestKind::Missing,
                };
                let (dir, top) = placement(&source, &dest_abs, kind, trailing, &ds)?;
                let dir_fd =
                    open_dir(&dir).map_err(|_| FsError::NoSuchHostPath { path: dir.clone() })?;
                pipe_copy(&source, top.as_deref(), |r| {
                    Unpacker {
                        root: dir_fd.as_fd(),
                        base: PathBuf::new(),
                        preserve_owner: opts.archive,
                    }
                    .unpack(r)
                })
            }
            (CpEndpoint::Host(src), CpEndpoint::Container { container, path }) => {
                let source = host_source(src, opts.follow)?;
                let fs = self.open_fs(container, View::Live)?;
                let cp = cp_path(path);
                let shown = format!("{container}:{path}");
                // The destination's symlinks are followed inside the root, as Docker does.
                let rel = follow_in_root(fs.root(), &cp.rel).unwrap_or(cp.rel.clone());
                let kind = match open_in_root(fs.root(), &rel, OFlags::PATH) {
                    Ok(fd) => {
                        refuse_special(fd.as_fd(), path)?;
                        let st = rfs::fstat(&fd).map_err(io_at("inspecting", path.clone()))?;
                        if file_type(&st) == FileType::Directory {
                            DestKind::Dir
                        } else {
                            DestKind::File
                        }
                    }
                    Err(Errno::NOENT) => DestKind::Missing,
                    Err(Errno::NOTDIR) => {
                        return Err(FsError::NotADirectory { path: shown });
                    }
                    Err(e) => return Err(io_at("opening", path.clone())(e)),
                };
                let (dir, top) = placement(&source, &rel, kind, cp.trailing_sep, &shown)?;
                match open_in_root(fs.root(), &dir, OFlags::PATH | OFlags::DIRECTORY) {
                    Ok(_) => {}
                    Err(Errno::NOENT | Errno::NOTDIR) => {
                        return Err(FsError::NoSuchPath {
                            container: fs.name.clone(),
                            path: display_in_root(&dir),
                        })
                    }
                    Err(e) => return Err(io_at("opening", display_in_root(&dir))(e)),
                }
                pipe_copy(&source, top.as_deref(), |r| {
                    Unpacker {
                        root: fs.root(),
                        base: dir,
                        preserve_owner: opts.archive,
                    }
                    .unpack(r)
                })
            }
            (CpEndpoint::Container { .. }, CpEndpoint::Container { .. }) => {
                Err(FsError::BadEntry {
                    entry: String::new(),
                    reason: "copying between containers is not supported",
                })
            }
            _ => Err(FsError::BadEntry {
                entry: String::new(),
                reason: "one side of cp must be CONTAINER:PATH",
            }),
        }
    }

    /// `berth export`: the container's root filesystem as a tar archive.
    pub fn export(&self, what: &str, out: &mut dyn Write) -> Result<(), FsError> {
        let fs = self.open_fs(what, View::Rootfs)?;
        let mut tw = TarWriter::new(out);
        tw.add_contents(fs.root(), Path::new(""))?;
        tw.finish()?.flush().map_err(FsError::WriteArchive)
    }
}

// ---- diff and commit

/// One line of `berth diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `A`, `C` or `D`.
    pub kind: char,
    pub path: String,
}

/// A container's upper directory and the image layers below it, as descriptors.
struct Layers {
    upper: OwnedFd,
    lowers: Vec<OwnedFd>,
}

impl Layers {
    /// Whether `rel` exists in the image (the lower layers, top first, honouring whiteouts,
    /// opaque directories and non-directories that hide what is below them).
    fn in_lower(&self, rel: &Path) -> bool {
        let comps: Vec<&OsStr> = rel.iter().collect();
        for l in &self.lowers {
            let mut cur = rfs::openat(
                l,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let mut stop_below = false;
            for (i, c) in comps.iter().enumerate() {
                let Ok(dir) = cur else { break };
                let st = match rfs::statat(&dir, *c, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(_) => break,
                };
                let ft = file_type(&st);
                if ft == FileType::CharacterDevice && st.st_rdev == 0 {
                    return false;
                }
                if i + 1 == comps.len() {
                    return true;
                }
                if ft != FileType::Directory {
                    return false;
                }
                cur = rfs::openat(
                    &dir,
                    *c,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                if let Ok(d) = &cur {
                    stop_below |= is_opaque(d.as_fd());
                }
            }
            if stop_below {
                return false;
            }
        }
        false
    }
}

impl Engine {
    fn layers(&self, rec: &ContainerRecord, what: &'static str) -> Result<Layers, FsError> {
        let store = Store::open(&self.root).map_err(FsError::Store)?;
        let (_, snap) = Snapshotter::new(store)
            .get(&rec.id)
            .map_err(|source| FsError::Mount {
                id: rec.id.clone(),
                source,
            })?;
        if snap.kind != SnapshotKind::Overlay {
            return Err(FsError::NoOverlay {
                id: rec.id.clone(),
                what,
            });
        }
        let open = |p: &Path| open_dir(p).map_err(io_at("opening", p.display().to_string()));
        Ok(Layers {
            upper: open(&snap.upper)?,
            lowers: snap
                .lowerdirs
                .iter()
                .map(|p| open(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Mount points the runtime created in the upper directory (empty files and directories
    /// at the bundle's mount destinations that the image lacks): Docker keeps those in a
    /// hidden init layer, so they are neither changes nor committed.
    fn mount_stubs(&self, rec: &ContainerRecord, layers: &Layers) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let Ok(b) = std::fs::read(rec.bundle.join("config.json")) else {
            return out;
        };
        let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&b) else {
            return out;
        };
        for m in spec["mounts"].as_array().cloned().unwrap_or_default() {
            let Some(dest) = m["destination"].as_str() else {
                continue;
            };
            let rel = clean_in_root(dest);
            if rel.as_os_str().is_empty() || layers.in_lower(&rel) {
                continue;
            }
            // Every missing component was created for the mount, not only the last.
            let mut prefix = PathBuf::new();
            for c in rel.iter() {
                prefix.push(c);
                if layers.in_lower(&prefix) {
                    continue;
                }
                if let Ok(fd) = open_in_root(layers.upper.as_fd(), &prefix, OFlags::PATH) {
                    let st = rfs::fstat(&fd).ok();
                    let empty_file = st
                        .as_ref()
                        .is_some_and(|s| file_type(s) == FileType::RegularFile && s.st_size == 0);
                    let dir = st
                        .as_ref()
                        .is_some_and(|s| file_type(s) == FileType::Directory);
                    if empty_file || dir {
                        out.insert(prefix.clone());
                    }
                }
                break;
            }
        }
        // A stub directory only counts while nothing else is inside it.
        let all = out.clone();
        out.retain(|p| {
            let Ok(d) = open_in_root(layers.upper.as_fd(), p, OFlags::RDONLY | OFlags::DIRECTORY)
            else {
                return true;
            };
            list_dir(&d, p)
                .map(|names| names.iter().all(|n| all.contains(&p.join(n))))
                .unwrap_or(true)
        });
        out
    }

    /// `berth diff`: what changed in the container's filesystem compared to its image.
    pub fn diff(&self, what: &str) -> Result<Vec<Change>, FsError> {
        let rec = self.find(what)?;
        let layers = self.layers(&rec, "diff")?;
        let skip = self.mount_stubs(&rec, &layers);
        let mut out = Vec::new();
        walk_changes(
            &layers,
            layers.upper.as_fd(),
            Path::new(""),
            false,
            &skip,
            &mut out,
        )?;
        Ok(out)
    }

    /// `berth commit`: a new image from the container's changes. Returns the new image.
    pub fn commit(
        &self,
        what: &str,
        opts: &berth_image::commit::CommitOptions,
        pause: bool,
    ) -> Result<ImageRecord, FsError> {
        berth_image::commit::check_changes(&opts.changes).map_err(|source| FsError::Commit {
            id: what.into(),
            source,
        })?;
        let rec = self.reconcile(self.find(what)?);
        let store = Store::open(&self.root).map_err(FsError::Store)?;
        let parent = rec
            .image_id
            .parse()
            .map_err(|_| StoreError::NotFound {
                reference: rec.image_id.clone(),
            })
            .and_then(|d| store.record(&d))
            .map_err(|source| FsError::NoImage {
                id: rec.id.clone(),
                image: rec.image.clone(),
                source,
            })?;
        let layers = self.layers(&rec, "commit")?;
        let mut opts = opts.clone();
        opts.container = rec.id.clone();
        let tar_path =
            store
                .tmp_dir()
                .join(format!("commit-{}-{}.tar", rec.id, std::process::id()));
        // Docker pauses a running container so the layer is one consistent moment.
        let paused = pause && rec.state.status == Status::Running && !rec.state.paused;
        if paused {
            self.pause(&rec.id).map_err(|source| FsError::Pause {
                id: rec.id.clone(),
                source: Box::new(source),
            })?;
        }
        let written = (|| {
            let f = std::fs::File::create(&tar_path).map_err(|source| FsError::Io {
                op: "creating",
                path: tar_path.display().to_string(),
                source,
            })?;
            let mut tw = TarWriter::new(io::BufWriter::new(f));
            tw.oci_whiteouts = true;
            tw.skip = self.mount_stubs(&rec, &layers);
            tw.add_contents(layers.upper.as_fd(), Path::new(""))?;
            tw.finish()?.flush().map_err(FsError::WriteArchive)
        })();
        if paused {
            let _ = self.unpause(&rec.id);
        }
        let result = written.and_then(|()| {
            berth_image::commit::commit(
                &store,
                &parent,
                &tar_path,
                &opts,
                &berth_image::extract::ExtractOptions::default(),
            )
            .map_err(|source| FsError::Commit {
                id: rec.id.clone(),
                source,
            })
        });
        let _ = std::fs::remove_file(&tar_path);
        result
    }
}

fn walk_changes(
    layers: &Layers,
    dir: BorrowedFd<'_>,
    rel: &Path,
    under_opaque: bool,
    skip: &BTreeSet<PathBuf>,
    out: &mut Vec<Change>,
) -> Result<bool, FsError> {
    let d = rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_at("opening", display_in_root(rel)))?;
    let mut reported = false;
    for name in list_dir(&d, rel)? {
        let p = rel.join(&name);
        if skip.contains(&p) {
            continue;
        }
        let Ok(st) = rfs::statat(&d, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let ft = file_type(&st);
        let shown = display_in_root(&p);
        if ft == FileType::CharacterDevice && st.st_rdev == 0 {
            out.push(Change {
                kind: 'D',
                path: shown,
            });
            reported = true;
            continue;
        }
        let existed = !under_opaque && layers.in_lower(&p);
        if ft == FileType::Directory {
            let Ok(sub) = rfs::openat(
                &d,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let opaque = is_opaque(sub.as_fd());
            let at = out.len();
            let inner = walk_changes(layers, sub.as_fd(), &p, under_opaque || opaque, skip, out)?;
            let empty = list_dir(&sub, &p).map(|n| n.is_empty()).unwrap_or(false);
            // A directory copied up only for stubs below it is not a change.
            if !existed || inner || empty || opaque {
                out.insert(
                    at,
                    Change {
                        kind: if existed { 'C' } else { 'A' },
                        path: shown,
                    },
                );
                reported = true;
            }
            continue;
        }
        out.push(Change {
            kind: if existed { 'C' } else { 'A' },
            path: shown,
        });
        reported = true;
    }
    Ok(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_like_docker() {
        assert_eq!(CpEndpoint::parse("-"), CpEndpoint::Stream);
        assert_eq!(
            CpEndpoint::parse("web:/etc/hosts"),
            CpEndpoint::Container {
                container: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(CpEndpoint::parse("./a:b"), CpEndpoint::Host("./a:b".into()));
        assert_eq!(CpEndpoint::parse("/x:y"), CpEndpoint::Host("/x:y".into()));
        assert_eq!(CpEndpoint::parse("file"), CpEndpoint::Host("file".into()));
        assert_eq!(CpEndpoint::parse(":x"), CpEndpoint::Host(":x".into()));
    }

    #[test]
    fn container_paths_never_climb_above_the_root() {
        assert_eq!(
            clean_in_root("/../../etc/./passwd"),
            Path::new("etc/passwd")
        );
        assert_eq!(clean_in_root("a/b/../c/"), Path::new("a/c"));
        assert_eq!(clean_in_root("/"), Path::new(""));
        let p = cp_path("/etc/.");
        assert!(p.contents && p.trailing_sep);
        let p = cp_path("/etc/");
        assert!(!p.contents && p.trailing_sep);
    }

    #[test]
    fn archive_entries_with_dotdot_are_refused() {
        assert!(entry_rel(b"a/../../x").is_err());
        assert_eq!(entry_rel(b"./a//b/").unwrap(), Path::new("a/b"));
        assert_eq!(entry_rel(b"/abs").unwrap(), Path::new("abs"));
    }

    fn hostile(links: &[(&str, &str)], files: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, name, target).unwrap();
        }
        for name in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"hi"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_into(dest: &Path, data: &[u8]) -> Result<(), FsError> {
        let root = open_dir(dest).unwrap();
        Unpacker {
            root: root.as_fd(),
            base: PathBuf::new(),
            preserve_owner: false,
        }
        .unpack(data)
    }

    /// Unprivileged: a hostile archive unpacked below a directory stays inside it, even
    /// through symlinks it plants itself (absolute and relative).
    #[test]
    fn unpacking_stays_in_the_root_through_planted_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let data = hostile(
            &[("abs", "/"), ("rel", "../../../../../../../../..")],
            &["abs/tmp/x", "rel/tmp/y"],
        );
        unpack_into(dest.path(), &data).unwrap();
        assert_eq!(std::fs::read(dest.path().join("tmp/x")).unwrap(), b"hi");
        assert_eq!(std::fs::read(dest.path().join("tmp/y")).unwrap(), b"hi");
        // A link to a host directory is followed inside the root, where it does not exist:
        // the entry fails rather than landing on the host.
        let data = hostile(&[("out", outside.path().to_str().unwrap())], &["out/z"]);
        assert!(unpack_into(dest.path(), &data).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    /// Unprivileged: what the archive writer reads through descriptors, the unpacker recreates:
    /// modes, times, symlinks, hardlinks (as one inode), fifos, nested directories.
    #[test]
    fn archives_round_trip_links_fifos_modes_and_times() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        std::fs::create_dir_all(s.join("e/g")).unwrap();
        std::fs::write(s.join("a"), "data").unwrap();
        std::fs::set_permissions(s.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(s.join("a"), s.join("b")).unwrap();
        std::os::unix::fs::symlink("a", s.join("c")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            s.join("d"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(s.join("e/g/f"), "deep").unwrap();
        let t = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            last_modification: rfs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
        };
        rfs::utimensat(rfs::CWD, s.join("a"), &t, AtFlags::empty()).unwrap();

        let mut tw = TarWriter::new(Vec::new());
        let root = open_dir(s).unwrap();
        tw.add_contents(root.as_fd(), Path::new("top")).unwrap();
        let data = tw.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        unpack_into(dest.path(), &data).unwrap();
        let d = dest.path().join("top");
        let a = std::fs::metadata(d.join("a")).unwrap();
        assert_eq!(a.mode() & 0o7777, 0o640);
        assert_eq!(a.mtime(), 1_000_000);
        assert_eq!(std::fs::read_to_string(d.join("b")).unwrap(), "data");
        assert_eq!(std::fs::metadata(d.join("b")).unwrap().ino(), a.ino());
        assert_eq!(std::fs::read_link(d.join("c")).unwrap(), Path::new("a"));
        assert!(std::fs::symlink_metadata(d.join("d"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(std::fs::read_to_string(d.join("e/g/f")).unwrap(), "deep");
    }
}
