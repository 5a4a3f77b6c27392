//! Reading the workers' counters and the ports' driver statistics.

use std::fmt::Write;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::compile::Registry;
use crate::dpdk::port;
use crate::net::counters::{self, Counter, L4Counters, WorkerCounters};

/// What the control thread can report: every worker's counters and every
/// port's driver stats.
pub struct StatsSource {
    pub workers: Vec<Arc<WorkerCounters>>,
    /// Per-service and per-backend counters, per worker.
    pub l4: Vec<Arc<L4Counters>>,
    /// Names of services and backends by id (updated on reload).
    pub names: Mutex<Registry>,
    /// (port name, DPDK port id)
    pub ports: Vec<(String, u16)>,
    /// Backend health (L7 health checks), by backend id.
    pub health: Arc<crate::l7::health::HealthState>,
    /// Failed workers, for `/healthz`.
    pub workers_health: Arc<super::liveness::WorkerHealth>,
    /// Each worker's mbuf pool, and its size.
    pub pools: Vec<(&'static crate::dpdk::Mempool, u32)>,
}

/// One labelled metric family of the text exposition.
struct Family {
    name: &'static str,
    kind: &'static str,
    rows: Vec<(String, u64)>,
}

impl StatsSource {
    pub fn total(&self) -> [u64; Counter::COUNT] {
        counters::total(&self.workers)
    }

    /// Per-service totals: (name, [packets, bytes, new, drops]).
    pub fn services(&self) -> Vec<(String, [u64; 4])> {
        let names = self.names.lock().unwrap();
        names
            .service_names
            .iter()
            .enumerate()
            .map(|(id, n)| (n.clone(), self.sum(|c| &c.service[id])))
            .collect()
    }

    /// Per-backend totals: (cluster, name, [packets, bytes, new, active]).
    pub fn backends(&self) -> Vec<(String, String, [u64; 4])> {
        let names = self.names.lock().unwrap();
        names
            .backend_names
            .iter()
            .enumerate()
            .map(|(id, (c, n))| (c.clone(), n.clone(), self.sum(|l| &l.backend[id])))
            .collect()
    }

    /// Per-backend L7 totals: [requests, failed attempts, 5xx, in flight],
    /// by backend id.
    pub fn backends_l7(&self) -> Vec<[u64; 4]> {
        let n = self.names.lock().unwrap().backend_names.len();
        (0..n).map(|id| self.sum(|l| &l.backend_l7[id])).collect()
    }

    fn sum<F: Fn(&L4Counters) -> &[std::sync::atomic::AtomicU64; 4]>(&self, f: F) -> [u64; 4] {
        let mut t = [0u64; 4];
        for l in &self.l4 {
            for (acc, v) in t.iter_mut().zip(f(l)) {
                *acc += v.load(Ordering::Relaxed);
            }
        }
        t
    }

    /// Prometheus text exposition: one family per counter, labelled by
    /// worker; drops as one family labelled by reason.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(8192);
        let mem = crate::dpdk::pages::usage();
        for (name, v) in [
            ("large_blocks_bytes", mem.live),
            ("large_blocks_warm_bytes", mem.warm),
            ("large_blocks_pending_bytes", mem.pending),
        ] {
            let _ = writeln!(
                out,
                "# TYPE sluice_memory_{name} gauge\nsluice_memory_{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluice_mbufs_available Free mbufs in the worker's pool (of dataplane.mbufs).\n# TYPE sluice_mbufs_available gauge"
        );
        for (w, (pool, _)) in self.pools.iter().enumerate() {
            let _ = writeln!(
                out,
                "sluice_mbufs_available{{worker=\"{w}\"}} {}",
                pool.available()
            );
        }
        let snaps: Vec<_> = self.workers.iter().map(|w| w.snapshot()).collect();
        for &c in Counter::ALL {
            let name = c.name();
            if let Some(reason) = name.strip_prefix("drop_") {
                if c == Counter::drop_truncated {
                    let _ = writeln!(out, "# HELP sluice_drops_total Packets dropped, by reason.\n# TYPE sluice_drops_total counter");
                }
                for (w, s) in snaps.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "sluice_drops_total{{worker=\"{w}\",reason=\"{reason}\"}} {}",
                        s[c as usize]
                    );
                }
            } else if c.is_gauge() {
                let _ = writeln!(out, "# TYPE sluice_{name} gauge");
                for (w, s) in snaps.iter().enumerate() {
                    let _ = writeln!(out, "sluice_{name}{{worker=\"{w}\"}} {}", s[c as usize]);
                }
            } else {
                let _ = writeln!(out, "# TYPE sluice_{name}_total counter");
                for (w, s) in snaps.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "sluice_{name}_total{{worker=\"{w}\"}} {}",
                        s[c as usize]
                    );
                }
            }
        }
        // Labelled families: each family is one group with its TYPE line,
        // as the text exposition format requires.
        let mut families: Vec<Family> = Vec::new();
        let mut family =
            |name: &'static str, kind: &'static str, labels: String, v: u64| match families
                .iter_mut()
                .find(|f| f.name == name)
            {
                Some(f) => f.rows.push((labels, v)),
                None => families.push(Family {
                    name,
                    kind,
                    rows: vec![(labels, v)],
                }),
            };
        for (name, v) in self.services() {
            let l = format!("service=\"{name}\"");
            family(
                "sluice_service_packets_total",
                "counter",
                l.clone(),
                v[counters::SVC_PACKETS],
            );
            family(
                "sluice_service_bytes_total",
                "counter",
                l.clone(),
                v[counters::SVC_BYTES],
            );
            family(
                "sluice_service_connections_total",
                "counter",
                l.clone(),
                v[counters::SVC_NEW],
            );
            family(
                "sluice_service_drops_total",
                "counter",
                l,
                v[counters::SVC_DROPS],
            );
        }
        // The expiry of each certificate, for alerts such as
        // `sluice_tls_certificate_expiry_seconds - time() < 14 * 86400`.
        let certificates = self.names.lock().unwrap().certificates.clone();
        for (listener, cert, end) in certificates {
            let escape = |v: &str| {
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            };
            family(
                "sluice_tls_certificate_expiry_seconds",
                "gauge",
                format!("listener=\"{listener}\",cert=\"{}\"", escape(&cert)),
                end.max(0) as u64,
            );
        }
        let l7 = self.backends_l7();
        for (id, (cluster, name, v)) in self.backends().into_iter().enumerate() {
            let l = format!("cluster=\"{cluster}\",backend=\"{name}\"");
            let up = u64::from(self.health.is_up(id as u32));
            family("sluice_backend_up", "gauge", l.clone(), up);
            let (passed, failed) = self.health.checks(id as u32);
            family(
                "sluice_backend_health_checks_total",
                "counter",
                format!("{l},result=\"passed\""),
                passed,
            );
            family(
                "sluice_backend_health_checks_total",
                "counter",
                format!("{l},result=\"failed\""),
                failed,
            );
            family(
                "sluice_backend_passive_downs_total",
                "counter",
                l.clone(),
                self.health.passive_downs(id as u32),
            );
            family(
                "sluice_backend_packets_total",
                "counter",
                l.clone(),
                v[counters::BE_PACKETS],
            );
            family(
                "sluice_backend_bytes_total",
                "counter",
                l.clone(),
                v[counters::BE_BYTES],
            );
            family(
                "sluice_backend_connections_total",
                "counter",
                l.clone(),
                v[counters::BE_NEW],
            );
            family(
                "sluice_backend_active_connections",
                "gauge",
                l.clone(),
                v[counters::BE_ACTIVE],
            );
            let r = l7.get(id).copied().unwrap_or_default();
            family(
                "sluice_backend_requests_total",
                "counter",
                l.clone(),
                r[counters::BE_L7_REQUESTS],
            );
            family(
                "sluice_backend_failures_total",
                "counter",
                l.clone(),
                r[counters::BE_L7_FAILURES],
            );
            family(
                "sluice_backend_responses_5xx_total",
                "counter",
                l.clone(),
                r[counters::BE_L7_5XX],
            );
            family(
                "sluice_backend_requests_in_flight",
                "gauge",
                l,
                r[counters::BE_L7_INFLIGHT],
            );
        }
        for (name, id) in &self.ports {
            let s = port::stats(*id);
            let p = |extra: &str| format!("port=\"{name}\"{extra}");
            family(
                "sluice_port_packets_total",
                "counter",
                p(",dir=\"rx\""),
                s.ipackets,
            );
            family(
                "sluice_port_packets_total",
                "counter",
                p(",dir=\"tx\""),
                s.opackets,
            );
            family("sluice_port_missed_total", "counter", p(""), s.imissed);
            family(
                "sluice_port_errors_total",
                "counter",
                p(",dir=\"rx\""),
                s.ierrors,
            );
            family(
                "sluice_port_errors_total",
                "counter",
                p(",dir=\"tx\""),
                s.oerrors,
            );
            family("sluice_port_rx_nombuf_total", "counter", p(""), s.rx_nombuf);
            family(
                "sluice_port_link_up",
                "gauge",
                p(""),
                port::link_up(*id) as u64,
            );
        }
        for f in &families {
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, v) in &f.rows {
                let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
            }
        }
        out
    }

    /// `{"counters": {name: total}, "workers": [{name: n}], "ports": {name: {...}}}`
    pub fn json(&self) -> serde_json::Value {
        let total = self.total();
        let map = |s: &[u64; Counter::COUNT]| {
            serde_json::Value::Object(
                Counter::ALL
                    .iter()
                    .map(|c| {
                        (
                            c.name().to_string(),
                            serde_json::Value::from(s[*c as usize]),
                        )
                    })
                    .collect(),
            )
        };
        let ports = self
            .ports
            .iter()
            .map(|(name, id)| {
                let s = port::stats(*id);
                (
                    name.clone(),
                    serde_json::json!({
                        "rx_packets": s.ipackets, "tx_packets": s.opackets,
                        "rx_bytes": s.ibytes, "tx_bytes": s.obytes,
                        "rx_missed": s.imissed, "rx_errors": s.ierrors,
                        "tx_errors": s.oerrors, "rx_nombuf": s.rx_nombuf,
                        "link_up": port::link_up(*id),
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        let services = self
            .services()
            .into_iter()
            .map(|(n, v)| {
                (n, serde_json::json!({"packets": v[0], "bytes": v[1], "connections": v[2], "drops": v[3]}))
            })
            .collect::<serde_json::Map<_, _>>();
        let l7 = self.backends_l7();
        let backends = self
            .backends()
            .into_iter()
            .enumerate()
            .map(|(id, (c, n, v))| {
                let r = l7.get(id).copied().unwrap_or_default();
                (
                    format!("{c}/{n}"),
                    serde_json::json!({"packets": v[0], "bytes": v[1], "connections": v[2], "active": v[3],
                        "up": self.health.is_up(id as u32),
                        "checks_passed": self.health.checks(id as u32).0,
                        "checks_failed": self.health.checks(id as u32).1,
                        "passive_downs": self.health.passive_downs(id as u32),
                        "requests": r[0], "failures": r[1], "responses_5xx": r[2], "in_flight": r[3]}),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        let mem = crate::dpdk::pages::usage();
        serde_json::json!({
            "counters": map(&total),
            "memory": {"large_blocks_bytes": mem.live, "large_blocks_warm_bytes": mem.warm,
                "large_blocks_pending_bytes": mem.pending},
            "services": services,
            "backends": backends,
            "workers": self.workers.iter().map(|w| map(&w.snapshot())).collect::<Vec<_>>(),
            "ports": ports,
            "mbufs": self.pools.iter().map(|(pool, size)| serde_json::json!({
                "size": size, "available": pool.available()})).collect::<Vec<_>>(),
        })
    }

    /// One human line: the non-zero totals.
    pub fn summary_line(&self) -> String {
        let t = self.total();
        Counter::ALL
            .iter()
            .filter(|c| t[**c as usize] != 0)
            .map(|c| format!("{}={}", c.name(), t[*c as usize]))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_one_group_with_one_type_line() {
        let mut reg = Registry::default();
        reg.backend_names = vec![("web".into(), "a".into()), ("web".into(), "b".into())];
        reg.service_names = vec!["s".into()];
        reg.certificates = vec![
            ("tls".into(), "/etc/a.pem".into(), 1_900_000_000),
            ("tls".into(), "/etc/odd\"name.pem".into(), 1_800_000_000),
        ];
        let l4 = Arc::new(L4Counters::default());
        l4.l7_add(1, counters::BE_L7_REQUESTS, 7);
        let health = Arc::new(crate::l7::health::HealthState::default());
        health.set(0, false);
        let src = StatsSource {
            workers: vec![Arc::new(WorkerCounters::default())],
            l4: vec![l4],
            names: Mutex::new(reg),
            ports: Vec::new(),
            health,
            workers_health: Default::default(),
            pools: Vec::new(),
        };
        let text = src.prometheus();
        let mut seen: Vec<String> = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let name = t.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} has two TYPE lines");
                seen.push(name.clone());
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line} outside its family's group");
            }
        }
        assert!(text.contains("sluice_backend_up{cluster=\"web\",backend=\"a\"} 0"));
        assert!(text.contains("sluice_backend_up{cluster=\"web\",backend=\"b\"} 1"));
        assert!(text.contains(
            "sluice_tls_certificate_expiry_seconds{listener=\"tls\",cert=\"/etc/a.pem\"} 1900000000"
        ));
        assert!(text.contains(
            "sluice_tls_certificate_expiry_seconds{listener=\"tls\",cert=\"/etc/odd\\\"name.pem\"} 1800000000"
        ));
        assert!(text.contains("sluice_backend_requests_total{cluster=\"web\",backend=\"b\"} 7"));
        assert!(text.contains("# TYPE sluice_l7_client_conns gauge"));
    }
}
