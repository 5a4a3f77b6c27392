//! Sluice on `net_af_packet`, and on `net_af_xdp`, over a veth pair into a
//! client namespace: the kernel's own ping, arping and neighbor discovery
//! must reach Sluice's addresses, IPv4 and IPv6. Needs root (network namespaces); everything the
//! test creates is removed on drop, also when an assertion fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Two namespaces joined by a veth pair; Sluice runs in `lb` on its end.
struct Topology {
    client: String,
    lb: String,
    sluice: Option<Child>,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn in_ns(ns: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .expect("ip netns exec")
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let id = std::process::id() % 100000;
        let t = Topology {
            client: format!("slc-{tag}-{id}"),
            lb: format!("sll-{tag}-{id}"),
            sluice: None,
        };
        ip(&["netns", "add", &t.client]);
        ip(&["netns", "add", &t.lb]);
        ip(&[
            "link", "add", "c0", "netns", &t.client, "type", "veth", "peer", "l0", "netns", &t.lb,
        ]);
        for (ns, dev) in [(&t.client, "c0"), (&t.lb, "l0")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            // Kernel TCP/UDP must not hand DPDK partial checksums.
            let _ = in_ns(ns, &["ethtool", "-K", dev, "tx", "off"]);
        }
        // The lb side's kernel must stay out of the way: no addresses, no IPv6.
        let _ = in_ns(&t.lb, &["sysctl", "-qw", "net.ipv6.conf.l0.disable_ipv6=1"]);
        ip(&["-n", &t.client, "addr", "add", "10.99.0.2/24", "dev", "c0"]);
        ip(&[
            "-n",
            &t.client,
            "addr",
            "add",
            "fd00:99::2/64",
            "dev",
            "c0",
            "nodad",
        ]);
        t
    }

    fn start_sluice(&mut self, config: &std::path::Path) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.lb,
                env!("CARGO_BIN_EXE_sluice"),
                "run",
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        self.sluice = Some(child);
    }

    /// Stop Sluice with SIGTERM and return its stderr.
    fn stop_sluice(&mut self) -> String {
        let Some(mut c) = self.sluice.take() else {
            return String::new();
        };
        unsafe_free_kill(c.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// SIGTERM through the `kill` command (the crate forbids unsafe code, and
/// `ip netns exec` execs sluice in place, so the pid is Sluice's own).
fn unsafe_free_kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Removes DPDK's runtime directory of one file prefix on drop.
struct RuntimeDir(std::path::PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut c) = self.sluice.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.lb]).status();
    }
}

const CONFIG: &str = r#"
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf"]
file_prefix = "FILE_PREFIX"

[dataplane]
workers = [1]
mbufs = MBUFS
mbuf_cache = 0

[admin]
listen = "127.0.0.1:9100"

[[port]]
name = "l0"
vdev = "VDEV"
mac = "02:00:00:99:00:01"
addresses = ["10.99.0.1/24", "fd00:99::1/64"]
"#;

fn wait_until<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn kernel_ping_arping_and_ndp_reach_sluice() {
    ping_arping_ndp("ping", "net_af_packet0,iface=l0", 2048);
}

/// The same over `net_af_xdp` (copy mode on a veth). Its fill ring takes
/// 2048 mbufs of the pool, hence the larger pool.
#[test]
fn kernel_ping_arping_and_ndp_reach_sluice_over_af_xdp() {
    ping_arping_ndp("xdp", "net_af_xdp0,iface=l0", 4095);
}

/// One busy-polling Sluice at a time: both would poll on lcore 1.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ping_arping_ndp(tag: &str, vdev: &str, mbufs: u32) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new(&format!("netns-{tag}"));
    let cfg = tmp.path().join("sluice.toml");
    let prefix = format!("sluice-netns-{tag}-{}", std::process::id());
    let text = CONFIG
        .replace("FILE_PREFIX", &prefix)
        .replace("VDEV", vdev)
        .replace("MBUFS", &mbufs.to_string());
    std::fs::write(&cfg, text).unwrap();
    // DPDK leaves its runtime directory behind even with --no-shconf.
    let _runtime = RuntimeDir(std::path::PathBuf::from("/var/run/dpdk").join(&prefix));
    let mut t = Topology::new(tag);
    t.start_sluice(&cfg);
    let client = t.client.clone();

    // Sluice is up once it answers; the first pings may race its start.
    wait_until("the first IPv4 echo reply", 20, || {
        in_ns(&client, &["ping", "-c", "1", "-W", "1", "10.99.0.1"])
            .status
            .success()
    });
    let o = in_ns(
        &client,
        &["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.99.0.1"],
    );
    assert!(o.status.success(), "ping 10.99.0.1\n{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("5 received"),
        "{}",
        output_text(&o)
    );

    let o = in_ns(
        &client,
        &["arping", "-c", "3", "-w", "5", "-I", "c0", "10.99.0.1"],
    );
    assert!(o.status.success(), "arping\n{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .to_lowercase()
            .contains("02:00:00:99:00:01"),
        "arping names Sluice's MAC\n{}",
        output_text(&o)
    );

    let o = in_ns(
        &client,
        &[
            "ping",
            "-6",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "fd00:99::1",
        ],
    );
    assert!(o.status.success(), "ping fd00:99::1\n{}", output_text(&o));

    // The kernel resolved both addresses to Sluice's MAC by ARP and NDP.
    let o = in_ns(&client, &["ip", "neigh", "show", "dev", "c0"]);
    let neigh = String::from_utf8_lossy(&o.stdout).to_lowercase();
    for addr in ["10.99.0.1 ", "fd00:99::1 "] {
        let line = neigh
            .lines()
            .find(|l| l.starts_with(addr))
            .unwrap_or_else(|| panic!("no neighbor entry for {addr}: {neigh}"));
        assert!(line.contains("02:00:00:99:00:01"), "{line}");
    }

    // Counters through the admin endpoint, read with the CLI.
    let lb = t.lb.clone();
    let all_stats = || {
        let o = in_ns(
            &lb,
            &[
                env!("CARGO_BIN_EXE_sluice"),
                "stats",
                "--admin",
                "127.0.0.1:9100",
                "--json",
            ],
        );
        assert!(o.status.success(), "sluice stats\n{}", output_text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let stats = || all_stats()["counters"].clone();
    let c = stats();
    assert!(c["echo_replies"].as_u64().unwrap() >= 11, "{c}");
    assert!(c["arp_replies"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["ndp_adverts"].as_u64().unwrap() >= 1, "{c}");

    // Busy time counts the iterations that had work (the pings above),
    // not the polling of empty queues: over a quiet second the worker,
    // which busy-polls, adds far less than a second.
    let busy = |c: &serde_json::Value| c["busy_ns"].as_u64().unwrap();
    let before = busy(&c);
    assert!(before > 0, "busy_ns after 15 answered packets: {c}");
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let quiet = busy(&stats()) - before;
    let wall = t0.elapsed().as_nanos() as u64;
    assert!(
        quiet < wall / 4,
        "busy_ns grew by {quiet} ns over {wall} ns with no traffic"
    );

    // Every mbuf comes back. With no per-lcore cache (CONFIG) each mbuf
    // passes through the pool's ring in turn, so a flood of echoes uses
    // every mbuf of the pool, and the pool holds as many free ones after it
    // as before. (The layout net_af_xdp needs, every mbuf inside the memory
    // it registers with the kernel, is checked directly by the unit test
    // `a_packed_pool_lies_within_the_af_xdp_umem`; this is the end-to-end
    // check that nothing on the path keeps an mbuf.)
    let available = || all_stats()["mbufs"][0]["available"].as_u64().unwrap();
    let before = available();
    let o = in_ns(
        &client,
        &[
            "ping",
            "-f",
            "-c",
            "6000",
            "-s",
            "1400",
            "-w",
            "30",
            "10.99.0.1",
        ],
    );
    assert!(o.status.success(), "flood ping\n{}", output_text(&o));
    // A sent reply's mbuf returns when the next send collects completions.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = available();
    while after + 32 < before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = available();
    }
    assert!(
        after + 32 >= before && after <= mbufs as u64,
        "free mbufs of {mbufs}: {before} before the flood, {after} after"
    );

    let err = t.stop_sluice();
    assert!(
        err.contains("stopped after"),
        "clean shutdown on SIGTERM\n{err}"
    );
}
