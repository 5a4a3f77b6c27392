//! Request routing: an ordered list of routes, each a conjunction of
//! matchers and an action; the first route whose matchers all match wins,
//! then the default route, else 404.
//!
//! The types here know nothing of the config file: the control plane builds
//! [`Route`]s, [`Router::new`] validates and compiles them once, and the
//! worker gets the [`Router`] as part of an immutable snapshot.
//!
//! Matching rules, each chosen so that the backend reads the request the way
//! the router did:
//!
//! - Hosts compare case-insensitively after [`host_for_routing`]: the port
//!   and one trailing dot are ignored. `*.example.com` matches any host
//!   ending in `.example.com` with at least one more character before it
//!   (`a.example.com`, `a.b.example.com`), not `example.com` itself, as in
//!   nginx and Envoy.
//! - Paths compare as sent, without percent-decoding. The parser has
//!   already refused every path with a second spelling (see
//!   [`crate::l7::http::check_path`]), so the only variation left is the
//!   case of escape hex digits, which is ignored. A route literal the parser
//!   would refuse could never match and is a config error. Prefixes are
//!   segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
//! - Methods compare exactly (methods are case-sensitive, RFC 9110 §9.1).
//! - Header names compare case-insensitively, values exactly; a header with
//!   several field lines matches if any line does.
//! - Cookies (RFC 6265 §4.2.1 `name=value` pairs split on `;` across all
//!   `Cookie` lines) compare name and value exactly; the first pair with the
//!   name decides.
//! - Query parameters (`&`-separated `name=value` pairs) compare after
//!   percent-decoding both name and value, so `?us%65r=x` is `?user=x` as the
//!   backend will see it; `+` is not decoded (that is a form convention, not
//!   URI syntax). The first pair with the name decides.
//!
//! - Server names (SNI, `sni`) compare like hosts, exact or `*.` wildcard,
//!   against the name the client sent in its TLS handshake; a connection
//!   without TLS or without SNI matches no `sni` condition. The name
//!   chose the certificate, so routing on it routes by the name the
//!   client verified, whatever `Host` says.
//!
//! Regex path matching is not implemented: it would need a regex engine
//! with bounded matching time on the data path, and no route needs it yet.

use std::fmt;

use crate::l7::http::{
    check_path, host_for_routing, is_valid_field_name, is_valid_field_value, path_eq,
    path_prefix_len, HeaderEdits, PrefixRewrite, RequestRef,
};

/// What the router needs to see of a request.
pub trait RequestView {
    /// The method, as sent.
    fn method(&self) -> &[u8];
    /// The path without query, as sent (not decoded).
    fn path(&self) -> &[u8];
    /// The query without `?`, if the target had one.
    fn query(&self) -> Option<&[u8]>;
    /// The host the request is for, as sent (port and case included).
    fn host(&self) -> Option<&[u8]>;
    /// The values of every field line named `name` (case-insensitive).
    fn header_values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's;

    /// The value of the first cookie named `name`.
    fn cookie(&self, name: &[u8]) -> Option<&[u8]> {
        self.header_values(b"cookie").find_map(|line| {
            line.split(|&b| b == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == name).then(|| &pair[eq + 1..])
            })
        })
    }

    /// The raw value of the first query parameter whose percent-decoded name
    /// is `name`; an empty slice for a parameter without `=`.
    fn query_param(&self, name: &[u8]) -> Option<&[u8]> {
        self.query()?.split(|&b| b == b'&').find_map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            decoded_eq(key, name).then_some(value)
        })
    }
}

impl RequestView for RequestRef<'_> {
    fn method(&self) -> &[u8] {
        self.head.method_bytes(self.buf)
    }

    fn path(&self) -> &[u8] {
        self.head.path(self.buf)
    }

    fn query(&self) -> Option<&[u8]> {
        self.head.query(self.buf)
    }

    fn host(&self) -> Option<&[u8]> {
        self.head.host(self.buf)
    }

    fn header_values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.head.header_values(self.buf, name)
    }
}

/// Whether `raw`, with `%XX` escapes decoded, is `literal`. A `%` not
/// followed by two hex digits stands for itself.
fn decoded_eq(raw: &[u8], literal: &[u8]) -> bool {
    let mut literal = literal.iter();
    let mut i = 0;
    while i < raw.len() {
        let escaped = match raw.get(i + 1..i + 3) {
            Some(&[h, l]) if raw[i] == b'%' => (h as char)
                .to_digit(16)
                .zip((l as char).to_digit(16))
                .map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        let (byte, width) = match escaped {
            Some(byte) => (byte, 3),
            None => (raw[i], 1),
        };
        if literal.next() != Some(&byte) {
            return false;
        }
        i += width;
    }
    literal.next().is_none()
}

/// How a header, cookie or query parameter value must look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    /// The name is present, whatever the value.
    Present,
    /// The value equals this.
    Exact(String),
}

/// One condition on a request; see the module documentation for the exact
/// comparison each uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// `example.com`: the host, case-insensitive, port ignored.
    HostExact(String),
    /// `*.example.com`: any host under that domain.
    HostWildcard(String),
    PathExact(String),
    /// Segment-aware prefix.
    PathPrefix(String),
    Method(String),
    Header {
        name: String,
        value: ValueMatch,
    },
    Cookie {
        name: String,
        value: ValueMatch,
    },
    Query {
        name: String,
        value: ValueMatch,
    },
    /// `a.example`: the TLS server name (SNI), case-insensitive.
    SniExact(String),
    /// `*.example.com`: any server name under that domain.
    SniWildcard(String),
}

/// Answer a plain HTTP request with a redirect to the same host and target
/// over `https` instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// 301 (Moved Permanently; clients may turn a POST into a GET) or 308
    /// (Permanent Redirect, RFC 9110 §15.4.9: method and body kept).
    pub status: u16,
    /// The port in `Location`; `None` (or 443): none, the scheme's default.
    pub port: Option<u16>,
}

/// What to do with a request that matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAction {
    /// Index of the cluster in the config snapshot (unused with
    /// `redirect`).
    pub cluster: u32,
    /// Redirect to https instead of sending to the cluster.
    pub redirect: Option<HttpsRedirect>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub rewrite_prefix: Option<PrefixRewrite>,
}

/// A route: all matchers must match (none: matches everything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub matchers: Vec<Matcher>,
    pub action: RouteAction,
}

/// A route table that failed validation. Control plane: rich and owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// Index into the route list, `None` for the default route.
    pub route: Option<usize>,
    pub message: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            Some(index) => write!(f, "route {index}: {}", self.message),
            None => write!(f, "default route: {}", self.message),
        }
    }
}

impl std::error::Error for RouteError {}

/// A matcher with its literal normalised for the comparison it uses.
#[derive(Clone, Debug)]
enum Compiled {
    /// Lowercase, no trailing dot.
    Host(Vec<u8>),
    /// Lowercase, with the leading dot: `.example.com`.
    HostSuffix(Vec<u8>),
    PathExact(Vec<u8>),
    PathPrefix(Vec<u8>),
    Method(Vec<u8>),
    Header(Vec<u8>, Option<Vec<u8>>),
    Cookie(Vec<u8>, Option<Vec<u8>>),
    Query(Vec<u8>, Option<Vec<u8>>),
    /// Like `Host` and `HostSuffix`, on the TLS server name.
    Sni(Vec<u8>),
    SniSuffix(Vec<u8>),
}

/// `name` equals `want` or, with `suffix`, ends in it with more before.
fn name_matches(name: Option<&[u8]>, want: &[u8], suffix: bool) -> bool {
    name.is_some_and(|h| match suffix {
        false => h.eq_ignore_ascii_case(want),
        true => h.len() > want.len() && h[h.len() - want.len()..].eq_ignore_ascii_case(want),
    })
}

impl Compiled {
    fn matches(&self, req: &impl RequestView, host: Option<&[u8]>, sni: Option<&[u8]>) -> bool {
        let value_matches = |found: Option<&[u8]>, want: &Option<Vec<u8>>| match (found, want) {
            (Some(_), None) => true,
            (Some(found), Some(want)) => found == want.as_slice(),
            (None, _) => false,
        };
        match self {
            Compiled::Host(want) => name_matches(host, want, false),
            Compiled::HostSuffix(suffix) => name_matches(host, suffix, true),
            Compiled::Sni(want) => name_matches(sni, want, false),
            Compiled::SniSuffix(suffix) => name_matches(sni, suffix, true),
            Compiled::PathExact(want) => path_eq(req.path(), want),
            Compiled::PathPrefix(prefix) => path_prefix_len(req.path(), prefix).is_some(),
            Compiled::Method(want) => req.method() == want.as_slice(),
            Compiled::Header(name, None) => req.header_values(name).next().is_some(),
            Compiled::Header(name, Some(want)) => {
                req.header_values(name).any(|v| v == want.as_slice())
            }
            Compiled::Cookie(name, want) => value_matches(req.cookie(name), want),
            Compiled::Query(name, None) => req.query_param(name).is_some(),
            Compiled::Query(name, Some(want)) => req
                .query_param(name)
                .is_some_and(|raw| decoded_eq(raw, want)),
        }
    }
}

#[derive(Clone, Debug)]
struct CompiledRoute {
    matchers: Vec<Compiled>,
    action: RouteAction,
}

/// A validated route table. Immutable once built; cheap to share behind an
/// `Arc` in a config snapshot.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    default: Option<RouteAction>,
}

impl Router {
    /// Validates and compiles `routes` (tried in order) and the `default`
    /// action (used when none matches; `None`: 404).
    pub fn new(routes: Vec<Route>, default: Option<RouteAction>) -> Result<Router, RouteError> {
        let mut compiled = Vec::with_capacity(routes.len());
        for (index, route) in routes.into_iter().enumerate() {
            let error = |message: String| RouteError {
                route: Some(index),
                message,
            };
            check_action(&route.action).map_err(error)?;
            let matchers = route
                .matchers
                .iter()
                .map(compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            compiled.push(CompiledRoute {
                matchers,
                action: route.action,
            });
        }
        if let Some(action) = &default {
            check_action(action).map_err(|message| RouteError {
                route: None,
                message,
            })?;
        }
        Ok(Router {
            routes: compiled,
            default,
        })
    }

    /// The action of the first route that matches `req`, else the default;
    /// `None` means 404.
    pub fn route(&self, req: &impl RequestView) -> Option<&RouteAction> {
        self.route_id(req).and_then(|id| self.action(id))
    }

    /// Like [`Router::route`], but names the route instead of borrowing its
    /// action, so that a session can keep it across steps and look the
    /// action up again ([`Router::action`]) when the response arrives,
    /// instead of cloning the edits.
    pub fn route_id(&self, req: &impl RequestView) -> Option<RouteId> {
        self.route_id_sni(req, None)
    }

    /// [`Router::route_id`] for a request that came over TLS with server
    /// name `sni` (lowercase).
    pub fn route_id_sni(&self, req: &impl RequestView, sni: Option<&str>) -> Option<RouteId> {
        let host = req.host().map(host_for_routing);
        let sni = sni.map(str::as_bytes);
        match self
            .routes
            .iter()
            .position(|route| route.matchers.iter().all(|m| m.matches(req, host, sni)))
        {
            Some(i) => Some(RouteId(i as u32)),
            None => self.default.as_ref().map(|_| RouteId(u32::MAX)),
        }
    }

    /// The action of route `id`; `None` if this router has no such route
    /// (an id from before a reload that shortened the table).
    pub fn action(&self, id: RouteId) -> Option<&RouteAction> {
        match id.0 {
            u32::MAX => self.default.as_ref(),
            i => self.routes.get(i as usize).map(|r| &r.action),
        }
    }
}

/// Names a route of a [`Router`]: its position, or the default route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteId(u32);

impl RouteId {
    /// The default route.
    pub const DEFAULT: RouteId = RouteId(u32::MAX);
}

fn check_action(action: &RouteAction) -> Result<(), String> {
    if let Some(r) = action.redirect {
        if !matches!(r.status, 301 | 308) {
            return Err(format!("redirect status {} is not 301 or 308", r.status));
        }
        if r.port == Some(0) {
            return Err("redirect port 0".to_string());
        }
    }
    action
        .request_headers
        .check()
        .map_err(|e| format!("request headers: {e}"))?;
    action
        .response_headers
        .check()
        .map_err(|e| format!("response headers: {e}"))?;
    if let Some(rewrite) = &action.rewrite_prefix {
        for path in [&rewrite.from, &rewrite.to] {
            if !path.starts_with('/') || check_path(path.as_bytes()).is_err() {
                return Err(format!("rewrite_prefix: {path:?} is not a valid path"));
            }
        }
    }
    Ok(())
}

/// A host name a route can match: letters, digits, `-`, `_` and `.`, or a
/// bracketed IPv6 literal; no port.
fn check_route_host(host: &str) -> Result<Vec<u8>, String> {
    let bytes = host.as_bytes();
    let valid = match bytes {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        _ => {
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    if !valid {
        return Err(format!(
            "{host:?} is not a host name (no port, no wildcard)"
        ));
    }
    let name = bytes.strip_suffix(b".").unwrap_or(bytes);
    if name.is_empty() {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok(name.to_ascii_lowercase())
}

fn compile(matcher: &Matcher) -> Result<Compiled, String> {
    let value = |v: &ValueMatch| match v {
        ValueMatch::Present => None,
        ValueMatch::Exact(v) => Some(v.as_bytes().to_vec()),
    };
    let path = |p: &str| {
        if p.starts_with('/') && check_path(p.as_bytes()).is_ok() {
            Ok(p.as_bytes().to_vec())
        } else {
            Err(format!(
                "{p:?} is not a path Sluice accepts, so it could never match"
            ))
        }
    };
    let wildcard = |pattern: &str| {
        let domain = pattern
            .strip_prefix("*.")
            .ok_or_else(|| format!("{pattern:?}: a wildcard name starts with \"*.\""))?;
        let mut suffix = vec![b'.'];
        suffix.extend(check_route_host(domain)?);
        Ok::<_, String>(suffix)
    };
    Ok(match matcher {
        Matcher::SniExact(name) => Compiled::Sni(check_route_host(name)?),
        Matcher::SniWildcard(pattern) => Compiled::SniSuffix(wildcard(pattern)?),
        Matcher::HostExact(host) => Compiled::Host(check_route_host(host)?),
        Matcher::HostWildcard(pattern) => Compiled::HostSuffix(wildcard(pattern)?),
        Matcher::PathExact(p) => Compiled::PathExact(path(p)?),
        Matcher::PathPrefix(p) => Compiled::PathPrefix(path(p)?),
        Matcher::Method(m) => {
            if !is_valid_field_name(m.as_bytes()) {
                return Err(format!("{m:?} is not a method token"));
            }
            Compiled::Method(m.as_bytes().to_vec())
        }
        Matcher::Header { name, value: v } => {
            if !is_valid_field_name(name.as_bytes()) {
                return Err(format!("{name:?} is not a field name"));
            }
            if let ValueMatch::Exact(want) = v {
                if !is_valid_field_value(want.as_bytes()) {
                    return Err(format!("{want:?} is not a field value"));
                }
            }
            Compiled::Header(name.as_bytes().to_vec(), value(v))
        }
        Matcher::Cookie { name, value: v } => {
            if !is_valid_field_name(name.as_bytes()) {
                return Err(format!("{name:?} is not a cookie name"));
            }
            Compiled::Cookie(name.as_bytes().to_vec(), value(v))
        }
        Matcher::Query { name, value: v } => {
            if name.is_empty() {
                return Err("empty query parameter name".to_string());
            }
            Compiled::Query(name.as_bytes().to_vec(), value(v))
        }
    })
}

#[cfg(test)]
mod tests;
