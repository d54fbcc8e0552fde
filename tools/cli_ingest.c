/*
 * cli_ingest.c - `zcnet ingest`: an HTTP/1.1 upload server.
 *
 * PUT /NAME with a Content-Length stores the body as DIR/NAME. The body
 * moves from the socket to the file through cookies: zc_take() detaches
 * up to ZC_COOKIE_MAX bytes of the stream into a pipe and
 * zc_cookie_write() splices them to the file at their offset, so the
 * bytes never enter this process. The request head arrives as ordinary
 * pieces and is parsed (http.c); body bytes that arrive in pieces, those
 * in the head's pieces above all, are written with pwrite() and counted.
 * GET and HEAD /NAME serve a file back.
 *
 * One context, one thread, no blocking on a client: every connection is
 * a state machine driven by zcnet events. State changes that act on a
 * connection's buffered bytes or start a take run after each batch of
 * events (the "kick" list), never in the middle of one, so that the
 * stream offsets the application knows are complete when it asks for a
 * take.
 *
 * Safety: the name is checked before anything is touched; the body goes
 * to a temporary file created inside DIR (O_CREAT | O_EXCL | O_NOFOLLOW)
 * under a reserved prefix no valid name can have, and is renamed over the
 * final name only when complete (and, with --fsync, on disk). Any failure
 * unlinks the temporary file; leftovers of a crashed run are removed at
 * start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "zcnet.h"
#include "cli.h"
#include "http.h"

const char ingest_usage[] =
	"usage: zcnet ingest --dir DIR [OPTIONS]\n"
	"\n"
	"An HTTP/1.1 upload server: PUT /NAME stores the request body as\n"
	"DIR/NAME, moved from the socket to the file without entering this\n"
	"process (zcnet cookies); GET /NAME and HEAD /NAME serve it back.\n"
	"NAME: 1 to 255 letters, digits, '.', '-' and '_', not starting with\n"
	"'.'. The body needs a Content-Length (chunked bodies get 411).\n"
	"\n"
	"  --listen ADDR:PORT   address to listen on (default 127.0.0.1:8080);\n"
	"                       port 0 picks a free port\n"
	"  --dir DIR            where files are stored (must exist)\n"
	"  --direct             write files with O_DIRECT, and ask clients for\n"
	"                       page-sized segments (ZC_PAGE_ALIGNED) so that\n"
	"                       their payload can go to the disk as it lies\n"
	"  --fsync              make each file durable (fdatasync, then the\n"
	"                       directory) before answering 201\n"
	"  --max-body BYTES     largest body accepted, else 413 (default 64G)\n"
	"  --idle-timeout SECS  close a connection silent this long (default 30)\n"
	"  --engine E           auto (default), uring, socket or mmap\n"
	"\n"
	"A body is written to DIR/.zcnet-ingest-* first and renamed into place\n"
	"once complete; files under that prefix are removed at start.\n"
	"On start, one line on stderr:\n"
	"  zcnet ingest: listening on ADDR:PORT engine=E\n"
	"then one line per upload stored or failed, and progress once a second.\n"
	"SIGINT or SIGTERM stop it; unfinished uploads are discarded.\n";

#define TMP_PREFIX      ".zcnet-ingest-"
#define MAX_EVENTS      64
#define WAIT_MS         200
#define TAKE_MIN        (64u << 10)   /* first take of a body, and the least */
#define DIRECT_ALIGN    4096u
#define WRITES_PER_CONN 2             /* cookie writes in flight per upload */
#define COOKIES_PER_CONN 4            /* taken and not yet written, at most */
#define SEND_CHUNK      (256u << 10)  /* GET: bytes read and sent at a time */
#define LINGER_MS       2000          /* reading on after an error answer */
#define RETRY_MS        100           /* no pipe for a take: try again */
#define OUT_MAX         1024          /* response heads, and 100 Continue */

struct ingest_opts {
	const char *listen, *dir;
	bool direct, fsync;
	uint64_t max_body, idle_s;
	int engine;
};

/* A body being stored. */
struct upload {
	char name[HTTP_NAME_MAX + 1];
	char tmp[64];            /* temporary name in DIR; "" once gone */
	int fd;                  /* the temporary file; cookies go here */
	int pfd;                 /* the same file for pwrite(): buffered even
	                            with --direct (== fd otherwise) */
	uint64_t size;           /* Content-Length */
	uint64_t rx;             /* body bytes received: pieces and cookies */
	uint64_t pieces;         /* of which through pieces, with pwrite() */
	zc_cookie take;          /* the pending take, or 0 */
	size_t take_len;         /* what the next take asks for */
	uint64_t take_t0;
	zc_cookie wr[WRITES_PER_CONN]; /* cookie writes in flight */
	unsigned nwr;
	/* Cookies taken while the writes were busy, in stream order: taking
	 * goes on meanwhile, else the bytes would arrive in pieces. */
	struct {
		zc_cookie ck;
		uint64_t off;
		size_t len;
	} held[COOKIES_PER_CONN];
	unsigned nheld;
	zc_cookie sync_ck;       /* --fsync: the last cookie's write, issued
	                            with ZC_WRITE_DSYNC after all others */
	bool synced;             /* that write has completed */
	int status;              /* the error to answer with, 0 while fine */
	uint64_t t0;
};

enum cstate {
	C_HEAD,   /* reading a request head */
	C_BODY,   /* storing a PUT body */
	C_REPLY,  /* sending a response */
	C_LINGER, /* after an error answer: reading and dropping until EOF */
};

struct conn {
	struct conn *prev, *next;     /* all connections */
	struct conn *kick_next;       /* the kick list */
	bool kicked;
	zc_handle h;
	enum cstate state;
	uint64_t stream;              /* stream offset of the next byte */
	struct http_req req;
	char *in;                     /* the head being read, or bytes of */
	size_t inlen, incap;          /* the next request, pipelined */
	bool keep_alive;              /* another request may follow */
	struct upload *up;
	char out[OUT_MAX];            /* bytes to send, from outoff */
	size_t outlen, outoff;
	int gfd;                      /* GET: the file, or -1 */
	uint64_t goff, gend;
	char *gbuf;
	bool replied;                 /* the response is sent */
	bool eof;                     /* the peer sends no more */
	bool dead;                    /* sending failed: nothing more to say */
	bool closing;                 /* close at the end of the batch, or once
	                                 the upload's writes are done */
	bool offsets_lost;            /* a dropped take moved the stream on */
	bool paused;                  /* receiving into pieces is paused */
	uint64_t active_ms, linger_until, retry_at;
};

struct ingest {
	struct ingest_opts o;
	zc_ctx *ctx;
	zc_handle listener;
	int dirfd;
	struct conn *conns, *kick_head, *kick_tail;
	unsigned nconns, uploads_active;
	uint64_t seq;                 /* temporary names */
	uint64_t stored, failed, refused;
	uint64_t bytes_rx, bytes_stored, bytes_pieces;
	bool library_warned;
	bool slip_said;
	bool drained;                 /* the last wait left no event queued */
	bool retry_soon;              /* takes put off until it does */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("zcnet ingest: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000u;
}

static void flush(struct ingest *g, struct conn *c);
static void conn_close(struct ingest *g, struct conn *c);
static void feed(struct ingest *g, struct conn *c, const char *p, size_t n);

/* ------------------------------------------------------------------ */
/* The kick list: connections to look at once the batch is done         */
/* ------------------------------------------------------------------ */

static void kick(struct ingest *g, struct conn *c)
{
	if (c->kicked)
		return;
	c->kicked = true;
	c->kick_next = NULL;
	if (g->kick_tail)
		g->kick_tail->kick_next = c;
	else
		g->kick_head = c;
	g->kick_tail = c;
}

static void unkick(struct ingest *g, struct conn *c)
{
	struct conn **pp = &g->kick_head, *prev = NULL;

	if (!c->kicked)
		return;
	while (*pp != c) {
		prev = *pp;
		pp = &(*pp)->kick_next;
	}
	*pp = c->kick_next;
	if (g->kick_tail == c)
		g->kick_tail = prev;
	c->kicked = false;
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */
/* ------------------------------------------------------------------ */

/* Queue bytes to send. They always fit: heads are short. */
static void queue_out(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	va_start(ap, fmt);
	n = vsnprintf(c->out + c->outlen, sizeof(c->out) - c->outlen, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(c->out) - c->outlen)
		c->outlen += (size_t)n;
}

/*
 * Answer the current request. @body: a short text for errors, or NULL;
 * @length: the Content-Length (of @body, or of a file that follows).
 * Closing after the answer is decided by c->keep_alive.
 */
static void reply(struct ingest *g, struct conn *c, int status,
		  const char *body, uint64_t length)
{
	queue_out(c, "HTTP/1.1 %d %s\r\nContent-Length: %llu\r\n%s%s\r\n%s",
		  status, http_reason(status), (unsigned long long)length,
		  body ? "Content-Type: text/plain\r\n" : "",
		  !c->keep_alive ? "Connection: close\r\n" :
		  c->req.minor == 0 ? "Connection: keep-alive\r\n" : "",
		  body ? body : "");
	c->state = C_REPLY;
	c->replied = false;
	flush(g, c);
}

/* Refuse a request and close the connection after the answer. */
static void refuse(struct ingest *g, struct conn *c, int status, const char *why)
{
	char body[160];

	g->refused++;
	say("refused a request: %d %s: %s", status, http_reason(status), why);
	snprintf(body, sizeof(body), "%d %s: %s\n", status, http_reason(status), why);
	c->keep_alive = false;
	reply(g, c, status, body, strlen(body));
}

/*
 * After an error answer the client may still be sending a body. Closing
 * with unread bytes would make the kernel send a reset, which can destroy
 * the answer before the client reads it; so shut down our side and drop
 * what comes for a while (RFC 9112 9.6).
 */
static void linger(struct ingest *g, struct conn *c)
{
	if (c->eof || c->dead) {
		conn_close(g, c);
		return;
	}
	zc_shutdown(g->ctx, c->h, SHUT_WR);
	c->state = C_LINGER;
	c->linger_until = now_ms() + LINGER_MS;
}

static void reply_done(struct ingest *g, struct conn *c)
{
	if (c->gfd >= 0) {
		close(c->gfd);
		c->gfd = -1;
	}
	free(c->gbuf);
	c->gbuf = NULL;
	if (!c->keep_alive || c->eof || stop_signal) {
		linger(g, c);
		return;
	}
	c->replied = true;
	kick(g, c); /* the next request, maybe already here */
}

/* Read the next part of a GET's file into the send buffer. 0 or -1. */
static int refill(struct conn *c)
{
	uint64_t left = c->gend - c->goff;
	size_t want = left < SEND_CHUNK ? (size_t)left : SEND_CHUNK;
	ssize_t n;

	if (!c->gbuf && !(c->gbuf = malloc(SEND_CHUNK)))
		return -1;
	n = pread(c->gfd, c->gbuf, want, (off_t)c->goff);
	if (n <= 0)
		return -1; /* an error, or the file shrank under us */
	return (int)n;
}

/* Send what can be sent of the file of a GET. 1: done, 0: wait, -1. */
static int send_file(struct ingest *g, struct conn *c)
{
	while (c->goff < c->gend) {
		int n = refill(c);
		ssize_t s;

		if (n < 0)
			return -1;
		s = zc_send(g->ctx, c->h, c->gbuf, (size_t)n);
		if (s == -EAGAIN)
			return 0;
		if (s < 0)
			return -1;
		c->goff += (uint64_t)s;
		if (s < n)
			return 0; /* a WRITABLE event follows */
	}
	return 1;
}

/* Send what is queued; at the end of a response, move on. */
static void flush(struct ingest *g, struct conn *c)
{
	int r = 1;

	while (c->outoff < c->outlen) {
		ssize_t s = zc_send(g->ctx, c->h, c->out + c->outoff,
				    c->outlen - c->outoff);

		if (s == -EAGAIN)
			return;
		if (s < 0) {
			r = -1;
			break;
		}
		c->outoff += (size_t)s;
		if (c->outoff < c->outlen)
			return; /* a WRITABLE event follows */
	}
	if (r > 0 && c->state == C_REPLY && c->gfd >= 0)
		r = send_file(g, c);
	if (r < 0) {
		c->dead = true;
		if (c->state != C_BODY)
			conn_close(g, c);
		return;
	}
	if (r > 0 && c->state == C_REPLY && !c->replied)
		reply_done(g, c);
}

/* ------------------------------------------------------------------ */
/* Uploads                                                             */
/* ------------------------------------------------------------------ */

static int status_of_errno(int err)
{
	return err == ENOSPC || err == EDQUOT ? 507 : 500;
}

/*
 * Buffered: reserve the body's blocks at once (the size stays 0 until
 * bytes land). Page-cache writes into allocated blocks skip ext4's
 * per-page delayed-allocation bookkeeping, ~15% of the server's CPU for
 * a 2 GiB upload; and a full disk answers 507 before the body is sent.
 * Filesystems without fallocate() are written as before.
 */
static int preallocate(struct upload *up)
{
	if (up->size && fallocate(up->pfd, FALLOC_FL_KEEP_SIZE, 0, (off_t)up->size) &&
	    (errno == ENOSPC || errno == EDQUOT))
		return status_of_errno(errno);
	return 0;
}

/* Create the temporary file. 0 or the status to answer with. */
static int create_tmp(struct ingest *g, struct upload *up)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	struct stat a, b;

	for (int tries = 0; tries < 16; tries++) {
		snprintf(up->tmp, sizeof(up->tmp), TMP_PREFIX "%ld-%llu",
			 (long)getpid(), (unsigned long long)++g->seq);
		/* 0666: the process umask decides, as for any new file. */
		up->pfd = openat(g->dirfd, up->tmp, flags, 0666);
		if (up->pfd >= 0 || errno != EEXIST)
			break;
	}
	if (up->pfd < 0) {
		up->tmp[0] = '\0';
		return status_of_errno(errno);
	}
	up->fd = up->pfd;
	if (!g->o.direct)
		return preallocate(up);
	/*
	 * Cookies go to an O_DIRECT descriptor; bytes from pieces go through
	 * the buffered one (pwrite() with O_DIRECT would need aligned buffers,
	 * offsets and lengths). Both must name the file just created. The
	 * O_DIRECT one is also read: zcnet reads the blocks around a range
	 * off the block grid to write them whole.
	 */
	up->fd = openat(g->dirfd, up->tmp, O_RDWR | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
	if (up->fd < 0 || fstat(up->fd, &a) || fstat(up->pfd, &b) ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		if (up->fd >= 0)
			close(up->fd);
		up->fd = -1;
		return 500;
	}
	return 0;
}

static void upload_discard(struct ingest *g, struct upload *up)
{
	if (up->tmp[0])
		unlinkat(g->dirfd, up->tmp, 0);
	up->tmp[0] = '\0';
}

/*
 * A body is moved by takes alone: receiving into pieces is paused while
 * it lasts. Else, whenever the disk lags and the cookies in flight are at
 * their limit, the next bytes would arrive in pieces and be copied twice
 * (into the pieces, then by pwrite()) instead of waiting in the socket.
 */
static void set_paused(struct ingest *g, struct conn *c, bool on)
{
	if (g->ctx && c->paused != on && zc_pause(g->ctx, c->h, on) == 0)
		c->paused = on;
}

/* Release everything of @c's upload; no take may be pending. */
static void upload_free(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;

	if (!up)
		return;
	set_paused(g, c, false); /* the next request, or the rest to drop */
	upload_discard(g, up);
	if (up->fd >= 0 && up->fd != up->pfd)
		close(up->fd);
	if (up->pfd >= 0)
		close(up->pfd);
	free(up);
	c->up = NULL;
	g->uploads_active--;
}

/* Drop the cookies of an upload that are not being written. */
static void upload_drop_cookies(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;

	if (up->take) {
		zc_cookie_free(g->ctx, up->take); /* freed when the take ends */
		c->offsets_lost = true; /* its bytes are skipped, unseen */
	}
	for (unsigned i = 0; i < up->nheld; i++)
		zc_cookie_free(g->ctx, up->held[i].ck);
	up->take = 0;
	up->nheld = 0;
}

/*
 * A failed upload is over once its writes are: the temporary file is
 * unlinked at once, the answer waits for the writes (they use the file).
 */
static void upload_settle(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;
	char body[96];
	int status = up->status;

	if (c->closing) {
		kick(g, c); /* to be reaped */
		return;
	}
	if (up->nwr)
		return;
	upload_free(g, c);
	if (c->eof || c->dead) {
		conn_close(g, c); /* the client went away: nobody to answer */
		return;
	}
	snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
	c->keep_alive = false;
	reply(g, c, status, body, strlen(body));
}

static void upload_fail(struct ingest *g, struct conn *c, int status, const char *why)
{
	struct upload *up = c->up;

	if (up->status)
		return;
	up->status = status;
	g->failed++;
	say("failed %s after %llu of %llu bytes: %s", up->name,
	    (unsigned long long)up->rx, (unsigned long long)up->size, why);
	upload_discard(g, up);
	upload_drop_cookies(g, c);
	upload_settle(g, c);
}

/* The body is complete and in the file: make it the file NAME. */
static void upload_finish(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;
	double secs = (double)(now_ns() - up->t0) / 1e9;

	if (g->o.fsync && !up->synced && fdatasync(up->fd)) {
		upload_fail(g, c, status_of_errno(errno), strerror(errno));
		return;
	}
	if (renameat(g->dirfd, up->tmp, g->dirfd, up->name)) {
		int err = errno;

		upload_fail(g, c, err == EISDIR || err == ENOTEMPTY ? 409 :
			    status_of_errno(err), strerror(err));
		return;
	}
	up->tmp[0] = '\0';
	/* The rename is durable once the directory is. */
	if (g->o.fsync && fsync(g->dirfd))
		say("fsync %s: %s", g->o.dir, strerror(errno));
	g->stored++;
	g->bytes_stored += up->size;
	say("stored %s bytes=%llu seconds=%.3f gbps=%.3f pieces=%llu",
	    up->name, (unsigned long long)up->size, secs,
	    secs > 0 ? (double)up->size / secs / 1e9 : 0.0,
	    (unsigned long long)up->pieces);
	upload_free(g, c);
	reply(g, c, 201, NULL, 0);
}

/* Write @n bytes at @off of the upload's file. 0 or an errno. */
static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w ? errno : ENOSPC;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Body bytes that came in pieces: written with pwrite(). */
static size_t feed_body(struct ingest *g, struct conn *c, const char *p, size_t n)
{
	struct upload *up = c->up;
	uint64_t left = up->size - up->rx;
	size_t k = n < left ? n : (size_t)left;
	int err = up->status ? 0 : pwrite_all(up->pfd, p, k, up->rx);

	if (up->take && !g->slip_said) {
		/* The take was sized from the bytes seen before it: if zcnet
		 * starts it after these, it reaches past the body. */
		g->slip_said = true;
		say("%s: %zu body bytes arrived in pieces while a take was pending",
		    up->name, k);
	}
	up->rx += k;
	up->pieces += k;
	g->bytes_rx += k;
	g->bytes_pieces += k;
	if (err)
		upload_fail(g, c, status_of_errno(err), strerror(err));
	else
		kick(g, c);
	return k;
}

/* How much to take next. */
static size_t take_size(struct ingest *g, const struct upload *up)
{
	uint64_t left = up->size - up->rx;
	size_t len = up->take_len;

	/* O_DIRECT: get back on the block grid first, so that the cookies
	 * after this one can be spliced straight to the disk. */
	if (g->o.direct && up->rx % DIRECT_ALIGN)
		len = DIRECT_ALIGN - up->rx % DIRECT_ALIGN;
	return left < len ? (size_t)left : len;
}

/*
 * Takes grow while they fill quickly and shrink when they do not: a slow
 * client then still shows progress well within --idle-timeout, and a
 * fast one moves ZC_COOKIE_MAX at a time.
 */
static void adapt_take(struct upload *up, size_t got)
{
	uint64_t ms = now_ms() - up->take_t0;

	if (got < up->take_len)
		return;
	if (ms < 250 && up->take_len < ZC_COOKIE_MAX)
		up->take_len *= 2;
	else if (ms > 2000 && up->take_len > TAKE_MIN)
		up->take_len /= 2;
}

static void start_take(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;
	int err = zc_take(g->ctx, c->h, take_size(g, up), &up->take);

	if (!err) {
		up->take_t0 = now_ms();
		return;
	}
	up->take = 0;
	if (err == -ENOMEM || err == -EMFILE || err == -ENFILE) {
		c->retry_at = now_ms() + RETRY_MS; /* pipes will come back */
		g->retry_soon = true;
		return;
	}
	upload_fail(g, c, 500, zc_strerror(err));
}

static void write_cookie(struct ingest *g, struct conn *c, zc_cookie ck,
			 uint64_t off, unsigned flags)
{
	struct upload *up = c->up;
	int err = zc_cookie_write(g->ctx, ck, up->fd, (int64_t)off, flags);

	if (err) {
		zc_cookie_free(g->ctx, ck);
		upload_fail(g, c, 500, zc_strerror(err));
		return;
	}
	up->wr[up->nwr++] = ck;
	if (flags & ZC_WRITE_DSYNC)
		up->sync_ck = ck;
}

/*
 * Write held cookies, in order, as far as the writes in flight allow.
 * Returns false if the upload failed (and may be gone).
 */
static bool write_held(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;

	while (up->nheld && up->nwr < WRITES_PER_CONN) {
		zc_cookie ck = up->held[0].ck;
		uint64_t off = up->held[0].off;
		bool last = off + up->held[0].len == up->size;

		/* fdatasync() covers only writes already done: with --fsync
		 * the last cookie waits for all the others. */
		if (last && g->o.fsync && up->nwr)
			break;
		up->nheld--;
		memmove(&up->held[0], &up->held[1], up->nheld * sizeof(up->held[0]));
		write_cookie(g, c, ck, off, last && g->o.fsync ? ZC_WRITE_DSYNC : 0);
		if (c->up != up || up->status)
			return false;
	}
	return true;
}

/* The next step of an upload, after the batch that changed it. */
static void upload_pump(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;

	if (up->status || c->closing)
		return;
	if (!write_held(g, c))
		return;
	if (up->rx == up->size) {
		set_paused(g, c, false); /* the next request may come */
		if (!up->take && !up->nwr && !up->nheld)
			upload_finish(g, c);
		return;
	}
	if (up->take || up->nwr + up->nheld >= COOKIES_PER_CONN || c->eof ||
	    now_ms() < c->retry_at)
		return;
	/*
	 * A take starts after every byte zcnet has put in pieces, events
	 * still queued included; it is sized from the bytes seen, so only
	 * once a wait has returned them all.
	 */
	if (!g->drained) {
		c->retry_at = 1;
		g->retry_soon = true;
		return;
	}
	start_take(g, c);
}

static void on_taken(struct ingest *g, struct conn *c, const struct zc_event *ev)
{
	struct upload *up = c->up;
	uint64_t off;

	if (!ev->cookie) {
		/* A failed take, or one dropped while pending (its end is
		 * still reported, without a cookie). */
		if (up && up->take) {
			up->take = 0;
			upload_fail(g, c, 500, zc_strerror(ev->res ? ev->res : -EIO));
		}
		return;
	}
	if (!up || ev->cookie != up->take) {
		zc_cookie_free(g->ctx, ev->cookie);
		return;
	}
	up->take = 0;
	if (ev->offset != c->stream) {
		zc_cookie_free(g->ctx, ev->cookie);
		upload_fail(g, c, 500, "a cookie at an unexpected stream offset");
		return;
	}
	c->stream += ev->bytes;
	if (ev->bytes > up->size - up->rx) {
		zc_cookie_free(g->ctx, ev->cookie);
		upload_fail(g, c, 500, "a cookie reached past the body");
		return;
	}
	if (ev->bytes == 0 || up->status) {
		/* Empty: the stream ended (EOF follows), or pieces carried
		 * the bytes. */
		zc_cookie_free(g->ctx, ev->cookie);
		kick(g, c);
		return;
	}
	adapt_take(up, ev->bytes);
	off = up->rx;
	up->rx += ev->bytes;
	g->bytes_rx += ev->bytes;
	up->held[up->nheld].ck = ev->cookie; /* room: see upload_pump() */
	up->held[up->nheld].off = off;
	up->held[up->nheld].len = ev->bytes;
	up->nheld++;
	kick(g, c); /* written, and the next take asked for, after the batch */
}

/* The connection a WRITTEN event is about. */
static struct conn *writer_of(struct ingest *g, const struct zc_event *ev)
{
	struct conn *c = ev->user;

	if (!c) /* not expected: uploads keep their connection open */
		for (c = g->conns; c; c = c->next)
			if (c->up && (c->up->nwr > 0 && (c->up->wr[0] == ev->cookie ||
				      (c->up->nwr > 1 && c->up->wr[1] == ev->cookie))))
				break;
	return c;
}

static void on_written(struct ingest *g, const struct zc_event *ev)
{
	struct conn *c = writer_of(g, ev);
	struct upload *up = c ? c->up : NULL;
	unsigned i;

	if (!up)
		return;
	for (i = 0; i < up->nwr && up->wr[i] != ev->cookie; i++)
		;
	if (i == up->nwr)
		return;
	up->wr[i] = up->wr[--up->nwr];
	c->active_ms = now_ms();
	if (c->closing) {
		kick(g, c); /* to be reaped once the last write is done */
		return;
	}
	if (ev->res < 0 && !up->status) {
		upload_fail(g, c, status_of_errno(-ev->res), zc_strerror(ev->res));
		return;
	}
	if (up->status) {
		upload_settle(g, c); /* answers once the last write is back */
		return;
	}
	if (ev->cookie == up->sync_ck)
		up->synced = true; /* the last write, and the others were done */
	kick(g, c); /* the next take, the end, or the close */
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

static void start_put(struct ingest *g, struct conn *c, const char *name)
{
	struct upload *up = calloc(1, sizeof(*up));
	int status;

	if (!up) {
		refuse(g, c, 500, "out of memory");
		return;
	}
	up->fd = up->pfd = -1;
	c->up = up;
	g->uploads_active++;
	snprintf(up->name, sizeof(up->name), "%s", name);
	up->size = c->req.content_length;
	up->take_len = TAKE_MIN;
	up->t0 = now_ns();
	status = create_tmp(g, up);
	if (status) {
		int err = errno;

		upload_free(g, c);
		refuse(g, c, status, strerror(err));
		return;
	}
	c->state = C_BODY;
	set_paused(g, c, up->size > 0);
	/* Only now: a client waiting for 100 sends nothing before it, and
	 * a refusal above has spared it sending the body at all. */
	if (c->req.expect_continue && up->size) {
		queue_out(c, "HTTP/1.1 100 Continue\r\n\r\n");
		flush(g, c);
	}
	kick(g, c);
}

static void start_get(struct ingest *g, struct conn *c, const char *name)
{
	static const char nf[] = "404 Not Found\n";
	struct stat st;
	int fd;

	/* Never through a symlink: it could point out of DIR. */
	fd = openat(g->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		reply(g, c, 404, nf, sizeof(nf) - 1);
		return;
	}
	c->gfd = fd;
	c->goff = 0;
	c->gend = c->req.method == HTTP_HEAD ? 0 : (uint64_t)st.st_size;
	reply(g, c, 200, NULL, (uint64_t)st.st_size);
}

/* A complete head is in c->in: act on it. */
static void start_request(struct ingest *g, struct conn *c)
{
	char name[HTTP_NAME_MAX + 1];
	const struct http_req *r = &c->req;

	c->inlen = 0;
	c->keep_alive = r->keep_alive;
	if (http_target_name(c->in + r->target_off, r->target_len, name)) {
		refuse(g, c, 400, "the name must be 1 to 255 letters, digits, "
		       "'.', '-' or '_', not starting with '.'");
		return;
	}
	if (r->method != HTTP_PUT) {
		start_get(g, c, name);
		return;
	}
	if (r->content_length > g->o.max_body) {
		refuse(g, c, 413, "the body is larger than --max-body");
		return;
	}
	start_put(g, c, name);
}

static const char *why_refused(int status)
{
	switch (status) {
	case 411: return "a Content-Length is required (chunked bodies are not taken)";
	case 417: return "the only expectation met is 100-continue";
	case 431: return "the request head is too large";
	case 501: return "only GET, HEAD and PUT, without transfer codings";
	case 505: return "only HTTP/1.0 and HTTP/1.1";
	default: return "malformed request";
	}
}

/* Keep bytes in c->in. 0, or -1 when they would not fit. */
static int keep(struct conn *c, const char *p, size_t n)
{
	size_t cap = c->incap;

	if (c->inlen + n > HTTP_HEAD_MAX)
		return -1;
	while (cap < c->inlen + n)
		cap = cap ? 2 * cap : 1024;
	if (cap != c->incap) {
		char *q = realloc(c->in, cap);

		if (!q)
			return -1;
		c->in = q;
		c->incap = cap;
	}
	memcpy(c->in + c->inlen, p, n);
	c->inlen += n;
	return 0;
}

/* Bytes of a request head. Returns how many of @n were used. */
static size_t feed_head(struct ingest *g, struct conn *c, const char *p, size_t n)
{
	size_t old = c->inlen, room = HTTP_HEAD_MAX - old;
	size_t k = n < room ? n : room;
	int r;

	if (keep(c, p, k)) {
		refuse(g, c, 500, "out of memory");
		return n;
	}
	r = http_parse(&c->req, c->in, c->inlen);
	if (r == 0)
		return k; /* k < n only if the parser has refused the head */
	if (r < 0) {
		refuse(g, c, -r, why_refused(-r));
		return n;
	}
	/* The head ends within these bytes (the old ones did not hold it). */
	c->inlen = (size_t)r;
	start_request(g, c);
	return (size_t)r - old;
}

/*
 * Bytes after the current request (pipelining): kept until it is
 * answered. A client that sends more than a head's worth ahead gets its
 * current answer and then the connection closed.
 */
static size_t feed_next(struct conn *c, const char *p, size_t n)
{
	if (c->keep_alive && keep(c, p, n))
		c->keep_alive = false;
	return n;
}

static void feed(struct ingest *g, struct conn *c, const char *p, size_t n)
{
	while (n && !c->closing) {
		size_t used;

		switch (c->state) {
		case C_HEAD:
			used = feed_head(g, c, p, n);
			break;
		case C_BODY:
			if (c->up && c->up->rx < c->up->size)
				used = feed_body(g, c, p, n);
			else
				used = feed_next(c, p, n);
			break;
		case C_REPLY:
			used = feed_next(c, p, n);
			break;
		default:
			used = n; /* lingering: dropped */
			break;
		}
		p += used;
		n -= used;
	}
}

/* The response is sent: read the next request from what is kept. */
static void next_request(struct ingest *g, struct conn *c)
{
	char *kept = c->in;
	size_t n = c->inlen;

	c->in = NULL;
	c->inlen = c->incap = 0;
	c->state = C_HEAD;
	c->replied = false;
	http_req_init(&c->req);
	feed(g, c, kept, n);
	free(kept);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static void conn_free(struct ingest *g, struct conn *c)
{
	unkick(g, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	g->nconns--;
	if (c->gfd >= 0)
		close(c->gfd);
	free(c->gbuf);
	free(c->in);
	free(c);
}

/*
 * Close @c. It is freed after the batch of events (events and callers up
 * the stack may still name it), and not before the upload's writes are
 * done (they use its file).
 */
static void conn_close(struct ingest *g, struct conn *c)
{
	struct upload *up = c->up;

	if (c->closing)
		return;
	c->closing = true;
	if (up) {
		if (!up->status) {
			g->failed++;
			say("failed %s after %llu of %llu bytes: the connection closed",
			    up->name, (unsigned long long)up->rx,
			    (unsigned long long)up->size);
			up->status = 500;
		}
		upload_drop_cookies(g, c);
		upload_discard(g, up);
	}
	kick(g, c);
}

/* The end of a closed connection, once nothing uses it. */
static void conn_reap(struct ingest *g, struct conn *c)
{
	if (c->up && c->up->nwr)
		return; /* its last WRITTEN event kicks it again */
	upload_free(g, c);
	if (c->dead)
		zc_abort(g->ctx, c->h);
	else
		zc_close(g->ctx, c->h);
	conn_free(g, c);
}

static void on_accept(struct ingest *g, const struct zc_event *ev)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c) {
		zc_abort(g->ctx, ev->conn);
		return;
	}
	c->h = ev->conn;
	c->gfd = -1;
	c->active_ms = now_ms();
	http_req_init(&c->req);
	c->next = g->conns;
	if (g->conns)
		g->conns->prev = c;
	g->conns = c;
	g->nconns++;
	zc_set_user(g->ctx, ev->conn, c);
}

static void library_warn(struct ingest *g, const char *what)
{
	if (g->library_warned)
		return;
	g->library_warned = true;
	say("zcnet reported %s (closing that connection)", what);
}

static void on_data(struct ingest *g, struct conn *c, const struct zc_event *ev)
{
	bool ok = c && !c->closing;

	if (ok && !c->offsets_lost && ev->offset != c->stream) {
		library_warn(g, "data at an unexpected stream offset");
		c->dead = true;
		ok = false;
	}
	for (unsigned i = 0; i < ev->npieces; i++) {
		const struct zc_piece *p = &ev->pieces[i];

		if (ok && !c->closing)
			feed(g, c, p->data, p->len);
		zc_release(g->ctx, p);
	}
	if (!c)
		return;
	c->stream += ev->bytes;
	c->active_ms = now_ms();
	if (!ok && !c->closing)
		conn_close(g, c);
}

/* EOF or ERROR: the peer sends no more. */
static void on_end(struct ingest *g, struct conn *c, const struct zc_event *ev)
{
	c->eof = true;
	if (ev->type == ZC_EV_ERROR)
		c->dead = true;
	if (c->closing)
		return;
	switch (c->state) {
	case C_BODY:
		if (c->up && c->up->rx < c->up->size) {
			upload_fail(g, c, 400, ev->type == ZC_EV_ERROR ?
				    zc_strerror(ev->res) : "the client went away");
			return;
		}
		if (c->dead && c->up)
			upload_fail(g, c, 500, zc_strerror(ev->res));
		break; /* complete: store it, answer, then close */
	case C_REPLY:
		if (c->dead)
			conn_close(g, c);
		break; /* a half-close: answer, then close */
	default:
		conn_close(g, c);
		break;
	}
}

static void on_event(struct ingest *g, const struct zc_event *ev)
{
	struct conn *c = ev->user;

	switch (ev->type) {
	case ZC_EV_ACCEPT:
		on_accept(g, ev);
		break;
	case ZC_EV_DATA:
		on_data(g, c, ev);
		break;
	case ZC_EV_TAKEN:
		if (c) {
			c->active_ms = now_ms();
			on_taken(g, c, ev);
		} else if (ev->cookie) {
			zc_cookie_free(g->ctx, ev->cookie);
		}
		break;
	case ZC_EV_WRITTEN:
		on_written(g, ev);
		break;
	case ZC_EV_WRITABLE:
		if (c && !c->closing) {
			c->active_ms = now_ms();
			flush(g, c);
		}
		break;
	case ZC_EV_EOF:
	case ZC_EV_ERROR:
		if (c)
			on_end(g, c, ev);
		else if (ev->conn == g->listener)
			say("listener: %s", zc_strerror(ev->res));
		break;
	default:
		break;
	}
}

/* After a batch: what the events made possible. */
static void pump(struct ingest *g, struct conn *c)
{
	if (c->closing) {
		conn_reap(g, c);
		return;
	}
	if (c->state == C_BODY && c->up)
		upload_pump(g, c);
	else if (c->state == C_REPLY && c->replied)
		next_request(g, c);
}

static void run_kicks(struct ingest *g)
{
	struct conn *c;

	while ((c = g->kick_head)) {
		g->kick_head = c->kick_next;
		if (!g->kick_head)
			g->kick_tail = NULL;
		c->kicked = false;
		pump(g, c);
	}
}

/* Kick the connections whose take was put off or failed for a while. */
static void retry_due(struct ingest *g, uint64_t now)
{
	g->retry_soon = false;
	for (struct conn *c = g->conns; c; c = c->next) {
		if (c->retry_at && now >= c->retry_at) {
			c->retry_at = 0;
			kick(g, c);
		} else if (c->retry_at) {
			g->retry_soon = true; /* not yet: look again */
		}
	}
}

/* Once a second: time-outs, retries and progress. */
static void sweep(struct ingest *g, uint64_t now)
{
	uint64_t idle = g->o.idle_s * 1000;
	struct conn *c, *next;

	for (c = g->conns; c; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		if (c->state == C_LINGER) {
			if (now >= c->linger_until)
				conn_close(g, c);
			continue;
		}
		if (now - c->active_ms < idle || (c->up && (c->up->nwr || c->up->nheld)))
			continue;
		if (c->state == C_HEAD && c->inlen == 0) {
			conn_close(g, c); /* an idle keep-alive connection */
		} else if (c->state == C_BODY && c->up) {
			upload_fail(g, c, 408, "idle for --idle-timeout");
		} else if (c->state == C_HEAD) {
			refuse(g, c, 408, "idle for --idle-timeout");
		} else {
			c->dead = true; /* it does not read its answer */
			conn_close(g, c);
		}
	}
}

static void progress(struct ingest *g, struct progress *pr)
{
	char b[32];
	double gbps;

	uint64_t before = pr->bytes_last;

	if (!progress_due(pr, g->bytes_rx, &gbps) || !g->uploads_active ||
	    g->bytes_rx == before)
		return;
	say("%s received, %.2f GB/s, uploads active %u stored %llu failed %llu",
	    fmt_bytes(b, sizeof(b), g->bytes_rx), gbps, g->uploads_active,
	    (unsigned long long)g->stored, (unsigned long long)g->failed);
}

static int serve(struct ingest *g)
{
	struct zc_event evs[MAX_EVENTS];
	uint64_t last_sweep = now_ms();
	struct progress pr;

	progress_init(&pr);
	while (!stop_signal) {
		int n = zc_wait(g->ctx, evs, MAX_EVENTS, WAIT_MS);
		uint64_t now;

		if (n == -EINTR)
			continue;
		if (n < 0) {
			say("zc_wait: %s", zc_strerror(n));
			return 1;
		}
		g->drained = n < MAX_EVENTS;
		for (int i = 0; i < n; i++)
			on_event(g, &evs[i]);
		now = now_ms();
		if (g->retry_soon || now - last_sweep >= 1000)
			retry_due(g, now);
		run_kicks(g);
		if (now - last_sweep >= 1000) {
			last_sweep = now;
			sweep(g, now);
			run_kicks(g);
			progress(g, &pr);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Start and end                                                       */
/* ------------------------------------------------------------------ */

/* Remove temporary files a previous run left behind. */
static int remove_leftovers(struct ingest *g)
{
	int fd = dup(g->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	unsigned n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) &&
		    unlinkat(g->dirfd, e->d_name, 0) == 0)
			n++;
	closedir(d);
	if (n)
		say("removed %u leftover temporary file%s from %s", n,
		    n == 1 ? "" : "s", g->o.dir);
	return 0;
}

/* With --direct, find out now whether DIR's filesystem takes O_DIRECT. */
static int probe_direct(struct ingest *g)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), TMP_PREFIX "%ld-probe", (long)getpid());
	fd = openat(g->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0) {
		say("--direct: %s: %s", g->o.dir, strerror(errno));
		return -1;
	}
	close(fd);
	unlinkat(g->dirfd, name, 0);
	return 0;
}

static int setup(struct ingest *g)
{
	struct zc_config cfg;
	char host[256];
	long port;
	int err;

	g->dirfd = open(g->o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g->dirfd < 0) {
		say("--dir %s: %s", g->o.dir, strerror(errno));
		return -1;
	}
	if (remove_leftovers(g) || (g->o.direct && probe_direct(g)))
		return -1;
	zc_config_init(&cfg);
	cfg.engine = g->o.engine;
	/* Heads are small and bodies go through cookies: small pieces. */
	cfg.piece_size = 16 << 10;
	err = zc_ctx_create(&cfg, &g->ctx);
	if (err) {
		say("cannot start the engine: %s", zc_strerror(err));
		return -1;
	}
	/*
	 * O_DIRECT takes whole pages: payload that lies page-aligned in the
	 * cookie's pipe is spliced to the disk as it is, the rest goes
	 * through zcnet's bounce buffer (a copy). Page-sized segments from
	 * the client make it lie that way.
	 */
	err = zc_listen(g->ctx, g->o.listen, g->o.direct ? ZC_PAGE_ALIGNED : 0,
			&g->listener);
	if (err || split_hostport(g->o.listen, host, sizeof(host), &port)) {
		say("listen %s: %s", g->o.listen, zc_strerror(err ? err : -EINVAL));
		return -1;
	}
	say("listening on %s:%d engine=%s", host, zc_local_port(g->ctx, g->listener),
	    zc_engine_name(g->ctx));
	return 0;
}

/* Discard what is unfinished; every temporary file goes. */
static void teardown(struct ingest *g)
{
	struct zc_stats st = { 0 };
	struct conn *c;

	for (c = g->conns; c; c = c->next)
		if (c->up) {
			if (!c->up->status)
				g->failed++;
			upload_discard(g, c->up);
		}
	if (g->ctx)
		zc_ctx_stats(g->ctx, &st);
	/* The context first: it may still be writing to the files. */
	zc_ctx_destroy(g->ctx);
	g->ctx = NULL; /* upload_free() below must not call into it */
	while (g->conns) {
		c = g->conns;
		if (c->up) {
			c->up->nwr = 0;
			upload_free(g, c);
		}
		conn_free(g, c);
	}
	if (g->dirfd >= 0)
		close(g->dirfd);
	say("stopped: stored=%llu failed=%llu refused=%llu bytes=%llu pieces=%llu "
	    "taken=%llu copied=%llu",
	    (unsigned long long)g->stored, (unsigned long long)g->failed,
	    (unsigned long long)g->refused, (unsigned long long)g->bytes_stored,
	    (unsigned long long)g->bytes_pieces,
	    (unsigned long long)st.bytes_taken,
	    (unsigned long long)st.bytes_copied);
}

static int parse_args(int argc, char **argv, struct ingest_opts *o)
{
	uint64_t max_body = 64ull << 30, idle = 30;
	const char *v;

	*o = (struct ingest_opts){ .listen = "127.0.0.1:8080", .engine = ZC_ENGINE_AUTO };
	for (int i = 1; i < argc; i++) {
		int r = 1;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(ingest_usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--direct")) {
			o->direct = true;
			continue;
		}
		if (!strcmp(argv[i], "--fsync")) {
			o->fsync = true;
			continue;
		}
#define OPT(name) ((r = opt_value("ingest", argc, argv, &i, name, &v)) != 0)
		if (OPT("--listen")) {
			o->listen = v;
		} else if (OPT("--dir")) {
			o->dir = v;
		} else if (OPT("--max-body")) {
			if (r > 0 && parse_size("ingest", "--max-body", v, &max_body))
				r = -1;
		} else if (OPT("--idle-timeout")) {
			if (r > 0 && parse_uint("ingest", "--idle-timeout", v, 1, 86400, &idle))
				r = -1;
		} else if (OPT("--engine")) {
			if (r > 0 && (o->engine = parse_engine("ingest", v, 0)) < 0)
				r = -1;
		} else {
			return opt_unknown("ingest", argv[i]);
		}
#undef OPT
		if (r < 0)
			return EXIT_USAGE;
	}
	if (!o->dir) {
		fprintf(stderr, "zcnet ingest: --dir DIR is required; see 'zcnet ingest --help'\n");
		return EXIT_USAGE;
	}
	o->max_body = max_body;
	o->idle_s = idle;
	return -1; /* go on */
}

int cmd_ingest(int argc, char **argv)
{
	struct ingest g = { .dirfd = -1 };
	struct sigaction sa = { .sa_handler = on_signal };
	int status;

	status = parse_args(argc, argv, &g.o);
	if (status >= 0)
		return status;
	/* No SA_RESTART: a signal ends the wait at once. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	status = setup(&g) ? 1 : serve(&g);
	if (stop_signal)
		say("stopping on signal %d", (int)stop_signal);
	teardown(&g);
	return status;
}
