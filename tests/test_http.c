/*
 * test_http.c - the request-head parser of `zcnet ingest` (tools/http.c):
 * complete and incomplete heads, fed at once and split at every byte;
 * methods, versions, Content-Length, Host, Connection, Expect, transfer
 * codings, size limits, line endings and folding; file names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

/* Parse @len bytes at once. */
static int parse_n(struct http_req *r, const char *s, size_t len)
{
	http_req_init(r);
	return http_parse(r, s, len);
}

static int parse(struct http_req *r, const char *s)
{
	return parse_n(r, s, strlen(s));
}

/* The status a head is refused with (0: accepted). */
static int status_of(const char *s)
{
	struct http_req r;
	int n = parse(&r, s);

	assert_int_not_equal(n, 0); /* every head below is complete */
	return n < 0 ? -n : 0;
}

/*
 * Feed @s growing one byte at a time, as a trickling client would, and
 * check that the parser says "more" until the same answer as the one-shot
 * parse, at the same byte, and then the same results.
 */
static void check_split_every_byte(const char *s, size_t len)
{
	struct http_req whole, r;
	int want = parse_n(&whole, s, len), n = 0;
	size_t i;

	http_req_init(&r);
	for (i = 1; i <= len; i++) {
		n = http_parse(&r, s, i);
		if (n)
			break;
	}
	assert_int_equal(n, want);
	if (want > 0) {
		assert_int_equal(i, (size_t)want); /* no later than needed */
		assert_int_equal(r.method, whole.method);
		assert_int_equal(r.target_off, whole.target_off);
		assert_int_equal(r.target_len, whole.target_len);
		assert_int_equal(r.content_length, whole.content_length);
		assert_int_equal(r.keep_alive, whole.keep_alive);
		assert_int_equal(r.expect_continue, whole.expect_continue);
	}
	/* And in two parts, at every split point. */
	for (i = 1; i < len; i++) {
		http_req_init(&r);
		n = http_parse(&r, s, i);
		if (!n)
			n = http_parse(&r, s, len);
		assert_int_equal(n, want);
	}
}

static const char put_head[] =
	"PUT /data.bin HTTP/1.1\r\n"
	"Host: 127.0.0.1:8080\r\n"
	"User-Agent: curl/7.88.1\r\n"
	"Accept: */*\r\n"
	"Content-Length: 1048576\r\n"
	"Expect: 100-continue\r\n"
	"\r\n";

static void test_put_complete(void **state)
{
	struct http_req r;
	char buf[512];
	int n;

	n = parse(&r, put_head);
	assert_int_equal(n, (int)strlen(put_head));
	assert_int_equal(r.method, HTTP_PUT);
	assert_int_equal(r.minor, 1);
	assert_int_equal(r.target_len, strlen("/data.bin"));
	assert_memory_equal(put_head + r.target_off, "/data.bin", r.target_len);
	assert_true(r.has_length);
	assert_int_equal(r.content_length, 1048576);
	assert_true(r.keep_alive);
	assert_true(r.expect_continue);
	assert_int_equal(r.head_len, (size_t)n);

	/* Body bytes after the head are not the parser's business. */
	snprintf(buf, sizeof(buf), "%sBODYBYTES", put_head);
	assert_int_equal(parse(&r, buf), n);
}

static void test_get_complete(void **state)
{
	struct http_req r;
	const char *s = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";

	assert_int_equal(parse(&r, s), (int)strlen(s));
	assert_int_equal(r.method, HTTP_GET);
	assert_false(r.has_length);
	assert_int_equal(r.content_length, 0);
	assert_true(r.keep_alive);
	assert_int_equal(status_of("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	assert_int_equal(status_of("GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), 0);
}

static void test_incomplete(void **state)
{
	static const char *const partial[] = {
		"",
		"P",
		"PUT /a HTTP/1.1",
		"PUT /a HTTP/1.1\r",
		"PUT /a HTTP/1.1\r\n",
		"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n",
		"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r",
		"\r\n\r\n",
		"\r\n",
	};
	struct http_req r;

	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
		assert_int_equal(parse(&r, partial[i]), 0);
}

static void test_split_every_byte(void **state)
{
	static const char *const heads[] = {
		put_head,
		"GET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\n",
		"\r\n\r\nPUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"PUT /a HTTP/1.0\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello",
		/* refused ones: the same error, at the same byte */
		"PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
		"PUT /a HTTP/1.1\r\nHost: h\r\n Folded: x\r\nContent-Length: 1\r\n\r\n",
		"PUT /a HTTP/1.1\nHost: h\r\n\r\n",
		"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a HTTP/2.0\r\n\r\n",
		"PUT /a HTTP/1.1\r\nHost: h\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
		check_split_every_byte(heads[i], strlen(heads[i]));
	/* A NUL in the middle. */
	check_split_every_byte("PUT /a HTTP/1.1\r\nHo\0st: h\r\n\r\n", 29);
}

static void test_methods(void **state)
{
	assert_int_equal(status_of("POST /a HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
	assert_int_equal(status_of("DELETE /a HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
	/* Methods are case-sensitive (RFC 9110 9.1). */
	assert_int_equal(status_of("put /a HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
	assert_int_equal(status_of("G@T /a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of(" /a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET  /a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET\t/a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a\r\n\r\n"), 400); /* HTTP/0.9 */
	assert_int_equal(status_of("GET\r\n\r\n"), 400);
	/* A bad request line is refused as soon as it is complete. */
	{
		struct http_req r;

		assert_int_equal(parse(&r, "\x16\x03\x01\x02\x05\r\n"), -400);
		assert_int_equal(parse(&r, "PATCH /a HTTP/1.1\r\n"), -501);
	}
}

static void test_versions(void **state)
{
	struct http_req r;

	assert_int_equal(status_of("GET /a HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
	assert_int_equal(status_of("GET /a HTTP/0.9\r\nHost: h\r\n\r\n"), 505);
	assert_int_equal(status_of("GET /a HTTP/1.10\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a http/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.x\r\nHost: h\r\n\r\n"), 400);

	/* 1.0: no Host needed, close unless asked otherwise. */
	assert_true(parse(&r, "GET /a HTTP/1.0\r\n\r\n") > 0);
	assert_int_equal(r.minor, 0);
	assert_false(r.keep_alive);
	assert_true(parse(&r, "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") > 0);
	assert_true(r.keep_alive);
	/* 1.0 has no 100 Continue to wait for. */
	assert_true(parse(&r, "PUT /a HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n") > 0);
	assert_false(r.expect_continue);

	/* 1.1: keep-alive unless "close", among other tokens. */
	assert_true(parse(&r, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: TE, close\r\n\r\n") > 0);
	assert_false(r.keep_alive);
	assert_true(parse(&r, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n") > 0);
	assert_true(r.keep_alive);
	/* A later minor is read as 1.1. */
	assert_true(parse(&r, "GET /a HTTP/1.2\r\nHost: h\r\n\r\n") > 0);
	assert_int_equal(r.minor, 1);
}

static void test_content_length(void **state)
{
	struct http_req r;

	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\n\r\n"), 411);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
				   "Content-Length: 5\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1a\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length : 1\r\n\r\n"), 400);

	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\ncontent-LENGTH:\t 007 \t\r\n\r\n") > 0);
	assert_int_equal(r.content_length, 7);
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") > 0);
	assert_true(r.has_length);
	assert_int_equal(r.content_length, 0);
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\n"
			  "Content-Length: 18446744073709551615\r\n\r\n") > 0);
	assert_int_equal(r.content_length, UINT64_MAX);
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\n"
			  "Content-Length: 18446744073709551614\r\n\r\n") > 0);
	assert_int_equal(r.content_length, UINT64_MAX - 1);
	/* Past 2^64: saturates, for the caller to refuse as too large. */
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\n"
			  "Content-Length: 99999999999999999999999999\r\n\r\n") > 0);
	assert_int_equal(r.content_length, UINT64_MAX);

	/* No bodies on GET and HEAD. */
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"), 400);
	assert_int_equal(status_of("HEAD /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"), 400);
}

static void test_transfer_encoding(void **state)
{
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n"), 411);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 411);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n"), 411);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
				   "Content-Length: 5\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
}

static void test_host_and_expect(void **state)
{
	struct http_req r;

	assert_int_equal(status_of("GET /a HTTP/1.1\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
				   "Expect: 200-ok\r\n\r\n"), 417);
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
			  "Expect: 100-Continue\r\n\r\n") > 0);
	assert_true(r.expect_continue);
	assert_true(parse(&r, "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect:\r\n\r\n") > 0);
	assert_false(r.expect_continue);
}

static void test_line_syntax(void **state)
{
	/* Obsolete line folding. */
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 5\r\n\r\n"), 400);
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\t2\r\nContent-Length: 5\r\n\r\n"), 400);
	/* Whitespace before the first field. */
	assert_int_equal(status_of("PUT /a HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
	/* Bare LF, bare CR, NUL, control bytes. */
	assert_int_equal(status_of("GET /a HTTP/1.1\nHost: h\n\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\r\n\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nX: \x01\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nX: a\x7f\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\n: empty\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nNo colon\r\nHost: h\r\n\r\n"), 400);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nX(y): 1\r\nHost: h\r\n\r\n"), 400);
	{
		struct http_req r;
		const char nul[] = "GET /a HTTP/1.1\r\nHost: h\0\r\n\r\n";

		assert_int_equal(parse_n(&r, nul, sizeof(nul) - 1), -400);
	}
	/* Leading empty lines are skipped; obs-text in a value is fine. */
	assert_int_equal(status_of("\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n"), 0);
	assert_int_equal(status_of("GET /a HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n"), 0);
}

static void test_limits(void **state)
{
	struct http_req r;
	size_t cap = HTTP_HEAD_MAX + 4096, n;
	char *buf = malloc(cap);
	int i;

	assert_non_null(buf);

	/* One huge field: refused once the limit is reached. */
	n = (size_t)snprintf(buf, cap, "GET /a HTTP/1.1\r\nHost: h\r\nX-Big: ");
	memset(buf + n, 'x', cap - n);
	assert_int_equal(parse_n(&r, buf, HTTP_HEAD_MAX - 1), 0);
	assert_int_equal(parse_n(&r, buf, HTTP_HEAD_MAX), -431);
	assert_int_equal(parse_n(&r, buf, cap), -431);

	/* A head of exactly HTTP_HEAD_MAX bytes passes. */
	memcpy(buf + HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
	assert_int_equal(parse_n(&r, buf, cap), HTTP_HEAD_MAX);
	/* One byte more does not. */
	memset(buf + n, 'x', cap - n);
	memcpy(buf + HTTP_HEAD_MAX - 3, "\r\n\r\n", 4);
	assert_int_equal(parse_n(&r, buf, cap), -431);

	/* Field count: HTTP_FIELDS_MAX pass, one more does not. */
	n = (size_t)snprintf(buf, cap, "GET /a HTTP/1.1\r\nHost: h\r\n");
	for (i = 1; i < HTTP_FIELDS_MAX; i++)
		n += (size_t)snprintf(buf + n, cap - n, "X: %d\r\n", i);
	memcpy(buf + n, "\r\n", 2);
	assert_int_equal(parse_n(&r, buf, n + 2), (int)n + 2);
	n += (size_t)snprintf(buf + n, cap - n, "X: more\r\n");
	memcpy(buf + n, "\r\n", 2);
	assert_int_equal(parse_n(&r, buf, n + 2), -431);
	free(buf);
}

static void test_names(void **state)
{
	static const char *const good[] = {
		"/a", "/data.bin", "/A-Z_0.9", "/a..b", "/x.", "/-", "/_hidden",
	};
	static const char *const bad[] = {
		"", "/", "a", "//a", "/a/b", "/..", "/.", "/.hidden", "/./a",
		"/../etc/passwd", "/a%2fb", "/%2e%2e", "/a%00", "/a?b=1",
		"/a b", "/a\\b", "/a:b", "/a*", "/a#b", "/~a", "http://h/a",
		"/\xc3\xa9",
	};
	char name[HTTP_NAME_MAX + 1], longest[HTTP_NAME_MAX + 3];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(http_target_name(good[i], strlen(good[i]), name), 0);
		assert_string_equal(name, good[i] + 1);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(http_target_name(bad[i], strlen(bad[i]), name), -400);
	/* A NUL inside the target. */
	assert_int_equal(http_target_name("/a\0b", 4, name), -400);

	longest[0] = '/';
	memset(longest + 1, 'n', HTTP_NAME_MAX + 1);
	assert_int_equal(http_target_name(longest, HTTP_NAME_MAX + 1, name), 0);
	assert_int_equal(strlen(name), HTTP_NAME_MAX);
	assert_int_equal(http_target_name(longest, HTTP_NAME_MAX + 2, name), -400);
}

static void test_reasons(void **state)
{
	assert_string_equal(http_reason(201), "Created");
	assert_string_equal(http_reason(411), "Length Required");
	assert_string_equal(http_reason(507), "Insufficient Storage");
	assert_string_equal(http_reason(299), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_complete),
		cmocka_unit_test(test_get_complete),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_transfer_encoding),
		cmocka_unit_test(test_host_and_expect),
		cmocka_unit_test(test_line_syntax),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
