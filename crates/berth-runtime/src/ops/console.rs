//! A pty for a foreground container: when `terminal: true` and no console socket is given,
//! the runtime receives the pty master itself and copies between it and its own stdio (as
//! `runc run` does from a terminal).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::wait::exit_code;

/// Why the console could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("creating the console socketpair")]
    Socketpair(#[source] Errno),
    #[error("receiving the pty master from the container")]
    Receive(#[source] Errno),
    #[error("the container sent no pty master")]
    NoMaster,
    #[error("copying between the terminal and the container")]
    Io(#[source] Errno),
}

/// Our end of a console socketpair, and the end to hand to the container.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd), ConsoleError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ConsoleError::Socketpair)
}

/// Receives the pty master the container's process sent over `ours`.
pub fn receive_master(ours: &OwnedFd) -> Result<OwnedFd, ConsoleError> {
    let mut buf = [0u8; 256];
    let (_, fd) =
        crate::sys::socket::recv(ours.as_fd(), &mut buf).map_err(ConsoleError::Receive)?;
    fd.ok_or(ConsoleError::NoMaster)
}

/// Puts our stdin in raw mode while alive, when it is a terminal.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Switches stdin to raw mode (nothing when it is not a terminal); restored on drop.
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        Self { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}

fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut buf = [0u8; 16 * 1024];
    let n = match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(Errno::EIO) => return Ok(false),
        Ok(n) => n,
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut off = 0;
    while off < n {
        match nix::unistd::write(to, &buf[off..n]) {
            Ok(w) => off += w,
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The window size (rows, columns) of the terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    crate::sys::process::window_size(fd)
}

/// Sets the window size of the terminal (or pty master) `fd`.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    crate::sys::process::set_window_size(fd, rows, cols)
}

fn resize(master: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = crate::sys::process::window_size(std::io::stdin().as_fd()) {
        let _ = crate::sys::process::set_window_size(master, rows, cols);
    }
}

/// Serves the pty of `pid` on our stdio until `pid` exits; forwards signals in `set` (SIGWINCH
/// resizes the pty instead). Returns the shell-style exit code.
pub fn serve(pid: i32, master: OwnedFd, set: &SigSet) -> Result<i32, ConsoleError> {
    let target = Pid::from_raw(pid);
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).map_err(ConsoleError::Io)?;
    let _raw = RawMode::enter();
    resize(master.as_fd());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut exited: Option<i32> = None;
    loop {
        if exited.is_some() && !master_open {
            break;
        }
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the process exited, drain what is left on the pty without blocking.
        let timeout = if exited.is_some() {
            PollTimeout::from(50u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ConsoleError::Io(e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        drop(fds);
        if master_ready && master_open {
            master_open = copy(master.as_fd(), stdout.as_fd()).map_err(ConsoleError::Io)?;
        }
        if stdin_ready && stdin_open {
            stdin_open = copy(stdin.as_fd(), master.as_fd()).map_err(ConsoleError::Io)?;
        }
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH => resize(master.as_fd()),
                    signo => {
                        if let Ok(sig) = Signal::try_from(signo) {
                            let _ = kill(target, sig);
                        }
                    }
                }
            }
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if status.pid() == Some(target) {
                        exited = exit_code(status).or(exited);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(ConsoleError::Io(e)),
            }
        }
    }
    let _ = master.as_raw_fd();
    match exited {
        Some(code) => Ok(code),
        None => {
            // The pty closed first; wait for the process itself.
            super::wait::wait_forwarding(pid, set).map_err(ConsoleError::Io)
        }
    }
}
