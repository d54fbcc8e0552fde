/*
 * pattern.h - the deterministic test stream of `zcnet send --pattern`.
 *
 * The stream is a sequence of 64-bit little-endian words: the word at
 * stream offset 8k is  w(k) = (k + 1) * PAT_MUL ^ seed.  So the byte at
 * offset i is byte (i % 8) of w(i / 8). Every 8-byte-aligned word names
 * its own position, so a lost, duplicated, reordered or shifted range
 * shows up at its first byte. The receiver needs no side channel: the
 * first word gives the seed back (seed = w(0) ^ PAT_MUL).
 *
 * Shared by the CLI, the tests and the benchmarks; header-only.
 */
#ifndef ZCNET_PATTERN_H
#define ZCNET_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PAT_MUL 0x9E3779B97F4A7C15ull

static inline uint64_t pat_word(uint64_t seed, uint64_t k)
{
	return (k + 1) * PAT_MUL ^ seed;
}

static inline uint8_t pat_byte(uint64_t seed, uint64_t off)
{
	return (uint8_t)(pat_word(seed, off / 8) >> (8 * (off % 8)));
}

/* Write the pattern bytes for stream range [off, off + len) into buf. */
static inline void pat_fill(uint64_t seed, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len && (off % 8)) {
		*p++ = pat_byte(seed, off++);
		len--;
	}
	for (; len >= 8; len -= 8, off += 8, p += 8) {
		uint64_t w = pat_word(seed, off / 8);
		memcpy(p, &w, 8); /* little-endian host assumed (x86, arm64) */
	}
	while (len--)
		*p++ = pat_byte(seed, off++);
}

/* Checks one connection's stream, piece by piece, in order. */
struct pat_verifier {
	uint64_t seed;
	uint64_t off;      /* stream offset of the next byte */
	uint8_t head[8];   /* the first word, until it is complete */
	int have_seed;
};

static inline void pat_verifier_init(struct pat_verifier *v)
{
	memset(v, 0, sizeof(*v));
}

/*
 * Check the next @len bytes of the stream. Returns 0 if they match, or -1
 * and sets *@bad to the stream offset of the first wrong byte.
 */
static inline int pat_verify(struct pat_verifier *v, const void *data, size_t len,
			     uint64_t *bad)
{
	const uint8_t *p = data;

	while (!v->have_seed && len) {
		v->head[v->off++] = *p++;
		len--;
		if (v->off == 8) {
			uint64_t w0;
			memcpy(&w0, v->head, 8);
			v->seed = w0 ^ PAT_MUL;
			v->have_seed = 1;
		}
	}
	while (len && (v->off % 8)) {
		if (*p != pat_byte(v->seed, v->off))
			goto bad;
		p++, v->off++, len--;
	}
	for (; len >= 8; len -= 8, p += 8, v->off += 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		if (w != pat_word(v->seed, v->off / 8))
			break; /* the byte loop below names the exact byte */
	}
	for (; len; p++, v->off++, len--)
		if (*p != pat_byte(v->seed, v->off))
			goto bad;
	return 0;
bad:
	*bad = v->off;
	return -1;
}

#endif
