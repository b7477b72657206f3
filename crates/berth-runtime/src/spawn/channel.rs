//! The one `SOCK_SEQPACKET` socketpair between the runtime (parent) and the processes it
//! forks. Messages are typed (serde JSON, one datagram each) and the receiver checks that
//! each one is the step it expects, so the handshake reads like a script.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::InitError;
use crate::sys::socket;

/// Everything that crosses the socket.
#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// parent → child: the child sits in its cgroup; go on.
    Go,
    /// child → parent: I unshared a user namespace; write my uid/gid maps.
    WriteIdMaps { pid: i32 },
    /// parent → child: maps written.
    IdMapsWritten,
    /// child → parent: I unshared a time namespace; write its offsets.
    WriteTimeOffsets { pid: i32 },
    /// parent → child: offsets written.
    TimeOffsetsWritten,
    /// intermediate → parent: the container's init (or exec'd process) has this host pid.
    Pid { pid: i32 },
    /// init → parent: mounts are in place; run the prestart and createRuntime hooks.
    RunCreateRuntimeHooks,
    /// parent → init: hooks done; here is the state document for the in-container hooks.
    CreateRuntimeHooksDone { state: String },
    /// init → parent: the seccomp notify fd rides along with this message.
    SeccompNotifyFd,
    /// parent → init: the notify fd reached the listener.
    SeccompNotifyFdDelivered,
    /// init → parent: everything but `execve` is done.
    Ready,
    /// any child → parent: a step failed.
    Error(InitError),
}

impl Msg {
    /// The variant's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Go => "Go",
            Msg::WriteIdMaps { .. } => "WriteIdMaps",
            Msg::IdMapsWritten => "IdMapsWritten",
            Msg::WriteTimeOffsets { .. } => "WriteTimeOffsets",
            Msg::TimeOffsetsWritten => "TimeOffsetsWritten",
            Msg::Pid { .. } => "Pid",
            Msg::RunCreateRuntimeHooks => "RunCreateRuntimeHooks",
            Msg::CreateRuntimeHooksDone { .. } => "CreateRuntimeHooksDone",
            Msg::SeccompNotifyFd => "SeccompNotifyFd",
            Msg::SeccompNotifyFdDelivered => "SeccompNotifyFdDelivered",
            Msg::Ready => "Ready",
            Msg::Error(_) => "Error",
        }
    }
}

/// A channel failure.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("creating the sync socketpair")]
    Socketpair(#[source] Errno),
    #[error("sending {msg} on the sync socket")]
    Send {
        msg: &'static str,
        #[source]
        source: Errno,
    },
    #[error("receiving from the sync socket")]
    Recv(#[source] Errno),
    #[error("the other side closed the sync socket while {expected} was expected (it died)")]
    Closed { expected: &'static str },
    #[error("malformed message on the sync socket: {0}")]
    Malformed(String),
    #[error("expected {expected} on the sync socket, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
}

/// One end of the sync socketpair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Creates the pair: (parent's end, child's end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Socketpair)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// The descriptor (to keep it open across fd clean-ups).
    pub fn as_raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// Sends `msg`.
    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        self.send_with_fd(msg, None)
    }

    /// Sends `msg` with `fd` attached.
    pub fn send_with_fd(
        &self,
        msg: &Msg,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), ChannelError> {
        let data = serde_json::to_vec(msg).expect("messages serialize");
        socket::send(self.fd.as_fd(), &data, fd).map_err(|source| ChannelError::Send {
            msg: msg.name(),
            source,
        })
    }

    /// Receives the next message and the descriptor that came with it.
    pub fn recv_any(&self, expected: &'static str) -> Result<(Msg, Option<OwnedFd>), ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        let (len, fd) = loop {
            match socket::recv(self.fd.as_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                other => break other.map_err(ChannelError::Recv)?,
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed { expected });
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| ChannelError::Malformed(e.to_string()))?;
        Ok((msg, fd))
    }

    /// Receives a message that must be `expected` (checked by `matches`). A child's `Error` is
    /// returned as `Ok(Err(..))` so the caller can report the child's own failure.
    pub fn expect(
        &self,
        expected: &'static str,
        matches: impl Fn(&Msg) -> bool,
    ) -> Result<Result<Msg, InitError>, ChannelError> {
        let (msg, _) = self.recv_any(expected)?;
        match msg {
            Msg::Error(e) => Ok(Err(e)),
            m if matches(&m) => Ok(Ok(m)),
            m => Err(ChannelError::Unexpected {
                expected,
                got: m.name(),
            }),
        }
    }
}
