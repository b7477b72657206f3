//! The parent's side of the spawn handshake: fork the intermediate, place it in the cgroup,
//! write id maps and time offsets when asked, run the createRuntime hooks, and wait for
//! `Ready`. On any failure the forked processes are killed before the error is returned.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::channel::{self, ChannelError, Msg};
use super::init::{self, ChildIo};
use super::plan::{Role, SpawnPlan};
use super::{ensure_single_threaded, InitError, MultiThreaded};
use crate::cgroups::{Cgroup, CgroupError};
use crate::hooks::HookError;
use crate::procfs::{ProcFs, ProcfsError};
use crate::security::SecurityError;
use crate::sys::process as sys;

/// The spawned process.
#[derive(Debug)]
pub struct Spawned {
    /// Host pid of the container's init (or the exec'd process).
    pub pid: i32,
}

/// Why spawning failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    MultiThreaded(#[from] MultiThreaded),
    #[error("sync with the container process")]
    Channel(#[from] ChannelError),
    #[error("forking the intermediate process")]
    Fork(#[source] Errno),
    #[error("joining the cgroup")]
    Cgroup(#[source] CgroupError),
    #[error("writing the user namespace id maps of pid {pid}")]
    IdMaps {
        pid: i32,
        #[source]
        source: ProcfsError,
    },
    #[error("writing linux.timeOffsets for pid {pid}")]
    TimeOffsets {
        pid: i32,
        #[source]
        source: ProcfsError,
    },
    #[error("setting process.oomScoreAdj to {value}{hint}")]
    OomScoreAdj {
        value: i32,
        hint: &'static str,
        #[source]
        source: ProcfsError,
    },
    #[error("hooks")]
    Hooks(#[source] HookError),
    #[error("delivering the seccomp notify fd")]
    SeccompNotify(#[source] SecurityError),
    #[error("container process failed")]
    Child(#[source] InitError),
    #[error("setting up the container's namespaces")]
    NamespacesReady(#[source] crate::ops::create::CallbackError),
}

/// What the caller does at the two points of the handshake that need more than the plan.
pub struct Callbacks<'a> {
    /// Runs the prestart and createRuntime hooks given the init's pid; returns the state
    /// document for the in-container hooks.
    pub create_runtime_hooks: &'a mut dyn FnMut(i32) -> Result<String, HookError>,
    /// Delivers the seccomp notify fd of process `pid` to its listener.
    pub seccomp_notify: &'a mut dyn FnMut(i32, OwnedFd) -> Result<(), SecurityError>,
    /// Runs once the init exists in its namespaces, while it builds its rootfs
    /// ([`crate::ops::create::NamespacesReady`]).
    pub namespaces_ready: Option<&'a dyn Fn(i32) -> Result<(), crate::ops::create::CallbackError>>,
}

/// Forks the container process described by `plan` and drives the handshake until it is
/// `Ready`.
pub fn spawn(
    plan: &SpawnPlan,
    io: ChildIo,
    cgroup: Option<&Cgroup>,
    callbacks: Callbacks<'_>,
) -> Result<Spawned, SpawnError> {
    ensure_single_threaded()?;
    let (parent_end, child_end) = channel::pair()?;
    // Nothing here writes a pid into `cgroup.procs` if it can help it: that takes the kernel's
    // global threadgroup lock, whose first writer after a quiet spell waits for an RCU grace
    // period (often longer than the rest of a container start). Instead the child is forked
    // straight into the v2 directory (CLONE_INTO_CGROUP, pure v2 and hybrid hosts) and moves
    // itself into each v1 hierarchy through `tasks` ([`crate::cgroups::join_v1_self`]).
    let cgroup_fd = match cgroup {
        Some(cg) => cg.open_v2_dir().map_err(SpawnError::Cgroup)?,
        None => None,
    };
    let v1_tasks = cgroup.map(Cgroup::v1_tasks_files).unwrap_or_default();

    // The usual case (every namespace new, no user or time namespace) needs no intermediate:
    // one clone3 makes the init in its namespaces (and its v2 cgroup), a fork and an exit
    // fewer. A kernel without clone3 falls back to the intermediate below.
    if init::can_clone_directly(plan) {
        let flags = init::direct_clone_flags(plan);
        match sys::clone_fork(flags, cgroup_fd.as_ref().map(|fd| fd.as_fd())) {
            Ok(sys::Forked::Child) => {
                drop(parent_end);
                init::init_direct(plan, child_end, io, &v1_tasks)
            }
            Ok(sys::Forked::Parent(pid)) => {
                drop(child_end);
                drop(io);
                drop(cgroup_fd);
                let guard = KillGuard {
                    intermediate: None,
                    process: Some(pid),
                };
                return handshake(plan, parent_end, guard, None, callbacks);
            }
            Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL | Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(SpawnError::Fork(e)),
        }
    }

    let forked = match &cgroup_fd {
        Some(fd) => match sys::fork_into_cgroup(fd.as_fd()) {
            Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL | Errno::EOPNOTSUPP) => {
                sys::fork().map(|f| (f, false))
            }
            other => other.map(|f| (f, true)),
        },
        None => sys::fork().map(|f| (f, false)),
    };
    let (forked, in_v2) = forked.map_err(SpawnError::Fork)?;
    let intermediate = match forked {
        sys::Forked::Child => {
            drop(parent_end);
            init::intermediate(plan, child_end, io, &v1_tasks)
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(child_end);
    drop(io);

    let mut guard = KillGuard {
        intermediate: Some(intermediate),
        process: None,
    };
    let chan = parent_end;
    let fail = |e: SpawnError| Err(e);

    // Without clone3 into the cgroup, the v2 directory is joined the slow way.
    if cgroup_fd.is_some() && !in_v2 {
        if let Some(cg) = cgroup {
            if let Err(e) = cg.add_pid_v2(intermediate.as_raw()) {
                return fail(SpawnError::Cgroup(e));
            }
        }
    }
    drop(cgroup_fd);
    chan.send(&Msg::Go)?;

    let proc = ProcFs::host().map_err(|source| SpawnError::IdMaps {
        pid: intermediate.as_raw(),
        source,
    })?;
    let pid = loop {
        let (msg, _) = chan.recv_any("WriteIdMaps, WriteTimeOffsets or Pid")?;
        match msg {
            Msg::WriteIdMaps { pid } => {
                let write = |file: &str, content: &Option<String>| -> Result<(), ProcfsError> {
                    match content {
                        Some(c) => proc.write(&format!("{pid}/{file}"), c),
                        None => Ok(()),
                    }
                };
                // Without CAP_SETGID over the parent namespace (rootless), the kernel only
                // accepts a gid_map once setgroups is denied (user_namespaces(7)).
                let deny_setgroups = || -> Result<(), ProcfsError> {
                    if nix::unistd::geteuid().is_root() {
                        Ok(())
                    } else {
                        proc.write(&format!("{pid}/setgroups"), "deny")
                    }
                };
                write("uid_map", &plan.uid_map)
                    .and_then(|_| deny_setgroups())
                    .and_then(|_| write("gid_map", &plan.gid_map))
                    .map_err(|source| SpawnError::IdMaps { pid, source })?;
                chan.send(&Msg::IdMapsWritten)?;
            }
            Msg::WriteTimeOffsets { pid } => {
                if let Some(offsets) = &plan.time_offsets {
                    proc.write(&format!("{pid}/timens_offsets"), offsets)
                        .map_err(|source| SpawnError::TimeOffsets { pid, source })?;
                }
                chan.send(&Msg::TimeOffsetsWritten)?;
            }
            Msg::Pid { pid } => break pid,
            Msg::Error(e) => return fail(SpawnError::Child(e)),
            other => {
                return fail(SpawnError::Channel(ChannelError::Unexpected {
                    expected: "WriteIdMaps, WriteTimeOffsets or Pid",
                    got: other.name(),
                }))
            }
        }
    };
    guard.process = Some(Pid::from_raw(pid));
    // The intermediate exits right after reporting the pid; it is reaped once the init is
    // ready, so its exit runs alongside the init's setup instead of before it.
    handshake(plan, chan, guard, Some(intermediate), callbacks)
}

/// The rest of the handshake with the init (or the exec'd process), once its pid is known:
/// `oom_score_adj`, go, the caller's namespace setup, the createRuntime hooks, the seccomp
/// notify fd, `Ready`.
fn handshake(
    plan: &SpawnPlan,
    chan: channel::Channel,
    mut guard: KillGuard,
    intermediate: Option<Pid>,
    callbacks: Callbacks<'_>,
) -> Result<Spawned, SpawnError> {
    let pid = guard
        .process
        .expect("the handshake starts once the pid is known")
        .as_raw();
    let fail = |e: SpawnError| Err(e);
    if let Some(value) = plan.oom_score_adj {
        ProcFs::host()
            .and_then(|proc| proc.write(&format!("{pid}/oom_score_adj"), &value.to_string()))
            .map_err(|source| SpawnError::OomScoreAdj {
                value,
                hint: if value < 0 {
                    " (lowering it needs CAP_SYS_RESOURCE)"
                } else {
                    ""
                },
                source,
            })?;
    }
    chan.send(&Msg::Go)?;
    // The init is in its namespaces and now builds its root filesystem: the caller's setup
    // from outside runs meanwhile.
    if let Some(ready) = callbacks
        .namespaces_ready
        .filter(|_| plan.role == Role::Init)
    {
        if let Err(e) = ready(pid) {
            // The init may have failed meanwhile, and taken its namespaces with it: then its
            // own error is the one to report. It always sends something next (an error, or
            // its request for the createRuntime hooks), or closes the socket.
            if let Ok((Msg::Error(child), _)) = chan.recv_any("RunCreateRuntimeHooks") {
                return fail(SpawnError::Child(child));
            }
            return fail(SpawnError::NamespacesReady(e));
        }
    }

    if plan.role == Role::Init {
        match chan.expect("RunCreateRuntimeHooks", |m| {
            matches!(m, Msg::RunCreateRuntimeHooks)
        })? {
            Ok(_) => {}
            Err(e) => return fail(SpawnError::Child(e)),
        }
        let state = (callbacks.create_runtime_hooks)(pid).map_err(SpawnError::Hooks)?;
        chan.send(&Msg::CreateRuntimeHooksDone { state })?;
    }

    loop {
        let (msg, fd) = chan.recv_any("Ready")?;
        match (msg, fd) {
            (Msg::SeccompNotifyFd, Some(fd)) => {
                (callbacks.seccomp_notify)(pid, fd).map_err(SpawnError::SeccompNotify)?;
                chan.send(&Msg::SeccompNotifyFdDelivered)?;
            }
            (Msg::Ready, _) => break,
            (Msg::Error(e), _) => return fail(SpawnError::Child(e)),
            (other, _) => {
                return fail(SpawnError::Channel(ChannelError::Unexpected {
                    expected: "Ready",
                    got: other.name(),
                }))
            }
        }
    }
    if let Some(p) = intermediate {
        let _ = waitpid(p, None);
    }
    guard.disarm();
    Ok(Spawned { pid })
}

/// Kills the forked processes unless disarmed: a failed spawn leaves no process behind.
struct KillGuard {
    intermediate: Option<Pid>,
    process: Option<Pid>,
}

impl KillGuard {
    fn disarm(&mut self) {
        self.intermediate = None;
        self.process = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        // The intermediate first: once it is reaped, the init has been reparented (to us when
        // we are the subreaper), so the wait below finds it.
        if let Some(p) = self.intermediate.take() {
            let _ = kill(p, Signal::SIGKILL);
            let _ = waitpid(p, None);
        }
        if let Some(p) = self.process.take() {
            let _ = kill(p, Signal::SIGKILL);
            // If we are its subreaper (foreground `run`), reap it; otherwise its parent will.
            let _ = waitpid(p, Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
    }
}
