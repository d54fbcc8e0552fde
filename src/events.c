/*
 * events.c - the event queue between the engines and zc_wait(), the
 * statistics that follow from it, and the queue of stalled connections.
 *
 * Engines append events while they run; zc_wait() hands them out in the
 * same order. The pieces of DATA events are kept in one array next to the
 * queue; it is emptied only when the queue is, which is what keeps an
 * event's `pieces` pointer valid until the next zc_wait().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t zc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Grow *arr (of *cap elements of @size bytes) to hold @need. */
static int reserve(void **arr, uint32_t *cap, uint32_t need, size_t size)
{
	uint32_t ncap = *cap ? *cap : 64;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, (size_t)ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/*
 * An event that cannot be queued is lost, and with it what the
 * application needed to know (bytes, an end, a cookie): no later event of
 * that connection could be trusted. So the context takes nothing more and
 * zc_wait() reports the loss once what came before is delivered.
 */
static void lost(zc_ctx *ctx)
{
	ctx->broken = -ENOMEM;
}

static struct zc_qevent *push(zc_ctx *ctx, enum zc_event_type type, struct zc_sock *s)
{
	struct zc_qevent *qe;

	if (ctx->broken)
		return NULL;
	if (ctx->q_head == ctx->q_len)
		ctx->q_head = ctx->q_len = 0;
	if (reserve((void **)&ctx->q, &ctx->q_cap, ctx->q_len + 1, sizeof(*ctx->q))) {
		lost(ctx);
		return NULL;
	}
	qe = &ctx->q[ctx->q_len++];
	memset(qe, 0, sizeof(*qe));
	qe->ev.type = type;
	qe->ev.conn = s ? zc_handle_of(s) : 0;
	return qe;
}

/* A DATA event of @n pieces, to be written at ctx->pieces[qe->piece_first]. */
static struct zc_qevent *push_data(zc_ctx *ctx, struct zc_sock *s, unsigned n,
				   unsigned flags)
{
	uint32_t first = ctx->npieces_q;
	struct zc_qevent *qe;

	if (ctx->broken)
		return NULL;
	if (reserve((void **)&ctx->pieces, &ctx->pieces_cap, first + n,
		    sizeof(*ctx->pieces))) {
		lost(ctx);
		return NULL;
	}
	qe = push(ctx, ZC_EV_DATA, s);
	if (!qe)
		return NULL;
	ctx->npieces_q += n;
	qe->piece_first = first;
	qe->data_flags = flags;
	qe->ev.npieces = n;
	return qe;
}

static void data_done(struct zc_qevent *qe, struct zc_sock *s, size_t bytes)
{
	qe->ev.bytes = bytes;
	qe->ev.offset = s->rx_off;
	s->rx_off += bytes;
}

int zc_emit_data_flags(zc_ctx *ctx, struct zc_sock *s, const struct zc_fill *f,
		       unsigned n, unsigned flags)
{
	struct zc_qevent *qe = push_data(ctx, s, n, flags);
	size_t bytes = 0;

	if (!qe)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		zc_pool_hand_out(&ctx->pool, f[i].idx, f[i].len,
				 &ctx->pieces[qe->piece_first + i]);
		ctx->piece_owner[f[i].idx] = qe->ev.conn;
		bytes += f[i].len;
	}
	data_done(qe, s, bytes);
	ctx->gather.run_bytes += bytes;
	return 0;
}

int zc_emit_data(zc_ctx *ctx, struct zc_sock *s, const struct zc_fill *f, unsigned n)
{
	return zc_emit_data_flags(ctx, s, f, n, 0);
}

int zc_emit_foreign(zc_ctx *ctx, struct zc_sock *s, const struct zc_xfill *x,
		    unsigned n, unsigned flags)
{
	struct zc_qevent *qe = push_data(ctx, s, n, flags);
	size_t bytes = 0;

	if (!qe)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct zc_piece *p = &ctx->pieces[qe->piece_first + i];

		p->data = x[i].data;
		p->len = x[i].len;
		p->ref = ZC_REF_FOREIGN | x[i].tag;
		bytes += x[i].len;
	}
	data_done(qe, s, bytes);
	ctx->gather.run_bytes += bytes;
	return 0;
}

int zc_emit_send_done(zc_ctx *ctx, struct zc_sock *s, uint64_t tag, size_t bytes,
		      int res)
{
	struct zc_qevent *qe = push(ctx, ZC_EV_SEND_DONE, s);

	if (!qe)
		return -ENOMEM;
	qe->ev.tag = tag;
	qe->ev.bytes = bytes;
	qe->ev.res = res;
	return 0;
}

struct zc_event *zc_emit_ev(zc_ctx *ctx, enum zc_event_type type, struct zc_sock *s)
{
	struct zc_qevent *qe = push(ctx, type, s);

	return qe ? &qe->ev : NULL;
}

int zc_emit(zc_ctx *ctx, enum zc_event_type type, struct zc_sock *s, int res,
	    zc_handle listener)
{
	struct zc_qevent *qe = push(ctx, type, s);

	if (!qe)
		return -ENOMEM;
	qe->ev.res = res;
	qe->ev.listener = listener;
	if (type == ZC_EV_EOF || type == ZC_EV_ERROR)
		s->flags |= SF_RX_DONE;
	if (type == ZC_EV_CONNECTED || type == ZC_EV_ERROR)
		s->flags &= ~SF_CONNECTING;
	if (type == ZC_EV_ACCEPT)
		ctx->st.accepted++;
	return 0;
}

/*
 * Drop a queued event whose connection was closed before delivery; its
 * pieces were never seen by the application, so they go straight back.
 */
static void drop(zc_ctx *ctx, struct zc_qevent *qe)
{
	for (unsigned i = 0; i < qe->ev.npieces; i++) {
		const struct zc_piece *p = &ctx->pieces[qe->piece_first + i];
		zc_handle owner;
		uint32_t idx;

		if (p->ref & ZC_REF_FOREIGN)
			ctx->ops->release_foreign(ctx, p, &owner);
		else if (zc_pool_take_back(&ctx->pool, p, &idx) == 0)
			ctx->ops->piece_released(ctx, idx);
	}
}

/* The statistics count what the application has been given. */
static void count_delivery(zc_ctx *ctx, struct zc_sock *s, const struct zc_qevent *qe)
{
	const struct zc_event *ev = &qe->ev;
	uint64_t copied = qe->data_flags & ZC_DATA_COPIED ? ev->bytes : 0;
	uint64_t mapped = qe->data_flags & ZC_DATA_MAPPED ? ev->bytes : 0;

	s->st.bytes_received += ev->bytes;
	s->st.pieces_outstanding += ev->npieces;
	s->st.bytes_copied += copied;
	s->st.bytes_mapped += mapped;
	ctx->st.bytes_received += ev->bytes;
	ctx->st.pieces_outstanding += ev->npieces;
	ctx->st.bytes_copied += copied;
	ctx->st.bytes_mapped += mapped;
}

unsigned zc_deliver(zc_ctx *ctx, struct zc_event *evs, unsigned max)
{
	unsigned n = 0;

	if (ctx->q_head == ctx->q_len) {
		/* Everything handed out before was valid "until the next
		 * zc_wait()": that is now. */
		ctx->q_head = ctx->q_len = 0;
		ctx->npieces_q = 0;
		return 0;
	}
	while (n < max && ctx->q_head < ctx->q_len) {
		struct zc_qevent *qe = &ctx->q[ctx->q_head++];
		struct zc_sock *s = zc_sock_get(ctx, qe->ev.conn);

		if (!s && qe->ev.type != ZC_EV_WRITTEN) {
			drop(ctx, qe); /* its connection was closed */
			continue;
		}
		if (qe->ev.type == ZC_EV_TAKEN)
			zc_taken_delivered(ctx, s, &qe->ev);
		evs[n] = qe->ev;
		evs[n].user = s ? s->user : NULL;
		if (!s) /* WRITTEN after zc_close(): the handle is no more */
			evs[n].conn = 0;
		if (qe->ev.type == ZC_EV_DATA) {
			evs[n].pieces = &ctx->pieces[qe->piece_first];
			count_delivery(ctx, s, qe);
		}
		if (qe->ev.type == ZC_EV_DATA || qe->ev.type == ZC_EV_TAKEN)
			s->seen_off = qe->ev.offset + qe->ev.bytes;
		if (evs[n++].type == ZC_EV_ACCEPT)
			break; /* let zc_set_user() apply to what follows */
	}
	return n;
}

void zc_events_fini(zc_ctx *ctx)
{
	free(ctx->q);
	free(ctx->pieces);
	free(ctx->stalled);
}

/* --- stalled connections --- */

void zc_stall(zc_ctx *ctx, struct zc_sock *s)
{
	uint32_t cap = ctx->st_cap;

	if (s->flags & (SF_STALLED | SF_RX_DONE))
		return;
	if (ctx->st_len == cap) { /* grow the ring, unrolling it */
		uint32_t ncap = cap ? cap * 2 : 64;
		zc_handle *n = malloc(ncap * sizeof(*n));
		if (!n) {
			/* Unremembered, it would never be resumed: its
			 * stream would hang, as good as lost. */
			lost(ctx);
			return;
		}
		for (uint32_t i = 0; i < ctx->st_len; i++)
			n[i] = ctx->stalled[(ctx->st_head + i) % cap];
		free(ctx->stalled);
		ctx->stalled = n;
		ctx->st_cap = ncap;
		ctx->st_head = 0;
	}
	ctx->stalled[(ctx->st_head + ctx->st_len++) % ctx->st_cap] = zc_handle_of(s);
	s->flags |= SF_STALLED;
	s->st.stalls++;
	ctx->st.stalls++;
}

void zc_resume_stalled(zc_ctx *ctx)
{
	uint64_t avail = ctx->ops->resumable ? ctx->ops->resumable(ctx) :
			 ctx->pool.npieces - ctx->pool.held;

	/* One connection per piece to lend, oldest first: waking all of
	 * them for a single piece would only stall all but one again. */
	while (ctx->st_len && avail) {
		zc_handle h = ctx->stalled[ctx->st_head];
		struct zc_sock *s;

		ctx->st_head = (ctx->st_head + 1) % ctx->st_cap;
		ctx->st_len--;
		s = zc_sock_get(ctx, h);
		if (!s || !(s->flags & SF_STALLED))
			continue;
		s->flags &= ~SF_STALLED;
		if (s->flags & SF_RX_DONE)
			continue;
		ctx->ops->resume(ctx, s);
		avail--;
	}
}
