/*
 * test_cookies.c - cookies over loopback, for every engine:
 *  - a stream received as a random mix of pieces and cookies, every byte
 *    written to a file at its stream offset (pieces with pwrite, cookies
 *    with zc_cookie_write), the file then verified against the pattern:
 *    nothing lost, duplicated or reordered between the two paths; also
 *    with the file opened O_DIRECT (unaligned cookies bounce);
 *  - cookies written to another socket (a splice proxy), verified by the
 *    reader at the far end;
 *  - cookies freed unwritten: their bytes are skipped, the rest verifies;
 *  - the end of the stream inside a take: a short cookie, then EOF;
 *  - bad calls.
 *
 * usage: test_cookies ENGINE
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define STREAM (48 * MiB)

static const char *engine;

/* Where the bytes of a stream go. */
enum sink {
	TO_FILE,   /* pieces and cookies to a file, at their stream offsets */
	TO_SOCKET, /* in stream order to a socket (a splice proxy) */
	FREE_SOME, /* pieces verified, cookies peeked at and freed */
};

struct run {
	zc_ctx *ctx;
	zc_handle conn;
	enum sink sink;
	int fd;              /* where cookies go */
	int piece_fd;        /* where pieces go */
	uint64_t rng;
	bool taking, ended;
	unsigned writes;     /* cookie writes in flight */
	uint64_t received;   /* stream bytes seen (pieces + cookies) */
	uint64_t skipped;    /* bytes of freed cookies (FREE_SOME) */
	struct pat_verifier v; /* FREE_SOME: checks pieces in order */
	unsigned ncookies, npieces_seen;
	struct zc_piece *later; /* TO_SOCKET: pieces behind a cookie write */
	size_t nlater, caplater;
};

static void start_take(struct run *r)
{
	size_t len = 1 + h_rand(&r->rng) % ZC_COOKIE_MAX;
	zc_cookie c;

	/* Freed cookies are skipped by the verifier, which must first have
	 * the seed; a proxy keeps one cookie write in flight at a time. */
	if ((r->sink == FREE_SOME && !r->v.have_seed) ||
	    (r->sink == TO_SOCKET && r->writes))
		return;
	assert_int_equal(zc_take(r->ctx, r->conn, len, &c), 0);
	assert_int_not_equal(c, 0);
	r->taking = true;
}

static void write_all(int fd, const void *data, size_t len, uint64_t off)
{
	const char *p = data;

	while (len) {
		ssize_t n = off == UINT64_MAX ? write(fd, p, len) : pwrite(fd, p, len, (off_t)off);

		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
		if (off != UINT64_MAX)
			off += (uint64_t)n;
	}
}

/* Forward the pieces a cookie write held back (TO_SOCKET). */
static void flush_later(struct run *r)
{
	for (size_t i = 0; i < r->nlater; i++) {
		write_all(r->piece_fd, r->later[i].data, r->later[i].len, UINT64_MAX);
		assert_int_equal(zc_release(r->ctx, &r->later[i]), 0);
	}
	r->nlater = 0;
}

static void on_data(struct run *r, const struct zc_event *ev)
{
	uint64_t off = ev->offset, bad;

	assert_int_equal(off, r->received);
	for (unsigned i = 0; i < ev->npieces; i++) {
		const struct zc_piece *p = &ev->pieces[i];

		if (r->sink == TO_SOCKET && r->writes) {
			if (r->nlater == r->caplater) {
				r->caplater = r->caplater ? 2 * r->caplater : 64;
				r->later = realloc(r->later, r->caplater * sizeof(*p));
				assert_non_null(r->later);
			}
			r->later[r->nlater++] = *p; /* kept until the cookie is out */
			off += p->len;
			continue;
		}
		if (r->sink == TO_FILE)
			write_all(r->piece_fd, p->data, p->len, off);
		else if (r->sink == TO_SOCKET)
			write_all(r->piece_fd, p->data, p->len, UINT64_MAX);
		else if (pat_verify(&r->v, p->data, p->len, &bad))
			fail_msg("piece mismatch at stream offset %llu",
				 (unsigned long long)bad);
		off += p->len;
		assert_int_equal(zc_release(r->ctx, p), 0);
	}
	r->received = off;
	r->npieces_seen += ev->npieces;
}

static void on_taken(struct run *r, const struct zc_event *ev)
{
	unsigned char head[16], want[16];
	ssize_t n;
	int again;

	assert_int_equal(ev->res, 0);
	assert_int_equal(ev->offset, r->received);
	r->taking = false;
	r->ncookies++;
	r->received += ev->bytes;
	n = zc_cookie_peek(r->ctx, ev->cookie, head, sizeof(head));
	assert_int_equal(n, ev->bytes < sizeof(head) ? ev->bytes : sizeof(head));
	if (r->sink == FREE_SOME) {
		pat_fill(r->v.seed, ev->offset, want, (size_t)n);
		assert_memory_equal(head, want, (size_t)n);
		assert_int_equal(zc_cookie_free(r->ctx, ev->cookie), 0);
		assert_int_equal(zc_cookie_free(r->ctx, ev->cookie), -EBADF);
		r->skipped += ev->bytes;
		r->v.off += ev->bytes; /* the verifier jumps over them */
		return;
	}
	assert_int_equal(zc_cookie_write(r->ctx, ev->cookie, r->fd,
					 r->sink == TO_SOCKET ? -1 : (int64_t)ev->offset, 0),
			 0);
	r->writes++;
	/* Written already (a synchronous engine) or still being written. */
	again = zc_cookie_write(r->ctx, ev->cookie, r->fd, 0, 0);
	assert_true(again == -EBUSY || again == -EBADF);
}

static void on_written(struct run *r, const struct zc_event *ev)
{
	assert_true(r->writes > 0);
	assert_int_equal(ev->res, 0);
	r->writes--;
	if (r->sink == TO_SOCKET)
		flush_later(r);
}

static void run_stream(struct run *r, uint64_t bytes, uint64_t seed)
{
	struct h_sender snd = { .nconns = 1, .bytes = bytes, .seed = seed };
	uint64_t deadline = h_deadline_ms(120000);
	struct zc_event ev[32];
	zc_handle l;

	pat_verifier_init(&r->v);
	assert_int_equal(h_ctx_create(engine, NULL, &r->ctx), 0);
	assert_int_equal(zc_listen(r->ctx, "127.0.0.1:0", 0, &l), 0);
	snd.port = (uint16_t)zc_local_port(r->ctx, l);
	assert_int_equal(h_sender_start(&snd), 0);
	/* A take made while the EOF was queued but not yet returned ends
	 * after it (an empty cookie): wait for that too. */
	while ((!r->ended || r->writes || r->taking) && !h_expired(deadline)) {
		int n = h_wait(r->ctx, ev, 32, 100);

		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			switch (ev[i].type) {
			case ZC_EV_ACCEPT:
				r->conn = ev[i].conn;
				break;
			case ZC_EV_DATA:
				on_data(r, &ev[i]);
				break;
			case ZC_EV_TAKEN:
				on_taken(r, &ev[i]);
				break;
			case ZC_EV_WRITTEN:
				on_written(r, &ev[i]);
				break;
			case ZC_EV_EOF:
				r->ended = true;
				break;
			default:
				fail_msg("unexpected event %d (res %d)", ev[i].type, ev[i].res);
			}
		}
		/* Take now and then, between pieces; the first as soon as
		 * possible, so that even a stream that comes in a few big
		 * batches has a cookie. */
		if (r->conn && !r->ended && !r->taking &&
		    (r->ncookies == 0 || h_rand(&r->rng) % 3 == 0))
			start_take(r);
	}
	assert_true(r->ended);
	assert_int_equal(r->writes, 0);
	assert_int_equal(h_sender_join(&snd), 0);
	assert_int_equal(r->received, bytes);
	print_message("%s: %u cookies, %u pieces\n", engine, r->ncookies, r->npieces_seen);
	assert_true(r->ncookies > 0);
	{
		struct zc_stats st;
		assert_int_equal(zc_ctx_stats(r->ctx, &st), 0);
		assert_int_equal(st.cookies_alive, 0);
		assert_int_equal(st.bytes_received + st.bytes_taken, bytes);
	}
	zc_ctx_destroy(r->ctx);
}

static void verify_file(int fd, uint64_t bytes)
{
	struct pat_verifier v;
	char *buf = malloc(1 << 20);
	uint64_t off = 0, bad;

	assert_non_null(buf);
	pat_verifier_init(&v);
	assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)bytes);
	while (off < bytes) {
		ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);

		assert_true(n > 0);
		if (pat_verify(&v, buf, (size_t)n, &bad))
			fail_msg("file mismatch at offset %llu", (unsigned long long)bad);
		off += (uint64_t)n;
	}
	free(buf);
}

static int temp_file(void)
{
	char path[] = "/tmp/zcnet-cookie-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void test_mixed_to_file(void **state)
{
	struct run r = { .sink = TO_FILE, .rng = h_test_seed("mixed") };

	r.fd = r.piece_fd = temp_file();
	run_stream(&r, STREAM, 11);
	verify_file(r.fd, STREAM);
	close(r.fd);
}

static void test_mixed_to_direct_file(void **state)
{
	struct run r = { .sink = TO_FILE, .rng = h_test_seed("direct") };
	char path[64];

	/* One file, opened twice: O_DIRECT for the cookies, buffered for
	 * the pieces (the test's own writes are not aligned). */
	r.piece_fd = temp_file();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r.piece_fd);
	r.fd = open(path, O_RDWR | O_DIRECT);
	if (r.fd < 0)
		skip(); /* a file system without O_DIRECT */
	run_stream(&r, 16 * MiB, 12);
	verify_file(r.piece_fd, 16 * MiB);
	close(r.fd);
	close(r.piece_fd);
}

/* The far end of the proxy: reads and verifies the whole stream. */
struct reader {
	int fd;
	uint64_t got;
	int bad;
	uint64_t bad_off;
	pthread_t tid;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct pat_verifier v;
	char *buf = malloc(1 << 16);
	ssize_t n;

	pat_verifier_init(&v);
	while (buf && (n = read(rd->fd, buf, 1 << 16)) > 0) {
		if (!rd->bad && pat_verify(&v, buf, (size_t)n, &rd->bad_off))
			rd->bad = 1;
		rd->got += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

static void test_cookies_to_socket(void **state)
{
	struct run r = { .sink = TO_SOCKET, .rng = h_test_seed("proxy") };
	struct reader rd = { 0 };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	r.fd = r.piece_fd = sv[0];
	rd.fd = sv[1];
	assert_int_equal(pthread_create(&rd.tid, NULL, reader_main, &rd), 0);
	run_stream(&r, 32 * MiB, 13);
	shutdown(sv[0], SHUT_WR);
	pthread_join(rd.tid, NULL);
	if (rd.bad)
		fail_msg("proxied stream mismatch at %llu", (unsigned long long)rd.bad_off);
	assert_int_equal(rd.got, 32 * MiB);
	free(r.later);
	close(sv[0]);
	close(sv[1]);
}

static void test_free_unwritten(void **state)
{
	struct run r = { .sink = FREE_SOME, .rng = h_test_seed("free") };

	run_stream(&r, 32 * MiB, 14);
	print_message("freed %llu bytes unwritten\n", (unsigned long long)r.skipped);
}

static void test_eof_inside_take(void **state)
{
	struct h_sender snd = { .nconns = 1, .bytes = 100000, .seed = 15 };
	uint64_t deadline = h_deadline_ms(20000);
	struct zc_event ev[8];
	bool taken = false, eof = false;
	uint64_t before = 0;
	zc_handle l, conn = 0;
	zc_cookie c = 0;
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	snd.port = (uint16_t)zc_local_port(ctx, l);
	assert_int_equal(h_sender_start(&snd), 0);
	assert_int_equal(h_sender_join(&snd), 0); /* all sent and closed */
	while (!eof && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 8, 100);

		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_ACCEPT) {
				conn = ev[i].conn;
				/* before any DATA of it: the whole stream */
				assert_int_equal(zc_take(ctx, conn, ZC_COOKIE_MAX, &c), 0);
			} else if (ev[i].type == ZC_EV_DATA) {
				/* received before the take was asked for */
				assert_false(taken);
				assert_int_equal(ev[i].offset, before);
				before += ev[i].bytes;
				for (unsigned j = 0; j < ev[i].npieces; j++)
					zc_release(ctx, &ev[i].pieces[j]);
			} else if (ev[i].type == ZC_EV_TAKEN) {
				assert_int_equal(ev[i].cookie, c);
				assert_int_equal(ev[i].res, 0);
				assert_int_equal(ev[i].offset, before);
				assert_int_equal(before + ev[i].bytes, 100000);
				assert_false(eof);
				taken = true;
			} else if (ev[i].type == ZC_EV_EOF) {
				assert_true(taken);
				eof = true;
			}
		}
	}
	assert_true(eof);
	assert_int_equal(zc_cookie_free(ctx, c), 0);
	zc_ctx_destroy(ctx);
}

/* Takes made while handling ZC_EV_TAKEN continue where the cookie ended:
 * once taking has begun, no pieces come in between. */
static void test_back_to_back_takes(void **state)
{
	struct h_sender snd = { .nconns = 1, .bytes = 8 * MiB + 12345, .seed = 16 };
	uint64_t deadline = h_deadline_ms(60000), before = 0, taken = 0;
	struct zc_event ev[8];
	unsigned ntaken = 0;
	bool eof = false;
	zc_handle l, conn = 0;
	zc_cookie c;
	zc_ctx *ctx;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	snd.port = (uint16_t)zc_local_port(ctx, l);
	assert_int_equal(h_sender_start(&snd), 0);
	while (!eof && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 8, 100);

		for (int i = 0; i < n; i++) {
			switch (ev[i].type) {
			case ZC_EV_ACCEPT:
				conn = ev[i].conn;
				assert_int_equal(zc_take(ctx, conn, 100000, &c), 0);
				break;
			case ZC_EV_DATA: /* only before the first take began */
				assert_int_equal(ntaken, 0);
				before += ev[i].bytes;
				for (unsigned j = 0; j < ev[i].npieces; j++)
					zc_release(ctx, &ev[i].pieces[j]);
				break;
			case ZC_EV_TAKEN:
				assert_int_equal(ev[i].res, 0);
				assert_int_equal(ev[i].offset, before + taken);
				taken += ev[i].bytes;
				ntaken++;
				assert_int_equal(zc_cookie_free(ctx, ev[i].cookie), 0);
				/* Short: the end of the stream (EOF follows), the
				 * pipe ran out of slots, or bytes in flight to us
				 * covered part of it (they came as DATA first).
				 * Take on regardless; the EOF ends the loop. */
				assert_int_equal(zc_take(ctx, conn, 100000, &c), 0);
				break;
			case ZC_EV_EOF:
				eof = true;
				break;
			default:
				fail_msg("unexpected event %d", ev[i].type);
			}
		}
	}
	assert_true(eof);
	assert_int_equal(h_sender_join(&snd), 0);
	assert_int_equal(before + taken, snd.bytes);
	print_message("%s: %llu bytes as pieces first, then %u takes\n", engine,
		      (unsigned long long)before, ntaken);
	zc_ctx_destroy(ctx);
}

static void test_bad_calls(void **state)
{
	zc_ctx *ctx;
	zc_handle l;
	zc_cookie c;
	char b[4];

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	assert_int_equal(zc_take(ctx, 0, 10, &c), -EBADF);
	assert_int_equal(zc_take(ctx, l, 10, &c), -EBADF); /* a listener */
	assert_int_equal(zc_take(NULL, l, 10, &c), -EBADF);
	assert_int_equal(zc_cookie_peek(ctx, 0, b, 4), -EBADF);
	assert_int_equal(zc_cookie_peek(ctx, 12345, b, 4), -EBADF);
	assert_int_equal(zc_cookie_write(ctx, 0, 1, 0, 0), -EBADF);
	assert_int_equal(zc_cookie_free(ctx, 0), -EBADF);
	assert_int_equal(zc_cookie_free(NULL, 99), -EBADF);
	zc_ctx_destroy(ctx);
}

/* A context of the engine under test listening on loopback, and one
 * plain peer connected to it and accepted: returns the connection and
 * sets *@ctx, *@l (the listener) and *@peer (the peer's socket). */
static zc_handle accept_peer(zc_ctx **ctx, zc_handle *l, int *peer)
{
	uint64_t deadline = h_deadline_ms(10000);
	struct zc_event ev[4];
	zc_handle conn = 0;

	assert_int_equal(h_ctx_create(engine, NULL, ctx), 0);
	assert_int_equal(zc_listen(*ctx, "127.0.0.1:0", 0, l), 0);
	*peer = h_peer_connect(AF_INET, (uint16_t)zc_local_port(*ctx, *l));
	assert_true(*peer >= 0);
	while (!conn && !h_expired(deadline)) {
		int n = h_wait(*ctx, ev, 4, 100);

		for (int i = 0; i < n; i++)
			if (ev[i].type == ZC_EV_ACCEPT)
				conn = ev[i].conn;
	}
	assert_int_not_equal(conn, 0);
	return conn;
}

/* A take that cannot finish (the peer sends nothing): what may and may
 * not be done meanwhile, and freeing it, then closing the connection. */
static void test_pending_take(void **state)
{
	struct zc_event ev[4];
	zc_handle l, conn;
	zc_cookie c, c2;
	struct zc_stats st;
	zc_ctx *ctx;
	char b[4];
	int peer;

	conn = accept_peer(&ctx, &l, &peer);
	assert_int_equal(zc_take(ctx, conn, 0, &c), -EINVAL);
	assert_int_equal(zc_take(ctx, conn, ZC_COOKIE_MAX + 1, &c), -EINVAL);
	assert_int_equal(zc_take(ctx, conn, 10, NULL), -EINVAL);
	assert_int_equal(zc_take(ctx, conn, 100, &c), 0);
	assert_int_equal(zc_take(ctx, conn, 10, &c2), -EBUSY);
	assert_int_equal(zc_cookie_peek(ctx, c, b, 4), -EBUSY);
	assert_int_equal(zc_cookie_write(ctx, c, 1, -1, 0), -EBUSY);
	/* Part of what the take wants: the take must wait without blocking
	 * the thread (a blocking splice from the socket would hang here). */
	assert_int_equal(write(peer, "0123456789", 10), 10);
	for (int i = 0; i < 4; i++) {
		int n = h_wait(ctx, ev, 4, 50);

		/* The uring engine may still have had a receive in flight:
		 * then the bytes come as a piece, before the take. */
		for (int k = 0; k < n; k++) {
			assert_int_equal(ev[k].type, ZC_EV_DATA);
			for (unsigned j = 0; j < ev[k].npieces; j++)
				assert_int_equal(zc_release(ctx, &ev[k].pieces[j]), 0);
		}
	}
	assert_int_equal(zc_cookie_free(ctx, c), 0);
	assert_int_equal(zc_cookie_free(ctx, c), -EBADF);
	assert_int_equal(zc_cookie_peek(ctx, c, b, 4), -EBADF);
	assert_int_equal(zc_close(ctx, conn), 0);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.cookies_alive, 0);
	close(peer);
	zc_ctx_destroy(ctx);
}

/* Accept one connection from a plain peer that sends @len bytes of
 * pattern and closes; receive until its EOF. Returns the connection. */
static zc_handle ended_conn(zc_ctx *ctx, size_t len)
{
	struct h_sender snd = { .nconns = 1, .bytes = len, .seed = 17 };
	uint64_t deadline = h_deadline_ms(20000);
	struct zc_event ev[8];
	zc_handle l, conn = 0;
	bool eof = false;

	assert_int_equal(zc_listen(ctx, "127.0.0.1:0", 0, &l), 0);
	snd.port = (uint16_t)zc_local_port(ctx, l);
	assert_int_equal(h_sender_start(&snd), 0);
	assert_int_equal(h_sender_join(&snd), 0);
	while (!eof && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 8, 100);

		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_ACCEPT)
				conn = ev[i].conn;
			for (unsigned j = 0; ev[i].type == ZC_EV_DATA && j < ev[i].npieces; j++)
				assert_int_equal(zc_release(ctx, &ev[i].pieces[j]), 0);
			eof |= ev[i].type == ZC_EV_EOF;
		}
	}
	assert_true(eof);
	assert_int_equal(zc_close(ctx, l), 0);
	return conn;
}

/*
 * A take is pending until zc_wait() returns its ZC_EV_TAKEN, even when it
 * ended at once (after the end of the stream, inside zc_take()): the
 * cookie is busy, a second take is refused, a free meanwhile leaves the
 * event naming no cookie, and closing the connection frees the cookie.
 * Found by fuzz_api: these used to depend on how far the engine had got.
 */
static void test_take_pending_until_event(void **state)
{
	struct zc_event ev[4];
	struct zc_stats st;
	zc_handle conn;
	zc_cookie c, c2;
	zc_ctx *ctx;
	char b[4];
	int n;

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	conn = ended_conn(ctx, 1000);
	assert_int_equal(zc_take(ctx, conn, 100, &c), 0);
	assert_int_equal(zc_take(ctx, conn, 100, &c2), -EBUSY);
	assert_int_equal(zc_cookie_peek(ctx, c, b, 4), -EBUSY);
	assert_int_equal(zc_cookie_write(ctx, c, 1, -1, 0), -EBUSY);
	assert_int_equal(zc_cookie_free(ctx, c), 0);
	assert_int_equal(zc_cookie_free(ctx, c), -EBADF);
	n = h_wait(ctx, ev, 4, 0);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].type, ZC_EV_TAKEN);
	assert_int_equal(ev[0].cookie, 0); /* freed: named by no event */
	assert_int_equal(ev[0].bytes, 0);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.cookies_alive, 0);

	/* Once the event is out, the next take may start; an empty cookie
	 * is written at once. */
	assert_int_equal(zc_take(ctx, conn, 100, &c), 0);
	assert_int_equal(h_wait(ctx, ev, 4, 0), 1);
	assert_int_equal(ev[0].cookie, c);
	assert_int_equal(zc_cookie_peek(ctx, c, b, 4), 0);
	assert_int_equal(zc_cookie_write(ctx, c, 1, -1, 0), 0);

	/* Closed before the event: the cookie goes with the connection. */
	assert_int_equal(zc_take(ctx, conn, 100, &c), 0);
	assert_int_equal(zc_close(ctx, conn), 0);
	assert_int_equal(zc_cookie_free(ctx, c), -EBADF);
	assert_int_equal(zc_ctx_stats(ctx, &st), 0);
	assert_int_equal(st.cookies_alive, 0);
	while ((n = h_wait(ctx, ev, 4, 0)) > 0)
		for (int i = 0; i < n; i++)
			assert_int_equal(ev[i].type, ZC_EV_WRITTEN);
	zc_ctx_destroy(ctx);
}

/* An empty cookie of a connection whose stream has ended. */
static zc_cookie empty_cookie(zc_ctx *ctx, zc_handle *conn)
{
	struct zc_event ev[4];
	zc_cookie c;

	*conn = ended_conn(ctx, 10);
	assert_int_equal(zc_take(ctx, *conn, 100, &c), 0);
	assert_int_equal(h_wait(ctx, ev, 4, 0), 1);
	assert_int_equal(ev[0].type, ZC_EV_TAKEN);
	assert_int_equal(ev[0].cookie, c);
	return c;
}

/*
 * ZC_WRITE_DSYNC to a pipe is refused before anything is written (it used
 * to move the bytes, then fail the fdatasync() with -EINVAL), and to a
 * file it works. Found by fuzz_api.
 */
static void test_dsync_needs_a_file(void **state)
{
	struct zc_event ev[4];
	zc_handle conn;
	zc_cookie c;
	zc_ctx *ctx;
	int p[2], fd = temp_file();

	assert_int_equal(pipe(p), 0);
	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	c = empty_cookie(ctx, &conn);
	assert_int_equal(zc_cookie_write(ctx, c, p[1], -1, ZC_WRITE_DSYNC), -EINVAL);
	assert_int_equal(zc_cookie_write(ctx, c, fd, 0, ZC_WRITE_DSYNC), 0);
	assert_int_equal(h_wait(ctx, ev, 4, 1000), 1);
	assert_int_equal(ev[0].type, ZC_EV_WRITTEN);
	assert_int_equal(ev[0].res, 0);
	zc_ctx_destroy(ctx);
	close(p[0]);
	close(p[1]);
	close(fd);
}

/* A WRITTEN event that comes after zc_close() names no connection: the
 * closed handle is named by no event. Found by fuzz_api. */
static void test_written_after_close(void **state)
{
	struct zc_event ev[4];
	zc_handle conn;
	zc_cookie c;
	zc_ctx *ctx;
	int fd = temp_file();

	assert_int_equal(h_ctx_create(engine, NULL, &ctx), 0);
	c = empty_cookie(ctx, &conn);
	assert_int_equal(zc_cookie_write(ctx, c, fd, 0, 0), 0);
	assert_int_equal(zc_close(ctx, conn), 0);
	assert_int_equal(h_wait(ctx, ev, 4, 1000), 1);
	assert_int_equal(ev[0].type, ZC_EV_WRITTEN);
	assert_int_equal(ev[0].cookie, c);
	assert_int_equal(ev[0].conn, 0);
	zc_ctx_destroy(ctx);
	close(fd);
}

/*
 * A take that fails after it has moved bytes (the peer resets) reports no
 * bytes, and the offsets go on from what the application was given: a
 * take after the end names that offset. The failed take's bytes used to
 * move the stream offset on unseen, and count as taken. Found by fuzz_api.
 */
static void test_failed_take_keeps_offsets(void **state)
{
	static char buf[16385];
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	uint64_t deadline = h_deadline_ms(20000), seen = 0, taken = 0;
	struct zc_event ev[8];
	struct zc_stats st;
	zc_handle l, conn;
	bool ended = false;
	zc_cookie c;
	zc_ctx *ctx;
	int peer;

	conn = accept_peer(&ctx, &l, &peer);
	assert_int_equal(zc_take(ctx, conn, 65536, &c), 0);
	assert_int_equal(write(peer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	for (int round = 0; !ended && round < 1000 && !h_expired(deadline); round++) {
		int n = h_wait(ctx, ev, 8, 20);

		if (round == 5) { /* the take has the bytes by now: reset */
			setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(peer);
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_DATA) { /* a receive in flight */
				assert_int_equal(ev[i].offset, seen);
				seen += ev[i].bytes;
				for (unsigned j = 0; j < ev[i].npieces; j++)
					zc_release(ctx, &ev[i].pieces[j]);
			} else if (ev[i].type == ZC_EV_TAKEN) {
				assert_int_equal(ev[i].offset, seen);
				if (ev[i].res < 0)
					assert_int_equal(ev[i].bytes, 0);
				else
					zc_cookie_free(ctx, ev[i].cookie);
				seen += ev[i].bytes;
				taken += ev[i].bytes;
			} else {
				ended |= ev[i].type == ZC_EV_ERROR || ev[i].type == ZC_EV_EOF;
			}
		}
	}
	assert_true(ended);
	assert_int_equal(zc_take(ctx, conn, 10, &c), 0);
	assert_int_equal(h_wait(ctx, ev, 8, 0), 1);
	assert_int_equal(ev[0].type, ZC_EV_TAKEN);
	assert_int_equal(ev[0].offset, seen);
	assert_int_equal(ev[0].bytes, 0);
	assert_int_equal(zc_conn_stats(ctx, conn, &st), 0);
	assert_int_equal(st.bytes_taken, taken);
	zc_cookie_free(ctx, c);
	zc_ctx_destroy(ctx);
}

/* Events of @conn for up to @ms: DATA bytes are checked against the
 * stream's offset @*off and counted; a TAKEN event's cookie is freed. */
static uint64_t drain_for(zc_ctx *ctx, uint64_t *off, int ms, bool *eof)
{
	uint64_t until = h_now_ms() + (uint64_t)ms, got = 0;
	struct zc_event ev[8];

	while (h_now_ms() < until && !*eof) {
		int n = h_wait(ctx, ev, 8, 20);

		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_EOF) {
				*eof = true;
				continue;
			}
			assert_int_equal(ev[i].type, ZC_EV_DATA);
			assert_int_equal(ev[i].offset, *off);
			*off += ev[i].bytes;
			got += ev[i].bytes;
			for (unsigned j = 0; j < ev[i].npieces; j++)
				assert_int_equal(zc_release(ctx, &ev[i].pieces[j]), 0);
		}
	}
	return got;
}

/* A paused connection receives nothing into pieces, takes still work and
 * leave it paused, and it receives again once started. */
static void test_pause(void **state)
{
	uint64_t deadline = h_deadline_ms(10000), off = 0;
	struct zc_event ev[4];
	zc_handle l, conn;
	char buf[10000];
	bool eof = false, taken = false;
	zc_cookie c;
	zc_ctx *ctx;
	int peer;

	memset(buf, 'p', sizeof(buf));
	conn = accept_peer(&ctx, &l, &peer);
	assert_int_equal(zc_pause(ctx, l, 1), -EBADF);
	assert_int_equal(zc_pause(ctx, 0, 1), -EBADF);
	assert_int_equal(zc_pause(ctx, conn, 1), 0);
	assert_int_equal(zc_pause(ctx, conn, 1), 0); /* twice: no change */
	assert_int_equal(drain_for(ctx, &off, 50, &eof), 0); /* the receive stops */
	assert_int_equal(write(peer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(drain_for(ctx, &off, 200, &eof), 0);

	assert_int_equal(zc_take(ctx, conn, 4000, &c), 0);
	while (!taken && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 4, 100);
		for (int i = 0; i < n; i++) {
			assert_int_equal(ev[i].type, ZC_EV_TAKEN);
			assert_int_equal(ev[i].offset, 0);
			assert_int_equal(ev[i].bytes, 4000);
			assert_int_equal(zc_cookie_free(ctx, ev[i].cookie), 0);
			taken = true;
		}
	}
	assert_true(taken);
	off = 4000;
	assert_int_equal(drain_for(ctx, &off, 200, &eof), 0); /* still paused */

	assert_int_equal(zc_pause(ctx, conn, 0), 0);
	close(peer);
	while (!eof && !h_expired(deadline))
		drain_for(ctx, &off, 100, &eof);
	assert_true(eof);
	assert_int_equal(off, sizeof(buf));
	zc_ctx_destroy(ctx);
}

/* The peer of the pipe-slot tests: 100-byte segments sent with sendfile()
 * from different pages of a file, so that each is a fragment of its own in
 * the receiver's socket: @nseg at once, @nseg_late once told to go on; then,
 * @linger_ms later, the end of its stream. Heap-allocated and with a
 * descriptor of its own, so that a test that fails and leaves early leaves
 * it nothing to trip over. */
struct trickle {
	int fd, file;
	size_t seg, nseg, nseg_late;
	unsigned linger_ms;
	int sent;  /* set (atomically) once the first @nseg are written */
	int go;    /* set (atomically) by the test: send the late ones */
	int err;   /* 0, or the errno of a failed sendfile() */
};

static void trickle_send(struct trickle *t, size_t from, size_t n)
{
	for (size_t i = from; i < from + n && !t->err; i++) {
		off_t at = (off_t)(i % 1024) * 4096;

		if (sendfile(t->fd, t->file, &at, t->seg) != (ssize_t)t->seg)
			t->err = errno ? errno : EIO;
	}
}

static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	int one = 1;

	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	trickle_send(t, 0, t->nseg);
	__atomic_store_n(&t->sent, 1, __ATOMIC_RELEASE);
	if (t->nseg_late) {
		for (int i = 0; i < 10000 && !__atomic_load_n(&t->go, __ATOMIC_ACQUIRE); i++)
			usleep(1000);
		trickle_send(t, t->nseg, t->nseg_late);
	}
	usleep(t->linger_ms * 1000u);
	shutdown(t->fd, SHUT_WR);
	close(t->fd);
	return NULL;
}

/* What run_trickle() saw. */
struct trickle_run {
	uint64_t total, taken, first, first_ms;
	unsigned ntaken;
	bool eof;
};

/*
 * @nseg segments of 100 bytes queued while the connection is paused, then
 * taken with takes of ZC_COOKIE_MAX, each started when the last one ended;
 * @nseg_late more once the first take has started. The peer ends its
 * stream @linger_ms after its last segment.
 */
/* Can a pipe be sized to ZC_COOKIE_MAX here (pipe-max-size, per-user
 * pipe limits)? The slot counts of these tests assume it. */
static bool cookie_pipes_full_size(void)
{
	int p[2], got;

	if (pipe(p))
		return false;
	got = fcntl(p[1], F_SETPIPE_SZ, ZC_COOKIE_MAX);
	close(p[0]);
	close(p[1]);
	return got >= (int)ZC_COOKIE_MAX;
}

static struct trickle_run run_trickle(size_t nseg, size_t nseg_late,
				      unsigned linger_ms)
{
	char path[] = "/tmp/zcnet-test-trickle.XXXXXX", page[4096];
	struct trickle *t = calloc(1, sizeof(*t));
	struct trickle_run r = { 0 };
	uint64_t deadline = h_deadline_ms(20000), off = 0, t0;
	struct zc_event ev[8];
	zc_handle l, conn;
	pthread_t tid;
	zc_cookie c;
	zc_ctx *ctx;
	int peer;

	if (!cookie_pipes_full_size()) {
		free(t);
		print_message("pipes cannot hold %u bytes here\n", ZC_COOKIE_MAX);
		skip();
	}
	assert_non_null(t);
	t->seg = 100;
	t->nseg = nseg;
	t->nseg_late = nseg_late;
	t->linger_ms = linger_ms;
	r.total = (uint64_t)t->seg * (nseg + nseg_late);
	t->file = mkstemp(path);
	assert_true(t->file >= 0);
	unlink(path);
	memset(page, 't', sizeof(page));
	for (int i = 0; i < 1024; i++)
		assert_int_equal(write(t->file, page, sizeof(page)), (ssize_t)sizeof(page));

	conn = accept_peer(&ctx, &l, &peer);
	t->fd = dup(peer);
	assert_true(t->fd >= 0);
	assert_int_equal(zc_pause(ctx, conn, 1), 0);
	assert_int_equal(drain_for(ctx, &off, 50, &r.eof), 0);
	assert_int_equal(pthread_create(&tid, NULL, trickle_main, t), 0);
	while (!__atomic_load_n(&t->sent, __ATOMIC_ACQUIRE) && !h_expired(deadline))
		drain_for(ctx, &off, 10, &r.eof); /* paused: they queue up */
	drain_for(ctx, &off, 100, &r.eof); /* the last ones land */
	assert_int_equal(off, 0);

	t0 = h_now_ms();
	assert_int_equal(zc_take(ctx, conn, ZC_COOKIE_MAX, &c), 0);
	if (nseg_late) { /* once the take has spliced what is there */
		drain_for(ctx, &off, 50, &r.eof);
		__atomic_store_n(&t->go, 1, __ATOMIC_RELEASE);
	}
	while (!r.eof && !h_expired(deadline)) {
		int n = h_wait(ctx, ev, 8, 50);

		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_EOF) {
				r.eof = true;
				continue;
			}
			assert_int_equal(ev[i].type, ZC_EV_TAKEN);
			assert_int_equal(ev[i].res, 0);
			assert_int_equal(ev[i].offset, r.taken);
			r.taken += ev[i].bytes;
			if (!r.ntaken++) {
				r.first_ms = h_now_ms() - t0;
				r.first = ev[i].bytes;
			}
			assert_int_equal(zc_cookie_free(ctx, ev[i].cookie), 0);
			assert_int_equal(zc_take(ctx, conn, ZC_COOKIE_MAX, &c), 0);
		}
	}
	assert_true(r.eof); /* else the thread may still run: t is kept */
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(t->err, 0);
	close(t->file);
	free(t);
	close(peer);
	zc_cookie_free(ctx, c);
	zc_ctx_destroy(ctx);
	print_message("%s: %llu bytes in %u takes; the first, %llu bytes, ended after %llu ms\n",
		      engine, (unsigned long long)r.taken, r.ntaken,
		      (unsigned long long)r.first, (unsigned long long)r.first_ms);
	return r;
}

/* run_trickle() with a peer that waits 2 s before its FIN: every byte
 * arrives, and the first take ends well before the stream does. */
static void first_take_ends_early(size_t nseg, size_t nseg_late)
{
	struct trickle_run r = run_trickle(nseg, nseg_late, 2000);

	assert_int_equal(r.taken, r.total);
	if (r.first == r.total) /* the kernel merged the fragments */
		skip();
	assert_true(r.first_ms < 1000);
}

/*
 * A pipe holds one payload fragment per slot, so tiny segments fill it
 * long before its bytes (a 1 MiB pipe, 256 slots: 25,600 bytes of these).
 * A take then ends short as soon as the pipe is full, with bytes still
 * queued, not once the rest of what it asked for has come: here the rest
 * never comes while the peer waits (2 s). The takes after it carry on
 * where it ended; the last ends with the stream. 400 fragments: more than
 * the slots, too few for the receiver to run short of memory (that would
 * wake the take too).
 */
static void test_pipe_out_of_slots(void **state)
{
	first_take_ends_early(400, 0);
}

/*
 * The pipe runs out of slots while the take waits: 200 fragments queued,
 * the take splices them and waits with a low-water mark for the rest of
 * its 1 MiB; 100 more come, 10,000 bytes, far below the mark and more than
 * the 56 slots left. No wake-up comes for them until the stream ends (2 s
 * later); zcnet's periodic look at such takes ends it in a fraction of a
 * second.
 */
static void test_pipe_fills_while_waiting(void **state)
{
	first_take_ends_early(200, 100);
}

/* The pipe's last slot filled by the last segment before the end of the
 * stream: a full pipe fails a splice() before the socket is looked at,
 * the end of the stream included. The take ends full; the next one is
 * empty, with the EOF. */
static void test_pipe_full_at_eof(void **state)
{
	struct trickle_run r = run_trickle(256, 0, 0);

	assert_int_equal(r.taken, r.total);
	if (r.first == r.total && r.ntaken == 1)
		return; /* the end of the stream was seen with the bytes */
	assert_true(r.first_ms < 1000);
}

/* Events of @ctx for @ms: none but one ZC_EV_TAKEN allowed; its byte
 * count, or -1 if none came. */
static long long taken_within(zc_ctx *ctx, int ms)
{
	uint64_t until = h_now_ms() + (uint64_t)ms;
	struct zc_event ev[4];
	long long got = -1;

	while (got < 0 && h_now_ms() < until) {
		int n = h_wait(ctx, ev, 4, 20);

		for (int i = 0; i < n; i++) {
			assert_int_equal(ev[i].type, ZC_EV_TAKEN);
			assert_int_equal(ev[i].res, 0);
			got = (long long)ev[i].bytes;
			assert_int_equal(zc_cookie_free(ctx, ev[i].cookie), 0);
		}
	}
	return got;
}

/* The periodic look at waiting takes leaves alone one whose pipe has
 * room: bytes below its mark come, looks pass, and the take still ends
 * only once all it asked for is there. */
static void test_waiting_take_keeps_waiting(void **state)
{
	static char buf[100000];
	zc_handle l, conn;
	zc_cookie c;
	zc_ctx *ctx;
	int peer;

	uint64_t off = 0;
	bool eof = false;

	memset(buf, 'w', sizeof(buf));
	conn = accept_peer(&ctx, &l, &peer);
	/* Paused first: no receive in flight whose bytes would come as DATA
	 * and shorten the cookie. */
	assert_int_equal(zc_pause(ctx, conn, 1), 0);
	assert_int_equal(drain_for(ctx, &off, 50, &eof), 0);
	assert_int_equal(zc_take(ctx, conn, sizeof(buf), &c), 0);
	assert_int_equal(write(peer, buf, 30000), 30000);
	assert_int_equal(taken_within(ctx, 300), -1);
	assert_int_equal(write(peer, buf, 20000), 20000); /* below the mark */
	assert_int_equal(taken_within(ctx, 700), -1); /* three looks or more */
	assert_int_equal(write(peer, buf, 50000), 50000);
	assert_int_equal(taken_within(ctx, 5000), (long long)sizeof(buf));
	close(peer);
	zc_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed_to_file),
		cmocka_unit_test(test_mixed_to_direct_file),
		cmocka_unit_test(test_cookies_to_socket),
		cmocka_unit_test(test_free_unwritten),
		cmocka_unit_test(test_eof_inside_take),
		cmocka_unit_test(test_back_to_back_takes),
		cmocka_unit_test(test_bad_calls),
		cmocka_unit_test(test_pending_take),
		cmocka_unit_test(test_take_pending_until_event),
		cmocka_unit_test(test_dsync_needs_a_file),
		cmocka_unit_test(test_written_after_close),
		cmocka_unit_test(test_failed_take_keeps_offsets),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_pipe_out_of_slots),
		cmocka_unit_test(test_pipe_full_at_eof),
		cmocka_unit_test(test_pipe_fills_while_waiting),
		cmocka_unit_test(test_waiting_take_keeps_waiting),
	};

	engine = h_setup(argc, argv, true, 300);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
