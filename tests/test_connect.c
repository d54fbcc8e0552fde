/*
 * test_connect.c - outgoing connections:
 *  - zc_connect() to a listener of the same context: CONNECTED on one
 *    end, ACCEPT on the other, a 16 MiB stream each way (more than the
 *    socket buffers hold, so zc_send() comes back short and WRITABLE
 *    follows), shutdown(SHUT_WR) seen as EOF, then both closed;
 *  - zc_connect() to a port where nothing listens: ERROR -ECONNREFUSED.
 *
 * usage: test_connect ENGINE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define BYTES (16 * MiB)

static const char *engine;

/* Both ends of the connection, each sending BYTES of its own pattern. */
struct pair {
	struct h_conn *client, *server;
	struct h_tx client_tx, server_tx;
	bool client_sent, server_sent;
	int closed;
	struct zc_stats client_st, server_st;
};

/* Pump @tx; when all is sent, shut the write side (client) or close
 * (server, which has already seen the client's EOF). */
static void pump(struct h_recv *r, struct pair *p, struct h_conn *c)
{
	bool is_client = c == p->client;
	struct h_tx *tx = is_client ? &p->client_tx : &p->server_tx;
	int done = h_tx_pump(r->ctx, tx);

	if (done < 0) {
		h_failf(r, "zc_send on the %s: %s", is_client ? "client" : "server",
			zc_strerror(done));
		return;
	}
	if (!done)
		return;
	if (is_client) {
		int err = zc_shutdown(r->ctx, c->h, SHUT_WR);

		p->client_sent = true;
		if (err)
			h_failf(r, "zc_shutdown: %s", zc_strerror(err));
	} else {
		p->server_sent = true;
		zc_conn_stats(r->ctx, c->h, &p->server_st);
		if (zc_close(r->ctx, c->h))
			h_failf(r, "zc_close of the server end failed");
		c->state = H_CLOSED;
		p->closed++;
	}
}

static void on_event(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	struct pair *p = r->arg;

	switch (ev->type) {
	case ZC_EV_ACCEPT:
		if (p->server)
			h_failf(r, "a second connection accepted");
		p->server = c;
		p->server_tx.h = c->h;
		break;
	case ZC_EV_CONNECTED:
		pump(r, p, c);
		break;
	case ZC_EV_WRITABLE:
		if ((c == p->client && !p->client_sent && p->client_tx.blocked) ||
		    (c == p->server && p->server_tx.h && !p->server_sent && p->server_tx.blocked))
			pump(r, p, c);
		break;
	case ZC_EV_EOF:
		if (c == p->server) {
			if (!p->client_sent)
				h_failf(r, "the server saw EOF before the client shut down");
			pump(r, p, c); /* now reply */
		} else {
			zc_conn_stats(r->ctx, c->h, &p->client_st);
			if (zc_close(r->ctx, c->h))
				h_failf(r, "zc_close of the client end failed");
			c->state = H_CLOSED;
			p->closed++;
		}
		break;
	case ZC_EV_ERROR:
		h_failf(r, "ERROR on the %s: %s", c == p->client ? "client" : "server",
			zc_strerror(ev->res));
		break;
	default:
		break;
	}
}

static bool both_closed(struct h_recv *r)
{
	return ((struct pair *)r->arg)->closed == 2;
}

static void test_connect_to_own_listener_both_ways(void **state)
{
	struct pair p = { .client_tx = { .seed = 5555, .total = BYTES },
			  .server_tx = { .seed = 6666, .total = BYTES } };
	struct h_recv r;
	char addr[32];
	zc_ctx *ctx;
	zc_handle l, c = 0;
	int port, cport;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	port = zc_local_port(ctx, l);
	assert_true(port > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_int_equal(zc_connect(ctx, addr, &c), 0);
	assert_int_not_equal(c, 0);
	assert_int_not_equal(c, l);

	h_recv_init(&r, ctx);
	r.listener = l;
	r.keep_open = true;
	r.on_event = on_event;
	r.arg = &p;
	p.client = h_recv_add(&r, c);
	p.client_tx.h = c;
	h_recv_until(&r, both_closed, 100);
	cport = p.server ? zc_local_port(ctx, p.server->h) : 0;
	h_check_ctx_stats(&r);
	zc_ctx_destroy(ctx);
	h_tx_fini(&p.client_tx);
	h_tx_fini(&p.server_tx);

	printf("# %u and %u short sends, %u WRITABLE events\n", p.client_tx.nshort,
	       p.server_tx.nshort, r.nwritable);
	h_assert_recv_ok(&r);
	assert_non_null(p.server);
	assert_int_equal(cport, -EBADF); /* closed by then */
	assert_true(p.client->connected);
	assert_int_equal(r.nconnected, 1);
	assert_int_equal(r.naccepted, 1);
	assert_int_equal(p.client->bytes, BYTES);
	assert_int_equal(p.client->v.seed, 6666);
	assert_int_equal(p.server->bytes, BYTES);
	assert_int_equal(p.server->v.seed, 5555);
	assert_false(p.client->bad);
	assert_false(p.server->bad);
	assert_int_equal(p.client_st.bytes_received, BYTES);
	assert_int_equal(p.server_st.bytes_received, BYTES);
	/* 16 MiB is more than both socket buffers hold */
	assert_true(p.client_tx.nshort > 0);
	assert_true(r.nwritable > 0);
	h_recv_fini(&r, true);
}

static void test_connect_refused(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct h_recv r;
	struct h_conn *c;
	char addr[32];
	zc_ctx *ctx;
	zc_handle h = 0;
	int fd;

	/* a port that is bound but not listening refuses connections */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(a.sin_port));

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_connect(ctx, addr, &h), 0);
	assert_int_not_equal(h, 0);
	h_recv_init(&r, ctx);
	c = h_recv_add(&r, h);
	h_recv_until_ended(&r, 1, 30);
	zc_ctx_destroy(ctx);
	close(fd);

	h_assert_recv_ok(&r);
	assert_non_null(c);
	assert_false(c->connected);
	assert_int_equal(c->end, H_ERROR);
	assert_int_equal(c->err, -ECONNREFUSED);
	assert_int_equal(c->state, H_CLOSED);
	h_recv_fini(&r, true);
}

/*
 * zc_shutdown() before CONNECTED is refused and changes nothing: the
 * connection then receives as any other. It used to return -ENOTCONN
 * (uring) or 0 (socket) and leave the read side shut either way, so the
 * first receive ended the stream. Found by fuzz_api.
 */
static void test_shutdown_while_connecting(void **state)
{
	uint64_t deadline = h_deadline_ms(20000);
	struct zc_event ev[8];
	zc_handle l, c, a = 0;
	bool connected = false, data = false;
	char addr[32];
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", zc_local_port(ctx, l));
	assert_int_equal(zc_connect(ctx, addr, &c), 0);
	assert_int_equal(zc_shutdown(ctx, c, SHUT_RD), -ENOTCONN);
	assert_int_equal(zc_shutdown(ctx, c, SHUT_RDWR), -ENOTCONN);
	while (!data && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 8, 100);

		for (int i = 0; i < n; i++) {
			assert_true(ev[i].type != ZC_EV_EOF && ev[i].type != ZC_EV_ERROR);
			if (ev[i].type == ZC_EV_ACCEPT)
				a = ev[i].conn;
			if (ev[i].type == ZC_EV_CONNECTED)
				connected = true;
			if (ev[i].type == ZC_EV_DATA) {
				assert_int_equal(ev[i].conn, c);
				assert_int_equal(ev[i].bytes, 5);
				assert_int_equal(zc_release(ctx, &ev[i].pieces[0]), 0);
				data = true;
			}
		}
		if (a && connected) {
			assert_int_equal(zc_send(ctx, a, "hello", 5), 5);
			a = 0;
		}
	}
	assert_true(data);
	zc_ctx_destroy(ctx);
}

static zc_handle accepted_on;

static void note_listener(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	if (ev->type == ZC_EV_ACCEPT)
		accepted_on = ev->listener;
}

static bool one_more_accepted(struct h_recv *r)
{
	return r->naccepted == r->target;
}

/* Accept one connection from a plain peer to @port; the listener named. */
static zc_handle accept_one(struct h_recv *r, uint16_t port, int *fd)
{
	accepted_on = 0;
	*fd = h_peer_connect(AF_INET, port);
	if (*fd < 0)
		return 0;
	r->target = r->naccepted + 1;
	h_recv_until(r, one_more_accepted, 20);
	return accepted_on;
}

static void test_two_listeners_accept_names_the_right_one(void **state)
{
	struct h_recv r;
	zc_ctx *ctx;
	zc_handle l1, l2;
	int p1, p2, fd1 = -1, fd2 = -1, fd3 = -1, refused = 0;
	zc_handle on1, on2;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l1), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l2), 0);
	assert_int_not_equal(l1, l2);
	p1 = zc_local_port(ctx, l1);
	p2 = zc_local_port(ctx, l2);
	assert_true(p1 > 0 && p2 > 0 && p1 != p2);
	h_recv_init(&r, ctx);
	r.keep_open = true;
	r.on_event = note_listener;
	on2 = accept_one(&r, (uint16_t)p2, &fd2);
	on1 = accept_one(&r, (uint16_t)p1, &fd1);

	/* a closed listener accepts no more: its port refuses (perhaps only
	 * once the engine has run) */
	assert_int_equal(zc_close(ctx, l1), 0);
	for (int i = 0; i < 40 && !refused; i++) {
		h_recv_step(&r);
		fd3 = h_peer_connect(AF_INET, (uint16_t)p1);
		if (fd3 == -ECONNREFUSED)
			refused = 1;
		else if (fd3 >= 0)
			close(fd3);
	}
	h_recv_step(&r);
	zc_ctx_destroy(ctx);
	if (fd1 >= 0)
		close(fd1);
	if (fd2 >= 0)
		close(fd2);

	h_assert_recv_ok(&r);
	assert_int_equal(on1, l1);
	assert_int_equal(on2, l2);
	assert_true(refused);
	assert_int_equal(r.naccepted, 2);
	h_recv_fini(&r, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_to_own_listener_both_ways),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_shutdown_while_connecting),
		cmocka_unit_test(test_two_listeners_accept_names_the_right_one),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
