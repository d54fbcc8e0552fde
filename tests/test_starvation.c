/*
 * test_starvation.c - 2,000 connections at once share a pool of eight
 * 16 KiB pieces, and the consumer holds every piece for about a
 * millisecond: the pool is dry nearly all the time, and connections wait
 * their turn. Every connection must get its whole stream, verified (none
 * is starved for good), the stall counter must show the pool ran dry, and
 * no more pieces may be out than the pool has.
 *
 * How evenly the pool is shared is printed: how many connections had not
 * received a byte when half of all bytes were in (every connection has
 * bytes waiting by then: the sender writes 32 KiB to each before any
 * second chunk), and the longest a connection went without a DATA event.
 * zcnet lends a connection whose turn comes as many free pieces as it can
 * fill, so service is in turns, not byte by byte; ZC_STRICT_FAIRNESS=1
 * also demands that no connection is still without a byte at half-way
 * (which zcnet does not promise today).
 *
 * usage: test_starvation ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

#define NCONNS     2000
#define CONN_BYTES (128 * KiB)
#define PIECE      (16 * KiB)
#define NPIECES    8
#define HOLD_MS    1

static const char *engine;

struct progress {
	uint64_t last_ms;      /* last DATA event (or the start) */
	uint64_t max_gap_ms;   /* longest time between two of them */
};

static struct {
	uint64_t t0;
	bool halfway_seen;
	unsigned idle_at_half; /* connections with no byte at half-way */
	unsigned accepted_at_half;
	uint64_t max_out;
	struct progress prog[NCONNS];
} T;

static bool keep_for_a_while(struct h_recv *r, struct h_conn *c,
			     const struct zc_piece *p)
{
	h_hold(r, c, p, h_now_ms() + HOLD_MS);
	return true;
}

static void on_event(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	size_t i = (size_t)(uintptr_t)c->app;
	uint64_t now;

	if (ev->type == ZC_EV_ACCEPT) {
		c->app = (void *)(uintptr_t)(r->nconns - 1);
		i = r->nconns - 1;
		if (i < NCONNS)
			T.prog[i].last_ms = h_now_ms();
		return;
	}
	if (ev->type != ZC_EV_DATA || i >= NCONNS)
		return;
	now = h_now_ms();
	if (now - T.prog[i].last_ms > T.prog[i].max_gap_ms)
		T.prog[i].max_gap_ms = now - T.prog[i].last_ms;
	T.prog[i].last_ms = now;
}

/* After every wait: give back the pieces whose time is up, and look at
 * the connections once half of all bytes are in. */
static void tick(struct h_recv *r, int nevents)
{
	uint64_t now = h_now_ms();
	struct zc_stats st;

	if (!zc_ctx_stats(r->ctx, &st) && st.pieces_outstanding > T.max_out)
		T.max_out = st.pieces_outstanding;
	for (size_t i = 0; i < r->nheld;) {
		if (r->held[i].until <= now)
			h_release_held(r, i); /* the last one moves to i */
		else
			i++;
	}
	if (!T.halfway_seen && r->bytes >= (uint64_t)NCONNS * CONN_BYTES / 2) {
		T.halfway_seen = true;
		T.accepted_at_half = r->naccepted;
		for (size_t i = 0; i < r->nconns; i++)
			if (r->conns[i]->bytes == 0)
				T.idle_at_half++;
		T.idle_at_half += NCONNS - (unsigned)r->nconns;
		printf("# half-way after %.1f s: %u accepted, %u without a byte yet\n",
		       (now - T.t0) / 1e3, T.accepted_at_half, T.idle_at_half);
	}
}

static void test_2000_connections_share_a_dry_pool(void **state)
{
	struct h_sender s = { .nconns = NCONNS, .bytes = CONN_BYTES,
			      .chunk = 32 * KiB };
	uint64_t rng = h_test_seed("stream seeds");
	struct zc_config cfg;
	struct zc_stats st;
	struct h_recv r;
	uint64_t worst = 0, t1;
	zc_ctx *ctx;
	zc_handle l;
	int port;

	assert_int_equal(h_raise_nofile(2 * NCONNS + 256), 0);
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
	r.keep = keep_for_a_while;
	r.on_event = on_event;
	r.tick = tick;
	r.wait_ms = 1;
	s.port = (uint16_t)port;
	s.seed = h_rand(&rng);
	T.t0 = h_now_ms();
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, NCONNS, 150);
	t1 = h_now_ms();
	h_release_all(&r);
	h_check_ctx_stats(&r);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	for (unsigned i = 0; i < NCONNS; i++)
		if (T.prog[i].max_gap_ms > worst)
			worst = T.prog[i].max_gap_ms;
	printf("# %u connections, %llu MiB in %.1f s (%.1f MB/s), %llu"
	       " stalls, at most %" PRIu64 " of %u pieces out; longest wait of a "
	       "connection for its next DATA event: %" PRIu64 " ms\n", r.naccepted,
	       (unsigned long long)(r.bytes / MiB), (t1 - T.t0) / 1e3,
	       r.bytes / 1e3 / (double)(t1 - T.t0 ? t1 - T.t0 : 1),
	       (unsigned long long)st.stalls,
	       T.max_out, NPIECES, worst);
	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.naccepted, NCONNS);
	assert_int_equal(r.neof, NCONNS);
	assert_int_equal(r.nerror, 0);
	for (unsigned i = 0; i < NCONNS; i++) {
		assert_int_equal(r.conns[i]->bytes, CONN_BYTES);
		assert_true(r.conns[i]->ndata > 0);
		assert_false(r.conns[i]->bad);
	}
	assert_int_equal(st.bytes_received, (uint64_t)NCONNS * CONN_BYTES);
	assert_true(st.stalls > 0);
	assert_true(T.max_out <= NPIECES);
	assert_true(T.halfway_seen);
	if (getenv("ZC_STRICT_FAIRNESS"))
		assert_int_equal(T.idle_at_half, 0);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_2000_connections_share_a_dry_pool),
	};

	engine = h_setup(argc, argv, true, 170);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
