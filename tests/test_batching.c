/*
 * test_batching.c - when an engine's waits gather data
 * (zc_config.batch_usec, counted in zc_stats.waits_gathered), checked on
 * counts, never on time:
 *  - a bulk stream gathers, wherever the engine shows "gather", and
 *    never elsewhere (batch_usec 0, a kernel without min_wait);
 *  - request/response traffic (100 KB requests, each answered with
 *    zc_send()) does not: a reply means the peer waits for it;
 *  - bursts of 100 KB with pauses between them, unanswered, gather only
 *    a few times before gathering pauses itself.
 * Every byte is checked against the pattern as it arrives.
 *
 * usage: test_batching ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "harness.h"

#define BULK_BYTES   (64 * MiB)
#define REQ_BYTES    (100 * 1000)
#define EXCHANGES    300
#define REPLY_BYTES  16
#define BURST_PAUSE_US 2000

static const char *engine;

/* A client on a thread of its own: EXCHANGES requests of REQ_BYTES of
 * pattern; with @replies it reads a REPLY_BYTES answer after each, else
 * it sleeps BURST_PAUSE_US between them. */
struct client {
	uint16_t port;
	bool replies;
	int err;
	pthread_t tid;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	static __thread char buf[64 * 1024];
	struct timespec pause = { 0, BURST_PAUSE_US * 1000L };
	int fd = h_peer_connect(AF_INET, c->port);

	if (fd < 0) {
		c->err = fd;
		return NULL;
	}
	for (uint64_t i = 0; i < EXCHANGES && !c->err; i++) {
		c->err = h_write_pattern(fd, 77, i * REQ_BYTES, REQ_BYTES, buf,
					 sizeof(buf));
		if (c->err || !c->replies) {
			nanosleep(&pause, NULL);
			continue;
		}
		for (size_t got = 0; got < REPLY_BYTES && !c->err;) {
			ssize_t n = read(fd, buf, REPLY_BYTES - got);

			if (n <= 0)
				c->err = n ? -errno : -EPIPE;
			got += n > 0 ? (size_t)n : 0;
		}
	}
	close(fd);
	return NULL;
}

/*
 * Receive the one connection of @ctx's listener until it ends, verifying
 * the pattern; with @reply, answer every REQ_BYTES received with
 * REPLY_BYTES. Returns the context's waits_gathered.
 */
static uint64_t serve(zc_ctx *ctx, bool reply)
{
	static const char answer[REPLY_BYTES] = "ok";
	uint64_t deadline = h_deadline_ms(90000), off = 0;
	struct zc_event ev[64];
	struct pat_verifier v;
	struct zc_stats st;
	uint64_t bad = 0;
	bool ended = false;

	pat_verifier_init(&v);
	while (!ended) {
		int n = h_wait(ctx, ev, 64, 100);

		assert_true(n >= 0);
		assert_false(h_expired(deadline));
		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_EOF || ev[i].type == ZC_EV_ERROR) {
				assert_int_equal(ev[i].type, ZC_EV_EOF);
				assert_int_equal(zc_close(ctx, ev[i].conn), 0);
				ended = true;
			}
			if (ev[i].type != ZC_EV_DATA)
				continue;
			for (unsigned k = 0; k < ev[i].npieces; k++) {
				const struct zc_piece *p = &ev[i].pieces[k];
				uint64_t before = off / REQ_BYTES;

				if (pat_verify(&v, p->data, p->len, &bad))
					fail_msg("wrong byte at offset %" PRIu64, bad);
				off += p->len;
				assert_int_equal(zc_release(ctx, p), 0);
				if (reply && off / REQ_BYTES != before)
					assert_int_equal(zc_send(ctx, ev[i].conn, answer,
								 sizeof(answer)),
							 sizeof(answer));
			}
		}
	}
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.pieces_outstanding, 0);
	return st.waits_gathered;
}

static zc_ctx *listening(uint16_t *port)
{
	zc_ctx *ctx;
	zc_handle l;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	*port = (uint16_t)zc_local_port(ctx, l);
	return ctx;
}

static void test_bulk_stream_gathers(void **state)
{
	struct h_sender s = { .bytes = BULK_BYTES, .seed = 4242 };
	zc_ctx *ctx = listening(&s.port);
	bool can = h_has_feature(ctx, "gather");
	uint64_t gathered;

	(void)state;
	assert_int_equal(h_sender_start(&s), 0);
	gathered = serve(ctx, false);
	assert_int_equal(h_sender_join(&s), 0);
	printf("# %s: gather %s, %" PRIu64 " waits gathered on a %llu MiB stream\n",
	       engine, can ? "on" : "off", gathered, BULK_BYTES / MiB);
	if (can)
		assert_true(gathered > 0);
	else
		assert_int_equal(gathered, 0);
	zc_ctx_destroy(ctx);
}

static uint64_t exchanges(bool replies)
{
	struct client c = { .replies = replies };
	zc_ctx *ctx = listening(&c.port);
	uint64_t gathered;

	assert_int_equal(pthread_create(&c.tid, NULL, client_main, &c), 0);
	gathered = serve(ctx, replies);
	assert_int_equal(pthread_join(c.tid, NULL), 0);
	assert_int_equal(c.err, 0);
	zc_ctx_destroy(ctx);
	return gathered;
}

/* Each request is answered: gathering would delay the next one. A
 * 100 KB request may still come in two runs, the first of them bulk; the
 * pause after each such disappointment doubles, so over the ~600 runs of
 * the test gathering happens about log2(600 / 16) + 1 = 6 times; 10
 * leaves room for a slow machine's extra runs. */
static void test_request_response_does_not_gather(void **state)
{
	uint64_t gathered = exchanges(true);

	(void)state;
	printf("# %s: %" PRIu64 " waits gathered in %d exchanges\n", engine,
	       gathered, EXCHANGES);
	assert_true(gathered <= EXCHANGES / 30);
}

/* Unanswered bursts: a gathering wait that brings one burst and nothing
 * after it pauses gathering, longer each time. */
static void test_bursts_gather_rarely(void **state)
{
	uint64_t gathered = exchanges(false);

	(void)state;
	printf("# %s: %" PRIu64 " waits gathered in %d bursts\n", engine,
	       gathered, EXCHANGES);
	assert_true(gathered <= EXCHANGES / 10);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bulk_stream_gathers),
		cmocka_unit_test(test_request_response_does_not_gather),
		cmocka_unit_test(test_bursts_gather_rarely),
	};

	engine = h_setup(argc, argv, true, 170);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
