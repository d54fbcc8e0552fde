/*
 * pool.h - the piece pool: fixed-size pieces carved from regions, and
 * the bookkeeping that says who owns each piece.
 *
 * A piece is in one of three states:
 *   FREE    the pool's; on the free stack, ready for an engine to fill;
 *   POSTED  lent to the engine (e.g. in the kernel's buffer ring);
 *   HELD    the application's, from the DATA event until zc_release().
 * Engines move pieces FREE/POSTED -> HELD with zc_pool_hand_out(); the
 * application moves them back with zc_release() -> zc_pool_take_back().
 * Each hand-out bumps the piece's generation, which is part of the
 * zc_piece.ref the application gets, so a stale or forged release is
 * recognised instead of corrupting the pool. Generations have 31 bits:
 * bit 63 of a ref is never set for a pool piece, which leaves it to mark
 * pieces an engine lends from memory of its own (ZC_REF_FOREIGN).
 */
#ifndef ZCNET_POOL_H
#define ZCNET_POOL_H

#include <stdint.h>
#include "zcnet.h"

/* Largest generation; the next hand-out wraps to 1. */
#define ZC_POOL_GEN_MAX 0x7fffffffu

enum zc_piece_state { PIECE_FREE = 0, PIECE_POSTED = 1, PIECE_HELD = 2 };

struct zc_pool_region {
	char *base;
	size_t len;
	uint32_t first; /* index of its first piece */
	uint32_t count; /* pieces in it */
};

struct zc_pool {
	size_t piece_size;
	uint32_t npieces;
	struct zc_pool_region *regions;
	unsigned nregions;
	int owns_memory;   /* regions[0] was mmap()ed by zcnet */
	uint32_t *gen;     /* per piece: generation of its current hand-out */
	uint8_t *state;    /* per piece: enum zc_piece_state */
	uint32_t *free;    /* stack of FREE piece indexes */
	uint32_t nfree;
	uint64_t held;     /* pieces in state HELD */
};

/* Build the pool described by @cfg (defaults already applied). 0 or -errno. */
int zc_pool_init(struct zc_pool *p, const struct zc_config *cfg);
void zc_pool_fini(struct zc_pool *p);

/* Address of piece @idx. */
void *zc_pool_addr(const struct zc_pool *p, uint32_t idx);

/* Take a FREE piece off the stack, marking it POSTED. 0 or -ENOBUFS. */
int zc_pool_get(struct zc_pool *p, uint32_t *idx);
/* Return a POSTED piece that was never filled to the free stack. */
void zc_pool_put(struct zc_pool *p, uint32_t idx);

/* The engine filled piece @idx with @len bytes: it becomes HELD and *@out
 * describes it for the application. */
void zc_pool_hand_out(struct zc_pool *p, uint32_t idx, size_t len,
		      struct zc_piece *out);

/*
 * The application gives @piece back. On success the piece is POSTED (the
 * caller lends it to the engine again) and *@idx names it. Returns 0,
 * -EINVAL (not a piece of this pool) or -EALREADY (released before).
 */
int zc_pool_take_back(struct zc_pool *p, const struct zc_piece *piece,
		      uint32_t *idx);

#endif
