//! The control thread (main lcore): brings the data plane up from a config,
//! launches the workers, serves the admin endpoint, waits for a signal (or
//! for the input to go idle, in pcap replay), and shuts everything down in
//! order: workers stop and flush, then ports stop, then the EAL.

pub mod admin;
pub mod stats;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam::queue::ArrayQueue;

use crate::config::{Config, PortDevice};
use crate::dpdk::{self, port, Eal, Mempool};
use crate::worker::{self, counters::Counter, counters::WorkerCounters, plane};
use stats::StatsSource;

/// Options of `sluice run` beyond the config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop once no packet has arrived for this long (pcap replay, tests).
    pub exit_on_idle: Option<Duration>,
    /// Stop after this long regardless (benchmarks).
    pub duration: Option<Duration>,
    /// Write the final counters as JSON here.
    pub stats_out: Option<PathBuf>,
    /// Print a counters line this often.
    pub stats_interval: Option<Duration>,
}

/// Neighbor entries per worker.
const NEIGHBOR_CAPACITY: usize = 4096;

/// The DPDK name of a port's device: the PCI address, or the vdev's name
/// (before the first comma).
fn device_name(dev: &PortDevice) -> String {
    match dev {
        PortDevice::Pci(a) => a.clone(),
        PortDevice::Vdev(v) => v.split(',').next().unwrap_or("").to_string(),
    }
}

/// Compile the config into the plane the workers read.
pub fn build_plane(cfg: &Config, infos: &[port::PortInfo]) -> plane::Plane {
    let mut ports = Vec::new();
    let mut gateways = Vec::new();
    for (i, (p, info)) in cfg.ports.iter().zip(infos).enumerate() {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in &p.addresses {
            match c.addr() {
                IpAddr::V4(a) => v4.push((a, c.prefix_len())),
                IpAddr::V6(a) => v6.push((a, c.prefix_len())),
            }
        }
        ports.push(plane::PortPlane {
            name: p.name.clone(),
            port_id: info.id,
            mac: info.mac,
            vlan: p.vlan,
            v4,
            v6,
        });
        if let Some(g) = p.gateway {
            gateways.push((i, IpAddr::V4(g)));
        }
        if let Some(g) = p.gateway6 {
            gateways.push((i, IpAddr::V6(g)));
        }
    }
    let index_of = |name: &str| cfg.ports.iter().position(|p| p.name == name).unwrap_or(0);
    let routes: Vec<_> = cfg
        .routes
        .iter()
        .map(|r| {
            (
                r.prefix.addr(),
                r.prefix.prefix_len(),
                index_of(r.port_name()),
                r.via,
            )
        })
        .collect();
    let neighbors = cfg
        .neighbors
        .iter()
        .map(|n| (index_of(n.port_name()), n.ip, n.mac.octets()))
        .collect();
    plane::Plane::new(ports, &gateways, &routes, neighbors)
}

/// Run the appliance until SIGINT/SIGTERM (or the idle/duration limits).
pub fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let argv = cfg.eal_argv();
    log::info!("starting EAL: {}", argv.join(" "));
    let eal = Eal::init(&argv).context("EAL")?;
    log::info!("{} ready, TSC {} Hz", dpdk::version(), dpdk::tsc_hz());

    let dp = &cfg.dataplane;
    let nworkers = dp.workers.len();
    for &l in &dp.workers {
        if !eal.lcore_enabled(l) {
            bail!(
                "worker lcore {l} is not enabled in the EAL (check eal.args / dataplane.workers)"
            );
        }
    }
    // One pool per worker, on the worker's NUMA node, so that rx buffers of a
    // queue are local to the core that polls it.
    let pools: Vec<&'static Mempool> = dp
        .workers
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            Mempool::new(
                &format!("sluice_w{i}"),
                dp.mbufs,
                dp.mbuf_cache,
                eal.lcore_socket(l),
            )
            .map(|p| &*Box::leak(Box::new(p)))
            .map_err(|e| anyhow!(e))
        })
        .collect::<Result<_>>()?;

    let mut infos = Vec::new();
    for p in &cfg.ports {
        let name = device_name(&p.device);
        let id = port::find(&name)
            .ok_or_else(|| anyhow!("port {:?}: DPDK has no device named {name:?}", p.name))?;
        let info = port::start(
            id,
            &port::PortSetup {
                queues: nworkers as u16,
                rx_desc: dp.rx_desc,
                tx_desc: dp.tx_desc,
                mtu: p.mtu,
                mac: p.mac.map(|m| m.octets()),
                rss: p.rss,
                pools: pools.clone(),
            },
        )
        .map_err(|e| anyhow!("port {:?}: {e}", p.name))?;
        log::info!(
            "port {} = dpdk port {} ({}), mac {}, {} queue(s){}{}",
            p.name,
            id,
            info.driver,
            fmt_mac(info.mac),
            info.queues,
            if info.rss { ", rss" } else { "" },
            if info.promiscuous {
                ", promiscuous"
            } else {
                ""
            }
        );
        infos.push(info);
    }

    let plane = Arc::new(build_plane(&cfg, &infos));
    let counters: Vec<Arc<WorkerCounters>> = (0..nworkers)
        .map(|_| Arc::new(WorkerCounters::default()))
        .collect();
    let mailboxes = Arc::new(
        (0..nworkers)
            .map(|_| ArrayQueue::new(1024))
            .collect::<Vec<_>>(),
    );
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut plane_senders = Vec::new();
    for (i, &lcore) in dp.workers.iter().enumerate() {
        let (tx, rx) = crossbeam::channel::bounded(1);
        plane_senders.push(tx);
        let setup = worker::WorkerSetup {
            index: i,
            plane: plane.clone(),
            planes: rx,
            burst: dp.burst as usize,
            drain_ns: dp.tx_drain_us as u64 * 1000,
            neighbor_capacity: NEIGHBOR_CAPACITY,
            neighbor_timeout_ns: dp.neighbor_timeout_s as u64 * 1_000_000_000,
            neighbor_retry_ns: dp.neighbor_retry_ms as u64 * 1_000_000,
            counters: counters[i].clone(),
            mailboxes: mailboxes.clone(),
            stop: worker_stop.clone(),
        };
        eal.launch(lcore, move || worker::run(setup))?;
    }

    let source = Arc::new(StatsSource {
        workers: counters.clone(),
        ports: cfg
            .ports
            .iter()
            .zip(&infos)
            .map(|(p, i)| (p.name.clone(), i.id))
            .collect(),
    });
    let admin = if cfg.admin.enabled {
        match admin::spawn(cfg.admin.listen, source.clone(), stop.clone()) {
            Ok(h) => Some(h),
            Err(e) => {
                worker_stop.store(true, Ordering::SeqCst);
                for &l in &dp.workers {
                    eal.wait(l);
                }
                bail!("admin listen {}: {e}", cfg.admin.listen);
            }
        }
    } else {
        None
    };

    let started = Instant::now();
    let mut last_rx = 0u64;
    let mut last_change = Instant::now();
    let mut last_print = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        let rx = source.total()[Counter::rx_packets as usize];
        if rx != last_rx {
            last_rx = rx;
            last_change = Instant::now();
        }
        if let Some(idle) = opts.exit_on_idle {
            if last_change.elapsed() >= idle {
                log::info!("no packet for {idle:?}: stopping");
                break;
            }
        }
        if let Some(d) = opts.duration {
            if started.elapsed() >= d {
                break;
            }
        }
        if let Some(iv) = opts.stats_interval {
            if last_print.elapsed() >= iv {
                log::info!("stats: {}", source.summary_line());
                last_print = Instant::now();
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    worker_stop.store(true, Ordering::SeqCst);
    let mut failed = false;
    for &l in &dp.workers {
        if eal.wait(l) != 0 {
            log::error!("worker on lcore {l} failed");
            failed = true;
        }
    }
    let elapsed = started.elapsed();
    let final_stats = source.json();
    if let Some(h) = admin {
        let _ = h.join();
    }
    for info in &infos {
        port::stop(info.id);
    }
    log::info!(
        "stopped after {:.1}s: {}",
        elapsed.as_secs_f64(),
        source.summary_line()
    );
    if let Some(path) = &opts.stats_out {
        let mut v = final_stats;
        v["elapsed_s"] = serde_json::Value::from(elapsed.as_secs_f64());
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(eal);
    if failed {
        bail!("a worker failed");
    }
    Ok(())
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
