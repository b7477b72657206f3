//! Berth's nftables table, `ip berth`: outbound NAT per bridge network, the isolation of
//! `--internal` networks, and published ports as elements of two DNAT maps (one rule set for
//! any number of ports: no per-port rule, no per-port process).
//!
//! Every change is one `nft -f -` transaction, so the kernel applies all of it or none. The
//! static part (chains and rules) is regenerated from the network records on each change
//! (`flush chain` + rules in the same transaction), so it can never drift or duplicate; the
//! maps' elements are the per-container state and are added and deleted by exact key.
//! Everything written here is built from validated values (addresses, ports, interface names
//! Berth chose), never from raw user text.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::subnet::Subnet;

/// The table's name, in the `ip` family.
pub const TABLE: &str = "berth";

/// A failed nft transaction.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the transaction: {stderr}")]
    Refused { stderr: String },
}

/// A bridge network as the firewall sees it.
#[derive(Debug, Clone)]
pub struct NetRules {
    pub bridge: String,
    pub subnet: Subnet,
    pub internal: bool,
}

/// One published port: traffic to `host_ip` (any local address when `None`) on `proto`
/// `host_port` goes to `container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMap {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: String,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

impl PortMap {
    fn map(&self) -> &'static str {
        if self.host_ip.is_some() {
            "ports_ip"
        } else {
            "ports_any"
        }
    }

    fn key(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip} . {} . {}", self.proto, self.host_port),
            None => format!("{} . {}", self.proto, self.host_port),
        }
    }

    fn element(&self) -> String {
        format!(
            "{} : {} . {}",
            self.key(),
            self.container_ip,
            self.container_port
        )
    }
}

/// The table, its chains and rules for `nets` (every bridge network), ready to be followed by
/// element changes in the same transaction.
pub fn ruleset(nets: &[NetRules]) -> String {
    let mut s = format!("add table ip {TABLE}\n");
    let chains = [
        (
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        (
            "output",
            "type nat hook output priority -100; policy accept;",
        ),
        (
            "postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
        ),
        (
            "forward",
            "type filter hook forward priority filter; policy accept;",
        ),
        ("ports", ""),
    ];
    for (name, def) in chains {
        s.push_str(&format!("add chain ip {TABLE} {name} {{ {def} }}\n"));
        s.push_str(&format!("flush chain ip {TABLE} {name}\n"));
    }
    s.push_str(&format!(
        "add map ip {TABLE} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         add map ip {TABLE} ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n"
    ));
    let rule = |s: &mut String, chain: &str, r: &str| {
        s.push_str(&format!("add rule ip {TABLE} {chain} {r}\n"));
    };
    // Published ports: only traffic addressed to this host (any local address, 127.0.0.1
    // included) is translated; from outside (prerouting) and from the host itself (output).
    rule(&mut s, "prerouting", "fib daddr type local jump ports");
    rule(&mut s, "output", "fib daddr type local jump ports");
    rule(
        &mut s,
        "ports",
        "dnat ip to ip daddr . meta l4proto . th dport map @ports_ip",
    );
    rule(
        &mut s,
        "ports",
        "dnat ip to meta l4proto . th dport map @ports_any",
    );
    // Networks are isolated from each other (Docker's DOCKER-ISOLATION chains): nothing is
    // forwarded from one Berth bridge to another.
    for a in nets {
        for b in nets.iter().filter(|b| b.bridge != a.bridge) {
            rule(
                &mut s,
                "forward",
                &format!("iifname \"{}\" oifname \"{}\" drop", a.bridge, b.bridge),
            );
        }
    }
    for n in nets {
        let (br, sub) = (&n.bridge, n.subnet);
        // Connections to 127.0.0.1:PORT leave through the bridge (route_localnet) and get the
        // bridge's address as source, or the container could not answer them.
        rule(
            &mut s,
            "postrouting",
            &format!("oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade"),
        );
        // Hairpin: a container reaching a published port of its own network.
        rule(
            &mut s,
            "postrouting",
            &format!("oifname \"{br}\" ip saddr {sub} ct status dnat masquerade"),
        );
        if n.internal {
            rule(
                &mut s,
                "forward",
                &format!("iifname \"{br}\" oifname != \"{br}\" drop"),
            );
            rule(
                &mut s,
                "forward",
                &format!("oifname \"{br}\" iifname != \"{br}\" drop"),
            );
        } else {
            rule(
                &mut s,
                "postrouting",
                &format!("ip saddr {sub} ip daddr != {sub} oifname != \"{br}\" masquerade"),
            );
        }
    }
    s
}

/// `add element` lines for `ports`.
pub fn add_ports(ports: &[PortMap]) -> String {
    ports
        .iter()
        .map(|p| format!("add element ip {TABLE} {} {{ {} }}\n", p.map(), p.element()))
        .collect()
}

/// `delete element` lines for `ports`.
pub fn delete_ports(ports: &[PortMap]) -> String {
    ports
        .iter()
        .map(|p| format!("delete element ip {TABLE} {} {{ {} }}\n", p.map(), p.key()))
        .collect()
}

/// The line that deletes the whole table (when no container holds an address any more).
pub fn delete_table() -> String {
    format!("delete table ip {TABLE}\n")
}

/// Whether table `ip berth` exists in this network namespace: one `NFT_MSG_GETTABLE` over
/// nfnetlink (microseconds), where `nft list table` would cost a process (milliseconds). The
/// message is written by hand: no maintained crate covers nf_tables requests this small
/// (docs/decisions/0004-crates.md).
pub fn table_exists() -> Result<bool, std::io::Error> {
    use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFTA_TABLE_NAME: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const NFPROTO_IPV4: u8 = 2;
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let name = format!("{TABLE}\0");
    let attr_len = 4 + name.len();
    let padded = (attr_len + 3) & !3;
    let len = 16 + 4 + padded;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]); // nfgenmsg: family, version, res_id
    msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    msg.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    msg.extend_from_slice(name.as_bytes());
    msg.resize(len, 0);
    socket.send(&msg, 0)?;
    let (answer, _) = socket.recv_from_full()?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "short nfnetlink answer");
    let kind = u16::from_ne_bytes(answer.get(4..6).ok_or_else(bad)?.try_into().unwrap());
    if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
        return Ok(true);
    }
    if kind != NLMSG_ERROR {
        return Err(bad());
    }
    let code = i32::from_ne_bytes(answer.get(16..20).ok_or_else(bad)?.try_into().unwrap());
    match -code {
        0 => Ok(true),
        libc::ENOENT => Ok(false),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Runs `script` as one nft transaction.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(script.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    written.map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Applies each line on its own, ignoring failures: teardown of elements or a table that may
/// be gone already ("already gone" is success).
pub fn apply_best_effort(script: &str) {
    if apply(script).is_err() {
        for line in script.lines() {
            let _ = apply(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_nat_per_network_and_internal_isolation() {
        let nets = [
            NetRules {
                bridge: "berth0".into(),
                subnet: "10.210.0.0/16".parse().unwrap(),
                internal: false,
            },
            NetRules {
                bridge: "br-abc".into(),
                subnet: "10.211.0.0/24".parse().unwrap(),
                internal: true,
            },
        ];
        let r = ruleset(&nets);
        assert!(r.contains("add rule ip berth postrouting ip saddr 10.210.0.0/16 ip daddr != 10.210.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(!r.contains("ip saddr 10.211.0.0/24 ip daddr"));
        assert!(
            r.contains("add rule ip berth forward iifname \"br-abc\" oifname != \"br-abc\" drop")
        );
        assert_eq!(r.matches("flush chain").count(), 5);
        let p = PortMap {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 8080,
            proto: "tcp".into(),
            container_ip: "10.210.0.2".parse().unwrap(),
            container_port: 80,
        };
        assert_eq!(
            add_ports(std::slice::from_ref(&p)),
            "add element ip berth ports_ip { 127.0.0.1 . tcp . 8080 : 10.210.0.2 . 80 }\n"
        );
        assert_eq!(
            delete_ports(&[p]),
            "delete element ip berth ports_ip { 127.0.0.1 . tcp . 8080 }\n"
        );
    }
}
