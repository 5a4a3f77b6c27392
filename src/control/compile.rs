//! Compiling a config into the immutable [`Plane`] the workers read:
//! ports and routes, and the L4 services with their Maglev tables. Runs on
//! the control thread at start-up and on every reload, never on a worker.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use hashbrown::HashMap;

use crate::config::{Config, ForwardMode, Protocol, Scheduler};
use crate::dpdk::port::PortInfo;
use crate::l4::maglev::MaglevTable;
use crate::l7::plane::{
    Balance, Buffers, HashOn, HealthCheck, L7Cluster, L7Plane, ListenerPlane, Timeouts,
};
use crate::l7::router::Router;
use crate::net::plane::{Plane, PortPlane};
use crate::net::services::{
    wrr_sequence, BackendPlane, ClusterPlane, Mode, Sched, ServicePlane, Services, MAX_BACKENDS,
    MAX_SERVICES,
};

/// Ids of backends and services, stable for the life of the process so
/// that connection entries and counters survive reloads.
#[derive(Default, Debug, Clone)]
pub struct Registry {
    backends: HashMap<(String, IpAddr), u32>,
    services: HashMap<String, u16>,
    /// By backend id: (cluster, backend name) as last configured.
    pub backend_names: Vec<(String, String)>,
    /// By service id: service name.
    pub service_names: Vec<String>,
}

impl Registry {
    fn backend_id(&mut self, cluster: &str, addr: IpAddr, name: &str) -> Result<u32> {
        let next = self.backends.len() as u32;
        let id = *self
            .backends
            .entry((cluster.to_string(), addr))
            .or_insert(next);
        if id as usize >= MAX_BACKENDS {
            bail!("more than {MAX_BACKENDS} backends over this process's life; restart Sluice");
        }
        if id as usize == self.backend_names.len() {
            self.backend_names.push((cluster.into(), name.into()));
        } else {
            self.backend_names[id as usize] = (cluster.into(), name.into());
        }
        Ok(id)
    }

    fn service_id(&mut self, name: &str) -> Result<u16> {
        let next = self.services.len() as u16;
        let id = *self.services.entry(name.to_string()).or_insert(next);
        if id as usize >= MAX_SERVICES {
            bail!("more than {MAX_SERVICES} services over this process's life; restart Sluice");
        }
        if id as usize == self.service_names.len() {
            self.service_names.push(name.into());
        }
        Ok(id)
    }
}

/// Build the plane for `cfg` on the started ports `infos`.
pub fn build_plane(
    cfg: &Config,
    infos: &[PortInfo],
    reg: &mut Registry,
    workers: usize,
) -> Result<Plane> {
    let mut ports = Vec::new();
    let mut gateways = Vec::new();
    for (i, (p, info)) in cfg.ports.iter().zip(infos).enumerate() {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in &p.addresses {
            match c.addr() {
                IpAddr::V4(a) => v4.push((a, c.prefix_len())),
                IpAddr::V6(a) => v6.push((a, c.prefix_len())),
            }
        }
        ports.push(PortPlane {
            name: p.name.clone(),
            port_id: info.id,
            mac: info.mac,
            vlan: p.vlan,
            mtu: p.mtu,
            v4,
            v6,
        });
        if let Some(g) = p.gateway {
            gateways.push((i, IpAddr::V4(g)));
        }
        if let Some(g) = p.gateway6 {
            gateways.push((i, IpAddr::V6(g)));
        }
    }
    let index_of = |name: &str| cfg.ports.iter().position(|p| p.name == name).unwrap_or(0);
    let routes: Vec<_> = cfg
        .routes
        .iter()
        .map(|r| {
            (
                r.prefix.addr(),
                r.prefix.prefix_len(),
                index_of(r.port_name()),
                r.via,
            )
        })
        .collect();
    let neighbors = cfg
        .neighbors
        .iter()
        .map(|n| (index_of(n.port_name()), n.ip, n.mac.octets()))
        .collect();
    let mut plane = Plane::new(ports, &gateways, &routes, neighbors);
    plane.workers = workers;
    plane.services = compile_services(cfg, &plane, reg)?;
    plane.l7 = compile_l7(cfg)?;
    for l in &cfg.listeners {
        let ingress = cfg
            .ports
            .iter()
            .position(|p| p.name == l.ingress_name())
            .unwrap_or(0);
        plane.services.add_vip(ingress, l.address);
    }
    Ok(plane)
}

/// Listeners and the per-request policy of every cluster.
fn compile_l7(cfg: &Config) -> Result<L7Plane> {
    use crate::config::{Balance as CBalance, HashOn as CHashOn};
    let clusters = cfg
        .clusters
        .iter()
        .map(|c| L7Cluster {
            balance: match c.balance {
                CBalance::RoundRobin => Balance::RoundRobin,
                CBalance::WeightedRoundRobin => Balance::WeightedRoundRobin,
                CBalance::LeastRequest => Balance::LeastRequest,
                CBalance::Random => Balance::Random,
                CBalance::ConsistentHash => Balance::ConsistentHash(match &c.hash_on {
                    Some(CHashOn::Header(h)) => HashOn::Header(h.to_ascii_lowercase().into_bytes()),
                    Some(CHashOn::Cookie(n)) => HashOn::Cookie(n.clone().into_bytes()),
                    Some(CHashOn::Source) | None => HashOn::Source,
                }),
            },
            sticky_cookie: c.sticky_cookie.as_ref().map(|n| n.clone().into_bytes()),
            sticky_max_age_s: c.sticky_max_age_s,
            connect_timeout_ms: c.connect_timeout_ms as u64,
            response_timeout_ms: c.response_timeout_ms as u64,
            retries: c.retries,
            retry_on_status: c.retry_on_status.clone(),
            retry_budget_percent: c.retry_budget_percent,
            max_idle_per_backend: c.max_idle_per_backend,
            health: c.health_check.as_ref().map(|h| HealthCheck {
                path: h.path.clone(),
                host: h.host.clone(),
                interval_ms: h.interval_ms as u64,
                timeout_ms: h.timeout_ms as u64,
                rise: h.rise,
                fall: h.fall,
                expect: (h.expect_status[0], h.expect_status[1]),
            }),
        })
        .collect();
    let cluster_index = |name: &str| {
        cfg.clusters
            .iter()
            .position(|c| c.name == name)
            .unwrap_or(0) as u32
    };
    let mut listeners = Vec::new();
    for l in &cfg.listeners {
        let (routes, default) = l.router_routes(cluster_index);
        let router =
            Router::new(routes, default).map_err(|e| anyhow!("listener {}: {e}", l.name))?;
        listeners.push(ListenerPlane {
            name: l.name.clone(),
            addr: l.address,
            port: l.port,
            router,
            limits: l.limits(),
            buffers: Buffers {
                client_rx: l.client_rx_buffer as usize,
                client_tx: l.client_tx_buffer as usize,
                upstream_rx: l.upstream_rx_buffer as usize,
                upstream_tx: l.upstream_tx_buffer as usize,
            },
            timeouts: Timeouts {
                handshake_ms: l.handshake_timeout_ms as u64,
                header_ms: l.header_timeout_ms as u64,
                idle_ms: l.idle_timeout_ms as u64,
            },
            max_connections: l.max_connections,
            max_half_open: l.max_half_open,
            snat: l.snat.clone(),
        });
    }
    Ok(L7Plane::new(listeners, clusters))
}

fn compile_services(cfg: &Config, plane: &Plane, reg: &mut Registry) -> Result<Services> {
    let mut backends: Vec<Option<BackendPlane>> = Vec::new();
    let mut clusters = Vec::new();
    for (ci, c) in cfg.clusters.iter().enumerate() {
        let mut members = Vec::new();
        for b in &c.backends {
            let id = reg.backend_id(&c.name, b.address, &b.name)?;
            // The egress port's own address towards the backend: the NAT
            // source by default, and the tunnel source in DSR modes.
            let src = match b.address {
                IpAddr::V4(a) => plane
                    .routes
                    .lookup_v4(a)
                    .and_then(|nh| plane.ports[nh.port].source_v4(a))
                    .map(IpAddr::V4),
                IpAddr::V6(a) => plane
                    .routes
                    .lookup_v6(a)
                    .and_then(|nh| plane.ports[nh.port].source_v6(a))
                    .map(IpAddr::V6),
            };
            if backends.len() <= id as usize {
                backends.resize(id as usize + 1, None);
            }
            backends[id as usize] = Some(BackendPlane {
                id,
                name: b.name.clone(),
                cluster: ci,
                addr: b.address,
                port: b.port,
                weight: b.weight,
                src,
            });
            members.push(id);
        }
        // Keyed by the backend's address as text: a pure function of the
        // config, independent of the order of backends in the file.
        let keys: Vec<(String, u32)> = c
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight))
            .collect();
        let maglev = MaglevTable::build(&keys, c.maglev_table_size)
            .map_err(|e| anyhow!("cluster {}: {e}", c.name))?;
        let wrr = wrr_sequence(&c.backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        clusters.push(ClusterPlane {
            name: c.name.clone(),
            sched: match c.scheduler {
                Scheduler::Maglev => Sched::Maglev,
                Scheduler::Wrr => Sched::Wrr,
                Scheduler::LeastConn => Sched::LeastConn,
                Scheduler::SourceHash => Sched::SourceHash,
            },
            seed: c.hash_seed,
            members,
            maglev,
            wrr,
        });
    }
    let mut services = Vec::new();
    for s in &cfg.services {
        let (cluster, _) = cfg
            .cluster(s.cluster_name())
            .ok_or_else(|| anyhow!("service {}: no cluster {}", s.name, s.cluster_name()))?;
        services.push(ServicePlane {
            id: reg.service_id(&s.name)?,
            name: s.name.clone(),
            vip: s.vip,
            port: s.port,
            proto: match s.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            },
            mode: match s.mode {
                ForwardMode::Nat => Mode::Nat,
                ForwardMode::Ipip => Mode::Ipip,
                ForwardMode::Gre => Mode::Gre,
                ForwardMode::L2Dsr => Mode::L2Dsr,
            },
            cluster,
            ingress: cfg
                .ports
                .iter()
                .position(|p| p.name == s.ingress_name())
                .unwrap_or(0),
            snat: s.snat.clone(),
        });
    }
    Ok(Services::new(services, clusters, backends))
}

/// Every address Sluice owns: the possible NAT source addresses.
pub fn owned_addresses(cfg: &Config) -> Vec<IpAddr> {
    cfg.ports
        .iter()
        .flat_map(|p| p.addresses.iter().map(|c| c.addr()))
        .collect()
}
