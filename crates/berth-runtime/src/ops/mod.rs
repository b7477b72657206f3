//! One module per runtime verb. Each takes the runtime root and its own options and returns
//! its own error type; the CLI maps them to messages and exit codes.

pub mod console;
pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod resources;
pub mod spec;
pub mod start;
pub mod wait;

use std::path::{Path, PathBuf};

use crate::state::{ContainerDir, ContainerState, StateError, Status};

/// Where container state lives (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> Result<ContainerDir, StateError> {
        ContainerDir::new(&self.root, id)
    }

    /// Loads container `id` and its live status.
    pub fn load(&self, id: &str) -> Result<(ContainerDir, ContainerState, Status), StateError> {
        let dir = self.dir(id)?;
        let state = dir.load()?;
        let status = state.status(&dir);
        Ok((dir, state, status))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The container is not in a status the operation accepts.
#[derive(Debug, thiserror::Error)]
#[error("container {id:?} is {status}; {what}")]
pub struct WrongStatus {
    pub id: String,
    pub status: Status,
    pub what: &'static str,
}
