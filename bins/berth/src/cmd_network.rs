//! `berth network create|ls|inspect|rm|prune|connect|disconnect`: thin wrappers over the
//! engine's networks (berth-net records and leases).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_engine::berth_net::bridge::{CreateOptions, NetworkConfig};
use berth_engine::berth_net::Subnet;
use berth_engine::exec::chain;
use berth_engine::Engine;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum NetworkCmd {
    /// Create a bridge network.
    Create {
        name: String,
        /// Driver (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// IPv4 subnet, e.g. 10.90.0.0/24 (default: a free /24).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: the subnet's first host).
        #[arg(long)]
        gateway: Option<String>,
        /// Allocate dynamic addresses from this sub-range of the subnet.
        #[arg(long)]
        ip_range: Option<String>,
        /// No route to the outside (no NAT, forwarding dropped).
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        label: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every user-defined network no container uses.
    Prune {
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        network: String,
        container: String,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        alias: Vec<String>,
    },
    /// Disconnect a container from a network.
    Disconnect {
        network: String,
        container: String,
        /// Accepted for Docker compatibility.
        #[arg(short, long)]
        force: bool,
    },
}

fn inspect_json(e: &Engine, n: &NetworkConfig) -> Value {
    let containers: serde_json::Map<String, Value> = e
        .network_containers(&n.name)
        .into_iter()
        .map(|(l, name)| {
            (
                l.container.clone(),
                json!({
                    "Name": name,
                    "IPv4Address": format!("{}/{}", l.ip, n.subnet.prefix),
                    "MacAddress": berth_engine::berth_net::bridge::mac_string(
                        berth_engine::berth_net::bridge::mac_for(l.ip)),
                }),
            )
        })
        .collect();
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": berth_engine::lifecycle::format_time(n.created),
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": [{
            "Subnet": n.subnet.to_string(),
            "Gateway": n.gateway.to_string(),
            "IPRange": n.ip_range.map(|r| r.to_string()).unwrap_or_default(),
        }]},
        "Internal": n.internal,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": n.bridge, "com.docker.network.driver.mtu": n.mtu.to_string()},
        "Labels": n.labels,
    })
}

pub fn run(e: &Engine, cmd: NetworkCmd) -> Result<u8, Box<dyn std::error::Error>> {
    let nets = e.networks()?;
    // Addresses and veths of exited containers the kernel has finished with are forgotten
    // before anything is listed or changed (best effort).
    let _ = nets.tidy();
    match cmd {
        NetworkCmd::Create {
            name,
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            label,
        } => {
            if driver != "bridge" {
                return Err(
                    format!("network driver {driver:?} is not supported (only bridge)").into(),
                );
            }
            let subnet = subnet.map(|s| s.parse::<Subnet>()).transpose()?;
            let gateway = gateway
                .map(|g| {
                    g.parse::<Ipv4Addr>()
                        .map_err(|_| format!("invalid --gateway {g:?}: expected an IPv4 address"))
                })
                .transpose()?;
            if (gateway.is_some() || ip_range.is_some()) && subnet.is_none() {
                return Err("--gateway and --ip-range need --subnet".into());
            }
            let ip_range = ip_range.map(|s| s.parse::<Subnet>()).transpose()?;
            let labels: BTreeMap<String, String> = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            let cfg = nets.create(
                &name,
                &CreateOptions {
                    subnet,
                    ip_range,
                    gateway,
                    internal,
                    labels,
                },
            )?;
            println!("{}", cfg.id);
        }
        NetworkCmd::Ls { quiet } => {
            // The default network always exists (made on first use, as here).
            nets.get(berth_engine::berth_net::bridge::DEFAULT_NETWORK)?;
            let all = nets.list()?;
            if !quiet {
                println!("{:<14}{:<20}{:<10}SCOPE", "NETWORK ID", "NAME", "DRIVER");
            }
            for n in all {
                if quiet {
                    println!("{}", &n.id[..12]);
                } else {
                    println!("{:<14}{:<20}{:<10}local", &n.id[..12], n.name, n.driver);
                }
            }
        }
        NetworkCmd::Inspect { networks } => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &networks {
                match nets.get(n) {
                    Ok(cfg) => out.push(inspect_json(e, &cfg)),
                    Err(err) => {
                        eprintln!("berth: {}", chain(&err));
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(if failed { 1 } else { 0 });
        }
        NetworkCmd::Rm { networks } => {
            let mut failed = false;
            for n in &networks {
                match nets.remove(n) {
                    Ok(_) => println!("{n}"),
                    Err(err) => {
                        eprintln!("berth: {}", chain(&err));
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        NetworkCmd::Prune { force: _ } => {
            let mut removed = Vec::new();
            for n in nets.list()? {
                if n.name != berth_engine::berth_net::bridge::DEFAULT_NETWORK
                    && nets.remove(&n.name).is_ok()
                {
                    removed.push(n.name);
                }
            }
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
        NetworkCmd::Connect {
            network,
            container,
            ip,
            alias,
        } => {
            let ip = ip
                .map(|g| {
                    g.parse::<Ipv4Addr>()
                        .map_err(|_| format!("invalid --ip {g:?}: expected an IPv4 address"))
                })
                .transpose()?;
            e.network_connect(&container, &network, ip, &alias)?;
        }
        NetworkCmd::Disconnect {
            network,
            container,
            force: _,
        } => e.network_disconnect(&container, &network)?,
    }
    Ok(0)
}
