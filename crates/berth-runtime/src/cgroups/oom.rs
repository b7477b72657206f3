//! Waiting for OOM events, for the `events` stream.
//!
//! - cgroup v1: an eventfd registered for `memory.oom_control` through `cgroup.event_control`
//!   (cgroup-v1/memory.rst, "OOM Control"). The kernel also signals it when the cgroup is
//!   removed, so every wake-up checks that the cgroup still exists.
//! - cgroup v2: `memory.events` is a kernfs file whose changes wake `poll(POLLPRI)`
//!   (cgroup-v2.rst, "memory.events ... generates a file modified event"); a wake-up that raised
//!   `oom_kill` is an OOM event.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{stats, write_file, CgroupError};

/// What [`OomWatcher::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomWait {
    /// This many OOM events since the last call.
    Oom(u64),
    /// Nothing happened before the timeout.
    Timeout,
    /// The cgroup was removed; no more events will come.
    Gone,
}

/// Watches one cgroup for OOM events. Create it with [`super::Cgroup::oom_watcher`].
#[derive(Debug)]
pub struct OomWatcher {
    kind: Kind,
    dir: PathBuf,
}

#[derive(Debug)]
enum Kind {
    V1 {
        eventfd: File,
        // Kept open: the registration lives as long as this descriptor.
        _oom_control: File,
    },
    V2 {
        events: File,
        last_kills: u64,
    },
}

fn io_err(path: PathBuf) -> impl FnOnce(std::io::Error) -> CgroupError {
    move |source| CgroupError::Read { path, source }
}

impl OomWatcher {
    pub(super) fn v1(dir: PathBuf) -> Result<Self, CgroupError> {
        let control_path = dir.join("memory.oom_control");
        let oom_control = File::open(&control_path).map_err(io_err(control_path))?;
        let eventfd = crate::sys::cgroup::eventfd().map_err(|errno| CgroupError::OomWatch {
            dir: dir.clone(),
            source: errno.into(),
        })?;
        // "<event_fd> <fd of the file to watch>" registers the notification.
        let line = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        write_file(&dir, "cgroup.event_control", &line).map_err(|source| {
            CgroupError::OomWatch {
                dir: dir.clone(),
                source,
            }
        })?;
        Ok(OomWatcher {
            kind: Kind::V1 {
                eventfd: File::from(eventfd),
                _oom_control: oom_control,
            },
            dir,
        })
    }

    pub(super) fn v2(dir: PathBuf) -> Result<Self, CgroupError> {
        let path = dir.join("memory.events");
        let mut events = File::open(&path).map_err(io_err(path))?;
        let last_kills = read_kills(&mut events, &dir)?;
        Ok(OomWatcher {
            kind: Kind::V2 { events, last_kills },
            dir,
        })
    }

    /// Waits up to `timeout` (`None`: forever) for OOM events.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<OomWait, CgroupError> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let dir = self.dir.clone();
        let poll_err = |errno: Errno| CgroupError::OomWatch {
            dir: dir.clone(),
            source: errno.into(),
        };
        match &mut self.kind {
            Kind::V1 { eventfd, .. } => {
                let ready = poll(
                    &mut [PollFd::new(eventfd.as_fd(), PollFlags::POLLIN)],
                    timeout,
                )
                .map_err(poll_err)?;
                if ready == 0 {
                    return Ok(OomWait::Timeout);
                }
                let mut counter = [0u8; 8];
                eventfd
                    .read_exact(&mut counter)
                    .map_err(|source| CgroupError::OomWatch {
                        dir: self.dir.clone(),
                        source,
                    })?;
                if !self.dir.exists() {
                    return Ok(OomWait::Gone);
                }
                Ok(OomWait::Oom(u64::from_ne_bytes(counter)))
            }
            Kind::V2 { events, last_kills } => {
                let ready = poll(
                    &mut [PollFd::new(events.as_fd(), PollFlags::POLLPRI)],
                    timeout,
                )
                .map_err(poll_err)?;
                if !self.dir.exists() {
                    return Ok(OomWait::Gone);
                }
                if ready == 0 {
                    return Ok(OomWait::Timeout);
                }
                // Reading the file again re-arms the notification.
                let kills = read_kills(events, &self.dir)?;
                let new = kills.saturating_sub(*last_kills);
                *last_kills = kills;
                Ok(if new > 0 {
                    OomWait::Oom(new)
                } else {
                    OomWait::Timeout
                })
            }
        }
    }
}

fn read_kills(events: &mut File, dir: &std::path::Path) -> Result<u64, CgroupError> {
    let mut text = String::new();
    events
        .seek(SeekFrom::Start(0))
        .and_then(|_| events.read_to_string(&mut text))
        .map_err(io_err(dir.join("memory.events")))?;
    Ok(stats::flat_keyed(&text)
        .get("oom_kill")
        .copied()
        .unwrap_or(0))
}
