/*
 * http.c - the HTTP/1.1 request-head parser of `zcnet ingest` (see http.h).
 *
 * Two passes. The scan finds the end of the head, incrementally, and
 * checks what can be checked byte by byte (line endings, NUL, the size
 * limits) plus the request line as soon as it is complete, so that
 * garbage is refused without waiting for a blank line that may never
 * come. The parse then reads the complete head once.
 */
#include <string.h>

#include "http.h"

void http_req_init(struct http_req *r)
{
	memset(r, 0, sizeof(*r));
}

/* ---- character classes (RFC 9110 5.6.2, 5.5) ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

/* A byte of a field value: visible, obs-text, or inner whitespace. */
static bool is_value_char(unsigned char c)
{
	return c == '\t' || (c >= ' ' && c != 0x7f);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Whether [s, s + n) equals the lower-case @word, ignoring case. */
static bool eq_nocase(const char *s, size_t n, const char *word)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!word[i] || lower(s[i]) != word[i])
			return false;
	return word[i] == '\0';
}

static bool eq(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* ---- the request line ---- */

/*
 * method SP request-target SP HTTP-version, exactly: one space each, as
 * RFC 9112 3 writes it. [s, e) is the line without its CRLF.
 */
static int parse_request_line(struct http_req *r, const char *buf,
			      size_t s, size_t e)
{
	size_t m = s, t, v;

	while (m < e && is_tchar(buf[m]))
		m++;
	if (m == s || m == e || buf[m] != ' ')
		return -400;
	t = m + 1;
	v = t;
	while (v < e && buf[v] > ' ' && buf[v] < 0x7f)
		v++;
	if (v == t || v == e || buf[v] != ' ')
		return -400;
	r->target_off = t;
	r->target_len = v - t;
	v++;
	if (e - v != 8 || memcmp(buf + v, "HTTP/", 5) || buf[v + 6] != '.' ||
	    buf[v + 5] < '0' || buf[v + 5] > '9' ||
	    buf[v + 7] < '0' || buf[v + 7] > '9')
		return -400;
	if (buf[v + 5] != '1')
		return -505;
	/* 1.2 and later minors promise to be read as 1.1 (RFC 9110 6.2). */
	r->minor = buf[v + 7] == '0' ? 0 : 1;

	if (eq(buf + s, m - s, "GET"))
		r->method = HTTP_GET;
	else if (eq(buf + s, m - s, "HEAD"))
		r->method = HTTP_HEAD;
	else if (eq(buf + s, m - s, "PUT"))
		r->method = HTTP_PUT;
	else
		return -501; /* a method, but not one of ours (RFC 9110 9.1) */
	return 0;
}

/* ---- the scan: where does the head end? ---- */

/*
 * One more line ended with the LF at @i. Returns the head length at the
 * blank line that ends it, 0 to go on, or an error.
 */
static int end_of_line(struct http_req *r, const char *buf, size_t i)
{
	size_t s = r->line_start;
	int err;

	r->line_start = i + 1;
	if (i - 1 == s) {
		/* Empty lines before the request line are to be ignored
		 * (RFC 9112 2.2); after it, one ends the head. */
		if (r->lines == 0) {
			r->start = i + 1;
			return 0;
		}
		return (int)(i + 1);
	}
	if (++r->lines > HTTP_FIELDS_MAX + 1)
		return -431;
	if (r->lines == 1) {
		err = parse_request_line(r, buf, s, i - 1);
		if (err)
			return err;
	}
	return 0;
}

static int scan(struct http_req *r, const char *buf, size_t len)
{
	size_t i;
	int n;

	for (i = r->scan; i < len && i < HTTP_HEAD_MAX; i++) {
		char c = buf[i];

		if (c == '\0')
			return -400;
		if (i > 0 && buf[i - 1] == '\r' && c != '\n')
			return -400; /* a bare CR */
		if (c != '\n')
			continue;
		if (i == r->line_start || buf[i - 1] != '\r')
			return -400; /* a bare LF */
		n = end_of_line(r, buf, i);
		if (n) {
			r->scan = i + 1;
			return n;
		}
	}
	r->scan = i;
	return i >= HTTP_HEAD_MAX ? -431 : 0;
}

/* ---- the header fields ---- */

/* What the fields said, before it is judged as a whole. */
struct fields {
	unsigned hosts;
	bool conn_close, conn_keep_alive;
	bool te, te_chunked_last, te_chunked_any;
	bool expect_other;
};

/*
 * Content-Length = 1*DIGIT. A list ("5, 5") or a second field is refused
 * rather than compared: RFC 9112 6.3 allows either, and refusing is
 * simpler to get right. A value past 2^64 saturates, to be refused as
 * too large by the caller.
 */
static int content_length(struct http_req *r, const char *v, size_t n)
{
	uint64_t x = 0;

	if (r->has_length || n == 0)
		return -400;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)v[i] - '0';

		if (d > 9)
			return -400;
		if (x > (UINT64_MAX - d) / 10)
			x = UINT64_MAX;
		else
			x = x * 10 + d;
	}
	r->has_length = true;
	r->content_length = x;
	return 0;
}

/*
 * Call @fn on each element of a comma-separated list (RFC 9110 5.6.1),
 * trimmed, without its parameters (";q=1"). Empty elements are skipped.
 */
static void each_element(const char *v, size_t n, struct fields *f,
			 void (*fn)(struct fields *f, const char *e, size_t len))
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		for (size_t k = s; k < e; k++)
			if (v[k] == ';') {
				e = k;
				break;
			}
		while (e > s && is_ows(v[e - 1]))
			e--;
		if (e > s)
			fn(f, v + s, e - s);
	}
}

static void connection_token(struct fields *f, const char *e, size_t n)
{
	if (eq_nocase(e, n, "close"))
		f->conn_close = true;
	else if (eq_nocase(e, n, "keep-alive"))
		f->conn_keep_alive = true;
}

static void te_coding(struct fields *f, const char *e, size_t n)
{
	f->te = true;
	f->te_chunked_last = eq_nocase(e, n, "chunked");
	f->te_chunked_any |= f->te_chunked_last;
}

/* One field line [s, e) (no CRLF): name ":" OWS value OWS. */
static int parse_field(struct http_req *r, struct fields *f, const char *buf,
		       size_t s, size_t e)
{
	const char *name = buf + s, *v;
	size_t c = s, vs, ve, nlen, vlen;

	/* A line starting with whitespace is obsolete line folding: refused
	 * as RFC 9112 5.2 allows. */
	while (c < e && is_tchar(buf[c]))
		c++;
	if (c == s || c == e || buf[c] != ':')
		return -400; /* also "Name :", which RFC 9112 5.1 forbids */
	for (vs = c + 1; vs < e && is_ows(buf[vs]); vs++)
		;
	for (ve = e; ve > vs && is_ows(buf[ve - 1]); ve--)
		;
	for (size_t i = vs; i < ve; i++)
		if (!is_value_char(buf[i]))
			return -400;

	v = buf + vs;
	vlen = ve - vs;
	nlen = c - s;
	if (eq_nocase(name, nlen, "content-length"))
		return content_length(r, v, vlen);
	if (eq_nocase(name, nlen, "host"))
		f->hosts++;
	else if (eq_nocase(name, nlen, "connection"))
		each_element(v, vlen, f, connection_token);
	else if (eq_nocase(name, nlen, "transfer-encoding"))
		each_element(v, vlen, f, te_coding);
	else if (eq_nocase(name, nlen, "expect") && vlen) {
		if (eq_nocase(v, vlen, "100-continue"))
			r->expect_continue = true;
		else
			f->expect_other = true;
	}
	return 0;
}

/*
 * A body in a transfer coding. Chunked is the one coding every HTTP/1.1
 * server must understand, so 501 (RFC 9112 6.1: a coding not understood)
 * would be untrue for it. It is refused with 411 instead: this server
 * decides before reading a byte of a body whether to take it at all
 * (--max-body, 413) and moves it to disk in ranges of known length, so it
 * requires the length up front, and 411 tells the client exactly that:
 * send it again with a Content-Length. Other codings are not understood:
 * 501. Chunked other than last leaves the length unknowable: 400 (RFC
 * 9112 6.3). The connection is closed after any of these, because the
 * body that may follow cannot be skipped without decoding it.
 */
static int transfer_coding(const struct fields *f)
{
	if (f->te_chunked_last)
		return -411;
	if (f->te_chunked_any)
		return -400;
	return -501;
}

/* The head as a whole. */
static int judge(struct http_req *r, const struct fields *f)
{
	if (f->te && r->has_length)
		return -400; /* both: a request smuggling attempt, RFC 9112 6.3 */
	if (f->te)
		return transfer_coding(f);
	if (f->hosts > 1 || (r->minor == 1 && f->hosts == 0))
		return -400; /* RFC 9112 3.2 */
	if (r->method == HTTP_PUT && !r->has_length)
		return -411;
	/* A body on GET or HEAD means nothing here; rather than skip it,
	 * refuse it. */
	if (r->method != HTTP_PUT && r->content_length)
		return -400;
	if (r->minor == 0)
		r->expect_continue = false; /* RFC 9110 10.1.1 */
	else if (f->expect_other)
		return -417;
	r->keep_alive = !f->conn_close &&
			(r->minor == 1 || f->conn_keep_alive);
	return 0;
}

/* The head [r->start, end) is complete: read its fields. */
static int parse_fields(struct http_req *r, const char *buf, size_t end)
{
	struct fields f = { 0 };
	size_t s, e;
	int err;

	/* Skip the request line, checked by the scan. */
	s = (const char *)memchr(buf + r->start, '\n', end - r->start) - buf + 1;
	for (; s < end - 2; s = e + 2) {
		e = (const char *)memchr(buf + s, '\n', end - s) - buf - 1;
		err = parse_field(r, &f, buf, s, e);
		if (err)
			return err;
	}
	return judge(r, &f);
}

int http_parse(struct http_req *r, const char *buf, size_t len)
{
	int n = scan(r, buf, len), err;

	if (n <= 0)
		return n;
	err = parse_fields(r, buf, n);
	if (err)
		return err;
	r->head_len = n;
	return n;
}

/* ---- names ---- */

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

int http_target_name(const char *target, size_t len, char *name)
{
	if (len < 2 || len - 1 > HTTP_NAME_MAX || target[0] != '/' ||
	    target[1] == '.')
		return -400;
	for (size_t i = 1; i < len; i++)
		if (!is_name_char(target[i]))
			return -400;
	memcpy(name, target + 1, len - 1);
	name[len - 1] = '\0';
	return 0;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
