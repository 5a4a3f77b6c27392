//! Reading the workers' counters and the ports' driver statistics.

use std::fmt::Write;
use std::sync::Arc;

use crate::dpdk::port;
use crate::worker::counters::{self, Counter, WorkerCounters};

/// What the control thread can report: every worker's counters and every
/// port's driver stats.
pub struct StatsSource {
    pub workers: Vec<Arc<WorkerCounters>>,
    /// (port name, DPDK port id)
    pub ports: Vec<(String, u16)>,
}

impl StatsSource {
    pub fn total(&self) -> [u64; Counter::COUNT] {
        counters::total(&self.workers)
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
        serde_json::json!({
            "counters": map(&total),
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
