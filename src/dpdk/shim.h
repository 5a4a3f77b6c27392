/* The DPDK surface Sluice uses, plus `sluice_*` wrappers for the inline
 * functions and macros bindgen cannot export. */
#ifndef SLUICE_SHIM_H
#define SLUICE_SHIM_H

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_cycles.h>
#include <rte_version.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>

/* RSS hash types are built from RTE_BIT64(); give bindgen plain constants. */
static const uint64_t SLUICE_RSS_IP = RTE_ETH_RSS_IP;
static const uint64_t SLUICE_RSS_TCP = RTE_ETH_RSS_TCP;
static const uint64_t SLUICE_RSS_UDP = RTE_ETH_RSS_UDP;
static const uint64_t SLUICE_TX_OFFLOAD_IPV4_CKSUM = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
static const uint64_t SLUICE_TX_OFFLOAD_TCP_CKSUM = RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
static const uint64_t SLUICE_TX_OFFLOAD_UDP_CKSUM = RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
static const uint64_t SLUICE_TX_OFFLOAD_MBUF_FAST_FREE = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;

int sluice_errno(void);
unsigned sluice_lcore_id(void);
uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp);
int sluice_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned n);
void sluice_pktmbuf_free(struct rte_mbuf *m);
void sluice_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned n);
uint8_t *sluice_pktmbuf_data(struct rte_mbuf *m);
uint16_t sluice_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t sluice_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t sluice_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t sluice_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t sluice_pktmbuf_tailroom(const struct rte_mbuf *m);
uint32_t sluice_pktmbuf_rss_hash(const struct rte_mbuf *m);
uint64_t sluice_pktmbuf_ol_flags(const struct rte_mbuf *m);
/* Set data_len = pkt_len = len; the mbuf must be single-segment and len must
 * fit in headroom + buffer. Returns 0 or -1 if it does not fit. */
int sluice_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len);
/* Move the data start by `delta` bytes (negative: prepend). */
int sluice_pktmbuf_adj_front(struct rte_mbuf *m, int delta);
uint16_t sluice_pktmbuf_port(const struct rte_mbuf *m);
/* A private copy of a shared or indirect mbuf, in fresh direct mbufs from
 * m's own pool with the default headroom; m's reference is released. NULL
 * (and m untouched) if the pool is empty. */
struct rte_mbuf *sluice_pktmbuf_unshare(struct rte_mbuf *m);
uint64_t sluice_rdtsc(void);
uint64_t sluice_tsc_hz(void);
unsigned sluice_ring_enqueue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned sluice_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
/* rte_pktmbuf_pool_create with the default mbuf data room size. With
 * `packed`, the objects are laid back to back even across page boundaries
 * (RTE_MEMPOOL_F_NO_IOVA_CONTIG): net_af_xdp registers `n` objects' worth
 * of memory from the pool's start as its UMEM, and objects placed past that
 * (as page-bounded placement puts them: one 2.3 KiB object per 4 KiB page
 * without hugepages) are refused by the kernel and lost. A packed pool's
 * mbufs have no IO address: only for devices that do not DMA. */
struct rte_mempool *sluice_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, int socket, int packed);
/* How many of the pool's mbufs lie outside the memory net_af_xdp would
 * register for it (its UMEM). */
int sluice_mempool_outside_umem(struct rte_mempool *mp);

#endif
