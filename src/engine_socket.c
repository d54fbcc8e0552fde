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
#include <stdint.h>

#include "epoll_loop.h"

#define RX_ROUNDS 4     /* readv() calls per connection per wake-up */

static void receive(zc_ctx *ctx, struct zc_sock *s)
{
	size_t full = EP_READ_PIECES * ctx->pool.piece_size;

	for (int round = 0; round < RX_ROUNDS; round++) {
		ssize_t got = ep_read(ctx, s, SIZE_MAX, 0);

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
