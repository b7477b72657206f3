//! `start`: release a created container's init from the exec fifo, then run poststart hooks.

use std::os::fd::AsFd;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::{Runtime, WrongStatus};
use crate::hooks::{self, HookError, HookKind};
use crate::state::{StateError, Status, EXEC_FIFO};

/// Why `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error("opening the exec fifo of container {id:?}")]
    Fifo {
        id: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("the init of container {id:?} exited before it could be started")]
    InitDied { id: String },
}

/// Starts container `id`. Returns the poststart hook failures, which the spec says are only
/// warnings.
pub fn start(rt: &Runtime, id: &str) -> Result<Vec<HookError>, StartError> {
    let dir = rt.dir(id)?;
    let _lock = dir.lock()?;
    let mut st = dir.load()?;
    let status = st.status(&dir);
    if status != Status::Created {
        return Err(WrongStatus {
            id: id.to_owned(),
            status,
            what: "only a created container can be started",
        }
        .into());
    }
    let fifo_path = dir.path.join(EXEC_FIFO);
    // The init holds the fifo open and blocks reading it. A non-blocking open for writing
    // fails with ENXIO when nobody holds it, i.e. the init is gone.
    let fifo = match open(
        &fifo_path,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => f,
        Err(nix::errno::Errno::ENXIO) => {
            let _ = std::fs::remove_file(&fifo_path);
            return Err(StartError::InitDied { id: id.to_owned() });
        }
        Err(source) => {
            return Err(StartError::Fifo {
                id: id.to_owned(),
                source,
            })
        }
    };
    // With poststart hooks, they must run after the process started (runtime-spec, lifecycle
    // 7-9): hold a read end before letting go of our write end; the init's own descriptor is
    // then the fifo's last writer, and it is close-on-exec, so POLLHUP on our read end means
    // the init has run its startContainer hooks and executed the process (or died). Without
    // them `start` returns as soon as the go byte is written, as runc's returns once the init
    // took it, and the caller's next steps overlap the exec. (It used to wait in 1 ms sleeps
    // until the byte was read, which cost a `run --rm` 1-9 ms of timer latency on the test VM.)
    let poststart = st
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().as_ref())
        .is_some_and(|v| !v.is_empty());
    let watch = if poststart {
        Some(
            open(
                &fifo_path,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|source| StartError::Fifo {
                id: id.to_owned(),
                source,
            })?,
        )
    } else {
        None
    };
    nix::unistd::write(&fifo, b"0").map_err(|source| StartError::Fifo {
        id: id.to_owned(),
        source,
    })?;
    drop(fifo);
    let _ = std::fs::remove_file(&fifo_path);
    if let Some(watch) = watch {
        loop {
            let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            let hup = fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP));
            if hup || !st.init_alive() {
                break;
            }
            // POLLIN alone: our go byte is still waiting for the init to read it.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    st.recorded_status = Status::Running;
    dir.save(&st)?;

    let mut warnings = Vec::new();
    if let Some(h) = st.spec.hooks() {
        let json = serde_json::to_string(&st.oci_state(&dir)).expect("state serializes");
        if let Err(e) = hooks::run(
            HookKind::Poststart,
            h.poststart().as_deref().unwrap_or_default(),
            &json,
        ) {
            warnings.push(e);
        }
    }
    Ok(warnings)
}
