/*
 * engine_socket.c - the portable engine: non-blocking sockets, epoll, and
 * readv() straight into pool pieces.
 *
 * The kernel copies each byte once, from its socket buffer into the
 * piece, exactly as with the uring engine; it differs in costing a
 * readiness wake-up plus a readv() per batch instead of a completion.
 * It is the fallback where io_uring is disabled or blocked, and the
 * baseline the uring engine is measured against.
 *
 * Sockets are registered with epoll only while they want something:
 * EPOLLHUP and EPOLLERR cannot be masked, so a stalled or finished
 * connection that stayed registered would wake the loop for ever.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define RX_BATCH 16     /* pieces offered to one readv() */
#define RX_ROUNDS 4     /* readv() calls per connection per wake-up */
#define ACCEPT_BATCH 64 /* accepts per listener per wake-up */
#define MAX_EVENTS 256


struct sk_engine {
	int epfd;
};

static struct sk_engine *E(zc_ctx *ctx)
{
	return ctx->eng;
}

/* What @s wants from epoll now. */
static uint32_t wanted(const struct zc_sock *s)
{
	uint32_t ev = 0;

	if (s->kind == SK_LISTENER)
		return s->flags & SF_ACCEPT_WAIT ? 0 : EPOLLIN;
	if (s->flags & SF_CONNECTING)
		return EPOLLOUT;
	if (!(s->flags & SF_RX_DONE) &&
	    (!(s->flags & SF_STALLED) || (s->flags & SF_TAKING)))
		ev |= EPOLLIN | EPOLLRDHUP; /* a take needs no pieces */
	if (s->flags & SF_WANT_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

/* Tell epoll what @s wants, if that changed. s->eng_bits holds the mask
 * registered now; 0 means not in the epoll set. */
static int update(zc_ctx *ctx, struct zc_sock *s)
{
	struct epoll_event ee = { .events = wanted(s), .data.u64 = zc_handle_of(s) };
	int op;

	if (ee.events == s->eng_bits)
		return 0;
	if (!ee.events)
		op = EPOLL_CTL_DEL;
	else
		op = s->eng_bits ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(E(ctx)->epfd, op, s->fd, &ee))
		return -errno;
	s->eng_bits = ee.events;
	return 0;
}

static int sk_init(zc_ctx *ctx)
{
	struct sk_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		int err = -errno;
		free(e);
		return err;
	}
	ctx->eng = e;
	strcpy(ctx->features, "epoll readv");
	return 0;
}

static void sk_fini(zc_ctx *ctx)
{
	close(E(ctx)->epfd);
	free(ctx->eng);
	ctx->eng = NULL;
}

static int sk_listen(zc_ctx *ctx, struct zc_sock *s, const struct sockaddr *sa,
		     socklen_t len, unsigned flags)
{
	int fd = ks_listen(sa, len, flags, true), err;

	if (fd < 0)
		return fd;
	s->fd = fd;
	err = update(ctx, s);
	if (err) {
		close(fd);
		s->fd = -1;
	}
	return err;
}

static int sk_connect(zc_ctx *ctx, struct zc_sock *s)
{
	int fd = ks_conn_socket(s, true);

	if (fd < 0)
		return fd;
	s->fd = fd;
	if (connect(fd, (struct sockaddr *)&s->peer, s->peer_len) == 0)
		zc_emit(ctx, ZC_EV_CONNECTED, s, 0, 0);
	else if (errno != EINPROGRESS)
		zc_emit(ctx, ZC_EV_ERROR, s, -errno, 0);
	return update(ctx, s);
}

static ssize_t sk_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len)
{
	ssize_t n = ks_send(ctx, s, buf, len);

	if (s->flags & SF_WANT_WRITE)
		update(ctx, s);
	return n;
}

static ssize_t sk_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
			  uint64_t tag)
{
	ssize_t n = ks_send_zc(ctx, s, buf, len, tag);

	if (s->flags & SF_WANT_WRITE)
		update(ctx, s);
	return n;
}

static void sk_close(zc_ctx *ctx, struct zc_sock *s, bool abort)
{
	ks_close(ctx, s, abort); /* also leaves the epoll set */
}

static void sk_resume(zc_ctx *ctx, struct zc_sock *s)
{
	update(ctx, s);
}

static void sk_take(zc_ctx *ctx, struct zc_sock *s)
{
	update(ctx, s); /* readable now matters even if stalled */
}

static void sk_piece_released(zc_ctx *ctx, uint32_t idx)
{
	zc_pool_put(&ctx->pool, idx);
}

static void accept_some(zc_ctx *ctx, struct zc_sock *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct zc_sock *c;

		if (fd < 0) {
			if (zc_accept_backoff(ctx, l, -errno))
				update(ctx, l);
			return; /* EAGAIN, or a connection that died in the backlog */
		}
		c = zc_sock_new(ctx, SK_CONN);
		if (!c) {
			close(fd);
			return;
		}
		c->fd = fd;
		zc_emit(ctx, ZC_EV_ACCEPT, c, 0, zc_handle_of(l));
		update(ctx, c);
	}
}

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

	if (s->flags & SF_TAKING) {
		zc_take_step(ctx, s); /* level-triggered: we come back for more */
		update(ctx, s);
		return;
	}

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
	update(ctx, s);
}

static void on_conn_event(zc_ctx *ctx, struct zc_sock *s, uint32_t ev)
{
	if (s->flags & SF_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		zc_emit(ctx, err ? ZC_EV_ERROR : ZC_EV_CONNECTED, s, -err, 0);
		update(ctx, s);
		return;
	}
	if ((ev & EPOLLOUT) && (s->flags & SF_WANT_WRITE)) {
		s->flags &= ~SF_WANT_WRITE;
		zc_emit(ctx, ZC_EV_WRITABLE, s, 0, 0);
		update(ctx, s);
	}
	if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
	    (s->flags & (SF_STALLED | SF_TAKING)) != SF_STALLED &&
	    !(s->flags & SF_RX_DONE))
		receive(ctx, s);
}

static int sk_run(zc_ctx *ctx, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n;

	timeout_ms = ks_zc_poll(ctx, timeout_ms);
	n = epoll_wait(E(ctx)->epfd, evs, MAX_EVENTS, timeout_ms);
	if (n < 0)
		return errno == EINTR ? -EINTR : -errno;
	for (int i = 0; i < n; i++) {
		struct zc_sock *s = zc_sock_get(ctx, evs[i].data.u64);

		if (!s)
			continue; /* closed earlier in this batch */
		if (s->kind == SK_LISTENER)
			accept_some(ctx, s);
		else
			on_conn_event(ctx, s, evs[i].events);
	}
	ks_zc_poll(ctx, 0); /* completions that came meanwhile (EPOLLERR) */
	return 0;
}

const struct zc_engine_ops zc_engine_socket = {
	.name = "socket",
	.init = sk_init,
	.fini = sk_fini,
	.listen = sk_listen,
	.connect = sk_connect,
	.send = sk_send,
	.send_zc = sk_send_zc,
	.shutdown = ks_shutdown,
	.local_port = ks_local_port,
	.close = sk_close,
	.resume = sk_resume,
	.piece_released = sk_piece_released,
	.run = sk_run,
	.take = sk_take,
	.cookie_write = NULL, /* the core writes synchronously */
};
