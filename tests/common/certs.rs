//! Test certificates made with the `openssl` CLI: a CA and leaves it
//! signs, for the TLS tests (listeners, upstream TLS, HTTPS health checks).

use std::path::Path;
use std::process::Command;

/// Run `openssl args`; panics with its stderr if it fails.
pub fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A self-signed ECDSA P-256 certificate `NAME.crt` and key `NAME.key` in
/// `dir`, subject CN `cn`, with `san` as its subjectAltName if given: a CA
/// of its own, or a stranger no test CA signed.
pub fn self_signed(dir: &Path, name: &str, cn: &str, san: Option<&str>) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (subj, san) = (
        format!("/CN={cn}"),
        san.map(|s| format!("subjectAltName={s}")),
    );
    let (key, crt) = (p(&format!("{name}.key")), p(&format!("{name}.crt")));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "30", "-subj", &subj];
    if let Some(san) = &san {
        args.extend(["-addext", san]);
    }
    args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    args.extend(["-keyout", &key, "-out", &crt]);
    openssl(&args);
}

/// A test CA in `dir`: `ca.crt` and `ca.key` (ECDSA P-256).
pub fn make_ca(dir: &Path) {
    self_signed(dir, "ca", "Sluice test CA", None);
}

/// A certificate `NAME.crt` (chain: leaf, CA) and key `NAME.key` for
/// `san`, subject CN `cn`, signed by the test CA of `dir`.
pub fn make_leaf(dir: &Path, name: &str, cn: &str, san: &str, key: &[&str]) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let mut args = vec![
        "req".to_string(),
        "-x509".into(),
        "-nodes".into(),
        "-days".into(),
        "30".into(),
        "-subj".into(),
        format!("/CN={cn}"),
        "-addext".into(),
        format!("subjectAltName={san}"),
        "-addext".into(),
        "basicConstraints=critical,CA:FALSE".into(),
        "-CA".into(),
        p("ca.crt"),
        "-CAkey".into(),
        p("ca.key"),
        "-keyout".into(),
        p(&format!("{name}.key")),
        "-out".into(),
        p(&format!("{name}.leaf")),
        "-newkey".into(),
    ];
    args.extend(key.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args);
    let mut chain = std::fs::read(dir.join(format!("{name}.leaf"))).unwrap();
    chain.extend(std::fs::read(dir.join("ca.crt")).unwrap());
    std::fs::write(dir.join(format!("{name}.crt")), chain).unwrap();
}
