//! `update`, `pause`, `resume` and `events`: the verbs that act on a running container's
//! cgroup.

use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use super::{Runtime, WrongStatus};
use crate::cgroups::{self, CgroupError, OomWait, Warning};
use crate::state::{StateError, Status};

/// Why a resource verb failed.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    WrongStatus(#[from] WrongStatus),
    #[error("container {0:?} has no cgroup")]
    NoCgroup(String),
    #[error("cgroup of container {id:?}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
    #[error("invalid resources: {0}")]
    Invalid(String),
}

fn cg_err(id: &str) -> impl FnOnce(CgroupError) -> ResourcesError + '_ {
    move |source| ResourcesError::Cgroup {
        id: id.to_owned(),
        source,
    }
}

/// Applies `patch` (only the fields it sets) to container `id` live and records the merged
/// resources in its state. Returns settings the kernel ignored.
pub fn update(
    rt: &Runtime,
    id: &str,
    patch: &LinuxResources,
) -> Result<Vec<Warning>, ResourcesError> {
    let dir = rt.dir(id)?;
    let _lock = dir.lock()?;
    let mut st = dir.load()?;
    let status = st.status(&dir);
    if status == Status::Stopped {
        return Err(WrongStatus {
            id: id.to_owned(),
            status,
            what: "there is nothing to update",
        }
        .into());
    }
    let cg = st
        .cgroup
        .clone()
        .ok_or_else(|| ResourcesError::NoCgroup(id.to_owned()))?;
    let warnings = cg.update(patch).map_err(cg_err(id))?;
    if let Some(linux) = st.spec.linux_mut() {
        let current = linux.resources().clone().unwrap_or_default();
        let merged = cgroups::merge_resources(&current, patch).map_err(cg_err(id))?;
        linux.set_resources(Some(merged));
    }
    dir.save(&st)?;
    Ok(warnings)
}

/// Freezes every process of container `id` (`pause`).
pub fn pause(rt: &Runtime, id: &str) -> Result<(), ResourcesError> {
    set_frozen(rt, id, true)
}

/// Thaws container `id` (`resume`).
pub fn resume(rt: &Runtime, id: &str) -> Result<(), ResourcesError> {
    set_frozen(rt, id, false)
}

fn set_frozen(rt: &Runtime, id: &str, frozen: bool) -> Result<(), ResourcesError> {
    let dir = rt.dir(id)?;
    let _lock = dir.lock()?;
    let mut st = dir.load()?;
    let status = st.status(&dir);
    let ok = if frozen {
        status == Status::Running
    } else {
        status == Status::Paused
    };
    if !ok {
        return Err(WrongStatus {
            id: id.to_owned(),
            status,
            what: if frozen {
                "only a running container can be paused"
            } else {
                "only a paused container can be resumed"
            },
        }
        .into());
    }
    let cg = st
        .cgroup
        .clone()
        .ok_or_else(|| ResourcesError::NoCgroup(id.to_owned()))?;
    if frozen {
        cg.freeze().map_err(cg_err(id))?;
        st.recorded_status = Status::Paused;
    } else {
        cg.thaw().map_err(cg_err(id))?;
        st.recorded_status = Status::Running;
    }
    dir.save(&st)?;
    Ok(())
}

/// One `{"type":"stats","id":..,"data":..}` event, as runc prints it.
pub fn stats_event(rt: &Runtime, id: &str) -> Result<Value, ResourcesError> {
    let (_dir, st, _status) = rt.load(id)?;
    let cg = st
        .cgroup
        .ok_or_else(|| ResourcesError::NoCgroup(id.to_owned()))?;
    let stats = cg.stats().map_err(cg_err(id))?;
    Ok(json!({"type": "stats", "id": id, "data": stats}))
}

/// Streams events of container `id` to `emit` until it stops: stats every `interval`, and an
/// `{"type":"oom"}` event for every OOM kill as it happens.
pub fn stream_events(
    rt: &Runtime,
    id: &str,
    interval: Duration,
    emit: &mut dyn FnMut(&Value),
) -> Result<(), ResourcesError> {
    let (_dir, st, _status) = rt.load(id)?;
    let cg = st
        .cgroup
        .ok_or_else(|| ResourcesError::NoCgroup(id.to_owned()))?;
    let mut watcher = cg.oom_watcher().map_err(cg_err(id))?;
    loop {
        let (dir, st, status) = match rt.load(id) {
            Ok(x) => x,
            Err(StateError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        drop((dir, st));
        if status == Status::Stopped {
            return Ok(());
        }
        match watcher.wait(Some(interval)).map_err(cg_err(id))? {
            OomWait::Oom(n) => {
                for _ in 0..n {
                    emit(&json!({"type": "oom", "id": id}));
                }
            }
            OomWait::Timeout => match cg.stats() {
                Ok(stats) => emit(&json!({"type": "stats", "id": id, "data": stats})),
                // The container went away between the checks.
                Err(_) => return Ok(()),
            },
            OomWait::Gone => return Ok(()),
        }
    }
}

/// Parses a size as runc's `update` flags take it: bytes, or a number with a k/m/g/t suffix
/// (powers of 1024); `-1` means unlimited.
pub fn parse_size(s: &str) -> Result<i64, ResourcesError> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        ResourcesError::Invalid(format!("{s:?} is not a size (e.g. 256m, 1g, 1048576)"))
    })?;
    if n < 0.0 {
        return Err(ResourcesError::Invalid(format!("{s:?} is negative")));
    }
    Ok((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("256m").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("12zz").is_err());
        assert!(parse_size("-5").is_err());
    }
}
