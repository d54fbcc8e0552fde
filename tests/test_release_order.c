/*
 * test_release_order.c - pieces held for random times and released in a
 * random order, on four interleaved streams, in a pool made of two
 * regions the test lends (one of them oddly aligned). The streams are
 * verified at delivery; every held piece is checked to be unchanged when
 * it is released, and every piece lies on a piece boundary of a region.
 *
 * usage: test_release_order ENGINE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

#define NCONNS     4
#define CONN_BYTES (64 * MiB)
#define PIECE      (32 * KiB)

static const char *engine;
static uint64_t rng;
static size_t max_held, npieces_kept;

/* Keep about two pieces in three, each for 0 to 20 ms. */
static bool keep_some(struct h_recv *r, struct h_conn *c, const struct zc_piece *p)
{
	if (h_rand(&rng) % 3 == 0)
		return false;
	h_hold(r, c, p, h_now_ms() + h_rand(&rng) % 21);
	npieces_kept++;
	if (r->nheld > max_held)
		max_held = r->nheld;
	return true;
}

/* Release the pieces whose time is up, and a few more picked at random. */
static void release_some(struct h_recv *r, int nevents)
{
	uint64_t now = h_now_ms();
	size_t extra = r->nheld ? h_rand(&rng) % (r->nheld / 8 + 1) : 0;
	struct zc_stats st;

	for (size_t i = 0; i < r->nheld;) {
		if (r->held[i].until <= now)
			h_release_held(r, i); /* the last one moved to i */
		else
			i++;
	}
	while (extra-- && r->nheld)
		h_release_held(r, h_rand(&rng) % r->nheld);

	if (zc_ctx_stats(r->ctx, &st))
		h_failf(r, "zc_ctx_stats failed");
	else if (st.pieces_outstanding < r->nheld ||
		 st.pieces_outstanding > st.pieces_total)
		h_failf(r, "%lu pieces outstanding of %lu, %zu held",
			(unsigned long)st.pieces_outstanding,
			(unsigned long)st.pieces_total, r->nheld);
}

static void test_random_release_order_and_hold_times(void **state)
{
	struct h_sender s = { .nconns = NCONNS, .bytes = CONN_BYTES,
			      .chunk = 128 * KiB };
	/* 96 pieces and a tail in one, 32 in the other (at an odd address) */
	size_t len0 = 96 * PIECE + 1000, len1 = 32 * PIECE + PIECE - 1;
	char *mem0 = aligned_alloc(4096, 97 * PIECE);
	char *mem1 = malloc(len1 + 3);
	struct zc_region regions[2] = { { mem0, len0 }, { mem1 + 3, len1 } };
	struct zc_config cfg;
	struct zc_stats st;
	struct h_recv r;
	zc_ctx *ctx;
	zc_handle l;
	int port;

	assert_non_null(mem0);
	assert_non_null(mem1);
	rng = h_test_seed("hold times and release order");
	zc_config_init(&cfg);
	cfg.piece_size = PIECE;
	cfg.regions = regions;
	cfg.nregions = 2;
	assert_int_equal(h_ctx_create(engine, &cfg, &ctx), 0);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.pieces_total, 128);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.piece_size = PIECE;
	r.regions = regions;
	r.nregions = 2;
	r.keep = keep_some;
	r.tick = release_some;
	r.wait_ms = 5;
	s.port = (uint16_t)port;
	s.seed = h_rand(&rng);
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, NCONNS, 100);
	h_release_all(&r);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	printf("# %zu pieces held for a while, up to %zu at once; %lu stalls\n",
	       npieces_kept, max_held, (unsigned long)st.stalls);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.neof, NCONNS);
	for (unsigned i = 0; i < NCONNS; i++) {
		assert_int_equal(r.conns[i]->bytes, CONN_BYTES);
		assert_false(r.conns[i]->bad);
	}
	h_recv_fini(&r, true);
	free(mem0);
	free(mem1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_release_order_and_hold_times),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
