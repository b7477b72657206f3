//! Container records: `<root>/containers/<id>/container.json`, the name index
//! `<root>/containers/names/<name>` (a file holding the id), and their locks.
//!
//! Concurrency: every change to the set of containers or names happens under an exclusive
//! `flock(2)` on `<root>/containers/index.lock`; every change to one record happens under the
//! record's own `lock` file. Records are written atomically (write a temporary file, then
//! `rename(2)`), so a reader never sees half a record and a killed writer leaves the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

/// Docker's container lifecycle states, as `inspect` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

/// The live part of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init while running, else 0.
    pub pid: i32,
    /// Pid and start time of the process supervising the container (the monitor, or the
    /// foreground `berth run`), so a dead supervisor can be told from a live one.
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    pub exit_code: i32,
    /// Why the last start failed, if it did.
    pub error: String,
    /// Seconds since the epoch; 0 when it never happened.
    pub started_at: i64,
    pub finished_at: i64,
    /// Frozen by `pause`.
    #[serde(default)]
    pub paused: bool,
    /// Stopped by `stop`, `kill` or `rm`: the restart policy does not apply.
    #[serde(default)]
    pub manually_stopped: bool,
    /// Exited, and its monitor is backing off before restarting it under the policy.
    #[serde(default)]
    pub restarting: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: 0,
            monitor_pid: 0,
            monitor_start_time: 0,
            exit_code: 0,
            error: String::new(),
            started_at: 0,
            finished_at: 0,
            paused: false,
            manually_stopped: false,
            restarting: false,
        }
    }
}

/// A bind mount, volume or tmpfs the container was created with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// bind: the host path; volume: the volume's content on the host (its `_data`, or the
    /// device of a volume with filesystem options); tmpfs: the mount options.
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// volume: its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// volume: made for this container (`-v /path`, the image's `Volumes`); `rm -v` and
    /// `--rm` remove it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// volume: `nocopy` (no copy-up from the image).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// bind: `rprivate` (the default), `private`, `rshared`, `shared`, `rslave`, `slave`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    /// bind: `bind-nonrecursive` (`bind` instead of `rbind`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nonrecursive: bool,
    /// volume with `type`/`device`/`o` options: the filesystem each container mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<crate::volume::FsMount>,
}

/// What Berth keeps about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 lowercase hex digits.
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's config digest (`sha256:...`).
    pub image_id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The process the container runs (entrypoint and command resolved).
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub auto_remove: bool,
    pub read_only: bool,
    pub privileged: bool,
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub cgroup_path: String,
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    #[serde(default)]
    pub stop_timeout: u64,
    /// `KEY=VALUE` labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `none`, `host` or `container:X`.
    #[serde(default)]
    pub network_mode: String,
    /// `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[serde(default)]
    pub restart_policy: String,
    /// Restarts done by the monitor under the policy.
    #[serde(default)]
    pub restart_count: u32,
    /// `json-file` or `none`.
    #[serde(default = "default_log_driver")]
    pub log_driver: String,
    /// json-file rotation: bytes per file (0: never rotate) and files kept.
    #[serde(default = "default_log_max_size")]
    pub log_max_size: u64,
    #[serde(default = "default_log_max_file")]
    pub log_max_file: u32,
    pub mounts: Vec<MountRecord>,
    /// `--init`: PID 1 is Berth's init, which runs `path`/`args`.
    #[serde(default)]
    pub init: bool,
    /// The generated OCI bundle (`config.json`, `rootfs/`).
    pub bundle: PathBuf,
    pub state: State,
    /// `--device`, `--security-opt`, `--userns` as given (for `inspect`).
    #[serde(default)]
    pub security: SecurityRecord,
}

/// The security and device options a container was created with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityRecord {
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub userns_mode: String,
}

fn default_log_driver() -> String {
    "json-file".into()
}

fn default_log_max_size() -> u64 {
    crate::logs::Rotation::default().max_size
}

fn default_log_max_file() -> u32 {
    crate::logs::Rotation::default().max_file
}

impl ContainerRecord {
    /// The 12-digit short id Docker shows.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Why a record operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container record {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}; give more of the id")]
    Ambiguous(String),
    #[error("the container name \"/{name}\" is already in use by container {id:?}")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecordError {
    let path = path.to_owned();
    move |source| RecordError::Io { step, path, source }
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

pub(crate) fn lock_file(path: &Path) -> Result<Lock, RecordError> {
    Ok(take_lock(path, true)?.expect("a blocking lock is always taken"))
}

/// [`lock_file`] without waiting: `None` when another process holds the lock.
fn try_lock_file(path: &Path) -> Result<Option<Lock>, RecordError> {
    take_lock(path, false)
}

fn take_lock(path: &Path, wait: bool) -> Result<Option<Lock>, RecordError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("opening lock", path))?;
    let op = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    loop {
        match rustix::fs::flock(&f, op) {
            Ok(()) => return Ok(Some(Lock { _file: f })),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => return Ok(None),
            Err(e) => {
                return Err(io_err("locking", path)(io::Error::from_raw_os_error(
                    e.raw_os_error(),
                )))
            }
        }
    }
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The containers directory of a Berth root.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Opens (creating if needed) `<root>/containers`.
    pub fn open(root: &Path) -> Result<Self, RecordError> {
        let dir = root.join("containers");
        let names = dir.join("names");
        fs::create_dir_all(&names).map_err(io_err("creating", &names))?;
        Ok(Self { dir })
    }

    /// `<root>/containers/<id>`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("container.json")
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.dir.join("names").join(name)
    }

    /// Serialises creation and removal of containers and names.
    pub fn lock_index(&self) -> Result<Lock, RecordError> {
        lock_file(&self.dir.join("index.lock"))
    }

    /// Serialises changes to one container's record.
    pub fn lock(&self, id: &str) -> Result<Lock, RecordError> {
        lock_file(&self.dir(id).join("lock"))
    }

    /// Whether `name` is taken; call under the index lock.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.name_path(name))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Claims `name` for a new container `id` and writes its first record, under the index
    /// lock: two concurrent commands can never both get the name.
    pub fn insert(&self, rec: &ContainerRecord) -> Result<(), RecordError> {
        if !valid_name(&rec.name) {
            return Err(RecordError::InvalidName(rec.name.clone()));
        }
        let _index = self.lock_index()?;
        // A name whose record is gone (a `berth` killed mid-rename) is free again.
        if let Some(id) = self
            .name_owner(&rec.name)
            .filter(|id| self.record_path(id).exists())
        {
            return Err(RecordError::NameInUse {
                name: rec.name.clone(),
                id,
            });
        }
        // The record appears whole or not at all: it is written into a hidden directory that is
        // renamed into place, so a `berth` killed here leaves nothing `ps` cannot see (the next
        // listing sweeps the hidden directory).
        let dir = self.dir(&rec.id);
        let tmp = self.dir.join(format!(".{}.new", rec.id));
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        let data = serde_json::to_vec_pretty(rec).expect("a record serialises");
        let res = write_atomic(&tmp.join("container.json"), &data).and_then(|()| {
            fs::rename(&tmp, &dir).map_err(io_err("creating", &dir))?;
            self.write_name(&rec.name, &rec.id)
        });
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_dir_all(&dir);
        }
        res
    }

    /// Points `name` at `id` atomically. The temporary file lives in the containers directory,
    /// where a listing notices (and sweeps) one left by a killed `berth`.
    fn write_name(&self, name: &str, id: &str) -> Result<(), RecordError> {
        let tmp = self
            .dir
            .join(format!(".name-{name}.{}.tmp", std::process::id()));
        let path = self.name_path(name);
        let res = fs::write(&tmp, id.as_bytes())
            .map_err(io_err("writing", &tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path)));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Removes what a killed `insert` or `remove` left half done (hidden `.ID.new` and
    /// `.ID.gone` directories, `.name-*.tmp` files); the caller holds the index lock, so none is in progress.
    fn sweep_locked(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if n.starts_with(".name-") && n.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            } else if n.starts_with('.') && (n.ends_with(".new") || n.ends_with(".gone")) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Writes `rec` atomically; the caller holds the record's lock (or just created it).
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), RecordError> {
        let data = serde_json::to_vec_pretty(rec).expect("a record serialises");
        let path = self.record_path(&rec.id);
        if rec.auto_remove {
            // A `--rm` container's record need not outlive the host: replace it without making
            // the filesystem write it out first (berth_runtime::state::replace_file).
            write_via_tmp(&path, &data, berth_runtime::state::replace_file)
        } else {
            write_atomic(&path, &data)
        }
    }

    /// Reads the record of full id `id`.
    pub fn load(&self, id: &str) -> Result<ContainerRecord, RecordError> {
        let path = self.record_path(id);
        let mut data = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut data).map_err(io_err("reading", &path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecordError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| RecordError::Corrupt { path, source })
    }

    /// Full ids of all containers, in no particular order.
    pub fn ids(&self) -> Result<Vec<String>, RecordError> {
        let mut ids = Vec::new();
        let mut leftovers = false;
        for e in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let e = e.map_err(io_err("listing", &self.dir))?;
            if let Some(n) = e.file_name().to_str() {
                if is_full_id(n) && e.path().join("container.json").exists() {
                    ids.push(n.to_owned());
                }
                leftovers |= n.starts_with('.');
            }
        }
        if leftovers {
            let _index = self.lock_index()?;
            self.sweep_locked();
        }
        Ok(ids)
    }

    /// All records (those removed meanwhile are skipped).
    pub fn list(&self) -> Result<Vec<ContainerRecord>, RecordError> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(r) => out.push(r),
                Err(RecordError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Docker's lookup order: full id, exact name, then a unique id prefix.
    pub fn resolve(&self, what: &str) -> Result<String, RecordError> {
        let not_found = || RecordError::NotFound(what.to_owned());
        if is_full_id(what) && self.record_path(what).exists() {
            return Ok(what.to_owned());
        }
        let name = what.strip_prefix('/').unwrap_or(what);
        if valid_name(name) {
            if let Some(id) = self.name_owner(name) {
                return Ok(id);
            }
        }
        if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let want = what.to_ascii_lowercase();
        let hits: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(&want))
            .collect();
        match hits.len() {
            0 => Err(not_found()),
            1 => Ok(hits.into_iter().next().expect("one hit")),
            _ => Err(RecordError::Ambiguous(what.to_owned())),
        }
    }

    /// Removes what a `berth` killed in the middle of [`Self::insert`] or [`Self::remove`]
    /// left: a container directory without `container.json`, and names of such containers.
    /// Both of those hold the index lock while a directory lacks its record, so under the
    /// lock such a directory is garbage. Returns the ids removed.
    ///
    /// Only when the index lock is free: a listing (`ps`) must not wait behind a long `rm` or
    /// `run` for a sweep that the next free moment does as well.
    pub fn reap_orphans(&self) -> Result<Vec<String>, RecordError> {
        let Some(_index) = try_lock_file(&self.dir.join("index.lock"))? else {
            return Ok(Vec::new());
        };
        let mut reaped = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let e = e.map_err(io_err("listing", &self.dir))?;
            let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_full_id(&n) && !e.path().join("container.json").exists() {
                match fs::remove_dir_all(e.path()) {
                    Ok(()) => reaped.push(n),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io_err("removing", &e.path())(err)),
                }
            }
        }
        let names = self.dir.join("names");
        for e in fs::read_dir(&names).map_err(io_err("listing", &names))? {
            let e = e.map_err(io_err("listing", &names))?;
            let id = fs::read_to_string(e.path()).unwrap_or_default();
            if !self.record_path(id.trim()).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(reaped)
    }

    /// Gives container `id` the name `new`, under the index lock and the record's lock.
    pub fn rename(&self, id: &str, new: &str) -> Result<(), RecordError> {
        if !valid_name(new) {
            return Err(RecordError::InvalidName(new.to_owned()));
        }
        let _index = self.lock_index()?;
        if let Some(owner) = self.name_owner(new) {
            return Err(RecordError::NameInUse {
                name: new.to_owned(),
                id: owner,
            });
        }
        let _lock = self.lock(id)?;
        let mut rec = self.load(id)?;
        self.write_name(new, id)?;
        let old = std::mem::replace(&mut rec.name, new.to_owned());
        if let Err(e) = self.save(&rec) {
            let _ = fs::remove_file(self.name_path(new));
            return Err(e);
        }
        if self.name_owner(&old).as_deref() == Some(id) {
            let p = self.name_path(&old);
            fs::remove_file(&p).map_err(io_err("removing", &p))?;
        }
        Ok(())
    }

    /// Removes the record, its directory and its name, under the index lock. Idempotent.
    pub fn remove(&self, id: &str, name: &str) -> Result<(), RecordError> {
        let _index = self.lock_index()?;
        if self.name_owner(name).as_deref() == Some(id) {
            let p = self.name_path(name);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &p)(e)),
            }
        }
        // Gone at once (a rename), then deleted: a `berth` killed meanwhile leaves a hidden
        // directory the next listing sweeps, never a record without its `container.json`.
        let dir = self.dir(id);
        let gone = self.dir.join(format!(".{id}.gone"));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("removing", &dir)(e)),
        }
        fs::remove_dir_all(&gone).map_err(io_err("removing", &gone))
    }
}

/// Writes `data` to `path` through a temporary file and `rename(2)`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RecordError> {
    write_via_tmp(path, data, |tmp, path| fs::rename(tmp, path))
}

/// Writes `data` to `.NAME.PID.tmp` beside `path`, then moves it into place with `replace`.
fn write_via_tmp(
    path: &Path,
    data: &[u8],
    replace: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> Result<(), RecordError> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(data).map_err(io_err("writing", &tmp))?;
    drop(f);
    replace(&tmp, path).map_err(io_err("renaming into place", path))
}

/// A new random 64-hex container id (from the kernel's CSPRNG, as Docker's).
pub fn new_id() -> Result<String, RecordError> {
    let mut buf = [0u8; 32];
    let p = Path::new("/dev/urandom");
    File::open(p)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("reading", p))?;
    let mut s = String::with_capacity(64);
    for b in buf {
        s.push_str(&format!("{b:02x}"));
    }
    // Docker never hands out an all-digit short id (it would parse as a number).
    if s[..12].bytes().all(|b| b.is_ascii_digit()) {
        return new_id();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            created: 0,
            path: "sh".into(),
            args: vec![],
            env: vec![],
            working_dir: "/".into(),
            user: String::new(),
            hostname: id[..12].into(),
            tty: false,
            open_stdin: false,
            auto_remove: false,
            read_only: false,
            privileged: false,
            memory: 0,
            nano_cpus: 0,
            pids_limit: 0,
            cap_add: vec![],
            cap_drop: vec![],
            cgroup_path: String::new(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            labels: vec![],
            network_mode: "none".into(),
            restart_policy: "no".into(),
            restart_count: 0,
            log_driver: default_log_driver(),
            log_max_size: default_log_max_size(),
            log_max_file: default_log_max_file(),
            mounts: vec![],
            init: false,
            bundle: PathBuf::new(),
            state: State::default(),
            security: SecurityRecord::default(),
        }
    }

    #[test]
    fn names_are_unique_and_ids_resolve_by_prefix() {
        let t = tempfile::tempdir().unwrap();
        let r = Records::open(t.path()).unwrap();
        let a = new_id().unwrap();
        // b shares a's first 20 digits and differs in the 21st.
        let c = if a.as_bytes()[20] == b'f' { 'e' } else { 'f' };
        let b = format!("{}{c}{}", &a[..20], &a[21..]);
        r.insert(&rec(&a, "web")).unwrap();
        assert!(matches!(
            r.insert(&rec(&b, "web")),
            Err(RecordError::NameInUse { .. })
        ));
        r.insert(&rec(&b, "db")).unwrap();
        assert_eq!(r.resolve("web").unwrap(), a);
        assert_eq!(r.resolve("/db").unwrap(), b);
        assert_eq!(r.resolve(&a).unwrap(), a);
        assert_eq!(r.resolve(&b[..21]).unwrap(), b);
        assert!(matches!(
            r.resolve(&a[..20]),
            Err(RecordError::Ambiguous(_))
        ));
        assert!(matches!(r.resolve("nope"), Err(RecordError::NotFound(_))));
        r.rename(&a, "front").unwrap();
        assert!(matches!(
            r.rename(&b, "front"),
            Err(RecordError::NameInUse { .. })
        ));
        assert_eq!(r.resolve("front").unwrap(), a);
        assert!(r.name_owner("web").is_none());
        r.remove(&a, "front").unwrap();
        r.remove(&a, "front").unwrap();
        // What a killed insert leaves (a directory and a name without a record) is reaped.
        let orphan = new_id().unwrap();
        std::fs::create_dir(r.dir(&orphan)).unwrap();
        std::fs::write(r.name_path("half"), &orphan).unwrap();
        // While someone holds the index lock (an insert or remove in progress), the sweep
        // does not wait for it: it leaves everything for a later one.
        let held = r.lock_index().unwrap();
        assert!(r.reap_orphans().unwrap().is_empty());
        assert!(r.dir(&orphan).exists());
        drop(held);
        assert_eq!(r.reap_orphans().unwrap(), vec![orphan.clone()]);
        assert!(!r.dir(&orphan).exists() && r.name_owner("half").is_none());
        assert_eq!(r.name_owner("db").as_deref(), Some(b.as_str()));
        assert_eq!(r.resolve(&a[..12]).unwrap(), b);
        assert_eq!(r.list().unwrap().len(), 1);
        assert!(r.name_owner("web").is_none());
    }

    #[test]
    fn leftovers_of_killed_inserts_and_removes_are_swept() {
        let t = tempfile::tempdir().unwrap();
        let r = Records::open(t.path()).unwrap();
        let live = "a".repeat(64);
        r.insert(&rec(&live, "live")).unwrap();
        // What SIGKILLs inside the index lock can leave: a half-built record, a record whose
        // removal stopped after the rename, a name's temporary file, a name whose record is gone.
        let dir = t.path().join("containers");
        let half_built = dir.join(format!(".{}.new", "b".repeat(64)));
        fs::create_dir(&half_built).unwrap();
        let half_removed = dir.join(format!(".{}.gone", "c".repeat(64)));
        fs::create_dir_all(half_removed.join("bundle")).unwrap();
        let name_tmp = dir.join(".name-x.1.tmp");
        fs::write(&name_tmp, "d").unwrap();
        assert_eq!(r.ids().unwrap(), vec![live.clone()]);
        assert!(!half_built.exists() && !half_removed.exists() && !name_tmp.exists());
        assert_eq!(r.name_owner("live"), Some(live));
        // A name left pointing at a missing record does not block its reuse.
        fs::write(r.name_path("again"), "e".repeat(64)).unwrap();
        r.insert(&rec(&"f".repeat(64), "again")).unwrap();
        assert_eq!(r.name_owner("again"), Some("f".repeat(64)));
    }

    #[test]
    fn concurrent_inserts_of_one_name_give_one_winner() {
        let t = tempfile::tempdir().unwrap();
        let r = Records::open(t.path()).unwrap();
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let r = r.clone();
                    s.spawn(move || r.insert(&rec(&new_id().unwrap(), "same")).is_ok())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(r.list().unwrap().len(), 1);
    }

    #[test]
    fn docker_name_rules() {
        assert!(valid_name("web-1"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
    }
}
