/*
 * internal.h - what the core (ctx.c, events.c) and the engines share.
 *
 * The core owns the handle table, the pool, the event queue and the
 * statistics; it knows nothing of how bytes arrive. An engine is one
 * struct zc_engine_ops: it opens sockets, moves bytes into pool pieces and
 * reports what happened through the zc_emit_*() calls below. Each engine
 * keeps its private state behind ctx->eng.
 */
#ifndef ZCNET_INTERNAL_H
#define ZCNET_INTERNAL_H

#include <stdbool.h>
#include <sys/socket.h>

#include "zcnet.h"
#include "gather.h"
#include "pool.h"

#define ZC_EXPORT __attribute__((visibility("default")))

enum zc_sock_kind { SK_FREE = 0, SK_LISTENER, SK_CONN };

/* zc_sock.flags */
#define SF_CONNECTING  (1u << 0) /* zc_connect() not finished */
#define SF_RX_ARMED    (1u << 1) /* engine: a receive is in flight */
#define SF_STALLED     (1u << 2) /* on the stalled queue, waiting for pieces */
#define SF_RX_DONE     (1u << 3) /* EOF or error reported: receive no more */
#define SF_WANT_WRITE  (1u << 4) /* a WRITABLE event is owed */
#define SF_ACCEPT_WAIT (1u << 5) /* listener: accepting paused (EMFILE...) */
#define SF_TAKING      (1u << 6) /* zc_take() pending: no receiving into pieces */
#define SF_PAUSED      (1u << 7) /* zc_pause(): no receiving into pieces */
#define SF_TAKEN_Q     (1u << 8) /* its ZC_EV_TAKEN is queued, not yet delivered */

/* A listener or a connection. Slots are reused; gen tells the uses apart. */
struct zc_sock {
	enum zc_sock_kind kind;
	uint32_t idx;    /* position in ctx->socks */
	uint32_t gen;    /* bumped at close; part of the handle */
	unsigned flags;  /* SF_* */
	int fd;          /* kernel engines: the socket; -1 otherwise */
	void *user;
	uint64_t rx_off; /* stream offset of the next byte to deliver */
	uint64_t seen_off; /* ... and of the next byte not yet delivered */
	struct zc_stats st;
	struct sockaddr_storage peer; /* zc_connect() target */
	socklen_t peer_len;
	uint64_t retry_at_ms; /* SF_ACCEPT_WAIT: when to accept again */
	uint32_t eng_bits;    /* the engine's own per-socket state */
	zc_cookie take;       /* SF_TAKING: the cookie being filled; SF_TAKEN_Q:
	                         the filled one, 0 if already gone */
	int lowat;            /* SO_RCVLOWAT set for a take; 0: the default */
	unsigned open_flags;  /* ZC_PAGE_ALIGNED... from zc_listen/zc_connect_ex */
	struct ks_txzc *txzc; /* kernel engines: zero-copy sends in flight */
};

enum zc_ck_state { CK_FREE = 0, CK_TAKING, CK_TAKEN, CK_WRITING };

/* A cookie: a pipe holding a range of a connection's stream. */
struct zc_ck {
	enum zc_ck_state state;
	uint32_t idx, gen;
	bool orphan;     /* freed by the application while in flight */
	bool unseen;     /* taken, its ZC_EV_TAKEN not yet delivered */
	int pr, pw;      /* the pipe's read and write ends */
	int cap;         /* the pipe's capacity in bytes, 0 if unknown */
	uint64_t end;    /* take: stream offset it ends at */
	bool started;    /* take: splicing has begun (want is known) */
	size_t want;     /* take: bytes to splice */
	size_t len;      /* bytes it holds */
	zc_handle conn;  /* the connection it was taken from */
	int fd;          /* write: target, offset, flags, bytes done */
	int64_t off;
	unsigned wflags;
	size_t done;
};

/* Cookies of a context: the table, and pipes kept for reuse. */
struct zc_cookies {
	struct zc_ck **tab;
	uint32_t n, cap;
	uint32_t *free;
	uint32_t nfree;
	int (*pipes)[3];    /* empty pipes, ready for the next cookie:
	                       read end, write end, capacity */
	uint32_t npipes;
	int peek[2];        /* scratch pipe for zc_cookie_peek() */
	char *bounce;       /* aligned buffer for O_DIRECT writes */
};

/* A queued event; the pieces of DATA events live in ctx->pieces. */
struct zc_qevent {
	struct zc_event ev;
	uint32_t piece_first;
	unsigned data_flags; /* ZC_DATA_* */
};

/*
 * A piece an engine lends from memory of its own rather than the pool
 * (the mmap engine's mapped pages). Its zc_piece.ref is ZC_REF_FOREIGN |
 * tag; zc_release() hands such pieces to ops->release_foreign().
 */
#define ZC_REF_FOREIGN (1ull << 63)
struct zc_xfill {
	const void *data;
	uint32_t len;
	uint64_t tag; /* the engine's; bit 63 clear */
};

/* How the bytes of a DATA event got there, for the statistics. */
#define ZC_DATA_COPIED (1u << 0) /* count as bytes_copied */
#define ZC_DATA_MAPPED (1u << 1) /* count as bytes_mapped */

struct zc_engine_ops {
	const char *name;
	/* Set up ctx->eng. -ENOSYS (or the kernel's errno) if it cannot run. */
	int (*init)(zc_ctx *ctx);
	void (*fini)(zc_ctx *ctx);
	/* Open a listening socket at @sa and start accepting. */
	int (*listen)(zc_ctx *ctx, struct zc_sock *s, const struct sockaddr *sa,
		      socklen_t len, unsigned flags);
	/* Start connecting to s->peer. */
	int (*connect)(zc_ctx *ctx, struct zc_sock *s);
	ssize_t (*send)(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len);
	/* zc_send_zerocopy(); SEND_DONE events follow (see ksock.c). */
	ssize_t (*send_zc)(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
			   uint64_t tag);
	int (*shutdown)(zc_ctx *ctx, struct zc_sock *s, int how);
	int (*local_port)(zc_ctx *ctx, struct zc_sock *s);
	/* Stop everything in flight on @s and close it; @abort: with a reset. */
	void (*close)(zc_ctx *ctx, struct zc_sock *s, bool abort);
	/* Receiving on a stalled connection, or accepting on a listener
	 * after its back-off, may start again. */
	void (*resume)(zc_ctx *ctx, struct zc_sock *s);
	/* The application released piece @idx (now POSTED): lend it again. */
	void (*piece_released)(zc_ctx *ctx, uint32_t idx);
	/* Optional, for engines that emit foreign pieces (zc_emit_foreign()):
	 * take back piece @p, whose ref has ZC_REF_FOREIGN set. Returns 0 and
	 * sets *@owner to the connection it was emitted for, or -EINVAL (not
	 * a piece of this engine) or -EALREADY (released before). */
	int (*release_foreign)(zc_ctx *ctx, const struct zc_piece *p, zc_handle *owner);
	/* Optional: how many stalled connections may be resumed now (by
	 * default, as many as the pool has free pieces). */
	uint64_t (*resumable)(zc_ctx *ctx);
	/* Wait up to @timeout_ms for completions and emit their events.
	 * Returns 0 or a negative errno. */
	int (*run)(zc_ctx *ctx, int timeout_ms);
	/* zc_take() on @s (SF_TAKING set): once no receive is in flight,
	 * call zc_take_step() whenever the socket is readable, until it
	 * returns 0; then receive into pieces again. */
	void (*take)(zc_ctx *ctx, struct zc_sock *s);
	/* Write cookie @ck to ck->fd asynchronously and report each step to
	 * zc_write_progress(). NULL: the core writes synchronously. */
	void (*cookie_write)(zc_ctx *ctx, struct zc_ck *ck);
	/* SF_PAUSED changed on @s: stop receiving into pieces (what is in
	 * flight may still be delivered), or start again. */
	void (*pause)(zc_ctx *ctx, struct zc_sock *s);
};

extern const struct zc_engine_ops zc_engine_uring;
extern const struct zc_engine_ops zc_engine_socket;
extern const struct zc_engine_ops zc_engine_mmap;

struct zc_ctx {
	const struct zc_engine_ops *ops;
	void *eng;           /* the engine's private state */
	char features[96];   /* zc_engine_features() */
	unsigned cfg_flags;  /* ZC_CFG_* */
	unsigned batch_usec; /* zc_config.batch_usec */
	size_t zerocopy_min; /* zc_config.zerocopy_min, never 0 */
	size_t map_size;     /* zc_config.map_size */
	struct zc_pool pool;

	struct zc_sock **socks; /* handle table; slots are never freed */
	uint32_t nsocks, socks_cap;
	uint32_t *free_socks;   /* stack of SK_FREE slot indexes */
	uint32_t nfree_socks;

	zc_handle *piece_owner; /* per piece: the connection it was filled for */

	struct zc_qevent *q;    /* event queue, delivered from q_head */
	uint32_t q_head, q_len, q_cap;
	struct zc_piece *pieces; /* pieces of queued DATA events */
	uint32_t npieces_q, pieces_cap;

	zc_handle *stalled;     /* FIFO of stalled connections */
	uint32_t st_head, st_len, st_cap;
	unsigned paused_listeners; /* listeners in accept back-off */
	unsigned marked_takes;  /* sockets with a take's SO_RCVLOWAT set */
	uint64_t take_recheck_at; /* zc_take_recheck()'s next look, ms */

	struct zc_cookies ck;

	struct zc_stats st;
	/* -ENOMEM once an event could not be queued (or a stalled connection
	 * not remembered): from then on nothing is queued, and zc_wait()
	 * fails once what was queued before is out. See zc_wait(). */
	int broken;
	struct zc_gather gather; /* whether the next wait gathers */
	uint32_t txzc_socks;    /* sockets with zero-copy sends in flight */
};

/* --- handles (ctx.c) --- */
static inline zc_handle zc_handle_of(const struct zc_sock *s)
{
	return (uint64_t)s->gen << 32 | s->idx;
}
/* The live socket named by @h, or NULL. */
struct zc_sock *zc_sock_get(const zc_ctx *ctx, zc_handle h);
/* A new connection slot (kind SK_CONN, fd -1); NULL on ENOMEM. */
struct zc_sock *zc_sock_new(zc_ctx *ctx, enum zc_sock_kind kind);
/* Release a slot whose engine state is gone. */
void zc_sock_free(zc_ctx *ctx, struct zc_sock *s);

/* --- events (events.c): how an engine reports what happened --- */
struct zc_fill {      /* a piece an engine filled */
	uint32_t idx;
	uint32_t len;
};
/* Deliver @n filled pieces of @s, in stream order. */
int zc_emit_data(zc_ctx *ctx, struct zc_sock *s, const struct zc_fill *f, unsigned n);
/* The same, with ZC_DATA_* @flags for the statistics. */
int zc_emit_data_flags(zc_ctx *ctx, struct zc_sock *s, const struct zc_fill *f,
		       unsigned n, unsigned flags);
/* Deliver @n foreign pieces of @s (see struct zc_xfill), in stream order. */
int zc_emit_foreign(zc_ctx *ctx, struct zc_sock *s, const struct zc_xfill *x,
		    unsigned n, unsigned flags);
/* A zero-copy send of @s is done: ZC_EV_SEND_DONE with @tag, @bytes, @res. */
int zc_emit_send_done(zc_ctx *ctx, struct zc_sock *s, uint64_t tag, size_t bytes,
		      int res);
/* ACCEPT, CONNECTED, EOF, ERROR or WRITABLE. EOF and ERROR end receiving. */
int zc_emit(zc_ctx *ctx, enum zc_event_type type, struct zc_sock *s, int res,
	    zc_handle listener);
/* Receiving on @s stopped for lack of pieces; the core resumes it later. */
void zc_stall(zc_ctx *ctx, struct zc_sock *s);
/* Resume stalled connections, as many as there are pieces to lend. */
void zc_resume_stalled(zc_ctx *ctx);
/* Queue an event of @type for @s (NULL: none) and return it to fill. */
struct zc_event *zc_emit_ev(zc_ctx *ctx, enum zc_event_type type, struct zc_sock *s);
/* Take out up to @max queued events (see zc_wait()). */
unsigned zc_deliver(zc_ctx *ctx, struct zc_event *evs, unsigned max);
void zc_events_fini(zc_ctx *ctx);

/* --- cookies (cookie.c) --- */
void zc_cookies_fini(zc_ctx *ctx);
/* Move what @s has readable into its take cookie. 1: wants more (wait
 * until readable), 0: the take ended (TAKEN emitted). */
int zc_take_step(zc_ctx *ctx, struct zc_sock *s);
/* A take ends with its connection: the cookie goes too, also one whose
 * ZC_EV_TAKEN the application has not been given yet. */
void zc_take_abort(zc_ctx *ctx, struct zc_sock *s);
/* Step takes that wait with a low-water mark, every so often (their pipe
 * may be out of slots); call after an engine run, while
 * ctx->marked_takes. zc_take_recheck_due(): how long a wait may last so
 * that the next look is not late, @timeout_ms or less. */
void zc_take_recheck(zc_ctx *ctx);
int zc_take_recheck_due(zc_ctx *ctx, int timeout_ms);
/* zc_wait() hands out the ZC_EV_TAKEN event @ev of @s: the cookie is the
 * application's from now on, or goes if it was freed meanwhile. */
void zc_taken_delivered(zc_ctx *ctx, struct zc_sock *s, struct zc_event *ev);
/* An asynchronous write step of @ck moved @res bytes (or failed). True
 * if the engine should write again (ck->done, ck->len say what is left). */
bool zc_write_progress(zc_ctx *ctx, struct zc_ck *ck, ssize_t res);
/* The cookie named by @c (also one freed while in flight), or NULL. */
struct zc_ck *zc_ck_get(zc_ctx *ctx, zc_cookie c);

/* --- kernel socket helpers shared by the kernel engines (ksock.c) --- */
int zc_parse_addr(const char *str, struct sockaddr_storage *ss, socklen_t *len);
int ks_listen(const struct sockaddr *sa, socklen_t len, unsigned flags, bool nonblock);
int ks_socket_for(const struct sockaddr_storage *ss, bool nonblock);
/* A socket to connect @s with, set up as s->open_flags ask. fd or -errno. */
int ks_conn_socket(struct zc_sock *s, bool nonblock);
/* Apply ZC_PAGE_ALIGNED (TCP_MAXSEG) to @fd before its handshake. */
int ks_page_align(int fd);
ssize_t ks_send(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len);
/* zc_send_zerocopy() on a kernel socket: MSG_ZEROCOPY, or a copy for
 * small sends; completions are read by ks_zc_reap(). */
ssize_t ks_send_zc(zc_ctx *ctx, struct zc_sock *s, const void *buf, size_t len,
		   uint64_t tag);
/* Read @s's error queue and emit SEND_DONE for completed sends. */
void ks_zc_reap(zc_ctx *ctx, struct zc_sock *s);
/* ks_zc_reap() every socket with sends in flight; returns the wait
 * time-out to use instead of @timeout_ms (short while any are). */
int ks_zc_poll(zc_ctx *ctx, int timeout_ms);
int ks_shutdown(zc_ctx *ctx, struct zc_sock *s, int how);
int ks_local_port(zc_ctx *ctx, struct zc_sock *s);
/* Close @s->fd (forgetting its zero-copy sends); @abort: make the kernel
 * send a reset, not a FIN. */
void ks_close(zc_ctx *ctx, struct zc_sock *s, bool abort);
/* Accepting failed with @err: pause accepting on @s for a while if the
 * error is a lack of resources (EMFILE...); zc_wait() resumes it through
 * ops->resume. True if paused. */
bool zc_accept_backoff(zc_ctx *ctx, struct zc_sock *s, int err);
uint64_t zc_now_ms(void);

#endif
