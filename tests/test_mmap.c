/*
 * test_mmap.c - what only the mmap engine does:
 *  - a zcnet sender (zc_send_zerocopy(), ZC_PAGE_ALIGNED) gets its stream
 *    mapped, at least 95% of it by the statistics, verified byte by byte,
 *    with one SEND_DONE per send;
 *  - a plain send() sender: nothing mappable, the connection falls back
 *    to copying and still gets every byte;
 *  - mapped pieces released in a random order, double and forged releases;
 *  - a connection closed while its mapped pieces are held: the peer gets
 *    its FIN at once, the pieces stay intact until released, no leak;
 *  - a mapping budget of a few slots: back-pressure, nothing lost;
 *  - small zero-copy sends are copied and complete at once.
 *
 * usage: test_mmap
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define STREAM_BYTES (2 * GiB)

static zc_ctx *mmap_ctx(size_t map_size, zc_handle *l, int *port)
{
	struct zc_config cfg;
	zc_ctx *ctx;

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_MMAP;
	if (map_size)
		cfg.map_size = map_size;
	assert_int_equal(zc_ctx_create(&cfg, &ctx), 0);
	assert_string_equal(zc_engine_name(ctx), "mmap");
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", ZC_PAGE_ALIGNED, l), 0);
	*port = zc_local_port(ctx, *l);
	assert_true(*port > 0);
	return ctx;
}

static bool is_mapped(const zc_ctx *ctx, const struct zc_piece *p)
{
	return p->ref >> 63; /* opaque to applications; the tests may look */
}

static void test_aligned_zcnet_sender_is_mapped(void **state)
{
	uint64_t rng = h_test_seed("stream seed");
	struct h_zsender z = { .bytes = STREAM_BYTES, .flags = ZC_PAGE_ALIGNED,
			       .engine = ZC_ENGINE_SOCKET, .seed = h_rand(&rng) };
	struct zc_stats st;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = mmap_ctx(0, &l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	z.port = (uint16_t)port;
	assert_int_equal(h_zsender_start(&z), 0);
	h_recv_until_ended(&r, 1, 150);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	zc_ctx_destroy(ctx);
	h_zsender_join(&z);

	printf("# %" PRIu64 " bytes: mapped %" PRIu64 " (%.2f%%), copied %" PRIu64
	       "; %" PRIu64 " sends, %" PRIu64 " SEND_DONE (%" PRIu64 " copied), "
	       "up to %u in flight\n", st.bytes_received, st.bytes_mapped,
	       100.0 * st.bytes_mapped / st.bytes_received, st.bytes_copied, z.sends,
	       z.done_events, z.done_copied, z.max_inflight);
	h_assert_zsender_ok(&z);
	h_assert_recv_ok(&r);
	assert_int_equal(r.conns[0]->bytes, STREAM_BYTES);
	assert_int_equal(r.conns[0]->v.seed, z.seed);
	assert_false(r.conns[0]->bad);
	assert_int_equal(st.bytes_received, STREAM_BYTES);
	assert_int_equal(st.bytes_mapped + st.bytes_copied, st.bytes_received);
	assert_true(st.bytes_mapped * 100 >= st.bytes_received * 95);
	assert_int_equal(st.pieces_outstanding, 0);
	assert_int_equal(z.done_events, z.sends);
	assert_int_equal(z.done_bytes, STREAM_BYTES);
	h_recv_fini(&r, true);
}

static void test_plain_sender_falls_back_to_copying(void **state)
{
	uint64_t rng = h_test_seed("stream seed");
	struct h_sender s = { .bytes = STREAM_BYTES, .chunk = 1 * MiB,
			      .seed = h_rand(&rng) };
	struct zc_stats st;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = mmap_ctx(0, &l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	s.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, 1, 150);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	printf("# features \"%s\": mapped %" PRIu64 " copied %" PRIu64 "\n",
	       zc_engine_features(ctx), st.bytes_mapped, st.bytes_copied);
	assert_true(h_has_feature(ctx, "fallbacks=1"));
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.conns[0]->bytes, STREAM_BYTES);
	assert_false(r.conns[0]->bad);
	assert_int_equal(st.bytes_received, STREAM_BYTES);
	assert_int_equal(st.bytes_mapped + st.bytes_copied, STREAM_BYTES);
	assert_true(st.bytes_copied * 100 >= STREAM_BYTES * 99);
	h_recv_fini(&r, true);
}

/* Keep every mapped piece for a while; release them shuffled. */
static uint64_t nmapped_kept, release_errs;

static bool keep_mapped(struct h_recv *r, struct h_conn *c, const struct zc_piece *p)
{
	if (!is_mapped(r->ctx, p))
		return false;
	h_hold(r, c, p, 0);
	nmapped_kept++;
	return true;
}

static void release_shuffled(struct h_recv *r, int nevents)
{
	uint64_t *rng = r->arg;

	if (r->nheld < 48)
		return;
	for (size_t i = r->nheld; i > 1; i--) { /* Fisher-Yates */
		size_t j = h_rand(rng) % i;
		struct h_held t = r->held[i - 1];

		r->held[i - 1] = r->held[j];
		r->held[j] = t;
	}
	while (r->nheld > 8) {
		struct zc_piece p = r->held[r->nheld - 1].p, forged = p;

		h_release_held(r, r->nheld - 1);
		if (zc_release(r->ctx, &p) != -EALREADY) /* twice */
			release_errs++;
		forged.data = (const char *)p.data + 4096;
		if (zc_release(r->ctx, &forged) != -EINVAL)
			release_errs++;
		forged = p;
		forged.ref ^= 1; /* another slot */
		if (zc_release(r->ctx, &forged) != -EINVAL && zc_release(r->ctx, &forged) != -EALREADY)
			release_errs++;
	}
}

static void test_release_in_random_order(void **state)
{
	uint64_t rng = h_test_seed("shuffle seed");
	struct h_zsender z = { .bytes = 256 * MiB, .flags = ZC_PAGE_ALIGNED,
			       .engine = ZC_ENGINE_SOCKET, .seed = 77 };
	struct zc_stats st;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = mmap_ctx(0, &l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.keep = keep_mapped;
	r.tick = release_shuffled;
	r.arg = &rng;
	z.port = (uint16_t)port;
	assert_int_equal(h_zsender_start(&z), 0);
	h_recv_until_ended(&r, 1, 100);
	h_release_all(&r);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	zc_ctx_destroy(ctx);
	h_zsender_join(&z);

	printf("# %" PRIu64 " mapped pieces held and released shuffled\n", nmapped_kept);
	h_assert_zsender_ok(&z);
	h_assert_recv_ok(&r);
	assert_int_equal(release_errs, 0);
	assert_true(nmapped_kept > 1000);
	assert_int_equal(r.conns[0]->bytes, z.bytes);
	assert_false(r.conns[0]->bad);
	assert_int_equal(st.pieces_outstanding, 0);
	h_recv_fini(&r, true);
}

/*
 * Close a connection while holding its mapped pieces. The peer, a zcnet
 * sender that waits for the receiver's end after its own, gets it (a FIN:
 * its run ends without error) although the pieces are still held: the
 * connection's socket was never mapped, so nothing keeps it open. The
 * pieces keep their bytes until released; then every count is back to 0.
 */
static void test_close_with_mapped_pieces_held(void **state)
{
	struct h_zsender z = { .bytes = 8 * MiB, .flags = ZC_PAGE_ALIGNED,
			       .engine = ZC_ENGINE_SOCKET, .seed = 99 };
	struct zc_piece held[256];
	uint64_t hash[256];
	unsigned nheld = 0;
	struct zc_event ev[64];
	struct zc_stats st;
	struct pat_verifier v;
	zc_handle l, conn = 0;
	uint64_t deadline = h_deadline_ms(30000), bad;
	bool eof = false;
	int port, n;
	zc_ctx *ctx = mmap_ctx(0, &l, &port);

	pat_verifier_init(&v);
	z.port = (uint16_t)port;
	assert_int_equal(h_zsender_start(&z), 0);
	while (!h_expired(deadline) && !eof) {
		n = h_wait(ctx, ev, 64, 100);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_ACCEPT)
				conn = ev[i].conn;
			if (ev[i].type == ZC_EV_EOF)
				eof = true;
			if (ev[i].type != ZC_EV_DATA)
				continue;
			for (unsigned k = 0; k < ev[i].npieces; k++) {
				const struct zc_piece *p = &ev[i].pieces[k];

				assert_int_equal(pat_verify(&v, p->data, p->len, &bad), 0);
				if (is_mapped(ctx, p) && nheld < 256) {
					hash[nheld] = h_hash(p->data, p->len);
					held[nheld++] = *p;
				} else {
					assert_int_equal(zc_release(ctx, p), 0);
				}
			}
		}
	}
	assert_true(eof);
	assert_true(nheld >= 64);
	assert_int_equal(zc_close(ctx, conn), 0);
	h_zsender_join(&z); /* it ends only on our end of the stream */
	h_assert_zsender_ok(&z);
	printf("# the sender saw the end with %u mapped pieces held\n", nheld);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.pieces_outstanding, nheld);
	assert_int_equal(st.connections, 0);
	for (unsigned i = 0; i < nheld; i++) {
		assert_int_equal(h_hash(held[i].data, held[i].len), hash[i]);
		assert_int_equal(zc_release(ctx, &held[i]), 0);
		assert_int_equal(zc_release(ctx, &held[i]), -EALREADY);
	}
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.pieces_outstanding, 0);
	zc_ctx_destroy(ctx);
}

/* A mapping area of four one-page slots, every piece held until the whole
 * budget is: receiving stops and resumes, nothing is lost. */
static void hold_until_budget(struct h_recv *r, int nevents)
{
	struct zc_stats st;
	uint64_t *max_out = r->arg;

	zc_ctx_stats(r->ctx, &st);
	if (st.pieces_outstanding > *max_out)
		*max_out = st.pieces_outstanding;
	if (r->nheld >= 4 || nevents == 0)
		h_release_all(r);
}

static bool keep_all(struct h_recv *r, struct h_conn *c, const struct zc_piece *p)
{
	h_hold(r, c, p, 0);
	return true;
}

static void test_tiny_mapping_budget_backpressure(void **state)
{
	struct h_zsender z = { .bytes = 128 * MiB, .flags = ZC_PAGE_ALIGNED,
			       .engine = ZC_ENGINE_SOCKET, .seed = 1234 };
	struct zc_config cfg;
	struct zc_stats st;
	struct h_recv r;
	uint64_t max_out = 0;
	zc_handle l;
	zc_ctx *ctx;
	int port;

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_MMAP;
	cfg.piece_size = 4 * KiB;
	cfg.pool_size = 64 * KiB;
	cfg.map_size = 16 * KiB; /* four slots */
	assert_int_equal(zc_ctx_create(&cfg, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", ZC_PAGE_ALIGNED, &l), 0);
	port = zc_local_port(ctx, l);
	h_recv_init(&r, ctx);
	r.listener = l;
	r.keep = keep_all;
	r.tick = hold_until_budget;
	r.arg = &max_out;
	r.wait_ms = 10;
	z.port = (uint16_t)port;
	assert_int_equal(h_zsender_start(&z), 0);
	h_recv_until_ended(&r, 1, 100);
	h_release_all(&r);
	h_check_ctx_stats(&r);
	zc_ctx_stats(ctx, &st);
	zc_ctx_destroy(ctx);
	h_zsender_join(&z);

	printf("# %" PRIu64 " stalls, mapped %" PRIu64 " of %" PRIu64 ", at most %"
	       PRIu64 " pieces out\n", st.stalls, st.bytes_mapped, st.bytes_received,
	       max_out);
	h_assert_zsender_ok(&z);
	h_assert_recv_ok(&r);
	assert_int_equal(r.conns[0]->bytes, z.bytes);
	assert_false(r.conns[0]->bad);
	assert_true(st.stalls > 0);
	assert_true(st.bytes_mapped > 0);
	assert_true(max_out <= 4 + 16); /* four slots and the pool's 16 pieces */
	h_recv_fini(&r, true);
}

/* Sends below ZC_SEND_ZEROCOPY_MIN are copied: done at once. */
static void test_small_zerocopy_sends_are_copied(void **state)
{
	struct h_zsender z = { .bytes = 16 * MiB, .chunk = 4 * KiB, .nbuf = 4,
			       .engine = ZC_ENGINE_SOCKET, .seed = 4321 };
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = mmap_ctx(0, &l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	z.port = (uint16_t)port;
	assert_int_equal(h_zsender_start(&z), 0);
	h_recv_until_ended(&r, 1, 60);
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_zsender_join(&z);
	h_assert_zsender_ok(&z);
	h_assert_recv_ok(&r);
	assert_int_equal(r.conns[0]->bytes, z.bytes);
	assert_int_equal(z.done_events, z.sends);
	assert_int_equal(z.done_copied, z.sends);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aligned_zcnet_sender_is_mapped),
		cmocka_unit_test(test_plain_sender_falls_back_to_copying),
		cmocka_unit_test(test_release_in_random_order),
		cmocka_unit_test(test_close_with_mapped_pieces_held),
		cmocka_unit_test(test_tiny_mapping_budget_backpressure),
		cmocka_unit_test(test_small_zerocopy_sends_are_copied),
	};

	h_setup(argc, argv, false, 280);
	return cmocka_run_group_tests_name("mmap", tests, NULL, NULL);
}
