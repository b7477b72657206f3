//! Bridge networks: their records, the IPAM leases, and attaching a container's network
//! namespace to one (veth pair, address, MAC, default route, NAT, published ports).
//!
//! State lives under `<root>/networks/`: `<name>.json` per network, `leases/<name>/<ip>` per
//! address handed out (which container, which process supervises it, its published ports),
//! and `lock`, an `flock` held by every change, so two concurrent `berth run`s never get the
//! same address or port and a release never races a setup. A lease is written *before* any
//! interface or rule exists, so a `berth` killed mid-setup leaves a lease that names what to
//! undo; the next attach (or `rm`) sweeps leases whose supervisor is dead and whose container
//! is not running.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::netlink::{Netlink, NetlinkError};
use crate::nft::{self, NetRules, NftError, PortMap};
use crate::ports::{self, PortError, PortSpec};
use crate::subnet::{host_routes, Subnet, SubnetError};

/// The default network's name (Docker's) and its bridge.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "berth0";
const DEFAULT_MTU: u32 = 1500;

/// The extension of a lease whose veth is left to the kernel (see
/// [`Networks::release`]).
const RELEASING: &str = "releasing";

/// How long a releasing lease waits for the kernel before its veth is deleted by hand.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Subnets tried in order for the default network: the first that overlaps no route of the
/// host and no other Berth network wins.
const DEFAULT_CANDIDATES: &[&str] = &[
    "10.210.0.0/16",
    "10.211.0.0/16",
    "10.212.0.0/16",
    "172.30.0.0/16",
    "172.31.0.0/16",
    "192.168.250.0/24",
];

/// A network's record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub mtu: u32,
    /// `--ip-range`: where dynamic addresses come from (the whole subnet when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Subnet>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: i64,
}

impl NetworkConfig {
    /// Whether `ip` may be asked for as a container's fixed address (`--ip`): a host address
    /// of the subnet that is not the gateway's. Whether another container holds it is for the
    /// attach to say.
    pub fn check_static_ip(&self, ip: Ipv4Addr) -> Result<(), NetError> {
        if !self.subnet.contains(ip) || ip == self.subnet.addr || ip == self.subnet.broadcast() {
            return Err(NetError::IpOutside {
                ip,
                subnet: self.subnet,
                network: self.name.clone(),
            });
        }
        if ip == self.gateway {
            return Err(NetError::IpInUse {
                ip,
                network: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// One address handed out to one container.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub container: String,
    pub network: String,
    pub ip: Ipv4Addr,
    /// The host end of the veth pair.
    pub host_ifname: String,
    /// The supervisor that made the lease (pid and start time in clock ticks).
    pub pid: i32,
    pub start_time: u64,
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// Names other containers of a user-defined network resolve to this address.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// What a container got on one network (`inspect`'s `NetworkSettings.Networks.X`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub ports: Vec<PortMap>,
}

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("network {0} not found")]
    NotFound(String),
    #[error("reading network record {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no free subnet for the default network: every candidate overlaps a route of this host or another network")]
    NoDefaultSubnet,
    #[error(transparent)]
    Subnet(#[from] SubnetError),
    #[error("address {ip} is not in the subnet {subnet} of network {network}")]
    IpOutside {
        ip: Ipv4Addr,
        subnet: Subnet,
        network: String,
    },
    #[error("address {ip} is already in use on network {network}")]
    IpInUse { ip: Ipv4Addr, network: String },
    #[error("no free address left in network {network} ({subnet})")]
    Exhausted { network: String, subnet: Subnet },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("configuring the firewall")]
    Nft(#[from] NftError),
    #[error("opening network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tearing down: {0}")]
    Teardown(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("invalid network name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("network {network} has active endpoints ({containers})")]
    InUse { network: String, containers: String },
    #[error("subnet {subnet} overlaps {what}")]
    Overlap { subnet: Subnet, what: String },
    #[error("invalid gateway {gateway}: it must be a host address of subnet {subnet}")]
    Gateway { gateway: Ipv4Addr, subnet: Subnet },
    #[error("invalid --ip-range {range}: it must lie within subnet {subnet}")]
    IpRange { range: Subnet, subnet: Subnet },
    #[error("no free subnet for network {0}: give one with --subnet")]
    NoSubnet(String),
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("writing {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A request to put one container on one network.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    pub container: &'a str,
    pub network: &'a str,
    /// `/proc/PID/ns/net` of the container's init.
    pub netns: &'a Path,
    /// `--ip`: a static address.
    pub ip: Option<Ipv4Addr>,
    /// `-p` specifications (already parsed).
    pub ports: &'a [PortSpec],
    /// The container's name, short id and `--network-alias`es.
    pub aliases: &'a [String],
    /// Whether this network carries the default route (the first one; not a `connect`).
    pub default_route: bool,
}

/// The networks of one Berth root.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_owned();
    move |source| NetError::Io { op, path, source }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it exists.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetError> {
    // `.NAME.PID.tmp`: `with_extension` would give every lease of a /24 (`10.210.0.2`, ...)
    // the same `10.210.0.tmp`.
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("f");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, data).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}

/// MAC of a container interface: Docker's habit, 02:42 and the four bytes of the address, so
/// it is unique on the bridge for as long as the address is.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(|source| NetError::Sysctl {
        path: path.into(),
        source,
    })
}

impl Networks {
    /// The networks under `<root>/networks` (created when missing).
    pub fn open(root: &Path) -> Result<Self, NetError> {
        let dir = root.join("networks");
        std::fs::create_dir_all(dir.join("leases")).map_err(io("creating", &dir))?;
        Ok(Self { dir })
    }

    fn lock(&self) -> Result<Flock<std::fs::File>, NetError> {
        let path = self.dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, source)| NetError::Lock { path, source })
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn load(&self, name: &str) -> Result<Option<NetworkConfig>, NetError> {
        let path = self.record_path(name);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| NetError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    /// Every network record, by name.
    pub fn list(&self) -> Result<Vec<NetworkConfig>, NetError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let e = e.map_err(io("listing", &self.dir))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = n.strip_suffix(".json") {
                if let Some(c) = self.load(name)? {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Network `name`; the default `bridge` network is made on first use.
    pub fn get(&self, name: &str) -> Result<NetworkConfig, NetError> {
        if let Some(c) = self.load(name)? {
            return Ok(c);
        }
        if name != DEFAULT_NETWORK {
            return Err(NetError::NotFound(name.to_owned()));
        }
        let _lock = self.lock()?;
        self.default_locked()
    }

    fn default_locked(&self) -> Result<NetworkConfig, NetError> {
        if let Some(c) = self.load(DEFAULT_NETWORK)? {
            return Ok(c);
        }
        let mut taken = host_routes();
        taken.extend(self.list()?.into_iter().map(|n| n.subnet));
        let subnet = DEFAULT_CANDIDATES
            .iter()
            .map(|s| s.parse::<Subnet>().expect("candidates are valid"))
            .find(|c| !taken.iter().any(|t| t.overlaps(c)))
            .ok_or(NetError::NoDefaultSubnet)?;
        let cfg = NetworkConfig {
            name: DEFAULT_NETWORK.into(),
            id: network_id(DEFAULT_NETWORK),
            driver: "bridge".into(),
            bridge: DEFAULT_BRIDGE.into(),
            gateway: subnet.first_host(),
            subnet,
            internal: false,
            mtu: DEFAULT_MTU,
            ip_range: None,
            labels: BTreeMap::new(),
            created: now_secs(),
        };
        write_atomic(
            &self.record_path(DEFAULT_NETWORK),
            &serde_json::to_vec_pretty(&cfg).expect("a network record serialises"),
        )?;
        Ok(cfg)
    }

    fn lease_dir(&self, network: &str) -> PathBuf {
        self.dir.join("leases").join(network)
    }

    /// Every lease of every network.
    pub fn leases(&self) -> Result<Vec<Lease>, NetError> {
        let mut out = Vec::new();
        let base = self.dir.join("leases");
        for net in std::fs::read_dir(&base)
            .map_err(io("listing", &base))?
            .flatten()
        {
            for l in std::fs::read_dir(net.path())
                .map_err(io("listing", &net.path()))?
                .flatten()
            {
                if l.path()
                    .extension()
                    .is_some_and(|e| e == "tmp" || e == RELEASING)
                {
                    continue;
                }
                if let Ok(b) = std::fs::read(l.path()) {
                    if let Ok(lease) = serde_json::from_slice::<Lease>(&b) {
                        out.push(lease);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The leases of container `id` (its addresses and published ports).
    pub fn leases_of(&self, id: &str) -> Result<Vec<Lease>, NetError> {
        Ok(self
            .leases()?
            .into_iter()
            .filter(|l| l.container == id)
            .collect())
    }

    fn rules(&self) -> Result<Vec<NetRules>, NetError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|n| NetRules {
                bridge: n.bridge,
                subnet: n.subnet,
                internal: n.internal,
            })
            .collect())
    }

    /// Removes what `lease` holds on the host: its veth, its port elements, its file. Best
    /// effort; returns the problems.
    fn undo_lease(&self, nl: &mut Option<Netlink>, lease: &Lease) -> Vec<String> {
        let mut problems = Vec::new();
        if nl.is_none() {
            match Netlink::new() {
                Ok(n) => *nl = Some(n),
                Err(e) => problems.push(chain(&e)),
            }
        }
        if let Some(n) = nl.as_mut() {
            if let Err(e) = n.delete_link(&lease.host_ifname) {
                problems.push(chain(&e));
            }
        }
        if !lease.ports.is_empty() {
            nft::apply_best_effort(&nft::delete_ports(&lease.ports));
        }
        if !problems.is_empty() {
            // The lease names the veth that could not be deleted: kept for the next sweep.
            return problems;
        }
        let path = self.lease_dir(&lease.network).join(lease.ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("removing {}: {e}", path.display())),
        }
        problems
    }

    /// With the lock held: makes the firewall match the network records. The rule set is a
    /// function of the networks alone, so it is applied only when it changed (or the table
    /// is missing: a `nft flush ruleset`, a new network namespace): `nft.rules` keeps the
    /// last script applied. A container without published ports then costs no nft process.
    fn ensure_rules(&self) -> Result<(), NetError> {
        let script = nft::ruleset(&self.rules()?);
        let stamp = self.dir.join("nft.rules");
        let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s == script)
            && nft::table_exists().unwrap_or(false);
        if !current {
            nft::apply(&script)?;
            write_atomic(&stamp, script.as_bytes())?;
        }
        Ok(())
    }

    /// Leases given back by containers that exited, whose veth the kernel removes with
    /// the container's network namespace (see [`Self::release`]): the file, the
    /// host veth's index and the lease.
    fn releasing(&self) -> Vec<(PathBuf, u32, Lease)> {
        let mut out = Vec::new();
        let base = self.dir.join("leases");
        for net in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            for l in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = l.path();
                if path.extension().is_none_or(|e| e != RELEASING) {
                    continue;
                }
                // <ip>.<ifindex>.releasing
                let index = path
                    .file_stem()
                    .and_then(|s| Path::new(s).extension())
                    .and_then(|i| i.to_str())
                    .and_then(|i| i.parse().ok());
                let lease = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Lease>(&b).ok());
                if let (Some(index), Some(lease)) = (index, lease) {
                    out.push((path, index, lease));
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out
    }

    /// With the lock held: forgets the releasing leases whose veth is gone; deletes the veth
    /// of those older than [`RELEASE_GRACE`] (a namespace still held by someone, e.g. a
    /// container that joined it) before forgetting them. Returns the problems.
    fn reap_releasing(&self, nl: &mut Option<Netlink>) -> Vec<String> {
        let mut problems = Vec::new();
        let pending = self.releasing();
        if pending.is_empty() {
            return problems;
        }
        if nl.is_none() {
            match Netlink::new() {
                Ok(n) => *nl = Some(n),
                Err(e) => return vec![chain(&e)],
            }
        }
        let n = nl.as_mut().expect("just made");
        for (path, index, lease) in pending {
            let alive = match n.link_by_index(index) {
                Ok(link) => link.is_some_and(|l| l.name == lease.host_ifname),
                Err(e) => {
                    problems.push(chain(&e));
                    continue;
                }
            };
            if alive {
                // Since the release: the rename into `.releasing` set the inode's ctime (its
                // mtime is still the attach's).
                let age = std::fs::metadata(&path)
                    .ok()
                    .and_then(|m| {
                        use std::os::unix::fs::MetadataExt;
                        let at = std::time::UNIX_EPOCH
                            + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32);
                        at.elapsed().ok()
                    })
                    .unwrap_or_default();
                if age < RELEASE_GRACE {
                    continue;
                }
                if let Err(e) = n.delete_index(index, &lease.host_ifname) {
                    problems.push(chain(&e));
                    continue;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        problems
    }

    /// Forgets what exited containers gave back (see [`Self::release`]). For the
    /// commands that list networks, and for tests waiting for the kernel.
    pub fn tidy(&self) -> Vec<String> {
        match self.lock() {
            Ok(_lock) => self.reap_releasing(&mut None),
            Err(e) => vec![chain(&e)],
        }
    }

    /// Releases leases whose supervisor is gone and whose container `running` says is not
    /// running (a `berth` killed mid-setup, or a supervisor SIGKILLed). With the lock held.
    fn sweep_locked(&self, nl: &mut Option<Netlink>, running: &dyn Fn(&str) -> bool) {
        let _ = self.reap_releasing(nl);
        for lease in self.leases().unwrap_or_default() {
            if process_start_time(lease.pid) != Some(lease.start_time) && !running(&lease.container)
            {
                let _ = self.undo_lease(nl, &lease);
            }
        }
    }

    /// Releases every lease of container `id`, whose processes are all gone: published
    /// ports and addresses. Idempotent and best effort: returns the networks it left and the
    /// problems met ("already gone" is none).
    ///
    /// Deleting a veth waits for the kernel's RCU (10-40 ms on the test VM, most of a bridge
    /// `run --rm`), while the kernel removes the pair by itself, off anyone's path, when it
    /// destroys the container's network namespace. So the host veth is left to the kernel:
    /// the published ports go now, and the lease is kept as `<ip>.<ifindex>.releasing`, its
    /// address still taken, until the veth is seen gone (by the next attach, release or
    /// listing). A veth still there after [`RELEASE_GRACE`] (a namespace someone else holds)
    /// is deleted then. A lease whose veth is already gone is simply removed.
    pub fn release(&self, id: &str) -> (Vec<String>, Vec<String>) {
        let _lock = match self.lock() {
            Ok(l) => l,
            Err(e) => return (Vec::new(), vec![chain(&e)]),
        };
        let mut nl: Option<Netlink> = None;
        let mut problems = Vec::new();
        let mine = match self.leases_of(id) {
            Ok(l) => l,
            Err(e) => return (Vec::new(), vec![chain(&e)]),
        };
        if mine.is_empty() {
            return (Vec::new(), problems);
        }
        for lease in &mine {
            let link = match nl.as_mut() {
                Some(n) => n.link(&lease.host_ifname),
                None => Netlink::new().and_then(|mut n| {
                    let l = n.link(&lease.host_ifname);
                    nl = Some(n);
                    l
                }),
            };
            let path = self.lease_dir(&lease.network).join(lease.ip.to_string());
            match link {
                Ok(Some(l)) => {
                    if !lease.ports.is_empty() {
                        nft::apply_best_effort(&nft::delete_ports(&lease.ports));
                    }
                    let to = path.with_file_name(format!("{}.{}.{RELEASING}", lease.ip, l.index));
                    if std::fs::rename(&path, &to).is_err() {
                        problems.extend(self.undo_lease(&mut nl, lease));
                    }
                }
                // Already gone (or unknowable): the ordinary release.
                _ => problems.extend(self.undo_lease(&mut nl, lease)),
            }
        }
        (mine.into_iter().map(|l| l.network).collect(), problems)
    }

    /// Puts the container's namespace on a network. `running(id)` tells whether a container
    /// still runs (its leases must be kept even if its supervisor died). On failure, nothing
    /// of this attachment is left.
    pub fn attach(
        &self,
        req: &AttachRequest<'_>,
        running: &dyn Fn(&str) -> bool,
    ) -> Result<Attachment, NetError> {
        let _lock = self.lock()?;
        let mut nl = None;
        self.sweep_locked(&mut nl, running);
        let cfg = match req.network {
            DEFAULT_NETWORK => self.default_locked()?,
            n => self
                .load(n)?
                .ok_or_else(|| NetError::NotFound(n.to_owned()))?,
        };
        let leases = self.leases()?;
        if leases
            .iter()
            .any(|l| l.container == req.container && l.network == cfg.name)
        {
            return Err(NetError::AlreadyConnected {
                container: req.container.to_owned(),
                network: cfg.name.clone(),
            });
        }
        // Addresses of releasing leases stay taken until their veth is gone.
        let used: Vec<Ipv4Addr> = leases
            .iter()
            .chain(self.releasing().iter().map(|(_, _, l)| l))
            .filter(|l| l.network == cfg.name)
            .map(|l| l.ip)
            .collect();
        let ip = match req.ip {
            Some(ip) => {
                cfg.check_static_ip(ip)?;
                if used.contains(&ip) {
                    return Err(NetError::IpInUse {
                        ip,
                        network: cfg.name.clone(),
                    });
                }
                ip
            }
            None => cfg
                .ip_range
                .unwrap_or(cfg.subnet)
                .hosts()
                .find(|a| cfg.subnet.contains(*a) && *a != cfg.gateway && !used.contains(a))
                .ok_or_else(|| NetError::Exhausted {
                    network: cfg.name.clone(),
                    subnet: cfg.subnet,
                })?,
        };
        let taken: Vec<PortMap> = leases.iter().flat_map(|l| l.ports.clone()).collect();
        let port_maps = ports::resolve(req.ports, ip, &taken)?;
        // The lowest interface slot none of the container's current leases uses: `vb<id>N`
        // on the host, `ethN` inside (a disconnect frees its slot for the next connect).
        let prefix = format!("vb{}", &req.container[..9.min(req.container.len())]);
        let slot = (0..)
            .find(|n| {
                let name = format!("{prefix}{n}");
                !leases
                    .iter()
                    .any(|l| l.container == req.container && l.host_ifname == name)
            })
            .expect("a free slot");
        let me = std::process::id() as i32;
        let lease = Lease {
            container: req.container.to_owned(),
            network: cfg.name.clone(),
            ip,
            host_ifname: format!("{prefix}{slot}"),
            pid: me,
            start_time: process_start_time(me).unwrap_or(0),
            ports: port_maps,
            aliases: req.aliases.to_vec(),
        };
        // The lease first: whatever happens next, it names what to undo.
        let ldir = self.lease_dir(&cfg.name);
        std::fs::create_dir_all(&ldir).map_err(io("creating", &ldir))?;
        write_atomic(
            &ldir.join(ip.to_string()),
            &serde_json::to_vec(&lease).expect("a lease serialises"),
        )?;
        match self.plumb(&mut nl, &cfg, &lease, req, &format!("eth{slot}")) {
            Ok(()) => Ok(Attachment {
                network: cfg.name.clone(),
                ip,
                prefix: cfg.subnet.prefix,
                gateway: cfg.gateway,
                mac: mac_string(mac_for(ip)),
                ports: lease.ports.clone(),
            }),
            Err(e) => {
                let _ = self.undo_lease(&mut nl, &lease);
                Err(e)
            }
        }
    }

    /// Bridge, firewall, veth and the container side, for a lease already on disk.
    fn plumb(
        &self,
        nl: &mut Option<Netlink>,
        cfg: &NetworkConfig,
        lease: &Lease,
        req: &AttachRequest<'_>,
        ifname: &str,
    ) -> Result<(), NetError> {
        if nl.is_none() {
            *nl = Some(Netlink::new()?);
        }
        let host = nl.as_mut().expect("just made");
        // 1. The bridge, with the gateway address, up (each step idempotent).
        if host.link(&cfg.bridge)?.is_none() {
            match host.create_bridge(&cfg.bridge, cfg.mtu) {
                Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {}
                other => other?,
            }
        }
        host.add_address(&cfg.bridge, cfg.gateway, cfg.subnet.prefix)?;
        host.set_up(&cfg.bridge)?;
        // 2. Sysctls of this namespace: forwarding for NAT (not needed by an internal
        //    network), and 127.0.0.1 routable to the bridge for ports published there.
        if !cfg.internal {
            let fwd = "/proc/sys/net/ipv4/ip_forward";
            if std::fs::read_to_string(fwd)
                .map(|v| v.trim() == "0")
                .unwrap_or(false)
            {
                let orig = self.dir.join("ip_forward.orig");
                if !orig.exists() {
                    write_atomic(&orig, b"0\n")?;
                }
                write_sysctl(fwd, "1")?;
            }
        }
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge),
            "1",
        )?;
        // 3. The firewall: the static rule set (when it changed), then this lease's ports.
        self.ensure_rules()?;
        if !lease.ports.is_empty() {
            nft::apply(&nft::add_ports(&lease.ports))?;
        }
        // 4. The veth pair, the peer born inside the container's namespace.
        let ns = std::fs::File::open(req.netns).map_err(|source| NetError::Netns {
            path: req.netns.to_owned(),
            source,
        })?;
        let veth = |host: &mut Netlink| {
            host.create_veth(
                &lease.host_ifname,
                ifname,
                ns.as_fd(),
                mac_for(lease.ip),
                cfg.mtu,
            )
        };
        match veth(host) {
            // The name is taken by the veth of this container's previous run, released and
            // still waiting for the kernel to destroy its namespace (a quick restart): that
            // one goes now. Any other holder of the name is not ours to delete.
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                let Some((path, index, _)) = self
                    .releasing()
                    .into_iter()
                    .find(|(_, _, l)| l.host_ifname == lease.host_ifname)
                else {
                    return Err(e.into());
                };
                host.delete_index(index, &lease.host_ifname)?;
                let _ = std::fs::remove_file(path);
                veth(host)?;
            }
            other => other?,
        }
        host.attach_to_bridge(&lease.host_ifname, &cfg.bridge)?;
        // 5. Inside: address, links up, default route (none on an internal network, as
        //    Docker: nothing outside is reachable anyway).
        let mut inner = Netlink::in_netns(ns.as_fd(), &req.netns.display().to_string())?;
        // `lo` is already up: the engine brings it up in every namespace it makes.
        inner.add_address(ifname, lease.ip, cfg.subnet.prefix)?;
        inner.set_up(ifname)?;
        if !cfg.internal && req.default_route {
            inner.add_default_route(cfg.gateway)?;
        }
        Ok(())
    }
}

/// `berth network create` options.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub subnet: Option<Subnet>,
    pub ip_range: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// Subnets tried for a user-defined network without `--subnet` (podman's habit: one /24 each).
fn user_candidates() -> impl Iterator<Item = Subnet> {
    (0u32..=255).map(|i| Subnet {
        addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 213, 0, 0)) + (i << 8)),
        prefix: 24,
    })
}

/// A host name a hosts file can carry (RFC 1123 labels).
pub fn valid_hostname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn valid_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Networks {
    /// `berth network create`: a record only; the bridge appears with the first container.
    pub fn create(&self, name: &str, opts: &CreateOptions) -> Result<NetworkConfig, NetError> {
        if !valid_name(name) || name.len() > 64 {
            return Err(NetError::InvalidName(name.to_owned()));
        }
        let _lock = self.lock()?;
        if name == DEFAULT_NETWORK || self.load(name)?.is_some() {
            return Err(NetError::Exists(name.to_owned()));
        }
        let others = self.list()?;
        let routes = host_routes();
        let clash = |s: &Subnet| -> Option<String> {
            if let Some(n) = others.iter().find(|n| n.subnet.overlaps(s)) {
                return Some(format!("network {} ({})", n.name, n.subnet));
            }
            routes
                .iter()
                .find(|r| r.overlaps(s))
                .map(|r| format!("a route of this host ({r})"))
        };
        let subnet = match opts.subnet {
            Some(s) => {
                if let Some(what) = clash(&s) {
                    return Err(NetError::Overlap { subnet: s, what });
                }
                s
            }
            None => user_candidates()
                .find(|c| clash(c).is_none())
                .ok_or_else(|| NetError::NoSubnet(name.to_owned()))?,
        };
        let gateway = opts.gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(NetError::Gateway { gateway, subnet });
        }
        if let Some(r) = opts.ip_range {
            if !(subnet.contains(r.addr) && r.prefix >= subnet.prefix) {
                return Err(NetError::IpRange { range: r, subnet });
            }
        }
        let id = network_id(name);
        let cfg = NetworkConfig {
            name: name.to_owned(),
            bridge: format!("br-{}", &id[..12]),
            id,
            driver: "bridge".into(),
            subnet,
            gateway,
            internal: opts.internal,
            mtu: DEFAULT_MTU,
            ip_range: opts.ip_range,
            labels: opts.labels.clone(),
            created: now_secs(),
        };
        write_atomic(
            &self.record_path(name),
            &serde_json::to_vec_pretty(&cfg).expect("a network record serialises"),
        )?;
        Ok(cfg)
    }

    /// `berth network rm`: refused for the default network and while containers are on it.
    /// Removes the bridge and the network's firewall rules.
    pub fn remove(&self, name: &str) -> Result<NetworkConfig, NetError> {
        if name == DEFAULT_NETWORK {
            return Err(NetError::Predefined(name.to_owned()));
        }
        let _lock = self.lock()?;
        let cfg = self
            .load(name)?
            .ok_or_else(|| NetError::NotFound(name.to_owned()))?;
        let leases = self.leases()?;
        let users: Vec<&str> = leases
            .iter()
            .filter(|l| l.network == name)
            .map(|l| &l.container[..12.min(l.container.len())])
            .collect();
        if !users.is_empty() {
            return Err(NetError::InUse {
                network: name.to_owned(),
                containers: users.join(", "),
            });
        }
        let mut nl = Netlink::new()?;
        // Veths of exited containers of this network still on the bridge go first.
        for (path, index, lease) in self.releasing() {
            if lease.network == name {
                if nl
                    .link_by_index(index)?
                    .is_some_and(|l| l.name == lease.host_ifname)
                {
                    nl.delete_index(index, &lease.host_ifname)?;
                }
                let _ = std::fs::remove_file(path);
            }
        }
        nl.delete_link(&cfg.bridge)?;
        // The record goes last: until the bridge is gone, it is what names it (for a retry of
        // `network rm`, or `system reset`).
        let _ = std::fs::remove_dir(self.lease_dir(name));
        let path = self.record_path(name);
        std::fs::remove_file(&path).map_err(io("removing", &path))?;
        // The other networks' rules stay, this one's go.
        self.ensure_rules()?;
        Ok(cfg)
    }

    /// `berth system reset`: everything Berth's networking put on the host, gone: every
    /// lease and its veth, every network's record and bridge, the `ip berth` table, and
    /// `net.ipv4.ip_forward` back to 0 if Berth turned it on. Call it once no container runs.
    /// Best effort: carries on past failures and returns them.
    pub fn reset(&self) -> Vec<String> {
        let _lock = match self.lock() {
            Ok(l) => l,
            Err(e) => return vec![chain(&e)],
        };
        let mut problems = Vec::new();
        let mut nl = match Netlink::new() {
            Ok(n) => Some(n),
            Err(e) => {
                problems.push(chain(&e));
                None
            }
        };
        for lease in self.leases().unwrap_or_default() {
            problems.extend(self.undo_lease(&mut nl, &lease));
        }
        for (path, index, lease) in self.releasing() {
            if let Some(n) = nl.as_mut() {
                if n.link_by_index(index)
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.name == lease.host_ifname)
                {
                    if let Err(e) = n.delete_index(index, &lease.host_ifname) {
                        problems.push(chain(&e));
                    }
                }
            }
            let _ = std::fs::remove_file(path);
        }
        for cfg in self.list().unwrap_or_default() {
            if let Some(n) = nl.as_mut() {
                if let Err(e) = n.delete_link(&cfg.bridge) {
                    problems.push(chain(&e));
                }
            }
            let _ = std::fs::remove_dir(self.lease_dir(&cfg.name));
            let path = self.record_path(&cfg.name);
            if let Err(e) = std::fs::remove_file(&path) {
                problems.push(format!("removing {}: {e}", path.display()));
            }
        }
        if nft::table_exists().unwrap_or(true) {
            if let Err(e) = nft::apply(&nft::delete_table()) {
                problems.push(chain(&e));
            }
        }
        let _ = std::fs::remove_file(self.dir.join("nft.rules"));
        let orig = self.dir.join("ip_forward.orig");
        if let Ok(v) = std::fs::read_to_string(&orig) {
            match write_sysctl("/proc/sys/net/ipv4/ip_forward", v.trim()) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&orig);
                }
                Err(e) => problems.push(chain(&e)),
            }
        }
        problems
    }

    /// Detaches container `id` from `network` only (`network disconnect`).
    pub fn release_from(&self, id: &str, network: &str) -> Result<(), NetError> {
        let _lock = self.lock()?;
        let lease = self
            .leases_of(id)?
            .into_iter()
            .find(|l| l.network == network)
            .ok_or_else(|| NetError::NotConnected {
                container: id.to_owned(),
                network: network.to_owned(),
            })?;
        let mut nl = None;
        let problems = self.undo_lease(&mut nl, &lease);
        match problems.into_iter().next() {
            None => Ok(()),
            Some(p) => Err(NetError::Teardown(p)),
        }
    }
}

/// A network's id: 64 hex characters derived from its name and the time (unique enough for
/// a local record; Docker's are random).
pub fn network_id(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for salt in 0u64..4 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (name, salt, std::process::id(), std::time::SystemTime::now()).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
