/*
 * test_many_conns.c - 1,000 connections open at once on one context, their
 * streams interleaved; each is verified on its own, each ends with EOF,
 * and the set of streams received is exactly the set sent.
 *
 * usage: test_many_conns ENGINE
 */
#include <errno.h>
#include <stdlib.h>

#include "harness.h"

#define NCONNS     1000
#define CONN_BYTES (256 * KiB)

static const char *engine;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_1000_concurrent_connections_verified(void **state)
{
	struct h_sender s = { .nconns = NCONNS, .bytes = CONN_BYTES,
			      .chunk = 64 * KiB };
	uint64_t *seeds = calloc(NCONNS, sizeof(*seeds));
	uint64_t *got = calloc(NCONNS, sizeof(*got));
	uint64_t rng = h_test_seed("stream seeds");
	struct zc_stats st;
	struct h_recv r;
	zc_ctx *ctx;
	zc_handle l;
	int port;

	assert_non_null(seeds);
	assert_non_null(got);
	/* both ends of every connection live in this process */
	assert_int_equal(h_raise_nofile(2 * NCONNS + 256), 0);
	for (unsigned i = 0; i < NCONNS; i++)
		seeds[i] = h_rand(&rng);

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);
	h_recv_init(&r, ctx);
	r.listener = l;
	r.piece_size = 64 * KiB;
	s.port = (uint16_t)port;
	s.seeds = seeds;
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, NCONNS, 150);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.naccepted, NCONNS);
	assert_int_equal(r.neof, NCONNS);
	assert_int_equal(r.nerror, 0);
	for (unsigned i = 0; i < NCONNS; i++) {
		struct h_conn *c = r.conns[i];

		assert_int_equal(c->state, H_CLOSED);
		assert_int_equal(c->bytes, CONN_BYTES);
		assert_false(c->bad);
		got[i] = c->v.seed;
	}
	/* every stream arrived once, none twice, on a connection of its own */
	qsort(seeds, NCONNS, sizeof(*seeds), cmp_u64);
	qsort(got, NCONNS, sizeof(*got), cmp_u64);
	for (unsigned i = 0; i < NCONNS; i++)
		assert_int_equal(got[i], seeds[i]);
	assert_int_equal(st.bytes_received, (uint64_t)NCONNS * CONN_BYTES);
	assert_int_equal(st.accepted, NCONNS);
	assert_int_equal(st.connections, 0);
	h_assert_copied(engine, st);
	h_recv_fini(&r, true);
	free(seeds);
	free(got);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_1000_concurrent_connections_verified),
	};

	engine = h_setup(argc, argv, true, 170);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
