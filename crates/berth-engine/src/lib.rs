//! Berth's engine: turns "an image plus run options" into a running container and keeps track
//! of it, daemonless.
//!
//! It promises: a record per container under `<root>/containers/<id>/` that concurrent
//! `berth` commands never lose or duplicate (see [`record`]); an OCI bundle generated from the
//! image config and Docker's run options with Docker's security defaults (see [`bundle`]);
//! containers run through `berth-runtime` either in the foreground or under a small per-container
//! monitor process that owns their stdio, writes `json-file` logs and records the exit (see
//! [`monitor`]); and a failure in the middle of `create`/`start` leaves no record, mount,
//! cgroup or monitor behind.
//!
//! It depends on `berth-runtime` (bundles) and `berth-image` (store, snapshots); it must not
//! print or exit: the CLI reports errors and maps them to Docker's exit codes.

pub mod attach;
pub mod bundle;
pub mod config;
pub mod devices;
pub mod events;
pub mod exec;
pub mod fsops;
pub mod init;
pub mod isolation;
pub mod lifecycle;
pub mod logs;
pub mod manage;
pub mod monitor;
pub mod mountspec;
pub mod names;
pub mod network;
pub mod record;
pub mod stats;
pub mod user;
pub mod volume;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use berth_runtime::ops::Runtime;

pub use berth_net;
pub use bundle::RunOptions;
pub use lifecycle::RemoveError;
pub use record::{ContainerRecord, RecordError, Records, Status};

/// The default storage root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// The default runtime state root (cleared by a reboot, as runtime state should be).
pub const DEFAULT_RUN_ROOT: &str = "/run/berth";

/// How to start a monitor process: a program and its leading arguments; the container id is
/// appended. The CLI points this at itself (`berth --root R container-monitor`).
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// One Berth root: images, containers and runtime state.
#[derive(Debug, Clone)]
pub struct Engine {
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub records: Records,
    pub runtime: Runtime,
    pub monitor: Option<MonitorCommand>,
    /// Bound of each file of the event log (see [`events`]).
    pub events_max_size: u64,
    /// Defaults from `berth.toml` (see [`config`]), applied by `create`.
    pub config: config::Config,
    /// The file they came from, if any (the monitor is given it too).
    pub config_file: Option<PathBuf>,
}

/// Why the engine's directories could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("creating the runtime root {path}")]
    RunRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Engine {
    /// Opens `root`. Runtime state goes to `/run/berth` for the default root and to
    /// `<root>/run` otherwise, so that separate roots (tests) never share runtime state.
    pub fn open(root: &Path) -> Result<Self, OpenError> {
        Self::open_with(root, &config::Config::default(), None)
    }

    /// [`Self::open`] with the defaults of a configuration file (its `run_root` replaces
    /// the one derived from `root`).
    pub fn open_with(
        root: &Path,
        config: &config::Config,
        config_file: Option<PathBuf>,
    ) -> Result<Self, OpenError> {
        let run_root = match &config.run_root {
            Some(r) => r.clone(),
            None if root == Path::new(DEFAULT_ROOT) => PathBuf::from(DEFAULT_RUN_ROOT),
            None => root.join("run"),
        };
        std::fs::create_dir_all(&run_root).map_err(|source| OpenError::RunRoot {
            path: run_root.clone(),
            source,
        })?;
        // Each container's directories land in a block group of their own (ext4's Orlov
        // allocator), not among the inodes earlier containers just freed.
        berth_image::store::spread_subdirectories(&run_root);
        let records = Records::open(root)?;
        berth_image::store::spread_subdirectories(&root.join("containers"));
        // Compiling the default seccomp profile costs more than the rest of a create; the
        // runtime caches compiled programs keyed by profile, kernel and libseccomp.
        berth_runtime::security::seccomp::use_cache_dir(run_root.join("seccomp-cache"));
        Ok(Self {
            root: root.to_owned(),
            records,
            runtime: Runtime::new(&run_root),
            run_root,
            monitor: None,
            events_max_size: config.events_max_size(),
            config: config.clone(),
            config_file,
        })
    }

    /// The log driver a container gets without `--log-driver`.
    pub fn default_log_driver(&self) -> &str {
        self.config.logs.driver.as_deref().unwrap_or("json-file")
    }

    /// Finds a container by id, name or unique id prefix and loads its record.
    pub fn find(&self, what: &str) -> Result<ContainerRecord, RecordError> {
        let id = self.records.resolve(what)?;
        self.records.load(&id)
    }

    /// The `json-file` log of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.records.dir(id).join(format!("{id}-json.log"))
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{IFlags, Mode, OFlags};

    fn flags(p: &Path) -> Option<IFlags> {
        let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).ok()?;
        rustix::fs::ioctl_getflags(&fd).ok()
    }

    #[test]
    fn container_snapshot_and_state_directories_spread_their_children() {
        let t = tempfile::tempdir().unwrap();
        let e = Engine::open(&t.path().join("root")).unwrap();
        e.store().unwrap(); // the image store makes snapshots/
        let probe = t.path().join("probe");
        std::fs::create_dir(&probe).unwrap();
        berth_image::store::spread_subdirectories(&probe);
        if !flags(&probe).is_some_and(|f| f.contains(IFlags::TOPDIR)) {
            eprintln!("skipping: this filesystem has no FS_TOPDIR_FL");
            return;
        }
        for d in [
            e.root.join("containers"),
            e.root.join("snapshots"),
            e.run_root.clone(),
        ] {
            let f = flags(&d).unwrap();
            assert!(f.contains(IFlags::TOPDIR), "{}: {f:?}", d.display());
        }
        // Only those: the container directories below them are ordinary.
        assert!(!flags(&e.root.join("containers/names"))
            .unwrap()
            .contains(IFlags::TOPDIR));
    }
}
