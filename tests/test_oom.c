/*
 * test_oom.c - an event zcnet cannot queue for lack of memory is never
 * lost silently:
 *  - zc_wait() returns -ENOMEM, and again on every later call, even with
 *    memory back;
 *  - the peers of the broken context see their connections reset, not
 *    ended, so no peer takes a cut stream for a whole one.
 *
 * The failure is injected by linking with --wrap=realloc: while
 * fail_queue is set, the realloc() that makes the event queue room for 64
 * events or more (a multiple of sizeof(struct zc_qevent)) fails, so the
 * first event, an ACCEPT, cannot be queued.
 *
 * usage: test_oom ENGINE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "harness.h"
#include "internal.h"

#define PEERS 8

static const char *engine;
static volatile bool fail_queue;

void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);

void *__wrap_realloc(void *p, size_t size)
{
	const size_t ev = sizeof(struct zc_qevent);

	if (fail_queue && size % ev == 0 && size / ev >= 64) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, size);
}

/* Connect PEERS clients and send a byte each; returns how many. */
static int connect_peers(uint16_t port, int *fds)
{
	int n = 0;

	for (int i = 0; i < PEERS; i++) {
		fds[i] = h_peer_connect(AF_INET, port);
		if (fds[i] < 0)
			break;
		assert_int_equal(write(fds[i], "x", 1), 1);
		n++;
	}
	return n;
}

/* What a peer reads after the server side went away: 0 (EOF) or -errno. */
static int peer_outcome(int fd)
{
	char buf[16];
	ssize_t n;

	shutdown(fd, SHUT_WR);
	do /* EINTR: zc_ctx_destroy() may interrupt one system call */
		n = read(fd, buf, sizeof(buf));
	while (n > 0 || (n < 0 && errno == EINTR));
	return n < 0 ? -errno : 0;
}

static void test_lost_event_breaks_the_context(void **state)
{
	struct zc_event ev[256];
	int fds[PEERS], npeers, err = 0, events = 0, resets = 0;
	uint64_t deadline = h_deadline_ms(30000);
	zc_handle l;
	zc_ctx *ctx;

	(void)state;
	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	npeers = connect_peers((uint16_t)zc_local_port(ctx, l), fds);
	assert_int_equal(npeers, PEERS);
	fail_queue = true;
	while (err == 0 && !h_expired(deadline)) {
		int n = zc_wait(ctx, ev, 256, 100);

		if (n < 0) {
			err = n;
			break;
		}
		events += n;
	}
	fail_queue = false;
	printf("# %s: %d events, then %s\n", engine, events, zc_strerror(err));
	assert_int_equal(err, -ENOMEM);
	assert_int_equal(events, 0);
	/* It stays broken, even with memory back. */
	assert_int_equal(zc_wait(ctx, ev, 256, 0), -ENOMEM);
	assert_int_equal(zc_wait(ctx, ev, 256, 10), -ENOMEM);
	zc_ctx_destroy(ctx);
	/* A peer accepted unannounced is reset at destroy; one left in the
	 * backlog is reset when the listener closes. */
	for (int i = 0; i < npeers; i++) {
		int r = peer_outcome(fds[i]);

		if (r == -ECONNRESET)
			resets++;
		else
			printf("# peer %d: %s\n", i, r ? strerror(-r) : "end of stream");
		close(fds[i]);
	}
	assert_int_equal(resets, npeers);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lost_event_breaks_the_context),
	};

	engine = h_setup(argc, argv, true, 60);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
