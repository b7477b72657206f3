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
use std::os::unix::net::UnixListener;

use berth_runtime::ops;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::attach;
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
    let rec = match engine.records.load(id) {
        // Another monitor runs it: its attach socket must stay.
        Ok(r) if r.state.status == crate::Status::Running => {
            report(rep, &format!("container {id} is already running"));
            return 125;
        }
        Ok(r) => r,
        Err(e) => {
            report(rep, &chain(&e));
            return 125;
        }
    };
    let (log_path, rotation) = if rec.log_driver == "none" {
        (
            std::path::PathBuf::from("/dev/null"),
            Rotation {
                max_size: 0,
                max_file: 1,
            },
        )
    } else {
        (
            engine.log_path(id),
            Rotation {
                max_size: rec.log_max_size,
                max_file: rec.log_max_file,
            },
        )
    };
    let mut log = match LineLogger::open(&log_path, rotation) {
        Ok(l) => l,
        Err(e) => {
            report(rep, &format!("opening the log {}: {e}", log_path.display()));
            return 125;
        }
    };
    // `-i` without a tty: the container reads a pipe whose write end we keep open (Docker
    // keeps a detached container's stdin open), fed by attach clients. With a tty, the pty
    // master is its stdin.
    let stdin_pipe = if rec.open_stdin && !rec.tty {
        match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok((r, w)) => {
                let _ = fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
                Some((r, w))
            }
            Err(e) => {
                report(rep, &format!("creating the stdin pipe: {e}"));
                return 125;
            }
        }
    } else {
        None
    };
    // Attach clients connect from the moment `run -d` returns. A caller that attaches from
    // the first byte (`run -t`) bound the socket itself and gave it to us as stdin.
    let record_dir = engine.records.dir(id);
    let inherited = inherited_listener();
    let listener = match inherited.map_or_else(|| attach::listen_in(&record_dir), Ok) {
        Ok(l) => l,
        Err(e) => {
            report(
                rep,
                &format!(
                    "listening on {}: {e}",
                    record_dir.join(attach::SOCKET_NAME).display()
                ),
            );
            return 125;
        }
    };
    let code = supervise_runs(
        engine,
        id,
        rec.tty,
        [&out_r, &err_r],
        [&out_w, &err_w],
        stdin_pipe.as_ref(),
        &listener,
        &mut log,
        rep,
    );
    // The record directory is gone with `--rm`; otherwise no one may connect any more.
    let _ = std::fs::remove_file(record_dir.join(attach::SOCKET_NAME));
    code
}

/// The listening socket our caller passed as stdin, if it did; stdin becomes /dev/null (the
/// container must not inherit the socket).
fn inherited_listener() -> Option<UnixListener> {
    use nix::sys::stat::{fstat, SFlag};
    let st = fstat(std::io::stdin()).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return None;
    }
    let fd = nix::unistd::dup(std::io::stdin()).ok()?;
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    let l = UnixListener::from(fd);
    l.set_nonblocking(true).ok()?;
    Some(l)
}

/// Runs the container (again, under its restart policy) until it is done; returns the
/// monitor's exit status.
#[allow(clippy::too_many_arguments)]
fn supervise_runs(
    engine: &Engine,
    id: &str,
    tty: bool,
    outputs: [&OwnedFd; 2],
    out_w: [&OwnedFd; 2],
    stdin_pipe: Option<&(OwnedFd, OwnedFd)>,
    listener: &UnixListener,
    log: &mut LineLogger,
    rep: OwnedFd,
) -> i32 {
    if let Err(e) = ops::wait::become_subreaper() {
        report(rep, &format!("becoming the subreaper: {e}"));
        return 125;
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let mut rep = Some(rep);
    let mut failures: u32 = 0;
    loop {
        // The container gets the pipes as stdout and stderr (and stdin with -i); we keep them
        // only on fds that are closed on exec.
        let mut redirected =
            nix::unistd::dup2_stdout(out_w[0]).and(nix::unistd::dup2_stderr(out_w[1]));
        if let Some((r, _)) = stdin_pipe {
            redirected = redirected.and(nix::unistd::dup2_stdin(r));
        }
        if let Err(e) = redirected {
            if let Some(rep) = rep.take() {
                report(rep, &format!("redirecting the container's stdio: {e}"));
            }
            return 125;
        }
        let console = if tty {
            match ops::console::socket_pair() {
                Ok(pair) => Some(pair),
                Err(e) => {
                    if let Some(rep) = rep.take() {
                        report(rep, &chain(&e));
                    }
                    return 125;
                }
            }
        } else {
            None
        };
        let (ours, theirs) = match console {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        // Blocked before the spawn (the runtime's init resets its own mask before execve): a
        // signal sent to the monitor once the container runs is forwarded, never the death of
        // the monitor with the container left unsupervised. An exit meanwhile is reaped by
        // the first pass in `supervise`.
        let set = match ops::wait::block_signals() {
            Ok(s) => s,
            Err(e) => {
                if let Some(rep) = rep.take() {
                    report(rep, &format!("blocking the monitor's signals: {e}"));
                }
                return 125;
            }
        };
        let launched = engine.launch_for_monitor(id, theirs);
        if let Ok(null) = &null {
            let _ = nix::unistd::dup2_stdin(null);
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
        // The pty master: the container's terminal, both its output and its input.
        let master = match ours.as_ref().map(ops::console::receive_master) {
            None => None,
            Some(Ok(m)) => {
                let _ = fcntl(&m, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
                Some(m)
            }
            Some(Err(e)) => {
                let _ = ops::kill::kill(&engine.runtime, id, Signal::SIGKILL, true);
                let code = supervise(pid, &mut Hub::new(log, [None, None], None, None), None);
                engine.finish(id, code, Some(chain(&e)));
                if let Some(rep) = rep.take() {
                    report(rep, &chain(&e));
                }
                return 125;
            }
        };
        drop(ours);
        let started = std::time::Instant::now();
        if let Some(rep) = rep.take() {
            send(rep, &Report::Started);
        }
        let (sources, input) = match &master {
            Some(m) => ([Some(m), None], Some(m)),
            None => (
                [Some(outputs[0]), Some(outputs[1])],
                stdin_pipe.map(|(_, w)| w),
            ),
        };
        let mut hub = Hub::new(log, sources, input, Some(listener));
        hub.tty = master.is_some();
        let code = supervise(pid, &mut hub, Some(&set));
        // The next init must not inherit a blocked mask either.
        ops::wait::unblock_signals(&set);
        let _ = hub.log.flush(0);
        let _ = hub.log.flush(1);
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
        // Clients learn the code once it is recorded, so what they run next sees the exit.
        hub.say_exit(code);
        drop(hub);
        drop(master);
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

/// An attach client: its socket (non-blocking), what it sent so far, what waits to be sent.
struct Attacher {
    sock: OwnedFd,
    decoder: attach::Decoder,
    out: Vec<u8>,
}

/// A client that lets this much output pile up unread is dropped, so a stuck terminal never
/// grows the monitor.
const MAX_PENDING: usize = 4 << 20;

/// Where the container's output goes (the log, the attach clients) and where its input comes
/// from (the clients).
struct Hub<'a> {
    log: &'a mut LineLogger,
    /// stdout and stderr; with a tty, the pty master alone as stdout.
    sources: [Option<&'a OwnedFd>; 2],
    /// The container's stdin: the pty master or the write end of its stdin pipe.
    input: Option<&'a OwnedFd>,
    listener: Option<&'a UnixListener>,
    clients: Vec<Attacher>,
    /// Client input not yet taken by the container.
    pending_input: Vec<u8>,
    tty: bool,
    buf: Vec<u8>,
}

impl<'a> Hub<'a> {
    fn new(
        log: &'a mut LineLogger,
        sources: [Option<&'a OwnedFd>; 2],
        input: Option<&'a OwnedFd>,
        listener: Option<&'a UnixListener>,
    ) -> Self {
        Self {
            log,
            sources,
            input,
            listener,
            clients: Vec::new(),
            pending_input: Vec::new(),
            tty: false,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// Reads what source `i` holds now into the log and the clients; false at end of file
    /// (or EIO: a pty whose slave side is closed) or on an error.
    fn drain(&mut self, i: usize) -> bool {
        let Some(fd) = self.sources[i] else {
            return false;
        };
        loop {
            match nix::unistd::read(fd, &mut self.buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let _ = self.log.feed(i, &self.buf[..n]);
                    let kind = if i == 0 {
                        attach::Kind::Stdout
                    } else {
                        attach::Kind::Stderr
                    };
                    for c in &mut self.clients {
                        attach::encode(&mut c.out, kind, &self.buf[..n]);
                    }
                    self.flush_clients();
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Writes what each client can take now; drops the ones that fail or fall too far behind.
    fn flush_clients(&mut self) {
        self.clients.retain_mut(|c| {
            while !c.out.is_empty() {
                match nix::unistd::write(&c.sock, &c.out) {
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return c.out.len() <= MAX_PENDING,
                    Err(_) => return false,
                }
            }
            true
        });
    }

    fn accept(&mut self) {
        let Some(l) = self.listener else { return };
        loop {
            match l.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Attacher {
                        sock: OwnedFd::from(stream),
                        decoder: attach::Decoder::default(),
                        out: Vec::new(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what client `k` sent; false when it is gone or broke the protocol.
    fn serve_client(&mut self, k: usize, pid: Pid) -> bool {
        let n = match nix::unistd::read(&self.clients[k].sock, &mut self.buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        };
        let c = &mut self.clients[k];
        c.decoder.feed(&self.buf[..n]);
        loop {
            let frame = match c.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return true,
                Err(_) => return false,
            };
            match frame.kind {
                attach::Kind::Stdin if self.input.is_some() => {
                    self.pending_input.extend_from_slice(&frame.payload);
                }
                attach::Kind::Resize if self.tty => {
                    if let (Some(m), [r0, r1, c0, c1]) = (self.input, frame.payload.as_slice()) {
                        let rows = u16::from_be_bytes([*r0, *r1]);
                        let cols = u16::from_be_bytes([*c0, *c1]);
                        let _ = ops::console::set_window_size(m.as_fd(), rows, cols);
                    }
                }
                attach::Kind::Signal => {
                    if let Ok(b) = <[u8; 4]>::try_from(frame.payload.as_slice()) {
                        if let Ok(sig) = Signal::try_from(i32::from_be_bytes(b)) {
                            let _ = nix::sys::signal::kill(pid, sig);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Gives the container what clients typed, as much as it takes now.
    fn feed_input(&mut self) {
        let Some(fd) = self.input else {
            self.pending_input.clear();
            return;
        };
        while !self.pending_input.is_empty() {
            match nix::unistd::write(fd, &self.pending_input) {
                Ok(n) => {
                    self.pending_input.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                // Nobody reads (the container closed its stdin): input is dropped.
                Err(_) => {
                    self.pending_input.clear();
                    return;
                }
            }
        }
    }

    /// Tells every client the exit code and gives them a moment to take what is left.
    fn say_exit(&mut self, code: i32) {
        for c in &mut self.clients {
            attach::encode(&mut c.out, attach::Kind::Exit, &code.to_be_bytes());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            self.flush_clients();
            self.clients.retain(|c| !c.out.is_empty());
            if self.clients.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        self.clients.clear();
    }
}

/// Copies the container's output into the log and to attach clients, and client input to
/// the container, until the init exits; returns its exit code. `set` are the blocked signals
/// (`None`: reap only).
fn supervise(pid: i32, hub: &mut Hub<'_>, set: Option<&nix::sys::signal::SigSet>) -> i32 {
    let target = Pid::from_raw(pid);
    let sfd = match set.map(|s| SignalFd::with_flags(s, SfdFlags::SFD_CLOEXEC)) {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return 255,
        None => None,
    };
    let mut open = [hub.sources[0].is_some(), hub.sources[1].is_some()];
    // A client already waiting (the caller of `run -t`) is taken before any output is read.
    hub.accept();
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
            // wrote is in the pipes (or the pty).
            for (i, o) in open.iter().enumerate() {
                if *o {
                    hub.drain(i);
                }
            }
            return code;
        }
        let Some(sfd) = &sfd else {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        // Order: signals, sources, listener, container input, then one per client.
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, fd) in hub.sources.iter().enumerate() {
            if let (true, Some(fd)) = (open[i], fd) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let listen_at = hub.listener.map(|l| {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let input_at = match hub.input {
            Some(fd) if !hub.pending_input.is_empty() => {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let clients_at = fds.len();
        for c in &hub.clients {
            // Input is read only once the container took the previous input: a container
            // that never reads stdin holds clients back instead of growing our buffer.
            let mut ev = PollFlags::empty();
            if hub.pending_input.is_empty() {
                ev |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), ev));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 255,
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if !ready[0].is_empty() {
            // SIGCHLD is handled by the reaping above; other signals are not for us.
            let _ = sfd.read_signal();
        }
        for (k, &i) in which.iter().enumerate() {
            if !ready[k + 1].is_empty() && !hub.drain(i) {
                open[i] = false;
            }
        }
        if listen_at.is_some_and(|at| !ready[at].is_empty()) {
            hub.accept();
        }
        if input_at.is_some_and(|at| !ready[at].is_empty()) {
            hub.feed_input();
        }
        // Clients accepted just now come after those polled; walk back so removal is safe.
        let polled = ready.len() - clients_at;
        for k in (0..polled.min(hub.clients.len())).rev() {
            let r = ready[clients_at + k];
            let mut keep = true;
            if r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                keep = hub.serve_client(k, target);
            }
            if keep && r.contains(PollFlags::POLLHUP) && !r.contains(PollFlags::POLLIN) {
                keep = false;
            }
            if !keep {
                hub.clients.remove(k);
            }
        }
        hub.feed_input();
        hub.flush_clients();
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
