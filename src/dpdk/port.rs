//! Ethernet port set-up: one rx and one tx queue per worker, RSS when the
//! device offers it, offloads only when advertised.

use std::ffi::{CStr, CString};

use super::eal::errno_str;
use super::mbuf::Mempool;
use super::sys;

/// A symmetric Toeplitz key (0x6d5a repeated): both directions of a flow hash
/// alike, so replies from a backend land on the worker that saw the request
/// when nothing rewrites the tuple. Full NAT still needs SNAT port steering;
/// see docs/ARCHITECTURE.md.
static SYMMETRIC_RSS_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// What a port is to be set up with.
pub struct PortSetup<'a> {
    /// Queue pairs: one per worker.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mtu: u16,
    /// Replace the device's MAC address with this one.
    pub mac: Option<[u8; 6]>,
    /// Use RSS to spread flows over the queues (only if more than one).
    pub rss: bool,
    /// Rx mempool per queue (index = queue id).
    pub pools: Vec<&'a Mempool>,
}

/// What set-up found out and chose.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub id: u16,
    pub driver: String,
    /// The MAC the port answers with.
    pub mac: [u8; 6],
    /// True when the configured MAC could not be programmed into the device
    /// and the port runs promiscuous instead (Sluice filters by MAC itself).
    pub promiscuous: bool,
    pub rss: bool,
    pub queues: u16,
    pub max_queues: u16,
    pub mtu_set: bool,
    pub tx_offloads: u64,
}

/// Port counters as the driver reports them.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// The DPDK port id of a device: `name` is the PCI address for NICs or the
/// vdev name (the part before the first comma) for virtual devices.
pub fn find(name: &str) -> Option<u16> {
    let cname = CString::new(name).ok()?;
    let mut id: u16 = 0;
    // SAFETY: cname is a valid C string and id a valid out-pointer.
    let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

/// Configure, set up queues and start port `id`.
pub fn start(id: u16, setup: &PortSetup<'_>) -> Result<PortInfo, String> {
    if setup.pools.len() != setup.queues as usize {
        return Err(format!(
            "port {id}: {} pools for {} queues",
            setup.pools.len(),
            setup.queues
        ));
    }
    // SAFETY: rte_eth_dev_info is a plain C struct; all-zero is a valid value
    // and dev_info_get fills it.
    let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
    // SAFETY: id is a valid port (found by `find`); info is a valid out-pointer.
    let ret = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
    if ret != 0 {
        return Err(format!("port {id}: dev_info_get: {}", errno_str(-ret)));
    }
    let driver = if info.driver_name.is_null() {
        String::from("?")
    } else {
        // SAFETY: driver_name points at the driver's static name string.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    let max_queues = info.max_rx_queues.min(info.max_tx_queues);
    if setup.queues > max_queues {
        return Err(format!(
            "port {id} ({driver}) offers {max_queues} queue pair(s) but {} workers need one each",
            setup.queues
        ));
    }

    // SAFETY: rte_eth_conf is a plain C struct for which all-zero means
    // "defaults"; bindgen's NewType/ModuleConsts enums keep that valid.
    let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
    let rss = setup.rss && setup.queues > 1 && info.flow_type_rss_offloads != 0;
    let mut key = SYMMETRIC_RSS_KEY;
    if rss {
        conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
        let hf = (sys::SLUICE_RSS_IP | sys::SLUICE_RSS_TCP | sys::SLUICE_RSS_UDP)
            & info.flow_type_rss_offloads;
        conf.rx_adv_conf.rss_conf.rss_hf = hf;
        let klen = if info.hash_key_size == 0 {
            40
        } else {
            info.hash_key_size
        };
        conf.rx_adv_conf.rss_conf.rss_key_len = klen.min(key.len() as u8);
        conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
    }
    // Free tx mbufs in bulk when the device allows it and every mbuf sent on
    // a queue comes from one pool with refcnt 1. With several workers, NAT
    // replies handed from one worker to another carry the first worker's
    // pool, so fast free (which returns a batch to its first mbuf's pool)
    // would move mbufs between pools: single queue only.
    let tx_offloads = if setup.queues == 1 {
        info.tx_offload_capa & sys::SLUICE_TX_OFFLOAD_MBUF_FAST_FREE
    } else {
        0
    };
    conf.txmode.offloads = tx_offloads;

    // SAFETY: conf is fully initialised and outlives the call (the key buffer
    // is copied by the driver during configure).
    let ret = unsafe { sys::rte_eth_dev_configure(id, setup.queues, setup.queues, &conf) };
    if ret != 0 {
        return Err(format!(
            "port {id} ({driver}): configure: {}",
            errno_str(-ret)
        ));
    }
    let mut rx_desc = setup.rx_desc;
    let mut tx_desc = setup.tx_desc;
    // SAFETY: valid port; the function clamps the descriptor counts in place.
    unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
    // SAFETY: valid port id; returns SOCKET_ID_ANY for virtual devices.
    let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
    let socket = if socket < 0 { 0 } else { socket as u32 };
    for q in 0..setup.queues {
        // SAFETY: the pool outlives the port (mempools are never freed); a
        // NULL rxconf means the driver defaults.
        let ret = unsafe {
            sys::rte_eth_rx_queue_setup(
                id,
                q,
                rx_desc,
                socket,
                std::ptr::null(),
                setup.pools[q as usize].as_ptr(),
            )
        };
        if ret != 0 {
            return Err(format!(
                "port {id} ({driver}): rx queue {q}: {}",
                errno_str(-ret)
            ));
        }
        let mut txconf = info.default_txconf;
        txconf.offloads = tx_offloads;
        // SAFETY: txconf is a valid copy of the driver's default.
        let ret = unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, &txconf) };
        if ret != 0 {
            return Err(format!(
                "port {id} ({driver}): tx queue {q}: {}",
                errno_str(-ret)
            ));
        }
    }
    // SAFETY: valid port id; unsupported MTU changes return an error we note.
    let mtu_set = unsafe { sys::rte_eth_dev_set_mtu(id, setup.mtu) } == 0;

    let mut promiscuous = false;
    if let Some(mac) = setup.mac {
        let mut addr = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: addr is a valid rte_ether_addr for the duration of the call.
        let ret = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
        if ret != 0 {
            // The device cannot take the address (pcap, some vdevs): receive
            // everything and let the worker match the configured MAC.
            // SAFETY: valid port id.
            unsafe { sys::rte_eth_promiscuous_enable(id) };
            promiscuous = true;
        }
    }
    // SAFETY: valid, configured port.
    let ret = unsafe { sys::rte_eth_dev_start(id) };
    if ret != 0 {
        return Err(format!("port {id} ({driver}): start: {}", errno_str(-ret)));
    }
    let mac = match setup.mac {
        Some(m) => m,
        None => {
            let mut addr = sys::rte_ether_addr::default();
            // SAFETY: addr is a valid out-pointer.
            unsafe { sys::rte_eth_macaddr_get(id, &mut addr) };
            addr.addr_bytes
        }
    };
    Ok(PortInfo {
        id,
        driver,
        mac,
        promiscuous,
        rss,
        queues: setup.queues,
        max_queues,
        mtu_set,
        tx_offloads,
    })
}

/// Stop and close a port (after its workers have stopped).
pub fn stop(id: u16) {
    // SAFETY: valid port id; stopping a stopped port is harmless.
    unsafe {
        sys::rte_eth_dev_stop(id);
        sys::rte_eth_dev_close(id);
    }
}

/// Close a port that was configured but not started (its set-up failed).
pub fn close(id: u16) {
    // SAFETY: valid port id; closing releases what configure and queue
    // set-up acquired (an af_xdp socket and its XDP program, for one).
    unsafe {
        sys::rte_eth_dev_close(id);
    }
}

pub fn link_up(id: u16) -> bool {
    let mut link = sys::rte_eth_link::default();
    // SAFETY: link is a valid out-pointer; nowait does not block.
    let ret = unsafe { sys::rte_eth_link_get_nowait(id, &mut link) };
    ret == 0 && link.link_status() != 0
}

pub fn stats(id: u16) -> PortStats {
    let mut s = sys::rte_eth_stats::default();
    // SAFETY: s is a valid out-pointer.
    if unsafe { sys::rte_eth_stats_get(id, &mut s) } != 0 {
        return PortStats::default();
    }
    PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}
