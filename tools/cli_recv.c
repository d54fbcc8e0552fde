/*
 * cli_recv.c - `zcnet recv`: accept connections and receive them through
 * zcnet (or, with --engine plain, through plain recv() for comparison),
 * optionally verifying the test pattern or writing the stream to a file.
 *
 * With the library, every thread runs its own context and listener; the
 * kernel spreads connections over them (SO_REUSEPORT). The threads share
 * only the counters below.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "zcnet.h"
#include "pattern.h"
#include "cli.h"

const char recv_usage[] =
	"usage: zcnet recv --listen ADDR:PORT [OPTIONS]\n"
	"\n"
	"Accept connections and receive them until --connections of them have\n"
	"ended, then print a summary line on stdout.\n"
	"\n"
	"  --listen ADDR:PORT   address to listen on; port 0 picks a free port\n"
	"  --engine E           auto (default), uring, socket, mmap (map page-\n"
	"                       aligned payload, see `zcnet send --zerocopy`),\n"
	"                       or plain: blocking recv() without zcnet, as a\n"
	"                       baseline\n"
	"  --page-aligned       one page of payload per TCP segment (ZC_PAGE_ALIGNED)\n"
	"  --pool-mb N          pool per thread in MiB (default 16)\n"
	"  --piece-kb N         piece size in KiB (default 64)\n"
	"  --threads N          receiving threads, one context each (default 1;\n"
	"                       more than 1 needs a fixed port)\n"
	"  --connections N      connections to receive before exiting (default 1)\n"
	"  --verify pattern     check the stream of `zcnet send --pattern`\n"
	"  --hold-ms N          keep each piece N ms before releasing it\n"
	"  --batch-us N         while data comes in bulk, gather it up to\n"
	"                       N us per wait: less CPU, up to N us more\n"
	"                       latency (default 200, 0: off)\n"
	"  --out FILE           write the stream to FILE (one connection only)\n"
	"\n"
	"--engine plain uses one thread per connection and a 256 KiB buffer;\n"
	"--threads, --pool-mb, --piece-kb and --hold-ms do not apply to it.\n"
	"\n"
	"On start, one line on stderr names the address, engine and features:\n"
	"  zcnet recv: listening on 127.0.0.1:PORT engine=E features=F\n"
	"At the end, one line on stdout:\n"
	"  summary engine=E bytes=N seconds=S gbps=G cpu_s_per_gb=C copied=N\n"
	"          mapped=N stalls=N connections=N peak_rss_kb=N\n"
	"(mapped: bytes the mmap engine mapped instead of copying; copied: bytes\n"
	"it read into pool pieces; both 0 with the other engines)\n";

#define WAIT_MS    100          /* how soon threads notice the end */
#define MAX_EVENTS 64
#define PLAIN_BUF  (256 * 1024)

struct recv_opts {
	const char *listen;
	int engine;                 /* enum zc_engine_kind or ENGINE_PLAIN */
	uint64_t pool_mb, piece_kb, threads, connections, hold_ms, batch_us;
	int verify;
	int page_aligned;
	const char *out;
};

/* What all receiving threads share. */
struct recv_run {
	const struct recv_opts *o;
	char host[256];             /* the host part of --listen, as written */
	int out_fd;

	atomic_uint accepted;       /* connections accepted, extra ones too */
	atomic_uint ended;          /* of the first o->connections, ended */
	atomic_uint errors;         /* of those, ended by an error */
	atomic_ullong bytes;
	atomic_int stop;            /* a fatal error: everybody stop */

	/* Written once: by the first accept, and by the last end. */
	uint64_t t0, cpu0, t_end, cpu_end;

	/* Start-up: the listening line waits until every thread listens. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned ready;
	int setup_failed;
	int port;
	char engine[16];
	char features[128];
	uint64_t copied, mapped, stalls; /* summed as the threads finish */
};

/* One connection being received. */
struct rconn {
	struct recv_run *run;
	unsigned index;             /* accept order, from 0 */
	zc_handle h;                /* library engines */
	int fd;                     /* plain */
	pthread_t tid;              /* plain */
	uint64_t received;
	struct pat_verifier v;
};

/* A piece kept for --hold-ms, and when to release it. */
struct held {
	struct zc_piece p;
	uint64_t due;
};

/* One receiving thread of a library engine. */
struct rthread {
	struct recv_run *run;
	unsigned index;
	pthread_t tid;
	zc_ctx *ctx;
	zc_handle listener;
	struct rconn **conns;       /* this thread's live connections */
	unsigned nconns, conns_cap;
	struct held *fifo;          /* --hold-ms: ring of held pieces */
	unsigned head, nheld, fifo_cap;
};

/* Report a fatal error once and make every thread stop. */
static void fail(struct recv_run *run, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&run->stop, 1))
		return; /* the first cause is the one worth reading */
	va_start(ap, fmt);
	fputs("zcnet recv: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int run_over(struct recv_run *run)
{
	return atomic_load(&run->stop) ||
	       atomic_load(&run->ended) >= run->o->connections;
}

/*
 * Count a new connection. Returns its index, or -1 if enough have come
 * already (the caller closes it). The first one starts the clocks.
 */
static int conn_begin(struct recv_run *run)
{
	unsigned idx = atomic_fetch_add(&run->accepted, 1);

	if (idx >= run->o->connections)
		return -1;
	if (idx == 0) {
		run->t0 = now_ns();
		run->cpu0 = cpu_ns();
	}
	return (int)idx;
}

static void conn_end(struct recv_run *run, int err)
{
	if (err)
		atomic_fetch_add(&run->errors, 1);
	/* The last end stops the clocks; they are read after the joins. */
	if (atomic_fetch_add(&run->ended, 1) + 1 == run->o->connections) {
		run->t_end = now_ns();
		run->cpu_end = cpu_ns();
	}
}

/* Verify and store the next @len bytes of connection @c. 0 or -1. */
static int consume(struct rconn *c, const void *data, size_t len)
{
	struct recv_run *run = c->run;
	uint64_t bad;
	int err;

	if (run->o->verify && pat_verify(&c->v, data, len, &bad)) {
		fail(run, "pattern mismatch at offset %llu (connection %u)",
		     (unsigned long long)bad, c->index);
		return -1;
	}
	if (run->out_fd >= 0) {
		err = write_all(run->out_fd, data, len);
		if (err) {
			fail(run, "write %s: %s", run->o->out, strerror(-err));
			return -1;
		}
	}
	c->received += len;
	atomic_fetch_add(&run->bytes, len);
	return 0;
}

static struct rconn *conn_new(struct recv_run *run, unsigned index)
{
	struct rconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->run = run;
	c->index = index;
	c->fd = -1;
	pat_verifier_init(&c->v);
	return c;
}

/* ------------------------------------------------------------------ */
/* Library engines                                                     */
/* ------------------------------------------------------------------ */

static int add_conn(struct rthread *t, struct rconn *c)
{
	if (t->nconns == t->conns_cap) {
		unsigned cap = t->conns_cap ? 2 * t->conns_cap : 8;
		struct rconn **n = realloc(t->conns, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->conns = n;
		t->conns_cap = cap;
	}
	t->conns[t->nconns++] = c;
	return 0;
}

/* The connection an event is about: on_accept() set it as the user
 * pointer, and zc_wait() ends a batch at each ACCEPT so it applies. */
static struct rconn *find_conn(struct rthread *t, const struct zc_event *ev)
{
	return ev->user;
}

static void drop_conn(struct rthread *t, struct rconn *c)
{
	for (unsigned i = 0; i < t->nconns; i++) {
		if (t->conns[i] == c) {
			t->conns[i] = t->conns[--t->nconns];
			break;
		}
	}
	zc_close(t->ctx, c->h);
	free(c);
}

static void release(struct rthread *t, const struct zc_piece *p)
{
	int err = zc_release(t->ctx, p);

	if (err)
		fail(t->run, "zc_release: %s", zc_strerror(err));
}

static void release_due(struct rthread *t, uint64_t now)
{
	while (t->nheld && t->fifo[t->head].due <= now) {
		release(t, &t->fifo[t->head].p);
		t->head = (t->head + 1) % t->fifo_cap;
		t->nheld--;
	}
}

/* Release the piece now, or queue it for --hold-ms. */
static void done_with(struct rthread *t, const struct zc_piece *p, uint64_t now)
{
	struct held *h;

	if (!t->fifo_cap) {
		release(t, p);
		return;
	}
	/* The pool has no more pieces than the ring holds; but be safe. */
	if (t->nheld == t->fifo_cap)
		release_due(t, UINT64_MAX);
	h = &t->fifo[(t->head + t->nheld) % t->fifo_cap];
	h->p = *p; /* the event's array is only valid until the next wait */
	h->due = now + t->run->o->hold_ms * 1000000u;
	t->nheld++;
}

static void on_accept(struct rthread *t, const struct zc_event *ev)
{
	int idx = conn_begin(t->run);
	struct rconn *c;

	if (idx < 0) {
		zc_close(t->ctx, ev->conn);
		return;
	}
	c = conn_new(t->run, idx);
	if (!c || add_conn(t, c)) {
		free(c);
		fail(t->run, "out of memory");
		return;
	}
	c->h = ev->conn;
	zc_set_user(t->ctx, ev->conn, c);
}

static void on_data(struct rthread *t, const struct zc_event *ev)
{
	struct rconn *c = find_conn(t, ev);
	uint64_t now = t->fifo_cap ? now_ns() : 0;
	int ok = c != NULL; /* no: a connection beyond --connections */

	if (ok && ev->offset != c->received) {
		fail(t->run, "data at stream offset %llu, expected %llu (connection %u)",
		     (unsigned long long)ev->offset,
		     (unsigned long long)c->received, c->index);
		ok = 0;
	}
	for (unsigned i = 0; i < ev->npieces; i++) {
		const struct zc_piece *p = &ev->pieces[i];

		if (ok && consume(c, p->data, p->len))
			ok = 0;
		done_with(t, p, now);
	}
}

static void on_end(struct rthread *t, const struct zc_event *ev)
{
	struct rconn *c = find_conn(t, ev);

	if (!c)
		return;
	if (ev->type == ZC_EV_ERROR)
		fprintf(stderr, "zcnet recv: connection %u: %s after %llu bytes\n",
			c->index, zc_strerror(ev->res),
			(unsigned long long)c->received);
	conn_end(t->run, ev->type == ZC_EV_ERROR);
	drop_conn(t, c);
}

static void on_event(struct rthread *t, const struct zc_event *ev)
{
	switch (ev->type) {
	case ZC_EV_ACCEPT:
		on_accept(t, ev);
		break;
	case ZC_EV_DATA:
		on_data(t, ev);
		break;
	case ZC_EV_EOF:
	case ZC_EV_ERROR:
		on_end(t, ev);
		break;
	default:
		break; /* CONNECTED and WRITABLE concern senders */
	}
}

/* How long to wait: until the next held piece is due, at most WAIT_MS. */
static int wait_ms(struct rthread *t)
{
	uint64_t now, due;

	if (!t->nheld)
		return WAIT_MS;
	now = now_ns();
	due = t->fifo[t->head].due;
	if (due <= now)
		return 0;
	if (due - now >= WAIT_MS * 1000000ull)
		return WAIT_MS;
	return (int)((due - now + 999999) / 1000000);
}

static void receive_loop(struct rthread *t)
{
	struct zc_event evs[MAX_EVENTS];

	while (!run_over(t->run)) {
		int n = zc_wait(t->ctx, evs, MAX_EVENTS, wait_ms(t));

		if (n == -EINTR)
			continue;
		if (n < 0) {
			fail(t->run, "zc_wait: %s", zc_strerror(n));
			return;
		}
		for (int i = 0; i < n; i++)
			on_event(t, &evs[i]);
		if (t->nheld)
			release_due(t, now_ns());
	}
}

/* Create the context and the listener. 0 or -1 after a message. */
static int thread_setup(struct rthread *t)
{
	const struct recv_opts *o = t->run->o;
	unsigned flags = (o->threads > 1 ? ZC_LISTEN_REUSEPORT : 0) |
			 (o->page_aligned ? ZC_PAGE_ALIGNED : 0);
	struct zc_config cfg;
	struct zc_stats st;
	int err;

	zc_config_init(&cfg);
	cfg.engine = o->engine;
	cfg.pool_size = o->pool_mb << 20;
	cfg.piece_size = o->piece_kb << 10;
	if (o->batch_us != UINT64_MAX) /* else the library's default */
		cfg.batch_usec = (unsigned)o->batch_us;
	err = zc_ctx_create(&cfg, &t->ctx);
	if (err) {
		fail(t->run, "engine %s with a %llu MiB pool of %llu KiB pieces: %s",
		     o->engine == ZC_ENGINE_URING ? "uring" :
		     o->engine == ZC_ENGINE_MMAP ? "mmap" :
		     o->engine == ZC_ENGINE_SOCKET ? "socket" : "auto",
		     (unsigned long long)o->pool_mb,
		     (unsigned long long)o->piece_kb, zc_strerror(err));
		return -1;
	}
	err = zc_listen(t->ctx, o->listen, flags, &t->listener);
	if (err) {
		fail(t->run, "listen %s: %s", o->listen, zc_strerror(err));
		return -1;
	}
	if (o->hold_ms) {
		/* Every piece of the pool can be held at once, no more. */
		zc_ctx_stats(t->ctx, &st);
		t->fifo_cap = st.pieces_total ? st.pieces_total : 1;
		t->fifo = calloc(t->fifo_cap, sizeof(*t->fifo));
		if (!t->fifo) {
			fail(t->run, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* Tell the main thread this one is listening (or failed to). */
static void thread_ready(struct rthread *t, int failed)
{
	struct recv_run *run = t->run;
	const char *f;
	char *d;

	pthread_mutex_lock(&run->lock);
	if (failed) {
		run->setup_failed = 1;
	} else if (t->index == 0) {
		run->port = zc_local_port(t->ctx, t->listener);
		snprintf(run->engine, sizeof(run->engine), "%s",
			 zc_engine_name(t->ctx));
		/* "multishot bundle" -> "multishot,bundle": one token */
		f = zc_engine_features(t->ctx);
		snprintf(run->features, sizeof(run->features), "%s",
			 *f ? f : "none");
		for (d = run->features; *d; d++)
			if (*d == ' ')
				*d = ',';
	}
	run->ready++;
	pthread_cond_signal(&run->cond);
	pthread_mutex_unlock(&run->lock);
}

static void thread_cleanup(struct rthread *t)
{
	struct recv_run *run = t->run;
	struct zc_stats st;

	release_due(t, UINT64_MAX);
	while (t->nconns)
		drop_conn(t, t->conns[t->nconns - 1]);
	if (t->ctx && !zc_ctx_stats(t->ctx, &st)) {
		pthread_mutex_lock(&run->lock);
		run->copied += st.bytes_copied;
		run->mapped += st.bytes_mapped;
		run->stalls += st.stalls;
		pthread_mutex_unlock(&run->lock);
	}
	zc_ctx_destroy(t->ctx); /* on this thread: it created the context */
	free(t->conns);
	free(t->fifo);
}

static void *recv_thread(void *arg)
{
	struct rthread *t = arg;
	int failed = thread_setup(t);

	thread_ready(t, failed);
	if (!failed)
		receive_loop(t);
	thread_cleanup(t);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The plain baseline: blocking sockets, no zcnet                       */
/* ------------------------------------------------------------------ */

/* Listen on "host:port" with a plain socket. Returns the fd or -errno. */
static int plain_listen(const char *addr, int *port)
{
	struct addrinfo hints = { 0 }, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], portstr[8];
	char *h = host;
	long p;
	int fd, one = 1, err;

	if (split_hostport(addr, host, sizeof(host), &p))
		return -EINVAL;
	if (host[0] == '[') { /* "[::1]" -> "::1" */
		host[strlen(host) - 1] = '\0';
		h++;
	}
	snprintf(portstr, sizeof(portstr), "%ld", p);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(h, portstr, &hints, &ai))
		return -EINVAL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		err = -errno;
		close(fd);
		goto out;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ?
		      ((struct sockaddr_in6 *)&ss)->sin6_port :
		      ((struct sockaddr_in *)&ss)->sin_port);
	err = fd;
out:
	freeaddrinfo(ai);
	return err;
}

static void *plain_conn_thread(void *arg)
{
	struct rconn *c = arg;
	struct recv_run *run = c->run;
	char *buf = malloc(PLAIN_BUF);
	int err = 0;

	if (!buf) {
		fail(run, "out of memory");
		return NULL;
	}
	for (;;) {
		ssize_t r = recv(c->fd, buf, PLAIN_BUF, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			fprintf(stderr, "zcnet recv: connection %u: %s after %llu bytes\n",
				c->index, strerror(err),
				(unsigned long long)c->received);
			break;
		}
		if (r == 0 || atomic_load(&run->stop))
			break;
		if (consume(c, buf, r)) {
			free(buf);
			return NULL; /* fatal: the run stops */
		}
	}
	free(buf);
	/* Close our side now: the sender waits for it. The fd itself is
	 * closed after the join, so the main thread can always use it. */
	shutdown(c->fd, SHUT_RDWR);
	if (!atomic_load(&run->stop))
		conn_end(run, err);
	return NULL;
}

/* Accept one connection and start its thread. */
static void plain_accept(struct recv_run *run, int lfd, struct rconn **conns,
			 unsigned *nconns)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	int idx;
	struct rconn *c;

	if (fd < 0)
		return; /* the peer gave up already; or try again later */
	idx = conn_begin(run);
	if (idx < 0) {
		close(fd);
		return;
	}
	c = conn_new(run, idx);
	if (!c) {
		close(fd);
		fail(run, "out of memory");
		return;
	}
	c->fd = fd;
	if (pthread_create(&c->tid, NULL, plain_conn_thread, c)) {
		close(fd);
		free(c);
		fail(run, "cannot start a thread");
		return;
	}
	conns[(*nconns)++] = c;
}

/* ------------------------------------------------------------------ */
/* The command                                                         */
/* ------------------------------------------------------------------ */

static void progress_line(struct recv_run *run, struct progress *pr)
{
	uint64_t bytes = atomic_load(&run->bytes);
	char b[32];
	double gbps;

	if (!atomic_load(&run->accepted)) {
		progress_init(pr); /* rates count from the first connection */
		return;
	}
	if (!progress_due(pr, bytes, &gbps))
		return;
	fprintf(stderr, "zcnet recv: %s, %.2f GB/s, connections %u/%llu\n",
		fmt_bytes(b, sizeof(b), bytes), gbps, atomic_load(&run->ended),
		(unsigned long long)run->o->connections);
}

static void print_listening(struct recv_run *run)
{
	fprintf(stderr, "zcnet recv: listening on %s:%d engine=%s features=%s\n",
		run->host, run->port, run->engine, run->features);
}

/* The summary line on stdout; returns the exit status. */
static int finish(struct recv_run *run)
{
	uint64_t bytes = atomic_load(&run->bytes);
	double secs = (double)(run->t_end - run->t0) / 1e9;
	double cpu = (double)(run->cpu_end - run->cpu0) / 1e9;
	unsigned errors = atomic_load(&run->errors);

	if (atomic_load(&run->stop))
		return 1;
	printf("summary engine=%s bytes=%llu seconds=%.3f gbps=%.3f cpu_s_per_gb=%.3f "
	       "copied=%llu mapped=%llu stalls=%llu connections=%u peak_rss_kb=%ld\n",
	       run->engine, (unsigned long long)bytes, secs,
	       secs > 0 ? bytes / secs / 1e9 : 0.0,
	       bytes ? cpu / (bytes / 1e9) : 0.0,
	       (unsigned long long)run->copied, (unsigned long long)run->mapped,
	       (unsigned long long)run->stalls,
	       atomic_load(&run->ended), peak_rss_kb());
	fflush(stdout);
	if (errors) {
		fprintf(stderr, "zcnet recv: %u of %u connections ended in an error\n",
			errors, atomic_load(&run->ended));
		return 1;
	}
	return 0;
}

static int recv_plain(struct recv_run *run)
{
	struct rconn **conns;
	unsigned nconns = 0;
	struct progress pr;
	int lfd, status;

	conns = calloc(run->o->connections, sizeof(*conns));
	if (!conns) {
		fprintf(stderr, "zcnet recv: out of memory\n");
		return 1;
	}
	lfd = plain_listen(run->o->listen, &run->port);
	if (lfd < 0) {
		fprintf(stderr, "zcnet recv: listen %s: %s\n", run->o->listen,
			strerror(-lfd));
		free(conns);
		return 1;
	}
	strcpy(run->engine, "plain");
	strcpy(run->features, "none");
	print_listening(run);
	progress_init(&pr);
	while (!run_over(run)) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };

		if (poll(&pfd, 1, WAIT_MS) > 0)
			plain_accept(run, lfd, conns, &nconns);
		progress_line(run, &pr);
	}
	close(lfd);
	for (unsigned i = 0; i < nconns; i++) {
		/* After a fatal error, wake threads still blocked in recv(). */
		if (atomic_load(&run->stop))
			shutdown(conns[i]->fd, SHUT_RDWR);
		pthread_join(conns[i]->tid, NULL);
		close(conns[i]->fd);
		free(conns[i]);
	}
	free(conns);
	status = finish(run);
	return status;
}

static int recv_library(struct recv_run *run)
{
	unsigned n = run->o->threads, started;
	struct rthread *ts = calloc(n, sizeof(*ts));
	struct progress pr;

	if (!ts) {
		fprintf(stderr, "zcnet recv: out of memory\n");
		return 1;
	}
	for (started = 0; started < n; started++) {
		ts[started].run = run;
		ts[started].index = started;
		if (pthread_create(&ts[started].tid, NULL, recv_thread, &ts[started])) {
			fail(run, "cannot start a thread");
			break;
		}
	}
	pthread_mutex_lock(&run->lock);
	while (run->ready < started)
		pthread_cond_wait(&run->cond, &run->lock);
	pthread_mutex_unlock(&run->lock);

	if (!run->setup_failed && started == n)
		print_listening(run);
	progress_init(&pr);
	while (!run_over(run)) {
		usleep(WAIT_MS * 1000);
		progress_line(run, &pr);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(ts[i].tid, NULL);
	free(ts);
	return finish(run);
}

static int parse_args(int argc, char **argv, struct recv_opts *o)
{
	uint64_t mb = 16, kb = 64, threads = 1, conns = 1, hold = 0;
	const char *v;

	*o = (struct recv_opts){ .engine = ZC_ENGINE_AUTO, .batch_us = UINT64_MAX };
	for (int i = 1; i < argc; i++) {
		int r;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(recv_usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--page-aligned")) {
			o->page_aligned = 1;
			continue;
		}
#define OPT(name) ((r = opt_value("recv", argc, argv, &i, name, &v)) != 0)
		if (OPT("--listen")) {
			o->listen = v;
		} else if (OPT("--engine")) {
			if (r > 0 && (o->engine = parse_engine("recv", v, 1)) < 0)
				r = -1;
		} else if (OPT("--pool-mb")) {
			if (r > 0 && parse_uint("recv", "--pool-mb", v, 1, 1 << 20, &mb))
				r = -1;
		} else if (OPT("--piece-kb")) {
			if (r > 0 && parse_uint("recv", "--piece-kb", v, 1, 1 << 20, &kb))
				r = -1;
		} else if (OPT("--threads")) {
			if (r > 0 && parse_uint("recv", "--threads", v, 1, 1024, &threads))
				r = -1;
		} else if (OPT("--connections")) {
			if (r > 0 && parse_uint("recv", "--connections", v, 1, 1000000, &conns))
				r = -1;
		} else if (OPT("--hold-ms")) {
			if (r > 0 && parse_uint("recv", "--hold-ms", v, 0, 3600000, &hold))
				r = -1;
		} else if (OPT("--batch-us")) {
			if (r > 0 && parse_uint("recv", "--batch-us", v, 0, 1000000,
						&o->batch_us))
				r = -1;
		} else if (OPT("--verify")) {
			if (r > 0 && strcmp(v, "pattern")) {
				fprintf(stderr, "zcnet recv: --verify '%s': the only check is 'pattern'\n", v);
				r = -1;
			}
			o->verify = 1;
		} else if (OPT("--out")) {
			o->out = v;
		} else {
			return opt_unknown("recv", argv[i]);
		}
#undef OPT
		if (r < 0)
			return EXIT_USAGE;
	}
	o->pool_mb = mb;
	o->piece_kb = kb;
	o->threads = threads;
	o->connections = conns;
	o->hold_ms = hold;
	return -1; /* go on */
}

static int check_args(const struct recv_opts *o, struct recv_run *run)
{
	long port;

	if (!o->listen) {
		fprintf(stderr, "zcnet recv: --listen ADDR:PORT is required; see 'zcnet recv --help'\n");
		return EXIT_USAGE;
	}
	if (o->out && o->connections != 1) {
		fprintf(stderr, "zcnet recv: --out needs --connections 1 (one stream, one file)\n");
		return EXIT_USAGE;
	}
	if (split_hostport(o->listen, run->host, sizeof(run->host), &port)) {
		fprintf(stderr, "zcnet recv: listen %s: %s\n", o->listen, strerror(EINVAL));
		return 1;
	}
	if (o->threads > 1 && port == 0 && o->engine != ENGINE_PLAIN) {
		fprintf(stderr, "zcnet recv: --threads %llu needs a fixed port: with port 0 "
			"every thread would listen on a port of its own\n",
			(unsigned long long)o->threads);
		return EXIT_USAGE;
	}
	return 0;
}

int cmd_recv(int argc, char **argv)
{
	struct recv_opts o;
	struct recv_run run = {
		.o = &o,
		.out_fd = -1,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	int status;

	status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	status = check_args(&o, &run);
	if (status)
		return status;
	if (o.out) {
		run.out_fd = open(o.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (run.out_fd < 0) {
			fprintf(stderr, "zcnet recv: open %s: %s\n", o.out, strerror(errno));
			return 1;
		}
	}
	if (o.engine == ENGINE_PLAIN)
		status = recv_plain(&run);
	else
		status = recv_library(&run);
	if (run.out_fd >= 0 && close(run.out_fd) && !status) {
		fprintf(stderr, "zcnet recv: close %s: %s\n", o.out, strerror(errno));
		status = 1;
	}
	return status;
}
