//! Network-namespace building blocks for tests that need a whole L2
//! segment: namespaces, a bridge joining them, long-running processes inside
//! them, and commands that cannot outlive their time budget.
//!
//! Every resource is a guard that removes what it created on drop, also
//! while a failed assertion unwinds: a [`Daemon`] is killed, an [`Ns`] (and
//! with it every interface inside) is deleted. Declare daemons after the
//! [`Lan`] they run in, so that they are dropped (killed) before their
//! namespaces go away. Needs root.
//!
//! `ip netns exec NS CMD` execs `CMD` in place, so the pid of a spawned
//! `ip netns exec` is the pid of `CMD` itself: signals reach the program,
//! not a wrapper.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `ip ARGS` (in the test's own namespace) and insist that it succeeds.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A network namespace, deleted on drop.
pub struct Ns(String);

impl Ns {
    pub fn new(name: &str) -> Ns {
        ip(&["netns", "add", name]);
        let ns = Ns(name.to_string());
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `CMD` to be run inside the namespace.
    pub fn cmd(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(cmd);
        c
    }

    /// Run a short command (ip, sysctl, ethtool) inside and insist that it
    /// succeeds. Not for anything that talks to the network: see [`run`].
    pub fn ok(&self, cmd: &[&str]) -> Output {
        let o = self.cmd(cmd).output().expect("ip netns exec");
        assert!(
            o.status.success(),
            "in {}: {}\n{}",
            self.0,
            cmd.join(" "),
            super::output_text(&o)
        );
        o
    }

    /// Set a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.ok(&["sysctl", "-qw", &format!("{key}={value}")]);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// One Ethernet segment: bridge `br0` in namespace `{prefix}-sw`, and one
/// namespace per host, `{prefix}-{role}`, each with one veth whose other end
/// (`p{role}`) is a port of the bridge. IPv6 is off on the bridge and its
/// ports, so the switch itself stays silent.
pub struct Lan {
    prefix: String,
    /// Dropped before `sw`: hosts' veths vanish with their namespaces.
    hosts: Vec<(String, Ns)>,
    sw: Ns,
}

impl Lan {
    pub fn new(prefix: &str) -> Lan {
        let sw = Ns::new(&format!("{prefix}-sw"));
        sw.ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        sw.sysctl("net.ipv6.conf.br0.disable_ipv6", "1");
        sw.ok(&["ip", "link", "set", "br0", "up"]);
        Lan {
            prefix: prefix.to_string(),
            hosts: Vec::new(),
            sw,
        }
    }

    /// Add host `role` with interface `ifname` on the segment, holding
    /// `addresses` (IPv6 ones without duplicate address detection). An
    /// interface given no IPv6 address gets IPv6 turned off before it comes
    /// up, so that it sends no router solicitations, MLD or DAD. TX checksum
    /// offload is off on both veth ends: with it, kernel TCP hands packets
    /// with partial checksums to whoever reads the wire, DPDK included.
    pub fn attach(&mut self, role: &str, ifname: &str, addresses: &[&str]) -> &Ns {
        let port = format!("p{role}");
        assert!(
            port.len() <= 15 && ifname.len() <= 15,
            "interface names: at most 15 bytes"
        );
        assert!(
            self.hosts.iter().all(|(r, _)| r != role),
            "role {role} attached twice"
        );
        let host = Ns::new(&format!("{}-{role}", self.prefix));
        ip(&[
            "link",
            "add",
            ifname,
            "netns",
            host.name(),
            "type",
            "veth",
            "peer",
            &port,
            "netns",
            self.sw.name(),
        ]);
        self.sw
            .sysctl(&format!("net.ipv6.conf.{port}.disable_ipv6"), "1");
        self.sw.ok(&["ip", "link", "set", &port, "master", "br0"]);
        self.sw.ok(&["ethtool", "-K", &port, "tx", "off"]);
        self.sw.ok(&["ip", "link", "set", &port, "up"]);
        if !addresses.iter().any(|a| a.contains(':')) {
            host.sysctl(&format!("net.ipv6.conf.{ifname}.disable_ipv6"), "1");
        }
        host.ok(&["ethtool", "-K", ifname, "tx", "off"]);
        for a in addresses {
            let mut cmd = vec!["ip", "addr", "add", a, "dev", ifname];
            if a.contains(':') {
                cmd.push("nodad");
            }
            host.ok(&cmd);
        }
        host.ok(&["ip", "link", "set", ifname, "up"]);
        self.hosts.push((role.to_string(), host));
        &self.hosts.last().unwrap().1
    }

    /// Give host `role`, already attached, a second interface `ifname` on
    /// the same segment (switch port `p{role}{ifname}`), holding IPv4
    /// `addresses`; IPv6 is off on it. For a host whose first interface is
    /// taken by DPDK and whose kernel needs a leg of its own (a management
    /// or BGP interface).
    pub fn add_leg(&mut self, role: &str, ifname: &str, addresses: &[&str]) -> &Ns {
        let port = format!("p{role}{ifname}");
        assert!(
            port.len() <= 15 && ifname.len() <= 15,
            "interface names: at most 15 bytes"
        );
        let host = self.host(role).name().to_string();
        ip(&[
            "link",
            "add",
            ifname,
            "netns",
            &host,
            "type",
            "veth",
            "peer",
            &port,
            "netns",
            self.sw.name(),
        ]);
        self.sw
            .sysctl(&format!("net.ipv6.conf.{port}.disable_ipv6"), "1");
        self.sw.ok(&["ip", "link", "set", &port, "master", "br0"]);
        self.sw.ok(&["ethtool", "-K", &port, "tx", "off"]);
        self.sw.ok(&["ip", "link", "set", &port, "up"]);
        let host = self.host(role);
        host.sysctl(&format!("net.ipv6.conf.{ifname}.disable_ipv6"), "1");
        host.ok(&["ethtool", "-K", ifname, "tx", "off"]);
        for a in addresses {
            host.ok(&["ip", "addr", "add", a, "dev", ifname]);
        }
        host.ok(&["ip", "link", "set", ifname, "up"]);
        host
    }

    /// The namespace of host `role`.
    pub fn host(&self, role: &str) -> &Ns {
        self.hosts
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, ns)| ns)
            .unwrap_or_else(|| panic!("no host {role} on the segment"))
    }

    pub fn switch(&self) -> &Ns {
        &self.sw
    }
}

/// A long-running process (server, helper, Sluice), its stdout and stderr
/// going to a log file. Killed (SIGKILL) on drop if still running.
pub struct Daemon {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Spawn `cmd`; its output goes to `log` (truncated).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let f = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon already reaped").id()
    }

    /// Whether it is still running (a reaped daemon is not).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Send `signal` (`"TERM"`, `"HUP"`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(
            st.success(),
            "kill -{signal} {} ({})",
            self.pid(),
            self.name
        );
    }

    /// SIGTERM, then wait up to `grace` for it to exit, then SIGKILL.
    /// Returns its exit status, `None` if it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Wait up to `limit` for it to exit by itself; `None` if it is still
    /// running (and left running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it has written so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let mut b = Vec::new();
            let _ = f.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A file or directory that something else creates (DPDK's runtime
/// directory `/var/run/dpdk/PREFIX`, which the EAL leaves behind even with
/// `--no-shconf`), removed on drop if it exists.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// What a bounded command left behind.
pub struct Finished {
    pub output: Output,
    /// It ran out of time and was killed.
    pub timed_out: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        !self.timed_out && self.output.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    /// Status, stdout and stderr, for assertion messages.
    pub fn text(&self) -> String {
        let t = super::output_text(&self.output);
        if self.timed_out {
            format!("(killed: ran out of time)\n{t}")
        } else {
            t
        }
    }
}

/// Run `cmd` to completion, capturing its output, but kill it if it is not
/// done within `limit`: no test may hang on a stuck client.
pub fn run(mut cmd: Command, limit: Duration) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        output: Output {
            status,
            stdout: out_t.join().unwrap(),
            stderr: err_t.join().unwrap(),
        },
        timed_out,
    }
}

/// Poll `f` every 100 ms until it holds; false if it never did within `limit`.
pub fn wait_until<F: FnMut() -> bool>(limit: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An nginx backend in `ns` on port 80, serving files from `www` and
/// tagging every response with `X-Backend: name`. One process
/// (`master_process off`): a SIGKILL on drop leaves no orphaned workers.
/// Every path is inside `dir`. `http` adds directives to the `http` block
/// (a `default_type` among them), `server` to the `server` block (its
/// locations).
pub fn nginx(ns: &Ns, name: &str, dir: &Path, www: &Path, http: &str, server: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 30s;
{http}
    server {{
        listen 80 default_server;
        root {www};
        add_header X-Backend {name} always;
{server}
    }}
}}
"#,
        www = www.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let err = dir.join("error.log");
    let cmd = ns.cmd(&[
        "nginx",
        "-e",
        err.to_str().unwrap(),
        "-p",
        dir.to_str().unwrap(),
        "-c",
        conf_path.to_str().unwrap(),
    ]);
    Daemon::spawn(&format!("nginx {name}"), cmd, &dir.join("nginx.out"))
}

/// The userspace DSR set-up on backend `ns`, exactly as an operator would
/// run it on a backend without tunnel devices (scripts/backend-setup.sh
/// with `mode` such as `userspace-ipip`): sysctls, then the decapsulation
/// helper in the foreground, accepting tunnelled packets only from the
/// `lbs`. Returns once the helper says it is ready.
pub fn dsr_decap(ns: &Ns, name: &str, mode: &str, vip: &str, lbs: &[&str], log: &Path) -> Daemon {
    let script = super::repo().join("scripts/backend-setup.sh");
    let mut args = vec![script.to_str().unwrap(), "up", mode, vip, "--dev", "eth0"];
    for lb in lbs {
        args.extend(["--lb", lb]);
    }
    let mut d = Daemon::spawn(&format!("dsr-decap {name}"), ns.cmd(&args), log);
    let ready = wait_until(Duration::from_secs(10), || {
        d.log().contains("dsr-decap: ready") || !d.running()
    });
    assert!(
        ready && d.running(),
        "decap helper on {name} did not come up\n{}",
        d.log()
    );
    d
}
