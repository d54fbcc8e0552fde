/*
 * test_stream.c - one 2 GiB stream from the Linux TCP stack over
 * loopback, verified byte by byte as it is delivered, with every DATA
 * event's offset continuing the one before; then the counters: bytes
 * received equal bytes sent, nothing copied by zcnet, one connection
 * accepted and none left open.
 *
 * usage: test_stream ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define STREAM_BYTES (2 * GiB)

static const char *engine;

static void test_2gib_stream_verified(void **state)
{
	struct h_sender s = { .bytes = STREAM_BYTES, .chunk = 1 * MiB };
	struct h_recv r;
	struct zc_config cfg;
	struct zc_stats st;
	struct h_conn *c;
	zc_ctx *ctx;
	zc_handle l;
	uint64_t rng = h_test_seed("stream seed");
	int port;

	zc_config_init(&cfg);
	assert_int_equal(h_ctx_create(engine, &cfg, &ctx), 0);
	printf("# engine %s features \"%s\"\n", zc_engine_name(ctx),
	       zc_engine_features(ctx));
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.piece_size = cfg.piece_size;
	s.port = (uint16_t)port;
	s.seed = h_rand(&rng);
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, 1, 150);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	zc_close(ctx, l);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.nconns, 1);
	c = r.conns[0];
	printf("# %" PRIu64 " DATA events, %" PRIu64 " bytes each on average\n",
	       c->ndata, c->ndata ? c->bytes / c->ndata : 0);
	assert_int_equal(c->state, H_CLOSED);
	assert_false(c->bad);
	assert_int_equal(c->bytes, STREAM_BYTES);
	assert_int_equal(c->v.seed, s.seed);
	assert_int_equal(s.sent, STREAM_BYTES);
	assert_int_equal(r.neof, 1);
	assert_int_equal(r.nerror, 0);

	assert_int_equal(st.bytes_received, STREAM_BYTES);
	h_assert_copied(engine, st);
	assert_int_equal(st.pieces_outstanding, 0);
	assert_int_equal(st.pieces_total, cfg.pool_size / cfg.piece_size);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.connections, 0);
	h_recv_fini(&r, true);
}

/* A verified stream through a pool of @piece-byte pieces, @npieces of them. */
static void stream_through(size_t piece, size_t npieces, uint64_t bytes)
{
	struct h_sender s = { .bytes = bytes, .seed = piece * 31 + npieces };
	struct zc_config cfg;
	struct zc_stats st;
	struct h_recv r;
	zc_ctx *ctx;
	zc_handle l;
	int port, err;

	zc_config_init(&cfg);
	cfg.piece_size = piece;
	cfg.pool_size = piece * npieces;
	err = h_ctx_create(engine, &cfg, &ctx);
	if (err)
		fail_msg("%zu pieces of %zu bytes: %s", npieces, piece, zc_strerror(err));
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.pieces_total, npieces);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);
	h_recv_init(&r, ctx);
	r.listener = l;
	r.piece_size = piece;
	s.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, 1, 60);
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	if (r.nfail)
		fail_msg("%zu pieces of %zu bytes: %s", npieces, piece, r.fail);
	assert_int_equal(r.neof, 1);
	assert_int_equal(r.conns[0]->bytes, bytes);
	assert_int_equal(r.conns[0]->v.seed, s.seed);
	h_recv_fini(&r, true);
}

static void test_tiny_odd_huge_and_most_pieces(void **state)
{
	stream_through(7, 4096, 1 * MiB);          /* tiny, odd */
	stream_through(1000, 1000, 16 * MiB);      /* not a power of two */
	stream_through(4 * MiB, 4, 64 * MiB);      /* few large */
	stream_through(1, 1, 64 * KiB);            /* the smallest pool */
	stream_through(4 * KiB, ZC_MAX_PIECES, 64 * MiB); /* the most pieces */
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_2gib_stream_verified),
		cmocka_unit_test(test_tiny_odd_huge_and_most_pieces),
	};

	engine = h_setup(argc, argv, true, 170);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
