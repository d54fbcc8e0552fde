/*
 * limits.c - single-core memcpy() bandwidth and O_DIRECT write
 * bandwidth: the two ceilings a receive path runs into, one copy of
 * every byte and the disk.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* O_DIRECT, mkostemp() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "limits.h"

#define DIRECT_BLOCK (1 << 20)
#define DIRECT_ALIGN 4096

struct clock2 {
	double wall, cpu;
};

static double tv_s(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

/* Wall time and this thread's user+sys: both are to be timed. */
static struct clock2 clock2_now(void)
{
	struct timespec ts;
	struct rusage ru;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	getrusage(RUSAGE_THREAD, &ru);
	return (struct clock2){ ts.tv_sec + ts.tv_nsec / 1e9,
				tv_s(ru.ru_utime) + tv_s(ru.ru_stime) };
}

static void rates(struct clock2 t0, uint64_t bytes, double *gbs,
		  double *cpu)
{
	struct clock2 t1 = clock2_now();

	*gbs = bytes / (t1.wall - t0.wall) / 1e9;
	*cpu = (t1.cpu - t0.cpu) / (bytes / 1e9);
}

int limit_memcpy(uint64_t bytes, double *gbs, double *cpu, char *why,
		 size_t n)
{
	char *a = malloc(MEMCPY_BUF), *b = malloc(MEMCPY_BUF);
	volatile char sink;
	struct clock2 t0;
	uint64_t done;

	if (!a || !b) {
		free(a);
		free(b);
		snprintf(why, n, "out of memory");
		return -1;
	}
	/* Fault every page in first: page faults are not the copy's cost. */
	memset(a, 0x5a, MEMCPY_BUF);
	memset(b, 0xa5, MEMCPY_BUF);
	t0 = clock2_now();
	for (done = 0; done < bytes; done += MEMCPY_BUF) {
		if (done / MEMCPY_BUF % 2)
			memcpy(a, b, MEMCPY_BUF);
		else
			memcpy(b, a, MEMCPY_BUF);
	}
	rates(t0, done, gbs, cpu);
	/* Read the copies, so that none can be left out. */
	sink = a[MEMCPY_BUF / 2] + b[MEMCPY_BUF / 3];
	(void)sink;
	free(a);
	free(b);
	return 0;
}

/* A new O_DIRECT file in @dir, unlinked at once so nothing is left. */
static int direct_file(const char *dir, uint64_t bytes, char *why, size_t n)
{
	char path[4096];
	struct statvfs sv;
	int fd;

	if (statvfs(dir, &sv)) {
		snprintf(why, n, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if ((double)sv.f_bavail * sv.f_frsize < 2.0 * bytes) {
		snprintf(why, n, "%s: less than twice the bytes free", dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/zcnet-bench-direct.XXXXXX", dir);
	fd = mkostemp(path, O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, n, "O_DIRECT file in %s: %s", dir,
			 strerror(errno));
		return -1;
	}
	unlink(path);
	return fd;
}

/* Bytes a compressing or deduplicating disk cannot shortcut. */
static void fill_random(unsigned char *p, size_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

static int write_all(int fd, const unsigned char *buf, uint64_t bytes,
		     char *why, size_t n)
{
	uint64_t off = 0;

	while (off < bytes) {
		ssize_t w = pwrite(fd, buf, DIRECT_BLOCK, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w != DIRECT_BLOCK) {
			snprintf(why, n, "O_DIRECT write: %s",
				 w < 0 ? strerror(errno) : "short write");
			return -1;
		}
		off += DIRECT_BLOCK;
	}
	if (fdatasync(fd)) {
		snprintf(why, n, "fdatasync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int limit_odirect(const char *dir, uint64_t bytes, double *gbs,
		  double *cpu, char *why, size_t n)
{
	unsigned char *buf = aligned_alloc(DIRECT_ALIGN, DIRECT_BLOCK);
	struct clock2 t0;
	int fd, err;

	bytes = (bytes + DIRECT_BLOCK - 1) / DIRECT_BLOCK * DIRECT_BLOCK;
	if (!buf) {
		snprintf(why, n, "out of memory");
		return -1;
	}
	fill_random(buf, DIRECT_BLOCK);
	fd = direct_file(dir, bytes, why, n);
	if (fd < 0) {
		free(buf);
		return -1;
	}
	t0 = clock2_now();
	err = write_all(fd, buf, bytes, why, n);
	if (!err)
		rates(t0, bytes, gbs, cpu);
	close(fd);
	free(buf);
	return err;
}
