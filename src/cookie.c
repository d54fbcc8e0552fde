/*
 * cookie.c - cookies: ranges of a connection's stream that the kernel
 * moves from the socket into a pipe (splice) and later from the pipe to a
 * file or socket, without the bytes entering the application's memory.
 *
 * Taking: zc_take() marks the connection SF_TAKING; the engine stops
 * receiving into pieces once what is in flight has been delivered, and
 * calls zc_take_step() whenever the socket is readable. The step splices
 * without blocking until the cookie is full or the stream ends, then emits
 * ZC_EV_TAKEN and the engine receives into pieces again. Because the
 * engine drains its own receive first, stream order holds across pieces
 * and cookies.
 *
 * Writing: the uring engine splices through io_uring (ops->cookie_write,
 * reporting to zc_write_progress()); otherwise, and for O_DIRECT files,
 * the core writes synchronously here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define DIRECT_ALIGN 4096
#define PEEK_MAX 65536 /* a default pipe's capacity: what tee() can show */

/* --- the table --- */

static zc_cookie handle_of(const struct zc_ck *ck)
{
	return (uint64_t)ck->gen << 32 | ck->idx;
}

/* Also finds cookies the application freed while in flight (orphans). */
struct zc_ck *zc_ck_get(zc_ctx *ctx, zc_cookie c)
{
	uint32_t idx = (uint32_t)c, gen = (uint32_t)(c >> 32);
	struct zc_ck *ck;

	if (!ctx || idx >= ctx->ck.n)
		return NULL;
	ck = ctx->ck.tab[idx];
	return ck->state != CK_FREE && ck->gen == gen ? ck : NULL;
}

/* A cookie the application may still use. */
static struct zc_ck *live(zc_ctx *ctx, zc_cookie c)
{
	struct zc_ck *ck = zc_ck_get(ctx, c);

	return ck && !ck->orphan ? ck : NULL;
}

static int grow(struct zc_cookies *c)
{
	uint32_t cap = c->cap ? c->cap * 2 : 32;
	struct zc_ck **tab = realloc(c->tab, cap * sizeof(*tab));
	uint32_t *fr;
	int (*pipes)[3];

	if (!tab)
		return -ENOMEM;
	c->tab = tab;
	fr = realloc(c->free, cap * sizeof(*fr));
	if (!fr)
		return -ENOMEM;
	c->free = fr;
	pipes = realloc(c->pipes, cap * sizeof(*pipes));
	if (!pipes)
		return -ENOMEM;
	c->pipes = pipes;
	c->cap = cap;
	return 0;
}

/*
 * A pipe for a cookie: a kept one, or a new one as large as allowed.
 * fds[2] is its capacity (what F_SETPIPE_SZ answers, or 0 if unknown):
 * kept with the pipe, so that a take need not ask for it each time.
 */
static int get_pipe(struct zc_cookies *c, int fds[3])
{
	if (c->npipes) {
		memcpy(fds, c->pipes[--c->npipes], sizeof(int[3]));
		return 0;
	}
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK))
		return -errno;
	/* Best effort: without it the cookie holds what the pipe can. */
	fds[2] = fcntl(fds[1], F_SETPIPE_SZ, ZC_COOKIE_MAX);
	if (fds[2] < 0)
		fds[2] = 0;
	return 0;
}

/* Keep an empty pipe for the next cookie; close one that holds data.
 * @empty: known to be empty (written out whole), no need to ask. */
static void put_pipe(struct zc_cookies *c, const struct zc_ck *ck, bool empty)
{
	int left = 1;

	if (!empty && ioctl(ck->pr, FIONREAD, &left) == 0 && left == 0)
		empty = true;
	if (empty && c->npipes < c->cap) {
		c->pipes[c->npipes][0] = ck->pr;
		c->pipes[c->npipes][1] = ck->pw;
		c->pipes[c->npipes++][2] = ck->cap;
		return;
	}
	close(ck->pr);
	close(ck->pw);
}

static int ck_new(zc_ctx *ctx, struct zc_ck **out)
{
	struct zc_cookies *c = &ctx->ck;
	struct zc_ck *ck, tmp;
	int fds[3], err;
	uint32_t gen, idx;

	if (!c->nfree && c->n == c->cap && (err = grow(c)))
		return err;
	err = get_pipe(c, fds);
	if (err)
		return err;
	if (c->nfree) {
		ck = c->tab[c->free[--c->nfree]];
	} else {
		ck = calloc(1, sizeof(*ck));
		if (!ck) {
			tmp = (struct zc_ck){ .pr = fds[0], .pw = fds[1], .cap = fds[2] };
			put_pipe(c, &tmp, true);
			return -ENOMEM;
		}
		ck->idx = c->n;
		c->tab[c->n++] = ck;
	}
	gen = ck->gen;
	idx = ck->idx;
	memset(ck, 0, sizeof(*ck));
	ck->idx = idx;
	ck->gen = gen ? gen : 1;
	ck->pr = fds[0];
	ck->pw = fds[1];
	ck->cap = fds[2];
	ck->fd = -1;
	ctx->st.cookies_alive++;
	*out = ck;
	return 0;
}

static void ck_free(zc_ctx *ctx, struct zc_ck *ck)
{
	struct zc_cookies *c = &ctx->ck;

	/* A write that moved every byte left the pipe empty. */
	put_pipe(c, ck, ck->state == CK_WRITING && ck->done == ck->len);
	ck->state = CK_FREE;
	if (++ck->gen == 0)
		ck->gen = 1;
	c->free[c->nfree++] = ck->idx;
	ctx->st.cookies_alive--;
}

void zc_cookies_fini(zc_ctx *ctx)
{
	struct zc_cookies *c = &ctx->ck;

	for (uint32_t i = 0; i < c->n; i++) {
		if (c->tab[i]->state != CK_FREE)
			ck_free(ctx, c->tab[i]);
		free(c->tab[i]);
	}
	for (uint32_t i = 0; i < c->npipes; i++) {
		close(c->pipes[i][0]);
		close(c->pipes[i][1]);
	}
	if (c->peek[0] >= 0) {
		close(c->peek[0]);
		close(c->peek[1]);
	}
	free(c->tab);
	free(c->free);
	free(c->pipes);
	free(c->bounce);
	memset(c, 0, sizeof(*c));
}

/* --- taking --- */

/* s->lowat changes only here: ctx->marked_takes counts the sockets with
 * a mark set, for zc_take_recheck(). */
static void set_lowat(zc_ctx *ctx, struct zc_sock *s, int v)
{
	ctx->marked_takes += (unsigned)(v != 0) - (unsigned)(s->lowat != 0);
	s->lowat = v;
}

/* Back to the default before the engine receives into pieces again. */
static void take_lowat_reset(zc_ctx *ctx, struct zc_sock *s)
{
	int one = 1;

	if (s->lowat && setsockopt(s->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)) == 0)
		set_lowat(ctx, s, 0);
}

/*
 * A take that waits for more bytes wakes up once the rest of it is there
 * (SO_RCVLOWAT), not for every segment: one wake-up and one splice per
 * cookie instead of a dozen. A FIN, an error, memory pressure or a closed
 * window wake it regardless (tcp_poll()), and the mark is never above
 * what the take still wants. But the mark counts bytes and the pipe fills
 * by fragments: the rest may never fit. zc_take_recheck() looks again.
 */
static void take_lowat(zc_ctx *ctx, struct zc_sock *s, size_t rest)
{
	int v = rest > (1u << 30) ? 1 << 30 : (int)rest;

	if (v == s->lowat)
		return;
	if (v > 1 && setsockopt(s->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0)
		set_lowat(ctx, s, v);
	else
		take_lowat_reset(ctx, s); /* a mark left from earlier would be too high */
}

/*
 * Bytes queued on the socket (below any low-water mark too)? A splice()
 * that stopped short of what it was asked with bytes still there stopped
 * at the pipe: it ran out of slots, one per payload fragment, so tiny
 * segments fill it early.
 */
static bool sock_queued(struct zc_sock *s)
{
	int inq = 0;

	return ioctl(s->fd, FIONREAD, &inq) == 0 && inq > 0;
}

/*
 * Anything left for a splice(): bytes, the end of the stream, an error?
 * One that moved nothing with something left found the pipe full: a full
 * pipe fails it with EAGAIN before the socket is looked at, even at the
 * end of the stream, where a pipe with room would have it return 0.
 */
static bool sock_pending(struct zc_sock *s)
{
	struct pollfd pfd = { .fd = s->fd, .events = POLLRDHUP };

	return sock_queued(s) || poll(&pfd, 1, 0) == 1; /* RDHUP, HUP or ERR */
}

/* The take of @s is over: report it with @res (0 or -errno). The event
 * names the cookie either way; after an error it is already freed. Until
 * zc_wait() hands the event out, the application has not seen the take
 * end: the cookie stays busy and the connection takes nothing new, so
 * what a call returns does not depend on how far the engine got. */
static void take_done(zc_ctx *ctx, struct zc_sock *s, struct zc_ck *ck, int res)
{
	zc_cookie h = ck->orphan ? 0 : handle_of(ck); /* freed by the app: unnamed */
	/* A failed take is freed with what it held: the application never
	 * gets those bytes, so they neither count nor move the offsets of
	 * what comes after (a later empty take names where it stopped). */
	size_t len = res ? 0 : ck->len;
	struct zc_event *ev;

	take_lowat_reset(ctx, s);
	s->flags &= ~SF_TAKING;
	s->take = 0;
	s->rx_off += len;
	s->st.bytes_taken += len;
	ctx->st.bytes_taken += len;
	ev = zc_emit_ev(ctx, ZC_EV_TAKEN, s);
	if (ck->orphan || res || !ev) {
		ck_free(ctx, ck);
	} else {
		ck->state = CK_TAKEN;
		ck->unseen = true;
		s->take = h;
	}
	if (!ev)
		return;
	s->flags |= SF_TAKEN_Q;
	ev->cookie = h;
	ev->bytes = len;
	ev->offset = s->rx_off - len;
	ev->res = res;
}

void zc_taken_delivered(zc_ctx *ctx, struct zc_sock *s, struct zc_event *ev)
{
	struct zc_ck *ck = zc_ck_get(ctx, s->take);

	s->flags &= ~SF_TAKEN_Q;
	s->take = 0;
	if (!ck || !ck->unseen)
		return;
	ck->unseen = false;
	if (ck->orphan) { /* freed before the application saw it */
		ck_free(ctx, ck);
		ev->cookie = 0;
	}
}

ZC_EXPORT int zc_take(zc_ctx *ctx, zc_handle conn, size_t len, zc_cookie *out)
{
	struct zc_sock *s = zc_sock_get(ctx, conn);
	struct zc_ck *ck;
	int err;

	if (!s || s->kind != SK_CONN)
		return -EBADF;
	if (!out || len == 0 || len > ZC_COOKIE_MAX)
		return -EINVAL;
	if (s->flags & SF_CONNECTING)
		return -ENOTCONN;
	if (s->flags & (SF_TAKING | SF_TAKEN_Q))
		return -EBUSY;
	err = ck_new(ctx, &ck);
	if (err)
		return err;
	ck->state = CK_TAKING;
	/* Counted from what the application has seen: bytes in flight to it
	 * (DATA events not yet delivered, a receive the engine is stopping)
	 * come before the cookie and shorten it. */
	ck->end = s->seen_off + len;
	ck->conn = conn;
	s->take = handle_of(ck);
	s->flags |= SF_TAKING;
	*out = s->take;
	if (s->flags & SF_RX_DONE)
		take_done(ctx, s, ck, 0); /* after the end: an empty cookie */
	else
		ctx->ops->take(ctx, s);
	return 0;
}

int zc_take_step(zc_ctx *ctx, struct zc_sock *s)
{
	struct zc_ck *ck = zc_ck_get(ctx, s->take);
	/* Something was seen left on the socket after a splice() stopped:
	 * if the next one moves nothing, the pipe is full. */
	bool pending = false;
	unsigned probes = 0; /* short splices followed up */

	if (!ck) { /* freed under us: cannot happen, zc_cookie_free orphans */
		take_lowat_reset(ctx, s);
		s->flags &= ~SF_TAKING;
		return 0;
	}
	if (!ck->started) { /* the engine's receive is done: where are we? */
		int cap = ck->cap ? ck->cap : fcntl(ck->pw, F_GETPIPE_SZ);

		ck->started = true;
		ck->want = ck->end > s->rx_off ? (size_t)(ck->end - s->rx_off) : 0;
		if (cap > 0 && (size_t)cap < ck->want)
			ck->want = (size_t)cap; /* the pipe holds no more */
	}
	while (ck->len < ck->want) {
		size_t rest = ck->want - ck->len;
		ssize_t n = splice(s->fd, NULL, ck->pw, NULL, rest,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);

		if (n > 0) {
			ck->len += (size_t)n;
			if ((size_t)n == rest)
				break;
			/* Short: the socket ran dry, or the pipe ran out of
			 * slots. Bytes left: splice() again to tell. On a
			 * busy connection new segments land meanwhile, and
			 * splicing on would chase them a call each: after
			 * two tries, or with nothing left, wait for the rest
			 * (one wake-up, one splice() per cookie; a pipe out
			 * of slots is found by zc_take_recheck()). */
			pending = sock_queued(s); /* a FIN alone: the next wake */
			if (pending && probes++ < 2)
				continue;
			take_lowat(ctx, s, rest - (size_t)n);
			return 1;
		} else if (n == 0) { /* end of stream: a short cookie, then EOF */
			take_done(ctx, s, ck, 0);
			if (!(s->flags & SF_RX_DONE))
				zc_emit(ctx, ZC_EV_EOF, s, 0, 0);
			return 0;
		} else if (errno == EAGAIN) {
			/* The socket is empty (wait), or the pipe is full:
			 * then the cookie is as full as it gets. A segment
			 * can land between the splice() and the check (on a
			 * busy connection it mostly does): what is seen left
			 * only now gets one more splice() before the pipe is
			 * called full. */
			if (ck->len && pending)
				break;
			if (ck->len && (pending = sock_pending(s)))
				continue;
			take_lowat(ctx, s, ck->want - ck->len);
			return 1;
		} else if (errno != EINTR) {
			int err = -errno;
			take_done(ctx, s, ck, err);
			zc_emit(ctx, ZC_EV_ERROR, s, err, 0);
			return 0;
		}
	}
	take_done(ctx, s, ck, 0);
	return 0;
}

#define TAKE_RECHECK_MS 200

/*
 * A take waiting with a low-water mark for the rest of its bytes may wait
 * for bytes its pipe has no slots left for (tiny segments, one fragment
 * each), and no wake-up comes until the stream ends. So every
 * TAKE_RECHECK_MS the takes with a mark and bytes queued are stepped
 * again: a splice() that then moves nothing finds the pipe full and ends
 * the take. A scan of the sockets, and only while some take has a mark.
 */
void zc_take_recheck(zc_ctx *ctx)
{
	uint64_t now = zc_now_ms();

	if (now < ctx->take_recheck_at)
		return;
	for (uint32_t i = 0; i < ctx->nsocks && ctx->marked_takes; i++) {
		struct zc_sock *s = ctx->socks[i];

		if (s->kind == SK_CONN && s->lowat && (s->flags & SF_TAKING) &&
		    sock_queued(s))
			ctx->ops->take(ctx, s);
	}
	ctx->take_recheck_at = now + TAKE_RECHECK_MS;
}

int zc_take_recheck_due(zc_ctx *ctx, int timeout_ms)
{
	uint64_t now = zc_now_ms();
	int left;

	if (now >= ctx->take_recheck_at)
		return 0; /* due: a run that does not wait, then the look */
	left = (int)(ctx->take_recheck_at - now);
	return timeout_ms < 0 || timeout_ms > left ? left : timeout_ms;
}

void zc_take_abort(zc_ctx *ctx, struct zc_sock *s)
{
	struct zc_ck *ck = zc_ck_get(ctx, s->take);

	set_lowat(ctx, s, 0); /* the socket is closing: no setsockopt() */
	s->flags &= ~(SF_TAKING | SF_TAKEN_Q);
	s->take = 0;
	if (ck)
		ck_free(ctx, ck);
}

/* --- peeking --- */

ZC_EXPORT ssize_t zc_cookie_peek(zc_ctx *ctx, zc_cookie c, void *buf, size_t len)
{
	struct zc_ck *ck = live(ctx, c);
	struct zc_cookies *cs;
	ssize_t n, got;

	if (!ck)
		return -EBADF;
	if (ck->state != CK_TAKEN || ck->unseen)
		return -EBUSY;
	if (!buf && len)
		return -EINVAL;
	if (len == 0 || ck->len == 0)
		return 0;
	cs = &ctx->ck;
	if (cs->peek[0] < 0 && pipe2(cs->peek, O_CLOEXEC | O_NONBLOCK))
		return -errno;
	if (len > PEEK_MAX)
		len = PEEK_MAX;
	/* tee() duplicates the cookie's first pages into the scratch pipe
	 * without consuming them; reading those is the one copy. */
	n = tee(ck->pr, cs->peek[1], len, SPLICE_F_NONBLOCK);
	if (n < 0)
		return -errno;
	got = read(cs->peek[0], buf, (size_t)n);
	if (got < 0)
		return -errno;
	ctx->st.bytes_copied += (uint64_t)got;
	return got;
}

/* --- writing --- */

/* The write of @ck is over: report it and let the cookie go. */
static void write_done(zc_ctx *ctx, struct zc_ck *ck, int res)
{
	struct zc_sock *s = zc_sock_get(ctx, ck->conn);
	struct zc_event *ev;

	if (!res && (ck->wflags & ZC_WRITE_DSYNC) && fdatasync(ck->fd))
		res = -errno;
	ctx->st.bytes_written += ck->done;
	if (s)
		s->st.bytes_written += ck->done;
	if (!ck->orphan) {
		/* Delivered even if the connection has been closed since. */
		ev = zc_emit_ev(ctx, ZC_EV_WRITTEN, s);
		if (ev) {
			ev->cookie = handle_of(ck);
			ev->bytes = ck->done;
			ev->res = res;
		}
	}
	ck_free(ctx, ck);
}

bool zc_write_progress(zc_ctx *ctx, struct zc_ck *ck, ssize_t res)
{
	if (res > 0)
		ck->done += (size_t)res;
	if (res > 0 && ck->done < ck->len)
		return true;
	write_done(ctx, ck, res < 0 ? (int)res : ck->done == ck->len ? 0 : -EIO);
	return false;
}

/* One blocking splice from the cookie to its target; a non-blocking
 * target socket is waited for with poll(). */
static ssize_t splice_out(struct zc_ck *ck, size_t len)
{
	loff_t off = ck->off + (loff_t)ck->done;

	for (;;) {
		ssize_t n = splice(ck->pr, NULL, ck->fd, ck->off >= 0 ? &off : NULL,
				   len, SPLICE_F_MOVE);
		struct pollfd pfd = { .fd = ck->fd, .events = POLLOUT };

		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			return n < 0 ? -errno : n;
		if (errno == EAGAIN)
			poll(&pfd, 1, -1);
	}
}

/* Read the block at @at of @fd into @buf; zeros past the end of file. */
static int read_block(int fd, char *buf, off_t at)
{
	ssize_t n = pread(fd, buf, DIRECT_ALIGN, at);

	if (n < 0)
		return -errno;
	memset(buf + n, 0, DIRECT_ALIGN - (size_t)n);
	return 0;
}

/*
 * O_DIRECT wants block-aligned memory, offsets and lengths. Bytes that do
 * not fit that (payload not page-aligned in the pipe, or an offset or
 * length off the block grid) are read into an aligned buffer (a counted
 * copy) between the file's existing head and tail blocks, written as
 * whole blocks, and the file is cut back to its exact size.
 */
static ssize_t bounce_out(zc_ctx *ctx, struct zc_ck *ck)
{
	size_t left = ck->len - ck->done, got = 0;
	off_t at = ck->off + (off_t)ck->done;
	off_t first = at & ~(off_t)(DIRECT_ALIGN - 1), end = at + (off_t)left;
	off_t last = (end + DIRECT_ALIGN - 1) & ~(off_t)(DIRECT_ALIGN - 1);
	size_t head = (size_t)(at - first), span = (size_t)(last - first);
	struct stat st;
	char *buf;
	ssize_t w;
	int err;

	if (!ctx->ck.bounce &&
	    posix_memalign((void **)&ctx->ck.bounce, DIRECT_ALIGN,
			   ZC_COOKIE_MAX + 2 * DIRECT_ALIGN))
		return -ENOMEM;
	buf = ctx->ck.bounce;
	if (fstat(ck->fd, &st))
		return -errno;
	if ((head && (err = read_block(ck->fd, buf, first))) ||
	    (end != last && (err = read_block(ck->fd, buf + span - DIRECT_ALIGN,
					      last - DIRECT_ALIGN))))
		return err;
	while (got < left) {
		ssize_t n = read(ck->pr, buf + head + got, left - got);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (size_t)n;
	}
	ctx->st.bytes_copied += got;
	w = pwrite(ck->fd, buf, span, first);
	if (w != (ssize_t)span)
		return w < 0 ? -errno : -EIO;
	if (last > st.st_size && ftruncate(ck->fd, end > st.st_size ? end : st.st_size))
		return -errno;
	return (ssize_t)got;
}

static void write_direct(zc_ctx *ctx, struct zc_ck *ck)
{
	size_t aligned = ck->off % DIRECT_ALIGN ? 0 :
			 ck->len & ~(size_t)(DIRECT_ALIGN - 1);
	ssize_t n = 0;

	/* The block-aligned part may go straight from the pipe... */
	while (ck->done < aligned) {
		n = splice_out(ck, aligned - ck->done);
		if (n <= 0)
			break;
		ck->done += (size_t)n;
		if (n % DIRECT_ALIGN)
			break; /* off the block grid from here on */
	}
	/* ...what is left, or what the kernel refused, through the buffer. */
	if (ck->done < ck->len && (n >= 0 || n == -EINVAL)) {
		n = bounce_out(ctx, ck);
		if (n > 0)
			ck->done += (size_t)n;
	}
	write_done(ctx, ck, n < 0 ? (int)n : ck->done == ck->len ? 0 : -EIO);
}

static void write_sync(zc_ctx *ctx, struct zc_ck *ck)
{
	ssize_t n = 1;

	while (ck->done < ck->len && (n = splice_out(ck, ck->len - ck->done)) > 0)
		ck->done += (size_t)n;
	write_done(ctx, ck, n < 0 ? (int)n : ck->done == ck->len ? 0 : -EIO);
}

static bool can_sync(int fd)
{
	struct stat st;

	return !fstat(fd, &st) && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

ZC_EXPORT int zc_cookie_write(zc_ctx *ctx, zc_cookie c, int fd, int64_t offset,
			      unsigned flags)
{
	struct zc_ck *ck = live(ctx, c);
	int fl;

	if (!ck)
		return -EBADF;
	if (ck->state != CK_TAKEN || ck->unseen)
		return -EBUSY;
	if (fd < 0 || offset < -1 || (flags & ~ZC_WRITE_DSYNC))
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	/* fdatasync() of a pipe or socket fails with EINVAL: say so now,
	 * not after the bytes have gone and cannot be had back. */
	if ((flags & ZC_WRITE_DSYNC) && !can_sync(fd))
		return -EINVAL;
	if ((fl & O_DIRECT) && offset < 0)
		return -EINVAL; /* block-aligned writes need an offset */
	ck->state = CK_WRITING;
	ck->fd = fd;
	ck->off = offset;
	ck->wflags = flags;
	ck->done = 0;
	if (ck->len == 0)
		write_done(ctx, ck, 0);
	else if (fl & O_DIRECT)
		write_direct(ctx, ck);
	else if (ctx->ops->cookie_write)
		ctx->ops->cookie_write(ctx, ck);
	else
		write_sync(ctx, ck);
	return 0;
}

ZC_EXPORT int zc_cookie_free(zc_ctx *ctx, zc_cookie c)
{
	struct zc_ck *ck = live(ctx, c);

	if (!ck)
		return -EBADF;
	if (ck->state == CK_TAKING || ck->state == CK_WRITING || ck->unseen)
		ck->orphan = true; /* freed when its take or write ends */
	else
		ck_free(ctx, ck);
	return 0;
}
