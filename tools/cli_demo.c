/*
 * cli_demo.c - `zcnet demo`: the same loopback transfer received three
 * ways (plain recv(), the socket engine, the uring engine), side by side.
 *
 * The demo runs this very program as a receiver and a sender, so every
 * number in the table comes from `zcnet recv`'s summary line and can be
 * reproduced by hand with the same two commands.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "zcnet.h"
#include "cli.h"

const char demo_usage[] =
	"usage: zcnet demo [--bytes N]\n"
	"\n"
	"Over 127.0.0.1, send N bytes (default 2G) of the test pattern to\n"
	"`zcnet recv` with --engine plain, socket and uring in turn (uring only\n"
	"where io_uring works), after a 64 MiB verified transfer for each, and\n"
	"compare throughput, receiver CPU time per GB, copies and memory.\n";

#define VERIFY_BYTES (64ull << 20)

/* What a child process wrote to one of its pipes: the last 8 KiB. */
struct sink {
	int fd;
	size_t len;
	char buf[8192];
};

struct child {
	const char *role;  /* "receiver" or "sender" */
	pid_t pid;
	int status;
	struct sink out, err;
};

/* The receiver's summary line, parsed. */
struct summary {
	double gbps, cpu_s_per_gb;
	unsigned long long bytes, copied, stalls;
	long rss_kb;
};

struct result {
	const char *mode;
	int ran;
	struct summary sm;
};

/* Run this program with @argv, its stdout and stderr into pipes. */
static int spawn(struct child *ch, char *const argv[])
{
	int out[2], err[2];

	if (pipe2(out, O_CLOEXEC))
		return -errno;
	if (pipe2(err, O_CLOEXEC)) {
		close(out[0]);
		close(out[1]);
		return -errno;
	}
	ch->pid = fork();
	if (ch->pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv("/proc/self/exe", argv);
		fprintf(stderr, "zcnet demo: exec /proc/self/exe: %s\n", strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (ch->pid < 0) {
		close(out[0]);
		close(err[0]);
		return -errno;
	}
	ch->out = (struct sink){ .fd = out[0] };
	ch->err = (struct sink){ .fd = err[0] };
	return 0;
}

/* Read what is there; keep the tail. Returns 0 at EOF, else 1. */
static int sink_read(struct sink *s)
{
	ssize_t r;

	if (s->len == sizeof(s->buf) - 1) {
		size_t keep = sizeof(s->buf) / 2;

		memmove(s->buf, s->buf + s->len - keep, keep);
		s->len = keep;
	}
	r = read(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
	if (r < 0 && errno == EINTR)
		return 1;
	if (r <= 0) {
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	s->len += r;
	s->buf[s->len] = '\0';
	return 1;
}

/* The last non-empty line a child wrote to stderr, to explain a failure. */
static const char *last_line(struct sink *s)
{
	char *end = s->buf + s->len;

	s->buf[s->len] = '\0';
	while (end > s->buf && end[-1] == '\n')
		*--end = '\0';
	while (end > s->buf && end[-1] != '\n')
		end--;
	return *end ? end : "(no message)";
}

/* Wait for the receiver's "listening on HOST:PORT" line; its port or -1. */
static int read_port(struct child *rx)
{
	char *line, *nl, *colon;

	while (sink_read(&rx->err)) {
		line = strstr(rx->err.buf, "listening on ");
		if (!line || !(nl = strchr(line, '\n')))
			continue;
		*nl = '\0';
		colon = strchr(line, ' ');         /* -> " on HOST:PORT ..." */
		colon = strchr(colon + 4, ' ');    /* end of HOST:PORT */
		if (!colon)
			return -1;
		*colon = '\0';
		colon = strrchr(line, ':');
		*nl = '\n';
		return colon ? atoi(colon + 1) : -1;
	}
	return -1;
}

static void reap(struct child *ch)
{
	while (waitpid(ch->pid, &ch->status, 0) < 0 && errno == EINTR)
		;
	ch->pid = 0;
}

static int child_ok(const struct child *ch)
{
	return WIFEXITED(ch->status) && WEXITSTATUS(ch->status) == 0;
}

/*
 * Collect both children's output until they exit. If the sender fails
 * the receiver would wait for ever, so it is stopped. @deadline guards
 * against a transfer that hangs.
 */
static int drain(struct child *rx, struct child *tx, uint64_t deadline)
{
	struct sink *sinks[] = { &rx->out, &rx->err, &tx->out, &tx->err };

	for (;;) {
		struct pollfd pfd[4];
		struct sink *which[4];
		int n = 0;

		for (int i = 0; i < 4; i++) {
			if (sinks[i]->fd < 0)
				continue;
			pfd[n] = (struct pollfd){ .fd = sinks[i]->fd, .events = POLLIN };
			which[n++] = sinks[i];
		}
		if (tx->pid && tx->out.fd < 0 && tx->err.fd < 0) {
			reap(tx);
			if (!child_ok(tx) && rx->pid)
				kill(rx->pid, SIGTERM);
		}
		if (!n)
			return 0;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++)
			if (pfd[i].revents)
				sink_read(which[i]);
	}
}

/* The value after " key=" in a summary line. */
static const char *field(const char *line, const char *key)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	return p ? p + strlen(pat) : "0";
}

static int parse_summary(const char *text, struct summary *sm)
{
	const char *line = strstr(text, "summary ");

	if (!line)
		return -1;
	sm->bytes = strtoull(field(line, "bytes"), NULL, 10);
	sm->gbps = strtod(field(line, "gbps"), NULL);
	sm->cpu_s_per_gb = strtod(field(line, "cpu_s_per_gb"), NULL);
	sm->copied = strtoull(field(line, "copied"), NULL, 10);
	sm->stalls = strtoull(field(line, "stalls"), NULL, 10);
	sm->rss_kb = strtol(field(line, "peak_rss_kb"), NULL, 10);
	return 0;
}

static void stop_child(struct child *ch)
{
	if (!ch->pid)
		return;
	kill(ch->pid, SIGTERM);
	reap(ch);
}

static void close_sinks(struct child *ch)
{
	if (ch->out.fd >= 0)
		close(ch->out.fd);
	if (ch->err.fd >= 0)
		close(ch->err.fd);
}

static int report_failure(const char *mode, struct child *rx, struct child *tx)
{
	/* A receiver we stopped because the sender failed has nothing to say. */
	struct child *who = WIFEXITED(rx->status) && !child_ok(rx) ? rx : tx;

	fprintf(stderr, "zcnet demo: %s: the %s failed: %s\n", mode, who->role,
		last_line(&who->err));
	return -1;
}

/*
 * One transfer of @bytes over loopback to `zcnet recv --engine @mode`.
 * Fills *@sm from the receiver's summary. 0, or -1 after a message.
 */
static int transfer(const char *mode, uint64_t bytes, int verify,
		    struct summary *sm)
{
	char *rx_argv[] = { "zcnet", "recv", "--listen", "127.0.0.1:0",
			    "--engine", (char *)mode, "--verify", "pattern", NULL };
	char addr[32], count[32];
	char *tx_argv[] = { "zcnet", "send", "--connect", addr, "--bytes", count,
			    "--pattern", NULL };
	struct child rx = { .role = "receiver" }, tx = { .role = "sender" };
	/* Generous: two minutes, plus a second per 100 MiB. */
	uint64_t deadline = now_ns() + (120 + (bytes >> 20) / 100) * 1000000000ull;
	int port, err;

	if (!verify)
		rx_argv[6] = NULL;
	err = spawn(&rx, rx_argv);
	if (err) {
		fprintf(stderr, "zcnet demo: fork: %s\n", strerror(-err));
		return -1;
	}
	port = read_port(&rx);
	if (port <= 0) {
		stop_child(&rx);
		fprintf(stderr, "zcnet demo: %s: the receiver did not start: %s\n",
			mode, last_line(&rx.err));
		close_sinks(&rx);
		return -1;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(count, sizeof(count), "%llu", (unsigned long long)bytes);
	err = spawn(&tx, tx_argv);
	if (err) {
		stop_child(&rx);
		close_sinks(&rx);
		fprintf(stderr, "zcnet demo: fork: %s\n", strerror(-err));
		return -1;
	}
	err = drain(&rx, &tx, deadline);
	stop_child(&tx); /* no-ops unless drain() gave up */
	if (err) {
		stop_child(&rx);
		close_sinks(&rx);
		close_sinks(&tx);
		fprintf(stderr, "zcnet demo: %s: %s\n", mode,
			err == -ETIMEDOUT ? "the transfer timed out" : strerror(-err));
		return -1;
	}
	reap(&rx);
	if (!child_ok(&rx) || !child_ok(&tx))
		return report_failure(mode, &rx, &tx);
	if (parse_summary(rx.out.buf, sm) || sm->bytes != bytes) {
		fprintf(stderr, "zcnet demo: %s: the receiver's summary is missing "
			"or short: %s\n", mode, rx.out.buf);
		return -1;
	}
	return 0;
}

/* Can this machine run the uring engine? Says why not. */
static int uring_works(void)
{
	struct zc_config cfg;
	zc_ctx *ctx;
	int err;

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_URING;
	cfg.pool_size = 1 << 20;
	err = zc_ctx_create(&cfg, &ctx);
	if (err) {
		printf("uring\n  skipped: the uring engine cannot run here (%s)\n",
		       zc_strerror(err));
		return 0;
	}
	zc_ctx_destroy(ctx);
	return 1;
}

static int run_mode(struct result *r, uint64_t bytes)
{
	char b[32];

	printf("%s\n", r->mode);
	fflush(stdout);
	if (transfer(r->mode, VERIFY_BYTES, 1, &r->sm))
		return -1;
	printf("  verified %s\n", fmt_bytes(b, sizeof(b), VERIFY_BYTES));
	fflush(stdout);
	if (transfer(r->mode, bytes, 0, &r->sm))
		return -1;
	printf("  %s at %.2f GB/s\n", fmt_bytes(b, sizeof(b), bytes), r->sm.gbps);
	r->ran = 1;
	return 0;
}

static void print_table(const struct result *res, unsigned n)
{
	double base = res[0].sm.cpu_s_per_gb; /* plain */

	printf("\n%-8s %8s %10s %9s %12s %8s %13s\n", "mode", "GB/s", "CPU s/GB",
	       "vs plain", "copied", "stalls", "peak RSS MiB");
	for (unsigned i = 0; i < n; i++) {
		const struct summary *s = &res[i].sm;

		if (!res[i].ran)
			continue;
		printf("%-8s %8.2f %10.3f %8.2fx %12llu %8llu %13.1f\n",
		       res[i].mode, s->gbps, s->cpu_s_per_gb,
		       base > 0 ? s->cpu_s_per_gb / base : 0.0,
		       s->copied, s->stalls, s->rss_kb / 1024.0);
	}
	printf("\nsocket/uring: the kernel's copy into the posted piece is the only "
	       "copy; plain recv() makes that same kernel copy into its own buffer, "
	       "so the CPU win appears when an application would otherwise copy "
	       "again or hold data. Both engines gather data while it "
	       "comes in bulk (`--batch-us`, default 200); `--engine mmap` with `zcnet "
	       "send --zerocopy --page-aligned` maps pages instead of copying "
	       "(see README).\n");
}

int cmd_demo(int argc, char **argv)
{
	struct result res[] = { { .mode = "plain" }, { .mode = "socket" },
				{ .mode = "uring" } };
	uint64_t bytes = 2ull << 30;
	char b[32];
	const char *v;

	for (int i = 1; i < argc; i++) {
		int r;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(demo_usage, stdout);
			return 0;
		}
		r = opt_value("demo", argc, argv, &i, "--bytes", &v);
		if (r == 0)
			return opt_unknown("demo", argv[i]);
		if (r < 0 || parse_size("demo", "--bytes", v, &bytes))
			return EXIT_USAGE;
	}
	printf("zcnet demo: %s of the test pattern over 127.0.0.1, one connection, "
	       "per mode\n", fmt_bytes(b, sizeof(b), bytes));
	for (unsigned i = 0; i < 3; i++) {
		if (!strcmp(res[i].mode, "uring") && !uring_works())
			continue;
		if (run_mode(&res[i], bytes))
			return 1;
	}
	print_table(res, 3);
	return 0;
}
