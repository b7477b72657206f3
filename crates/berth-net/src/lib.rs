//! Berth's container networking: what a container's network namespace gets and what the host
//! keeps for it.
//!
//! It promises: `lo` up in every new network namespace; bridge networks (the default `bridge`,
//! bridge `berth0`) with one veth pair per container, an address from an IPAM that never hands
//! out one address twice (a file lock serialises concurrent `berth run`s) and a default route;
//! outbound NAT and published ports as nftables rules in Berth's own table; teardown that is
//! idempotent and best effort (it continues past errors and treats "already gone" as success).
//!
//! It talks to the kernel through synchronous netlink ([`netlink`]) and to nftables through
//! `nft -f -` (one atomic transaction per change). It knows nothing of images, bundles or
//! container records: the engine tells it which container ids are still alive.

pub mod netlink;

use std::os::fd::AsFd;
use std::path::Path;

pub use netlink::{Netlink, NetlinkError};

/// Brings `lo` up in the network namespace at `ns_path` (`/proc/PID/ns/net`). Docker's
/// `--network none` has a working loopback; a fresh namespace's `lo` is down.
pub fn loopback_up(ns_path: &Path) -> Result<(), NetlinkError> {
    let f = std::fs::File::open(ns_path).map_err(NetlinkError::Socket)?;
    let mut nl = Netlink::in_netns(f.as_fd(), &ns_path.display().to_string())?;
    nl.set_up("lo")
}

pub mod bridge;
pub mod nft;
pub mod ports;
pub mod subnet;

pub use bridge::{AttachRequest, Attachment, Lease, NetError, NetworkConfig, Networks};
pub use ports::{PortError, PortSpec};
pub use subnet::Subnet;
