//! Waiting for a foreground process (`run`, `exec` without `--detach`) while forwarding the
//! signals we receive to it, as runc does.

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Makes orphaned descendants ours, so the container's init (whose parent, the intermediate
/// process, exits) can be waited for. Call before spawning.
pub fn become_subreaper() -> Result<(), Errno> {
    crate::sys::process::set_child_subreaper()
}

/// Blocks the signals that will be forwarded, so none is lost between spawn and wait.
/// Returns the set to hand to [`wait_forwarding`].
pub fn block_signals() -> Result<SigSet, Errno> {
    let mut set = SigSet::all();
    set.remove(Signal::SIGKILL);
    set.remove(Signal::SIGSTOP);
    // Faults must stay deliverable to ourselves.
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
    ] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// Restores the signal mask after [`block_signals`].
pub fn unblock_signals(set: &SigSet) {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(set), None);
}

/// Exit code of a wait status the way a shell reports it.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `pid` to exit, forwarding every signal in `set` (except SIGCHLD) to it and
/// reaping any other orphan that lands on us. Returns the shell-style exit code.
pub fn wait_forwarding(pid: i32, set: &SigSet) -> Result<i32, Errno> {
    let target = Pid::from_raw(pid);
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)?;
    loop {
        // Reap everything that has exited; stop when the target is among them.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if status.pid() == Some(target) {
                        if let Some(code) = exit_code(status) {
                            return Ok(code);
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    continue;
                }
                if let Ok(sig) = Signal::try_from(signo) {
                    let _ = kill(target, sig);
                }
            }
            Ok(None) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}
