/*
 * ksock.c - kernel socket helpers shared by the engines that use the
 * kernel's TCP (uring, socket, mmap): address parsing, listening sockets,
 * page-aligned segments, the copying and the zero-copy send, shutdown,
 * accept back-off.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tcp_compat.h"

#define LISTEN_BACKLOG 4096

static int parse_port(const char *s, unsigned *port)
{
	char *end;
	unsigned long v;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

/* "host:port", "[v6addr]:port"; host may be a name (e.g. localhost). */
int zc_parse_addr(const char *str, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	char host[256];
	const char *colon, *h = str;
	size_t hlen;
	unsigned port;
	int err;

	if (!str)
		return -EINVAL;
	if (*str == '[') {
		const char *rb = strchr(str, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = str + 1;
		hlen = (size_t)(rb - h);
		colon = rb + 1;
		hints.ai_family = AF_INET6;
	} else {
		colon = strrchr(str, ':');
		if (!colon || memchr(str, ':', (size_t)(colon - str)))
			return -EINVAL; /* bare IPv6 must be bracketed */
		hlen = (size_t)(colon - str);
	}
	if (hlen == 0 || hlen >= sizeof(host) || parse_port(colon + 1, &port))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	err = getaddrinfo(host, colon + 1, &hints, &res);
	if (err)
		return err == EAI_MEMORY ? -ENOMEM : -EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int ks_socket_for(const struct sockaddr_storage *ss, bool nonblock)
{
	int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
	int fd = socket(ss->ss_family, type, IPPROTO_TCP);

	return fd < 0 ? -errno : fd;
}

/*
 * The TCP option bytes every segment carries: the timestamp option (10
 * bytes, padded to 12) when net.ipv4.tcp_timestamps is on, as it is by
 * default. Read once.
 */
static int option_bytes(void)
{
	static int bytes = -1;
	FILE *f;
	int v = 1;

	if (bytes >= 0)
		return bytes;
	f = fopen("/proc/sys/net/ipv4/tcp_timestamps", "re");
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = 1;
		fclose(f);
	}
	bytes = v ? 12 : 0;
	return bytes;
}

int ks_page_align(int fd)
{
	/* TCP_MAXSEG counts the option bytes in: the payload of a full
	 * segment is TCP_MAXSEG - options, which must be one page. */
	int mss = (int)sysconf(_SC_PAGESIZE) + option_bytes();

	return setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)) ? -errno : 0;
}

int ks_conn_socket(struct zc_sock *s, bool nonblock)
{
	int fd = ks_socket_for(&s->peer, nonblock), err;

	if (fd >= 0 && (s->open_flags & ZC_PAGE_ALIGNED) && (err = ks_page_align(fd))) {
		close(fd);
		return err;
	}
	return fd;
}

int ks_listen(const struct sockaddr *sa, socklen_t len, unsigned flags, bool nonblock)
{
	int one = 1, fd, err;

	fd = ks_socket_for((const struct sockaddr_storage *)sa, nonblock);
	if (fd < 0)
		return fd;
	if ((flags & ZC_PAGE_ALIGNED) && (err = ks_page_align(fd))) {
		close(fd);
		return err;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    ((flags & ZC_LISTEN_REUSEPORT) &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
	    bind(fd, sa, len) || listen(fd, LISTEN_BACKLOG)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

ssize_t ks_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len)
{
	ssize_t n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n < 0)
		n = -errno;
	if ((n >= 0 && (size_t)n < len) || n == -EAGAIN) {
		/* Short: the caller waits for WRITABLE (see zc_send()). */
		s->flags |= SF_WANT_WRITE;
	}
	return n;
}

int ks_shutdown(zc_ctx *ctx, struct zc_sock *s, int how)
{
	return shutdown(s->fd, how) ? -errno : 0;
}

int ks_local_port(zc_ctx *ctx, struct zc_sock *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(s->fd, (struct sockaddr *)&ss, &len))
		return -errno;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void txzc_free(zc_ctx *ctx, struct zc_sock *s);

void ks_close(zc_ctx *ctx, struct zc_sock *s, bool abort)
{
	txzc_free(ctx, s);
	if (abort) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s->fd);
	s->fd = -1;
}

/* ------------------------------------------------------------------ */
/* Zero-copy send                                                       */
/* ------------------------------------------------------------------ */

/*
 * Each send() with MSG_ZEROCOPY that takes bytes gets the next 32-bit id
 * of its socket; the kernel reports finished ids as ranges [lo, hi] on the
 * socket's error queue (SO_EE_ORIGIN_ZEROCOPY). The sends in flight are a
 * ring indexed by id - base_id.
 */
struct txzc_ent {
	uint64_t tag;
	size_t bytes;
	bool done;
};

struct ks_txzc {
	bool enabled;        /* SO_ZEROCOPY is on */
	bool unsupported;    /* SO_ZEROCOPY failed: copy every send */
	uint32_t next_id;    /* id of the next zero-copy send */
	uint32_t base_id;    /* id of ring[head] */
	uint32_t head, count, cap;
	struct txzc_ent *ring;
};

static void txzc_free(zc_ctx *ctx, struct zc_sock *s)
{
	if (!s->txzc)
		return;
	if (s->txzc->count)
		ctx->txzc_socks--;
	free(s->txzc->ring);
	free(s->txzc);
	s->txzc = NULL;
}

/* Room for one more send in flight. 0 or -ENOMEM. */
static int txzc_reserve(struct ks_txzc *t)
{
	if (t->count == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		struct txzc_ent *n = malloc(cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (uint32_t i = 0; i < t->count; i++)
			n[i] = t->ring[(t->head + i) % t->cap];
		free(t->ring);
		t->ring = n;
		t->cap = cap;
		t->head = 0;
	}
	return 0;
}

static void txzc_push(zc_ctx *ctx, struct ks_txzc *t, uint64_t tag, size_t bytes)
{
	struct txzc_ent *e;

	if (t->count == 0) {
		t->base_id = t->next_id;
		ctx->txzc_socks++;
	}
	e = &t->ring[(t->head + t->count++) % t->cap];
	e->tag = tag;
	e->bytes = bytes;
	e->done = false;
	t->next_id++;
}

/* Sends [lo, hi] are done. */
static void txzc_complete(zc_ctx *ctx, struct zc_sock *s, uint32_t lo, uint32_t hi,
			  int res)
{
	struct ks_txzc *t = s->txzc;

	for (uint32_t id = lo;; id++) {
		uint32_t k = id - t->base_id;

		if (k < t->count) {
			struct txzc_ent *e = &t->ring[(t->head + k) % t->cap];

			if (!e->done) {
				e->done = true;
				zc_emit_send_done(ctx, s, e->tag, e->bytes, res);
			}
		}
		if (id == hi)
			break;
	}
	while (t->count && t->ring[t->head].done) {
		t->head = (t->head + 1) % t->cap;
		t->base_id++;
		if (--t->count == 0)
			ctx->txzc_socks--;
	}
}

void ks_zc_reap(zc_ctx *ctx, struct zc_sock *s)
{
	char control[256];

	if (!s->txzc || !s->txzc->count || s->fd < 0)
		return;
	for (;;) {
		struct msghdr msg = { .msg_control = control,
				      .msg_controllen = sizeof(control) };
		struct cmsghdr *cm;

		if (recvmsg(s->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			return; /* EAGAIN: nothing (more) queued */
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct zc_sock_extended_err ee;

			if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
			      (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
				continue;
			memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
			if (ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY || ee.ee_errno)
				continue;
			txzc_complete(ctx, s, ee.ee_info, ee.ee_data,
				      ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED ?
				      ZC_SEND_COPIED : 0);
			if (!s->txzc->count)
				return;
		}
	}
}

int ks_zc_poll(zc_ctx *ctx, int timeout_ms)
{
	if (!ctx->txzc_socks)
		return timeout_ms;
	for (uint32_t i = 0; i < ctx->nsocks && ctx->txzc_socks; i++) {
		struct zc_sock *s = ctx->socks[i];

		if (s->kind == SK_CONN && s->txzc && s->txzc->count)
			ks_zc_reap(ctx, s);
	}
	/* SEND_DONE events to deliver: do not block. */
	if (ctx->q_head < ctx->q_len)
		return 0;
	/* Completions raise no readiness the engines wait on for every
	 * socket (a stalled one is not watched), so look again soon. */
	if (ctx->txzc_socks && (timeout_ms < 0 || timeout_ms > 1))
		return 1;
	return timeout_ms;
}

/* A copying send that completes at once. */
static ssize_t send_copied(zc_ctx *ctx, struct zc_sock *s, const void *buf,
			   size_t len, uint64_t tag)
{
	ssize_t n = ks_send(ctx, s, buf, len);

	if (n > 0 && zc_emit_send_done(ctx, s, tag, (size_t)n, ZC_SEND_COPIED))
		return -ENOMEM; /* cannot happen without the event: say so */
	return n;
}

ssize_t ks_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
		   uint64_t tag)
{
	struct ks_txzc *t = s->txzc;
	int one = 1;
	ssize_t n;

	if (len < ctx->zerocopy_min)
		return send_copied(ctx, s, buf, len, tag);
	if (!t) {
		t = s->txzc = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
	}
	if (!t->enabled && !t->unsupported) {
		if (setsockopt(s->fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)))
			t->unsupported = true;
		else
			t->enabled = true;
	}
	if (t->unsupported)
		return send_copied(ctx, s, buf, len, tag);
	/* Room for the entry first: once the kernel took the bytes, the
	 * send must be tracked. */
	if (txzc_reserve(t))
		return -ENOMEM;
	n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL | MSG_ZEROCOPY);
	if (n < 0 && errno == ENOBUFS) {
		/* Too many notifications pending (net.core.optmem_max): read
		 * some, and copy this one. */
		ks_zc_reap(ctx, s);
		return send_copied(ctx, s, buf, len, tag);
	}
	if (n < 0)
		n = -errno;
	if ((n >= 0 && (size_t)n < len) || n == -EAGAIN)
		s->flags |= SF_WANT_WRITE;
	if (n > 0)
		txzc_push(ctx, t, tag, (size_t)n);
	return n;
}
