//! The content-addressed image store under `<root>/image`.
//!
//! Layout (documented for users in docs/images.md):
//!
//! ```text
//! image/blobs/sha256/<hex>       manifests, configs and compressed layers, by digest
//! image/layers/<chain hex>/diff  an extracted layer, keyed by chain ID, shared between images
//! image/layers/<chain hex>/layer.json
//! image/images/<id hex>.json     one record per image; the ID is the config digest
//! image/tags.json                name:tag -> image ID
//! image/tmp/                     partial downloads (kept for resume) and layers being extracted
//!                                (marked FS_TOPDIR_FL, see `spread_subdirectories`)
//! image/locks/                   flock(2) files
//! snapshots/<container id>/      container snapshots (see snapshot.rs)
//! ```
//!
//! Every file is written to a temporary name and renamed into place (rename(2) is atomic), so a
//! killed command leaves either the old or the new state. Concurrency uses flock(2) locks, which
//! the kernel drops when a process dies: `store.lock` serialises record and tag updates,
//! `layer-<chain>.lock` makes one process extract a shared layer while others wait for it, and
//! `gc.lock` is held shared by pulls and exclusively by garbage collection, so a layer extracted
//! for an image not yet recorded is never collected under a running pull.
//! Durability: a layer or blob is flushed to disk (one syncfs(2) of the store's filesystem,
//! `Store::sync`) before it is renamed to its final name, and the store is flushed again before
//! an image record is written, so a power loss never leaves a record or a published layer whose
//! files were still only in the page cache. One syncfs per layer costs one disk flush instead
//! of one per file.
//! Reference counts are derived, not stored: a layer's count is the number of image records and
//! snapshots naming its chain ID, so they cannot drift after a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Platform;
use crate::reference::Reference;

/// One layer of an image record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the blob as the registry serves it (usually compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

/// What the store knows about one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The config digest, as Docker shows it.
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// `name@sha256:...` of the manifest, for every repository it came from.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    pub layers: Vec<LayerRecord>,
    pub platform: Platform,
    #[serde(default)]
    pub created: Option<String>,
}

/// Metadata of an extracted layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: Digest,
    /// Bytes of regular-file content extracted.
    pub size: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt store file {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no such image: {reference}")]
    NotFound { reference: String },
    #[error("image reference {reference} is ambiguous")]
    Ambiguous { reference: String },
    #[error("image {image} is in use by container(s) {containers}")]
    InUse { image: String, containers: String },
    #[error("image {image} is referenced by several tags ({tags}); use -f or remove the tags")]
    MultipleTags { image: String, tags: String },
    #[error("blob {expected} failed verification: got {actual} ({size} bytes)")]
    BlobMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An flock(2) lock, released on drop (and by the kernel if the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// What a garbage collection removed.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct GcStats {
    pub layers_removed: u64,
    pub blobs_removed: u64,
    pub bytes_reclaimed: u64,
}

/// Disk usage of the store, shared layers counted once.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskUsage {
    pub images: u64,
    pub layers: u64,
    pub layer_bytes: u64,
    pub blob_bytes: u64,
    pub reclaimable_bytes: u64,
}

/// Handle on a store root; cheap to clone, holds no open files.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    image: PathBuf,
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f")
    ));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(data).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

/// Marks `dir` as the top of independent directory hierarchies (`chattr +T`, `FS_TOPDIR_FL`,
/// ioctl_iflags(2)), so ext4's Orlov allocator places each directory created in it (one per
/// layer being extracted) in a block group of its own choosing, instead of next to its parent.
///
/// Why: ext4 without a journal skips free inodes that were deleted recently (fs/ext4/ialloc.c,
/// `find_inode_bit` -> `recently_deleted`: within `dirty_expire_centisecs`, plus five minutes
/// while the inode table block is dirty), and restarts that scan at the start of the group for
/// every new inode. After images or containers were removed from the store, every file created
/// in the same group walks past all those inodes: 3000 small files took 1.2 s of `openat` on
/// the bench machine, 0.12 s once the layer directory sat in a fresh group. Spreading also keeps
/// layers extracted in parallel off each other's group locks. The engine marks its container,
/// snapshot and runtime state directories the same way: each container creates and removes
/// some twenty inodes, and in a sequence of runs the allocations of every new one walked past
/// all of those (2-7.5 ms of each `run --rm` after a few hundred runs; decision 0008). A hint
/// only: filesystems without the flag (tmpfs, xfs, btrfs) refuse it, and all works the same.
pub fn spread_subdirectories(dir: &Path) {
    use rustix::fs::{IFlags, Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    // Read-modify-write, as chattr(1) does: the other flags (extents, noatime...) stay.
    if let Ok(flags) = rustix::fs::ioctl_getflags(&fd) {
        if !flags.contains(IFlags::TOPDIR) {
            let _ = rustix::fs::ioctl_setflags(&fd, flags | IFlags::TOPDIR);
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store under `root` (default `/var/lib/berth`).
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let image = root.join("image");
        for d in ["blobs/sha256", "layers", "images", "tmp", "locks"] {
            let p = image.join(d);
            fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
        }
        spread_subdirectories(&image.join("tmp"));
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(io_err("create directory", &snaps))?;
        spread_subdirectories(&snaps);
        Ok(Self {
            root: root.to_path_buf(),
            image,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.image.join("tmp")
    }

    fn lock(&self, name: &str, op: FlockOperation) -> Result<Lock, StoreError> {
        let p = self.image.join("locks").join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("open lock", &p))?;
        rustix::fs::flock(&f, op)
            .map_err(|e| io_err("lock", &p)(io::Error::from_raw_os_error(e.raw_os_error())))?;
        Ok(Lock { _file: f })
    }

    /// Serialises record and tag updates.
    pub fn lock_records(&self) -> Result<Lock, StoreError> {
        self.lock("store.lock", FlockOperation::LockExclusive)
    }

    /// Held (shared) by anything that adds content not yet referenced by a record.
    pub fn lock_gc_shared(&self) -> Result<Lock, StoreError> {
        self.lock("gc.lock", FlockOperation::LockShared)
    }

    fn lock_gc_exclusive(&self) -> Result<Lock, StoreError> {
        self.lock("gc.lock", FlockOperation::LockExclusive)
    }

    /// One extractor per layer at a time; the others wait and then find it present.
    pub fn lock_layer(&self, chain: &Digest) -> Result<Lock, StoreError> {
        self.lock(
            &format!("layer-{}.lock", chain.hex()),
            FlockOperation::LockExclusive,
        )
    }

    /// One writer per blob at a time (two images may share a blob at different chain IDs).
    pub fn lock_blob(&self, digest: &Digest) -> Result<Lock, StoreError> {
        self.lock(
            &format!("blob-{}.lock", digest.hex()),
            FlockOperation::LockExclusive,
        )
    }

    // ---- blobs

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.image.join("blobs/sha256").join(d.hex())
    }

    /// Where a partial download of `d` is kept between attempts (for `Range` resume).
    pub fn partial_blob_path(&self, d: &Digest) -> PathBuf {
        self.tmp_dir().join(format!("blob-{}.partial", d.hex()))
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(io_err("read blob", &p))
    }

    /// Stores a small blob held in memory, verifying it against `expected` when given.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        if let Some(e) = expected {
            if *e != d {
                return Err(StoreError::BlobMismatch {
                    expected: e.clone(),
                    actual: d,
                    size: data.len() as u64,
                });
            }
        }
        let p = self.blob_path(&d);
        if !p.exists() {
            write_atomic(&p, data)?;
        }
        Ok(d)
    }

    /// Flushes the filesystem holding the store (syncfs(2)): everything written so far,
    /// extracted files and downloaded blobs included, is on disk when it returns.
    pub fn sync(&self) -> Result<(), StoreError> {
        let dir = self.tmp_dir();
        let sync = || -> io::Result<()> {
            let f = File::open(&dir)?;
            rustix::fs::syncfs(&f).map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
        };
        sync().map_err(io_err("flush the filesystem of", &dir))
    }

    /// Moves a verified partial file into place as blob `d` (after `sync`, for durability).
    pub fn commit_partial_blob(&self, partial: &Path, d: &Digest) -> Result<(), StoreError> {
        let dst = self.blob_path(d);
        fs::rename(partial, &dst).map_err(io_err("rename blob into place", &dst))
    }

    // ---- layers

    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.image.join("layers").join(chain.hex())
    }

    /// The directory overlay uses as a lower layer.
    pub fn layer_diff(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_dir(chain).join("layer.json").is_file()
    }

    /// A fresh directory for extracting layer `chain`, with `diff/` inside. Leftovers of
    /// earlier killed attempts for the same chain ID are removed first (the caller holds the
    /// layer lock, so no live process owns them).
    pub fn begin_layer(&self, chain: &Digest) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_dir();
        let prefix = format!("layer-{}-", chain.hex());
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    crate::extract::remove_tree(&e.path())
                        .map_err(io_err("remove stale layer", &e.path()))?;
                }
            }
        }
        let dir = tmp.join(format!("{prefix}{}", std::process::id()));
        let diff = dir.join("diff");
        fs::create_dir_all(&diff).map_err(io_err("create directory", &diff))?;
        Ok(dir)
    }

    /// Publishes an extracted layer: writes its metadata and renames it into `layers/`. The
    /// caller has made the extracted files durable with `sync` first.
    pub fn commit_layer(
        &self,
        tmp: &Path,
        chain: &Digest,
        meta: &LayerMeta,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(meta).expect("layer metadata serialises");
        write_atomic(&tmp.join("layer.json"), &json)?;
        let dst = self.layer_dir(chain);
        fs::rename(tmp, &dst).map_err(io_err("rename layer into place", &dst))
    }

    pub fn layer_meta(&self, chain: &Digest) -> Result<LayerMeta, StoreError> {
        let p = self.layer_dir(chain).join("layer.json");
        let b = fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&b).map_err(|source| StoreError::Json { path: p, source })
    }

    // ---- records and tags

    fn tags_path(&self) -> PathBuf {
        self.image.join("tags.json")
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.image.join("images").join(format!("{}.json", id.hex()))
    }

    /// `name:tag` -> image ID.
    pub fn tags(&self) -> Result<BTreeMap<String, Digest>, StoreError> {
        let p = self.tags_path();
        match fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StoreError::Json { path: p, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    fn write_tags(&self, tags: &BTreeMap<String, Digest>) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(tags).expect("tags serialise");
        write_atomic(&self.tags_path(), &json)
    }

    pub fn record(&self, id: &Digest) -> Result<ImageRecord, StoreError> {
        let p = self.record_path(id);
        let b = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound {
                    reference: id.to_string(),
                }
            } else {
                io_err("read", &p)(e)
            }
        })?;
        serde_json::from_slice(&b).map_err(|source| StoreError::Json { path: p, source })
    }

    pub fn records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.image.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(id) = Digest::from_hex(hex) {
                out.push(self.record(&id)?);
            }
        }
        Ok(out)
    }

    /// Records an image (only once all its layers are in the store) and points `names` at it.
    pub fn put_image(&self, rec: &ImageRecord, names: &[String]) -> Result<(), StoreError> {
        // The layers' and blobs' renames into place reach the disk before the record naming
        // them does (without a journal, ext4 orders no metadata writes by itself). An image
        // already recorded (a re-pull, a re-tag) had its layers flushed when it first was.
        if self.record(&rec.id).is_err() {
            self.sync()?;
        }
        let _l = self.lock_records()?;
        let mut rec = rec.clone();
        if let Ok(old) = self.record(&rec.id) {
            for rd in old.repo_digests {
                if !rec.repo_digests.contains(&rd) {
                    rec.repo_digests.push(rd);
                }
            }
        }
        let json = serde_json::to_vec_pretty(&rec).expect("image record serialises");
        write_atomic(&self.record_path(&rec.id), &json)?;
        let mut tags = self.tags()?;
        for n in names {
            tags.insert(n.clone(), rec.id.clone());
        }
        self.write_tags(&tags)
    }

    /// Finds an image by `name[:tag]`, `name@digest`, full ID or unique ID prefix.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, StoreError> {
        let not_found = || StoreError::NotFound {
            reference: reference.to_string(),
        };
        let tags = self.tags()?;
        if let Ok(r) = reference.parse::<Reference>() {
            if let Some(d) = &r.digest {
                let want = format!("{}@{d}", r.name());
                if let Some(rec) = self
                    .records()?
                    .into_iter()
                    .find(|rec| rec.repo_digests.contains(&want) || rec.manifest_digest == *d)
                {
                    return Ok(rec);
                }
            } else if let Some(id) = r.tagged().and_then(|t| tags.get(&t)) {
                return self.record(id);
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageRecord> = self
                .records()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(hex))
                .collect();
            return match hits.len() {
                0 => Err(not_found()),
                1 => Ok(hits.into_iter().next().expect("one hit")),
                _ => Err(StoreError::Ambiguous {
                    reference: reference.into(),
                }),
            };
        }
        Err(not_found())
    }

    /// Tags names for an image.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, v)| v == id)
            .map(|(k, _)| k)
            .collect())
    }

    /// Points `target` (a `name:tag`) at the image `source` resolves to.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<(), StoreError> {
        let rec = self.resolve(source)?;
        let _l = self.lock_records()?;
        let mut tags = self.tags()?;
        let name = target.tagged().ok_or_else(|| StoreError::NotFound {
            reference: target.to_string(),
        })?;
        tags.insert(name, rec.id);
        self.write_tags(&tags)
    }

    /// Removes a tag or an image. Returns the untagged names and the deleted image ID (if the
    /// image itself went away). Refuses an image used by a snapshot unless `force`.
    pub fn remove_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<(Vec<String>, Option<Digest>), StoreError> {
        let rec = self.resolve(reference)?;
        let _l = self.lock_records()?;
        let mut tags = self.tags()?;
        let own: Vec<String> = tags
            .iter()
            .filter(|(_, v)| **v == rec.id)
            .map(|(k, _)| k.clone())
            .collect();
        // `rmi name:tag` of an image with other tags only removes that tag, like Docker.
        let by_tag = reference
            .parse::<Reference>()
            .ok()
            .and_then(|r| r.tagged())
            .filter(|t| own.contains(t));
        if let Some(t) = by_tag {
            if own.len() > 1 {
                tags.remove(&t);
                self.write_tags(&tags)?;
                return Ok((vec![t], None));
            }
        } else if own.len() > 1 && !force {
            return Err(StoreError::MultipleTags {
                image: rec.id.short().into(),
                tags: own.join(", "),
            });
        }
        let users = self.snapshot_users(&rec.id)?;
        if !users.is_empty() && !force {
            return Err(StoreError::InUse {
                image: reference.into(),
                containers: users.join(", "),
            });
        }
        for t in &own {
            tags.remove(t);
        }
        self.write_tags(&tags)?;
        let p = self.record_path(&rec.id);
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
        Ok((own, Some(rec.id)))
    }

    // ---- snapshots' references

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Container IDs whose snapshot was made from image `id`.
    pub fn snapshot_users(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        Ok(self
            .snapshot_refs()?
            .into_iter()
            .filter(|(_, img, _)| img == id)
            .map(|(c, _, _)| c)
            .collect())
    }

    /// (container id, image id, chain IDs) of every snapshot.
    fn snapshot_refs(&self) -> Result<Vec<(String, Digest, Vec<Digest>)>, StoreError> {
        let dir = self.snapshots_dir();
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let p = e.path().join("snapshot.json");
            let Ok(b) = fs::read(&p) else { continue };
            let s: crate::snapshot::SnapshotRecord = serde_json::from_slice(&b)
                .map_err(|source| StoreError::Json { path: p, source })?;
            out.push((s.container_id, s.image_id, s.chain_ids));
        }
        Ok(out)
    }

    /// How many images and snapshots use each extracted layer.
    pub fn layer_refcounts(&self) -> Result<HashMap<Digest, usize>, StoreError> {
        let mut counts: HashMap<Digest, usize> = HashMap::new();
        for r in self.records()? {
            for l in r.layers {
                *counts.entry(l.chain_id).or_default() += 1;
            }
        }
        for (_, _, chains) in self.snapshot_refs()? {
            for c in chains {
                *counts.entry(c).or_default() += 1;
            }
        }
        Ok(counts)
    }

    fn referenced_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut set = BTreeSet::new();
        for r in self.records()? {
            set.insert(r.id.clone());
            set.insert(r.manifest_digest.clone());
            for l in r.layers {
                set.insert(l.digest);
            }
        }
        Ok(set)
    }

    fn layer_dirs(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.image.join("layers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))?.flatten() {
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn blobs(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let dir = self.image.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))?.flatten() {
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((d, size));
            }
        }
        Ok(out)
    }

    /// Removes layers and blobs no image or snapshot references, and leftovers of killed
    /// commands in `tmp/`. Waits for running pulls (they hold the gc lock shared).
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let _gc = self.lock_gc_exclusive()?;
        let _l = self.lock_records()?;
        let mut st = GcStats::default();
        let used = self.layer_refcounts()?;
        for chain in self.layer_dirs()? {
            if used.contains_key(&chain) {
                continue;
            }
            let dir = self.layer_dir(&chain);
            st.bytes_reclaimed += self.layer_meta(&chain).map(|m| m.size).unwrap_or(0);
            crate::extract::remove_tree(&dir).map_err(io_err("remove layer", &dir))?;
            st.layers_removed += 1;
        }
        let blobs = self.referenced_blobs()?;
        for (d, size) in self.blobs()? {
            if !blobs.contains(&d) {
                let p = self.blob_path(&d);
                fs::remove_file(&p).map_err(io_err("remove blob", &p))?;
                st.blobs_removed += 1;
                st.bytes_reclaimed += size;
            }
        }
        // With the gc lock held exclusively no pull is running: everything in tmp/ is debris.
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).map_err(io_err("list", &tmp))?.flatten() {
            st.bytes_reclaimed += e.metadata().map(|m| m.len()).unwrap_or(0);
            crate::extract::remove_tree(&e.path()).map_err(io_err("remove", &e.path()))?;
        }
        Ok(st)
    }

    /// Space used, shared layers counted once.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let mut du = DiskUsage::default();
        let records = self.records()?;
        du.images = records.len() as u64;
        let used = self.layer_refcounts()?;
        for chain in self.layer_dirs()? {
            let size = dir_size(&self.layer_diff(&chain));
            du.layers += 1;
            du.layer_bytes += size;
            if !used.contains_key(&chain) {
                du.reclaimable_bytes += size;
            }
        }
        let referenced = self.referenced_blobs()?;
        for (d, size) in self.blobs()? {
            du.blob_bytes += size;
            if !referenced.contains(&d) {
                du.reclaimable_bytes += size;
            }
        }
        Ok(du)
    }
}

/// Bytes allocated under `p` (hardlinks within counted once), without following symlinks.
pub fn dir_size(p: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
        let Ok(rd) = fs::read_dir(p) else { return 0 };
        let mut total = 0;
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                total += walk(&e.path(), seen);
            } else if m.nlink() == 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
        total
    }
    walk(p, &mut BTreeSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{IFlags, Mode, OFlags};

    fn dir_flags(p: &Path) -> rustix::io::Result<IFlags> {
        let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        rustix::fs::ioctl_getflags(&fd)
    }

    #[test]
    fn tmp_dir_spreads_layer_directories_where_the_filesystem_can() {
        let t = tempfile::tempdir().unwrap();
        // Does this filesystem take FS_TOPDIR_FL at all? (ext4 does; tmpfs, xfs, btrfs do not.)
        let probe = t.path().join("probe");
        fs::create_dir(&probe).unwrap();
        let supported = dir_flags(&probe)
            .and_then(|f| {
                let fd = rustix::fs::open(&probe, OFlags::RDONLY, Mode::empty())?;
                rustix::fs::ioctl_setflags(&fd, f | IFlags::TOPDIR)
            })
            .is_ok();
        let store = Store::open(&t.path().join("root")).unwrap();
        if !supported {
            eprintln!("skipping the flag check: the filesystem has no FS_TOPDIR_FL");
            return;
        }
        let flags = dir_flags(&store.tmp_dir()).unwrap();
        assert!(flags.contains(IFlags::TOPDIR), "{flags:?}");
        assert!(dir_flags(&store.snapshots_dir())
            .unwrap()
            .contains(IFlags::TOPDIR));
        // Opening again keeps it, and other directories are left alone.
        let store = Store::open(&t.path().join("root")).unwrap();
        assert!(dir_flags(&store.tmp_dir())
            .unwrap()
            .contains(IFlags::TOPDIR));
        assert!(!dir_flags(&store.image.join("blobs"))
            .unwrap()
            .contains(IFlags::TOPDIR));
    }
}
