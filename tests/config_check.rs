//! `sluice check` through the real binary: bad files fail with
//! `error: FILE:LINE:COL: ...` on stderr and a non-zero status; the shipped
//! examples in `dpdk-config/` pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A valid port for the files below.
const PORT: &str = r#"
[[port]]
name = "wan"
vdev = "net_null0"
addresses = ["10.0.0.1/24"]
"#;

/// A scratch directory for this test process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("sluice-config-check-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .expect("run sluice")
}

/// `sluice check` rejects `text` with an error at `line` that contains
/// `words`.
#[track_caller]
fn rejected(dir: &TempDir, name: &str, text: &str, line: usize, words: &[&str]) {
    let path = dir.write(name, text);
    let out = check(&path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{name} passed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let at = format!("{}:{line}:", path.display());
    assert!(stderr.contains(&at), "stderr lacks {at:?}:\n{stderr}");
    for w in words {
        assert!(stderr.contains(w), "stderr lacks {w:?}:\n{stderr}");
    }
}

#[test]
fn wrong_type() {
    let dir = TempDir::new("wrong-type");
    let text = format!("[dataplane]\nworkers = [1]\nburst = \"abc\"\n{PORT}");
    rejected(
        &dir,
        "wrong-type.toml",
        &text,
        3,
        &["invalid type", "expected u16", "dataplane.burst"],
    );
}

#[test]
fn unknown_key() {
    let dir = TempDir::new("unknown-key");
    let text = format!("{PORT}colour = \"red\"\n");
    rejected(
        &dir,
        "unknown-key.toml",
        &text,
        6,
        &["unknown key `colour`", "expected one of", "`addresses`"],
    );
}

#[test]
fn route_to_missing_port() {
    let dir = TempDir::new("missing-port");
    let text = format!(
        "{PORT}\n[[route]]\nprefix = \"198.18.0.0/15\"\nvia = \"10.0.0.254\"\nport = \"lan\"\n"
    );
    rejected(
        &dir,
        "route.toml",
        &text,
        10,
        &[
            "port \"lan\" referenced by route is not defined",
            "defined ports: wan",
        ],
    );
}

#[test]
fn no_port() {
    let dir = TempDir::new("no-port");
    rejected(
        &dir,
        "no-port.toml",
        "[dataplane]\nworkers = [1]\n",
        1,
        &["no [[port]]"],
    );
}

/// A cluster of two backends on `wan` and a service on it, for the L4
/// tests; `{PORT}` goes before it.
const L4: &str = r#"
[[cluster]]
name = "web"
maglev_table_size = 65537

[[cluster.backend]]
address = "10.0.0.11"

[[cluster.backend]]
address = "10.0.0.12"

[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
cluster = "web"
ingress = "wan"
"#;

/// 1-based line of the last occurrence of `needle` in `text`.
fn last_line(text: &str, needle: &str) -> usize {
    text[..text.rfind(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn l4_service_passes() {
    let dir = TempDir::new("l4-ok");
    let path = dir.write("l4.toml", &format!("{PORT}{L4}"));
    let out = check(&path, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "cluster web: maglev (table 65537, hash seed 0), 2 backends",
        "  backend 10.0.0.11, weight 1",
        "service web: 10.0.0.100:80/tcp -> nat -> cluster web",
    ] {
        assert!(stdout.contains(want), "stdout lacks {want:?}:\n{stdout}");
    }
}

#[test]
fn service_to_unknown_cluster() {
    let dir = TempDir::new("unknown-cluster");
    let text = format!("{PORT}{L4}").replace("cluster = \"web\"", "cluster = \"wbe\"");
    rejected(
        &dir,
        "unknown-cluster.toml",
        &text,
        last_line(&text, "cluster = \"wbe\""),
        &[
            "cluster \"wbe\" referenced by service \"web\" is not defined",
            "defined clusters: web",
        ],
    );
}

#[test]
fn duplicate_service() {
    let dir = TempDir::new("duplicate-service");
    let text = format!(
        "{PORT}{L4}\n[[service]]\nname = \"web\"\nvip = \"10.0.0.101\"\nport = 80\ncluster = \"web\"\ningress = \"wan\"\n"
    );
    rejected(
        &dir,
        "duplicate-service.toml",
        &text,
        last_line(&text, "name = \"web\""),
        &["duplicate service name \"web\"", "first defined at line"],
    );
    let text = format!(
        "{PORT}{L4}\n[[service]]\nname = \"web2\"\nvip = \"10.0.0.100\"\nport = 80\ncluster = \"web\"\ningress = \"wan\"\n"
    );
    rejected(
        &dir,
        "duplicate-address.toml",
        &text,
        last_line(&text, "port = 80"),
        &["10.0.0.100:80/tcp is already served by service \"web\""],
    );
}

#[test]
fn maglev_table_size_not_prime() {
    let dir = TempDir::new("not-prime");
    let text = format!("{PORT}{L4}").replace("65537", "65536");
    rejected(
        &dir,
        "not-prime.toml",
        &text,
        last_line(&text, "maglev_table_size"),
        &[
            "cluster \"web\": maglev_table_size 65536 is not prime",
            "the next prime is 65537",
        ],
    );
}

#[test]
fn unreadable_file() {
    let dir = TempDir::new("unreadable");
    let path = dir.0.join("missing.toml");
    let out = check(&path, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: cannot read", path.display())),
        "{stderr}"
    );
}

#[test]
fn port_device_override() {
    let dir = TempDir::new("override");
    let path = dir.write("ok.toml", &format!("[eal]\nargs = [\"--no-pci\"]\n{PORT}"));
    let out = check(&path, &["--port-device", "wan=net_pcap0,rx_pcap=in.pcap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("net_pcap0,rx_pcap=in.pcap"));

    let out = check(&path, &["--port-device", "lan=net_null1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--port-device lan=net_null1: no port named \"lan\""),
        "{stderr}"
    );
}

#[test]
fn examples_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dpdk-config");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    assert!(
        examples.len() >= 3,
        "examples missing from {}",
        dir.display()
    );
    for path in examples {
        let out = check(&path, &[]);
        assert!(
            out.status.success(),
            "{} fails `sluice check`:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("eal: sluice -l"),
            "{}",
            path.display()
        );
    }
}
