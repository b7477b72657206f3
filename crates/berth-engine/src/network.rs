//! The container's network, set up between the runtime's `create` (the namespace exists, the
//! command has not started) and `start`, and released on every exit path.

use std::path::PathBuf;

use crate::lifecycle::StartError;
use crate::record::ContainerRecord;
use crate::Engine;

/// Why a container's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bringing up the loopback interface in {ns}")]
    Loopback {
        ns: PathBuf,
        #[source]
        source: berth_net::NetlinkError,
    },
}

/// Whether a network mode gives the container a namespace of its own (which Berth then sets
/// up); `host`, `container:X` and `ns:PATH` use one that exists already.
pub fn owns_namespace(mode: &str) -> bool {
    !(mode == "host" || mode.starts_with("container:") || mode.starts_with("ns:"))
}

impl Engine {
    /// Sets up the network namespace of the created (not yet started) container `rec`, whose
    /// init is `pid`.
    pub(crate) fn network_up(&self, rec: &ContainerRecord, pid: i32) -> Result<(), StartError> {
        if !owns_namespace(&rec.network_mode) {
            return Ok(());
        }
        let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let err = |source| StartError::Network {
            id: rec.id.clone(),
            source,
        };
        berth_net::loopback_up(&ns).map_err(|source| err(NetworkError::Loopback { ns, source }))
    }
}
