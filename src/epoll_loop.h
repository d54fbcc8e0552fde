/*
 * epoll_loop.h - what the epoll engines (socket, mmap) share: readiness
 * through epoll, accepting, connecting, sending, takes. They differ only
 * in how they receive, which each gives as ep_engine.receive.
 *
 * An engine's private state starts with a struct ep_engine, so ctx->eng
 * points at both.
 */
#ifndef ZCNET_EPOLL_LOOP_H
#define ZCNET_EPOLL_LOOP_H

#include "internal.h"

struct ep_engine {
	int epfd;
	/* @s is readable and may receive (not stalled, not taking, not
	 * ended). Emits DATA/EOF/ERROR or stalls; epoll is updated after. */
	void (*receive)(zc_ctx *ctx, struct zc_sock *s);
	/* A new connection, accepted or connecting: set up per-connection
	 * state. 0 or -errno. NULL: nothing to set up. */
	int (*conn_init)(zc_ctx *ctx, struct zc_sock *s);
	/* After each run, e.g. to refresh the features text. May be NULL. */
	void (*after_run)(zc_ctx *ctx);
};

/* Open the epoll set of @e. 0 or -errno. */
int ep_open(struct ep_engine *e);
void ep_shut(struct ep_engine *e);
/* Tell epoll what @s wants now, if that changed. */
int ep_update(zc_ctx *ctx, struct zc_sock *s);

/* The engine ops both epoll engines use as they are. */
int ep_listen(zc_ctx *ctx, struct zc_sock *s, const struct sockaddr *sa,
	      socklen_t len, unsigned flags);
int ep_connect(zc_ctx *ctx, struct zc_sock *s);
ssize_t ep_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len);
ssize_t ep_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
		   uint64_t tag);
void ep_close(zc_ctx *ctx, struct zc_sock *s, bool abort);
void ep_resume(zc_ctx *ctx, struct zc_sock *s);
void ep_take(zc_ctx *ctx, struct zc_sock *s);
void ep_piece_released(zc_ctx *ctx, uint32_t idx);
int ep_run(zc_ctx *ctx, int timeout_ms);

#define EP_READ_PIECES 16 /* pool pieces one ep_read() offers readv() */

/*
 * One readv() of at most @limit bytes from @s into up to EP_READ_PIECES
 * free pool pieces, delivered as one DATA event with ZC_DATA_* @flags.
 * Returns the bytes read, 0 at EOF, -ENOBUFS when no piece is free, or
 * -errno (-EAGAIN: nothing to read).
 */
ssize_t ep_read(zc_ctx *ctx, struct zc_sock *s, size_t limit, unsigned flags);

#endif
