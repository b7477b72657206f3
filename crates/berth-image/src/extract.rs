//! Layer extraction: a tar stream (hostile input) into one layer directory.
//!
//! Nothing may be created, changed or followed outside the layer directory, whatever the archive
//! says (CVE-2018-15664-style symlink races, CVE-2019-14271, CVE-2024-21626's family): every
//! entry's parent is resolved relative to the layer directory's file descriptor with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (openat2(2)), falling back to a
//! component-by-component `openat(O_NOFOLLOW | O_DIRECTORY)` walk that creates missing
//! directories (consecutive regular files in one directory reuse that descriptor; any other
//! entry drops it). The final component is always created with `O_EXCL`/`O_NOFOLLOW` or an `*at`
//! call that does not follow symlinks, and metadata is set through the new file descriptor or
//! with `AT_SYMLINK_NOFOLLOW`. Entries with `..` components, absolute names or absolute hardlink
//! targets are refused, naming the entry.
//!
//! Whiteouts become overlayfs whiteouts (Documentation/filesystems/overlayfs.rst): `.wh.NAME`
//! a 0:0 character device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on the
//! directory (`user.overlay.opaque` when not root, for overlay's `userxattr` mode).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// Limits and identity for one extraction.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Refuse archives whose regular files add up to more than this many bytes
    /// (decompression bombs fill the disk long before they fill memory).
    pub max_bytes: u64,
    /// Apply the archive's uid/gid (needs CAP_CHOWN); otherwise files belong to the caller.
    pub preserve_owner: bool,
    /// Prefix of the overlay xattrs written for opaque directories.
    pub overlay_xattr_prefix: &'static str,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            max_bytes: 1 << 40,
            preserve_owner: root,
            overlay_xattr_prefix: if root {
                "trusted.overlay."
            } else {
                "user.overlay."
            },
        }
    }
}

/// What an extraction wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Why an entry is refused before anything is written for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ParentTraversal,
    AbsolutePath,
    SymlinkInPath,
    HardlinkOutside,
    EmptyName,
    NulInName,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ParentTraversal => "path contains a '..' component",
            Self::AbsolutePath => "path is absolute",
            Self::SymlinkInPath => "a parent directory is a symlink or not a directory",
            Self::HardlinkOutside => "hardlink target is outside the layer",
            Self::EmptyName => "empty name",
            Self::NulInName => "name contains a NUL byte",
        })
    }
}

/// Why a layer could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot open layer directory {path}")]
    OpenDest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer archive")]
    Read(#[source] io::Error),
    #[error("layer entry {entry:?} refused: {reason}")]
    Refused { entry: String, reason: Refusal },
    #[error("layer entry {entry:?}: cannot {step}")]
    Apply {
        entry: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} has unsupported tar type {kind:?}")]
    EntryType { entry: String, kind: u8 },
    #[error("layer entry {entry:?} is truncated: declares {declared} bytes, archive holds {read}")]
    Truncated {
        entry: String,
        declared: u64,
        read: u64,
    },
    #[error("layer entry {entry:?} takes the layer over its limit of {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
}

/// Wraps a possibly compressed layer stream in the matching decompressor, chosen by its
/// magic bytes (RFC 1952 gzip `1f 8b`, RFC 8878 zstd `28 b5 2f fd`), so a mislabelled media
/// type cannot make Berth parse compressed bytes as tar.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // MultiGzDecoder: pigz and some tools write multi-member gzip streams.
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(br)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(br))
    }
}

/// A cleaned entry path: components with no `.`, `..` or empty parts.
struct EntryPath {
    comps: Vec<OsString>,
}

impl EntryPath {
    fn parse(raw: &[u8]) -> Result<Option<Self>, Refusal> {
        if raw.contains(&0) {
            return Err(Refusal::NulInName);
        }
        if raw.starts_with(b"/") {
            return Err(Refusal::AbsolutePath);
        }
        let mut comps = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(Refusal::ParentTraversal),
                c => comps.push(OsStr::from_bytes(c).to_os_string()),
            }
        }
        // "./" itself: the layer root, whose metadata Berth does not take from the archive.
        if comps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { comps }))
    }

    fn parent(&self) -> PathBuf {
        self.comps[..self.comps.len() - 1].iter().collect()
    }

    fn name(&self) -> &OsStr {
        &self.comps[self.comps.len() - 1]
    }
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens `rel` (already cleaned) beneath `root`, never through a symlink.
fn open_beneath(root: BorrowedFd<'_>, rel: &Path, create: bool) -> Result<OwnedFd, Errno> {
    if rel.as_os_str().is_empty() {
        return rfs::openat(root, ".", DIR_FLAGS, Mode::empty());
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rfs::openat2(root, rel, DIR_FLAGS, Mode::empty(), resolve) {
        Ok(fd) => return Ok(fd),
        // ENOSYS: kernels before 5.6; ENOENT: a parent the archive did not list.
        Err(Errno::NOSYS | Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    // The walk: each step is one component, opened with O_NOFOLLOW|O_DIRECTORY relative to the
    // previous directory, so a symlink anywhere fails with ELOOP/ENOTDIR instead of being followed.
    let mut cur = rfs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for comp in rel.iter() {
        let next = match rfs::openat(&cur, comp, DIR_FLAGS, Mode::empty()) {
            Err(Errno::NOENT) if create => {
                // Docker creates unlisted parents as 0755 directories.
                match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rfs::openat(&cur, comp, DIR_FLAGS, Mode::empty())?
            }
            r => r?,
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes `name` in `dir` whatever it is, without following symlinks; a directory is removed
/// with its contents.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {
            let sub = rfs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            let names: Vec<OsString> = {
                let mut d = rfs::Dir::read_from(&sub)?;
                let mut v = Vec::new();
                while let Some(ent) = d.read() {
                    let ent = ent?;
                    let n = ent.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        v.push(OsStr::from_bytes(n).to_os_string());
                    }
                }
                v
            };
            for n in names {
                remove_at(sub.as_fd(), &n)?;
            }
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Err(e) => Err(e),
    }
}

/// Removes a whole tree beneath `parent` by name, never following symlinks. Used by the store
/// to delete layer and snapshot directories whose contents came from images.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove a path without a parent",
        ));
    };
    let dir = rfs::open(parent, DIR_FLAGS, Mode::empty()).map_err(errno_io)?;
    remove_at(dir.as_fd(), name).map_err(errno_io)
}

struct DirMeta {
    path: PathBuf,
    entry: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Extractor<'o> {
    root: OwnedFd,
    /// One large copy buffer: io::copy's 8 KiB means a write(2) per 8 KiB of layer data.
    buf: Vec<u8>,
    opts: &'o ExtractOptions,
    dirs: Vec<DirMeta>,
    stats: ExtractStats,
    /// The parent directory of the last regular file and its descriptor (see `entry`).
    last_parent: Option<(PathBuf, OwnedFd)>,
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Extracts an uncompressed tar stream into `dest` (which must exist and should be empty).
/// The stream is read up to the tar end marker; the caller drains what follows if it needs
/// the whole stream hashed.
pub fn extract_tar<R: Read>(
    tar: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractStats, ExtractError> {
    let root = rfs::open(dest, DIR_FLAGS, Mode::empty()).map_err(|e| ExtractError::OpenDest {
        path: dest.to_path_buf(),
        source: errno_io(e),
    })?;
    let mut x = Extractor {
        root,
        buf: vec![0; 1 << 20],
        opts,
        dirs: Vec::new(),
        stats: ExtractStats::default(),
        last_parent: None,
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(ExtractError::Read)? {
        let entry = entry.map_err(ExtractError::Read)?;
        x.entry(entry)?;
        x.stats.entries += 1;
    }
    x.finish_dirs()?;
    Ok(x.stats)
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = e.path_bytes().into_owned();
        let entry = String::from_utf8_lossy(&raw).into_owned();
        let refused = |reason| ExtractError::Refused {
            entry: entry.clone(),
            reason,
        };
        let Some(path) = EntryPath::parse(&raw).map_err(refused)? else {
            return Ok(());
        };
        let apply = |step: &'static str| {
            let entry = entry.clone();
            move |e: Errno| ExtractError::Apply {
                entry,
                step,
                source: errno_io(e),
            }
        };
        let header = e.header().clone();
        let kind = header.entry_type();
        let name = path.name().to_os_string();
        let name_b = name.as_bytes();
        let parent_rel = path.parent();
        // Consecutive regular files in one directory (the common case: a layer is a tar of a
        // tree) reuse the parent opened for the previous one. Only plain files may use or keep
        // it: they create a name inside the parent and at most replace a child of it, never the
        // parent or an ancestor. Every other entry (directories, links, nodes, whiteouts) can
        // remove or replace directories, so it drops the cache and resolves from the root.
        let plain_file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
            && !name_b.starts_with(b".wh.");
        let cached = self
            .last_parent
            .take()
            .filter(|(p, _)| plain_file && *p == parent_rel);
        let parent = match cached {
            Some((_, fd)) => fd,
            None => match open_beneath(self.root.as_fd(), &parent_rel, true) {
                Ok(fd) => fd,
                Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => {
                    return Err(refused(Refusal::SymlinkInPath))
                }
                Err(err) => return Err(apply("open parent directory")(err)),
            },
        };
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let xattrs = self.xattrs(&mut e, &entry)?;

        // Whiteouts (image-spec layer.md, "Whiteouts").
        if name_b == b".wh..wh..opq" {
            let dir = rfs::openat(&parent, ".", DIR_FLAGS, Mode::empty())
                .map_err(apply("open opaque directory"))?;
            let key = format!("{}opaque", self.opts.overlay_xattr_prefix);
            return rfs::fsetxattr(&dir, key.as_str(), b"y", XattrFlags::empty())
                .map_err(apply("mark directory opaque"));
        }
        if let Some(hidden) = name_b.strip_prefix(b".wh.") {
            if hidden.starts_with(b".wh.") {
                // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): no meaning for overlay.
                return Ok(());
            }
            let hidden = OsStr::from_bytes(hidden);
            remove_at(parent.as_fd(), hidden).map_err(apply("remove whited-out file"))?;
            return rfs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .map_err(apply("create overlay whiteout"));
        }

        match kind {
            tar::EntryType::Directory => {
                match rfs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(apply("stat existing path"))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            remove_at(parent.as_fd(), &name)
                                .map_err(apply("replace existing path"))?;
                            rfs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755))
                                .map_err(apply("create directory"))?;
                        }
                    }
                    Err(err) => return Err(apply("create directory")(err)),
                }
                // Mode, owner and times are applied last, deepest first: a read-only or
                // timestamped directory must not block or bump its later entries.
                self.dirs.push(DirMeta {
                    path: path.comps.iter().collect(),
                    entry: entry.clone(),
                    mode,
                    uid,
                    gid,
                    mtime,
                    xattrs,
                });
                Ok(())
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = e.size();
                if self.stats.bytes.saturating_add(size) > self.opts.max_bytes {
                    return Err(ExtractError::TooLarge {
                        entry,
                        limit: self.opts.max_bytes,
                    });
                }
                let create = |parent: &OwnedFd| {
                    rfs::openat(
                        parent,
                        &name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                };
                // O_EXCL first: in a fresh layer the name is almost always free, and an
                // unlinkat per file that fails with ENOENT is a wasted syscall. EEXIST (an
                // earlier entry, a symlink included: O_EXCL never follows one) is replaced.
                let fd = match create(&parent) {
                    Ok(fd) => fd,
                    Err(Errno::EXIST) => {
                        remove_at(parent.as_fd(), &name).map_err(apply("replace existing path"))?;
                        create(&parent).map_err(apply("create file"))?
                    }
                    Err(err) => return Err(apply("create file")(err)),
                };
                let mut file = std::fs::File::from(fd);
                let written = copy_big(&mut e, &mut file, &mut self.buf).map_err(|source| {
                    ExtractError::Apply {
                        entry: entry.clone(),
                        step: "write file data",
                        source,
                    }
                })?;
                self.stats.bytes += written;
                // The tar reader ends an entry's data quietly at end of stream. (Sparse
                // entries expand beyond their stored size; the DiffID check covers them.)
                if written != size && kind != tar::EntryType::GNUSparse {
                    return Err(ExtractError::Truncated {
                        entry,
                        declared: size,
                        read: written,
                    });
                }
                self.set_fd_meta(file.as_fd(), &entry, mode, uid, gid, mtime, &xattrs)?;
                if plain_file {
                    self.last_parent = Some((parent_rel, parent));
                }
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| refused(Refusal::EmptyName))?
                    .into_owned();
                if target.contains(&0) {
                    return Err(refused(Refusal::NulInName));
                }
                remove_at(parent.as_fd(), &name).map_err(apply("replace existing path"))?;
                // The target is stored, never resolved: it means something only inside the
                // container's root, where the runtime resolves it safely.
                rfs::symlinkat(OsStr::from_bytes(&target), &parent, &name)
                    .map_err(apply("create symlink"))?;
                self.set_at_meta(parent.as_fd(), &name, &entry, None, uid, gid, mtime)
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| refused(Refusal::EmptyName))?
                    .into_owned();
                let t = match EntryPath::parse(&target) {
                    Ok(Some(t)) => t,
                    Ok(None) | Err(Refusal::AbsolutePath | Refusal::ParentTraversal) => {
                        return Err(refused(Refusal::HardlinkOutside))
                    }
                    Err(r) => return Err(refused(r)),
                };
                let tparent = match open_beneath(self.root.as_fd(), &t.parent(), false) {
                    Ok(fd) => fd,
                    Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => {
                        return Err(refused(Refusal::SymlinkInPath))
                    }
                    Err(err) => return Err(apply("open hardlink target directory")(err)),
                };
                remove_at(parent.as_fd(), &name).map_err(apply("replace existing path"))?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed
                // (linkat(2)).
                rfs::linkat(&tparent, t.name(), &parent, &name, AtFlags::empty())
                    .map_err(apply("create hardlink"))
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, dev) = match kind {
                    tar::EntryType::Char => (FileType::CharacterDevice, true),
                    tar::EntryType::Block => (FileType::BlockDevice, true),
                    _ => (FileType::Fifo, false),
                };
                let dev = if dev {
                    rfs::makedev(
                        header.device_major().ok().flatten().unwrap_or(0),
                        header.device_minor().ok().flatten().unwrap_or(0),
                    )
                } else {
                    0
                };
                remove_at(parent.as_fd(), &name).map_err(apply("replace existing path"))?;
                rfs::mknodat(&parent, &name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(apply("create device node"))?;
                self.set_at_meta(parent.as_fd(), &name, &entry, Some(mode), uid, gid, mtime)
            }
            // Global PAX headers carry nothing Berth applies.
            tar::EntryType::XGlobalHeader => Ok(()),
            other => Err(ExtractError::EntryType {
                entry,
                kind: other.as_byte(),
            }),
        }
    }

    fn xattrs<R: Read>(
        &self,
        e: &mut tar::Entry<'_, R>,
        entry: &str,
    ) -> Result<Vec<(OsString, Vec<u8>)>, ExtractError> {
        let mut out = Vec::new();
        let Some(exts) = e.pax_extensions().map_err(|source| ExtractError::Apply {
            entry: entry.into(),
            step: "read pax headers",
            source,
        })?
        else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|source| ExtractError::Apply {
                entry: entry.into(),
                step: "read pax headers",
                source,
            })?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            // An archive must not forge overlay metadata (whiteouts, redirects, metacopy):
            // those only come from Berth's own whiteout conversion.
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                continue;
            }
            out.push((
                OsStr::from_bytes(name).to_os_string(),
                ext.value_bytes().to_vec(),
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn set_fd_meta(
        &self,
        fd: BorrowedFd<'_>,
        entry: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> Result<(), ExtractError> {
        let apply = |step: &'static str| {
            move |e: Errno| ExtractError::Apply {
                entry: entry.into(),
                step,
                source: errno_io(e),
            }
        };
        if self.opts.preserve_owner {
            rfs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(apply("chown"))?;
        }
        // After chown, which clears set-id bits (chown(2)).
        rfs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(apply("chmod"))?;
        for (k, v) in xattrs {
            rfs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty())
                .map_err(apply("set xattr"))?;
        }
        rfs::futimens(fd, &times(mtime)).map_err(apply("set times"))
    }

    /// Metadata for entries that cannot be opened (symlinks, device nodes): `*at` calls with
    /// `AT_SYMLINK_NOFOLLOW` on a name Berth has just created in a directory it holds open.
    #[allow(clippy::too_many_arguments)]
    fn set_at_meta(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        entry: &str,
        mode: Option<u32>,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Result<(), ExtractError> {
        let apply = |step: &'static str| {
            move |e: Errno| ExtractError::Apply {
                entry: entry.into(),
                step,
                source: errno_io(e),
            }
        };
        if self.opts.preserve_owner {
            rfs::chownat(
                dir,
                name,
                Some(uid_of(uid)),
                Some(gid_of(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(apply("chown"))?;
        }
        if let Some(mode) = mode {
            // Only device nodes and fifos get here; the name was just created by mknodat and
            // no other writer exists in a layer being extracted, so it is not a symlink.
            rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(apply("chmod"))?;
        }
        rfs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(apply("set times"))
    }

    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        // Deepest first, so setting a parent's mtime is the last change inside it; the sort is
        // stable, so a directory listed twice keeps the archive's last metadata.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in &dirs {
            let fd = match open_beneath(self.root.as_fd(), &d.path, false) {
                Ok(fd) => fd,
                // Replaced by a later entry (a file or symlink of the same name), which wins.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => {
                    return Err(ExtractError::Apply {
                        entry: d.entry.clone(),
                        step: "reopen directory",
                        source: errno_io(e),
                    })
                }
            };
            self.set_fd_meta(
                fd.as_fd(),
                &d.entry,
                d.mode,
                d.uid,
                d.gid,
                d.mtime,
                &d.xattrs,
            )?;
        }
        Ok(())
    }
}

fn copy_big<R: Read, W: io::Write>(r: &mut R, w: &mut W, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // Fill as much of the buffer as the reader gives before writing.
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        w.write_all(&buf[..filled])?;
        total += filled as u64;
    }
}

fn uid_of(v: u64) -> Uid {
    Uid::from_raw(u32::try_from(v).unwrap_or(u32::MAX - 1))
}

fn gid_of(v: u64) -> Gid {
    Gid::from_raw(u32::try_from(v).unwrap_or(u32::MAX - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A raw ustar header: tar::Builder refuses `..` and absolute names, which is exactly what
    /// the hostile corpus needs.
    fn hdr(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        h
    }

    struct Tar(tar::Builder<Vec<u8>>);
    impl Tar {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }
        fn file(mut self, name: &str, data: &[u8]) -> Self {
            let h = hdr(name, tar::EntryType::Regular, data.len() as u64, "");
            self.0.append(&h, data).unwrap();
            self
        }
        fn dir(mut self, name: &str) -> Self {
            self.0
                .append(&hdr(name, tar::EntryType::Directory, 0, ""), &[][..])
                .unwrap();
            self
        }
        fn symlink(mut self, name: &str, target: &str) -> Self {
            let h = hdr(name, tar::EntryType::Symlink, 0, target);
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn hardlink(mut self, name: &str, target: &str) -> Self {
            let h = hdr(name, tar::EntryType::Link, 0, target);
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn raw(mut self, h: tar::Header, data: &[u8]) -> Self {
            self.0.append(&h, data).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// A temp dir holding `layer/` (the destination) and `outside/` (a sentinel tree that
    /// must never change).
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("layer")).unwrap();
            std::fs::create_dir(dir.path().join("outside")).unwrap();
            std::fs::write(dir.path().join("outside/sentinel"), b"keep").unwrap();
            std::fs::create_dir(dir.path().join("outside/etc")).unwrap();
            Self { dir }
        }
        fn layer(&self) -> PathBuf {
            self.dir.path().join("layer")
        }
        fn outside(&self) -> String {
            self.dir
                .path()
                .join("outside")
                .to_str()
                .unwrap()
                .to_string()
        }
        /// Everything outside `layer/`: names, types, modes, owners, sizes, mtimes, contents.
        fn snapshot(&self) -> BTreeMap<PathBuf, (u32, u32, u64, i64, Vec<u8>)> {
            fn walk(p: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u64, i64, Vec<u8>)>) {
                for e in std::fs::read_dir(p).unwrap() {
                    let e = e.unwrap();
                    let m = std::fs::symlink_metadata(e.path()).unwrap();
                    let data = if m.is_file() {
                        std::fs::read(e.path()).unwrap()
                    } else {
                        Vec::new()
                    };
                    out.insert(e.path(), (m.mode(), m.uid(), m.len(), m.mtime(), data));
                    if m.is_dir() {
                        walk(&e.path(), out);
                    }
                }
            }
            let mut out = BTreeMap::new();
            walk(&self.dir.path().join("outside"), &mut out);
            let m = std::fs::metadata(self.dir.path()).unwrap();
            out.insert(
                self.dir.path().into(),
                (m.mode(), m.uid(), 0, 0, Vec::new()),
            );
            out
        }
        fn extract(&self, tar: &[u8], opts: &ExtractOptions) -> Result<ExtractStats, ExtractError> {
            extract_tar(tar, &self.layer(), opts)
        }
    }

    /// Runs one hostile archive: it must fail, the error must name `entry`, and nothing
    /// outside the layer may change.
    fn assert_refused(f: &Fixture, tar: &[u8], entry: &str, opts: &ExtractOptions) {
        let before = f.snapshot();
        let err = f
            .extract(tar, opts)
            .expect_err("hostile archive was accepted");
        let msg = err.to_string();
        assert!(msg.contains(entry), "error {err:?} does not name {entry:?}");
        assert_eq!(
            before,
            f.snapshot(),
            "something outside the layer changed ({msg})"
        );
        assert!(
            !Path::new("/x").exists() && !Path::new("/etc/x").exists(),
            "wrote to the host root"
        );
    }

    #[test]
    fn refuses_dotdot_and_absolute_names() {
        let f = Fixture::new();
        let o = ExtractOptions::default();
        assert_refused(
            &f,
            &Tar::new().file("../../x", b"evil").bytes(),
            "../../x",
            &o,
        );
        assert_refused(
            &f,
            &Tar::new().file("a/../../outside/sentinel", b"e").bytes(),
            "a/../../outside/sentinel",
            &o,
        );
        assert_refused(&f, &Tar::new().file("/x", b"evil").bytes(), "/x", &o);
        let abs = format!("{}/sentinel", f.outside());
        assert_refused(&f, &Tar::new().file(&abs, b"evil").bytes(), &abs, &o);
    }

    #[test]
    fn refuses_writes_through_symlinked_parents() {
        let f = Fixture::new();
        let o = ExtractOptions::default();
        let t = Tar::new()
            .symlink("a", "/")
            .file("a/etc/x", b"evil")
            .bytes();
        assert_refused(&f, &t, "a/etc/x", &o);
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("a", &f.outside())
            .file("a/sentinel", b"evil")
            .bytes();
        assert_refused(&f, &t, "a/sentinel", &o);
        // a chain of symlinks, the last one relative and climbing out
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("b", "c")
            .symlink("c", "d")
            .symlink("d", "../outside")
            .file("b/sentinel", b"evil")
            .bytes();
        assert_refused(&f, &t, "b/sentinel", &o);
        // directories and device nodes through a symlinked parent
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("a", &f.outside())
            .dir("a/newdir/")
            .bytes();
        assert_refused(&f, &t, "a/newdir/", &o);
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("a", &f.outside())
            .raw(hdr("a/fifo", tar::EntryType::Fifo, 0, ""), &[])
            .bytes();
        assert_refused(&f, &t, "a/fifo", &o);
    }

    #[test]
    fn refuses_whiteouts_under_symlinked_parents() {
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("a", &f.outside())
            .file("a/.wh.sentinel", b"")
            .bytes();
        assert_refused(&f, &t, "a/.wh.sentinel", &ExtractOptions::default());
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("a", &f.outside())
            .file("a/.wh..wh..opq", b"")
            .bytes();
        assert_refused(&f, &t, "a/.wh..wh..opq", &ExtractOptions::default());
    }

    #[test]
    fn refuses_hardlinks_outside() {
        let o = ExtractOptions::default();
        for target in [
            "/etc/shadow",
            "../outside/sentinel",
            "a/../../outside/sentinel",
        ] {
            let f = Fixture::new();
            assert_refused(&f, &Tar::new().hardlink("h", target).bytes(), "\"h\"", &o);
        }
        let f = Fixture::new();
        let abs = format!("{}/sentinel", f.outside());
        assert_refused(&f, &Tar::new().hardlink("h", &abs).bytes(), "\"h\"", &o);
        // a target reached through a symlinked directory
        let f = Fixture::new();
        let t = Tar::new()
            .symlink("s", &f.outside())
            .hardlink("h", "s/sentinel")
            .bytes();
        assert_refused(&f, &t, "\"h\"", &o);
    }

    #[test]
    fn metadata_never_reaches_through_a_symlink() {
        // chmod/chown/utimes aimed at a symlink's target: the later entry replaces the
        // symlink itself, and the outside file keeps its mode, owner and times.
        let f = Fixture::new();
        let before = f.snapshot();
        let sentinel = format!("{}/sentinel", f.outside());
        let mut file = hdr("s", tar::EntryType::Regular, 1, "");
        file.set_mode(0o777);
        file.set_uid(4242);
        file.set_mtime(5);
        file.set_cksum();
        let mut dir = hdr("d", tar::EntryType::Directory, 0, "");
        dir.set_mode(0o777);
        dir.set_mtime(5);
        dir.set_cksum();
        let mut node = hdr("n", tar::EntryType::Fifo, 0, "");
        node.set_mode(0o777);
        node.set_cksum();
        let t = Tar::new()
            .symlink("s", &sentinel)
            .raw(file, b"x")
            .symlink("d", &f.outside())
            .raw(dir, &[])
            .symlink("n", &sentinel)
            .raw(node, &[])
            .symlink("l", &sentinel)
            .bytes();
        f.extract(&t, &ExtractOptions::default()).unwrap();
        assert_eq!(before, f.snapshot());
        assert_eq!(std::fs::read(f.layer().join("s")).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(f.layer().join("d"))
            .unwrap()
            .is_dir());
        assert!(std::fs::symlink_metadata(f.layer().join("l"))
            .unwrap()
            .is_symlink());
    }

    #[test]
    fn huge_declared_sizes_and_truncation() {
        let o = ExtractOptions::default();
        // declares 32 GiB, carries 4 bytes: the write fails, nothing outside changes
        let f = Fixture::new();
        let mut t = Tar::new().file("ok", b"fine").bytes();
        t.truncate(t.len() - 1024); // drop the end-of-archive blocks
        let h = hdr("huge", tar::EntryType::Regular, 1 << 35, "");
        t.extend_from_slice(h.as_bytes());
        t.extend_from_slice(b"abcd");
        assert_refused(&f, &t, "huge", &o);
        // over the configured limit: refused before writing
        let f = Fixture::new();
        let small = ExtractOptions {
            max_bytes: 3,
            ..ExtractOptions::default()
        };
        assert_refused(&f, &Tar::new().file("big", b"four").bytes(), "big", &small);
        // truncated in the middle of a file
        let f = Fixture::new();
        let mut t = Tar::new().file("cut", &[7u8; 3000]).bytes();
        t.truncate(512 + 1000);
        assert_refused(&f, &t, "cut", &o);
    }

    #[test]
    fn gzip_bomb_is_stopped_by_the_limit() {
        let f = Fixture::new();
        let size = 32u64 << 20;
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        b.append(
            &hdr("bomb", tar::EntryType::Regular, size, ""),
            io::repeat(0).take(size),
        )
        .unwrap();
        let gz = b.into_inner().unwrap().finish().unwrap();
        assert!(gz.len() < (1 << 20), "the bomb is not a bomb: {}", gz.len());
        let opts = ExtractOptions {
            max_bytes: 1 << 20,
            ..ExtractOptions::default()
        };
        let before = f.snapshot();
        let err = extract_tar(decompress(&gz[..]).unwrap(), &f.layer(), &opts).unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("bomb"));
        assert_eq!(before, f.snapshot());
    }

    #[test]
    fn regular_content_modes_times_links() {
        let f = Fixture::new();
        let mut exe = hdr("bin/tool", tar::EntryType::Regular, 3, "");
        exe.set_mode(0o4755);
        exe.set_mtime(1_234_567);
        exe.set_cksum();
        let mut ro = hdr("ro/", tar::EntryType::Directory, 0, "");
        ro.set_mode(0o555);
        ro.set_mtime(42);
        ro.set_cksum();
        let t = Tar::new()
            .dir("bin/")
            .raw(exe, b"abc")
            .raw(ro, &[])
            .file("ro/inside", b"written before ro applies")
            .file("deep/er/file", b"parents created")
            .symlink("bin/sh", "/bin/tool")
            .hardlink("bin/tool2", "bin/tool")
            .raw(hdr("./run/fifo", tar::EntryType::Fifo, 0, ""), &[])
            .bytes();
        let stats = f.extract(&t, &ExtractOptions::default()).unwrap();
        assert_eq!(stats.entries, 8);
        let l = f.layer();
        let m = std::fs::metadata(l.join("bin/tool")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!(m.mtime(), 1_234_567);
        assert_eq!(m.nlink(), 2);
        assert_eq!(
            std::fs::read_link(l.join("bin/sh")).unwrap(),
            Path::new("/bin/tool")
        );
        let ro = std::fs::metadata(l.join("ro")).unwrap();
        assert_eq!((ro.mode() & 0o7777, ro.mtime()), (0o555, 42));
        assert_eq!(
            std::fs::read(l.join("deep/er/file")).unwrap(),
            b"parents created"
        );
        assert!(std::fs::symlink_metadata(l.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        // a read-only directory would stop the test's own cleanup
        std::fs::set_permissions(
            l.join("ro"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }

    #[test]
    fn zstd_and_plain_streams_are_detected() {
        let plain = Tar::new().file("a", b"hello").bytes();
        let mut out = Vec::new();
        decompress(&plain[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        out.clear();
        decompress(&gz[..]).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
        // A zstd frame with one raw block, per RFC 8878 section 3.1.1 (no encoder needed).
        let mut z = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, plain.len() as u8];
        z.clear();
        z.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
        // frame header: single segment, 2-byte content size field (FCS flag 01)
        z.push(0b0110_0000);
        let fcs = (plain.len() - 256) as u16;
        z.extend_from_slice(&fcs.to_le_bytes());
        let block_header = ((plain.len() as u32) << 3) | 1; // last block, raw
        z.extend_from_slice(&block_header.to_le_bytes()[..3]);
        z.extend_from_slice(&plain);
        out.clear();
        decompress(&z[..]).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
    }

    fn is_root() -> bool {
        if rustix::process::geteuid().is_root() {
            return true;
        }
        eprintln!("skipping: needs root");
        false
    }

    #[test]
    fn whiteouts_devices_owners_xattrs_as_root() {
        if !is_root() {
            return;
        }
        let f = Fixture::new();
        let mut dev = hdr("dev/null", tar::EntryType::Char, 0, "");
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        dev.set_mode(0o666);
        dev.set_cksum();
        let mut owned = hdr("home/u/f", tar::EntryType::Regular, 1, "");
        owned.set_uid(1234);
        owned.set_gid(5678);
        owned.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        let mut cap = hdr("bin/ping", tar::EntryType::Regular, 1, "");
        cap.set_cksum();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.berth", &b"yes"[..]),
            ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ])
        .unwrap();
        b.append(&cap, &b"p"[..]).unwrap();
        let mut t = b.into_inner().unwrap();
        t.truncate(t.len() - 1024);
        t.extend(
            Tar::new()
                .raw(dev, &[])
                .raw(owned, b"o")
                .file("etc/.wh.passwd", b"")
                .dir("var/")
                .file("var/.wh..wh..opq", b"")
                .file(".wh..wh.plnk", b"")
                .bytes(),
        );
        let before = f.snapshot();
        f.extract(&t, &ExtractOptions::default()).unwrap();
        assert_eq!(before, f.snapshot());
        let l = f.layer();
        let m = std::fs::symlink_metadata(l.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), rfs::makedev(1, 3));
        let m = std::fs::metadata(l.join("home/u/f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let wh = std::fs::symlink_metadata(l.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!l.join("etc/.wh.passwd").exists());
        let mut buf = [0u8; 8];
        let n = rfs::getxattr(l.join("var"), "trusted.overlay.opaque", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(!l.join(".wh..wh.plnk").exists());
        let n = rfs::getxattr(l.join("bin/ping"), "user.berth", &mut buf);
        // user xattrs need filesystem support; tmpfs before 6.6 lacks it
        if let Ok(n) = n {
            assert_eq!(&buf[..n], b"yes");
        }
        // a forged overlay xattr from the archive is dropped
        assert!(rfs::getxattr(l.join("bin/ping"), "trusted.overlay.opaque", &mut buf).is_err());
    }

    /// Extracts `tar` expecting a refusal of `entry` because of a symlink or non-directory in
    /// its parents, with nothing outside the layer changed.
    fn assert_parent_refused(f: &Fixture, tar: &[u8], entry: &str) {
        let before = f.snapshot();
        let err = f
            .extract(tar, &ExtractOptions::default())
            .expect_err("hostile archive was accepted");
        assert!(
            matches!(
                &err,
                ExtractError::Refused { entry: e, reason: Refusal::SymlinkInPath } if e == entry
            ),
            "{err:?}"
        );
        assert_eq!(before, f.snapshot(), "something outside the layer changed");
    }

    #[test]
    fn reused_parent_never_outlives_a_replaced_directory() {
        // Regular files reuse the previous file's parent descriptor: any other entry that
        // replaces that directory (a symlink, a file, a hardlink) must make the next file
        // resolve its parent again, and be refused.
        let f = Fixture::new();
        let t = Tar::new()
            .dir("d/")
            .file("d/a", b"1")
            .symlink("d", &f.outside())
            .file("d/sentinel", b"evil")
            .bytes();
        assert_parent_refused(&f, &t, "d/sentinel");
        let f = Fixture::new();
        let t = Tar::new()
            .file("d/a", b"1")
            .file("d", b"now a file")
            .file("d/b", b"x")
            .bytes();
        assert_parent_refused(&f, &t, "d/b");
        let f = Fixture::new();
        let t = Tar::new()
            .file("f", b"1")
            .file("d/a", b"1")
            .hardlink("d", "f")
            .file("d/b", b"x")
            .bytes();
        assert_parent_refused(&f, &t, "d/b");
        // A deeper directory replaced while its parent is the cached one.
        let f = Fixture::new();
        let t = Tar::new()
            .file("d/e/a", b"1")
            .file("d/x", b"1")
            .symlink("d/e", &f.outside())
            .file("d/e/sentinel", b"evil")
            .bytes();
        assert_parent_refused(&f, &t, "d/e/sentinel");
    }

    #[test]
    fn later_entries_replace_earlier_ones_in_a_reused_parent() {
        let f = Fixture::new();
        let before = f.snapshot();
        let sentinel = format!("{}/sentinel", f.outside());
        let t = Tar::new()
            .file("d/a", b"first")
            .file("d/a", b"second")
            .symlink("d/s", &sentinel)
            .file("d/b", b"b")
            // replaces the symlink itself: O_EXCL fails on it, it is removed, never followed
            .file("d/s", b"not through the link")
            .dir("d/sub/")
            .file("d/sub/x", b"x")
            // a file over a non-empty directory
            .file("d/sub", b"was a directory")
            .bytes();
        f.extract(&t, &ExtractOptions::default()).unwrap();
        assert_eq!(before, f.snapshot());
        let l = f.layer();
        assert_eq!(std::fs::read(l.join("d/a")).unwrap(), b"second");
        assert_eq!(
            std::fs::read(l.join("d/s")).unwrap(),
            b"not through the link"
        );
        assert!(std::fs::symlink_metadata(l.join("d/s")).unwrap().is_file());
        assert_eq!(std::fs::read(l.join("d/sub")).unwrap(), b"was a directory");
    }

    #[test]
    fn whiteout_of_a_reused_parent_as_root() {
        if !is_root() {
            return;
        }
        let f = Fixture::new();
        let t = Tar::new()
            .file("d/a", b"1")
            .file(".wh.d", b"")
            .file("d/b", b"x")
            .bytes();
        assert_parent_refused(&f, &t, "d/b");
    }

    /// Everything `tar -x` preserves about a tree, by relative path: type, mode, owner, mtime
    /// (not for symlinks and directories), content or link target, the set of paths sharing its inode, and
    /// user xattrs.
    fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
        fn walk(
            root: &Path,
            p: &Path,
            inodes: &mut BTreeMap<u64, Vec<PathBuf>>,
            out: &mut BTreeMap<PathBuf, String>,
        ) {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            names.sort();
            for path in names {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                let m = std::fs::symlink_metadata(&path).unwrap();
                let ft = m.file_type();
                let what = if ft.is_symlink() {
                    format!("link {:?}", std::fs::read_link(&path).unwrap())
                } else if ft.is_file() {
                    inodes.entry(m.ino()).or_default().push(rel.clone());
                    format!(
                        "file {:?} mtime {}",
                        std::fs::read(&path).unwrap(),
                        m.mtime()
                    )
                } else if ft.is_dir() {
                    // GNU tar sets a directory's times when it leaves it, so later entries in
                    // it bump them again; Berth sets them last (checked separately below).
                    "dir".to_string()
                } else if ft.is_fifo() {
                    format!("fifo mtime {}", m.mtime())
                } else {
                    format!("other {:o}", m.mode())
                };
                let mut xattrs = Vec::new();
                let mut names = vec![0u8; 4096];
                let n = rfs::llistxattr(&path, &mut names).unwrap_or(0);
                for name in names[..n]
                    .split(|b| *b == 0)
                    .filter(|n| n.starts_with(b"user."))
                {
                    let name = OsStr::from_bytes(name);
                    let mut v = vec![0u8; 4096];
                    let len = rfs::lgetxattr(&path, name, &mut v).unwrap();
                    xattrs.push(format!("{}={:?}", name.to_string_lossy(), &v[..len]));
                }
                out.insert(
                    rel,
                    format!(
                        "{what} mode {:o} owner {}:{} xattrs {xattrs:?}",
                        m.mode(),
                        m.uid(),
                        m.gid()
                    ),
                );
                if ft.is_dir() {
                    walk(root, &path, inodes, out);
                }
            }
        }
        let mut inodes = BTreeMap::new();
        let mut out = BTreeMap::new();
        walk(root, root, &mut inodes, &mut out);
        for group in inodes.values().filter(|g| g.len() > 1) {
            for p in group {
                let e = out.get_mut(p).unwrap();
                e.push_str(&format!(" linked with {group:?}"));
            }
        }
        out
    }

    #[test]
    fn extraction_matches_gnu_tar_as_root() {
        // GNU tar is the reference for everything but whiteouts (which tar leaves as files):
        // the same archive extracted by both gives the same tree. Files interleave between
        // directories so the reused parent descriptor switches back and forth.
        if !is_root() {
            return;
        }
        if std::process::Command::new("tar")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: no tar");
            return;
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut put = |name: &str,
                       kind: tar::EntryType,
                       data: &[u8],
                       mode: u32,
                       uid: u64,
                       mtime: u64,
                       link: &str| {
            let mut h = hdr(name, kind, data.len() as u64, link);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid + 1);
            h.set_mtime(mtime);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        use tar::EntryType as T;
        put("etc/", T::Directory, b"", 0o755, 0, 100, "");
        put("home/", T::Directory, b"", 0o711, 0, 101, "");
        put("home/u/", T::Directory, b"", 0o700, 1000, 102, "");
        for i in 0..40u64 {
            let dir = ["etc", "home/u", "var/lib/deep"][i as usize % 3];
            let data = format!("file {i}\n").repeat(i as usize + 1);
            let mode = [0o644, 0o600, 0o755, 0o4755, 0o2711][i as usize % 5];
            put(
                &format!("{dir}/f{i}"),
                T::Regular,
                data.as_bytes(),
                mode,
                i % 4 * 500,
                1_000 + i,
                "",
            );
        }
        put("etc/f0", T::Regular, b"replaced", 0o640, 7, 2_000, "");
        put("etc/link", T::Symlink, b"", 0o777, 3, 3_000, "f1");
        put("etc/hard", T::Link, b"", 0o644, 0, 3_001, "etc/f3");
        put("run/fifo", T::Fifo, b"", 0o620, 5, 3_002, "");
        put("ro/", T::Directory, b"", 0o555, 0, 103, "");
        put("ro/inside", T::Regular, b"x", 0o444, 0, 104, "");
        let mut xh = hdr("etc/tagged", T::Regular, 1, "");
        xh.set_mtime(4_000);
        xh.set_cksum();
        b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"yes"[..])])
            .unwrap();
        b.append(&xh, &b"t"[..]).unwrap();
        let archive = b.into_inner().unwrap();

        let f = Fixture::new();
        f.extract(&archive, &ExtractOptions::default()).unwrap();
        let reference = f.dir.path().join("reference");
        std::fs::create_dir(&reference).unwrap();
        let tar_file = f.dir.path().join("layer.tar");
        std::fs::write(&tar_file, &archive).unwrap();
        let out = std::process::Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=user.*",
                "--same-owner",
                "--same-permissions",
                "-xf",
            ])
            .arg(&tar_file)
            .arg("-C")
            .arg(&reference)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ours, theirs) = (tree(&f.layer()), tree(&reference));
        // user xattrs need filesystem support (tmpfs before 6.6 lacks it): compared only when
        // tar could set them.
        assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
        for (p, t) in &theirs {
            assert_eq!(ours.get(p), Some(t), "{p:?}");
        }
        assert!(ours[Path::new("etc/hard")].contains("linked with"));
        assert!(ours[Path::new("etc/f3")].contains("mode 104755 owner 1500:1501"));
        for (dir, mtime) in [("etc", 100), ("home", 101), ("home/u", 102), ("ro", 103)] {
            let m = std::fs::metadata(f.layer().join(dir)).unwrap();
            assert_eq!(m.mtime(), mtime, "{dir}");
        }
        for dir in [f.layer().join("ro"), reference.join("ro")] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
    }
}
