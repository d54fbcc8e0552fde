/*
 * harness.c - see harness.h.
 *
 * Built with -O2 even in debug builds: the pattern fill and the byte by
 * byte verification of gigabytes run here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "engine_config.h"

/* ------------------------------------------------------------------ */
/* Set-up, time, randomness                                            */
/* ------------------------------------------------------------------ */

const char *const h_engines[] = {
	"uring", "uring-nobundle", "uring-oneshot", "uring-nobatch", "socket", "mmap",
	NULL,
};

const char *h_setup(int argc, char **argv, bool need_engine, unsigned alarm_s)
{
	const char *engine = argc > 1 ? argv[1] : NULL;
	struct zc_config cfg;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (need_engine && (!engine || h_engine_config(engine, &cfg))) {
		fprintf(stderr, "usage: %s uring|uring-nobundle|uring-oneshot|uring-nobatch|"
			"socket|mmap\n",
			argv[0]);
		exit(2);
	}
	if (alarm_s)
		alarm(alarm_s); /* SIGALRM ends a hung test */
	return engine;
}

int h_engine_config(const char *name, struct zc_config *cfg)
{
	return zc_test_engine_config(name, cfg);
}

bool h_has_feature(const zc_ctx *ctx, const char *feature)
{
	const char *s = zc_engine_features(ctx);
	size_t n = strlen(feature);

	if (!s)
		return false;
	while (*s) {
		size_t w;

		while (*s == ' ')
			s++;
		w = strcspn(s, " ");
		if (w == n && !strncmp(s, feature, n))
			return true;
		s += w;
	}
	return false;
}

int h_ctx_create(const char *name, const struct zc_config *base, zc_ctx **out)
{
	struct zc_config cfg;
	const char *want, *got, *feat;
	zc_ctx *ctx;
	int err;

	if (base)
		cfg = *base;
	else
		zc_config_init(&cfg);
	if (h_engine_config(name, &cfg))
		return -EINVAL;
	*out = NULL;
	err = zc_ctx_create(&cfg, &ctx);
	if (err) {
		fprintf(stderr, "zc_ctx_create(%s): %s\n", name, zc_strerror(err));
		return err;
	}
	want = cfg.engine == ZC_ENGINE_SOCKET ? "socket" :
	       cfg.engine == ZC_ENGINE_MMAP ? "mmap" : "uring";
	got = zc_engine_name(ctx);
	feat = zc_engine_features(ctx);
	if (!got || !feat || strcmp(got, want) ||
	    ((cfg.flags & ZC_CFG_NO_BUNDLE) && h_has_feature(ctx, "bundle")) ||
	    ((cfg.flags & ZC_CFG_NO_MULTISHOT) && h_has_feature(ctx, "multishot"))) {
		fprintf(stderr, "%s: the context runs engine \"%s\" with \"%s\"\n",
			name, got ? got : "(null)", feat ? feat : "(null)");
		zc_ctx_destroy(ctx);
		return -EPROTO;
	}
	*out = ctx;
	return 0;
}

int h_wait(zc_ctx *ctx, struct zc_event *evs, unsigned max, int timeout_ms)
{
	int n;

	do
		n = zc_wait(ctx, evs, max, timeout_ms);
	while (n == -EINTR);
	return n;
}

uint64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t h_deadline_ms(uint64_t ms)
{
	return h_now_ms() + ms;
}

bool h_expired(uint64_t deadline)
{
	return h_now_ms() >= deadline;
}

uint64_t h_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

uint64_t h_test_seed(const char *what)
{
	const char *env = getenv("ZC_TEST_SEED");
	uint64_t seed;

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^
		       (uint64_t)getpid() << 40;
	}
	printf("# %s: ZC_TEST_SEED=%" PRIu64 "\n", what, seed);
	return seed;
}

int h_raise_nofile(unsigned need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rl.rlim_cur = need;
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
			rl.rlim_max = need;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return -errno;
	}
	return 0;
}

uint64_t h_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull ^ len;

	for (; len >= 8; len -= 8, p += 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	while (len--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */

static socklen_t loopback(int family, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons(port);
		return sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a->sin_port = htons(port);
		return sizeof(*a);
	}
}

int h_peer_connect(int family, uint16_t port)
{
	struct timeval tv = { .tv_sec = 60 };
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, err;

	if (family != AF_INET6)
		family = AF_INET;
	sl = loopback(family, port, &ss);
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (connect(fd, (struct sockaddr *)&ss, sl)) {
		if (errno == EINTR)
			continue;
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int h_write_pattern(int fd, uint64_t seed, uint64_t off, uint64_t len,
		    void *buf, size_t bufsize)
{
	while (len) {
		size_t n = len < bufsize ? (size_t)len : bufsize;
		int err;

		pat_fill(seed, off, buf, n);
		err = write_all(fd, buf, n);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

bool h_have_ipv6(void)
{
	struct sockaddr_storage ss;
	socklen_t sl = loopback(AF_INET6, 0, &ss);
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&ss, sl) == 0;
	close(fd);
	return ok;
}

static void sender_fail(struct h_sender *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void sender_fail(struct h_sender *s, int err, const char *fmt, ...)
{
	va_list ap;

	if (s->err)
		return;
	s->err = err ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
}

static uint64_t sender_seed(const struct h_sender *s, unsigned i)
{
	return s->seeds ? s->seeds[i] : s->seed + i;
}

/* Read the reply to EOF, verifying it as a pattern stream. */
static void read_reply(struct h_sender *s, int fd, char *buf, size_t bufsize)
{
	struct pat_verifier v;
	uint64_t bad;

	pat_verifier_init(&v);
	for (;;) {
		ssize_t n = recv(fd, buf, bufsize, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sender_fail(s, -errno, "reading the reply after %" PRIu64
				    " bytes: %s", s->reply_got, strerror(errno));
			return;
		}
		if (n == 0)
			break;
		if (pat_verify(&v, buf, (size_t)n, &bad)) {
			sender_fail(s, -EILSEQ, "reply does not match the pattern at offset %"
				    PRIu64, bad);
			return;
		}
		s->reply_got += (uint64_t)n;
	}
	if (s->reply_got != s->reply_bytes)
		sender_fail(s, -EIO, "reply has %" PRIu64 " bytes, expected %" PRIu64,
			    s->reply_got, s->reply_bytes);
}

static void *sender_main(void *arg)
{
	struct h_sender *s = arg;
	unsigned n = s->nconns ? s->nconns : 1, i;
	size_t chunk = s->chunk ? s->chunk : 256 * KiB;
	int *fds = calloc(n, sizeof(*fds));
	char *buf = malloc(chunk);
	uint64_t off;

	if (!fds || !buf) {
		sender_fail(s, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++)
		fds[i] = -1;
	for (i = 0; i < n; i++) {
		fds[i] = h_peer_connect(s->family, s->port);
		if (fds[i] < 0) {
			sender_fail(s, fds[i], "connect #%u to port %u: %s", i,
				    s->port, strerror(-fds[i]));
			goto out;
		}
	}
	for (off = 0; off < s->bytes; off += chunk) {
		uint64_t len = s->bytes - off < chunk ? s->bytes - off : chunk;

		for (i = 0; i < n; i++) {
			int err = h_write_pattern(fds[i], sender_seed(s, i), off, len,
						  buf, chunk);
			if (err) {
				sender_fail(s, err, "connection #%u: write at offset %"
					    PRIu64 ": %s", i, off, strerror(-err));
				goto out;
			}
			s->sent += len;
		}
	}
	for (i = 0; i < n; i++) {
		if (s->end == H_END_RESET) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		} else if (s->end == H_END_READBACK) {
			if (shutdown(fds[i], SHUT_WR)) {
				sender_fail(s, -errno, "shutdown: %s", strerror(errno));
				goto out;
			}
			read_reply(s, fds[i], buf, chunk);
		}
		close(fds[i]);
		fds[i] = -1;
	}
out:
	for (i = 0; fds && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	free(buf);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

int h_sender_start(struct h_sender *s)
{
	int err;

	s->err = 0;
	s->msg[0] = 0;
	s->sent = 0;
	s->reply_got = 0;
	s->done = 0;
	err = pthread_create(&s->tid, NULL, sender_main, s);
	if (err)
		return -err;
	s->started = true;
	return 0;
}

bool h_sender_done(struct h_sender *s)
{
	return __atomic_load_n(&s->done, __ATOMIC_ACQUIRE);
}

int h_sender_join(struct h_sender *s)
{
	struct timespec ts;
	int err;

	if (!s->started)
		return s->err;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 120;
	err = pthread_timedjoin_np(s->tid, NULL, &ts);
	if (err) {
		fprintf(stderr, "sender thread did not end: %s\n", strerror(err));
		abort();
	}
	s->started = false;
	return s->err;
}

bool h_ctx_may_copy(const zc_ctx *ctx)
{
	const char *name = zc_engine_name(ctx);

	return name && !strcmp(name, "mmap");
}

/* ------------------------------------------------------------------ */
/* A zcnet sender on a thread of its own                               */
/* ------------------------------------------------------------------ */

struct zbuf {
	char *p;
	size_t len, off;   /* filled bytes, sent bytes */
	unsigned inflight; /* sends without SEND_DONE */
};

static void zfail(struct h_zsender *z, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void zfail(struct h_zsender *z, int err, const char *fmt, ...)
{
	va_list ap;

	if (z->err)
		return;
	z->err = err ? err : -EIO;
	va_start(ap, fmt);
	vsnprintf(z->msg, sizeof(z->msg), fmt, ap);
	va_end(ap);
}

/*
 * Send the stream in order: buffer *@cur until it is all taken, then the
 * next one, refilled once the SEND_DONE events of all its sends came.
 */
static void zpump(struct h_zsender *z, zc_ctx *ctx, zc_handle h, struct zbuf *b,
		  unsigned nbuf, size_t chunk, uint64_t *made, unsigned *cur,
		  bool *blocked)
{
	unsigned inflight = 0;

	*blocked = false;
	while (!z->err) {
		struct zbuf *x = &b[*cur];
		ssize_t n;

		if (x->off == x->len) {
			unsigned next = (*cur + 1) % nbuf;

			if (*made == z->bytes || b[next].inflight)
				break; /* the end, or wait for a SEND_DONE */
			*cur = next;
			x = &b[next];
			x->len = z->bytes - *made < chunk ? (size_t)(z->bytes - *made) : chunk;
			pat_fill(z->seed, *made, x->p, x->len);
			*made += x->len;
			x->off = 0;
		}
		n = zc_send_zerocopy(ctx, h, x->p + x->off, x->len - x->off, *cur);
		if (n == -EAGAIN) {
			*blocked = true;
			break;
		}
		if (n <= 0 || (size_t)n > x->len - x->off) {
			zfail(z, n < 0 ? (int)n : -EPROTO, "zc_send_zerocopy: %zd", n);
			break;
		}
		x->off += (size_t)n;
		x->inflight++;
		z->sent += (uint64_t)n;
		z->sends++;
		if (x->off < x->len) {
			*blocked = true; /* short: a WRITABLE event follows */
			break;
		}
	}
	for (unsigned i = 0; i < nbuf; i++)
		inflight += b[i].inflight;
	if (inflight > z->max_inflight)
		z->max_inflight = inflight;
}

static void *zsender_main(void *arg)
{
	struct h_zsender *z = arg;
	unsigned nbuf = z->nbuf ? z->nbuf : 8;
	size_t chunk = z->chunk ? z->chunk : 256 * KiB;
	struct zbuf *b = calloc(nbuf, sizeof(*b));
	struct zc_config cfg;
	struct zc_event ev[64];
	zc_ctx *ctx = NULL;
	zc_handle h = 0;
	uint64_t made = 0, deadline = h_deadline_ms(110000);
	unsigned cur = nbuf - 1;
	bool connected = false, blocked = false, shut = false, eof = false;
	char addr[64];
	int err;

	for (unsigned i = 0; b && i < nbuf; i++)
		if (posix_memalign((void **)&b[i].p, 4096, chunk))
			b[i].p = NULL;
	zc_config_init(&cfg);
	cfg.engine = z->engine;
	cfg.pool_size = 1 * MiB;
	if (!b || (err = zc_ctx_create(&cfg, &ctx))) {
		zfail(z, b ? err : -ENOMEM, "zc_ctx_create");
		goto out;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", z->port);
	if ((err = zc_connect_ex(ctx, addr, z->flags, &h))) {
		zfail(z, err, "zc_connect_ex: %s", zc_strerror(err));
		goto out;
	}
	while (!z->err && !eof) {
		int n = h_wait(ctx, ev, 64, 100);

		if (h_expired(deadline)) {
			zfail(z, -ETIMEDOUT, "timed out after %" PRIu64 " bytes", z->sent);
			break;
		}
		if (n < 0) {
			zfail(z, n, "zc_wait: %s", zc_strerror(n));
			break;
		}
		for (int i = 0; i < n && !z->err; i++) {
			switch (ev[i].type) {
			case ZC_EV_CONNECTED:
				connected = true;
				break;
			case ZC_EV_WRITABLE:
				blocked = false;
				break;
			case ZC_EV_SEND_DONE:
				if (ev[i].tag >= nbuf || !b[ev[i].tag].inflight) {
					zfail(z, -EPROTO, "SEND_DONE with tag %" PRIu64, ev[i].tag);
					break;
				}
				b[ev[i].tag].inflight--;
				z->done_events++;
				z->done_bytes += ev[i].bytes;
				if (ev[i].res == ZC_SEND_COPIED)
					z->done_copied++;
				else if (ev[i].res)
					zfail(z, -EPROTO, "SEND_DONE res %d", ev[i].res);
				break;
			case ZC_EV_DATA:
				for (unsigned k = 0; k < ev[i].npieces; k++)
					zc_release(ctx, &ev[i].pieces[k]);
				break;
			case ZC_EV_EOF:
				eof = true;
				break;
			case ZC_EV_ERROR:
				zfail(z, ev[i].res, "connection: %s", zc_strerror(ev[i].res));
				break;
			default:
				break;
			}
		}
		if (connected && !blocked && !shut)
			zpump(z, ctx, h, b, nbuf, chunk, &made, &cur, &blocked);
		if (connected && !shut && made == z->bytes && z->sent == z->bytes &&
		    z->done_events == z->sends) {
			if ((err = zc_shutdown(ctx, h, SHUT_WR)))
				zfail(z, err, "zc_shutdown: %s", zc_strerror(err));
			shut = true;
		}
	}
	if (!z->err && z->done_bytes != z->sent)
		zfail(z, -EPROTO, "SEND_DONE events cover %" PRIu64 " of %" PRIu64 " bytes",
		      z->done_bytes, z->sent);
out:
	zc_ctx_destroy(ctx);
	for (unsigned i = 0; b && i < nbuf; i++)
		free(b[i].p);
	free(b);
	__atomic_store_n(&z->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

int h_zsender_start(struct h_zsender *z)
{
	int err = pthread_create(&z->tid, NULL, zsender_main, z);

	if (err)
		return -err;
	z->started = true;
	return 0;
}

int h_zsender_join(struct h_zsender *z)
{
	if (z->started)
		pthread_join(z->tid, NULL);
	z->started = false;
	return z->err;
}

/* ------------------------------------------------------------------ */
/* Sending from a zcnet connection                                     */
/* ------------------------------------------------------------------ */

#define TX_CHUNK (256 * KiB)

int h_tx_pump(zc_ctx *ctx, struct h_tx *tx)
{
	if (!tx->buf && !(tx->buf = malloc(TX_CHUNK)))
		return -ENOMEM;
	tx->blocked = false;
	while (tx->off < tx->total) {
		size_t len = tx->total - tx->off < TX_CHUNK ?
			     (size_t)(tx->total - tx->off) : TX_CHUNK;
		ssize_t n;

		pat_fill(tx->seed, tx->off, tx->buf, len);
		n = zc_send(ctx, tx->h, tx->buf, len);
		if (n == -EAGAIN) {
			tx->blocked = true;
			tx->nshort++;
			return 0;
		}
		if (n < 0)
			return (int)n;
		if (n == 0 || (size_t)n > len)
			return -EPROTO; /* neither 1..len nor -EAGAIN */
		tx->off += (uint64_t)n;
		if ((size_t)n < len) {
			tx->blocked = true;
			tx->nshort++;
			return 0;
		}
	}
	return 1;
}

void h_tx_fini(struct h_tx *tx)
{
	free(tx->buf);
	tx->buf = NULL;
}

/* ------------------------------------------------------------------ */
/* The receive loop                                                    */
/* ------------------------------------------------------------------ */

void h_recv_init(struct h_recv *r, zc_ctx *ctx)
{
	memset(r, 0, sizeof(*r));
	r->ctx = ctx;
}

void h_recv_fini(struct h_recv *r, bool ctx_gone)
{
	if (!ctx_gone && r->ctx)
		h_release_all(r);
	for (size_t i = 0; i < r->nconns; i++)
		free(r->conns[i]);
	free(r->conns);
	free(r->tab);
	free(r->held);
	r->conns = NULL;
	r->tab = NULL;
	r->held = NULL;
	r->nconns = r->capconns = r->tabcap = r->nheld = r->capheld = 0;
}

void h_failf(struct h_recv *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nfail++)
		return;
	va_start(ap, fmt);
	vsnprintf(r->fail, sizeof(r->fail), fmt, ap);
	va_end(ap);
	fprintf(stderr, "# failure: %s\n", r->fail);
}

static size_t slot_of(zc_handle h, size_t cap)
{
	return (size_t)((h * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

struct h_conn *h_recv_find(struct h_recv *r, zc_handle h)
{
	size_t i;

	if (!r->tabcap)
		return NULL;
	for (i = slot_of(h, r->tabcap); r->tab[i]; i = (i + 1) & (r->tabcap - 1))
		if (r->conns[r->tab[i] - 1]->h == h)
			return r->conns[r->tab[i] - 1];
	return NULL;
}

static void tab_insert(struct h_recv *r, size_t idx)
{
	size_t i = slot_of(r->conns[idx]->h, r->tabcap);

	while (r->tab[i])
		i = (i + 1) & (r->tabcap - 1);
	r->tab[i] = idx + 1;
}

static struct h_conn *conn_new(struct h_recv *r, zc_handle h)
{
	struct h_conn *c;

	if (r->nconns == r->capconns) {
		size_t cap = r->capconns ? 2 * r->capconns : 64;
		struct h_conn **n = realloc(r->conns, cap * sizeof(*n));

		if (!n)
			return NULL;
		r->conns = n;
		r->capconns = cap;
	}
	if (2 * (r->nconns + 1) > r->tabcap) {
		size_t cap = r->tabcap ? 2 * r->tabcap : 256;

		free(r->tab);
		r->tab = calloc(cap, sizeof(*r->tab));
		if (!r->tab) {
			r->tabcap = 0;
			return NULL;
		}
		r->tabcap = cap;
		for (size_t i = 0; i < r->nconns; i++)
			tab_insert(r, i);
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->h = h;
	pat_verifier_init(&c->v);
	r->conns[r->nconns] = c;
	tab_insert(r, r->nconns);
	r->nconns++;
	return c;
}

static struct h_conn *conn_track(struct h_recv *r, zc_handle h)
{
	struct h_conn *c;
	int err;

	if (h == 0) {
		h_failf(r, "an event names handle 0");
		return NULL;
	}
	if (h_recv_find(r, h)) {
		h_failf(r, "handle %#" PRIx64 " given to a second connection", h);
		return NULL;
	}
	c = conn_new(r, h);
	if (!c) {
		h_failf(r, "out of memory");
		return NULL;
	}
	err = zc_set_user(r->ctx, h, c);
	if (err)
		h_failf(r, "zc_set_user(%#" PRIx64 "): %s", h, zc_strerror(err));
	c->user_batch = r->batch;
	return c;
}

struct h_conn *h_recv_add(struct h_recv *r, zc_handle h)
{
	struct h_conn *c = conn_track(r, h);

	if (c)
		c->outgoing = true;
	return c;
}

void h_hold(struct h_recv *r, struct h_conn *c, const struct zc_piece *p,
	    uint64_t until)
{
	struct h_held *hp;

	if (r->nheld == r->capheld) {
		size_t cap = r->capheld ? 2 * r->capheld : 64;
		struct h_held *n = realloc(r->held, cap * sizeof(*n));

		if (!n) {
			h_failf(r, "out of memory");
			return;
		}
		r->held = n;
		r->capheld = cap;
	}
	hp = &r->held[r->nheld++];
	hp->p = *p;
	hp->c = c;
	hp->hash = h_hash(p->data, p->len);
	hp->until = until;
	c->held++;
}

int h_release_held(struct h_recv *r, size_t i)
{
	struct h_held hp = r->held[i];
	int err;

	r->held[i] = r->held[--r->nheld];
	hp.c->held--;
	if (h_hash(hp.p.data, hp.p.len) != hp.hash)
		h_failf(r, "a held piece of connection %#" PRIx64 " changed "
			"before it was released", hp.c->h);
	err = zc_release(r->ctx, &hp.p);
	if (err)
		h_failf(r, "zc_release of a held piece: %s", zc_strerror(err));
	return err;
}

void h_release_all(struct h_recv *r)
{
	while (r->nheld)
		h_release_held(r, r->nheld - 1);
}

static void check_region(struct h_recv *r, const struct zc_piece *p)
{
	const char *d = p->data;

	for (unsigned i = 0; i < r->nregions; i++) {
		const char *base = r->regions[i].base;
		size_t usable = r->regions[i].len / r->piece_size * r->piece_size;

		if (d >= base && d < base + usable) {
			if ((size_t)(d - base) % r->piece_size ||
			    d + p->len > base + usable)
				h_failf(r, "piece %p+%zu is not on a piece boundary "
					"of region %u", p->data, p->len, i);
			return;
		}
	}
	h_failf(r, "piece %p+%zu lies in no region", p->data, p->len);
}

static void on_data(struct h_recv *r, struct h_conn *c, const struct zc_event *ev)
{
	uint64_t sum = 0, bad;

	if (!ev->pieces || ev->npieces == 0)
		h_failf(r, "DATA event with %u pieces at %p", ev->npieces,
			(const void *)ev->pieces);
	if (ev->offset != c->bytes)
		h_failf(r, "connection %#" PRIx64 ": DATA at offset %" PRIu64
			", expected %" PRIu64, c->h, ev->offset, c->bytes);
	for (unsigned i = 0; ev->pieces && i < ev->npieces; i++) {
		const struct zc_piece *p = &ev->pieces[i];

		sum += p->len;
		if (p->len == 0 || !p->data ||
		    (r->piece_size && p->len > r->piece_size)) {
			h_failf(r, "connection %#" PRIx64 ": piece %u of a DATA "
				"event: %p+%zu", c->h, i, p->data, p->len);
			continue;
		}
		if (r->nregions && r->piece_size)
			check_region(r, p);
		if (!c->bad && pat_verify(&c->v, p->data, p->len, &bad)) {
			c->bad = true;
			h_failf(r, "connection %#" PRIx64 ": stream does not match "
				"the pattern at offset %" PRIu64, c->h, bad);
		}
		if (!r->keep || !r->keep(r, c, p)) {
			int err = zc_release(r->ctx, p);

			if (err)
				h_failf(r, "zc_release: %s", zc_strerror(err));
		}
	}
	if (sum != ev->bytes)
		h_failf(r, "connection %#" PRIx64 ": DATA event of %zu bytes "
			"has pieces of %" PRIu64, c->h, ev->bytes, sum);
	c->bytes += sum;
	c->ndata++;
	r->bytes += sum;
}

static void on_end(struct h_recv *r, struct h_conn *c)
{
	struct zc_stats st;
	int err;
	char b = 0;

	r->nended++;
	if (r->keep_open)
		return;
	err = zc_conn_stats(r->ctx, c->h, &st);
	if (err) {
		h_failf(r, "zc_conn_stats: %s", zc_strerror(err));
	} else if (st.bytes_received != c->bytes ||
		   st.pieces_outstanding != c->held ||
		   (h_ctx_may_copy(r->ctx) ?
		    st.bytes_copied + st.bytes_mapped != st.bytes_received :
		    st.bytes_copied != 0 || st.bytes_mapped != 0) ||
		   st.pieces_total || st.connections || st.accepted) {
		h_failf(r, "connection %#" PRIx64 " statistics: received %" PRIu64
			" (saw %" PRIu64 ") outstanding %" PRIu64 " (hold %" PRIu64
			") copied %" PRIu64 " total %" PRIu64 " connections %" PRIu64
			" accepted %" PRIu64, c->h, st.bytes_received, c->bytes,
			st.pieces_outstanding, c->held, st.bytes_copied,
			st.pieces_total, st.connections, st.accepted);
	}
	err = zc_close(r->ctx, c->h);
	if (err)
		h_failf(r, "zc_close: %s", zc_strerror(err));
	c->state = H_CLOSED;
	if ((err = zc_conn_stats(r->ctx, c->h, &st)) != -EBADF)
		h_failf(r, "zc_conn_stats on a closed handle: %d", err);
	if ((err = (int)zc_send(r->ctx, c->h, &b, 1)) != -EBADF)
		h_failf(r, "zc_send on a closed handle: %d", err);
}

static const char *ev_name(int type)
{
	static const char *const names[] = {
		"?", "ACCEPT", "CONNECTED", "DATA", "EOF", "ERROR", "WRITABLE",
	};

	return type > 0 && type <= ZC_EV_WRITABLE ? names[type] : "?";
}

static void on_event(struct h_recv *r, const struct zc_event *ev)
{
	struct h_conn *c = NULL;

	r->nevents++;
	if (ev->type == ZC_EV_ACCEPT) {
		if (r->listener && ev->listener != r->listener)
			h_failf(r, "ACCEPT names listener %#" PRIx64 ", not %#" PRIx64,
				ev->listener, r->listener);
		c = conn_track(r, ev->conn);
		if (!c)
			return;
		c->accepted = true;
		r->naccepted++;
		goto hook;
	}
	c = h_recv_find(r, ev->conn);
	if (!c) {
		h_failf(r, "%s event for unknown handle %#" PRIx64,
			ev_name(ev->type), ev->conn);
		return;
	}
	if (c->state == H_CLOSED) {
		h_failf(r, "%s event for closed handle %#" PRIx64,
			ev_name(ev->type), ev->conn);
		return;
	}
	if (r->batch > c->user_batch && ev->user != c)
		h_failf(r, "%s event of %#" PRIx64 " carries user %p, not %p",
			ev_name(ev->type), c->h, ev->user, (void *)c);
	switch (ev->type) {
	case ZC_EV_CONNECTED:
		if (!c->outgoing || c->connected || c->state != H_OPEN)
			h_failf(r, "unexpected CONNECTED for %#" PRIx64, c->h);
		c->connected = true;
		r->nconnected++;
		break;
	case ZC_EV_DATA:
		if (c->state != H_OPEN || (!c->accepted && !c->connected))
			h_failf(r, "DATA for %#" PRIx64 " before it was connected "
				"or after its end", c->h);
		on_data(r, c, ev);
		break;
	case ZC_EV_EOF:
	case ZC_EV_ERROR:
		if (c->state != H_OPEN)
			h_failf(r, "a second end (%s) for %#" PRIx64,
				ev_name(ev->type), c->h);
		if (ev->type == ZC_EV_EOF) {
			c->state = c->end = H_EOF;
			r->neof++;
		} else {
			c->state = c->end = H_ERROR;
			c->err = ev->res;
			r->nerror++;
			if (ev->res >= 0)
				h_failf(r, "ERROR event with res %d", ev->res);
		}
		if (r->on_event)
			r->on_event(r, c, ev);
		on_end(r, c);
		return;
	case ZC_EV_WRITABLE:
		r->nwritable++;
		break;
	default:
		h_failf(r, "event of unknown type %d", (int)ev->type);
		return;
	}
hook:
	if (r->on_event)
		r->on_event(r, c, ev);
}

int h_recv_step(struct h_recv *r)
{
	struct zc_event evs[64];
	int n;

	n = zc_wait(r->ctx, evs, 64, r->wait_ms == H_POLL ? 0 :
				     r->wait_ms ? r->wait_ms : 100);
	if (n == -EINTR)
		n = 0;
	if (n < 0) {
		h_failf(r, "zc_wait: %s", zc_strerror(n));
		return n;
	}
	if (n > 64) {
		h_failf(r, "zc_wait returned %d events for 64 slots", n);
		return -EPROTO;
	}
	r->batch++;
	for (int i = 0; i < n; i++)
		on_event(r, &evs[i]);
	if (r->tick)
		r->tick(r, n);
	return n;
}

int h_recv_until(struct h_recv *r, bool (*done)(struct h_recv *r),
		 unsigned timeout_s)
{
	uint64_t deadline = h_deadline_ms(timeout_s * 1000ull);

	for (;;) {
		if (r->nfail)
			return -1;
		if (done(r))
			return 0;
		if (h_expired(deadline)) {
			h_failf(r, "timed out after %u s: %u accepted, %u connected, "
				"%u ended, %" PRIu64 " bytes, %zu pieces held",
				timeout_s, r->naccepted, r->nconnected, r->nended,
				r->bytes, r->nheld);
			return -1;
		}
		if (h_recv_step(r) < 0)
			return -1;
	}
}

static bool ended_enough(struct h_recv *r)
{
	return r->nended >= r->target;
}

int h_recv_until_ended(struct h_recv *r, unsigned n, unsigned timeout_s)
{
	r->target = n;
	return h_recv_until(r, ended_enough, timeout_s);
}

void h_check_ctx_stats(struct h_recv *r)
{
	struct zc_stats st;
	uint64_t open = 0;
	bool pending = false;
	int err = zc_ctx_stats(r->ctx, &st);

	if (err) {
		h_failf(r, "zc_ctx_stats: %s", zc_strerror(err));
		return;
	}
	for (size_t i = 0; i < r->nconns; i++) {
		const struct h_conn *c = r->conns[i];

		if (c->state == H_CLOSED)
			continue;
		if (c->accepted || c->connected)
			open++;
		else
			pending = true;
	}
	if (st.bytes_received != r->bytes ||
	    (h_ctx_may_copy(r->ctx) ?
	     st.bytes_copied + st.bytes_mapped != st.bytes_received :
	     st.bytes_copied != 0 || st.bytes_mapped != 0) ||
	    st.pieces_outstanding != r->nheld ||
	    st.pieces_outstanding > st.pieces_total ||
	    st.accepted != r->naccepted || (!pending && st.connections != open))
		h_failf(r, "context statistics: received %" PRIu64 " (saw %" PRIu64
			") copied %" PRIu64 " outstanding %" PRIu64 " (hold %zu) of %"
			PRIu64 " accepted %" PRIu64 " (saw %u) connections %" PRIu64
			" (open %" PRIu64 ")", st.bytes_received, r->bytes,
			st.bytes_copied, st.pieces_outstanding, r->nheld,
			st.pieces_total, st.accepted, r->naccepted, st.connections,
			open);
}
