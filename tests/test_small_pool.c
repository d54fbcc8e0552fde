/*
 * test_small_pool.c - a pool of only four 16 KiB pieces and a consumer
 * slower than the sender, on a 256 MiB stream: the pool runs dry over and
 * over (the stall counter shows it), TCP flow control holds the sender
 * back, nothing is lost, and no more pieces are ever out than the pool
 * has.
 *
 * usage: test_small_pool ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "harness.h"

#define STREAM_BYTES (256 * MiB)
#define PIECE        (16 * KiB)
#define NPIECES      4

static const char *engine;
static uint64_t max_outstanding, steps, cycles;

static bool keep_all(struct h_recv *r, struct h_conn *c, const struct zc_piece *p)
{
	h_hold(r, c, p, 0);
	return true;
}

/*
 * After every wait: check the counters. Keep every piece until the whole
 * pool is held, look once more with nothing left to receive into (the
 * engine has to stop receiving: a stall), then give them all back, now
 * and then after a short nap.
 */
static void slow_release(struct h_recv *r, int nevents)
{
	static bool looked;
	struct zc_stats st;

	if (zc_ctx_stats(r->ctx, &st)) {
		h_failf(r, "zc_ctx_stats failed");
		return;
	}
	if (st.pieces_total != NPIECES || st.pieces_outstanding > st.pieces_total ||
	    st.pieces_outstanding < r->nheld)
		h_failf(r, "%" PRIu64 " pieces outstanding of %" PRIu64 ", %zu held",
			st.pieces_outstanding, st.pieces_total, r->nheld);
	if (st.pieces_outstanding > max_outstanding)
		max_outstanding = st.pieces_outstanding;
	steps++;
	if (r->nheld < NPIECES)
		return;
	if (!looked) {
		looked = true;
		r->wait_ms = H_POLL;
		return;
	}
	looked = false;
	r->wait_ms = 0;
	if (++cycles % 64 == 0)
		usleep(200);
	h_release_all(r);
}

static void test_four_piece_pool_slow_consumer(void **state)
{
	struct h_sender s = { .bytes = STREAM_BYTES, .chunk = 1 * MiB };
	struct zc_config cfg;
	struct zc_stats st;
	struct h_recv r;
	uint64_t rng = h_test_seed("stream seed");
	zc_ctx *ctx;
	zc_handle l;
	int port;

	zc_config_init(&cfg);
	cfg.piece_size = PIECE;
	cfg.pool_size = NPIECES * PIECE;
	assert_int_equal(h_ctx_create(engine, &cfg, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.piece_size = PIECE;
	r.keep = keep_all;
	r.tick = slow_release;
	s.port = (uint16_t)port;
	s.seed = h_rand(&rng);
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, 1, 160);
	h_release_all(&r);
	h_check_ctx_stats(&r);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	printf("# %" PRIu64 " stalls, %" PRIu64 " steps, %" PRIu64 " times the "
	       "whole pool held, at most %" PRIu64 " pieces out\n", st.stalls,
	       steps, cycles, max_outstanding);
	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.neof, 1);
	assert_int_equal(r.conns[0]->bytes, STREAM_BYTES);
	assert_false(r.conns[0]->bad);
	assert_int_equal(st.bytes_received, STREAM_BYTES);
	assert_int_equal(st.pieces_total, NPIECES);
	assert_true(st.stalls > 0);
	assert_true(max_outstanding <= NPIECES);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_four_piece_pool_slow_consumer),
	};

	engine = h_setup(argc, argv, true, 170);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
