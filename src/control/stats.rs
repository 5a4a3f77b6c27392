//! Reading the workers' counters and the ports' driver statistics.

use std::fmt::Write;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::compile::Registry;
use crate::dpdk::port;
use crate::worker::counters::{self, Counter, WorkerCounters};
use crate::worker::l4lb::{self, L4Counters};

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
        let _ = writeln!(out, "# TYPE sluice_service_packets_total counter");
        for (name, v) in self.services() {
            let _ = writeln!(
                out,
                "sluice_service_packets_total{{service=\"{name}\"}} {}",
                v[l4lb::SVC_PACKETS]
            );
            let _ = writeln!(
                out,
                "sluice_service_bytes_total{{service=\"{name}\"}} {}",
                v[l4lb::SVC_BYTES]
            );
            let _ = writeln!(
                out,
                "sluice_service_connections_total{{service=\"{name}\"}} {}",
                v[l4lb::SVC_NEW]
            );
            let _ = writeln!(
                out,
                "sluice_service_drops_total{{service=\"{name}\"}} {}",
                v[l4lb::SVC_DROPS]
            );
        }
        let _ = writeln!(out, "# TYPE sluice_backend_packets_total counter");
        let l7 = self.backends_l7();
        for (id, (cluster, name, v)) in self.backends().into_iter().enumerate() {
            let l = format!("cluster=\"{cluster}\",backend=\"{name}\"");
            if let Some(r) = l7.get(id) {
                let _ = writeln!(
                    out,
                    "sluice_backend_requests_total{{{l}}} {}",
                    r[l4lb::BE_L7_REQUESTS]
                );
                let _ = writeln!(
                    out,
                    "sluice_backend_failures_total{{{l}}} {}",
                    r[l4lb::BE_L7_FAILURES]
                );
                let _ = writeln!(
                    out,
                    "sluice_backend_responses_5xx_total{{{l}}} {}",
                    r[l4lb::BE_L7_5XX]
                );
                let _ = writeln!(
                    out,
                    "sluice_backend_requests_in_flight{{{l}}} {}",
                    r[l4lb::BE_L7_INFLIGHT]
                );
            }
            let _ = writeln!(
                out,
                "sluice_backend_up{{{l}}} {}",
                u8::from(self.health.is_up(id as u32))
            );
            let _ = writeln!(
                out,
                "sluice_backend_packets_total{{{l}}} {}",
                v[l4lb::BE_PACKETS]
            );
            let _ = writeln!(
                out,
                "sluice_backend_bytes_total{{{l}}} {}",
                v[l4lb::BE_BYTES]
            );
            let _ = writeln!(
                out,
                "sluice_backend_connections_total{{{l}}} {}",
                v[l4lb::BE_NEW]
            );
            let _ = writeln!(
                out,
                "sluice_backend_active_connections{{{l}}} {}",
                v[l4lb::BE_ACTIVE]
            );
        }
        let _ = writeln!(out, "# TYPE sluice_port_packets_total counter");
        for (name, id) in &self.ports {
            let s = port::stats(*id);
            let _ = writeln!(
                out,
                "sluice_port_packets_total{{port=\"{name}\",dir=\"rx\"}} {}",
                s.ipackets
            );
            let _ = writeln!(
                out,
                "sluice_port_packets_total{{port=\"{name}\",dir=\"tx\"}} {}",
                s.opackets
            );
            let _ = writeln!(
                out,
                "sluice_port_missed_total{{port=\"{name}\"}} {}",
                s.imissed
            );
            let _ = writeln!(
                out,
                "sluice_port_errors_total{{port=\"{name}\",dir=\"rx\"}} {}",
                s.ierrors
            );
            let _ = writeln!(
                out,
                "sluice_port_errors_total{{port=\"{name}\",dir=\"tx\"}} {}",
                s.oerrors
            );
            let _ = writeln!(
                out,
                "sluice_port_rx_nombuf_total{{port=\"{name}\"}} {}",
                s.rx_nombuf
            );
            let _ = writeln!(
                out,
                "sluice_port_link_up{{port=\"{name}\"}} {}",
                port::link_up(*id) as u8
            );
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
                        "requests": r[0], "failures": r[1], "responses_5xx": r[2], "in_flight": r[3]}),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        serde_json::json!({
            "counters": map(&total),
            "services": services,
            "backends": backends,
            "workers": self.workers.iter().map(|w| map(&w.snapshot())).collect::<Vec<_>>(),
            "ports": ports,
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
