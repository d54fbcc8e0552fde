/*
 * http.h - the HTTP/1.1 request-head parser of `zcnet ingest`.
 *
 * Pure code: no I/O, no allocation, no global state, so that it can be
 * unit-tested and fuzzed on its own. The caller accumulates the bytes of
 * a request head in one buffer and calls http_parse() each time the
 * buffer grows; the parser remembers how far it has looked, so feeding a
 * head one byte at a time costs no more than feeding it at once.
 *
 * The parser is strict on purpose (RFC 9112 allows it): lines end in
 * CRLF, never a bare LF; no obsolete line folding; no whitespace before a
 * field's colon; one Content-Length and one Host at most. Every laxness a
 * server allows is a way for a client and a proxy in front of it to
 * disagree about where a request ends.
 */
#ifndef ZCNET_HTTP_H
#define ZCNET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_HEAD_MAX   16384 /* bytes of a request head, blank line included */
#define HTTP_FIELDS_MAX 100   /* header fields in one head */
#define HTTP_NAME_MAX   255   /* bytes of a file name (NAME_MAX) */

enum http_method {
	HTTP_GET = 1,
	HTTP_HEAD,
	HTTP_PUT,
};

/* A parsed request head. Fill with http_req_init() before the first call. */
struct http_req {
	/* Results, valid once http_parse() returned a head length. */
	enum http_method method;
	int minor;                /* HTTP/1.minor: 0 or 1 */
	size_t target_off;        /* the request target, as offsets into the */
	size_t target_len;        /* buffer (it may move between calls) */
	uint64_t content_length;  /* 0 without one; UINT64_MAX if it overflows */
	bool has_length;          /* a Content-Length field was present */
	bool keep_alive;          /* the connection may carry another request */
	bool expect_continue;     /* "Expect: 100-continue" */
	size_t head_len;          /* bytes of the head, blank line included */

	/* The search for the end of the head: where to resume it. */
	size_t scan;              /* next byte to look at */
	size_t line_start;        /* start of the line being scanned */
	size_t start;             /* first byte after leading empty lines */
	unsigned lines;           /* non-empty lines seen so far */
};

void http_req_init(struct http_req *r);

/*
 * Look at the @len bytes at @buf, a request head still arriving: the same
 * bytes as on the previous call with the same @r, and maybe more.
 * Returns:
 *   > 0  the head is complete and parsed; the value is its length (the
 *        bytes after it are the body, or the next request);
 *   0    not complete yet: call again with more bytes;
 *   < 0  minus the HTTP status to answer with before closing:
 *        400 malformed; 411 no Content-Length for PUT, or a chunked body
 *        (see http.c for why); 417 an Expect other than 100-continue;
 *        431 the head is over HTTP_HEAD_MAX bytes or HTTP_FIELDS_MAX
 *        fields; 501 an unknown method or transfer coding; 505 an HTTP
 *        version other than 1.0 and 1.1.
 * Once it returned non-zero, @r must be initialised again before reuse.
 */
int http_parse(struct http_req *r, const char *buf, size_t len);

/*
 * The file name named by a request target such as "/report.csv": the
 * target must be "/" followed by 1 to HTTP_NAME_MAX bytes of letters,
 * digits, '.', '-' and '_', not starting with '.'. So no '/', no "..",
 * no NUL, no percent-encoding (refused, not decoded), no query, and no
 * name of the hidden files that `zcnet ingest` keeps its temporary files
 * under. Returns 0 and copies the name, NUL-terminated, to @name (at
 * least HTTP_NAME_MAX + 1 bytes), or -400.
 */
int http_target_name(const char *target, size_t len, char *name);

/* The reason phrase of a status code ("Bad Request"); "Unknown" if none. */
const char *http_reason(int status);

#endif
