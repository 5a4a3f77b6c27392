//! Checks of the L7 tables, in the manner of `validate.rs`: the L7 keys of
//! each `[[cluster]]` (checked whatever uses the cluster, as
//! `maglev_table_size` is), then each `[[listener]]` after the services, so
//! that names and addresses are compared with theirs.
//!
//! Route literals are checked by the route compiler itself, through
//! [`crate::control::compile::route_refused`], so that the config check and
//! the compile step accept exactly the same routes.

use std::ops::RangeInclusive;

use super::listener::{
    payload_bytes, Balance, CheckType, HealthCheck, Listener, MAX_CHECK_EXPECT, MAX_CHECK_SEND,
};
use super::sections::{Cluster, Protocol};
use super::spans::KeyPath;
use super::validate::{
    backend_key, ensure, find, in_range, item, own_addresses, problem, unique_name, vip, Check,
    Problem,
};
use super::{vip_port, Config};
use crate::l7::http::{check_path, is_valid_field_name, MAX_HEADERS};

/// Most bytes of connection buffers all listeners together may ask of one
/// worker (`max_connections` × the bytes of one connection, summed): 64 GiB.
pub const MAX_LISTENER_MEMORY: u64 = 64 << 30;

/// Each `(key, value, range)` at `at(key)`, named `{owner}: {key}`, in order.
fn ranges<const N: usize>(
    at: impl Fn(&str) -> KeyPath,
    owner: &str,
    keys: [(&str, u32, RangeInclusive<u64>); N],
) -> Check {
    for (key, value, range) in keys {
        in_range(at(key), format!("{owner}: {key}"), value, range, "")?;
    }
    Ok(())
}

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
        ensure!(
            is_valid_field_name(name.as_bytes()),
            at("sticky_cookie"),
            "{owner}: sticky_cookie {name:?} is not a cookie name: expected an HTTP token \
             (letters, digits and !#$%&'*+-.^_`|~) such as \"SLUICE_BACKEND\""
        );
    }
    let message = match (c.sticky_max_age_s, &c.sticky_cookie) {
        (Some(_), None) => "sticky_max_age_s applies only with `sticky_cookie`",
        (Some(0), Some(_)) => {
            "sticky_max_age_s must be at least 1; leave it out for a session cookie"
        }
        _ => "",
    };
    ensure!(
        message.is_empty(),
        at("sticky_max_age_s"),
        "{owner}: {message}"
    );
    ranges(
        at,
        &owner,
        [
            ("connect_timeout_ms", c.connect_timeout_ms, 1..=600_000),
            ("response_timeout_ms", c.response_timeout_ms, 1..=3_600_000),
            ("retries", c.retries, 0..=10),
            ("retry_budget_percent", c.retry_budget_percent, 0..=100),
            ("max_idle_per_backend", c.max_idle_per_backend, 0..=65_536),
        ],
    )?;
    for (k, &status) in c.retry_on_status.iter().enumerate() {
        let (here, what) = (
            at("retry_on_status").index(k),
            format!("{owner}: retry_on_status"),
        );
        let why = ": only server errors are retried";
        in_range(here.clone(), what, status, 500..=599, why)?;
        if let Some(first) = c.retry_on_status[..k].iter().position(|&s| s == status) {
            return Err(
                problem!(here, "{owner}: retry_on_status {status} is listed twice")
                    .see(at("retry_on_status").index(first), "first listed"),
            );
        }
    }
    super::tls::cluster(i, c, &owner)?;
    match &c.health_check {
        Some(hc) => {
            health_check(i, &owner, hc)?;
            check_payloads_and_tls(i, c, &owner, hc)
        }
        None => Ok(()),
    }
}

/// The keys of `[cluster.health_check]` that belong to one type: `send`,
/// `send_hex`, `expect`, `expect_hex` to `"udp"`; `ca`, `server_name`,
/// `verify` to `"https"`.
fn check_payloads_and_tls(i: usize, c: &Cluster, owner: &str, hc: &HealthCheck) -> Check {
    let at = |key: &str| item("cluster", i).key("health_check").key(key);
    let (kind, udp) = (hc.check.as_str(), hc.check == CheckType::Udp);
    for (key, set, only) in [
        ("send", hc.send.is_some(), "udp"),
        ("send_hex", hc.send_hex.is_some(), "udp"),
        ("expect", hc.expect.is_some(), "udp"),
        ("expect_hex", hc.expect_hex.is_some(), "udp"),
        ("ca", hc.ca.is_some(), "https"),
        ("server_name", hc.server_name.is_some(), "https"),
        ("verify", !hc.verify, "https"),
    ] {
        if set && kind != only {
            let message = format!("health_check.{key} applies only to type \"{only}\"");
            return Err(problem!(at(key), "{owner}: {message}, not {kind:?}").or_at(at("type")));
        }
    }
    let payloads = [
        ("send", &hc.send, &hc.send_hex, MAX_CHECK_SEND, udp),
        (
            "expect",
            &hc.expect,
            &hc.expect_hex,
            MAX_CHECK_EXPECT,
            false,
        ),
    ];
    for (key, text, hex, max, required) in payloads {
        let hex_key = format!("{key}_hex");
        if text.is_some() && hex.is_some() {
            let message = format!("health_check has both `{key}` and `{hex_key}`: give one");
            return Err(problem!(at(&hex_key), "{owner}: {message}").see(at(key), "also set"));
        }
        let here = if hex.is_some() { at(&hex_key) } else { at(key) };
        match payload_bytes(text.as_deref(), hex.as_deref()) {
            Err(e) => return Err(problem!(here, "{owner}: health_check.{hex_key} {e}")),
            Ok(None) if required => {
                return Err(problem!(
                    item("cluster", i).key("health_check"),
                    "{owner}: health_check of type \"udp\" needs `send` (text) or `send_hex` \
                     (such as \"12 34 01 00\"), the datagram to send"
                ))
            }
            Ok(Some(b)) if b.is_empty() || b.len() > max => {
                let n = b.len();
                let message = format!("health_check.{key} has {n} bytes: expected 1..={max}");
                return Err(problem!(here, "{owner}: {message}"));
            }
            Ok(_) => {}
        }
    }
    if hc.check != CheckType::Https {
        return Ok(());
    }
    ensure!(
        c.tls.is_none(),
        at("type"),
        "{owner}: health_check type \"https\" in a cluster with [cluster.tls]: its type \"http\" \
         checks already go over TLS with the cluster's settings; use type = \"http\""
    );
    match (&hc.ca, hc.verify) {
        (None, true) => {
            return Err(problem!(
                item("cluster", i).key("health_check"),
                "{owner}: health_check of type \"https\" needs `ca`, the PEM file of the CA \
                 certificates the backends' certificates chain to; or verify = false to check \
                 without verifying them"
            ))
        }
        (Some(_), false) => {
            return Err(problem!(
                at("ca"),
                "{owner}: health_check has `ca` and verify = false: give `ca` to verify \
                 certificates, or verify = false not to"
            )
            .see(at("verify"), "verify set"))
        }
        (Some(ca), true) => {
            super::tls::load_client_ca(ca)
                .map_err(|e| problem!(at("ca"), "{owner}: health_check.ca: {e}"))?;
        }
        (None, false) => {}
    }
    if let Some(n) = &hc.server_name {
        ensure!(
            !n.starts_with("*.") && rustls::pki_types::ServerName::try_from(n.as_str()).is_ok(),
            at("server_name"),
            "{owner}: invalid health_check.server_name {n:?}: expected a DNS name such as \
             \"web.internal.example\" or an IP address"
        );
    }
    Ok(())
}

fn health_check(i: usize, owner: &str, hc: &HealthCheck) -> Check {
    let at = |key: &str| item("cluster", i).key("health_check").key(key);
    let target = match (hc.check, &hc.path) {
        (CheckType::Http | CheckType::Https, Some(target)) => target.as_str(),
        (t @ (CheckType::Http | CheckType::Https), None) => {
            let t = t.as_str();
            return Err(problem!(
                item("cluster", i).key("health_check"),
                "{owner}: health_check of type {t:?} needs `path`, the request target to GET \
                 (such as \"/healthz\"); or set type = \"tcp\" to check that connections are \
                 accepted"
            ));
        }
        (t, Some(_)) => {
            let t = t.as_str();
            return Err(problem!(
                at("path"),
                "{owner}: health_check.path applies only to types \"http\" and \"https\", not \
                 {t:?}"
            )
            .or_at(at("type")));
        }
        (_, None) => "/",
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query_ok = query.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
    ensure!(
        path.starts_with('/') && check_path(path.as_bytes()).is_ok() && query_ok,
        at("path"),
        "{owner}: health_check.path {target:?} is not a request target Sluice sends: expected an \
         absolute path such as \"/healthz\", optionally with a query (\"/status?full=1\")"
    );
    let message = "health_check.port 0 is not a port: expected 1..=65535";
    ensure!(hc.port != Some(0), at("port"), "{owner}: {message}");
    if let Some(host) = &hc.host {
        ensure!(
            valid_host_port(host),
            at("host"),
            "{owner}: health_check.host {host:?} is not a Host value: expected host[:port] such \
             as \"www.example.com\" or \"10.0.0.11:8080\""
        );
    }
    let owner = format!("{owner}: health_check");
    ranges(
        at,
        &owner,
        [("interval_ms", hc.interval_ms, 100..=3_600_000)],
    )?;
    let (timeout, interval) = (hc.timeout_ms, hc.interval_ms);
    if timeout < 1 || timeout >= interval {
        return Err(problem!(
            at("timeout_ms"),
            "{owner}.timeout_ms {timeout} must be at least 1 and below interval_ms ({interval}): \
             a check ends before the next one starts"
        )
        .or_at(at("interval_ms")));
    }
    ranges(
        at,
        &owner,
        [("rise", hc.rise, 1..=100), ("fall", hc.fall, 1..=100)],
    )?;
    let (rst, what) = (hc.passive_rst_limit, format!("{owner}: passive_rst_limit"));
    in_range(at("passive_rst_limit"), what, rst, 0..=10_000, " (0: off)")?;
    let [lo, hi] = hc.expect_status;
    for (k, status) in [lo, hi].into_iter().enumerate() {
        ensure!(
            (100..=599).contains(&status),
            at("expect_status").index(k),
            "{owner}.expect_status: {status} is not a status code 100..=599"
        );
    }
    ensure!(
        lo <= hi,
        at("expect_status"),
        "{owner}.expect_status [{lo}, {hi}] is empty: expected [lo, hi] with lo <= hi, such as \
         [200, 399]"
    );
    Ok(())
}

/// `host[:port]` as a `Host` field carries it (RFC 9110 §7.2): a name of
/// letters, digits, `-`, `.` and `_`, or a bracketed IPv6 literal, then
/// an optional port.
fn valid_host_port(text: &str) -> bool {
    let (host_ok, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let Some((inner, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')),
            };
            let inner_ok = !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (inner_ok, port)
        }
        None => {
            let (host, port) = text
                .split_once(':')
                .map_or((text, None), |(h, p)| (h, Some(p)));
            let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            (!host.is_empty() && host.bytes().all(name), port.map(Some))
        }
    };
    let digits = |p: &str| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    host_ok && port.is_none_or(|p| p.is_some_and(digits))
}

/// Every `[[listener]]`, after clusters and services.
pub(super) fn listeners(cfg: &Config) -> Check {
    let mut memory: u64 = 0;
    for (i, l) in cfg.listeners.iter().enumerate() {
        let (at, name) = (|key: &str| item("listener", i).key(key), &l.name);
        let owner = format!("listener {name:?}");
        unique_name("listener", &cfg.listeners, i)?;
        if let Some(v) = cfg.services.iter().position(|v| v.name == *name) {
            return Err(problem!(
                at("name"),
                "listener name {name:?} is already the name of a service: listeners and services \
                 share one namespace in logs and metrics"
            )
            .see(item("service", v).key("name"), "service"));
        }
        address(cfg, i, l, &owner)?;
        find("port", &cfg.ports, &l.ingress, &owner, at("ingress"))?;
        snat(cfg, i, l, &owner)?;
        sizing(i, l, &owner)?;
        let (connections, per) = (l.max_connections, l.bytes_per_connection());
        let need = u64::from(connections) * per;
        memory = memory.saturating_add(need);
        if memory > MAX_LISTENER_MEMORY {
            let (need, total, max) = (gib(need), gib(memory), gib(MAX_LISTENER_MEMORY));
            return Err(problem!(
                at("max_connections"),
                "{owner}: max_connections {connections} × {per} bytes per connection \
                 (client_rx_buffer + client_tx_buffer + upstream_rx_buffer + upstream_tx_buffer + \
                 2048) = {need} per worker, {total} with the listeners before it; at most {max} \
                 per worker. Lower max_connections or the buffers"
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
    let own = "a listener's address must be a VIP of its own, which Sluice announces on the \
               `ingress` port";
    vip(
        cfg,
        at("address"),
        &format!("{owner}: address"),
        l.address,
        own,
    )?;
    let why = ": a listener takes one TCP port";
    in_range(at("port"), format!("{owner}: port"), l.port, 1..=65535, why)?;
    let here = vip_port(l.address, l.port);
    let mut listeners = cfg.listeners[..i].iter().enumerate();
    if let Some((j, o)) = listeners.find(|(_, o)| o.address == l.address && o.port == l.port) {
        let other = &o.name;
        return Err(problem!(
            at("port"),
            "{owner}: {here} is already taken by listener {other:?}"
        )
        .see(item("listener", j).key("port"), "first defined"));
    }
    if let Some((j, v)) = cfg.services.iter().enumerate().find(|(_, v)| {
        v.protocol == Protocol::Tcp && v.vip == l.address && (v.port == l.port || v.port == 0)
    }) {
        let (service, there) = (&v.name, vip_port(v.vip, v.port));
        return Err(problem!(
            at("port"),
            "{owner}: {here}/tcp is already served by service {service:?} on {there}/tcp; a TCP \
             port of a VIP belongs to one L4 service or one listener"
        )
        .see(item("service", j).key("port"), "service"));
    }
    Ok(())
}

/// `snat`: addresses of ports, each once, of either family (a backend is
/// connected from those of its own).
fn snat(cfg: &Config, i: usize, l: &Listener, owner: &str) -> Check {
    let at = |k: usize| item("listener", i).key("snat").index(k);
    for (k, &ip) in l.snat.iter().enumerate() {
        let own = own_addresses(cfg, ip, true).join(", ");
        ensure!(
            cfg.ports.iter().any(|p| p.owns(ip)),
            at(k),
            "{owner}: snat address {ip} is not an address of any [[port]] (port addresses: \
             {own}); Sluice can only receive replies on its own addresses"
        );
        if let Some(first) = l.snat[..k].iter().position(|&s| s == ip) {
            return Err(
                problem!(at(k), "{owner}: snat address {ip} is listed twice")
                    .see(at(first), "first listed"),
            );
        }
    }
    Ok(())
}

/// Buffers, connection counts, timeouts and request limits.
fn sizing(i: usize, l: &Listener, owner: &str) -> Check {
    let at = |key: &str| item("listener", i).key(key);
    let buffer = 4096..=16_777_216;
    ranges(
        at,
        owner,
        [
            ("client_rx_buffer", l.client_rx_buffer, buffer.clone()),
            ("client_tx_buffer", l.client_tx_buffer, buffer.clone()),
            ("upstream_rx_buffer", l.upstream_rx_buffer, buffer.clone()),
            ("upstream_tx_buffer", l.upstream_tx_buffer, buffer),
            ("max_connections", l.max_connections, 1..=4_194_304),
        ],
    )?;
    let (half_open, connections) = (l.max_half_open, l.max_connections);
    if !(1..=connections).contains(&half_open) {
        return Err(problem!(
            at("max_half_open"),
            "{owner}: max_half_open {half_open} is out of range 1..=max_connections ({connections})"
        )
        .or_at(at("max_connections")));
    }
    let timeout = 1..=86_400_000;
    ranges(
        at,
        owner,
        [
            (
                "syn_cookie_threshold",
                l.syn_cookie_threshold,
                0..=4_194_304,
            ),
            (
                "handshake_timeout_ms",
                l.handshake_timeout_ms,
                timeout.clone(),
            ),
            ("header_timeout_ms", l.header_timeout_ms, timeout.clone()),
            ("idle_timeout_ms", l.idle_timeout_ms, timeout),
            ("max_head_bytes", l.max_head_bytes, 1024..=1_048_576),
        ],
    )?;
    let (head, rx, uri) = (l.max_head_bytes, l.client_rx_buffer, l.max_uri_bytes);
    if head > rx {
        return Err(problem!(
            at("max_head_bytes"),
            "{owner}: max_head_bytes {head} is larger than client_rx_buffer {rx}: a whole request \
             head must fit in the receive buffer"
        )
        .or_at(at("client_rx_buffer")));
    }
    ranges(
        at,
        owner,
        [("max_headers", l.max_headers, 1..=MAX_HEADERS as u64)],
    )?;
    if !(16..=head).contains(&uri) {
        return Err(problem!(
            at("max_uri_bytes"),
            "{owner}: max_uri_bytes {uri} is out of range 16..=max_head_bytes ({head})"
        )
        .or_at(at("max_head_bytes")));
    }
    Ok(())
}

/// Every cluster the listener sends to exists, and its backends have the
/// port to connect to.
fn clusters_used(cfg: &Config, i: usize, l: &Listener, owner: &str) -> Check {
    let listener = item("listener", i);
    let default = l.default_cluster.iter().map(|c| {
        (
            c,
            listener.clone().key("default_cluster"),
            "default_cluster of",
        )
    });
    let routes = l.routes.iter().enumerate().filter_map(|(j, r)| {
        let at = listener.clone().key("route").index(j).key("cluster");
        Some((r.cluster.as_ref()?, at, "a route of"))
    });
    for (name, at, what) in default.chain(routes) {
        let what = format!("{what} {owner}");
        let (ci, cluster) = find("cluster", &cfg.clusters, name, &what, at.clone())?;
        let backends = cluster.backends.iter().enumerate();
        if let Some((j, b)) = backends.clone().find(|(_, b)| b.port.is_none()) {
            let (address, name) = (b.address, &cluster.name);
            return Err(problem!(
                item("cluster", ci).key("backend").index(j),
                "backend {address} of cluster {name:?} has no `port`, but {owner} sends requests \
                 to this cluster: an L7 listener opens its own connections to backends and needs \
                 the port to connect to, such as `port = 80`"
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
            let message = "set one of path_prefix and path_exact, not both";
            return Err(problem!(at("path_exact"), "{owner}: {message}")
                .see(at("path_prefix"), "path_prefix"));
        }
        ensure!(
            r.rewrite_prefix.is_none() || r.path_prefix.is_some(),
            at("rewrite_prefix"),
            "{owner}: rewrite_prefix replaces the part of the path matched by path_prefix, so it \
             needs path_prefix"
        );
        let sets = [
            ("request_headers_set", &r.request_headers_set),
            ("response_headers_set", &r.response_headers_set),
        ];
        for (key, set) in sets {
            for (k, (name, _)) in set.iter().enumerate() {
                let first = set[..k].iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                if let Some((first, _)) = first {
                    return Err(problem!(
                        at(key).key(name),
                        "{owner}: {key} sets {name} twice (as {first} and {name}; field names are \
                         case-insensitive)"
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
