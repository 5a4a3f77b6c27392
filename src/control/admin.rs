//! Admin HTTP endpoint on the control thread: `/metrics` (Prometheus text
//! format), `/stats` (JSON), `/healthz`. Plain blocking std I/O on its own
//! thread, one request per connection: it serves operators and scrapers, not
//! traffic, and must never touch a worker's data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::stats::StatsSource;

pub fn spawn(
    addr: SocketAddr,
    source: Arc<StatsSource>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    log::info!("admin listening on http://{addr}/metrics");
    std::thread::Builder::new()
        .name("sluice-admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = serve(s, &source);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        log::warn!("admin accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

fn serve(s: TcpStream, source: &StatsSource) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.by_ref().take(8192).read_line(&mut line)?;
    // Drain the rest of the head, bounded.
    let mut hdr = String::new();
    for _ in 0..100 {
        hdr.clear();
        if reader.by_ref().take(8192).read_line(&mut hdr)? == 0 || hdr == "\r\n" || hdr == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", source.prometheus()),
        ("GET", "/stats") => ("200 OK", "application/json", source.json().to_string()),
        ("GET", "/healthz") => {
            // Not healthy while any worker is dead or stuck: its RSS share
            // of the traffic is being lost.
            let failures = source.workers_health.failures();
            if failures.is_empty() {
                ("200 OK", "text/plain", "ok\n".to_string())
            } else {
                let body = failures.join("\n") + "\n";
                ("503 Service Unavailable", "text/plain", body)
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let mut w = s;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

/// Fetch `path` from an admin endpoint (for `sluice stats`).
pub fn get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}
