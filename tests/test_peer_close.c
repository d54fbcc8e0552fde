/*
 * test_peer_close.c - how a peer ends a connection:
 *  - with an RST in the middle of its stream: an ERROR event with a
 *    negative errno on that connection, while a second connection on the
 *    same context still receives its whole stream;
 *  - with a half close (shutdown SHUT_WR): an EOF event, after which the
 *    receiver sends a reply the peer reads back intact, then closes.
 *
 * usage: test_peer_close ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

static const char *engine;

static zc_ctx *listening_ctx(zc_handle *l, int *port)
{
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, l), 0);
	*port = zc_local_port(ctx, *l);
	assert_true(*port > 0);
	return ctx;
}

/* After the peer's RST, sending on the connection fails cleanly. */
static void send_after_error(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	static const char msg[] = "too late";
	ssize_t n;

	if (ev->type != ZC_EV_ERROR)
		return;
	n = zc_send(r->ctx, c->h, msg, sizeof(msg));
	if (n >= 0 && (n = zc_send(r->ctx, c->h, msg, sizeof(msg))) >= 0)
		h_failf(r, "zc_send after an RST took %zd bytes, twice", n);
}

static void test_reset_mid_stream_is_an_error_others_go_on(void **state)
{
	struct h_sender rst = { .bytes = 4 * MiB, .chunk = 64 * KiB,
				.end = H_END_RESET, .seed = 1111 };
	struct h_sender full = { .bytes = 64 * MiB, .chunk = 64 * KiB,
				 .seed = 2222 };
	struct h_conn *bad = NULL, *good = NULL;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = listening_ctx(&l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.on_event = send_after_error;
	rst.port = full.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&full), 0);
	assert_int_equal(h_sender_start(&rst), 0);
	h_recv_until_ended(&r, 2, 100);
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_sender_join(&rst);
	h_sender_join(&full);

	h_assert_sender_ok(&rst);
	h_assert_sender_ok(&full);
	h_assert_recv_ok(&r);
	assert_int_equal(r.nconns, 2);
	for (int i = 0; i < 2; i++) {
		struct h_conn *c = r.conns[i];

		if (c->end == H_ERROR)
			bad = c;
		else if (c->end == H_EOF)
			good = c;
	}
	assert_non_null(bad);
	assert_non_null(good);
	printf("# reset connection: %s after %" PRIu64 " of %" PRIu64 " bytes\n",
	       zc_strerror(bad->err), bad->bytes, rst.bytes);
	assert_true(bad->err < 0);
	assert_true(bad->bytes <= rst.bytes);
	assert_false(bad->bad);
	if (bad->bytes >= 8)
		assert_int_equal(bad->v.seed, rst.seed);
	assert_int_equal(good->bytes, full.bytes);
	assert_int_equal(good->v.seed, full.seed);
	assert_false(good->bad);
	h_recv_fini(&r, true);
}

/* The receiving side of the half-close test: on EOF, reply, then close. */
struct replier {
	struct h_tx tx;
	bool replying, closed;
	int err;
};

static void reply_on_eof(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	struct replier *rp = r->arg;
	int done;

	if (ev->type == ZC_EV_EOF) {
		if (rp->replying) {
			h_failf(r, "a second EOF");
			return;
		}
		rp->replying = true;
		rp->tx.h = c->h;
	} else if (ev->type == ZC_EV_WRITABLE) {
		if (!rp->replying || !rp->tx.blocked)
			return; /* not ours to act on */
	} else {
		return;
	}
	done = h_tx_pump(r->ctx, &rp->tx);
	if (done < 0) {
		rp->err = done;
		h_failf(r, "zc_send of the reply: %s", zc_strerror(done));
	} else if (done) {
		int err = zc_close(r->ctx, c->h);

		if (err)
			h_failf(r, "zc_close: %s", zc_strerror(err));
		c->state = H_CLOSED;
		rp->closed = true;
	}
}

static bool replied(struct h_recv *r)
{
	struct replier *rp = r->arg;

	return rp->closed && r->nconns && r->conns[0]->state == H_CLOSED;
}

static void test_half_close_then_reply_read_back(void **state)
{
	struct h_sender s = { .bytes = 8 * MiB, .end = H_END_READBACK,
			      .reply_bytes = 16 * MiB, .seed = 3333 };
	struct replier rp = { .tx = { .seed = 4444, .total = 16 * MiB } };
	struct zc_stats st;
	struct h_recv r;
	zc_handle l;
	int port;
	zc_ctx *ctx = listening_ctx(&l, &port);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.keep_open = true;
	r.on_event = reply_on_eof;
	r.arg = &rp;
	s.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until(&r, replied, 100);
	/* the peer reads the reply to its end while the engine runs on */
	for (uint64_t dl = h_deadline_ms(60000); !h_sender_done(&s) && !h_expired(dl);)
		h_recv_step(&r);
	zc_ctx_stats(ctx, &st);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);
	h_tx_fini(&rp.tx);

	printf("# reply: %u short sends\n", rp.tx.nshort);
	h_assert_recv_ok(&r);
	h_assert_sender_ok(&s);
	assert_int_equal(r.nconns, 1);
	assert_int_equal(r.conns[0]->end, H_EOF);
	assert_int_equal(r.conns[0]->bytes, s.bytes);
	assert_false(r.conns[0]->bad);
	assert_int_equal(rp.tx.off, rp.tx.total);
	assert_int_equal(s.reply_got, 16 * MiB);
	assert_int_equal(st.bytes_received, s.bytes);
	assert_int_equal(st.connections, 0);
	h_recv_fini(&r, true);
}

/*
 * The receiver closes a connection while its data is still coming and
 * while more of its events are waiting to be delivered: no event names
 * the handle again, the pieces already delivered can still be released,
 * the undelivered ones go back to the pool, and the pool serves the next
 * connection in full.
 */
static void test_local_close_mid_stream_silences_handle(void **state)
{
	struct h_sender s = { .bytes = 256 * MiB, .chunk = 64 * KiB, .seed = 5151 };
	struct h_sender next = { .bytes = 8 * MiB, .seed = 6161 };
	struct zc_piece held[64];
	unsigned nheld = 0;
	struct zc_config cfg;
	struct zc_stats st;
	struct zc_event ev;
	struct h_recv r;
	zc_handle l, conn = 0;
	uint64_t deadline;
	int port, n, stray = 0;
	zc_ctx *ctx;

	zc_config_init(&cfg);
	cfg.piece_size = 4 * KiB;
	cfg.pool_size = 1 * MiB;
	assert_int_equal(h_ctx_create(engine, &cfg, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	s.port = next.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&s), 0);

	/* one event at a time, up to the first DATA: keep its pieces */
	deadline = h_deadline_ms(20000);
	while (!h_expired(deadline) && nheld == 0) {
		n = h_wait(ctx, &ev, 1, 100);
		assert_true(n >= 0);
		if (n == 1 && ev.type == ZC_EV_ACCEPT)
			conn = ev.conn;
		if (n == 1 && ev.type == ZC_EV_DATA) {
			assert_int_equal(ev.conn, conn);
			for (unsigned i = 0; i < ev.npieces && nheld < 64; i++)
				held[nheld++] = ev.pieces[i];
			for (unsigned i = 64; i < ev.npieces; i++)
				assert_int_equal(zc_release(ctx, &ev.pieces[i]), 0);
		}
	}
	assert_true(nheld > 0);
	assert_int_equal(zc_close(ctx, conn), 0);

	/* the sender sees its connection go; no event names it meanwhile */
	deadline = h_deadline_ms(20000);
	while (!h_expired(deadline) && !h_sender_done(&s)) {
		n = h_wait(ctx, &ev, 1, 50);
		assert_true(n >= 0);
		if (n == 1 && ev.conn == conn)
			stray++;
		if (n == 1 && ev.type == ZC_EV_DATA)
			for (unsigned i = 0; i < ev.npieces; i++)
				zc_release(ctx, &ev.pieces[i]);
	}
	h_sender_join(&s);
	assert_int_equal(stray, 0);
	assert_int_not_equal(s.err, 0); /* its writes failed */

	for (unsigned i = 0; i < nheld; i++)
		assert_int_equal(zc_release(ctx, &held[i]), 0);
	assert_int_equal(h_wait(ctx, &ev, 1, 0), 0);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.connections, 0);
	assert_int_equal(st.pieces_outstanding, 0);

	/* the pieces are all back: the next connection is served in full */
	h_recv_init(&r, ctx);
	r.listener = l;
	assert_int_equal(h_sender_start(&next), 0);
	h_recv_until_ended(&r, 1, 60);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	zc_ctx_destroy(ctx);
	h_sender_join(&next);
	assert_int_equal(st.pieces_outstanding, 0);
	assert_int_equal(st.connections, 0);
	assert_int_equal(st.accepted, 2);
	h_assert_sender_ok(&next);
	h_assert_recv_ok(&r);
	assert_int_equal(r.conns[0]->bytes, next.bytes);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_mid_stream_is_an_error_others_go_on),
		cmocka_unit_test(test_half_close_then_reply_read_back),
		cmocka_unit_test(test_local_close_mid_stream_silences_handle),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
