//! `sluice`: the command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use sluice::config;
use sluice::control::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "L4/L7 load-balancing appliance on DPDK"
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); overrides the config's [log] level.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance until SIGINT or SIGTERM.
    Run {
        #[arg(short, long)]
        config: PathBuf,
        /// Replace a port's device: NAME=DEVARGS (e.g. p0=net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap).
        #[arg(long = "port-device", value_name = "NAME=DEVARGS")]
        port_device: Vec<String>,
        /// Stop once no packet has arrived for this many milliseconds (pcap replay);
        /// before the first packet, 5 s more are allowed for the workers to start.
        #[arg(long, value_name = "MS")]
        exit_on_idle: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// Write the final counters as JSON to this file.
        #[arg(long, value_name = "FILE")]
        stats_out: Option<PathBuf>,
        /// Log a line of counters every this many seconds.
        #[arg(long, value_name = "SECS")]
        stats_interval: Option<f64>,
    },
    /// Validate a config file and print what would run.
    Check {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long = "port-device", value_name = "NAME=DEVARGS")]
        port_device: Vec<String>,
    },
    /// Print the counters of a running Sluice (from its admin endpoint).
    Stats {
        /// Admin address; defaults to the config's [admin] listen, else 127.0.0.1:9100.
        #[arg(long)]
        admin: Option<String>,
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print JSON instead of Prometheus text.
        #[arg(long)]
        json: bool,
    },
    /// Print Sluice's and DPDK's versions.
    Version,
}

fn load(path: &std::path::Path, overrides: &[String]) -> Result<config::Config, String> {
    let mut cfg = config::load(path).map_err(|e| e.to_string())?;
    for o in overrides {
        let (name, dev) = o
            .split_once('=')
            .ok_or_else(|| format!("--port-device {o:?}: expected NAME=DEVARGS"))?;
        cfg.override_device(name, dev).map_err(|e| e.to_string())?;
    }
    Ok(cfg)
}

fn init_log(cli_level: &Option<String>, cfg_level: Option<&str>) {
    let level = cli_level.as_deref().or(cfg_level).unwrap_or("info");
    env_logger::Builder::new()
        // rustls logs a warning for each warning alert a client sends and
        // each alert it sends back, on the worker cores: a client could
        // have Sluice write lines as fast as it sends alerts. Its errors
        // only, unless a filter names it (`info,rustls=debug`).
        .filter_module("rustls", log::LevelFilter::Error)
        .parse_filters(level)
        .format_timestamp_millis()
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check {
            config,
            port_device,
        } => {
            init_log(&cli.log_level, None);
            match load(&config, &port_device) {
                Ok(cfg) => {
                    for w in sluice::config::tls_warnings(&cfg) {
                        eprintln!("warning: {}: {w}", config.display());
                    }
                    print!("{}", cfg.summary());
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run {
            config,
            port_device,
            exit_on_idle,
            duration,
            stats_out,
            stats_interval,
        } => {
            let cfg = match load(&config, &port_device) {
                Ok(c) => c,
                Err(e) => {
                    init_log(&cli.log_level, None);
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            init_log(&cli.log_level, Some(cfg.log.level.as_str()));
            let reload_path = config.clone();
            let reload_overrides = port_device.clone();
            let opts = RunOptions {
                reload: Some(Box::new(move || load(&reload_path, &reload_overrides))),
                exit_on_idle: exit_on_idle.map(Duration::from_millis),
                duration: duration.map(Duration::from_secs_f64),
                stats_out,
                stats_interval: stats_interval.map(Duration::from_secs_f64),
            };
            match control::run(cfg, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Stats {
            admin,
            config,
            json,
        } => {
            let addr = match (admin, config) {
                (Some(a), _) => a,
                (None, Some(c)) => match config::load(&c) {
                    Ok(cfg) => cfg.admin.listen.to_string(),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => "127.0.0.1:9100".to_string(),
            };
            let path = if json { "/stats" } else { "/metrics" };
            match control::admin::get(&addr, path) {
                Ok(body) => {
                    print!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: admin endpoint {addr}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Version => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            println!("built against libdpdk {}", sluice::dpdk::build_version());
            ExitCode::SUCCESS
        }
    }
}
