/*
 * ctx.c - the context: configuration, engine choice, the handle table and
 * the public calls, which check their arguments and hand over to the
 * engine through ctx->ops.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define DEFAULT_PIECE_SIZE (64u * 1024)
#define DEFAULT_POOL_SIZE (16u * 1024 * 1024)
#define DEFAULT_MAP_SIZE (16u * 1024 * 1024)
#define DEFAULT_BATCH_USEC 200u /* see zc_config.batch_usec */

ZC_EXPORT void zc_config_init(struct zc_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->engine = ZC_ENGINE_AUTO;
	cfg->piece_size = DEFAULT_PIECE_SIZE;
	cfg->pool_size = DEFAULT_POOL_SIZE;
	cfg->map_size = DEFAULT_MAP_SIZE;
	cfg->batch_usec = DEFAULT_BATCH_USEC;
	cfg->zerocopy_min = ZC_SEND_ZEROCOPY_MIN;
}

static int start_engine(zc_ctx *ctx, enum zc_engine_kind kind)
{
	int err;

	switch (kind) {
	case ZC_ENGINE_URING:
		ctx->ops = &zc_engine_uring;
		return ctx->ops->init(ctx);
	case ZC_ENGINE_SOCKET:
		ctx->ops = &zc_engine_socket;
		return ctx->ops->init(ctx);
	case ZC_ENGINE_MMAP:
		ctx->ops = &zc_engine_mmap;
		return ctx->ops->init(ctx);
	case ZC_ENGINE_AUTO:
		err = start_engine(ctx, ZC_ENGINE_URING);
		if (err)
			err = start_engine(ctx, ZC_ENGINE_SOCKET);
		return err;
	}
	return -EINVAL;
}

ZC_EXPORT int zc_ctx_create(const struct zc_config *ucfg, zc_ctx **out)
{
	struct zc_config cfg;
	zc_ctx *ctx;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (ucfg)
		cfg = *ucfg;
	else
		zc_config_init(&cfg);
	if (cfg.engine > ZC_ENGINE_MMAP)
		return -EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->cfg_flags = cfg.flags;
	ctx->batch_usec = cfg.batch_usec;
	ctx->zerocopy_min = cfg.zerocopy_min ? cfg.zerocopy_min : ZC_SEND_ZEROCOPY_MIN;
	ctx->map_size = cfg.map_size ? cfg.map_size : DEFAULT_MAP_SIZE;
	err = zc_pool_init(&ctx->pool, &cfg);
	if (err)
		goto fail_pool;
	ctx->piece_owner = calloc(ctx->pool.npieces, sizeof(*ctx->piece_owner));
	if (!ctx->piece_owner) {
		err = -ENOMEM;
		goto fail;
	}
	ctx->st.pieces_total = ctx->pool.npieces;
	ctx->ck.peek[0] = ctx->ck.peek[1] = -1;
	err = start_engine(ctx, cfg.engine);
	if (err)
		goto fail;
	*out = ctx;
	return 0;
fail:
	zc_pool_fini(&ctx->pool);
fail_pool:
	free(ctx->piece_owner);
	free(ctx);
	return err;
}

ZC_EXPORT void zc_ctx_destroy(zc_ctx *ctx)
{
	if (!ctx)
		return;
	for (uint32_t i = 0; i < ctx->nsocks; i++) {
		struct zc_sock *s = ctx->socks[i];
		if (s->kind != SK_FREE)
			zc_close(ctx, zc_handle_of(s));
	}
	ctx->ops->fini(ctx);
	zc_cookies_fini(ctx);
	for (uint32_t i = 0; i < ctx->nsocks; i++)
		free(ctx->socks[i]);
	free(ctx->socks);
	free(ctx->free_socks);
	free(ctx->piece_owner);
	zc_events_fini(ctx);
	zc_pool_fini(&ctx->pool);
	free(ctx);
}

ZC_EXPORT const char *zc_engine_name(const zc_ctx *ctx)
{
	return ctx ? ctx->ops->name : "none";
}

ZC_EXPORT const char *zc_engine_features(const zc_ctx *ctx)
{
	return ctx ? ctx->features : "";
}

/* --- the handle table --- */

struct zc_sock *zc_sock_get(const zc_ctx *ctx, zc_handle h)
{
	uint32_t idx = (uint32_t)h, gen = (uint32_t)(h >> 32);
	struct zc_sock *s;

	if (!ctx || idx >= ctx->nsocks)
		return NULL;
	s = ctx->socks[idx];
	return s->kind != SK_FREE && s->gen == gen ? s : NULL;
}

static int grow_socks(zc_ctx *ctx)
{
	uint32_t cap = ctx->socks_cap ? ctx->socks_cap * 2 : 64;
	struct zc_sock **socks = realloc(ctx->socks, cap * sizeof(*socks));
	uint32_t *fr;

	if (!socks)
		return -ENOMEM;
	ctx->socks = socks;
	fr = realloc(ctx->free_socks, cap * sizeof(*fr));
	if (!fr)
		return -ENOMEM;
	ctx->free_socks = fr;
	ctx->socks_cap = cap;
	return 0;
}

struct zc_sock *zc_sock_new(zc_ctx *ctx, enum zc_sock_kind kind)
{
	struct zc_sock *s;
	uint32_t gen, idx;

	if (ctx->nfree_socks) {
		s = ctx->socks[ctx->free_socks[--ctx->nfree_socks]];
	} else {
		if (ctx->nsocks == ctx->socks_cap && grow_socks(ctx))
			return NULL;
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->idx = ctx->nsocks;
		ctx->socks[ctx->nsocks++] = s;
	}
	gen = s->gen;
	idx = s->idx;
	memset(s, 0, sizeof(*s));
	s->idx = idx;
	s->gen = gen ? gen : 1;
	s->kind = kind;
	s->fd = -1;
	if (kind == SK_CONN)
		ctx->st.connections++;
	return s;
}

void zc_sock_free(zc_ctx *ctx, struct zc_sock *s)
{
	if (s->kind == SK_CONN)
		ctx->st.connections--;
	if (s->lowat) { /* a mark a failed setsockopt() left: uncount it */
		ctx->marked_takes--;
		s->lowat = 0;
	}
	s->kind = SK_FREE;
	if (++s->gen == 0) /* a handle is never 0 */
		s->gen = 1;
	ctx->free_socks[ctx->nfree_socks++] = s->idx;
}

/* --- public socket calls --- */

static int new_sock_for(zc_ctx *ctx, enum zc_sock_kind kind, struct zc_sock **out)
{
	if (!ctx)
		return -EINVAL;
	*out = zc_sock_new(ctx, kind);
	return *out ? 0 : -ENOMEM;
}

ZC_EXPORT int zc_listen(zc_ctx *ctx, const char *addr, unsigned flags, zc_handle *out)
{
	struct sockaddr_storage ss;
	struct zc_sock *s;
	socklen_t len;
	int err;

	if (!ctx || !addr || !out || (flags & ~(ZC_LISTEN_REUSEPORT | ZC_PAGE_ALIGNED)))
		return -EINVAL;
	err = zc_parse_addr(addr, &ss, &len);
	if (err)
		return err;
	err = new_sock_for(ctx, SK_LISTENER, &s);
	if (err)
		return err;
	s->open_flags = flags & ZC_PAGE_ALIGNED;
	err = ctx->ops->listen(ctx, s, (struct sockaddr *)&ss, len, flags);
	if (err) {
		zc_sock_free(ctx, s);
		return err;
	}
	*out = zc_handle_of(s);
	return 0;
}

ZC_EXPORT int zc_connect(zc_ctx *ctx, const char *addr, zc_handle *out)
{
	return zc_connect_ex(ctx, addr, 0, out);
}

ZC_EXPORT int zc_connect_ex(zc_ctx *ctx, const char *addr, unsigned flags,
			    zc_handle *out)
{
	struct zc_sock *s;
	int err;

	if (!ctx || !addr || !out || (flags & ~ZC_PAGE_ALIGNED))
		return -EINVAL;
	err = new_sock_for(ctx, SK_CONN, &s);
	if (err)
		return err;
	s->open_flags = flags;
	s->flags |= SF_CONNECTING; /* until ZC_EV_CONNECTED or ERROR */
	err = zc_parse_addr(addr, &s->peer, &s->peer_len);
	if (!err)
		err = ctx->ops->connect(ctx, s);
	if (err) {
		zc_sock_free(ctx, s);
		return err;
	}
	*out = zc_handle_of(s);
	return 0;
}

ZC_EXPORT int zc_local_port(zc_ctx *ctx, zc_handle h)
{
	struct zc_sock *s = zc_sock_get(ctx, h);

	return s ? ctx->ops->local_port(ctx, s) : -EBADF;
}

ZC_EXPORT int zc_set_user(zc_ctx *ctx, zc_handle h, void *user)
{
	struct zc_sock *s = zc_sock_get(ctx, h);

	if (!s)
		return -EBADF;
	s->user = user;
	return 0;
}

static struct zc_sock *conn_get(zc_ctx *ctx, zc_handle h)
{
	struct zc_sock *s = zc_sock_get(ctx, h);

	return s && s->kind == SK_CONN ? s : NULL;
}

ZC_EXPORT int zc_pause(zc_ctx *ctx, zc_handle conn, int pause)
{
	struct zc_sock *s = conn_get(ctx, conn);

	if (!s)
		return -EBADF;
	if (!(s->flags & SF_PAUSED) == !pause)
		return 0;
	s->flags ^= SF_PAUSED;
	ctx->ops->pause(ctx, s);
	return 0;
}

ZC_EXPORT ssize_t zc_send(zc_ctx *ctx, zc_handle conn, const void *buf, size_t len)
{
	struct zc_sock *s = conn_get(ctx, conn);

	if (!s)
		return -EBADF;
	if (!buf && len)
		return -EINVAL;
	if (s->flags & SF_CONNECTING)
		return -ENOTCONN;
	ctx->gather.replied = true;
	return ctx->ops->send(ctx, s, buf, len);
}

ZC_EXPORT ssize_t zc_send_zerocopy(zc_ctx *ctx, zc_handle conn, const void *buf,
				   size_t len, uint64_t tag)
{
	struct zc_sock *s = conn_get(ctx, conn);

	if (!s)
		return -EBADF;
	if (!buf || !len)
		return -EINVAL;
	if (s->flags & SF_CONNECTING)
		return -ENOTCONN;
	ctx->gather.replied = true;
	return ctx->ops->send_zc(ctx, s, buf, len, tag);
}

ZC_EXPORT int zc_shutdown(zc_ctx *ctx, zc_handle conn, int how)
{
	struct zc_sock *s = conn_get(ctx, conn);

	if (!s)
		return -EBADF;
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	/* As zc_send(). The kernel would record the shutdown of a socket
	 * not yet connecting even while it returns ENOTCONN (the uring
	 * engine connects later), or accept it (a connect under way): the
	 * connection would end as soon as it starts, one way or not. */
	if (s->flags & SF_CONNECTING)
		return -ENOTCONN;
	return ctx->ops->shutdown(ctx, s, how);
}

static int close_sock(zc_ctx *ctx, struct zc_sock *s, bool abort)
{
	if (!s)
		return -EBADF;
	if (s->flags & SF_ACCEPT_WAIT)
		ctx->paused_listeners--;
	if (s->flags & (SF_TAKING | SF_TAKEN_Q))
		zc_take_abort(ctx, s);
	ctx->ops->close(ctx, s, abort);
	zc_sock_free(ctx, s);
	return 0;
}

ZC_EXPORT int zc_close(zc_ctx *ctx, zc_handle h)
{
	/* In a broken context (see zc_wait()) a stream may have been cut
	 * short: the peer must not take it for complete. */
	return close_sock(ctx, zc_sock_get(ctx, h), ctx && ctx->broken);
}

ZC_EXPORT int zc_abort(zc_ctx *ctx, zc_handle conn)
{
	return close_sock(ctx, conn_get(ctx, conn), true);
}

/* --- waiting and releasing --- */

#define ACCEPT_BACKOFF_MS 50

bool zc_accept_backoff(zc_ctx *ctx, struct zc_sock *s, int err)
{
	if (err != -EMFILE && err != -ENFILE && err != -ENOBUFS && err != -ENOMEM)
		return false;
	/* Out of descriptors or memory: the pending connection stays in the
	 * backlog; try again shortly instead of spinning on the error. */
	s->flags |= SF_ACCEPT_WAIT;
	s->retry_at_ms = zc_now_ms() + ACCEPT_BACKOFF_MS;
	ctx->paused_listeners++;
	return true;
}

/* Resume listeners whose back-off is over. Returns how long the wait may
 * last so that the others are not forgotten: @timeout_ms, or less. */
static int resume_listeners(zc_ctx *ctx, int timeout_ms)
{
	uint64_t now = zc_now_ms();

	for (uint32_t i = 0; i < ctx->nsocks && ctx->paused_listeners; i++) {
		struct zc_sock *s = ctx->socks[i];

		if ((s->flags & SF_ACCEPT_WAIT) && now >= s->retry_at_ms) {
			s->flags &= ~SF_ACCEPT_WAIT;
			ctx->paused_listeners--;
			ctx->ops->resume(ctx, s);
		}
	}
	if (ctx->paused_listeners && (timeout_ms < 0 || timeout_ms > ACCEPT_BACKOFF_MS))
		return ACCEPT_BACKOFF_MS;
	return timeout_ms;
}

ZC_EXPORT int zc_wait(zc_ctx *ctx, struct zc_event *evs, unsigned max, int timeout_ms)
{
	uint64_t deadline = 0;
	unsigned n;

	if (!ctx || !evs || max == 0)
		return -EINVAL;
	if (timeout_ms > 0)
		deadline = zc_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int err, left = timeout_ms;

		n = zc_deliver(ctx, evs, max);
		if (n)
			return (int)n;
		if (ctx->broken)
			return ctx->broken;
		if (timeout_ms > 0) {
			uint64_t now = zc_now_ms();
			if (now >= deadline)
				return 0;
			left = (int)(deadline - now);
		}
		zc_resume_stalled(ctx);
		if (ctx->paused_listeners)
			left = resume_listeners(ctx, left);
		if (ctx->marked_takes)
			left = zc_take_recheck_due(ctx, left);
		err = ctx->ops->run(ctx, left);
		if (err)
			return err;
		/* After the run: a take this ends is then reported before the
		 * engine's next run resumes receiving into pieces. */
		if (ctx->marked_takes)
			zc_take_recheck(ctx);
		if (timeout_ms == 0) {
			n = zc_deliver(ctx, evs, max);
			return n || !ctx->broken ? (int)n : ctx->broken;
		}
	}
}

ZC_EXPORT int zc_release(zc_ctx *ctx, const struct zc_piece *p)
{
	struct zc_sock *owner;
	uint32_t idx;
	int err;

	if (!ctx || !p)
		return -EINVAL;
	if (p->ref & ZC_REF_FOREIGN) {
		zc_handle h;

		if (!ctx->ops->release_foreign)
			return -EINVAL;
		err = ctx->ops->release_foreign(ctx, p, &h);
		if (err)
			return err;
		ctx->st.pieces_outstanding--;
		owner = zc_sock_get(ctx, h);
		if (owner)
			owner->st.pieces_outstanding--;
		return 0;
	}
	err = zc_pool_take_back(&ctx->pool, p, &idx);
	if (err)
		return err;
	ctx->st.pieces_outstanding--;
	owner = zc_sock_get(ctx, ctx->piece_owner[idx]);
	if (owner)
		owner->st.pieces_outstanding--;
	ctx->piece_owner[idx] = 0;
	ctx->ops->piece_released(ctx, idx);
	return 0;
}

/* --- statistics --- */

ZC_EXPORT int zc_ctx_stats(const zc_ctx *ctx, struct zc_stats *st)
{
	if (!ctx || !st)
		return -EINVAL;
	*st = ctx->st;
	return 0;
}

ZC_EXPORT int zc_conn_stats(const zc_ctx *ctx, zc_handle conn, struct zc_stats *st)
{
	struct zc_sock *s;

	if (!ctx || !st)
		return -EINVAL;
	s = zc_sock_get(ctx, conn);
	if (!s || s->kind != SK_CONN)
		return -EBADF;
	*st = s->st;
	return 0;
}
