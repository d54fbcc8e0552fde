/*
 * fuzz_http.c - libFuzzer target for the request-head parser of
 * `zcnet ingest` (tools/http.c).
 *
 * Each input is parsed twice: at once, and fed in growing prefixes whose
 * lengths come from a generator seeded by the input, the way a trickling
 * client would send it. Both must give the same answer; a complete head
 * must lie within the input, its target too, and a name taken from the
 * target must be one the server may create. The sanitizers catch the rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void check_name(const char *buf, const struct http_req *r)
{
	char name[HTTP_NAME_MAX + 1];

	if (http_target_name(buf + r->target_off, r->target_len, name))
		return;
	if (!name[0] || name[0] == '.' || strlen(name) != r->target_len - 1)
		abort();
	for (const char *p = name; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789.-_", *p))
			abort();
}

/* Feed prefixes of @size growing by random steps; the final answer. */
static int parse_trickled(const char *buf, size_t size, struct http_req *r)
{
	uint64_t seed = size;
	size_t len = 0;
	int n = 0;

	for (size_t i = 0; i < size && i < 64; i++)
		seed = seed * 131 + (unsigned char)buf[i];
	http_req_init(r);
	while (len < size) {
		len += 1 + mix(&seed) % 97;
		if (len > size)
			len = size;
		n = http_parse(r, buf, len);
		if (n)
			break;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_req whole, r;
	int n, m;

	http_req_init(&whole);
	n = http_parse(&whole, buf, size);
	m = parse_trickled(buf, size, &r);
	if (n != m)
		abort();
	if (n < 0 && !strcmp(http_reason(-n), "Unknown"))
		abort();
	if (n <= 0)
		return 0;
	if ((size_t)n > size || (size_t)n > HTTP_HEAD_MAX ||
	    whole.head_len != (size_t)n ||
	    whole.target_off + whole.target_len > (size_t)n ||
	    whole.target_off != r.target_off ||
	    whole.content_length != r.content_length ||
	    whole.keep_alive != r.keep_alive)
		abort();
	if (whole.method != HTTP_PUT && whole.content_length)
		abort();
	check_name(buf, &whole);
	return 0;
}
