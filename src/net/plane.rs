//! The compiled, immutable forwarding state a worker reads: its ports'
//! identities, owned addresses and the route table. The control thread builds
//! a `Plane` from the config and hands each worker an `Arc` of it; a worker
//! swaps to a new one between bursts, never in the middle of one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addrs::{self, AddrSet};
use super::services::Services;

/// One port as the data plane sees it.
#[derive(Clone, Debug)]
pub struct PortPlane {
    pub name: String,
    /// DPDK port id.
    pub port_id: u16,
    pub mac: [u8; 6],
    /// 802.1Q VLAN id the port's frames carry, if any.
    pub vlan: Option<u16>,
    /// IP MTU of the link.
    pub mtu: u16,
    /// Owned IPv4 addresses with their prefix lengths.
    pub v4: Vec<(Ipv4Addr, u8)>,
    /// Owned IPv6 addresses with their prefix lengths.
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// The device may deliver the packets of one flow to different queues
    /// over time: `net_af_packet`'s PACKET_FANOUT rollover moves a busy flow
    /// to another socket when a ring is nearly full. Workers then pass a
    /// packet of a flow they do not track on to each other before the last
    /// one gives up on it (`worker::Worker::pass_on`). False for RSS, whose
    /// queue is a pure function of the tuple: there a miss is a miss, and
    /// passing it on would only multiply the cost of a flood of stray
    /// segments by the number of workers.
    pub flows_may_move: bool,
}

impl PortPlane {
    #[inline]
    pub fn owns_v4(&self, ip: Ipv4Addr) -> bool {
        self.v4.iter().any(|(a, _)| *a == ip)
    }

    #[inline]
    pub fn owns_v6(&self, ip: Ipv6Addr) -> bool {
        self.v6.iter().any(|(a, _)| *a == ip)
    }

    /// The owned IPv4 address to source packets to `dst` from: one in the
    /// same subnet if there is one, else the first.
    pub fn source_v4(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.v4
            .iter()
            .find(|(a, l)| prefix_match_v4(*a, dst, *l))
            .or(self.v4.first())
            .map(|(a, _)| *a)
    }

    pub fn source_v6(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|(a, l)| prefix_match_v6(*a, dst, *l))
            .or(self.v6.first())
            .map(|(a, _)| *a)
    }

    /// Is `ip` inside one of this port's IPv4 subnets (on-link)?
    pub fn on_link_v4(&self, ip: Ipv4Addr) -> bool {
        self.v4.iter().any(|(a, l)| prefix_match_v4(*a, ip, *l))
    }

    pub fn on_link_v6(&self, ip: Ipv6Addr) -> bool {
        ip.segments()[0] & 0xffc0 == 0xfe80
            || self.v6.iter().any(|(a, l)| prefix_match_v6(*a, ip, *l))
    }
}

#[inline]
pub fn prefix_match_v4(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - len.min(32) as u32);
    (u32::from(a) & mask) == (u32::from(b) & mask)
}

#[inline]
pub fn prefix_match_v6(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - len.min(128) as u32);
    (u128::from(a) & mask) == (u128::from(b) & mask)
}

/// A route: destinations in `prefix/len` leave through `port`, to `via` or,
/// for connected routes (`via == None`), straight to the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<A> {
    pub prefix: A,
    pub len: u8,
    pub port: usize,
    pub via: Option<A>,
}

/// Where a packet to some destination goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop<A> {
    pub port: usize,
    pub addr: A,
}

/// Longest-prefix-match over a list kept sorted by prefix length, longest
/// first: Sluice's own routes are a handful (connected subnets, gateways, a
/// few statics), where a linear scan of one cache line or two beats a trie.
/// Large tables would move to DPDK's rte_lpm (DIR-24-8).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    v4: Vec<Route<Ipv4Addr>>,
    v6: Vec<Route<Ipv6Addr>>,
}

impl RouteTable {
    pub fn add_v4(&mut self, r: Route<Ipv4Addr>) {
        let masked = mask_v4(r.prefix, r.len);
        // The same prefix again (several addresses in one subnet): the
        // first one added wins anyway; a duplicate would only lengthen
        // every lookup's scan.
        if self.v4.iter().any(|x| x.prefix == masked && x.len == r.len) {
            return;
        }
        self.v4.push(Route {
            prefix: masked,
            ..r
        });
        // Stable sort: for equal lengths the first added wins (connected
        // routes are added before static ones).
        self.v4.sort_by_key(|r| core::cmp::Reverse(r.len));
    }

    pub fn add_v6(&mut self, r: Route<Ipv6Addr>) {
        let masked = mask_v6(r.prefix, r.len);
        if self.v6.iter().any(|x| x.prefix == masked && x.len == r.len) {
            return;
        }
        self.v6.push(Route {
            prefix: masked,
            ..r
        });
        self.v6.sort_by_key(|r| core::cmp::Reverse(r.len));
    }

    #[inline]
    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<NextHop<Ipv4Addr>> {
        self.v4
            .iter()
            .find(|r| prefix_match_v4(r.prefix, dst, r.len))
            .map(|r| NextHop {
                port: r.port,
                addr: r.via.unwrap_or(dst),
            })
    }

    #[inline]
    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<NextHop<Ipv6Addr>> {
        self.v6
            .iter()
            .find(|r| prefix_match_v6(r.prefix, dst, r.len))
            .map(|r| NextHop {
                port: r.port,
                addr: r.via.unwrap_or(dst),
            })
    }

    pub fn routes_v4(&self) -> &[Route<Ipv4Addr>] {
        &self.v4
    }

    pub fn routes_v6(&self) -> &[Route<Ipv6Addr>] {
        &self.v6
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    if len == 0 {
        return Ipv4Addr::UNSPECIFIED;
    }
    Ipv4Addr::from(u32::from(a) & (u32::MAX << (32 - len.min(32) as u32)))
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    if len == 0 {
        return Ipv6Addr::UNSPECIFIED;
    }
    Ipv6Addr::from(u128::from(a) & (u128::MAX << (128 - len.min(128) as u32)))
}

/// Everything a worker needs to forward, immutable once built.
#[derive(Clone, Debug, Default)]
pub struct Plane {
    pub ports: Vec<PortPlane>,
    pub routes: RouteTable,
    /// Static neighbor entries: (port index, address, MAC).
    pub static_neighbors: Vec<(usize, IpAddr, [u8; 6])>,
    /// L4 services, clusters and backends.
    pub services: Services,
    /// L7 listeners and per-request cluster policies.
    pub l7: crate::l7::plane::L7Plane,
    /// Number of workers (SNAT port slices).
    pub workers: usize,
    /// Own addresses, VIPs and directed broadcasts, for one-probe
    /// classification of destinations and sources; built by
    /// [`Plane::index_addresses`] once ports and services are final.
    pub addrs: AddrSet,
}

impl Plane {
    /// Is `ip` an address of any port?
    #[inline]
    pub fn owns_v4(&self, ip: Ipv4Addr) -> bool {
        self.addrs.v4(ip) & addrs::OWN != 0
    }

    #[inline]
    pub fn owns_v6(&self, ip: Ipv6Addr) -> bool {
        self.addrs.v6(ip) & addrs::OWN != 0
    }

    /// Is `ip` a VIP (of an L4 service or an L7 listener, on any port)?
    #[inline]
    pub fn is_vip(&self, ip: IpAddr) -> bool {
        self.addrs.kind(ip) & addrs::VIP != 0
    }

    /// (Re)build [`Plane::addrs`] from the ports' addresses, their IPv4
    /// subnets' directed broadcasts and the services' VIPs. Call after the
    /// last change to `ports` or `services`.
    pub fn index_addresses(&mut self) {
        let mut e: Vec<(IpAddr, u8)> = Vec::new();
        for p in &self.ports {
            for &(a, len) in &p.v4 {
                e.push((IpAddr::V4(a), addrs::OWN));
                if len <= 30 {
                    let host = u32::MAX >> len;
                    let bcast = Ipv4Addr::from(u32::from(a) | host);
                    e.push((IpAddr::V4(bcast), addrs::MARTIAN));
                }
            }
            for &(a, _) in &p.v6 {
                e.push((IpAddr::V6(a), addrs::OWN));
            }
        }
        for v in self.services.all_vips() {
            e.push((v, addrs::VIP));
        }
        self.addrs = AddrSet::build(e.into_iter());
    }

    /// Build from ports (connected routes are derived from their addresses),
    /// default gateways, static routes and static neighbors.
    pub fn new(
        ports: Vec<PortPlane>,
        gateways: &[(usize, IpAddr)],
        static_routes: &[(IpAddr, u8, usize, IpAddr)],
        static_neighbors: Vec<(usize, IpAddr, [u8; 6])>,
    ) -> Plane {
        let mut routes = RouteTable::default();
        for (i, p) in ports.iter().enumerate() {
            for (a, l) in &p.v4 {
                routes.add_v4(Route {
                    prefix: *a,
                    len: *l,
                    port: i,
                    via: None,
                });
            }
            for (a, l) in &p.v6 {
                routes.add_v6(Route {
                    prefix: *a,
                    len: *l,
                    port: i,
                    via: None,
                });
            }
        }
        for &(prefix, len, port, via) in static_routes {
            match (prefix, via) {
                (IpAddr::V4(p), IpAddr::V4(v)) => routes.add_v4(Route {
                    prefix: p,
                    len,
                    port,
                    via: Some(v),
                }),
                (IpAddr::V6(p), IpAddr::V6(v)) => routes.add_v6(Route {
                    prefix: p,
                    len,
                    port,
                    via: Some(v),
                }),
                _ => {}
            }
        }
        for &(port, gw) in gateways {
            match gw {
                IpAddr::V4(v) => routes.add_v4(Route {
                    prefix: Ipv4Addr::UNSPECIFIED,
                    len: 0,
                    port,
                    via: Some(v),
                }),
                IpAddr::V6(v) => routes.add_v6(Route {
                    prefix: Ipv6Addr::UNSPECIFIED,
                    len: 0,
                    port,
                    via: Some(v),
                }),
            }
        }
        let mut plane = Plane {
            ports,
            routes,
            static_neighbors,
            services: Services::default(),
            l7: Default::default(),
            workers: 1,
            addrs: AddrSet::default(),
        };
        plane.index_addresses();
        plane
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(v4: &[(&str, u8)], v6: &[(&str, u8)]) -> PortPlane {
        PortPlane {
            name: "p".into(),
            port_id: 0,
            mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            mtu: 1500,
            v4: v4.iter().map(|(a, l)| (a.parse().unwrap(), *l)).collect(),
            v6: v6.iter().map(|(a, l)| (a.parse().unwrap(), *l)).collect(),
            flows_may_move: false,
        }
    }

    #[test]
    fn longest_prefix_wins_and_connected_beats_static_of_same_length() {
        let p0 = port(&[("10.0.0.1", 24)], &[("fd00::1", 64)]);
        let p1 = port(&[("10.1.0.1", 24)], &[]);
        let plane = Plane::new(
            vec![p0, p1],
            &[
                (0, "10.0.0.254".parse().unwrap()),
                (0, "fd00::fe".parse().unwrap()),
            ],
            &[
                (
                    "198.18.0.0".parse().unwrap(),
                    15,
                    1,
                    "10.1.0.254".parse().unwrap(),
                ),
                (
                    "10.0.0.0".parse().unwrap(),
                    24,
                    1,
                    "10.1.0.9".parse().unwrap(),
                ),
            ],
            vec![],
        );
        let r = &plane.routes;
        let cases: &[(&str, usize, &str)] = &[
            ("10.0.0.7", 0, "10.0.0.7"),     // connected
            ("10.1.0.9", 1, "10.1.0.9"),     // connected on port 1
            ("198.19.3.4", 1, "10.1.0.254"), // static /15
            ("8.8.8.8", 0, "10.0.0.254"),    // default gateway
        ];
        for (dst, port, via) in cases {
            let nh = r.lookup_v4(dst.parse().unwrap()).unwrap();
            assert_eq!((nh.port, nh.addr), (*port, via.parse().unwrap()), "{dst}");
        }
        let nh = r.lookup_v6("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(nh.addr, "fd00::fe".parse::<Ipv6Addr>().unwrap());
        let nh = r.lookup_v6("fd00::99".parse().unwrap()).unwrap();
        assert_eq!(nh.addr, "fd00::99".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn addresses_in_one_subnet_make_one_connected_route() {
        let p0 = port(&[("10.0.0.1", 24)], &[]);
        let p1 = port(
            &[("10.1.0.1", 24), ("10.1.0.2", 24), ("10.1.0.3", 24)],
            &[("fd01::1", 64), ("fd01::2", 64)],
        );
        let plane = Plane::new(vec![p0, p1], &[], &[], vec![]);
        assert_eq!(plane.routes.routes_v4().len(), 2);
        assert_eq!(plane.routes.routes_v6().len(), 1);
        let nh = plane
            .routes
            .lookup_v4("10.1.0.77".parse().unwrap())
            .unwrap();
        assert_eq!(nh.port, 1);
    }

    #[test]
    fn no_default_route_means_no_route() {
        let plane = Plane::new(vec![port(&[("10.0.0.1", 24)], &[])], &[], &[], vec![]);
        assert!(plane
            .routes
            .lookup_v4("10.9.9.9".parse().unwrap())
            .is_none());
        assert!(plane.routes.lookup_v6("fd00::1".parse().unwrap()).is_none());
    }

    #[test]
    fn source_address_prefers_same_subnet() {
        let p = port(&[("10.0.0.1", 24), ("10.5.0.1", 16)], &[]);
        assert_eq!(
            p.source_v4("10.5.3.3".parse().unwrap()),
            Some("10.5.0.1".parse().unwrap())
        );
        assert_eq!(
            p.source_v4("8.8.8.8".parse().unwrap()),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
