//! The one `unsafe` call of berth-init: a hook between fork and exec.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

/// Starts `args` in a new process group and, when stdin is a terminal, makes that group the
/// terminal's foreground group (tini's `isolate_child`).
pub fn spawn_in_own_group(args: &[OsString]) -> std::io::Result<Child> {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).process_group(0);
    #[allow(unsafe_code)]
    // SAFETY: fd 0 is open for our whole life (the runtime gives every container process
    // stdin), so borrowing it for 'static is sound. The hook runs in the forked child before
    // exec, where only async-signal-safe calls are allowed: it makes only raw system calls
    // (isatty's ioctl, sigprocmask, getpid, tcsetpgrp) on stack values, with no allocation
    // and no lock (`std::io::stdin()` would initialise a buffer, so it is not used). The
    // `?` converts an Errno into an io::Error without allocating (an OS error code).
    unsafe {
        let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
        cmd.pre_exec(move || {
            if nix::unistd::isatty(stdin).unwrap_or(false) {
                // Taking the terminal from the background raises SIGTTOU unless it is blocked.
                let mut ttou = SigSet::empty();
                ttou.add(Signal::SIGTTOU);
                let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
                let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
            }
            // The program starts with no signal blocked: ours are blocked for forwarding, and
            // std does not reset the mask on this path.
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            Ok(())
        });
    }
    cmd.spawn()
}
