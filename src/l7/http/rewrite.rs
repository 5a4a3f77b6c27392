//! The heads Sluice forwards: a request head towards a backend and a
//! response head towards the client, each written fresh from a parsed head.
//!
//! What always happens, before any route edit:
//!
//! - hop-by-hop fields are dropped (RFC 9110 §7.6.1): `Connection`,
//!   `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` (kept when
//!   the request upgrades or the response is a 101) and every field named in
//!   `Connection`;
//! - `Content-Length` and `Transfer-Encoding` are dropped and exactly one
//!   canonical framing field is written from the parsed [`BodyKind`], so the
//!   next hop never sees a duplicate or a variant spelling;
//! - a single `Connection` is written for the next hop.
//!
//! Route edits ([`HeaderEdits`]) then apply: `remove` and `set` drop every
//! field line of that name, `set` and `add` append theirs at the end. The
//! proxy fields on a request (`X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Request-Id`, `Via`) are computed after `remove`, so removing
//! `X-Forwarded-For` means "do not trust the client's list", and a route
//! that `set`s one of them replaces Sluice's value with its own.
//!
//! Edits are validated when the route table is built
//! ([`HeaderEdits::check`]); the writers here skip any entry that would not
//! pass, so a bad edit can never inject a line break.

use std::io::Write;
use std::net::IpAddr;

use super::fields::{check_host, is_valid_field_name, is_valid_field_value, list_contains};
use super::target::{check_path, path_prefix_len};
use super::{BodyKind, RequestHead, ResponseHead, TargetForm, Version};

/// Header edits for one direction of a route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Field names to drop (case-insensitive).
    pub remove: Vec<String>,
    /// Fields to replace: every line of that name is dropped and this one
    /// written. `set` of `Host` on a request replaces the host sent to the
    /// backend.
    pub set: Vec<(String, String)>,
    /// Fields to append, after any the message already has.
    pub add: Vec<(String, String)>,
}

/// Fields the proxy owns: framing and hop-by-hop. Route edits may not name
/// them.
const RESERVED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

impl HeaderEdits {
    /// Config-time validation: names are tokens and not framing or
    /// hop-by-hop fields, values are single-line field values, and `Host`
    /// may only be `set`.
    pub fn check(&self) -> Result<(), String> {
        let names = self
            .remove
            .iter()
            .map(|n| (n.as_str(), "remove"))
            .chain(self.set.iter().map(|(n, _)| (n.as_str(), "set")))
            .chain(self.add.iter().map(|(n, _)| (n.as_str(), "add")));
        for (name, op) in names {
            if !is_valid_field_name(name.as_bytes()) {
                return Err(format!("{op}: {name:?} is not a valid field name"));
            }
            if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                return Err(format!("{op}: {name} is managed by the proxy"));
            }
            if op != "set" && name.eq_ignore_ascii_case("host") {
                return Err(format!("{op}: Host can only be set"));
            }
        }
        for (name, value) in self.set.iter().chain(&self.add) {
            if !is_valid_field_value(value.as_bytes()) {
                return Err(format!("{name}: {value:?} is not a valid field value"));
            }
            if name.eq_ignore_ascii_case("host") && check_host(value.as_bytes()).is_err() {
                return Err(format!("Host: {value:?} is not host[:port]"));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Whether lines named `name` are dropped from the message: removed or
    /// replaced.
    fn drops(&self, name: &[u8]) -> bool {
        self.remove
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            || self.sets(name)
    }

    fn sets(&self, name: &[u8]) -> bool {
        self.set_value(name).is_some()
    }

    fn set_value(&self, name: &[u8]) -> Option<&[u8]> {
        self.set
            .iter()
            .find(|(n, v)| {
                name.eq_ignore_ascii_case(n.as_bytes()) && is_valid_field_value(v.as_bytes())
            })
            .map(|(_, v)| v.as_bytes())
    }

    /// Appends `set` (minus `Host`, written with the start line) and `add`.
    fn write_appended(&self, out: &mut Vec<u8>) {
        let appended = self
            .set
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .chain(&self.add);
        for (name, value) in appended {
            let (name, value) = (name.as_bytes(), value.as_bytes());
            if is_valid_field_name(name)
                && is_valid_field_value(value)
                && !RESERVED
                    .iter()
                    .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
            {
                field(out, name, value);
            }
        }
    }
}

/// Replace a leading path prefix: `from` matched as a route prefix
/// ([`path_prefix_len`]), the separator at the junction kept single.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixRewrite {
    pub from: String,
    pub to: String,
}

/// The scheme the client used to reach Sluice, for `X-Forwarded-Proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http,
    Https,
}

/// The TLS facts of the client connection, sent to the backend as
/// [`TLS_FIELDS`] when the listener has `tls_headers = true`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsFields<'a> {
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: &'a str,
    pub cipher: &'a str,
    /// The server name the client sent, if any.
    pub sni: Option<&'a str>,
    /// The verified client certificate's subject, if any.
    pub client_subject: Option<&'a str>,
}

/// The names of the TLS fields, in the order written. With `tls_headers`
/// they belong to the proxy: any line a client sends with one of these
/// names is dropped, so the backend can trust what it reads.
pub const TLS_FIELDS: [&str; 4] = [
    "X-Forwarded-TLS-Version",
    "X-Forwarded-TLS-Cipher",
    "X-Forwarded-TLS-SNI",
    "X-Forwarded-TLS-Client-Subject",
];

/// What [`rewrite_request_head`] needs besides the parsed head.
#[derive(Clone, Copy, Debug)]
pub struct HeadEdits<'a> {
    /// The route's request edits.
    pub headers: &'a HeaderEdits,
    pub rewrite_prefix: Option<&'a PrefixRewrite>,
    /// The client's address; an IPv4-mapped IPv6 address is written as IPv4.
    pub client_addr: IpAddr,
    /// The listener's address and port: the `Host` sent for a request that
    /// has none (HTTP/1.0 allows that; HTTP/1.1 backends answer 400 to an
    /// empty one), as the server the client connected to is the target's
    /// authority then (RFC 9112 §3.3).
    pub server: (IpAddr, u16),
    pub proto: Proto,
    /// `Some`: write the TLS fields (and drop the client's).
    pub tls: Option<TlsFields<'a>>,
    /// Sent as `X-Request-Id` when the request has none; skipped if it is
    /// not a valid field value.
    pub request_id: &'a [u8],
}

/// What [`rewrite_response_head`] needs besides the parsed head.
#[derive(Clone, Copy, Debug)]
pub struct ResponseEdits<'a> {
    /// The route's response edits.
    pub headers: &'a HeaderEdits,
    /// The version of the client's request.
    pub client_version: Version,
    /// Whether the proxy wants to keep the client connection after this
    /// response (the request's [`RequestHead::keep_alive`], and no reason of
    /// the proxy's own to close).
    pub keep_alive: bool,
}

/// How the proxy must send the body of a rewritten response to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFraming {
    /// `Chunked`: forward chunked. `CloseDelimited`: send the body's data
    /// bytes as they are (decoded if the backend chunked them), then close.
    pub body: BodyKind,
    /// Whether the client connection stays open afterwards.
    pub keep_alive: bool,
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    RESERVED
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
}

/// Whether `name` is listed in any `Connection` line, and so hop-by-hop.
fn named_in_connection<'a>(mut connection: impl Iterator<Item = &'a [u8]>, name: &[u8]) -> bool {
    connection.any(|value| list_contains(value, name))
}

/// Writes the list of every non-empty `name` value plus `last`, as one line.
fn list_field<'a>(
    out: &mut Vec<u8>,
    name: &[u8],
    existing: impl Iterator<Item = &'a [u8]>,
    last: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for value in existing.filter(|v| !v.is_empty()) {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    last(out);
    out.extend_from_slice(b"\r\n");
}

/// Appends to `out` the head to send to the backend for `head` (parsed from
/// `buf`): see the module documentation. The request line is always
/// `HTTP/1.1` with an origin-form target (RFC 9112 §3.2.1), `Host` comes
/// first, and `Expect` passes through (except from HTTP/1.0 clients): a
/// proxy that answers `100 Continue` itself must swallow the backend's.
pub fn rewrite_request_head(
    head: &RequestHead,
    buf: &[u8],
    edits: &HeadEdits<'_>,
    out: &mut Vec<u8>,
) {
    let route = edits.headers;
    let upgrade = head.is_upgrade();
    let connection = || head.header_values(buf, b"connection");
    let dropped = |name: &[u8]| {
        if upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            return route.drops(name);
        }
        // RFC 9110 §10.1.1: an HTTP/1.0 100-continue is ignored; forwarded
        // as HTTP/1.1 it would not be.
        let stale_expect =
            head.version() == Version::Http10 && name.eq_ignore_ascii_case(b"expect");
        stale_expect
            || is_hop_by_hop(name)
            || named_in_connection(connection(), name)
            || route.drops(name)
    };
    let kept = |name: &'static [u8]| {
        let dropped = &dropped;
        head.header_values(buf, name)
            .filter(move |_| !dropped(name))
    };

    out.extend_from_slice(head.method_bytes(buf));
    out.push(b' ');
    write_path(head, buf, edits.rewrite_prefix, out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // RFC 9110 §7.2: Host first; the target's authority if it had one,
    // else the server the client connected to.
    let host = route
        .set_value(b"host")
        .filter(|host| check_host(host).is_ok())
        .or(head.host(buf));
    match host {
        Some(host) => field(out, b"Host", host),
        None => {
            let (addr, port) = edits.server;
            let _ = match addr {
                IpAddr::V4(a) => write!(out, "Host: {a}"),
                IpAddr::V6(a) => write!(out, "Host: [{a}]"),
            };
            let default_port = match edits.proto {
                Proto::Http => 80,
                Proto::Https => 443,
            };
            if port != default_port {
                let _ = write!(out, ":{port}");
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    let mut request_id_present = false;
    for line in head.headers() {
        let name = line.name.get(buf);
        let proxy_owned = [
            &b"host"[..],
            b"x-forwarded-for",
            b"x-forwarded-proto",
            b"via",
        ]
        .iter()
        .any(|owned| name.eq_ignore_ascii_case(owned))
            || (edits.tls.is_some()
                && TLS_FIELDS
                    .iter()
                    .any(|owned| name.eq_ignore_ascii_case(owned.as_bytes())));
        if proxy_owned || dropped(name) {
            continue;
        }
        request_id_present |= name.eq_ignore_ascii_case(b"x-request-id");
        field(out, name, line.value.get(buf));
    }

    match head.body() {
        BodyKind::ContentLength(len) => {
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        BodyKind::Chunked => field(out, b"Transfer-Encoding", b"chunked"),
        BodyKind::None | BodyKind::CloseDelimited => {}
    }
    field(
        out,
        b"Connection",
        if upgrade { b"upgrade" } else { b"keep-alive" },
    );

    if !route.sets(b"x-forwarded-for") {
        list_field(out, b"X-Forwarded-For", kept(b"x-forwarded-for"), |out| {
            let _ = write!(out, "{}", edits.client_addr.to_canonical());
        });
    }
    if !route.sets(b"x-forwarded-proto") {
        let proto: &[u8] = match edits.proto {
            Proto::Http => b"http",
            Proto::Https => b"https",
        };
        field(out, b"X-Forwarded-Proto", proto);
    }
    if let Some(t) = &edits.tls {
        let values = [Some(t.version), Some(t.cipher), t.sni, t.client_subject];
        for (name, value) in TLS_FIELDS.iter().zip(values) {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if !route.sets(name.as_bytes()) && is_valid_field_value(value.as_bytes()) {
                field(out, name.as_bytes(), value.as_bytes());
            }
        }
    }
    if !request_id_present
        && !route.sets(b"x-request-id")
        && !edits.request_id.is_empty()
        && is_valid_field_value(edits.request_id)
    {
        field(out, b"X-Request-Id", edits.request_id);
    }
    if !route.sets(b"via") {
        // RFC 9110 §7.6.3: received-protocol is the version received.
        list_field(out, b"Via", kept(b"via"), |out| {
            out.extend_from_slice(head.version().number().as_bytes());
            out.extend_from_slice(b" sluice");
        });
    }
    route.write_appended(out);
    out.extend_from_slice(b"\r\n");
}

fn write_path(head: &RequestHead, buf: &[u8], rewrite: Option<&PrefixRewrite>, out: &mut Vec<u8>) {
    let path = head.path(buf);
    let matched = match rewrite {
        // A `to` the parser would refuse is never written.
        Some(r)
            if head.target_form() != TargetForm::Asterisk
                && check_path(r.to.as_bytes()).is_ok()
                && !r.to.is_empty() =>
        {
            path_prefix_len(path, r.from.as_bytes()).map(|len| (r.to.as_bytes(), len))
        }
        _ => None,
    };
    match matched {
        Some((to, len)) => {
            // `rest` starts with the separator after the prefix, or is empty
            // (prefixes are segment-aligned; one ending in `/` gives its
            // slash back). Then exactly one `/` at the junction.
            let rest = if len > 0 && path.get(len - 1) == Some(&b'/') {
                &path[len - 1..]
            } else {
                &path[len..]
            };
            let rest = match (to.last(), rest) {
                (Some(b'/'), [b'/', tail @ ..]) => tail,
                _ => rest,
            };
            out.extend_from_slice(to);
            out.extend_from_slice(rest);
        }
        None => out.extend_from_slice(path),
    }
    if let Some(query) = head.query(buf) {
        out.push(b'?');
        out.extend_from_slice(query);
    }
}

/// Appends to `out` the head to send to the client for `head` (parsed from
/// `buf`), and returns how to frame the body towards it.
///
/// The status line is `HTTP/1.1` with the backend's status and reason. A
/// chunked body to an HTTP/1.0 client is sent close-delimited (it cannot
/// read chunked). The client connection closes after a close-delimited body
/// or when `edits.keep_alive` is false; a 101 keeps `Connection: upgrade`
/// and `Upgrade`. Interim 1xx heads get only the end-to-end fields: no
/// framing, no `Connection`, no route edits (RFC 9110 §15.2 forbids sending
/// them to an HTTP/1.0 client; that is the caller's check).
pub fn rewrite_response_head(
    head: &ResponseHead,
    buf: &[u8],
    edits: &ResponseEdits<'_>,
    out: &mut Vec<u8>,
) -> ResponseFraming {
    let route = edits.headers;
    let interim = head.is_interim();
    let upgrade = head.is_upgrade();
    let connection = || head.header_values(buf, b"connection");
    let dropped = |name: &[u8]| {
        if upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            return route.drops(name);
        }
        is_hop_by_hop(name)
            || named_in_connection(connection(), name)
            || (!interim && route.drops(name))
    };

    let _ = write!(out, "HTTP/1.1 {} ", head.status());
    out.extend_from_slice(head.reason(buf));
    out.extend_from_slice(b"\r\n");
    for line in head.headers() {
        let name = line.name.get(buf);
        if dropped(name) || (!interim && name.eq_ignore_ascii_case(b"via")) {
            continue;
        }
        field(out, name, line.value.get(buf));
    }
    if interim {
        out.extend_from_slice(b"\r\n");
        return ResponseFraming {
            body: BodyKind::None,
            keep_alive: edits.keep_alive,
        };
    }

    let client_http10 = edits.client_version == Version::Http10;
    let body = match head.body() {
        BodyKind::None => {
            if let Some(len) = head.declared_len() {
                let _ = write!(out, "Content-Length: {len}\r\n");
            }
            BodyKind::None
        }
        BodyKind::ContentLength(len) => {
            let _ = write!(out, "Content-Length: {len}\r\n");
            BodyKind::ContentLength(len)
        }
        BodyKind::Chunked if client_http10 => BodyKind::CloseDelimited,
        BodyKind::Chunked => {
            field(out, b"Transfer-Encoding", b"chunked");
            BodyKind::Chunked
        }
        BodyKind::CloseDelimited => BodyKind::CloseDelimited,
    };
    let keep_alive = edits.keep_alive && !upgrade && body != BodyKind::CloseDelimited;
    if upgrade {
        field(out, b"Connection", b"upgrade");
    } else if !keep_alive {
        field(out, b"Connection", b"close");
    } else if client_http10 {
        field(out, b"Connection", b"keep-alive");
    }
    if !route.sets(b"via") {
        let existing = head.header_values(buf, b"via").filter(|_| !dropped(b"via"));
        list_field(out, b"Via", existing, |out| {
            out.extend_from_slice(head.version().number().as_bytes());
            out.extend_from_slice(b" sluice");
        });
    }
    route.write_appended(out);
    out.extend_from_slice(b"\r\n");
    ResponseFraming { body, keep_alive }
}
