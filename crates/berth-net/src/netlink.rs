//! A small synchronous rtnetlink client: one request, then its acknowledgement, on a blocking
//! `NETLINK_ROUTE` socket. No async runtime: the engine's supervisor is single-threaded when it
//! spawns containers, and a request/ack round trip costs microseconds (netavark's choice too).
//!
//! A socket talks to the network namespace it was created in, so [`Netlink::in_netns`] creates it
//! while the calling thread is inside the target namespace and returns right after
//! (see setns(2): a netlink socket keeps its namespace for its whole life).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A failed netlink exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("entering network namespace {path}")]
    Setns {
        path: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("returning to berth's own network namespace")]
    Restore(#[source] nix::errno::Errno),
    #[error("sending the netlink request to {what}")]
    Send {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the netlink answer to {what}")]
    Recv {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding the netlink answer to {what}: {message}")]
    Decode { what: String, message: String },
    #[error("{what}")]
    Kernel {
        what: String,
        #[source]
        source: nix::errno::Errno,
    },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            NetlinkError::Kernel { source, .. } => Some(*source),
            _ => None,
        }
    }
}

/// A blocking rtnetlink socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    pub master: Option<u32>,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self { socket, seq: 0 })
    }

    /// A socket in the network namespace `ns` (an open `/proc/PID/ns/net` or a bind mount of
    /// one), named `path` in errors. The calling thread is back in its own namespace on return.
    pub fn in_netns(ns: BorrowedFd<'_>, path: &str) -> Result<Self, NetlinkError> {
        use nix::sched::{setns, CloneFlags};
        // 1. Remember where we are: setns back needs a handle on our own namespace.
        let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(NetlinkError::Socket)?;
        // 2. Enter the target; a socket created now belongs to it for good.
        setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetlinkError::Setns {
            path: path.to_owned(),
            source,
        })?;
        let made = Self::new();
        // 3. Return before anything else can run here, whether the socket was made or not.
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(NetlinkError::Restore)?;
        made
    }

    /// Sends `msg` and collects the answers until the acknowledgement (or the end of a dump).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| NetlinkError::Send {
                what: what.to_owned(),
                source,
            })?;
        let mut answers = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| NetlinkError::Recv {
                    what: what.to_owned(),
                    source,
                })?;
            let mut off = 0;
            while off < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| NetlinkError::Decode {
                        what: what.to_owned(),
                        message: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(NetlinkError::Kernel {
                                what: what.to_owned(),
                                source: nix::errno::Errno::from_raw(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(m, &format!("looking up link {name}"))
    }

    /// The link with index `index`, or `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.get_link(m, &format!("looking up link {index}"))
    }

    fn get_link(&mut self, m: LinkMessage, what: &str) -> Result<Option<Link>, NetlinkError> {
        match self.request(RouteNetlinkMessage::GetLink(m), 0, what) {
            Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_link(
        &mut self,
        index: u32,
        flags: LinkFlags,
        change: LinkFlags,
        attrs: Vec<LinkAttribute>,
        what: &str,
    ) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.header.change_mask = change;
        m.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(m), 0, what)
            .map(drop)
    }

    /// Brings link `name` up.
    pub fn set_up(&mut self, name: &str) -> Result<(), NetlinkError> {
        let what = format!("bringing {name} up");
        let link = self.link(name)?.ok_or_else(|| NetlinkError::Kernel {
            what: what.clone(),
            source: nix::errno::Errno::ENODEV,
        })?;
        self.set_link(link.index, LinkFlags::Up, LinkFlags::Up, Vec::new(), &what)
    }

    /// Creates bridge `name` with `mtu` (EEXIST when it exists).
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
        )
        .map(drop)
    }

    /// Creates a veth pair: `host` here, `peer` (with `mac` and `mtu`) moved at once into the
    /// network namespace `peer_ns`, so no interface of the container is ever visible on the host.
    pub fn create_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<(), NetlinkError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        p.attributes.push(LinkAttribute::Mtu(mtu));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_owned()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth pair {host}/{peer}"),
        )
        .map(drop)
    }

    /// Enslaves `name` to bridge `master` and brings it up.
    pub fn attach_to_bridge(&mut self, name: &str, master: &str) -> Result<(), NetlinkError> {
        let what = format!("attaching {name} to bridge {master}");
        let missing = |n: &str| NetlinkError::Kernel {
            what: format!("{what}: no link {n}"),
            source: nix::errno::Errno::ENODEV,
        };
        let bridge = self.link(master)?.ok_or_else(|| missing(master))?;
        let link = self.link(name)?.ok_or_else(|| missing(name))?;
        self.set_link(
            link.index,
            LinkFlags::Up,
            LinkFlags::Up,
            vec![LinkAttribute::Controller(bridge.index)],
            &what,
        )
    }

    /// Deletes link `name`; a link that is already gone is success.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let Some(link) = self.link(name)? else {
            return Ok(());
        };
        self.delete_index(link.index, name)
    }

    /// Deletes the link with index `index` (called `name` in errors); gone is success.
    pub fn delete_index(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(
            RouteNetlinkMessage::DelLink(m),
            0,
            &format!("deleting link {name}"),
        ) {
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Adds `addr/prefix` to link `name`; an address that is already there is success.
    pub fn add_address(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let what = format!("adding address {addr}/{prefix} to {name}");
        let link = self.link(name)?.ok_or_else(|| NetlinkError::Kernel {
            what: what.clone(),
            source: nix::errno::Errno::ENODEV,
        })?;
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.scope = AddressScope::Universe;
        m.header.index = link.index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        let mask = prefix_mask(prefix);
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(
                u32::from(addr) | !mask,
            )));
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        ) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Adds the default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = 254; // RT_TABLE_MAIN
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding the default route via {gateway}"),
        )
        .map(drop)
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        master: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(c) => link.master = Some(*c),
            _ => {}
        }
    }
    link
}

/// The netmask of a prefix length, as a host-order integer.
pub fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}
