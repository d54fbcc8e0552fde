/*
 * zcnet-bench - what zcnet costs and what it saves, on this machine.
 * Each --section measures one thing; without one, recv and memory.
 *
 * recv: receive to memory over loopback. Each system (plain recv(),
 *    iperf3's server, every zcnet engine with the sender meant for it)
 *    receives --bytes --runs times, interleaved (run 1 of every system,
 *    then run 2, ...) so that drift on a noisy machine hits all alike;
 *    median, min and max of throughput and of the receiver's CPU per GB
 *    (user+sys of the reaped receiving process).
 * memory: memory per idle connection. A zcnet server (one context) and
 *    an epoll server with a 64 KiB buffer per connection run in forked
 *    children; this process opens --conns connections to each, sends a
 *    64-byte hello on every one, and reads the servers' VmRSS before and
 *    after.
 * scale, pool, piece: curves of throughput, CPU and stalls against the
 *    number of streams, the pool size (with a slow application) and the
 *    piece size.
 * limits: single-core memcpy() and O_DIRECT write bandwidth.
 *
 * With --tsv DIR, each section also writes its table there as TSV.
 * All traffic stays on 127.0.0.1. A system that fails is reported as
 * failed and the others go on; any other failure exits 1.
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
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "zcnet.h"
#include "limits.h"

#define GB 1e9			/* GB/s and CPU s/GB use 10^9 bytes */
#define HELLO_LEN 64		/* bytes each idle client sends */
#define EPOLL_BUF (64 << 10)	/* the epoll server's buffer per conn */
#define POOL_SIZE (16 << 20)	/* the zcnet server's pool */
#define PIECE_SIZE (64 << 10)
#define LISTEN_TIMEOUT_S 15.0	/* recv start-up to its listening line */
#define RECV_GRACE_S 10.0	/* recv exit after the sender's */
#define SIGINT_GRACE_S 5.0
#define MEM_TARGET 32.0		/* zcnet <= 1/32 of epoll per conn */
#define HOLD_MS "1"		/* pool curve: each piece held this long */
#define MAX_LIST 16

static struct {
	unsigned runs;
	uint64_t bytes;
	unsigned conns;
	const char *section;
	const char *tsv;	/* directory for the TSV tables */
	const char *dir;	/* O_DIRECT target */
	unsigned streams[MAX_LIST], pools[MAX_LIST], pieces[MAX_LIST];
	unsigned chunks[MAX_LIST];
	unsigned nstreams, npools, npieces, nchunks;
} opt = {
	.runs = 5, .bytes = 2ull << 30, .conns = 10000, .section = "all",
	.dir = "/var/tmp",
	.streams = { 1, 10, 100, 1000 }, .nstreams = 4,
	.pools = { 1, 2, 4, 8, 16, 64 }, .npools = 6,
	.pieces = { 4, 16, 64, 256, 1024 }, .npieces = 5,
	.chunks = { 4, 8, 16, 32, 64, 256 }, .nchunks = 6,
};

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
		"usage: zcnet-bench [--section S] [--tsv DIR] [--runs N]"
		" [--bytes N] [--conns N]\n"
		"                   [--streams LIST] [--pools LIST]"
		" [--pieces LIST] [--chunks LIST] [--dir DIR]\n"
		"  --section S     all (default: recv and memory), recv,"
		" memory, scale, pool,\n"
		"                  piece, zcsend, latency or limits\n"
		"  --tsv DIR       also write the section's table to DIR as"
		" TSV\n"
		"  --runs N        runs per system (default 5)\n"
		"  --bytes N       bytes per run, K/M/G suffixes (default 2G;"
		" scale: in total)\n"
		"  --conns N       idle connections for memory (default"
		" 10000)\n"
		"  --streams LIST  scale: concurrent streams (default"
		" 1,10,100,1000)\n"
		"  --pools LIST    pool: pool sizes in MiB (default"
		" 1,2,4,8,16,64)\n"
		"  --pieces LIST   piece: piece sizes in KiB (default"
		" 4,16,64,256,1024)\n"
		"  --chunks LIST   zcsend: bytes per send call in KiB (default"
		" 4,8,16,32,64,256)\n"
		"  --dir DIR       limits: where O_DIRECT writes go (default"
		" /var/tmp)\n");
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

/* "1,10,100": up to MAX_LIST numbers 1 .. @max. */
static unsigned list_arg(const char *name, const char *val, unsigned *out,
			 unsigned max)
{
	unsigned n = 0;
	const char *s = val;

	if (!val || !*val || val[strspn(val, "0123456789,")] ||
	    strstr(val, ",,") || *val == ',' || val[strlen(val) - 1] == ',') {
		usage(stderr);
		die("bad %s: %s", name, val ? val : "(missing)");
	}
	while (*s) {
		char num[16];
		size_t len = strcspn(s, ",");

		if (n == MAX_LIST)
			die("%s: more than %d values", name, MAX_LIST);
		snprintf(num, sizeof(num), "%.*s", (int)len, s);
		out[n++] = num_arg(name, num, max, false);
		s += len + (s[len] == ',');
	}
	return n;
}

static const char *const sections[] = {
	"all", "recv", "memory", "scale", "pool", "piece", "zcsend", "latency",
	"limits", NULL
};

static const char *section_arg(const char *v)
{
	for (int i = 0; v && sections[i]; i++)
		if (!strcmp(v, sections[i]))
			return sections[i];
	usage(stderr);
	die("bad --section: %s", v ? v : "(missing)");
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
		else if (!strcmp(a, "--section"))
			opt.section = section_arg(v);
		else if (!strcmp(a, "--tsv") && v)
			opt.tsv = v;
		else if (!strcmp(a, "--dir") && v)
			opt.dir = v;
		else if (!strcmp(a, "--streams"))
			opt.nstreams = list_arg(a, v, opt.streams, 100000);
		else if (!strcmp(a, "--pools"))
			opt.npools = list_arg(a, v, opt.pools, 1 << 16);
		else if (!strcmp(a, "--pieces"))
			opt.npieces = list_arg(a, v, opt.pieces, 1 << 16);
		else if (!strcmp(a, "--chunks"))
			opt.nchunks = list_arg(a, v, opt.chunks, 16384);
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
	printf("settings: --section %s --runs %u --bytes %llu (%s) --conns"
	       " %u\n\n", opt.section, opt.runs,
	       (unsigned long long)opt.bytes, human(opt.bytes, h, sizeof(h)),
	       opt.conns);
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
	struct rusage ru;	/* the reaped child's, for its CPU time */
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
		execvp(argv[0], argv);
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
	if (p->exited || wait4(p->pid, &p->status, WNOHANG, &p->ru) != p->pid)
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
/* Systems under test: a receiver, the sender meant for it, results     */
/* ------------------------------------------------------------------ */

enum rx_kind { RX_ZCNET, RX_IPERF3 };

struct sys {
	char name[64];		/* its row in tables and TSVs */
	enum rx_kind kind;
	const char *engine;	/* zcnet recv --engine */
	unsigned conns, pool_mb, piece_kb, hold_ms;
	bool nobatch;		/* uring --batch-us 0: a wake-up per completion */
	bool aligned;		/* page-aligned ends, MSG_ZEROCOPY sender */
	bool zc_all;		/* sender: every send MSG_ZEROCOPY */
	bool sender_cpu;	/* CPU figures are the sender's */
	unsigned chunk_kb;	/* sender: bytes per send call */
	uint64_t bytes;		/* per connection */
	unsigned x;		/* its point on a curve */
	unsigned n;		/* good runs so far; one value each below */
	double *gbs, *cpu, *stalls;
	double mapped, received;	/* bytes over all runs */
	char status[160];	/* "ok" or "failed:WHY" */
	char features[128];
};

struct run {
	struct sys *s;
	char name[96];		/* "run 2/5 of zcnet uring" */
	struct proc rx, tx;
	bool interrupted;	/* the receiver needed a SIGINT to finish */
};

/* What one good run measured. */
struct result {
	double bytes, secs, cpu_s, stalls, mapped;
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

static void proc_kill(struct proc *p)
{
	if (!p->pid || p->exited)
		return;
	kill(-p->pid, SIGKILL);
	kill(p->pid, SIGKILL);
	wait4(p->pid, &p->status, 0, &p->ru);
	p->exited = true;
	child_del(p->pid);
}

/*
 * A run failed: say why, stop its processes, show what they said (the
 * best clue) and mark the system failed, keeping the reason for the
 * TSV (no tabs or newlines in it). Returns -1.
 */
static int __attribute__((format(printf, 2, 3)))
run_fail(struct run *r, const char *fmt, ...)
{
	struct proc *ps[2] = { &r->rx, &r->tx };
	char why[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	for (char *c = why; *c; c++)
		if (*c == '\t' || *c == '\n')
			*c = ' ';
	printf("FAILED\n");
	fflush(stdout);
	fprintf(stderr, "zcnet-bench: %s failed: %s\n", r->name, why);
	for (int i = 0; i < 2; i++) {
		if (!ps[i]->pid)
			continue;
		proc_kill(ps[i]);
		for (int j = 0; j < 2; j++)
			proc_dump(ps[i], j);
	}
	snprintf(r->s->status, sizeof(r->s->status), "failed:%s", why);
	return -1;
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

static int check_exit(struct run *r, struct proc *p)
{
	char why[64];

	if (WIFEXITED(p->status) && !WEXITSTATUS(p->status))
		return 0;
	return run_fail(r, "%s: %s", p->what,
			exit_text(p->status, why, sizeof(why)));
}

/* An argument vector built up one word at a time. */
struct argv {
	char *v[32];
	int n;
	char num[8][24];	/* room for the numbers in it */
	int nn;
};

static void arg(struct argv *a, const char *s)
{
	a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

static void arg_num(struct argv *a, const char *flag, uint64_t v)
{
	char *b = a->num[a->nn++];

	snprintf(b, sizeof(a->num[0]), "%llu", (unsigned long long)v);
	if (flag)
		arg(a, flag);
	arg(a, b);
}

static void zcnet_rx_args(const struct sys *s, struct argv *a)
{
	arg(a, cli);
	arg(a, "recv");
	arg(a, "--listen");
	arg(a, "127.0.0.1:0");
	arg(a, "--engine");
	arg(a, s->engine);
	if (s->nobatch)
		arg_num(a, "--batch-us", 0);
	if (s->aligned)
		arg(a, "--page-aligned");
	if (s->conns > 1)
		arg_num(a, "--connections", s->conns);
	if (s->pool_mb)
		arg_num(a, "--pool-mb", s->pool_mb);
	if (s->piece_kb)
		arg_num(a, "--piece-kb", s->piece_kb);
	if (s->hold_ms)
		arg_num(a, "--hold-ms", s->hold_ms);
}

static void tx_args(const struct sys *s, const char *port, struct argv *a)
{
	static char addr[32];

	if (s->kind == RX_IPERF3) {
		arg(a, "iperf3");
		arg(a, "-c");
		arg(a, "127.0.0.1");
		arg(a, "-p");
		arg(a, port);
		arg_num(a, "-n", s->bytes);
		arg(a, "-J");	/* quiet: the receiver's JSON counts */
		return;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
	arg(a, cli);
	arg(a, "send");
	arg(a, "--connect");
	arg(a, addr);
	arg_num(a, "--bytes", s->bytes);
	if (s->conns > 1)
		arg_num(a, "--connections", s->conns);
	if (s->aligned) {
		arg(a, "--zerocopy");
		arg(a, "--page-aligned");
	}
	if (s->zc_all) {
		arg(a, "--zerocopy");
		arg_num(a, "--zerocopy-min", 1);
	}
	if (s->chunk_kb)
		arg_num(a, "--chunk-kb", s->chunk_kb);
}

/* Start `zcnet recv` and read its port from the listening line. */
static int zcnet_start(struct run *r)
{
	static const char pfx[] = "zcnet recv: listening on 127.0.0.1:";
	struct proc *ps[1] = { &r->rx };
	double deadline = now() + LISTEN_TIMEOUT_S;
	struct argv a = { .n = 0 };
	char line[512], *s;
	long port;

	zcnet_rx_args(r->s, &a);
	proc_start(&r->rx, "recv", a.v);
	while (!find_line(&r->rx.out[1], pfx, line, sizeof(line))) {
		if (proc_done(&r->rx) && check_exit(r, &r->rx))
			return -1;
		if (proc_done(&r->rx) || now() > deadline)
			return run_fail(r, "recv printed no listening line");
		proc_pump(ps, 1, 100);
	}
	port = strtol(line + strlen(pfx), NULL, 10);
	if (port <= 0 || port > 65535)
		return run_fail(r, "bad listening line: %s", line);
	s = strstr(line, " features=");
	snprintf(r->s->features, sizeof(r->s->features), "%s",
		 s ? s + strlen(" features=") : "?");
	return (int)port;
}

/* A port free right now on 127.0.0.1, for a server that needs one. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/*
 * Is something listening on 127.0.0.1:@port? iperf3 says so only in its
 * final JSON, and a probing connection would count as its one test, so
 * ask the kernel (state 0A is LISTEN).
 */
static bool listening(int port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[256], want[32];
	bool found = false;

	if (!f)
		return false;
	snprintf(want, sizeof(want), "0100007F:%04X 00000000:0000 0A", port);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, want) != NULL;
	fclose(f);
	return found;
}

/* Start a one-test iperf3 server (-1) on a free port; returns the port. */
static int iperf3_start(struct run *r)
{
	struct proc *ps[1] = { &r->rx };
	double deadline = now() + LISTEN_TIMEOUT_S;
	struct argv a = { .n = 0 };
	int port = free_port();

	if (port < 0)
		return run_fail(r, "no free port: %s", strerror(errno));
	arg(&a, "iperf3");
	arg(&a, "-s");
	arg(&a, "-1");
	arg(&a, "-B");
	arg(&a, "127.0.0.1");
	arg_num(&a, "-p", port);
	arg(&a, "-J");
	proc_start(&r->rx, "iperf3 -s", a.v);
	while (!listening(port)) {
		if (proc_done(&r->rx) && check_exit(r, &r->rx))
			return -1;
		if (proc_done(&r->rx) || now() > deadline)
			return run_fail(r, "iperf3 -s did not listen");
		proc_pump(ps, 1, 20);
	}
	return port;
}

/* Long enough for a slow machine, short enough to catch a hang. */
static double run_timeout(const struct sys *s)
{
	return 60.0 + (double)s->bytes * s->conns / 20e6;
}

static int run_transfer(struct run *r, int port)
{
	struct proc *ps[2] = { &r->rx, &r->tx };
	struct argv a = { .n = 0 };
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	tx_args(r->s, portstr, &a);
	proc_start(&r->tx, r->s->kind == RX_IPERF3 ? "iperf3 -c" : "send",
		   a.v);
	if (!proc_wait(&r->tx, ps, 2, now() + run_timeout(r->s)))
		return run_fail(r, "the sender did not finish in %.0f s",
				run_timeout(r->s));
	if (check_exit(r, &r->tx))
		return -1;

	/*
	 * The receiver ends when its connections do; if it keeps listening
	 * for more, SIGINT is how a user ends it and gets the summary.
	 */
	if (proc_wait(&r->rx, ps, 2, now() + RECV_GRACE_S))
		return check_exit(r, &r->rx);
	r->interrupted = true;
	kill(r->rx.pid, SIGINT);
	if (!proc_wait(&r->rx, ps, 2, now() + SIGINT_GRACE_S))
		return run_fail(r, "the receiver did not exit after the"
				" sender, nor on SIGINT");
	return check_exit(r, &r->rx);
}

static int need(struct run *r, const char *line, const char *key, double *v)
{
	if (kv_num(line, key, v))
		return 0;
	return run_fail(r, "recv summary has no number %s=", key);
}

static int zcnet_results(struct run *r, struct result *res)
{
	double want = (double)r->s->bytes * r->s->conns, conns;
	char line[1024], eng[32] = "?";

	if (!find_line(&r->rx.out[0], "summary ", line, sizeof(line)))
		return run_fail(r, "recv printed no summary line");
	if (need(r, line, "bytes", &res->bytes) ||
	    need(r, line, "seconds", &res->secs) ||
	    need(r, line, "stalls", &res->stalls) ||
	    need(r, line, "mapped", &res->mapped) ||
	    need(r, line, "connections", &conns))
		return -1;
	if (!kv(line, "engine", eng, sizeof(eng)) || strcmp(eng, r->s->engine))
		return run_fail(r, "recv ran engine %s, not %s", eng,
				r->s->engine);
	if (res->bytes != want || conns != r->s->conns)
		return run_fail(r, "recv got %.0f bytes on %.0f connections,"
				" expected %.0f on %u", res->bytes, conns,
				want, r->s->conns);
	if (!find_line(&r->tx.out[0], "summary ", line, sizeof(line)) ||
	    !kv_num(line, "bytes", &conns) || conns != want)
		return run_fail(r, "send did not report %.0f bytes sent", want);
	return 0;
}

/* The number after "@key": in @s, iperf3's JSON ("key":<tab>number). */
static bool json_num(const char *s, const char *key, double *v)
{
	char pat[64], *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	s = s ? strstr(s, pat) : NULL;
	if (!s)
		return false;
	*v = strtod(s + strlen(pat), &end);
	return end != s + strlen(pat);
}

/*
 * iperf3's server counts the bytes up to the client's end-of-test
 * message: a little less than was sent. Rate and CPU per byte both use
 * that count, as iperf3 reports it.
 */
static int iperf3_results(struct run *r, struct result *res)
{
	const char *sum = strstr(r->rx.out[0].p, "\"sum_received\"");

	if (!json_num(sum, "bytes", &res->bytes) ||
	    !json_num(sum, "seconds", &res->secs))
		return run_fail(r, "iperf3 -s printed no sum_received");
	res->stalls = res->mapped = 0;
	if (res->bytes < 0.5 * r->s->bytes)
		return run_fail(r, "iperf3 -s received %.0f of %llu bytes",
				res->bytes, (unsigned long long)r->s->bytes);
	return 0;
}

static double tv_s(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void record(struct sys *s, struct result *res, bool interrupted)
{
	unsigned i = s->n++;

	s->gbs[i] = res->bytes / res->secs / GB;
	s->cpu[i] = res->cpu_s / (res->bytes / GB);
	s->stalls[i] = res->stalls;
	s->mapped += res->mapped;
	s->received += res->bytes;
	printf("%7.3f GB/s  %6.3f CPU s/GB  stalls %.0f%s\n", s->gbs[i],
	       s->cpu[i], res->stalls,
	       interrupted ? "  (receiver ended by SIGINT)" : "");
}

static void run_once(struct sys *s, unsigned n)
{
	struct run r = { .s = s };
	struct result res;
	int port, err;

	snprintf(r.name, sizeof(r.name), "run %u/%u of %s", n, opt.runs,
		 s->name);
	printf("  run %u/%u  %-30s ", n, opt.runs, s->name);
	fflush(stdout);
	port = s->kind == RX_IPERF3 ? iperf3_start(&r) : zcnet_start(&r);
	err = port < 0 ? -1 : run_transfer(&r, port);
	if (!err)
		err = s->kind == RX_IPERF3 ? iperf3_results(&r, &res) :
					     zcnet_results(&r, &res);
	if (!err && res.secs <= 0)	/* recv prints milliseconds */
		err = run_fail(&r, "took %g s: too short to time, use a larger"
			       " --bytes", res.secs);
	if (!err) {
		/* The reaped receiver's (or sender's) own user+sys,
		 * start-up included. */
		struct proc *p = s->sender_cpu ? &r.tx : &r.rx;

		res.cpu_s = tv_s(p->ru.ru_utime) + tv_s(p->ru.ru_stime);
		record(s, &res, r.interrupted);
	}
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

/* Is @prog on $PATH? */
static bool have_program(const char *prog)
{
	const char *path = getenv("PATH");
	char dir[PATH_MAX];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(dir, sizeof(dir), "%.*s/%s", (int)len, path, prog);
		if (!access(dir, X_OK))
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/*
 * Runs every system --runs times, interleaved (run 1 of each, then run
 * 2, ...) so that drift on a noisy machine hits all of them alike. A
 * system that fails once is marked failed and not run again.
 */
static void measure(struct sys *ss, int n)
{
	char why[120];	/* fits in status[] after its prefix */

	for (int k = 0; k < n; k++) {
		struct sys *s = &ss[k];

		s->gbs = calloc(opt.runs, sizeof(double));
		s->cpu = calloc(opt.runs, sizeof(double));
		s->stalls = calloc(opt.runs, sizeof(double));
		if (!s->gbs || !s->cpu || !s->stalls)
			die("out of memory");
		snprintf(s->status, sizeof(s->status), "ok");
		if (s->kind == RX_IPERF3 && !have_program("iperf3"))
			snprintf(s->status, sizeof(s->status),
				 "failed:iperf3 is not installed");
		if (s->kind == RX_ZCNET && !strcmp(s->engine, "uring") &&
		    !uring_works(why, sizeof(why)))
			snprintf(s->status, sizeof(s->status),
				 "failed:io_uring cannot run: %s", why);
		if (strcmp(s->status, "ok"))
			printf("  %s: %s\n", s->name, s->status);
	}
	for (unsigned i = 0; i < opt.runs; i++)
		for (int k = 0; k < n; k++)
			if (!strcmp(ss[k].status, "ok"))
				run_once(&ss[k], i + 1);
}

static void sys_free(struct sys *ss, int n)
{
	for (int k = 0; k < n; k++) {
		free(ss[k].gbs);
		free(ss[k].cpu);
		free(ss[k].stalls);
	}
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

static bool sys_ok(const struct sys *s)
{
	return !strcmp(s->status, "ok") && s->n > 0;
}

/* ------------------------------------------------------------------ */
/* Tables: on stdout for people, as TSV for the report                 */
/* ------------------------------------------------------------------ */

#define TSV_HEAD "system\tgbps_med\tgbps_min\tgbps_max\tcpu_s_per_gb_med" \
	"\tcpu_s_per_gb_min\tcpu_s_per_gb_max\truns\tstatus"
#define TSV_STALLS "\tstalls_med\tstalls_min\tstalls_max"

/* Open @name in the --tsv directory, or NULL without --tsv. */
static FILE *tsv_open(const char *name, const char *mode)
{
	char path[PATH_MAX];
	FILE *f;

	if (!opt.tsv)
		return NULL;
	snprintf(path, sizeof(path), "%s/%s", opt.tsv, name);
	f = fopen(path, mode);
	if (!f)
		die("%s: %s", path, strerror(errno));
	return f;
}

static void tsv_close(FILE *f)
{
	if (f && fclose(f))
		die("writing a TSV: %s", strerror(errno));
}

/* One row in the shared format; with @xname, a curve's row. */
static void tsv_row(FILE *f, const struct sys *s, const char *xname)
{
	struct stat3 t, c, st;

	if (!f)
		return;
	if (xname)
		fprintf(f, "%u\t", s->x);
	if (!sys_ok(s)) {
		fprintf(f, "%s\t-\t-\t-\t-\t-\t-\t-\t%s%s\n", s->name,
			s->status, xname ? "\t-\t-\t-" : "");
		return;
	}
	t = stats(s->gbs, s->n);
	c = stats(s->cpu, s->n);
	st = stats(s->stalls, s->n);
	fprintf(f, "%s\t%.3f\t%.3f\t%.3f\t%.4f\t%.4f\t%.4f\t%u\tok", s->name,
		t.med, t.min, t.max, c.med, c.min, c.max, s->n);
	if (xname)
		fprintf(f, "\t%.0f\t%.0f\t%.0f", st.med, st.min, st.max);
	fputc('\n', f);
}

static void write_tsv(const char *file, struct sys *ss, int n,
		      const char *xname)
{
	FILE *f = tsv_open(file, "w");

	if (!f)
		return;
	if (xname)
		fprintf(f, "%s\t" TSV_HEAD TSV_STALLS "\n", xname);
	else
		fprintf(f, TSV_HEAD "\n");
	for (int k = 0; k < n; k++)
		tsv_row(f, &ss[k], xname);
	tsv_close(f);
}

static void print_ratio(double v, double base)
{
	if (base > 0)
		printf(" %8.3f", v / base);
	else
		printf(" %8s", "-");
}

/* Median, min-max and the ratio of medians against @base, per system. */
static void print_table(struct sys *ss, int n, const struct sys *base)
{
	struct stat3 bt = { 0 }, bc = { 0 };

	if (base && sys_ok(base)) {
		bt = stats(base->gbs, base->n);
		bc = stats(base->cpu, base->n);
	}
	printf("\n  %-30s | %-33s | %s\n", "", "throughput GB/s",
	       "CPU s/GB (user+sys)");
	printf("  %-30s | %8s %7s %7s %8s | %8s %7s %7s %8s  stalls\n",
	       "system", "median", "min", "max", "ratio", "median", "min",
	       "max", "ratio");
	for (int k = 0; k < n; k++) {
		struct sys *s = &ss[k];
		struct stat3 t, c;

		if (!sys_ok(s)) {
			printf("  %-30s | %s\n", s->name, s->status);
			continue;
		}
		t = stats(s->gbs, s->n);
		c = stats(s->cpu, s->n);
		printf("  %-30s | %8.3f %7.3f %7.3f", s->name, t.med, t.min,
		       t.max);
		print_ratio(t.med, bt.med);
		printf(" | %8.3f %7.3f %7.3f", c.med, c.min, c.max);
		print_ratio(c.med, bc.med);
		printf("  %.0f\n", stats(s->stalls, s->n).med);
	}
	printf("  (GB = 10^9 bytes; GB/s = bytes / receiver seconds%s%s)\n",
	       base ? "; ratio = median / median of " : "",
	       base ? base->name : "");
}

/* ------------------------------------------------------------------ */
/* Section recv: receive to memory over loopback                        */
/* ------------------------------------------------------------------ */

static void zsys(struct sys *s, const char *name, const char *engine)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->kind = RX_ZCNET;
	s->engine = engine;
	s->conns = 1;
	s->bytes = opt.bytes;
}

static void print_recv_commands(void)
{
	printf("commands (each run; PORT is the one the receiver listens on):\n"
	       "  recv() 256 KiB:  %s recv --listen 127.0.0.1:0 --engine plain\n"
	       "  iperf3:          iperf3 -s -1 -B 127.0.0.1 -p PORT -J\n"
	       "    sender:        iperf3 -c 127.0.0.1 -p PORT -n %llu -J\n"
	       "  zcnet E:         %s recv --listen 127.0.0.1:0 --engine E\n"
	       "    (batch-us 0: --engine uring --batch-us 0;"
	       " mmap: --engine mmap --page-aligned)\n"
	       "  sender:          %s send --connect 127.0.0.1:PORT --bytes %llu\n"
	       "    (mmap: with --zerocopy --page-aligned)\n", cli,
	       (unsigned long long)opt.bytes, cli, cli,
	       (unsigned long long)opt.bytes);
}

static void section_recv(void)
{
	struct sys ss[7];
	char h[32];

	zsys(&ss[0], "recv() 256 KiB", "plain");
	zsys(&ss[1], "iperf3", NULL);
	ss[1].kind = RX_IPERF3;
	zsys(&ss[2], "zcnet socket", "socket");
	zsys(&ss[3], "zcnet uring", "uring");
	zsys(&ss[4], "zcnet uring batch-us 0", "uring");
	ss[4].nobatch = true;
	zsys(&ss[5], "zcnet mmap", "mmap");
	ss[5].aligned = true;
	/* The mmap engine's sender, into recv(): over loopback a zero-copy
	 * sender's pages are copied when they reach the receiving socket,
	 * partly in the receiver's time, so compare mmap with this too. */
	zsys(&ss[6], "recv() 256 KiB, zc sender", "plain");
	ss[6].aligned = true;

	printf("1. receive to memory over loopback: %u run%s of %s per system,"
	       " interleaved\n", opt.runs, opt.runs == 1 ? "" : "s",
	       human(opt.bytes, h, sizeof(h)));
	print_recv_commands();
	measure(ss, 7);
	for (int k = 2; k < 6; k++)
		if (sys_ok(&ss[k]))
			printf("  %s features: %s\n", ss[k].name,
			       *ss[k].features ? ss[k].features : "(none)");
	if (sys_ok(&ss[5]))
		printf("  zcnet mmap: %.1f%% of the bytes mapped, the rest"
		       " copied\n", 100 * ss[5].mapped / ss[5].received);
	print_table(ss, 7, &ss[0]);
	write_tsv("recv.tsv", ss, 7, NULL);
	sys_free(ss, 7);
}

/* ------------------------------------------------------------------ */
/* Curves: streams, pool size, piece size                              */
/* ------------------------------------------------------------------ */

/*
 * Aggregate throughput with N concurrent streams, as many connections
 * from one sender process; the same total bytes at every point.
 */
static void section_scale(void)
{
	int n = 2 * opt.nstreams;
	struct sys *ss = calloc(n, sizeof(*ss));

	if (!ss)
		die("out of memory");
	printf("\nscale: %s in total over N concurrent streams (zcnet send"
	       " --connections N;\n  recv --connections N), %u runs\n",
	       human(opt.bytes, (char[32]){ 0 }, 32), opt.runs);
	for (unsigned i = 0; i < opt.nstreams; i++) {
		unsigned c = opt.streams[i];
		uint64_t per = opt.bytes / c;

		per = per < (64 << 10) ? (64 << 10) : per;
		zsys(&ss[2 * i], "recv() 256 KiB", "plain");
		zsys(&ss[2 * i + 1], "zcnet uring", "uring");
		for (int j = 0; j < 2; j++) {
			struct sys *s = &ss[2 * i + j];

			s->conns = s->x = c;
			s->bytes = per;
			snprintf(s->name + strlen(s->name),
				 sizeof(s->name) - strlen(s->name),
				 ", %u stream%s", c, c == 1 ? "" : "s");
		}
	}
	measure(ss, n);
	print_table(ss, n, &ss[0]);
	/* The TSV names the system alone: the streams are its x column. */
	for (int k = 0; k < n; k++)
		*strchr(ss[k].name, ',') = '\0';
	write_tsv("scale.tsv", ss, n, "streams");
	sys_free(ss, n);
	free(ss);
}

/* One zcnet uring system per value of @list, @x setting the knob. */
static void curve(const char *title, const char *file, const char *xname,
		  const unsigned *list, unsigned n, unsigned hold_ms,
		  bool pool)
{
	struct sys *ss = calloc(n, sizeof(*ss));

	if (!ss)
		die("out of memory");
	printf("\n%s, %u runs of %s each\n", title, opt.runs,
	       human(opt.bytes, (char[32]){ 0 }, 32));
	for (unsigned i = 0; i < n; i++) {
		zsys(&ss[i], "zcnet uring", "uring");
		ss[i].x = list[i];
		ss[i].hold_ms = hold_ms;
		if (pool)
			ss[i].pool_mb = list[i];
		else
			ss[i].piece_kb = list[i];
		snprintf(ss[i].name, sizeof(ss[i].name), "zcnet uring, %s %u",
			 xname, list[i]);
	}
	measure(ss, n);
	print_table(ss, n, NULL);
	for (unsigned i = 0; i < n; i++)
		*strchr(ss[i].name, ',') = '\0';
	write_tsv(file, ss, n, xname);
	sys_free(ss, n);
	free(ss);
}

/*
 * Backpressure: an application that keeps every piece HOLD_MS before
 * releasing it, against pools of several sizes. A small pool runs dry
 * (a stall: the engine stops reading until pieces come back, and the
 * sender is held up by TCP's window) and throughput falls.
 */
static void section_pool(void)
{
	curve("pool: zcnet recv --engine uring --hold-ms " HOLD_MS
	      " --pool-mb N (one stream; stalls = times the pool ran dry)",
	      "pool.tsv", "pool_mb", opt.pools, opt.npools, atoi(HOLD_MS),
	      true);
}

static void section_piece(void)
{
	curve("piece: zcnet recv --engine uring --piece-kb N (one stream,"
	      " 16 MiB pool)", "piece.tsv", "piece_kb", opt.pieces,
	      opt.npieces, 0, false);
}

/*
 * Where zero-copy send pays: the sender's CPU per GB against the size of
 * each send call, copying (send()) and with MSG_ZEROCOPY for every call
 * (--zerocopy-min 1), into a uring receiver. Over loopback the kernel
 * copies zero-copy data anyway when it reaches the receiving socket, so
 * this shows the costs (pinning, completions, that copy) and not the
 * saving a NIC would bring.
 */
static void section_zcsend(void)
{
	unsigned n = opt.nchunks * 2;
	struct sys *ss = calloc(n, sizeof(*ss));

	if (!ss)
		die("out of memory");
	printf("\nzcsend: zcnet send --chunk-kb N [--zerocopy --zerocopy-min 1]"
	       " into zcnet recv --engine uring; CPU is the sender's, %u runs"
	       " of %s each\n", opt.runs, human(opt.bytes, (char[32]){ 0 }, 32));
	for (unsigned i = 0; i < n; i++) {
		bool zc = i % 2;

		zsys(&ss[i], zc ? "zerocopy" : "copy", "uring");
		ss[i].x = ss[i].chunk_kb = opt.chunks[i / 2];
		ss[i].zc_all = zc;
		ss[i].sender_cpu = true;
		snprintf(ss[i].name, sizeof(ss[i].name), "%s, chunk_kb %u",
			 zc ? "send zerocopy" : "send copy", ss[i].x);
	}
	measure(ss, n);
	print_table(ss, n, NULL);
	for (unsigned i = 0; i < n; i++)
		*strchr(ss[i].name, ',') = '\0';
	write_tsv("zcsend.tsv", ss, n, "chunk_kb");
	sys_free(ss, n);
	free(ss);
}

/* ------------------------------------------------------------------ */
/* Section limits: what the machine can do at best                      */
/* ------------------------------------------------------------------ */

static void limit_runs(struct sys *s, int (*fn)(double *, double *,
						 char *, size_t))
{
	char why[128];

	snprintf(s->status, sizeof(s->status), "ok");
	s->gbs = calloc(opt.runs, sizeof(double));
	s->cpu = calloc(opt.runs, sizeof(double));
	s->stalls = calloc(opt.runs, sizeof(double));
	if (!s->gbs || !s->cpu || !s->stalls)
		die("out of memory");
	for (unsigned i = 0; i < opt.runs; i++) {
		printf("  run %u/%u  %-30s ", i + 1, opt.runs, s->name);
		if (fn(&s->gbs[i], &s->cpu[i], why, sizeof(why))) {
			printf("FAILED: %s\n", why);
			snprintf(s->status, sizeof(s->status), "failed:%s",
				 why);
			return;
		}
		printf("%7.3f GB/s  %6.3f CPU s/GB\n", s->gbs[i], s->cpu[i]);
		s->n++;
	}
}

static int memcpy_fn(double *gbs, double *cpu, char *why, size_t n)
{
	return limit_memcpy(MEMCPY_BYTES, gbs, cpu, why, n);
}

static int odirect_fn(double *gbs, double *cpu, char *why, size_t n)
{
	return limit_odirect(opt.dir, opt.bytes, gbs, cpu, why, n);
}

static void section_limits(void)
{
	struct sys ss[2];

	memset(ss, 0, sizeof(ss));
	snprintf(ss[0].name, sizeof(ss[0].name), "memcpy, 1 core");
	snprintf(ss[1].name, sizeof(ss[1].name), "O_DIRECT write, %s",
		 opt.dir);
	printf("\nlimits: memcpy() of %d MiB buffers on one core, %d GiB a"
	       " run; O_DIRECT\n  writes of 1 MiB to a new file in %s, %s a"
	       " run, then fdatasync(); %u runs\n", MEMCPY_BUF >> 20,
	       (int)(MEMCPY_BYTES >> 30), opt.dir,
	       human(opt.bytes, (char[32]){ 0 }, 32), opt.runs);
	limit_runs(&ss[0], memcpy_fn);
	limit_runs(&ss[1], odirect_fn);
	print_table(ss, 2, NULL);
	write_tsv("limits.tsv", ss, 2, NULL);
	sys_free(ss, 2);
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

static void memory_row(FILE *f, const char *server, const struct mem *m)
{
	fprintf(f, "%u\t%s\t%ld\t%ld\t%.0f\n", opt.conns, server, m->before,
		m->after, m->per_conn);
}

/* Appended: one run per --conns value makes the curve. */
static void write_memory_tsv(const struct mem *z, const struct mem *e)
{
	FILE *f = tsv_open("memory.tsv", "a");

	if (!f)
		return;
	if (ftell(f) == 0)
		fprintf(f, "conns\tserver\trss_setup_kb\trss_conns_kb"
			"\tbytes_per_conn\n");
	memory_row(f, "zcnet", z);
	memory_row(f, "epoll 64 KiB", e);
	tsv_close(f);
}

static void section_memory(void)
{
	int *fds = calloc(opt.conns, sizeof(int));
	struct mem z, e;
	char why[256];

	if (!fds)
		die("out of memory");
	printf("\nmemory per idle connection: %u connections on"
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
	write_memory_tsv(&z, &e);
}

/* ------------------------------------------------------------------ */
/* Section latency: what gathering completions costs request/response   */
/* ------------------------------------------------------------------ */

#define LAT_REPLY 16		/* bytes of each answer */
#define LAT_WARMUP 50		/* exchanges before timing starts */
#define MAX_RUNS 64		/* latency: runs kept */

static size_t lat_req;		/* the servers' request size */
static bool lat_nobatch;	/* the zcnet server: batch_usec 0 */

/* zcnet echo server: answers every lat_req bytes with LAT_REPLY bytes. */
static void lat_zc_server(int up, int down)
{
	static const char reply[LAT_REPLY] = "ok";
	uint64_t off = 0, next = lat_req;
	struct zc_event ev[64];
	struct zc_config cfg;
	bool ended = false;
	zc_handle lh;
	zc_ctx *ctx;
	int err;

	zc_config_init(&cfg);
	cfg.engine = ZC_ENGINE_URING;
	if (lat_nobatch)
		cfg.batch_usec = 0;
	err = zc_ctx_create(&cfg, &ctx);
	if (!err)
		err = zc_listen(ctx, "127.0.0.1:0", 0, &lh);
	if (err)
		server_fail(up, "zcnet: %s", zc_strerror(err));
	dprintf(up, "ready %d\n", zc_local_port(ctx, lh));
	while (!ended) {
		int n = zc_wait(ctx, ev, 64, 1000);

		if (n < 0 && n != -EINTR)
			server_fail(up, "zc_wait: %s", zc_strerror(n));
		for (int i = 0; i < n; i++) {
			if (ev[i].type == ZC_EV_EOF || ev[i].type == ZC_EV_ERROR) {
				zc_close(ctx, ev[i].conn);
				ended = true;
			}
			if (ev[i].type != ZC_EV_DATA)
				continue;
			for (unsigned k = 0; k < ev[i].npieces; k++) {
				off += ev[i].pieces[k].len;
				zc_release(ctx, &ev[i].pieces[k]);
			}
			for (; off >= next; next += lat_req)
				if (zc_send(ctx, ev[i].conn, reply, LAT_REPLY) != LAT_REPLY)
					server_fail(up, "zc_send of a reply was short");
		}
	}
	dprintf(up, "done\n");
	server_hold(down);
	zc_ctx_destroy(ctx);
	_exit(0);
}

/* Plain blocking echo server: read() lat_req bytes, write() a reply. */
static void lat_plain_server(int up, int down)
{
	static const char reply[LAT_REPLY] = "ok";
	int l = tcp_listener(up), fd, one = 1;
	char *buf = malloc(256 << 10);
	struct pollfd p = { .fd = l, .events = POLLIN };
	uint64_t off = 0, next = lat_req;
	ssize_t n;

	if (!buf)
		server_fail(up, "out of memory");
	dprintf(up, "ready %d\n", local_port(l));
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		server_fail(up, "accept: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while ((n = read(fd, buf, 256 << 10)) > 0)
		for (off += (uint64_t)n; off >= next; next += lat_req)
			if (write(fd, reply, LAT_REPLY) != LAT_REPLY)
				server_fail(up, "write: %s", strerror(errno));
	close(fd);
	dprintf(up, "done\n");
	server_hold(down);
	_exit(0);
}

static int lat_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* @n timed exchanges of lat_req bytes against @port: the median and
 * 99th percentile round trip in microseconds. 0 or -1 (printed). */
static int lat_client(int port, unsigned n, double *p50, double *p99)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	double *rtt = calloc(n, sizeof(*rtt));
	char *buf = calloc(1, lat_req);
	int err = -1;

	if (fd < 0 || !rtt || !buf ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		printf("client: %s\n", strerror(errno));
		goto out;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (unsigned i = 0; i < n + LAT_WARMUP; i++) {
		double t0 = now();
		size_t done = 0;
		char r[LAT_REPLY];

		for (ssize_t w; done < lat_req; done += (size_t)w)
			if ((w = write(fd, buf + done, lat_req - done)) <= 0)
				goto io;
		for (done = 0; done < LAT_REPLY;) {
			ssize_t got = read(fd, r, LAT_REPLY - done);

			if (got <= 0)
				goto io;
			done += (size_t)got;
		}
		if (i >= LAT_WARMUP)
			rtt[i - LAT_WARMUP] = (now() - t0) * 1e6;
	}
	qsort(rtt, n, sizeof(*rtt), lat_cmp);
	*p50 = rtt[n / 2];
	*p99 = rtt[n * 99 / 100];
	err = 0;
	goto out;
io:
	printf("client: exchange: %s\n", errno ? strerror(errno) : "peer closed");
out:
	if (fd >= 0)
		close(fd);
	free(rtt);
	free(buf);
	return err;
}

struct lat_sys {
	const char *name;
	size_t req;
	bool zcnet, nobatch;
	unsigned n;
	double p50[MAX_RUNS], p99[MAX_RUNS];
	char status[96];
};

static void lat_run(struct lat_sys *ls, unsigned exchanges)
{
	struct server sv;
	const char *line;
	double p50, p99;
	int port;

	lat_req = ls->req;
	lat_nobatch = ls->nobatch;
	server_start(&sv, ls->name, ls->zcnet ? lat_zc_server : lat_plain_server);
	line = server_line(&sv, now() + LISTEN_TIMEOUT_S);
	if (!line || sscanf(line, "ready %d", &port) != 1) {
		snprintf(ls->status, sizeof(ls->status), "failed:server: %s",
			 line ? line : "no ready line");
	} else if (lat_client(port, exchanges, &p50, &p99)) {
		snprintf(ls->status, sizeof(ls->status), "failed:client");
	} else if (ls->n < MAX_RUNS) {
		ls->p50[ls->n] = p50;
		ls->p99[ls->n++] = p99;
		printf("  %-34s %6zu B  p50 %8.1f us  p99 %8.1f us\n", ls->name,
		       ls->req, p50, p99);
	}
	server_stop(&sv);
}

/*
 * Request/response round trips over one loopback connection: a client
 * writes a request of 64 B or 100 KB and waits for a 16-byte answer.
 * The uring engine with its default (gathering completions while data
 * comes in bulk) against --batch-us 0 and a blocking read()/write()
 * server: gathering must not delay a conversation.
 */
static void section_latency(void)
{
	static const size_t reqs[] = { 64, 100000 };
	unsigned exchanges = opt.bytes >= (1ull << 30) ? 5000 : 1000;
	struct lat_sys ls[6];
	FILE *f;

	memset(ls, 0, sizeof(ls));
	for (int i = 0; i < 6; i++) {
		ls[i].req = reqs[i / 3];
		ls[i].zcnet = i % 3 != 0;
		ls[i].nobatch = i % 3 == 2;
		ls[i].name = i % 3 == 0 ? "read()/write()" :
			     i % 3 == 1 ? "zcnet uring" : "zcnet uring batch-us 0";
		snprintf(ls[i].status, sizeof(ls[i].status), "ok");
	}
	printf("\nlatency: %u timed round trips per run (after %d), %u runs,"
	       " requests of 64 B and 100 KB, %d-byte answers\n", exchanges,
	       LAT_WARMUP, opt.runs, LAT_REPLY);
	for (unsigned r = 0; r < opt.runs && r < MAX_RUNS; r++)
		for (int i = 0; i < 6; i++)
			if (!strcmp(ls[i].status, "ok"))
				lat_run(&ls[i], exchanges);
	f = tsv_open("latency.tsv", "w");
	if (f)
		fprintf(f, "req_bytes\tsystem\tp50_us_med\tp50_us_min\tp50_us_max"
			"\tp99_us_med\tp99_us_min\tp99_us_max\truns\tstatus\n");
	for (int i = 0; i < 6; i++) {
		struct stat3 a = stats(ls[i].p50, ls[i].n), b = stats(ls[i].p99, ls[i].n);
		bool ok = !strcmp(ls[i].status, "ok") && ls[i].n;

		printf("  %-24s %6zu B: p50 %s%.1f us (%.1f-%.1f), p99 %.1f us\n",
		       ls[i].name, ls[i].req, ok ? "" : "FAILED ", a.med, a.min,
		       a.max, b.med);
		if (!f)
			continue;
		if (ok)
			fprintf(f, "%zu\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%u\tok\n",
				ls[i].req, ls[i].name, a.med, a.min, a.max, b.med,
				b.min, b.max, ls[i].n);
		else
			fprintf(f, "%zu\t%s\t-\t-\t-\t-\t-\t-\t0\t%s\n", ls[i].req,
				ls[i].name, ls[i].n ? ls[i].status : "failed:no run");
	}
	if (f)
		tsv_close(f);
}

static bool section_on(const char *name)
{
	return !strcmp(opt.section, name) ||
	       (!strcmp(opt.section, "all") &&
		(!strcmp(name, "recv") || !strcmp(name, "memory")));
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	catch_signals();
	find_cli();
	if (section_on("memory"))
		raise_nofile();		/* now: better than after recv */
	print_header();
	if (section_on("recv"))
		section_recv();
	if (section_on("memory"))
		section_memory();
	if (section_on("scale"))
		section_scale();
	if (section_on("pool"))
		section_pool();
	if (section_on("piece"))
		section_piece();
	if (section_on("zcsend"))
		section_zcsend();
	if (section_on("latency"))
		section_latency();
	if (section_on("limits"))
		section_limits();
	return 0;
}
