//! cgroups: detect the host's layout (v1, v2, hybrid), create a container's cgroup, apply
//! `linux.resources`, move processes in, freeze/thaw, read stats, kill everything inside and
//! remove what we created.
//!
//! The pieces:
//! - [`layout`]: which hierarchies are mounted where, and where the caller sits in each;
//! - [`plan`](self) (private): `linux.resources` → an ordered list of file writes for v1 or v2,
//!   plus device rules for the v2 eBPF filter; pure data, unit-tested;
//! - [`convert`]: the documented v1 ↔ v2 value conversions (runc, crun);
//! - [`stats`]: usage in the shape of runc's `events --stats`;
//! - this file: the [`Cgroup`] handle that executes plans against the real directories.
//!
//! Ownership rule: a cgroup directory is removed only if this `Cgroup` created it (recorded in
//! [`Cgroup::created`], which is kept in the container's state), and processes are only killed in
//! a cgroup whose leaf this `Cgroup` created. A caller that points `cgroupsPath` at an existing
//! cgroup (a pod's, say) keeps it and its other processes.

pub mod convert;
pub(crate) mod devices;
pub mod layout;
pub mod oom;
mod plan;
pub mod stats;

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use layout::{Hierarchy, Layout, LayoutKind, Membership, Version};
pub use oom::{OomWait, OomWatcher};
use plan::{Probe, Targets};
pub use stats::Stats;

/// Errors from cgroup operations. Each variant names the file or setting involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// systemd-style `slice:prefix:name` paths need a systemd driver.
    #[error("cgroupsPath {0:?} is systemd-style (slice:prefix:name); the systemd cgroup driver is not supported yet")]
    SystemdPath(String),
    /// The path (or the container id used as one) cannot name a cgroup.
    #[error("cgroupsPath {path:?} is invalid: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// `/proc/self/mountinfo` has no cgroup or cgroup2 mount.
    #[error("no cgroup hierarchy is mounted (no cgroup or cgroup2 entry in /proc/self/mountinfo)")]
    NoHierarchy,
    /// `/proc/self/cgroup` does not list the hierarchy mounted at `mount_point`.
    #[error("cannot tell the caller's cgroup in the hierarchy mounted at {mount_point} (not in /proc/self/cgroup)")]
    CallerUnknown { mount_point: PathBuf },
    /// The cgroup lies outside the part of the hierarchy this mount shows.
    #[error("cgroup {path} is not visible under {mount_point}, which shows cgroup {mount_root}")]
    NotVisible {
        path: String,
        mount_point: PathBuf,
        mount_root: String,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating cgroup directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel refused a value (or the file is missing).
    #[error("setting {file} to {value} in {dir} (linux.resources.{setting})")]
    Write {
        file: String,
        value: String,
        dir: PathBuf,
        setting: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("linux.resources.{setting} needs the {controller} controller, which this host does not offer to this cgroup")]
    ControllerUnavailable {
        controller: &'static str,
        setting: &'static str,
    },
    #[error("invalid {setting} {value:?}: {reason}")]
    InvalidValue {
        setting: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("linux.resources.{setting} {value} is below the current usage of {usage} bytes (checkBeforeUpdate is set)")]
    BelowUsage {
        setting: &'static str,
        value: i64,
        usage: u64,
    },
    #[error(
        "converting memory.swap {swap} (with memory limit {memory}) to cgroup v2's memory.swap.max"
    )]
    Swap {
        swap: i64,
        memory: i64,
        #[source]
        source: convert::SwapError,
    },
    #[error("linux.resources.{setting} is not supported on cgroup v2")]
    NotOnV2 { setting: &'static str },
    #[error("unified key {key:?} needs cgroup v2, and this container's cgroups are v1")]
    UnifiedOnV1 { key: String },
    #[error("unified key {key:?} is refused: it must be a controller file name such as memory.high, not a path or a cgroup.* core file")]
    UnifiedKeyRefused { key: String },
    #[error("unknown unified key {key:?}: no such file in the cgroup (controller not enabled or not a cgroup v2 file)")]
    UnifiedKeyUnknown { key: String },
    #[error("opening cgroup directory {path}")]
    OpenDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("loading the cgroup v2 device filter (eBPF) was refused; verifier log: {log}")]
    BpfLoad {
        log: String,
        #[source]
        source: Errno,
    },
    #[error("attaching the device filter to cgroup {dir}")]
    BpfAttach {
        dir: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("moving pid {pid} into {file}")]
    AddPid {
        pid: i32,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("this cgroup has no freezer (no v1 freezer hierarchy, no cgroup v2 directory)")]
    NoFreezer,
    #[error("cgroup {dir} did not become {wanted} (last state {last:?})")]
    FreezeStuck {
        dir: PathBuf,
        wanted: &'static str,
        last: String,
    },
    #[error("sending SIGKILL to pid {pid} of cgroup {dir}")]
    Kill {
        pid: i32,
        dir: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("processes {remaining:?} in cgroup {dir} survived SIGKILL")]
    Survivors { dir: PathBuf, remaining: Vec<i32> },
    #[error("removing cgroup directory {path}")]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Teardown continues past errors; this carries all of them (the first as the source).
    #[error("removing the cgroup failed in {} step(s): {}", .0.len(), join_errors(.0))]
    Teardown(Vec<CgroupError>),
    /// `create` failed and removing what it had made failed too.
    #[error("{source}; then undoing the partial cgroup failed: {cleanup}")]
    CreateAndCleanup {
        #[source]
        source: Box<CgroupError>,
        cleanup: Box<CgroupError>,
    },
    #[error("watching {dir} for OOM events")]
    OomWatch {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("merging resources: {0}")]
    Merge(#[source] serde_json::Error),
}

fn join_errors(errors: &[CgroupError]) -> String {
    errors
        .iter()
        .map(error_chain)
        .collect::<Vec<_>>()
        .join("; ")
}

fn error_chain(e: &CgroupError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A setting that was not applied, and why. Returned, never logged: the caller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The `linux.resources` field, e.g. `memory.kernel`.
    pub setting: String,
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux.resources.{}: {}", self.setting, self.reason)
    }
}

/// The freezer's view of the cgroup (`pause`/`resume`, `state` = `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    Freezing,
    Frozen,
}

/// Where the cgroup lives in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub version: Version,
    /// v1: the controllers of this hierarchy. v2: those the unified hierarchy offers.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

/// A container's cgroup as resolved on this host. Serializable: it is stored in the
/// container's state so later commands (`delete`, `ps`, `pause`, `update`) find it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    /// The cgroup path as resolved: absolute (`/berth-test/abc`), or, for a relative
    /// `cgroupsPath`, the relative part (the parent differs per v1 hierarchy; see `dirs`).
    pub path: String,
    /// Absolute directories this cgroup occupies (one per v1 hierarchy, or the v2 one).
    pub dirs: Vec<PathBuf>,
    /// The same directories with their hierarchy's version and controllers.
    #[serde(default)]
    pub placements: Vec<Placement>,
    /// Directories `create` made, parents before children. Only these are ever removed.
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

/// How long to wait for the kernel to finish freezing or killing: `tries` polls, sleeping a
/// millisecond between the first ones and ten after that.
const POLL_TRIES: u32 = 1000;

fn poll_sleep(i: u32) {
    sleep(Duration::from_millis(if i < 20 { 1 } else { 10 }));
}

impl Cgroup {
    /// Resolves `linux.cgroupsPath` (absolute, relative to the caller's cgroup, or empty meaning
    /// the container id relative to the caller's cgroup, as runc does) on this host.
    pub fn resolve(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        let layout = Layout::detect()?;
        let me = Membership::of_self()?;
        Self::resolve_in(&layout, &me, cgroups_path, container_id)
    }

    /// [`Cgroup::resolve`] against a given layout and caller membership (tests, or a caller
    /// that already detected them).
    pub fn resolve_in(
        layout: &Layout,
        me: &Membership,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Self, CgroupError> {
        let requested = cgroups_path.unwrap_or("");
        if !requested.starts_with('/') && requested.split(':').count() == 3 {
            return Err(CgroupError::SystemdPath(requested.to_owned()));
        }
        let (absolute, rel) = if requested.is_empty() {
            (false, clean(container_id, container_id)?)
        } else if requested.starts_with('/') {
            (true, clean(requested, requested)?)
        } else {
            (false, clean(requested, requested)?)
        };
        if absolute && rel.is_empty() {
            return Err(CgroupError::InvalidPath {
                path: requested.to_owned(),
                reason: "the root cgroup cannot be a container's cgroup",
            });
        }
        let mut placements = Vec::new();
        for h in &layout.hierarchies {
            let cgroup_path = if absolute {
                format!("/{rel}")
            } else {
                let parent = me.path_in(h).ok_or_else(|| CgroupError::CallerUnknown {
                    mount_point: h.mount_point.clone(),
                })?;
                format!("{}/{rel}", parent.trim_end_matches('/'))
            };
            placements.push(Placement {
                version: h.version,
                controllers: h.controllers.clone(),
                mount_point: h.mount_point.clone(),
                dir: h.dir_of(&cgroup_path)?,
            });
        }
        Ok(Cgroup {
            path: if absolute { format!("/{rel}") } else { rel },
            dirs: placements.iter().map(|p| p.dir.clone()).collect(),
            placements,
            created: Vec::new(),
        })
    }

    /// Creates the directories (recording which ones this call created) and applies
    /// `resources`. On any failure, removes what it created before returning the error, so no
    /// half-configured cgroup is left. Returns the settings that were ignored, with the reason.
    pub fn create(
        &mut self,
        resources: Option<&LinuxResources>,
    ) -> Result<Vec<Warning>, CgroupError> {
        let mut warnings = Vec::new();
        let result = self
            .make_dirs(&mut warnings)
            .and_then(|()| match resources {
                Some(r) => self.apply(r),
                None => Ok(Vec::new()),
            });
        match result {
            Ok(w) => {
                warnings.extend(w);
                Ok(warnings)
            }
            Err(e) => match self.remove_created() {
                Ok(()) => Err(e),
                Err(cleanup) => Err(CgroupError::CreateAndCleanup {
                    source: Box::new(e),
                    cleanup: Box::new(cleanup),
                }),
            },
        }
    }

    fn make_dirs(&mut self, warnings: &mut Vec<Warning>) -> Result<(), CgroupError> {
        // A concurrent delete may remove a shared parent (one it created) between our
        // "already exists" and the mkdir of the level below it: start over a few times.
        let mut attempt = 0;
        loop {
            match self.make_dirs_once(warnings) {
                Err(CgroupError::Mkdir { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempt < 5 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn make_dirs_once(&mut self, warnings: &mut Vec<Warning>) -> Result<(), CgroupError> {
        for p in self.placements.clone() {
            let rel = p.dir.strip_prefix(&p.mount_point).unwrap_or(Path::new(""));
            let mut cur = p.mount_point.clone();
            for c in rel.components() {
                if p.version == Version::V2 {
                    // cgroup v2 hands a controller to children only when the parent lists it
                    // in cgroup.subtree_control (cgroup-v2.rst, "Enabling and Disabling").
                    enable_controllers(&cur, warnings);
                }
                cur.push(c);
                match fs::create_dir(&cur) {
                    Ok(()) => self.created.push(cur.clone()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(CgroupError::Mkdir {
                            path: cur.clone(),
                            source,
                        })
                    }
                }
                if p.version == Version::V1 && p.controllers.iter().any(|c| c == "cpuset") {
                    // A new v1 cpuset has empty cpus/mems and refuses tasks (ENOSPC) until
                    // they are filled: inherit the parent's, as runc does. Every level, also
                    // one that already existed: a concurrent create may have made a shared
                    // parent and not filled it yet.
                    inherit_cpuset(&cur)?;
                }
            }
        }
        Ok(())
    }

    fn targets(&self) -> Targets {
        let mut t = Targets::default();
        for p in &self.placements {
            match p.version {
                Version::V1 => t.v1.extend(p.controllers.iter().cloned()),
                Version::V2 => t.v2 = Some(p.controllers.clone()),
            }
        }
        t
    }

    fn placement(&self, version: Version, controller: &str) -> Option<&Placement> {
        self.placements.iter().find(|p| {
            p.version == version
                && (version == Version::V2 || p.controllers.iter().any(|c| c == controller))
        })
    }

    fn v2_placement(&self) -> Option<&Placement> {
        self.placements.iter().find(|p| p.version == Version::V2)
    }

    /// Applies every setting present in `resources` (absent ones are left alone).
    fn apply(&self, resources: &LinuxResources) -> Result<Vec<Warning>, CgroupError> {
        let plan = plan::plan(resources, &self.targets(), self)?;
        for w in &plan.writes {
            let dir = match self.placement(w.version, w.controller) {
                Some(p) => &p.dir,
                None => {
                    return Err(CgroupError::ControllerUnavailable {
                        controller: w.controller,
                        setting: w.setting,
                    })
                }
            };
            write_file(dir, &w.file, &w.value).map_err(|source| CgroupError::Write {
                file: w.file.clone(),
                value: w.value.clone(),
                dir: dir.clone(),
                setting: w.setting,
                source,
            })?;
        }
        if let Some(rules) = &plan.bpf_devices {
            let Some(p) = self.v2_placement() else {
                return Err(CgroupError::ControllerUnavailable {
                    controller: "devices",
                    setting: "devices",
                });
            };
            let dir_fd = open_dir(&p.dir)?;
            let prog = devices::compile(rules);
            let prog_fd = crate::sys::cgroup::load_device_program(&prog)
                .map_err(|(source, log)| CgroupError::BpfLoad { log, source })?;
            use std::os::fd::AsFd;
            crate::sys::cgroup::attach_device_program(dir_fd.as_fd(), prog_fd.as_fd()).map_err(
                |source| CgroupError::BpfAttach {
                    dir: p.dir.clone(),
                    source,
                },
            )?;
        }
        Ok(plan.warnings)
    }

    /// Applies a live change (`berth-runc update`): only the settings present in `resources`
    /// are written. Persist the merged result with [`merge_resources`].
    pub fn update(&self, resources: &LinuxResources) -> Result<Vec<Warning>, CgroupError> {
        self.apply(resources)
    }

    /// Moves `pid` into the cgroup (every hierarchy).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        self.add_pid_to(pid, |_| true)
    }

    /// Moves `pid` into the cgroup's v2 directory only: the spawn path's fallback when
    /// `clone3(CLONE_INTO_CGROUP)` is not available (the v1 hierarchies are joined by the child
    /// itself, [`join_v1_self`]).
    pub fn add_pid_v2(&self, pid: i32) -> Result<(), CgroupError> {
        self.add_pid_to(pid, |p| p.version == Version::V2)
    }

    fn add_pid_to(&self, pid: i32, pick: impl Fn(&Placement) -> bool) -> Result<(), CgroupError> {
        for p in self.placements.iter().filter(|p| pick(p)) {
            write_file(&p.dir, "cgroup.procs", &pid.to_string()).map_err(|source| {
                CgroupError::AddPid {
                    pid,
                    file: p.dir.join("cgroup.procs"),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// The `tasks` files of the cgroup's v1 hierarchies, for [`join_v1_self`] in a forked child.
    pub fn v1_tasks_files(&self) -> Vec<PathBuf> {
        self.placements
            .iter()
            .filter(|p| p.version == Version::V1)
            .map(|p| p.dir.join("tasks"))
            .collect()
    }

    /// The directory `pids`, `freeze` and `destroy` look at: the freezer (v1) or the v2 one.
    fn primary_dir(&self) -> Option<&Path> {
        self.placement(Version::V1, "freezer")
            .or_else(|| self.v2_placement())
            .or_else(|| self.placements.first())
            .map(|p| p.dir.as_path())
    }

    /// Pids currently in the cgroup and its descendants (from `cgroup.procs`). A cgroup that
    /// no longer exists has none.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match self.primary_dir() {
            Some(dir) => pids_below(dir),
            None => Ok(Vec::new()),
        }
    }

    /// Freezes every process in the cgroup (`pause`). Waits until the kernel reports the
    /// cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        if let Some(p) = self.placement(Version::V1, "freezer") {
            // v1: writing FROZEN starts freezing; freezer.state reads FREEZING until every
            // task stopped (cgroup-v1/freezer-subsystem.rst). Re-writing FROZEN retries tasks
            // that were in an uninterruptible sleep, as runc does.
            let mut last = String::new();
            for i in 0..POLL_TRIES {
                write_freezer(&p.dir, "FROZEN")?;
                last = read_trim(&p.dir.join("freezer.state"))?;
                if last == "FROZEN" {
                    return Ok(());
                }
                poll_sleep(i);
            }
            return Err(CgroupError::FreezeStuck {
                dir: p.dir.clone(),
                wanted: "FROZEN",
                last,
            });
        }
        let p = self.v2_placement().ok_or(CgroupError::NoFreezer)?;
        write_file(&p.dir, "cgroup.freeze", "1").map_err(|source| CgroupError::Write {
            file: "cgroup.freeze".into(),
            value: "1".into(),
            dir: p.dir.clone(),
            setting: "(pause)",
            source,
        })?;
        self.wait_v2_frozen(&p.dir, true)
    }

    /// Thaws the cgroup (`resume`).
    pub fn thaw(&self) -> Result<(), CgroupError> {
        if let Some(p) = self.placement(Version::V1, "freezer") {
            return write_freezer(&p.dir, "THAWED");
        }
        let p = self.v2_placement().ok_or(CgroupError::NoFreezer)?;
        write_file(&p.dir, "cgroup.freeze", "0").map_err(|source| CgroupError::Write {
            file: "cgroup.freeze".into(),
            value: "0".into(),
            dir: p.dir.clone(),
            setting: "(resume)",
            source,
        })?;
        self.wait_v2_frozen(&p.dir, false)
    }

    fn wait_v2_frozen(&self, dir: &Path, frozen: bool) -> Result<(), CgroupError> {
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let mut last = String::new();
        for i in 0..POLL_TRIES {
            let events = read_trim(&dir.join("cgroup.events"))?;
            last = events
                .lines()
                .find(|l| l.starts_with("frozen "))
                .unwrap_or_default()
                .to_owned();
            if last == want {
                return Ok(());
            }
            poll_sleep(i);
        }
        Err(CgroupError::FreezeStuck {
            dir: dir.to_owned(),
            wanted: if frozen { "frozen" } else { "thawed" },
            last,
        })
    }

    /// The freezer state; a cgroup without a freezer is always thawed.
    pub fn state(&self) -> Result<FreezerState, CgroupError> {
        if let Some(p) = self.placement(Version::V1, "freezer") {
            return Ok(match read_trim(&p.dir.join("freezer.state"))?.as_str() {
                "FROZEN" => FreezerState::Frozen,
                "FREEZING" => FreezerState::Freezing,
                _ => FreezerState::Thawed,
            });
        }
        let Some(p) = self.v2_placement() else {
            return Ok(FreezerState::Thawed);
        };
        let requested = read_trim(&p.dir.join("cgroup.freeze"))? == "1";
        let frozen = read_trim(&p.dir.join("cgroup.events"))?
            .lines()
            .any(|l| l == "frozen 1");
        Ok(match (requested, frozen) {
            (_, true) => FreezerState::Frozen,
            (true, false) => FreezerState::Freezing,
            (false, false) => FreezerState::Thawed,
        })
    }

    /// Usage statistics in the shape of runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let targets = self.targets();
        let at = |c: &str| {
            if targets.v1.iter().any(|x| x == c) {
                Some(Version::V1)
            } else if targets
                .v2
                .as_ref()
                .is_some_and(|l| l.iter().any(|x| x == c))
            {
                Some(Version::V2)
            } else {
                None
            }
        };
        Ok(stats::collect(&at, self, &hugepage_sizes()))
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup (v2
    /// `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`, Linux 4.13+). The
    /// `events` stream reports an OOM when this number grows.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (p, file) = match self.placement(Version::V1, "memory") {
            Some(p) => (p, "memory.oom_control"),
            None => match self.v2_placement() {
                Some(p) => (p, "memory.events"),
                None => {
                    return Err(CgroupError::ControllerUnavailable {
                        controller: "memory",
                        setting: "(oom events)",
                    })
                }
            },
        };
        let path = p.dir.join(file);
        let text =
            fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
        Ok(stats::flat_keyed(&text)
            .get("oom_kill")
            .copied()
            .unwrap_or(0))
    }

    /// A watcher that wakes on each OOM event in this cgroup (v1 eventfd, v2 `memory.events`).
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        if let Some(p) = self.placement(Version::V1, "memory") {
            return OomWatcher::v1(p.dir.clone());
        }
        match self.v2_placement() {
            Some(p) if p.controllers.iter().any(|c| c == "memory") => OomWatcher::v2(p.dir.clone()),
            _ => Err(CgroupError::ControllerUnavailable {
                controller: "memory",
                setting: "(oom events)",
            }),
        }
    }

    /// A descriptor of the cgroup's v2 directory, for `clone3(CLONE_INTO_CGROUP)`: on a pure v2
    /// host and on a hybrid one (where it covers only the unified hierarchy; the v1 ones are
    /// joined with [`join_v1_self`]). `None` without a v2 placement. Call after `create`.
    pub fn open_v2_dir(&self) -> Result<Option<OwnedFd>, CgroupError> {
        match self.v2_placement() {
            Some(p) => open_dir(&p.dir).map(Some),
            None => Ok(None),
        }
    }

    /// Kills every process in the cgroup and removes the directories this cgroup created.
    /// Idempotent: "already gone" is success. Continues past errors and returns them all.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut errors = Vec::new();
        // Only a cgroup we created is ours to empty; see the module docs.
        let owns_leaf = self.dirs.iter().any(|d| self.created.contains(d));
        // Usually the container has already exited and its cgroup is empty. Then the kernel
        // removes the primary directory at the first try, which proves nothing is left to
        // kill (it refuses to remove a cgroup with processes or children: EBUSY), without
        // reading any pid list or directory.
        let emptied = owns_leaf
            && self.primary_dir().is_some_and(|d| {
                self.created.iter().any(|c| c == d) && matches!(fs::remove_dir(d), Ok(()))
            });
        if owns_leaf && !emptied {
            if let Err(e) = self.kill_all() {
                errors.push(e);
            }
        }
        if let Err(e) = self.remove_created() {
            match e {
                CgroupError::Teardown(list) => errors.extend(list),
                other => errors.push(other),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Teardown(errors))
        }
    }

    /// SIGKILLs everything in the cgroup until it is empty.
    fn kill_all(&self) -> Result<(), CgroupError> {
        // v2 (Linux 5.14+): cgroup.kill kills the whole subtree atomically, with no race against
        // forks.
        if let Some(p) = self.v2_placement() {
            if p.dir.join("cgroup.kill").exists() && self.placements.len() == 1 {
                match write_file(&p.dir, "cgroup.kill", "1") {
                    Ok(()) => return self.wait_empty(&p.dir),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(_) => {} // fall back to signalling each pid
                }
            }
        }
        let Some(dir) = self.primary_dir().map(Path::to_owned) else {
            return Ok(());
        };
        // Freeze first so nothing forks between reading the pid list and the kills; the
        // frozen tasks die as soon as they are thawed.
        let can_freeze = self.placement(Version::V1, "freezer").is_some() || {
            self.v2_placement()
                .is_some_and(|p| p.dir.join("cgroup.freeze").exists())
        };
        for i in 0..POLL_TRIES {
            let pids = pids_below(&dir)?;
            if pids.is_empty() {
                return Ok(());
            }
            let frozen = can_freeze && self.freeze().is_ok();
            for pid in &pids {
                match kill(Pid::from_raw(*pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(source) => {
                        return Err(CgroupError::Kill {
                            pid: *pid,
                            dir,
                            source,
                        })
                    }
                }
            }
            if frozen {
                self.thaw()?;
            }
            poll_sleep(i);
        }
        Err(CgroupError::Survivors {
            remaining: pids_below(&dir)?,
            dir,
        })
    }

    fn wait_empty(&self, dir: &Path) -> Result<(), CgroupError> {
        for i in 0..POLL_TRIES {
            if pids_below(dir)?.is_empty() {
                return Ok(());
            }
            poll_sleep(i);
        }
        Err(CgroupError::Survivors {
            remaining: pids_below(dir)?,
            dir: dir.to_owned(),
        })
    }

    /// Removes the directories this cgroup created, children first. Below the container's
    /// own cgroup, sub-cgroups the container made (nested runtimes) go too. A parent this
    /// cgroup created that another container now uses as well (ENOTEMPTY, EBUSY) stays:
    /// removing it is that container's job.
    fn remove_created(&self) -> Result<(), CgroupError> {
        let mut errors = Vec::new();
        for dir in self.created.iter().rev() {
            let result = if self.dirs.contains(dir) {
                remove_tree(dir)
            } else {
                match fs::remove_dir(dir) {
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ENOENT | libc::ENOTEMPTY | libc::EBUSY)
                        ) =>
                    {
                        Ok(())
                    }
                    Err(source) => Err(CgroupError::Rmdir {
                        path: dir.clone(),
                        source,
                    }),
                    Ok(()) => Ok(()),
                }
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Teardown(errors))
        }
    }
}

/// Merges a partial resources document (`update`'s flags or `-r FILE`) onto the current one:
/// fields present in `patch` win, at every level of nesting; lists are replaced whole.
pub fn merge_resources(
    base: &LinuxResources,
    patch: &LinuxResources,
) -> Result<LinuxResources, CgroupError> {
    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let mut a = serde_json::to_value(base).map_err(CgroupError::Merge)?;
    let b = serde_json::to_value(patch).map_err(CgroupError::Merge)?;
    merge(&mut a, b);
    serde_json::from_value(a).map_err(CgroupError::Merge)
}

impl Probe for Cgroup {
    fn exists(&self, version: Version, controller: &str, file: &str) -> bool {
        self.placement(version, controller)
            .is_some_and(|p| p.dir.join(file).exists())
    }

    fn read(&self, version: Version, controller: &str, file: &str) -> Option<String> {
        let p = self.placement(version, controller)?;
        fs::read_to_string(p.dir.join(file)).ok()
    }
}

/// Normalises a cgroup path: no `..` (a cgroup path must not climb out of its parent), no
/// empty or `.` components, no leading or trailing slash in the result.
fn clean(path: &str, shown: &str) -> Result<String, CgroupError> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(CgroupError::InvalidPath {
                    path: shown.to_owned(),
                    reason: "'..' components are not allowed",
                })
            }
            c if c.contains('\0') || c.contains('\n') => {
                return Err(CgroupError::InvalidPath {
                    path: shown.to_owned(),
                    reason: "NUL and newline are not allowed",
                })
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() && !path.starts_with('/') {
        return Err(CgroupError::InvalidPath {
            path: shown.to_owned(),
            reason: "empty",
        });
    }
    Ok(parts.join("/"))
}

/// Writes one value to a cgroup file. O_TRUNC without O_CREAT: cgroupfs files always exist,
/// and a missing one means a missing controller, which must fail rather than create a plain
/// file (that could only happen on a fake cgroupfs anyway).
/// Moves the calling thread into each v1 hierarchy's `tasks` file given (from
/// [`Cgroup::v1_tasks_files`]). Called by the spawn path's intermediate process, which is
/// single-threaded, so this moves the whole process, and its children inherit the cgroups.
///
/// Why not the parent writing the child's pid to `cgroup.procs`: that takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet spell waits for an
/// RCU grace period (5-25 ms on the test VM, most runs paid it). A thread moving itself through
/// `tasks` ("0" names the caller) needs no thread-group stability, and the kernel skips that
/// lock (`cgroup_procs_write_start`). On kernels without that shortcut it costs what the
/// `cgroup.procs` write did. See docs/decisions/0008-start-latency.md.
pub fn join_v1_self(tasks_files: &[PathBuf]) -> Result<(), CgroupError> {
    for file in tasks_files {
        let write = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(file)?;
            f.write_all(b"0")
        };
        write().map_err(|source| CgroupError::AddPid {
            pid: std::process::id() as i32,
            file: file.clone(),
            source,
        })?;
    }
    Ok(())
}

fn write_file(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(dir.join(file))?;
    f.write_all(value.as_bytes())
}

fn read_trim(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })
}

fn write_freezer(dir: &Path, state: &'static str) -> Result<(), CgroupError> {
    write_file(dir, "freezer.state", state).map_err(|source| CgroupError::Write {
        file: "freezer.state".into(),
        value: state.into(),
        dir: dir.to_owned(),
        setting: "(pause/resume)",
        source,
    })
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::OpenDir {
            path: dir.to_owned(),
            source,
        })
}

/// Enables in `dir`'s `cgroup.subtree_control` every controller `dir` has. A controller
/// that cannot be enabled (the parent has processes and is not the root, or it is a threaded
/// cgroup) becomes a warning; a setting that needs it fails later with its own error.
fn enable_controllers(dir: &Path, warnings: &mut Vec<Warning>) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in available.split_whitespace() {
        if enabled.split_whitespace().any(|e| e == c) {
            continue;
        }
        if let Err(e) = write_file(dir, "cgroup.subtree_control", &format!("+{c}")) {
            warnings.push(Warning {
                setting: format!("(controller {c})"),
                reason: format!(
                    "cannot enable it in {}: {e}",
                    dir.join("cgroup.subtree_control").display()
                ),
            });
        }
    }
}

fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mine = read_trim(&dir.join(file))?;
        if mine.is_empty() {
            let value = read_trim(&parent.join(file))?;
            write_file(dir, file, &value).map_err(|source| CgroupError::Write {
                file: file.into(),
                value: value.clone(),
                dir: dir.to_owned(),
                setting: "(inherited cpuset)",
                source,
            })?;
        }
    }
    Ok(())
}

/// Every pid in `dir`'s `cgroup.procs` and in its descendants'. A missing `dir` has none.
fn pids_below(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let procs = d.join("cgroup.procs");
        match fs::read_to_string(&procs) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: procs,
                    source,
                })
            }
        }
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path: d, source }),
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// rmdir `dir` after its sub-cgroups, deepest first. ENOENT is success; EBUSY (a task still
/// exiting) is retried for a while.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // Without child cgroups the first rmdir works: no need to list the control files.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    let mut last = None;
    for i in 0..POLL_TRIES / 10 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                poll_sleep(i);
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
    Err(CgroupError::Rmdir {
        path: dir.to_owned(),
        source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
    })
}

/// Huge page sizes the kernel offers, as hugetlb file names spell them (`2MB`), from
/// `/sys/kernel/mm/hugepages/hugepages-2048kB`.
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(match kb {
                kb if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) => format!("{}GB", kb >> 20),
                kb if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) => format!("{}MB", kb >> 10),
                kb => format!("{kb}KB"),
            })
        })
        .collect();
    sizes.sort();
    sizes
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    use super::*;

    /// A temporary directory laid out like a cgroupfs: v1 `memory`, `pids` and `freezer`
    /// hierarchies plus an empty cgroup2 mount (this host's hybrid shape), or a
    /// cgroup2-only tree. Files are plain files, so only writes are observable.
    struct FakeFs {
        dir: tempfile::TempDir,
        layout: Layout,
    }

    impl FakeFs {
        fn hybrid() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let mut info = String::new();
            // No cpuset here: a new v1 cpuset must inherit cpus/mems from files the kernel
            // creates, which a plain directory lacks (the privileged tests cover it).
            for (i, c) in ["memory", "pids", "freezer"].iter().enumerate() {
                fs::create_dir(root.join(c)).unwrap();
                info.push_str(&format!(
                    "{i} 1 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
                    root.join(c).display()
                ));
            }
            fs::create_dir(root.join("unified")).unwrap();
            info.push_str(&format!(
                "9 1 0:9 / {} rw - cgroup2 cgroup2 rw\n",
                root.join("unified").display()
            ));
            let layout = Layout::from_mountinfo(&info).unwrap();
            FakeFs { dir, layout }
        }

        fn unified() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
            fs::write(root.join("cgroup.subtree_control"), "").unwrap();
            let info = format!("9 1 0:9 / {} rw - cgroup2 cgroup2 rw\n", root.display());
            let layout = Layout::from_mountinfo(&info).unwrap();
            FakeFs { dir, layout }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// Pre-creates a cgroup directory with the given (empty) files.
        fn cgroup(&self, rel: &str, files: &[&str]) {
            let d = self.path(rel);
            fs::create_dir_all(&d).unwrap();
            for f in files {
                fs::write(d.join(f), "").unwrap();
            }
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.path(rel)).unwrap()
        }
    }

    fn me() -> Membership {
        Membership::parse("4:memory:/caller\n3:pids:/\n1:freezer:/\n0::/u\n")
    }

    #[test]
    fn resolve_absolute_relative_and_empty_paths() {
        let fake = FakeFs::hybrid();
        let cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/berth-test/a"), "id").unwrap();
        assert_eq!(cg.path, "/berth-test/a");
        assert!(cg.dirs.contains(&fake.path("memory/berth-test/a")));
        assert!(cg.dirs.contains(&fake.path("unified/berth-test/a")));

        // Relative: below the caller's cgroup in each hierarchy (OCI runtime spec,
        // "cgroupsPath"); the caller's memory cgroup differs from its pids cgroup.
        let cg = Cgroup::resolve_in(&fake.layout, &me(), Some("sub/x"), "id").unwrap();
        assert!(cg.dirs.contains(&fake.path("memory/caller/sub/x")));
        assert!(cg.dirs.contains(&fake.path("pids/sub/x")));
        assert!(cg.dirs.contains(&fake.path("unified/u/sub/x")));

        // Empty: the container id below the caller's cgroup, as runc.
        let cg = Cgroup::resolve_in(&fake.layout, &me(), None, "c1").unwrap();
        assert!(cg.dirs.contains(&fake.path("memory/caller/c1")));
    }

    #[test]
    fn resolve_refuses_systemd_dotdot_and_root_paths() {
        let fake = FakeFs::hybrid();
        let err =
            |p: Option<&str>, id: &str| Cgroup::resolve_in(&fake.layout, &me(), p, id).unwrap_err();
        assert!(matches!(
            err(Some("system.slice:berth:abc"), "id"),
            CgroupError::SystemdPath(_)
        ));
        assert!(matches!(
            err(Some("/berth-test/../../etc"), "id"),
            CgroupError::InvalidPath { .. }
        ));
        assert!(matches!(err(None, ".."), CgroupError::InvalidPath { .. }));
        assert!(matches!(
            err(Some("/"), "id"),
            CgroupError::InvalidPath { .. }
        ));
    }

    #[test]
    fn create_records_only_the_directories_it_made_and_destroy_removes_only_those() {
        let fake = FakeFs::hybrid();
        // The parent exists already in the memory hierarchy: it is not ours.
        fake.cgroup("memory/berth-test", &[]);
        let mut cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/berth-test/x"), "id").unwrap();
        cg.create(None).unwrap();
        assert!(!cg.created.contains(&fake.path("memory/berth-test")));
        assert!(cg.created.contains(&fake.path("memory/berth-test/x")));
        assert!(cg.created.contains(&fake.path("pids/berth-test")));
        // The state round-trips through serde.
        let cg: Cgroup = serde_json::from_str(&serde_json::to_string(&cg).unwrap()).unwrap();
        cg.destroy().unwrap();
        assert!(fake.path("memory/berth-test").is_dir());
        assert!(!fake.path("memory/berth-test/x").exists());
        assert!(!fake.path("pids/berth-test").exists());
        // Idempotent.
        cg.destroy().unwrap();
    }

    #[test]
    fn create_applies_resources_to_each_hierarchy() {
        let fake = FakeFs::hybrid();
        fake.cgroup("memory/c", &["memory.limit_in_bytes", "memory.swappiness"]);
        fake.cgroup("pids/c", &["pids.max"]);
        fake.cgroup("freezer/c", &[]);
        fake.cgroup("unified/c", &[]);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .swappiness(0u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
            .build()
            .unwrap();
        let mut cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/c"), "id").unwrap();
        let warnings = cg.create(Some(&r)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(cg.created.is_empty());
        assert_eq!(fake.read("memory/c/memory.limit_in_bytes"), "1048576");
        assert_eq!(fake.read("memory/c/memory.swappiness"), "0");
        assert_eq!(fake.read("pids/c/pids.max"), "7");
    }

    #[test]
    fn a_refused_setting_names_file_value_and_dir_and_leaves_nothing_behind() {
        let fake = FakeFs::hybrid();
        // The kernel refusing a value is modelled by a missing file: the write fails.
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
            .build()
            .unwrap();
        let mut cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/berth-test/y"), "id").unwrap();
        let err = cg.create(Some(&r)).map(|_| ()).unwrap_err();
        let dir = fake.path("pids/berth-test/y");
        assert_eq!(
            err.to_string(),
            format!(
                "setting pids.max to 7 in {} (linux.resources.pids.limit)",
                dir.display()
            )
        );
        let chain = error_chain(&err);
        assert!(
            chain.ends_with("No such file or directory (os error 2)"),
            "{chain}"
        );
        for h in ["memory", "pids", "freezer", "unified"] {
            assert!(!fake.path(h).join("berth-test").exists(), "{h} left behind");
        }
    }

    #[test]
    fn v2_parents_delegate_controllers_to_children() {
        let fake = FakeFs::unified();
        let mut cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/a/b"), "id").unwrap();
        let warnings = cg.create(None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // Plain files keep only the last write: the last controller was enabled at the root.
        assert_eq!(fake.read("cgroup.subtree_control"), "+pids");
        assert_eq!(cg.created, [fake.path("a"), fake.path("a/b")]);
        assert!(cg.open_v2_dir().unwrap().is_some());
        cg.destroy().unwrap();
        assert!(!fake.path("a").exists());
    }

    #[test]
    fn a_shared_parent_and_its_other_children_survive_destroy() {
        let fake = FakeFs::unified();
        let mut a = Cgroup::resolve_in(&fake.layout, &me(), Some("/p/a"), "a").unwrap();
        a.create(None).unwrap();
        let mut b = Cgroup::resolve_in(&fake.layout, &me(), Some("/p/b"), "b").unwrap();
        b.create(None).unwrap();
        assert_eq!(a.created, [fake.path("p"), fake.path("p/a")]);
        a.destroy().unwrap();
        assert!(
            fake.path("p/b").is_dir(),
            "destroy removed another container's cgroup"
        );
        b.destroy().unwrap();
        assert!(
            fake.path("p").is_dir(),
            "b did not create the parent, so it keeps it"
        );
    }

    #[test]
    fn a_hybrid_cgroup_offers_its_v2_dir_and_lists_the_v1_tasks_files() {
        let fake = FakeFs::hybrid();
        let mut cg = Cgroup::resolve_in(&fake.layout, &me(), Some("/c"), "id").unwrap();
        cg.create(None).unwrap();
        assert!(cg.open_v2_dir().unwrap().is_some());
        let tasks = cg.v1_tasks_files();
        assert!(!tasks.is_empty());
        for h in ["memory", "pids", "freezer"] {
            assert!(
                tasks.contains(&fake.path(h).join("c/tasks")),
                "{h}: {tasks:?}"
            );
        }
        assert!(!tasks.iter().any(|t| t.starts_with(fake.path("unified"))));
        cg.destroy().unwrap();
    }

    #[test]
    fn merge_resources_overrides_only_given_fields() {
        let base = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100)
                    .swap(200)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap();
        let patch = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(150).build().unwrap())
            .build()
            .unwrap();
        let merged = merge_resources(&base, &patch).unwrap();
        let m = merged.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(150), Some(200)));
        assert_eq!(merged.pids().unwrap().limit(), 5);
    }
}
