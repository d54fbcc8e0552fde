/*
 * cli_send.c - `zcnet send`: open connections through zcnet and send the
 * test pattern, zeros or a file on each, concurrently, from one context.
 *
 * Each connection sends its stream in chunks of --chunk-kb (256 KiB). When
 * the kernel takes less than a chunk, the rest waits for ZC_EV_WRITABLE.
 * After the last byte it shuts its sending side and waits for the
 * receiver to close, so "done" means the receiver has read everything.
 *
 * With --zerocopy, sends go through zc_send_zerocopy() from a ring of
 * 8 to 64 buffers per connection (4 MiB in flight), in stream order; a buffer is refilled
 * only after the ZC_EV_SEND_DONE events of all its sends.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "zcnet.h"
#include "pattern.h"
#include "cli.h"

const char send_usage[] =
	"usage: zcnet send --connect ADDR:PORT (--bytes N [--pattern] | --file F)\n"
	"                  [--connections N] [--engine E] [--chunk-kb N]\n"
	"                  [--zerocopy [--page-aligned] [--zerocopy-min N]]\n"
	"\n"
	"Send on N connections at once, each its own copy of the stream, then\n"
	"wait for the receiver to close each one and print a summary on stdout.\n"
	"\n"
	"  --connect ADDR:PORT  where to connect; a refused connection is\n"
	"                       retried for about 2 seconds\n"
	"  --bytes N            send N bytes (K, M, G suffixes): zeros, or with\n"
	"  --pattern            the test pattern (a different seed per connection)\n"
	"  --file F             send the content of F\n"
	"  --connections N      connections (default 1)\n"
	"  --engine E           auto (default), uring, socket or mmap\n"
	"  --zerocopy           send without copying (MSG_ZEROCOPY): each buffer is\n"
	"                       reused only once the kernel says it is done with it\n"
	"  --page-aligned       one page of payload per TCP segment, so that a\n"
	"                       `zcnet recv --engine mmap` receiver can map it all\n"
	"  --zerocopy-min N     copy sends shorter than N bytes (default 16K,\n"
	"                       zc_config.zerocopy_min)\n"
	"  --chunk-kb N         bytes per send call, in KiB (default 256)\n"
	"\n"
	"At the end, one line on stdout:\n"
	"  summary bytes=N seconds=S gbps=G cpu_s_per_gb=C connections=N sends=N\n"
	"          send_done=N send_copied=N\n"
	"(cpu_s_per_gb: this process's user+sys CPU seconds per 10^9 bytes;\n"
	"send_done: ZC_EV_SEND_DONE events; send_copied: those the kernel copied)\n";

#define CHUNK_KB      256   /* default bytes per send, in KiB */
#define MAX_EVENTS    64
#define WAIT_MS       100
#define RETRY_MS      200   /* 10 tries: about 2 s for a receiver to start */
#define MAX_ATTEMPTS  10
#define EOF_WAIT_S    30    /* how long the receiver may take to close */
/* --zerocopy: buffers per connection, enough for ZC_INFLIGHT bytes to be
 * in flight while completions come back (they are read about every
 * millisecond), but at least ZC_BUFS_MIN and at most ZC_BUFS. */
#define ZC_BUFS       64
#define ZC_BUFS_MIN   8
#define ZC_INFLIGHT   (4u << 20)

struct send_opts {
	const char *connect;
	uint64_t bytes;
	int have_bytes;
	int pattern;
	const char *file;
	uint64_t connections;
	int engine;
	int zerocopy, page_aligned;
	size_t chunk;           /* bytes per send call */
	unsigned nbufs;         /* --zerocopy: buffers per connection */
	uint64_t zerocopy_min;  /* 0: the library's default */
};

enum conn_state {
	CONNECTING,
	RETRY_WAIT,   /* refused; connect again at retry_at */
	SENDING,
	DRAINING,     /* all sent, SHUT_WR done; waiting for the peer's EOF */
	DONE,
};

struct sconn {
	unsigned index;
	zc_handle h;
	enum conn_state state;
	unsigned attempts;
	uint64_t retry_at;  /* RETRY_WAIT */
	uint64_t deadline;  /* DRAINING */
	uint64_t seed;      /* --pattern */
	int fd;             /* --file */
	uint64_t made;      /* stream bytes put in buf so far */
	uint64_t sent;
	char *buf;
	size_t off, len;    /* buf[off, len) is still to send */
	/* --zerocopy: nbufs buffers of chunk bytes; buf is bufs + cur * chunk */
	char *bufs;
	unsigned cur;
	size_t zlen[ZC_BUFS], zoff[ZC_BUFS];
	unsigned inflight[ZC_BUFS];
};

struct send_run {
	const struct send_opts *o;
	zc_ctx *ctx;
	struct sconn *conns;
	unsigned ndone;
	uint64_t bytes;
	uint64_t sends, done, done_copied;
	int failed;
};

/* splitmix64's finaliser: a bijection, so distinct inputs, distinct seeds */
static uint64_t mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static int conn_fail(struct send_run *s, struct sconn *c, const char *what, int err)
{
	fprintf(stderr, "zcnet send: connection %u: %s %s: %s (after %llu bytes)\n",
		c->index, what, s->o->connect, zc_strerror(err),
		(unsigned long long)c->sent);
	s->failed = 1;
	return -1;
}

static int start_connect(struct send_run *s, struct sconn *c)
{
	int err = zc_connect_ex(s->ctx, s->o->connect,
				s->o->page_aligned ? ZC_PAGE_ALIGNED : 0, &c->h);

	if (err)
		return conn_fail(s, c, "connect", err);
	c->state = CONNECTING;
	c->attempts++;
	zc_set_user(s->ctx, c->h, c);
	return 0;
}

/* The next chunk of the stream into c->buf: its length, 0 at the end. */
static ssize_t next_chunk(struct send_run *s, struct sconn *c)
{
	const struct send_opts *o = s->o;
	size_t n;

	if (o->file) {
		ssize_t r;

		do
			r = read(c->fd, c->buf, o->chunk);
		while (r < 0 && errno == EINTR);
		return r < 0 ? -errno : r;
	}
	n = o->bytes - c->made < o->chunk ? o->bytes - c->made : o->chunk;
	if (o->pattern)
		pat_fill(c->seed, c->made, c->buf, n);
	/* else: the buffer is all zeros from the start, and stays so */
	c->made += n;
	return n;
}

/* All sent: close our direction and wait for the receiver to close. */
static int end_stream(struct send_run *s, struct sconn *c)
{
	int err = zc_shutdown(s->ctx, c->h, SHUT_WR);

	if (err)
		return conn_fail(s, c, "shutdown", err);
	c->state = DRAINING;
	c->deadline = now_ns() + EOF_WAIT_S * 1000000000ull;
	return 0;
}

/* --zerocopy: send buffer after buffer, in stream order. */
static int pump_zc(struct send_run *s, struct sconn *c)
{
	while (c->state == SENDING) {
		unsigned b = c->cur;
		ssize_t r;

		if (c->zoff[b] == c->zlen[b]) {
			unsigned next = (b + 1) % s->o->nbufs;
			int pending = 0;

			if (c->inflight[next])
				return 0; /* its SEND_DONE events first */
			c->buf = c->bufs + next * s->o->chunk;
			r = next_chunk(s, c);
			if (r < 0) {
				fprintf(stderr, "zcnet send: read %s: %s\n",
					s->o->file, strerror((int)-r));
				s->failed = 1;
				return -1;
			}
			if (r == 0) {
				for (unsigned i = 0; i < s->o->nbufs; i++)
					pending += c->inflight[i];
				/* the end once every buffer is back */
				return pending ? 0 : end_stream(s, c);
			}
			c->cur = b = next;
			c->zoff[b] = 0;
			c->zlen[b] = (size_t)r;
		}
		r = zc_send_zerocopy(s->ctx, c->h, c->bufs + b * s->o->chunk + c->zoff[b],
				     c->zlen[b] - c->zoff[b], b);
		if (r == -EAGAIN)
			return 0; /* a ZC_EV_WRITABLE event follows */
		if (r < 0)
			return conn_fail(s, c, "send to", (int)r);
		c->zoff[b] += r;
		c->inflight[b]++;
		c->sent += r;
		s->bytes += r;
		s->sends++;
		if (c->zoff[b] < c->zlen[b])
			return 0;
	}
	return 0;
}

/* Send until the kernel takes no more or the stream ends. */
static int pump(struct send_run *s, struct sconn *c)
{
	if (s->o->zerocopy)
		return pump_zc(s, c);
	while (c->state == SENDING) {
		ssize_t r;

		if (c->off == c->len) {
			r = next_chunk(s, c);
			if (r < 0) {
				fprintf(stderr, "zcnet send: read %s: %s\n",
					s->o->file, strerror((int)-r));
				s->failed = 1;
				return -1;
			}
			if (r == 0)
				return end_stream(s, c);
			c->off = 0;
			c->len = r;
		}
		r = zc_send(s->ctx, c->h, c->buf + c->off, c->len - c->off);
		if (r == -EAGAIN)
			return 0; /* a ZC_EV_WRITABLE event follows */
		if (r < 0)
			return conn_fail(s, c, "send to", (int)r);
		c->off += r;
		c->sent += r;
		s->bytes += r;
		s->sends++;
		if (c->off < c->len)
			return 0; /* short: a ZC_EV_WRITABLE event follows too */
	}
	return 0;
}

static void on_error(struct send_run *s, struct sconn *c, int res)
{
	if (c->state == CONNECTING && res == -ECONNREFUSED &&
	    c->attempts < MAX_ATTEMPTS) {
		zc_close(s->ctx, c->h);
		c->h = 0;
		c->state = RETRY_WAIT;
		c->retry_at = now_ns() + RETRY_MS * 1000000ull;
		return;
	}
	conn_fail(s, c, c->state == CONNECTING ? "connect" : "send to", res);
}

static void on_eof(struct send_run *s, struct sconn *c)
{
	if (c->state != DRAINING) {
		fprintf(stderr, "zcnet send: connection %u: %s closed the connection "
			"after %llu bytes\n", c->index, s->o->connect,
			(unsigned long long)c->sent);
		s->failed = 1;
		return;
	}
	zc_close(s->ctx, c->h);
	c->h = 0;
	c->state = DONE;
	s->ndone++;
}

static void on_event(struct send_run *s, const struct zc_event *ev)
{
	struct sconn *c = ev->user;

	if (ev->type == ZC_EV_DATA) {
		/* The receiver sends nothing; whatever comes is dropped. */
		for (unsigned i = 0; i < ev->npieces; i++)
			zc_release(s->ctx, &ev->pieces[i]);
	}
	if (!c || c->h != ev->conn)
		return; /* a closed attempt's leftovers */
	switch (ev->type) {
	case ZC_EV_CONNECTED:
		c->state = SENDING;
		pump(s, c);
		break;
	case ZC_EV_WRITABLE:
		pump(s, c);
		break;
	case ZC_EV_SEND_DONE:
		if (ev->tag < s->o->nbufs && c->inflight[ev->tag])
			c->inflight[ev->tag]--;
		s->done++;
		if (ev->res == ZC_SEND_COPIED)
			s->done_copied++;
		pump(s, c);
		break;
	case ZC_EV_EOF:
		on_eof(s, c);
		break;
	case ZC_EV_ERROR:
		on_error(s, c, ev->res);
		break;
	default:
		break;
	}
}

/* Retries that are due, and receivers that take too long to close. */
static void check_timers(struct send_run *s)
{
	uint64_t now = now_ns();

	for (unsigned i = 0; i < s->o->connections && !s->failed; i++) {
		struct sconn *c = &s->conns[i];

		if (c->state == RETRY_WAIT && now >= c->retry_at)
			start_connect(s, c);
		else if (c->state == DRAINING && now >= c->deadline) {
			fprintf(stderr, "zcnet send: connection %u: %s did not close "
				"within %d s of the end of the stream\n",
				c->index, s->o->connect, EOF_WAIT_S);
			s->failed = 1;
		}
	}
}

static int setup_conns(struct send_run *s)
{
	const struct send_opts *o = s->o;
	uint64_t base = mix64(((uint64_t)getpid() << 32) ^ now_ns());

	s->conns = calloc(o->connections, sizeof(*s->conns));
	if (!s->conns)
		return -ENOMEM;
	for (unsigned i = 0; i < o->connections; i++) {
		struct sconn *c = &s->conns[i];

		c->index = i;
		c->fd = -1;
		c->seed = mix64(base + i);
		if (o->zerocopy) {
			/* page-aligned, for the kernel to send from */
			if (posix_memalign((void **)&c->bufs, 4096, o->nbufs * o->chunk))
				return -ENOMEM;
			memset(c->bufs, 0, o->nbufs * o->chunk);
			c->cur = o->nbufs - 1;
			c->buf = c->bufs;
		} else {
			c->buf = calloc(1, o->chunk);
			if (!c->buf)
				return -ENOMEM;
		}
		if (o->file) {
			c->fd = open(o->file, O_RDONLY | O_CLOEXEC);
			if (c->fd < 0) {
				fprintf(stderr, "zcnet send: open %s: %s\n",
					o->file, strerror(errno));
				return -1;
			}
		}
	}
	return 0;
}

static void free_conns(struct send_run *s)
{
	if (!s->conns)
		return;
	for (unsigned i = 0; i < s->o->connections; i++) {
		if (s->conns[i].bufs)
			free(s->conns[i].bufs);
		else
			free(s->conns[i].buf);
		if (s->conns[i].fd >= 0)
			close(s->conns[i].fd);
	}
	free(s->conns);
}

static void send_loop(struct send_run *s)
{
	struct zc_event evs[MAX_EVENTS];
	struct progress pr;
	uint64_t last_timers = 0;
	char b[32];
	double gbps;

	progress_init(&pr);
	while (!s->failed && s->ndone < s->o->connections) {
		int n = zc_wait(s->ctx, evs, MAX_EVENTS, WAIT_MS);

		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "zcnet send: zc_wait: %s\n", zc_strerror(n));
			s->failed = 1;
			break;
		}
		for (int i = 0; i < n && !s->failed; i++)
			on_event(s, &evs[i]);
		/* Timers are coarse (200 ms, 30 s): look ten times a second. */
		if (now_ns() - last_timers >= WAIT_MS * 1000000ull) {
			check_timers(s);
			last_timers = now_ns();
		}
		if (progress_due(&pr, s->bytes, &gbps))
			fprintf(stderr, "zcnet send: %s, %.2f GB/s, connections %u/%llu done\n",
				fmt_bytes(b, sizeof(b), s->bytes), gbps, s->ndone,
				(unsigned long long)s->o->connections);
	}
}

static int run_send(const struct send_opts *o)
{
	struct send_run s = { .o = o };
	struct zc_config cfg;
	uint64_t t0;
	uint64_t cpu0;
	double secs, cpu;
	int err;

	/* Only the receiver's EOF ever arrives: a small pool will do. */
	zc_config_init(&cfg);
	cfg.engine = o->engine;
	cfg.pool_size = 1 << 20;
	if (o->zerocopy_min)
		cfg.zerocopy_min = o->zerocopy_min;
	err = zc_ctx_create(&cfg, &s.ctx);
	if (err) {
		fprintf(stderr, "zcnet send: engine: %s\n", zc_strerror(err));
		return 1;
	}
	err = setup_conns(&s);
	if (err == -ENOMEM)
		fprintf(stderr, "zcnet send: out of memory\n");
	t0 = now_ns();
	cpu0 = cpu_ns();
	for (unsigned i = 0; !err && i < o->connections && !s.failed; i++)
		start_connect(&s, &s.conns[i]);
	if (!err)
		send_loop(&s);
	secs = (double)(now_ns() - t0) / 1e9;
	cpu = (double)(cpu_ns() - cpu0) / 1e9;
	if (err || s.failed) /* the peer must see a failure, not a short stream */
		for (unsigned i = 0; s.conns && i < o->connections; i++)
			if (s.conns[i].h)
				zc_abort(s.ctx, s.conns[i].h);
	zc_ctx_destroy(s.ctx);
	free_conns(&s);
	if (err || s.failed)
		return 1;
	printf("summary bytes=%llu seconds=%.3f gbps=%.3f cpu_s_per_gb=%.3f "
	       "connections=%u sends=%llu send_done=%llu send_copied=%llu\n",
	       (unsigned long long)s.bytes, secs,
	       secs > 0 ? s.bytes / secs / 1e9 : 0.0,
	       s.bytes ? cpu / (s.bytes / 1e9) : 0.0, s.ndone,
	       (unsigned long long)s.sends, (unsigned long long)s.done,
	       (unsigned long long)s.done_copied);
	return 0;
}

static int parse_args(int argc, char **argv, struct send_opts *o)
{
	const char *v;

	uint64_t kb = CHUNK_KB;

	*o = (struct send_opts){ .connections = 1, .engine = ZC_ENGINE_AUTO };
	for (int i = 1; i < argc; i++) {
		int r;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(send_usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--pattern")) {
			o->pattern = 1;
			continue;
		}
		if (!strcmp(argv[i], "--zerocopy")) {
			o->zerocopy = 1;
			continue;
		}
		if (!strcmp(argv[i], "--page-aligned")) {
			o->page_aligned = 1;
			continue;
		}
#define OPT(name) ((r = opt_value("send", argc, argv, &i, name, &v)) != 0)
		if (OPT("--connect")) {
			o->connect = v;
		} else if (OPT("--bytes")) {
			if (r > 0 && parse_size("send", "--bytes", v, &o->bytes))
				r = -1;
			o->have_bytes = 1;
		} else if (OPT("--file")) {
			o->file = v;
		} else if (OPT("--connections")) {
			if (r > 0 && parse_uint("send", "--connections", v, 1, 100000,
						&o->connections))
				r = -1;
		} else if (OPT("--engine")) {
			if (r > 0 && (o->engine = parse_engine("send", v, 0)) < 0)
				r = -1;
		} else if (OPT("--chunk-kb")) {
			if (r > 0 && parse_uint("send", "--chunk-kb", v, 1, 16384, &kb))
				r = -1;
		} else if (OPT("--zerocopy-min")) {
			if (r > 0 && parse_size("send", "--zerocopy-min", v, &o->zerocopy_min))
				r = -1;
			else if (r > 0 && !o->zerocopy_min) {
				fprintf(stderr, "zcnet send: --zerocopy-min must be at least 1\n");
				r = -1;
			}
		} else {
			return opt_unknown("send", argv[i]);
		}
#undef OPT
		if (r < 0)
			return EXIT_USAGE;
	}
	o->chunk = (size_t)kb << 10;
	o->nbufs = ZC_INFLIGHT / o->chunk;
	o->nbufs = o->nbufs < ZC_BUFS_MIN ? ZC_BUFS_MIN :
		   o->nbufs > ZC_BUFS ? ZC_BUFS : o->nbufs;
	return -1; /* go on */
}

static int check_args(const struct send_opts *o)
{
	const char *why = NULL;

	if (!o->connect)
		why = "--connect ADDR:PORT is required";
	else if (o->have_bytes == !!o->file)
		why = "give either --bytes N or --file F";
	else if (o->pattern && o->file)
		why = "--pattern goes with --bytes, not --file";
	if (!why)
		return 0;
	fprintf(stderr, "zcnet send: %s; see 'zcnet send --help'\n", why);
	return EXIT_USAGE;
}

int cmd_send(int argc, char **argv)
{
	struct send_opts o;
	int status;

	status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	status = check_args(&o);
	if (status)
		return status;
	return run_send(&o);
}
