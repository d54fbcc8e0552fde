/*
 * test_api_errors.c - every bad call gets an error, never a crash: bad
 * configurations, NULL arguments, bad address strings, handles that are
 * 0, made up or closed, and releases of pieces that are stale, forged or
 * another context's.
 *
 * usage: test_api_errors ENGINE
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static const char *engine;

/* @r is one of the errors listed (up to three; 0 ends the list). */
#define assert_err_in(r, ...) check_err_in(#r, (long)(r), (int[]){ __VA_ARGS__, 0 })

static void check_err_in(const char *call, long r, const int *errs)
{
	for (; *errs; errs++)
		if (r == *errs)
			return;
	fail_msg("%s = %ld (%s)", call, r, zc_strerror((int)r));
}

/* zc_ctx_create() with @cfg after the engine configuration is applied. */
static int create_with(struct zc_config *cfg, zc_ctx **out)
{
	struct zc_config c = *cfg;

	assert_int_equal(h_engine_config(engine, &c), 0);
	return zc_ctx_create(&c, out);
}

static zc_ctx *new_ctx(const struct zc_config *base)
{
	zc_ctx *ctx = NULL;

	assert_int_equal(h_ctx_create(engine, base, &ctx), 0);
	assert_non_null(ctx);
	return ctx;
}

static zc_handle listen_any(zc_ctx *ctx, int *port)
{
	zc_handle l = 0;

	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	assert_int_not_equal(l, 0);
	*port = zc_local_port(ctx, l);
	assert_true(*port > 0 && *port < 65536);
	return l;
}

/* Wait for the ACCEPT of a connection on @l. */
static zc_handle wait_accept(zc_ctx *ctx, zc_handle l)
{
	uint64_t deadline = h_deadline_ms(20000);
	struct zc_event ev;

	while (!h_expired(deadline)) {
		int n = h_wait(ctx, &ev, 1, 100);

		assert_true(n >= 0);
		if (n == 1 && ev.type == ZC_EV_ACCEPT) {
			assert_int_equal(ev.listener, l);
			assert_int_not_equal(ev.conn, 0);
			return ev.conn;
		}
		assert_true(n == 0 || ev.type != ZC_EV_DATA);
	}
	fail_msg("no connection accepted within 20 s");
	return 0;
}

static void test_create_refuses_bad_configs(void **state)
{
	char mem[4096];
	struct zc_region small = { mem, sizeof(mem) };
	struct zc_region nobase = { NULL, 1 * MiB };
	struct zc_config cfg;
	zc_ctx *ctx = NULL;

	zc_config_init(&cfg);
	assert_int_equal(create_with(&cfg, NULL), -EINVAL);
	assert_int_equal(zc_ctx_create(NULL, NULL), -EINVAL);

	zc_config_init(&cfg);
	cfg.piece_size = 0;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	cfg.piece_size = GiB + 1;
	cfg.pool_size = 2 * GiB;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	cfg.piece_size = SIZE_MAX;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);

	/* a pool too small for one piece */
	zc_config_init(&cfg);
	cfg.pool_size = cfg.piece_size - 1;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	cfg.pool_size = 0;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	zc_config_init(&cfg);
	cfg.regions = &small;
	cfg.nregions = 1; /* 4 KiB region, 64 KiB pieces */
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	cfg.nregions = 0;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);
	cfg.regions = &nobase;
	cfg.nregions = 1;
	assert_int_equal(create_with(&cfg, &ctx), -EINVAL);

	/* more than ZC_MAX_PIECES pieces */
	zc_config_init(&cfg);
	cfg.piece_size = 512;
	cfg.pool_size = 512 * (size_t)(ZC_MAX_PIECES + 1);
	assert_int_equal(create_with(&cfg, &ctx), -E2BIG);

	/* an engine that does not exist */
	zc_config_init(&cfg);
	cfg.engine = (enum zc_engine_kind)77;
	assert_int_equal(zc_ctx_create(&cfg, &ctx), -EINVAL);
	cfg.engine = (enum zc_engine_kind)-1;
	assert_int_equal(zc_ctx_create(&cfg, &ctx), -EINVAL);

	/* NULL: the defaults */
	ctx = NULL;
	assert_int_equal(zc_ctx_create(NULL, &ctx), 0);
	assert_non_null(ctx);
	assert_non_null(zc_engine_name(ctx));
	assert_non_null(zc_engine_features(ctx));
	zc_ctx_destroy(ctx);
	zc_ctx_destroy(NULL);
}

static void test_null_context_and_arguments(void **state)
{
	zc_ctx *ctx = new_ctx(NULL);
	struct zc_event evs[4];
	struct zc_stats st;
	struct zc_piece pc = { 0 };
	zc_handle h = 0, l;
	int port;
	char b = 0;

	assert_int_equal(zc_listen(NULL, "127.0.0.1:0", 0, &h), -EINVAL);
	assert_int_equal(zc_listen(ctx, NULL, 0, &h), -EINVAL);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, NULL), -EINVAL);
	assert_int_equal(zc_connect(NULL, "127.0.0.1:9", &h), -EINVAL);
	assert_int_equal(zc_connect(ctx, NULL, &h), -EINVAL);
	assert_int_equal(zc_connect(ctx, "127.0.0.1:9", NULL), -EINVAL);

	assert_int_equal(zc_wait(NULL, evs, 4, 0), -EINVAL);
	assert_int_equal(zc_wait(ctx, NULL, 4, 0), -EINVAL);
	assert_int_equal(zc_wait(ctx, evs, 0, 0), -EINVAL);
	assert_int_equal(zc_wait(ctx, NULL, 0, 100), -EINVAL);
	/* nothing to report: 0 at once, and 0 after a short time-out */
	assert_int_equal(h_wait(ctx, evs, 4, 0), 0);
	assert_int_equal(h_wait(ctx, evs, 4, 20), 0);

	assert_int_equal(zc_release(NULL, &pc), -EINVAL);
	assert_int_equal(zc_release(ctx, NULL), -EINVAL);
	assert_int_equal(zc_ctx_stats(NULL, &st), -EINVAL);
	assert_int_equal(zc_ctx_stats(ctx, NULL), -EINVAL);

	l = listen_any(ctx, &port);
	assert_err_in(zc_conn_stats(NULL, l, &st), -EINVAL, -EBADF);
	assert_err_in(zc_local_port(NULL, l), -EINVAL, -EBADF);
	assert_err_in(zc_set_user(NULL, l, &b), -EINVAL, -EBADF);
	assert_err_in(zc_close(NULL, l), -EINVAL, -EBADF);
	assert_err_in(zc_shutdown(NULL, l, SHUT_WR), -EINVAL, -EBADF);
	assert_err_in(zc_send(NULL, l, &b, 1), -EINVAL, -EBADF);
	/* the listener survived all of that */
	assert_int_equal(zc_local_port(ctx, l), port);
	assert_int_equal(zc_close(ctx, l), 0);
	zc_ctx_destroy(ctx);
}

static void test_bad_address_strings(void **state)
{
	static const char *const bad[] = {
		"nohost", "1.2.3.4:99999", "[::1", "", ":", "127.0.0.1:",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:12ab",
		"127.0.0.1: 80", "[::1]", "[::1]80", "[::1]:", "[]:80",
	};
	zc_ctx *ctx = new_ctx(NULL);
	zc_handle h;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err;

		h = 0;
		err = zc_listen(ctx, bad[i], 0, &h);
		if (err != -EINVAL)
			fail_msg("zc_listen(\"%s\") = %d (%s), not -EINVAL", bad[i],
				 err, zc_strerror(err));
		err = zc_connect(ctx, bad[i], &h);
		if (err != -EINVAL)
			fail_msg("zc_connect(\"%s\") = %d (%s), not -EINVAL", bad[i],
				 err, zc_strerror(err));
	}
	zc_ctx_destroy(ctx);
}

static void test_listen_on_a_busy_port(void **state)
{
	zc_ctx *ctx = new_ctx(NULL);
	zc_handle l, l2 = 0;
	char addr[32];
	int port;

	l = listen_any(ctx, &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_int_equal(zc_listen(ctx, addr, 0, &l2), -EADDRINUSE);
	assert_int_equal(zc_close(ctx, l), 0);
	zc_ctx_destroy(ctx);
}

/* Every call that takes a handle refuses @h with -EBADF. */
static void assert_handle_refused(zc_ctx *ctx, zc_handle h)
{
	struct zc_stats st;
	char b = 0;

	assert_int_equal(zc_send(ctx, h, &b, 1), -EBADF);
	assert_int_equal(zc_shutdown(ctx, h, SHUT_WR), -EBADF);
	assert_int_equal(zc_set_user(ctx, h, &b), -EBADF);
	assert_int_equal(zc_local_port(ctx, h), -EBADF);
	assert_int_equal(zc_conn_stats(ctx, h, &st), -EBADF);
	assert_int_equal(zc_close(ctx, h), -EBADF);
}

static void test_bad_handles_refused(void **state)
{
	zc_ctx *ctx = new_ctx(NULL);
	zc_handle l, c1, c2;
	uint64_t rng = h_test_seed("random handles");
	struct zc_stats st;
	int port, fd1, fd2;
	char b = 0;

	l = listen_any(ctx, &port);
	assert_handle_refused(ctx, 0);
	for (int i = 0; i < 64; i++) {
		zc_handle h = h_rand(&rng);

		if (h != l)
			assert_handle_refused(ctx, h);
	}
	assert_handle_refused(ctx, l + 1);
	assert_handle_refused(ctx, l ^ (1ull << 63));
	assert_handle_refused(ctx, ~0ull);

	/* a listener is no connection */
	assert_err_in(zc_send(ctx, l, &b, 1), -EBADF, -ENOTCONN, -EINVAL);
	assert_err_in(zc_shutdown(ctx, l, SHUT_RDWR), -EBADF, -ENOTCONN, -EINVAL);
	assert_err_in(zc_conn_stats(ctx, l, &st), -EBADF, -EINVAL);

	/* a closed connection, also after its slot is taken again */
	fd1 = h_peer_connect(AF_INET, (uint16_t)port);
	assert_true(fd1 >= 0);
	c1 = wait_accept(ctx, l);
	assert_int_equal(zc_local_port(ctx, c1), port);
	assert_int_equal(zc_conn_stats(ctx, c1, &st), 0);
	assert_int_equal(zc_shutdown(ctx, c1, 12345), -EINVAL);
	assert_int_equal(zc_shutdown(ctx, c1, -1), -EINVAL);
	assert_int_equal(zc_close(ctx, c1), 0);
	assert_handle_refused(ctx, c1);

	fd2 = h_peer_connect(AF_INET, (uint16_t)port);
	assert_true(fd2 >= 0);
	c2 = wait_accept(ctx, l);
	assert_int_not_equal(c2, c1);
	assert_handle_refused(ctx, c1);
	assert_int_equal(zc_local_port(ctx, c2), port);
	assert_int_equal(zc_set_user(ctx, c2, &b), 0);
	assert_int_equal(zc_conn_stats(ctx, c2, &st), 0);
	assert_int_equal(zc_close(ctx, c2), 0);
	assert_handle_refused(ctx, c2);

	/* a closed listener */
	assert_int_equal(zc_close(ctx, l), 0);
	assert_handle_refused(ctx, l);
	close(fd1);
	close(fd2);
	zc_ctx_destroy(ctx);
}

static void test_strerror_names_everything(void **state)
{
	static const int vals[] = {
		0, -EINVAL, EINVAL, -EBADF, -EALREADY, -E2BIG, -ENOSYS,
		-ECONNRESET, -ECONNREFUSED, -EAGAIN, -4095, -4096, -99999, 99999,
		INT_MAX, INT_MIN + 1, -1, 1,
	};

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		const char *s = zc_strerror(vals[i]);

		assert_non_null(s);
		assert_true(strlen(s) > 0);
	}
	assert_string_not_equal(zc_strerror(-EINVAL), zc_strerror(-EBADF));
	assert_string_equal(zc_strerror(-EINVAL), zc_strerror(EINVAL));
}

/* Last in the list: a failure here ends the program under UBSan. */
static void test_strerror_of_int_min(void **state)
{
	const char *s = zc_strerror(INT_MIN);

	assert_non_null(s);
	assert_true(strlen(s) > 0);
}

/*
 * A context that receives a stream of small pieces: the listener, the
 * connection and a sender that writes @bytes.
 */
struct rx {
	zc_ctx *ctx;
	zc_handle l, conn;
	struct h_sender s;
};

static void rx_start(struct rx *rx, uint64_t bytes)
{
	struct zc_config cfg;
	int port;

	zc_config_init(&cfg);
	cfg.piece_size = 4 * KiB;
	cfg.pool_size = 256 * KiB;
	memset(rx, 0, sizeof(*rx));
	rx->ctx = new_ctx(&cfg);
	rx->l = listen_any(rx->ctx, &port);
	rx->s.port = (uint16_t)port;
	rx->s.bytes = bytes;
	rx->s.seed = 42;
	rx->s.chunk = 64 * KiB;
	assert_int_equal(h_sender_start(&rx->s), 0);
	rx->conn = wait_accept(rx->ctx, rx->l);
}

/* A released piece to look out for: rx_pieces() checks every piece it
 * sees at the same address, the ones it releases at once included. */
static const struct zc_piece *watch;
static bool watch_reused;

static void check_watch(struct rx *rx, const struct zc_piece *p)
{
	if (!watch || p->data != watch->data)
		return;
	watch_reused = true;
	assert_int_not_equal(p->ref, watch->ref);
	assert_int_equal(zc_release(rx->ctx, watch), -EALREADY);
}

/* Keep the pieces of the next DATA events until @want are held. */
static unsigned rx_pieces(struct rx *rx, struct zc_piece *out, unsigned want)
{
	uint64_t deadline = h_deadline_ms(20000);
	struct zc_event evs[8];
	unsigned got = 0;

	while (got < want && !h_expired(deadline)) {
		int n = h_wait(rx->ctx, evs, 8, 100);

		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (evs[i].type != ZC_EV_DATA)
				continue;
			for (unsigned k = 0; k < evs[i].npieces; k++) {
				check_watch(rx, &evs[i].pieces[k]);
				if (got < want)
					out[got++] = evs[i].pieces[k];
				else
					assert_int_equal(zc_release(rx->ctx, &evs[i].pieces[k]), 0);
			}
		}
	}
	assert_int_equal(got, want);
	return got;
}

static void rx_stop(struct rx *rx)
{
	zc_ctx_destroy(rx->ctx); /* the sender then fails its writes and ends */
	h_sender_join(&rx->s);
}

/* Pieces outstanding in @ctx now. */
static uint64_t outstanding(zc_ctx *ctx)
{
	struct zc_stats st;

	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	return st.pieces_outstanding;
}

static void test_bad_releases_refused(void **state)
{
	struct rx rx, other;
	struct zc_piece p[6], f;
	uint64_t base;
	char local[64];

	rx_start(&rx, 64 * MiB);
	rx_pieces(&rx, p, 6);
	/* (the count changes only in zc_wait() and zc_release()) */
	base = outstanding(rx.ctx);
	assert_true(base >= 6);

	/* twice */
	assert_int_equal(zc_release(rx.ctx, &p[0]), 0);
	assert_int_equal(zc_release(rx.ctx, &p[0]), -EALREADY);
	assert_int_equal(outstanding(rx.ctx), base - 1);

	/* forged, from a live piece */
	f = p[1];
	f.data = (const char *)f.data + 1;
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = p[1];
	f.ref ^= 0xffffffffull;
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = p[1];
	f.ref += 1ull << 40;
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = p[1];
	f.len = 1ull << 40;
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = (struct zc_piece){ local, sizeof(local), 1 };
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = (struct zc_piece){ NULL, 0, 0 };
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	f = (struct zc_piece){ NULL, 0, ~0ull };
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	assert_int_equal(outstanding(rx.ctx), base - 1);

	/* another context's piece, both ways */
	rx_start(&other, 64 * MiB);
	rx_pieces(&other, &f, 1);
	assert_int_equal(zc_release(rx.ctx, &f), -EINVAL);
	assert_int_equal(zc_release(other.ctx, &p[2]), -EINVAL);
	assert_int_equal(zc_release(other.ctx, &f), 0);
	assert_int_equal(zc_release(other.ctx, &f), -EALREADY);
	rx_stop(&other);

	/* none of it disturbed the live pieces */
	assert_int_equal(outstanding(rx.ctx), base - 1);
	assert_int_equal(zc_release(rx.ctx, &p[1]), 0);
	assert_int_equal(zc_release(rx.ctx, &p[2]), 0);

	/* after the connection is closed, its pieces may still be released */
	assert_int_equal(zc_close(rx.ctx, rx.conn), 0);
	assert_int_equal(zc_release(rx.ctx, &p[3]), 0);
	assert_int_equal(zc_release(rx.ctx, &p[3]), -EALREADY);
	assert_int_equal(outstanding(rx.ctx), base - 4);

	/* p[4] and p[5] are still held when the context goes */
	rx_stop(&rx);
}

static void test_stale_piece_after_reuse(void **state)
{
	struct rx rx;
	struct zc_piece first, later[32];

	/* a pool of 64 pieces: released pieces come round again soon. The
	 * piece may come back among those rx_pieces() releases at once (it
	 * does so every round, depending on how far the kernel ran ahead),
	 * so every piece is checked there, not only the 32 kept. */
	rx_start(&rx, 64 * MiB);
	rx_pieces(&rx, &first, 1);
	assert_int_equal(zc_release(rx.ctx, &first), 0);
	watch = &first;
	watch_reused = false;
	for (int round = 0; round < 16 && !watch_reused; round++) {
		rx_pieces(&rx, later, 32);
		for (int i = 0; i < 32; i++)
			assert_int_equal(zc_release(rx.ctx, &later[i]), 0);
	}
	watch = NULL;
	assert_true(watch_reused);
	rx_stop(&rx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_refuses_bad_configs),
		cmocka_unit_test(test_null_context_and_arguments),
		cmocka_unit_test(test_bad_address_strings),
		cmocka_unit_test(test_listen_on_a_busy_port),
		cmocka_unit_test(test_bad_handles_refused),
		cmocka_unit_test(test_strerror_names_everything),
		cmocka_unit_test(test_bad_releases_refused),
		cmocka_unit_test(test_stale_piece_after_reuse),
		cmocka_unit_test(test_strerror_of_int_min),
	};

	engine = h_setup(argc, argv, true, 50);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
