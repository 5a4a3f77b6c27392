//! Many Sluice boxes behind one ECMP router, end to end with the kernel's
//! own TCP: the topology of docs/SCALE-OUT.md in network namespaces.
//!
//! ```text
//!   client c0 10.60.1.2 ── r1 10.60.1.1  router  r0 10.60.0.254
//!                                                │  ECMP: VIP 10.60.100.10/32
//!                    namespace sso-TAG-PID-sw: bridge br0   via 10.60.0.1, 10.60.0.2
//!      ┌───────────────┬──────────────┬──────────────┬──────────┬──────────┐
//!      r0             l0 │ m0         l0 │ m0         eth0       eth0       eth0
//!    router        box lb1          box lb2           b1         b2         b3
//!               Sluice 10.60.0.1  Sluice 10.60.0.2  10.60.0.11 10.60.0.12 10.60.0.13
//!               BIRD   10.60.0.21 BIRD   10.60.0.22 nginx + DSR decap helper each
//! ```
//!
//! Each box is a namespace with two legs on the segment: `l0`, owned by its
//! Sluice through DPDK's `net_af_packet`, and `m0`, a kernel interface for
//! BIRD's BGP session and nothing else (what a second NIC or VLAN interface
//! is on a real box). Both Sluices have the same backends and `hash_seed`;
//! the router hashes flows over them on the 5-tuple
//! (`fib_multipath_hash_policy=1`). Backends decapsulate IP-in-IP with
//! `scripts/dsr-decap.py` (this kernel has no tunnel devices), accept
//! tunnels from both boxes, and answer the client straight through the
//! router. IP-in-IP rather than `l2dsr` because it is the mode that also
//! works with backends behind routers, and the one whose restart test
//! (`tests/l4_netns.rs`) this extends; the consistency argument does not
//! depend on the encapsulation.
//!
//! The tests:
//! - `dsr_download_survives_losing_its_box`: a download's box is killed
//!   (SIGKILL) mid-transfer and its path removed from the router, as a
//!   routing daemon would; the other box, which never saw the flow, sends
//!   its packets to the same backend; the killed box is started again, the
//!   flow hashes back to it, and it too sends it to the same backend. The
//!   file arrives whole (sha256).
//! - `nat_download_dies_with_its_box`: the same in NAT mode fails, and the
//!   test records how (docs/SCALE-OUT.md quotes it).
//! - `bgp_ecmp_follows_sluice_health`: BIRD on the router learns the VIP
//!   from both boxes' BIRDs (the shipped `dpdk-config/bird/` files, driven
//!   by `scripts/sluice-bgp-health.sh`), installs a two-path route, loses a
//!   path when that box's Sluice stops and gets it back when it starts; then
//!   a download's box is killed and BGP alone moves the flow.
//!
//! Needs root, nginx, curl, python3, ethtool, ping, bird2
//! (`scripts/setup.sh`). Each test builds and removes its own namespaces,
//! processes and files (guards, also on panic); all traffic stays inside
//! them and every command is bounded in time. Tests take a lock: each runs
//! two busy-polling Sluices, one per CPU.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::lan::{dsr_decap, ip, nginx, run, wait_until, Daemon, Lan, Ns, RemoveOnDrop};
use common::TempDir;

const ROUTER_LAN: &str = "10.60.0.254";
const CLIENT_ADDR: &str = "10.60.1.2";
const ROUTER_CLIENT_SIDE: &str = "10.60.1.1";
const VIP: &str = "10.60.100.10";
const URL: &str = "http://10.60.100.10/";
const BIG_URL: &str = "http://10.60.100.10/big";
const ADMIN: &str = "127.0.0.1:9100";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "10.60.0.11"),
    ("b2", "10.60.0.12"),
    ("b3", "10.60.0.13"),
];
/// Size of `/big` (random bytes), sent by nginx at `BIG_RATE` bytes per
/// second: about 8 s, so a box can be killed, and brought back, in the
/// middle. The limit is on
/// the server: a client-side limit would let the socket buffer take the
/// file at once and leave the flow idle.
const BIG_BYTES: u64 = 8 << 20;
const BIG_RATE: &str = "1m";

/// One Sluice box: its namespace role, Sluice's data-port address and MAC,
/// the kernel (BGP) leg's address, and its lcores (the two boxes poll on
/// different CPUs).
struct BoxSpec {
    name: &'static str,
    addr: &'static str,
    mac: &'static str,
    bgp_addr: &'static str,
    main_lcore: u32,
    worker: u32,
}

const BOXES: [BoxSpec; 2] = [
    BoxSpec {
        name: "lb1",
        addr: "10.60.0.1",
        mac: "02:00:00:60:00:01",
        bgp_addr: "10.60.0.21",
        main_lcore: 0,
        worker: 1,
    },
    BoxSpec {
        name: "lb2",
        addr: "10.60.0.2",
        mac: "02:00:00:60:00:02",
        bgp_addr: "10.60.0.22",
        main_lcore: 1,
        worker: 0,
    },
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

static SERIAL: Mutex<()> = Mutex::new(());

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

fn sha256(path: &Path) -> String {
    let f = run(
        {
            let mut c = std::process::Command::new("sha256sum");
            c.arg(path);
            c
        },
        secs(20),
    );
    assert!(f.success(), "sha256sum {}: {}", path.display(), f.text());
    f.stdout().split_whitespace().next().unwrap().to_string()
}

/// A download of `/big` into a file, running in the background.
struct Download {
    curl: Daemon,
    out: PathBuf,
}

/// The router, boxes, backends and client of one test. Fields drop in
/// order: processes first, then namespaces, then files.
struct World {
    /// Each box's Sluice, by index into `BOXES`.
    sluices: [Option<Daemon>; 2],
    /// BIRDs and health checkers (BGP test only).
    bgp: Vec<Daemon>,
    /// nginx and the decap helpers.
    servers: Vec<Daemon>,
    _dpdk_dirs: Vec<RemoveOnDrop>,
    /// The client's namespace, joined to the router by a veth pair.
    client: Ns,
    lan: Lan,
    mode: Mode,
    tag: String,
    starts: u32,
    big_sha256: String,
    tmp: TempDir,
}

impl World {
    fn new(tag: &str, mode: Mode) -> World {
        let tmp = TempDir::new(&format!("sso-{tag}"));
        let prefix = format!("sso-{tag}-{}", std::process::id());
        let mut lan = Lan::new(&prefix);

        // The router: one leg on the boxes' segment, one towards the client.
        lan.attach("r", "r0", &[&format!("{ROUTER_LAN}/24")]);
        let client = Ns::new(&format!("{prefix}-c"));
        let router = lan.host("r");
        ip(&[
            "link",
            "add",
            "c0",
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "r1",
            "netns",
            router.name(),
        ]);
        for (ns, ifname, addr) in [
            (&client, "c0", CLIENT_ADDR),
            (router, "r1", ROUTER_CLIENT_SIDE),
        ] {
            ns.sysctl(&format!("net.ipv6.conf.{ifname}.disable_ipv6"), "1");
            ns.ok(&["ethtool", "-K", ifname, "tx", "off"]);
            ns.ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", ifname]);
            ns.ok(&["ip", "link", "set", ifname, "up"]);
        }
        client.ok(&["ip", "route", "add", "default", "via", ROUTER_CLIENT_SIDE]);
        router.sysctl("net.ipv4.ip_forward", "1");
        // Hash on the 5-tuple, so that one client's connections spread over
        // the boxes (the default hashes addresses only).
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "1");

        // The boxes: Sluice's leg (no kernel address) and the kernel's leg.
        // The box's kernel must not answer ARP for its own address on l0
        // (it sees l0's traffic too: af_packet only taps it).
        for b in &BOXES {
            lan.attach(b.name, "l0", &[]);
            lan.add_leg(b.name, "m0", &[&format!("{}/24", b.bgp_addr)]);
            let ns = lan.host(b.name);
            ns.sysctl("net.ipv4.conf.all.arp_ignore", "1");
            ns.sysctl("net.ipv4.conf.all.arp_announce", "2");
        }
        for (name, addr) in BACKENDS {
            lan.attach(name, "eth0", &[&format!("{addr}/24")]);
            lan.host(name)
                .ok(&["ip", "route", "add", "default", "via", ROUTER_LAN]);
        }

        let www = tmp.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        let mut big = vec![0u8; BIG_BYTES as usize];
        {
            use std::io::Read;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut big))
                .expect("read /dev/urandom");
        }
        std::fs::write(www.join("big"), &big).unwrap();
        let big_sha256 = sha256(&www.join("big"));

        let mut w = World {
            sluices: [None, None],
            bgp: Vec::new(),
            servers: Vec::new(),
            _dpdk_dirs: BOXES
                .iter()
                .map(|b| RemoveOnDrop(PathBuf::from("/var/run/dpdk").join(file_prefix(tag, b))))
                .collect(),
            client,
            lan,
            mode,
            tag: tag.to_string(),
            starts: 0,
            big_sha256,
            tmp,
        };
        for (name, addr) in BACKENDS {
            if mode == Mode::Ipip {
                w.start_decap(name);
            }
            w.start_nginx(name);
            let mut last = None;
            let up = wait_until(secs(10), || {
                let f = run(
                    w.client
                        .cmd(&["curl", "-sS", "--max-time", "1", &format!("http://{addr}/")]),
                    secs(3),
                );
                let ok = f.success() && f.stdout() == format!("{name}\n");
                last = Some(f);
                ok
            });
            assert!(
                up,
                "backend {name} does not answer the client through the router\n{}",
                last.map(|f| f.text()).unwrap_or_default()
            );
        }
        w
    }

    fn router(&self) -> &Ns {
        self.lan.host("r")
    }

    fn box_ns(&self, i: usize) -> &Ns {
        self.lan.host(BOXES[i].name)
    }

    fn start_nginx(&mut self, name: &str) {
        let dir = self.tmp.path().join(name);
        let server = format!(
            r#"        location / {{ return 200 "{name}\n"; }}
        location /big {{ limit_rate {BIG_RATE}; }}"#
        );
        let http = "    default_type application/octet-stream;";
        let www = self.tmp.path().join("www");
        let ns = self.lan.host(name);
        let nginx = nginx(ns, name, &dir, &www, http, &server);
        self.servers.push(nginx);
    }

    /// The userspace IP-in-IP set-up of docs/DSR.md, accepting tunnelled
    /// packets from every box of the group.
    fn start_decap(&mut self, name: &str) {
        let lbs: Vec<String> = BOXES.iter().map(|b| b.addr.to_string()).collect();
        let lbs: Vec<&str> = lbs.iter().map(String::as_str).collect();
        let log = self.tmp.path().join(format!("decap-{name}.log"));
        let d = dsr_decap(self.lan.host(name), name, "userspace-ipip", VIP, &lbs, &log);
        self.servers.push(d);
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.tmp
            .path()
            .join(format!("sluice-{}.toml", BOXES[i].name))
    }

    /// Box `i`'s config. Everything that decides a backend (the cluster,
    /// its backends in order, `maglev_table_size`, `hash_seed`) is the same
    /// text on both boxes; only the port's address and MAC, the lcores and
    /// the EAL file prefix differ.
    fn write_config(&self, i: usize) {
        let b = &BOXES[i];
        let mut cfg = format!(
            r#"# Written by tests/scale_out.rs ({tag}), box {name}.
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf"]
file_prefix = "{file_prefix}"
main_lcore = {main_lcore}

[dataplane]
workers = [{worker}]
mbufs = 4095
mbuf_cache = 128

[admin]
listen = "{ADMIN}"

[conntrack]
max_flows = 65536

[[port]]
name = "p0"
vdev = "net_af_packet0,iface=l0"
mac = "{mac}"
addresses = ["{addr}/24"]
gateway = "{ROUTER_LAN}"

[[cluster]]
name = "web"
scheduler = "maglev"
maglev_table_size = 65537
hash_seed = 424242
"#,
            tag = self.tag,
            name = b.name,
            file_prefix = file_prefix(&self.tag, b),
            main_lcore = b.main_lcore,
            worker = b.worker,
            mac = b.mac,
            addr = b.addr,
        );
        for (name, addr) in BACKENDS {
            cfg += &format!("\n[[cluster.backend]]\naddress = \"{addr}\"\nname = \"{name}\"\n");
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
        std::fs::write(self.config_path(i), cfg).unwrap();
    }

    fn sluice_log(&self, i: usize) -> String {
        self.sluices[i]
            .as_ref()
            .map(|d| d.log())
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..BOXES.len())
            .map(|i| {
                format!(
                    "--- sluice {} (tail)\n{}",
                    BOXES[i].name,
                    tail(&self.sluice_log(i), 15)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Start box `i`'s Sluice and wait until it answers the router's ping
    /// on its address.
    fn start_sluice(&mut self, i: usize) {
        assert!(self.sluices[i].is_none(), "Sluice {i} is already running");
        self.write_config(i);
        let cfg = self.config_path(i).to_str().unwrap().to_string();
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
            "sluice check rejects {cfg}:\n{}",
            check.text()
        );
        self.starts += 1;
        let log = self
            .tmp
            .path()
            .join(format!("sluice-{}-{}.log", BOXES[i].name, self.starts));
        let cmd = self
            .box_ns(i)
            .cmd(&[env!("CARGO_BIN_EXE_sluice"), "run", "--config", &cfg]);
        let mut sluice = Daemon::spawn(&format!("sluice {}", BOXES[i].name), cmd, &log);
        let router = self.router();
        let answered = wait_until(secs(20), || {
            !sluice.running()
                || run(
                    router.cmd(&["ping", "-c", "1", "-W", "1", BOXES[i].addr]),
                    secs(3),
                )
                .success()
        });
        let alive = sluice.running();
        self.sluices[i] = Some(sluice);
        assert!(
            answered && alive,
            "Sluice {} did not come up ({})\n{}",
            BOXES[i].name,
            if alive { "no echo reply" } else { "it exited" },
            self.sluice_log(i)
        );
    }

    /// SIGTERM box `i`'s Sluice and insist on a clean exit.
    fn stop_sluice(&mut self, i: usize) {
        let mut s = self.sluices[i].take().expect("Sluice is not running");
        let st = s.stop(secs(10));
        assert!(
            st.is_some_and(|st| st.success()),
            "Sluice {} did not exit cleanly on SIGTERM: {st:?}\n{}",
            BOXES[i].name,
            s.log()
        );
    }

    /// SIGKILL box `i`'s Sluice: the box dies with no chance to say so.
    fn kill_sluice(&mut self, i: usize) {
        let mut s = self.sluices[i].take().expect("Sluice is not running");
        s.signal("KILL");
        assert!(
            s.wait_exit(secs(5)).is_some(),
            "Sluice {} survived SIGKILL",
            BOXES[i].name
        );
    }

    fn stats(&self, i: usize) -> Result<serde_json::Value, String> {
        let f = run(
            self.box_ns(i).cmd(&[
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

    /// A counter of box `i`'s running Sluice (`counters.NAME`, or a path
    /// such as `services.web.connections`).
    fn counter(&self, i: usize, path: &str) -> u64 {
        let v = self
            .stats(i)
            .unwrap_or_else(|e| panic!("box {}: {e}", BOXES[i].name));
        let mut cur = &v;
        for part in path.split('.') {
            cur = &cur[part];
        }
        cur.as_u64()
            .unwrap_or_else(|| panic!("box {}: no counter {path} in {v}", BOXES[i].name))
    }

    /// Client packets box `i` has sent to a backend (tracked or not).
    fn forwarded(&self, i: usize) -> u64 {
        self.counter(i, "counters.l4_forwarded") + self.counter(i, "counters.l4_stateless")
    }

    /// The router's next hops for the VIP (empty: no route).
    fn vip_next_hops(&self) -> BTreeSet<String> {
        let o = self
            .router()
            .ok(&["ip", "-4", "route", "show", &format!("{VIP}/32")]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect()
    }

    fn route_text(&self) -> String {
        let o = self
            .router()
            .ok(&["ip", "-4", "route", "show", &format!("{VIP}/32")]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// What a routing daemon does by hand: the VIP's route over the given
    /// boxes (replacing whatever was there).
    fn set_static_route(&self, boxes: &[usize]) {
        let dst = format!("{VIP}/32");
        let mut args = vec!["ip", "route", "replace", &dst];
        for &i in boxes {
            args.extend(["nexthop", "via", BOXES[i].addr, "dev", "r0"]);
        }
        self.router().ok(&args);
    }

    /// `n` new connections from the client to the VIP; every one must be
    /// answered by a backend. Returns how many each box carried (by the
    /// change of its `services.web.connections`).
    fn connections(&self, n: usize, running: &[usize]) -> Vec<(usize, u64)> {
        let before: Vec<u64> = running
            .iter()
            .map(|&i| self.counter(i, "services.web.connections"))
            .collect();
        let mut args = vec![
            "curl",
            "-sS",
            "--connect-timeout",
            "3",
            "--max-time",
            "5",
            "-H",
            "Connection: close",
            "-w",
            "::%{http_code}\n",
        ];
        args.extend(std::iter::repeat_n(URL, n));
        let f = run(self.client.cmd(&args), secs(30));
        // Each answer: the backend's name line, then curl's `::200`.
        let out = f.stdout();
        let lines: Vec<&str> = out.lines().collect();
        let ok = lines
            .windows(2)
            .filter(|p| p[0].starts_with('b') && p[1] == "::200")
            .count();
        assert!(
            ok == n,
            "{n} connections to {URL}: {ok} answered\n{}\n--- route\n{}\n{}",
            f.text(),
            self.route_text(),
            self.logs()
        );
        running
            .iter()
            .zip(before)
            .map(|(&i, b)| (i, self.counter(i, "services.web.connections") - b))
            .collect()
    }

    /// Start fetching `/big` into a file (bounded by `--max-time`; the
    /// speed limit ends a stalled transfer after `stall_s` seconds without
    /// progress; TCP keepalive probes every second keep the client talking
    /// while nothing arrives).
    fn start_download(&self, stall_s: u32) -> Download {
        let log = self.tmp.path().join("download.log");
        let out = self.tmp.path().join("download.bin");
        let _ = std::fs::remove_file(&out);
        let stall = stall_s.to_string();
        let cmd = self.client.cmd(&[
            "curl",
            "-sS",
            "-v",
            "--connect-timeout",
            "3",
            "--max-time",
            "40",
            "--speed-limit",
            "1",
            "--speed-time",
            &stall,
            "--keepalive-time",
            "1",
            "-o",
            out.to_str().unwrap(),
            "-w",
            "::%{http_code} %{size_download}\n",
            BIG_URL,
        ]);
        Download {
            curl: Daemon::spawn("curl /big", cmd, &log),
            out,
        }
    }

    /// The backend serving a download, from its `X-Backend` header.
    fn download_backend(&self, d: &Download) -> String {
        let mut name = None;
        let seen = wait_until(secs(10), || {
            name = d.curl.log().lines().find_map(|l| {
                let l = l.strip_prefix("< ")?;
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-backend")
                    .then(|| v.trim().to_string())
            });
            name.is_some()
        });
        assert!(
            seen,
            "no response headers for {BIG_URL}\n{}\n{}",
            d.curl.log(),
            self.logs()
        );
        name.unwrap()
    }

    /// The box carrying the (only) flow: the one whose forwarded-packet
    /// count grows while it runs.
    fn carrier(&self, running: &[usize]) -> usize {
        let before: Vec<u64> = running.iter().map(|&i| self.forwarded(i)).collect();
        std::thread::sleep(Duration::from_millis(700));
        let grew: Vec<usize> = running
            .iter()
            .zip(before)
            .filter(|(&i, b)| self.forwarded(i) > *b)
            .map(|(&i, _)| i)
            .collect();
        assert!(
            grew.len() == 1,
            "one box should carry the download, these did: {grew:?}\n{}",
            self.logs()
        );
        grew[0]
    }

    /// Wait for a download to end; (curl's exit status, its `code size`
    /// line, its log).
    fn end_download(&self, mut d: Download, limit: Duration) -> (Option<i32>, String, String) {
        let st = d.curl.wait_exit(limit);
        let log = d.curl.log();
        let result = log
            .lines()
            .find_map(|l| l.strip_prefix("::"))
            .unwrap_or("")
            .to_string();
        (st.map(|s| s.code().unwrap_or(-1)), result, log)
    }

    /// Insist that a download got all of `/big`, byte for byte.
    fn finish_download(&self, d: Download, limit: Duration) {
        let out = d.out.clone();
        let (st, result, log) = self.end_download(d, limit);
        assert!(
            st == Some(0) && result == format!("200 {BIG_BYTES}"),
            "download of {BIG_URL}: exit {st:?}, code and size {result:?} (want 200 {BIG_BYTES})\n\
             --- curl -v (tail)\n{}\n--- route\n{}\n{}",
            tail(&log, 30),
            self.route_text(),
            self.logs()
        );
        let got = sha256(&out);
        assert_eq!(got, self.big_sha256, "sha256 of the downloaded /big");
    }

    // ---- BGP ----

    /// A BIRD in namespace `ns` on `conf`, with its control socket in the
    /// test's temp dir.
    fn start_bird(&mut self, ns_role: &str, conf: &str) -> PathBuf {
        let dir = self.tmp.path().join(format!("bird-{ns_role}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("bird.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let check = run(
            {
                let mut c = std::process::Command::new("bird");
                c.args(["-p", "-c", conf_path.to_str().unwrap()]);
                c
            },
            secs(10),
        );
        assert!(
            check.success(),
            "bird -p rejects the {ns_role} config:\n{}\n{conf}",
            check.text()
        );
        let sock = dir.join("bird.ctl");
        let cmd = self.lan.host(ns_role).cmd(&[
            "bird",
            "-f",
            "-c",
            conf_path.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
            "-P",
            dir.join("bird.pid").to_str().unwrap(),
        ]);
        let mut d = Daemon::spawn(&format!("bird {ns_role}"), cmd, &dir.join("bird.log"));
        let up = wait_until(secs(10), || sock.exists() || !d.running());
        assert!(
            up && d.running(),
            "bird in {ns_role} did not start\n{}",
            d.log()
        );
        self.bgp.push(d);
        sock
    }

    fn birdc(&self, ns_role: &str, args: &[&str]) -> String {
        let sock = self.tmp.path().join(format!("bird-{ns_role}/bird.ctl"));
        let mut a = vec!["birdc", "-s", sock.to_str().unwrap()];
        a.extend(args);
        run(self.lan.host(ns_role).cmd(&a), secs(5)).text()
    }

    fn bgp_state(&self) -> String {
        format!(
            "--- router: birdc show protocols\n{}\n--- router: birdc show route all\n{}\n--- route\n{}\n{}\n{}",
            self.birdc("r", &["show", "protocols"]),
            self.birdc("r", &["show", "route", "all"]),
            self.route_text(),
            self.bgp
                .iter()
                .map(|d| format!("--- {} (tail)\n{}", d.name, tail(&d.log(), 12)))
                .collect::<Vec<_>>()
                .join("\n"),
            self.logs()
        )
    }

    /// Wait until the router's route for the VIP goes through exactly
    /// these boxes; how long it took.
    fn await_next_hops(&self, boxes: &[usize], limit: Duration) -> Duration {
        let want: BTreeSet<String> = boxes.iter().map(|&i| BOXES[i].addr.to_string()).collect();
        let t = Instant::now();
        let ok = wait_until(limit, || self.vip_next_hops() == want);
        assert!(
            ok,
            "the router's route for {VIP} should go via {want:?}, has {:?}\n{}",
            self.vip_next_hops(),
            self.bgp_state()
        );
        t.elapsed()
    }
}

fn file_prefix(tag: &str, b: &BoxSpec) -> String {
    format!("sso-{tag}-{}-{}", b.name, std::process::id())
}

/// Replace the value of `define NAME = ...;` in a shipped BIRD config,
/// insisting that the line is there.
fn define(conf: &str, name: &str, value: &str) -> String {
    let key = format!("define {name} = ");
    let mut hit = false;
    let out = conf
        .lines()
        .map(|l| {
            if l.starts_with(&key) {
                hit = true;
                format!("{key}{value};")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(hit, "no `define {name}` in the BIRD config");
    out + "\n"
}

#[test]
fn dsr_download_survives_losing_its_box() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("dsr", Mode::Ipip);
    w.start_sluice(0);
    w.start_sluice(1);
    w.set_static_route(&[0, 1]);

    // The router spreads new connections over both boxes, and every one is
    // answered: each box balances flows of the other's as well as its own.
    let per_box = w.connections(40, &[0, 1]);
    eprintln!("[dsr] 40 connections per box: {per_box:?}");
    assert!(
        per_box.iter().all(|&(_, n)| n > 0),
        "the router should spread connections over both boxes: {per_box:?}\n{}",
        w.route_text()
    );

    let mut download = w.start_download(10);
    let backend = w.download_backend(&download);
    let carrier = w.carrier(&[0, 1]);
    let survivor = 1 - carrier;
    std::thread::sleep(Duration::from_millis(500));
    let stateless_before = w.counter(survivor, "counters.l4_stateless");
    let backend_before = w.counter(survivor, &format!("backends.web/{backend}.packets"));
    eprintln!(
        "[dsr] /big: backend {backend}, box {}; killing it",
        BOXES[carrier].name
    );
    w.kill_sluice(carrier);
    let killed = Instant::now();
    // The router learns (here: is told, a second later, about as long as
    // BGP takes in the third test) that the box is gone. The client's
    // packets of that second are lost; TCP sends them again.
    std::thread::sleep(Duration::from_secs(1));
    w.set_static_route(&[survivor]);
    assert!(
        download.curl.running(),
        "the download ended before its box was killed, or at once after\n{}",
        download.curl.log()
    );

    // The survivor never saw the flow's SYN: it forwards the client's
    // packets without state, to the same backend.
    let moved = wait_until(secs(10), || {
        w.counter(survivor, "counters.l4_stateless") > stateless_before
    });
    assert!(
        moved,
        "the survivor forwarded nothing of the flow\n{}\n{}",
        download.curl.log(),
        w.logs()
    );

    // The dead box comes back with an empty connection table, and the
    // router, given the same two next hops, hashes the flow to it again.
    w.start_sluice(carrier);
    let back_before = w.counter(carrier, "counters.l4_stateless");
    let back_backend_before = w.counter(carrier, &format!("backends.web/{backend}.packets"));
    w.set_static_route(&[0, 1]);
    assert!(
        download.curl.running(),
        "the download ended before its box came back: make /big longer\n{}",
        download.curl.log()
    );
    eprintln!(
        "[dsr] box {} back {:?} after the kill; the flow returns to it",
        BOXES[carrier].name,
        killed.elapsed()
    );
    w.finish_download(download, secs(40));
    eprintln!(
        "[dsr] download complete and intact {:?} after the kill",
        killed.elapsed()
    );
    let stateless = w.counter(survivor, "counters.l4_stateless") - stateless_before;
    let to_backend =
        w.counter(survivor, &format!("backends.web/{backend}.packets")) - backend_before;
    let back = w.counter(carrier, "counters.l4_stateless") - back_before;
    let back_to_backend =
        w.counter(carrier, &format!("backends.web/{backend}.packets")) - back_backend_before;
    eprintln!(
        "[dsr] box {} after its restart: {back} packets of the flow forwarded without state, \
         {back_to_backend} to {backend}",
        BOXES[carrier].name
    );
    assert!(
        back > 0 && back_to_backend >= back,
        "the flow should have moved back to the restarted box {}, and gone on to {backend}: \
         l4_stateless +{back}, backend {backend} +{back_to_backend}",
        BOXES[carrier].name
    );
    eprintln!(
        "[dsr] survivor {}: {stateless} packets forwarded without state, {to_backend} to {backend}",
        BOXES[survivor].name
    );
    assert!(
        stateless > 0 && to_backend >= stateless,
        "the survivor should have sent the flow's packets, unknown to it, to {backend}: \
         l4_stateless +{stateless}, backend {backend} +{to_backend}\n{}",
        serde_json::to_string_pretty(&w.stats(survivor).unwrap()).unwrap()
    );

    // Both carry new connections again.
    let per_box = w.connections(20, &[0, 1]);
    assert!(per_box.iter().all(|&(_, n)| n > 0), "{per_box:?}");
    w.stop_sluice(0);
    w.stop_sluice(1);
    eprintln!("[dsr] took {:?}", started.elapsed());
}

#[test]
fn nat_download_dies_with_its_box() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("nat", Mode::Nat);
    w.start_sluice(0);
    w.start_sluice(1);
    w.set_static_route(&[0, 1]);
    let per_box = w.connections(40, &[0, 1]);
    eprintln!("[nat] 40 connections per box: {per_box:?}");
    assert!(per_box.iter().all(|&(_, n)| n > 0), "{per_box:?}");

    // The speed limit (30 s without progress) is out of reach: the
    // client's keepalive (1 s idle, 1 s interval, 9 probes) ends the
    // stalled connection about 10 s after the kill.
    let download = w.start_download(30);
    let backend = w.download_backend(&download);
    let carrier = w.carrier(&[0, 1]);
    let survivor = 1 - carrier;
    std::thread::sleep(Duration::from_millis(500));
    let no_conn_before = w.counter(survivor, "counters.drop_no_conn");
    eprintln!(
        "[nat] /big: backend {backend}, box {}; killing it",
        BOXES[carrier].name
    );
    w.kill_sluice(carrier);
    let killed = Instant::now();
    w.set_static_route(&[survivor]);

    // The backend answers the dead box's address (its SNAT address for the
    // flow); the client's packets (keepalive probes) reach the survivor,
    // which has no entry for the flow and drops them. The transfer stalls
    // until the client's kernel gives up on the connection.
    let (st, result, log) = w.end_download(download, secs(30));
    let after = killed.elapsed();
    let size: u64 = result
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_millis(300));
    let dropped = w.counter(survivor, "counters.drop_no_conn") - no_conn_before;
    eprintln!(
        "[nat] curl exit {st:?} {after:?} after the kill with {size} of {BIG_BYTES} bytes; \
         survivor dropped {dropped} packets of the flow (drop_no_conn); curl said: {}",
        log.lines().rfind(|l| l.starts_with("curl: ")).unwrap_or("")
    );
    assert!(
        st.is_some_and(|c| c != 0) && size < BIG_BYTES,
        "a NAT flow cannot survive its box: curl exit {st:?}, {result:?}\n{}",
        tail(&log, 20)
    );
    assert!(
        dropped > 0,
        "the survivor should have dropped the flow's packets as unknown (drop_no_conn)\n{}",
        serde_json::to_string_pretty(&w.stats(survivor).unwrap()).unwrap()
    );
    // New connections are fine: only the dead box's flows are lost.
    let per_box = w.connections(10, &[survivor]);
    assert_eq!(per_box[0].1, 10, "all new connections on the survivor");
    w.stop_sluice(survivor);
    eprintln!("[nat] took {:?}", started.elapsed());
}

#[test]
fn bgp_ecmp_follows_sluice_health() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("bgp", Mode::Ipip);
    w.start_sluice(0);
    w.start_sluice(1);

    // The shipped configs, as an operator would edit them: the router's
    // is used as it is (its addresses are the test's); each box gets its
    // own BGP address and Sluice address.
    let repo = common::repo();
    let router_conf = std::fs::read_to_string(repo.join("dpdk-config/bird/router.conf")).unwrap();
    let box_conf = std::fs::read_to_string(repo.join("dpdk-config/bird/sluice-box.conf")).unwrap();
    assert!(
        box_conf.contains(&format!("route {VIP}/32 via SLUICE_ADDR;")),
        "the shipped box config announces {VIP}"
    );
    w.start_bird("r", &router_conf);
    let health = repo.join("scripts/sluice-bgp-health.sh");
    for (i, b) in BOXES.iter().enumerate() {
        let conf = define(&box_conf, "BGP_SOURCE", b.bgp_addr);
        let conf = define(&conf, "SLUICE_ADDR", b.addr);
        let sock = w.start_bird(b.name, &conf);
        let cmd = w.box_ns(i).cmd(&[
            health.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "--interval",
            "0.3",
            "--rise",
            "2",
            "--fall",
            "2",
        ]);
        let log = w.tmp.path().join(format!("health-{}.log", b.name));
        w.bgp
            .push(Daemon::spawn(&format!("health {}", b.name), cmd, &log));
    }

    // Both boxes announce; the router installs one route with two paths.
    let t = w.await_next_hops(&[0, 1], secs(30));
    eprintln!("[bgp] ECMP route after {t:?}:\n{}", w.route_text());
    let per_box = w.connections(30, &[0, 1]);
    eprintln!("[bgp] 30 connections per box: {per_box:?}");
    assert!(per_box.iter().all(|&(_, n)| n > 0), "{per_box:?}");

    // Sluice on lb2 stops: its checker withdraws, the router keeps one path.
    w.stop_sluice(1);
    let t = w.await_next_hops(&[0], secs(15));
    eprintln!("[bgp] lb2's Sluice stopped: path withdrawn after {t:?}");
    w.connections(10, &[0]);

    // It comes back: announced again after `rise` good checks.
    let t = Instant::now();
    w.start_sluice(1);
    w.await_next_hops(&[0, 1], secs(15));
    eprintln!(
        "[bgp] lb2's Sluice started: path back {:?} after the start",
        t.elapsed()
    );

    // The whole chain under a live flow: the box carrying a download is
    // killed, its checker withdraws the VIP, the router moves the flow to
    // the other box, and the file arrives whole.
    let download = w.start_download(10);
    let backend = w.download_backend(&download);
    let carrier = w.carrier(&[0, 1]);
    let survivor = 1 - carrier;
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "[bgp] /big: backend {backend}, box {}; killing its Sluice",
        BOXES[carrier].name
    );
    w.kill_sluice(carrier);
    let t = w.await_next_hops(&[survivor], secs(15));
    eprintln!("[bgp] path of the killed box withdrawn after {t:?}");
    w.finish_download(download, secs(40));
    eprintln!("[bgp] download complete and intact");
    assert!(
        w.counter(survivor, "counters.l4_stateless") > 0,
        "the survivor forwarded the flow without state"
    );

    // A box whose BIRD dies loses its path as soon as the session closes.
    w.start_sluice(carrier);
    w.await_next_hops(&[0, 1], secs(15));
    let bird_idx = 1 + 2 * survivor; // bgp: router, then (bird, health) per box
    assert!(w.bgp[bird_idx].name == format!("bird {}", BOXES[survivor].name));
    w.bgp[bird_idx].signal("KILL");
    let t = w.await_next_hops(&[carrier], secs(15));
    eprintln!(
        "[bgp] BIRD of {} killed: path withdrawn after {t:?}",
        BOXES[survivor].name
    );
    w.connections(10, &[carrier]);

    // A checker that is stopped withdraws before it exits: a box nobody
    // watches attracts no traffic. That was the last path.
    let health_idx = 2 + 2 * carrier;
    assert!(w.bgp[health_idx].name == format!("health {}", BOXES[carrier].name));
    let st = w.bgp[health_idx].stop(secs(5));
    assert!(
        st.is_some_and(|s| s.success()),
        "the checker should exit 0 on SIGTERM: {st:?}\n{}",
        w.bgp[health_idx].log()
    );
    w.await_next_hops(&[], secs(5));
    eprintln!(
        "[bgp] checker of {} stopped: no path left\n{}",
        BOXES[carrier].name,
        w.bgp[health_idx].log()
    );
    eprintln!("[bgp] took {:?}", started.elapsed());
}
