/*
 * test_accept_backoff.c - accepting when the process runs out of
 * descriptors (EMFILE): zcnet pauses accepting instead of spinning on the
 * error, keeps serving the connections it already has, and accepts the
 * waiting ones once descriptors are free again.
 *
 * usage: test_accept_backoff ENGINE
 */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define NCLIENTS 8
#define ROOM 3 /* accepts the lowered limit leaves room for */

static const char *engine;

static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own descriptor */
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Wait until @ctx has accepted @n connections in all (or @ms pass); DATA
 * events count their bytes into *@data. Returns the number accepted. */
static unsigned accept_until(zc_ctx *ctx, zc_handle *conns, unsigned have,
			     unsigned n, uint64_t *data, unsigned ms)
{
	uint64_t deadline = h_deadline_ms(ms);
	struct zc_event ev[16];

	while (have < n && !h_expired(deadline)) {
		int got = h_wait(ctx, ev, 16, 100);

		assert_true(got >= 0);
		for (int i = 0; i < got; i++) {
			if (ev[i].type == ZC_EV_ACCEPT)
				conns[have++] = ev[i].conn;
			if (ev[i].type != ZC_EV_DATA)
				continue;
			*data += ev[i].bytes;
			for (unsigned j = 0; j < ev[i].npieces; j++)
				assert_int_equal(zc_release(ctx, &ev[i].pieces[j]), 0);
		}
	}
	return have;
}

static void test_emfile_pauses_and_recovers(void **state)
{
	zc_handle l, conns[NCLIENTS];
	int clients[NCLIENTS];
	struct rlimit old, low;
	uint64_t data = 0;
	unsigned n;
	double cpu;
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	/* The clients connect first: the kernel completes their handshakes
	 * into the backlog, whether or not zcnet can accept them. */
	for (int i = 0; i < NCLIENTS; i++) {
		clients[i] = h_peer_connect(AF_INET, (uint16_t)zc_local_port(ctx, l));
		assert_true(clients[i] >= 0);
	}
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = open_fds() + ROOM;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

	n = accept_until(ctx, conns, 0, ROOM, &data, 5000);
	assert_true(n >= ROOM);
	/* Out of descriptors now: waiting must not spin on EMFILE, and an
	 * accepted connection must still be served. */
	assert_int_equal(write(clients[0], "hello", 5), 5);
	cpu = cpu_seconds();
	n = accept_until(ctx, conns, n, NCLIENTS, &data, 1000);
	cpu = cpu_seconds() - cpu;
	print_message("during 1 s of EMFILE: %.3f CPU s, %u accepted, %llu bytes\n",
		      cpu, n, (unsigned long long)data);
	assert_true(n < NCLIENTS); /* the limit held some back */
	assert_int_equal(data, 5);
	assert_true(cpu < 0.5); /* a spinning loop would use all of it */

	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	n = accept_until(ctx, conns, n, NCLIENTS, &data, 5000);
	assert_int_equal(n, NCLIENTS);

	for (int i = 0; i < NCLIENTS; i++) {
		close(clients[i]);
		assert_int_equal(zc_close(ctx, conns[i]), 0);
	}
	zc_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_emfile_pauses_and_recovers),
	};

	engine = h_setup(argc, argv, true, 60);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
