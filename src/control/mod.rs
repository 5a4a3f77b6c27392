//! The control thread (main lcore): brings the data plane up from a config,
//! launches the workers, serves the admin endpoint, waits for a signal (or
//! for the input to go idle, in pcap replay), and shuts everything down in
//! order: workers stop and flush, then ports stop (the EAL itself is never
//! torn down: see [`crate::dpdk::Eal`]).

pub mod admin;
pub mod compile;
pub mod liveness;
pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam::queue::ArrayQueue;

use crate::config::{Config, OnWorkerFailure, PortDevice};
use crate::dpdk::{self, port, Eal, Mempool};
use crate::l4::conntrack::{ConntrackConfig, RateLimit, Timeouts};
use crate::net::counters::{Counter, L4Counters, WorkerCounters};
use crate::worker;
use crate::worker::liveness::{ExitGuard, Heartbeat};
use compile::Registry;
use stats::StatsSource;

/// Re-reads the config for a reload (SIGHUP), with the same overrides.
pub type Reloader = Box<dyn Fn() -> Result<Config, String>>;

/// Options of `sluice run` beyond the config file.
#[derive(Default)]
pub struct RunOptions {
    /// How to re-read the config on SIGHUP (no reload when None).
    pub reload: Option<Reloader>,
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

/// Packets a worker's rx queue can hold (the L7 receive budget follows
/// it): `dataplane.rx_desc`, but a `net_af_xdp` queue holds no more than
/// the buffers its PMD keeps in the fill ring, whatever the size of its rx
/// ring; with several ports, the smallest.
fn rx_held(cfg: &Config) -> usize {
    let desc = cfg.dataplane.rx_desc as usize;
    if cfg
        .ports
        .iter()
        .any(|p| device_name(&p.device).starts_with("net_af_xdp"))
    {
        desc.min(crate::config::AF_XDP_FILL_MBUFS as usize)
    } else {
        desc
    }
}

/// Bytes of EAL memory one mbuf of a worker's pool takes: the default data
/// room (2048 + 128 bytes of headroom), the `rte_mbuf` header (two cache
/// lines) and the mempool's object header, rounded up.
pub const MBUF_FOOTPRINT: u64 = 2432;

/// A mempool creation error with what it needs: without hugepages the EAL
/// has only the `-m` megabytes it was given.
fn pool_error(e: &str, mbufs: u32, eal_args: &[String]) -> String {
    let need = (u64::from(mbufs) * MBUF_FOOTPRINT).div_ceil(1 << 20);
    let given = eal_args
        .iter()
        .position(|a| a == "-m" || a == "--socket-mem")
        .and_then(|i| eal_args.get(i + 1))
        .map(|m| format!(" (`eal.args` gives {m} MB)"))
        .unwrap_or_default();
    format!(
        "{e}: each worker's pool of {mbufs} mbufs takes about {need} MiB of EAL memory; \
         raise -m in `eal.args`{given} or lower `dataplane.mbufs`"
    )
}

/// A hint for a port that failed to start, when its driver is known to
/// fail for a reason its own message does not name.
fn port_hint(dev: &PortDevice, e: &str) -> &'static str {
    if device_name(dev).starts_with("net_af_xdp") && e.contains("rx queue") {
        " (net_af_xdp fails so when the interface has no such queue (`start_queue`, \
         `queue_count`), when the worker's pool has fewer than 2048 free mbufs for the \
         port's fill ring, or without root: CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_IPC_LOCK)"
    } else {
        ""
    }
}

/// Run the appliance until SIGINT/SIGTERM (or the idle/duration limits).
pub fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let argv = cfg.eal_argv();
    log::info!("starting EAL: {}", argv.join(" "));
    let eal = Eal::init(&argv).context("EAL")?;
    log::info!("{} ready, TSC {} Hz", dpdk::version(), dpdk::tsc_hz());

    let dp = cfg.dataplane.clone();
    let dp = &dp;
    let nworkers = dp.workers.len();
    for &l in &dp.workers {
        if !eal.lcore_enabled(l) {
            bail!(
                "worker lcore {l} is not enabled in the EAL (check eal.args / dataplane.workers)"
            );
        }
    }
    // One pool per worker, on the worker's NUMA node, so that rx buffers of a
    // queue are local to the core that polls it. Packed (`Mempool::new`)
    // unless a NIC reads it by DMA: a packed pool's mbufs have no IO address.
    let packed = cfg
        .ports
        .iter()
        .all(|p| matches!(p.device, PortDevice::Vdev(_)));
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
                packed,
            )
            .map(|p| &*Box::leak(Box::new(p)))
            .map_err(|e| anyhow!(pool_error(&e, dp.mbufs, &cfg.eal.args)))
        })
        .collect::<Result<_>>()?;
    // net_af_xdp registers a pool's memory with the kernel by a formula that
    // only a packed pool satisfies; an mbuf outside it would be lost the
    // first time it is handed to the kernel, and the port would starve.
    let af_xdp = cfg
        .ports
        .iter()
        .any(|p| matches!(&p.device, PortDevice::Vdev(v) if v.starts_with("net_af_xdp")));
    if af_xdp {
        if let Some(n) = pools
            .iter()
            .map(|p| p.outside_af_xdp_umem())
            .find(|&n| n > 0)
        {
            bail!(
                "net_af_xdp ports cannot share a worker's mbuf pool with PCI ports: the pool \
                 PCI ports need (mbufs kept within pages) leaves {n} of its {} mbufs outside \
                 the memory net_af_xdp registers with the kernel, where they would be lost",
                dp.mbufs
            );
        }
    }

    // Ports that fail to start, and those started before a later step
    // fails, are closed before the error is returned: a device may hold
    // kernel state beyond the process (net_af_xdp attaches an XDP program
    // to its interface and only removes it on close).
    let mut opened: Vec<u16> = Vec::new();
    let close_opened = |opened: &[u16]| opened.iter().for_each(|&id| port::stop(id));
    let mut infos = Vec::new();
    for p in &cfg.ports {
        let name = device_name(&p.device);
        let Some(id) = port::find(&name) else {
            close_opened(&opened);
            bail!("port {:?}: DPDK has no device named {name:?}", p.name);
        };
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
        .map_err(|e| {
            port::close(id);
            close_opened(&opened);
            anyhow!("port {:?}: {e}{}", p.name, port_hint(&p.device, &e))
        })?;
        opened.push(id);
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

    let mut registry = Registry::default();
    let plane = match compile::build_plane(&cfg, &infos, &mut registry, nworkers) {
        Ok(plane) => Arc::new(plane),
        Err(e) => {
            close_opened(&opened);
            return Err(e);
        }
    };
    let counters: Vec<Arc<WorkerCounters>> = (0..nworkers)
        .map(|_| Arc::new(WorkerCounters::default()))
        .collect();
    let l4_counters: Vec<Arc<L4Counters>> = (0..nworkers)
        .map(|_| Arc::new(L4Counters::default()))
        .collect();
    let mailboxes = Arc::new(
        (0..nworkers)
            .map(|_| ArrayQueue::new(1024))
            .collect::<Vec<_>>(),
    );
    let redirects = Arc::new(
        (0..nworkers)
            .map(|_| ArrayQueue::new(4096))
            .collect::<Vec<_>>(),
    );
    let ct = &cfg.conntrack;
    let ct_config = ConntrackConfig {
        max_flows: ct.max_flows as usize,
        timeouts: Timeouts {
            syn: ct.syn_timeout_s as u64 * 1_000_000_000,
            established: ct.established_timeout_s as u64 * 1_000_000_000,
            closing: ct.closing_timeout_s as u64 * 1_000_000_000,
            closed: ct.closed_timeout_s as u64 * 1_000_000_000,
            udp: ct.udp_timeout_s as u64 * 1_000_000_000,
        },
        new_flow_rate: (ct.new_flows_per_sec > 0).then_some(RateLimit {
            per_sec: ct.new_flows_per_sec as u64,
            burst: ct.new_flows_burst as u64,
        }),
    };
    let snat_addrs = compile::owned_addresses(&cfg);
    let worker_stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(crate::l7::health::HealthState::default());
    let planes = worker::handoff::Publisher::new(plane);
    let heartbeats: Vec<Arc<Heartbeat>> = (0..nworkers).map(|_| Arc::default()).collect();
    let rx_held = rx_held(&cfg);
    for (i, &lcore) in dp.workers.iter().enumerate() {
        let (sub, plane) = planes.subscribe();
        let setup = worker::WorkerSetup {
            index: i,
            plane,
            planes: sub,
            burst: dp.burst as usize,
            rx_desc: rx_held,
            drain_ns: dp.tx_drain_us as u64 * 1000,
            idle_sleep: Duration::from_micros(dp.idle_sleep_us.into()),
            neighbor_capacity: NEIGHBOR_CAPACITY,
            neighbor_timeout_ns: dp.neighbor_timeout_s as u64 * 1_000_000_000,
            neighbor_retry_ns: dp.neighbor_retry_ms as u64 * 1_000_000,
            counters: counters[i].clone(),
            mailboxes: mailboxes.clone(),
            redirects: redirects.clone(),
            l4: worker::L4Setup {
                workers: nworkers,
                conntrack: ct_config,
                snat_addrs: snat_addrs.clone(),
                counters: l4_counters[i].clone(),
            },
            expire_budget: ct.expire_budget as usize,
            pool: pools[i],
            health: health.clone(),
            stop: worker_stop.clone(),
            heartbeat: heartbeats[i].clone(),
        };
        // Marks the worker exited however its function ends, panic included.
        let exit = ExitGuard(heartbeats[i].clone());
        eal.launch(lcore, move || {
            let _exit = exit.arm();
            worker::run(setup)
        })?;
    }
    let stuck_after = Duration::from_millis(dp.worker_stuck_ms as u64);
    let mut monitor = liveness::Monitor::new(&heartbeats, stuck_after, Instant::now());
    let workers_health = Arc::new(liveness::WorkerHealth::default());
    let exit_on_failure = dp.on_worker_failure == OnWorkerFailure::Exit;
    let mut worker_failure = false;

    let source = Arc::new(StatsSource {
        workers: counters.clone(),
        l4: l4_counters.clone(),
        names: std::sync::Mutex::new(registry.clone()),
        ports: cfg
            .ports
            .iter()
            .zip(&infos)
            .map(|(p, i)| (p.name.clone(), i.id))
            .collect(),
        health: health.clone(),
        workers_health: workers_health.clone(),
        pools: pools.iter().map(|&p| (p, dp.mbufs)).collect(),
    });
    let mut cfg = cfg;
    let admin = if cfg.admin.enabled {
        match admin::spawn(cfg.admin.listen, source.clone(), stop.clone()) {
            Ok(h) => Some(h),
            Err(e) => {
                worker_stop.store(true, Ordering::SeqCst);
                for &l in &dp.workers {
                    eal.wait(l);
                }
                close_opened(&opened);
                bail!("admin listen {}: {e}", cfg.admin.listen);
            }
        }
    } else {
        None
    };

    let started = Instant::now();
    let mut health_seen = 0u64;
    let mut last_rx = 0u64;
    let mut last_change = Instant::now();
    let mut last_print = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        for event in monitor.check(Instant::now()) {
            match event {
                liveness::Event::Failed(i, why) => {
                    let lcore = dp.workers[i];
                    let what = match why {
                        liveness::Failure::Died => format!("worker {i} (lcore {lcore}) died"),
                        liveness::Failure::Stuck(d) => format!(
                            "worker {i} (lcore {lcore}) is stuck: no heartbeat for {} ms",
                            d.as_millis()
                        ),
                    };
                    log::error!(
                        "{what}: its rx queues are not polled and their packets are lost; \
                         /healthz fails; {}",
                        if exit_on_failure {
                            "stopping (dataplane.on_worker_failure = \"exit\")"
                        } else {
                            "running on (dataplane.on_worker_failure = \"keep\")"
                        }
                    );
                    workers_health.set_failed(i, what);
                    worker_failure |= exit_on_failure;
                }
                liveness::Event::Resumed(i) => {
                    log::warn!("worker {i} (lcore {}) is polling again", dp.workers[i]);
                    workers_health.clear(i);
                }
            }
        }
        if worker_failure {
            break;
        }
        let rx = source.total()[Counter::rx_packets as usize];
        if rx != last_rx {
            last_rx = rx;
            last_change = Instant::now();
        }
        if let Some(idle) = opts.exit_on_idle {
            // Before the first packet, allow the workers time to start (a
            // worker builds its connection table first, which takes a while
            // on a loaded machine): the idle period only counts once
            // traffic has been seen, or after 5 s more without any.
            let idle = if last_rx == 0 {
                idle + Duration::from_secs(5)
            } else {
                idle
            };
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
        if hup.swap(false, Ordering::SeqCst) {
            match &opts.reload {
                Some(reload) => {
                    match reload_plane(reload, &cfg, &infos, &mut registry, nworkers, &health) {
                        Ok((new_cfg, plane)) => {
                            // Every worker moves to the newest plane at its next
                            // check, however many reloads came before it looked.
                            planes.publish(Arc::new(plane));
                            *source.names.lock().unwrap() = registry.clone();
                            log::info!(
                                "reloaded: {} service(s), {} cluster(s)",
                                new_cfg.services.len(),
                                new_cfg.clusters.len()
                            );
                            cfg = new_cfg;
                        }
                        Err(e) => log::error!("reload rejected, keeping the running config: {e}"),
                    }
                }
                None => log::warn!("SIGHUP: reload not available"),
            }
        }
        // A backend changed state by its health check: the same compile
        // as a reload, with the down backends out of the Maglev tables,
        // here and not on the workers (glb-director's control loop does
        // the same). Workers pick the plane up between bursts.
        let generation = health.generation();
        if generation != health_seen {
            health_seen = generation;
            match compile::build_plane_with_health(&cfg, &infos, &mut registry, nworkers, &health) {
                Ok(plane) => {
                    planes.publish(Arc::new(plane));
                    log::info!("backend health changed: new plane published");
                }
                Err(e) => log::error!("backend health changed, plane not rebuilt: {e}"),
            }
        }
        // Planes the workers have let go of are freed here, not on them;
        // so are the pages of large blocks they freed (dpdk::pages).
        planes.collect();
        crate::dpdk::pages::release_pending();
        if let Some(iv) = opts.stats_interval {
            if last_print.elapsed() >= iv {
                log::info!("stats: {}", source.summary_line());
                last_print = Instant::now();
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    worker_stop.store(true, Ordering::SeqCst);
    // A stuck worker never returns: waiting for its lcore would hang the
    // shutdown, and stopping ports under a worker that may still poll them
    // is not allowed. Give the workers a bounded time to stop.
    let deadline = Instant::now() + stuck_after + Duration::from_secs(1);
    while heartbeats.iter().any(|h| !h.exited()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut failed = worker_failure;
    let mut unstopped = Vec::new();
    for (i, &l) in dp.workers.iter().enumerate() {
        if !heartbeats[i].exited() {
            unstopped.push(l);
        } else if eal.wait(l) != 0 {
            log::error!("worker on lcore {l} failed");
            failed = true;
        }
    }
    for q in redirects.iter() {
        while q.pop().is_some() {}
    }
    planes.collect();
    let elapsed = started.elapsed();
    let final_stats = source.json();
    if let Some(h) = admin {
        let _ = h.join();
    }
    if unstopped.is_empty() {
        for info in &infos {
            port::stop(info.id);
        }
    } else {
        log::error!(
            "worker lcore(s) {unstopped:?} did not stop within {:?}: leaving the ports running",
            stuck_after + Duration::from_secs(1)
        );
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
    // No rte_eal_cleanup: see `Eal`'s doc (the kernel reclaims the EAL's
    // memory at exit, and no safe code can outlive it then).
    if !unstopped.is_empty() {
        bail!("worker lcore(s) {unstopped:?} stuck");
    }
    if failed {
        bail!("a worker failed");
    }
    Ok(())
}

fn reload_plane(
    reload: &Reloader,
    running: &Config,
    infos: &[port::PortInfo],
    registry: &mut Registry,
    workers: usize,
    health: &crate::l7::health::HealthState,
) -> Result<(Config, crate::net::plane::Plane)> {
    let new = reload().map_err(|e| anyhow!(e))?;
    running.check_reloadable(&new).map_err(|e| anyhow!(e))?;
    let mut reg = registry.clone();
    let plane = compile::build_plane_with_health(&new, infos, &mut reg, workers, health)?;
    *registry = reg;
    Ok((new, plane))
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::rx_held;

    fn cfg(vdev: &str, rx_desc: Option<u16>) -> crate::config::Config {
        let desc = rx_desc
            .map(|d| format!("rx_desc = {d}\n"))
            .unwrap_or_default();
        let text = format!(
            "[dataplane]\nworkers = [1]\n{desc}\n[[port]]\nname = \"p0\"\nvdev = \"{vdev}\"\naddresses = [\"10.0.0.1/24\"]\n"
        );
        crate::config::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn an_af_xdp_queue_holds_at_most_its_fill_ring() {
        // The default uses every buffer of the fill ring.
        assert_eq!(rx_held(&cfg("net_af_xdp0,iface=l0", None)), 2048);
        assert_eq!(rx_held(&cfg("net_af_xdp0,iface=l0", Some(1024))), 1024);
        assert_eq!(rx_held(&cfg("net_af_xdp0,iface=l0", Some(8192))), 2048);
        assert_eq!(rx_held(&cfg("net_af_packet0,iface=l0", Some(8192))), 8192);
    }
}
