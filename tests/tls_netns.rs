//! TLS termination end to end: curl and `openssl s_client` in a client
//! namespace, an `l7-backend.py` backend, Sluice terminating TLS in its
//! userspace stack. Same segment as `tests/l7_netns.rs`:
//!
//! ```text
//!                 namespace stls-TAG-PID-sw: bridge br0
//!      ┌─────────────┬─────────────┐
//!      c0            l0            eth0
//!    client        Sluice          b1
//!  10.40.0.2     10.40.0.1      10.40.0.11
//!                VIP 10.40.0.100:80 (http), :443 and :8443 (https)
//! ```
//!
//! Certificates are made by each test with the `openssl` CLI in its own
//! temporary directory (a test CA, an ECDSA P-256 certificate for
//! `a.example`, the default, and an RSA-2048 one for `*.b.example`, each
//! file holding the full chain); no key is committed.
//!
//! Upstream TLS (`[cluster.tls]`): Python `ssl` HTTP backends on b1
//! (ports 9443..9445, certificates from the same test CA, for the right
//! name, for another name, and self-signed), which require a client
//! certificate.
//!
//! Needs root, curl, openssl, python3 (`scripts/setup.sh`). Every command
//! is bounded in time; guards remove namespaces, processes and files, also
//! on panic. Tests take a lock so that one Sluice runs at a time.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::certs::{make_ca, make_leaf, self_signed};
use common::lan::{run, wait_until, Daemon, Finished, Lan, Ns, RemoveOnDrop};
use common::TempDir;

static SERIAL: Mutex<()> = Mutex::new(());

const LB_ADDR: &str = "10.40.0.1";
const LB_MAC: &str = "02:00:00:40:00:01";
const CLIENT_ADDR: &str = "10.40.0.2";
const BACKEND_ADDR: &str = "10.40.0.11";
const VIP: &str = "10.40.0.100";
const ADMIN: &str = "127.0.0.1:9100";

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<_> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// The test CA and two certificates in `dir`: `ca.crt`, `a.crt`/`a.key`
/// (ECDSA, a.example), `b.crt`/`b.key` (RSA, *.b.example); the
/// certificate files hold the chain.
fn make_certs(dir: &Path) {
    make_ca(dir);
    for (name, san, key) in [
        (
            "a",
            "DNS:a.example",
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        ("b", "DNS:*.b.example", &["rsa:2048"][..]),
    ] {
        make_leaf(dir, name, name, san, key);
    }
}

/// Segment, backend and Sluice of one test; fields drop in order.
struct World {
    sluice: Option<Daemon>,
    backend: Option<Daemon>,
    _dpdk_dir: RemoveOnDrop,
    file_prefix: String,
    lan: Lan,
    tag: String,
    tmp: TempDir,
}

impl World {
    fn new(tag: &str) -> World {
        let tmp = TempDir::new(&format!("tls-{tag}"));
        let prefix = format!("stls-{tag}-{}", std::process::id());
        let mut lan = Lan::new(&prefix);
        lan.attach("c", "c0", &[&format!("{CLIENT_ADDR}/24")]);
        lan.attach("lb", "l0", &[]);
        lan.attach("b1", "eth0", &[&format!("{BACKEND_ADDR}/24")]);
        make_certs(tmp.path());
        World {
            sluice: None,
            backend: None,
            _dpdk_dir: RemoveOnDrop(PathBuf::from("/var/run/dpdk").join(&prefix)),
            file_prefix: prefix,
            lan,
            tag: tag.to_string(),
            tmp,
        }
    }

    fn client(&self) -> &Ns {
        self.lan.host("c")
    }

    fn file(&self, name: &str) -> String {
        self.tmp.path().join(name).to_str().unwrap().to_string()
    }

    /// The backend, then Sluice with an http listener on 80 and an https
    /// one on 443 (plus `extra` TOML), up and answering on both.
    fn start(&mut self, listener_keys: &str, extra: &str) {
        let script = common::repo().join("scripts/l7-backend.py");
        let cmd = self
            .lan
            .host("b1")
            .cmd(&["python3", script.to_str().unwrap(), "w1", "8080"]);
        self.backend = Some(Daemon::spawn(
            "backend w1",
            cmd,
            &self.tmp.path().join("b.log"),
        ));
        let target = format!("http://{BACKEND_ADDR}:8080/_count");
        assert!(
            wait_until(secs(10), || self
                .client_run(&["curl", "-sS", "--max-time", "1", &target], secs(3))
                .success()),
            "backend does not answer"
        );
        let cfg = format!(
            r#"# Written by tests/tls_netns.rs ({tag}).
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf"]
file_prefix = "{prefix}"

[dataplane]
workers = [1]
mbufs = 16383
mbuf_cache = 256

[admin]
listen = "{ADMIN}"

[[port]]
name = "p0"
vdev = "net_af_packet0,iface=l0"
mac = "{LB_MAC}"
addresses = ["{LB_ADDR}/24"]

[[cluster]]
name = "web"
[[cluster.backend]]
address = "{BACKEND_ADDR}"
port = 8080
name = "w1"

[[listener]]
name = "plain"
address = "{VIP}"
port = 80
ingress = "p0"
default_cluster = "web"

[[listener]]
name = "tls"
address = "{VIP}"
port = 443
ingress = "p0"
protocol = "https"
default_cluster = "web"
max_body_bytes = 0
{listener_keys}

[[listener.certificate]]
cert = "{a_crt}"
key = "{a_key}"

[[listener.certificate]]
cert = "{b_crt}"
key = "{b_key}"
{extra}"#,
            tag = self.tag,
            prefix = self.file_prefix,
            a_crt = self.file("a.crt"),
            a_key = self.file("a.key"),
            b_crt = self.file("b.crt"),
            b_key = self.file("b.key"),
        );
        let path = self.file("sluice.toml");
        std::fs::write(&path, cfg).unwrap();
        let check = run(
            {
                let mut c = common::sluice();
                c.args(["check", "--config", &path]);
                c
            },
            secs(20),
        );
        assert!(check.success(), "sluice check:\n{}", check.text());
        let cmd =
            self.lan
                .host("lb")
                .cmd(&[env!("CARGO_BIN_EXE_sluice"), "run", "--config", &path]);
        self.sluice = Some(Daemon::spawn(
            "sluice",
            cmd,
            &self.tmp.path().join("sluice.log"),
        ));
        let up = wait_until(secs(30), || {
            self.curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{VIP}/_count"),
            ])
            .stdout()
                == "200"
                && self.https("a.example", "/_count", &[]).stdout() == "200"
        });
        assert!(up, "Sluice does not serve http and https\n{}", self.diag());
    }

    fn client_run(&self, cmd: &[&str], limit: Duration) -> Finished {
        run(self.client().cmd(cmd), limit)
    }

    fn curl(&self, args: &[&str]) -> Finished {
        let mut v = vec!["curl", "-sS", "--connect-timeout", "3", "--max-time", "20"];
        v.extend_from_slice(args);
        self.client_run(&v, secs(30))
    }

    /// curl `https://NAME/PATH` (NAME resolved to the VIP, the test CA
    /// trusted), writing the status unless `args` says otherwise.
    fn https(&self, name: &str, path: &str, args: &[&str]) -> Finished {
        let resolve = format!("{name}:443:{VIP}");
        let ca = self.file("ca.crt");
        let u = format!("https://{name}{path}");
        let mut v = vec!["--cacert", &ca, "--resolve", &resolve];
        if args.is_empty() {
            v.extend_from_slice(&["-o", "/dev/null", "-w", "%{http_code}"]);
        }
        v.extend_from_slice(args);
        v.push(&u);
        self.curl(&v)
    }

    /// `openssl s_client` to the VIP's port 443 with `args`, stdin closed
    /// after `hold` seconds; (exit status, output).
    fn s_client(&self, args: &[&str], hold: f64) -> (bool, String) {
        let script = format!(
            "sleep {hold} | timeout 10 openssl s_client -connect {VIP}:443 {} 2>&1",
            args.join(" ")
        );
        let f = self.client_run(&["sh", "-c", &script], secs(20));
        (f.success(), f.stdout())
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        let f = run(
            self.lan.host("lb").cmd(&[
                env!("CARGO_BIN_EXE_sluice"),
                "stats",
                "--admin",
                ADMIN,
                "--json",
            ]),
            secs(10),
        );
        let v: serde_json::Value = serde_json::from_slice(&f.output.stdout).unwrap_or_default();
        v["counters"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn counter(&self, name: &str) -> u64 {
        *self
            .counters()
            .get(name)
            .unwrap_or_else(|| panic!("no counter {name}\n{}", self.diag()))
    }

    fn diag(&self) -> String {
        let c: BTreeMap<_, _> = self
            .counters()
            .into_iter()
            .filter(|(k, v)| (k.starts_with("l7_") || k.starts_with("drop_")) && *v != 0)
            .collect();
        format!(
            "--- counters\n{c:?}\n--- sluice log (tail)\n{}",
            tail(
                &self.sluice.as_ref().map(|d| d.log()).unwrap_or_default(),
                30
            )
        )
    }

    /// No session and no handshake left, and Sluice exits cleanly.
    fn finish(&mut self) {
        let drained = wait_until(secs(5), || {
            let c = self.counters();
            c.get("l7_sessions") == Some(&0) && c.get("l7_tls_handshaking") == Some(&0)
        });
        assert!(drained, "sessions or handshakes left\n{}", self.diag());
        let mut s = self.sluice.take().unwrap();
        let st = s.stop(secs(10));
        assert!(
            st.is_some_and(|st| st.success()),
            "Sluice did not exit cleanly: {st:?}\n{}",
            tail(&s.log(), 40)
        );
    }
}

#[test]
fn https_sni_alpn_versions_keepalive_resumption_and_a_big_download() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("main");
    w.start("", "");

    // The right certificate per name: curl verifies name and chain.
    for name in ["a.example", "x.b.example"] {
        let f = w.https(name, "/", &[]);
        assert_eq!(
            f.stdout(),
            "200",
            "https://{name}/: {}\n{}",
            f.text(),
            w.diag()
        );
    }
    // Scheme seen by the backend.
    let f = w.https(
        "a.example",
        "/headers",
        &["-H", "X-Forwarded-Proto: gopher"],
    );
    assert!(
        f.stdout().contains("[\"X-Forwarded-Proto\", \"https\"]") && !f.stdout().contains("gopher"),
        "X-Forwarded-Proto: {}",
        f.text()
    );
    // Subjects: by SNI, and the default without SNI (an address).
    for (args, cn) in [
        ("-servername x.b.example", "CN = b"),
        ("-servername a.example", "CN = a"),
        ("-servername unknown.example", "CN = a"),
        ("", "CN = a"),
    ] {
        let (_, out) = w.s_client(&[args], 0.5);
        let subject = out
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or("");
        assert!(
            subject.contains(cn),
            "s_client {args}: {subject:?} want {cn}\n{out}"
        );
    }
    // ALPN and versions.
    let (_, out) = w.s_client(&["-alpn", "h2,http/1.1"], 0.5);
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    for (flag, want) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (_, out) = w.s_client(&[flag, "-servername", "a.example"], 0.5);
        assert!(
            out.contains(&format!("Protocol  : {want}")) || out.contains(&format!(", {want},")),
            "{flag}: {out}"
        );
    }
    let before = w.counter("l7_tls_old_version");
    let (ok, out) = w.s_client(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], 0.5);
    assert!(!ok || !out.contains("Cipher is"), "TLS 1.1 accepted: {out}");
    assert!(
        w.counter("l7_tls_old_version") > before,
        "TLS 1.1 not counted\n{out}\n{}",
        w.diag()
    );

    // Keep-alive: five requests, one connection, one handshake.
    let full = w.counter("l7_tls_handshakes_full");
    let u = "https://a.example/";
    let f = w.https(
        "a.example",
        "/",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\n",
            u,
            u,
            u,
            u,
        ],
    );
    // The bodies ("w1 /") are interleaved with the -w lines.
    let lines: Vec<String> = f
        .stdout()
        .lines()
        .filter(|l| {
            l.split(' ')
                .next()
                .is_some_and(|t| t.parse::<u16>().is_ok())
        })
        .map(str::to_string)
        .collect();
    let connects: u32 = lines
        .iter()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u32>().ok())
        .sum();
    assert!(
        lines.len() == 5 && lines.iter().all(|l| l.starts_with("200")) && connects == 1,
        "keep-alive over TLS: {lines:?}\n{}",
        f.text()
    );
    assert_eq!(w.counter("l7_tls_handshakes_full"), full + 1);

    // Resumption (TLS 1.3 ticket): the second connection is resumed.
    let sess = w.file("sess.pem");
    let _ = w.s_client(&["-servername", "a.example", "-sess_out", &sess], 1.0);
    let (_, out) = w.s_client(&["-servername", "a.example", "-sess_in", &sess], 0.5);
    assert!(out.contains("Reused, TLSv1.3"), "no resumption: {out}");
    assert!(w.counter("l7_tls_handshakes_resumed") >= 1, "{}", w.diag());

    // A large download, checked byte by byte (byte i is i % 251).
    const BIG: u64 = 32 << 20;
    let out = w.file("download");
    let t0 = Instant::now();
    let f = w.https(
        "x.b.example",
        &format!("/bytes/{BIG}"),
        &["-o", &out, "-w", "%{http_code} %{size_download}"],
    );
    let took = t0.elapsed();
    let data = std::fs::read(&out).unwrap_or_default();
    let good =
        data.len() as u64 == BIG && data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
    eprintln!("[tls] {BIG} bytes over TLS in {took:?}: {}", f.stdout());
    assert!(
        f.stdout() == format!("200 {BIG}") && good,
        "download over TLS: {} ({} bytes, content {})\n{}",
        f.text(),
        data.len(),
        if good { "ok" } else { "wrong" },
        w.diag()
    );
    let _ = std::fs::remove_file(&out);

    w.finish();
    eprintln!("[tls] main took {:?}", started.elapsed());
}

/// Send `bytes` (then wait `hold` seconds without sending), read until
/// closed or `wait`; JSON {response, end, elapsed}.
const RAW: &str = r#"
import json, socket, sys, time
data = bytes.fromhex(sys.argv[1]); port = int(sys.argv[2]); wait = float(sys.argv[3])
s = socket.create_connection((sys.argv[4], port), timeout=3)
t0 = time.monotonic()
s.sendall(data)
s.settimeout(0.1)
buf, end = b"", "timeout"
while time.monotonic() < t0 + wait:
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    except ConnectionResetError:
        end = "reset"; break
    if not b:
        end = "closed"; break
    buf += b
print(json.dumps({"response": buf.decode("latin-1"), "end": end, "elapsed": time.monotonic() - t0}))
"#;

/// Hold `n` TCP connections to `port` open without sending for `hold` s.
const HOLD: &str = r#"
import socket, sys, time
n, port, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
conns, failed = [], 0
for _ in range(n):
    try:
        conns.append(socket.create_connection((sys.argv[4], port), timeout=3))
    except OSError as e:
        failed += 1
        print("connect:", e, file=sys.stderr)
time.sleep(hold)
print(len(conns), failed)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hostile_tls_clients_are_counted_by_reason_and_never_leak() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("hostile");
    w.start(
        "handshake_timeout_ms = 1500",
        &format!(
            r#"
[[listener]]
name = "tls-small"
address = "{VIP}"
port = 8443
ingress = "p0"
protocol = "https"
default_cluster = "web"
max_tls_handshakes = 3
[[listener.certificate]]
cert = "{}"
key = "{}"
"#,
            w.file("a.crt"),
            w.file("a.key")
        ),
    );
    let raw = |bytes: &[u8], port: u16, wait: f64| -> serde_json::Value {
        let f = w.client_run(
            &[
                "python3",
                "-c",
                RAW,
                &hex(bytes),
                &port.to_string(),
                &wait.to_string(),
                VIP,
            ],
            Duration::from_secs_f64(wait + 10.0),
        );
        assert!(f.success(), "raw client: {}", f.text());
        serde_json::from_str(f.stdout().trim()).unwrap()
    };
    // A ClientHello header promising 40 KiB, then that much filler.
    let mut huge = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xa0, 0x00];
    huge.resize(5 + 0x4000, 0);
    let rec = huge.clone();
    huge.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
    huge.extend_from_slice(&rec[5..]);
    huge.extend_from_slice(&rec);
    // (what, bytes, counter, the connection ends within this many s)
    let cases: &[(&str, Vec<u8>, &str, f64)] = &[
        ("garbage", (0u8..64).collect(), "l7_tls_not_tls", 3.0),
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
            "l7_tls_plain_http",
            3.0,
        ),
        ("oversized ClientHello", huge, "l7_tls_too_large", 3.0),
        (
            "stops mid-handshake",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
            "l7_tls_handshake_timeouts",
            5.0,
        ),
    ];
    let mut failures = Vec::new();
    for (what, bytes, counter, within) in cases {
        let before = w.counter(counter);
        let r = raw(bytes, 443, *within);
        let after = w.counter(counter);
        eprintln!(
            "[tls] {what}: end {} after {:.2}s, {counter} {before} -> {after}",
            r["end"], r["elapsed"]
        );
        if r["end"] == "timeout" || after != before + 1 {
            failures.push(format!("{what}: {r} {counter} {before} -> {after}"));
        }
        if *what == "plain HTTP"
            && !r["response"]
                .as_str()
                .unwrap_or("")
                .starts_with("HTTP/1.1 400")
        {
            failures.push(format!("{what}: no plain 400 answer: {r}"));
        }
    }
    // Handshakes in progress are bounded: 5 silent connections to a
    // listener allowing 3; two are reset, counted.
    let before = w.counter("l7_tls_handshake_refused");
    let f = w.client_run(&["python3", "-c", HOLD, "5", "8443", "1", VIP], secs(15));
    let refused = w.counter("l7_tls_handshake_refused") - before;
    // (A reset may reach the client while it connects the next one: the
    // counter is what is checked.)
    if refused != 2 {
        failures.push(format!(
            "5 handshakes on max 3: refused {refused}\n{}",
            f.text()
        ));
    }
    // Established traffic still flows.
    if w.https("a.example", "/", &[]).stdout() != "200" {
        failures.push("https after the hostile clients fails".into());
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    // The held connections time out (1.5 s handshake timeout).
    std::thread::sleep(secs(2));
    w.finish();
    eprintln!("[tls] hostile took {:?}", started.elapsed());
}

#[test]
fn routing_sees_tls_facts_redirects_plain_http_and_refuses_unknown_names() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("facts");
    // The https listener on 443 sends the TLS fields and routes
    // *.b.example by SNI; a plain listener on 8080 redirects to https; an
    // https listener on 8443 refuses unknown names.
    w.start(
        "tls_headers = true",
        &format!(
            r#"
[[listener.route]]
sni = "*.b.example"
cluster = "web"
request_headers_set = {{ X-Route = "sni-b" }}

[[listener]]
name = "redirect"
address = "{VIP}"
port = 8080
ingress = "p0"
[[listener.route]]
path_prefix = "/"
redirect_https = 308

[[listener]]
name = "strict"
address = "{VIP}"
port = 8443
ingress = "p0"
protocol = "https"
default_cluster = "web"
sni_strict = true
[[listener.certificate]]
cert = "{}"
key = "{}"
"#,
            w.file("a.crt"),
            w.file("a.key")
        ),
    );
    let mut failures = Vec::new();
    // TLS fields, the client's spoofed one dropped; no SNI route.
    let f = w.https(
        "a.example",
        "/headers",
        &["-H", "X-Forwarded-TLS-Version: SSLv3", "--tlsv1.3"],
    );
    let got = f.stdout();
    for want in [
        r#"["X-Forwarded-TLS-Version", "TLSv1.3"]"#,
        r#"["X-Forwarded-TLS-Cipher", "TLS13_"#,
        r#"["X-Forwarded-TLS-SNI", "a.example"]"#,
    ] {
        if !got.contains(want) {
            failures.push(format!("a.example: no {want} in {got}"));
        }
    }
    if got.contains("SSLv3") || got.contains("X-Route") {
        failures.push(format!("a.example: spoofed field or wrong route: {got}"));
    }
    // TLS 1.2 and the SNI route (whatever Host says).
    let f = w.https(
        "x.b.example",
        "/headers",
        &["-H", "Host: a.example", "--tls-max", "1.2"],
    );
    let got = f.stdout();
    for want in [
        r#"["X-Route", "sni-b"]"#,
        r#"["X-Forwarded-TLS-Version", "TLSv1.2"]"#,
        r#"["X-Forwarded-TLS-SNI", "x.b.example"]"#,
    ] {
        if !got.contains(want) {
            failures.push(format!("x.b.example: no {want} in {got}"));
        }
    }
    // Plain HTTP on 8080: 308 to the same host and target over https.
    let before = w.counter("l7_https_redirects");
    let f = w.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: shop.example:8080",
        &format!("http://{VIP}:8080/some/path?q=1"),
    ]);
    if f.stdout() != "308 https://shop.example/some/path?q=1" {
        failures.push(format!("redirect: {}", f.text()));
    }
    if w.counter("l7_https_redirects") != before + 1 {
        failures.push("redirect not counted".into());
    }
    // Strict SNI: a known name is served, an unknown one or none refused
    // with unrecognized_name.
    let s_client = |args: &str| {
        let script =
            format!("sleep 0.5 | timeout 10 openssl s_client -connect {VIP}:8443 {args} 2>&1");
        w.client_run(&["sh", "-c", &script], secs(20)).stdout()
    };
    let out = s_client("-servername a.example");
    if !out.contains("CN = a") || out.contains("alert") {
        failures.push(format!("strict, a.example: {out}"));
    }
    let before = w.counter("l7_tls_unknown_sni");
    for args in ["-servername unknown.example", "-noservername"] {
        let out = s_client(args);
        if !out.contains("unrecognized name") {
            failures.push(format!("strict, {args}: no unrecognized_name alert: {out}"));
        }
    }
    let refused = w.counter("l7_tls_unknown_sni") - before;
    if refused != 2 {
        failures.push(format!(
            "strict: l7_tls_unknown_sni counted {refused}, want 2"
        ));
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    eprintln!("[tls] facts took {:?}", started.elapsed());
}

#[test]
fn sighup_swaps_certificates_without_dropping_a_download_and_keeps_tickets() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("reload");
    w.start("", "");
    let subject = |w: &World| {
        let (_, out) = w.s_client(&["-servername", "a.example"], 0.3);
        out.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or("")
            .to_string()
    };
    assert!(subject(&w).contains("CN = a"), "{}", subject(&w));
    // A ticket from before the reload.
    let sess = w.file("sess.pem");
    let _ = w.s_client(&["-servername", "a.example", "-sess_out", &sess], 1.0);

    // A download over TLS, slowed to about 5 s, runs across the reload.
    const BIG: u64 = 24 << 20;
    let out = w.file("download");
    let resolve = format!("a.example:443:{VIP}");
    let url = format!("https://a.example/bytes/{BIG}");
    let mut download = w
        .client()
        .cmd(&[
            "curl",
            "-sS",
            "--max-time",
            "30",
            "--limit-rate",
            "5M",
            "--cacert",
            &w.file("ca.crt"),
            "--resolve",
            &resolve,
            "-o",
            &out,
            "-w",
            "%{http_code} %{size_download}",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(secs(1));

    // New files for a.example (CN a2), swapped in by rename, then SIGHUP.
    let dir = w.tmp.path().to_path_buf();
    make_leaf(
        &dir,
        "a2",
        "a2",
        "DNS:a.example",
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    std::fs::rename(dir.join("a2.key"), dir.join("a.key")).unwrap();
    std::fs::rename(dir.join("a2.crt"), dir.join("a.crt")).unwrap();
    let full = w.counter("l7_tls_handshakes_full");
    w.sluice.as_ref().unwrap().signal("HUP");
    let swapped = wait_until(secs(10), || subject(&w).contains("CN = a2"));
    let mut failures = Vec::new();
    if download.try_wait().unwrap().is_some() {
        failures.push("the download ended before the new certificate was served".into());
    }
    if !swapped {
        failures.push(format!("no new certificate after SIGHUP: {}", subject(&w)));
    }
    // curl verifies the new chain on a new connection.
    if w.https("a.example", "/", &[]).stdout() != "200" {
        failures.push("https to a.example after the reload fails".into());
    }
    // The ticket from before the reload still resumes.
    let (_, resumed) = w.s_client(&["-servername", "a.example", "-sess_in", &sess], 0.5);
    if !resumed.contains("Reused, TLSv1.3") {
        failures.push(format!(
            "ticket from before the reload not accepted: {resumed}"
        ));
    }
    let reloads = w.sluice.as_ref().unwrap().log().matches("reloaded").count();
    if reloads != 1 {
        failures.push(format!("{reloads} reloads logged"));
    }

    // The download finishes, whole and right (byte i is i % 251).
    let t0 = Instant::now();
    let done = loop {
        match download.try_wait().unwrap() {
            Some(_) => break true,
            None if t0.elapsed() > secs(40) => {
                let _ = download.kill();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let o = download.wait_with_output().unwrap();
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    let data = std::fs::read(&out).unwrap_or_default();
    let good =
        data.len() as u64 == BIG && data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
    if !done || status != format!("200 {BIG}") || !good {
        failures.push(format!(
            "download across the reload: {status} {} ({} bytes, content {})",
            String::from_utf8_lossy(&o.stderr),
            data.len(),
            if good { "ok" } else { "wrong" }
        ));
    }
    let _ = std::fs::remove_file(&out);
    eprintln!(
        "[tls] reload: full handshakes since the swap {}, download {status}",
        w.counter("l7_tls_handshakes_full") - full
    );
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    eprintln!("[tls] reload took {:?}", started.elapsed());
}

#[test]
fn client_certificates_required_or_requested() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("mtls");
    let dir = w.tmp.path().to_path_buf();
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    make_leaf(&dir, "client", "client", "DNS:client.example", &ec);
    // A certificate no CA of the listener signed.
    self_signed(&dir, "stranger", "stranger", None);
    let listener = |name: &str, port: u16, auth: &str| {
        format!(
            r#"
[[listener]]
name = "{name}"
address = "{VIP}"
port = {port}
ingress = "p0"
protocol = "https"
default_cluster = "web"
tls_headers = true
client_auth = "{auth}"
client_ca = "{}"
[[listener.certificate]]
cert = "{}"
key = "{}"
"#,
            w.file("ca.crt"),
            w.file("a.crt"),
            w.file("a.key")
        )
    };
    let extra = listener("require", 8443, "require") + &listener("request", 8444, "request");
    w.start("", &extra);
    let curl = |port: u16, cert: Option<&str>| {
        let resolve = format!("a.example:{port}:{VIP}");
        let url = format!("https://a.example:{port}/headers");
        let ca = w.file("ca.crt");
        let (crt, key) = cert.map_or((String::new(), String::new()), |c| {
            (w.file(&format!("{c}.crt")), w.file(&format!("{c}.key")))
        });
        let mut args = vec![
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-H",
            "X-Forwarded-TLS-Client-Subject: CN=root",
        ];
        if cert.is_some() {
            args.extend_from_slice(&["--cert", &crt, "--key", &key]);
        }
        args.push(&url);
        w.curl(&args)
    };
    let mut failures = Vec::new();
    let subject = r#"["X-Forwarded-TLS-Client-Subject", "CN=client"]"#;
    // (port, certificate, served, subject the backend sees)
    let cases: &[(u16, Option<&str>, bool, bool)] = &[
        (8443, Some("client"), true, true),
        (8443, None, false, false),
        (8443, Some("stranger"), false, false),
        (8444, Some("client"), true, true),
        (8444, None, true, false),
        (8444, Some("stranger"), false, false),
    ];
    for &(port, cert, served, with_subject) in cases {
        let before = w.counter("l7_tls_client_cert_refused");
        let f = curl(port, cert);
        let out = f.stdout();
        let refused = w.counter("l7_tls_client_cert_refused") - before;
        let ok = out.contains("\"path\": \"/headers\"");
        eprintln!("[tls] mtls {port} {cert:?}: served {ok}, refused {refused}");
        if ok != served
            || out.contains(subject) != with_subject
            || out.contains("CN=root")
            || refused != u64::from(!served)
        {
            failures.push(format!(
                "{port} with {cert:?}: served {ok} (want {served}), refused {refused}: {}",
                f.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    eprintln!("[tls] mtls took {:?}", started.elapsed());
}

/// A Python `ssl` HTTP/1.1 backend: answers every GET with 200 and a body
/// naming the path and the client certificate's CN (`/big`: 8 MiB), and a
/// POST with the number of body bytes it read; requires a client
/// certificate signed by the test CA. Arguments: port, cert, key, CA.
const TLS_BACKEND: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        cert = self.connection.getpeercert() or {}
        cn = "none"
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
        body = ("tls-backend %s client=%s\n" % (self.path, cn)).encode()
        if self.path == "/big":
            body = bytes(range(256)) * (8 * 4096)
        self.answer(body)
    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        got = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            got += len(chunk)
            left -= len(chunk)
        self.answer(("posted %d\n" % got).encode())
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
port, crt, key, ca = sys.argv[1:5]
srv = http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

#[test]
fn upstream_tls_verifies_backends_presents_a_client_certificate_and_checks_health() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("up");
    let dir = w.tmp.path().to_path_buf();
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    make_leaf(&dir, "backend", "backend", "DNS:backend.example", &ec);
    // Signed by the test CA, for another name.
    make_leaf(&dir, "wrong", "wrong", "DNS:other.example", &ec);
    make_leaf(&dir, "client", "client", "DNS:client.example", &ec);
    // The right name, but self-signed: no CA of the cluster's.
    self_signed(&dir, "stranger", "stranger", Some("DNS:backend.example"));
    let script = dir.join("tls-backend.py");
    std::fs::write(&script, TLS_BACKEND).unwrap();
    let mut backends = Vec::new();
    for (port, cert) in [("9443", "backend"), ("9444", "wrong"), ("9445", "stranger")] {
        let cmd = w.lan.host("b1").cmd(&[
            "python3",
            script.to_str().unwrap(),
            port,
            &w.file(&format!("{cert}.crt")),
            &w.file(&format!("{cert}.key")),
            &w.file("ca.crt"),
        ]);
        backends.push(Daemon::spawn(
            "tls backend",
            cmd,
            &dir.join(format!("tls-{port}.log")),
        ));
    }
    let cluster = |name: &str, port: u16, hc: bool, backend_keys: &str| {
        format!(
            r#"
[[cluster]]
name = "{name}"
retries = 1
[[cluster.backend]]
address = "{BACKEND_ADDR}"
port = {port}
{backend_keys}
[cluster.tls]
ca = "{ca}"
server_name = "backend.example"
cert = "{crt}"
key = "{key}"
{hc}"#,
            ca = w.file("ca.crt"),
            crt = w.file("client.crt"),
            key = w.file("client.key"),
            hc = if hc {
                "[cluster.health_check]\npath = \"/health\"\ninterval_ms = 500\ntimeout_ms = 400\nrise = 1\nfall = 2\n"
            } else {
                ""
            },
        )
    };
    let listener = |name: &str, port: u16, to: &str, https: bool| {
        let tls = if https {
            format!(
                "protocol = \"https\"\n[[listener.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                w.file("a.crt"),
                w.file("a.key")
            )
        } else {
            String::new()
        };
        format!(
            "\n[[listener]]\nname = \"{name}\"\naddress = \"{VIP}\"\nport = {port}\n\
             ingress = \"p0\"\ndefault_cluster = \"{to}\"\n{tls}"
        )
    };
    let extra = [
        cluster("tlsweb", 9443, true, ""),
        cluster("tlsbad", 9444, false, ""),
        cluster("tlsbadhc", 9444, true, ""),
        cluster(
            "tlsother",
            9444,
            false,
            "tls_server_name = \"other.example\"",
        ),
        cluster("tlsstranger", 9445, false, ""),
        listener("to-tls", 8081, "tlsweb", false),
        listener("to-bad", 8082, "tlsbad", false),
        listener("to-badhc", 8083, "tlsbadhc", false),
        listener("to-other", 8084, "tlsother", false),
        listener("to-stranger", 8085, "tlsstranger", false),
        listener("tls-to-tls", 8443, "tlsweb", true),
    ]
    .concat();
    w.start("", &extra);
    let mut failures = Vec::new();
    let status_body = |args: &[&str]| {
        let mut v = vec!["-w", "\n%{http_code}"];
        v.extend_from_slice(args);
        w.curl(&v).stdout()
    };
    // Plain client → Sluice → TLS backend, keep-alive: two requests on one
    // client connection; the upstream connection is pooled with its TLS.
    let reused = w.counter("l7_upstream_reused");
    let full = w.counter("l7_upstream_tls_handshakes_full")
        + w.counter("l7_upstream_tls_handshakes_resumed");
    let u1 = format!("http://{VIP}:8081/one");
    let u2 = format!("http://{VIP}:8081/two");
    let out = status_body(&[&u1, &u2]);
    eprintln!("[tls] plain → tls backend: {out:?}");
    if !out.contains("tls-backend /one client=client\n\n200")
        || !out.contains("tls-backend /two client=client\n\n200")
    {
        failures.push(format!("plain → TLS backend: {out:?}"));
    }
    let handshakes = w.counter("l7_upstream_tls_handshakes_full")
        + w.counter("l7_upstream_tls_handshakes_resumed")
        - full;
    if handshakes == 0 || w.counter("l7_upstream_reused") == reused {
        failures.push(format!(
            "upstream TLS handshakes {handshakes}, pool reuse {}",
            w.counter("l7_upstream_reused") - reused
        ));
    }
    // HTTPS client → Sluice → TLS backend.
    let resolve = format!("a.example:8443:{VIP}");
    let ca = w.file("ca.crt");
    let out = status_body(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "https://a.example:8443/both",
    ]);
    eprintln!("[tls] tls → tls backend: {out:?}");
    if !out.contains("tls-backend /both client=client\n\n200") {
        failures.push(format!("TLS → TLS backend: {out:?}"));
    }
    // A backend whose certificate is for another name: 502, counted.
    let verify = w.counter("l7_upstream_tls_verify_failed");
    let out = status_body(&["-o", "/dev/null", &format!("http://{VIP}:8082/")]);
    let verify = w.counter("l7_upstream_tls_verify_failed") - verify;
    eprintln!("[tls] wrong-name backend: {out:?}, verify failures {verify}");
    if out.trim() != "502" || verify == 0 {
        failures.push(format!(
            "wrong-name backend: {out:?}, verify failures {verify}"
        ));
    }
    // Bodies both ways through the TLS layer on one or both sides: an
    // 8 MiB download and a 4 MiB upload, plain and TLS clients.
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, vec![b'u'; 4 << 20]).unwrap();
    let data = format!("@{}", upload.display());
    for (what, base, tls) in [
        ("plain", format!("http://{VIP}:8081"), false),
        ("tls", "https://a.example:8443".to_string(), true),
    ] {
        let file = dir.join(format!("download-{what}"));
        let file = file.to_str().unwrap().to_string();
        let mut args = vec!["-o", &file, "-w", "%{size_download} %{http_code}"];
        if tls {
            args.extend_from_slice(&["--cacert", &ca, "--resolve", &resolve]);
        }
        let big = format!("{base}/big");
        args.push(&big);
        let out = w.curl(&args).stdout();
        let mut post = vec![
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ];
        if tls {
            post.extend_from_slice(&["--cacert", &ca, "--resolve", &resolve]);
        }
        let up = format!("{base}/up");
        post.push(&up);
        let posted = w.curl(&post).stdout();
        eprintln!("[tls] {what} client, TLS backend: download {out:?}, upload {posted:?}");
        let want: Vec<u8> = (0..8usize << 20).map(|i| i as u8).collect();
        let same = std::fs::read(&file).is_ok_and(|got| got == want);
        if out != format!("{} 200", 8 << 20)
            || !same
            || posted.trim() != format!("posted {}", 4 << 20)
        {
            failures.push(format!(
                "{what} bodies: download {out:?} (content right: {same}), upload {posted:?}"
            ));
        }
    }
    // The same backend with its own name (tls_server_name) verifies.
    let out = status_body(&[&format!("http://{VIP}:8084/other")]);
    eprintln!("[tls] backend's own name: {out:?}");
    if !out.contains("tls-backend /other client=client\n\n200") {
        failures.push(format!("tls_server_name override: {out:?}"));
    }
    // A backend with the right name from another CA: 502, counted.
    let verify = w.counter("l7_upstream_tls_verify_failed");
    let out = status_body(&["-o", "/dev/null", &format!("http://{VIP}:8085/")]);
    let verify = w.counter("l7_upstream_tls_verify_failed") - verify;
    eprintln!("[tls] unknown-CA backend: {out:?}, verify failures {verify}");
    if out.trim() != "502" || verify == 0 {
        failures.push(format!(
            "unknown-CA backend: {out:?}, verify failures {verify}"
        ));
    }
    // Health checks over TLS: the good backend stays up, the bad one goes
    // down (503: no backend left).
    let down = wait_until(secs(5), || {
        status_body(&["-o", "/dev/null", &format!("http://{VIP}:8083/")]).trim() == "503"
    });
    let good = status_body(&["-o", "/dev/null", &format!("http://{VIP}:8081/after")]);
    if !down || good.trim() != "200" || w.counter("health_checks_passed") == 0 {
        failures.push(format!(
            "health: bad backend down {down}, good one answers {good:?}, ok {}",
            w.counter("health_checks_passed")
        ));
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    drop(backends);
    eprintln!("[tls] upstream TLS took {:?}", started.elapsed());
}

/// SHA-256 of `data`, in hex.
fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Over one TLS connection to `VIP:443` as `a.example` (the test CA
/// trusted): five requests one after the other (keep-alive), then nine
/// written in one go (pipelining): GETs of `/pl/I`, one `/bytes/300000`
/// and one `POST /upload` of 200,000 bytes in the middle. Prints JSON:
/// {version, keepalive: [[status, body]], pipelined: [[status, body or
/// "LEN sha256"]]}. Arguments: address, CA file.
const PIPELINE: &str = r#"
import hashlib, json, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection((sys.argv[1], 443), timeout=10),
                    server_hostname="a.example")
f = s.makefile("rb")
def response():
    status = f.readline().split()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = f.read(length)
    if length > 1000:
        return [status[1].decode(), "%d %s" % (len(body), hashlib.sha256(body).hexdigest())]
    return [status[1].decode(), body.decode("latin-1")]
get = lambda path: ("GET %s HTTP/1.1\r\nHost: a.example\r\n\r\n" % path).encode()
out = {"keepalive": [], "pipelined": []}
for i in range(5):
    s.sendall(get("/ka/%d" % i))
    out["keepalive"].append(response())
upload = bytes(i % 199 for i in range(200000))
reqs = [get("/pl/%d" % i) for i in range(4)]
reqs.append(get("/bytes/300000"))
reqs.append(b"POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n" % len(upload) + upload)
reqs += [get("/pl/%d" % i) for i in range(4, 7)]
s.sendall(b"".join(reqs))
for _ in reqs:
    out["pipelined"].append(response())
out["version"] = s.version()
s.close()
print(json.dumps(out))
"#;

#[test]
fn big_bodies_keepalive_and_pipelining_over_tls() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("bulk");
    w.start("", "");
    let mut failures = Vec::new();
    let ca = w.file("ca.crt");
    let resolve = format!("a.example:443:{VIP}");

    // 100 MiB up: the backend hashes the body it read and answers the
    // digest, which must be the digest of the file sent.
    const BIG: usize = 100 << 20;
    let mut body = vec![0u8; BIG];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in body.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let sent = sha256_hex(&body);
    let upload = w.file("upload.bin");
    std::fs::write(&upload, &body).unwrap();
    drop(body);
    let data = format!("@{upload}");
    let t0 = Instant::now();
    let f = w.client_run(
        &[
            "curl",
            "-sS",
            "--max-time",
            "150",
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            "https://a.example/upload",
        ],
        secs(160),
    );
    eprintln!(
        "[tls] 100 MiB up in {:?}: {}",
        t0.elapsed(),
        f.stdout().trim()
    );
    if f.stdout().trim() != format!("bytes={BIG} sha256={sent}") {
        failures.push(format!("upload: want sha256 {sent}\n{}", f.text()));
    }
    let _ = std::fs::remove_file(&upload);

    // 100 MiB down (byte i is i % 251), hashed as it arrives.
    let pattern: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let want = sha256_hex(&pattern);
    drop(pattern);
    let script = format!(
        "curl -sS --max-time 150 --cacert {ca} --resolve {resolve} \
         https://a.example/bytes/{BIG} | sha256sum"
    );
    let t0 = Instant::now();
    let f = w.client_run(&["sh", "-c", &script], secs(160));
    let got = f.stdout();
    eprintln!("[tls] 100 MiB down in {:?}: {}", t0.elapsed(), got.trim());
    if got.split_whitespace().next() != Some(want.as_str()) {
        failures.push(format!("download: want sha256 {want}\n{}", f.text()));
    }

    // Keep-alive and pipelining on one TLS connection, one handshake.
    let handshakes =
        |w: &World| w.counter("l7_tls_handshakes_full") + w.counter("l7_tls_handshakes_resumed");
    let before = handshakes(&w);
    let f = w.client_run(&["python3", "-c", PIPELINE, VIP, &ca], secs(30));
    let out: serde_json::Value = serde_json::from_str(f.stdout().trim()).unwrap_or_default();
    let pairs = |k: &str| -> Vec<(String, String)> {
        out[k]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|p| {
                        let s = |i: usize| p[i].as_str().unwrap_or("").to_string();
                        (s(0), s(1))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let ok = |body: String| ("200".to_string(), body);
    let want_ka: Vec<_> = (0..5).map(|i| ok(format!("w1 /ka/{i}\n"))).collect();
    let up: Vec<u8> = (0..200_000u32).map(|i| (i % 199) as u8).collect();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut want_pl: Vec<_> = (0..4).map(|i| ok(format!("w1 /pl/{i}\n"))).collect();
    want_pl.push(ok(format!("300000 {}", sha256_hex(&bytes))));
    want_pl.push(ok(format!("bytes=200000 sha256={}\n", sha256_hex(&up))));
    want_pl.extend((4..7).map(|i| ok(format!("w1 /pl/{i}\n"))));
    let got_ka = pairs("keepalive");
    let got_pl = pairs("pipelined");
    eprintln!("[tls] keep-alive {got_ka:?}\n[tls] pipelined {got_pl:?}");
    if got_ka != want_ka || got_pl != want_pl {
        failures.push(format!(
            "keep-alive/pipelining over TLS:\n got {got_ka:?}\n     {got_pl:?}\nwant {want_ka:?}\n     {want_pl:?}\n{}",
            f.text()
        ));
    }
    let shakes = handshakes(&w) - before;
    if shakes != 1 {
        failures.push(format!("{shakes} handshakes for one connection"));
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    eprintln!("[tls] bulk took {:?}", started.elapsed());
}

#[test]
fn upstream_pool_follows_tls_settings_across_reloads_and_tcp_checks_shake_hands() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("pool");
    let dir = w.tmp.path().to_path_buf();
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    make_leaf(&dir, "backend", "backend", "DNS:backend.example", &ec);
    make_leaf(&dir, "wrong", "wrong", "DNS:other.example", &ec);
    make_leaf(&dir, "client", "client", "DNS:client.example", &ec);
    make_leaf(&dir, "client2", "client2", "DNS:client.example", &ec);
    // Another CA, which signed none of the backends' certificates.
    self_signed(&dir, "ca2", "Another CA", None);
    let script = dir.join("tls-backend.py");
    std::fs::write(&script, TLS_BACKEND).unwrap();
    let mut backends = Vec::new();
    for (port, cert) in [("9443", "backend"), ("9444", "wrong")] {
        let cmd = w.lan.host("b1").cmd(&[
            "python3",
            script.to_str().unwrap(),
            port,
            &w.file(&format!("{cert}.crt")),
            &w.file(&format!("{cert}.key")),
            &w.file("ca.crt"),
        ]);
        backends.push(Daemon::spawn(
            "tls backend",
            cmd,
            &dir.join(format!("tls-{port}.log")),
        ));
    }
    // `pooled` carries requests; the `tcp-*` clusters only have TCP
    // checks (over TLS when the cluster has [cluster.tls]).
    let cluster = |name: &str, port: u16, tls: bool, hc: bool| {
        let tls = if tls {
            format!(
                "[cluster.tls]\nca = \"{}\" # {name}\nserver_name = \"backend.example\" # {name}\n\
                 cert = \"{}\"\nkey = \"{}\"\n",
                w.file("ca.crt"),
                w.file("client.crt"),
                w.file("client.key"),
            )
        } else {
            String::new()
        };
        let hc = if hc {
            "[cluster.health_check]\ntype = \"tcp\"\ninterval_ms = 300\ntimeout_ms = 250\nrise = 1\nfall = 1\n"
        } else {
            ""
        };
        format!(
            "\n[[cluster]]\nname = \"{name}\"\nretries = 0\n[[cluster.backend]]\n\
             address = \"{BACKEND_ADDR}\"\nport = {port}\n{tls}{hc}"
        )
    };
    let listener = |name: &str, port: u16, to: &str| {
        format!(
            "\n[[listener]]\nname = \"{name}\"\naddress = \"{VIP}\"\nport = {port}\n\
             ingress = \"p0\"\ndefault_cluster = \"{to}\"\n"
        )
    };
    let extra = [
        cluster("pooled", 9443, true, false),
        cluster("tcp-good", 9443, true, true),
        cluster("tcp-bad", 9444, true, true),
        cluster("tcp-plain", 9444, false, true),
        listener("to-pooled", 8081, "pooled"),
        listener("to-good", 8082, "tcp-good"),
        listener("to-bad", 8083, "tcp-bad"),
        listener("to-plain", 8084, "tcp-plain"),
    ]
    .concat();
    w.start("", &extra);
    let mut failures = Vec::new();
    let get = |port: u16, path: &str| {
        w.curl(&[
            "-w",
            "\n%{http_code}",
            &format!("http://{VIP}:{port}{path}"),
        ])
        .stdout()
    };

    // TCP checks of a TLS cluster shake hands with its settings: the
    // backend whose certificate is for another name is down (503, no
    // backend left) although its port accepts connections, as the plain
    // TCP check of the same port says (it stays up: 502, the backend
    // does not speak HTTP); the one that verifies stays up.
    let good_answer = "tls-backend /good client=client\n\n200";
    let settled = wait_until(secs(5), || {
        get(8082, "/good") == good_answer && get(8084, "/plain").ends_with("\n502")
    });
    // Over 1.2 s (4 checks), each answer 503, each check of it a
    // verification failure.
    let verify = w.counter("l7_upstream_tls_verify_failed");
    let mut bad = Vec::new();
    for _ in 0..4 {
        bad.push(get(8083, "/"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let verify = w.counter("l7_upstream_tls_verify_failed") - verify;
    let down = bad.iter().all(|b| b.ends_with("\n503"));
    let good = get(8082, "/good");
    let plain = get(8084, "/plain");
    eprintln!(
        "[tls] tcp checks: settled {settled}, bad {bad:?}, verify failures {verify}, good {good:?}, plain {plain:?}"
    );
    if !down || verify < 2 {
        failures.push(format!(
            "TLS TCP check: the backend failing verification answers {bad:?}, verify failures {verify}"
        ));
    }
    if good != good_answer {
        failures.push(format!("TLS TCP check: the good backend: {good:?}"));
    }
    if !plain.ends_with("\n502") {
        failures.push(format!("plain TCP check of the TLS port: {plain:?}"));
    }

    // The pool across reloads.
    let reloads = |w: &World| w.sluice.as_ref().unwrap().log().matches("reloaded").count();
    let reload = |w: &World, edit: &dyn Fn(String) -> String| {
        let path = w.file("sluice.toml");
        let cfg = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(cfg)).unwrap();
        let n = reloads(w);
        w.sluice.as_ref().unwrap().signal("HUP");
        assert!(
            wait_until(secs(10), || reloads(w) > n),
            "no reload\n{}",
            w.diag()
        );
    };
    let reused = |w: &World| w.counter("l7_upstream_reused");
    let mut step = |what: &str, path: &str, want: &str, reuse: bool| {
        let before = reused(&w);
        let got = get(8081, path);
        let reused = reused(&w) - before;
        eprintln!("[tls] pool, {what}: {got:?}, reused {reused}");
        if !got.ends_with(want) || reused != u64::from(reuse) {
            failures.push(format!(
                "{what}: {got:?} want ...{want:?}, reused {reused} want {}",
                u64::from(reuse)
            ));
        }
    };
    step(
        "first request",
        "/1",
        "tls-backend /1 client=client\n\n200",
        false,
    );
    step(
        "the next one",
        "/2",
        "tls-backend /2 client=client\n\n200",
        true,
    );
    // A reload that changes nothing keeps the pool.
    reload(&w, &|c| c);
    step(
        "after a reload without changes",
        "/3",
        "tls-backend /3 client=client\n\n200",
        true,
    );
    // A new client certificate in the same files: new connections show it.
    std::fs::rename(dir.join("client2.crt"), dir.join("client.crt")).unwrap();
    std::fs::rename(dir.join("client2.key"), dir.join("client.key")).unwrap();
    reload(&w, &|c| c);
    step(
        "after a new client certificate",
        "/4",
        "tls-backend /4 client=client2\n\n200",
        false,
    );
    // Another name to verify: the backend's certificate does not have it.
    reload(&w, &|c| {
        c.replace("\"backend.example\" # pooled", "\"other.example\" # pooled")
    });
    step("after a new server_name", "/5", "\n502", false);
    reload(&w, &|c| {
        c.replace("\"other.example\" # pooled", "\"backend.example\" # pooled")
    });
    step(
        "name back",
        "/6",
        "tls-backend /6 client=client2\n\n200",
        false,
    );
    // Another CA, which did not sign the backend's certificate.
    let (ca, ca2) = (w.file("ca.crt"), w.file("ca2.crt"));
    reload(&w, &|c| {
        c.replace(
            &format!("\"{ca}\" # pooled"),
            &format!("\"{ca2}\" # pooled"),
        )
    });
    step("after a new CA", "/7", "\n502", false);
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    drop(backends);
    eprintln!("[tls] pool took {:?}", started.elapsed());
}

/// A client that misbehaves in one of these ways (`case`), then reads
/// until the connection ends or 4 s pass; prints JSON {response (hex),
/// end, elapsed}. Arguments: case, address, CA file.
/// - `hello-cut-fin`: half of a real ClientHello, then FIN;
/// - `hello-inconsistent`: a real ClientHello cut in the middle of its
///   extensions, with its record and handshake lengths made to match;
/// - `alert-storm`: 10,000 warning alerts (user_canceled) in one go;
/// - `fin-mid-record`, `reset-mid-record`: a TLS 1.3 handshake, then half
///   of the record of a request, then FIN, or (0.3 s later) RST.
const MISBEHAVE: &str = r#"
import json, socket, ssl, struct, sys, time
case, addr, ca = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca)
def tls():
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return ctx.wrap_bio(inc, out, server_hostname="a.example"), inc, out
def hello():
    obj, inc, out = tls()
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
s = socket.create_connection((addr, 443), timeout=3)
t0 = time.monotonic()
end = None
try:
    if case == "hello-cut-fin":
        h = hello()
        s.sendall(h[: len(h) // 2])
        s.shutdown(socket.SHUT_WR)
    elif case == "hello-inconsistent":
        h = hello()
        cut = (len(h) - 5) // 2
        body = h[5:6] + (cut - 4).to_bytes(3, "big") + h[9 : 5 + cut]
        s.sendall(h[:3] + cut.to_bytes(2, "big") + body)
    elif case == "alert-storm":
        s.sendall(bytes.fromhex("1503030002015a") * 10000)
    elif case in ("fin-mid-record", "reset-mid-record"):
        obj, inc, out = tls()
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(out.read())
                d = s.recv(65536)
                if not d:
                    raise EOFError("closed during the handshake")
                inc.write(d)
        s.sendall(out.read())
        obj.write(b"GET /never HTTP/1.1\r\nHost: a.example\r\n\r\n")
        rec = out.read()
        s.sendall(rec[: len(rec) // 2])
        if case == "fin-mid-record":
            s.shutdown(socket.SHUT_WR)
        else:
            time.sleep(0.3)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            end = "reset by the client"
except OSError as e:
    end = "send: %s" % e
buf = b""
if end is None:
    s.settimeout(0.1)
while end is None and time.monotonic() < t0 + 4:
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    except ConnectionResetError:
        end = "reset"
        break
    if not b:
        end = "closed"
        break
    buf += b
print(json.dumps({"response": buf.hex(), "end": end or "timeout", "elapsed": time.monotonic() - t0}))
"#;

#[test]
fn misbehaving_tls_clients_get_the_right_alert_are_counted_and_never_leak() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("misbehave");
    w.start("", "");
    let ca = w.file("ca.crt");
    let mut failures = Vec::new();
    // (case, counter, the response starts with, how it ends)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "hello-cut-fin",
            "l7_tls_handshake_aborted",
            "",
            &["closed", "reset"],
        ),
        (
            "hello-inconsistent",
            "l7_tls_protocol_errors",
            "15030300020232",
            &["closed"],
        ),
        // rustls gives up on the warning that is one too many without a
        // fatal alert of its own: a FIN.
        ("alert-storm", "l7_tls_protocol_errors", "", &["closed"]),
        (
            "fin-mid-record",
            "l7_tls_truncated",
            "",
            &["closed", "reset"],
        ),
        (
            "reset-mid-record",
            "l7_tls_truncated",
            "",
            &["reset by the client"],
        ),
    ];
    for &(case, counter, alert, ends) in cases {
        let before = w.counter(counter);
        let requests = w.counter("l7_requests");
        let f = w.client_run(&["python3", "-c", MISBEHAVE, case, VIP, &ca], secs(15));
        let r: serde_json::Value = serde_json::from_str(f.stdout().trim()).unwrap_or_default();
        let counted = wait_until(secs(2), || w.counter(counter) > before);
        let after = w.counter(counter);
        let response = r["response"].as_str().unwrap_or("?");
        let end = r["end"].as_str().unwrap_or("?");
        eprintln!(
            "[tls] {case}: end {end} after {:.2}s, {counter} {before} -> {after}, response {}",
            r["elapsed"],
            &response[..response.len().min(64)]
        );
        if after != before + 1
            || !counted
            || !ends.contains(&end)
            || !response.starts_with(alert)
            || w.counter("l7_requests") != requests
        {
            failures.push(format!(
                "{case}: end {end} (want one of {ends:?}), {counter} {before} -> {after}, \
                 response {response:?} (want {alert:?}...), requests {} -> {}\n{}",
                requests,
                w.counter("l7_requests"),
                f.text()
            ));
        }
    }
    // TLS 1.0 and 1.1: a protocol_version alert.
    for flag in ["-tls1", "-tls1_1"] {
        let before = w.counter("l7_tls_old_version");
        let (_, out) = w.s_client(&[flag, "-cipher", "DEFAULT@SECLEVEL=0"], 0.5);
        let old = w.counter("l7_tls_old_version") - before;
        let alert = out.contains("alert protocol version");
        eprintln!("[tls] {flag}: old_version +{old}, protocol_version alert {alert}");
        if !out.contains("Cipher is (NONE)") || old != 1 || !alert {
            failures.push(format!("{flag}: old_version +{old}\n{out}"));
        }
    }
    // Renegotiation (TLS 1.2, s_client's `R` command).
    let before = w.counter("l7_tls_renegotiation_refused");
    let alerts = w.counter("l7_tls_alerts_received");
    let script = format!(
        "(sleep 1; echo R; sleep 1) | timeout 10 openssl s_client -connect {VIP}:443 \
         -servername a.example -tls1_2 -CAfile {ca} 2>&1"
    );
    let out = w.client_run(&["sh", "-c", &script], secs(20)).stdout();
    let reneg = w.counter("l7_tls_renegotiation_refused") - before;
    let alerts = w.counter("l7_tls_alerts_received") - alerts;
    eprintln!(
        "[tls] renegotiation: refused +{reneg}, alerts received +{alerts}\n{}",
        tail(&out, 8)
    );
    // (OpenSSL answers the no_renegotiation warning with a fatal
    // handshake_failure: that ends the connection, counted too.)
    if reneg != 1
        || alerts != 1
        || !out.contains("RENEGOTIATING")
        || !out.contains("no renegotiation")
    {
        failures.push(format!(
            "renegotiation: refused +{reneg}, alerts received +{alerts}\n{out}"
        ));
    }
    // Nothing is left: no session, no handshake, no client connection.
    let gone = wait_until(secs(15), || w.counter("l7_client_conns") == 0);
    if !gone {
        failures.push(format!(
            "client connections left: {}",
            w.counter("l7_client_conns")
        ));
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), w.diag());
    w.finish();
    eprintln!("[tls] misbehave took {:?}", started.elapsed());
}
