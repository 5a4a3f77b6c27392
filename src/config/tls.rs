//! TLS keys of `[[listener]]`: `protocol = "https"`, `tls_min_version`,
//! `max_tls_handshakes`, `sni_strict`, `tls_headers`, `client_auth`,
//! `client_ca`, `ticket_key_file` and
//! `[[listener.certificate]]`, the TLS keys of routes (`sni`,
//! `redirect_https`, `redirect_https_port`), `[cluster.tls]` (upstream
//! TLS) with the backends' `tls_server_name`, their checks, and
//! the loading of certificate chains and keys from PEM files, which both
//! `sluice check` and the control plane's compile step use, so that they
//! accept exactly the same files.
//!
//! Files are read when the config is checked: a file that is missing,
//! unreadable, not PEM, a key that does not match its certificate, or a
//! certificate without names is an error at the `cert`/`key`/`names` key.
//! An expired certificate, or one expiring within [`EXPIRY_WARNING_DAYS`],
//! is a warning ([`warnings`]), as it is for haproxy: the listener still
//! serves it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use super::listener::{Listener, ListenerProtocol};
use super::sections::Cluster;
use super::validate::{backend_key, ensure, item, problem, Check, Problem};
use super::Config;

/// A certificate expiring within this many days gets a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Most certificates of one listener.
pub const MAX_CERTIFICATES: usize = 256;

/// The oldest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

spelled!(TlsVersion { Tls12 => "1.2", Tls13 => "1.3" });

/// Whether a listener asks clients for a certificate (`client_auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates.
    #[default]
    None,
    /// Asked for; a client without one is served, one with a certificate
    /// that does not verify is refused.
    Request,
    /// Required: a client without a verified certificate is refused.
    Require,
}

/// The CA certificates of `client_ca` (a PEM bundle) as rustls roots.
pub fn load_client_ca(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in read_chain(path)?.into_iter().enumerate() {
        let path = path.display();
        roots
            .add(c)
            .map_err(|e| format!("{path}: certificate {i} is not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// Read a session ticket key file: one or more lines of 64 hex digits
/// (32-byte AES-256-GCM keys); blank lines and `#` comments are skipped.
/// The first key encrypts new tickets, every key decrypts. `Err` names
/// the line at fault.
pub fn read_ticket_keys(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let path = path.display();
    let mut keys = Vec::new();
    for (n, line) in (1..).zip(text.lines().map(str::trim)) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() != 64 || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{path}:{n}: expected a key of 64 hex digits (32 bytes, such as the output of \
                 `openssl rand -hex 32`)"
            ));
        }
        let mut key = [0u8; 32];
        for (i, o) in key.iter_mut().enumerate() {
            *o = u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        keys.push(key);
    }
    match keys.is_empty() {
        true => Err(format!(
            "{path} holds no key: expected lines of 64 hex digits (`openssl rand -hex 32`)"
        )),
        false => Ok(keys),
    }
}

/// `[[listener.certificate]]`: one certificate chain and its key, served
/// to clients that ask for one of its names (SNI).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerCertificate {
    /// PEM file: the server certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// Server names this certificate answers: `"a.example"` (exact,
    /// case-insensitive) or `"*.example"` (one label under it). Empty: the
    /// DNS names of the certificate's subjectAltName.
    #[serde(default)]
    pub names: Vec<String>,
    /// Served to clients that send no server name or one no certificate
    /// of the listener has. At most one per listener; none: the first.
    #[serde(default)]
    pub default: bool,
}

/// A certificate and key read from their files and checked.
#[derive(Debug)]
pub struct LoadedCertificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Lowercase; `*.x` for wildcards.
    pub names: Vec<String>,
    /// The end-entity certificate's notAfter, seconds since the epoch.
    pub not_after: Option<i64>,
}

/// A problem with a file, and the key (`cert`, `key`, `names`, `ca`) it is at.
type FileError = (&'static str, String);

/// The chain at `cert` and the key at `key`, which must fit it.
fn read_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FileError> {
    let chain = read_chain(cert).map_err(|e| ("cert", e))?;
    let k = read_key(key).map_err(|e| ("key", e))?;
    let provider = crate::l7::tls::provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), k.clone_key(), &provider).map_err(|e| {
        let (key, cert) = (key.display(), cert.display());
        (
            "key",
            format!("key {key} does not fit certificate {cert}: {e}"),
        )
    })?;
    Ok((chain, k))
}

impl ListenerCertificate {
    /// Read and check the files. `Err((key, message))` names the key
    /// (`cert`, `key`, `names`) the problem is at.
    pub fn load(&self) -> Result<LoadedCertificate, FileError> {
        let (chain, key) = read_pair(&self.cert, &self.key)?;
        let cert = self.cert.display();
        let names: Vec<String> = if self.names.is_empty() {
            let ee = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
                (
                    "cert",
                    format!("{cert}: cannot parse the certificate: {e:?}"),
                )
            })?;
            ee.valid_dns_names().map(str::to_ascii_lowercase).collect()
        } else if let Some(n) = self.names.iter().find(|n| !valid_server_name(n)) {
            let message = format!(
                "invalid server name {n:?}: expected a DNS name such as \"www.example.com\" or a \
                 wildcard such as \"*.example.com\""
            );
            return Err(("names", message));
        } else {
            self.names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        if names.is_empty() {
            let message = format!(
                "{cert} has no DNS names in its subjectAltName: list the server names it answers \
                 in `names`"
            );
            return Err(("cert", message));
        }
        let not_after = crate::l7::x509::not_after(&chain[0]);
        Ok(LoadedCertificate {
            chain,
            key,
            names,
            not_after,
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let (text, path) = (read(path)?, path.display());
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not a PEM certificate chain: {e}"))?;
    match chain.is_empty() {
        true => Err(format!(
            "{path} holds no certificate: expected PEM blocks \"-----BEGIN CERTIFICATE-----\", \
             the server's first"
        )),
        false => Ok(chain),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let (text, path) = (read(path)?, path.display());
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{path}: no private key (PKCS#8, RSA or EC PEM) in it: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `a.example`, or `*.a.example`: labels of letters, digits and hyphens.
pub fn valid_server_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label)
}

/// The `client_auth` and `client_ca` keys of listener `i` (https).
fn client_auth(i: usize, l: &Listener, owner: &str) -> Check {
    let at = |key: &str| item("listener", i).key(key);
    let auth = if l.client_auth == ClientAuth::Require {
        "require"
    } else {
        "request"
    };
    match (l.client_auth, &l.client_ca) {
        (ClientAuth::None, None) => Ok(()),
        (ClientAuth::None, Some(_)) => Err(problem!(
            at("client_ca"),
            "{owner}: client_ca given but client_auth is \"none\"; set client_auth = \
             \"require\" or \"request\" to ask clients for certificates"
        )),
        (_, None) => Err(problem!(
            at("client_auth"),
            "{owner}: client_auth = \"{auth}\" needs client_ca, the PEM file of the CAs client \
             certificates must chain to"
        )),
        (_, Some(path)) => load_client_ca(path)
            .map(|_| ())
            .map_err(|e| problem!(at("client_ca"), "{owner}: {e}")),
    }
}

/// The TLS keys of listener `i`, and the route keys that depend on TLS:
/// `sni` (https only), `redirect_https` (http only, instead of `cluster`).
pub(super) fn listener(i: usize, l: &Listener, owner: &str) -> Check {
    let at = |key: &str| item("listener", i).key(key);
    let cert_at = |j: usize| item("listener", i).key("certificate").index(j);
    let https = l.protocol == ListenerProtocol::Https;
    for (j, r) in l.routes.iter().enumerate() {
        let route = item("listener", i).key("route").index(j);
        let route_at = |key: &str| route.clone().key(key);
        let owner = format!("{owner}, route[{j}]");
        let (cluster, redirect) = (r.cluster.is_some(), r.redirect_https.is_some());
        ensure!(
            cluster || redirect,
            route.clone(),
            "{owner}: no `cluster` to send matching requests to (or `redirect_https = 308` to \
             redirect them to https)"
        );
        if cluster && redirect {
            let message = "a route either redirects or sends to a cluster";
            return Err(problem!(
                route_at("redirect_https"),
                "{owner}: redirect_https and cluster: {message}"
            )
            .see(route_at("cluster"), "cluster"));
        }
        let message = "redirect_https_port needs redirect_https";
        ensure!(
            r.redirect_https_port.is_none() || redirect,
            route_at("redirect_https_port"),
            "{owner}: {message}"
        );
        ensure!(
            !(https && redirect),
            route_at("redirect_https"),
            "{owner}: redirect_https on an https listener would redirect requests to where they \
             already are; put it on the http listener"
        );
        ensure!(
            https || r.sni.is_none(),
            route_at("sni"),
            "{owner}: sni needs protocol = \"https\": a plain HTTP connection has no server \
             name, so this route could never match"
        );
    }
    if !https {
        let client_auth = match l.client_auth {
            ClientAuth::None => l.client_ca.as_ref().map(|_| "client_ca"),
            _ => Some("client_auth"),
        };
        let tls_min_version = l
            .tls_min_version
            .map(|v| format!("tls_min_version = \"{v}\""));
        for (key, on) in [
            (
                "sni_strict",
                l.sni_strict.then(|| "sni_strict = true".into()),
            ),
            (
                "tls_headers",
                l.tls_headers.then(|| "tls_headers = true".into()),
            ),
            (
                "ticket_key_file",
                l.ticket_key_file.as_ref().map(|_| "ticket_key_file".into()),
            ),
            (client_auth.unwrap_or(""), client_auth.map(String::from)),
            ("tls_min_version", tls_min_version),
        ] {
            if let Some(what) = on {
                return Err(problem!(
                    at(key),
                    "{owner}: {what} needs protocol = \"https\""
                ));
            }
        }
        return Ok(());
    }
    ensure!(
        !l.certificates.is_empty(),
        at("protocol"),
        "{owner}: protocol \"https\" needs at least one [[listener.certificate]] with `cert` and \
         `key` PEM files"
    );
    ensure!(
        l.certificates.len() <= MAX_CERTIFICATES,
        cert_at(MAX_CERTIFICATES).key("cert"),
        "{owner}: at most {MAX_CERTIFICATES} certificates per listener"
    );
    let handshakes = l.max_tls_handshakes;
    ensure!(
        (1..=1_000_000).contains(&handshakes),
        at("max_tls_handshakes"),
        "{owner}: max_tls_handshakes {handshakes} is out of range 1..=1000000"
    );
    client_auth(i, l, owner)?;
    if let Some(path) = &l.ticket_key_file {
        read_ticket_keys(path).map_err(|e| problem!(at("ticket_key_file"), "{owner}: {e}"))?;
    }
    let mut defaults = l.certificates.iter().enumerate().filter(|(_, c)| c.default);
    if let (Some(_), Some((j, _))) = (defaults.next(), defaults.next()) {
        let message = "more than one certificate has default = true";
        return Err(problem!(cert_at(j).key("default"), "{owner}: {message}"));
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (j, c) in l.certificates.iter().enumerate() {
        let loaded = c
            .load()
            .map_err(|(key, m)| problem!(cert_at(j).key(key), "{owner}: {m}"))?;
        for n in loaded.names {
            if let Some((_, k)) = seen.iter().find(|(m, _)| *m == n) {
                let key = if c.names.is_empty() { "cert" } else { "names" };
                return Err(problem!(
                    cert_at(j).key(key),
                    "{owner}: server name {n:?} is already served by certificate {k}; each name \
                     picks one certificate"
                )
                .see(cert_at(*k), "certificate"));
            }
            seen.push((n, j));
        }
    }
    Ok(())
}

/// `[cluster.tls]`: how L7 listeners speak TLS to a cluster's backends.
///
/// There is deliberately no switch that turns verification off: a
/// backend with a self-signed certificate is verified by giving that
/// certificate as `ca`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTls {
    /// PEM file of the CA certificates the backends' certificates must
    /// chain to.
    pub ca: PathBuf,
    /// The name sent as SNI and verified in every backend's certificate
    /// (a backend's `tls_server_name` overrides it). None: the backend's
    /// address, verified against the certificate's IP addresses, and no
    /// SNI is sent (RFC 6066 §3 allows no literal address).
    pub server_name: Option<String>,
    /// PEM file: a client certificate chain presented to backends that ask
    /// for one (mutual TLS); with `key`.
    pub cert: Option<PathBuf>,
    /// PEM file: the private key of `cert`.
    pub key: Option<PathBuf>,
}

/// A `[cluster.tls]` with its files read and checked.
#[derive(Debug)]
pub struct LoadedClusterTls {
    pub roots: rustls::RootCertStore,
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl ClusterTls {
    /// Read and check the files. `Err((key, message))` names the key
    /// (`ca`, `cert`, `key`) the problem is at.
    pub fn load(&self) -> Result<LoadedClusterTls, FileError> {
        let roots = load_client_ca(&self.ca).map_err(|e| ("ca", e))?;
        let client_cert = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(_), None) => {
                let message = "cert needs `key`, the PEM file of its private key";
                return Err(("cert", message.into()));
            }
            (None, Some(_)) => {
                let message = "key needs `cert`, the PEM file of the client certificate";
                return Err(("key", message.into()));
            }
            (Some(cert), Some(key)) => Some(read_pair(cert, key)?),
        };
        Ok(LoadedClusterTls { roots, client_cert })
    }
}

/// `[cluster.tls]` of cluster `i` and its backends' `tls_server_name`.
pub(super) fn cluster(i: usize, c: &Cluster, owner: &str) -> Check {
    let at = |key: &str| item("cluster", i).key("tls").key(key);
    let name_at = |j: usize| backend_key(i, j, "tls_server_name");
    // A name a backend is verified by: a DNS name (no wildcard) or an IP address.
    let valid = |n: &str| !n.starts_with("*.") && ServerName::try_from(n).is_ok();
    let Some(t) = &c.tls else {
        if let Some(j) = c.backends.iter().position(|b| b.tls_server_name.is_some()) {
            return Err(problem!(
                name_at(j),
                "{owner}: tls_server_name needs [cluster.tls]"
            ));
        }
        return Ok(());
    };
    if let Some(n) = &t.server_name {
        ensure!(
            valid(n),
            at("server_name"),
            "{owner}: invalid server_name {n:?}: expected a DNS name such as \
             \"api.internal.example\" or an IP address"
        );
    }
    for (j, b) in c.backends.iter().enumerate() {
        if let Some(n) = &b.tls_server_name {
            ensure!(
                valid(n),
                name_at(j),
                "{owner}: invalid tls_server_name {n:?}: expected a DNS name such as \
                 \"b1.internal.example\" or an IP address"
            );
        }
    }
    t.load()
        .map(|_| ())
        .map_err(|(key, m)| problem!(at(key), "{owner}: {m}"))
}

/// Certificates that have expired or expire within
/// [`EXPIRY_WARNING_DAYS`], as messages for `sluice check`.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::new();
    for l in &cfg.listeners {
        for c in &l.certificates {
            let Some(end) = c.load().ok().and_then(|x| x.not_after) else {
                continue;
            };
            let (days, name, cert) = ((end - now).div_euclid(86_400), &l.name, c.cert.display());
            if end <= now {
                let ago = -days;
                out.push(format!(
                    "listener {name:?}: certificate {cert} expired {ago} days ago"
                ));
            } else if days < EXPIRY_WARNING_DAYS {
                out.push(format!(
                    "listener {name:?}: certificate {cert} expires in {days} days"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in ["a.example", "*.a.example", "localhost", "x-1.y"] {
            assert!(valid_server_name(ok), "{ok}");
        }
        for bad in ["", "*.", "a..b", "-a.b", "a_b.c", "*a.b", "a.*.b", "*"] {
            assert!(!valid_server_name(bad), "{bad}");
        }
    }
}
