//! Several workers under real traffic: every path between worker cores.
//!
//! ```text
//!                 namespace smc-TAG-PID-sw: bridge br0
//!      ┌─────────────┬─────────────┬────────────┬────────────┐
//!      c0            l0            eth0         eth0         eth0
//!    client        Sluice          b1           b2           b3
//!  10.50.0.2     10.50.0.1      10.50.0.11   10.50.0.12   10.50.0.13
//!                VIP 10.50.0.100:80              nginx on each
//! ```
//!
//! Sluice runs with 2, then 4 workers on a machine that may have only two
//! CPUs: `dataplane.worker_cpus` maps the worker lcores onto CPUs 1 and 0
//! (the EAL's `--lcores`) and `dataplane.idle_sleep_us` lets workers that
//! share a CPU hand it to each other. Its veth is one `net_af_packet`
//! device with one queue pair per worker (`qpairs=N`): the kernel spreads
//! flows over the queues by hash (PACKET_FANOUT), which plays the NIC's
//! RSS. So, in each test:
//!
//! - new connections land on every worker (each worker's own counters show
//!   traffic);
//! - NAT replies, whose tuple Sluice rewrote, land on any worker and are
//!   handed to the owner through the redirect ring (`redirected` > 0), and
//!   no flow is lost or split (`drop_no_conn` stays 0, every download's
//!   sha256 matches);
//! - DSR connections spread and the service's and backends' counters add
//!   up;
//! - L7: a client connection, its upstream connections and their replies
//!   meet on different workers and every request still succeeds;
//! - neighbor entries, health state and reloads (SIGHUP, drain by weight
//!   0) reach every worker; `/stats` sums the workers exactly and
//!   `/metrics` has one row per worker.
//!
//! Needs root, nginx, curl, wrk, python3, ethtool (`scripts/setup.sh`).
//! Each test builds and removes its own namespaces, processes and files
//! (guards, also on panic); every command is bounded in time. Tests take a
//! lock so that only one Sluice runs at a time in this process.
//!
//! The last test replays capture files through several workers at once
//! (`net_pcap` with one `rx_pcap` per queue) and checks properties that do
//! not depend on which worker handled what.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::lan::{dsr_decap, nginx, run, wait_until, Daemon, Lan, Ns, RemoveOnDrop};
use common::TempDir;

const LB_ADDR: &str = "10.50.0.1";
const LB_MAC: &str = "02:00:00:50:00:01";
const CLIENT_ADDR: &str = "10.50.0.2";
const VIP: &str = "10.50.0.100";
const URL: &str = "http://10.50.0.100/";
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "10.50.0.11"),
    ("b2", "10.50.0.12"),
    ("b3", "10.50.0.13"),
];
const ADMIN: &str = "127.0.0.1:9100";
/// Size of `/big`, random bytes, fetched with its sha256 checked.
const BIG_BYTES: usize = 4 << 20;
/// The CPU of each worker: 1, 0, 1, 0... (the main lcore is on CPU 0).
const CPUS: [u32; 4] = [1, 0, 1, 0];

/// Drop reasons that the background chatter of a shared segment produces
/// (see tests/l4_netns.rs). Any other `drop_*` counter must stay at zero.
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
enum Kind {
    Nat,
    Ipip,
    L7,
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

fn sha256_file(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The segment, backends and Sluice of one test. Fields drop in order:
/// processes first, then namespaces, then files.
struct World {
    sluice: Option<Daemon>,
    servers: Vec<Daemon>,
    file_prefix: String,
    _dpdk_dir: RemoveOnDrop,
    lan: Lan,
    kind: Kind,
    workers: usize,
    weights: [u32; 3],
    config: PathBuf,
    tag: String,
    starts: u32,
    big_sha: String,
    tmp: TempDir,
}

impl World {
    fn new(tag: &str, kind: Kind) -> World {
        let tmp = TempDir::new(&format!("mc-{tag}"));
        let prefix = format!("smc-{tag}-{}", std::process::id());
        let mut lan = Lan::new(&prefix);
        lan.attach("c", "c0", &[&format!("{CLIENT_ADDR}/24")]);
        // Source ports of the first phases; see `fresh_client_ports`.
        lan.host("c")
            .sysctl("net.ipv4.ip_local_port_range", "20000 44999");
        lan.attach("lb", "l0", &[]);
        for (name, addr) in BACKENDS {
            lan.attach(name, "eth0", &[&format!("{addr}/24")]);
        }
        let www = tmp.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        let big = www.join("big");
        let st = Command::new("sh")
            .args([
                "-c",
                &format!("head -c {BIG_BYTES} /dev/urandom > {}", big.display()),
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let big_sha = sha256_file(&big);
        let mut w = World {
            sluice: None,
            servers: Vec::new(),
            _dpdk_dir: RemoveOnDrop(PathBuf::from("/var/run/dpdk").join(&prefix)),
            file_prefix: prefix,
            lan,
            kind,
            workers: 2,
            weights: [1; 3],
            config: tmp.path().join("sluice.toml"),
            tag: tag.to_string(),
            starts: 0,
            big_sha,
            tmp,
        };
        for (name, addr) in BACKENDS {
            if kind == Kind::Ipip {
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

    /// From now on the client's connections use source ports none of the
    /// earlier ones used. Sluice keeps a closed flow's entry for a while
    /// and, by design, a new SYN on the same tuple reopens it on its old
    /// backend, drained or not: a test of where new connections go must
    /// not reuse a tuple.
    fn fresh_client_ports(&self) {
        self.client()
            .sysctl("net.ipv4.ip_local_port_range", "45000 60999");
    }

    fn client(&self) -> &Ns {
        self.lan.host("c")
    }

    fn lb(&self) -> &Ns {
        self.lan.host("lb")
    }

    /// nginx on port 80: `/` answers the backend's name, `/big` the random
    /// file, `/health` 200 unless the file `down` exists in its directory.
    fn start_nginx(&mut self, name: &str) {
        let dir = self.tmp.path().join(name);
        let d = dir.display();
        let server = format!(
            r#"        location = / {{ return 200 "{name}\n"; }}
        location = /health {{
            if (-f {d}/down) {{ return 503 "down\n"; }}
            return 200 "ok\n";
        }}
        location /big {{ }}"#
        );
        let http = "    default_type text/plain;\n    keepalive_requests 100000;";
        let www = self.tmp.path().join("www");
        let ns = self.lan.host(name);
        let nginx = nginx(ns, name, &dir, &www, http, &server);
        self.servers.push(nginx);
    }

    fn start_decap(&mut self, name: &str) {
        let log = self.tmp.path().join(format!("decap-{name}.log"));
        let d = dsr_decap(
            self.lan.host(name),
            name,
            "userspace-ipip",
            VIP,
            &[LB_ADDR],
            &log,
        );
        self.servers.push(d);
    }

    fn write_config(&self) {
        let n = self.workers;
        let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
        let workers = list(&mut (1..=n).map(|l| l.to_string()));
        let cpus = list(&mut CPUS[..n].iter().map(|c| c.to_string()));
        let mut cfg = format!(
            r#"# Written by tests/multicore.rs ({tag}).
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-shconf"]
file_prefix = "{file_prefix}"

[dataplane]
workers = [{workers}]
# More workers than this machine may have CPUs: for tests only.
worker_cpus = [{cpus}]
idle_sleep_us = 50
mbufs = 8191
mbuf_cache = 128

[admin]
listen = "{ADMIN}"

[conntrack]
max_flows = 65536

[[port]]
name = "p0"
vdev = "net_af_packet0,iface=l0,qpairs={n}{rings}"
mac = "{LB_MAC}"
addresses = ["{LB_ADDR}/24"]

[[cluster]]
name = "web"
"#,
            tag = self.tag,
            file_prefix = self.file_prefix,
            // Two workers: rings of 64 frames instead of 512, so that under
            // load the kernel's fanout moves busy flows to the other
            // worker's socket (PACKET_FANOUT_FLAG_ROLLOVER) and the test
            // goes through Sluice's hand-over of flows it does not own.
            rings = if n == 2 { ",framecnt=64" } else { "" },
        );
        if self.kind == Kind::L7 {
            // Worker 0 probes; every worker must avoid what it finds down.
            cfg += "balance = \"round-robin\"\n\n[cluster.health_check]\npath = \"/health\"\n\
                    interval_ms = 500\ntimeout_ms = 400\nrise = 1\nfall = 2\n";
        }
        for ((name, addr), weight) in BACKENDS.iter().zip(self.weights) {
            cfg += &format!(
                "\n[[cluster.backend]]\naddress = \"{addr}\"\nweight = {weight}\nname = \"{name}\"\n"
            );
            if self.kind == Kind::L7 {
                cfg += "port = 80\n";
            }
        }
        cfg += &match self.kind {
            Kind::L7 => format!(
                "\n[[listener]]\nname = \"http\"\naddress = \"{VIP}\"\nport = 80\ningress = \"p0\"\n\
                 default_cluster = \"web\"\nmax_connections = 1024\nmax_half_open = 512\n"
            ),
            k => format!(
                "\n[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nmode = \"{}\"\n\
                 cluster = \"web\"\ningress = \"p0\"\n",
                if k == Kind::Nat { "nat" } else { "ipip" }
            ),
        };
        std::fs::write(&self.config, cfg).unwrap();
    }

    fn sluice_log(&self) -> String {
        self.sluice.as_ref().map(|d| d.log()).unwrap_or_default()
    }

    /// Start Sluice with `workers` workers and wait until it answers ping
    /// and serves a first request for the VIP.
    fn start_sluice(&mut self, workers: usize) {
        assert!(self.sluice.is_none(), "Sluice is already running");
        self.workers = workers;
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
        let lcores = format!("--lcores 0@0,{}", {
            let v: Vec<_> = (1..=workers)
                .map(|l| format!("{l}@{}", CPUS[l - 1]))
                .collect();
            v.join(",")
        });
        assert!(
            check.success() && check.stdout().contains(&lcores),
            "sluice check on {cfg} (want {lcores:?} in its EAL line):\n{}",
            check.text()
        );
        self.starts += 1;
        let log = self.tmp.path().join(format!("sluice-{}.log", self.starts));
        let cmd = self
            .lb()
            .cmd(&[env!("CARGO_BIN_EXE_sluice"), "run", "--config", &cfg]);
        let mut sluice = Daemon::spawn("sluice", cmd, &log);
        let client = self.client();
        let answered = wait_until(secs(30), || {
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
            "Sluice ({workers} workers) did not come up: {}\n--- sluice log\n{}",
            if alive { "no echo reply" } else { "it exited" },
            self.sluice_log()
        );
        let mut last = None;
        let served = wait_until(secs(15), || {
            let f = run(
                self.client().cmd(&[
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
            "no request to {URL} succeeded through Sluice ({workers} workers)\n{}\n{}",
            last.map(|f| f.text()).unwrap_or_default(),
            self.diag()
        );
    }

    fn stop_sluice(&mut self) {
        let mut s = self.sluice.take().expect("Sluice is not running");
        let st = s.stop(secs(10));
        let log = s.log();
        assert!(
            st.is_some_and(|st| st.success()) && log.contains("stopped after"),
            "Sluice did not exit cleanly on SIGTERM: {st:?}\n{}",
            tail(&log, 40)
        );
    }

    fn admin_get(&self, json: bool) -> Result<String, String> {
        let mut args = vec![env!("CARGO_BIN_EXE_sluice"), "stats", "--admin", ADMIN];
        if json {
            args.push("--json");
        }
        let f = run(self.lb().cmd(&args), secs(10));
        if f.success() {
            Ok(f.stdout())
        } else {
            Err(format!("sluice stats failed\n{}", f.text()))
        }
    }

    fn stats(&self) -> serde_json::Value {
        let text = self
            .admin_get(true)
            .unwrap_or_else(|e| panic!("{e}\n--- sluice log\n{}", tail(&self.sluice_log(), 40)));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("/stats: not JSON: {e}\n{text}"))
    }

    /// Non-zero totals, per-worker packets, services and backends.
    fn diag(&self) -> String {
        let v = match self.admin_get(true) {
            Ok(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap_or_default(),
            Err(e) => return format!("{e}\n--- sluice log\n{}", tail(&self.sluice_log(), 40)),
        };
        let nonzero: BTreeMap<_, _> = v["counters"]
            .as_object()
            .map(|m| m.iter().filter(|(_, v)| v.as_u64() != Some(0)).collect())
            .unwrap_or_default();
        format!(
            "--- counters\n{nonzero:?}\n--- per worker rx: {:?}\n--- services\n{}\n--- backends\n{}\n--- sluice log (tail)\n{}",
            per_worker(&v, "rx_packets"),
            v["services"],
            v["backends"],
            tail(&self.sluice_log(), 30)
        )
    }

    /// `n` requests for `/`, each on a new connection, all of which must
    /// succeed; the number each backend answered.
    fn spread(&self, n: usize) -> BTreeMap<String, usize> {
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
            "::%{http_code} %{num_connects}\n",
        ];
        args.extend(std::iter::repeat_n(URL, n));
        let f = run(self.client().cmd(&args), secs(60));
        let mut tally = BTreeMap::new();
        let mut ok = 0;
        let mut body = String::new();
        for line in f.stdout().lines() {
            match line.split_once("::") {
                None => body = line.to_string(),
                Some((before, w)) => {
                    if !before.is_empty() {
                        body = before.to_string();
                    }
                    if w.starts_with("200 1") {
                        ok += 1;
                        *tally.entry(std::mem::take(&mut body)).or_insert(0) += 1;
                    }
                }
            }
        }
        assert!(
            f.success() && ok == n,
            "{n} requests on new connections: {ok} answered\n{}\n{}",
            f.text(),
            self.diag()
        );
        eprintln!("[{}] {n} connections answered by {tally:?}", self.tag);
        tally
    }

    /// wrk with `conns` connections for 3 s: no socket error, no non-2xx.
    fn wrk(&self, conns: usize) -> u64 {
        let c = format!("-c{conns}");
        let f = run(
            self.client()
                .cmd(&["wrk", "-t2", &c, "-d3s", "--timeout", "3s", URL]),
            secs(30),
        );
        let (requests, errors, non2xx) = parse_wrk(&f.stdout());
        eprintln!(
            "[{}] wrk {c}: {requests} requests, errors {errors:?}, non-2xx {non2xx}",
            self.tag
        );
        assert!(
            f.success() && requests > 0 && errors.is_none() && non2xx == 0,
            "wrk {c} through Sluice: {requests} requests, socket errors {errors:?}, non-2xx {non2xx}\n{}\n{}",
            f.text(),
            self.diag()
        );
        requests
    }

    /// `n` downloads of `/big` at once, on connections that land on
    /// whatever worker; each must arrive whole (sha256).
    fn downloads(&self, n: usize) {
        let outs: Vec<PathBuf> = (0..n)
            .map(|i| self.tmp.path().join(format!("big-{i}")))
            .collect();
        let mut script = String::new();
        for (i, o) in outs.iter().enumerate() {
            script += &format!(
                "(curl -sS --connect-timeout 3 --max-time 40 -o {} http://{VIP}/big; echo \"big-{i} exit $?\") & ",
                o.display()
            );
        }
        script += "wait";
        let f = run(self.client().cmd(&["sh", "-c", &script]), secs(50));
        for (i, o) in outs.iter().enumerate() {
            let sum = sha256_file(o);
            assert!(
                f.stdout().contains(&format!("big-{i} exit 0")) && sum == self.big_sha,
                "download to {}: sha256 {sum:?}, want {}\n{}\n{}",
                o.display(),
                self.big_sha,
                f.text(),
                self.diag()
            );
            let _ = std::fs::remove_file(o);
        }
    }

    /// Per-worker rows of `/stats` add up to its totals, and `/metrics`
    /// has one row per worker for each counter (checked on `rx_packets`
    /// and `redirected`). Background packets may arrive between two
    /// reads, so a mismatch is retried a few times.
    fn assert_counters_add_up(&self) {
        let mut last = String::new();
        let ok = wait_until(secs(3), || {
            let v = self.stats();
            let workers = v["workers"].as_array().expect("workers array");
            if workers.len() != self.workers {
                last = format!("{} worker rows, want {}", workers.len(), self.workers);
                return false;
            }
            for (k, total) in v["counters"].as_object().unwrap() {
                let sum: u64 = workers.iter().map(|w| w[k].as_u64().unwrap()).sum();
                if Some(sum) != total.as_u64() {
                    last = format!("{k}: workers sum to {sum}, total {total}");
                    return false;
                }
            }
            let metrics = match self.admin_get(false) {
                Ok(m) => m,
                Err(e) => {
                    last = e;
                    return false;
                }
            };
            for name in ["rx_packets", "redirected"] {
                let rows: Vec<u64> = (0..self.workers)
                    .filter_map(|i| {
                        let prefix = format!("sluice_{name}_total{{worker=\"{i}\"}} ");
                        metrics
                            .lines()
                            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                    })
                    .collect();
                if rows.len() != self.workers {
                    last = format!(
                        "/metrics: {} rows of {name}, want one per worker",
                        rows.len()
                    );
                    return false;
                }
            }
            true
        });
        assert!(ok, "counters do not add up: {last}\n{}", self.diag());
    }

    /// Every worker received at least `min` packets since `before` (a
    /// `/stats` taken earlier, or None for since start).
    fn assert_every_worker_busy(&self, before: Option<&serde_json::Value>, min: u64) {
        let v = self.stats();
        let now = per_worker(&v, "rx_packets");
        let then = before.map_or(vec![0; now.len()], |b| per_worker(b, "rx_packets"));
        let got: Vec<u64> = now.iter().zip(&then).map(|(a, b)| a - b).collect();
        eprintln!("[{}] packets per worker: {got:?}", self.tag);
        assert!(
            got.len() == self.workers && got.iter().all(|&g| g >= min),
            "every worker should have received at least {min} packets: {got:?}\n{}",
            self.diag()
        );
    }

    /// Every worker has learned its neighbors: the backends' and the
    /// client's entries, whichever worker the ARP replies reached.
    fn assert_every_worker_learned(&self) {
        let v = self.stats();
        let learned = per_worker(&v, "neighbor_learned");
        assert!(
            learned.iter().all(|&n| n >= 4),
            "every worker knows the client and the three backends: {learned:?}\n{}",
            self.diag()
        );
    }

    /// The counters of the hand-overs between workers, and the drops.
    fn print_counters(&self) {
        let v = self.stats();
        let c: BTreeMap<_, _> = v["counters"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| {
                (k.starts_with("drop_")
                    || ["redirected", "passed_on", "l4_returned", "l4_stateless"]
                        .contains(&k.as_str()))
                    && v.as_u64() != Some(0)
            })
            .collect();
        eprintln!(
            "[{}] {c:?}; redirected per worker {:?}; port {}",
            self.tag,
            per_worker(&v, "redirected"),
            v["ports"]["p0"]
        );
    }

    fn assert_no_unexpected_drops(&self) {
        let v = self.stats();
        // wrk stops with requests in flight: Sluice aborts those sessions
        // (`l7_client_aborts`), and a health check may time out under
        // load (`health_checks_failed`); a late segment of either then finds
        // no connection and is answered with a RST, as with one worker.
        // The small rings of the two-worker runs also overflow (the kernel
        // drops, af_packet does not count it), and segments retransmitted
        // after a connection ended meet the same fate: there any number is
        // allowed, while every request must still succeed.
        let aborted = if self.workers == 2 {
            u64::MAX / 8
        } else {
            counter(&v, "l7_client_aborts") + counter(&v, "health_checks_failed")
        };
        let bad: Vec<_> = v["counters"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| {
                k.starts_with("drop_")
                    && !BACKGROUND_DROPS.contains(&k.as_str())
                    && !(k.as_str() == "drop_l7_no_conn" && v.as_u64() <= Some(4 * aborted))
                    && v.as_u64() != Some(0)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(bad.is_empty(), "unexpected drops: {bad:?}\n{}", self.diag());
    }

    /// Rewrite the config with the current weights, SIGHUP, wait for it.
    fn reload(&mut self) {
        self.write_config();
        let s = self.sluice.as_ref().expect("Sluice is not running");
        let before = s.log().matches("reloaded:").count();
        s.signal("HUP");
        let mut log = String::new();
        let done = wait_until(secs(10), || {
            log = self.sluice_log();
            log.matches("reloaded:").count() > before || log.contains("reload rejected")
        });
        assert!(
            done && !log.contains("reload rejected"),
            "Sluice did not apply the reload\n{}",
            tail(&log, 20)
        );
        // Workers take the new plane up between bursts.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn per_worker(v: &serde_json::Value, name: &str) -> Vec<u64> {
    v["workers"]
        .as_array()
        .map(|ws| ws.iter().map(|w| w[name].as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}"))
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

/// Every backend answered at least `min`.
fn assert_spread(tally: &BTreeMap<String, usize>, min: usize, skip: Option<&str>) {
    for (name, _) in BACKENDS {
        if Some(name) == skip {
            continue;
        }
        let got = tally.get(name).copied().unwrap_or(0);
        assert!(
            got >= min,
            "backend {name} answered {got} (< {min}): {tally:?}"
        );
    }
}

/// The L4 service's connections equal the sum of its backends'.
fn assert_l4_counters_consistent(w: &World) {
    let v = w.stats();
    let svc = v["services"]["web"]["connections"].as_u64().unwrap();
    let be: u64 = BACKENDS
        .iter()
        .map(|(n, _)| {
            v["backends"][format!("web/{n}")]["connections"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(svc, be, "service connections vs backends'\n{}", w.diag());
}

/// The common part of the L4 tests, at `workers` workers.
fn l4_round(w: &mut World, workers: usize) {
    let t = Instant::now();
    w.start_sluice(workers);
    let before = w.stats();
    // 48 connections, spread by the kernel's flow hash over the queues: a
    // worker without any has probability below 1e-5 at four workers.
    let tally = w.spread(48);
    assert_spread(&tally, 3, None);
    w.assert_every_worker_busy(Some(&before), 5);
    w.wrk(64);
    w.downloads(4);
    w.assert_every_worker_learned();
    w.assert_counters_add_up();
    assert_l4_counters_consistent(w);
    let v = w.stats();
    match w.kind {
        // Replies come back to Sluice's address on whatever queue the
        // kernel hashes them to; those of another worker's slice go
        // through its redirect ring.
        Kind::Nat => assert!(
            counter(&v, "redirected") > 0 && counter(&v, "l4_returned") > 0,
            "NAT replies must reach their owners through the redirect ring\n{}",
            w.diag()
        ),
        // DSR: no replies come through Sluice, and every client packet
        // goes to its flow's backend once (a packet handed between workers
        // included).
        _ => {
            let svc = v["services"]["web"]["packets"].as_u64().unwrap();
            let be: u64 = BACKENDS
                .iter()
                .map(|(n, _)| {
                    v["backends"][format!("web/{n}")]["packets"]
                        .as_u64()
                        .unwrap()
                })
                .sum();
            assert_eq!(svc, be, "service packets vs backends'\n{}", w.diag());
        }
    }
    w.assert_no_unexpected_drops();
    w.print_counters();
    eprintln!("[{}] {workers} workers: {:?}", w.tag, t.elapsed());
}

#[test]
fn nat_with_two_and_four_workers() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("nat", Kind::Nat);
    l4_round(&mut w, 2);
    w.stop_sluice();
    l4_round(&mut w, 4);

    // A reload reaches every worker: with b3 drained, no worker sends it a
    // new connection, while every worker takes some.
    w.weights[2] = 0;
    w.reload();
    w.fresh_client_ports();
    let before = w.stats();
    let tally = w.spread(48);
    assert!(
        !tally.contains_key("b3"),
        "drained b3 got connections: {tally:?}"
    );
    assert_spread(&tally, 3, Some("b3"));
    w.assert_every_worker_busy(Some(&before), 5);
    w.assert_no_unexpected_drops();
    w.stop_sluice();
    eprintln!("[nat] took {:?}", started.elapsed());
}

#[test]
fn dsr_ipip_with_two_and_four_workers() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("dsr", Kind::Ipip);
    l4_round(&mut w, 2);
    w.stop_sluice();
    l4_round(&mut w, 4);
    w.stop_sluice();
    eprintln!("[dsr] took {:?}", started.elapsed());
}

fn l7_round(w: &mut World, workers: usize) {
    let t = Instant::now();
    w.start_sluice(workers);
    let before = w.stats();
    // Round robin per request: every backend gets a third.
    let tally = w.spread(48);
    assert_spread(&tally, 12, None);
    w.assert_every_worker_busy(Some(&before), 5);
    w.wrk(64);
    w.downloads(4);
    w.assert_counters_add_up();
    let v = w.stats();
    assert!(
        counter(&v, "redirected") > 0,
        "upstream replies must reach the worker that opened the connection\n{}",
        w.diag()
    );
    assert_eq!(
        counter(&v, "l7_local_5xx") + counter(&v, "l7_upstream_connect_failed"),
        0,
        "{}",
        w.diag()
    );
    w.assert_no_unexpected_drops();
    w.print_counters();
    eprintln!("[{}] {workers} workers: {:?}", w.tag, t.elapsed());
}

#[test]
fn l7_with_two_and_four_workers() {
    let _serial = serial();
    let started = Instant::now();
    let mut w = World::new("l7", Kind::L7);
    l7_round(&mut w, 2);
    w.stop_sluice();
    l7_round(&mut w, 4);

    // Health state reaches every worker: worker 0 probes, and once b3
    // fails its checks no worker sends it a request.
    std::fs::write(w.tmp.path().join("b3").join("down"), "").unwrap();
    let down = wait_until(secs(5), || w.stats()["backends"]["web/b3"]["up"] == false);
    assert!(down, "b3 should be marked down\n{}", w.diag());
    let before = w.stats();
    let tally = w.spread(48);
    assert!(
        !tally.contains_key("b3"),
        "b3 is down but got requests: {tally:?}"
    );
    w.assert_every_worker_busy(Some(&before), 5);
    w.stop_sluice();
    eprintln!("[l7] took {:?}", started.elapsed());
}

// ---------------------------------------------------------------- pcap replay

/// Internet checksum (RFC 1071) of `data`, starting from `sum`.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const PCAP_LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PCAP_PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PCAP_NAT_VIP: [u8; 4] = [10, 0, 0, 100];
const PCAP_DSR_VIP: [u8; 4] = [10, 0, 0, 101];
const PCAP_LB: [u8; 4] = [10, 0, 0, 1];
const PCAP_BACKENDS: [[u8; 4]; 3] = [[10, 0, 0, 11], [10, 0, 0, 12], [10, 0, 0, 13]];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;
const SYN_ACK: u8 = 0x12;

/// An Ethernet frame to Sluice holding IPv4 + TCP with valid checksums;
/// the IP identification carries `id` (NAT and DSR leave it alone).
fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, id: u16) -> Vec<u8> {
    let payload: &[u8] = if flags == PSH_ACK {
        b"GET / HTTP/1.1\r\n\r\n"
    } else {
        b""
    };
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    let c = csum(&pseudo, 0);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&PCAP_LB_MAC);
    f.extend_from_slice(&PCAP_PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    // Version 2.4 is two u16s: fix the order written above.
    b[4..8].copy_from_slice(&[2, 0, 4, 0]);
    for (i, f) in frames.iter().enumerate() {
        for v in [1_700_000_000u32, i as u32, f.len() as u32, f.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

/// One flow of the replay: the client address and port, the VIP, the
/// queue its SYN arrives on and the queue of its later packets.
struct PcapFlow {
    id: u16,
    client: [u8; 4],
    sport: u16,
    vip: [u8; 4],
    syn_queue: usize,
    rest_queue: usize,
}

/// The worker whose SNAT slice holds `port` (as `l4::snat` slices
/// 1024..=65535).
fn snat_owner(port: u16, workers: usize) -> usize {
    (usize::from(port) - 1024) / ((65536 - 1024) / workers)
}

fn replay_on(workers: usize) {
    let tmp = TempDir::new(&format!("mc-pcap{workers}"));
    let prefix = format!("smc-pcap{workers}-{}", std::process::id());
    let _dpdk_dir = RemoveOnDrop(PathBuf::from("/var/run/dpdk").join(&prefix));
    // 96 TCP flows from 12 clients, half to a NAT VIP and half to an IPIP
    // VIP, round robin over the queues as RSS would spread them. Every
    // third DSR flow has its packets after the SYN on the next queue, as
    // af_packet's fanout does to a busy flow: whichever worker sees them,
    // and in whatever order, they reach the flow's backend.
    let flows: Vec<PcapFlow> = (0..96u16)
        .map(|i| {
            let dsr = i % 2 == 1;
            let q = usize::from(i) % workers;
            PcapFlow {
                id: i + 1,
                client: [10, 0, 0, 20 + (i % 12) as u8],
                sport: 30000 + i,
                vip: if dsr { PCAP_DSR_VIP } else { PCAP_NAT_VIP },
                syn_queue: q,
                rest_queue: if dsr && i % 3 == 0 {
                    (q + 1) % workers
                } else {
                    q
                },
            }
        })
        .collect();
    let mut queues: Vec<Vec<Vec<u8>>> = vec![Vec::new(); workers];
    for step in 0..4 {
        for f in &flows {
            let (flags, q) = match step {
                0 => (SYN, f.syn_queue),
                1 => (ACK, f.rest_queue),
                2 => (PSH_ACK, f.rest_queue),
                _ => (FIN_ACK, f.rest_queue),
            };
            queues[q].push(tcp_frame(f.client, f.vip, f.sport, 80, flags, f.id));
        }
    }
    // Backends' packets to SNAT ports of each worker's slice, arriving on
    // every queue: no connection has them, so each is handed to the
    // slice's owner (when that is not the receiver) and dropped there once.
    let mut returns = 0;
    let mut foreign = 0;
    for (q, queue) in queues.iter_mut().enumerate() {
        for owner in 0..workers {
            let port = (1024 + owner * ((65536 - 1024) / workers) + 7) as u16;
            queue.push(tcp_frame(PCAP_BACKENDS[0], PCAP_LB, 80, port, SYN_ACK, 0));
            returns += 1;
            foreign += usize::from(owner != q);
        }
    }
    let inputs = queues.iter().map(Vec::len).sum::<usize>();

    let mut rx = String::new();
    let mut tx = String::new();
    for (q, frames) in queues.iter().enumerate() {
        let p = tmp.path().join(format!("in{q}.pcap"));
        write_pcap(&p, frames);
        rx += &format!(",rx_pcap={}", p.display());
        tx += &format!(
            ",tx_pcap={}",
            tmp.path().join(format!("out{q}.pcap")).display()
        );
    }
    let list = |v: Vec<String>| v.join(", ");
    let config = format!(
        r#"[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "{prefix}"

[dataplane]
workers = [{workers_list}]
worker_cpus = [{cpus}]
idle_sleep_us = 50
mbufs = 2047
mbuf_cache = 64
rx_desc = 256
tx_desc = 256

[conntrack]
max_flows = 4096

[admin]
enabled = false

[[port]]
name = "p0"
vdev = "net_pcap0,rx_pcap=/dev/null"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/24"]

[[neighbor]]
ip = "10.0.0.11"
mac = "02:00:00:00:00:11"
port = "p0"

[[neighbor]]
ip = "10.0.0.12"
mac = "02:00:00:00:00:12"
port = "p0"

[[neighbor]]
ip = "10.0.0.13"
mac = "02:00:00:00:00:13"
port = "p0"

[[cluster]]
name = "web"
[[cluster.backend]]
address = "10.0.0.11"
[[cluster.backend]]
address = "10.0.0.12"
[[cluster.backend]]
address = "10.0.0.13"

[[service]]
name = "nat"
vip = "10.0.0.100"
port = 80
mode = "nat"
cluster = "web"
ingress = "p0"

[[service]]
name = "dsr"
vip = "10.0.0.101"
port = 80
mode = "ipip"
cluster = "web"
ingress = "p0"
"#,
        workers_list = list((1..=workers).map(|l| l.to_string()).collect()),
        cpus = list(CPUS[..workers].iter().map(|c| c.to_string()).collect()),
    );
    let cfg = tmp.path().join("sluice.toml");
    std::fs::write(&cfg, config).unwrap();
    let stats = tmp.path().join("stats.json");
    let dev = format!("p0=net_pcap0{rx}{tx}");
    let o = run(
        {
            let mut c = common::sluice();
            c.args(["run", "--config", cfg.to_str().unwrap()])
                .args([
                    "--port-device",
                    &dev,
                    "--exit-on-idle",
                    "500",
                    "--stats-out",
                ])
                .arg(&stats);
            c
        },
        secs(60),
    );
    assert!(
        o.success(),
        "sluice run on {workers} pcap queues\n{}",
        o.text()
    );

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let n = |k: &str| counter(&v, k);
    let per = per_worker(&v, "rx_packets");
    eprintln!(
        "[pcap {workers}] packets per worker {per:?}, redirected {}, passed on {}",
        n("redirected"),
        n("passed_on")
    );
    assert!(
        per.len() == workers && per.iter().all(|&p| p > 0),
        "every worker read its queue: {per:?}"
    );
    // Every packet counted once, whichever workers it went through.
    assert_eq!(n("rx_packets") as usize, inputs, "rx_packets");
    let drops: u64 = v["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("drop_"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        n("rx_packets"),
        drops + n("l4_forwarded") + n("l4_stateless"),
        "rx_packets == drops + forwarded\n{v:#}"
    );
    assert_eq!(
        n("drop_no_conn") as usize,
        returns,
        "each stray reply dropped once\n{v:#}"
    );
    assert_eq!(
        n("redirected") as usize,
        foreign,
        "stray replies handed to their slice's owner"
    );
    assert_eq!(
        (n("l4_forwarded") + n("l4_stateless")) as usize,
        flows.len() * 4,
        "every flow's four packets forwarded\n{v:#}"
    );

    // One backend per flow, whichever worker forwarded which packet: NAT
    // flows by their IP identification behind one SNAT port in the slice
    // of the worker that saw the SYN; DSR flows by the inner packet.
    let mut seen: BTreeMap<u16, BTreeSet<([u8; 4], u16)>> = BTreeMap::new();
    let mut out_packets = 0;
    for q in 0..workers {
        for f in common::read_pcap(&tmp.path().join(format!("out{q}.pcap"))) {
            out_packets += 1;
            let ip = &f[14..];
            let dst: [u8; 4] = ip[16..20].try_into().unwrap();
            let (id, sport) = if ip[9] == 4 {
                let inner = &ip[20..];
                (u16::from_be_bytes([inner[4], inner[5]]), 0)
            } else {
                assert_eq!(ip[9], 6, "TCP out");
                assert_eq!(&ip[12..16], &PCAP_LB, "NAT source");
                (
                    u16::from_be_bytes([ip[4], ip[5]]),
                    u16::from_be_bytes([ip[20], ip[21]]),
                )
            };
            seen.entry(id).or_default().insert((dst, sport));
        }
    }
    assert_eq!(out_packets, flows.len() * 4, "packets out");
    let mut snat_ports = BTreeSet::new();
    for f in &flows {
        let s = seen.get(&f.id).cloned().unwrap_or_default();
        assert_eq!(
            s.len(),
            1,
            "flow {} reached {s:?}: one backend (and SNAT port) per flow",
            f.id
        );
        let (backend, sport) = *s.iter().next().unwrap();
        assert!(
            PCAP_BACKENDS.contains(&backend),
            "flow {} to {backend:?}",
            f.id
        );
        if f.vip == PCAP_NAT_VIP {
            assert!(
                snat_ports.insert(sport),
                "SNAT port {sport} given to two flows"
            );
            assert_eq!(
                snat_owner(sport, workers),
                f.syn_queue,
                "flow {}: SNAT port {sport} is from the slice of the worker that saw its SYN",
                f.id
            );
        }
    }
}

#[test]
fn pcap_replay_on_two_and_four_queues() {
    let _serial = serial();
    let started = Instant::now();
    replay_on(2);
    replay_on(4);
    eprintln!("[pcap] took {:?}", started.elapsed());
}
