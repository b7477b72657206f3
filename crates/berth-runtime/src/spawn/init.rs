//! The code the forked processes run: the *intermediate* (joins and creates namespaces, forks
//! the init) and the *init* (or the `exec`'d process), up to `execve`.
//!
//! Both report failures to the parent as a structured [`InitError`] over the sync socket and
//! exit; neither ever returns into the caller's code.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::channel::{Channel, Msg};
use super::plan::{Role, SpawnPlan};
use super::{InitError, InitStep};
use crate::hooks::{self, HookKind};
use crate::procfs::ProcFs;
use crate::sys::process as sys;

/// Descriptors handed to the forked processes.
#[derive(Debug, Default)]
pub struct ChildIo {
    /// The connected `--console-socket`, for `terminal: true`.
    pub console_socket: Option<OwnedFd>,
    /// The exec fifo, open read-write (init only).
    pub exec_fifo: Option<OwnedFd>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

type Step<T> = Result<T, InitError>;

fn step<T, E: std::error::Error + 'static>(s: InitStep, r: Result<T, E>) -> Step<T> {
    r.map_err(|e| InitError::new(s, &e))
}

fn ctx<T>(s: InitStep, what: String, r: nix::Result<T>) -> Step<T> {
    r.map_err(|e| InitError {
        step: s,
        message: format!("{what}: {}", e.desc()),
        errno: Some(e as i32),
    })
}

/// The intermediate process. Never returns.
pub fn intermediate(plan: &SpawnPlan, chan: Channel, io: ChildIo, v1_tasks: &[PathBuf]) -> ! {
    match run_intermediate(plan, &chan, io, v1_tasks) {
        Ok(()) => sys::exit_now(0),
        Err(e) => {
            let _ = chan.send(&Msg::Error(e));
            sys::exit_now(1)
        }
    }
}

fn run_intermediate(
    plan: &SpawnPlan,
    chan: &Channel,
    io: ChildIo,
    v1_tasks: &[PathBuf],
) -> Step<()> {
    // 1. Nothing of the runtime's may reach the container (CVE-2024-21626).
    close_inherited_fds(plan, chan, &io)?;
    // If the runtime dies mid-create, so do we.
    step(
        InitStep::CloseFds,
        sys::set_parent_death_signal(libc::SIGKILL),
    )?;
    // 3. The parent has put us in the cgroup's v2 directory; we join its v1 hierarchies
    //    ourselves, before anything else (children, and so the init, inherit them).
    step(InitStep::Sync, chan.expect("Go", |m| matches!(m, Msg::Go)))?.map(drop)?;
    step(InitStep::JoinCgroup, crate::cgroups::join_v1_self(v1_tasks))?;

    // 4. Join namespaces given by path: open them all first (joining the mount namespace
    //    changes what paths mean), then setns in order, user first.
    let mut joins = Vec::new();
    for ns in &plan.namespaces {
        if let Some(path) = &ns.path {
            let fd = ctx(
                InitStep::JoinNamespace,
                format!(
                    "opening {} namespace {}",
                    ns.kind.proc_name(),
                    path.display()
                ),
                open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()),
            )?;
            joins.push((ns, fd));
        }
    }
    for (ns, fd) in &joins {
        // Joining the namespace we are already in is refused for user namespaces (EINVAL);
        // skip it, as it changes nothing.
        if same_namespace(fd, ns.kind.proc_name()) {
            continue;
        }
        ctx(
            InitStep::JoinNamespace,
            format!(
                "joining {} namespace {}",
                ns.kind.proc_name(),
                ns.path.as_deref().unwrap_or(Path::new("")).display()
            ),
            setns(fd, CloneFlags::from_bits_retain(ns.kind.clone_flag())),
        )?;
    }
    drop(joins);

    // 5. A new user namespace first: the parent maps our ids, then we become its root.
    let new = |k: super::NsKind| {
        plan.namespaces
            .iter()
            .any(|n| n.kind == k && n.path.is_none())
    };
    if new(super::NsKind::User) {
        ctx(
            InitStep::UnshareUserNamespace,
            "unshare(CLONE_NEWUSER)".into(),
            unshare(CloneFlags::CLONE_NEWUSER),
        )?;
        chan.send(&Msg::WriteIdMaps {
            pid: std::process::id() as i32,
        })
        .map_err(|e| InitError::new(InitStep::Sync, &e))?;
        step(
            InitStep::Sync,
            chan.expect("IdMapsWritten", |m| matches!(m, Msg::IdMapsWritten)),
        )?
        .map(drop)?;
        ctx(
            InitStep::BecomeRoot,
            "setresgid(0, 0, 0)".into(),
            nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)),
        )?;
        ctx(
            InitStep::BecomeRoot,
            "setresuid(0, 0, 0)".into(),
            nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)),
        )?;
    }

    // 6. Every other new namespace at once. PID and time namespaces apply to our children,
    //    which is why the init is forked below.
    let flags = plan
        .namespaces
        .iter()
        .filter(|n| n.path.is_none() && n.kind != super::NsKind::User)
        .fold(0, |acc, n| acc | n.kind.clone_flag());
    if flags != 0 {
        ctx(
            InitStep::UnshareNamespaces,
            format!("unshare({flags:#x})"),
            unshare(CloneFlags::from_bits_retain(flags)),
        )?;
    }
    if plan.time_offsets.is_some() {
        chan.send(&Msg::WriteTimeOffsets {
            pid: std::process::id() as i32,
        })
        .map_err(|e| InitError::new(InitStep::Sync, &e))?;
        step(
            InitStep::Sync,
            chan.expect("TimeOffsetsWritten", |m| {
                matches!(m, Msg::TimeOffsetsWritten)
            }),
        )?
        .map(drop)?;
    }

    // 7. Hide /proc/PID/exe and refuse ptrace from inside the container while runtime code
    //    still runs (CVE-2016-9962, CVE-2019-5736); the init inherits it, execve resets it.
    //    Not earlier: this process lives in the runtime's PID namespace, where no container
    //    process can see it, and an unprivileged parent must still open its /proc/PID/uid_map
    //    (a non-dumpable process's /proc files belong to root).
    step(InitStep::CloseFds, sys::set_non_dumpable())?;

    // 8. Fork the process that will exec the container's program.
    match step(InitStep::Fork, sys::fork())? {
        sys::Forked::Child => {
            let code = match run_process(plan, chan, io) {
                Ok(never) => match never {},
                Err(e) => {
                    let _ = chan.send(&Msg::Error(e));
                    1
                }
            };
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => {
            chan.send(&Msg::Pid { pid: pid.as_raw() })
                .map_err(|e| InitError::new(InitStep::Sync, &e))?;
            Ok(())
        }
    }
}

/// The container's init when the parent created its namespaces itself with `clone3` (no
/// namespace to join, no user or time namespace: the usual `run`). Does what the intermediate
/// would have done for it, then runs like any init. Never returns.
pub fn init_direct(plan: &SpawnPlan, chan: Channel, io: ChildIo, v1_tasks: &[PathBuf]) -> ! {
    let code = match run_direct(plan, &chan, io, v1_tasks) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = chan.send(&Msg::Error(e));
            1
        }
    };
    sys::exit_now(code)
}

fn run_direct(
    plan: &SpawnPlan,
    chan: &Channel,
    io: ChildIo,
    v1_tasks: &[PathBuf],
) -> Step<std::convert::Infallible> {
    // As in the intermediate: nothing of the runtime's reaches the container (CVE-2024-21626),
    // the v1 cgroups are joined first (the v2 one was joined by the clone), the cgroup
    // namespace is made only once inside the cgroup, and /proc/PID/exe is hidden before any
    // container code could look (CVE-2016-9962, CVE-2019-5736). Nothing else runs in the new
    // PID namespace yet.
    close_inherited_fds(plan, chan, &io)?;
    step(InitStep::JoinCgroup, crate::cgroups::join_v1_self(v1_tasks))?;
    if plan
        .namespaces
        .iter()
        .any(|n| n.kind == super::NsKind::Cgroup && n.path.is_none())
    {
        ctx(
            InitStep::UnshareNamespaces,
            "unshare(CLONE_NEWCGROUP)".into(),
            unshare(CloneFlags::CLONE_NEWCGROUP),
        )?;
    }
    step(InitStep::CloseFds, sys::set_non_dumpable())?;
    run_process(plan, chan, io)
}

/// Closes every inherited descriptor above the preserved ones, except the sync socket and what
/// is handed on to the container's process.
fn close_inherited_fds(plan: &SpawnPlan, chan: &Channel, io: &ChildIo) -> Step<()> {
    let mut keep = vec![chan.as_raw()];
    keep.extend(io.console_socket.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(io.exec_fifo.as_ref().map(|f| f.as_raw_fd()));
    step(
        InitStep::CloseFds,
        sys::close_fds_from(3 + plan.preserve_fds, &keep),
    )
}

/// Whether the parent can create the init's namespaces itself with one `clone3` (see
/// [`init_direct`]): an init, every namespace new, none of them a user or time namespace (the
/// parent must write their maps or offsets before anything enters them).
pub fn can_clone_directly(plan: &SpawnPlan) -> bool {
    plan.role == Role::Init
        && plan.time_offsets.is_none()
        && plan.namespaces.iter().all(|n| {
            n.path.is_none() && !matches!(n.kind, super::NsKind::User | super::NsKind::Time)
        })
}

/// The `CLONE_NEW*` flags of a direct clone: every new namespace but the cgroup one, which the
/// init makes once it is inside its cgroup.
pub fn direct_clone_flags(plan: &SpawnPlan) -> u64 {
    plan.namespaces
        .iter()
        .filter(|n| n.kind != super::NsKind::Cgroup)
        .fold(0u64, |acc, n| acc | n.kind.clone_flag() as u64)
}

fn same_namespace(fd: &OwnedFd, name: &str) -> bool {
    let theirs = nix::sys::stat::fstat(fd);
    let ours = nix::sys::stat::stat(format!("/proc/self/ns/{name}").as_str());
    matches!((theirs, ours), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
}

/// The container's init, or the `exec`'d process: everything up to `execve`.
fn run_process(plan: &SpawnPlan, chan: &Channel, io: ChildIo) -> Step<std::convert::Infallible> {
    // The intermediate exits on purpose: do not die with it.
    step(InitStep::Setsid, sys::set_parent_death_signal(0))?;
    step(InitStep::Sync, chan.expect("Go", |m| matches!(m, Msg::Go)))?.map(drop)?;
    step(InitStep::Setsid, sys::reset_signals())?;
    if plan.role == Role::Init || plan.terminal {
        ctx(InitStep::Setsid, "setsid()".into(), nix::unistd::setsid())?;
    }
    if let Some(name) = &plan.session_keyring {
        let cname = cstring(name)?;
        match sys::join_session_keyring(&cname) {
            // Kernels without keys, or a user namespace that may not create them: keep the
            // inherited keyring, as runc does.
            Ok(()) | Err(nix::errno::Errno::ENOSYS) | Err(nix::errno::Errno::EACCES) => {}
            Err(e) => {
                return Err(InitError {
                    step: InitStep::Setsid,
                    message: format!("joining session keyring {name:?}: {}", e.desc()),
                    errno: Some(e as i32),
                })
            }
        }
    }

    let mut state_json = String::new();
    if plan.role == Role::Init {
        let rootfs = plan
            .rootfs
            .as_ref()
            .expect("init plans carry a rootfs plan");
        step(InitStep::Rootfs, crate::rootfs::prepare(rootfs))?;
        chan.send(&Msg::RunCreateRuntimeHooks)
            .map_err(|e| InitError::new(InitStep::Sync, &e))?;
        match step(
            InitStep::Sync,
            chan.expect("CreateRuntimeHooksDone", |m| {
                matches!(m, Msg::CreateRuntimeHooksDone { .. })
            }),
        )?? {
            Msg::CreateRuntimeHooksDone { state } => state_json = state,
            _ => unreachable!("checked by expect"),
        }
        step(
            InitStep::CreateContainerHooks,
            hooks::run(
                HookKind::CreateContainer,
                &plan.create_container_hooks,
                &state_json,
            ),
        )?;
        step(InitStep::PivotRoot, crate::rootfs::pivot(rootfs))?;
    }

    if plan.terminal {
        setup_terminal(plan, io.console_socket)?;
    } else {
        drop(io.console_socket);
    }

    if plan.role == Role::Init {
        if let Some(name) = &plan.hostname {
            ctx(
                InitStep::Hostname,
                format!("sethostname({name:?})"),
                nix::unistd::sethostname(name),
            )?;
        }
        if let Some(name) = &plan.domainname {
            ctx(
                InitStep::Domainname,
                format!("setdomainname({name:?})"),
                sys::set_domainname(name),
            )?;
        }
        if !plan.sysctl.is_empty() {
            let proc = step(InitStep::Sysctl, ProcFs::host())?;
            for (key, value) in &plan.sysctl {
                step(InitStep::Sysctl, proc.write(key, value))?;
            }
        }
        // runc creates a missing working directory.
        if !plan.cwd.exists() {
            let _ = std::fs::create_dir_all(&plan.cwd);
        }
        let rootfs = plan
            .rootfs
            .as_ref()
            .expect("init plans carry a rootfs plan");
        step(InitStep::FinalizeRootfs, crate::rootfs::finalize(rootfs))?;
    }

    for r in &plan.rlimits {
        let res = nix::sys::resource::setrlimit(
            // The resource numbers come from libc constants in the plan.
            rlimit_resource(r.resource),
            r.soft,
            r.hard,
        );
        res.map_err(|e| {
            let hint = if e == nix::errno::Errno::EPERM {
                " (raising a hard limit above the runtime's own needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            InitError {
                step: InitStep::Rlimit,
                message: format!(
                    "setting process.rlimits {} to soft={} hard={}: {}{hint}",
                    r.name,
                    r.soft,
                    r.hard,
                    e.desc()
                ),
                errno: Some(e as i32),
            }
        })?;
    }

    let exe = find_executable(&plan.args[0], &plan.env)?;
    let argv: Vec<CString> = plan.args.iter().map(|a| cstring(a)).collect::<Step<_>>()?;
    let envp: Vec<CString> = plan.env.iter().map(|a| cstring(a)).collect::<Step<_>>()?;

    // Everything above the preserved descriptors is closed by execve.
    step(InitStep::CloseFds, sys::cloexec_from(3 + plan.preserve_fds))?;

    // The notify fd goes to the parent (and on to the listener) the moment it exists: with
    // noNewPrivileges false the filter is loaded before the remaining privilege steps, whose
    // syscalls a notify rule could otherwise block with nobody listening.
    let mut hand_off = |fd: OwnedFd| -> std::io::Result<()> {
        let io_err = |e: super::channel::ChannelError| std::io::Error::other(e.to_string());
        chan.send_with_fd(&Msg::SeccompNotifyFd, Some(fd.as_fd()))
            .map_err(io_err)?;
        match chan
            .expect("SeccompNotifyFdDelivered", |m| {
                matches!(m, Msg::SeccompNotifyFdDelivered)
            })
            .map_err(io_err)?
        {
            Ok(_) => Ok(()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    };
    step(
        InitStep::Security,
        crate::security::finalize_with(&plan.security, Some(&mut hand_off)),
    )?;
    chan.send(&Msg::Ready)
        .map_err(|e| InitError::new(InitStep::Sync, &e))?;

    if let Some(fifo) = io.exec_fifo {
        // Blocks until `start` writes a byte into the fifo.
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(&fifo, &mut byte) {
                Ok(1) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => report_late::<()>(Err(InitError::msg(
                    InitStep::ExecFifo,
                    "the exec fifo closed before start",
                ))),
                Err(e) => report_late::<()>(ctx(
                    InitStep::ExecFifo,
                    "reading the exec fifo".into(),
                    Err(e),
                )),
            }
        }
        // Kept open (it is close-on-exec) until execve: `start` waits for the fifo's last
        // writer to go away before it runs the poststart hooks.
        std::mem::forget(fifo);
        report_late(step(
            InitStep::StartContainerHooks,
            hooks::run(
                HookKind::StartContainer,
                &plan.start_container_hooks,
                &state_json,
            ),
        ));
    }

    report_late(ctx(
        InitStep::Cwd,
        format!("chdir to process.cwd {}", plan.cwd.display()),
        nix::unistd::chdir(&plan.cwd),
    ));
    // A cwd reached through a leaked descriptor would lie outside our root; the kernel then
    // reports it as "(unreachable)" (CVE-2024-21626).
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.starts_with("/") => {}
        _ => report_late::<()>(Err(InitError::msg(
            InitStep::Cwd,
            format!(
                "process.cwd {} is outside the container's root filesystem",
                plan.cwd.display()
            ),
        ))),
    }
    let err = nix::unistd::execve(&exe, &argv, &envp).unwrap_err();
    report_late::<()>(Err(InitError {
        step: InitStep::Exec,
        message: format!("executing {}: {}", plan.args[0], err.desc()),
        errno: Some(err as i32),
    }));
    unreachable!("report_late exits on error")
}

/// After `Ready` nobody listens on the sync socket: report to the container's stderr and exit
/// with the shell's codes (126: cannot execute, 127: not found).
fn report_late<T>(r: Step<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "berth-runc: {e}");
            let code = match e.errno {
                Some(libc::ENOENT) => 127,
                _ => 126,
            };
            sys::exit_now(code)
        }
    }
}

fn rlimit_resource(r: i32) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource::*;
    let all = [
        RLIMIT_CPU,
        RLIMIT_FSIZE,
        RLIMIT_DATA,
        RLIMIT_STACK,
        RLIMIT_CORE,
        RLIMIT_RSS,
        RLIMIT_NPROC,
        RLIMIT_NOFILE,
        RLIMIT_MEMLOCK,
        RLIMIT_AS,
        RLIMIT_LOCKS,
        RLIMIT_SIGPENDING,
        RLIMIT_MSGQUEUE,
        RLIMIT_NICE,
        RLIMIT_RTPRIO,
        RLIMIT_RTTIME,
    ];
    all.into_iter()
        .find(|res| *res as i32 == r)
        .expect("rlimit resources come from the plan's own table")
}

fn cstring(s: &str) -> Step<CString> {
    CString::new(s).map_err(|_| {
        InitError::msg(
            InitStep::FindExecutable,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// Resolves `arg0` like `execvp` would, against the PATH of the container's environment.
fn find_executable(arg0: &str, env: &[String]) -> Step<CString> {
    let not_found = |what: String| InitError {
        step: InitStep::FindExecutable,
        message: what,
        errno: Some(libc::ENOENT),
    };
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return match std::fs::metadata(p) {
            Ok(m) if m.is_file() => cstring(arg0),
            Ok(_) => Err(InitError {
                step: InitStep::FindExecutable,
                message: format!("{arg0} is not a regular file"),
                errno: Some(libc::EACCES),
            }),
            Err(_) => Err(not_found(format!("{arg0}: no such file or directory"))),
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = PathBuf::from(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return cstring(&candidate.to_string_lossy());
            }
        }
    }
    Err(not_found(format!(
        "executable file {arg0:?} not found in $PATH ({path})"
    )))
}

fn setup_terminal(plan: &SpawnPlan, console_socket: Option<OwnedFd>) -> Step<()> {
    let err = |what: &str, e: nix::errno::Errno| InitError {
        step: InitStep::Console,
        message: format!("{what}: {}", e.desc()),
        errno: Some(e as i32),
    };
    let socket = console_socket.ok_or_else(|| {
        InitError::msg(
            InitStep::Console,
            "process.terminal is true but no console socket was given (--console-socket)",
        )
    })?;
    // The container's own /dev/ptmx (its devpts instance).
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| err("opening /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| err("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| err("unlockpt", e))?;
    let slave = sys::open_pty_peer(master.as_fd()).map_err(|e| err("opening the pty peer", e))?;
    if let Some((rows, cols)) = plan.console_size {
        sys::set_window_size(slave.as_fd(), rows, cols)
            .map_err(|e| err("setting the console size", e))?;
    }
    crate::sys::socket::send(socket.as_fd(), b"/dev/ptmx", Some(master.as_fd()))
        .map_err(|e| err("sending the pty master to the console socket", e))?;
    drop(master);
    drop(socket);
    if plan.role == Role::Init {
        step(
            InitStep::Console,
            crate::rootfs::setup_console(slave.as_fd()),
        )?;
    }
    nix::unistd::dup2_stdin(&slave).map_err(|e| err("dup2 stdin", e))?;
    nix::unistd::dup2_stdout(&slave).map_err(|e| err("dup2 stdout", e))?;
    nix::unistd::dup2_stderr(&slave).map_err(|e| err("dup2 stderr", e))?;
    sys::set_controlling_tty(std::io::stdin().as_fd())
        .map_err(|e| err("making the pty the controlling terminal", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(rootless: bool, edit: impl FnOnce(&mut oci_spec::runtime::Spec)) -> SpawnPlan {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::create_dir(bundle.path().join("rootfs")).unwrap();
        let mut spec = crate::ops::spec::default_spec_without_seccomp(rootless);
        edit(&mut spec);
        super::super::plan::plan_init(&spec, bundle.path(), &Default::default()).unwrap()
    }

    fn with_namespace(spec: &mut oci_spec::runtime::Spec, ns: oci_spec::runtime::LinuxNamespace) {
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut all = linux.namespaces().clone().unwrap_or_default();
        all.retain(|n| n.typ() != ns.typ());
        all.push(ns);
        linux.set_namespaces(Some(all));
    }

    #[test]
    fn only_an_init_with_every_namespace_new_is_cloned_directly() {
        use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType as T};
        let plain = plan_of(false, |_| {});
        assert!(can_clone_directly(&plain));
        let flags = direct_clone_flags(&plain);
        for f in [libc::CLONE_NEWNS, libc::CLONE_NEWPID, libc::CLONE_NEWNET] {
            assert_ne!(flags & f as u64, 0, "{f:#x} missing from {flags:#x}");
        }
        // The cgroup namespace is made by the init once it is inside its cgroup.
        assert_eq!(flags & libc::CLONE_NEWCGROUP as u64, 0);

        let joined = plan_of(false, |s| {
            let ns = LinuxNamespaceBuilder::default()
                .typ(T::Network)
                .path("/proc/1/ns/net")
                .build()
                .unwrap();
            with_namespace(s, ns);
        });
        assert!(!can_clone_directly(&joined));
        // The rootless default spec: a new user namespace, whose maps the parent writes.
        assert!(!can_clone_directly(&plan_of(true, |_| {})));
    }

    #[test]
    fn finds_executables_in_the_spec_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(
            find_executable("sh", &env).unwrap().to_str().unwrap(),
            "/bin/sh"
        );
        let e = find_executable("no-such-program-here", &env).unwrap_err();
        assert_eq!(e.errno, Some(libc::ENOENT));
        assert!(e.message.contains("not found in $PATH"), "{}", e.message);
    }

    #[test]
    fn absolute_executables_are_checked() {
        assert!(find_executable("/bin/sh", &[]).is_ok());
        assert!(find_executable("/no/such/file", &[]).is_err());
        assert_eq!(
            find_executable("/", &[]).unwrap_err().errno,
            Some(libc::EACCES)
        );
    }
}
