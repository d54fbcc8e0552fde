/*
 * test_stats.c - the counters of zc_ctx_stats() and zc_conn_stats():
 *  - bytes_received and pieces_outstanding count what zc_wait() has
 *    delivered (read one event at a time, they match after every call);
 *  - connections and accepted follow accepts and closes; each connection
 *    has its own byte count; nothing is copied by zcnet.
 *
 * usage: test_stats ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "harness.h"

static const char *engine;

static zc_ctx *listening_ctx(const struct zc_config *cfg, zc_handle *l, int *port)
{
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, cfg, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, l), 0);
	*port = zc_local_port(ctx, *l);
	assert_true(*port > 0);
	return ctx;
}

/*
 * Two connections with data waiting, read one event per zc_wait(): after
 * every call, bytes_received is the sum of the DATA events returned so far
 * and pieces_outstanding the number of their pieces not yet released (a
 * few are kept until half-way).
 */
static void test_counters_match_delivered_events(void **state)
{
	struct h_sender s[2] = {
		{ .bytes = 16 * MiB, .seed = 1212, .chunk = 1 * MiB },
		{ .bytes = 16 * MiB, .seed = 3434, .chunk = 1 * MiB },
	};
	uint64_t delivered = 0, held = 0, mismatch_at = 0, held_at = 0;
	uint64_t deadline = h_deadline_ms(60000);
	struct zc_stats st, bad_st = { 0 };
	struct zc_config cfg;
	struct zc_piece keep[8];
	unsigned nkeep = 0, accepted = 0, ended = 0;
	bool kept = false;
	zc_ctx *ctx;
	zc_handle l;
	int port;

	zc_config_init(&cfg);
	cfg.piece_size = 4 * KiB;
	cfg.pool_size = 1 * MiB;
	ctx = listening_ctx(&cfg, &l, &port);
	for (int i = 0; i < 2; i++) {
		s[i].port = (uint16_t)port;
		assert_int_equal(h_sender_start(&s[i]), 0);
	}
	while (ended < 2 && !h_expired(deadline)) {
		struct zc_event ev;
		int n = h_wait(ctx, &ev, 1, 100);

		if (n < 0)
			break;
		if (n == 1 && ev.type == ZC_EV_ACCEPT && ++accepted == 2)
			usleep(100000); /* let data pile up on both */
		if (n == 1 && ev.type == ZC_EV_DATA) {
			delivered += ev.bytes;
			held += ev.npieces;
			for (unsigned i = 0; i < ev.npieces; i++) {
				if (!kept && nkeep < 8) {
					keep[nkeep++] = ev.pieces[i];
					continue;
				}
				assert_int_equal(zc_release(ctx, &ev.pieces[i]), 0);
				held--;
			}
		}
		if (n == 1 && (ev.type == ZC_EV_EOF || ev.type == ZC_EV_ERROR))
			ended++;
		assert_int_equal(zc_ctx_stats(ctx, &st), 0);
		if (!mismatch_at && (st.bytes_received != delivered ||
				     st.pieces_outstanding != held)) {
			mismatch_at = delivered ? delivered : 1;
			held_at = held;
			bad_st = st;
		}
		if (!kept && delivered > 16 * MiB) {
			while (nkeep)
				assert_int_equal(zc_release(ctx, &keep[--nkeep]), 0);
			held -= 8;
			kept = true;
		}
	}
	zc_ctx_destroy(ctx);
	for (int i = 0; i < 2; i++) {
		h_sender_join(&s[i]);
		h_assert_sender_ok(&s[i]);
	}
	assert_int_equal(ended, 2);
	assert_int_equal(delivered, s[0].bytes + s[1].bytes);
	if (mismatch_at)
		fail_msg("after %" PRIu64 " bytes delivered with %" PRIu64 " pieces "
			 "held, zc_ctx_stats says bytes_received %" PRIu64
			 " pieces_outstanding %" PRIu64, mismatch_at == 1 ? 0 : mismatch_at,
			 held_at, bad_st.bytes_received, bad_st.pieces_outstanding);
}

static void test_connection_counters_and_per_connection_bytes(void **state)
{
	static const uint64_t sizes[3] = { 1 * MiB, 3 * MiB + 5, 0 };
	struct h_sender s[3];
	struct zc_stats st, cs;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = listening_ctx(NULL, &l, &port);

	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.connections, 0);
	assert_int_equal(st.accepted, 0);
	assert_int_equal(st.bytes_received, 0);
	assert_int_equal(st.pieces_total, 16 * MiB / (64 * KiB));

	h_recv_init(&r, ctx);
	r.listener = l;
	r.keep_open = true; /* closed below, one by one */
	for (int i = 0; i < 3; i++) {
		s[i] = (struct h_sender){ .port = (uint16_t)port, .bytes = sizes[i],
					  .seed = 100 + (uint64_t)i };
		assert_int_equal(h_sender_start(&s[i]), 0);
	}
	h_recv_until_ended(&r, 3, 60);
	for (int i = 0; i < 3; i++)
		h_sender_join(&s[i]);
	h_assert_recv_ok(&r);
	for (int i = 0; i < 3; i++)
		h_assert_sender_ok(&s[i]);

	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.accepted, 3);
	assert_int_equal(st.connections, 3);
	assert_int_equal(st.bytes_received, sizes[0] + sizes[1] + sizes[2]);
	h_assert_copied(engine, st);
	assert_int_equal(st.pieces_outstanding, 0);
	assert_int_equal(r.nconns, 3);
	for (unsigned i = 0; i < 3; i++) {
		struct h_conn *c = r.conns[i];
		bool known = false;

		assert_int_equal(zc_conn_stats(ctx, c->h, &cs), 0);
		assert_int_equal(cs.bytes_received, c->bytes);
		h_assert_copied(engine, cs);
		assert_int_equal(cs.pieces_outstanding, 0);
		assert_int_equal(cs.pieces_total, 0);
		assert_int_equal(cs.connections, 0);
		assert_int_equal(cs.accepted, 0);
		for (int k = 0; k < 3; k++)
			known |= c->bytes == sizes[k];
		assert_true(known);
		assert_int_equal(c->end, H_EOF);

		assert_int_equal(zc_close(ctx, c->h), 0);
		c->state = H_CLOSED;
		assert_int_equal(zc_ctx_stats(ctx, &st), 0);
		assert_int_equal(st.connections, 2 - i);
		assert_int_equal(st.accepted, 3);
	}
	/* a listener is no connection */
	assert_int_equal(zc_close(ctx, l), 0);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.connections, 0);
	zc_ctx_destroy(ctx);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_match_delivered_events),
		cmocka_unit_test(test_connection_counters_and_per_connection_bytes),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
