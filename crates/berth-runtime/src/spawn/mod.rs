//! Spawning a container process: the plan computed before cloning ([`plan`]), the parent's
//! side of the handshake ([`parent`]) and the code the forked processes run ([`init`]).
//!
//! Process model (crun-like, no re-exec):
//! 1. when every namespace is new and none is a user or time namespace (the usual container),
//!    the parent (single-threaded) clones the container's *init* straight into them with one
//!    `clone3`, into the cgroup's v2 directory when there is one, over one SEQPACKET
//!    socketpair ([`channel`]); the init moves itself into the v1 hierarchies (`tasks`, no
//!    global lock), makes its cgroup namespace and continues at step 3;
//! 2. otherwise the parent forks an *intermediate* process the same way; it joins the v1
//!    cgroups, the namespaces given by path, unshares a user namespace (the parent writes its
//!    id maps), then every other new namespace (the parent writes time offsets), and forks the
//!    container's *init*, which is PID 1 of a new PID namespace;
//! 3. the init builds the root filesystem (meanwhile the parent runs the caller's
//!    `namespaces_ready`, e.g. the engine's network setup), asks the parent to run the
//!    createRuntime hooks, pivots, sets up the console, hostname, sysctls and rlimits, drops
//!    privileges, reports `Ready` and blocks on the exec fifo until `start`.
//!
//! `exec` uses the same path with every namespace joined from the running init.

pub mod channel;
pub mod init;
pub mod parent;
pub mod plan;

pub use plan::{NsKind, NsPlan, Role, SpawnPlan};

use serde::{Deserialize, Serialize};

/// The step of the child's setup that failed; it travels over the sync socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitStep {
    CloseFds,
    JoinCgroup,
    JoinNamespace,
    UnshareUserNamespace,
    BecomeRoot,
    UnshareNamespaces,
    Fork,
    Setsid,
    Rootfs,
    CreateContainerHooks,
    PivotRoot,
    Console,
    Hostname,
    Domainname,
    Sysctl,
    FinalizeRootfs,
    Rlimit,
    FindExecutable,
    Security,
    ExecFifo,
    StartContainerHooks,
    Cwd,
    Exec,
    Sync,
}

impl std::fmt::Display for InitStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            InitStep::CloseFds => "closing inherited file descriptors",
            InitStep::JoinCgroup => "joining the cgroup",
            InitStep::JoinNamespace => "joining a namespace",
            InitStep::UnshareUserNamespace => "creating the user namespace",
            InitStep::BecomeRoot => "becoming root in the user namespace",
            InitStep::UnshareNamespaces => "creating namespaces",
            InitStep::Fork => "forking the container init",
            InitStep::Setsid => "creating a session",
            InitStep::Rootfs => "preparing the root filesystem",
            InitStep::CreateContainerHooks => "running createContainer hooks",
            InitStep::PivotRoot => "switching to the root filesystem",
            InitStep::Console => "setting up the console",
            InitStep::Hostname => "setting the hostname",
            InitStep::Domainname => "setting the domainname",
            InitStep::Sysctl => "writing a sysctl",
            InitStep::FinalizeRootfs => "finishing the root filesystem",
            InitStep::Rlimit => "setting an rlimit",
            InitStep::FindExecutable => "finding the executable",
            InitStep::Security => "applying process security",
            InitStep::ExecFifo => "waiting on the exec fifo",
            InitStep::StartContainerHooks => "running startContainer hooks",
            InitStep::Cwd => "changing to the working directory",
            InitStep::Exec => "executing the process",
            InitStep::Sync => "talking to the runtime",
        };
        f.write_str(s)
    }
}

/// A failure inside a forked process, structured so it can cross the socket intact.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{step}: {message}")]
pub struct InitError {
    pub step: InitStep,
    /// The full cause chain, already formatted ("a: b: c").
    pub message: String,
    /// The errno at the bottom of the chain, when there is one.
    pub errno: Option<i32>,
}

impl InitError {
    /// Builds an error from any error value, walking its source chain.
    pub fn new(step: InitStep, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = err.to_string();
        let mut errno = errno_of(err);
        let mut cur = err.source();
        while let Some(e) = cur {
            let s = e.to_string();
            if !message.ends_with(&s) {
                message.push_str(": ");
                message.push_str(&s);
            }
            errno = errno.or_else(|| errno_of(e));
            cur = e.source();
        }
        Self {
            step,
            message,
            errno,
        }
    }

    /// An error with a plain message.
    pub fn msg(step: InitStep, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            errno: None,
        }
    }
}

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    if let Some(n) = e.downcast_ref::<nix::errno::Errno>() {
        return Some(*n as i32);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.raw_os_error())
}

/// The caller has more than one thread: forking it would be unsafe.
#[derive(Debug, thiserror::Error)]
#[error("the runtime process has {0} threads; containers can only be spawned from a single-threaded process")]
pub struct MultiThreaded(pub usize);

/// Fails unless this process has exactly one thread (ARCHITECTURE.md, process model rule 3).
pub fn ensure_single_threaded() -> Result<(), MultiThreaded> {
    match crate::sys::process::thread_count() {
        1 => Ok(()),
        n => Err(MultiThreaded(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("mounting proc on /proc")]
    struct Outer(#[source] nix::errno::Errno);

    #[test]
    fn init_error_keeps_chain_and_errno() {
        let e = InitError::new(InitStep::Rootfs, &Outer(nix::errno::Errno::ENOENT));
        assert_eq!(e.errno, Some(libc::ENOENT));
        assert!(
            e.message.starts_with("mounting proc on /proc: "),
            "{}",
            e.message
        );
        let back: InitError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.step, InitStep::Rootfs);
        assert_eq!(back.to_string(), e.to_string());
    }
}
