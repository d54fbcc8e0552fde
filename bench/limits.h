/*
 * limits.h - what this machine can do at best, measured by zcnet-bench
 * so that each receive figure can be read as a fraction of it.
 */
#ifndef ZCNET_BENCH_LIMITS_H
#define ZCNET_BENCH_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define MEMCPY_BUF (64 << 20)		/* far beyond any cache here */
#define MEMCPY_BYTES (2ull << 30)	/* copied per run */

/*
 * Copy @bytes between two MEMCPY_BUF buffers on the calling thread.
 * Sets GB/s and CPU s/GB (the cost of one copy); returns 0, or -1 with
 * the reason in @why.
 */
int limit_memcpy(uint64_t bytes, double *gbs, double *cpu, char *why,
		 size_t n);

/*
 * Write @bytes to a new, already unlinked file in @dir with O_DIRECT in
 * 1 MiB writes, then fdatasync(). As limit_memcpy().
 */
int limit_odirect(const char *dir, uint64_t bytes, double *gbs,
		  double *cpu, char *why, size_t n);

#endif
