//! The TLS layer against a rustls client, in memory: no sockets, no DPDK.
//! Certificates are made by the `openssl` CLI in a temporary directory.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::config::ListenerCertificate;

/// Bytes in flight one way; empty reads would block (never EOF).
#[derive(Default)]
struct Pipe(Vec<u8>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "sluice-tls-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test CA in `dir` (made once per directory).
pub(crate) fn ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !cert.exists() {
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=Sluice test CA",
            ])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
    }
    (cert, key)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate for `sans` (ECDSA P-256, or RSA-2048) signed by the test
/// CA; its file holds the chain (leaf, then the CA).
fn make_cert(dir: &Path, name: &str, sans: &str, rsa: bool) -> ListenerCertificate {
    let (ca_cert, ca_key) = ca(dir);
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName={sans}"))
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-CA")
        .arg(&ca_cert)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if rsa {
        cmd.args(["-newkey", "rsa:2048"]);
    } else {
        cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    run(&mut cmd);
    let mut chain = std::fs::read(&cert).unwrap();
    chain.extend(std::fs::read(&ca_cert).unwrap());
    std::fs::write(&cert, chain).unwrap();
    ListenerCertificate {
        cert,
        key,
        names: vec![],
        default: false,
    }
}

struct Setup {
    server: Arc<ServerConfig>,
    roots: RootCertStore,
    ders: Vec<CertificateDer<'static>>,
}

/// Certificate 0: a.example (default); 1: *.b.example (RSA).
fn setup(min: TlsVersion) -> Setup {
    setup_with(ServerOptions {
        min,
        ..ServerOptions::default()
    })
}

fn setup_with(opts: ServerOptions) -> Setup {
    let d = dir();
    let a = make_cert(&d, "a", "DNS:a.example", false).load().unwrap();
    let b = make_cert(&d, "b", "DNS:*.b.example", true).load().unwrap();
    assert_eq!(b.names, vec!["*.b.example".to_string()]);
    assert!(a.not_after.unwrap() > 1_700_000_000);
    assert_eq!(a.chain.len(), 2);
    let mut roots = RootCertStore::empty();
    roots.add(a.chain[1].clone()).unwrap();
    let ders = vec![a.chain[0].clone(), b.chain[0].clone()];
    let server = server_config(&[a, b], 0, &opts).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    Setup {
        server,
        roots,
        ders,
    }
}

fn client_config(
    s: &Setup,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(s.roots.clone())
            .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Run the handshake to its end (or a failure); returns the server side.
fn handshake(s: &Setup, client: &mut ClientConnection) -> Result<Tls, Failure> {
    let mut t = Tls::new(&s.server).unwrap();
    let (mut up, mut down) = (Pipe::default(), Pipe::default());
    for _ in 0..10 {
        client.write_tls(&mut up).unwrap();
        t.read_from(&mut up)?;
        t.write_to(&mut down);
        if !down.0.is_empty() {
            client.read_tls(&mut down).unwrap();
            client.process_new_packets().unwrap();
        }
        if !t.handshaking() && !client.is_handshaking() {
            // Tickets and the last flight.
            client.write_tls(&mut up).unwrap();
            t.read_from(&mut up)?;
            return Ok(t);
        }
    }
    panic!("handshake did not finish");
}

fn client(cfg: &Arc<ClientConfig>, name: &str) -> ClientConnection {
    let name = ServerName::try_from(name.to_string()).unwrap();
    ClientConnection::new(cfg.clone(), name).unwrap()
}

#[test]
fn sni_picks_the_certificate_exact_wildcard_and_default() {
    let s = setup(TlsVersion::Tls12);
    let cfg = client_config(&s, &[&rustls::version::TLS13]);
    // (name sent, certificate expected)
    let table: &[(&str, usize)] = &[("a.example", 0), ("x.b.example", 1), ("A.Example", 0)];
    for &(name, want) in table {
        let mut c = client(&cfg, name);
        let t = handshake(&s, &mut c).unwrap();
        assert_eq!(c.peer_certificates().unwrap()[0], s.ders[want], "{name}");
        assert_eq!(t.server_name(), Some(name.to_ascii_lowercase().as_str()));
        assert_eq!(t.alpn(), Some(&b"http/1.1"[..]));
    }
    // No SNI (an address): the default certificate, which the client
    // then refuses for the address; the server sent certificate 0.
    let mut c =
        ClientConnection::new(cfg.clone(), ServerName::try_from("192.0.2.1").unwrap()).unwrap();
    let mut t = Tls::new(&s.server).unwrap();
    let (mut up, mut down) = (Pipe::default(), Pipe::default());
    c.write_tls(&mut up).unwrap();
    t.read_from(&mut up).unwrap();
    assert_eq!(t.server_name(), None);
    t.write_to(&mut down);
    c.read_tls(&mut down).unwrap();
    assert!(c.process_new_packets().is_err());
}

#[test]
fn bytes_both_ways_and_close_notify() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let s = setup(TlsVersion::Tls12);
        let cfg = client_config(&s, versions);
        let mut c = client(&cfg, "a.example");
        let mut t = handshake(&s, &mut c).unwrap();
        let (mut up, mut down) = (Pipe::default(), Pipe::default());
        c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        c.write_tls(&mut up).unwrap();
        t.read_from(&mut up).unwrap();
        let mut got = Vec::new();
        t.recv(|d| {
            got.extend_from_slice(d);
            d.len()
        });
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        // A response bigger than the room: only what fits, encrypted,
        // fits the room.
        let body = vec![7u8; 100_000];
        let room = 50_000;
        let n = t.send(&body, room);
        assert!(n > 49_000 && n < room, "{n}");
        assert!(t.write_to(&mut down) <= room);
        assert_eq!(t.plain_room(room), room - 4 * RECORD_OVERHEAD);
        let mut plain = Vec::new();
        while !down.0.is_empty() {
            c.read_tls(&mut down).unwrap();
            c.process_new_packets().unwrap();
            let _ = c.reader().read_to_end(&mut plain);
        }
        assert_eq!(plain.len(), n);
        assert!(plain.iter().all(|&b| b == 7));
        // close_notify from the client: end of stream.
        c.send_close_notify();
        c.write_tls(&mut up).unwrap();
        t.read_from(&mut up).unwrap();
        assert!(t.at_eof());
    }
}

/// The TLS records in `wire`: (content type, length) each.
fn records(wire: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= wire.len() {
        let len = u16::from_be_bytes([wire[i + 3], wire[i + 4]]) as usize;
        out.push((wire[i], len));
        i += 5 + len;
    }
    assert_eq!(i, wire.len(), "whole records");
    out
}

/// Everything `down` holds, read by the client: the plaintext.
fn read_all(c: &mut ClientConnection, down: &mut Pipe) -> Vec<u8> {
    let mut plain = Vec::new();
    while !down.0.is_empty() {
        c.read_tls(down).unwrap();
        c.process_new_packets().unwrap();
        let _ = c.reader().read_to_end(&mut plain);
    }
    plain
}

#[test]
fn small_writes_of_a_step_go_out_as_one_record() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let s = setup(TlsVersion::Tls12);
        let cfg = client_config(&s, versions);
        let mut c = client(&cfg, "a.example");
        let mut t = handshake(&s, &mut c).unwrap();
        // Whatever the handshake left (TLS 1.3 tickets) goes first.
        let mut down = Pipe::default();
        t.write_to(&mut down);
        while !down.0.is_empty() {
            c.read_tls(&mut down).unwrap();
            c.process_new_packets().unwrap();
        }

        // A head and a short body: nothing leaves before the step's end
        // (`push_to` sends only what is encrypted), then one record.
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n";
        assert_eq!(t.send(head, 65_536), head.len());
        assert_eq!(t.push_to(&mut down), 0);
        assert!(t.has_pending());
        assert_eq!(
            t.plain_room(65_536),
            65_536 - 5 * RECORD_OVERHEAD - head.len()
        );
        t.write_plain(b"hello, world\n");
        assert!(t.write_to(&mut down) > 0);
        assert!(!t.has_pending());
        let recs = records(&down.0);
        assert_eq!(recs.len(), 1, "{recs:?}");
        let mut want = head.to_vec();
        want.extend_from_slice(b"hello, world\n");
        assert_eq!(read_all(&mut c, &mut down), want);

        // A small write, then one too big to wait: the same bytes, in
        // order, the small one in the big one's first record.
        t.write_plain(head);
        let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        t.write_plain(&body);
        assert!(!t.has_pending());
        t.write_to(&mut down);
        let recs = records(&down.0);
        assert_eq!(
            recs.len(),
            3,
            "40 KiB and a head in 16 KiB records: {recs:?}"
        );
        let mut want = head.to_vec();
        want.extend_from_slice(&body);
        assert_eq!(read_all(&mut c, &mut down), want);

        // close_notify comes after the pending bytes, not before.
        t.write_plain(b"bye");
        t.close_notify();
        t.write_to(&mut down);
        assert_eq!(read_all(&mut c, &mut down), b"bye");
    }
}

/// A socket with room for `room` more bytes, then `WouldBlock`.
struct Full<'a> {
    to: &'a mut Pipe,
    room: usize,
}

impl Write for Full<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.to.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A close whose response does not fit the socket owes its FIN until
/// rustls has written everything: the client gets the whole response,
/// then close_notify.
#[test]
fn the_fin_waits_until_the_response_is_written() {
    let s = setup(TlsVersion::Tls12);
    let cfg = client_config(&s, &[&rustls::version::TLS13]);
    let mut c = client(&cfg, "a.example");
    let mut t = handshake(&s, &mut c).unwrap();
    let mut down = Pipe::default();
    t.write_to(&mut down);
    let body: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    t.write_plain(&body);
    t.close_notify();
    t.write_to(&mut Full {
        to: &mut down,
        room: 10_000,
    });
    assert!(t.wants_write());
    assert!(!t.drained_for_fin(), "FIN owed while rustls holds the tail");
    assert!(t.fin_owed());
    // Room again: the rest goes, then the FIN may.
    t.write_to(&mut down);
    assert!(t.fin_owed() && t.drained_for_fin());
    let mut plain = Vec::new();
    while !down.0.is_empty() {
        c.read_tls(&mut down).unwrap();
        let io = c.process_new_packets().unwrap();
        let _ = c.reader().read_to_end(&mut plain);
        if down.0.is_empty() {
            assert!(io.peer_has_closed(), "close_notify last");
        }
    }
    assert_eq!(plain, body);
}

/// Nothing written after a fatal alert: pending plaintext is dropped.
#[test]
fn pending_plaintext_is_dropped_after_a_failure() {
    let s = setup(TlsVersion::Tls12);
    let cfg = client_config(&s, &[&rustls::version::TLS13]);
    let mut c = client(&cfg, "a.example");
    let mut t = handshake(&s, &mut c).unwrap();
    let mut down = Pipe::default();
    t.write_to(&mut down);
    down.0.clear();
    t.write_plain(b"HTTP/1.1 200 OK\r\n\r\n");
    // A record of garbage from the client: a fatal error.
    let mut up = Pipe(vec![23, 3, 3, 0, 20]);
    up.0.extend_from_slice(&[0xAA; 20]);
    assert!(t.read_from(&mut up).is_err());
    t.write_to(&mut down);
    assert!(!t.has_pending());
    // Only the alert went out: one record, of type alert (21).
    let recs = records(&down.0);
    assert!(
        recs.iter().all(|&(ty, _)| ty == 21 || ty == 23) && recs.len() == 1,
        "{recs:?}"
    );
    assert!(t.drained_for_fin(), "after a failure the FIN is never held");
}

#[test]
fn resumption_is_counted_as_resumed() {
    let s = setup(TlsVersion::Tls12);
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let cfg = client_config(&s, versions);
        let mut c = client(&cfg, "a.example");
        let t = handshake(&s, &mut c).unwrap();
        assert!(!t.resumed());
        // The client takes the ticket.
        let mut c2 = client(&cfg, "a.example");
        let t2 = handshake(&s, &mut c2).unwrap();
        assert!(t2.resumed(), "{versions:?}");
    }
}

#[test]
fn hostile_clients_fail_with_their_reason() {
    let s = setup(TlsVersion::Tls13);
    let feed = |bytes: &[u8]| {
        let mut t = Tls::new(&s.server).unwrap();
        let r = t.read_from(&mut Pipe(bytes.to_vec()));
        let mut alert = Pipe::default();
        t.write_to(&mut alert);
        (r, alert.0.len())
    };
    // (what, bytes, failure)
    let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    big.extend_from_slice(&[0x01, 0x00, 0xff, 0xfb]);
    big.resize(big.len() + 0x3ffc, 0);
    let mut huge = Vec::new();
    for _ in 0..3 {
        huge.extend_from_slice(&big);
    }
    let table: &[(&str, &[u8], Failure)] = &[
        (
            "garbage",
            b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09",
            Failure::NotTls,
        ),
        (
            "plain http",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            Failure::PlainHttp,
        ),
        ("http POST", b"POST /x HTTP/1.1\r\n", Failure::PlainHttp),
        ("hello over 32 KiB", &huge, Failure::TooLarge),
    ];
    for &(what, bytes, want) in table {
        let (r, _) = feed(bytes);
        assert_eq!(r, Err(want), "{what}");
    }
    // A TLS 1.2-only client against a 1.3-only listener.
    let cfg = client_config(&s, &[&rustls::version::TLS12]);
    let mut c = client(&cfg, "a.example");
    assert_eq!(handshake(&s, &mut c).err(), Some(Failure::OldVersion));
    // Every prefix of a real ClientHello is no error, only "more".
    let cfg = client_config(&s, &[&rustls::version::TLS13]);
    let mut c = client(&cfg, "a.example");
    let mut hello = Pipe::default();
    c.write_tls(&mut hello).unwrap();
    for n in 0..hello.0.len() {
        let mut t = Tls::new(&s.server).unwrap();
        assert_eq!(
            t.read_from(&mut Pipe(hello.0[..n].to_vec())),
            Ok(()),
            "prefix {n}"
        );
        assert!(t.handshaking());
    }
}

#[test]
fn a_tls_1_1_hello_is_an_old_version() {
    // A ClientHello with legacy_version 0x0302 and no supported_versions,
    // as `openssl s_client -tls1_1` sends (trimmed to what rustls reads).
    let s = setup(TlsVersion::Tls12);
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x13]); // ECDHE-RSA-AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend_from_slice(&hs);
    let mut t = Tls::new(&s.server).unwrap();
    assert_eq!(t.read_from(&mut Pipe(rec)), Err(Failure::OldVersion));
    // A protocol_version alert in the version the client asked for, once.
    let mut down = Pipe::default();
    t.write_to(&mut down);
    assert_eq!(down.0, [0x15, 0x03, 0x02, 0x00, 0x02, 0x02, 70]);
    assert_eq!(t.write_to(&mut down), 0);
    // A TLS 1.2 client on a 1.3-only listener: the same, in 0x0303.
    let s = setup(TlsVersion::Tls13);
    let cfg = client_config(&s, &[&rustls::version::TLS12]);
    let mut c = client(&cfg, "a.example");
    let mut up = Pipe::default();
    c.write_tls(&mut up).unwrap();
    let mut t = Tls::new(&s.server).unwrap();
    assert_eq!(t.read_from(&mut up), Err(Failure::OldVersion));
    let mut down = Pipe::default();
    t.write_to(&mut down);
    assert_eq!(down.0, PROTOCOL_VERSION_ALERT);
}

#[test]
fn strict_sni_refuses_unknown_names_with_unrecognized_name() {
    let s = setup_with(ServerOptions {
        sni_strict: true,
        ..ServerOptions::default()
    });
    let cfg = client_config(&s, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    // Known names still work, exact and wildcard.
    for name in ["a.example", "x.b.example"] {
        let mut c = client(&cfg, name);
        assert!(handshake(&s, &mut c).is_ok(), "{name}");
    }
    // An unknown name, and no name at all (an address).
    for name in ["unknown.example", "b.example", "192.0.2.1"] {
        let mut c = client(&cfg, name);
        let mut t = Tls::new(&s.server).unwrap();
        let (mut up, mut down) = (Pipe::default(), Pipe::default());
        c.write_tls(&mut up).unwrap();
        assert_eq!(t.read_from(&mut up), Err(Failure::UnknownSni), "{name}");
        t.write_to(&mut down);
        assert_eq!(down.0, UNRECOGNIZED_NAME_ALERT, "{name}");
        // Once: nothing more, and the failure stays.
        assert_eq!(t.write_to(&mut down), 0);
        assert_eq!(t.failed(), Some(Failure::UnknownSni));
        c.read_tls(&mut down).unwrap();
        let e = c.process_new_packets().unwrap_err();
        assert_eq!(
            e,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName),
            "{name}"
        );
    }
}

#[test]
fn facts_name_version_cipher_and_server_name() {
    let s = setup(TlsVersion::Tls12);
    let table: &[(&[&'static rustls::SupportedProtocolVersion], &str, &str)] = &[
        (&[&rustls::version::TLS13], "TLSv1.3", "TLS13_"),
        (&[&rustls::version::TLS12], "TLSv1.2", "TLS_ECDHE_"),
    ];
    for &(versions, version, cipher) in table {
        let cfg = client_config(&s, versions);
        let mut c = client(&cfg, "x.b.example");
        let t = handshake(&s, &mut c).unwrap();
        let f = t.facts();
        assert_eq!(f.sni.as_deref(), Some("x.b.example"));
        assert_eq!(f.version, version);
        assert!(f.cipher.starts_with(cipher), "{}", f.cipher);
    }
}

/// A rustls client config presenting `cert` (its chain and key), trusting
/// the test CA of `s`.
fn client_with_cert(s: &Setup, cert: &ListenerCertificate) -> Arc<ClientConfig> {
    let c = cert.load().unwrap();
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(s.roots.clone())
            .with_client_auth_cert(c.chain, c.key)
            .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[test]
fn client_certificates_required_or_requested() {
    let d = dir();
    let a = make_cert(&d, "a", "DNS:a.example", false).load().unwrap();
    let good = make_cert(&d, "client", "DNS:client.example", false);
    // Another CA's client: its own directory, its own CA.
    let other_dir = dir();
    let stranger = make_cert(&other_dir, "stranger", "DNS:client.example", false);
    let mut roots = RootCertStore::empty();
    roots.add(a.chain[1].clone()).unwrap();
    let roots = Arc::new(roots);
    for required in [true, false] {
        let server = server_config(
            &[make_cert(&d, "a", "DNS:a.example", false).load().unwrap()],
            0,
            &ServerOptions {
                client_roots: Some((roots.clone(), required)),
                ..ServerOptions::default()
            },
        )
        .unwrap();
        let s = Setup {
            server,
            roots: (*roots).clone(),
            ders: vec![],
        };
        // A verified client: its subject is a fact.
        let mut c = client(&client_with_cert(&s, &good), "a.example");
        let t = handshake(&s, &mut c).unwrap();
        assert_eq!(t.facts().client_subject.as_deref(), Some("CN=client"));
        // Another CA's certificate is refused either way.
        let mut c = client(&client_with_cert(&s, &stranger), "a.example");
        assert_eq!(handshake(&s, &mut c).err(), Some(Failure::ClientCert));
        // No certificate: refused if required, else served without subject.
        let cfg = client_config(&s, &[&rustls::version::TLS13]);
        let mut c = client(&cfg, "a.example");
        match handshake(&s, &mut c) {
            Ok(t) => {
                assert!(!required);
                assert_eq!(t.facts().client_subject, None);
            }
            Err(f) => {
                assert!(required);
                assert_eq!(f, Failure::ClientCert);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[test]
fn subjects_are_rfc4514_strings_and_valid_header_values() {
    let d = dir();
    let (ca_cert, ca_key) = ca(&d);
    // (subject given to openssl, string expected)
    let table: &[(&str, &str)] = &[
        ("/CN=client", "CN=client"),
        (
            "/C=FR/O=Example, Inc/OU=ops/CN=a b",
            "CN=a b,OU=ops,O=Example\\, Inc,C=FR",
        ),
        ("/CN= semi;colon<x>", "CN=\\ semi\\;colon\\<x\\>"),
        ("/O=o/CN=a+OU=b", "CN=a+OU=b,O=o"),
    ];
    for (i, &(subj, want)) in table.iter().enumerate() {
        let cert = d.join(format!("s{i}.crt"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "1", "-subj", subj])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-keyout")
            .arg(d.join(format!("s{i}.key")))
            .arg("-out")
            .arg(&cert));
        let pem = std::fs::read(&cert).unwrap();
        let der = {
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(&pem).unwrap()
        };
        assert_eq!(
            crate::l7::x509::subject_of(&der).as_deref(),
            Some(want),
            "{subj}"
        );
        // Every prefix is no panic.
        for n in 0..der.len() {
            let _ = crate::l7::x509::subject_of(&der[..n]);
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A TLS 1.2 (AES-128-GCM) connection, then the client's write keys, to
/// send what no well-behaved client sends: records encrypted by hand.
fn tls12_with_client_keys(
    s: &Setup,
) -> (Tls, Box<dyn rustls::crypto::cipher::MessageEncrypter>, u64) {
    use rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as SUITE;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![SUITE],
        ..rustls::crypto::ring::default_provider()
    };
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(s.roots.clone())
        .with_no_client_auth();
    cfg.enable_secret_extraction = true;
    let mut c = client(&Arc::new(cfg), "a.example");
    let t = handshake(s, &mut c).unwrap();
    let secrets = c.dangerous_extract_secrets().unwrap();
    let (seq, rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv }) = secrets.tx else {
        panic!("not AES-128-GCM");
    };
    let rustls::SupportedCipherSuite::Tls12(suite) = SUITE else {
        unreachable!()
    };
    let enc = suite
        .aead_alg
        .encrypter(key, &iv.as_ref()[..4], &iv.as_ref()[4..]);
    (t, enc, seq)
}

fn record(
    enc: &mut dyn rustls::crypto::cipher::MessageEncrypter,
    seq: &mut u64,
    typ: rustls::ContentType,
    payload: &[u8],
) -> Vec<u8> {
    use rustls::crypto::cipher::{OutboundChunks, OutboundPlainMessage};
    let m = OutboundPlainMessage {
        typ,
        version: rustls::ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(payload),
    };
    let r = enc.encrypt(m, *seq).unwrap().encode();
    *seq += 1;
    r
}

#[test]
fn a_renegotiation_attempt_gets_no_renegotiation_and_the_connection_goes_on() {
    let s = setup(TlsVersion::Tls12);
    let (mut t, mut enc, mut seq) = tls12_with_client_keys(&s);
    // A ClientHello (the handshake message of a fresh client's first
    // record), encrypted under the running session: renegotiation
    // (RFC 5746), which Sluice (rustls) does not do.
    let cfg = client_config(&s, &[&rustls::version::TLS12]);
    let mut fresh = client(&cfg, "a.example");
    let mut hello = Pipe::default();
    fresh.write_tls(&mut hello).unwrap();
    let mut up = Pipe(record(
        &mut *enc,
        &mut seq,
        rustls::ContentType::Handshake,
        &hello.0[5..],
    ));
    assert_eq!(t.read_from(&mut up), Ok(()));
    // A warning alert (no_renegotiation) goes back, encrypted: one record.
    let mut down = Pipe::default();
    let n = t.write_to(&mut down);
    assert!(n > 0 && n < 64 && down.0[0] == 0x15, "{:?}", down.0);
    // And requests still arrive.
    let mut up = Pipe(record(
        &mut *enc,
        &mut seq,
        rustls::ContentType::ApplicationData,
        b"GET / HTTP/1.1\r\n\r\n",
    ));
    assert_eq!(t.read_from(&mut up), Ok(()));
    let mut got = Vec::new();
    t.recv(|d| {
        got.extend_from_slice(d);
        d.len()
    });
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(t.take_renegotiations(), 1, "the attempt is seen");
    assert_eq!(t.take_renegotiations(), 0, "and taken once");
    // A second attempt ends the connection, counted as the failure only.
    let mut up = Pipe(record(
        &mut *enc,
        &mut seq,
        rustls::ContentType::Handshake,
        &hello.0[5..],
    ));
    assert_eq!(t.read_from(&mut up), Err(Failure::Renegotiation));
    assert_eq!(t.take_renegotiations(), 0);
    assert_eq!(
        Failure::Renegotiation.counter(),
        Counter::l7_tls_renegotiation_refused
    );
}

#[test]
fn an_alert_storm_ends_with_a_reason() {
    let s = setup(TlsVersion::Tls12);
    // Before the handshake: plaintext warning alerts (close_notify is
    // excluded: it ends the stream), thousands in one flight.
    let warning: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x5a]; // user_canceled
    let storm: Vec<u8> = warning.repeat(10_000);
    let mut t = Tls::new(&s.server).unwrap();
    let r = t.read_from(&mut Pipe(storm));
    // rustls stops a run of warning alerts itself (a few are allowed,
    // `PeerMisbehaved::TooManyWarningAlertsReceived`), before the 32 KiB
    // bound of the flight would.
    assert_eq!(r, Err(Failure::Protocol));
    // After a TLS 1.2 handshake: encrypted warning alerts, as fast as they
    // come: the same.
    let (mut t, mut enc, mut seq) = tls12_with_client_keys(&s);
    let mut storm = Vec::new();
    for _ in 0..5_000 {
        storm.extend(record(
            &mut *enc,
            &mut seq,
            rustls::ContentType::Alert,
            &[0x01, 0x5a],
        ));
    }
    let r = t.read_from(&mut Pipe(storm));
    assert_eq!(r, Err(Failure::Protocol));
    assert!(!t.has_plaintext());
}

/// Gives `bytes`, then fails with `end` (EOF as `Ok(0)`, or an error).
struct Then(Vec<u8>, Option<io::ErrorKind>);

impl Read for Then {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.0.is_empty() {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            return Ok(n);
        }
        match self.1 {
            None => Ok(0),
            Some(k) => Err(k.into()),
        }
    }
}

#[test]
fn a_reset_or_fin_mid_record_ends_the_connection() {
    let s = setup(TlsVersion::Tls12);
    let cfg = client_config(&s, &[&rustls::version::TLS13]);
    for end in [None, Some(io::ErrorKind::ConnectionReset)] {
        let mut c = client(&cfg, "a.example");
        let mut t = handshake(&s, &mut c).unwrap();
        c.writer().write_all(&[b'x'; 1000]).unwrap();
        let mut rec = Pipe::default();
        c.write_tls(&mut rec).unwrap();
        // Half of the record, then the end.
        let half = rec.0[..rec.0.len() / 2].to_vec();
        let r = t.read_from(&mut Then(half, end));
        match end {
            // A FIN (or a RST, which the socket reports as the end): a
            // truncation, no plaintext from the half record.
            None => {
                assert_eq!(r, Err(Failure::Truncated));
                assert!(!t.has_plaintext());
            }
            Some(_) => assert_eq!(r, Err(Failure::Protocol)),
        }
        assert_eq!(t.recv(|d| d.len()), 0);
    }
    assert_eq!(Failure::Truncated.counter(), Counter::l7_tls_truncated);
    // The end between two records (even without close_notify) and within
    // one record's header are told apart; split anywhere, the record and
    // the header of the next one.
    let mut c = client(&cfg, "a.example");
    let mut t = handshake(&s, &mut c).unwrap();
    c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rec = Pipe::default();
    c.write_tls(&mut rec).unwrap();
    let mut fin = Then(rec.0.clone(), None);
    assert_eq!(t.read_from(&mut fin), Ok(()));
    assert!(!t.at_eof() && t.has_plaintext());
    assert_eq!(t.recv(|d| d.len()), 18);
    // (rustls reads on once its plaintext is taken.)
    assert_eq!(t.read_from(&mut fin), Ok(()));
    assert!(t.at_eof(), "a FIN between records is the end, no failure");
    for cut in 1..5 {
        let mut c = client(&cfg, "a.example");
        let mut t = handshake(&s, &mut c).unwrap();
        c.writer().write_all(b"x").unwrap();
        let mut rec = Pipe::default();
        c.write_tls(&mut rec).unwrap();
        let mut bytes = rec.0.clone();
        bytes.extend_from_slice(&rec.0[..cut]);
        let mut fin = Then(bytes, None);
        assert_eq!(t.read_from(&mut fin), Ok(()));
        assert_eq!(t.recv(|d| d.len()), 1);
        let r = t.read_from(&mut fin);
        assert_eq!(r, Err(Failure::Truncated), "{cut} bytes of a header");
    }
}

#[test]
fn boxes_sharing_a_ticket_key_file_resume_each_others_sessions() {
    let d = dir();
    let cert = make_cert(&d, "a", "DNS:a.example", false);
    let mut roots = RootCertStore::empty();
    roots.add(cert.load().unwrap().chain[1].clone()).unwrap();
    let (k1, k2, k3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let boxed = |keys: &[[u8; 32]]| Setup {
        server: server_config(
            &[cert.load().unwrap()],
            0,
            &ServerOptions {
                ticketer: Some(Arc::new(FileTicketer::new(keys))),
                ..ServerOptions::default()
            },
        )
        .unwrap(),
        roots: roots.clone(),
        ders: vec![],
    };
    let one = boxed(&[k1]);
    // (box that resumes, resumed)
    let table: &[(&[[u8; 32]], bool)] = &[
        (&[k1], true),     // another box, same file
        (&[k2, k1], true), // after a rotation: the old key still opens
        (&[k3], false),    // another file: a full handshake
    ];
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        for &(keys, resumed) in table {
            // A fresh client: its only ticket is from box one.
            let cfg = client_config(&one, versions);
            let mut c = client(&cfg, "a.example");
            assert!(!handshake(&one, &mut c).unwrap().resumed());
            let other = boxed(keys);
            let mut c = client(&cfg, "a.example");
            let t = handshake(&other, &mut c).unwrap();
            assert_eq!(t.resumed(), resumed, "{versions:?} keys {}", keys.len());
        }
    }
    // Tickets: a key id, a nonce, the sealed state; tampering is refused.
    use rustls::server::ProducesTickets;
    let t = FileTicketer::new(&[k1]);
    let sealed = t.encrypt(b"state").unwrap();
    assert_eq!(sealed.len(), 4 + 12 + 5 + 16);
    assert_ne!(t.encrypt(b"state").unwrap(), sealed, "nonces repeat");
    assert_eq!(t.decrypt(&sealed).as_deref(), Some(&b"state"[..]));
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 1;
        assert_eq!(t.decrypt(&bad), None, "flipped byte {i}");
    }
    for n in 0..sealed.len() {
        assert_eq!(t.decrypt(&sealed[..n]), None);
    }
    let _ = std::fs::remove_dir_all(&d);
}

// ------------------------------------------------------------ upstream side

/// Run the handshake of the client layer `t` against a rustls server with
/// `cfg` to its end (or the layer's failure); returns the server.
fn upstream_handshake(cfg: &Arc<ServerConfig>, t: &mut Tls) -> Result<ServerConnection, Failure> {
    let mut srv = ServerConnection::new(cfg.clone()).unwrap();
    let (mut up, mut down) = (Pipe::default(), Pipe::default());
    for _ in 0..10 {
        t.write_to(&mut up);
        if !up.0.is_empty() {
            srv.read_tls(&mut up).unwrap();
            // The server may fail on our alert: that is the layer's story.
            let _ = srv.process_new_packets();
        }
        while srv.wants_write() {
            srv.write_tls(&mut down).unwrap();
        }
        t.read_from(&mut down)?;
        if !t.handshaking() && !srv.is_handshaking() {
            // The client's last flight, then the server's tickets.
            t.write_to(&mut up);
            if !up.0.is_empty() {
                srv.read_tls(&mut up).unwrap();
                srv.process_new_packets().unwrap();
            }
            while srv.wants_write() {
                srv.write_tls(&mut down).unwrap();
            }
            t.read_from(&mut down)?;
            return Ok(srv);
        }
    }
    panic!("upstream handshake did not finish");
}

fn upstream_config(s: &Setup) -> Arc<ClientConfig> {
    client_config_of(&LoadedClusterTls {
        roots: s.roots.clone(),
        client_cert: None,
    })
    .unwrap()
}

use super::client_config as client_config_of;

#[test]
fn upstream_bytes_both_ways_and_resumption() {
    let s = setup(TlsVersion::Tls12);
    let cfg = upstream_config(&s);
    let name = || ServerName::try_from("a.example").unwrap();
    let mut t = Tls::new_client(&cfg, name(), [0; 32]).unwrap();
    assert!(t.handshaking());
    // Nothing to send before the handshake is done.
    assert_eq!(t.plain_room(65536), 0);
    let mut srv = upstream_handshake(&s.server, &mut t).unwrap();
    assert!(!t.resumed());
    assert_eq!(srv.server_name(), Some("a.example"));
    assert_eq!(t.alpn(), Some(&b"http/1.1"[..]));
    assert_eq!(t.server_name(), None);
    let (mut up, mut down) = (Pipe::default(), Pipe::default());
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(t.send(req, 65536), req.len());
    t.write_to(&mut up);
    srv.read_tls(&mut up).unwrap();
    srv.process_new_packets().unwrap();
    let mut got = Vec::new();
    let _ = srv.reader().read_to_end(&mut got);
    assert_eq!(got, req);
    srv.writer().write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    srv.send_close_notify();
    while srv.wants_write() {
        srv.write_tls(&mut down).unwrap();
    }
    t.read_from(&mut down).unwrap();
    let mut got = Vec::new();
    t.recv(|d| {
        got.extend_from_slice(d);
        d.len()
    });
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(t.at_eof());
    // A second connection with the same config resumes (the session cache
    // is the config's).
    let mut t2 = Tls::new_client(&cfg, name(), [0; 32]).unwrap();
    upstream_handshake(&s.server, &mut t2).unwrap();
    assert!(t2.resumed());
}

#[test]
fn upstream_certificate_for_another_name_is_a_verify_failure() {
    let s = setup(TlsVersion::Tls12);
    let cfg = upstream_config(&s);
    // The server answers with its default certificate, for a.example.
    let mut t = Tls::new_client(&cfg, ServerName::try_from("c.example").unwrap(), [0; 32]).unwrap();
    let f = upstream_handshake(&s.server, &mut t).err();
    assert_eq!(f, Some(Failure::BackendCert));
    assert_eq!(t.take_failure(), Some(Failure::BackendCert));
    assert_eq!(t.take_failure(), None, "counted once");
    assert_eq!(
        Failure::BackendCert.upstream_counter(),
        Counter::l7_upstream_tls_verify_failed
    );
    assert_eq!(
        Failure::Protocol.upstream_counter(),
        Counter::l7_upstream_tls_failed
    );
    // And from another CA: the same.
    let other = setup(TlsVersion::Tls12);
    let mut t = Tls::new_client(&cfg, ServerName::try_from("a.example").unwrap(), [0; 32]).unwrap();
    assert_eq!(
        upstream_handshake(&other.server, &mut t).err(),
        Some(Failure::BackendCert)
    );
}

/// Pooled upstream connections are keyed on the digest of the cluster's
/// TLS settings and the backend's name: the same files give the same
/// digest; another CA, another client certificate or none, another.
#[test]
fn upstream_settings_digest_and_name_key_the_pool() {
    let d = dir();
    let (ca_a, _) = ca(&d);
    let d2 = dir();
    let (ca_b, _) = ca(&d2);
    let c1 = make_cert(&d, "c1", "DNS:client.example", false);
    let c2 = make_cert(&d, "c2", "DNS:client.example", false);
    let load = |ca: &Path, client: Option<&ListenerCertificate>| {
        let t = crate::config::ClusterTls {
            ca: ca.to_path_buf(),
            server_name: None,
            cert: client.map(|c| c.cert.clone()),
            key: client.map(|c| c.key.clone()),
        };
        super::settings_digest(&t.load().unwrap())
    };
    let base = load(&ca_a, Some(&c1));
    assert_eq!(load(&ca_a, Some(&c1)), base, "read twice, same digest");
    // (what changed, digest)
    let changed = [
        ("CA", load(&ca_b, Some(&c1))),
        ("client certificate", load(&ca_a, Some(&c2))),
        ("no client certificate", load(&ca_a, None)),
    ];
    for (what, digest) in changed {
        assert_ne!(digest, base, "{what}");
    }
    let s = setup(TlsVersion::Tls12);
    let cfg = upstream_config(&s);
    let name = |n: &str| ServerName::try_from(n.to_string()).unwrap();
    let t = Tls::new_client(&cfg, name("a.example"), base).unwrap();
    assert!(t.made_with(&base, &name("a.example")));
    assert!(!t.made_with(&base, &name("b.example")));
    assert!(!t.made_with(&changed[0].1, &name("a.example")));
    // A server-side connection was made with no upstream settings.
    assert!(!Tls::new(&s.server)
        .unwrap()
        .made_with(&base, &name("a.example")));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&d2);
}
