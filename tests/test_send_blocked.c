/*
 * test_send_blocked.c - zc_send() to a peer that stops reading: once the
 * kernel's buffers are full, zc_send() takes nothing more (-EAGAIN, or a
 * short count) and zcnet keeps no copy of its own: thousands of refused
 * 256 KiB sends leave the process's memory where it was, no WRITABLE
 * event comes while the peer sleeps, exactly one comes once it reads, and
 * the peer then gets exactly the bytes zc_send() said it took, in order.
 *
 * usage: test_send_blocked ENGINE
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "harness.h"

#ifdef __SANITIZE_ADDRESS__
void __sanitizer_purge_allocator(void); /* sanitizer/allocator_interface.h */
#endif

#define STREAM_BYTES (64 * MiB)
#define CHUNK        (256 * KiB)
#define TRIES        4000
#define RSS_SLACK    (1 * MiB)

static const char *engine;

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f;

#ifdef __SANITIZE_ADDRESS__
	__sanitizer_purge_allocator(); /* see test_churn.c */
#endif
	f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The peer: reads and verifies everything to EOF once told to start. */
struct reader {
	int fd;
	pthread_t tid;
	int go;          /* atomic */
	uint64_t got;
	int err;
	char msg[128];
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct pat_verifier v;
	char *buf = malloc(CHUNK);
	uint64_t bad;

	pat_verifier_init(&v);
	while (!__atomic_load_n(&rd->go, __ATOMIC_ACQUIRE))
		usleep(1000);
	for (; buf;) {
		ssize_t n = recv(rd->fd, buf, CHUNK, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rd->err = -errno;
			snprintf(rd->msg, sizeof(rd->msg), "recv: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (pat_verify(&v, buf, (size_t)n, &bad)) {
			rd->err = -EILSEQ;
			snprintf(rd->msg, sizeof(rd->msg), "pattern mismatch at %" PRIu64, bad);
			break;
		}
		rd->got += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

static void test_send_to_a_peer_that_stops_reading(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct h_tx tx = { .total = STREAM_BYTES, .seed = 0xb10cced };
	struct reader rd = { .fd = -1 };
	struct zc_event evs[16];
	char addr[32], *chunk = malloc(CHUNK);
	uint64_t rss_blocked, rss_after, dl, taken_late = 0;
	unsigned eagain = 0, shorts = 0, writable = 0, writable_early = 0;
	unsigned waits_after_close = 0;
	zc_ctx *ctx;
	bool connected = false;
	int lfd, n, st;

	(void)tx.blocked;

	assert_non_null(chunk);
	pat_fill(0x5eed, 0, chunk, CHUNK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_connect(ctx, addr, &tx.h), 0);
	for (dl = h_deadline_ms(10000); !connected && !h_expired(dl);) {
		n = h_wait(ctx, evs, 16, 100);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(evs[i].type, ZC_EV_CONNECTED);
			connected = true;
		}
	}
	assert_true(connected);
	rd.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(rd.fd >= 0);
	assert_int_equal(pthread_create(&rd.tid, NULL, reader_main, &rd), 0);

	/* fill the kernel's buffers: the peer reads nothing yet */
	for (dl = h_deadline_ms(10000); !h_expired(dl);) {
		ssize_t r;

		pat_fill(tx.seed, tx.off, chunk, CHUNK);
		r = zc_send(ctx, tx.h, chunk, CHUNK);
		if (r == -EAGAIN)
			break; /* full: not a byte more */
		assert_true(r > 0 && r <= (ssize_t)CHUNK);
		tx.off += (uint64_t)r;
		assert_true(tx.off < tx.total); /* 64 MiB fit in no socket buffer */
	}
	rss_blocked = rss_bytes();

	/* thousands more sends: refused, not buffered */
	for (unsigned i = 0; i < TRIES; i++) {
		ssize_t r;

		pat_fill(tx.seed, tx.off, chunk, CHUNK);
		r = zc_send(ctx, tx.h, chunk, CHUNK);
		if (r == -EAGAIN) {
			eagain++;
			continue;
		}
		assert_true(r > 0 && r <= (ssize_t)CHUNK);
		shorts++; /* the kernel made a little room (ACK'd segments) */
		tx.off += (uint64_t)r;
		taken_late += (uint64_t)r;
	}
	n = h_wait(ctx, evs, 16, 200);
	assert_true(n >= 0);
	for (int i = 0; i < n; i++)
		writable_early += evs[i].type == ZC_EV_WRITABLE;
	rss_after = rss_bytes();
	printf("# %llu KiB taken before the peer read anything; %u of %u "
	       "more sends refused (-EAGAIN), %" PRIu64 " bytes taken by the rest;"
	       " RSS %.1f -> %.1f MiB\n", (unsigned long long)(tx.off / KiB), eagain, TRIES, taken_late,
	       rss_blocked / (double)MiB, rss_after / (double)MiB);

	/* the peer reads: WRITABLE, then the rest of the stream */
	__atomic_store_n(&rd.go, 1, __ATOMIC_RELEASE);
	if (writable_early) /* consumed above: send again, or none is owed */
		assert_true(h_tx_pump(ctx, &tx) >= 0);
	for (dl = h_deadline_ms(60000); tx.off < tx.total && !h_expired(dl);) {
		n = h_wait(ctx, evs, 16, 100);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(evs[i].type, ZC_EV_WRITABLE);
			writable++;
			st = h_tx_pump(ctx, &tx);
			assert_true(st >= 0);
		}
	}
	assert_int_equal(zc_close(ctx, tx.h), 0);
	/* the peer gets the rest and the end of the stream without another
	 * zc_wait(): the application may well block on something else now */
	for (dl = h_deadline_ms(40000);;) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += waits_after_close ? 0 : 10;
		ts.tv_nsec += 100 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_timedjoin_np(rd.tid, NULL, &ts) == 0)
			break;
		if (h_expired(dl)) {
			fprintf(stderr, "the peer never saw the end of the stream\n");
			abort();
		}
		waits_after_close++; /* not within 10 s: does a wait help? */
		h_wait(ctx, evs, 16, 0);
	}
	close(rd.fd);
	close(lfd);
	zc_ctx_destroy(ctx);
	h_tx_fini(&tx);
	free(chunk);

	printf("# %u WRITABLE events while the peer slept, %u after; the peer "
	       "verified %" PRIu64 " bytes; %u zc_wait() calls after zc_close()\n",
	       writable_early, writable, rd.got, waits_after_close);
	if (rd.err)
		fail_msg("peer: %s", rd.msg);
	assert_true(eagain > TRIES / 2);
	if (!shorts) /* nothing could be taken: nothing to announce */
		assert_int_equal(writable_early, 0);
	assert_true(writable > 0);
	assert_int_equal(tx.off, STREAM_BYTES);
	assert_int_equal(rd.got, STREAM_BYTES);
	assert_true(rss_after <= rss_blocked + RSS_SLACK);
	assert_int_equal(waits_after_close, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_to_a_peer_that_stops_reading),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
