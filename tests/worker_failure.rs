//! A worker that dies or gets stuck is noticed while Sluice runs: the
//! control thread logs it, `/healthz` fails, and with the default
//! `on_worker_failure = "exit"` the process ends with a non-zero status for
//! a supervisor to restart it.
//!
//! The real binary runs on a `net_null` sink with `--no-huge`; the fault is
//! injected with the debug-build-only `SLUICE_DEBUG_WORKER_FAULT` hook, so
//! these tests exist in debug builds only.
#![cfg(debug_assertions)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One Sluice at a time: a spinning worker takes a whole CPU.
static SERIAL: Mutex<()> = Mutex::new(());
static RUN: AtomicU32 = AtomicU32::new(0);

struct Sluice {
    child: Option<Child>,
    admin: String,
    _tmp: TempDir,
    runtime_dir: std::path::PathBuf,
}

impl Sluice {
    /// Start Sluice with worker 0 faulted (`spec` for the fault hook) and
    /// the given `[dataplane]` failure settings.
    fn start(fault: &str, on_failure: &str, stuck_ms: u32) -> Sluice {
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        let tmp = TempDir::new(&format!("worker-failure-{n}"));
        let prefix = format!("sluice-wf-{}-{n}", std::process::id());
        // A free port for the admin endpoint.
        let admin = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let config = tmp.path().join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[eal]
args = ["--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
file_prefix = "{prefix}"

[dataplane]
workers = [1]
mbufs = 2048
mbuf_cache = 64
rx_desc = 256
tx_desc = 256
on_worker_failure = "{on_failure}"
worker_stuck_ms = {stuck_ms}

[admin]
listen = "{admin}"

[[port]]
name = "p0"
vdev = "net_null0,no-rx=1"
mac = "02:00:00:00:00:01"
addresses = ["10.0.0.1/24"]
"#
            ),
        )
        .unwrap();
        let child = sluice()
            .args(["run", "--config"])
            .arg(&config)
            .env("SLUICE_DEBUG_WORKER_FAULT", fault)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        Sluice {
            child: Some(child),
            admin,
            _tmp: tmp,
            runtime_dir: std::path::Path::new("/var/run/dpdk").join(prefix),
        }
    }

    /// `GET /healthz`: (status code, body), or None if nothing answers.
    fn healthz(&self) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(&self.admin).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let (head, body) = resp.split_once("\r\n\r\n")?;
        let code = head.split(' ').nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    }

    /// Poll `/healthz` until it answers `code`; returns the body.
    fn wait_healthz(&mut self, code: u16, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some((c, body)) = self.healthz() {
                if c == code {
                    return body;
                }
            }
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                panic!("sluice exited early\n{}", self.finish().1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "/healthz never answered {code} in {secs} s\n{}",
            self.finish().1
        );
    }

    /// Wait up to `secs` for Sluice to exit on its own (None if it did
    /// not); its exit status and stderr.
    fn wait_exit(&mut self, secs: u64) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                let (status, log) = self.finish();
                return Some((status.unwrap(), log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    /// Kill if still running; exit status (None if killed) and stderr.
    fn finish(&mut self) -> (Option<std::process::ExitStatus>, String) {
        let mut c = self.child.take().unwrap();
        let status = match c.try_wait() {
            Ok(Some(s)) => Some(s),
            _ => {
                let _ = c.kill();
                None
            }
        };
        let out = c.wait_with_output().unwrap();
        (status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// Default policy: a worker panic ends the process, non-zero, on its own.
#[test]
fn dead_worker_ends_the_process_with_failure() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Sluice::start("0:panic:1500", "exit", 1000);
    assert_eq!(s.wait_healthz(200, 60), "ok\n");
    let (status, log) = s
        .wait_exit(30)
        .expect("sluice kept running after its worker died");
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(log.contains("worker 0 (lcore 1) died"), "{log}");
}

/// `keep`: `/healthz` turns to 503 naming the dead worker, the process
/// stays up, and still exits non-zero when stopped.
#[test]
fn dead_worker_fails_healthz_when_kept() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Sluice::start("0:panic:1500", "keep", 1000);
    assert_eq!(s.wait_healthz(200, 60), "ok\n");
    let body = s.wait_healthz(503, 30);
    assert_eq!(body, "worker 0 (lcore 1) died\n");
    assert!(s.wait_exit(1).is_none(), "kept running");
    s.terminate();
    let (status, log) = s.wait_exit(30).expect("sluice did not stop on SIGTERM");
    assert!(!status.success(), "exit status {status}\n{log}");
}

/// A worker that spins without a heartbeat: `/healthz` fails once it has
/// been quiet for `worker_stuck_ms`, and SIGTERM still ends the process
/// (non-zero) instead of waiting forever for the stuck lcore.
#[test]
fn stuck_worker_fails_healthz_and_does_not_hang_shutdown() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Sluice::start("0:spin:1500", "keep", 300);
    assert_eq!(s.wait_healthz(200, 60), "ok\n");
    let body = s.wait_healthz(503, 30);
    assert!(
        body.starts_with("worker 0 (lcore 1) is stuck: no heartbeat for"),
        "{body}"
    );
    s.terminate();
    let (status, log) = s.wait_exit(30).expect("shutdown hung on the stuck worker");
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(log.contains("did not stop"), "{log}");
}

/// Default policy with a stuck worker: the process ends by itself,
/// non-zero.
#[test]
fn stuck_worker_ends_the_process_with_failure() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Sluice::start("0:spin:1500", "exit", 300);
    assert_eq!(s.wait_healthz(200, 60), "ok\n");
    let (status, log) = s
        .wait_exit(30)
        .expect("sluice kept running with a stuck worker");
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(log.contains("is stuck"), "{log}");
}
