/*
 * engine_socket.c - the portable engine: non-blocking sockets, epoll, and
 * readv() straight into pool pieces.
 *
 * The kernel copies each byte once, from its socket buffer into the
 * piece, exactly as with the uring engine; it differs in costing a
 * readiness wake-up plus a readv() per batch instead of a completion.
 * It is the fallback where io_uring is disabled or blocked, and the
 * baseline the uring engine is measured against. Everything but the
 * receive itself is the shared epoll loop (epoll_loop.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "epoll_loop.h"

#define RX_BATCH 16     /* pieces offered to one readv() */
#define RX_ROUNDS 4     /* readv() calls per connection per wake-up */

/* Give back the pieces of @f from @from on that readv() left unused, in
 * reverse, so that the next readv() gets the same (cache-warm) ones first. */
static void put_unused(zc_ctx *ctx, struct zc_fill *f, unsigned from, unsigned n)
{
	while (n-- > from)
		zc_pool_put(&ctx->pool, f[n].idx);
}

/* One readv() into up to RX_BATCH pieces. >0: bytes, 0: EOF, <0: errno. */
static ssize_t read_batch(zc_ctx *ctx, struct zc_sock *s)
{
	struct zc_fill f[RX_BATCH];
	struct iovec iov[RX_BATCH];
	size_t psz = ctx->pool.piece_size;
	unsigned n = 0, used = 0;
	ssize_t got, left;

	while (n < RX_BATCH && zc_pool_get(&ctx->pool, &f[n].idx) == 0) {
		iov[n].iov_base = zc_pool_addr(&ctx->pool, f[n].idx);
		iov[n].iov_len = psz;
		n++;
	}
	if (n == 0)
		return -ENOBUFS;
	got = readv(s->fd, iov, (int)n);
	if (got <= 0) {
		int err = got < 0 ? -errno : 0;
		put_unused(ctx, f, 0, n);
		return err;
	}
	for (left = got; left > 0; left -= (ssize_t)f[used++].len)
		f[used].len = (uint32_t)((size_t)left < psz ? (size_t)left : psz);
	put_unused(ctx, f, used, n);
	if (zc_emit_data(ctx, s, f, used)) /* out of memory for the event */
		put_unused(ctx, f, 0, used);
	return got;
}

static void receive(zc_ctx *ctx, struct zc_sock *s)
{
	size_t full = RX_BATCH * ctx->pool.piece_size;

	for (int round = 0; round < RX_ROUNDS; round++) {
		ssize_t got = read_batch(ctx, s);

		if (got == -ENOBUFS) {
			zc_stall(ctx, s);
			break;
		}
		if (got == -EAGAIN || got == -EINTR)
			break;
		if (got == 0 || got < 0) {
			zc_emit(ctx, got ? ZC_EV_ERROR : ZC_EV_EOF, s, (int)got, 0);
			break;
		}
		if ((size_t)got < full)
			break; /* drained for now; level-triggered epoll says when more */
	}
}

static int sk_init(zc_ctx *ctx)
{
	struct ep_engine *e = calloc(1, sizeof(*e));
	int err;

	if (!e)
		return -ENOMEM;
	e->receive = receive;
	err = ep_open(e);
	if (err) {
		free(e);
		return err;
	}
	ctx->eng = e;
	strcpy(ctx->features, ctx->batch_usec ? "epoll readv gather" : "epoll readv");
	return 0;
}

static void sk_fini(zc_ctx *ctx)
{
	ep_shut(ctx->eng);
	free(ctx->eng);
	ctx->eng = NULL;
}

const struct zc_engine_ops zc_engine_socket = {
	.name = "socket",
	.init = sk_init,
	.fini = sk_fini,
	.listen = ep_listen,
	.connect = ep_connect,
	.send = ep_send,
	.send_zc = ep_send_zc,
	.shutdown = ks_shutdown,
	.local_port = ks_local_port,
	.close = ep_close,
	.resume = ep_resume,
	.pause = ep_resume, /* what epoll waits for changes */
	.piece_released = ep_piece_released,
	.run = ep_run,
	.take = ep_take,
	.cookie_write = NULL, /* the core writes synchronously */
};
