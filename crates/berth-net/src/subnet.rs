//! IPv4 subnets: parsing, overlap, and the host's routes a new subnet must not collide with.

use std::net::Ipv4Addr;

use crate::netlink::prefix_mask;

/// An IPv4 network, `addr/prefix`, with `addr` the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// A subnet that is not `a.b.c.d/n` with the host bits clear.
#[derive(Debug, thiserror::Error)]
#[error("invalid subnet {0:?}: expected an IPv4 network such as 10.90.0.0/16 (prefix 8 to 30)")]
pub struct SubnetError(pub String);

impl TryFrom<String> for Subnet {
    type Error = SubnetError;
    fn try_from(s: String) -> Result<Self, SubnetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl std::str::FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, SubnetError> {
        let bad = || SubnetError(s.to_owned());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) || u32::from(addr) & !prefix_mask(prefix) != 0 {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Subnet {
    pub fn mask(&self) -> u32 {
        prefix_mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first host address (Docker's and podman's gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Host addresses in order, network and broadcast addresses excluded.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.addr) + 1..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

/// The destinations of the routes of the caller's network namespace (`/proc/net/route`), the
/// default route excluded: a new network must not shadow any of them.
pub fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_proc_route(&text)
}

fn parse_proc_route(text: &str) -> Vec<Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Destination and Mask are little-endian hex (the kernel's byte order on x86).
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            if mask == 0 {
                return None;
            }
            Some(Subnet {
                addr: Ipv4Addr::from(dest & mask),
                prefix: mask.count_ones() as u8,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let s: Subnet = "10.90.0.0/16".parse().unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 90, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 90, 255, 255));
        assert!(s.contains(Ipv4Addr::new(10, 90, 3, 4)));
        assert!(!s.contains(Ipv4Addr::new(10, 91, 0, 1)));
        for bad in [
            "10.90.0.1/16",
            "10.90.0.0",
            "10.90.0.0/31",
            "x/16",
            "10.0.0.0/4",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let t: Subnet = "10.90.4.0/24".parse().unwrap();
        assert!(s.overlaps(&t) && t.overlaps(&s));
        assert!(!t.overlaps(&"10.90.5.0/24".parse().unwrap()));
        assert_eq!(t.hosts().count(), 254);
    }

    #[test]
    fn reads_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_proc_route(text),
            vec!["192.168.2.0/24".parse::<Subnet>().unwrap()]
        );
    }
}
