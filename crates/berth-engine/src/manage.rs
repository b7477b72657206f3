//! The smaller lifecycle verbs: `restart`, `rename`, `pause`/`unpause`, `update` (live limits),
//! `top` (the container's host pids) and `container prune`.

use std::time::Duration;

use berth_runtime::ops;
use serde_json::json;

use crate::bundle::{self, BundleError};
use crate::lifecycle::{StartError, StopError};
use crate::record::{self, RecordError, Status};
use crate::{Engine, RemoveError};

/// Why one of these verbs failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    Stop(#[from] StopError),
    #[error(transparent)]
    Start(#[from] Box<StartError>),
    #[error(transparent)]
    Remove(#[from] Box<RemoveError>),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("changing the cgroup of container {id}")]
    Resources {
        id: String,
        #[source]
        source: Box<ops::resources::ResourcesError>,
    },
    #[error("the new limits do not form valid linux.resources")]
    Patch(#[source] serde_json::Error),
    #[error("reading the bundle config {path}")]
    Config {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("listing the processes of container {id}")]
    Pids {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `update`'s settings (Docker's flags); `None` leaves a limit unchanged.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
}

impl Engine {
    /// `berth restart`: stop (signal, then SIGKILL after the timeout), then start detached.
    pub fn restart(&self, what: &str, timeout: Option<Duration>) -> Result<String, ManageError> {
        let id = self.stop(what, timeout)?;
        self.start_detached(&id).map_err(Box::new)?;
        if let Ok(rec) = self.records.load(&id) {
            self.emit_container(&rec, "restart", &[]);
        }
        Ok(id)
    }

    /// `berth rename`: under the index lock, so the new name cannot be claimed twice.
    pub fn rename(&self, what: &str, new_name: &str) -> Result<String, ManageError> {
        let id = self.records.resolve(what)?;
        let old = self.records.load(&id)?.name;
        self.records.rename(&id, new_name)?;
        if let Ok(rec) = self.records.load(&id) {
            self.emit_container(&rec, "rename", &[("oldName", format!("/{old}"))]);
        }
        Ok(id)
    }

    fn set_paused(&self, what: &str, paused: bool) -> Result<String, ManageError> {
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running {
            return Err(ManageError::NotRunning(what.to_owned()));
        }
        let id = rec.id.clone();
        let res = if paused {
            ops::resources::pause(&self.runtime, &id)
        } else {
            ops::resources::resume(&self.runtime, &id)
        };
        res.map_err(|source| ManageError::Resources {
            id: id.clone(),
            source: Box::new(source),
        })?;
        let _lock = self.records.lock(&id)?;
        let mut r = self.records.load(&id)?;
        r.state.paused = paused;
        self.records.save(&r)?;
        self.emit_container(&r, if paused { "pause" } else { "unpause" }, &[]);
        Ok(id)
    }

    /// `berth pause`: freezes every process of the container (cgroup freezer).
    pub fn pause(&self, what: &str) -> Result<String, ManageError> {
        self.set_paused(what, true)
    }

    /// `berth unpause`.
    pub fn unpause(&self, what: &str) -> Result<String, ManageError> {
        self.set_paused(what, false)
    }

    /// `berth update`: new limits, applied live to a running container and kept in its
    /// record and bundle for the next start.
    pub fn update(&self, what: &str, limits: &Limits) -> Result<String, ManageError> {
        let rec = self.reconcile(self.find(what)?);
        let id = rec.id.clone();
        let mut patch = json!({});
        let mut memory = None;
        let mut nano_cpus = None;
        if let Some(m) = &limits.memory {
            let b = bundle::parse_bytes(m).ok_or_else(|| BundleError::Memory(m.clone()))?;
            patch["memory"] = json!({"limit": b});
            memory = Some(b);
        }
        if let Some(c) = &limits.cpus {
            let n = bundle::parse_cpus(c).ok_or_else(|| BundleError::Cpus(c.clone()))?;
            patch["cpu"] = json!({"period": 100_000u64, "quota": n / 10_000});
            nano_cpus = Some(n);
        }
        if let Some(p) = limits.pids_limit {
            if p == 0 || p < -1 {
                return Err(BundleError::PidsLimit(p).into());
            }
            patch["pids"] = json!({"limit": p});
        }
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_value(patch.clone()).map_err(ManageError::Patch)?;
        if rec.state.status == Status::Running {
            ops::resources::update(&self.runtime, &id, &resources).map_err(|source| {
                ManageError::Resources {
                    id: id.clone(),
                    source: Box::new(source),
                }
            })?;
        }
        let _lock = self.records.lock(&id)?;
        let mut r = self.records.load(&id)?;
        // The bundle keeps the limits for the next start.
        let path = r.bundle.join("config.json");
        let cfg_err = |source: Box<dyn std::error::Error + Send + Sync>| ManageError::Config {
            path: path.clone(),
            source,
        };
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).map_err(|e| cfg_err(Box::new(e)))?)
                .map_err(|e| cfg_err(Box::new(e)))?;
        if let Some(obj) = patch.as_object() {
            for (k, v) in obj {
                cfg["linux"]["resources"][k] = v.clone();
            }
        }
        record::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&cfg).expect("a config serialises"),
        )?;
        if let Some(b) = memory {
            r.memory = b;
        }
        if let Some(n) = nano_cpus {
            r.nano_cpus = n;
        }
        if let Some(p) = limits.pids_limit {
            r.pids_limit = p;
        }
        self.records.save(&r)?;
        self.emit_container(&r, "update", &[]);
        Ok(id)
    }

    /// `berth top`: the host pids of every process of a running container.
    pub fn pids(&self, what: &str) -> Result<Vec<i32>, ManageError> {
        let rec = self.reconcile(self.find(what)?);
        if rec.state.status != Status::Running {
            return Err(ManageError::NotRunning(what.to_owned()));
        }
        let pids_err = |source: Box<dyn std::error::Error + Send + Sync>| ManageError::Pids {
            id: rec.id.clone(),
            source,
        };
        let (_, st, _) = self
            .runtime
            .load(&rec.id)
            .map_err(|e| pids_err(Box::new(e)))?;
        match &st.cgroup {
            Some(cg) => cg.pids().map_err(|e| pids_err(Box::new(e))),
            None => Ok(vec![st.pid]),
        }
    }

    /// `berth system reset`, except the images (the caller's store): every container
    /// (running ones killed) with its anonymous volumes, every named volume, every network
    /// with its bridge and veths, Berth's nftables table, `ip_forward` restored, and the cgroup
    /// parents the engine keeps (`/berth` or the configured one, and those of the containers
    /// removed; one that still holds another root's containers stays). Best effort: carries on past failures and returns them.
    pub fn reset(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut parents = vec![self
            .config
            .runtime
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| "/berth".into())];
        for rec in self.list().unwrap_or_default() {
            if let Some((p, _)) = rec.cgroup_path.rsplit_once('/') {
                if !p.is_empty() && !parents.iter().any(|q| q == p) {
                    parents.push(p.to_owned());
                }
            }
            if let Err(e) = self.remove_with_volumes(&rec.id, true, true) {
                problems.push(crate::exec::chain(&e));
            }
        }
        if let Err(e) = self.volume_prune(true, |_| false) {
            problems.push(crate::exec::chain(&e));
        }
        match self.networks() {
            Ok(n) => problems.extend(n.reset()),
            Err(e) => problems.push(crate::exec::chain(&e)),
        }
        if let Ok(layout) = berth_runtime::cgroups::Layout::detect() {
            for h in &layout.hierarchies {
                for parent in &parents {
                    if let Ok(dir) = h.dir_of(parent) {
                        if dir != h.mount_point {
                            let _ = std::fs::remove_dir(dir);
                        }
                    }
                }
            }
        }
        problems
    }

    /// `berth container prune`: removes every container that is not running; returns their ids.
    pub fn prune(&self) -> Result<Vec<String>, ManageError> {
        let mut removed = Vec::new();
        for rec in self.list()? {
            if rec.state.status != Status::Running {
                match self.remove(&rec.id, false) {
                    Ok(id) => removed.push(id),
                    // Started or removed by someone else meanwhile.
                    Err(RemoveError::Running(_)) | Err(RemoveError::Record(_)) => {}
                    Err(e) => return Err(Box::new(e).into()),
                }
            }
        }
        Ok(removed)
    }
}
