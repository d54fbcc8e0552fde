/*
 * ksock.c - kernel socket helpers shared by the engines that use the
 * kernel's TCP (uring and socket): address parsing, listening sockets,
 * the copying send, shutdown, accept back-off.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

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

int ks_listen(const struct sockaddr *sa, socklen_t len, unsigned flags, bool nonblock)
{
	int one = 1, fd, err;

	fd = ks_socket_for((const struct sockaddr_storage *)sa, nonblock);
	if (fd < 0)
		return fd;
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

void ks_close(struct zc_sock *s, bool abort)
{
	if (abort) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s->fd);
	s->fd = -1;
}

