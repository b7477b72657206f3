//! Raw process-level calls the spawn path needs: fork, fd hygiene, prctl, controlling tty.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// What `fork` returned on this side.
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the calling process.
///
/// Callers must be single-threaded (checked by [`crate::spawn::ensure_single_threaded`]); the
/// child then may run ordinary Rust code, allocation included, because no other thread can be
/// holding a lock at the time of the fork.
pub(crate) fn fork() -> Result<Forked, Errno> {
    // SAFETY: the runtime only forks after `ensure_single_threaded` confirmed that this process
    // has exactly one thread, so no lock (malloc, stdio) can be held by a thread that does not
    // exist in the child.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Closes every file descriptor `>= from` except those in `keep`.
///
/// Used in a freshly forked child so that no descriptor of the runtime (state directory, lock,
/// host directories) survives into the container (CVE-2024-21626).
pub(crate) fn close_fds_from(from: RawFd, keep: &[RawFd]) -> Result<(), Errno> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= from).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut start = from;
    for fd in keep {
        if fd > start {
            close_range(start as u32, (fd - 1) as u32, 0)?;
        }
        start = fd + 1;
    }
    close_range(start as u32, u32::MAX, 0)
}

/// Marks every descriptor `>= from` close-on-exec (the preserved ones stay below `from`).
pub(crate) fn cloexec_from(from: RawFd) -> Result<(), Errno> {
    close_range(from as u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC)
}

fn close_range(first: u32, last: u32, flags: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: close_range(2) only closes or flags descriptors of this process; callers
    // choose ranges that contain no descriptor any Rust object still owns (the kept ones are
    // excluded), so no `OwnedFd` is left pointing at a closed number.
    let res = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    Errno::result(res).map(drop)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: hides `/proc/PID/exe`, `/proc/PID/fd` and ptrace of this
/// process from anything without CAP_SYS_PTRACE over it (CVE-2016-9962, CVE-2019-5736).
pub(crate) fn set_non_dumpable() -> Result<(), Errno> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub(crate) fn set_parent_death_signal(sig: i32) -> Result<(), Errno> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// Gives the process a clean signal state for `execve`: every signal back to its default
/// action and nothing blocked. The runtime's caller may block signals (`berth-runc run` blocks
/// them to forward them), and Rust's runtime ignores SIGPIPE; both survive `fork` and `execve`,
/// and a container must not inherit either (runc and crun start it with an empty mask).
pub(crate) fn reset_signals() -> Result<(), Errno> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; the libc's own
        // reserved real-time signals answer EINVAL, which is fine to skip.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    )
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphaned descendants (the container's init, once the
/// intermediate process exits) are reparented to us so that `run` can wait for them.
pub(crate) fn set_child_subreaper() -> Result<(), Errno> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory of ours.
    let res = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    Errno::result(res).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of this session.
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument; the descriptor is borrowed and open.
    let res = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(res).map(drop)
}

/// Sets the window size of the terminal `fd`.
pub(crate) fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` through the pointer, which points at a live local.
    let res = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(res).map(drop)
}

/// Reads the window size of the terminal `fd`.
pub(crate) fn window_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `winsize` through the pointer, which points at a live local.
    let res = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(res).map(|_| (ws.ws_row, ws.ws_col))
}

/// `sethostname`/`setdomainname` for the UTS namespace.
pub(crate) fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe the bytes of `name`, alive for the call.
    let res = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(res).map(drop)
}

/// Number of threads of the calling process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Ends this (forked) process at once, without running atexit handlers or flushing stdio
/// buffers inherited from the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) never returns and touches no memory of ours; skipping destructors is
    // the point in a forked child.
    unsafe { libc::_exit(code) }
}

/// Opens the peer (slave) of the pty master `master` without resolving any path
/// (`TIOCGPTPEER`, Linux 4.13), so a symlinked `/dev/pts/N` cannot redirect it (CVE-2025-52565).
pub(crate) fn open_pty_peer(master: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new descriptor; the
    // master descriptor is borrowed and open for the duration of the call.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: gives the container a session keyring of its
/// own instead of sharing the runtime's (runc does the same unless `--no-new-keyring`).
pub(crate) fn join_session_keyring(name: &std::ffi::CStr) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: the name pointer refers to a NUL-terminated string alive for the call; the
    // kernel only reads it.
    let res =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(res).map(drop)
}

/// `clone3(CLONE_INTO_CGROUP)`: forks straight into the cgroup v2 directory `cgroup`, so the
/// child never runs a single instruction outside its cgroup (Linux 5.7). Behaves like
/// [`fork`] otherwise: no new stack, SIGCHLD on exit.
///
/// Same precondition as [`fork`]: the caller is single-threaded.
pub(crate) fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> Result<Forked, Errno> {
    clone_fork(0, Some(cgroup))
}

/// `clone3` used like [`fork`] (no new stack, SIGCHLD on exit) with extra `CLONE_*` flags
/// (new namespaces) and, when `cgroup` is given, `CLONE_INTO_CGROUP` into that v2 directory.
///
/// Same precondition as [`fork`]: the caller is single-threaded.
pub(crate) fn clone_fork(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked, Errno> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |c| c.as_raw_fd() as u64),
    };
    // SAFETY: `args` is a live, fully initialised clone_args of the size passed. With no stack
    // given, the child continues on a copy of our stack exactly as after fork(2); the caller
    // guarantees this process is single-threaded, so no lock is held by a thread that does not
    // exist in the child.
    let res = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(res)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}
