/*
 * pool.c - piece bookkeeping (see pool.h for the life cycle).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pool.h"

#define PIECE_SIZE_MAX ((size_t)1 << 30)

static int add_region(struct zc_pool *p, void *base, size_t len)
{
	struct zc_pool_region *r = &p->regions[p->nregions];
	size_t count = len / p->piece_size;

	if (!base || count == 0)
		return -EINVAL; /* a region too small for one piece */
	if (p->npieces + count > ZC_MAX_PIECES)
		return -E2BIG;
	r->base = base;
	r->len = len;
	r->first = p->npieces;
	r->count = (uint32_t)count;
	p->npieces += (uint32_t)count;
	p->nregions++;
	return 0;
}

static int add_regions(struct zc_pool *p, const struct zc_config *cfg)
{
	if (!cfg->regions) {
		void *mem;

		if (cfg->pool_size < p->piece_size)
			return -EINVAL;
		if (cfg->pool_size / p->piece_size > ZC_MAX_PIECES)
			return -E2BIG;
		/* Populate now: first-touch faults would otherwise land on
		 * the receive path, inside the kernel's copy. */
		mem = mmap(NULL, cfg->pool_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (mem == MAP_FAILED)
			return -errno;
		p->owns_memory = 1;
		return add_region(p, mem, cfg->pool_size);
	}
	if (cfg->nregions == 0)
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nregions; i++) {
		int err = add_region(p, cfg->regions[i].base, cfg->regions[i].len);
		if (err)
			return err;
	}
	return 0;
}

int zc_pool_init(struct zc_pool *p, const struct zc_config *cfg)
{
	unsigned nreg = cfg->regions ? cfg->nregions : 1;
	int err;

	memset(p, 0, sizeof(*p));
	if (cfg->piece_size == 0 || cfg->piece_size > PIECE_SIZE_MAX)
		return -EINVAL;
	if (cfg->regions && nreg == 0)
		return -EINVAL;
	if (nreg > ZC_MAX_PIECES) /* each region holds at least one piece */
		return -E2BIG;
	p->piece_size = cfg->piece_size;
	p->regions = calloc(nreg, sizeof(*p->regions));
	if (!p->regions)
		return -ENOMEM;
	err = add_regions(p, cfg);
	if (err)
		goto fail;
	p->gen = calloc(p->npieces, sizeof(*p->gen));
	p->state = calloc(p->npieces, sizeof(*p->state));
	p->free = calloc(p->npieces, sizeof(*p->free));
	if (!p->gen || !p->state || !p->free) {
		err = -ENOMEM;
		goto fail;
	}
	/* Lowest index on top of the stack: pieces are used in address order. */
	for (uint32_t i = 0; i < p->npieces; i++)
		p->free[i] = p->npieces - 1 - i;
	p->nfree = p->npieces;
	return 0;
fail:
	zc_pool_fini(p);
	return err;
}

void zc_pool_fini(struct zc_pool *p)
{
	if (p->owns_memory && p->nregions)
		munmap(p->regions[0].base, p->regions[0].len);
	free(p->regions);
	free(p->gen);
	free(p->state);
	free(p->free);
	memset(p, 0, sizeof(*p));
}

static const struct zc_pool_region *region_of(const struct zc_pool *p, uint32_t idx)
{
	unsigned lo = 0, hi = p->nregions;

	while (hi - lo > 1) { /* regions are sorted by first piece index */
		unsigned mid = (lo + hi) / 2;
		if (p->regions[mid].first <= idx)
			lo = mid;
		else
			hi = mid;
	}
	return &p->regions[lo];
}

void *zc_pool_addr(const struct zc_pool *p, uint32_t idx)
{
	const struct zc_pool_region *r = region_of(p, idx);

	return r->base + (size_t)(idx - r->first) * p->piece_size;
}

int zc_pool_get(struct zc_pool *p, uint32_t *idx)
{
	if (p->nfree == 0)
		return -ENOBUFS;
	*idx = p->free[--p->nfree];
	p->state[*idx] = PIECE_POSTED;
	return 0;
}

void zc_pool_put(struct zc_pool *p, uint32_t idx)
{
	p->state[idx] = PIECE_FREE;
	p->free[p->nfree++] = idx;
}

void zc_pool_hand_out(struct zc_pool *p, uint32_t idx, size_t len,
		      struct zc_piece *out)
{
	p->state[idx] = PIECE_HELD;
	if (p->gen[idx] >= ZC_POOL_GEN_MAX) /* 0 marks "never handed out" */
		p->gen[idx] = 1;
	else
		p->gen[idx]++;
	p->held++;
	out->data = zc_pool_addr(p, idx);
	out->len = len;
	out->ref = (uint64_t)p->gen[idx] << 32 | idx;
}

int zc_pool_take_back(struct zc_pool *p, const struct zc_piece *piece,
		      uint32_t *idx)
{
	uint32_t i, gen;

	if (!piece)
		return -EINVAL;
	i = (uint32_t)piece->ref;
	gen = (uint32_t)(piece->ref >> 32);
	if (i >= p->npieces || gen == 0 || gen > p->gen[i] ||
	    piece->data != zc_pool_addr(p, i) || piece->len > p->piece_size)
		return -EINVAL;
	if (gen != p->gen[i] || p->state[i] != PIECE_HELD)
		return -EALREADY;
	p->state[i] = PIECE_POSTED;
	p->held--;
	*idx = i;
	return 0;
}
