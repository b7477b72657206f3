//! The per-container monitor (conmon's role): a small process, started by
//! [`Engine::start_detached`] with its stdout as a report pipe, that
//!
//! 1. leaves the caller's session (`setsid(2)`) so a closed terminal does not kill it;
//! 2. creates and starts the container through the runtime library while single-threaded (the
//!    runtime clones; see ARCHITECTURE.md, "only clone from a single-threaded process"), with
//!    the container's stdout and stderr on pipes it holds;
//! 3. reports `started` (or the error) on the report pipe and closes it, releasing the caller;
//! 4. copies the pipes into the `json-file` log until both close and the init has exited
//!    (it is the subreaper, so it reaps the init), then records the exit code and finish time,
//!    releases runtime state, cgroup and rootfs mount (removing the container with `--rm`),
//!    and exits.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use berth_runtime::ops;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::exec::chain;
use crate::logs::{LineLogger, Rotation};
use crate::Engine;

/// What the monitor writes (one JSON line) on its report pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The container runs.
    Started,
    /// It could not be started; nothing of the run is left.
    Failed {
        message: String,
        /// 126/127 when the container's command could not run.
        command_exit_code: Option<u8>,
    },
}

fn send(fd: OwnedFd, r: &Report) {
    let mut f = std::fs::File::from(fd);
    let mut line = serde_json::to_vec(r).expect("a report serialises");
    line.push(b'\n');
    let _ = f.write_all(&line);
}

fn report(fd: OwnedFd, msg: &str) {
    send(
        fd,
        &Report::Failed {
            message: msg.to_owned(),
            command_exit_code: None,
        },
    );
}

fn not_single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count() != 1)
        .unwrap_or(false)
}

/// The monitor's main; returns its exit status. Call it from a fresh process whose stdout is
/// the report pipe of [`Engine::start_detached`].
pub fn run(engine: &Engine, id: &str) -> i32 {
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    // The report pipe moves off fd 1 (which becomes the container's stdout) and is closed on
    // exec, so the container never inherits it.
    let Ok(rep) = nix::unistd::dup(std::io::stdout()) else {
        return 125;
    };
    let _ = fcntl(&rep, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    if not_single_threaded() {
        report(rep, "the monitor is multi-threaded and cannot clone safely");
        return 125;
    }
    let pipes = (
        nix::unistd::pipe2(OFlag::O_CLOEXEC),
        nix::unistd::pipe2(OFlag::O_CLOEXEC),
    );
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            report(rep, &format!("creating the stdio pipes: {e}"));
            return 125;
        }
    };
    // Our read ends never block: after the init exits they are drained, not read to end of
    // file (we keep the write ends for a restart). The container's write ends stay blocking.
    for fd in [&out_r, &err_r] {
        let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
    let (log_path, rotation) = match engine.records.load(id) {
        Ok(r) if r.log_driver == "none" => (
            std::path::PathBuf::from("/dev/null"),
            Rotation {
                max_size: 0,
                max_file: 1,
            },
        ),
        Ok(r) => (
            engine.log_path(id),
            Rotation {
                max_size: r.log_max_size,
                max_file: r.log_max_file,
            },
        ),
        Err(e) => {
            report(rep, &chain(&e));
            return 125;
        }
    };
    let mut log = match LineLogger::open(&log_path, rotation) {
        Ok(l) => l,
        Err(e) => {
            report(rep, &format!("opening the log {}: {e}", log_path.display()));
            return 125;
        }
    };
    if let Err(e) = ops::wait::become_subreaper() {
        report(rep, &format!("becoming the subreaper: {e}"));
        return 125;
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    let mut rep = Some(rep);
    let mut failures: u32 = 0;
    loop {
        // The container gets the pipes as stdout and stderr; we keep them only on fds that
        // are closed on exec.
        if let Err(e) = nix::unistd::dup2_stdout(&out_w).and(nix::unistd::dup2_stderr(&err_w)) {
            if let Some(rep) = rep.take() {
                report(rep, &format!("redirecting the container's stdio: {e}"));
            }
            return 125;
        }
        let launched = engine.launch_for_monitor(id);
        if let Ok(null) = &null {
            let _ = nix::unistd::dup2_stdout(null);
            let _ = nix::unistd::dup2_stderr(null);
        }
        let pid = match launched {
            Ok((_, pid)) => pid,
            Err(e) => {
                if let Some(rep) = rep.take() {
                    send(
                        rep,
                        &Report::Failed {
                            message: chain(&e),
                            command_exit_code: e.command_exit_code(),
                        },
                    );
                }
                return 125;
            }
        };
        let started = std::time::Instant::now();
        // Blocked only after the spawn: the container's init inherits the mask (see
        // `Engine::start_foreground`). An exit before this is reaped by the first pass in
        // `supervise`, which runs before any wait for a signal.
        let set = match ops::wait::block_signals() {
            Ok(s) => s,
            Err(e) => {
                let _ = engine.kill(id, "KILL");
                if let Some(rep) = rep.take() {
                    report(rep, &format!("blocking the monitor's signals: {e}"));
                }
                return 125;
            }
        };
        if let Some(rep) = rep.take() {
            send(rep, &Report::Started);
        }
        let code = supervise(pid, [&out_r, &err_r], &mut log, &set);
        // The next init must not inherit a blocked mask either.
        ops::wait::unblock_signals(&set);
        let _ = log.flush(0);
        let _ = log.flush(1);
        let restart = engine
            .records
            .load(id)
            .map(|r| {
                should_restart(
                    &r.restart_policy,
                    code,
                    r.restart_count,
                    r.state.manually_stopped,
                )
            })
            .unwrap_or(false);
        engine.finish(id, code, None);
        if !restart {
            return 0;
        }
        // `ps` shows "Restarting" during the back-off, as Docker's.
        let _ = engine.set_restarting(id, true);
        // Docker's back-off: 100 ms doubling while the container keeps failing fast, reset
        // once it ran for 10 seconds.
        if started.elapsed() >= std::time::Duration::from_secs(10) {
            failures = 0;
        }
        let delay = std::time::Duration::from_millis(100 << failures.min(9));
        failures += 1;
        std::thread::sleep(delay);
        // A stop or rm during the back-off cancels the restart.
        match engine.records.load(id) {
            Ok(r) if !r.state.manually_stopped && r.state.status == crate::Status::Exited => {
                if engine.note_restart(id).is_err() {
                    let _ = engine.set_restarting(id, false);
                    return 0;
                }
            }
            _ => {
                let _ = engine.set_restarting(id, false);
                return 0;
            }
        }
    }
}

/// Docker's restart policies: `no`, `on-failure[:N]`, `always`, `unless-stopped`. A container
/// stopped by the user (`stop`, `kill`, `rm`) is never restarted.
pub fn should_restart(policy: &str, code: i32, count: u32, manually_stopped: bool) -> bool {
    if manually_stopped {
        return false;
    }
    match policy.split_once(':') {
        Some(("on-failure", max)) => {
            code != 0 && max.parse::<u32>().map_or(true, |m| m == 0 || count < m)
        }
        None if policy == "on-failure" => code != 0,
        None => matches!(policy, "always" | "unless-stopped"),
        _ => false,
    }
}

/// Copies the container's output into the log until it is done; returns its exit code.
fn supervise(
    pid: i32,
    streams: [&OwnedFd; 2],
    log: &mut LineLogger,
    set: &nix::sys::signal::SigSet,
) -> i32 {
    let target = Pid::from_raw(pid);
    let Ok(sfd) = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC) else {
        return 255;
    };
    let mut buf = vec![0u8; 64 * 1024];
    // Reads what the pipe holds now; false at end of file or on an error.
    let mut drain = |i: usize, log: &mut LineLogger| loop {
        match nix::unistd::read(streams[i], &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                let _ = log.feed(i, &buf[..n]);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    };
    let mut open = [true, true];
    loop {
        // Reap whatever exited (we are the subreaper): the init, the runtime's helpers.
        let mut exited = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(st) => {
                    if st.pid() == Some(target) {
                        exited = ops::wait::exit_code(st).or(exited);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if let Some(code) = exited {
            // The init is gone, and with it every process of its PID namespace: what they
            // wrote is in the pipes.
            for (i, o) in open.iter().enumerate() {
                if *o {
                    drain(i, log);
                }
            }
            return code;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, fd) in streams.iter().enumerate() {
            if open[i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 255,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            // SIGCHLD is handled by the reaping above; other signals are not for us.
            let _ = sfd.read_signal();
        }
        for (k, &i) in which.iter().enumerate() {
            if ready[k + 1] && !drain(i, log) {
                open[i] = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_restart_policies() {
        assert!(!should_restart("no", 1, 0, false));
        assert!(!should_restart("", 1, 0, false));
        assert!(should_restart("always", 0, 5, false));
        assert!(!should_restart("always", 0, 5, true));
        assert!(should_restart("unless-stopped", 0, 0, false));
        assert!(should_restart("on-failure", 1, 100, false));
        assert!(!should_restart("on-failure", 0, 0, false));
        assert!(should_restart("on-failure:3", 1, 2, false));
        assert!(!should_restart("on-failure:3", 1, 3, false));
    }
}
