/*
 * fuzz_api.c - libFuzzer target driving the public API with random call
 * sequences, valid and invalid, against loopback peers.
 *
 * Each input is a short program run on a context of its own: the first
 * byte picks the pool, then each byte is an operation whose arguments
 * are the bytes after it. Connections come in pairs, each pair on a
 * listener of its own (so an ACCEPT tells which pair it completes): two
 * zcnet ends (zc_connect to the listener), or a zcnet end accepted from
 * a plain socket the target holds. Every end sends a pattern that
 * depends on its seed and the stream offset, so every byte a receiver
 * sees, in pieces or in cookies, can be checked where it lands.
 *
 * What is checked, with abort() so that libFuzzer reports it:
 *  - calls return 0, a count, or a negative errno; stale and forged
 *    handles, pieces and cookies give the documented error;
 *  - events name live handles and come in the documented order, DATA
 *    and TAKEN offsets follow each other, the bytes match the pattern;
 *  - the statistics agree with what the target holds;
 *  - streams nobody broke deliver every byte once pieces come back;
 *  - after everything is released and closed the counters are zero, and
 *    destroying the context leaves no descriptor behind.
 *
 * The engine configuration is ZCNET_FUZZ_ENGINE: uring (default),
 * uring-nobundle, uring-oneshot, uring-nobatch, socket or mmap (see
 * tests/engine_config.h). With
 * ZCNET_FUZZ_TRACE=1 each operation and event is printed (to read a
 * crash: `fuzz_api CRASH-FILE`). Inputs that once found a bug are kept in
 * corpus-api/ as regress-*, and replayed by the test suite.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zcnet.h"
#include "engine_config.h"

#define MAX_ENDS 12
#define MAX_LISTENERS 8
#define MAX_HELD 96
#define MAX_COOKIES 16
#define MAX_ZCSENDS 32
#define MAX_OPS 160
#define SEND_MAX (256u * 1024)
#define PAT_PERIOD 1048573u /* a prime: pattern positions rarely collide */
#define SLOT_SIZE ((off_t)ZC_COOKIE_MAX + 8192)
#define SETTLE_MS 3000

#define FAIL(...) fail(__LINE__, __VA_ARGS__)
/* ZCNET_FUZZ_TRACE=1: say what each operation and event was. */
#define TRACE(...) do { if (tracing) fprintf(stderr, __VA_ARGS__); } while (0)

static bool tracing;

static void fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void fail(int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_api:%d: ", line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* --- the pattern: byte @off of a stream seeded @seed --- */

static uint8_t pat[PAT_PERIOD + SEND_MAX];

static const uint8_t *pat_at(uint32_t seed, uint64_t off)
{
	return &pat[(seed + off) % PAT_PERIOD];
}

static bool pat_ok(uint32_t seed, uint64_t off, const void *data, size_t len)
{
	const uint8_t *d = data;

	while (len) {
		size_t n = len < SEND_MAX ? len : SEND_MAX;

		if (memcmp(d, pat_at(seed, off), n))
			return false;
		d += n;
		off += n;
		len -= n;
	}
	return true;
}

/* --- the state of one run --- */

enum end_kind { E_NONE = 0, E_ZC, E_PLAIN };

/* One end of a connection. Bytes flow from an end to its peer. */
struct end {
	enum end_kind kind;
	zc_handle h;        /* E_ZC: 0 until accepted */
	int fd;             /* E_PLAIN */
	int peer;           /* index of the other end */
	int listener;       /* index of the listener that accepts it, or -1 */
	uint32_t seed;      /* of the bytes this end sends */
	uint64_t tx;        /* bytes this end has sent */
	uint64_t rx;        /* bytes this end has been given */
	uint64_t rx_data;   /* ... of them in DATA events */
	uint64_t rx_taken;  /* ... in TAKEN events */
	bool closed;        /* closed by the target: no event may name it */
	bool connected;     /* E_ZC: ACCEPT or CONNECTED seen */
	bool ended;         /* EOF or ERROR seen (or plain: read end) */
	bool shut_wr;       /* sends no more */
	bool no_send;       /* must send no more: its peer closed */
	bool broken;        /* stream may lose bytes: reset, SHUT_RD, error */
	int take;           /* cookie slot of the pending take, or -1 */
	bool take_orphan;   /* ... freed by the target meanwhile */
};

struct lsn {
	zc_handle h;
	bool closed;
	int end;            /* the end it is to accept */
};

enum ck_state { C_NONE = 0, C_TAKING, C_TAKEN, C_WRITING };
enum ck_target { T_NULL, T_MEMFD, T_PIPE };

struct cookie {
	enum ck_state state;
	zc_cookie c;
	int end;
	uint64_t off;       /* stream offset of its first byte */
	size_t len;
	enum ck_target target;
	off_t at;           /* T_MEMFD: where it is written */
};

struct held {
	struct zc_piece p;
	int end;
};

struct zcsend {
	uint64_t tag;
	size_t bytes;
	int end;
};

struct run {
	const uint8_t *in;
	size_t n, pos;
	zc_ctx *ctx;
	bool may_copy;
	struct end ends[MAX_ENDS];
	int nends;
	struct lsn lsns[MAX_LISTENERS];
	int nlsns;
	struct held held[MAX_HELD];
	int nheld;
	bool hold;                  /* keep pieces instead of releasing */
	struct zc_piece gone[8];    /* released pieces, for double releases */
	unsigned ngone;
	struct cookie cks[MAX_COOKIES];
	unsigned orphans;           /* cookies freed while in flight */
	struct zcsend zs[MAX_ZCSENDS];
	int nzs;
	uint64_t next_tag;
	bool pipe_busy;             /* a cookie write to the pipe in flight */
	zc_handle stale[8];
	unsigned nstale;
	zc_cookie stale_ck[8];
	unsigned nstale_ck;
};

/* Descriptors kept for the whole process, outside the leak count. */
static int devnull = -1, memfd = -1, pipefd[2] = { -1, -1 }, refuser = -1;
static uint16_t refuse_port;
static const char *engine_name = "uring";

static uint8_t byte(struct run *r)
{
	return r->pos < r->n ? r->in[r->pos++] : 0;
}

static uint32_t word(struct run *r)
{
	uint32_t v = byte(r);

	v |= (uint32_t)byte(r) << 8;
	return v;
}

/* A call's result must be a count or a negative errno. */
static long check_ret(const char *what, long ret)
{
	if (ret < -4095)
		FAIL("%s returned %ld", what, ret);
	return ret;
}

static void expect(const char *what, long ret, long want)
{
	if (ret != want)
		FAIL("%s returned %ld (%s), want %ld", what, ret,
		     zc_strerror((int)ret), want);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		FAIL("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* --- set-up, once --- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct zc_config cfg;
	uint64_t s = 0x2545f4914f6cdd1dull;
	const char *e = getenv("ZCNET_FUZZ_ENGINE");

	if (e && *e)
		engine_name = e;
	tracing = getenv("ZCNET_FUZZ_TRACE") != NULL;
	if (zc_test_engine_config(engine_name, &cfg))
		FAIL("ZCNET_FUZZ_ENGINE=%s: not an engine configuration", engine_name);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(pat); i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		pat[i] = i < PAT_PERIOD ? (uint8_t)(s >> 24) : pat[i - PAT_PERIOD];
	}
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	memfd = memfd_create("fuzz_api", MFD_CLOEXEC);
	if (devnull < 0 || memfd < 0 || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK))
		FAIL("set-up: %s", strerror(errno));
	/* Room for a whole cookie, so a synchronous write never blocks. */
	if (fcntl(pipefd[1], F_SETPIPE_SZ, ZC_COOKIE_MAX) < 0)
		FAIL("F_SETPIPE_SZ: %s", strerror(errno));
	/* A bound socket that does not listen: connecting to it is refused. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	refuser = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (refuser < 0 || bind(refuser, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(refuser, (struct sockaddr *)&sa, &len))
		FAIL("refuser: %s", strerror(errno));
	refuse_port = ntohs(sa.sin_port);
	fprintf(stderr, "fuzz_api: engine configuration %s\n", engine_name);
	return 0;
}

/* --- ends, listeners, pieces, cookies --- */

static int end_of(struct run *r, zc_handle h)
{
	for (int i = 0; i < r->nends; i++)
		if (r->ends[i].kind == E_ZC && r->ends[i].h == h && h)
			return i;
	return -1;
}

static struct end *new_end(struct run *r, enum end_kind kind)
{
	struct end *e = &r->ends[r->nends];

	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->fd = -1;
	e->listener = -1;
	e->take = -1;
	e->seed = (uint32_t)(r->nends * 7919u + word(r) * 131u) % PAT_PERIOD;
	e->peer = r->nends ^ 1; /* ends are made in pairs */
	r->nends++;
	return e;
}

static void add_stale(struct run *r, zc_handle h)
{
	r->stale[r->nstale++ % 8] = h;
}

/* A handle of a zcnet end, picked by @b, live or not; 0 if none. */
static int pick_zc(struct run *r, uint8_t b)
{
	int n = 0, want;

	for (int i = 0; i < r->nends; i++)
		n += r->ends[i].kind == E_ZC && r->ends[i].h;
	if (!n)
		return -1;
	want = b % n;
	for (int i = 0; i < r->nends; i++)
		if (r->ends[i].kind == E_ZC && r->ends[i].h && !want--)
			return i;
	return -1;
}

static int pick_plain(struct run *r, uint8_t b)
{
	int n = 0, want;

	for (int i = 0; i < r->nends; i++)
		n += r->ends[i].kind == E_PLAIN && r->ends[i].fd >= 0;
	if (!n)
		return -1;
	want = b % n;
	for (int i = 0; i < r->nends; i++)
		if (r->ends[i].kind == E_PLAIN && r->ends[i].fd >= 0 && !want--)
			return i;
	return -1;
}

/* The stream into @e may lose bytes from here on, so do not count it. */
static void break_pair(struct run *r, int i)
{
	r->ends[i].broken = true;
	r->ends[r->ends[i].peer].broken = true;
}

static void release_one(struct run *r, int k)
{
	struct zc_piece p = r->held[k].p;

	expect("zc_release", zc_release(r->ctx, &p), 0);
	r->gone[r->ngone++ % 8] = p;
	r->held[k] = r->held[--r->nheld];
}

static void release_all(struct run *r)
{
	while (r->nheld)
		release_one(r, r->nheld - 1);
}

static int new_cookie_slot(struct run *r)
{
	for (int i = 0; i < MAX_COOKIES; i++)
		if (r->cks[i].state == C_NONE)
			return i;
	return -1;
}

static void cookie_gone(struct run *r, struct cookie *ck)
{
	r->stale_ck[r->nstale_ck++ % 8] = ck->c;
	memset(ck, 0, sizeof(*ck));
}

/* --- events --- */

static void on_data(struct run *r, int i, const struct zc_event *ev)
{
	struct end *e = &r->ends[i];
	uint32_t seed = r->ends[e->peer].seed;
	uint64_t off = ev->offset;
	size_t sum = 0;

	if (!e->connected || e->ended)
		FAIL("DATA on end %d before its start or after its end", i);
	if (ev->offset != e->rx)
		FAIL("DATA at %llu, want %llu", (unsigned long long)ev->offset,
		     (unsigned long long)e->rx);
	if (ev->npieces == 0 || !ev->pieces)
		FAIL("DATA with no pieces");
	for (unsigned k = 0; k < ev->npieces; k++) {
		const struct zc_piece *p = &ev->pieces[k];

		if (!p->data || !p->len)
			FAIL("an empty piece");
		if (!pat_ok(seed, off, p->data, p->len))
			FAIL("end %d: wrong bytes at %llu..+%zu", i,
			     (unsigned long long)off, p->len);
		off += p->len;
		sum += p->len;
		if (r->hold && r->nheld < MAX_HELD) {
			r->held[r->nheld].p = *p;
			r->held[r->nheld++].end = i;
		} else {
			expect("zc_release", zc_release(r->ctx, p), 0);
			r->gone[r->ngone++ % 8] = *p;
		}
	}
	if (sum != ev->bytes)
		FAIL("DATA bytes %zu, pieces sum %zu", ev->bytes, sum);
	e->rx += sum;
	e->rx_data += sum;
	if (e->rx > r->ends[e->peer].tx)
		FAIL("end %d got %llu bytes of %llu sent", i,
		     (unsigned long long)e->rx, (unsigned long long)r->ends[e->peer].tx);
}

static void peek_check(struct run *r, struct cookie *ck, size_t want)
{
	uint8_t buf[96];
	size_t n = want < ck->len ? want : ck->len;
	ssize_t got;

	got = zc_cookie_peek(r->ctx, ck->c, buf, want);
	if (got != (ssize_t)n)
		FAIL("zc_cookie_peek of %zu of %zu: %zd", want, ck->len, got);
	if (!pat_ok(r->ends[r->ends[ck->end].peer].seed, ck->off, buf, n))
		FAIL("cookie bytes at %llu differ", (unsigned long long)ck->off);
}

static void on_taken(struct run *r, int i, const struct zc_event *ev)
{
	struct end *e = &r->ends[i];
	struct cookie *ck;

	if (e->take < 0 && !e->take_orphan)
		FAIL("TAKEN on end %d without a take", i);
	if (ev->offset != e->rx)
		FAIL("TAKEN at %llu, want %llu", (unsigned long long)ev->offset,
		     (unsigned long long)e->rx);
	e->rx += ev->bytes;
	e->rx_taken += ev->bytes;
	if (e->rx > r->ends[e->peer].tx)
		FAIL("end %d took more than was sent", i);
	if (e->take_orphan) {
		if (ev->cookie)
			FAIL("TAKEN names a freed cookie");
		e->take_orphan = false;
		r->orphans--;
		return;
	}
	ck = &r->cks[e->take];
	e->take = -1;
	if (ev->cookie != ck->c)
		FAIL("TAKEN names cookie %llx, want %llx",
		     (unsigned long long)ev->cookie, (unsigned long long)ck->c);
	if (ev->bytes > ck->len)
		FAIL("TAKEN %zu bytes of %zu asked", ev->bytes, ck->len);
	if (ev->res < 0) {
		e->broken = true;
		cookie_gone(r, ck);
		return;
	}
	ck->state = C_TAKEN;
	ck->len = ev->bytes;
	ck->off = ev->offset;
	peek_check(r, ck, 1 + (ev->bytes + ev->offset) % 95);
}

static int cookie_by_handle(struct run *r, zc_cookie c, enum ck_state st)
{
	for (int k = 0; k < MAX_COOKIES; k++)
		if (r->cks[k].state == st && r->cks[k].c == c)
			return k;
	return -1;
}

static void on_written(struct run *r, const struct zc_event *ev)
{
	int k = cookie_by_handle(r, ev->cookie, C_WRITING);
	struct cookie *ck;
	static uint8_t buf[ZC_COOKIE_MAX];
	uint32_t seed;
	ssize_t n = 0;

	if (k < 0)
		FAIL("WRITTEN names no cookie being written");
	ck = &r->cks[k];
	if (ev->res || ev->bytes != ck->len)
		FAIL("WRITTEN %zu of %zu: %s", ev->bytes, ck->len, zc_strerror(ev->res));
	if (ev->conn && (r->ends[ck->end].closed || ev->conn != r->ends[ck->end].h))
		FAIL("WRITTEN names the wrong connection");
	seed = r->ends[r->ends[ck->end].peer].seed;
	if (ck->target == T_MEMFD)
		n = pread(memfd, buf, ck->len, ck->at);
	else if (ck->target == T_PIPE)
		n = read(pipefd[0], buf, ck->len);
	if (ck->target != T_NULL && ck->len &&
	    (n != (ssize_t)ck->len || !pat_ok(seed, ck->off, buf, ck->len)))
		FAIL("cookie written at %llu+%zu: wrong bytes (%zd read)",
		     (unsigned long long)ck->off, ck->len, n);
	if (ck->target == T_PIPE)
		r->pipe_busy = false;
	cookie_gone(r, ck);
}

static void on_send_done(struct run *r, int i, const struct zc_event *ev)
{
	for (int k = 0; k < r->nzs; k++) {
		if (r->zs[k].tag != ev->tag)
			continue;
		if (r->zs[k].end != i || r->zs[k].bytes != ev->bytes ||
		    (ev->res != 0 && ev->res != ZC_SEND_COPIED))
			FAIL("SEND_DONE does not match its send");
		r->zs[k] = r->zs[--r->nzs];
		return;
	}
	FAIL("SEND_DONE for tag %llu, never sent", (unsigned long long)ev->tag);
}

static void on_accept(struct run *r, const struct zc_event *ev)
{
	struct lsn *l = NULL;
	struct end *e;

	for (int k = 0; k < r->nlsns; k++)
		if (r->lsns[k].h == ev->listener)
			l = &r->lsns[k];
	if (!l || l->end < 0)
		FAIL("ACCEPT on an unknown listener or a second time");
	if (end_of(r, ev->conn) >= 0)
		FAIL("ACCEPT of a handle already in use");
	e = &r->ends[l->end];
	l->end = -1;
	e->h = ev->conn;
	e->connected = true;
	if (zc_set_user(r->ctx, e->h, e))
		FAIL("zc_set_user on a new connection");
}

static void on_event(struct run *r, const struct zc_event *ev)
{
	int i;

	TRACE("  event %d conn %llx res %d off %llu bytes %zu cookie %llx\n",
	      ev->type, (unsigned long long)ev->conn, ev->res,
	      (unsigned long long)ev->offset, ev->bytes, (unsigned long long)ev->cookie);

	if (ev->type == ZC_EV_ACCEPT) {
		on_accept(r, ev);
		return;
	}
	if (ev->type == ZC_EV_WRITTEN) {
		on_written(r, ev);
		return;
	}
	i = end_of(r, ev->conn);
	if (i < 0 || r->ends[i].closed)
		FAIL("event %d names %s handle %llx", ev->type,
		     i < 0 ? "an unknown" : "a closed", (unsigned long long)ev->conn);
	if (ev->user && ev->user != &r->ends[i])
		FAIL("event carries the wrong user pointer");
	switch (ev->type) {
	case ZC_EV_CONNECTED:
		if (r->ends[i].connected)
			FAIL("CONNECTED twice");
		r->ends[i].connected = true;
		break;
	case ZC_EV_DATA:
		on_data(r, i, ev);
		break;
	case ZC_EV_EOF:
	case ZC_EV_ERROR:
		if (r->ends[i].ended)
			FAIL("a second end of stream");
		if (ev->type == ZC_EV_ERROR && (ev->res >= 0 || ev->res < -4095))
			FAIL("ERROR with res %d", ev->res);
		r->ends[i].ended = true;
		if (ev->type == ZC_EV_ERROR)
			break_pair(r, i);
		break;
	case ZC_EV_WRITABLE:
		break;
	case ZC_EV_TAKEN:
		on_taken(r, i, ev);
		break;
	case ZC_EV_SEND_DONE:
		on_send_done(r, i, ev);
		break;
	default:
		FAIL("unknown event type %d", ev->type);
	}
}

static int wait_events(struct run *r, unsigned max, int timeout_ms)
{
	struct zc_event evs[32];
	int n = zc_wait(r->ctx, evs, max, timeout_ms);

	if (n == -EINTR) /* the ring teardown of an earlier context */
		return 0;
	check_ret("zc_wait", n);
	if (n < 0 || n > (int)max)
		FAIL("zc_wait returned %d (max %u)", n, max);
	for (int k = 0; k < n; k++)
		on_event(r, &evs[k]);
	return n;
}

/* --- the plain ends --- */

static void plain_read(struct run *r, int i)
{
	static uint8_t buf[SEND_MAX];
	struct end *e = &r->ends[i];
	ssize_t n;

	if (e->fd < 0 || e->ended)
		return;
	for (;;) {
		n = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			break;
		if (!pat_ok(r->ends[e->peer].seed, e->rx, buf, (size_t)n))
			FAIL("plain end %d: wrong bytes at %llu", i,
			     (unsigned long long)e->rx);
		e->rx += (uint64_t)n;
		if (e->rx > r->ends[e->peer].tx)
			FAIL("plain end %d got more than was sent", i);
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		e->ended = true;
		if (n < 0)
			break_pair(r, i);
	}
}

static void plain_send(struct run *r, int i, size_t len)
{
	struct end *e = &r->ends[i];
	ssize_t n;

	if (e->shut_wr)
		return;
	n = send(e->fd, pat_at(e->seed, e->tx), len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n > 0)
		e->tx += (uint64_t)n;
	/* A reset: reported once, here, so recv() will then say only EOF. */
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		break_pair(r, i);
}

static void plain_close(struct run *r, int i, bool reset)
{
	struct end *e = &r->ends[i];
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int unread = 0;

	ioctl(e->fd, FIONREAD, &unread);
	/* Unread bytes make the kernel reset, too. */
	if (reset || unread)
		break_pair(r, i);
	if (reset)
		setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(e->fd);
	e->fd = -1;
	e->closed = true;
	e->ended = true;
	e->shut_wr = true;
}

static int plain_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pollfd pfd;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int err = 0;
	socklen_t len = sizeof(err);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		FAIL("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS &&
	    errno != EINTR) {
		if (errno != EADDRNOTAVAIL)
			FAIL("connect: %s", strerror(errno));
		close(fd); /* no local port left: see op_pair() */
		return -1;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	while (poll(&pfd, 1, 2000) < 0 && errno == EINTR)
		;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err)
		FAIL("connect to a listener: %s", strerror(err));
	return fd;
}

/* --- the operations --- */

static size_t send_size(struct run *r)
{
	static const size_t sizes[] = { 1, 7, 100, 1460, 4096, 4097, 16384,
					65536, 100000, SEND_MAX };
	uint8_t b = byte(r);

	return sizes[b % 10] - (b / 10 % 3 == 1 && sizes[b % 10] > 1);
}

static void op_pair(struct run *r, bool plain)
{
	struct lsn *l;
	struct end *a, *c;
	char addr[32];
	int port, err;

	if (r->nends + 2 > MAX_ENDS || r->nlsns == MAX_LISTENERS)
		return;
	l = &r->lsns[r->nlsns];
	/* Hours of fuzzing leave tens of thousands of loopback connections
	 * in TIME_WAIT: when no local port is left, make no pair. */
	err = zc_listen(r->ctx, "127.0.0.1:0", byte(r) & ZC_PAGE_ALIGNED, &l->h);
	if (err == -EADDRINUSE)
		return;
	if (err)
		FAIL("zc_listen: %s", zc_strerror(err));
	port = zc_local_port(r->ctx, l->h);
	if (port <= 0)
		FAIL("zc_local_port of a listener: %d", port);
	l->closed = false;
	l->end = r->nends;
	a = new_end(r, E_ZC);   /* the accepted end */
	a->listener = r->nlsns++;
	c = new_end(r, plain ? E_PLAIN : E_ZC);
	if (plain) {
		c->fd = plain_connect((uint16_t)port);
		if (c->fd < 0) { /* never connected: nothing to check */
			c->closed = c->ended = c->shut_wr = true;
			break_pair(r, r->nends - 1);
		}
		return;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	err = zc_connect_ex(r->ctx, addr, byte(r) & ZC_PAGE_ALIGNED, &c->h);
	if (err)
		FAIL("zc_connect: %s", zc_strerror(err));
}

static void op_refused(struct run *r)
{
	char addr[32];
	zc_handle h;
	int err;

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", refuse_port);
	err = zc_connect(r->ctx, addr, &h);
	check_ret("zc_connect", err);
	if (err)
		return;
	/* Closed at once (then a stale handle), or left to be refused. */
	if ((byte(r) & 1) || r->nends + 2 > MAX_ENDS) {
		expect("zc_close", zc_close(r->ctx, h), 0);
		add_stale(r, h);
		return;
	}
	new_end(r, E_ZC)->h = h;
	r->ends[r->nends - 1].broken = true;
	new_end(r, E_NONE)->closed = true; /* no peer */
}

static void op_send(struct run *r)
{
	int i = pick_zc(r, byte(r));
	uint8_t how = byte(r);
	size_t len = send_size(r);
	struct end *e;
	ssize_t n;

	if (i < 0)
		return;
	e = &r->ends[i];
	if (e->no_send && !e->closed)
		return; /* its peer is gone: a send would reset the stream */
	if ((how & 1) && r->nzs < MAX_ZCSENDS) {
		n = zc_send_zerocopy(r->ctx, e->h, pat_at(e->seed, e->tx), len,
				     ++r->next_tag);
		check_ret("zc_send_zerocopy", n);
		if (n > 0) {
			r->zs[r->nzs++] = (struct zcsend){ r->next_tag, (size_t)n, i };
		}
	} else {
		n = zc_send(r->ctx, e->h, pat_at(e->seed, e->tx), len);
		check_ret("zc_send", n);
	}
	TRACE("  end %d %s %zu: %zd\n", i, how & 1 ? "send_zerocopy" : "send", len, n);
	if (e->closed && n != -EBADF)
		FAIL("send on a closed handle: %zd", n);
	if (n > (ssize_t)len)
		FAIL("send took %zd of %zu", n, len);
	if (n > 0) {
		if (e->shut_wr)
			FAIL("send after SHUT_WR took %zd", n);
		e->tx += (uint64_t)n;
	}
}

static void op_wait(struct run *r)
{
	uint8_t b = byte(r);
	unsigned max = 1 + b % 32;

	for (int k = 0; k <= b / 32; k++)
		wait_events(r, max, 0);
}

static void op_release(struct run *r)
{
	uint8_t b = byte(r);
	struct zc_piece p;
	int err;

	switch (b % 6) {
	case 0: /* toggle holding */
		r->hold = !r->hold;
		break;
	case 1:
	case 2: /* a live piece */
		if (r->nheld)
			release_one(r, byte(r) % r->nheld);
		break;
	case 3: /* a piece released before */
		if (!r->ngone)
			break;
		p = r->gone[byte(r) % (r->ngone < 8 ? r->ngone : 8)];
		err = zc_release(r->ctx, &p);
		expect("zc_release twice", err, -EALREADY);
		break;
	case 4: /* forged: a live piece's pointer, length or ref changed */
		if (!r->nheld)
			break;
		p = r->held[byte(r) % r->nheld].p;
		switch (byte(r) % 4) {
		case 0: p.data = (const char *)p.data + 1; break;
		case 1: p.len = SIZE_MAX; break;
		case 2: p.ref ^= 1ull << (32 + byte(r) % 31); break;
		default: p.ref = (p.ref & (1ull << 63)) | 0x7fffffffull; break;
		}
		err = zc_release(r->ctx, &p);
		check_ret("zc_release forged", err);
		if (err != -EINVAL && err != -EALREADY)
			FAIL("forged release: %d", err);
		break;
	default: /* nothing of the pool at all */
		p = (struct zc_piece){ .data = &p, .len = 1, .ref = word(r) };
		expect("zc_release bogus", zc_release(r->ctx, b & 64 ? &p : NULL), -EINVAL);
		break;
	}
}

static void op_take(struct run *r)
{
	int i = pick_zc(r, byte(r));
	static const size_t lens[] = { 0, 1, 100, 4096, 5000, 65536, 200000,
				       ZC_COOKIE_MAX, ZC_COOKIE_MAX + 1 };
	size_t len = lens[byte(r) % 9];
	int k = new_cookie_slot(r), err;
	struct end *e;
	zc_cookie c = 0;

	if (i < 0 || k < 0)
		return;
	e = &r->ends[i];
	err = zc_take(r->ctx, e->h, len, &c);
	TRACE("  end %d take %zu: %d cookie %llx slot %d\n", i, len, err,
	      (unsigned long long)c, k);
	check_ret("zc_take", err);
	if (e->closed && err != -EBADF)
		FAIL("zc_take on a closed handle: %d", err);
	if ((len == 0 || len > ZC_COOKIE_MAX) && !e->closed && err != -EINVAL)
		FAIL("zc_take of %zu: %d", len, err);
	if (!e->closed && (e->take >= 0 || e->take_orphan) && len && len <= ZC_COOKIE_MAX &&
	    err != -EBUSY)
		FAIL("a second take: %d", err);
	if (err)
		return;
	if (!c)
		FAIL("zc_take gave cookie 0");
	r->cks[k] = (struct cookie){ .state = C_TAKING, .c = c, .end = i, .len = len };
	e->take = k;
}

static int pick_cookie(struct run *r, uint8_t b)
{
	int n = 0, want;

	for (int k = 0; k < MAX_COOKIES; k++)
		n += r->cks[k].state != C_NONE;
	if (!n)
		return -1;
	want = b % n;
	for (int k = 0; k < MAX_COOKIES; k++)
		if (r->cks[k].state != C_NONE && !want--)
			return k;
	return -1;
}

static zc_cookie bogus_cookie(struct run *r)
{
	uint8_t b = byte(r);

	if (b % 3 == 0 && r->nstale_ck)
		return r->stale_ck[b % (r->nstale_ck < 8 ? r->nstale_ck : 8)];
	if (b % 3 == 1)
		return 0;
	return (uint64_t)(0x40000000u | word(r)) << 32 | byte(r);
}

static void op_peek(struct run *r)
{
	uint8_t buf[128];
	int k = pick_cookie(r, byte(r));
	uint8_t b = byte(r);
	ssize_t n;

	if (b & 128) {
		expect("zc_cookie_peek bogus", zc_cookie_peek(r->ctx, bogus_cookie(r), buf, 8),
		       -EBADF);
		return;
	}
	if (k < 0)
		return;
	if (r->cks[k].state == C_TAKEN) {
		if (b & 64) {
			expect("zc_cookie_peek NULL", zc_cookie_peek(r->ctx, r->cks[k].c, NULL, 4),
			       -EINVAL);
			return;
		}
		peek_check(r, &r->cks[k], b % 97);
		return;
	}
	/* Being taken or written; or gone already, if that failed or the
	 * write is done (its WRITTEN event still to come). */
	n = zc_cookie_peek(r->ctx, r->cks[k].c, buf, sizeof(buf));
	if (n != -EBUSY && n != -EBADF)
		FAIL("zc_cookie_peek of a cookie in flight: %zd", n);
}

static void op_write(struct run *r)
{
	int k = pick_cookie(r, byte(r));
	uint8_t b = byte(r);
	enum ck_target target;
	struct cookie *ck;
	int fd, err;
	int64_t off = -1;

	if (k < 0)
		return;
	ck = &r->cks[k];
	if (b & 128) { /* bad arguments */
		err = zc_cookie_write(r->ctx, ck->c, b & 64 ? -1 : 1000 + b, 0, 0);
		check_ret("zc_cookie_write bad fd", err);
		if (ck->state == C_TAKEN && err != (b & 64 ? -EINVAL : -EBADF))
			FAIL("zc_cookie_write to a bad fd: %d", err);
		return;
	}
	target = b % 3;
	if (target == T_PIPE && r->pipe_busy)
		target = T_NULL; /* bytes of two writes would mix in the pipe */
	fd = target == T_NULL ? devnull : target == T_MEMFD ? memfd : pipefd[1];
	if (target == T_MEMFD)
		off = k * SLOT_SIZE + (b & 8 ? 0 : word(r) % 8192);
	if ((b & 16) && ck->state == C_TAKEN && target != T_MEMFD) {
		err = zc_cookie_write(r->ctx, ck->c, fd, off, ZC_WRITE_DSYNC);
		expect("zc_cookie_write DSYNC to a non-file", err, -EINVAL);
		return;
	}
	err = zc_cookie_write(r->ctx, ck->c, fd, off, b & 16 ? ZC_WRITE_DSYNC : 0);
	TRACE("  write slot %d state %d target %d: %d\n", k, ck->state, target, err);
	check_ret("zc_cookie_write", err);
	if (ck->state != C_TAKEN) {
		if (err != -EBUSY && err != -EBADF)
			FAIL("zc_cookie_write of a cookie in flight: %d", err);
		return;
	}
	if (err)
		FAIL("zc_cookie_write: %s", zc_strerror(err));
	ck->state = C_WRITING;
	ck->target = target;
	ck->at = off;
	if (target == T_PIPE)
		r->pipe_busy = true;
}

static void op_free(struct run *r)
{
	int k = pick_cookie(r, byte(r));
	uint8_t b = byte(r);
	struct cookie *ck;
	int err;

	if (b & 1 || k < 0) {
		expect("zc_cookie_free bogus", zc_cookie_free(r->ctx, bogus_cookie(r)), -EBADF);
		return;
	}
	ck = &r->cks[k];
	err = zc_cookie_free(r->ctx, ck->c);
	TRACE("  free slot %d state %d: %d\n", k, ck->state, err);
	/* A take that failed or a write that is done has freed it: the
	 * event that says so is still to come. */
	if (err == -EBADF && ck->state != C_TAKEN)
		return;
	expect("zc_cookie_free", err, 0);
	if (ck->state == C_TAKING) {
		r->ends[ck->end].take = -1;
		r->ends[ck->end].take_orphan = true;
		r->orphans++;
	} else if (ck->state == C_WRITING) {
		/* No event will say when it is done: the pipe stays busy. */
		r->orphans++;
	}
	cookie_gone(r, ck);
	expect("zc_cookie_free twice", zc_cookie_free(r->ctx, r->stale_ck[(r->nstale_ck - 1) % 8]),
	       -EBADF);
}

/* Forget what a closed zcnet end had in flight. */
static void forget_end(struct run *r, int i)
{
	struct end *e = &r->ends[i];

	for (int k = 0; k < r->nzs; k++)
		if (r->zs[k].end == i)
			r->zs[k--] = r->zs[--r->nzs];
	/* A take ends with its connection, its cookie too. */
	if (e->take >= 0)
		cookie_gone(r, &r->cks[e->take]);
	if (e->take_orphan)
		r->orphans--;
	e->take = -1;
	e->take_orphan = false;
	add_stale(r, e->h);
	e->closed = true;
	e->ended = true;
	e->shut_wr = true;
}

static void close_end(struct run *r, int i, bool abort)
{
	struct end *e = &r->ends[i];
	struct end *p = &r->ends[e->peer];
	int err = abort ? zc_abort(r->ctx, e->h) : zc_close(r->ctx, e->h);

	TRACE("  end %d %s: %d\n", i, abort ? "abort" : "close", err);

	if (e->closed) {
		expect("close of a closed handle", err, -EBADF);
		return;
	}
	expect(abort ? "zc_abort" : "zc_close", err, 0);
	/* An orderly close after every byte came in: what it sent still
	 * arrives, then an end of stream, as long as the peer sends no
	 * more (the kernel would answer with a reset). Else a reset. */
	if (abort || e->rx != p->tx || e->take >= 0 || e->take_orphan || !e->connected)
		break_pair(r, i);
	p->no_send = true;
	forget_end(r, i);
}

static void op_close(struct run *r)
{
	uint8_t b = byte(r);
	int i;

	if (b % 4 == 3 && r->nlsns) { /* a listener */
		struct lsn *l = &r->lsns[byte(r) % r->nlsns];
		int err = b & 4 ? zc_abort(r->ctx, l->h) : zc_close(r->ctx, l->h);

		if (b & 4) {
			expect("zc_abort of a listener", err, -EBADF);
			return;
		}
		expect("zc_close of a listener", err, l->closed ? -EBADF : 0);
		if (!l->closed)
			add_stale(r, l->h);
		l->closed = true;
		/* A connection still in its backlog is reset. */
		if (l->end >= 0)
			break_pair(r, l->end);
		return;
	}
	i = pick_zc(r, byte(r));
	if (i >= 0)
		close_end(r, i, b % 4 == 2);
}

static void op_shutdown(struct run *r)
{
	int i = pick_zc(r, byte(r));
	uint8_t b = byte(r);
	int how = b % 4 == 3 ? 7 : b % 3, err;
	struct end *e;

	if (i < 0)
		return;
	e = &r->ends[i];
	err = zc_shutdown(r->ctx, e->h, how);
	TRACE("  end %d shutdown %d: %d\n", i, how, err);
	check_ret("zc_shutdown", err);
	if (e->closed && err != -EBADF)
		FAIL("zc_shutdown of a closed handle: %d", err);
	if (!e->closed && how == 7 && err != -EINVAL)
		FAIL("zc_shutdown how 7: %d", err);
	if (err)
		return;
	/* Bytes that come after SHUT_RD make Linux reset the connection
	 * once it has sent its FIN: both ways may lose bytes. */
	if (how == SHUT_RD || how == SHUT_RDWR)
		break_pair(r, i);
	if (how == SHUT_WR || how == SHUT_RDWR)
		e->shut_wr = true;
}

/* Calls with handles that name nothing live must all say -EBADF. */
static void op_stale(struct run *r)
{
	uint8_t b = byte(r);
	zc_handle h;
	zc_cookie c;
	struct zc_stats st;
	const char *what = "?";
	long err = 0;

	if (b % 3 == 0 && r->nstale)
		h = r->stale[byte(r) % (r->nstale < 8 ? r->nstale : 8)];
	else if (b % 3 == 1)
		h = 0;
	else
		h = (uint64_t)(0x40000000u | word(r)) << 32 | byte(r);
	if (end_of(r, h) >= 0 && !r->ends[end_of(r, h)].closed)
		return; /* reused, hence live: not what this is about */
	switch (b / 3 % 9) {
	case 0: what = "zc_send"; err = zc_send(r->ctx, h, pat, 10); break;
	case 1: what = "zc_send_zerocopy"; err = zc_send_zerocopy(r->ctx, h, pat, 10, 1); break;
	case 2: what = "zc_shutdown"; err = zc_shutdown(r->ctx, h, SHUT_WR); break;
	case 3: what = "zc_close"; err = zc_close(r->ctx, h); break;
	case 4: what = "zc_abort"; err = zc_abort(r->ctx, h); break;
	case 5: what = "zc_take"; err = zc_take(r->ctx, h, 10, &c); break;
	case 6: what = "zc_local_port"; err = zc_local_port(r->ctx, h); break;
	case 7: what = "zc_set_user"; err = zc_set_user(r->ctx, h, r); break;
	default: what = "zc_conn_stats"; err = zc_conn_stats(r->ctx, h, &st); break;
	}
	expect(what, err, -EBADF);
}

/* Calls that need a connection, on a listener. */
static void op_on_listener(struct run *r)
{
	struct lsn *l;
	struct zc_stats st;
	zc_cookie c;
	uint8_t b = byte(r);

	if (!r->nlsns)
		return;
	l = &r->lsns[b % r->nlsns];
	if (l->closed)
		return;
	expect("zc_send on a listener", zc_send(r->ctx, l->h, pat, 1), -EBADF);
	expect("zc_take on a listener", zc_take(r->ctx, l->h, 1, &c), -EBADF);
	expect("zc_shutdown on a listener", zc_shutdown(r->ctx, l->h, SHUT_WR), -EBADF);
	expect("zc_conn_stats on a listener", zc_conn_stats(r->ctx, l->h, &st), -EBADF);
}

static void check_stats(struct run *r)
{
	struct zc_stats st;
	uint64_t alive = 0, maybe = 0, conns = 0, pending = 0;

	expect("zc_ctx_stats", zc_ctx_stats(r->ctx, &st), 0);
	/* Taken cookies are alive for sure; one being taken or written
	 * is freed at once if that fails, before the event says so. */
	for (int k = 0; k < MAX_COOKIES; k++) {
		alive += r->cks[k].state == C_TAKEN;
		maybe += r->cks[k].state == C_TAKING || r->cks[k].state == C_WRITING;
	}
	for (int k = 0; k < r->nlsns; k++)
		pending += r->lsns[k].end >= 0;
	if (st.pieces_outstanding != (uint64_t)r->nheld)
		FAIL("pieces_outstanding %llu, held %d",
		     (unsigned long long)st.pieces_outstanding, r->nheld);
	if (st.cookies_alive < alive || st.cookies_alive > alive + maybe + r->orphans)
		FAIL("cookies_alive %llu, taken %llu, in flight %llu, freed in flight %u",
		     (unsigned long long)st.cookies_alive, (unsigned long long)alive,
		     (unsigned long long)maybe, r->orphans);
	for (int i = 0; i < r->nends; i++) {
		struct end *e = &r->ends[i];
		struct zc_stats cs;
		uint64_t held = 0;

		if (e->kind != E_ZC || !e->h || e->closed)
			continue;
		conns++;
		for (int k = 0; k < r->nheld; k++)
			held += r->held[k].end == i;
		expect("zc_conn_stats", zc_conn_stats(r->ctx, e->h, &cs), 0);
		if (cs.pieces_outstanding != held || cs.bytes_received != e->rx_data)
			FAIL("end %d: pieces_outstanding %llu (held %llu), "
			     "bytes_received %llu (got %llu)", i,
			     (unsigned long long)cs.pieces_outstanding,
			     (unsigned long long)held,
			     (unsigned long long)cs.bytes_received,
			     (unsigned long long)e->rx_data);
		if (cs.bytes_taken < e->rx_taken ||
		    (e->take < 0 && !e->take_orphan && cs.bytes_taken != e->rx_taken))
			FAIL("end %d: bytes_taken %llu, taken %llu", i,
			     (unsigned long long)cs.bytes_taken,
			     (unsigned long long)e->rx_taken);
	}
	if (st.connections < conns || st.connections > conns + pending)
		FAIL("connections %llu, open %llu, accepts pending %llu",
		     (unsigned long long)st.connections, (unsigned long long)conns,
		     (unsigned long long)pending);
}

static void op_peer(struct run *r)
{
	uint8_t b = byte(r);
	int i = pick_plain(r, byte(r));
	struct end *e;

	if (i < 0)
		return;
	e = &r->ends[i];
	TRACE("  plain end %d: %d\n", i, b % 6);
	switch (b % 6) {
	case 0:
	case 1:
		if (!e->no_send)
			plain_send(r, i, send_size(r));
		break;
	case 2:
		plain_read(r, i);
		break;
	case 3:
		if (!e->shut_wr && !shutdown(e->fd, SHUT_WR))
			e->shut_wr = true;
		break;
	case 4: /* close, orderly if every byte was read */
		plain_read(r, i);
		if (e->rx != r->ends[e->peer].tx)
			break_pair(r, i);
		r->ends[e->peer].no_send = true;
		plain_close(r, i, false);
		break;
	default:
		plain_close(r, i, true);
		break;
	}
}

static void run_op(struct run *r, uint8_t op)
{
	static const char *const names[20] = {
		"pair", "pair-plain", "refused", "send", "send", "wait", "wait",
		"wait", "release", "release", "take", "peek", "write", "free",
		"shutdown", "close", "stale", "listener-calls+stats", "peer", "peer",
	};

	TRACE("op %s [%zu:", names[op % 20], r->pos);
	for (size_t k = r->pos; k < r->pos + 4 && k < r->n; k++)
		TRACE(" %u", r->in[k]);
	TRACE("]\n");
	switch (op % 20) {
	case 0: op_pair(r, false); break;
	case 1: op_pair(r, true); break;
	case 2: op_refused(r); break;
	case 3: case 4: op_send(r); break;
	case 5: case 6: case 7: op_wait(r); break;
	case 8: case 9: op_release(r); break;
	case 10: op_take(r); break;
	case 11: op_peek(r); break;
	case 12: op_write(r); break;
	case 13: op_free(r); break;
	case 14: op_shutdown(r); break;
	case 15: op_close(r); break;
	case 16: op_stale(r); break;
	case 17: op_on_listener(r); check_stats(r); break;
	default: op_peer(r); break;
	}
}

/* --- the end of a run --- */

/* Is every byte sent towards end @i there (and the end of stream)? */
static bool arrived(struct run *r, int i)
{
	struct end *e = &r->ends[i], *s = &r->ends[e->peer];

	if (e->kind == E_NONE || e->closed || e->broken || e->take >= 0 ||
	    e->take_orphan || (e->kind == E_ZC && !e->h))
		return true;
	if (e->rx != s->tx)
		return false;
	return !s->shut_wr || e->ended;
}

static bool all_arrived(struct run *r, int *which)
{
	for (int i = 0; i < r->nends; i++) {
		if (r->ends[i].kind == E_PLAIN)
			plain_read(r, i);
		if (!arrived(r, i)) {
			*which = i;
			return false;
		}
	}
	return true;
}

/* Every stream nobody broke must arrive whole once pieces come back. */
static void settle(struct run *r)
{
	struct timespec t0, t;
	int i = -1;

	r->hold = false;
	release_all(r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		wait_events(r, 32, 0);
		if (all_arrived(r, &i))
			return;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
		    SETTLE_MS)
			break;
		wait_events(r, 32, 1);
	}
	FAIL("end %d (%s): %llu of %llu bytes arrived, sender %s, receiver %s",
	     i, r->ends[i].kind == E_ZC ? "zcnet" : "plain",
	     (unsigned long long)r->ends[i].rx,
	     (unsigned long long)r->ends[r->ends[i].peer].tx,
	     r->ends[r->ends[i].peer].shut_wr ? "done" : "open",
	     r->ends[i].ended ? "ended" : "open");
}

/* Free, close and drain until the context holds nothing. */
static void wind_down(struct run *r)
{
	struct zc_stats st;
	int rounds = 0, err;

	for (int k = 0; k < MAX_COOKIES; k++) {
		struct cookie *ck = &r->cks[k];

		if (ck->state == C_NONE)
			continue;
		err = zc_cookie_free(r->ctx, ck->c);
		if (err == -EBADF && ck->state != C_TAKEN)
			continue; /* as in op_free() */
		expect("zc_cookie_free", err, 0);
		if (ck->state != C_TAKEN)
			r->orphans++;
		if (ck->state == C_TAKING) {
			r->ends[ck->end].take = -1;
			r->ends[ck->end].take_orphan = true;
		}
		cookie_gone(r, ck);
	}
	for (int k = 0; k < r->nlsns; k++)
		if (!r->lsns[k].closed) {
			expect("zc_close", zc_close(r->ctx, r->lsns[k].h), 0);
			r->lsns[k].closed = true;
		}
	for (;;) {
		for (int i = 0; i < r->nends; i++)
			if (r->ends[i].kind == E_ZC && r->ends[i].h && !r->ends[i].closed) {
				expect("zc_close", zc_close(r->ctx, r->ends[i].h), 0);
				forget_end(r, i);
			}
		release_all(r);
		expect("zc_ctx_stats", zc_ctx_stats(r->ctx, &st), 0);
		if (wait_events(r, 32, rounds ? 1 : 0) == 0 && !st.connections &&
		    !st.cookies_alive && !st.pieces_outstanding)
			break;
		if (++rounds > 2000)
			FAIL("the context does not wind down: connections %llu, "
			     "cookies_alive %llu, pieces_outstanding %llu",
			     (unsigned long long)st.connections,
			     (unsigned long long)st.cookies_alive,
			     (unsigned long long)st.pieces_outstanding);
	}
}

static void drain_pipe(void)
{
	static uint8_t buf[65536];

	while (read(pipefd[0], buf, sizeof(buf)) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run run;
	struct run *r = &run;
	struct zc_config cfg;
	static const size_t piece[] = { 1024, 4096, 16384, 65536 };
	int fds, err, ops = 0;

	memset(r, 0, sizeof(*r));
	r->in = data;
	r->n = size;
	fds = count_fds();
	zc_config_init(&cfg);
	zc_test_engine_config(engine_name, &cfg);
	cfg.piece_size = piece[byte(r) % 4];
	cfg.pool_size = cfg.piece_size * (4 + byte(r) % 61);
	cfg.map_size = 1u << 20;
	err = zc_ctx_create(&cfg, &r->ctx);
	if (err)
		FAIL("zc_ctx_create: %s", zc_strerror(err));
	while (r->pos < r->n && ops++ < MAX_OPS)
		run_op(r, byte(r));
	check_stats(r);
	settle(r);
	check_stats(r);
	wind_down(r);
	zc_ctx_destroy(r->ctx);
	for (int i = 0; i < r->nends; i++)
		if (r->ends[i].kind == E_PLAIN && r->ends[i].fd >= 0)
			close(r->ends[i].fd);
	drain_pipe();
	if (ftruncate(memfd, 0))
		FAIL("ftruncate: %s", strerror(errno));
	err = count_fds();
	if (err != fds)
		FAIL("%d descriptors before the run, %d after", fds, err);
	return 0;
}
