/*
 * cli_util.c - option parsing, clocks and progress output for the zcnet
 * command-line tool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "zcnet.h"
#include "cli.h"

int opt_value(const char *cmd, int argc, char **argv, int *i,
	      const char *name, const char **val)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);

	if (strncmp(arg, name, n) != 0)
		return 0;
	if (arg[n] == '=') {
		*val = arg + n + 1;
		return 1;
	}
	if (arg[n] != '\0')
		return 0; /* a longer option that starts with @name */
	if (*i + 1 >= argc) {
		fprintf(stderr, "zcnet %s: option '%s' needs a value; see 'zcnet %s --help'\n",
			cmd, name, cmd);
		return -1;
	}
	*i += 1;
	*val = argv[*i];
	return 1;
}

int opt_unknown(const char *cmd, const char *arg)
{
	if (arg[0] == '-')
		fprintf(stderr, "zcnet %s: unknown option '%s'; see 'zcnet %s --help'\n",
			cmd, arg, cmd);
	else
		fprintf(stderr, "zcnet %s: unexpected argument '%s'; see 'zcnet %s --help'\n",
			cmd, arg, cmd);
	return EXIT_USAGE;
}

/*
 * strtoull() alone would accept " +12", "-1" (wrapping it to a huge
 * value) and "" (as 0), so the digits are checked first.
 */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
	unsigned long long v;
	char *e;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	*end = e;
	return 0;
}

int parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
	const char *end;
	unsigned shift = 0;
	uint64_t v;
	int err;

	err = parse_digits(s, &v, &end);
	if (err == -ERANGE)
		goto too_big;
	if (err)
		goto bad;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		goto bad;
	}
	if (shift && end[1] != '\0')
		goto bad;
	if (v > (UINT64_MAX >> shift))
		goto too_big;
	*out = v << shift;
	return 0;
bad:
	fprintf(stderr, "zcnet %s: %s '%s': expected a byte count such as 4096, 64K, 16M or 2G\n",
		cmd, opt, s);
	return -1;
too_big:
	fprintf(stderr, "zcnet %s: %s '%s': too large\n", cmd, opt, s);
	return -1;
}

int parse_uint(const char *cmd, const char *opt, const char *s,
	       uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;
	int err;

	err = parse_digits(s, &v, &end);
	if (err || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "zcnet %s: %s '%s': expected a whole number from %llu to %llu\n",
			cmd, opt, s, (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int parse_engine(const char *cmd, const char *s, int allow_plain)
{
	if (!strcmp(s, "auto"))
		return ZC_ENGINE_AUTO;
	if (!strcmp(s, "uring"))
		return ZC_ENGINE_URING;
	if (!strcmp(s, "socket"))
		return ZC_ENGINE_SOCKET;
	if (!strcmp(s, "mmap"))
		return ZC_ENGINE_MMAP;
	if (allow_plain && !strcmp(s, "plain"))
		return ENGINE_PLAIN;
	fprintf(stderr, "zcnet %s: --engine '%s': expected auto, uring, socket%s\n",
		cmd, s, allow_plain ? ", mmap or plain" : " or mmap");
	return -1;
}

int split_hostport(const char *addr, char *host, size_t hostlen, long *port)
{
	const char *colon = strrchr(addr, ':');
	size_t n;
	uint64_t v;
	const char *end;

	if (!colon || colon == addr)
		return -EINVAL;
	/* "::1:80" is ambiguous; IPv6 hosts must be bracketed. */
	if (addr[0] != '[' && memchr(addr, ':', colon - addr))
		return -EINVAL;
	if (addr[0] == '[' && colon[-1] != ']')
		return -EINVAL;
	n = colon - addr;
	if (n >= hostlen)
		return -EINVAL;
	if (parse_digits(colon + 1, &v, &end) || *end != '\0' || v > 65535)
		return -EINVAL;
	memcpy(host, addr, n);
	host[n] = '\0';
	*port = (long)v;
	return 0;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

uint64_t cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

long peak_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss; /* kilobytes on Linux */
}

void progress_init(struct progress *p)
{
	p->t_last = now_ns();
	p->bytes_last = 0;
}

int progress_due(struct progress *p, uint64_t bytes, double *gbps)
{
	uint64_t t = now_ns();

	if (t - p->t_last < 1000000000u)
		return 0;
	*gbps = (double)(bytes - p->bytes_last) / (double)(t - p->t_last);
	p->t_last = t;
	p->bytes_last = bytes;
	return 1;
}

const char *fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.2f %s", v, unit[u]);
	return buf;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t r = write(fd, p, len);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		len -= r;
	}
	return 0;
}
