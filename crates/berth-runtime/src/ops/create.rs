//! `create`: build the container up to the point right before `execve`.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::Runtime;
use crate::cgroups::{Cgroup, CgroupError};
use crate::hooks::{self, HookKind};
use crate::spawn::init::ChildIo;
use crate::spawn::parent::{spawn, Callbacks, SpawnError};
use crate::spawn::plan::{plan_init, PlanError, SpawnOptions};
use crate::spec::{self, SpecError};
use crate::state::{self, ContainerDir, ContainerState, StateError, Status, EXEC_FIFO};

/// An error from a caller's callback, passed through unchanged.
pub type CallbackError = Box<dyn std::error::Error + Send + Sync>;

/// A callback the parent runs with the init's pid as soon as the init exists in its new
/// namespaces, while the init builds its root filesystem: what the caller sets up from outside
/// (an engine's network) overlaps with that instead of following it. The container's process
/// does not run before it returns; an error fails the create like any other.
pub struct NamespacesReady<'a>(pub &'a dyn Fn(i32) -> Result<(), CallbackError>);

impl std::fmt::Debug for NamespacesReady<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamespacesReady(..)")
    }
}

/// Options of `create` beyond the bundle.
#[derive(Debug, Default)]
pub struct CreateOptions<'a> {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (the caller serves the pty itself); it takes
    /// precedence over `console_socket`.
    pub console_fd: Option<OwnedFd>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// Leave the parent directories of the cgroup (those `create` had to make) in place when
    /// the container is deleted: only its own leaf is recorded as created. For an engine whose
    /// containers share a parent (`/berth`), as podman keeps `libpod_parent`; `berth-runc`
    /// removes everything it made, parents included.
    pub keep_cgroup_parents: bool,
    /// [`NamespacesReady`].
    pub namespaces_ready: Option<NamespacesReady<'a>>,
}

/// Why `create` failed. Whatever it had created is gone by the time this is returned.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("bundle {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cgroup")]
    Cgroup(#[from] CgroupError),
    #[error("creating the exec fifo {path}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("connecting to the console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("writing the pid file {path}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{original}; cleaning up afterwards also failed: {cleanup}")]
    CleanupFailed {
        #[source]
        original: Box<CreateError>,
        cleanup: String,
    },
}

/// A created container.
#[derive(Debug)]
pub struct Created {
    /// Host pid of the init.
    pub pid: i32,
    /// Resource settings the kernel ignored (reported, not fatal).
    pub warnings: Vec<crate::cgroups::Warning>,
}

/// Creates container `id` from `opts.bundle`.
pub fn create(rt: &Runtime, id: &str, opts: &CreateOptions<'_>) -> Result<Created, CreateError> {
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|source| CreateError::Bundle {
        path: opts.bundle.clone(),
        source,
    })?;
    let dir = rt.dir(id)?;
    let spec = spec::load(&bundle)?;
    spec::validate(&spec)?;
    let plan = plan_init(
        &spec,
        &bundle,
        &SpawnOptions {
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            session_keyring: (!opts.no_new_keyring).then(|| format!("_ses.{id}")),
        },
    )?;

    // Nothing exists yet. From here on every failure undoes what was made.
    dir.create()?;
    let mut made = Made::default();
    match create_in(rt, id, &dir, &bundle, spec, plan, opts, &mut made) {
        Ok(created) => Ok(created),
        Err(e) => Err(undo(&dir, &made, e)),
    }
}

#[derive(Default)]
struct Made {
    cgroup: Option<Cgroup>,
}

fn undo(dir: &ContainerDir, made: &Made, original: CreateError) -> CreateError {
    let mut problems = Vec::new();
    if let Some(cg) = &made.cgroup {
        if let Err(e) = cg.destroy() {
            problems.push(format!("removing cgroup {}: {e}", cg.path));
        }
    }
    if let Err(e) = dir.remove() {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        original
    } else {
        CreateError::CleanupFailed {
            original: Box::new(original),
            cleanup: problems.join("; "),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn create_in(
    _rt: &Runtime,
    id: &str,
    dir: &ContainerDir,
    bundle: &Path,
    spec: oci_spec::runtime::Spec,
    plan: crate::spawn::SpawnPlan,
    opts: &CreateOptions,
    made: &mut Made,
) -> Result<Created, CreateError> {
    let _lock = dir.lock()?;
    let mut warnings = Vec::new();
    let linux = spec.linux().as_ref().expect("validated");
    let rootfs = {
        let p = &spec.root().as_ref().expect("validated").path().clone();
        if p.is_absolute() {
            p.clone()
        } else {
            bundle.join(p)
        }
    };
    let mut st = ContainerState {
        id: id.to_owned(),
        bundle: bundle.to_owned(),
        rootfs,
        pid: 0,
        pid_start_time: 0,
        created: state::now_rfc3339(),
        recorded_status: Status::Creating,
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: None,
        spec: spec.clone(),
        owner: nix::unistd::geteuid().as_raw(),
    };

    let mut cg = Cgroup::resolve(linux.cgroups_path().as_ref().and_then(|p| p.to_str()), id)?;
    // Recorded before any directory is made, so a runtime killed from here on leaves a state
    // that `delete --force` uses to remove the cgroup (only the directories that are new).
    st.cgroup = Some(Cgroup {
        created: cg.dirs.iter().filter(|d| !d.exists()).cloned().collect(),
        ..cg.clone()
    });
    dir.save(&st)?;
    let created = cg.create(linux.resources().as_ref());
    if opts.keep_cgroup_parents {
        let leaves = cg.dirs.clone();
        cg.created.retain(|d| leaves.contains(d));
    }
    made.cgroup = Some(cg.clone());
    let cg = match created {
        Ok(w) => {
            warnings.extend(w);
            Some(cg)
        }
        // Rootless, as runc does: an unprivileged user who may not create cgroups still runs
        // containers that ask for no limits; the container then shares the caller's cgroup.
        Err(CgroupError::Mkdir { source, .. })
            if !nix::unistd::geteuid().is_root()
                && source.kind() == std::io::ErrorKind::PermissionDenied
                && resources_empty(linux.resources().as_ref()) =>
        {
            made.cgroup = None;
            None
        }
        Err(e) => return Err(e.into()),
    };
    st.cgroup = cg.clone();
    dir.save(&st)?;

    let fifo_path = dir.path.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).map_err(|source| {
        CreateError::Fifo {
            path: fifo_path.clone(),
            source,
        }
    })?;
    // mkfifo applies the umask; the init may run as any user.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &fifo_path,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|source| CreateError::Fifo {
        path: fifo_path.clone(),
        source,
    })?;
    // Opened read-write here (which never blocks on a fifo) and inherited by the init: it then
    // blocks reading it until `start` writes, without ever resolving a path after the user
    // switch (a non-root, non-dumpable init cannot reopen /proc/self/fd/N).
    let fifo =
        open(&fifo_path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| {
            CreateError::Fifo {
                path: fifo_path.clone(),
                source,
            }
        })?;
    let console_socket = match (&opts.console_fd, &opts.console_socket) {
        (Some(fd), _) => Some(
            fd.try_clone()
                .map_err(|source| CreateError::ConsoleSocket {
                    path: PathBuf::from("(socketpair)"),
                    source,
                })?,
        ),
        (None, Some(path)) => Some(connect_console(path)?),
        (None, None) => None,
    };

    let hooks = spec.hooks().clone();
    let mut run_hooks = |pid: i32| -> Result<String, hooks::HookError> {
        let mut s = st.clone();
        s.pid = pid;
        s.pid_start_time = state::process_start_time(pid).unwrap_or(0);
        let json = serde_json::to_string(&s.oci_state(dir)).expect("state serializes");
        if let Some(h) = &hooks {
            hooks::run(
                HookKind::Prestart,
                h.prestart().as_deref().unwrap_or_default(),
                &json,
            )?;
            hooks::run(
                HookKind::CreateRuntime,
                h.create_runtime().as_deref().unwrap_or_default(),
                &json,
            )?;
        }
        Ok(json)
    };
    let mut notify = |pid: i32, fd: OwnedFd| {
        let mut s = st.clone();
        s.pid = pid;
        s.pid_start_time = state::process_start_time(pid).unwrap_or(0);
        let json = serde_json::to_string(&s.oci_state(dir)).expect("state serializes");
        deliver_notify_fd(&plan.security, fd, &json)
    };
    let spawned = spawn(
        &plan,
        ChildIo {
            console_socket,
            exec_fifo: Some(fifo),
        },
        cg.as_ref(),
        Callbacks {
            create_runtime_hooks: &mut run_hooks,
            seccomp_notify: &mut notify,
            namespaces_ready: opts.namespaces_ready.as_ref().map(|n| n.0),
        },
    )?;
    st.pid = spawned.pid;
    st.pid_start_time = state::process_start_time(spawned.pid).unwrap_or(0);
    st.recorded_status = Status::Created;
    let kill_init = |e: CreateError| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(spawned.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        e
    };
    dir.save(&st).map_err(|e| kill_init(e.into()))?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, spawned.pid).map_err(kill_init)?;
    }
    Ok(Created {
        pid: spawned.pid,
        warnings,
    })
}

fn connect_console(path: &Path) -> Result<OwnedFd, CreateError> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|source| CreateError::ConsoleSocket {
            path: path.to_owned(),
            source,
        })
}

/// Writes `pid` to `path` atomically (containerd reads it as soon as `create` returns).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), CreateError> {
    let err = |source| CreateError::PidFile {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    std::io::Write::write_all(&mut f, pid.to_string().as_bytes()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Sends a seccomp notify fd to the listener named in the plan, with the container state.
pub(crate) fn deliver_notify_fd(
    security: &crate::security::SecurityPlan,
    fd: OwnedFd,
    state_json: &str,
) -> Result<(), crate::security::SecurityError> {
    let program = security.seccomp.as_ref();
    match program.and_then(|p| p.listener_path.as_deref()) {
        Some(path) => crate::security::send_to_listener(
            path,
            program.and_then(|p| p.listener_metadata.as_deref()),
            std::os::fd::AsFd::as_fd(&fd),
            state_json,
        ),
        // The plan refuses SCMP_ACT_NOTIFY without a listenerPath; nothing to deliver to.
        None => Ok(()),
    }
}

/// Whether `resources` asks for no limit at all (the default device rules do not count: they
/// only restate what an unprivileged user cannot do anyway).
fn resources_empty(resources: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    let Some(r) = resources else { return true };
    r.memory().is_none()
        && r.cpu().is_none()
        && r.pids().is_none()
        && r.block_io().is_none()
        && r.hugepage_limits().as_ref().is_none_or(|h| h.is_empty())
        && r.network().is_none()
        && r.rdma().is_none()
        && r.unified().as_ref().is_none_or(|u| u.is_empty())
}
