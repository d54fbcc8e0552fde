/*
 * engine_uring.c - the default engine: the kernel's TCP, received through
 * io_uring into a provided-buffer ring whose buffers are the pool's pieces.
 *
 * Every free piece sits in one buffer ring shared by all connections, so
 * an idle connection holds no memory. Each connection has one multishot
 * receive armed; the kernel picks a piece from the ring when data comes,
 * copies the payload into it (the only copy) and posts a completion
 * naming the piece. With receive bundles (Linux 6.10), one completion
 * covers several consecutive ring entries.
 *
 * Back-pressure: when the application holds every piece, the ring is
 * empty, the receive ends with -ENOBUFS and the connection is parked on
 * the core's stalled queue. Nothing is read from the socket meanwhile, so
 * TCP's window closes and the sender waits. Released pieces go back into
 * the ring and the core re-arms parked connections (ops->resume).
 *
 * Optional kernel features are probed, not assumed: DEFER_TASKRUN at ring
 * set-up, bundles from the ring's feature bits, multishot receive and
 * accept by falling back to one-shot operations if the kernel rejects them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <poll.h>
#include <unistd.h>

#include "internal.h"
#include "uring_compat.h"

#define SQ_ENTRIES 256
#define CQ_ENTRIES 8192
#define BGID 0
#define WAIT_BATCH 64 /* completions a batched wait asks for */
/* Connections are non-blocking: io_uring does not care, and a take's
 * splice() from the socket must never put the thread to sleep. */
#define ACCEPT_FLAGS (SOCK_CLOEXEC | SOCK_NONBLOCK)
/* Bytes of pieces lent to the ring at first; more on demand (see refill). */
#define RING_DEPTH_BYTES (1u << 20)

/* user_data: operation | low 24 bits of the socket's generation | slot */
enum { OP_RECV = 1, OP_ACCEPT, OP_CONNECT, OP_POLLOUT, OP_CANCEL, OP_TAKE, OP_WRITE };
#define GEN_MASK 0xffffffu

/* zc_sock.eng_bits */
#define POLL_ARMED   (1u << 0)
#define ACCEPT_ARMED (1u << 1)
#define TAKE_ARMED   (1u << 2) /* a POLLIN poll for zc_take_step() */

struct ur_engine {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_size;
	unsigned br_mask;
	uint16_t *slot_bid;  /* ring slot -> piece placed there */
	uint16_t *bid_slot;  /* piece -> ring slot it was last placed at */
	struct zc_fill *fills; /* scratch for one completion's pieces */
	uint32_t posted;     /* pieces in the ring now */
	uint32_t depth;      /* pieces refill() keeps in the ring */
	bool ring_ok, bundle, multishot, multishot_accept, defer_taskrun;
	zc_handle *later;     /* connections to receive again at the next run */
	uint32_t nlater, caplater;
	unsigned batch;       /* completions a wait asks for (min_wait) */
	unsigned min_wait_us; /* ... but no longer than this once one is in */
};

static struct ur_engine *E(zc_ctx *ctx)
{
	return ctx->eng;
}

static uint64_t ud_of(int op, const struct zc_sock *s)
{
	return (uint64_t)op << 56 | (uint64_t)(s->gen & GEN_MASK) << 32 | s->idx;
}

/* The live socket a completion belongs to, or NULL if it was closed. */
static struct zc_sock *sock_of(zc_ctx *ctx, uint64_t ud)
{
	uint32_t idx = (uint32_t)ud, gen = (uint32_t)(ud >> 32) & GEN_MASK;
	struct zc_sock *s;

	if (idx >= ctx->nsocks)
		return NULL;
	s = ctx->socks[idx];
	return s->kind != SK_FREE && (s->gen & GEN_MASK) == gen ? s : NULL;
}

static struct io_uring_sqe *get_sqe(struct ur_engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

	if (!sqe) { /* submission queue full: hand it to the kernel */
		io_uring_submit(&e->ring);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
}

static void set_features(zc_ctx *ctx)
{
	struct ur_engine *e = E(ctx);

	snprintf(ctx->features, sizeof(ctx->features), "buf_ring%s%s%s%s%s",
		 e->multishot ? " multishot" : " oneshot",
		 e->bundle ? " bundle" : "",
		 e->multishot_accept ? " multishot_accept" : "",
		 e->defer_taskrun ? " defer_taskrun" : "",
		 e->batch ? " min_wait gather" : "");
}

/* Lend piece @idx to the kernel: append it to the buffer ring. */
static void post_piece(zc_ctx *ctx, uint32_t idx)
{
	struct ur_engine *e = E(ctx);
	unsigned slot = e->br->tail & e->br_mask;

	e->slot_bid[slot] = (uint16_t)idx;
	e->bid_slot[idx] = (uint16_t)slot;
	io_uring_buf_ring_add(e->br, zc_pool_addr(&ctx->pool, idx),
			      (unsigned)ctx->pool.piece_size, (unsigned short)idx,
			      (int)e->br_mask, 0);
	io_uring_buf_ring_advance(e->br, 1);
	e->posted++;
}

/*
 * Keep e->depth pieces in the ring, taking the most recently released
 * ones first (the pool's free stack is LIFO). Lending the whole pool would
 * make the kernel cycle through all of it, so every copy would land in
 * memory long out of the cache; a shallow ring of warm pieces costs
 * measurably less CPU per byte. The depth doubles whenever a receive finds
 * the ring empty while the pool still has free pieces.
 */
static void refill(zc_ctx *ctx)
{
	struct ur_engine *e = E(ctx);
	uint32_t idx;

	while (e->posted < e->depth && zc_pool_get(&ctx->pool, &idx) == 0)
		post_piece(ctx, idx);
}

/* --- set-up --- */

static int setup_ring(zc_ctx *ctx, struct ur_engine *e)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = CQ_ENTRIES;
	if (!(ctx->cfg_flags & ZC_CFG_NO_DEFER_TASKRUN)) {
		/* Completions run only when we wait: no interrupts of the
		 * thread, fewer wake-ups. Needs Linux 6.1. */
		p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
		ret = io_uring_queue_init_params(SQ_ENTRIES, &e->ring, &p);
		if (ret == 0) {
			e->defer_taskrun = true;
			return 0;
		}
		if (ret != -EINVAL)
			return ret;
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
	}
	return io_uring_queue_init_params(SQ_ENTRIES, &e->ring, &p);
}

static int setup_buf_ring(zc_ctx *ctx, struct ur_engine *e)
{
	struct io_uring_buf_reg reg;
	unsigned entries = 1;
	int ret;

	while (entries < ctx->pool.npieces)
		entries <<= 1;
	e->br_size = entries * sizeof(struct io_uring_buf);
	e->br = mmap(NULL, e->br_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->br == MAP_FAILED) {
		e->br = NULL;
		return -errno;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)e->br;
	reg.ring_entries = entries;
	reg.bgid = BGID;
	ret = io_uring_register_buf_ring(&e->ring, &reg, 0);
	if (ret)
		return ret; /* before Linux 5.19: no buffer rings */
	io_uring_buf_ring_init(e->br);
	e->br_mask = entries - 1;
	e->slot_bid = calloc(entries, sizeof(*e->slot_bid));
	e->bid_slot = calloc(ctx->pool.npieces, sizeof(*e->bid_slot));
	e->fills = calloc(ctx->pool.npieces, sizeof(*e->fills));
	if (!e->slot_bid || !e->bid_slot || !e->fills)
		return -ENOMEM;
	e->depth = (uint32_t)(RING_DEPTH_BYTES / ctx->pool.piece_size);
	if (e->depth < 4)
		e->depth = 4;
	if (e->depth > ctx->pool.npieces)
		e->depth = ctx->pool.npieces;
	refill(ctx);
	return 0;
}

static void on_cqe(zc_ctx *ctx, const struct io_uring_cqe *cqe);

/*
 * Completions still in the ring at the end: every socket is closed by now,
 * so each finds its slot gone and only gives back what it holds; an
 * accept that completed meanwhile closes the connection it made, which
 * would otherwise stay open, unseen, until the process exits.
 */
static void drain_cqes(zc_ctx *ctx, struct ur_engine *e)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	io_uring_get_events(&e->ring); /* deferred completion work */
	io_uring_for_each_cqe(&e->ring, head, cqe) {
		on_cqe(ctx, cqe);
		seen++;
	}
	io_uring_cq_advance(&e->ring, seen);
}

static void ur_fini(zc_ctx *ctx)
{
	struct ur_engine *e = E(ctx);

	if (!e)
		return;
	if (e->ring_ok) {
		drain_cqes(ctx, e);
		io_uring_queue_exit(&e->ring);
	}
	if (e->br)
		munmap(e->br, e->br_size);
	free(e->slot_bid);
	free(e->bid_slot);
	free(e->fills);
	free(e->later);
	free(e);
	ctx->eng = NULL;
}

static int ur_init(zc_ctx *ctx)
{
	struct ur_engine *e = calloc(1, sizeof(*e));
	int ret;

	if (!e)
		return -ENOMEM;
	ctx->eng = e;
	ret = setup_ring(ctx, e);
	if (ret)
		goto fail;
	e->ring_ok = true;
	ret = setup_buf_ring(ctx, e);
	if (ret)
		goto fail;
	e->bundle = (e->ring.features & IORING_FEAT_RECVSEND_BUNDLE) &&
		    !(ctx->cfg_flags & ZC_CFG_NO_BUNDLE);
	e->multishot = !(ctx->cfg_flags & ZC_CFG_NO_MULTISHOT);
	e->multishot_accept = e->multishot;
	if (ctx->batch_usec && e->defer_taskrun &&
	    (e->ring.features & IORING_FEAT_MIN_TIMEOUT)) {
		e->batch = WAIT_BATCH;
		e->min_wait_us = ctx->batch_usec;
	}
	set_features(ctx);
	return 0;
fail:
	ur_fini(ctx);
	/* Give every piece back for the engine that may run instead. */
	ctx->pool.nfree = 0;
	for (uint32_t i = ctx->pool.npieces; i-- > 0;)
		zc_pool_put(&ctx->pool, i);
	return ret;
}

/* --- arming operations --- */

static void arm_recv(zc_ctx *ctx, struct zc_sock *s)
{
	struct ur_engine *e = E(ctx);
	struct io_uring_sqe *sqe = get_sqe(e);

	if (!sqe)
		return;
	/* Length 0: each piece is filled up to its size. */
	io_uring_prep_recv(sqe, s->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	if (e->multishot)
		sqe->ioprio |= IORING_RECV_MULTISHOT;
	if (e->bundle)
		sqe->ioprio |= IORING_RECVSEND_BUNDLE;
	io_uring_sqe_set_data64(sqe, ud_of(OP_RECV, s));
	s->flags |= SF_RX_ARMED;
}

static void arm_accept(zc_ctx *ctx, struct zc_sock *l)
{
	struct ur_engine *e = E(ctx);
	struct io_uring_sqe *sqe = get_sqe(e);

	if (!sqe)
		return;
	if (e->multishot_accept)
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, ACCEPT_FLAGS);
	else
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, ACCEPT_FLAGS);
	io_uring_sqe_set_data64(sqe, ud_of(OP_ACCEPT, l));
	l->eng_bits |= ACCEPT_ARMED;
}

static void arm_pollout(zc_ctx *ctx, struct zc_sock *s)
{
	struct io_uring_sqe *sqe;

	if (s->eng_bits & POLL_ARMED)
		return;
	sqe = get_sqe(E(ctx));
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, s->fd, POLLOUT);
	io_uring_sqe_set_data64(sqe, ud_of(OP_POLLOUT, s));
	s->eng_bits |= POLL_ARMED;
}

/* Receive again, or park the connection if no piece is left to lend. */
static void rearm_or_stall(zc_ctx *ctx, struct zc_sock *s)
{
	if (s->flags & (SF_RX_DONE | SF_RX_ARMED | SF_TAKING | SF_PAUSED))
		return;
	if (ctx->pool.held == ctx->pool.npieces)
		zc_stall(ctx, s);
	else
		arm_recv(ctx, s);
}

/* --- socket operations --- */

static int ur_listen(zc_ctx *ctx, struct zc_sock *s, const struct sockaddr *sa,
		     socklen_t len, unsigned flags)
{
	int fd = ks_listen(sa, len, flags, false);

	if (fd < 0)
		return fd;
	s->fd = fd;
	arm_accept(ctx, s);
	return 0;
}

static int ur_connect(zc_ctx *ctx, struct zc_sock *s)
{
	struct io_uring_sqe *sqe;
	int fd = ks_conn_socket(s, false);

	if (fd < 0)
		return fd;
	sqe = get_sqe(E(ctx));
	if (!sqe) {
		close(fd);
		return -EBUSY;
	}
	s->fd = fd;
	/* The kernel reads s->peer when it takes the request. */
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&s->peer, s->peer_len);
	io_uring_sqe_set_data64(sqe, ud_of(OP_CONNECT, s));
	return 0;
}

static ssize_t ur_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len)
{
	ssize_t n = ks_send(ctx, s, buf, len);

	if (s->flags & SF_WANT_WRITE)
		arm_pollout(ctx, s);
	return n;
}

static ssize_t ur_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
			  uint64_t tag)
{
	ssize_t n = ks_send_zc(ctx, s, buf, len, tag);

	if (s->flags & SF_WANT_WRITE)
		arm_pollout(ctx, s);
	return n;
}

static void ur_close(zc_ctx *ctx, struct zc_sock *s, bool abort)
{
	struct ur_engine *e = E(ctx);
	bool cancelled = false;

	if ((s->flags & (SF_RX_ARMED | SF_CONNECTING)) ||
	    (s->eng_bits & (POLL_ARMED | ACCEPT_ARMED | TAKE_ARMED))) {
		/* Cancel what is in flight while the descriptor still names
		 * the socket; late completions find the slot's generation
		 * changed and only give their pieces back. */
		struct io_uring_sqe *sqe = get_sqe(e);
		if (sqe) {
			io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, (uint64_t)OP_CANCEL << 56);
			io_uring_submit(&e->ring);
			cancelled = true;
		}
	}
	ks_close(ctx, s, abort);
	/* The cancelled requests hold the socket until their completion
	 * work runs, which DEFER_TASKRUN keeps for the next wait: run it
	 * now, or the peer would see no end (FIN or RST) until then. */
	if (cancelled && e->defer_taskrun)
		io_uring_get_events(&e->ring);
}

static void ur_resume(zc_ctx *ctx, struct zc_sock *s)
{
	if (s->kind == SK_LISTENER)
		arm_accept(ctx, s);
	else
		rearm_or_stall(ctx, s);
}

static void ur_piece_released(zc_ctx *ctx, uint32_t idx)
{
	zc_pool_put(&ctx->pool, idx); /* refill() lends it again */
}

/* --- completions --- */

/* The pieces a receive completion consumed: one, or with a bundle every
 * ring entry from the first one's slot on, each filled to the piece size
 * except the last. */
static unsigned consumed_pieces(zc_ctx *ctx, int res, uint32_t flags)
{
	struct ur_engine *e = E(ctx);
	size_t psz = ctx->pool.piece_size;
	uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;
	size_t left = res > 0 ? (size_t)res : 0;
	unsigned n = left ? (unsigned)((left + psz - 1) / psz) : 1;
	unsigned slot = e->bid_slot[bid];

	e->posted -= n;

	for (unsigned i = 0; i < n; i++) {
		e->fills[i].idx = e->slot_bid[(slot + i) & e->br_mask];
		e->fills[i].len = (uint32_t)(left < psz ? left : psz);
		left -= e->fills[i].len;
	}
	return n;
}

/* Pieces a completion consumed but that carry nothing to deliver. */
static void put_back(zc_ctx *ctx, unsigned n)
{
	while (n-- > 0)
		zc_pool_put(&ctx->pool, E(ctx)->fills[n].idx);
}

/* A receive failed with -EINVAL: the kernel may lack bundles or multishot
 * receive. Drop one optional feature and try again. */
static bool downgrade_recv(zc_ctx *ctx)
{
	struct ur_engine *e = E(ctx);

	if (e->bundle)
		e->bundle = false;
	else if (e->multishot)
		e->multishot = false;
	else
		return false;
	set_features(ctx);
	return true;
}

static void arm_take(zc_ctx *ctx, struct zc_sock *s)
{
	struct io_uring_sqe *sqe;

	if (s->eng_bits & TAKE_ARMED)
		return;
	sqe = get_sqe(E(ctx));
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, s->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_of(OP_TAKE, s));
	s->eng_bits |= TAKE_ARMED;
}

static void receive_later(zc_ctx *ctx, struct zc_sock *s);

/* Splice what is there; wait for more, or receive again once done. The
 * socket is non-blocking, so this may run before it is readable (a take
 * that what the application had not yet seen already covered needs no
 * more bytes at all). */
static void take_now(zc_ctx *ctx, struct zc_sock *s)
{
	if (zc_take_step(ctx, s))
		arm_take(ctx, s);
	else
		receive_later(ctx, s);
}

/* The receive of @s is no longer in flight: take, or receive again. */
static void recv_ended(zc_ctx *ctx, struct zc_sock *s)
{
	if (s->flags & SF_TAKING)
		take_now(ctx, s);
	else
		rearm_or_stall(ctx, s);
}

/* Stop the multishot receive (what it already has is delivered first),
 * then splice from the socket when it is readable. */
static void ur_take(zc_ctx *ctx, struct zc_sock *s)
{
	struct io_uring_sqe *sqe;

	if (!(s->flags & SF_RX_ARMED)) {
		take_now(ctx, s);
		return;
	}
	sqe = get_sqe(E(ctx));
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, ud_of(OP_RECV, s), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_CANCEL << 56);
}

/* Paused: stop the multishot receive (what it has is delivered first).
 * Started again: receive, unless a take or the end says otherwise. */
static void ur_pause(zc_ctx *ctx, struct zc_sock *s)
{
	struct io_uring_sqe *sqe;

	if (!(s->flags & SF_PAUSED)) {
		rearm_or_stall(ctx, s);
		return;
	}
	if (!(s->flags & SF_RX_ARMED) || (s->flags & SF_TAKING))
		return; /* nothing to stop, or ur_take() stopped it */
	sqe = get_sqe(E(ctx));
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, ud_of(OP_RECV, s), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_CANCEL << 56);
}

static void on_recv(zc_ctx *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct zc_sock *s = sock_of(ctx, ud);
	unsigned n = flags & IORING_CQE_F_BUFFER ? consumed_pieces(ctx, res, flags) : 0;
	bool more = flags & IORING_CQE_F_MORE;

	if (s && !more)
		s->flags &= ~SF_RX_ARMED;
	if (!s || res <= 0) {
		put_back(ctx, n); /* closed meanwhile, or no payload */
		if (!s)
			return;
	}
	if (res > 0) {
		if (zc_emit_data(ctx, s, E(ctx)->fills, n))
			put_back(ctx, n);
	} else if (res == 0) {
		/* A pending take reports the end itself, after its cookie. */
		if (!(s->flags & SF_TAKING))
			zc_emit(ctx, ZC_EV_EOF, s, 0, 0);
	} else if (res == -ENOBUFS && ctx->pool.nfree) {
		/* The ring ran dry, the pool did not: lend more. */
		E(ctx)->depth = E(ctx)->depth * 2 < ctx->pool.npieces ?
				E(ctx)->depth * 2 : ctx->pool.npieces;
		refill(ctx);
	} else if (res == -ENOBUFS && !(s->flags & SF_TAKING)) {
		zc_stall(ctx, s);
		return;
	} else if (res != -EINTR && res != -EAGAIN && res != -ECANCELED &&
		   !(res == -EINVAL && downgrade_recv(ctx))) {
		zc_emit(ctx, ZC_EV_ERROR, s, res, 0);
		return;
	}
	if (!more)
		recv_ended(ctx, s);
}

static void on_accept(zc_ctx *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct ur_engine *e = E(ctx);
	struct zc_sock *l = sock_of(ctx, ud), *c;

	if (l && !(flags & IORING_CQE_F_MORE))
		l->eng_bits &= ~ACCEPT_ARMED;
	if (res >= 0) {
		c = l ? zc_sock_new(ctx, SK_CONN) : NULL;
		if (!c) {
			close(res);
		} else {
			c->fd = res;
			zc_emit(ctx, ZC_EV_ACCEPT, c, 0, zc_handle_of(l));
			arm_recv(ctx, c);
		}
	} else if (l && res == -EINVAL && e->multishot_accept) {
		e->multishot_accept = false;
		set_features(ctx);
	} else if (l && zc_accept_backoff(ctx, l, res)) {
		return; /* zc_wait() resumes it later */
	}
	if (l && !(l->eng_bits & ACCEPT_ARMED))
		arm_accept(ctx, l);
}

static void on_connect(zc_ctx *ctx, uint64_t ud, int res)
{
	struct zc_sock *s = sock_of(ctx, ud);

	if (!s)
		return;
	if (res < 0) {
		zc_emit(ctx, ZC_EV_ERROR, s, res, 0);
		return;
	}
	/* Connected through io_uring on a blocking socket; from now on it is
	 * non-blocking like an accepted one (see ACCEPT_FLAGS). */
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	zc_emit(ctx, ZC_EV_CONNECTED, s, 0, 0);
	rearm_or_stall(ctx, s); /* not if paused meanwhile */
}

static void on_pollout(zc_ctx *ctx, uint64_t ud)
{
	struct zc_sock *s = sock_of(ctx, ud);

	if (!s)
		return;
	s->eng_bits &= ~POLL_ARMED;
	if (s->flags & SF_WANT_WRITE) {
		s->flags &= ~SF_WANT_WRITE;
		zc_emit(ctx, ZC_EV_WRITABLE, s, 0, 0);
	}
}

/*
 * A take ended: receive into pieces again, but only from the next run on.
 * The application sees ZC_EV_TAKEN first and may take again at once; a
 * receive armed now would be submitted ahead of that take and could put
 * the bytes it wants into pieces.
 */
static void receive_later(zc_ctx *ctx, struct zc_sock *s)
{
	struct ur_engine *e = E(ctx);

	if (e->nlater == e->caplater) {
		uint32_t cap = e->caplater ? e->caplater * 2 : 16;
		zc_handle *n = realloc(e->later, cap * sizeof(*n));

		if (!n) { /* no room to wait: receive now */
			rearm_or_stall(ctx, s);
			return;
		}
		e->later = n;
		e->caplater = cap;
	}
	e->later[e->nlater++] = zc_handle_of(s);
}

static void receive_again(zc_ctx *ctx)
{
	struct ur_engine *e = E(ctx);

	for (uint32_t i = 0; i < e->nlater; i++) {
		struct zc_sock *s = zc_sock_get(ctx, e->later[i]);

		if (s)
			rearm_or_stall(ctx, s); /* not if it is taking again */
	}
	e->nlater = 0;
}

/* The socket is readable for a pending take (or hung up). */
static void on_take(zc_ctx *ctx, uint64_t ud)
{
	struct zc_sock *s = sock_of(ctx, ud);

	if (!s)
		return;
	s->eng_bits &= ~TAKE_ARMED;
	/* A poll left from a take that ended without it (zc_take_recheck())
	 * must not step a new take whose receive is still being stopped. */
	if ((s->flags & SF_TAKING) && !(s->flags & SF_RX_ARMED))
		take_now(ctx, s);
}

static uint64_t ck_ud(const struct zc_ck *ck)
{
	return (uint64_t)OP_WRITE << 56 | (uint64_t)(ck->gen & GEN_MASK) << 32 | ck->idx;
}

/*
 * Cookie writes go through io_uring's splice, which runs in an io-wq
 * worker (a write to a file may block on the disk anyway). A target
 * socket that is full answers -EAGAIN: then wait for POLLOUT first, linked
 * in front of the next splice.
 */
static void submit_write(zc_ctx *ctx, struct zc_ck *ck, bool poll_first)
{
	struct ur_engine *e = E(ctx);
	struct io_uring_sqe *sqe = get_sqe(e);
	int64_t off = ck->off >= 0 ? ck->off + (int64_t)ck->done : -1;

	if (sqe && poll_first) {
		io_uring_prep_poll_add(sqe, ck->fd, POLLOUT);
		io_uring_sqe_set_data64(sqe, (uint64_t)OP_CANCEL << 56);
		sqe->flags |= IOSQE_IO_LINK;
		sqe = get_sqe(e);
	}
	if (!sqe) {
		zc_write_progress(ctx, ck, -EBUSY);
		return;
	}
	io_uring_prep_splice(sqe, ck->pr, -1, ck->fd, off,
			     (unsigned)(ck->len - ck->done), SPLICE_F_MOVE);
	io_uring_sqe_set_data64(sqe, ck_ud(ck));
}

static void ur_cookie_write(zc_ctx *ctx, struct zc_ck *ck)
{
	submit_write(ctx, ck, false);
}

static void on_write(zc_ctx *ctx, uint64_t ud, int res)
{
	uint32_t idx = (uint32_t)ud;
	struct zc_ck *ck = idx < ctx->ck.n ? ctx->ck.tab[idx] : NULL;

	if (!ck || ck->state != CK_WRITING || ck_ud(ck) != ud)
		return;
	if (res == -EAGAIN)
		submit_write(ctx, ck, true);
	else if (zc_write_progress(ctx, ck, res))
		submit_write(ctx, ck, false);
}

static void on_cqe(zc_ctx *ctx, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;

	switch ((int)(ud >> 56)) {
	case OP_RECV:
		on_recv(ctx, ud, cqe->res, cqe->flags);
		break;
	case OP_ACCEPT:
		on_accept(ctx, ud, cqe->res, cqe->flags);
		break;
	case OP_CONNECT:
		on_connect(ctx, ud, cqe->res);
		break;
	case OP_POLLOUT:
		on_pollout(ctx, ud);
		break;
	case OP_TAKE:
		on_take(ctx, ud);
		break;
	case OP_WRITE:
		on_write(ctx, ud, cqe->res);
		break;
	default: /* OP_CANCEL: nothing to do */
		break;
	}
}

/* Submit what is queued and wait for at least one completion. */
/*
 * Wait for up to BATCH completions but at most MIN_WAIT_US once one is
 * there (Linux 6.12's min_wait): with DEFER_TASKRUN the kernel then does
 * not wake the thread for every packet, and on machines where a context
 * switch is dear that is most of the receive cost.
 */
static int wait_batched(struct ur_engine *e, int timeout_ms)
{
	struct __kernel_timespec ts;
	struct zc_getevents_arg arg = { .sigmask_sz = _NSIG / 8,
					.min_wait_usec = e->min_wait_us };
	int ret;

	if (io_uring_sq_ready(&e->ring)) {
		ret = io_uring_submit(&e->ring);
		if (ret < 0)
			return ret;
	}
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		arg.ts = (uint64_t)(uintptr_t)&ts;
	}
	/* liburing returns the kernel's -errno; -ETIME is the time-out. */
	ret = io_uring_enter2(e->ring.ring_fd, 0, e->batch,
			      IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			      (sigset_t *)&arg, sizeof(arg));
	return ret == -ETIME || ret >= 0 ? 0 : ret;
}

static int submit_and_wait(zc_ctx *ctx, struct ur_engine *e, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	int ret;

	if (zc_gather_begin(&ctx->gather, timeout_ms != 0 && e->batch > 1 &&
			    !io_uring_cq_ready(&e->ring), &ctx->st.waits_gathered))
		ret = wait_batched(e, timeout_ms);
	else if (timeout_ms == 0)
		ret = io_uring_submit_and_get_events(&e->ring);
	else if (timeout_ms < 0)
		ret = io_uring_submit_and_wait(&e->ring, 1);
	else {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		ret = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
	}
	if (ret == -ETIME || ret == -EBUSY || ret >= 0)
		return 0;
	return ret;
}

static int ur_run(zc_ctx *ctx, int timeout_ms)
{
	struct ur_engine *e = E(ctx);
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int ret;

	receive_again(ctx);
	refill(ctx);
	/* Zero-copy send completions: looked for on every run, and at least
	 * every millisecond while sends are in flight (see ksock.c). */
	timeout_ms = ks_zc_poll(ctx, timeout_ms);
	ret = submit_and_wait(ctx, e, timeout_ms);
	if (ret)
		return ret;
	io_uring_for_each_cqe(&e->ring, head, cqe) {
		on_cqe(ctx, cqe);
		seen++;
	}
	io_uring_cq_advance(&e->ring, seen);
	ks_zc_poll(ctx, 0);
	zc_gather_end(&ctx->gather);
	return 0;
}

const struct zc_engine_ops zc_engine_uring = {
	.name = "uring",
	.init = ur_init,
	.fini = ur_fini,
	.listen = ur_listen,
	.connect = ur_connect,
	.send = ur_send,
	.send_zc = ur_send_zc,
	.shutdown = ks_shutdown,
	.local_port = ks_local_port,
	.close = ur_close,
	.resume = ur_resume,
	.piece_released = ur_piece_released,
	.run = ur_run,
	.take = ur_take,
	.cookie_write = ur_cookie_write,
	.pause = ur_pause,
};
