//! create, start (foreground or under a monitor), finish, stop, kill, remove, wait.
//!
//! Who finishes a container: the process that supervises it (the foreground `berth run`/`start`,
//! or the monitor) records the exit code, deletes the runtime state and cgroup, and unmounts the
//! rootfs. If that supervisor died (SIGKILL, reboot), [`Engine::reconcile`] notices it from the
//! recorded pid and start time and finishes the container itself, so `ps` tells the truth and
//! `rm` cleans up.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::snapshot::{SnapshotError, Snapshotter};
use berth_image::store::{Store, StoreError};
use berth_runtime::ops;
use berth_runtime::state::{process_start_time, StateError};

use crate::bundle::{self, BundleError, ImageConfig, RunOptions, SpecInputs};
use crate::record::{self, ContainerRecord, RecordError, State, Status};
use crate::{now_secs, Engine};

/// Why `create` failed. Whatever it had made is gone by the time this is returned.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("no such image: {image}")]
    NoSuchImage {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("reading the config of image {image}")]
    ImageConfig {
        image: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Device(#[from] crate::devices::DeviceError),
    #[error("invalid --platform {value:?}")]
    Platform {
        value: String,
        #[source]
        source: berth_image::manifest::ManifestError,
    },
    #[error("image {image} was found but does not match the specified platform: wanted {wanted}, actual {actual}")]
    PlatformMismatch {
        image: String,
        wanted: String,
        actual: String,
    },
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    #[error(transparent)]
    Network(#[from] Box<crate::network::NetworkError>),
    #[error("cannot join the {kind} namespace of container {target:?}: it is not running")]
    JoinNotRunning { kind: &'static str, target: String },
    #[error("opening the image store")]
    Store(#[source] StoreError),
    #[error("preparing the root filesystem of container {id}")]
    Snapshot {
        id: String,
        #[source]
        source: SnapshotError,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    #[error("{original}; cleaning up afterwards also failed: {cleanup}")]
    CleanupFailed {
        #[source]
        original: Box<CreateError>,
        cleanup: String,
    },
}

/// Why `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("mounting the root filesystem of container {id}")]
    Mount {
        id: String,
        #[source]
        source: SnapshotError,
    },
    #[error("opening the image store")]
    Store(#[source] StoreError),
    #[error("creating container {id} in the runtime")]
    Create {
        id: String,
        #[source]
        source: Box<ops::create::CreateError>,
    },
    #[error("starting container {id}")]
    Start {
        id: String,
        #[source]
        source: Box<ops::start::StartError>,
    },
    #[error("setting up signal forwarding")]
    Signals(#[source] nix::errno::Errno),
    #[error("serving the container's terminal")]
    Console(#[source] ops::console::ConsoleError),
    #[error("waiting for container {id}")]
    Wait {
        id: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("preparing the attach socket of container {id}")]
    AttachSocket {
        id: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("no monitor program is configured to run container {0} detached")]
    NoMonitor(String),
    #[error("starting the monitor of container {id}")]
    SpawnMonitor {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the monitor of container {id} failed: {message}")]
    Monitor {
        id: String,
        message: String,
        command_exit_code: Option<u8>,
    },
    #[error("redirecting {what} of the monitor")]
    Stdio {
        what: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("setting up the network of container {id}")]
    Network {
        id: String,
        #[source]
        source: Box<crate::network::NetworkError>,
    },
}

/// Docker's exit code when the container's command itself cannot run: 127 when it is not
/// found, 126 when it cannot be executed. `None` for any other failure.
pub fn command_exit_code(e: &berth_runtime::spawn::parent::SpawnError) -> Option<u8> {
    use berth_runtime::spawn::parent::SpawnError;
    use berth_runtime::spawn::InitStep;
    match e {
        SpawnError::Child(ie) if matches!(ie.step, InitStep::FindExecutable | InitStep::Exec) => {
            Some(if ie.errno == Some(libc::ENOENT) {
                127
            } else {
                126
            })
        }
        _ => None,
    }
}

impl StartError {
    /// 126/127 when the container's command could not be run (Docker's codes), else `None`.
    pub fn command_exit_code(&self) -> Option<u8> {
        match self {
            StartError::Create { source, .. } => match source.as_ref() {
                ops::create::CreateError::Spawn(s) => command_exit_code(s),
                _ => None,
            },
            StartError::Monitor {
                command_exit_code, ..
            } => *command_exit_code,
            _ => None,
        }
    }
}

/// Why `stop`, `kill` or `wait` failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("signalling container {id}")]
    Kill {
        id: String,
        #[source]
        source: Box<ops::kill::KillError>,
    },
    #[error("invalid signal {signal:?}")]
    Signal {
        signal: String,
        #[source]
        source: Box<ops::kill::KillError>,
    },
    #[error("container {id} did not stop within {secs}s after SIGKILL")]
    StillRunning { id: String, secs: u64 },
}

/// Why `rm` failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot remove container {0}: it is running; stop it first or use --force")]
    Running(String),
    #[error(transparent)]
    Stop(#[from] StopError),
    #[error("removing container {id}: {problems}")]
    Teardown { id: String, problems: String },
}

fn bundle_rootfs(rec: &ContainerRecord) -> PathBuf {
    rec.bundle.join("rootfs")
}

/// Whether `path` is a mount point: its mount differs from its parent's (`statx`'s mount
/// id; a device comparison misses a bind mount of a directory of the same filesystem, which
/// is what a copy-kind snapshot is). Falls back to the device on kernels before 5.8.
pub(crate) fn is_mounted(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let mnt = |p: &Path| {
        statx(CWD, p, AtFlags::empty(), StatxFlags::MNT_ID)
            .ok()
            .filter(|x| StatxFlags::from_bits_retain(x.stx_mask).contains(StatxFlags::MNT_ID))
            .map(|x| x.stx_mnt_id)
    };
    if let (Some(a), Some(Some(b))) = (mnt(path), path.parent().map(mnt)) {
        return a != b;
    }
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Whether an image of platform `have` satisfies `--platform want` (os and architecture
/// equal; a variant only when asked for, arm64 images often omitting the default `v8`).
pub fn platform_matches(have: &berth_image::Platform, want: &berth_image::Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && match (&want.variant, &have.variant) {
            (None, _) => true,
            (Some(w), Some(h)) => w == h,
            (Some(w), None) => want.architecture == "arm64" && w == "v8",
        }
}

fn check_platform(
    image: &str,
    have: &berth_image::Platform,
    want: &str,
) -> Result<(), CreateError> {
    let wanted: berth_image::Platform = want.parse().map_err(|source| CreateError::Platform {
        value: want.to_owned(),
        source,
    })?;
    if platform_matches(have, &wanted) {
        Ok(())
    } else {
        Err(CreateError::PlatformMismatch {
            image: image.to_owned(),
            wanted: wanted.to_string(),
            actual: have.to_string(),
        })
    }
}

fn id_seed(id: &str, attempt: u8) -> [u8; 4] {
    let b = id.as_bytes();
    [b[12] ^ attempt, b[13], b[14], b[15].wrapping_add(attempt)]
}

impl Engine {
    pub(crate) fn store(&self) -> Result<Store, StoreError> {
        Store::open(&self.root)
    }

    /// `berth create`: a record, a snapshot and a bundle; no process yet. With `keep_mounted`
    /// the rootfs stays mounted for an immediate start (`run`).
    /// Every check of `opts` that needs no image, so a bad flag fails before a pull (Docker
    /// validates flags first): what `create` checks before anything exists.
    pub fn check_options(opts: &RunOptions) -> Result<(), CreateError> {
        bundle::restart_policy(opts)?;
        bundle::log_config(opts)?;
        bundle::user_mounts(opts)?;
        Self::check_flags(opts)
    }

    /// The checks whose results `create` does not keep.
    fn check_flags(opts: &RunOptions) -> Result<(), CreateError> {
        bundle::hosts_file("", opts)?;
        bundle::resolv_conf(opts)?;
        bundle::security_opts(opts)?;
        bundle::resources(opts)?;
        for u in &opts.ulimits {
            bundle::parse_ulimit(u)?;
        }
        crate::devices::resolve(opts)?;
        Ok(())
    }

    pub fn create(
        &self,
        opts: &RunOptions,
        keep_mounted: bool,
    ) -> Result<ContainerRecord, CreateError> {
        // berth.toml's defaults where the command line gave none.
        let mut with_defaults = opts.clone();
        self.config.apply(&mut with_defaults);
        let opts = &with_defaults;
        let store = self.store().map_err(CreateError::Store)?;
        let image = store
            .resolve(&opts.image)
            .map_err(|source| CreateError::NoSuchImage {
                image: opts.image.clone(),
                source,
            })?;
        if let Some(p) = &opts.platform {
            check_platform(&opts.image, &image.platform, p)?;
        }
        let cfg_err = |source: Box<dyn std::error::Error + Send + Sync>| CreateError::ImageConfig {
            image: opts.image.clone(),
            source,
        };
        let doc: serde_json::Value = serde_json::from_slice(
            &store
                .read_blob(&image.id)
                .map_err(|e| cfg_err(Box::new(e)))?,
        )
        .map_err(|e| cfg_err(Box::new(e)))?;
        let img = ImageConfig::from_image_json(&doc).map_err(|e| cfg_err(Box::new(e)))?;

        // Everything that can be checked without a rootfs is checked before anything exists.
        let args = bundle::process_args(&img, opts)?;
        let restart_policy = bundle::restart_policy(opts)?;
        let (log_driver, rotation) = bundle::log_config(opts)?;
        Self::check_flags(opts)?;
        let net_plan = self.plan_network(opts, &img).map_err(Box::new)?;
        let mut mounts = bundle::user_mounts(opts)?;
        // --volumes-from: the other container's volumes and binds, where no mount of ours is.
        for vf in &opts.volumes_from {
            let (what, mode) = match vf.rsplit_once(':') {
                Some((c, m @ ("ro" | "rw"))) => (c, Some(m)),
                Some(_) => return Err(BundleError::VolumesFrom(vf.clone()).into()),
                None => (vf.as_str(), None),
            };
            if what.is_empty() {
                return Err(BundleError::VolumesFrom(vf.clone()).into());
            }
            let from = self.find(what)?;
            for m in from
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" || m.kind == "bind")
            {
                if mounts.iter().any(|x| x.destination == m.destination) {
                    continue;
                }
                let mut m = m.clone();
                if let Some(mode) = mode {
                    m.rw = mode == "rw";
                }
                mounts.push(m);
            }
        }
        let from_image = bundle::image_volumes(&img, &mounts)?;
        mounts.extend(from_image);
        let init_binary = if opts.init {
            Some(crate::init::find()?)
        } else {
            None
        };
        let parent = opts
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| "/berth".into());
        if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
            return Err(BundleError::CgroupParent(parent).into());
        }
        if let Some(w) = &opts.workdir {
            if !w.starts_with('/') {
                return Err(BundleError::Workdir(w.clone()).into());
            }
        }

        // Namespaces of other containers are resolved now: a stopped target is an error before
        // anything exists.
        let mut joined = Vec::new();
        for (kind, mode) in bundle::namespace_modes(opts)? {
            if let bundle::NsMode::Container(target) = mode {
                let t = self.reconcile(self.find(&target)?);
                if t.state.status != Status::Running || t.state.pid <= 0 {
                    return Err(CreateError::JoinNotRunning { kind, target });
                }
                let file = if kind == "network" { "net" } else { kind };
                joined.push((
                    kind,
                    PathBuf::from(format!("/proc/{}/ns/{file}", t.state.pid)),
                ));
            }
        }

        let id = record::new_id()?;
        let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_owned());
        let bundle_dir = self.records.dir(&id).join("bundle");
        let mut rec = ContainerRecord {
            id: id.clone(),
            name: String::new(),
            image: opts.image.clone(),
            image_id: image.id.to_string(),
            created: now_secs(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            env: Vec::new(),
            working_dir: String::new(),
            user: opts.user.clone().or(img.user.clone()).unwrap_or_default(),
            hostname: hostname.clone(),
            tty: opts.tty,
            open_stdin: opts.interactive,
            auto_remove: opts.auto_remove,
            read_only: opts.read_only,
            privileged: opts.privileged,
            memory: opts
                .memory
                .as_deref()
                .and_then(bundle::parse_bytes)
                .unwrap_or(0),
            nano_cpus: opts
                .cpus
                .as_deref()
                .and_then(bundle::parse_cpus)
                .unwrap_or(0),
            pids_limit: opts.pids_limit.unwrap_or(0),
            cap_add: opts.cap_add.clone(),
            cap_drop: opts.cap_drop.clone(),
            cgroup_path: format!("{}/{id}", parent.trim_end_matches('/')),
            stop_signal: opts
                .stop_signal
                .clone()
                .or(img.stop_signal.clone())
                .unwrap_or_else(|| "SIGTERM".into()),
            stop_timeout: opts.stop_timeout.unwrap_or(10),
            labels: opts.labels.clone(),
            network_mode: opts
                .network
                .clone()
                .unwrap_or_else(|| crate::network::DEFAULT_MODE.into()),
            restart_policy,
            restart_count: 0,
            log_driver,
            log_max_size: rotation.max_size,
            log_max_file: rotation.max_file,
            mounts,
            init: opts.init,
            bundle: bundle_dir,
            state: State::default(),
            security: record::SecurityRecord {
                devices: opts.devices.clone(),
                security_opt: opts.security_opts.clone(),
                userns_mode: opts.userns.clone().unwrap_or_default(),
            },
        };
        // Volumes are created, and the record that uses them inserted, under the volumes
        // lock: a concurrent `volume rm` sees either no volume or a user.
        let volumes_lock = if rec.mounts.iter().any(|m| m.kind == "volume") {
            Some(self.volumes().lock()?)
        } else {
            None
        };
        let mut new_volumes = Vec::new();
        let inserted = self
            .attach_volumes(&mut rec.mounts, &mut new_volumes)
            .map_err(CreateError::from)
            .and_then(|()| self.insert_named(&mut rec, opts, &id));
        if let Err(e) = inserted {
            let vols = self.volumes();
            for name in &new_volumes {
                let _ = vols.remove_locked(name);
            }
            return Err(e);
        }
        drop(volumes_lock);
        // `-v /host/path:/dst` creates a missing host directory, as Docker does (`--mount`
        // refuses it instead).
        for v in &opts.volumes {
            if let Ok(m) = crate::mountspec::parse_volume_flag(v) {
                if m.kind == "bind" && !Path::new(&m.source).exists() {
                    if let Err(source) = std::fs::create_dir_all(&m.source) {
                        let e = CreateError::Write {
                            path: PathBuf::from(&m.source),
                            source,
                        };
                        return Err(self.undo_create(&rec, &new_volumes, e));
                    }
                }
            }
        }
        // The record exists: from here on every failure undoes everything.
        let made = self
            .save_plan(&rec.id, &net_plan)
            .map_err(CreateError::from)
            .and_then(|()| {
                self.create_in(
                    (&store, &image, &img),
                    opts,
                    &mut rec,
                    &joined,
                    init_binary.as_deref(),
                    keep_mounted,
                )
            });
        match made {
            Ok(()) => {
                self.emit_container(&rec, "create", &[]);
                Ok(rec)
            }
            Err(e) => Err(self.undo_create(&rec, &new_volumes, e)),
        }
    }

    /// Inserts `rec` under `opts.name`, or a generated name.
    fn insert_named(
        &self,
        rec: &mut ContainerRecord,
        opts: &RunOptions,
        id: &str,
    ) -> Result<(), CreateError> {
        match &opts.name {
            Some(n) => {
                rec.name = n.clone();
                self.records.insert(rec)?;
            }
            None => {
                // A generated name may collide with an existing one: draw again.
                let mut attempt = 0u8;
                loop {
                    rec.name = crate::names::generate(&id_seed(id, attempt));
                    match self.records.insert(rec) {
                        Err(RecordError::NameInUse { .. }) if attempt < 20 => attempt += 1,
                        other => break other?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates (or finds) the volume of every volume mount and fills in its source; the names
    /// of the volumes created go to `created`. The caller holds the volumes lock.
    fn attach_volumes(
        &self,
        mounts: &mut [record::MountRecord],
        created: &mut Vec<String>,
    ) -> Result<(), crate::volume::VolumeError> {
        let vols = self.volumes();
        for m in mounts.iter_mut().filter(|m| m.kind == "volume") {
            // A new anonymous volume has no name yet; one shared by --volumes-from has.
            let wanted = (!m.name.is_empty()).then_some(m.name.as_str());
            let ensured = self.ensure_volume(wanted)?;
            if ensured.created {
                created.push(ensured.record.name.clone());
            }
            m.name = ensured.record.name.clone();
            m.fs = ensured.record.fs_mount();
            m.source = match &m.fs {
                Some(fs) => fs.device.clone(),
                None => vols.mountpoint(&m.name).display().to_string(),
            };
        }
        Ok(())
    }

    /// Undoes a `create` that failed after its record existed: the container, its anonymous
    /// volumes and the named volumes this `create` made.
    fn undo_create(
        &self,
        rec: &ContainerRecord,
        new_volumes: &[String],
        e: CreateError,
    ) -> CreateError {
        let mut problems = self.teardown(rec, true);
        for name in new_volumes {
            if let Err(err) = self.volume_remove_if_unused(name) {
                problems.push(crate::exec::chain(&err));
            }
        }
        if problems.is_empty() {
            e
        } else {
            CreateError::CleanupFailed {
                original: Box::new(e),
                cleanup: problems.join("; "),
            }
        }
    }

    /// The part of `create` after the record exists; `source` is the store, the image and
    /// its config.
    fn create_in(
        &self,
        source: (&Store, &berth_image::store::ImageRecord, &ImageConfig),
        opts: &RunOptions,
        rec: &mut ContainerRecord,
        joined: &[(&'static str, PathBuf)],
        init_binary: Option<&Path>,
        keep_mounted: bool,
    ) -> Result<(), CreateError> {
        let (store, image, img) = source;
        let id = rec.id.clone();
        let snap_err = |source| CreateError::Snapshot {
            id: id.clone(),
            source,
        };
        let snaps = Snapshotter::new(store.clone());
        // A `--rm` container's writable layer is disposable: no syncs for it (podman does the same).
        snaps
            .create_with(&id, image, None, rec.auto_remove)
            .map_err(snap_err)?;
        let rootfs = bundle_rootfs(rec);
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CreateError::Write { path, source }
        };
        std::fs::create_dir_all(&rootfs).map_err(write_err(&rootfs))?;
        snaps.mount(&id, &rootfs).map_err(snap_err)?;

        // Docker's copy-up into new (empty) volumes, before anything runs in the rootfs.
        for m in rec.mounts.iter().filter(|m| m.kind == "volume") {
            if !m.nocopy && m.fs.is_none() {
                self.copy_up(&rootfs, &m.destination, &m.name)?;
            }
        }
        let user = bundle::resolve_user(&rootfs, img, opts)?;
        let cwd = opts
            .workdir
            .clone()
            .or_else(|| img.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());
        let env = bundle::environment(img, opts, &rec.hostname);
        let dir = self.records.dir(&id);
        let hostname_file = dir.join("hostname");
        let hosts_file = dir.join("hosts");
        std::fs::write(&hostname_file, format!("{}\n", rec.hostname))
            .map_err(write_err(&hostname_file))?;
        std::fs::write(&hosts_file, bundle::hosts_file(&rec.hostname, opts)?)
            .map_err(write_err(&hosts_file))?;
        let mut etc_files = vec![(hostname_file, "/etc/hostname"), (hosts_file, "/etc/hosts")];
        if let Some(resolv) = bundle::resolv_conf(opts)? {
            let p = dir.join("resolv.conf");
            std::fs::write(&p, resolv).map_err(write_err(&p))?;
            etc_files.push((p, "/etc/resolv.conf"));
        }
        let mut full_args = vec![rec.path.clone()];
        full_args.extend(rec.args.iter().cloned());
        let spec = bundle::build_spec(
            opts,
            &SpecInputs {
                id: &id,
                hostname: &rec.hostname,
                args: &full_args,
                env: &env,
                cwd: &cwd,
                user: &user,
                mounts: &rec.mounts,
                etc_files: &etc_files,
                cgroups_path: &rec.cgroup_path,
                joined,
            },
        )?;
        let spec = crate::devices::apply(spec, opts)?;
        let mut spec = serde_json::to_value(&spec).expect("a spec serialises");
        if let Some(init) = init_binary {
            crate::init::apply(&mut spec, init);
        }
        let config = rec.bundle.join("config.json");
        record::write_atomic(
            &config,
            &serde_json::to_vec_pretty(&spec).expect("a spec serialises"),
        )?;
        rec.env = env;
        rec.working_dir = cwd;
        self.records.save(rec)?;
        if !keep_mounted {
            snaps.unmount(&rootfs).map_err(snap_err)?;
        }
        Ok(())
    }

    /// Removes everything a container may own: runtime state and cgroup, rootfs mount,
    /// snapshot, record and name, and with `anonymous_volumes` its anonymous volumes (those no
    /// other container uses). Continues past errors and returns them; "already gone" is
    /// success.
    fn teardown(&self, rec: &ContainerRecord, anonymous_volumes: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match ops::delete::delete(&self.runtime, &rec.id, true) {
            Ok(_) | Err(ops::delete::DeleteError::State(StateError::NotFound(_))) => {}
            Err(e) => problems.push(crate::exec::chain(&e)),
        }
        problems.extend(self.network_down(rec));
        problems.extend(self.teardown_storage(rec, anonymous_volumes));
        problems
    }

    /// The storage half of [`Self::teardown`]: the rootfs mount (if still there), the
    /// snapshot, the record and the anonymous volumes. `finish` of a `--rm` container calls it
    /// directly, having released the runtime state and network itself.
    fn teardown_storage(&self, rec: &ContainerRecord, anonymous_volumes: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match self.store() {
            Ok(store) => {
                let snaps = Snapshotter::new(store);
                let rootfs = bundle_rootfs(rec);
                if is_mounted(&rootfs) {
                    if let Err(e) = snaps.unmount(&rootfs) {
                        problems.push(crate::exec::chain(&e));
                    }
                }
                if let Err(e) = snaps.remove(&rec.id) {
                    problems.push(crate::exec::chain(&e));
                }
            }
            Err(e) => problems.push(crate::exec::chain(&e)),
        }
        if let Err(e) = self.records.remove(&rec.id, &rec.name) {
            problems.push(crate::exec::chain(&e));
        }
        // After the record: a volume is in use as long as a record names it.
        if anonymous_volumes {
            for m in rec
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" && m.anonymous)
            {
                if let Err(e) = self.volume_remove_if_unused(&m.name) {
                    problems.push(crate::exec::chain(&e));
                }
            }
        }
        problems
    }

    /// Mounts the rootfs (unless still mounted from `create`) and clears runtime state left by
    /// an earlier run, under the record lock; marks the container as starting by `supervisor`.
    fn prepare_start(&self, id: &str) -> Result<ContainerRecord, StartError> {
        let _lock = self.records.lock(id)?;
        let rec = self.records.load(id)?;
        if rec.state.status == Status::Running {
            return Err(StartError::AlreadyRunning(id.to_owned()));
        }
        // A previous run's runtime state (exited init, cgroup) must not block this one.
        let _ = ops::delete::delete(&self.runtime, id, true);
        let rootfs = bundle_rootfs(&rec);
        if !is_mounted(&rootfs) {
            let store = self.store().map_err(StartError::Store)?;
            Snapshotter::new(store)
                .mount(id, &rootfs)
                .map_err(|source| StartError::Mount {
                    id: id.to_owned(),
                    source,
                })?;
        }
        Ok(rec)
    }

    /// Creates and starts the runtime container for `rec`, with our stdio (or the console pair).
    /// On failure the runtime state, cgroup and rootfs mount are gone again and the error is
    /// recorded (or the whole container removed with `--rm`).
    fn launch(
        &self,
        rec: &ContainerRecord,
        console_fd: Option<std::os::fd::OwnedFd>,
    ) -> Result<i32, StartError> {
        let id = rec.id.clone();
        // The network is set up as soon as the namespace exists, while the init builds its
        // root filesystem, and before the container's process can see it. Its own error comes
        // back through the runtime unchanged and is reported as such.
        let network_up = |pid: i32| -> Result<(), ops::create::CallbackError> {
            self.network_up(rec, pid).map_err(Into::into)
        };
        let opts = ops::create::CreateOptions {
            bundle: rec.bundle.clone(),
            console_fd,
            // The parent (`/berth`, `--cgroup-parent`) is shared by every container and stays,
            // as podman keeps `libpod_parent`: made once, not for each run and removed after it.
            keep_cgroup_parents: true,
            namespaces_ready: Some(ops::create::NamespacesReady(&network_up)),
            ..Default::default()
        };
        let res = ops::create::create(&self.runtime, &id, &opts)
            .map_err(|source| match source {
                ops::create::CreateError::Spawn(
                    berth_runtime::spawn::parent::SpawnError::NamespacesReady(e),
                ) if e.is::<StartError>() => *e.downcast::<StartError>().expect("checked"),
                source => StartError::Create {
                    id: id.clone(),
                    source: Box::new(source),
                },
            })
            .and_then(|created| {
                ops::start::start(&self.runtime, &id)
                    .map(|_| created.pid)
                    .map_err(|source| StartError::Start {
                        id: id.clone(),
                        source: Box::new(source),
                    })
            });
        match res {
            Ok(pid) => {
                let _lock = self.records.lock(&id)?;
                let mut r = self.records.load(&id)?;
                let me = std::process::id() as i32;
                r.state = State {
                    status: Status::Running,
                    pid,
                    monitor_pid: me,
                    monitor_start_time: process_start_time(me).unwrap_or(0),
                    exit_code: 0,
                    error: String::new(),
                    started_at: now_secs(),
                    finished_at: 0,
                    paused: false,
                    manually_stopped: false,
                    restarting: false,
                };
                self.records.save(&r)?;
                // The `start` event is the caller's: the foreground path records it only
                // once its signals are blocked, so the window in which a signal kills it
                // with the default action stays as short as it can be.
                Ok(pid)
            }
            Err(e) => {
                self.finish(&id, 128, Some(crate::exec::chain(&e)));
                Err(e)
            }
        }
    }

    /// Records the exit of container `id` and releases what the run held (runtime state,
    /// cgroup, rootfs mount); with `--rm` removes the container. Best effort: the container
    /// has already exited.
    pub fn finish(&self, id: &str, code: i32, error: Option<String>) {
        self.finish_if(id, code, error, |_| true);
    }

    /// [`Self::finish`], if `still` holds for the record as it is under the lock (so a
    /// decision made on an older read cannot overwrite a newer exit).
    fn finish_if(
        &self,
        id: &str,
        code: i32,
        error: Option<String>,
        still: impl Fn(&ContainerRecord) -> bool,
    ) {
        let auto_remove = {
            let Ok(_lock) = self.records.lock(id) else {
                return;
            };
            let Ok(mut rec) = self.records.load(id) else {
                return;
            };
            if !still(&rec) {
                return;
            }
            let was_running = rec.state.status == Status::Running;
            let release_rootfs = || {
                // The init is gone: its addresses, veths and published ports go too.
                let _ = self.network_down(&rec);
                let rootfs = bundle_rootfs(&rec);
                if is_mounted(&rootfs) {
                    if let Ok(store) = self.store() {
                        let snaps = Snapshotter::new(store);
                        // `--rm`: the writable layer goes now, and only once unmounted
                        // (never under a live overlay).
                        if snaps.unmount(&rootfs).is_ok() && rec.auto_remove {
                            let _ = snaps.remove(id);
                        }
                    }
                }
            };
            // The runtime's half first (its state, the cgroup), then the network and the
            // rootfs. (A second thread for the runtime's half, in parallel with the unmount,
            // was a loss once the cgroup's removal became a single rmdir: decision 0008.)
            let _ = ops::delete::delete(&self.runtime, id, true);
            release_rootfs();
            rec.state.status = Status::Exited;
            rec.state.paused = false;
            rec.state.pid = 0;
            rec.state.exit_code = code;
            rec.state.finished_at = now_secs();
            if let Some(e) = error {
                rec.state.error = e;
            }
            // A `--rm` container's record is removed right below: its exit is saved only if
            // that fails (an atomic rewrite costs a few hundred microseconds on ext4).
            if !rec.auto_remove {
                let _ = self.records.save(&rec);
            }
            if was_running {
                self.emit_container(&rec, "die", &[("exitCode", code.to_string())]);
            }
            rec.auto_remove.then_some(rec)
        };
        if let Some(rec) = auto_remove {
            // Docker: --rm also removes the container's anonymous volumes. The runtime
            // state, network and mount were released above.
            if self.teardown_storage(&rec, true).is_empty() {
                self.emit_container(&rec, "destroy", &[]);
            } else if let Ok(_lock) = self.records.lock(id) {
                if let Ok(mut left) = self.records.load(id) {
                    left.state = rec.state.clone();
                    let _ = self.records.save(&left);
                }
            }
        }
    }

    /// `start` attached: runs container `id` with our stdio (a pty with `tty`) and returns its
    /// exit code. Signals we receive are forwarded to it.
    pub fn start_foreground(&self, id: &str) -> Result<i32, StartError> {
        let rec = self.prepare_start(id)?;
        ops::wait::become_subreaper().map_err(StartError::Signals)?;
        if !rec.open_stdin && !rec.tty {
            // Docker gives a container without -i an empty stdin.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                nix::unistd::dup2_stdin(&null).map_err(|source| StartError::Stdio {
                    what: "stdin",
                    source,
                })?;
            }
        }
        let (ours, theirs) = if rec.tty {
            match ops::console::socket_pair() {
                Ok((a, b)) => (Some(a), Some(b)),
                Err(e) => {
                    self.finish(id, 128, Some(crate::exec::chain(&e)));
                    return Err(StartError::Console(e));
                }
            }
        } else {
            (None, None)
        };
        // Blocked before the spawn, so a signal sent once the container runs is forwarded,
        // never the death of `berth` with the container left behind. The runtime's init
        // resets its own mask before execve; an exit meanwhile is reaped by the wait below.
        let set = match ops::wait::block_signals() {
            Ok(s) => s,
            Err(e) => {
                self.finish(id, 128, Some(e.to_string()));
                return Err(StartError::Signals(e));
            }
        };
        let pid = match self.launch(&rec, theirs) {
            Ok(pid) => pid,
            Err(e) => {
                ops::wait::unblock_signals(&set);
                return Err(e);
            }
        };
        self.emit_container(&rec, "start", &[]);
        let code = match ours {
            Some(ours) => ops::console::receive_master(&ours)
                .and_then(|m| ops::console::serve(pid, m, &set))
                .map_err(StartError::Console),
            None => ops::wait::wait_forwarding(pid, &set).map_err(|source| StartError::Wait {
                id: id.to_owned(),
                source,
            }),
        };
        ops::wait::unblock_signals(&set);
        let recorded = *code.as_ref().unwrap_or(&137);
        self.finish(id, recorded, None);
        code
    }

    /// `start` detached: hands container `id` to a new monitor process and returns once the
    /// container runs (or the monitor reports why it could not start it).
    pub fn start_detached(&self, id: &str) -> Result<(), StartError> {
        self.start_monitored(id, None)
    }

    /// `start` under the monitor with this process attached from the first byte (`run -t`,
    /// `start -a` of a tty container): the attach socket is bound and connected here, before
    /// the monitor exists, and handed to it as its stdin, so nothing the container writes
    /// before we get to read is lost. Returns our end of the connection.
    pub fn start_attached(&self, id: &str) -> Result<std::os::fd::OwnedFd, StartError> {
        // The socket of a running container's monitor must not be replaced.
        if self.reconcile(self.records.load(id)?).state.status == Status::Running {
            return Err(StartError::AlreadyRunning(id.to_owned()));
        }
        let dir = self.records.dir(id);
        let sock_err = |source| StartError::AttachSocket {
            id: id.to_owned(),
            source,
        };
        let listener = crate::attach::listen_in(&dir).map_err(sock_err)?;
        let client = crate::attach::connect_in(&dir).map_err(sock_err)?;
        self.start_monitored(id, Some(std::os::fd::OwnedFd::from(listener)))?;
        Ok(client)
    }

    fn start_monitored(
        &self,
        id: &str,
        listener: Option<std::os::fd::OwnedFd>,
    ) -> Result<(), StartError> {
        let rec = self.records.load(id)?;
        if rec.state.status == Status::Running {
            return Err(StartError::AlreadyRunning(id.to_owned()));
        }
        let m = self
            .monitor
            .as_ref()
            .ok_or_else(|| StartError::NoMonitor(id.to_owned()))?;
        let spawn_err = |source| StartError::SpawnMonitor {
            id: id.to_owned(),
            source,
        };
        let stdin = match listener {
            Some(l) => Stdio::from(l),
            None => Stdio::null(),
        };
        let mut child = Command::new(&m.program)
            .args(&m.args)
            .arg(id)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .current_dir("/")
            .spawn()
            .map_err(spawn_err)?;
        let mut report = String::new();
        let read = child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_string(&mut report);
        read.map_err(spawn_err)?;
        let (message, command_exit_code) =
            match serde_json::from_str::<crate::monitor::Report>(report.trim()) {
                // The monitor lives on; reaping it is init's job once we exit.
                Ok(crate::monitor::Report::Started) => return Ok(()),
                Ok(crate::monitor::Report::Failed {
                    message,
                    command_exit_code,
                }) => (message, command_exit_code),
                Err(_) if report.trim().is_empty() => ("it exited without reporting".into(), None),
                Err(_) => (format!("unreadable report {:?}", report.trim()), None),
            };
        let _ = child.wait();
        Err(StartError::Monitor {
            id: id.to_owned(),
            message,
            command_exit_code,
        })
    }

    /// Records that the user stopped container `id` (`stop`, `kill`, `rm`), so its monitor
    /// does not restart it.
    fn mark_stopped(&self, id: &str) -> Result<(), RecordError> {
        let _lock = self.records.lock(id)?;
        let mut r = self.records.load(id)?;
        if !r.state.manually_stopped || r.state.restarting {
            r.state.manually_stopped = true;
            // A restart the monitor is backing off from is cancelled now.
            r.state.restarting = false;
            self.records.save(&r)?;
        }
        Ok(())
    }

    /// Marks container `id` as waiting for a restart under its policy (`restarting`), or
    /// not any more; the monitor calls it around its back-off.
    pub fn set_restarting(&self, id: &str, restarting: bool) -> Result<(), RecordError> {
        let _lock = self.records.lock(id)?;
        let mut r = self.records.load(id)?;
        if r.state.restarting != restarting {
            r.state.restarting = restarting;
            self.records.save(&r)?;
        }
        Ok(())
    }

    /// Counts one restart under the policy (called by the monitor before it relaunches).
    pub fn note_restart(&self, id: &str) -> Result<(), RecordError> {
        let _lock = self.records.lock(id)?;
        let mut r = self.records.load(id)?;
        r.restart_count += 1;
        self.records.save(&r)
    }

    /// Whether the supervisor recorded for a running container is still alive.
    fn supervisor_alive(rec: &ContainerRecord) -> bool {
        let pid = rec.state.monitor_pid;
        pid > 0
            && process_start_time(pid) == Some(rec.state.monitor_start_time)
            && berth_runtime::state::process_state(pid) != Some('Z')
    }

    /// Makes the record tell the truth when the supervisor died: a container whose supervisor
    /// and init are both gone is finished (exit code unknown: 255). Returns the fresh record.
    pub fn reconcile(&self, rec: ContainerRecord) -> ContainerRecord {
        if rec.state.restarting && !Self::supervisor_alive(&rec) {
            // The monitor died during its back-off: nobody will restart it.
            let _ = self.set_restarting(&rec.id, false);
            return self.records.load(&rec.id).unwrap_or(rec);
        }
        if rec.state.status != Status::Running || Self::supervisor_alive(&rec) {
            return rec;
        }
        let init_alive = self
            .runtime
            .load(&rec.id)
            .map(|(_, st, _)| st.init_alive())
            .unwrap_or(false);
        if init_alive {
            return rec;
        }
        // The supervisor may have recorded the exit since our read, then exited: only a
        // record that still says "running" under a dead supervisor is finished here.
        self.finish_if(
            &rec.id,
            255,
            Some("the container's monitor died; its exit code is unknown".into()),
            |r| r.state.status == Status::Running && !Self::supervisor_alive(r),
        );
        self.records.load(&rec.id).unwrap_or(rec)
    }

    /// Waits until container `id` is no longer running (or `timeout` passes). Returns whether
    /// it stopped; a removed container counts as stopped.
    pub fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> Result<bool, StopError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let rec = match self.records.load(id) {
                Ok(r) => self.reconcile(r),
                Err(RecordError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e.into()),
            };
            if rec.state.status != Status::Running {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `berth wait`: blocks until the container exits; returns its exit code.
    pub fn wait(&self, what: &str) -> Result<i32, StopError> {
        let id = self.records.resolve(what)?;
        self.wait_stopped(&id, None)?;
        Ok(self
            .records
            .load(&id)
            .map(|r| r.state.exit_code)
            .unwrap_or(0))
    }

    /// `berth kill`: signals the container's init.
    pub fn kill(&self, what: &str, signal: &str) -> Result<String, StopError> {
        let signal = ops::kill::parse_signal(signal).map_err(|source| StopError::Signal {
            signal: signal.to_owned(),
            source: Box::new(source),
        })?;
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running {
            return Err(StopError::NotRunning(what.to_owned()));
        }
        // Docker: a killed container is not restarted by its policy.
        self.mark_stopped(&rec.id)?;
        ops::kill::kill(&self.runtime, &rec.id, signal, false).map_err(|source| {
            StopError::Kill {
                id: rec.id.clone(),
                source: Box::new(source),
            }
        })?;
        self.emit_container(&rec, "kill", &[("signal", (signal as i32).to_string())]);
        Ok(rec.id)
    }

    /// `berth stop`: the stop signal, then SIGKILL to every process after `timeout`.
    /// Without `timeout`, the container's `--stop-timeout` (Docker's default: 10 s).
    pub fn stop(&self, what: &str, timeout: Option<Duration>) -> Result<String, StopError> {
        let rec = self.reconcile(self.find(what)?);
        let id = rec.id.clone();
        // Also during a restart back-off, so the monitor does not relaunch it.
        self.mark_stopped(&id)?;
        let timeout = timeout.unwrap_or(Duration::from_secs(rec.stop_timeout));
        if rec.state.status != Status::Running {
            return Ok(id);
        }
        if rec.state.paused {
            // A frozen process cannot act on a signal until thawed.
            let _ = ops::resources::resume(&self.runtime, &id);
        }
        let sig =
            ops::kill::parse_signal(&rec.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM);
        // It may exit on its own meanwhile; a failed signal is then no error.
        let _ = ops::kill::kill(&self.runtime, &id, sig, false);
        self.emit_container(&rec, "kill", &[("signal", (sig as i32).to_string())]);
        if !self.wait_stopped(&id, Some(timeout))? {
            self.emit_container(&rec, "kill", &[("signal", "9".into())]);
            self.kill_and_wait(&id)?;
        }
        self.emit_container(&rec, "stop", &[]);
        Ok(id)
    }

    fn kill_and_wait(&self, id: &str) -> Result<(), StopError> {
        // Thawing an unfrozen cgroup is harmless; a frozen one cannot die until thawed.
        let _ = ops::resources::resume(&self.runtime, id);
        let _ = ops::kill::kill(&self.runtime, id, nix::sys::signal::Signal::SIGKILL, true);
        let secs = 10;
        if self.wait_stopped(id, Some(Duration::from_secs(secs)))? {
            Ok(())
        } else {
            Err(StopError::StillRunning {
                id: id.to_owned(),
                secs,
            })
        }
    }

    /// `berth rm`: removes a stopped container (a running one too with `force`), keeping its
    /// volumes.
    pub fn remove(&self, what: &str, force: bool) -> Result<String, RemoveError> {
        self.remove_with_volumes(what, force, false)
    }

    /// `berth rm [-v]`: as [`Self::remove`]; with `volumes` also removes the container's
    /// anonymous volumes (named ones stay, as in Docker).
    pub fn remove_with_volumes(
        &self,
        what: &str,
        force: bool,
        volumes: bool,
    ) -> Result<String, RemoveError> {
        let rec = self.reconcile(self.find(what)?);
        let id = rec.id.clone();
        if rec.state.status == Status::Running && force {
            self.mark_stopped(&id)?;
        }
        if rec.state.status == Status::Running {
            if !force {
                return Err(RemoveError::Running(what.to_owned()));
            }
            self.kill_and_wait(&id)?;
        }
        // The supervisor may have removed it (--rm) meanwhile; teardown is idempotent.
        let rec = self.records.load(&id).unwrap_or(rec);
        let problems = self.teardown(&rec, volumes);
        if problems.is_empty() {
            self.emit_container(&rec, "destroy", &[]);
            Ok(id)
        } else {
            Err(RemoveError::Teardown {
                id,
                problems: problems.join("; "),
            })
        }
    }

    /// The live status of every container, supervisors checked.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, RecordError> {
        // A `berth` killed while creating or removing a container may have left half a record.
        self.records.reap_orphans()?;
        let mut all: Vec<ContainerRecord> = self
            .records
            .list()?
            .into_iter()
            .map(|r| self.reconcile(r))
            .collect();
        all.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The monitor's start: with `console` (the container's end of a console socketpair)
    /// the container gets a pty whose master arrives on the other end.
    pub(crate) fn launch_for_monitor(
        &self,
        id: &str,
        console: Option<std::os::fd::OwnedFd>,
    ) -> Result<(ContainerRecord, i32), StartError> {
        let rec = self.prepare_start(id)?;
        let pid = self.launch(&rec, console)?;
        self.emit_container(&rec, "start", &[]);
        Ok((rec, pid))
    }
}

/// Docker's "Up 2 minutes" / "Exited (0) 3 seconds ago" / "Created".
pub fn status_text(rec: &ContainerRecord, now: i64) -> String {
    match rec.state.status {
        Status::Exited if rec.state.restarting => format!(
            "Restarting ({}) {} ago",
            rec.state.exit_code,
            human_duration(now - rec.state.finished_at)
        ),
        Status::Created => "Created".into(),
        Status::Running if rec.state.paused => {
            format!("Up {} (Paused)", human_duration(now - rec.state.started_at))
        }
        Status::Running => format!("Up {}", human_duration(now - rec.state.started_at)),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            rec.state.exit_code,
            human_duration(now - rec.state.finished_at)
        ),
    }
}

/// Seconds since the epoch as RFC 3339 (what `inspect` shows).
pub fn format_time(secs: i64) -> String {
    berth_runtime::state::format_rfc3339(secs, 0)
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if s < 2 * 3600 => "About an hour".into(),
        _ if s < 48 * 3600 => format!("{} hours", s / 3600),
        _ if s < 14 * 86400 => format!("{} days", s / 86400),
        _ if s < 60 * 86400 => format!("{} weeks", s / (7 * 86400)),
        _ if s < 2 * 365 * 86400 => format!("{} months", s / (30 * 86400)),
        _ => format!("{} years", s / (365 * 86400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(5000), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
