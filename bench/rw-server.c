/*
 * rw-server.c - the baseline of the receive-to-disk benchmark: an
 * HTTP/1.1 upload server with the semantics of `zcnet ingest` (PUT /NAME
 * with a Content-Length stores the body as DIR/NAME through a temporary
 * file renamed into place, 201 Created, keep-alive), written the plain
 * way: blocking read() of the socket into a 256 KiB buffer, then write()
 * to the file. One thread per connection.
 *
 * --direct opens the file with O_DIRECT and writes whole 256 KiB blocks
 * from an aligned buffer; the last block is padded to the 4 KiB grid and
 * the file cut back to its exact size with ftruncate().
 *
 * It is built to be a fair opponent, not a product: no GET, no
 * --max-body, no idle timeout. The request head goes through the same
 * parser as `zcnet ingest` (tools/http.c).
 *
 * usage: rw-server --dir DIR [--listen ADDR:PORT] [--direct]
 * Prints "rw-server: listening on 127.0.0.1:PORT" on stderr once ready.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http.h"

#define BUF_SIZE     (256u << 10) /* one read(), one write() at most */
#define DIRECT_ALIGN 4096u
#define TMP_PREFIX   ".rw-server-"

static const char *dir_path;
static int dirfd_g = -1;
static bool direct;
static atomic_ulong seq;

struct conn {
	int fd;
	char *buf;              /* BUF_SIZE bytes, DIRECT_ALIGN-aligned */
	char head[HTTP_HEAD_MAX];
	size_t hlen;            /* bytes in head[]: a head, maybe more */
};

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int answer(struct conn *c, int status, bool keep_alive)
{
	char out[256];
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s\r\n",
			 status, http_reason(status),
			 keep_alive ? "" : "Connection: close\r\n");

	return send_all(c->fd, out, (size_t)n);
}

/* Read once from the socket into @p (at most @n). > 0, or -1 at EOF. */
static ssize_t rd(int fd, char *p, size_t n)
{
	for (;;) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		return r > 0 ? r : -1;
	}
}

/* Buffered: every read() is followed by one write() of what it got. */
static int body_buffered(struct conn *c, int fd, uint64_t left)
{
	while (left) {
		ssize_t n = rd(c->fd, c->buf, left < BUF_SIZE ? left : BUF_SIZE);

		if (n < 0 || write_all(fd, c->buf, (size_t)n))
			return -1;
		left -= (uint64_t)n;
	}
	return 0;
}

/* O_DIRECT: fill the aligned buffer, write it whole; pad the tail. */
static int body_direct(struct conn *c, int fd, size_t fill, uint64_t left,
		       uint64_t size)
{
	while (left) {
		size_t room = BUF_SIZE - fill;
		ssize_t n = rd(c->fd, c->buf + fill, left < room ? left : room);

		if (n < 0)
			return -1;
		fill += (size_t)n;
		left -= (uint64_t)n;
		if (fill == BUF_SIZE) {
			if (write_all(fd, c->buf, fill))
				return -1;
			fill = 0;
		}
	}
	if (fill) {
		size_t padded = (fill + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);

		memset(c->buf + fill, 0, padded - fill);
		if (write_all(fd, c->buf, padded) || ftruncate(fd, (off_t)size))
			return -1;
	}
	return 0;
}

/*
 * Store a body of @size bytes as @name; the first @have of them are at
 * @p (they came with the head). 201, or the status to answer with; -1
 * when the connection is lost.
 */
static int store(struct conn *c, const char *name, const char *p, size_t have,
		 uint64_t size)
{
	char tmp[64];
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%ld-%lu", (long)getpid(),
		 atomic_fetch_add(&seq, 1));
	fd = openat(dirfd_g, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC | (direct ? O_DIRECT : 0), 0666);
	if (fd < 0)
		return 500;
	if (direct) {
		memcpy(c->buf, p, have); /* have < HTTP_HEAD_MAX < BUF_SIZE */
		err = body_direct(c, fd, have, size - have, size);
	} else {
		err = write_all(fd, p, have) ||
		      body_buffered(c, fd, size - have);
	}
	if (close(fd))
		err = -1;
	if (err || renameat(dirfd_g, tmp, dirfd_g, name)) {
		unlinkat(dirfd_g, tmp, 0);
		return err ? -1 : 500;
	}
	return 201;
}

/* Read until a complete head is in c->head. Its length, or -status, or 0 at EOF. */
static int read_head(struct conn *c, struct http_req *r)
{
	http_req_init(r);
	for (;;) {
		int h = c->hlen ? http_parse(r, c->head, c->hlen) : 0;
		ssize_t n;

		if (h)
			return h;
		if (c->hlen == sizeof(c->head))
			return -431;
		n = rd(c->fd, c->head + c->hlen, sizeof(c->head) - c->hlen);
		if (n < 0)
			return 0;
		c->hlen += (size_t)n;
	}
}

/* One request. true: read the next one on this connection. */
static bool serve_one(struct conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	char name[HTTP_NAME_MAX + 1];
	struct http_req r;
	int h = read_head(c, &r), status;
	size_t extra, have;

	if (h <= 0) {
		if (h < 0)
			answer(c, -h, false);
		return false;
	}
	if (r.method != HTTP_PUT ||
	    http_target_name(c->head + r.target_off, r.target_len, name)) {
		answer(c, r.method != HTTP_PUT ? 501 : 400, false);
		return false;
	}
	extra = c->hlen - (size_t)h;
	have = extra < r.content_length ? extra : (size_t)r.content_length;
	if (r.expect_continue && have < r.content_length &&
	    send_all(c->fd, cont, sizeof(cont) - 1))
		return false;
	status = store(c, name, c->head + h, have, r.content_length);
	if (status < 0)
		return false;
	/* What follows the body is the next request. */
	memmove(c->head, c->head + h + have, extra - have);
	c->hlen = extra - have;
	if (answer(c, status, r.keep_alive && status == 201))
		return false;
	return r.keep_alive && status == 201;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;

	while (serve_one(c))
		;
	close(c->fd);
	free(c->buf);
	free(c);
	return NULL;
}

static int start_conn(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	pthread_attr_t at;
	pthread_t t;
	int err;

	if (!c || posix_memalign((void **)&c->buf, DIRECT_ALIGN, BUF_SIZE)) {
		free(c);
		return -1;
	}
	c->fd = fd;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&t, &at, conn_main, c);
	pthread_attr_destroy(&at);
	if (err) {
		free(c->buf);
		free(c);
		return -1;
	}
	return 0;
}

static int listen_on(const char *spec)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	char host[64];
	const char *colon = strrchr(spec, ':');
	int fd, one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen)) {
		close(fd);
		return -1;
	}
	fprintf(stderr, "rw-server: listening on %s:%u%s\n", host,
		ntohs(a.sin_port), direct ? " direct" : "");
	return fd;
}

static int usage(void)
{
	fputs("usage: rw-server --dir DIR [--listen ADDR:PORT] [--direct]\n", stderr);
	return 2;
}

int main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:0";
	int lfd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--direct"))
			direct = true;
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir_path = argv[++i];
		else if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen_spec = argv[++i];
		else
			return usage();
	}
	if (!dir_path)
		return usage();
	signal(SIGPIPE, SIG_IGN);
	dirfd_g = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd_g < 0) {
		perror(dir_path);
		return 1;
	}
	lfd = listen_on(listen_spec);
	if (lfd < 0) {
		fprintf(stderr, "rw-server: cannot listen on %s: %s\n",
			listen_spec, strerror(errno));
		return 1;
	}
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("accept");
			return 1;
		}
		if (start_conn(fd))
			close(fd);
	}
}
