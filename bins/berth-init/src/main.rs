//! `berth-init`: the init that `berth run --init` bind-mounts read-only into a container as
//! `/sbin/docker-init` and runs as its PID 1, in the role of Docker's tini:
//!
//! 1. blocks every signal it will forward, before the child exists, so none is lost;
//! 2. starts `PROGRAM ARGS...` in a process group of its own which, on a terminal, becomes the
//!    terminal's foreground group (so ctrl-c reaches the program, not us);
//! 3. forwards each signal it receives to the program (a PID 1 without handlers would drop
//!    SIGTERM: the kernel protects namespace inits from signals they do not handle);
//! 4. reaps every process that exits below it, orphans included: they are reparented to PID 1,
//!    and nothing else would collect their zombies;
//! 5. exits with the program's code (128+N when signal N killed it) once the program is gone.
//!
//! It must run in any image, including ones without a libc: build it statically
//! (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p berth-init
//! --target x86_64-unknown-linux-gnu`). Berth refuses a dynamically linked one.

mod sys;

use std::ffi::OsString;
use std::process::exit;

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals we take over: all but the ones that cannot be caught and the synchronous
/// faults, which must stay deliverable to ourselves.
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
    ] {
        set.remove(s);
    }
    set
}

/// The shell's convention: the exit code, or 128+N for a signal.
fn code_of(st: WaitStatus) -> Option<i32> {
    match st {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("berth-init: usage: berth-init [--] PROGRAM [ARGS...]");
        exit(2);
    }
    let set = forwarded();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("berth-init: blocking signals: {e}");
        exit(125);
    }
    // The child starts with an empty mask (std resets it before exec).
    let child = match sys::spawn_in_own_group(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-init: cannot run {}: {e}", args[0].to_string_lossy());
            exit(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let target = Pid::from_raw(child.id() as i32);
    // Dropping `Child` neither waits nor kills: we reap everything below ourselves.
    drop(child);
    loop {
        // Reap every zombie; a SIGCHLD may stand for several exits.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(st) => {
                    if st.pid() == Some(target) {
                        if let Some(code) = code_of(st) {
                            // Whatever still runs dies with us, PID 1 of the namespace.
                            exit(code);
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(target, sig);
            }
        }
    }
}
