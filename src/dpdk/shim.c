/* Out-of-line copies of DPDK's static inline functions and macros, so that
 * Rust can call them. Each is a one-line forward: the call costs one jump per
 * burst, not per packet, for the burst functions. */
#include "shim.h"
#include <rte_mbuf_pool_ops.h>
#include <unistd.h>

int sluice_errno(void) { return rte_errno; }
unsigned sluice_lcore_id(void) { return rte_lcore_id(); }

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int sluice_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned n)
{
	return rte_pktmbuf_alloc_bulk(mp, pkts, n);
}

void sluice_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void sluice_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned n) { rte_pktmbuf_free_bulk(pkts, n); }
uint8_t *sluice_pktmbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }
uint16_t sluice_pktmbuf_data_len(const struct rte_mbuf *m) { return m->data_len; }
uint32_t sluice_pktmbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
uint16_t sluice_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t sluice_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t sluice_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint32_t sluice_pktmbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
uint64_t sluice_pktmbuf_ol_flags(const struct rte_mbuf *m) { return m->ol_flags; }
uint16_t sluice_pktmbuf_port(const struct rte_mbuf *m) { return m->port; }

int sluice_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len)
{
	if (m->nb_segs != 1 || (uint32_t)m->data_off + len > m->buf_len)
		return -1;
	m->data_len = len;
	m->pkt_len = len;
	return 0;
}

int sluice_pktmbuf_adj_front(struct rte_mbuf *m, int delta)
{
	if (delta < 0)
		return rte_pktmbuf_prepend(m, (uint16_t)(-delta)) == NULL ? -1 : 0;
	return rte_pktmbuf_adj(m, (uint16_t)delta) == NULL ? -1 : 0;
}

uint64_t sluice_rdtsc(void) { return rte_rdtsc(); }
uint64_t sluice_tsc_hz(void) { return rte_get_tsc_hz(); }

unsigned sluice_ring_enqueue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned sluice_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

struct rte_mempool *sluice_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, int socket, int packed)
{
	if (!packed)
		return rte_pktmbuf_pool_create(name, n, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	/* rte_pktmbuf_pool_create_by_ops, with the one flag it cannot take. */
	struct rte_pktmbuf_pool_private priv = {
		.mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE,
		.mbuf_priv_size = 0,
	};
	struct rte_mempool *mp = rte_mempool_create_empty(name, n,
		sizeof(struct rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE, cache, sizeof(priv),
		socket, RTE_MEMPOOL_F_NO_IOVA_CONTIG);
	if (mp == NULL)
		return NULL;
	int ret = rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL);
	if (ret == 0) {
		rte_pktmbuf_pool_init(mp, &priv);
		ret = rte_mempool_populate_default(mp);
	}
	if (ret < 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
}

struct umem_span {
	uintptr_t lo, hi;
	size_t obj_size;
	int outside;
};

static void umem_check_obj(struct rte_mempool *mp, void *arg, void *obj, unsigned idx)
{
	struct umem_span *u = arg;
	uintptr_t start = (uintptr_t)obj - mp->header_size;
	(void)idx;
	if (start < u->lo || start + u->obj_size > u->hi)
		u->outside++;
}

int sluice_mempool_outside_umem(struct rte_mempool *mp)
{
	/* net_af_xdp 22.11 (xdp_umem_configure): the UMEM starts at the page of
	 * the first memory chunk and spans populated_size objects of
	 * rte_mempool_calc_obj_size() bytes. */
	struct rte_mempool_memhdr *first = STAILQ_FIRST(&mp->mem_list);
	if (first == NULL)
		return 0;
	struct umem_span u;
	uintptr_t addr = (uintptr_t)first->addr;
	u.lo = addr & ~((uintptr_t)getpagesize() - 1);
	u.obj_size = rte_mempool_calc_obj_size(mp->elt_size, mp->flags, NULL);
	u.hi = u.lo + (uintptr_t)mp->populated_size * u.obj_size + (addr - u.lo);
	u.outside = 0;
	rte_mempool_obj_iter(mp, umem_check_obj, &u);
	return u.outside;
}

struct rte_mbuf *sluice_pktmbuf_unshare(struct rte_mbuf *m)
{
	struct rte_mbuf *c = rte_pktmbuf_copy(m, m->pool, 0, UINT32_MAX);
	if (c == NULL)
		return NULL;
	rte_pktmbuf_free(m);
	return c;
}

