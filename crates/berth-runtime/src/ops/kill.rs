//! `kill`: send a signal to the container's init, or with `all` to every process in its
//! cgroup.

use nix::sys::signal::{kill as kill_pid, Signal};
use nix::unistd::Pid;

use super::{Runtime, WrongStatus};
use crate::cgroups::CgroupError;
use crate::state::{StateError, Status};

/// Why `kill` failed.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    #[error("listing the processes of container {id:?}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
    #[error("sending {signal} to pid {pid}")]
    Send {
        signal: Signal,
        pid: i32,
        #[source]
        source: nix::errno::Errno,
    },
}

/// Parses `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal, KillError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| KillError::UnknownSignal(s.to_owned()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| KillError::UnknownSignal(s.to_owned()))
}

/// Signals container `id`.
pub fn kill(rt: &Runtime, id: &str, signal: Signal, all: bool) -> Result<(), KillError> {
    let (_dir, st, status) = rt.load(id)?;
    if status == Status::Stopped && !all {
        return Err(WrongStatus {
            id: id.to_owned(),
            status,
            what: "there is no process to signal",
        }
        .into());
    }
    if all {
        if let Some(cg) = &st.cgroup {
            let pids = cg.pids().map_err(|source| KillError::Cgroup {
                id: id.to_owned(),
                source,
            })?;
            for pid in pids {
                match kill_pid(Pid::from_raw(pid), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(source) => {
                        return Err(KillError::Send {
                            signal,
                            pid,
                            source,
                        })
                    }
                }
            }
            return Ok(());
        }
    }
    if status == Status::Stopped {
        return Ok(());
    }
    kill_pid(Pid::from_raw(st.pid), signal).map_err(|source| KillError::Send {
        signal,
        pid: st.pid,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
