/*
 * epoll_loop.c - the readiness loop shared by the epoll engines (see
 * epoll_loop.h): non-blocking sockets, level-triggered epoll.
 *
 * Sockets are registered with epoll only while they want something:
 * EPOLLHUP and EPOLLERR cannot be masked, so a stalled or finished
 * connection that stayed registered would wake the loop for ever.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "epoll_loop.h"

#define ACCEPT_BATCH 64 /* accepts per listener per wake-up */
#define MAX_EVENTS 256

static struct ep_engine *E(zc_ctx *ctx)
{
	return ctx->eng;
}

int ep_open(struct ep_engine *e)
{
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	return e->epfd < 0 ? -errno : 0;
}

void ep_shut(struct ep_engine *e)
{
	if (e->epfd >= 0)
		close(e->epfd);
	e->epfd = -1;
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
	    (!(s->flags & (SF_STALLED | SF_PAUSED)) || (s->flags & SF_TAKING)))
		ev |= EPOLLIN | EPOLLRDHUP; /* a take needs no pieces */
	if (s->flags & SF_WANT_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

/* s->eng_bits holds the mask registered now; 0: not in the epoll set. */
int ep_update(zc_ctx *ctx, struct zc_sock *s)
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

int ep_listen(zc_ctx *ctx, struct zc_sock *s, const struct sockaddr *sa,
	      socklen_t len, unsigned flags)
{
	int fd = ks_listen(sa, len, flags, true), err;

	if (fd < 0)
		return fd;
	s->fd = fd;
	err = ep_update(ctx, s);
	if (err) {
		close(fd);
		s->fd = -1;
	}
	return err;
}

int ep_connect(zc_ctx *ctx, struct zc_sock *s)
{
	int fd, err;

	if (E(ctx)->conn_init && (err = E(ctx)->conn_init(ctx, s)))
		return err;
	fd = ks_conn_socket(s, true);
	if (fd < 0)
		return fd;
	s->fd = fd;
	if (connect(fd, (struct sockaddr *)&s->peer, s->peer_len) == 0)
		zc_emit(ctx, ZC_EV_CONNECTED, s, 0, 0);
	else if (errno != EINPROGRESS)
		zc_emit(ctx, ZC_EV_ERROR, s, -errno, 0);
	return ep_update(ctx, s);
}

ssize_t ep_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len)
{
	ssize_t n = ks_send(ctx, s, buf, len);

	if (s->flags & SF_WANT_WRITE)
		ep_update(ctx, s);
	return n;
}

ssize_t ep_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
		   uint64_t tag)
{
	ssize_t n = ks_send_zc(ctx, s, buf, len, tag);

	if (s->flags & SF_WANT_WRITE)
		ep_update(ctx, s);
	return n;
}

void ep_close(zc_ctx *ctx, struct zc_sock *s, bool abort)
{
	ks_close(ctx, s, abort); /* also leaves the epoll set */
}

void ep_resume(zc_ctx *ctx, struct zc_sock *s)
{
	ep_update(ctx, s);
}

void ep_take(zc_ctx *ctx, struct zc_sock *s)
{
	/* What is there already (or nothing, if what the application had
	 * not yet seen covered the take); then readable matters even when
	 * stalled. */
	zc_take_step(ctx, s);
	ep_update(ctx, s);
}

void ep_piece_released(zc_ctx *ctx, uint32_t idx)
{
	zc_pool_put(&ctx->pool, idx);
}

/* Give back the pieces of @f from @from on that readv() left unused, in
 * reverse, so that the next readv() gets the same (cache-warm) ones first. */
static void put_unused(zc_ctx *ctx, struct zc_fill *f, unsigned from, unsigned n)
{
	while (n-- > from)
		zc_pool_put(&ctx->pool, f[n].idx);
}

ssize_t ep_read(zc_ctx *ctx, struct zc_sock *s, size_t limit, unsigned flags)
{
	struct zc_fill f[EP_READ_PIECES];
	struct iovec iov[EP_READ_PIECES];
	size_t psz = ctx->pool.piece_size, want = 0;
	unsigned n = 0, used = 0;
	ssize_t got, left;

	while (n < EP_READ_PIECES && want < limit &&
	       zc_pool_get(&ctx->pool, &f[n].idx) == 0) {
		iov[n].iov_base = zc_pool_addr(&ctx->pool, f[n].idx);
		iov[n].iov_len = limit - want < psz ? limit - want : psz;
		want += iov[n].iov_len;
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
		f[used].len = (uint32_t)((size_t)left < iov[used].iov_len ?
					 (size_t)left : iov[used].iov_len);
	put_unused(ctx, f, used, n);
	if (zc_emit_data_flags(ctx, s, f, used, flags)) /* no memory for the event */
		put_unused(ctx, f, 0, used);
	return got;
}

static void accept_some(zc_ctx *ctx, struct zc_sock *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct zc_sock *c;

		if (fd < 0) {
			if (zc_accept_backoff(ctx, l, -errno))
				ep_update(ctx, l);
			return; /* EAGAIN, or a connection that died in the backlog */
		}
		c = zc_sock_new(ctx, SK_CONN);
		if (c && E(ctx)->conn_init && E(ctx)->conn_init(ctx, c)) {
			zc_sock_free(ctx, c);
			c = NULL;
		}
		if (!c) {
			close(fd);
			return;
		}
		c->fd = fd;
		zc_emit(ctx, ZC_EV_ACCEPT, c, 0, zc_handle_of(l));
		ep_update(ctx, c);
	}
}

static void on_conn_event(zc_ctx *ctx, struct zc_sock *s, uint32_t ev)
{
	if (s->flags & SF_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		zc_emit(ctx, err ? ZC_EV_ERROR : ZC_EV_CONNECTED, s, -err, 0);
		ep_update(ctx, s);
		return;
	}
	if ((ev & EPOLLOUT) && (s->flags & SF_WANT_WRITE)) {
		s->flags &= ~SF_WANT_WRITE;
		zc_emit(ctx, ZC_EV_WRITABLE, s, 0, 0);
	}
	if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
	    !(s->flags & SF_RX_DONE)) {
		if (s->flags & SF_TAKING)
			zc_take_step(ctx, s); /* level-triggered: back for more */
		else if (!(s->flags & (SF_STALLED | SF_PAUSED)))
			E(ctx)->receive(ctx, s);
	}
	ep_update(ctx, s);
}

/*
 * Gather (see gather.h): let bulk data pile up in the sockets for
 * batch_usec before asking epoll, so that one wake-up and one receive
 * call take what would otherwise have cost several; on machines where a
 * context switch is dear that is much of the receive cost. Level-
 * triggered epoll makes no wake-up of its own for what piled up.
 */
static void gather_sleep(zc_ctx *ctx, int timeout_ms)
{
	unsigned us = ctx->batch_usec;
	struct timespec ts;

	if (timeout_ms > 0 && us > (unsigned)timeout_ms * 1000u)
		us = (unsigned)timeout_ms * 1000u;
	ts.tv_sec = us / 1000000u;
	ts.tv_nsec = (long)(us % 1000000u) * 1000;
	nanosleep(&ts, NULL); /* a signal may end it early: no harm */
}

int ep_run(zc_ctx *ctx, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n;

	timeout_ms = ks_zc_poll(ctx, timeout_ms);
	if (zc_gather_begin(&ctx->gather, timeout_ms != 0 && ctx->batch_usec,
			    &ctx->st.waits_gathered))
		gather_sleep(ctx, timeout_ms);
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
	zc_gather_end(&ctx->gather);
	if (E(ctx)->after_run)
		E(ctx)->after_run(ctx);
	return 0;
}
