/*
 * engine_mmap.c - the page-mapping engine: the kernel's TCP, epoll, and
 * TCP_ZEROCOPY_RECEIVE, which maps the pages that hold received payload
 * read-only into the application instead of copying them.
 *
 * The mapping area. One PROT_READ, MAP_SHARED mapping per context, of a
 * TCP socket that is never connected: the kernel only asks that the
 * range it maps into belongs to a mapping of some TCP socket, so one area
 * serves every connection, and no connection's socket is ever mapped
 * (a mapped socket stays open after close(), without a FIN, until it is
 * unmapped). The area is cut into slots (whole pages); each receive maps
 * into a run of free slots, each mapped slot is one piece. A released
 * slot is "dirty" (its pages are still mapped); dirty slots are unmapped
 * in batches, one madvise(MADV_DONTNEED) per run of them, so that receives
 * map only into clean ranges and can tell the kernel so
 * (TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT). The area is the mapping
 * budget: when every slot is held, the connection stalls like one whose
 * pool ran dry, and TCP's flow control holds the sender.
 *
 * What the kernel cannot map (payload not in whole, page-aligned pages,
 * as every plain send() produces) it reports as recv_skip_hint: those
 * bytes are read with readv() into pool pieces and counted as copied.
 *
 * Adaptive: over its first PROBE_BYTES, a connection whose payload was
 * less than MIN_MAPPED_PCT mapped gives up mapping and reads everything
 * with readv() (as the socket engine does), which costs one system call
 * per batch instead of two. It still counts those bytes as copied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <unistd.h>

#include "epoll_loop.h"
#include "tcp_compat.h"

#define RX_ROUNDS 8          /* receive calls per connection per wake-up */
#define MAP_CALL_MAX (2u << 20)   /* bytes one TCP_ZEROCOPY_RECEIVE may map */
#define SLOT_MAX (1u << 20)
#define PROBE_BYTES (8ull << 20)  /* judge a connection over this much */
#define MIN_MAPPED_PCT 90         /* ... and fall back below this */
#define GEN_MAX 0x7fffffffu       /* tags keep bit 63 clear */
#define ZAP_MAX ((2u << 20) - 4096) /* bytes one madvise() unmaps: see zap() */

enum { SLOT_CLEAN = 0, SLOT_DIRTY, SLOT_HELD };

struct mm_slot {
	uint32_t gen;     /* of its current hand-out: part of the tag */
	uint8_t state;
	zc_handle owner;  /* SLOT_HELD: the connection it was mapped for */
};

/* Per connection, by slot index of its zc_sock. */
struct mm_conn {
	uint64_t seen;    /* bytes received while being judged */
	uint64_t mapped;  /* of those, mapped */
	uint32_t skip;    /* bytes the kernel said to read, still to read */
	bool judged;
	bool copy_only;   /* fell back to readv() */
};

struct mm_engine {
	struct ep_engine ep; /* first: ctx->eng is both */
	char *area;
	size_t area_len, slot_size;
	uint32_t nslots, nfree, ndirty, cursor;
	uint32_t run_max;        /* slots one receive maps into at most */
	struct mm_slot *slots;
	struct mm_conn *conns;
	uint32_t nconns;
	struct zc_xfill *xf;     /* scratch: one receive's mapped pieces */
	uint64_t fallbacks;
};

static struct mm_engine *E(zc_ctx *ctx)
{
	return ctx->eng;
}

static char *slot_addr(const struct mm_engine *e, uint32_t i)
{
	return e->area + (size_t)i * e->slot_size;
}

/* The engine's state of @s, reset when @fresh (a new connection). */
static struct mm_conn *conn_of(zc_ctx *ctx, struct zc_sock *s, bool fresh)
{
	struct mm_engine *e = E(ctx);

	if (s->idx >= e->nconns) {
		uint32_t n = e->nconns ? e->nconns : 64;
		struct mm_conn *c;

		while (n <= s->idx)
			n *= 2;
		c = realloc(e->conns, n * sizeof(*c));
		if (!c)
			return NULL;
		memset(c + e->nconns, 0, (n - e->nconns) * sizeof(*c));
		e->conns = c;
		e->nconns = n;
	}
	if (fresh)
		memset(&e->conns[s->idx], 0, sizeof(e->conns[0]));
	return &e->conns[s->idx];
}

/* --- the mapping area --- */

/*
 * Unmap [@p, @p + @len). Since Linux 6.14 (PT_RECLAIM) a madvise() that
 * empties the whole range of a page table (2 MiB, aligned, on x86-64)
 * also frees the table, and the next receive there must allocate and
 * install it again: that cost a fifth of this engine's CPU (receiver CPU
 * per GB 0.30 -> 0.24 without it, 2-vCPU VM). A call spanning less than
 * 2 MiB never empties a whole table, and none here spans more.
 */
static void zap(char *p, size_t len)
{
	const size_t max = ZAP_MAX;

	while (len) {
		size_t n = len < max ? len : max;

		madvise(p, n, MADV_DONTNEED);
		p += n;
		len -= n;
	}
}

/* Unmap every released slot, one madvise() per run of them. */
static void zap_dirty(struct mm_engine *e)
{
	uint32_t i = 0;

	while (i < e->nslots && e->ndirty) {
		uint32_t j = i;

		if (e->slots[i].state != SLOT_DIRTY) {
			i++;
			continue;
		}
		while (j < e->nslots && e->slots[j].state == SLOT_DIRTY) {
			e->slots[j++].state = SLOT_CLEAN;
			e->ndirty--;
		}
		zap(slot_addr(e, i), (size_t)(j - i) * e->slot_size);
		i = j;
	}
}

/*
 * A run of clean slots to map into, from the cursor on: returns how many
 * (0: every slot is held) and sets *@first. The slots stay free until
 * take_slot(). Dirty slots are unmapped in one batch when no clean one is
 * left, or when a quarter of the area is dirty (to return the pages).
 */
static uint32_t find_run(struct mm_engine *e, uint32_t *first)
{
	uint32_t i, n = 0;

	if (!e->nfree)
		return 0;
	if (e->nfree == e->ndirty || e->ndirty >= e->nslots / 4)
		zap_dirty(e);
	for (i = e->cursor; e->slots[i].state != SLOT_CLEAN;)
		i = i + 1 < e->nslots ? i + 1 : 0;
	while (n < e->run_max && i + n < e->nslots && e->slots[i + n].state == SLOT_CLEAN)
		n++;
	*first = i;
	return n;
}

static uint64_t take_slot(struct mm_engine *e, uint32_t i, zc_handle owner)
{
	struct mm_slot *sl = &e->slots[i];

	sl->gen = sl->gen >= GEN_MAX ? 1 : sl->gen + 1;
	sl->state = SLOT_HELD;
	sl->owner = owner;
	e->nfree--;
	return (uint64_t)sl->gen << 32 | i;
}

static int mm_release_foreign(zc_ctx *ctx, const struct zc_piece *p, zc_handle *owner)
{
	struct mm_engine *e = E(ctx);
	uint64_t tag = p->ref & ~ZC_REF_FOREIGN;
	uint32_t i = (uint32_t)tag, gen = (uint32_t)(tag >> 32);
	struct mm_slot *sl;

	if (i >= e->nslots || gen == 0 || gen > e->slots[i].gen ||
	    p->data != slot_addr(e, i) || p->len > e->slot_size)
		return -EINVAL;
	sl = &e->slots[i];
	if (gen != sl->gen || sl->state != SLOT_HELD)
		return -EALREADY;
	*owner = sl->owner;
	sl->owner = 0;
	sl->state = SLOT_DIRTY;
	e->nfree++;
	e->ndirty++;
	if (e->nfree == e->nslots)
		e->cursor = 0; /* all back: start over at the front */
	return 0;
}

/* Stalled connections need a slot (to map) and a pool piece (for what
 * cannot be mapped): wake as many as there are of both. */
static uint64_t mm_resumable(zc_ctx *ctx)
{
	uint64_t pool = ctx->pool.npieces - ctx->pool.held;

	return pool < E(ctx)->nfree ? pool : E(ctx)->nfree;
}

/* --- set-up --- */

static void receive(zc_ctx *ctx, struct zc_sock *s);
static void set_features(zc_ctx *ctx);

static int mm_conn_init(zc_ctx *ctx, struct zc_sock *s)
{
	return conn_of(ctx, s, true) ? 0 : -ENOMEM;
}

static void mm_fini(zc_ctx *ctx)
{
	struct mm_engine *e = E(ctx);

	if (!e)
		return;
	if (e->area)
		munmap(e->area, e->area_len);
	ep_shut(&e->ep);
	free(e->slots);
	free(e->conns);
	free(e->xf);
	free(e);
	ctx->eng = NULL;
}

/* Map the area from a socket that is never connected. */
static int map_area(struct mm_engine *e)
{
	struct zc_tcp_zerocopy_receive zc;
	socklen_t zl = sizeof(zc);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

	if (fd < 0)
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	e->area = mmap(NULL, e->area_len, PROT_READ, MAP_SHARED, fd, 0);
	if (e->area == MAP_FAILED) {
		e->area = NULL;
		err = errno == ENODEV ? -ENOSYS : -errno;
	} else {
		/* Before Linux 4.18 the option is unknown. */
		memset(&zc, 0, sizeof(zc));
		if (getsockopt(fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &zl) &&
		    (errno == ENOPROTOOPT || errno == EOPNOTSUPP))
			err = -ENOSYS;
	}
	close(fd); /* the mapping keeps what it needs of the socket */
	return err;
}

static int mm_init(zc_ctx *ctx)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct mm_engine *e = calloc(1, sizeof(*e));
	size_t slot;
	int err;

	if (!e)
		return -ENOMEM;
	e->ep.epfd = -1;
	e->ep.receive = receive;
	e->ep.conn_init = mm_conn_init;
	e->ep.after_run = set_features;
	ctx->eng = e;
	slot = ctx->pool.piece_size / page * page;
	if (slot < page)
		slot = page;
	if (slot > SLOT_MAX)
		slot = SLOT_MAX;
	e->slot_size = slot;
	if (ctx->map_size / slot == 0 || ctx->map_size / slot > UINT32_MAX / 2) {
		err = -EINVAL;
		goto fail;
	}
	e->nslots = (uint32_t)(ctx->map_size / slot);
	e->area_len = (size_t)e->nslots * slot;
	e->nfree = e->nslots;
	e->run_max = (uint32_t)(MAP_CALL_MAX / slot);
	if (e->run_max == 0)
		e->run_max = 1;
	if (e->run_max > e->nslots)
		e->run_max = e->nslots;
	e->slots = calloc(e->nslots, sizeof(*e->slots));
	e->xf = calloc(e->run_max, sizeof(*e->xf));
	if (!e->slots || !e->xf) {
		err = -ENOMEM;
		goto fail;
	}
	err = ep_open(&e->ep);
	if (err)
		goto fail;
	err = map_area(e);
	if (err)
		goto fail;
	set_features(ctx);
	return 0;
fail:
	mm_fini(ctx);
	return err;
}

/* --- receiving --- */

/*
 * One TCP_ZEROCOPY_RECEIVE into a run of free slots. Returns the bytes
 * mapped (or 1 when none were but c->skip is set: read those next),
 * -EAGAIN (nothing queued), -ENOBUFS (no free slot), 0 at EOF, or -errno.
 * *@drained: the receive queue was empty afterwards.
 */
static ssize_t map_some(zc_ctx *ctx, struct zc_sock *s, struct mm_conn *c, bool *drained)
{
	struct mm_engine *e = E(ctx);
	struct zc_tcp_zerocopy_receive zc;
	socklen_t zl = sizeof(zc);
	uint32_t first, n = find_run(e, &first), used;
	zc_handle h = zc_handle_of(s);
	size_t mapped;

	if (!n)
		return -ENOBUFS;
	memset(&zc, 0, sizeof(zc));
	zc.address = (uintptr_t)slot_addr(e, first);
	zc.length = (uint32_t)(n * e->slot_size);
	zc.flags = TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT;
	if (getsockopt(s->fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &zl)) {
		/* EIO: the peer's FIN or a reset with nothing left to map
		 * (and the kernel writes back nothing then). Let a plain read
		 * tell which: 0 or the error; or data that raced in. */
		if (errno == EIO)
			return ep_read(ctx, s, SIZE_MAX, ZC_DATA_COPIED);
		return -errno;
	}
	mapped = zc.length;
	used = (uint32_t)((mapped + e->slot_size - 1) / e->slot_size);
	for (uint32_t k = 0; k < used; k++) {
		size_t off = (size_t)k * e->slot_size;

		e->xf[k].data = slot_addr(e, first + k);
		e->xf[k].len = (uint32_t)(mapped - off < e->slot_size ? mapped - off :
					  e->slot_size);
		e->xf[k].tag = take_slot(e, first + k, h);
	}
	if (used && zc_emit_foreign(ctx, s, e->xf, used, ZC_DATA_MAPPED)) {
		for (uint32_t k = 0; k < used; k++) { /* out of memory: give back */
			struct zc_piece p = { e->xf[k].data, e->xf[k].len,
					      ZC_REF_FOREIGN | e->xf[k].tag };
			zc_handle o;
			mm_release_foreign(ctx, &p, &o);
		}
		return -ENOMEM;
	}
	e->cursor = first + used < e->nslots ? first + used : 0;
	c->seen += mapped;
	c->mapped += mapped;
	c->skip = zc.recv_skip_hint;
	*drained = zc.inq == 0 && !c->skip;
	if (zc.err) /* sock_error(): a negative errno */
		return zc.err < 0 ? zc.err : -zc.err;
	if (!mapped && !c->skip)
		return -EAGAIN;
	return mapped ? (ssize_t)mapped : 1; /* 1: progress, skip bytes next */
}

/* Judge a connection once it has sent PROBE_BYTES. */
static void judge(zc_ctx *ctx, struct mm_conn *c)
{
	if (c->judged || c->seen < PROBE_BYTES)
		return;
	c->judged = true;
	if (c->mapped * 100 < c->seen * MIN_MAPPED_PCT) {
		c->copy_only = true;
		E(ctx)->fallbacks++;
	}
}

static void receive(zc_ctx *ctx, struct zc_sock *s)
{
	struct mm_conn *c = conn_of(ctx, s, false);

	for (int round = 0; c && round < RX_ROUNDS; round++) {
		bool drained = false;
		ssize_t got;

		if (c->skip || c->copy_only) {
			size_t limit = c->skip ? c->skip : SIZE_MAX;

			got = ep_read(ctx, s, limit, ZC_DATA_COPIED);
			if (got > 0) {
				if (c->skip)
					c->skip -= (uint32_t)got;
				c->seen += (uint64_t)got;
				drained = !c->skip && (size_t)got < limit &&
					  (size_t)got < EP_READ_PIECES * ctx->pool.piece_size;
			}
		} else {
			got = map_some(ctx, s, c, &drained);
		}
		if (got == -ENOBUFS) {
			zc_stall(ctx, s);
			break;
		}
		if (got == -EAGAIN || got == -EINTR)
			break;
		if (got <= 0) {
			zc_emit(ctx, got ? ZC_EV_ERROR : ZC_EV_EOF, s, (int)got, 0);
			break;
		}
		judge(ctx, c);
		if (drained)
			break; /* level-triggered epoll says when more comes */
	}
}

static void set_features(zc_ctx *ctx)
{
	struct mm_engine *e = E(ctx);

	snprintf(ctx->features, sizeof(ctx->features),
		 "epoll tcp_zerocopy_receive%s slot_kb=%zu slots=%u fallbacks=%llu",
		 ctx->batch_usec ? " gather" : "", e->slot_size >> 10, e->nslots,
		 (unsigned long long)e->fallbacks);
}

const struct zc_engine_ops zc_engine_mmap = {
	.name = "mmap",
	.init = mm_init,
	.fini = mm_fini,
	.listen = ep_listen,
	.connect = ep_connect,
	.send = ep_send,
	.send_zc = ep_send_zc,
	.shutdown = ks_shutdown,
	.local_port = ks_local_port,
	/* A closed connection's mapped pieces stay valid until released;
	 * its socket was never mapped, so it closes (FIN) at once. */
	.close = ep_close,
	.resume = ep_resume,
	.pause = ep_resume, /* what epoll waits for changes */
	.piece_released = ep_piece_released,
	.release_foreign = mm_release_foreign,
	.resumable = mm_resumable,
	.run = ep_run,
	.take = ep_take,
	.cookie_write = NULL, /* the core writes synchronously */
};
