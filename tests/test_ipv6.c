/*
 * test_ipv6.c - the same over [::1]: a listener on "[::1]:0" receives a
 * verified 64 MiB stream from an IPv6 peer, and zc_connect("[::1]:PORT")
 * reaches it from the same context.
 *
 * usage: test_ipv6 ENGINE
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "harness.h"

static const char *engine;

static void test_ipv6_listener_receives_verified_stream(void **state)
{
	struct h_sender s = { .family = AF_INET6, .bytes = 64 * MiB,
			      .seed = 7777 };
	struct h_recv r;
	zc_ctx *ctx;
	zc_handle l;
	int port;

	if (!h_have_ipv6())
		skip();
	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "[::1]:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);
	h_recv_init(&r, ctx);
	r.listener = l;
	s.port = (uint16_t)port;
	assert_int_equal(h_sender_start(&s), 0);
	h_recv_until_ended(&r, 1, 100);
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_sender_join(&s);

	h_assert_sender_ok(&s);
	h_assert_recv_ok(&r);
	assert_int_equal(r.neof, 1);
	assert_int_equal(r.conns[0]->bytes, s.bytes);
	assert_int_equal(r.conns[0]->v.seed, s.seed);
	h_recv_fini(&r, true);
}

static bool connected_and_accepted(struct h_recv *r)
{
	return r->nconnected == 1 && r->naccepted == 1;
}

static void test_ipv6_connect_to_own_listener(void **state)
{
	struct h_tx tx = { .seed = 8888, .total = 1 * MiB };
	struct h_recv r;
	struct h_conn *c, *srv = NULL;
	char addr[40];
	zc_ctx *ctx;
	zc_handle l, h = 0;
	int port, done = 0;

	if (!h_have_ipv6())
		skip();
	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "[::1]:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);
	snprintf(addr, sizeof(addr), "[::1]:%d", port);
	assert_int_equal(zc_connect(ctx, addr, &h), 0);
	h_recv_init(&r, ctx);
	r.listener = l;
	c = h_recv_add(&r, h);
	h_recv_until(&r, connected_and_accepted, 30);
	/* 1 MiB client to server, then close: the server sees it all and EOF */
	tx.h = h;
	for (uint64_t dl = h_deadline_ms(30000); !r.nfail && !h_expired(dl);) {
		done = h_tx_pump(ctx, &tx);
		if (done)
			break;
		h_recv_step(&r);
	}
	assert_int_equal(done, 1);
	assert_int_equal(zc_close(ctx, h), 0);
	c->state = H_CLOSED;
	h_recv_until_ended(&r, 1, 30);
	for (size_t i = 0; i < r.nconns; i++)
		if (r.conns[i]->accepted)
			srv = r.conns[i];
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_tx_fini(&tx);

	h_assert_recv_ok(&r);
	assert_non_null(srv);
	assert_int_equal(srv->end, H_EOF);
	assert_int_equal(srv->bytes, tx.total);
	assert_int_equal(srv->v.seed, tx.seed);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv6_listener_receives_verified_stream),
		cmocka_unit_test(test_ipv6_connect_to_own_listener),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
