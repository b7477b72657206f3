//! `-p` specifications and their resolution to concrete host ports.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use crate::nft::PortMap;

/// One `-p [hostIP:][hostPort[-end]:]containerPort[-end][/tcp|/udp|/sctp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    /// `None`: ephemeral host ports (as many as container ports).
    pub host_ports: Option<(u16, u16)>,
    pub container_ports: (u16, u16),
    pub proto: String,
}

/// Why a port could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid port specification {spec:?}: {why}")]
    Invalid { spec: String, why: &'static str },
    #[error("host port {port}/{proto} on {ip} is already in use{by}")]
    InUse {
        ip: String,
        port: u16,
        proto: String,
        by: String,
    },
    #[error("no free ephemeral host port for {proto}")]
    NoEphemeral { proto: String },
}

fn range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = s.parse().ok()?;
            (p, p)
        }
    };
    (a > 0 && a <= b).then_some((a, b))
}

impl std::str::FromStr for PortSpec {
    type Err = PortError;
    fn from_str(spec: &str) -> Result<Self, PortError> {
        let bad = |why| PortError::Invalid {
            spec: spec.to_owned(),
            why,
        };
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p),
            None => (spec, "tcp"),
        };
        if !["tcp", "udp", "sctp"].contains(&proto) {
            return Err(bad("the protocol must be tcp, udp or sctp"));
        }
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (ip, host, cont) = match parts.as_slice() {
            [c] => ("", "", *c),
            [c, h] => ("", *h, *c),
            [c, h, i] => (*i, *h, *c),
            _ => return Err(bad("too many parts")),
        };
        let host_ip = match ip.trim_start_matches('[').trim_end_matches(']') {
            "" | "0.0.0.0" => None,
            i => Some(
                i.parse::<Ipv4Addr>()
                    .map_err(|_| bad("the host address must be an IPv4 address"))?,
            ),
        };
        let container_ports = range(cont).ok_or_else(|| bad("invalid container port"))?;
        let host_ports = match host {
            "" => None,
            h => Some(range(h).ok_or_else(|| bad("invalid host port"))?),
        };
        if let Some((a, b)) = host_ports {
            if b - a != container_ports.1 - container_ports.0 {
                return Err(bad("the host and container port ranges differ in length"));
            }
        }
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            proto: proto.to_owned(),
        })
    }
}

/// Whether two mappings claim the same host port (same protocol, and the same address or
/// either of them on every address).
fn clash(a: &PortMap, host_ip: Option<Ipv4Addr>, port: u16, proto: &str) -> bool {
    a.proto == proto
        && a.host_port == port
        && (a.host_ip.is_none() || host_ip.is_none() || a.host_ip == host_ip)
}

/// Whether the host's own sockets leave `port` free (a bind test, released at once).
fn bindable(host_ip: Option<Ipv4Addr>, port: u16, proto: &str) -> bool {
    let ip = host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    match proto {
        "tcp" => TcpListener::bind((ip, port)).is_ok(),
        "udp" => UdpSocket::bind((ip, port)).is_ok(),
        _ => true,
    }
}

/// A free port the kernel picks for `proto` on `host_ip`, not claimed by `taken`.
fn ephemeral(host_ip: Option<Ipv4Addr>, proto: &str, taken: &[PortMap]) -> Option<u16> {
    let ip = host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    for _ in 0..64 {
        let port = match proto {
            "udp" => UdpSocket::bind((ip, 0)).ok()?.local_addr().ok()?.port(),
            _ => TcpListener::bind((ip, 0)).ok()?.local_addr().ok()?.port(),
        };
        if !taken.iter().any(|t| clash(t, host_ip, port, proto)) {
            return Some(port);
        }
    }
    None
}

/// Concrete mappings to `ip` for `specs`, refusing ports that `taken` (other containers) or
/// the host's own sockets hold.
pub fn resolve(
    specs: &[PortSpec],
    ip: Ipv4Addr,
    taken: &[PortMap],
) -> Result<Vec<PortMap>, PortError> {
    let mut out: Vec<PortMap> = Vec::new();
    for s in specs {
        for (i, cport) in (s.container_ports.0..=s.container_ports.1).enumerate() {
            let all: Vec<PortMap> = taken.iter().chain(out.iter()).cloned().collect();
            let host_port = match s.host_ports {
                Some((a, _)) => {
                    let port = a + i as u16;
                    if let Some(t) = all.iter().find(|t| clash(t, s.host_ip, port, &s.proto)) {
                        return Err(PortError::InUse {
                            ip: ip_text(s.host_ip),
                            port,
                            proto: s.proto.clone(),
                            by: format!(" (published to {}:{})", t.container_ip, t.container_port),
                        });
                    }
                    if !bindable(s.host_ip, port, &s.proto) {
                        return Err(PortError::InUse {
                            ip: ip_text(s.host_ip),
                            port,
                            proto: s.proto.clone(),
                            by: " (by a process of this host)".into(),
                        });
                    }
                    port
                }
                None => {
                    ephemeral(s.host_ip, &s.proto, &all).ok_or_else(|| PortError::NoEphemeral {
                        proto: s.proto.clone(),
                    })?
                }
            };
            out.push(PortMap {
                host_ip: s.host_ip,
                host_port,
                proto: s.proto.clone(),
                container_ip: ip,
                container_port: cport,
            });
        }
    }
    Ok(out)
}

fn ip_text(ip: Option<Ipv4Addr>) -> String {
    ip.map(|i| i.to_string())
        .unwrap_or_else(|| "0.0.0.0".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_specs() {
        let p = |s: &str| s.parse::<PortSpec>();
        assert_eq!(
            p("8080:80").unwrap(),
            PortSpec {
                host_ip: None,
                host_ports: Some((8080, 8080)),
                container_ports: (80, 80),
                proto: "tcp".into()
            }
        );
        let s = p("127.0.0.1:5000-5002:6000-6002/udp").unwrap();
        assert_eq!(s.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(s.host_ports, Some((5000, 5002)));
        assert_eq!(s.proto, "udp");
        assert_eq!(p("127.0.0.1::80").unwrap().host_ports, None);
        assert_eq!(p("80").unwrap().host_ports, None);
        for bad in [
            "",
            "0:80",
            "80:0",
            "1-3:1-2",
            "x:80",
            "80/icmp",
            "300.0.0.1:80:80",
            "99999:80",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clashes_are_refused_and_ranges_expand() {
        let ip = Ipv4Addr::new(10, 210, 0, 2);
        let taken = vec![PortMap {
            host_ip: None,
            host_port: 1,
            proto: "sctp".into(),
            container_ip: Ipv4Addr::new(10, 210, 0, 3),
            container_port: 1,
        }];
        let e = resolve(&["1:1/sctp".parse().unwrap()], ip, &taken).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let ok = resolve(&["2-4:7-9/sctp".parse().unwrap()], ip, &taken).unwrap();
        assert_eq!(
            ok.iter()
                .map(|m| (m.host_port, m.container_port))
                .collect::<Vec<_>>(),
            vec![(2, 7), (3, 8), (4, 9)]
        );
    }
}
