//! `berth exec`: an extra process in a running container, through the runtime's `exec`
//! (joining every namespace and the cgroup, with the container's seccomp profile and
//! capabilities), in the foreground with signal forwarding, or detached.

use std::os::fd::OwnedFd;

use berth_runtime::ops;
use oci_spec::runtime::Process;
use serde_json::json;

use crate::record::{RecordError, Status};
use crate::user::UserError;
use crate::Engine;

/// `exec` options, Docker's flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    /// `--privileged`: every capability (of Berth's bounding set), no seccomp filter and no
    /// AppArmor profile for this process; the container itself is unchanged.
    pub privileged: bool,
}

/// Why `exec` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("no command given")]
    NoCommand,
    #[error("reading the runtime state of container {id}")]
    State {
        id: String,
        #[source]
        source: berth_runtime::state::StateError,
    },
    #[error("building the process for container {id}")]
    Process {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    User(#[from] UserError),
    #[error("computing the capabilities of a privileged exec")]
    Caps(#[source] crate::bundle::BundleError),
    #[error("executing in container {id}")]
    Runtime {
        id: String,
        #[source]
        source: Box<ops::exec::ExecError>,
    },
    #[error("setting up signal forwarding")]
    Signals(#[source] nix::errno::Errno),
    #[error("serving the terminal")]
    Console(#[source] ops::console::ConsoleError),
    #[error("waiting for the process")]
    Wait(#[source] nix::errno::Errno),
}

impl ExecError {
    /// 126/127 when the command could not be run (Docker's codes), else `None`.
    pub fn command_exit_code(&self) -> Option<u8> {
        match self {
            ExecError::Runtime { source, .. } => match source.as_ref() {
                ops::exec::ExecError::Spawn(s) => crate::lifecycle::command_exit_code(s),
                _ => None,
            },
            _ => None,
        }
    }
}

/// An error and its causes on one line, `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl Engine {
    /// Runs `opts.command` in container `what`; returns its exit code (0 when detached).
    pub fn exec(&self, what: &str, opts: &ExecOptions) -> Result<i32, ExecError> {
        if opts.command.is_empty() {
            return Err(ExecError::NoCommand);
        }
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running {
            return Err(ExecError::NotRunning(what.to_owned()));
        }
        let id = rec.id.clone();
        let (_, st, _) = self.runtime.load(&id).map_err(|source| ExecError::State {
            id: id.clone(),
            source,
        })?;
        let base = st.spec.process().clone().unwrap_or_default();
        let mut p = serde_json::to_value(&base).map_err(|source| ExecError::Process {
            id: id.clone(),
            source,
        })?;
        p["args"] = json!(opts.command);
        p["terminal"] = json!(opts.tty);
        let mut env: Vec<String> = rec.env.clone();
        for kv in &opts.env {
            let kv = if kv.contains('=') {
                kv.clone()
            } else if let Ok(v) = std::env::var(kv) {
                format!("{kv}={v}")
            } else {
                continue;
            };
            let key = kv.split('=').next().unwrap_or("").to_owned();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(kv);
        }
        p["env"] = json!(env);
        if let Some(w) = &opts.workdir {
            p["cwd"] = json!(w);
        }
        if let Some(u) = &opts.user {
            let rootfs = rec.bundle.join("rootfs");
            let passwd = crate::user::read_in_root(&rootfs, "etc/passwd");
            let group = crate::user::read_in_root(&rootfs, "etc/group");
            let r = crate::user::resolve(u, passwd.as_deref(), group.as_deref())?;
            p["user"] = json!({"uid": r.uid, "gid": r.gid, "additionalGids": r.additional_gids});
        }
        if opts.privileged {
            // moby's execSetPlatformOpt: bounding, permitted and effective get every capability.
            let all = crate::bundle::capabilities(&[], &[], true).map_err(ExecError::Caps)?;
            p["capabilities"] = json!({"bounding": all, "permitted": all, "effective": all});
            if let Some(o) = p.as_object_mut() {
                o.remove("apparmorProfile");
            }
        }
        let process: Process = serde_json::from_value(p).map_err(|source| ExecError::Process {
            id: id.clone(),
            source,
        })?;

        let (ours, theirs): (Option<OwnedFd>, Option<OwnedFd>) = if opts.tty && !opts.detach {
            let (a, b) = ops::console::socket_pair().map_err(ExecError::Console)?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        if !opts.interactive && !opts.tty {
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(&null);
            }
        }
        // Blocked before the spawn (the exec'd process resets its own mask before execve), so
        // a signal sent once it runs is forwarded instead of killing us.
        let set = if opts.detach {
            None
        } else {
            ops::wait::become_subreaper().map_err(ExecError::Signals)?;
            Some(ops::wait::block_signals().map_err(ExecError::Signals)?)
        };
        let pid = ops::exec::exec(
            &self.runtime,
            &id,
            ops::exec::ExecOptions {
                process,
                console_socket: None,
                console_fd: theirs,
                pid_file: None,
                preserve_fds: 0,
                no_seccomp: opts.privileged,
            },
        );
        let pid = pid.map_err(|source| {
            if let Some(set) = &set {
                ops::wait::unblock_signals(set);
            }
            ExecError::Runtime {
                id,
                source: Box::new(source),
            }
        })?;
        // Docker's exec events: `exec_create: CMD`, `exec_start: CMD`, then `exec_die`.
        let exec_id = crate::record::new_id().unwrap_or_default();
        let cmd = opts.command.join(" ");
        for action in ["exec_create", "exec_start"] {
            let what = format!("{action}: {cmd}");
            self.emit_container(&rec, &what, &[("execID", exec_id.clone())]);
        }
        let Some(set) = set else {
            return Ok(0);
        };
        let code = match ours {
            Some(ours) => ops::console::receive_master(&ours)
                .and_then(|m| ops::console::serve(pid, m, &set))
                .map_err(ExecError::Console),
            None => ops::wait::wait_forwarding(pid, &set).map_err(ExecError::Wait),
        };
        ops::wait::unblock_signals(&set);
        if let Ok(c) = &code {
            let extra = [("execID", exec_id), ("exitCode", c.to_string())];
            self.emit_container(&rec, "exec_die", &extra);
        }
        code
    }
}
