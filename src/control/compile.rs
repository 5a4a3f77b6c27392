//! Compiling a config into the immutable [`Plane`] the workers read:
//! ports and routes, and the L4 services with their Maglev tables. Runs on
//! the control thread at start-up and on every reload, never on a worker.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use hashbrown::HashMap;

use crate::config::{
    payload_bytes, CheckType, Config, ForwardMode, KeyPath, Listener, ListenerRoute, OnBackendDown,
    Protocol, Scheduler,
};
use crate::dpdk::port::PortInfo;
use crate::l4::maglev::MaglevTable;
use crate::l7::health::HealthState;
use crate::l7::http::{HeaderEdits, Limits, PrefixRewrite};
use crate::l7::plane::{
    Balance, Buffers, CheckKind, HashOn, HealthCheck, L7Cluster, L7Plane, ListenerPlane, Timeouts,
};
use crate::l7::router::{HttpsRedirect, Matcher, Route, RouteAction, Router, ValueMatch};
use crate::net::plane::{Plane, PortPlane};
use crate::net::services::{
    wrr_sequence, BackendPlane, ClusterPlane, Mode, Sched, ServicePlane, Services, MAX_BACKENDS,
    MAX_SERVICES,
};

/// Ids of backends and services, stable for the life of the process so
/// that connection entries and counters survive reloads.
///
/// A backend is known by its cluster's name and its address, a service by
/// its name: each keeps its id across any reload that adds, removes,
/// reorders or renames others. An id is never reused for something else,
/// since connections may still refer to it; a backend or service that comes
/// back gets its old id. So ids only grow, and a process that has seen more
/// than [`MAX_BACKENDS`] backends or [`MAX_SERVICES`] services must restart.
#[derive(Default, Debug, Clone)]
pub struct Registry {
    backends: HashMap<(String, IpAddr), u32>,
    services: HashMap<String, u16>,
    /// By backend id: (cluster, backend name) as last configured.
    pub backend_names: Vec<(String, String)>,
    /// By service id: service name.
    pub service_names: Vec<String>,
    /// (listener, certificate file, notAfter in seconds since the epoch)
    /// of every certificate of an https listener, as last loaded.
    pub certificates: Vec<(String, String, i64)>,
    /// The upstream TLS client configurations of the last compile, by
    /// cluster and settings digest: a reload that leaves a cluster's
    /// `[cluster.tls]` files as they were keeps its configuration, and
    /// with it the TLS sessions its backends gave (resumed handshakes
    /// after a reload, not full ones).
    upstream_tls: HashMap<(String, [u8; 32]), Arc<rustls::ClientConfig>>,
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

    /// The ids of `cfg`'s backends, by cluster and in file order, and of
    /// its services in file order; new ones are assigned the next free id.
    pub fn assign(&mut self, cfg: &Config) -> Result<(Vec<Vec<u32>>, Vec<u16>)> {
        let backends = cfg
            .clusters
            .iter()
            .map(|c| {
                c.backends
                    .iter()
                    .map(|b| self.backend_id(&c.name, b.address, &b.name))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let services = cfg
            .services
            .iter()
            .map(|s| self.service_id(&s.name))
            .collect::<Result<Vec<_>>>()?;
        Ok((backends, services))
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

/// Build the plane for `cfg` on the started ports `infos`, every backend
/// up.
pub fn build_plane(
    cfg: &Config,
    infos: &[PortInfo],
    reg: &mut Registry,
    workers: usize,
) -> Result<Plane> {
    build_plane_with_health(cfg, infos, reg, workers, &HealthState::default())
}

/// Build the plane for `cfg` with the backends `health` has down left out
/// of new connections' choices (Maglev tables, round-robin sequences,
/// least-conn).
pub fn build_plane_with_health(
    cfg: &Config,
    infos: &[PortInfo],
    reg: &mut Registry,
    workers: usize,
    health: &HealthState,
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
            flows_may_move: info.driver == "net_af_packet",
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
                index_of(&r.port),
                r.via,
            )
        })
        .collect();
    let neighbors = cfg
        .neighbors
        .iter()
        .map(|n| (index_of(&n.port), n.ip, n.mac.octets()))
        .collect();
    let mut plane = Plane::new(ports, &gateways, &routes, neighbors);
    plane.workers = workers;
    plane.services = compile_services(cfg, &plane, reg, health)?;
    plane.l7 = compile_l7(cfg, reg)?;
    reg.certificates = cfg
        .listeners
        .iter()
        .flat_map(|l| {
            l.certificates.iter().filter_map(|c| {
                let end = c.load().ok()?.not_after?;
                Some((l.name.clone(), c.cert.display().to_string(), end))
            })
        })
        .collect();
    for l in &cfg.listeners {
        let ingress = cfg
            .ports
            .iter()
            .position(|p| p.name == l.ingress)
            .unwrap_or(0);
        plane.services.add_vip(ingress, l.address);
    }
    plane.index_addresses();
    Ok(plane)
}

/// The upstream TLS of cluster `c` (`[cluster.tls]`), files read again;
/// the client configuration of the last compile (`last`) when the files
/// are the same, and noted in `kept` for the next.
fn upstream_tls(
    c: &crate::config::Cluster,
    last: &HashMap<(String, [u8; 32]), Arc<rustls::ClientConfig>>,
    kept: &mut HashMap<(String, [u8; 32]), Arc<rustls::ClientConfig>>,
) -> std::result::Result<Option<std::sync::Arc<crate::l7::plane::UpstreamTls>>, String> {
    use rustls::pki_types::ServerName;
    let Some(t) = &c.tls else {
        return Ok(None);
    };
    let loaded = t.load().map_err(|(key, msg)| format!("tls.{key}: {msg}"))?;
    let name = |n: &str| {
        ServerName::try_from(n.to_string()).map_err(|e| format!("server name {n:?}: {e}"))
    };
    let by_backend = c
        .backends
        .iter()
        .filter_map(|b| {
            b.tls_server_name
                .as_deref()
                .map(|n| Ok((b.address, name(n)?)))
        })
        .collect::<std::result::Result<_, String>>()?;
    let settings = crate::l7::tls::settings_digest(&loaded);
    let key = (c.name.clone(), settings);
    let config = match last.get(&key) {
        Some(config) => config.clone(),
        None => crate::l7::tls::client_config(&loaded)?,
    };
    kept.insert(key, config.clone());
    Ok(Some(std::sync::Arc::new(crate::l7::plane::UpstreamTls {
        config,
        settings,
        name: t.server_name.as_deref().map(name).transpose()?,
        by_backend,
    })))
}

/// The TLS of cluster `c`'s `type = "https"` health checks: its `ca`
/// (file read again) and `server_name`, or no verification.
fn check_tls(
    c: &crate::config::Cluster,
) -> std::result::Result<Option<std::sync::Arc<crate::l7::plane::UpstreamTls>>, String> {
    use rustls::pki_types::ServerName;
    let Some(h) = c
        .health_check
        .as_ref()
        .filter(|h| h.check == CheckType::Https)
    else {
        return Ok(None);
    };
    let config = match &h.ca {
        Some(ca) if h.verify => {
            let roots =
                crate::config::load_client_ca(ca).map_err(|e| format!("health_check.ca: {e}"))?;
            crate::l7::tls::client_config(&crate::config::LoadedClusterTls {
                roots,
                client_cert: None,
            })?
        }
        _ => crate::l7::tls::client_config_unverified()?,
    };
    let name = h
        .server_name
        .as_deref()
        .map(|n| ServerName::try_from(n.to_string()).map_err(|e| format!("server name {n:?}: {e}")))
        .transpose()?;
    Ok(Some(std::sync::Arc::new(crate::l7::plane::UpstreamTls {
        config,
        name,
        by_backend: Default::default(),
        // Keys pooled connections only; a check's connection is never pooled.
        settings: [0; 32],
    })))
}

/// Listeners and the per-request policy of every cluster.
fn compile_l7(cfg: &Config, reg: &mut Registry) -> Result<L7Plane> {
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
                kind: match h.check {
                    CheckType::Http => CheckKind::Http,
                    CheckType::Tcp => CheckKind::Tcp,
                    CheckType::Https => CheckKind::Https,
                    CheckType::Udp => CheckKind::Udp,
                },
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                host: h.host.clone(),
                interval_ms: h.interval_ms as u64,
                timeout_ms: h.timeout_ms as u64,
                rise: h.rise,
                fall: h.fall,
                expect: (h.expect_status[0], h.expect_status[1]),
                send: payload_bytes(h.send.as_deref(), h.send_hex.as_deref())
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                expect_bytes: payload_bytes(h.expect.as_deref(), h.expect_hex.as_deref())
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                passive_rst_limit: h.passive_rst_limit,
            }),
            tls: None,
            health_tls: None,
        })
        .collect::<Vec<_>>();
    let mut clusters = clusters;
    let mut kept = HashMap::new();
    for (lc, c) in clusters.iter_mut().zip(&cfg.clusters) {
        lc.tls = upstream_tls(c, &reg.upstream_tls, &mut kept)
            .map_err(|e| anyhow!("cluster {}: {e}", c.name))?;
        lc.health_tls = check_tls(c).map_err(|e| anyhow!("cluster {}: {e}", c.name))?;
    }
    let cluster_index = |name: &str| {
        cfg.clusters
            .iter()
            .position(|c| c.name == name)
            .unwrap_or(0) as u32
    };
    let mut listeners = Vec::new();
    for l in &cfg.listeners {
        let (routes, default) = listener_routes(l, cluster_index);
        let router =
            Router::new(routes, default).map_err(|e| anyhow!("listener {}: {e}", l.name))?;
        listeners.push(ListenerPlane {
            name: l.name.clone(),
            addr: l.address,
            port: l.port,
            router,
            limits: limits(l),
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
            syn_cookie_threshold: l
                .syn_cookies
                .then_some(l.syn_cookie_threshold.min(l.max_half_open)),
            snat: l.snat.clone(),
            tls: listener_tls(l)?,
            max_tls_handshakes: l.max_tls_handshakes,
            tls_headers: l.tls_headers,
        });
    }
    reg.upstream_tls = kept;
    Ok(L7Plane::new(listeners, clusters))
}

/// The rustls configuration of an `https` listener: its certificate files
/// read again (a reload picks up new files).
fn listener_tls(l: &Listener) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    if l.protocol != crate::config::ListenerProtocol::Https {
        return Ok(None);
    }
    let mut loaded = Vec::new();
    for c in &l.certificates {
        loaded.push(
            c.load()
                .map_err(|(_, e)| anyhow!("listener {}: {e}", l.name))?,
        );
    }
    let default = l.certificates.iter().position(|c| c.default).unwrap_or(0);
    let opts = crate::l7::tls::ServerOptions {
        min: l.tls_min_version.unwrap_or_default(),
        sni_strict: l.sni_strict,
        client_roots: match (&l.client_ca, l.client_auth) {
            (Some(path), auth) if auth != crate::config::ClientAuth::None => Some((
                std::sync::Arc::new(
                    crate::config::load_client_ca(path)
                        .map_err(|e| anyhow!("listener {}: {e}", l.name))?,
                ),
                auth == crate::config::ClientAuth::Require,
            )),
            _ => None,
        },
        ticketer: Some(match &l.ticket_key_file {
            // Read again on every reload: rotation is editing the file.
            Some(path) => std::sync::Arc::new(crate::l7::tls::FileTicketer::new(
                &crate::config::read_ticket_keys(path)
                    .map_err(|e| anyhow!("listener {}: {e}", l.name))?,
            )),
            None => crate::l7::tls::listener_ticketer(&l.name)
                .map_err(|e| anyhow!("listener {}: {e}", l.name))?,
        }),
    };
    crate::l7::tls::server_config(&loaded, default, &opts)
        .map(Some)
        .map_err(|e| anyhow!("listener {}: {e}", l.name))
}

/// The routes and default action of `l` for [`Router::new`], clusters
/// numbered by `cluster_index` (normally their position in
/// [`Config::clusters`]). The default action has no header edits.
pub(crate) fn listener_routes(
    l: &Listener,
    cluster_index: impl Fn(&str) -> u32,
) -> (Vec<Route>, Option<RouteAction>) {
    let routes = l
        .routes
        .iter()
        .map(|r| Route {
            matchers: matchers(r).into_iter().map(|(_, m)| m).collect(),
            action: action(r, r.cluster.as_deref().map_or(u32::MAX, &cluster_index)),
        })
        .collect();
    let default = l.default_cluster.as_deref().map(|name| RouteAction {
        cluster: cluster_index(name),
        ..RouteAction::default()
    });
    (routes, default)
}

/// The conditions of `r`, each with the path of its key relative to the
/// route, in a fixed order: host, path, method, headers, cookies, query.
fn matchers(r: &ListenerRoute) -> Vec<(KeyPath, Matcher)> {
    let host = |h: String| match h.starts_with("*.") {
        true => Matcher::HostWildcard(h),
        false => Matcher::HostExact(h),
    };
    let sni = |h: String| match h.starts_with("*.") {
        true => Matcher::SniWildcard(h),
        false => Matcher::SniExact(h),
    };
    type Single<'a> = (&'static str, &'a Option<String>, fn(String) -> Matcher);
    let single: [Single; 5] = [
        ("sni", &r.sni, sni),
        ("host", &r.host, host),
        ("path_prefix", &r.path_prefix, Matcher::PathPrefix),
        ("path_exact", &r.path_exact, Matcher::PathExact),
        ("method", &r.method, Matcher::Method),
    ];
    type Named<'a> = (
        &'static str,
        &'a [(String, String)],
        fn(String, ValueMatch) -> Matcher,
    );
    let named: [Named; 3] = [
        ("headers", &r.headers, |name, value| Matcher::Header {
            name,
            value,
        }),
        ("cookies", &r.cookies, |name, value| Matcher::Cookie {
            name,
            value,
        }),
        ("query", &r.query, |name, value| Matcher::Query {
            name,
            value,
        }),
    ];
    let single = single
        .into_iter()
        .filter_map(|(key, v, make)| v.as_ref().map(|v| (KeyPath::root(key), make(v.clone()))));
    let named = named.into_iter().flat_map(|(key, pairs, make)| {
        pairs.iter().map(move |(name, v)| {
            let value = match v.as_str() {
                "*" => ValueMatch::Present,
                v => ValueMatch::Exact(v.to_string()),
            };
            (KeyPath::root(key).key(name), make(name.clone(), value))
        })
    });
    single.chain(named).collect()
}

/// What a request matching `r` gets, sent to cluster number `cluster`.
/// `rewrite_prefix` without `path_prefix` (a config error) is left out.
fn action(r: &ListenerRoute, cluster: u32) -> RouteAction {
    RouteAction {
        cluster,
        redirect: r.redirect_https.map(|status| HttpsRedirect {
            status,
            port: r.redirect_https_port,
        }),
        request_headers: HeaderEdits {
            remove: r.request_headers_remove.clone(),
            set: r.request_headers_set.clone(),
            add: r.request_headers_add.clone(),
        },
        response_headers: HeaderEdits {
            remove: r.response_headers_remove.clone(),
            set: r.response_headers_set.clone(),
            add: r.response_headers_add.clone(),
        },
        rewrite_prefix: r
            .path_prefix
            .clone()
            .zip(r.rewrite_prefix.clone())
            .map(|(from, to)| PrefixRewrite { from, to }),
    }
}

/// Why [`Router::new`] refuses route `r`, if it does, with the key at
/// fault relative to the route (empty when no one key is): each condition,
/// header edit and half of the prefix rewrite is compiled on its own to
/// find it. The message of a condition starts with its key.
pub(crate) fn route_refused(r: &ListenerRoute) -> Option<(KeyPath, String)> {
    let refused = |matchers, action| {
        Router::new(vec![Route { matchers, action }], None)
            .err()
            .map(|e| e.message)
    };
    let whole = refused(
        matchers(r).into_iter().map(|(_, m)| m).collect(),
        action(r, 0),
    )?;
    for (key, m) in matchers(r) {
        if let Some(why) = refused(vec![m], RouteAction::default()) {
            return Some((key.clone(), format!("{key}: {why}")));
        }
    }
    // Each header edit on its own, in key order: request set, add, remove,
    // then the same of the response.
    let mut edits: Vec<(KeyPath, RouteAction)> = Vec::new();
    for (request, side) in [(true, "request"), (false, "response")] {
        let act = action(r, 0);
        let all = if request {
            act.request_headers
        } else {
            act.response_headers
        };
        let one = |edit: HeaderEdits| {
            let mut a = RouteAction::default();
            *(if request {
                &mut a.request_headers
            } else {
                &mut a.response_headers
            }) = edit;
            a
        };
        for (name, value) in all.set {
            let key = KeyPath::root(&format!("{side}_headers_set")).key(&name);
            let set = vec![(name, value)];
            edits.push((
                key,
                one(HeaderEdits {
                    set,
                    ..HeaderEdits::default()
                }),
            ));
        }
        for (name, value) in all.add {
            let key = KeyPath::root(&format!("{side}_headers_add")).key(&name);
            let add = vec![(name, value)];
            edits.push((
                key,
                one(HeaderEdits {
                    add,
                    ..HeaderEdits::default()
                }),
            ));
        }
        for (k, name) in all.remove.into_iter().enumerate() {
            let key = KeyPath::root(&format!("{side}_headers_remove")).index(k);
            let remove = vec![name];
            edits.push((
                key,
                one(HeaderEdits {
                    remove,
                    ..HeaderEdits::default()
                }),
            ));
        }
    }
    if let Some(status) = r.redirect_https {
        let redirect = |port| RouteAction {
            redirect: Some(HttpsRedirect { status, port }),
            ..RouteAction::default()
        };
        edits.push((KeyPath::root("redirect_https"), redirect(None)));
        edits.push((
            KeyPath::root("redirect_https_port"),
            redirect(r.redirect_https_port),
        ));
    }
    if let (Some(from), Some(to)) = (&r.path_prefix, &r.rewrite_prefix) {
        let rewrite = |from: &str, to: &str| RouteAction {
            rewrite_prefix: Some(PrefixRewrite {
                from: from.to_string(),
                to: to.to_string(),
            }),
            ..RouteAction::default()
        };
        edits.push((KeyPath::root("rewrite_prefix"), rewrite("/", to)));
        edits.push((KeyPath::root("path_prefix"), rewrite(from, "/")));
    }
    for (key, action) in edits {
        if let Some(why) = refused(Vec::new(), action) {
            return Some((key, why));
        }
    }
    Some((KeyPath::default(), whole))
}

/// The request limits of `l`; `max_body_bytes` 0 (no limit) becomes
/// `u64::MAX`.
pub(crate) fn limits(l: &Listener) -> Limits {
    Limits {
        max_head_bytes: l.max_head_bytes as usize,
        max_headers: l.max_headers as usize,
        max_uri_bytes: l.max_uri_bytes as usize,
        max_body_bytes: match l.max_body_bytes {
            0 => u64::MAX,
            n => n,
        },
    }
}

fn compile_services(
    cfg: &Config,
    plane: &Plane,
    reg: &mut Registry,
    health: &HealthState,
) -> Result<Services> {
    let (backend_ids, service_ids) = reg.assign(cfg)?;
    let mut backends: Vec<Option<BackendPlane>> = Vec::new();
    let mut clusters = Vec::new();
    for (ci, c) in cfg.clusters.iter().enumerate() {
        let mut members = Vec::new();
        // A down backend weighs nothing for new connections, as if drained
        // with weight 0, unless every backend with a weight is down: then
        // the cluster keeps them all (a check failing everywhere is more
        // likely wrong than every backend dead, and "no backend" helps no
        // client; Envoy's panic mode does the same).
        let ids = &backend_ids[ci];
        let checked = c.health_check.is_some();
        let all_down = checked
            && c.backends
                .iter()
                .zip(ids)
                .all(|(b, &id)| b.weight == 0 || !health.is_up(id));
        let up = |id: u32| !checked || all_down || health.is_up(id);
        let check_port = |b: &crate::config::Backend| {
            let hc = c.health_check.as_ref()?;
            hc.port.or(b.port).or_else(|| cfg.check_port(&c.name))
        };
        for (b, &id) in c.backends.iter().zip(&backend_ids[ci]) {
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
                up: up(id),
                check_port: check_port(b),
                rst_limit: c.health_check.as_ref().map_or(0, |h| h.passive_rst_limit),
            });
            members.push(id);
        }
        let weight = |(b, &id): (&crate::config::Backend, &u32)| if up(id) { b.weight } else { 0 };
        // Keyed by the backend's address as text: a pure function of the
        // config, independent of the order of backends in the file. A down
        // backend keeps its key with weight 0, so that only its slots move.
        let keys: Vec<(String, u32)> = c
            .backends
            .iter()
            .zip(ids)
            .map(|(b, id)| (b.address.to_string(), weight((b, id))))
            .collect();
        let maglev = MaglevTable::build(&keys, c.maglev_table_size)
            .map_err(|e| anyhow!("cluster {}: {e}", c.name))?;
        let wrr = wrr_sequence(&c.backends.iter().zip(ids).map(weight).collect::<Vec<_>>());
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
            reset_on_down: c.on_backend_down == OnBackendDown::Reset,
        });
    }
    let mut services = Vec::new();
    for (s, &id) in cfg.services.iter().zip(&service_ids) {
        let (cluster, _) = cfg
            .cluster(&s.cluster)
            .ok_or_else(|| anyhow!("service {}: no cluster {}", s.name, s.cluster))?;
        services.push(ServicePlane {
            id,
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
                .position(|p| p.name == s.ingress)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid config with `clusters` (name, last octets of backends on
    /// 10.0.0.0/24) and `services` (name, cluster), the services on one VIP
    /// with ports 80, 81, ...
    fn config(clusters: &[(&str, &[u8])], services: &[(&str, &str)]) -> Config {
        let mut text = String::from(
            "[eal]\nargs = [\"--no-pci\"]\n\n[[port]]\nname = \"wan\"\nvdev = \"net_null0\"\n\
             addresses = [\"10.0.0.1/24\"]\n",
        );
        for (name, backends) in clusters {
            text += &format!("\n[[cluster]]\nname = \"{name}\"\n");
            for b in *backends {
                text += &format!("[[cluster.backend]]\naddress = \"10.0.0.{b}\"\n");
            }
        }
        for (port, (name, cluster)) in (80..).zip(services) {
            text += &format!(
                "\n[[service]]\nname = \"{name}\"\nvip = \"10.0.0.100\"\nport = {port}\n\
                 cluster = \"{cluster}\"\ningress = \"wan\"\n"
            );
        }
        crate::config::from_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// (cluster, last octet of the address, id) of each backend.
    type BackendIds = Vec<(String, u8, u32)>;

    /// Backend ids, and service ids by name.
    fn ids(reg: &mut Registry, cfg: &Config) -> (BackendIds, Vec<(String, u16)>) {
        let (backends, services) = reg.assign(cfg).unwrap();
        let backends = cfg
            .clusters
            .iter()
            .zip(&backends)
            .flat_map(|(c, ids)| {
                c.backends.iter().zip(ids).map(|(b, &id)| match b.address {
                    IpAddr::V4(a) => (c.name.clone(), a.octets()[3], id),
                    IpAddr::V6(_) => unreachable!(),
                })
            })
            .collect();
        let services = cfg
            .services
            .iter()
            .zip(services)
            .map(|(s, id)| (s.name.clone(), id))
            .collect();
        (backends, services)
    }

    fn backend(ids: &[(String, u8, u32)], cluster: &str, octet: u8) -> u32 {
        ids.iter()
            .find(|(c, o, _)| c == cluster && *o == octet)
            .map(|&(_, _, id)| id)
            .unwrap()
    }

    fn port_info() -> PortInfo {
        PortInfo {
            id: 0,
            driver: "net_null".into(),
            mac: [2, 0, 0, 0, 0, 1],
            promiscuous: false,
            rss: false,
            queues: 1,
            max_queues: 1,
            mtu_set: true,
            tx_offloads: 0,
        }
    }

    /// A reload that leaves a cluster's `[cluster.tls]` files as they
    /// were keeps its client configuration (and so the sessions its
    /// backends gave, for resumed handshakes); another CA gets a new one.
    #[test]
    fn upstream_tls_sessions_outlive_a_reload_that_changes_nothing() {
        use crate::l7::tls::tests::{ca, dir};
        // Two test CAs, in two directories (one CA per directory).
        let (d1, d2) = (dir(), dir());
        let (ca_a, ca_b) = (ca(&d1).0, ca(&d2).0);
        let with_ca = |ca: &std::path::Path| {
            let mut cfg = config(&[("web", &[11]), ("api", &[12])], &[("a", "web")]);
            for c in &mut cfg.clusters {
                c.tls = Some(crate::config::ClusterTls {
                    ca: ca.to_path_buf(),
                    server_name: None,
                    cert: None,
                    key: None,
                });
            }
            cfg
        };
        let mut reg = Registry::default();
        let tls = |reg: &mut Registry, cfg: &Config| {
            let plane = build_plane(cfg, &[port_info()], reg, 1).unwrap();
            let configs: Vec<_> = (0..2)
                .map(|i| plane.l7.cluster(i).tls.as_ref().unwrap().config.clone())
                .collect();
            configs
        };
        let first = tls(&mut reg, &with_ca(&ca_a));
        assert!(!Arc::ptr_eq(&first[0], &first[1]), "one per cluster");
        let again = tls(&mut reg, &with_ca(&ca_a));
        assert!(Arc::ptr_eq(&first[0], &again[0]) && Arc::ptr_eq(&first[1], &again[1]));
        let other = tls(&mut reg, &with_ca(&ca_b));
        assert!(
            !Arc::ptr_eq(&first[0], &other[0]),
            "another CA: a new configuration"
        );
        // Only the last compile's configurations are kept.
        let back = tls(&mut reg, &with_ca(&ca_a));
        assert!(!Arc::ptr_eq(&first[0], &back[0]));
        let _ = std::fs::remove_dir_all(&d1);
        let _ = std::fs::remove_dir_all(&d2);
    }

    /// Only a device that may move a flow between queues (af_packet's
    /// fanout rollover) makes workers pass each other packets of flows
    /// they do not track; with RSS a miss stays a miss.
    #[test]
    fn only_af_packet_ports_pass_misses_between_workers() {
        let cfg = config(&[("web", &[11])], &[("a", "web")]);
        for (driver, moves) in [
            ("net_af_packet", true),
            ("net_null", false),
            ("mlx5_pci", false),
        ] {
            let info = PortInfo {
                driver: driver.into(),
                ..port_info()
            };
            let plane = build_plane(&cfg, &[info], &mut Registry::default(), 2).unwrap();
            assert_eq!(plane.ports[0].flows_may_move, moves, "{driver}");
        }
    }

    /// The churn test of `l4::maglev`, through the health path: a backend
    /// its check takes down leaves the Maglev table and round-robin
    /// sequence, only its own slots move (each to some other backend),
    /// and when it comes back the table is the one it had before.
    #[test]
    fn a_down_backend_loses_only_its_slots_and_gets_them_back() {
        let mut cfg = config(&[("web", &[11, 12, 13, 14, 15])], &[("a", "web")]);
        cfg.clusters[0].health_check = Some(crate::config::HealthCheck {
            check: CheckType::Tcp,
            path: None,
            port: None,
            host: None,
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
            expect_status: [200, 399],
            send: None,
            send_hex: None,
            expect: None,
            expect_hex: None,
            ca: None,
            server_name: None,
            verify: true,
            passive_rst_limit: 0,
        });
        cfg.clusters[0].on_backend_down = OnBackendDown::Reset;
        let health = HealthState::default();
        let mut reg = Registry::default();
        let build = |reg: &mut Registry, h: &HealthState| {
            build_plane_with_health(&cfg, &[port_info()], reg, 1, h).unwrap()
        };
        let up = build(&mut reg, &health);
        let c = &up.services.clusters[0];
        let before: Vec<u32> = c
            .maglev
            .slots()
            .iter()
            .map(|&i| c.members[i as usize])
            .collect();
        // The check port is the service's (80): the backends have none.
        assert!(up.services.probing);
        assert!(up
            .services
            .backends
            .iter()
            .flatten()
            .all(|b| b.check_port == Some(80)));
        let gone = c.members[2];
        health.set(gone, false);
        let down = build(&mut reg, &health);
        let d = &down.services.clusters[0];
        let after: Vec<u32> = d
            .maglev
            .slots()
            .iter()
            .map(|&i| d.members[i as usize])
            .collect();
        // Maglev's own bounds (`l4::maglev`'s churn test): about 1/N of the
        // table moves, the down backend's slots, and few others.
        assert!(!after.contains(&gone), "the down backend still owns a slot");
        let n = c.members.len() as f64;
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let survivors = before.iter().filter(|&&b| b != gone).count();
        let moved_survivors = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != gone && b != a)
            .count();
        assert!(
            moved as f64 <= 1.3 * before.len() as f64 / n,
            "{moved} slots moved"
        );
        assert!(
            (moved_survivors as f64) < 0.3 / n * survivors as f64,
            "{moved_survivors} of {survivors} surviving slots moved"
        );
        assert!(!d.wrr.iter().any(|&i| d.members[i as usize] == gone));
        let b = down.services.backend(gone).unwrap();
        assert!(
            !b.up && b.weight == 1,
            "configured weight kept, up flag off"
        );
        assert!(down.services.reset_now(gone));
        assert!(!down.services.reset_now(d.members[0]));
        // Back up: the table it had.
        health.set(gone, true);
        let back = build(&mut reg, &health);
        let k = &back.services.clusters[0];
        assert_eq!(k.maglev.slots(), c.maglev.slots());
        // Every backend down: the cluster keeps them all rather than none.
        for &id in &c.members {
            health.set(id, false);
        }
        let all = build(&mut reg, &health);
        assert_eq!(all.services.clusters[0].maglev.slots(), c.maglev.slots());
        assert!(!all.services.reset_now(gone));
    }

    #[test]
    fn first_ids_follow_file_order() {
        let mut reg = Registry::default();
        let cfg = config(
            &[("web", &[11, 12]), ("api", &[21])],
            &[("a", "web"), ("b", "api")],
        );
        let (b, s) = ids(&mut reg, &cfg);
        let b: Vec<u32> = b.iter().map(|&(_, _, id)| id).collect();
        assert_eq!(b, [0, 1, 2]);
        assert_eq!(s, [("a".to_string(), 0), ("b".to_string(), 1)]);
        assert_eq!(reg.backend_names[2], ("api".into(), "10.0.0.21".into()));
        assert_eq!(reg.service_names, ["a", "b"]);
    }

    #[test]
    fn backends_keep_ids_when_others_change() {
        let mut reg = Registry::default();
        let (old, _) = ids(
            &mut reg,
            &config(&[("web", &[11, 12, 13]), ("api", &[21])], &[]),
        );
        // 12 removed, 14 added, web's backends reordered, a cluster added
        // before the others and the clusters reordered.
        let (new, _) = ids(
            &mut reg,
            &config(
                &[("db", &[31]), ("api", &[21]), ("web", &[13, 14, 11])],
                &[],
            ),
        );
        for (cluster, octet) in [("web", 11), ("web", 13), ("api", 21)] {
            assert_eq!(
                backend(&new, cluster, octet),
                backend(&old, cluster, octet),
                "{cluster} 10.0.0.{octet}"
            );
        }
        // New backends get ids no backend ever had, the removed one's
        // included: a connection entry may still name it.
        let (db, web14) = (backend(&new, "db", 31), backend(&new, "web", 14));
        assert!(db >= 4 && web14 >= 4 && db != web14, "{new:?}");
    }

    #[test]
    fn removed_backend_id_is_not_reused_and_comes_back() {
        let mut reg = Registry::default();
        let (first, _) = ids(&mut reg, &config(&[("web", &[11, 12])], &[]));
        let gone = backend(&first, "web", 12);
        let (second, _) = ids(&mut reg, &config(&[("web", &[11, 13])], &[]));
        assert_ne!(backend(&second, "web", 13), gone);
        let (third, _) = ids(&mut reg, &config(&[("web", &[12, 11, 13])], &[]));
        assert_eq!(backend(&third, "web", 12), gone);
        assert_eq!(backend(&third, "web", 13), backend(&second, "web", 13));
    }

    #[test]
    fn backend_is_its_cluster_and_address() {
        let mut reg = Registry::default();
        let (b, _) = ids(&mut reg, &config(&[("web", &[11]), ("api", &[11])], &[]));
        assert_ne!(backend(&b, "web", 11), backend(&b, "api", 11));
        // A new name (label) is the same backend, shown by its new name.
        let id = backend(&b, "web", 11);
        let mut cfg = config(&[("web", &[11])], &[]);
        cfg.clusters[0].backends[0].name = "w1".into();
        let (b, _) = ids(&mut reg, &cfg);
        assert_eq!(backend(&b, "web", 11), id);
        assert_eq!(reg.backend_names[id as usize], ("web".into(), "w1".into()));
    }

    #[test]
    fn services_keep_ids_when_others_change() {
        let mut reg = Registry::default();
        let clusters: &[(&str, &[u8])] = &[("web", &[11])];
        let (_, old) = ids(
            &mut reg,
            &config(clusters, &[("a", "web"), ("b", "web"), ("c", "web")]),
        );
        let (_, new) = ids(
            &mut reg,
            &config(clusters, &[("d", "web"), ("c", "web"), ("a", "web")]),
        );
        let id = |list: &[(String, u16)], name: &str| {
            list.iter()
                .find(|(n, _)| n == name)
                .map(|&(_, id)| id)
                .unwrap()
        };
        assert_eq!(id(&new, "a"), id(&old, "a"));
        assert_eq!(id(&new, "c"), id(&old, "c"));
        assert_eq!(id(&new, "d"), 3, "b's id 1 is not reused");
        let (_, back) = ids(&mut reg, &config(clusters, &[("b", "web")]));
        assert_eq!(id(&back, "b"), id(&old, "b"));
        assert_eq!(reg.service_names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn ids_run_out_over_a_process_life() {
        let mut reg = Registry::default();
        for n in 0..MAX_SERVICES {
            reg.service_id(&format!("s{n}")).unwrap();
        }
        assert!(reg.service_id("one-more").is_err());
        reg.service_id("s0").unwrap();
        let mut reg = Registry::default();
        for n in 0..MAX_BACKENDS as u32 {
            reg.backend_id("web", IpAddr::from(n.to_be_bytes()), "b")
                .unwrap();
        }
        let more = IpAddr::from([10, 255, 255, 255]);
        assert!(reg.backend_id("web", more, "b").is_err());
        reg.backend_id("web", IpAddr::from([0, 0, 0, 0]), "b")
            .unwrap();
    }
}
