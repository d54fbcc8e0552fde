/*
 * test_churn.c - tens of thousands of connections opened and closed
 * against one context, and nothing left behind: at the end its counters
 * (connections, pieces outstanding, cookies alive), the process's open
 * descriptors and its resident memory are back at their start values.
 *
 * Every cycle is one connection, ended in one of many ways:
 *  - a client thread with plain sockets connects to listener 1 and, by
 *    turns, sends 4 KiB of pattern and closes, closes at once, sends and
 *    resets (RST), or half-closes and waits for zcnet to close;
 *  - zcnet, by turns, receives and verifies the stream, closes or aborts
 *    the connection as soon as it is accepted, or takes the first 1 KiB
 *    into a cookie (peeked, verified, freed) before receiving the rest;
 *  - a second context in the same thread opens connections with
 *    zc_connect() to listener 2 and closes each once connected.
 * A received stream must be whole (0 or 4 KiB) unless it ended in a reset.
 *
 * Runs up to CYCLES cycles or TIME_LIMIT_MS, whichever comes first, after
 * WARMUP cycles that let every cache (socket slots, cookie pipes, event
 * arrays, allocator) reach its size; the start values are taken then, with
 * no connection open.
 *
 * usage: test_churn ENGINE
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "harness.h"

#ifdef __SANITIZE_ADDRESS__
void __sanitizer_purge_allocator(void); /* sanitizer/allocator_interface.h */
#endif

#define CYCLES        50000
#define TIME_LIMIT_MS 20000
#define MIN_CYCLES    2000    /* fewer in the time limit is a failure */
#define WARMUP        1000
#define MAX_INFLIGHT  32      /* client connections not yet ended */
#define B_INFLIGHT    4       /* zc_connect() connections not yet ended */
#define MAX_CONNS     256     /* server-side connection records */
#define CONN_BYTES    (4 * KiB)
#define TAKE_BYTES    1024
#define RSS_SLACK     (2 * MiB)
#define POOL_BYTES    (2 * MiB)
#define PIECE_BYTES   (16 * KiB)

static const char *engine;

/* ------------------------------------------------------------------ */
/* The process                                                         */
/* ------------------------------------------------------------------ */

/* The process's open descriptors, by kind. */
struct fds {
	int total, pipes, sockets, other;
};

static struct fds open_fds(void)
{
	struct fds n = { 0 };
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[300], target[128];

	if (!d)
		return (struct fds){ -1, -1, -1, -1 };
	while ((e = readdir(d))) {
		ssize_t len;

		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = 0;
		n.total++;
		if (!strncmp(target, "pipe:", 5))
			n.pipes++;
		else if (!strncmp(target, "socket:", 7))
			n.sockets++;
		else
			n.other++;
	}
	closedir(d);
	return n;
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f;

#ifdef __SANITIZE_ADDRESS__
	/* AddressSanitizer keeps freed memory in a quarantine of up to
	 * 256 MiB, resident, to catch use after free; empty it first, or
	 * every malloc()/free() pair (getaddrinfo() in zc_connect(), say)
	 * would look like growth. */
	__sanitizer_purge_allocator();
#endif
	f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------ */
/* The client thread: plain sockets                                    */
/* ------------------------------------------------------------------ */

struct client {
	uint16_t port;
	pthread_t tid;
	unsigned opened;        /* atomic: connections made */
	const unsigned *ended;  /* atomic: of those, ended on the server */
	int pause;              /* atomic: stop opening new ones */
	int stop;               /* atomic */
	int paused;             /* atomic: no connection of its own open */
	int err;
	char msg[160];
	unsigned write_errors;  /* writes refused: the server closed first */
	unsigned connect_resets; /* connect() saw the server's reset */
};

static void client_fail(struct client *c, int err, const char *what, unsigned i)
{
	if (!c->err) {
		c->err = err ? err : -EIO;
		snprintf(c->msg, sizeof(c->msg), "cycle %u: %.60s: %.60s", i, what,
			 strerror(-c->err));
	}
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	char buf[CONN_BYTES];

	for (unsigned i = 0; !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE); i++) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		unsigned mode = i % 8;
		int fd;

		while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) &&
		       (__atomic_load_n(&c->pause, __ATOMIC_ACQUIRE) ||
			__atomic_load_n(&c->opened, __ATOMIC_ACQUIRE) -
			__atomic_load_n(c->ended, __ATOMIC_ACQUIRE) >= MAX_INFLIGHT)) {
			__atomic_store_n(&c->paused, 1, __ATOMIC_RELEASE);
			usleep(100);
		}
		__atomic_store_n(&c->paused, 0, __ATOMIC_RELEASE);
		if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
			break;
		fd = h_peer_connect(AF_INET, c->port);
		if (fd == -ECONNRESET) {
			/* The handshake completed and zcnet closed or aborted
			 * the connection at accept before this thread returned
			 * from connect(), which then reports the reset: a
			 * cycle like any other, ended on both sides. */
			c->connect_resets++;
			__atomic_add_fetch(&c->opened, 1, __ATOMIC_ACQ_REL);
			continue;
		}
		if (fd < 0) {
			client_fail(c, fd, "connect", i);
			break;
		}
		{
			struct timeval tv = { .tv_sec = 10 };

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
		__atomic_add_fetch(&c->opened, 1, __ATOMIC_ACQ_REL);
		if (mode != 4) { /* 4: close at once, nothing sent */
			pat_fill(0x5eed0000ull + i, 0, buf, sizeof(buf));
			if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf))
				c->write_errors++;
		}
		if (mode == 5) { /* reset */
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		} else if (mode == 6) { /* half-close, wait for the server's end */
			shutdown(fd, SHUT_WR);
			for (;;) {
				ssize_t n = recv(fd, buf, sizeof(buf), 0);

				if (n < 0 && errno == EINTR)
					continue;
				if (n > 0) {
					client_fail(c, -EPROTO, "the server sent data", i);
					break;
				}
				if (n < 0 && errno != ECONNRESET) /* a time-out */
					client_fail(c, -errno, "waiting for the server's close", i);
				break;
			}
		}
		close(fd);
	}
	__atomic_store_n(&c->paused, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The server side                                                     */
/* ------------------------------------------------------------------ */

struct sconn {
	zc_handle h;
	struct pat_verifier v;
	uint64_t bytes;         /* next expected stream offset */
	zc_cookie ck;           /* a take in flight */
	bool in_use, from_b;
};

struct run {
	zc_ctx *a, *b;
	zc_handle l1, l2;
	struct client cl;
	struct sconn conns[MAX_CONNS];
	unsigned nfree, free_idx[MAX_CONNS];
	unsigned ended_client;  /* atomic: listener-1 connections ended */
	unsigned ended_b, opened_b, pending_b; /* zc_connect() side */
	unsigned accepted, k1;
	unsigned closed_at_accept, aborted_at_accept, takes, takes_short, takes_failed;
	unsigned eofs, resets, empty, whole;
	bool take_busy;         /* one take at a time: bounded pipe cache */
	char addr2[32];
	struct h_recv r;        /* only for h_failf() and its record */
};

static struct sconn *sconn_get(struct run *R)
{
	struct sconn *c;

	if (!R->nfree) {
		h_failf(&R->r, "more than %u connections open at once", MAX_CONNS);
		return NULL;
	}
	c = &R->conns[R->free_idx[--R->nfree]];
	memset(c, 0, sizeof(*c));
	pat_verifier_init(&c->v);
	c->in_use = true;
	return c;
}

static void sconn_end(struct run *R, struct sconn *c, bool close_it)
{
	int err;

	if (c->ck) { /* ended with its take in flight: freed when it ends */
		err = zc_cookie_free(R->a, c->ck);
		if (err)
			h_failf(&R->r, "zc_cookie_free of a pending take: %s",
				zc_strerror(err));
		R->take_busy = false;
	}
	if (close_it && (err = zc_close(R->a, c->h)))
		h_failf(&R->r, "zc_close: %s", zc_strerror(err));
	if (c->from_b)
		R->ended_b++;
	else
		__atomic_add_fetch(&R->ended_client, 1, __ATOMIC_ACQ_REL);
	c->in_use = false;
	R->free_idx[R->nfree++] = (unsigned)(c - R->conns);
}

static void verify(struct run *R, struct sconn *c, const void *data, size_t len)
{
	uint64_t bad;

	if (pat_verify(&c->v, data, len, &bad))
		h_failf(&R->r, "connection %#" PRIx64 ": pattern mismatch at %" PRIu64,
			c->h, bad);
	c->bytes += len;
}

static void on_accept(struct run *R, const struct zc_event *ev)
{
	struct sconn *c = sconn_get(R);
	bool b = ev->listener == R->l2;
	unsigned k = b ? 0 : R->k1++;
	int err;

	R->accepted++;
	if (!c)
		return;
	c->h = ev->conn;
	c->from_b = b;
	if ((err = zc_set_user(R->a, c->h, c)))
		h_failf(&R->r, "zc_set_user: %s", zc_strerror(err));
	if (b)
		return;
	/* moduli prime to the client's 8 turns: every pairing occurs */
	if (k % 13 == 5) {
		R->closed_at_accept++;
		sconn_end(R, c, true);
	} else if (k % 17 == 9) {
		R->aborted_at_accept++;
		if ((err = zc_abort(R->a, c->h)))
			h_failf(&R->r, "zc_abort: %s", zc_strerror(err));
		sconn_end(R, c, false);
	} else if (k % 7 == 3 && !R->take_busy) {
		err = zc_take(R->a, c->h, TAKE_BYTES, &c->ck);
		if (err) {
			h_failf(&R->r, "zc_take: %s", zc_strerror(err));
			return;
		}
		R->take_busy = true;
		R->takes++;
	}
}

static void on_taken(struct run *R, struct sconn *c, const struct zc_event *ev)
{
	char buf[TAKE_BYTES];
	ssize_t n;

	/* a failed take still names its cookie (zcnet has freed it) */
	if (ev->cookie != c->ck) {
		h_failf(&R->r, "TAKEN (res %d) for cookie %#" PRIx64 ", not %#" PRIx64,
			ev->res, ev->cookie, c->ck);
		return;
	}
	c->ck = 0;
	R->take_busy = false;
	if (ev->res < 0) {
		if (ev->res != -ECONNRESET)
			h_failf(&R->r, "take failed: %s", zc_strerror(ev->res));
		R->takes_failed++;
		return; /* the connection's end follows */
	}
	/* the engine may have received bytes before the take: they come
	 * first, as DATA; the take starts right after them */
	if (ev->bytes > TAKE_BYTES || ev->offset != c->bytes) {
		h_failf(&R->r, "TAKEN of %zu bytes at %" PRIu64 ", expected at most %u "
			"at %" PRIu64, ev->bytes, ev->offset, TAKE_BYTES, c->bytes);
		return;
	}
	if (ev->bytes < TAKE_BYTES)
		R->takes_short++; /* the stream ended first */
	if (ev->bytes) {
		n = zc_cookie_peek(R->a, ev->cookie, buf, sizeof(buf));
		if (n != (ssize_t)ev->bytes)
			h_failf(&R->r, "zc_cookie_peek: %zd of %zu bytes", n, ev->bytes);
		else
			verify(R, c, buf, (size_t)n);
	}
	if ((n = zc_cookie_free(R->a, ev->cookie)))
		h_failf(&R->r, "zc_cookie_free: %s", zc_strerror((int)n));
}

static void on_a_event(struct run *R, const struct zc_event *ev)
{
	struct sconn *c = ev->user;
	int err;

	if (ev->type == ZC_EV_ACCEPT) {
		on_accept(R, ev);
		return;
	}
	if (!c || c < R->conns || c >= R->conns + MAX_CONNS || !c->in_use ||
	    c->h != ev->conn) {
		h_failf(&R->r, "event %d for an unknown connection %#" PRIx64,
			(int)ev->type, ev->conn);
		return;
	}
	switch (ev->type) {
	case ZC_EV_DATA:
		if (ev->offset != c->bytes)
			h_failf(&R->r, "DATA at %" PRIu64 ", expected %" PRIu64,
				ev->offset, c->bytes);
		for (unsigned i = 0; i < ev->npieces; i++) {
			verify(R, c, ev->pieces[i].data, ev->pieces[i].len);
			if ((err = zc_release(R->a, &ev->pieces[i])))
				h_failf(&R->r, "zc_release: %s", zc_strerror(err));
		}
		break;
	case ZC_EV_TAKEN:
		on_taken(R, c, ev);
		break;
	case ZC_EV_EOF:
		R->eofs++;
		if (c->bytes == 0)
			R->empty++;
		else if (c->bytes == CONN_BYTES)
			R->whole++;
		else
			h_failf(&R->r, "connection %#" PRIx64 " ended cleanly after %"
				PRIu64 " bytes: a stream was cut", c->h, c->bytes);
		if (c->from_b && c->bytes)
			h_failf(&R->r, "a zc_connect() connection delivered data");
		sconn_end(R, c, true);
		break;
	case ZC_EV_ERROR:
		if (ev->res != -ECONNRESET)
			h_failf(&R->r, "connection %#" PRIx64 " ended with %s", c->h,
				zc_strerror(ev->res));
		R->resets++;
		sconn_end(R, c, true);
		break;
	default:
		h_failf(&R->r, "unexpected event %d on the listening context",
			(int)ev->type);
	}
}

static void on_b_event(struct run *R, const struct zc_event *ev)
{
	int err;

	if (ev->type != ZC_EV_CONNECTED) {
		h_failf(&R->r, "zc_connect() side: event %d (res %d)", (int)ev->type,
			ev->res);
		return;
	}
	if ((err = zc_close(R->b, ev->conn)))
		h_failf(&R->r, "zc_close of a zc_connect() connection: %s",
			zc_strerror(err));
	R->pending_b--;
}

/* One round: the listening context, then the connecting one. */
static void step(struct run *R, bool open_b)
{
	struct zc_event evs[64];
	zc_handle h;
	int n, err;

	while (open_b && R->pending_b < B_INFLIGHT &&
	       R->opened_b - R->ended_b < B_INFLIGHT) {
		if ((err = zc_connect(R->b, R->addr2, &h))) {
			h_failf(&R->r, "zc_connect: %s", zc_strerror(err));
			break;
		}
		R->opened_b++;
		R->pending_b++;
	}
	n = h_wait(R->a, evs, 64, 1);
	if (n < 0)
		h_failf(&R->r, "zc_wait: %s", zc_strerror(n));
	for (int i = 0; i < n; i++)
		on_a_event(R, &evs[i]);
	n = h_wait(R->b, evs, 64, 0);
	if (n < 0)
		h_failf(&R->r, "zc_wait (connecting context): %s", zc_strerror(n));
	for (int i = 0; i < n; i++)
		on_b_event(R, &evs[i]);
}

static unsigned cycles(struct run *R)
{
	return __atomic_load_n(&R->ended_client, __ATOMIC_ACQUIRE) + R->ended_b;
}

/* Pause both sides and run until every connection made has ended. */
static void quiesce(struct run *R, unsigned timeout_s)
{
	uint64_t dl = h_deadline_ms(timeout_s * 1000ull);

	__atomic_store_n(&R->cl.pause, 1, __ATOMIC_RELEASE);
	while (!R->r.nfail && !h_expired(dl)) {
		bool client_idle = __atomic_load_n(&R->cl.paused, __ATOMIC_ACQUIRE);

		if (client_idle && R->pending_b == 0 && R->ended_b == R->opened_b &&
		    __atomic_load_n(&R->ended_client, __ATOMIC_ACQUIRE) ==
		    __atomic_load_n(&R->cl.opened, __ATOMIC_ACQUIRE))
			return;
		step(R, false);
	}
	if (!R->r.nfail)
		h_failf(&R->r, "connections still open after %u s: client %u/%u, "
			"zc_connect %u/%u", timeout_s,
			__atomic_load_n(&R->ended_client, __ATOMIC_ACQUIRE),
			__atomic_load_n(&R->cl.opened, __ATOMIC_ACQUIRE), R->ended_b,
			R->opened_b);
}

static void check_idle(struct run *R, const char *when)
{
	struct zc_stats sa, sb;

	zc_ctx_stats(R->a, &sa);
	zc_ctx_stats(R->b, &sb);
	if (sa.connections || sa.pieces_outstanding || sa.cookies_alive ||
	    sb.connections || sb.pieces_outstanding)
		h_failf(&R->r, "%s: connections %" PRIu64 " pieces outstanding %"
			PRIu64 " cookies alive %" PRIu64 " (connecting context: %"
			PRIu64 " connections)", when, sa.connections,
			sa.pieces_outstanding, sa.cookies_alive, sb.connections);
	if (sa.accepted != R->accepted)
		h_failf(&R->r, "%s: accepted %" PRIu64 ", saw %u", when, sa.accepted,
			R->accepted);
}

static void test_churn_leaves_nothing_behind(void **state)
{
	static struct run R; /* large; zeroed */
	static char pool[POOL_BYTES] __attribute__((aligned(4096)));
	struct zc_region region = { pool, sizeof(pool) };
	struct zc_config cfg;
	struct fds fd0, fd_warm, fd_end, fd_after;
	uint64_t rss_warm, rss_end, t0, t1;
	unsigned c0, c1;
	int port1, port2;

	memset(&R, 0, sizeof(R));
	memset(pool, 0, sizeof(pool)); /* resident from the start */
	for (unsigned i = 0; i < MAX_CONNS; i++)
		R.free_idx[R.nfree++] = MAX_CONNS - 1 - i;
	fd0 = open_fds();

	zc_config_init(&cfg);
	cfg.piece_size = PIECE_BYTES;
	cfg.regions = &region;
	cfg.nregions = 1;
	assert_int_equal(h_ctx_create(engine, &cfg, &R.a), 0);
	assert_int_equal(h_ctx_create(engine, NULL, &R.b), 0);
	h_recv_init(&R.r, R.a);
	assert_int_equal(zc_listen(R.a, "127.0.0.1:0", 0, &R.l1), 0);
	assert_int_equal(zc_listen(R.a, "127.0.0.1:0", 0, &R.l2), 0);
	port1 = zc_local_port(R.a, R.l1);
	port2 = zc_local_port(R.a, R.l2);
	assert_true(port1 > 0 && port2 > 0);
	snprintf(R.addr2, sizeof(R.addr2), "127.0.0.1:%d", port2);

	R.cl.port = (uint16_t)port1;
	R.cl.ended = &R.ended_client;
	assert_int_equal(pthread_create(&R.cl.tid, NULL, client_main, &R.cl), 0);

	/* warm up, then take the start values with nothing open */
	while (!R.r.nfail && !R.cl.err && cycles(&R) < WARMUP)
		step(&R, true);
	quiesce(&R, 30);
	check_idle(&R, "after the warm-up");
	fd_warm = open_fds();
	rss_warm = rss_bytes();
	c0 = cycles(&R);
	t0 = h_now_ms();
	__atomic_store_n(&R.cl.pause, 0, __ATOMIC_RELEASE);

	while (!R.r.nfail && !R.cl.err && cycles(&R) < c0 + CYCLES &&
	       h_now_ms() - t0 < TIME_LIMIT_MS)
		step(&R, true);
	quiesce(&R, 30);
	t1 = h_now_ms();
	c1 = cycles(&R);
	__atomic_store_n(&R.cl.stop, 1, __ATOMIC_RELEASE);
	pthread_join(R.cl.tid, NULL);
	check_idle(&R, "at the end");
	fd_end = open_fds();
	rss_end = rss_bytes();

	printf("# %u cycles in %.1f s: %.0f/s (%u by zc_connect); accepted %u, "
	       "closed at accept %u, aborted %u, takes %u (%u short, %u reset), EOF %u "
	       "(whole %u, empty %u), resets %u, client write errors %u, connects reset %u\n",
	       c1 - c0, (t1 - t0) / 1e3, (c1 - c0) * 1e3 / (double)(t1 - t0 ? t1 - t0 : 1),
	       R.ended_b, R.accepted, R.closed_at_accept, R.aborted_at_accept,
	       R.takes, R.takes_short, R.takes_failed, R.eofs, R.whole, R.empty, R.resets,
	       R.cl.write_errors, R.cl.connect_resets);
	printf("# open fds (sockets, pipes, other): %d (%d, %d, %d) before, "
	       "%d (%d, %d, %d) after the warm-up, %d (%d, %d, %d) at the end\n",
	       fd0.total, fd0.sockets, fd0.pipes, fd0.other,
	       fd_warm.total, fd_warm.sockets, fd_warm.pipes, fd_warm.other,
	       fd_end.total, fd_end.sockets, fd_end.pipes, fd_end.other);
	printf("# RSS %.1f MiB after the warm-up, %.1f MiB at the end\n",
	       rss_warm / (double)MiB, rss_end / (double)MiB);

	zc_ctx_destroy(R.b);
	zc_ctx_destroy(R.a);
	fd_after = open_fds();
	printf("# open fds after both contexts are destroyed: %d\n", fd_after.total);

	if (R.cl.err)
		fail_msg("client: %s", R.cl.msg);
	h_assert_recv_ok(&R.r);
	assert_true(c1 - c0 >= MIN_CYCLES);
	assert_true(R.whole > 0 && R.empty > 0 && R.resets > 0 && R.takes > 0);
	assert_true(R.closed_at_accept > 0 && R.aborted_at_accept > 0 && R.ended_b > 0);
	assert_int_equal(fd_end.sockets, fd_warm.sockets);
	assert_int_equal(fd_end.other, fd_warm.other);
	/* zcnet keeps the empty pipe of a freed cookie for the next take,
	 * and closes one that still holds bytes: with one take at a time,
	 * 0 or 1 pipe (2 descriptors) is kept, whichever came last */
	assert_true(fd_end.pipes <= fd_warm.pipes + 2 && fd_end.pipes + 2 >= fd_warm.pipes);
	assert_int_equal(fd_after.total, fd0.total);
	/* under valgrind, RSS is mostly valgrind's (its own leak check
	 * stands in) */
	if (!strstr(getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "", "vgpreload"))
		assert_true(rss_end <= rss_warm + RSS_SLACK);
	h_recv_fini(&R.r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_churn_leaves_nothing_behind),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
