/*
 * zcnet-bench - what zcnet costs and what it saves, on this machine.
 *
 * 1. Receive to memory over loopback. For each mode (plain recv(), the
 *    socket engine, the uring engine) it runs `zcnet recv` against
 *    `zcnet send` --runs times, interleaved (run 1 of every mode, then
 *    run 2, ...) so that drift on a noisy machine hits every mode alike,
 *    and reports median throughput and receiver CPU per GB against plain
 *    recv().
 *
 * 2. Memory per idle connection. A zcnet server (one context) and an
 *    epoll server with a 64 KiB buffer per connection run in forked
 *    children; this process opens --conns connections to each, sends a
 *    64-byte hello on every one, and reads the servers' VmRSS before and
 *    after.
 *
 * All traffic stays on 127.0.0.1. Exits 1, naming the run, if one fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "zcnet.h"

#define GB 1e9			/* GB/s and CPU s/GB use 10^9 bytes */
#define HELLO_LEN 64		/* bytes each idle client sends */
#define EPOLL_BUF (64 << 10)	/* the epoll server's buffer per conn */
#define POOL_SIZE (16 << 20)	/* the zcnet server's pool */
#define PIECE_SIZE (64 << 10)
#define LISTEN_TIMEOUT_S 15.0	/* recv start-up to its listening line */
#define RECV_GRACE_S 10.0	/* recv exit after the sender's */
#define SIGINT_GRACE_S 5.0
#define TARGET 0.95		/* uring within 5% of plain recv() */
#define MEM_TARGET 32.0		/* zcnet <= 1/32 of epoll per conn */

/* uring-batch: the uring engine with --batch-us BATCH_US (min_wait). */
static const char *const modes[] = { "plain", "socket", "uring", "uring-batch" };
#define NMODES 4
#define URING_BATCH 3
#define BATCH_US "200"
#define URING 2

static struct {
	unsigned runs;
	uint64_t bytes;
	unsigned conns;
} opt = { 5, 2ull << 30, 10000 };

static char cli[PATH_MAX];	/* the zcnet CLI, beside this program */

/* ------------------------------------------------------------------ */
/* Children: every process we start is killed and reaped on any exit.   */
/* ------------------------------------------------------------------ */

#define MAX_CHILDREN 8
static volatile pid_t children[MAX_CHILDREN];

/* Called in the parent right after fork(); see child_setup(). */
static void child_add(pid_t pid)
{
	setpgid(pid, pid);	/* as the child does: whoever runs first */
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (!children[i]) {
			children[i] = pid;
			return;
		}
	}
}

static void child_del(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static void kill_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		pid_t pid = children[i];

		if (!pid)
			continue;
		kill(-pid, SIGKILL);	/* its group: whatever it started */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		children[i] = 0;
	}
}

/* Ctrl-C or a kill of the benchmark must not leave servers running. */
static void on_signal(int sig)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i]) {
			kill(-children[i], SIGKILL);
			kill(children[i], SIGKILL);
		}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A child that dies under a pipe write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
}

/*
 * In a new child: a process group of its own, so that a kill reaches
 * anything it starts; undo catch_signals(); die if the benchmark dies.
 */
static void child_setup(pid_t parent)
{
	setpgid(0, 0);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);	/* an ignored signal survives exec */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)	/* the parent died before prctl() */
		_exit(1);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "zcnet-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	kill_children();
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ */
/* Options and the header                                              */
/* ------------------------------------------------------------------ */

/* "2G", "64M", "4096": K, M and G are binary multiples. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zcnet-bench [--runs N] [--bytes N] [--conns N]\n"
		"  --runs N   runs per receive mode (default 5)\n"
		"  --bytes N  bytes per run, K/M/G suffixes (default 2G)\n"
		"  --conns N  idle connections for the memory test"
		" (default 10000)\n");
}

/* A count or, with @size, a byte count; 1 .. @max. */
static uint64_t num_arg(const char *name, const char *val, uint64_t max,
			bool size)
{
	uint64_t v;

	if (!val || parse_size(val, &v) || v == 0 || v > max ||
	    (!size && val[strspn(val, "0123456789")])) {
		usage(stderr);
		die("bad %s: %s", name, val ? val : "(missing)");
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = argv[i + 1];

		if (!strcmp(a, "--runs"))
			opt.runs = num_arg(a, v, 1000, false);
		else if (!strcmp(a, "--bytes"))
			opt.bytes = num_arg(a, v, 1ull << 50, true);
		else if (!strcmp(a, "--conns"))
			opt.conns = num_arg(a, v, 200000, false);
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else {
			usage(stderr);
			die("unknown argument: %s", a);
		}
		i++;
	}
}

/* The CLI is built into the same directory as this program. */
static void find_cli(void)
{
	char self[PATH_MAX - 16];	/* room for "/zcnet" */
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	slash = strrchr(self, '/');
	*slash = '\0';
	snprintf(cli, sizeof(cli), "%s/zcnet", self);
	if (access(cli, X_OK))
		die("no zcnet CLI at %s (%s): build it with `make build`",
		    cli, strerror(errno));
}

static void cpu_model(char *out, size_t n)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(out, n, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !colon)
			continue;
		colon += 1 + (colon[1] == ' ');
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, n, "%s", colon);
		break;
	}
	fclose(f);
}

/* What `nproc` prints: the CPUs this process may run on. */
static int nproc(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return (int)sysconf(_SC_NPROCESSORS_ONLN);
	return CPU_COUNT(&set);
}

static const char *human(uint64_t b, char *buf, size_t n)
{
	if (b >= (1ull << 30) && !(b % (1ull << 30)))
		snprintf(buf, n, "%llu GiB", (unsigned long long)(b >> 30));
	else if (b >= (1ull << 20) && !(b % (1ull << 20)))
		snprintf(buf, n, "%llu MiB", (unsigned long long)(b >> 20));
	else
		snprintf(buf, n, "%llu bytes", (unsigned long long)b);
	return buf;
}

static void print_header(void)
{
	struct utsname u;
	char cpu[256], h[32];

	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	printf("zcnet-bench %d.%d.%d\n", ZCNET_VERSION_MAJOR,
	       ZCNET_VERSION_MINOR, ZCNET_VERSION_PATCH);
	printf("machine: kernel %s, nproc %d, cpu %s\n", u.release, nproc(),
	       cpu);
	printf("settings: --runs %u --bytes %llu (%s) --conns %u\n", opt.runs,
	       (unsigned long long)opt.bytes, human(opt.bytes, h, sizeof(h)),
	       opt.conns);
	printf("commands, part 1 (each run; PORT is the one recv prints):\n");
	printf("  %s recv --listen 127.0.0.1:0 --engine MODE\n", cli);
	printf("  %s send --connect 127.0.0.1:PORT --bytes %llu\n", cli,
	       (unsigned long long)opt.bytes);
	printf("  MODE: plain (recv() into a 256 KiB buffer, no zcnet),"
	       " socket, uring;\n  uring-batch: --engine uring --batch-us "
	       BATCH_US "\n");
	printf("part 2 runs inside zcnet-bench: forked servers on 127.0.0.1:0,"
	       " clients in the parent\n\n");
}

/* ------------------------------------------------------------------ */
/* Running the CLI and collecting its output                           */
/* ------------------------------------------------------------------ */

#define OUT_MAX (1 << 20)

struct outbuf {
	char *p;	/* always NUL-terminated */
	size_t len, cap;
};

struct proc {
	char what[48];		/* "recv" or "send", for messages */
	pid_t pid;
	int fd[2];		/* stdout, stderr read ends; -1 at EOF */
	struct outbuf out[2];
	int status;
	bool exited;
};

static void outbuf_add(struct outbuf *b, const char *data, size_t n)
{
	/* A runaway child must not eat our memory: keep the newest half. */
	if (b->len + n > OUT_MAX) {
		size_t keep = OUT_MAX / 2 < b->len ? OUT_MAX / 2 : b->len;

		memmove(b->p, b->p + b->len - keep, keep);
		b->len = keep;
		if (n > OUT_MAX / 2) {
			data += n - OUT_MAX / 2;
			n = OUT_MAX / 2;
		}
	}
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("out of memory");
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void proc_start(struct proc *p, const char *what, char *const argv[])
{
	int po[2], pe[2];
	pid_t parent = getpid();

	memset(p, 0, sizeof(*p));
	snprintf(p->what, sizeof(p->what), "%s", what);
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	p->pid = fork();
	if (p->pid < 0)
		die("fork: %s", strerror(errno));
	if (p->pid == 0) {
		child_setup(parent);
		dup2(po[1], 1);	/* dup2() clears O_CLOEXEC on the copy */
		dup2(pe[1], 2);
		execv(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	child_add(p->pid);
	close(po[1]);
	close(pe[1]);
	p->fd[0] = po[0];
	p->fd[1] = pe[0];
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	outbuf_add(&p->out[0], "", 0);
	outbuf_add(&p->out[1], "", 0);
}

static void proc_drain(struct proc *p, int j)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(p->fd[j], buf, sizeof(buf))) > 0)
		outbuf_add(&p->out[j], buf, n);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close(p->fd[j]);
		p->fd[j] = -1;
	}
}

static void proc_reap(struct proc *p)
{
	if (p->exited || waitpid(p->pid, &p->status, WNOHANG) != p->pid)
		return;
	p->exited = true;
	child_del(p->pid);
}

/*
 * Collect what the processes write, waiting up to @ms for something, and
 * note which have exited. Every child's pipes are read all the time so
 * that none blocks on a full pipe.
 */
static void proc_pump(struct proc **ps, int n, int ms)
{
	struct pollfd pfd[8];
	struct proc *owner[8];
	int which[8], k = 0;

	for (int i = 0; i < n; i++) {
		for (int j = 0; j < 2; j++) {
			if (ps[i]->fd[j] < 0)
				continue;
			pfd[k] = (struct pollfd){ .fd = ps[i]->fd[j],
						  .events = POLLIN };
			owner[k] = ps[i];
			which[k++] = j;
		}
	}
	if (k == 0)
		usleep(ms * 1000);
	else if (poll(pfd, k, ms) > 0)
		for (int i = 0; i < k; i++)
			if (pfd[i].revents)
				proc_drain(owner[i], which[i]);
	for (int i = 0; i < n; i++)
		proc_reap(ps[i]);
}

static bool proc_done(const struct proc *p)
{
	return p->exited && p->fd[0] < 0 && p->fd[1] < 0;
}

/* Wait for @p to exit and close its output. False at @deadline. */
static bool proc_wait(struct proc *p, struct proc **all, int n,
		      double deadline)
{
	while (!proc_done(p)) {
		if (now() > deadline)
			return false;
		proc_pump(all, n, 100);
	}
	return true;
}

static void proc_free(struct proc *p)
{
	for (int j = 0; j < 2; j++) {
		if (p->fd[j] >= 0)
			close(p->fd[j]);
		free(p->out[j].p);
	}
}

/*
 * The last complete line of @b that starts with @prefix, copied into
 * @line; false if there is none.
 */
static bool find_line(const struct outbuf *b, const char *prefix,
		      char *line, size_t n)
{
	const char *s = b->p, *found = NULL;
	size_t plen = strlen(prefix);

	while (s && *s) {
		const char *nl = strchr(s, '\n');

		if (!nl)
			break;
		if (!strncmp(s, prefix, plen))
			found = s;
		s = nl + 1;
	}
	if (!found)
		return false;
	snprintf(line, n, "%.*s", (int)strcspn(found, "\n"), found);
	return true;
}

/* The value of " key=" in a summary line, up to the next space. */
static bool kv(const char *line, const char *key, char *val, size_t n)
{
	char pat[64];
	const char *s;

	snprintf(pat, sizeof(pat), " %s=", key);
	s = strstr(line, pat);
	if (!s)
		return false;
	s += strlen(pat);
	snprintf(val, n, "%.*s", (int)strcspn(s, " "), s);
	return true;
}

static bool kv_num(const char *line, const char *key, double *v)
{
	char val[64], *end;

	if (!kv(line, key, val, sizeof(val)))
		return false;
	*v = strtod(val, &end);
	return end != val && !*end;
}

/* ------------------------------------------------------------------ */
/* Part 1: receive to memory                                           */
/* ------------------------------------------------------------------ */

struct result {
	double gbs;	/* bytes / receiver seconds / 10^9 */
	double cpu;	/* receiver CPU (user + sys) s per 10^9 bytes */
	double copied, stalls;
};

struct run {
	const char *mode;
	char name[64];		/* "run 2/5 of uring" */
	struct proc rx, tx;
	char features[128];
	bool interrupted;	/* recv needed a SIGINT to finish */
};

/* The tail of what @p wrote on stdout (@j 0) or stderr (1). */
static void proc_dump(struct proc *p, int j)
{
	struct outbuf *b = &p->out[j];

	if (p->fd[j] >= 0)
		proc_drain(p, j);
	if (!b->len)
		return;
	fprintf(stderr, "--- %s %s:\n%s", p->what, j ? "stderr" : "stdout",
		b->p + (b->len > 4000 ? b->len - 4000 : 0));
	if (b->p[b->len - 1] != '\n')
		fputc('\n', stderr);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
run_fail(struct run *r, const char *fmt, ...)
{
	struct proc *ps[2] = { &r->rx, &r->tx };
	va_list ap;

	printf("FAILED\n");
	fflush(stdout);
	fprintf(stderr, "zcnet-bench: %s failed: ", r->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	kill_children();
	/* What the CLI said is the best clue to why. */
	for (int i = 0; i < 2; i++)
		if (ps[i]->pid)
			for (int j = 0; j < 2; j++)
				proc_dump(ps[i], j);
	exit(1);
}

static const char *exit_text(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "status 0x%x", status);
	return buf;
}

static void check_exit(struct run *r, struct proc *p)
{
	char why[64];

	if (!WIFEXITED(p->status) || WEXITSTATUS(p->status))
		run_fail(r, "%s: %s", p->what,
			 exit_text(p->status, why, sizeof(why)));
}

/* Start `zcnet recv` and read its port from the listening line. */
static int start_recv(struct run *r)
{
	static const char pfx[] = "zcnet recv: listening on 127.0.0.1:";
	bool batch = !strcmp(r->mode, modes[URING_BATCH]);
	char *argv[] = { cli, "recv", "--listen", "127.0.0.1:0", "--engine",
			 batch ? (char *)"uring" : (char *)r->mode,
			 batch ? "--batch-us" : NULL, BATCH_US, NULL };
	struct proc *ps[1] = { &r->rx };
	double deadline = now() + LISTEN_TIMEOUT_S;
	char line[512], *s;
	long port;

	proc_start(&r->rx, "recv", argv);
	while (!find_line(&r->rx.out[1], pfx, line, sizeof(line))) {
		if (proc_done(&r->rx))
			check_exit(r, &r->rx);
		if (proc_done(&r->rx) || now() > deadline)
			run_fail(r, "recv printed no listening line");
		proc_pump(ps, 1, 100);
	}
	port = strtol(line + strlen(pfx), NULL, 10);
	if (port <= 0 || port > 65535)
		run_fail(r, "bad listening line: %s", line);
	s = strstr(line, " features=");
	snprintf(r->features, sizeof(r->features), "%s",
		 s ? s + strlen(" features=") : "?");
	return (int)port;
}

/* Long enough for a slow machine, short enough to catch a hang. */
static double run_timeout(void)
{
	return 60.0 + opt.bytes / 20e6;
}

static void run_transfer(struct run *r, int port)
{
	char portarg[32], bytes[32];
	char *argv[] = { cli, "send", "--connect", portarg, "--bytes", bytes,
			 NULL };
	struct proc *ps[2] = { &r->rx, &r->tx };

	snprintf(portarg, sizeof(portarg), "127.0.0.1:%d", port);
	snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)opt.bytes);
	proc_start(&r->tx, "send", argv);
	if (!proc_wait(&r->tx, ps, 2, now() + run_timeout()))
		run_fail(r, "send did not finish in %.0f s", run_timeout());
	check_exit(r, &r->tx);

	/*
	 * recv ends when its connection does; if it keeps listening for
	 * more, SIGINT is how a user ends it and gets the summary.
	 */
	if (proc_wait(&r->rx, ps, 2, now() + RECV_GRACE_S))
		return;
	r->interrupted = true;
	kill(r->rx.pid, SIGINT);
	if (!proc_wait(&r->rx, ps, 2, now() + SIGINT_GRACE_S))
		run_fail(r, "recv did not exit after send, nor on SIGINT");
}

static void need(struct run *r, struct proc *p, const char *line,
		 const char *key, double *v)
{
	if (!kv_num(line, key, v))
		run_fail(r, "%s summary has no number %s=: %s", p->what, key,
			 line);
}

static void parse_results(struct run *r, struct result *res)
{
	char line[1024], eng[32] = "?";
	double bytes, secs, conns, sent;

	check_exit(r, &r->rx);
	if (!find_line(&r->rx.out[0], "summary ", line, sizeof(line)))
		run_fail(r, "recv printed no summary line");
	need(r, &r->rx, line, "bytes", &bytes);
	need(r, &r->rx, line, "seconds", &secs);
	need(r, &r->rx, line, "cpu_s_per_gb", &res->cpu);
	need(r, &r->rx, line, "copied", &res->copied);
	need(r, &r->rx, line, "stalls", &res->stalls);
	need(r, &r->rx, line, "connections", &conns);
	if (!kv(line, "engine", eng, sizeof(eng)) ||
	    strncmp(eng, r->mode, strlen(eng)))
		run_fail(r, "recv ran engine %s, not %s", eng, r->mode);
	if (bytes != (double)opt.bytes || conns != 1)
		run_fail(r, "recv got %.0f bytes on %.0f connections,"
			 " expected %llu on 1", bytes, conns,
			 (unsigned long long)opt.bytes);
	/* recv prints milliseconds: a tiny run does not register. */
	if (secs <= 0)
		run_fail(r, "recv took %g s: too short to time, use a larger"
			 " --bytes", secs);
	res->gbs = bytes / secs / GB;

	if (!find_line(&r->tx.out[0], "summary ", line, sizeof(line)))
		run_fail(r, "send printed no summary line");
	need(r, &r->tx, line, "bytes", &sent);
	if (sent != (double)opt.bytes)
		run_fail(r, "send sent %.0f bytes, expected %llu", sent,
			 (unsigned long long)opt.bytes);
}

static void run_once(const char *mode, unsigned n, struct result *res,
		     char *features, size_t fsz)
{
	struct run r = { .mode = mode };
	int port;

	snprintf(r.name, sizeof(r.name), "run %u/%u of %s", n, opt.runs,
		 mode);
	printf("  run %u/%u  %-11s ", n, opt.runs, mode);
	fflush(stdout);
	port = start_recv(&r);
	run_transfer(&r, port);
	parse_results(&r, res);
	printf("%7.3f GB/s  %6.3f CPU s/GB  copied %.0f  stalls %.0f%s\n",
	       res->gbs, res->cpu, res->copied, res->stalls,
	       r.interrupted ? "  (recv ended by SIGINT)" : "");
	snprintf(features, fsz, "%s", r.features);
	proc_free(&r.rx);
	proc_free(&r.tx);
}

/*
 * Can the uring engine run here? If not, say why in @why. Asked once: a
 * ring torn down in this process can leave io_uring task work pending,
 * which interrupts later blocking calls (see connect_one()).
 */
static bool uring_probe(char *why, size_t n)
{
	struct zc_config cfg;
	zc_ctx *ctx;
	int err;
	FILE *f;
	int disabled = 0;

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_URING;
	cfg.pool_size = 1 << 20;
	err = zc_ctx_create(&cfg, &ctx);
	if (!err) {
		zc_ctx_destroy(ctx);
		return true;
	}
	f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
	if (f) {
		if (fscanf(f, "%d", &disabled) != 1)
			disabled = 0;
		fclose(f);
	}
	snprintf(why, n, "zc_ctx_create(ZC_ENGINE_URING): %s%s",
		 zc_strerror(err),
		 disabled ? " (kernel.io_uring_disabled is set)" : "");
	return false;
}

static bool uring_works(char *why, size_t n)
{
	static int works = -1;
	static char reason[256];

	if (works < 0)
		works = uring_probe(reason, sizeof(reason));
	snprintf(why, n, "%s", reason);
	return works;
}

struct stat3 {
	double med, min, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static struct stat3 stats(const double *v, unsigned n)
{
	double s[n];
	struct stat3 st;

	memcpy(s, v, sizeof(s));
	qsort(s, n, sizeof(double), cmp_double);
	st.min = s[0];
	st.max = s[n - 1];
	st.med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	return st;
}

static const char *verdict(bool met)
{
	return met ? "met" : "NOT met";
}

/*
 * Each mode against the plain run of the same round: drift that hits a
 * whole round cancels out. Shown beside the ratio of medians, not
 * instead of it.
 */
static void print_paired(bool *on, double (*gbs)[NMODES],
			 double (*cpu)[NMODES])
{
	double tr[opt.runs], cr[opt.runs];

	printf("  median of per-round ratios (each run against the plain run"
	       " of its round):\n");
	for (int m = 1; m < NMODES; m++) {
		if (!on[m])
			continue;
		for (unsigned i = 0; i < opt.runs; i++) {
			tr[i] = gbs[i][m] / gbs[i][0];
			cr[i] = cpu[i][m] / cpu[i][0];
		}
		printf("    %-11s throughput %.3f  CPU %.3f\n", modes[m],
		       stats(tr, opt.runs).med, stats(cr, opt.runs).med);
	}
}

static void print_targets(bool *on, const struct stat3 *t,
			  const struct stat3 *c)
{
	double tr = t[URING].med / t[0].med, cr = c[URING].med / c[0].med;

	printf("  targets, uring against plain recv() (within 5%%; ratios of"
	       " medians):\n");
	if (!on[URING]) {
		printf("    not measured: uring was skipped\n");
		return;
	}
	printf("    throughput ratio >= %.3f: %.3f  %s\n", TARGET, tr,
	       verdict(tr >= TARGET));
	printf("    CPU ratio <= %.3f (1/%.2f): %.3f  %s\n", 1 / TARGET, TARGET,
	       cr, verdict(cr <= 1 / TARGET));
	if (on[URING_BATCH])
		printf("    with --batch-us " BATCH_US ": throughput %.3f, CPU %.3f\n",
		       t[URING_BATCH].med / t[0].med, c[URING_BATCH].med / c[0].med);
}

static void print_table(bool *on, double (*gbs)[NMODES],
			double (*cpu)[NMODES])
{
	struct stat3 t[NMODES], c[NMODES];
	double tv[opt.runs], cv[opt.runs];

	for (int m = 0; m < NMODES; m++) {
		if (!on[m])
			continue;
		for (unsigned i = 0; i < opt.runs; i++) {
			tv[i] = gbs[i][m];
			cv[i] = cpu[i][m];
		}
		t[m] = stats(tv, opt.runs);
		c[m] = stats(cv, opt.runs);
	}
	printf("\n  %-11s | %-33s | %s\n", "", "throughput GB/s",
	       "receiver CPU s/GB (user+sys)");
	printf("  %-11s | %8s %7s %7s %8s | %8s %7s %7s %8s\n", "mode",
	       "median", "min", "max", "vs plain", "median", "min", "max",
	       "vs plain");
	for (int m = 0; m < NMODES; m++) {
		if (!on[m]) {
			printf("  %-11s | (skipped)\n", modes[m]);
			continue;
		}
		printf("  %-11s | %8.3f %7.3f %7.3f %8.3f | %8.3f %7.3f %7.3f"
		       " %8.3f\n", modes[m], t[m].med, t[m].min, t[m].max,
		       t[m].med / t[0].med, c[m].med, c[m].min, c[m].max,
		       c[m].med / c[0].med);
	}
	printf("  (GB = 10^9 bytes; GB/s = bytes / receiver seconds; vs plain"
	       " = median / plain median)\n\n");
	print_targets(on, t, c);
	print_paired(on, gbs, cpu);
}

static void part_throughput(void)
{
	double (*gbs)[NMODES] = calloc(opt.runs, sizeof(*gbs));
	double (*cpu)[NMODES] = calloc(opt.runs, sizeof(*cpu));
	char features[NMODES][128] = { { 0 } };
	bool on[NMODES] = { true, true, true, true };
	char why[256], h[32];
	struct result res;

	if (!gbs || !cpu)
		die("out of memory");
	printf("1. receive to memory over loopback: %u run%s of %s per mode,"
	       " interleaved\n", opt.runs, opt.runs == 1 ? "" : "s",
	       human(opt.bytes, h, sizeof(h)));
	if (!uring_works(why, sizeof(why))) {
		on[URING] = on[URING_BATCH] = false;
		printf("  uring skipped: %s\n", why);
	}
	for (unsigned i = 0; i < opt.runs; i++) {
		for (int m = 0; m < NMODES; m++) {
			if (!on[m])
				continue;
			run_once(modes[m], i + 1, &res, features[m],
				 sizeof(features[m]));
			gbs[i][m] = res.gbs;
			cpu[i][m] = res.cpu;
		}
	}
	for (int m = 1; m < NMODES; m++)
		if (on[m])
			printf("  %s engine features: %s\n", modes[m],
			       *features[m] ? features[m] : "(none)");
	print_table(on, gbs, cpu);
	free(gbs);
	free(cpu);
}

/* ------------------------------------------------------------------ */
/* Part 2: memory per idle connection                                  */
/* ------------------------------------------------------------------ */

/*
 * A server child talks to the benchmark in lines on @up: "ready PORT
 * WHAT" once it listens, "done" once it has all the hellos, "fail WHY".
 * It holds its connections until @down reaches EOF.
 */
struct server {
	const char *name;
	pid_t pid;
	int up, down;
	char buf[512];
	size_t len;
};

static enum zc_engine_kind mem_engine = ZC_ENGINE_URING;

static void __attribute__((noreturn, format(printf, 2, 3)))
server_fail(int up, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(up, "fail %s\n", msg);
	_exit(1);
}

/* Idle until the benchmark has measured and closes its end. */
static void server_hold(int down)
{
	char c;
	ssize_t n;

	do
		n = read(down, &c, 1);
	while (n > 0 || (n < 0 && errno == EINTR));
}

static void zc_server_events(int up, zc_ctx *ctx, struct zc_event *ev,
			     int n, uint64_t *got)
{
	for (int i = 0; i < n; i++) {
		switch (ev[i].type) {
		case ZC_EV_DATA:
			*got += ev[i].bytes;
			for (unsigned k = 0; k < ev[i].npieces; k++) {
				int err = zc_release(ctx, &ev[i].pieces[k]);

				if (err)
					server_fail(up, "zc_release: %s",
						    zc_strerror(err));
			}
			break;
		case ZC_EV_EOF:
			server_fail(up, "a client closed early");
		case ZC_EV_ERROR:
			server_fail(up, "connection error: %s",
				    zc_strerror(ev[i].res));
		default:
			break;
		}
	}
}

static void zc_server(int up, int down)
{
	uint64_t got = 0, want = (uint64_t)opt.conns * HELLO_LEN;
	struct zc_event ev[64];
	struct zc_config cfg;
	zc_handle lh;
	zc_ctx *ctx;
	int err, port, n;

	zc_config_init(&cfg);
	cfg.engine = mem_engine;
	cfg.pool_size = POOL_SIZE;
	cfg.piece_size = PIECE_SIZE;
	err = zc_ctx_create(&cfg, &ctx);
	if (err)
		server_fail(up, "zc_ctx_create: %s", zc_strerror(err));
	err = zc_listen(ctx, "127.0.0.1:0", 0, &lh);
	if (err)
		server_fail(up, "zc_listen: %s", zc_strerror(err));
	port = zc_local_port(ctx, lh);
	if (port <= 0)
		server_fail(up, "zc_local_port: %s", zc_strerror(port));
	dprintf(up, "ready %d %s (features: %s)\n", port,
		zc_engine_name(ctx), zc_engine_features(ctx));
	while (got < want) {
		n = zc_wait(ctx, ev, 64, 1000);
		if (n == -EINTR)
			continue;
		if (n < 0)
			server_fail(up, "zc_wait: %s", zc_strerror(n));
		zc_server_events(up, ctx, ev, n, &got);
	}
	dprintf(up, "done\n");
	server_hold(down);
	zc_ctx_destroy(ctx);
	_exit(0);
}

/* The epoll server's state for one connection. */
struct econn {
	int fd;
	unsigned got;
	char *buf;	/* EPOLL_BUF bytes */
};

static int tcp_listener(int up)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, SOMAXCONN))
		server_fail(up, "listen: %s", strerror(errno));
	return fd;
}

static int local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len))
		return -errno;
	return ntohs(sa.sin_port);
}

static void epoll_accept(int up, int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event e = { .events = EPOLLIN };
		struct econn *c;

		if (fd < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (fd < 0)
			server_fail(up, "accept: %s", strerror(errno));
		c = malloc(sizeof(*c));
		if (!c || !(c->buf = malloc(EPOLL_BUF)))
			server_fail(up, "out of memory");
		/*
		 * Touch the whole buffer, as a server that has had traffic
		 * has. Not with zeros: the compiler may turn malloc+memset(0)
		 * into calloc(), which can leave fresh pages untouched.
		 */
		memset(c->buf, 0x5a, EPOLL_BUF);
		c->fd = fd;
		c->got = 0;
		e.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e))
			server_fail(up, "epoll_ctl: %s", strerror(errno));
	}
}

/* Read into the connection's buffer; true once its hello is complete. */
static bool epoll_read(int up, struct econn *c)
{
	ssize_t n = read(c->fd, c->buf + c->got, EPOLL_BUF - c->got);

	if (n == 0)
		server_fail(up, "a client closed early");
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		server_fail(up, "read: %s", strerror(errno));
	if (n <= 0 || c->got >= HELLO_LEN)
		return false;
	c->got += n;
	return c->got >= HELLO_LEN;
}

static void epoll_server(int up, int down)
{
	struct epoll_event ev[256], le = { .events = EPOLLIN };
	unsigned hellos = 0;
	int lfd, ep, n;

	lfd = tcp_listener(up);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le))
		server_fail(up, "epoll: %s", strerror(errno));
	dprintf(up, "ready %d %u-byte buffer per connection, touched\n",
		local_port(lfd), EPOLL_BUF);
	while (hellos < opt.conns) {
		n = epoll_wait(ep, ev, 256, 1000);
		if (n < 0 && errno != EINTR)
			server_fail(up, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			if (!ev[i].data.ptr)
				epoll_accept(up, ep, lfd);
			else if (epoll_read(up, ev[i].data.ptr))
				hellos++;
		}
	}
	dprintf(up, "done\n");
	server_hold(down);
	_exit(0);
}

static void server_start(struct server *s, const char *name,
			 void (*body)(int up, int down))
{
	int a[2], b[2];
	pid_t parent = getpid();

	memset(s, 0, sizeof(*s));
	s->name = name;
	if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	fflush(stdout);		/* or the child would print it again */
	s->pid = fork();
	if (s->pid < 0)
		die("fork: %s", strerror(errno));
	if (s->pid == 0) {
		child_setup(parent);
		close(a[0]);
		close(b[1]);
		body(a[1], b[0]);
		_exit(0);
	}
	child_add(s->pid);
	close(a[1]);
	close(b[0]);
	s->up = a[0];
	s->down = b[1];
}

/* The server's next line, without its newline; NULL on EOF or time-out. */
static const char *server_line(struct server *s, double deadline)
{
	static char line[512];
	struct pollfd p = { .fd = s->up, .events = POLLIN };
	char *nl;
	ssize_t n;

	while (!(nl = memchr(s->buf, '\n', s->len))) {
		int ms = (int)((deadline - now()) * 1000);

		if (ms <= 0 || s->len == sizeof(s->buf))
			return NULL;
		n = poll(&p, 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		n = read(s->up, s->buf + s->len, sizeof(s->buf) - s->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		s->len += n;
	}
	*nl = '\0';
	snprintf(line, sizeof(line), "%s", s->buf);
	s->len -= nl + 1 - s->buf;
	memmove(s->buf, nl + 1, s->len);
	return line;
}

static void server_stop(struct server *s)
{
	double deadline = now() + 10;
	int status;

	close(s->down);
	close(s->up);
	while (waitpid(s->pid, &status, WNOHANG) == 0) {
		if (now() > deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &status, 0);
			break;
		}
		usleep(10000);
	}
	child_del(s->pid);
}

/* A line other than @want from the server ends the benchmark. */
static const char *expect(struct server *s, const char *want,
			  double timeout)
{
	const char *line = server_line(s, now() + timeout);

	if (line && !strncmp(line, want, strlen(want)))
		return line + strlen(want);
	if (line && !strncmp(line, "fail ", 5))
		die("%s server failed: %s", s->name, line + 5);
	if (line)
		die("%s server said: %s", s->name, line);
	die("%s server: no \"%s\" within %.0f s", s->name, want, timeout);
}

static long vm_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * A connect() with a time-out fails with EINTR, rather than restarting,
 * when anything flags a signal, io_uring task work included; the
 * handshake carries on in the kernel, so wait for its outcome.
 */
static int connect_wait(int fd, const struct sockaddr_in *sa)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int err = 0, n;

	if (!connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		return 0;
	if (errno != EINTR)
		return errno;
	do
		n = poll(&p, 1, 10000);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n ? errno : ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		return errno;
	return err;
}

/*
 * One client: connect and send the hello. Returns the socket, or -1 and
 * the failed step in @what with errno set.
 */
static int connect_one(int port, const char **what)
{
	static const char hello[HELLO_LEN] = "hello";
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 10 };	/* connect() obeys it */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n;
	int err;

	*what = "socket";
	if (fd < 0)
		return -1;
	/* A server that stops accepting must not hang us for minutes. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*what = "connect";
	err = connect_wait(fd, &sa);
	if (err) {
		close(fd);
		errno = err;
		return -1;
	}
	*what = "send";
	do
		n = send(fd, hello, sizeof(hello), 0);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(hello)) {
		err = n < 0 ? errno : EIO;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* A client failed: the server's last words, if any, say why. */
static void __attribute__((noreturn))
client_failed(struct server *s, unsigned i, const char *what, int err)
{
	const char *line = server_line(s, now() + 1);

	die("%s server: client %u: %s: %s%s%s", s->name, i, what,
	    strerror(err), line ? "; the server said: " : "",
	    line ? line : "");
}

/* Open the clients, showing progress at every quarter. */
static void open_clients(int port, struct server *s, int *fds)
{
	unsigned step = opt.conns / 4 ? opt.conns / 4 : 1;
	const char *what;

	printf("    %s: connecting %u clients:", s->name, opt.conns);
	fflush(stdout);
	for (unsigned i = 0; i < opt.conns; i++) {
		fds[i] = connect_one(port, &what);
		if (fds[i] < 0) {
			int err = errno;

			printf("\n");
			client_failed(s, i, what, err);
		}
		if ((i + 1) % step == 0 || i + 1 == opt.conns) {
			printf(" %u", i + 1);
			fflush(stdout);
		}
	}
	printf("\n");
}

struct mem {
	long before, after;	/* VmRSS kB */
	double per_conn;	/* bytes */
	char what[160];
};

static void measure_server(const char *name, void (*body)(int, int),
			   int *fds, struct mem *m)
{
	struct server s;
	const char *ready;
	int port;
	char *rest;

	server_start(&s, name, body);
	ready = expect(&s, "ready ", 30);
	port = (int)strtol(ready, &rest, 10);
	snprintf(m->what, sizeof(m->what), "%s", *rest ? rest + 1 : "");
	m->before = vm_rss_kb(s.pid);
	open_clients(port, &s, fds);
	expect(&s, "done", 60 + opt.conns / 100);
	m->after = vm_rss_kb(s.pid);
	if (m->before < 0 || m->after < 0)
		die("%s server: cannot read its VmRSS", name);
	m->per_conn = (m->after - m->before) * 1024.0 / opt.conns;
	/* Server first: then the clients' sockets leave no TIME_WAIT. */
	server_stop(&s);
	for (unsigned i = 0; i < opt.conns; i++)
		close(fds[i]);
}

/*
 * The clients here and the server child each hold --conns sockets. Ask
 * for room for both (2N + 100); the limit is per process, so N + 100 is
 * enough when the hard limit cannot be raised (no CAP_SYS_RESOURCE).
 */
static void raise_nofile(void)
{
	rlim_t want = 2 * (rlim_t)opt.conns + 100;
	rlim_t need = (rlim_t)opt.conns + 100;
	struct rlimit rl, up;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur >= want)
		return;
	up.rlim_cur = want;
	up.rlim_max = rl.rlim_max > want ? rl.rlim_max : want;
	if (!setrlimit(RLIMIT_NOFILE, &up))
		return;
	if (rl.rlim_max < need)
		die("RLIMIT_NOFILE: need %llu descriptors, the hard limit is"
		    " %llu and cannot be raised: %s",
		    (unsigned long long)need, (unsigned long long)rl.rlim_max,
		    strerror(errno));
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(RLIMIT_NOFILE, %llu): %s",
		    (unsigned long long)rl.rlim_cur, strerror(errno));
}

static void print_mem(const char *label, const struct mem *m)
{
	printf("  %-13s | %13ld kB | %13ld kB | %12.0f B\n", label,
	       m->before, m->after, m->per_conn);
}

static void describe_servers(void)
{
	printf("  zcnet server: one context, pool %d MiB of %d KiB pieces;"
	       " receives and\n    releases each hello\n", POOL_SIZE >> 20,
	       PIECE_SIZE >> 10);
	printf("  epoll server: plain sockets and epoll; a %d KiB buffer"
	       " malloc()ed per connection\n    at accept and memset() whole,"
	       " as a server that has had traffic has;\n    reads the hello"
	       " into it\n", EPOLL_BUF >> 10);
	printf("  each server is a forked child; its VmRSS (/proc/PID/status)"
	       " is read after\n    set-up (pool allocated, listening) and"
	       " again with all connections open\n    and their hellos"
	       " received; per connection = delta / %u\n", opt.conns);
}

static void print_memory(const struct mem *z, const struct mem *e)
{
	double ratio = e->per_conn > 0 ? z->per_conn / e->per_conn : 0;
	char with[32];

	snprintf(with, sizeof(with), "with %u conns", opt.conns);
	printf("\n  %-13s | %16s | %16s | %s\n", "server", "RSS at set-up",
	       with, "per connection");
	print_mem("zcnet", z);
	print_mem("epoll 64 KiB", e);
	printf("\n  zcnet / epoll per connection: %.4f", ratio);
	if (ratio > 0)
		printf(" (1/%.0f)", 1 / ratio);
	printf("\n  target zcnet <= 1/%.0f of epoll (%.4f): %s\n", MEM_TARGET,
	       1 / MEM_TARGET, verdict(e->per_conn > 0 &&
				       ratio <= 1 / MEM_TARGET));
	printf("  note: RSS counts user memory only. Kernel socket memory"
	       " (socket buffers, TCP\n    state) is not in it; both servers"
	       " hold the same %u kernel sockets.\n", opt.conns);
}

static void part_memory(void)
{
	int *fds = calloc(opt.conns, sizeof(int));
	struct mem z, e;
	char why[256];

	if (!fds)
		die("out of memory");
	printf("\n2. memory per idle connection: %u connections on"
	       " 127.0.0.1, one %d-byte hello each\n", opt.conns, HELLO_LEN);
	if (!uring_works(why, sizeof(why))) {
		mem_engine = ZC_ENGINE_SOCKET;
		printf("  uring cannot run, so the zcnet server uses the socket"
		       " engine:\n    %s\n", why);
	}
	describe_servers();
	measure_server("zcnet", zc_server, fds, &z);
	printf("    zcnet server engine: %s\n", z.what);
	measure_server("epoll", epoll_server, fds, &e);
	free(fds);
	print_memory(&z, &e);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	catch_signals();
	find_cli();
	raise_nofile();		/* now: better than after part 1 */
	print_header();
	part_throughput();
	part_memory();
	return 0;
}
