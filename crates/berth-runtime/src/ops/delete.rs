//! `delete`: remove a stopped container (or, with `force`, kill it first): its processes,
//! cgroup and state. Poststop hooks run last.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Runtime, WrongStatus};
use crate::cgroups::CgroupError;
use crate::hooks::{self, HookError, HookKind};
use crate::state::{StateError, Status};

/// Why `delete` failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error("the init (pid {pid}) of container {id:?} did not die after SIGKILL")]
    StillAlive { id: String, pid: i32 },
    #[error("removing the cgroup of container {id:?}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
}

/// Deletes container `id`; returns poststop hook failures (warnings, per the spec).
pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<Vec<HookError>, DeleteError> {
    let dir = rt.dir(id)?;
    let st = match dir.load() {
        Ok(st) => st,
        // A create that died before writing any state leaves only the directory.
        Err(StateError::NotFound(_)) | Err(StateError::Corrupt { .. })
            if force && dir.path.exists() =>
        {
            dir.remove()?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = dir.lock()?;
    let status = st.status(&dir);
    match status {
        Status::Stopped | Status::Created | Status::Creating => {}
        Status::Running | Status::Paused if force => {}
        Status::Running | Status::Paused => {
            return Err(WrongStatus {
                id: id.to_owned(),
                status,
                what: "stop it first or use --force",
            }
            .into())
        }
    }
    if st.init_alive() {
        let pid = Pid::from_raw(st.pid);
        if status == Status::Paused {
            // A frozen process cannot die until thawed; the cgroup teardown below thaws it too.
            if let Some(cg) = &st.cgroup {
                let _ = cg.destroy();
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.init_alive() {
            if Instant::now() > deadline {
                return Err(DeleteError::StillAlive {
                    id: id.to_owned(),
                    pid: st.pid,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if let Some(cg) = &st.cgroup {
        cg.destroy().map_err(|source| DeleteError::Cgroup {
            id: id.to_owned(),
            source,
        })?;
    }
    let mut warnings = Vec::new();
    if let Some(h) = st.spec.hooks() {
        let mut stopped = st.oci_state(&dir);
        stopped.status = Status::Stopped;
        let json = serde_json::to_string(&stopped).expect("state serializes");
        if let Err(e) = hooks::run(
            HookKind::Poststop,
            h.poststop().as_deref().unwrap_or_default(),
            &json,
        ) {
            warnings.push(e);
        }
    }
    dir.remove()?;
    Ok(warnings)
}
