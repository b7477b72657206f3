//! `exec`: run an extra process in a running container, joining all its namespaces and its
//! cgroup, with the security settings of the given process.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::create::{deliver_notify_fd, write_pid_file, CreateError};
use super::{Runtime, WrongStatus};
use crate::spawn::init::ChildIo;
use crate::spawn::parent::{spawn, Callbacks, SpawnError};
use crate::spawn::plan::{plan_exec, PlanError};
use crate::state::{StateError, Status};

/// Options of `exec`.
#[derive(Debug)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket; takes precedence over `console_socket`.
    pub console_fd: Option<OwnedFd>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// Start the process without the container's seccomp filter (an engine's
    /// `exec --privileged`); runc has no such option, so `berth-runc exec` never sets it.
    pub no_seccomp: bool,
}

/// Why `exec` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("connecting to the console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    PidFile(#[from] CreateError),
}

/// Starts `opts.process` in container `id`; returns its host pid. The caller waits for it
/// (after [`super::wait::become_subreaper`]) unless detached.
pub fn exec(rt: &Runtime, id: &str, opts: ExecOptions) -> Result<i32, ExecError> {
    let (dir, st, status) = rt.load(id)?;
    if !matches!(status, Status::Running | Status::Created) {
        return Err(WrongStatus {
            id: id.to_owned(),
            status,
            what: "exec needs a running container",
        }
        .into());
    }
    let plan = if opts.no_seccomp {
        let mut spec = st.spec.clone();
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(None);
        }
        plan_exec(&spec, &opts.process, st.pid, opts.preserve_fds)?
    } else {
        plan_exec(&st.spec, &opts.process, st.pid, opts.preserve_fds)?
    };
    let state_json = serde_json::to_string(&st.oci_state(&dir)).expect("state serializes");
    let console_socket: Option<OwnedFd> = match (opts.console_fd, &opts.console_socket) {
        (Some(fd), _) => Some(fd),
        (None, Some(path)) => Some(UnixStream::connect(path).map(OwnedFd::from).map_err(
            |source| ExecError::ConsoleSocket {
                path: path.clone(),
                source,
            },
        )?),
        (None, None) => None,
    };
    let spawned = spawn(
        &plan,
        ChildIo {
            console_socket,
            exec_fifo: None,
        },
        st.cgroup.as_ref(),
        Callbacks {
            create_runtime_hooks: &mut |_| Ok(String::new()),
            seccomp_notify: &mut |_pid, fd| deliver_notify_fd(&plan.security, fd, &state_json),
            namespaces_ready: None,
        },
    )?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, spawned.pid)?;
    }
    Ok(spawned.pid)
}
