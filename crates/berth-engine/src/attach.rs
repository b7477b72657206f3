//! `berth attach`: connects our terminal to a container that runs under its monitor.
//!
//! The monitor of a detached container listens on a unix socket, `attach.sock` in the
//! container's record directory. Any number of clients may connect; each receives what the
//! container writes from then on, and may write to its stdin (`-i`), resize its pty (`-t`) and
//! have signals delivered to it (`--sig-proxy`). Disconnecting (the detach keys, ctrl-p ctrl-q
//! by default) leaves the container running.
//!
//! The wire format is the same in both directions: frames of `[kind: u8][len: u32 BE][payload]`
//! (see [`Frame`]). The socket is bound and connected through `/proc/self/fd/N/attach.sock`,
//! `N` an `O_PATH` descriptor of the record directory, so a deep `--root` never exceeds the
//! 108 bytes of `sockaddr_un`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use berth_runtime::ops;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;

use crate::record::{RecordError, Status};
use crate::Engine;

/// The name of the monitor's attach socket in the container's record directory.
pub const SOCKET_NAME: &str = "attach.sock";

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// A frame kind on the attach socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client to monitor: bytes for the container's stdin.
    Stdin = 0,
    /// Monitor to client: what the container wrote to stdout (or its pty).
    Stdout = 1,
    /// Monitor to client: what the container wrote to stderr.
    Stderr = 2,
    /// Monitor to client: the container exited; payload: its code, `i32` big-endian.
    Exit = 3,
    /// Client to monitor: the pty's new size; payload: rows, columns, `u16` big-endian each.
    Resize = 5,
    /// Client to monitor: deliver a signal to the container's init; payload: `i32` big-endian.
    Signal = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Exit,
            5 => Kind::Resize,
            6 => Kind::Signal,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// The largest payload a peer may announce; anything larger is a protocol error.
const MAX_PAYLOAD: usize = 1 << 20;

/// Appends the encoding of one frame to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Why a peer's byte stream is not a valid frame sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = Kind::from_u8(self.buf[0]).ok_or(FrameError::Kind(self.buf[0]))?;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some(Frame { kind, payload }))
    }
}

/// Why detach keys could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid detach keys ({keys}) provided: unknown key {key:?}")]
pub struct DetachKeysError {
    pub keys: String,
    pub key: String,
}

/// Docker's `--detach-keys` syntax: comma-separated keys, each a single character or
/// `ctrl-X` with X one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, DetachKeysError> {
    let bad = |key: &str| DetachKeysError {
        keys: keys.to_owned(),
        key: key.to_owned(),
    };
    let mut out = Vec::new();
    for key in keys.split(',') {
        if key.len() == 1 {
            out.push(key.as_bytes()[0]);
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let rest = lower.strip_prefix("ctrl-").ok_or_else(|| bad(key))?;
        let code = match rest.as_bytes() {
            [c @ b'a'..=b'z'] => c - b'a' + 1,
            [b'@'] => 0,
            [b'['] => 27,
            [b'\\'] => 28,
            [b']'] => 29,
            [b'^'] => 30,
            [b'_'] => 31,
            _ => return Err(bad(key)),
        };
        out.push(code);
    }
    Ok(out)
}

/// Watches stdin for the detach sequence. Bytes that start the sequence are held back until
/// it either completes (detach) or breaks off (they are passed on, as Docker's proxy does).
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// Appends to `out` what of `input` goes to the container; true when the sequence completed
    /// (what followed it is dropped).
    pub fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // A broken prefix is passed on; the byte may itself start a new one.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// The attach socket of container `id`.
pub fn socket_path(engine: &Engine, id: &str) -> PathBuf {
    engine.records.dir(id).join(SOCKET_NAME)
}

/// Opens `dir` as an `O_PATH` descriptor and names `SOCKET_NAME` through it, keeping the
/// address short whatever the depth of `dir`. The descriptor must live while the address is
/// used.
fn short_address(dir: &Path) -> Result<(OwnedFd, PathBuf), Errno> {
    let fd = open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let addr = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET_NAME}", fd.as_raw_fd()));
    Ok((fd, addr))
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Binds and listens on the attach socket in `dir` (removing a stale one first); the
/// listener does not block and is closed on exec. Only root may connect (mode 0600).
pub fn listen_in(dir: &Path) -> Result<UnixListener, Errno> {
    let path = dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let (_dirfd, addr) = short_address(dir)?;
    let l = UnixListener::bind(&addr).map_err(errno)?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    l.set_nonblocking(true).map_err(errno)?;
    Ok(l)
}

/// Connects to the attach socket in `dir`.
pub(crate) fn connect_in(dir: &Path) -> Result<OwnedFd, Errno> {
    let (_dirfd, addr) = short_address(dir)?;
    let s = UnixStream::connect(&addr).map_err(errno)?;
    Ok(OwnedFd::from(s))
}

/// `attach` options, Docker's flags.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Forward our stdin (unless `--no-stdin`; only when the container has `-i`).
    pub stdin: bool,
    /// Deliver the signals we receive to the container (`--sig-proxy`, not with a tty).
    pub sig_proxy: bool,
    /// The detach sequence ([`parse_detach_keys`]); empty: no detaching by keys.
    pub detach_keys: Vec<u8>,
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this code.
    Exited(i32),
    /// The user typed the detach keys; the container runs on.
    Detached,
}

/// Why `attach` failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("you cannot attach to a stopped container, start it first")]
    NotRunning(String),
    #[error("you cannot attach to a paused container, unpause it first")]
    Paused(String),
    #[error("container {0} runs in the foreground of the berth command that started it and cannot be attached")]
    Foreground(String),
    #[error("the input device is not a TTY")]
    NotATty,
    #[error("the monitor of container {0} is gone (killed?): nothing serves its stdio any more; `berth logs` still shows what was logged")]
    MonitorGone(String),
    #[error("connecting to the monitor of container {id}")]
    Connect {
        id: String,
        #[source]
        source: Errno,
    },
    #[error("setting up signal forwarding")]
    Signals(#[source] Errno),
    #[error("copying between the terminal and container {id}")]
    Io {
        id: String,
        #[source]
        source: Errno,
    },
    #[error("the monitor of container {id} sent an invalid stream")]
    Protocol {
        id: String,
        #[source]
        source: FrameError,
    },
    #[error("the monitor of container {0} closed the connection before the container exited")]
    Lost(String),
}

/// Writes all of `data` to `fd` (blocking).
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut p, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Signals an attach client handles itself rather than forwards (Docker's list).
fn not_forwarded(signo: i32) -> bool {
    matches!(
        signo,
        libc::SIGCHLD | libc::SIGPIPE | libc::SIGWINCH | libc::SIGURG
    )
}

impl Engine {
    /// `berth attach`: connects our stdio to the running container `what` until it exits
    /// or the user detaches.
    pub fn attach(&self, what: &str, opts: &AttachOptions) -> Result<AttachEnd, AttachError> {
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running {
            return Err(AttachError::NotRunning(what.to_owned()));
        }
        if rec.state.paused {
            return Err(AttachError::Paused(what.to_owned()));
        }
        let id = rec.id.clone();
        let stdin_tty = nix::unistd::isatty(std::io::stdin().as_fd()).unwrap_or(false);
        if rec.tty && opts.stdin && rec.open_stdin && !stdin_tty {
            return Err(AttachError::NotATty);
        }
        let sock = match connect_in(&self.records.dir(&id)) {
            Ok(s) => s,
            // No socket: nothing serves this container (a foreground `run`).
            Err(Errno::ENOENT) => return Err(AttachError::Foreground(what.to_owned())),
            // A socket nobody listens on: its monitor was killed.
            Err(Errno::ECONNREFUSED) => return Err(AttachError::MonitorGone(what.to_owned())),
            Err(source) => return Err(AttachError::Connect { id, source }),
        };
        // Docker's attach proxies signals only without a tty (with one, ctrl-c is a byte).
        let opts = AttachOptions {
            sig_proxy: opts.sig_proxy && !rec.tty,
            ..opts.clone()
        };
        self.attach_stream(&rec, sock, &opts)
    }

    /// Serves an attach connection `sock` to container `rec` on our stdio until the container
    /// exits or the user detaches; `opts.sig_proxy` is taken as it is. The record is not read
    /// again: a `--rm` container may be gone by the time its exit code arrives.
    pub fn attach_stream(
        &self,
        rec: &crate::ContainerRecord,
        sock: OwnedFd,
        opts: &AttachOptions,
    ) -> Result<AttachEnd, AttachError> {
        let id = rec.id.clone();
        let stdin = std::io::stdin();
        let use_stdin = opts.stdin && rec.open_stdin;
        let stdin_tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
        let io_err = |source| AttachError::Io {
            id: id.clone(),
            source,
        };
        // Signals become events: SIGWINCH resizes, the rest go to the container (sig-proxy,
        // not with a tty, where ctrl-c is a byte for the container) or end us as usual.
        let mut set = SigSet::empty();
        if rec.tty {
            set.add(Signal::SIGWINCH);
        }
        if opts.sig_proxy {
            for s in Signal::iterator() {
                if !matches!(
                    s,
                    Signal::SIGKILL
                        | Signal::SIGSTOP
                        | Signal::SIGSEGV
                        | Signal::SIGBUS
                        | Signal::SIGILL
                        | Signal::SIGFPE
                        | Signal::SIGTRAP
                ) {
                    set.add(s);
                }
            }
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(AttachError::Signals)?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(AttachError::Signals)?;
        // Raw mode only when our stdin goes to the container's pty.
        let _raw = (rec.tty && use_stdin && stdin_tty).then(ops::console::RawMode::enter);
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        let send_size = |sock: &OwnedFd| -> Result<(), Errno> {
            let term = if nix::unistd::isatty(stdout.as_fd()).unwrap_or(false) {
                stdout.as_fd()
            } else {
                stdin.as_fd()
            };
            if let Ok((rows, cols)) = ops::console::window_size(term) {
                let mut f = Vec::new();
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                encode(&mut f, Kind::Resize, &p);
                write_all(sock.as_fd(), &f)?;
            }
            Ok(())
        };
        if rec.tty {
            send_size(&sock).map_err(io_err)?;
        }
        let mut scanner = DetachScanner::new(opts.detach_keys.clone());
        let mut decoder = Decoder::default();
        let mut stdin_open = use_stdin;
        let mut buf = vec![0u8; 32 * 1024];
        let result = loop {
            let mut fds = vec![
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => break Err(io_err(e)),
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let (sock_ready, sig_ready, stdin_ready) = (ready(0), ready(1), ready(2));
            drop(fds);
            if sig_ready {
                while let Ok(Some(info)) = sfd.read_signal() {
                    let signo = info.ssi_signo as i32;
                    if signo == libc::SIGWINCH {
                        let _ = send_size(&sock);
                    } else if !not_forwarded(signo) {
                        let mut f = Vec::new();
                        encode(&mut f, Kind::Signal, &signo.to_be_bytes());
                        let _ = write_all(sock.as_fd(), &f);
                    }
                }
            }
            if stdin_ready && stdin_open {
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    // Docker keeps a detached container's stdin open after our end of file.
                    Ok(0) | Err(Errno::EIO) => stdin_open = false,
                    Ok(n) => {
                        let mut pass = Vec::with_capacity(n);
                        let detach = scanner.scan(&buf[..n], &mut pass);
                        if !pass.is_empty() {
                            let mut f = Vec::with_capacity(pass.len() + 5);
                            encode(&mut f, Kind::Stdin, &pass);
                            if let Err(e) = write_all(sock.as_fd(), &f) {
                                break Err(io_err(e));
                            }
                        }
                        if detach {
                            break Ok(AttachEnd::Detached);
                        }
                    }
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                    Err(e) => break Err(io_err(e)),
                }
            }
            if sock_ready {
                let n = match nix::unistd::read(sock.as_fd(), &mut buf) {
                    Ok(n) => n,
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
                    Err(Errno::ECONNRESET) => 0,
                    Err(e) => break Err(io_err(e)),
                };
                if n == 0 {
                    // We may have connected just as the container exited (the monitor then
                    // closes without accepting us): its recorded exit is the answer.
                    break match self.records.load(&id).map(|r| self.reconcile(r)) {
                        Ok(r) if r.state.status != Status::Running => {
                            Ok(AttachEnd::Exited(r.state.exit_code))
                        }
                        _ => Err(AttachError::Lost(id.clone())),
                    };
                }
                decoder.feed(&buf[..n]);
                let mut end = None;
                loop {
                    match decoder.next_frame() {
                        Ok(Some(f)) => match f.kind {
                            Kind::Stdout => {
                                if let Err(e) = write_all(stdout.as_fd(), &f.payload) {
                                    end = Some(Err(io_err(e)));
                                    break;
                                }
                            }
                            Kind::Stderr => {
                                let _ = write_all(stderr.as_fd(), &f.payload);
                            }
                            Kind::Exit => {
                                let code = f
                                    .payload
                                    .get(..4)
                                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                                    .unwrap_or(255);
                                end = Some(Ok(AttachEnd::Exited(code)));
                                break;
                            }
                            _ => {}
                        },
                        Ok(None) => break,
                        Err(source) => {
                            end = Some(Err(AttachError::Protocol {
                                id: id.clone(),
                                source,
                            }));
                            break;
                        }
                    }
                }
                if let Some(end) = end {
                    break end;
                }
            }
        };
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_detach_key_syntax() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-_").unwrap(),
            vec![b'a', 0, 31]
        );
        assert_eq!(parse_detach_keys("CTRL-X").unwrap(), vec![24]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("alt-p").is_err());
        assert!(parse_detach_keys("").is_err());
        assert!(parse_detach_keys("ctrl-p,").is_err());
    }

    #[test]
    fn detach_sequence_is_held_back_and_broken_prefixes_pass() {
        let mut s = DetachScanner::new(vec![16, 17]);
        let mut out = Vec::new();
        assert!(!s.scan(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        // The prefix breaks off: it is passed on with the byte that broke it.
        assert!(!s.scan(b"c", &mut out));
        assert_eq!(out, b"ab\x10c");
        out.clear();
        // Split across reads, with a repeated first key.
        assert!(!s.scan(b"x\x10\x10", &mut out));
        assert!(s.scan(b"\x11rest", &mut out));
        assert_eq!(out, b"x\x10");
        // No keys: everything passes.
        let mut s = DetachScanner::new(Vec::new());
        let mut out = Vec::new();
        assert!(!s.scan(b"\x10\x11", &mut out));
        assert_eq!(out, b"\x10\x11");
    }

    #[test]
    fn frames_survive_arbitrary_splits_and_bad_input_is_refused() {
        let mut wire = Vec::new();
        encode(&mut wire, Kind::Stdout, b"hello");
        encode(&mut wire, Kind::Exit, &7i32.to_be_bytes());
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame {
                    kind: Kind::Stdout,
                    payload: b"hello".to_vec()
                },
                Frame {
                    kind: Kind::Exit,
                    payload: 7i32.to_be_bytes().to_vec()
                },
            ]
        );
        let mut d = Decoder::default();
        d.feed(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Kind(9)));
        let mut d = Decoder::default();
        d.feed(&[0, 0xff, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong(_))));
    }
}
