//! The container's network, set up between the runtime's `create` (the namespace exists, the
//! command has not started) and `start`, and released on every exit path (`finish` after a
//! run, `rm`, a failed start, and the sweep of leases whose supervisor was killed).
//!
//! What a container asked for is planned at `create` (validated before anything exists) and
//! kept in `<container dir>/network.json`; what it got lives in berth-net's leases, which exist
//! exactly while it runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_net::{Attachment, NetError, Networks, PortSpec};

use crate::bundle::{BundleError, ImageConfig, RunOptions};
use crate::lifecycle::StartError;
use crate::record::{ContainerRecord, RecordError, Status};
use crate::Engine;

/// Why a container's network could not be planned or set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bringing up the loopback interface in {ns}")]
    Loopback {
        ns: PathBuf,
        #[source]
        source: berth_net::NetlinkError,
    },
    #[error("attaching to network {network}")]
    Attach {
        network: String,
        #[source]
        source: NetError,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Port(#[from] berth_net::PortError),
    #[error("invalid --network-alias {0:?}: expected a host name")]
    Alias(String),
    #[error("invalid --ip {0:?}: expected an IPv4 address")]
    Ip(String),
    #[error("this needs a bridge network (the default or a user-defined one), not --network {0}")]
    IpNeedsBridge(String),
    #[error("reading the network plan {path}")]
    Plan {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// What `create` decided about the container's network.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetPlan {
    /// The bridge networks to attach to, in order (`eth0`, `eth1`...); empty for `none`.
    pub networks: Vec<String>,
    /// `-p` and `-P` specifications, normalised (`[ip:]hostPort:containerPort/proto`).
    pub ports: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias`es.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Whether a network mode gives the container a namespace of its own (which Berth then sets
/// up); `host`, `container:X` and `ns:PATH` use one that exists already.
pub fn owns_namespace(mode: &str) -> bool {
    !(mode == "host" || mode.starts_with("container:") || mode.starts_with("ns:"))
}

/// The mode a container gets without `--network`: Docker's default bridge.
pub const DEFAULT_MODE: &str = berth_net::bridge::DEFAULT_NETWORK;

impl Engine {
    pub fn networks(&self) -> Result<Networks, NetError> {
        Networks::open(&self.root)
    }

    /// Validates the network options against the image and the existing networks; nothing
    /// is created but the default network's record.
    pub(crate) fn plan_network(
        &self,
        opts: &RunOptions,
        img: &ImageConfig,
    ) -> Result<NetPlan, NetworkError> {
        let mode = opts.network.as_deref().unwrap_or(DEFAULT_MODE);
        let mut plan = NetPlan::default();
        let bridged = owns_namespace(mode) && mode != "none";
        let ip = match &opts.ip {
            None => None,
            Some(s) => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| NetworkError::Ip(s.clone()))?,
            ),
        };
        if (ip.is_some() || !opts.extra_networks.is_empty()) && !bridged {
            return Err(NetworkError::IpNeedsBridge(mode.to_owned()));
        }
        if !bridged {
            return Ok(plan);
        }
        let cfg = self.networks()?.get(mode)?;
        if let Some(ip) = ip {
            // Refused now, not at start: the subnet's own addresses and the gateway's.
            cfg.check_static_ip(ip)?;
        }
        plan.networks.push(mode.to_owned());
        for n in &opts.extra_networks {
            if !owns_namespace(n) || n == "none" || !crate::bundle::valid_network_name(n) {
                return Err(NetworkError::IpNeedsBridge(n.clone()));
            }
            let extra = self.networks()?.get(n)?;
            if plan.networks.contains(&extra.name) {
                return Err(NetError::AlreadyConnected {
                    container: opts.name.clone().unwrap_or_default(),
                    network: extra.name,
                }
                .into());
            }
            plan.networks.push(extra.name);
        }
        plan.ip = ip;
        for a in &opts.network_aliases {
            if !berth_net::bridge::valid_hostname(a) {
                return Err(NetworkError::Alias(a.clone()));
            }
            plan.aliases.push(a.clone());
        }
        for p in &opts.publish {
            p.parse::<PortSpec>()?;
            plan.ports.push(p.clone());
        }
        if opts.publish_all {
            for key in img.exposed_ports.iter().flat_map(|m| m.keys()) {
                // "80/tcp", "53/udp", "8000-8002/tcp": ephemeral host ports.
                let spec: PortSpec = key.parse()?;
                if !plan
                    .ports
                    .iter()
                    .filter_map(|p| p.parse::<PortSpec>().ok())
                    .any(|p| p.container_ports == spec.container_ports && p.proto == spec.proto)
                {
                    plan.ports.push(key.clone());
                }
            }
        }
        Ok(plan)
    }

    fn plan_path(&self, id: &str) -> PathBuf {
        self.records.dir(id).join("network.json")
    }

    pub(crate) fn save_plan(&self, id: &str, plan: &NetPlan) -> Result<(), RecordError> {
        // No file means loopback only (see load_plan): nothing to write for that.
        if *plan == NetPlan::default() {
            return match std::fs::remove_file(self.plan_path(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RecordError::Io {
                    step: "removing",
                    path: self.plan_path(id),
                    source: e,
                }),
                _ => Ok(()),
            };
        }
        crate::record::write_atomic(
            &self.plan_path(id),
            &serde_json::to_vec(plan).expect("a plan serialises"),
        )
    }

    fn load_plan(&self, id: &str) -> Result<NetPlan, NetworkError> {
        let path = self.plan_path(id);
        match std::fs::read(&path) {
            // A damaged plan must not start the container without its networks.
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetworkError::Plan {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            // A container created before networking existed: loopback only.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NetPlan::default()),
            Err(source) => Err(NetworkError::Plan { path, source }),
        }
    }

    /// Whether container `id` still runs (its init is alive): its leases must be kept even
    /// when its supervisor died.
    fn still_running(&self, id: &str) -> bool {
        match self.records.load(id) {
            Ok(r) if r.state.status == Status::Running => self
                .runtime
                .load(id)
                .map(|(_, st, _)| st.init_alive())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Sets up the network namespace of the created (not yet started) container `rec`, whose
    /// init is `pid`. On failure, whatever was attached is released again.
    pub(crate) fn network_up(&self, rec: &ContainerRecord, pid: i32) -> Result<(), StartError> {
        if !owns_namespace(&rec.network_mode) {
            return Ok(());
        }
        let err = |source| StartError::Network {
            id: rec.id.clone(),
            source: Box::new(source),
        };
        let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        berth_net::loopback_up(&ns).map_err(|source| {
            err(NetworkError::Loopback {
                ns: ns.clone(),
                source,
            })
        })?;
        let plan = self.load_plan(&rec.id).map_err(err)?;
        if plan.networks.is_empty() {
            return Ok(());
        }
        match self.attach_all(rec, &plan, &ns) {
            Ok(atts) => {
                // The container's own name resolves to its address (Docker's /etc/hosts),
                // replacing what an earlier run of it wrote.
                let leases = self.networks().and_then(|n| n.leases()).unwrap_or_default();
                self.rewrite_hosts(&leases, &[&rec.id]);
                for a in &atts {
                    self.refresh_hosts(&a.network);
                }
                Ok(())
            }
            Err(e) => {
                self.network_down(rec);
                Err(err(e))
            }
        }
    }

    fn attach_all(
        &self,
        rec: &ContainerRecord,
        plan: &NetPlan,
        ns: &Path,
    ) -> Result<Vec<Attachment>, NetworkError> {
        let nets = self.networks()?;
        let ports: Vec<PortSpec> = plan
            .ports
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        let aliases = aliases_of(rec, &plan.aliases);
        let mut out = Vec::new();
        for (i, network) in plan.networks.iter().enumerate() {
            let req = berth_net::AttachRequest {
                container: &rec.id,
                network,
                netns: ns,
                ip: if i == 0 { plan.ip } else { None },
                // Published ports go to the first network's address.
                ports: if i == 0 { &ports } else { &[] },
                aliases: &aliases,
                default_route: i == 0,
            };
            let a = nets
                .attach(&req, &|id| self.still_running(id))
                .map_err(|source| NetworkError::Attach {
                    network: network.clone(),
                    source,
                })?;
            out.push(a);
        }
        Ok(out)
    }

    /// Releases every address, veth and published port of container `id`. Idempotent and
    /// best effort: returns the problems met.
    pub(crate) fn network_down(&self, rec: &ContainerRecord) -> Vec<String> {
        // Only a bridge-mode container can hold leases (`network connect` refuses the others):
        // a `--network none` run does not even open the lease directory.
        if !owns_namespace(&rec.network_mode) || rec.network_mode == "none" {
            return Vec::new();
        }
        let id = rec.id.as_str();
        match self.networks() {
            Ok(n) => {
                // Only called once the container's processes are gone: its veth goes with
                // its network namespace, in the kernel (see berth_net's `release`).
                let (had, problems) = n.release(id);
                for net in had {
                    self.refresh_hosts(&net);
                }
                problems
            }
            Err(e) => vec![crate::exec::chain(&e)],
        }
    }

    /// Name resolution on a user-defined network: rewrites the hosts file of every container
    /// on `network` so it lists every other one (name, short id, aliases). Lines Berth manages
    /// end in `# berth-net`; the rest of the file is kept. The default `bridge` network has no
    /// name resolution (Docker's rule). Best effort.
    pub(crate) fn refresh_hosts(&self, network: &str) {
        if network == DEFAULT_MODE {
            return;
        }
        let Ok(leases) = self.networks().and_then(|n| n.leases()) else {
            return;
        };
        let ids: Vec<&str> = leases
            .iter()
            .filter(|l| l.network == network)
            .map(|l| l.container.as_str())
            .collect();
        self.rewrite_hosts(&leases, &ids);
    }

    /// Rewrites the Berth-managed lines of the hosts files of containers `ids` from `leases`:
    /// each file holds the peers of every user network its container is on.
    fn rewrite_hosts(&self, leases: &[berth_net::Lease], ids: &[&str]) {
        for &id in ids {
            let my_nets: Vec<&str> = leases
                .iter()
                .filter(|l| l.container == id && l.network != DEFAULT_MODE)
                .map(|l| l.network.as_str())
                .collect();
            // Its own address first (the first network it was attached to), then its peers.
            let mut lines = String::new();
            if let (Some(own), Ok(rec)) = (
                leases
                    .iter()
                    .filter(|l| l.container == id)
                    .min_by_key(|l| (l.host_ifname.len(), l.host_ifname.clone())),
                self.records.load(id),
            ) {
                lines.push_str(&format!("{}\t{} # berth-net\n", own.ip, rec.hostname));
            }
            for peer in leases
                .iter()
                .filter(|l| l.container != id && my_nets.contains(&l.network.as_str()))
            {
                lines.push_str(&format!(
                    "{}\t{} # berth-net\n",
                    peer.ip,
                    peer.aliases.join(" ")
                ));
            }
            let p = self.records.dir(id).join("hosts");
            if let Ok(s) = std::fs::read_to_string(&p) {
                let mut kept: String = s
                    .lines()
                    .filter(|l| !l.ends_with("# berth-net"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                kept.push_str(&lines);
                if kept != s {
                    // In place: the file is bind-mounted by inode.
                    let _ = std::fs::write(&p, kept);
                }
            }
        }
    }

    /// `berth network connect`: attaches a running container to one more network (and keeps
    /// it in its plan, so a restart attaches it again).
    pub fn network_connect(
        &self,
        container: &str,
        network: &str,
        ip: Option<Ipv4Addr>,
        aliases: &[String],
    ) -> Result<Attachment, NetworkError> {
        let rec = self.reconcile(self.find(container)?);
        let mut plan = self.load_plan(&rec.id)?;
        let nets = self.networks()?;
        nets.get(network)?;
        if !owns_namespace(&rec.network_mode) || rec.network_mode == "none" {
            return Err(NetworkError::IpNeedsBridge(rec.network_mode.clone()));
        }
        if plan.networks.iter().any(|n| n == network) {
            return Err(NetError::AlreadyConnected {
                container: container.to_owned(),
                network: network.to_owned(),
            }
            .into());
        }
        let mut all_aliases = plan.aliases.clone();
        all_aliases.extend(aliases.iter().cloned());
        let att = if rec.state.status == Status::Running && rec.state.pid > 0 {
            let ns = PathBuf::from(format!("/proc/{}/ns/net", rec.state.pid));
            let names = aliases_of(&rec, &all_aliases);
            let req = berth_net::AttachRequest {
                container: &rec.id,
                network,
                netns: &ns,
                ip,
                ports: &[],
                aliases: &names,
                default_route: false,
            };
            let a = nets.attach(&req, &|id| self.still_running(id))?;
            self.refresh_hosts(network);
            Some(a)
        } else {
            None
        };
        plan.networks.push(network.to_owned());
        plan.aliases = all_aliases;
        self.save_plan(&rec.id, &plan)?;
        let cfg = nets.get(network)?;
        Ok(att.unwrap_or(Attachment {
            network: network.to_owned(),
            ip: Ipv4Addr::UNSPECIFIED,
            prefix: cfg.subnet.prefix,
            gateway: cfg.gateway,
            mac: String::new(),
            ports: Vec::new(),
        }))
    }

    /// `berth network disconnect`: the container leaves `network` now and on later starts.
    pub fn network_disconnect(&self, container: &str, network: &str) -> Result<(), NetworkError> {
        let rec = self.find(container)?;
        let mut plan = self.load_plan(&rec.id)?;
        let nets = self.networks()?;
        let was_planned = plan.networks.iter().any(|n| n == network);
        let leased = nets
            .leases_of(&rec.id)?
            .iter()
            .any(|l| l.network == network);
        if !was_planned && !leased {
            return Err(NetError::NotConnected {
                container: container.to_owned(),
                network: network.to_owned(),
            }
            .into());
        }
        if leased {
            nets.release_from(&rec.id, network)?;
            self.refresh_hosts(network);
            // The container itself forgets the network's names.
            self.rewrite_hosts(&nets.leases().unwrap_or_default(), &[&rec.id]);
        }
        plan.networks.retain(|n| n != network);
        self.save_plan(&rec.id, &plan)?;
        Ok(())
    }

    /// The containers (id, name) attached to `network` now.
    pub fn network_containers(&self, network: &str) -> Vec<(berth_net::Lease, String)> {
        let leases = self.networks().and_then(|n| n.leases()).unwrap_or_default();
        leases
            .into_iter()
            .filter(|l| l.network == network)
            .map(|l| {
                let name = self
                    .records
                    .load(&l.container)
                    .map(|r| r.name)
                    .unwrap_or_default();
                (l, name)
            })
            .collect()
    }

    /// The published ports of a running container (`berth port`), from its leases.
    pub fn ports(&self, what: &str) -> Result<Vec<berth_net::nft::PortMap>, NetworkError> {
        let rec = self.find(what)?;
        Ok(self
            .networks()?
            .leases_of(&rec.id)?
            .into_iter()
            .flat_map(|l| l.ports)
            .collect())
    }

    /// The addresses a running container holds, per network (`inspect`).
    pub fn attachments(&self, id: &str) -> Vec<berth_net::Lease> {
        self.networks()
            .and_then(|n| n.leases_of(id))
            .unwrap_or_default()
    }
}

/// The names a container answers to on a user-defined network: its name, its short id and its
/// `--network-alias`es.
fn aliases_of(rec: &ContainerRecord, extra: &[String]) -> Vec<String> {
    let mut v = vec![rec.name.clone(), rec.id[..12].to_owned()];
    for a in extra {
        if !v.contains(a) {
            v.push(a.clone());
        }
    }
    v
}
