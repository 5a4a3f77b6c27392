//! Checks of the L7 tables, in the manner of `validate.rs`: the L7 keys of
//! each `[[cluster]]` (checked whatever uses the cluster, as
//! `maglev_table_size` is), then each `[[listener]]` after the services, so
//! that names and addresses are compared with theirs.
//!
//! Route literals are checked by the route compiler itself, through
//! [`crate::control::compile::route_refused`], so that the config check and
//! the compile step accept exactly the same routes.

use std::ops::RangeInclusive;

use super::listener::{Balance, CheckType, HealthCheck, Listener};
use super::sections::{Cluster, Protocol};
use super::spans::KeyPath;
use super::validate::{
    backend_key, find, in_range, item, problem, unique_name, unusable_address, Check, Problem,
};
use super::{vip_port, Config};
use crate::l7::http::{check_path, is_valid_field_name, MAX_HEADERS};

/// Most bytes of connection buffers all listeners together may ask of one
/// worker (`max_connections` × the bytes of one connection, summed): 64 GiB.
pub const MAX_LISTENER_MEMORY: u64 = 64 << 30;

/// The L7 keys of cluster `i`.
pub(super) fn cluster_keys(i: usize, c: &Cluster) -> Check {
    let at = |key: &str| item("cluster", i).key(key);
    let owner = format!("cluster {:?}", c.name);
    match (c.balance, &c.hash_on) {
        (Balance::ConsistentHash, None) => {
            return Err(problem!(
                at("balance"),
                "{owner}: balance \"consistent-hash\" needs `hash_on`: \"source\" (the client's \
                     address), \"header:NAME\" or \"cookie:NAME\""
            ));
        }
        (Balance::ConsistentHash, Some(_)) | (_, None) => {}
        (other, Some(_)) => {
            return Err(problem!(
                at("hash_on"),
                "{owner}: `hash_on` applies only to balance \"consistent-hash\", and the balance \
                     is \"{other}\""
            )
            .see(at("balance"), "balance set"));
        }
    }
    if let Some(name) = &c.sticky_cookie {
        if !is_valid_field_name(name.as_bytes()) {
            return Err(problem!(
                at("sticky_cookie"),
                "{owner}: sticky_cookie {name:?} is not a cookie name: expected an HTTP token \
                     (letters, digits and !#$%&'*+-.^_`|~) such as \"SLUICE_BACKEND\""
            ));
        }
    }
    match (c.sticky_max_age_s, &c.sticky_cookie) {
        (Some(_), None) => {
            return Err(problem!(
                at("sticky_max_age_s"),
                "{owner}: sticky_max_age_s applies only with `sticky_cookie`"
            ));
        }
        (Some(0), Some(_)) => {
            return Err(problem!(
                at("sticky_max_age_s"),
                "{owner}: sticky_max_age_s must be at least 1; leave it out for a session cookie"
            ));
        }
        _ => {}
    }
    let ranges: [(&str, u32, RangeInclusive<u64>); 5] = [
        ("connect_timeout_ms", c.connect_timeout_ms, 1..=600_000),
        ("response_timeout_ms", c.response_timeout_ms, 1..=3_600_000),
        ("retries", c.retries, 0..=10),
        ("retry_budget_percent", c.retry_budget_percent, 0..=100),
        ("max_idle_per_backend", c.max_idle_per_backend, 0..=65_536),
    ];
    for (key, value, range) in ranges {
        in_range(at(key), format!("{owner}: {key}"), value, range, "")?;
    }
    for (k, &status) in c.retry_on_status.iter().enumerate() {
        let here = at("retry_on_status").index(k);
        let why = ": only server errors are retried";
        in_range(
            here.clone(),
            format!("{owner}: retry_on_status"),
            status,
            500..=599,
            why,
        )?;
        if let Some(first) = c.retry_on_status[..k].iter().position(|&s| s == status) {
            return Err(
                problem!(here, "{owner}: retry_on_status {status} is listed twice")
                    .see(at("retry_on_status").index(first), "first listed"),
            );
        }
    }
    super::tls::cluster(i, c, &owner)?;
    match &c.health_check {
        Some(hc) => health_check(i, &owner, hc),
        None => Ok(()),
    }
}

fn health_check(i: usize, owner: &str, hc: &HealthCheck) -> Check {
    let at = |key: &str| item("cluster", i).key("health_check").key(key);
    let target = match (hc.check, &hc.path) {
        (CheckType::Http, Some(target)) => target.as_str(),
        (CheckType::Http, None) => {
            return Err(problem!(
                item("cluster", i).key("health_check"),
                "{owner}: health_check of type \"http\" needs `path`, the request target to GET \
                     (such as \"/healthz\"); or set type = \"tcp\" to check that connections are \
                     accepted"
            ));
        }
        (t, Some(_)) => {
            return Err(problem!(
                at("path"),
                "{owner}: health_check.path applies only to type \"http\", not {:?}",
                t.as_str()
            )
            .or_at(at("type")));
        }
        (_, None) => "/",
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let query_ok = query.is_none_or(|q| q.bytes().all(|b| b.is_ascii_graphic() && b != b'#'));
    if !path.starts_with('/') || check_path(path.as_bytes()).is_err() || !query_ok {
        return Err(problem!(at("path"), "{owner}: health_check.path {target:?} is not a request target Sluice sends: expected an \
                 absolute path such as \"/healthz\", optionally with a query (\"/status?full=1\")"));
    }
    if hc.port == Some(0) {
        return Err(problem!(
            at("port"),
            "{owner}: health_check.port 0 is not a port: expected 1..=65535"
        ));
    }
    if let Some(host) = &hc.host {
        if !valid_host_port(host) {
            return Err(problem!(
                at("host"),
                "{owner}: health_check.host {host:?} is not a Host value: expected host[:port] \
                     such as \"www.example.com\" or \"10.0.0.11:8080\""
            ));
        }
    }
    let owner = format!("{owner}: health_check");
    let what = |key: &str| format!("{owner}: {key}");
    in_range(
        at("interval_ms"),
        what("interval_ms"),
        hc.interval_ms,
        100..=3_600_000,
        "",
    )?;
    if hc.timeout_ms < 1 || hc.timeout_ms >= hc.interval_ms {
        return Err(problem!(
            at("timeout_ms"),
            "{owner}.timeout_ms {} must be at least 1 and below interval_ms ({}): a check ends \
                 before the next one starts",
            hc.timeout_ms,
            hc.interval_ms
        )
        .or_at(at("interval_ms")));
    }
    in_range(at("rise"), what("rise"), hc.rise, 1..=100, "")?;
    in_range(at("fall"), what("fall"), hc.fall, 1..=100, "")?;
    let [lo, hi] = hc.expect_status;
    for (k, status) in [lo, hi].into_iter().enumerate() {
        if !(100..=599).contains(&status) {
            return Err(problem!(
                at("expect_status").index(k),
                "{owner}.expect_status: {status} is not a status code 100..=599"
            ));
        }
    }
    if lo > hi {
        return Err(problem!(
            at("expect_status"),
            "{owner}.expect_status [{lo}, {hi}] is empty: expected [lo, hi] with lo <= hi, such \
                 as [200, 399]"
        ));
    }
    Ok(())
}

/// `host[:port]` as a `Host` field carries it (RFC 9110 §7.2): a name of
/// letters, digits, `-`, `.` and `_`, or a bracketed IPv6 literal, then
/// an optional port.
fn valid_host_port(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, after)) => {
                let inner_ok = !inner.is_empty()
                    && inner
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !inner_ok {
                    return false;
                }
                match after {
                    "" => (inner, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (inner, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let host_ok = !host.is_empty()
        && (text.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Every `[[listener]]`, after clusters and services.
pub(super) fn listeners(cfg: &Config) -> Check {
    let mut memory: u64 = 0;
    for (i, l) in cfg.listeners.iter().enumerate() {
        let at = |key: &str| item("listener", i).key(key);
        let owner = format!("listener {:?}", l.name);
        unique_name("listener", &cfg.listeners, i)?;
        if let Some(v) = cfg.services.iter().position(|v| v.name == l.name) {
            return Err(problem!(
                at("name"),
                "listener name {:?} is already the name of a service: listeners and services \
                     share one namespace in logs and metrics",
                l.name
            )
            .see(item("service", v).key("name"), "service"));
        }
        address(cfg, i, l, &owner)?;
        find("port", &cfg.ports, &l.ingress, &owner, at("ingress"))?;
        snat(cfg, i, l, &owner)?;
        sizing(i, l, &owner)?;
        let need = u64::from(l.max_connections) * l.bytes_per_connection();
        memory = memory.saturating_add(need);
        if memory > MAX_LISTENER_MEMORY {
            return Err(problem!(
                at("max_connections"),
                "{owner}: max_connections {} × {} bytes per connection (client_rx_buffer + \
                     client_tx_buffer + upstream_rx_buffer + upstream_tx_buffer + 2048) = {} per \
                     worker, {} with the listeners before it; at most {} per worker. Lower \
                     max_connections or the buffers",
                l.max_connections,
                l.bytes_per_connection(),
                gib(need),
                gib(memory),
                gib(MAX_LISTENER_MEMORY)
            )
            .or_at(item("listener", i)));
        }
        clusters_used(cfg, i, l, &owner)?;
        routes(i, l, &owner)?;
        super::tls::listener(i, l, &owner)?;
    }
    Ok(())
}

/// `n` bytes in GiB, one decimal.
fn gib(n: u64) -> String {
    format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64)
}

/// The address and port: usable, not Sluice's own, not taken by another
/// listener or a TCP service.
fn address(cfg: &Config, i: usize, l: &Listener, owner: &str) -> Check {
    let at = |key: &str| item("listener", i).key(key);
    if let Some(what) = unusable_address(l.address) {
        return Err(problem!(
            at("address"),
            "{owner}: address {} is {what}",
            l.address
        ));
    }
    for (pi, p) in cfg.ports.iter().enumerate() {
        if let Some(k) = p.addresses.iter().position(|c| c.addr() == l.address) {
            return Err(problem!(
                at("address"),
                "{owner}: address {} is an address of port {:?}; a listener's address must be \
                     a VIP of its own, which Sluice announces on the `ingress` port",
                l.address,
                p.name
            )
            .see(item("port", pi).key("addresses").index(k), "port address"));
        }
    }
    let why = ": a listener takes one TCP port";
    in_range(at("port"), format!("{owner}: port"), l.port, 1..=65535, why)?;
    let here = vip_port(l.address, l.port);
    if let Some((j, other)) = cfg.listeners[..i]
        .iter()
        .enumerate()
        .find(|(_, o)| o.address == l.address && o.port == l.port)
    {
        return Err(problem!(
            at("port"),
            "{owner}: {here} is already taken by listener {:?}",
            other.name
        )
        .see(item("listener", j).key("port"), "first defined"));
    }
    if let Some((j, v)) = cfg.services.iter().enumerate().find(|(_, v)| {
        v.protocol == Protocol::Tcp && v.vip == l.address && (v.port == l.port || v.port == 0)
    }) {
        return Err(problem!(
            at("port"),
            "{owner}: {here}/tcp is already served by service {:?} on {}/tcp; a TCP port of a \
                 VIP belongs to one L4 service or one listener",
            v.name,
            vip_port(v.vip, v.port)
        )
        .see(item("service", j).key("port"), "service"));
    }
    Ok(())
}

/// `snat`: addresses of ports, each once, of either family (a backend is
/// connected from those of its own).
fn snat(cfg: &Config, i: usize, l: &Listener, owner: &str) -> Check {
    let at = item("listener", i).key("snat");
    for (k, &ip) in l.snat.iter().enumerate() {
        if !cfg.ports.iter().any(|p| p.owns(ip)) {
            let own: Vec<String> = cfg
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .map(|c| c.addr().to_string())
                .collect();
            return Err(problem!(
                at.clone().index(k),
                "{owner}: snat address {ip} is not an address of any [[port]] (port addresses: \
                     {}); Sluice can only receive replies on its own addresses",
                own.join(", ")
            ));
        }
        if let Some(first) = l.snat[..k].iter().position(|&s| s == ip) {
            return Err(problem!(
                at.clone().index(k),
                "{owner}: snat address {ip} is listed twice"
            )
            .see(at.clone().index(first), "first listed"));
        }
    }
    Ok(())
}

/// Buffers, connection counts, timeouts and request limits.
fn sizing(i: usize, l: &Listener, owner: &str) -> Check {
    let at = |key: &str| item("listener", i).key(key);
    let range = |key: &str, value: u32, range: RangeInclusive<u64>| {
        in_range(at(key), format!("{owner}: {key}"), value, range, "")
    };
    for (key, value) in [
        ("client_rx_buffer", l.client_rx_buffer),
        ("client_tx_buffer", l.client_tx_buffer),
        ("upstream_rx_buffer", l.upstream_rx_buffer),
        ("upstream_tx_buffer", l.upstream_tx_buffer),
    ] {
        range(key, value, 4096..=16_777_216)?;
    }
    range("max_connections", l.max_connections, 1..=4_194_304)?;
    if !(1..=l.max_connections).contains(&l.max_half_open) {
        return Err(problem!(
            at("max_half_open"),
            "{owner}: max_half_open {} is out of range 1..=max_connections ({})",
            l.max_half_open,
            l.max_connections
        )
        .or_at(at("max_connections")));
    }
    range(
        "syn_cookie_threshold",
        l.syn_cookie_threshold,
        0..=4_194_304,
    )?;
    for (key, value) in [
        ("handshake_timeout_ms", l.handshake_timeout_ms),
        ("header_timeout_ms", l.header_timeout_ms),
        ("idle_timeout_ms", l.idle_timeout_ms),
    ] {
        range(key, value, 1..=86_400_000)?;
    }
    range("max_head_bytes", l.max_head_bytes, 1024..=1_048_576)?;
    if l.max_head_bytes > l.client_rx_buffer {
        return Err(problem!(
            at("max_head_bytes"),
            "{owner}: max_head_bytes {} is larger than client_rx_buffer {}: a whole request \
                 head must fit in the receive buffer",
            l.max_head_bytes,
            l.client_rx_buffer
        )
        .or_at(at("client_rx_buffer")));
    }
    range("max_headers", l.max_headers, 1..=MAX_HEADERS as u64)?;
    if !(16..=l.max_head_bytes).contains(&l.max_uri_bytes) {
        return Err(problem!(
            at("max_uri_bytes"),
            "{owner}: max_uri_bytes {} is out of range 16..=max_head_bytes ({})",
            l.max_uri_bytes,
            l.max_head_bytes
        )
        .or_at(at("max_head_bytes")));
    }
    Ok(())
}

/// Every cluster the listener sends to exists, and its backends have the
/// port to connect to.
fn clusters_used(cfg: &Config, i: usize, l: &Listener, owner: &str) -> Check {
    let listener = item("listener", i);
    let references = l
        .default_cluster
        .iter()
        .map(|c| {
            (
                c,
                listener.clone().key("default_cluster"),
                "default_cluster of",
            )
        })
        .chain(l.routes.iter().enumerate().filter_map(|(j, r)| {
            let at = listener.clone().key("route").index(j).key("cluster");
            Some((r.cluster.as_ref()?, at, "a route of"))
        }));
    for (name, at, what) in references {
        let what = format!("{what} {owner}");
        let (ci, cluster) = find("cluster", &cfg.clusters, name, &what, at.clone())?;
        if let Some((j, b)) = cluster
            .backends
            .iter()
            .enumerate()
            .find(|(_, b)| b.port.is_none())
        {
            return Err(problem!(
                item("cluster", ci).key("backend").index(j),
                "backend {} of cluster {:?} has no `port`, but {owner} sends requests to this \
                     cluster: an L7 listener opens its own connections to backends and needs the \
                     port to connect to, such as `port = 80`",
                b.address,
                cluster.name
            )
            .or_at(backend_key(ci, j, "address"))
            .see(at, "used"));
        }
    }
    Ok(())
}

/// Each route's keys, then each route through the route compiler.
fn routes(i: usize, l: &Listener, owner: &str) -> Check {
    for (j, r) in l.routes.iter().enumerate() {
        let at = |key: &str| item("listener", i).key("route").index(j).key(key);
        let owner = format!("{owner}, route[{j}]");
        if r.path_prefix.is_some() && r.path_exact.is_some() {
            return Err(problem!(
                at("path_exact"),
                "{owner}: set one of path_prefix and path_exact, not both"
            )
            .see(at("path_prefix"), "path_prefix"));
        }
        if r.rewrite_prefix.is_some() && r.path_prefix.is_none() {
            return Err(problem!(
                at("rewrite_prefix"),
                "{owner}: rewrite_prefix replaces the part of the path matched by \
                     path_prefix, so it needs path_prefix"
            ));
        }
        for key in ["request_headers_set", "response_headers_set"] {
            let set = if key == "request_headers_set" {
                &r.request_headers_set
            } else {
                &r.response_headers_set
            };
            for (k, (name, _)) in set.iter().enumerate() {
                if let Some((first, _)) =
                    set[..k].iter().find(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    return Err(problem!(
                        at(key).key(name),
                        "{owner}: {key} sets {name} twice (as {first} and {name}; field names \
                             are case-insensitive)"
                    ));
                }
            }
        }
    }
    // The default route has neither conditions nor edits: nothing to refuse.
    for (j, r) in l.routes.iter().enumerate() {
        if let Some((key, why)) = crate::control::compile::route_refused(r) {
            let base = item("listener", i).key("route").index(j);
            let at = KeyPath(base.0.iter().cloned().chain(key.0).collect());
            return Err(problem!(at, "{owner}, route[{j}]: {why}").or_at(base));
        }
    }
    Ok(())
}
