//! L4 load balancing end to end, with the kernel's own TCP on every host:
//! Sluice as a one-arm load balancer on one Ethernet segment.
//!
//! ```text
//!                 namespace sl4-TAG-PID-sw: bridge br0
//!      ┌─────────────┬─────────────┬────────────┬────────────┐
//!      c0            l0            eth0         eth0         eth0
//!    client        Sluice          b1           b2           b3
//!  10.30.0.2     10.30.0.1      10.30.0.11   10.30.0.12   10.30.0.13
//!  fd00:30::2    VIP 10.30.0.100:80/tcp        nginx on each
//! ```
//!
//! Sluice runs on `net_af_packet` over its veth and answers ARP for the VIP;
//! `nat_over_af_xdp` runs the NAT test on `net_af_xdp` instead (one queue,
//! copy mode on a veth), as the demo and the benchmarks do.
//! In NAT mode the backends see Sluice's address and reply through it; in
//! `ipip` mode each backend decapsulates with `scripts/dsr-decap.py` (this
//! kernel has no tunnel devices), holds the VIP on the helper's TUN device
//! and replies straight to the client (set up by `scripts/backend-setup.sh`).
//!
//! Health checks: HTTP and TCP against nginx, HTTPS against nginx serving
//! a certificate of a CA each test makes (`openssl`), UDP against python
//! responders on each backend, and passive marking of a stopped nginx.
//!
//! Needs root, nginx, curl, wrk, python3, openssl, ethtool, arping
//! (`scripts/setup.sh`).
//! Each test builds and removes its own namespaces, processes and files
//! (guards, also on panic); all traffic stays inside those namespaces and
//! every command is bounded in time. Tests take a lock so that only one
//! busy-polling Sluice runs at a time in this process.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::lan::{dsr_decap, nginx, run, wait_until, Daemon, Finished, Lan, Ns, RemoveOnDrop};
use common::TempDir;

const LB_ADDR: &str = "10.30.0.1";
const LB_MAC: &str = "02:00:00:30:00:01";
const CLIENT_ADDR: &str = "10.30.0.2";
const CLIENT_ADDRS: [&str; 2] = ["10.30.0.2/24", "fd00:30::2/64"];
const VIP: &str = "10.30.0.100";
const URL: &str = "http://10.30.0.100/";
const BIG_URL: &str = "http://10.30.0.100/big";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "10.30.0.11"),
    ("b2", "10.30.0.12"),
    ("b3", "10.30.0.13"),
];
/// Size of `/big`. nginx sends it at `BIG_RATE` bytes per second (about
/// 4 s). The limit is on the server side on purpose: with `curl
/// --limit-rate`, the client's socket buffer would take the whole file at
/// once and the flow would sit idle while curl read it slowly, proving
/// nothing about Sluice keeping the flow.
const BIG_BYTES: u64 = 4 << 20;
const BIG_RATE: &str = "1m";
const ADMIN: &str = "127.0.0.1:9100";

/// Drop reasons that the background chatter of a shared segment produces
/// and that say nothing about the L4 path: frames for other stations (the
/// bridge floods until it has learned), ARP between the client and the
/// backends, the client's IPv6 link-local chatter (DAD from `::`, router
/// solicitations, MLD with a hop-by-hop header), and the first packets to a
/// next hop that is still being resolved. Any other `drop_*` counter must
/// stay at zero.
const BACKGROUND_DROPS: &[&str] = &[
    "drop_l2_not_ours",
    "drop_arp_not_ours",
    "drop_ip_not_ours",
    "drop_bad_source",
    "drop_icmp_unhandled",
    "drop_ipv6_ext_header",
    "drop_neighbor_miss",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Nat,
    Ipip,
}

impl Mode {
    fn config_name(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::Ipip => "ipip",
        }
    }
}

/// The DPDK device Sluice's port uses on its veth.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Device {
    AfPacket,
    AfXdp,
}

impl Device {
    fn vdev(self) -> &'static str {
        match self {
            Device::AfPacket => "net_af_packet0,iface=l0",
            Device::AfXdp => "net_af_xdp0,iface=l0",
        }
    }
}

/// One busy-polling Sluice at a time: two would share lcore 1, and
/// `cargo test` runs this file's tests on parallel threads.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One HTTP exchange of a multi-URL curl run.
#[derive(Debug)]
struct Reply {
    /// The body (`b1`, ...), `None` if the transfer failed.
    body: Option<String>,
    code: String,
    /// New connections curl opened for this transfer (0: reused).
    connects: u32,
    /// The client address the backend saw (its `X-Client` header).
    seen_client: String,
}

/// A slow download of `/big`, running in the background.
struct Download(Daemon);

/// The segment, backends and Sluice of one test. Fields drop in order:
/// processes first, then namespaces, then files.
struct World {
    sluice: Option<Daemon>,
    /// nginx and, in DSR modes, the decap helpers.
    servers: Vec<Daemon>,
    /// `--file-prefix` of this test's Sluice, and the EAL's runtime
    /// directory named after it (root's: under /var/run/dpdk).
    file_prefix: String,
    _dpdk_dir: RemoveOnDrop,
    lan: Lan,
    mode: Mode,
    device: Device,
    weights: [u32; 3],
    /// Extra keys of the cluster (health check, on_backend_down).
    cluster_extra: String,
    /// Extra `[[service]]`s, after the TCP one.
    services_extra: String,
    /// nginx also serves HTTPS on port 443 with this certificate chain
    /// and key (set before the backends start).
    https: Option<(PathBuf, PathBuf)>,
    config: PathBuf,
    tag: String,
    starts: u32,
    tmp: TempDir,
}

impl World {
    /// Build the segment, start the backends (and in DSR modes their decap
    /// helpers) and check that each answers the client directly.
    fn new(tag: &str, mode: Mode) -> World {
        World::with_https(tag, mode, None)
    }

    /// As [`World::new`], the backends' nginx also serving HTTPS on port
    /// 443 with `https` (certificate chain, key) when given.
    fn with_https(tag: &str, mode: Mode, https: Option<(PathBuf, PathBuf)>) -> World {
        let tmp = TempDir::new(&format!("l4-{tag}"));
        let mut lan = Lan::new(&format!("sl4-{tag}-{}", std::process::id()));
        lan.attach("c", "c0", &CLIENT_ADDRS);
        // Sluice's veth: no kernel address, IPv6 off (attach does that).
        lan.attach("lb", "l0", &[]);
        for (name, addr) in BACKENDS {
            lan.attach(name, "eth0", &[&format!("{addr}/24")]);
        }
        let file_prefix = format!("sl4-{tag}-{}", std::process::id());
        let mut w = World {
            sluice: None,
            servers: Vec::new(),
            _dpdk_dir: RemoveOnDrop(PathBuf::from("/var/run/dpdk").join(&file_prefix)),
            file_prefix,
            lan,
            mode,
            device: Device::AfPacket,
            weights: [1; 3],
            cluster_extra: String::new(),
            services_extra: String::new(),
            https,
            config: tmp.path().join("sluice.toml"),
            tag: tag.to_string(),
            starts: 0,
            tmp,
        };
        let www = w.tmp.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("big"), vec![0u8; BIG_BYTES as usize]).unwrap();
        for (name, addr) in BACKENDS {
            if mode != Mode::Nat {
                w.start_decap(name);
            }
            w.start_nginx(name);
            let client = w.client();
            let mut last = None;
            let up = wait_until(secs(10), || {
                let f = run(
                    client.cmd(&["curl", "-sS", "--max-time", "1", &format!("http://{addr}/")]),
                    secs(3),
                );
                let ok = f.success() && f.stdout() == format!("{name}\n");
                last = Some(f);
                ok
            });
            assert!(
                up,
                "backend {name} does not answer the client directly\n{}",
                last.map(|f| f.text()).unwrap_or_default()
            );
        }
        w
    }

    fn client(&self) -> &Ns {
        self.lan.host("c")
    }

    fn lb(&self) -> &Ns {
        self.lan.host("lb")
    }

    fn start_nginx(&mut self, name: &str) {
        let dir = self.tmp.path().join(name);
        let d = dir.display();
        let server = format!(
            r#"        add_header X-Client $remote_addr always;
        location / {{ return 200 "{name}\n"; }}
        location = /hc {{ if (-f {d}/down) {{ return 503; }} return 200 "ok\n"; }}
        location /big {{ limit_rate {BIG_RATE}; }}"#
        );
        let server = match &self.https {
            Some((cert, key)) => format!(
                "        listen 443 ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};\n{server}",
                cert.display(),
                key.display()
            ),
            None => server,
        };
        let http = "    default_type text/plain;\n    keepalive_requests 100000;";
        let www = self.tmp.path().join("www");
        let ns = self.lan.host(name);
        let nginx = nginx(ns, name, &dir, &www, http, &server);
        self.servers.push(nginx);
    }

    /// The userspace DSR set-up, exactly as an operator would run it on a
    /// backend without tunnel devices: sysctls, then the decap helper in the
    /// foreground, accepting tunnelled packets from Sluice only.
    fn start_decap(&mut self, name: &str) {
        let mode = format!("userspace-{}", self.mode.config_name());
        let log = self.tmp.path().join(format!("decap-{name}.log"));
        let d = dsr_decap(self.lan.host(name), name, &mode, VIP, &[LB_ADDR], &log);
        self.servers.push(d);
    }

    fn write_config(&self) {
        let mut cfg = format!(
            r#"# Written by tests/l4_netns.rs ({tag}).
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf"]
file_prefix = "{file_prefix}"

[dataplane]
workers = [1]
mbufs = 4095
mbuf_cache = 128

[admin]
listen = "{ADMIN}"

[conntrack]
# A few hundred connections at most: keep the per-worker table small.
max_flows = 65536

[[port]]
name = "p0"
vdev = "{vdev}"
mac = "{LB_MAC}"
addresses = ["{LB_ADDR}/24"]

[[cluster]]
name = "web"
scheduler = "maglev"
"#,
            tag = self.tag,
            file_prefix = self.file_prefix,
            vdev = self.device.vdev(),
        );
        cfg += &self.cluster_extra;
        for ((name, addr), weight) in BACKENDS.iter().zip(self.weights) {
            cfg += &format!(
                "\n[[cluster.backend]]\naddress = \"{addr}\"\nweight = {weight}\nname = \"{name}\"\n"
            );
        }
        cfg += &format!(
            r#"
[[service]]
name = "web"
vip = "{VIP}"
port = 80
protocol = "tcp"
mode = "{mode}"
cluster = "web"
ingress = "p0"
"#,
            mode = self.mode.config_name()
        );
        cfg += &self.services_extra;
        std::fs::write(&self.config, cfg).unwrap();
    }

    /// Whether an XDP program is attached to Sluice's veth.
    fn xdp_attached(&self) -> bool {
        let f = run(self.lb().cmd(&["ip", "link", "show", "dev", "l0"]), secs(5));
        assert!(f.success(), "ip link show l0\n{}", f.text());
        f.stdout().contains("prog/xdp")
    }

    fn sluice_log(&self) -> String {
        self.sluice.as_ref().map(|d| d.log()).unwrap_or_default()
    }

    /// Start Sluice on the current config and wait until it answers ping on
    /// its own address and balances a first request for the VIP.
    fn start_sluice(&mut self) {
        assert!(self.sluice.is_none(), "Sluice is already running");
        self.write_config();
        let cfg = self.config.to_str().unwrap().to_string();
        let check = run(
            {
                let mut c = common::sluice();
                c.args(["check", "--config", &cfg]);
                c
            },
            secs(20),
        );
        assert!(
            check.success(),
            "sluice check rejects the L4 config {cfg}:\n{}\n--- config\n{}",
            check.text(),
            std::fs::read_to_string(&self.config).unwrap_or_default()
        );
        self.starts += 1;
        let log = self.tmp.path().join(format!("sluice-{}.log", self.starts));
        let cmd = self
            .lb()
            .cmd(&[env!("CARGO_BIN_EXE_sluice"), "run", "--config", &cfg]);
        let mut sluice = Daemon::spawn("sluice", cmd, &log);

        let client = self.client();
        let answered = wait_until(secs(20), || {
            !sluice.running()
                || run(
                    client.cmd(&["ping", "-c", "1", "-W", "1", LB_ADDR]),
                    secs(3),
                )
                .success()
        });
        let alive = sluice.running();
        self.sluice = Some(sluice);
        assert!(
            answered && alive,
            "Sluice (start {}) did not come up: {}\n--- sluice log\n{}",
            self.starts,
            if alive {
                "no echo reply from its address"
            } else {
                "it exited"
            },
            self.sluice_log()
        );
        let client = self.client();
        let mut last = None;
        let served = wait_until(secs(15), || {
            let f = run(
                client.cmd(&[
                    "curl",
                    "-sS",
                    "--connect-timeout",
                    "2",
                    "--max-time",
                    "3",
                    URL,
                ]),
                secs(5),
            );
            let ok = f.success() && f.stdout().starts_with('b');
            last = Some(f);
            ok
        });
        assert!(
            served,
            "no request to {URL} succeeded through Sluice (start {})\n{}\n--- counters\n{}\n--- sluice log\n{}",
            self.starts,
            last.map(|f| f.text()).unwrap_or_default(),
            self.stats_text(),
            self.sluice_log()
        );
    }

    /// SIGTERM Sluice and insist on a clean exit.
    fn stop_sluice(&mut self) {
        let mut s = self.sluice.take().expect("Sluice is not running");
        let st = s.stop(secs(10));
        let log = s.log();
        assert!(
            st.is_some_and(|st| st.success()),
            "Sluice did not exit cleanly on SIGTERM: {st:?}\n{log}"
        );
        assert!(log.contains("stopped after"), "clean shutdown line\n{log}");
    }

    /// Rewrite the config with the current weights and SIGHUP Sluice.
    fn reload(&mut self) {
        self.write_config();
        self.sluice
            .as_ref()
            .expect("Sluice is not running")
            .signal("HUP");
    }

    fn stats(&self) -> Result<serde_json::Value, String> {
        let f = run(
            self.lb().cmd(&[
                env!("CARGO_BIN_EXE_sluice"),
                "stats",
                "--admin",
                ADMIN,
                "--json",
            ]),
            secs(10),
        );
        if !f.success() {
            return Err(format!("sluice stats failed\n{}", f.text()));
        }
        serde_json::from_slice(&f.output.stdout)
            .map_err(|e| format!("sluice stats: not JSON: {e}\n{}", f.text()))
    }

    fn stats_text(&self) -> String {
        match self.stats() {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
            Err(e) => e,
        }
    }

    /// No `drop_*` counter other than [`BACKGROUND_DROPS`] moved.
    fn assert_no_unexpected_drops(&mut self) {
        let v = match self.stats() {
            Ok(v) => v,
            Err(e) => {
                let running = self.sluice.as_mut().is_some_and(|s| s.running());
                panic!(
                    "{e}\nSluice is {}\n--- sluice log\n{}",
                    if running { "running" } else { "not running" },
                    self.sluice_log()
                );
            }
        };
        let counters = v["counters"].as_object().expect("counters object");
        let bad: Vec<_> = counters
            .iter()
            .filter(|(k, v)| {
                k.starts_with("drop_")
                    && !BACKGROUND_DROPS.contains(&k.as_str())
                    && v.as_u64() != Some(0)
            })
            .collect();
        assert!(
            bad.is_empty(),
            "unexpected drops: {bad:?}\n--- stats\n{}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        let nonzero: BTreeMap<_, _> = counters
            .iter()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .collect();
        eprintln!("[{}] counters: {nonzero:?}", self.tag);
    }

    /// The client resolved the VIP to Sluice's MAC, and only to it: no
    /// backend answered ARP for it.
    fn assert_vip_is_sluices(&self) {
        let o = self.client().ok(&["ip", "neigh", "show", VIP, "dev", "c0"]);
        let neigh = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(
            neigh.contains(LB_MAC),
            "client's neighbor entry for the VIP: {neigh}"
        );
    }

    /// `n` requests for `/` in one curl run: each on a new connection
    /// (`Connection: close`), or all on one kept-alive connection.
    fn requests(&self, n: usize, keepalive: bool) -> (Vec<Reply>, Finished) {
        let mut args = vec![
            "curl",
            "-sS",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            "-w",
            "::%{http_code} %{num_connects} %header{x-client}\n",
        ];
        if !keepalive {
            args.extend(["-H", "Connection: close"]);
        }
        args.extend(std::iter::repeat_n(URL, n));
        let f = run(self.client().cmd(&args), secs(25));
        let mut replies = Vec::new();
        let mut body = None;
        for line in f.stdout().lines() {
            match line.split_once("::") {
                None => body = Some(line.to_string()),
                Some((before, w)) => {
                    if !before.is_empty() {
                        body = Some(before.to_string());
                    }
                    let mut it = w.split_whitespace();
                    let code = it.next().unwrap_or("").to_string();
                    let connects = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                    let seen_client = it.next().unwrap_or("").to_string();
                    replies.push(Reply {
                        body: body.take().filter(|_| code == "200"),
                        code,
                        connects,
                        seen_client,
                    });
                }
            }
        }
        (replies, f)
    }

    /// `n` new connections, all of which must succeed; the number each
    /// backend answered, by name.
    fn spread(&self, n: usize) -> BTreeMap<String, usize> {
        let (replies, f) = self.requests(n, false);
        let failed: Vec<_> = replies
            .iter()
            .filter(|r| r.body.is_none() || r.code != "200")
            .collect();
        assert!(
            replies.len() == n && failed.is_empty(),
            "{n} requests: {} answered, failed: {failed:?}\n{}\n--- counters\n{}\n--- sluice log\n{}",
            replies.len() - failed.len(),
            f.text(),
            self.stats_text(),
            self.sluice_log()
        );
        assert!(
            replies.iter().all(|r| r.connects == 1),
            "each request on its own connection: {replies:?}"
        );
        // NAT hides the client behind Sluice's address; DSR keeps it.
        let expect_client = match self.mode {
            Mode::Nat => LB_ADDR,
            Mode::Ipip => CLIENT_ADDR,
        };
        assert!(
            replies.iter().all(|r| r.seen_client == expect_client),
            "backends must see {expect_client} as the client in {:?} mode: {replies:?}",
            self.mode
        );
        let mut tally = BTreeMap::new();
        for r in &replies {
            *tally.entry(r.body.clone().unwrap()).or_insert(0) += 1;
        }
        eprintln!("[{}] {n} requests answered by {tally:?}", self.tag);
        tally
    }

    /// Start fetching `/big` in the background (bounded by `--max-time`).
    fn start_download(&self) -> Download {
        let log = self.tmp.path().join("download.log");
        let cmd = self.client().cmd(&[
            "curl",
            "-sS",
            "-v",
            "--connect-timeout",
            "3",
            "--max-time",
            "45",
            "-o",
            "/dev/null",
            "-w",
            "::%{http_code} %{size_download}\n",
            BIG_URL,
        ]);
        Download(Daemon::spawn("curl /big", cmd, &log))
    }

    /// The backend serving a download, from its `X-Backend` header (curl
    /// -v writes response headers to unbuffered stderr as they arrive).
    fn download_backend(&self, d: &Download) -> String {
        let mut name = None;
        let seen = wait_until(secs(10), || {
            name = d.0.log().lines().find_map(|l| {
                let l = l.strip_prefix("< ")?;
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-backend")
                    .then(|| v.trim().to_string())
            });
            name.is_some()
        });
        assert!(
            seen,
            "no response headers for {BIG_URL}\n{}\n--- sluice log\n{}",
            d.0.log(),
            self.sluice_log()
        );
        name.unwrap()
    }

    /// Wait for a download to end and insist that it got all of `/big`.
    fn finish_download(&self, mut d: Download, limit: Duration) {
        let st = d.0.wait_exit(limit);
        let log = d.0.log();
        let result = log
            .lines()
            .find_map(|l| l.strip_prefix("::"))
            .unwrap_or("")
            .to_string();
        assert!(
            st.is_some_and(|s| s.success()) && result == format!("200 {BIG_BYTES}"),
            "download of {BIG_URL}: exit {st:?}, code and size {result:?} (want 200 {BIG_BYTES})\n\
             --- curl -v (tail)\n{}\n--- counters\n{}\n--- sluice log\n{}",
            tail(&log, 40),
            self.stats_text(),
            self.sluice_log()
        );
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<_> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Every backend got at least `min` of the requests.
fn assert_spread(tally: &BTreeMap<String, usize>, min: usize) {
    for (name, _) in BACKENDS {
        let got = tally.get(name).copied().unwrap_or(0);
        assert!(
            got >= min,
            "backend {name} answered {got} (< {min}): {tally:?}"
        );
    }
}

/// `wrk` output: (requests, socket errors line if any, non-2xx/3xx count).
fn parse_wrk(out: &str) -> (u64, Option<String>, u64) {
    let mut requests = 0;
    let mut errors = None;
    let mut non2xx = 0;
    for l in out.lines().map(str::trim) {
        if let Some((n, _)) = l.split_once(" requests in ") {
            requests = n.trim().parse().unwrap_or(0);
        } else if let Some(e) = l.strip_prefix("Socket errors:") {
            errors = Some(e.trim().to_string());
        } else if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = n.trim().parse().unwrap_or(u64::MAX);
        }
    }
    (requests, errors, non2xx)
}

#[test]
fn nat_spreads_requests_and_keeps_connections() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("nat", Mode::Nat);
    w.start_sluice();
    nat_spread_keepalive_and_load(&mut w, "nat");
    w.stop_sluice();
    eprintln!("[nat] took {:?}", started.elapsed());
}

/// The NAT test on `net_af_xdp`: the PMD attaches an XDP program to l0 that
/// hands every frame to Sluice's AF_XDP socket, and removes it when Sluice
/// stops.
#[test]
fn nat_over_af_xdp() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("xdp", Mode::Nat);
    w.device = Device::AfXdp;
    assert!(
        !w.xdp_attached(),
        "no XDP program on l0 before Sluice starts"
    );
    w.start_sluice();
    assert!(
        w.xdp_attached(),
        "net_af_xdp attached its XDP program to l0\n{}",
        w.sluice_log()
    );
    nat_spread_keepalive_and_load(&mut w, "xdp");
    w.stop_sluice();
    assert!(
        !w.xdp_attached(),
        "the XDP program is removed from l0 when Sluice stops"
    );
    eprintln!("[xdp] took {:?}", started.elapsed());
}

fn nat_spread_keepalive_and_load(w: &mut World, tag: &str) {
    // New connections spread by Maglev over three equal backends: 20 each
    // on average, fewer than 10 is more than 2.7 standard deviations off.
    let tally = w.spread(60);
    assert_spread(&tally, 10);

    // One kept-alive connection stays on one backend.
    let (replies, f) = w.requests(20, true);
    let bodies: Vec<_> = replies.iter().map(|r| r.body.as_deref()).collect();
    assert!(
        replies.len() == 20
            && bodies[0].is_some()
            && bodies.iter().all(|b| *b == bodies[0])
            && replies.iter().map(|r| r.connects).sum::<u32>() == 1,
        "20 requests on one connection, one backend: {replies:?}\n{}",
        f.text()
    );

    // Many concurrent connections: none fails.
    let f = run(
        w.client()
            .cmd(&["wrk", "-t2", "-c200", "-d3s", "--timeout", "2s", URL]),
        secs(20),
    );
    let out = f.stdout();
    let (requests, errors, non2xx) = parse_wrk(&out);
    eprintln!("[{tag}] wrk: {requests} requests, errors {errors:?}, non-2xx {non2xx}");
    assert!(
        f.success() && requests > 0 && errors.is_none() && non2xx == 0,
        "wrk through Sluice: {requests} requests, socket errors {errors:?}, non-2xx {non2xx}\n{}\n--- counters\n{}",
        f.text(),
        w.stats_text()
    );

    // wrk does not count requests still in flight when it stops (unless
    // they already ran past --timeout): Sluice must still be forwarding.
    w.spread(6);

    w.assert_vip_is_sluices();
    w.assert_no_unexpected_drops();
}

#[test]
fn nat_drain_lets_open_connections_finish() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("drain", Mode::Nat);
    w.start_sluice();

    let mut download = w.start_download();
    let drained = w.download_backend(&download);
    let idx = BACKENDS.iter().position(|(n, _)| *n == drained).unwrap();
    eprintln!("[drain] /big is served by {drained}; draining it");
    w.weights[idx] = 0;
    w.reload();
    // The control thread logs once it has handed the new plane to the
    // workers, which take it up between bursts (microseconds later).
    let mut log = String::new();
    let answered = wait_until(secs(10), || {
        log = w.sluice_log();
        log.contains("reloaded:") || log.contains("reload rejected")
    });
    assert!(
        answered && log.contains("reloaded:"),
        "Sluice did not apply the reload\n{log}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        w.sluice.as_mut().unwrap().running(),
        "Sluice exited on SIGHUP\n{}",
        w.sluice_log()
    );
    assert!(
        download.0.running(),
        "the download ended before the drain could be observed\n{}",
        download.0.log()
    );

    let tally = w.spread(30);
    assert!(
        !tally.contains_key(&drained),
        "drained backend {drained} still got new connections: {tally:?}\n--- sluice log\n{}",
        w.sluice_log()
    );
    assert!(
        download.0.running(),
        "the download must still be open after the new requests, or this \
         test says nothing about open connections surviving a drain\n{}",
        download.0.log()
    );
    w.finish_download(download, secs(30));

    w.assert_no_unexpected_drops();
    w.stop_sluice();
    eprintln!("[drain] took {:?}", started.elapsed());
}

#[test]
fn dsr_ipip_spreads_and_survives_restart() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("dsr", Mode::Ipip);
    w.start_sluice();

    let tally = w.spread(60);
    assert_spread(&tally, 10);
    w.assert_vip_is_sluices();

    // A download in flight while Sluice is stopped and started again: the
    // new process has no state for the flow, picks the same backend from
    // the same config, and the backend's retransmissions carry it on.
    let mut download = w.start_download();
    let backend = w.download_backend(&download);
    std::thread::sleep(Duration::from_millis(500));
    eprintln!("[dsr] /big is served by {backend}; restarting Sluice");
    w.stop_sluice();
    let restart = Instant::now();
    assert!(
        download.0.running(),
        "the download ended before Sluice stopped\n{}",
        download.0.log()
    );
    w.start_sluice();
    eprintln!("[dsr] Sluice back after {:?}", restart.elapsed());
    // Without Sluice the client's ACKs go nowhere and the backend stalls
    // after a window's worth: the rest of the file needs the new process.
    assert!(
        download.0.running(),
        "the download ended while Sluice was down\n{}",
        download.0.log()
    );
    w.finish_download(download, secs(40));

    // New connections are balanced by the new process too.
    w.spread(15);
    w.assert_no_unexpected_drops();
    w.stop_sluice();
    eprintln!("[dsr] took {:?}", started.elapsed());
}

/// Hand-made tunnel packets from the "client" (playing the load balancer)
/// to a backend set up with `backend-setup.sh userspace-*`: each case
/// sends an ICMP echo request to the VIP inside IPIP or GRE and expects an
/// echo reply straight from the VIP, or none. Arguments: client, backend,
/// VIP, then `CASE=reply|none`...
const DECAP_PROBE: &str = r#"
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ipv4(src, dst, proto, payload, ident):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
client, backend, vip = sys.argv[1:4]
ident = os.getpid() & 0xffff
def inner(seq):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"sluice-dsr-probe"
    return ipv4(client, vip, 1, m[:2] + struct.pack("!H", csum(m)) + m[4:], seq)
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ipip = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
send = {
    "ipip": lambda s: ipip.sendto(inner(s), (backend, 0)),
    "gre": lambda s: gre.sendto(struct.pack("!HH", 0, 0x0800) + inner(s), (backend, 0)),
    # RFC 2890 key present: not a base GRE header.
    "gre-key": lambda s: gre.sendto(struct.pack("!HHI", 0x2000, 0x0800, 7) + inner(s), (backend, 0)),
    # Outer source that is not the load balancer's.
    "ipip-spoofed": lambda s: raw.sendto(ipv4("10.30.0.9", backend, 4, inner(s), s), (backend, 0)),
}
ok = True
for seq, case in enumerate(sys.argv[4:], 1):
    name, want = case.split("=")
    send[name](seq)
    deadline = time.monotonic() + (2.0 if want == "reply" else 1.0)
    got = False
    while not got and deadline > time.monotonic():
        rx.settimeout(deadline - time.monotonic())
        try:
            pkt, (src, _) = rx.recvfrom(2048)
        except socket.timeout:
            break
        t, _, _, i, s = struct.unpack_from("!BBHHH", pkt, (pkt[0] & 15) * 4)
        got = src == vip and t == 0 and i == ident and s == seq
    verdict = "ok" if got == (want == "reply") else "WRONG"
    ok &= verdict == "ok"
    print(f"{name}: {'reply from the VIP' if got else 'no reply'}, want {want}: {verdict}")
sys.exit(0 if ok else 1)
"#;

#[test]
fn dsr_decap_helper_answers_from_the_vip() {
    let _serial = serial();
    let tmp = TempDir::new("l4-decap");
    let mut lan = Lan::new(&format!("sl4-decap-{}", std::process::id()));
    lan.attach("c", "c0", &[&format!("{CLIENT_ADDR}/24")]);
    lan.attach("b1", "eth0", &["10.30.0.11/24"]);
    let script = common::repo().join("scripts/backend-setup.sh");

    let phases: [(&str, &[&str], &str); 2] = [
        (
            "userspace-ipip",
            // No GRE socket in this phase: the kernel drops GRE.
            &["ipip=reply", "gre=none", "ipip-spoofed=none"],
            "decapsulated=1 bytes=44 drop_outer_malformed=0 drop_source=1 ",
        ),
        (
            "userspace-gre",
            &["gre=reply", "gre-key=none", "ipip=none"],
            "decapsulated=1 bytes=44 drop_outer_malformed=0 drop_source=0 drop_gre_flags=1 ",
        ),
    ];
    for (mode, cases, counters) in phases {
        let log = tmp.path().join(format!("{mode}.log"));
        let cmd = lan.host("b1").cmd(&[
            script.to_str().unwrap(),
            "up",
            mode,
            VIP,
            "--dev",
            "eth0",
            "--lb",
            CLIENT_ADDR,
        ]);
        let mut helper = Daemon::spawn(mode, cmd, &log);
        assert!(
            wait_until(secs(10), || helper.log().contains("dsr-decap: ready")),
            "{mode}: helper not ready\n{}",
            helper.log()
        );

        // Nobody answers ARP for the VIP: the backend holds it on its TUN
        // device and ignores ARP for addresses not on eth0.
        let arp = run(
            lan.host("c")
                .cmd(&["arping", "-c", "1", "-w", "1", "-I", "c0", VIP]),
            secs(5),
        );
        assert!(
            !arp.success(),
            "{mode}: the backend answered ARP for the VIP\n{}",
            arp.text()
        );

        let mut args = vec!["python3", "-c", DECAP_PROBE, CLIENT_ADDR, "10.30.0.11", VIP];
        args.extend(cases.iter().copied());
        let probe = run(lan.host("c").cmd(&args), secs(20));
        eprintln!("[decap] {mode}:\n{}", probe.stdout());
        assert!(
            probe.success(),
            "{mode}: {}\n--- helper\n{}",
            probe.text(),
            helper.log()
        );

        let st = helper.stop(secs(5));
        let out = helper.log();
        assert!(
            st.is_some_and(|s| s.success()),
            "{mode}: helper exit {st:?}\n{out}"
        );
        assert!(
            out.contains(counters),
            "{mode}: helper counters, want {counters:?}\n{out}"
        );
        // The TUN device (and the VIP on it) went with the helper.
        let gone = lan
            .host("b1")
            .cmd(&["ip", "link", "show", "dsr0"])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "{mode}: dsr0 outlived the helper");
    }
}

/// Health-checked L4 service (NAT): a backend whose check fails (its
/// `/hc` answers 503, or its nginx is stopped) takes no new connections
/// once `fall` checks have failed, that is within fall × interval + one
/// interval; its open connections are reset (`on_backend_down = "reset"`)
/// or carry on (`"keep"`, after a reload); it takes new connections again
/// once its check passes `rise` times.
#[test]
fn nat_health_checks_take_backends_out_and_back() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("health", Mode::Nat);
    const INTERVAL_MS: u64 = 200;
    const FALL: u64 = 2;
    const RISE: u64 = 2;
    let extra = |policy: &str| {
        format!(
            // A small table: the debug build compiles a 65537-slot one in
            // about 200 ms, which would eat most of the time bound below.
            "maglev_table_size = 1009\non_backend_down = \"{policy}\"\n\
             [cluster.health_check]\npath = \"/hc\"\n\
             interval_ms = {INTERVAL_MS}\ntimeout_ms = 150\nrise = {RISE}\nfall = {FALL}\n"
        )
    };
    // Out (or back) within this: the checks, plus the control thread's
    // 10 ms loop, the plane's compile (a debug build) and the workers' next
    // burst, with a margin for a loaded two-CPU CI machine.
    let out_within = Duration::from_millis(FALL * INTERVAL_MS + INTERVAL_MS + 250);
    let back_within = Duration::from_millis(RISE * INTERVAL_MS + INTERVAL_MS + 250);
    w.cluster_extra = extra("reset");
    w.start_sluice();
    assert_spread(&w.spread(30), 1);
    let down_file = |w: &World, name: &str| w.tmp.path().join(name).join("down");

    // 1. A failing check (nginx alive), policy reset: new connections go
    // elsewhere, the open download is reset.
    let download = w.start_download();
    let sick = w.download_backend(&download);
    eprintln!("[health] /big is served by {sick}; its check starts failing");
    std::fs::write(down_file(&w, &sick), b"").unwrap();
    let t0 = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    eprintln!(
        "[health] check failing from second {}.{:03} of the minute (UTC)",
        wall.as_secs() % 60,
        wall.subsec_millis()
    );
    std::thread::sleep(out_within);
    eprintln!(
        "[health] new connections from {:?} after the check started failing",
        t0.elapsed()
    );
    let tally = w.spread(30);
    assert!(
        !tally.contains_key(&sick),
        "{sick} failed its checks but got new connections: {tally:?}\n--- sluice log\n{}",
        w.sluice_log()
    );
    let mut d = download;
    let st = d.0.wait_exit(secs(10));
    assert!(
        st.is_some_and(|s| !s.success()),
        "the download from {sick} should have been reset: {st:?}\n{}",
        tail(&d.0.log(), 20)
    );
    let v = w.stats().unwrap();
    let be = &v["backends"][format!("web/{sick}")];
    assert_eq!(be["up"], false, "{be}");
    assert!(be["checks_failed"].as_u64().unwrap_or(0) >= FALL, "{be}");
    assert!(
        v["counters"]["l4_backend_down_resets"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{}",
        v["counters"]
    );
    // It passes again: back within rise × interval + one interval.
    std::fs::remove_file(down_file(&w, &sick)).unwrap();
    std::thread::sleep(back_within);
    let tally = w.spread(30);
    assert!(tally.contains_key(&sick), "{sick} is not back: {tally:?}");

    // 2. nginx stopped mid-run: every new connection still succeeds (none
    // reaches the stopped backend) once its checks failed; back after a
    // restart.
    let (dead, _) = BACKENDS[2];
    eprintln!("[health] stopping nginx on {dead}");
    let i = w
        .servers
        .iter()
        .position(|d| d.name == format!("nginx {dead}"))
        .unwrap();
    let mut nginx = w.servers.remove(i);
    let _ = nginx.stop(secs(5));
    std::thread::sleep(out_within);
    let tally = w.spread(30);
    assert!(!tally.contains_key(dead), "{tally:?}");
    w.start_nginx(dead);
    let back = wait_until(secs(10), || {
        w.stats()
            .is_ok_and(|v| v["backends"][format!("web/{dead}")]["up"] == true)
    });
    assert!(
        back,
        "{dead} did not come back after its restart\n{}",
        w.stats_text()
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_spread(&w.spread(30), 1);

    // 3. Policy keep (by reload): the open download finishes on the
    // backend whose check fails, new connections avoid it.
    w.cluster_extra = extra("keep");
    w.reload();
    let reloaded = wait_until(secs(10), || w.sluice_log().contains("reloaded:"));
    assert!(reloaded, "{}", w.sluice_log());
    let download = w.start_download();
    let sick = w.download_backend(&download);
    std::fs::write(down_file(&w, &sick), b"").unwrap();
    std::thread::sleep(out_within);
    let tally = w.spread(30);
    assert!(!tally.contains_key(&sick), "{tally:?}");
    let mut download = download;
    assert!(
        download.0.running(),
        "the download ended before new connections were checked"
    );
    w.finish_download(download, secs(30));
    std::fs::remove_file(down_file(&w, &sick)).unwrap();

    w.stop_sluice();
    eprintln!("[health] took {:?}", started.elapsed());
}

/// The UDP port of the `dns` service and of its backends' responders.
const UDP_PORT: u16 = 5353;

/// A UDP responder on backend `name` (python): every datagram is answered
/// with `ok NAME`. Returns once it is bound.
fn udp_responder(w: &World, name: &str) -> Daemon {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', {UDP_PORT}))\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   d, a = s.recvfrom(2048)\n\
         \x20   s.sendto(b'ok {name}', a)\n"
    );
    let log = w.tmp.path().join(format!("udp-{name}.log"));
    let cmd = w.lan.host(name).cmd(&["python3", "-u", "-c", &script]);
    let mut d = Daemon::spawn(&format!("udp {name}"), cmd, &log);
    let ready = wait_until(secs(10), || d.log().contains("ready") || !d.running());
    assert!(ready && d.running(), "UDP responder on {name}\n{}", d.log());
    d
}

/// `n` new UDP flows to the VIP's `dns` service, from client ports
/// `first_port..first_port + n` (never reused, so each is a new flow);
/// the backend that answered each, by name. All must be answered.
fn udp_spread(w: &World, first_port: u16, n: u16) -> BTreeMap<String, usize> {
    let script = format!(
        "import socket\n\
         for p in range({first_port}, {first_port} + {n}):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.bind(('{CLIENT_ADDR}', p))\n\
         \x20   s.settimeout(1.0)\n\
         \x20   s.sendto(b'hello', ('{VIP}', {UDP_PORT}))\n\
         \x20   try:\n\
         \x20       print(s.recv(2048).decode(), flush=True)\n\
         \x20   except socket.timeout:\n\
         \x20       print('timeout', flush=True)\n\
         \x20   s.close()\n"
    );
    let f = run(w.client().cmd(&["python3", "-c", &script]), secs(60));
    let lines: Vec<String> = f.stdout().lines().map(str::to_string).collect();
    assert!(
        f.success() && lines.len() == n as usize && lines.iter().all(|l| l.starts_with("ok ")),
        "{n} UDP flows from port {first_port}: {lines:?}\n{}\n--- counters\n{}\n--- sluice log\n{}",
        f.text(),
        w.stats_text(),
        w.sluice_log()
    );
    let mut tally = BTreeMap::new();
    for l in lines {
        *tally.entry(l[3..].to_string()).or_insert(0) += 1;
    }
    eprintln!("[{}] {n} UDP flows answered by {tally:?}", w.tag);
    tally
}

/// UDP send-and-expect checks for a UDP service (NAT): a python responder
/// per backend; one is stopped, its host answers the checks with ICMP port
/// unreachable, which fails each check at once, and no new UDP flow
/// reaches it within fall × interval + one interval; restarted, it comes
/// back within rise × interval + one interval.
#[test]
fn nat_udp_checks_take_a_stopped_responder_out_and_back() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("udphc", Mode::Nat);
    const INTERVAL_MS: u64 = 200;
    const FALL: u64 = 2;
    const RISE: u64 = 2;
    // The check expects "ok" in the reply. A stopped responder's host
    // answers each check with a port unreachable, which fails it before
    // its timeout (counted in health_udp_unreachable).
    w.cluster_extra = format!(
        "maglev_table_size = 1009\n\
         [cluster.health_check]\ntype = \"udp\"\nport = {UDP_PORT}\nsend = \"ping\"\nexpect = \"ok\"\n\
         interval_ms = {INTERVAL_MS}\ntimeout_ms = 190\nrise = {RISE}\nfall = {FALL}\n"
    );
    w.services_extra = format!(
        "\n[[service]]\nname = \"dns\"\nvip = \"{VIP}\"\nport = {UDP_PORT}\nprotocol = \"udp\"\n\
         mode = \"nat\"\ncluster = \"web\"\ningress = \"p0\"\n"
    );
    let out_within = Duration::from_millis(FALL * INTERVAL_MS + INTERVAL_MS + 250);
    let back_within = Duration::from_millis(RISE * INTERVAL_MS + INTERVAL_MS + 250);
    let mut responders: Vec<Daemon> = BACKENDS
        .iter()
        .map(|(name, _)| udp_responder(&w, name))
        .collect();
    // Every port unreachable is sent (the kernel limits them to about
    // one a second otherwise).
    let (dead, _) = BACKENDS[2];
    w.lan.host(dead).sysctl("net.ipv4.icmp_ratelimit", "0");
    w.start_sluice();
    let tally = udp_spread(&w, 20000, 30);
    assert_spread(&tally, 1);

    eprintln!("[udphc] stopping the responder on {dead}");
    let _ = responders[2].stop(secs(5));
    let t0 = Instant::now();
    std::thread::sleep(out_within);
    eprintln!("[udphc] new flows from {:?} after the stop", t0.elapsed());
    let tally = udp_spread(&w, 21000, 30);
    assert!(!tally.contains_key(dead), "{dead} is stopped: {tally:?}");
    let v = w.stats().unwrap();
    let be = &v["backends"][format!("web/{dead}")];
    assert_eq!(be["up"], false, "{be}");
    assert!(be["checks_failed"].as_u64().unwrap_or(0) >= FALL, "{be}");
    let c = &v["counters"];
    assert!(
        c["health_udp_unreachable"].as_u64().unwrap_or(0) >= FALL,
        "port unreachable fails the checks: {c}"
    );
    assert!(c["health_answers"].as_u64().unwrap_or(0) > 0, "{c}");
    for (name, _) in &BACKENDS[..2] {
        let be = &v["backends"][format!("web/{name}")];
        assert_eq!(be["up"], true, "{name}: {be}");
        assert!(be["checks_passed"].as_u64().unwrap_or(0) > 0, "{be}");
    }

    responders[2] = udp_responder(&w, dead);
    std::thread::sleep(back_within);
    let tally = udp_spread(&w, 22000, 30);
    assert!(tally.contains_key(dead), "{dead} is not back: {tally:?}");
    w.assert_no_unexpected_drops();
    w.stop_sluice();
    eprintln!("[udphc] took {:?}", started.elapsed());
}

/// HTTPS checks of an L4 cluster: nginx serves TLS with a certificate of
/// a CA the test makes. Verified against that CA and the certificate's
/// name, the checks pass, and a backend whose `/hc` fails over HTTPS is
/// taken out and comes back; with a name the certificates do not carry,
/// every check fails as a verification failure; `verify = false` passes
/// them again.
#[test]
fn nat_https_checks_verify_the_backends() {
    let _serial = serial();
    let started = Instant::now();
    let certs = TempDir::new("l4-https-certs");
    let dir = certs.path();
    common::certs::make_ca(dir);
    let ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    common::certs::make_leaf(dir, "backend", "backend", "DNS:backend.test", &ec);
    let mut w = World::with_https(
        "httpshc",
        Mode::Nat,
        Some((dir.join("backend.crt"), dir.join("backend.key"))),
    );
    const INTERVAL_MS: u64 = 200;
    const FALL: u64 = 2;
    const RISE: u64 = 2;
    let check = |tls: &str| {
        format!(
            "maglev_table_size = 1009\n\
             [cluster.health_check]\ntype = \"https\"\npath = \"/hc\"\nport = 443\n{tls}\n\
             interval_ms = {INTERVAL_MS}\ntimeout_ms = 190\nrise = {RISE}\nfall = {FALL}\n"
        )
    };
    let ca = dir.join("ca.crt");
    let verified = |name: &str| format!("ca = \"{}\"\nserver_name = \"{name}\"", ca.display());
    w.cluster_extra = check(&verified("backend.test"));
    let out_within = Duration::from_millis(FALL * INTERVAL_MS + INTERVAL_MS + 250);
    let back_within = Duration::from_millis(RISE * INTERVAL_MS + INTERVAL_MS + 250);
    w.start_sluice();
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    let v = w.stats().unwrap();
    for (name, _) in BACKENDS {
        let be = &v["backends"][format!("web/{name}")];
        assert!(
            be["up"] == true && be["checks_passed"].as_u64().unwrap_or(0) >= 2,
            "{name}: {be}\n--- counters\n{}",
            v["counters"]
        );
    }
    let c = &v["counters"];
    assert_eq!(c["l7_upstream_tls_verify_failed"], 0, "{c}");
    assert_spread(&w.spread(30), 1);

    // /hc answers 503 over HTTPS on b2: out, then back.
    let (sick, _) = BACKENDS[1];
    let down = w.tmp.path().join(sick).join("down");
    std::fs::write(&down, b"").unwrap();
    std::thread::sleep(out_within);
    let tally = w.spread(30);
    assert!(
        !tally.contains_key(sick),
        "{sick} fails its check: {tally:?}"
    );
    std::fs::remove_file(&down).unwrap();
    std::thread::sleep(back_within);
    assert_spread(&w.spread(30), 1);

    // A name the certificates do not carry: every check fails to verify
    // (the cluster then keeps all its backends: a check failing everywhere
    // is more likely wrong than every backend dead).
    w.cluster_extra = check(&verified("other.test"));
    w.reload();
    let failed = wait_until(secs(10), || {
        w.stats().is_ok_and(|v| {
            BACKENDS
                .iter()
                .all(|(n, _)| v["backends"][format!("web/{n}")]["up"] == false)
        })
    });
    let v = w.stats().unwrap();
    assert!(failed, "wrong name: all checks should fail\n{v}");
    let c = &v["counters"];
    assert!(
        c["l7_upstream_tls_verify_failed"].as_u64().unwrap_or(0) >= 3 * FALL,
        "{c}"
    );
    // No verification: the same name passes.
    w.cluster_extra = check("verify = false\nserver_name = \"other.test\"");
    w.reload();
    let back = wait_until(secs(10), || {
        w.stats().is_ok_and(|v| {
            BACKENDS
                .iter()
                .all(|(n, _)| v["backends"][format!("web/{n}")]["up"] == true)
        })
    });
    assert!(back, "verify = false: all up again\n{}", w.stats_text());
    assert_spread(&w.spread(30), 1);
    w.stop_sluice();
    eprintln!("[httpshc] took {:?}", started.elapsed());
}

/// Passive marking (NAT): a backend whose nginx is stopped answers new
/// connections with RSTs; after `passive_rst_limit` of them in a row it
/// is taken out at once, long before its active check (3 s interval) could
/// fail `fall` times; it comes back once that check passes again.
#[test]
fn nat_new_connection_rsts_take_a_backend_out() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("passive", Mode::Nat);
    const LIMIT: usize = 3;
    const FALL: u64 = 3;
    w.cluster_extra = format!(
        "maglev_table_size = 1009\n\
         [cluster.health_check]\ntype = \"tcp\"\ninterval_ms = 3000\ntimeout_ms = 500\n\
         rise = 1\nfall = {FALL}\npassive_rst_limit = {LIMIT}\n"
    );
    w.start_sluice();
    assert_spread(&w.spread(30), 1);
    let (dead, _) = BACKENDS[2];
    let i = w
        .servers
        .iter()
        .position(|d| d.name == format!("nginx {dead}"))
        .unwrap();
    let mut nginx = w.servers.remove(i);
    let _ = nginx.stop(secs(5));
    let t0 = Instant::now();
    // New connections one after another (about a millisecond each):
    // those Maglev gives the stopped backend are refused, until the third
    // RST in a row took it out and the control thread's next plane
    // reached the worker.
    let (replies, f) = w.requests(40, false);
    let refused = replies.iter().filter(|r| r.code != "200").count();
    eprintln!("[passive] {refused} of 40 refused, in {:?}", t0.elapsed());
    assert!(
        replies.len() == 40 && refused >= LIMIT,
        "want at least {LIMIT} refused connections: {replies:?}\n{}",
        f.text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let tally = w.spread(30);
    assert!(!tally.contains_key(dead), "{tally:?}");
    let v = w.stats().unwrap();
    let be = &v["backends"][format!("web/{dead}")];
    assert_eq!(be["up"], false, "{be}");
    assert_eq!(be["passive_downs"], 1, "{be}");
    assert!(
        be["checks_failed"].as_u64().unwrap_or(0) < FALL,
        "out by passive marking, not by {FALL} failed checks: {be} after {:?}",
        t0.elapsed()
    );
    w.start_nginx(dead);
    let back = wait_until(secs(10), || {
        w.stats()
            .is_ok_and(|v| v["backends"][format!("web/{dead}")]["up"] == true)
    });
    assert!(back, "{dead} did not come back\n{}", w.stats_text());
    std::thread::sleep(Duration::from_millis(50));
    assert_spread(&w.spread(30), 1);
    w.stop_sluice();
    eprintln!("[passive] took {:?}", started.elapsed());
}
