/*
 * zcnet.h - zero-copy network receive for Linux.
 *
 * zcnet hands received TCP payload to the application as an array of
 * <pointer, length> pieces that point into memory the application posted
 * (the pool), instead of copying it into a contiguous buffer. Pieces follow
 * buffer boundaries, never the application's message boundaries; the bytes
 * of one connection are always delivered in stream order.
 *
 * The model, in five lines:
 *   zc_ctx_create()  a context: one pool, one engine, its connections.
 *   zc_listen() / zc_connect()  sockets, named by zc_handle values.
 *   zc_wait()        completion events: accepted, data (pieces), end, error.
 *   zc_release()     give a piece back when done with it.
 *   zc_ctx_destroy() the end.
 *
 * Threads: a context belongs to one thread at a time and must be created on
 * the thread that waits on it (the uring engine runs its ring single-issuer).
 * There is no global state: run one context per thread and shard a listener
 * across them with ZC_LISTEN_REUSEPORT.
 *
 * Errors: every call that can fail returns a negative errno value
 * (zc_strerror() names it). Bad arguments, stale handles and bad releases
 * return an error; they never crash the process.
 */
#ifndef ZCNET_H
#define ZCNET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZCNET_VERSION_MAJOR 0
#define ZCNET_VERSION_MINOR 1
#define ZCNET_VERSION_PATCH 0

/** A context: one pool, one engine instance, its listeners and connections. */
typedef struct zc_ctx zc_ctx;

/**
 * A listener or a connection within one context. 0 is never a valid handle.
 * A handle stops being valid at zc_close(); calls with it then return
 * -EBADF, even if the slot behind it has been reused for a new socket.
 */
typedef uint64_t zc_handle;

/**
 * A cookie: a range of one connection's stream detached by zc_take(),
 * held by zcnet outside the application's memory until zc_cookie_write()
 * or zc_cookie_free(). 0 is never a valid cookie.
 */
typedef uint64_t zc_cookie;

/* ------------------------------------------------------------------ */
/* Context and pool                                                    */
/* ------------------------------------------------------------------ */

/** Which engine moves bytes from the network into the pool. */
enum zc_engine_kind {
	ZC_ENGINE_AUTO = 0,   /**< uring where io_uring works, else socket */
	ZC_ENGINE_URING = 1,  /**< kernel TCP, io_uring provided-buffer ring */
	ZC_ENGINE_SOCKET = 2, /**< kernel TCP, epoll and readv() into pieces */
	/**
	 * Kernel TCP, epoll and TCP_ZEROCOPY_RECEIVE: page-aligned payload is
	 * mapped read-only into the application instead of copied; the rest
	 * is read into pool pieces and counted in zc_stats.bytes_copied. A
	 * connection whose payload is not mappable falls back to copying
	 * (see README, "The mmap engine"). Never picked by ZC_ENGINE_AUTO.
	 */
	ZC_ENGINE_MMAP = 3,
};

/** A memory region the application lends to the pool. */
struct zc_region {
	void *base; /**< start; any alignment, page alignment is best */
	size_t len; /**< bytes; the tail shorter than one piece is unused */
};

/* zc_config.flags: turn off optional kernel features (for tests of the
 * fallback paths, or to compare); zcnet otherwise uses what it finds. */
#define ZC_CFG_NO_BUNDLE        (1u << 0) /**< uring: no receive bundles */
#define ZC_CFG_NO_MULTISHOT     (1u << 1) /**< uring: one-shot receives */
#define ZC_CFG_NO_DEFER_TASKRUN (1u << 2) /**< uring: plain ring set-up */

/** Context configuration. Fill with zc_config_init(), then change fields. */
struct zc_config {
	enum zc_engine_kind engine; /**< default ZC_ENGINE_AUTO */
	/** Bytes per piece: 1 .. 1 GiB, default 64 KiB. */
	size_t piece_size;
	/**
	 * Regions lent by the application. The application keeps ownership:
	 * it must keep them mapped until zc_ctx_destroy() returns, and must
	 * not write to them while zcnet owns a piece in them. NULL: zcnet
	 * allocates pool_size bytes itself (and frees them at destroy).
	 */
	const struct zc_region *regions;
	unsigned nregions;
	/** Pool bytes zcnet allocates when regions is NULL; default 16 MiB. */
	size_t pool_size;
	unsigned flags; /**< ZC_CFG_* */
	/**
	 * While data comes in bulk, let one wait gather data for up to this
	 * many microseconds, so the thread is not woken for every packet:
	 * the uring engine waits with Linux 6.12's min_wait, the socket and
	 * mmap engines sleep that long before asking epoll. Bulk means the
	 * previous run brought at least 64 KiB of payload and the
	 * application sent nothing since; a quiet or request/response
	 * connection is woken by its first data as before. Trades at most
	 * that much added latency, and only in bulk, for CPU: on a 2-vCPU VM,
	 * 200 us cut receiver CPU per GB by about a third on a bulk stream
	 * (uring), and the sender's by a third to a half (fewer, larger
	 * window updates). zc_config_init() sets 200; 0: off. The uring
	 * engine ignores it where the kernel lacks min_wait; whether waits
	 * may gather shows in zc_engine_features() as "gather".
	 */
	unsigned batch_usec;
	/**
	 * mmap engine: bytes of the mapping area, the most mapped payload
	 * the application can hold at once (the mapping budget). When every
	 * part of it is held, receiving stops as when the pool runs dry.
	 * It is cut into slots of piece_size rounded down to whole pages (at
	 * least one page, at most 1 MiB); a mapped piece is at most one slot.
	 * Default (and 0) 16 MiB; at least one slot. Ignored by the other
	 * engines.
	 */
	size_t map_size;
	/**
	 * zc_send_zerocopy(): sends shorter than this many bytes are copied
	 * instead (pinning pages and reporting completions costs more than a
	 * small copy). zc_config_init() and 0 mean ZC_SEND_ZEROCOPY_MIN; 1
	 * sends everything without copying. See README for where it pays.
	 */
	size_t zerocopy_min;
};

/** Largest number of pieces in one pool (the io_uring buffer ring limit). */
#define ZC_MAX_PIECES 32768u

/** Fill @cfg with the defaults. */
void zc_config_init(struct zc_config *cfg);

/**
 * Create a context. @cfg may be NULL for the defaults.
 * Returns 0 and sets *@out, or:
 *  -EINVAL  bad configuration: a region or the pool too small for one
 *           piece, piece_size out of range, NULL @out;
 *  -E2BIG   more than ZC_MAX_PIECES pieces;
 *  -ENOSYS, -EPERM  the engine asked for cannot run here (ZC_ENGINE_URING
 *           where io_uring is missing, disabled by the kernel.io_uring_disabled
 *           sysctl, or blocked by seccomp; ZC_ENGINE_AUTO then picks socket);
 *  -ENOMEM, or another error from the kernel.
 */
int zc_ctx_create(const struct zc_config *cfg, zc_ctx **out);

/**
 * Destroy a context: closes every listener and connection and frees the
 * pool. Pieces still held by the application become invalid (their memory
 * is unmapped if zcnet allocated it). NULL is accepted.
 * With the uring engine, the kernel finishes tearing the ring down through
 * work queued on the calling thread; the thread's next blocking system
 * call (or zc_wait() of another context) may return EINTR once.
 */
void zc_ctx_destroy(zc_ctx *ctx);

/** The engine running in @ctx: "uring", "socket" or "mmap". */
const char *zc_engine_name(const zc_ctx *ctx);

/**
 * Which optional features the engine is using, as a short text such as
 * "multishot bundle defer_taskrun" (empty for none). For logs and tests.
 */
const char *zc_engine_features(const zc_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Sockets                                                             */
/* ------------------------------------------------------------------ */

/** zc_listen() flags */
#define ZC_LISTEN_REUSEPORT (1u << 0) /**< SO_REUSEPORT: shard across contexts */
/**
 * zc_listen() and zc_connect_ex() flag: page-aligned segments. Sets the
 * socket's TCP_MAXSEG (before the handshake, so that it is also the MSS
 * the other end is told) to one page plus the TCP option bytes every
 * segment carries: 4096 + 12 where TCP timestamps are on (the sysctl
 * net.ipv4.tcp_timestamps, on by default: 10 option bytes padded to 12),
 * else 4096 + 0. Each full segment then carries exactly one page of
 * payload, which is what lets the receiving kernel map it (mmap engine)
 * or splice it to O_DIRECT files without bounce buffers. One end setting
 * it is enough for both directions of a loopback connection; on a real
 * path the MSS is also capped by the MTU. Segments shrink (and lose
 * alignment) when SACK blocks are added during loss recovery.
 */
#define ZC_PAGE_ALIGNED (1u << 1)

/**
 * Listen on @addr, "host:port" ("127.0.0.1:9000", "[::1]:9000",
 * "localhost:0"; port 0 picks a free port, see zc_local_port()).
 * Connections are accepted by the engine on its own; each one is reported
 * by a ZC_EV_ACCEPT event and starts receiving at once.
 * Returns 0 and sets *@out, or -EINVAL (bad address), -EADDRINUSE, ...
 */
int zc_listen(zc_ctx *ctx, const char *addr, unsigned flags, zc_handle *out);

/**
 * Connect to @addr ("host:port"). Returns 0 and sets *@out at once; the
 * connection is reported by ZC_EV_CONNECTED (then it receives) or by
 * ZC_EV_ERROR with the reason (e.g. -ECONNREFUSED).
 */
int zc_connect(zc_ctx *ctx, const char *addr, zc_handle *out);

/**
 * zc_connect() with @flags: 0 or ZC_PAGE_ALIGNED. Returns as zc_connect(),
 * or -EINVAL for an unknown flag.
 */
int zc_connect_ex(zc_ctx *ctx, const char *addr, unsigned flags, zc_handle *out);

/** The local port of a listener or connection, or a negative errno. */
int zc_local_port(zc_ctx *ctx, zc_handle h);

/**
 * Attach an application pointer to a handle; events on it carry it in
 * zc_event.user. For an accepted connection, set it when its ZC_EV_ACCEPT
 * arrives: zc_wait() ends its batch after an ACCEPT event, so every later
 * event of the connection carries the pointer. Returns 0 or -EBADF.
 */
int zc_set_user(zc_ctx *ctx, zc_handle h, void *user);

/**
 * Send up to @len bytes (a copying send: the kernel copies them and
 * @buf is free again on return). Returns the number of bytes taken, which
 * may be fewer than @len, or -EAGAIN when none could be taken now; in both
 * short cases one ZC_EV_WRITABLE event follows when more can be taken.
 * Other errors: -EBADF (not a live connection), -EPIPE, -ECONNRESET,
 * -ENOTCONN (not connected yet).
 */
ssize_t zc_send(zc_ctx *ctx, zc_handle conn, const void *buf, size_t len);

/**
 * Send without copying: the kernel sends from @buf itself (MSG_ZEROCOPY),
 * so @buf stays the kernel's after the call returns. Returns the number of
 * bytes taken (1 .. @len), or -EAGAIN and the errors of zc_send(), or
 * -EINVAL (@buf NULL or @len 0). Short or -EAGAIN: one ZC_EV_WRITABLE
 * follows, as for zc_send().
 *
 * Each call that takes bytes is followed by exactly one ZC_EV_SEND_DONE
 * event carrying @tag (and in zc_event.bytes the bytes taken): from then
 * on, and not before, the application may write to or free those bytes
 * of @buf. SEND_DONE events of one connection may come in any order.
 * Sends shorter than zc_config.zerocopy_min (default ZC_SEND_ZEROCOPY_MIN)
 * bytes are copied (zero copy costs more than it saves there, see README) and their SEND_DONE is
 * queued at once, with res ZC_SEND_COPIED. res is ZC_SEND_COPIED too when
 * the kernel had to copy after all (e.g. over loopback, where the
 * receiving socket may not keep the sender's pages).
 *
 * Ownership: @buf[0 .. returned) belongs to the kernel until its
 * SEND_DONE. zc_close() or zc_abort() with sends outstanding emits no
 * SEND_DONE for them; wait for them first (e.g. after zc_shutdown()),
 * or keep the buffers until zc_ctx_destroy() has returned.
 */
ssize_t zc_send_zerocopy(zc_ctx *ctx, zc_handle conn, const void *buf, size_t len,
			 uint64_t tag);

/** The default zc_config.zerocopy_min (see README). */
#define ZC_SEND_ZEROCOPY_MIN (16u * 1024)
/** zc_event.res of ZC_EV_SEND_DONE: the kernel copied the data. */
#define ZC_SEND_COPIED 1

/**
 * Shut down one or both directions of a connection (SHUT_RD, SHUT_WR or
 * SHUT_RDWR as for shutdown(2)). Returns 0, -EBADF, -EINVAL, or -ENOTCONN
 * (not connected yet: nothing is changed).
 */
int zc_shutdown(zc_ctx *ctx, zc_handle conn, int how);

/**
 * Close a listener or connection. The handle is invalid afterwards; no
 * event names it again. Pieces already delivered stay valid until
 * released. Data already passed to zc_send() is still delivered, then the
 * peer sees an orderly end of stream. Returns 0 or -EBADF.
 */
int zc_close(zc_ctx *ctx, zc_handle h);

/**
 * Close a connection with a reset (RST) instead of an orderly end: the
 * peer sees an error, not a stream that merely ended early. Unsent data
 * is discarded. Otherwise as zc_close(). Returns 0 or -EBADF.
 */
int zc_abort(zc_ctx *ctx, zc_handle conn);

/* ------------------------------------------------------------------ */
/* Events and pieces                                                   */
/* ------------------------------------------------------------------ */

/**
 * A piece of received payload. @data points into the pool, or, with the
 * mmap engine, into the read-only mapping area (never write to it); it is the
 * application's to read from the event that delivers it until it passes
 * the piece to zc_release(), and zcnet does not touch it meanwhile.
 * Treat @ref as opaque: it lets zc_release() tell a live piece from a
 * stale or forged one. The struct itself may be copied freely.
 */
struct zc_piece {
	const void *data;
	size_t len;
	uint64_t ref;
};

enum zc_event_type {
	ZC_EV_ACCEPT = 1,    /**< @conn accepted on @listener */
	ZC_EV_CONNECTED = 2, /**< zc_connect() finished */
	ZC_EV_DATA = 3,      /**< @npieces pieces, @bytes bytes, in order */
	ZC_EV_EOF = 4,       /**< the peer will send no more (FIN) */
	ZC_EV_ERROR = 5,     /**< @res: negative errno; receiving stopped */
	ZC_EV_WRITABLE = 6,  /**< zc_send() can take more */
	ZC_EV_TAKEN = 7,     /**< zc_take() done: @cookie holds @bytes */
	ZC_EV_WRITTEN = 8,   /**< zc_cookie_write() done: @bytes written */
	ZC_EV_SEND_DONE = 9, /**< a zc_send_zerocopy() buffer is free: @tag,
	                          @bytes; @res 0 or ZC_SEND_COPIED */
};

/** One completion. */
struct zc_event {
	enum zc_event_type type;
	int res;                /**< ZC_EV_ERROR: the negative errno */
	zc_handle conn;         /**< the connection; ZC_EV_WRITTEN: 0 once
	                             it has been closed */
	zc_handle listener;     /**< ZC_EV_ACCEPT: the listener */
	void *user;             /**< zc_set_user() of @conn */
	zc_cookie cookie;       /**< ZC_EV_TAKEN, ZC_EV_WRITTEN: the cookie */
	uint64_t offset;        /**< ZC_EV_DATA, ZC_EV_TAKEN: stream offset of
	                             the first byte */
	size_t bytes;           /**< ZC_EV_DATA: sum of the pieces' lengths;
	                             ZC_EV_TAKEN, ZC_EV_WRITTEN: bytes */
	unsigned npieces;       /**< ZC_EV_DATA: entries in @pieces */
	/**
	 * ZC_EV_DATA: the pieces, in stream order. This array is zcnet's and
	 * is valid until the next zc_wait() on the context; copy the structs
	 * to keep them longer. Every piece must be released exactly once.
	 */
	const struct zc_piece *pieces;
	uint64_t tag;           /**< ZC_EV_SEND_DONE: the tag of the send */
};

/**
 * Wait for events. Runs the engine (accepts, receives, re-arms stalled
 * receives after releases) and fills up to @max events into @evs.
 * @timeout_ms: -1 waits for ever, 0 only looks, >0 waits that long.
 * Returns the number of events (0 on time-out) or a negative errno
 * (-EINVAL for a NULL array or @max 0, -EINTR, -ENOMEM).
 * -ENOMEM: zcnet could not allocate memory to queue an event, so that
 * event (bytes, an end, a cookie) is lost and the context is broken: it
 * queues nothing more, delivers what it had queued before the loss, then
 * every zc_wait() returns -ENOMEM. Release what you hold, close or abort
 * the connections (zc_close() then resets them too, so that no peer takes
 * a cut stream for a whole one) and destroy the context.
 * Events of one connection come in order: ACCEPT or CONNECTED first, then
 * DATA in stream order, then at most one EOF or ERROR.
 */
int zc_wait(zc_ctx *ctx, struct zc_event *evs, unsigned max, int timeout_ms);

/**
 * Give a piece back (to the pool, or for a mapped piece, to the mapping
 * area: its pages are unmapped in batches). Pieces may be released in
 * any order and after their connection closed. When every piece is held, receiving
 * stops (TCP flow control holds the senders back, nothing is dropped) and
 * resumes by itself once pieces come back.
 * Returns 0, or -EINVAL (@p NULL or not a piece of this pool), or
 * -EALREADY (the piece was already released).
 */
int zc_release(zc_ctx *ctx, const struct zc_piece *p);

/* ------------------------------------------------------------------ */
/* Cookies: received bytes moved on without entering the application   */
/* ------------------------------------------------------------------ */

/**
 * Most bytes one cookie holds. A cookie is a kernel pipe; its size is
 * bounded by fs.pipe-max-size (1 MiB by default). Take larger ranges as
 * several cookies.
 */
#define ZC_COOKIE_MAX (1u << 20)

/**
 * Detach the next @len bytes (1 .. ZC_COOKIE_MAX) of @conn's stream as a
 * cookie, without copying them into the application. "Next" counts from
 * what the application has been given (the DATA and TAKEN events zc_wait()
 * has returned): bytes already on their way to it as DATA events come
 * first and count against @len, so the cookie may be shorter, even empty. The bytes are taken
 * in stream order: every DATA event for earlier bytes comes before the
 * ZC_EV_TAKEN event, and later DATA events start after the cookie's last
 * byte; pieces and takes may be mixed freely. After ZC_EV_TAKEN the
 * connection receives into pieces again only from the next zc_wait() on,
 * so a zc_take() made while handling the event continues exactly where the
 * cookie ended, with no pieces in between. *@out names the cookie at
 * once; ZC_EV_TAKEN reports, in @bytes, how many it holds: @len, or fewer
 * at the end of the stream (an EOF event follows) or when the pipe ran out
 * of room first (it holds a fragment per slot, so tiny segments fill it
 * early; seen at once, or within 0.2 s when it fills while the take
 * waits; take again for the rest),
 * or res < 0 on error (the
 * event still names the cookie, which is then already freed). One take at a time per connection:
 * a take is pending from zc_take() until zc_wait() returns its ZC_EV_TAKEN,
 * and so is its cookie (busy for zc_cookie_peek() and zc_cookie_write()).
 * zc_close() or zc_abort() of the connection meanwhile frees the cookie.
 * A take made after the connection's EOF or ERROR was queued, before
 * zc_wait() returned it, gets an empty cookie, reported after that event.
 * Returns 0, -EBADF, -EINVAL (@len out of range, @out NULL), -EBUSY (a
 * take is already pending), -ENOMEM / -EMFILE (no pipe for the cookie).
 */
int zc_take(zc_ctx *ctx, zc_handle conn, size_t len, zc_cookie *out);

/**
 * Copy the first bytes of a taken cookie (up to @len) into @buf, e.g. to
 * look at a header; the cookie keeps all its bytes. These bytes count as
 * copied in the statistics. Returns the number of bytes copied, -EBADF (no
 * such cookie), -EBUSY (not taken yet, or being written), -EINVAL.
 */
ssize_t zc_cookie_peek(zc_ctx *ctx, zc_cookie c, void *buf, size_t len);

/* zc_cookie_write() flags */
/** fdatasync(@fd) before reporting done; @fd must be a file or block device */
#define ZC_WRITE_DSYNC (1u << 0)

/**
 * Write a taken cookie's bytes to @fd: a file at @offset (>= 0), or, with
 * @offset -1, a socket, pipe or file at its current position. The kernel
 * moves the bytes (splice); the application's memory is not involved,
 * except for O_DIRECT files whose pages the payload does not line up with:
 * those bytes go through a small aligned bounce buffer (counted as
 * copied), padded to the block size, and the file is then truncated to
 * its exact size. Partial writes are resumed by zcnet. ZC_EV_WRITTEN
 * reports the bytes written (res 0) or the error (res < 0); either way the
 * cookie is gone afterwards. @fd must stay open until then.
 * Returns 0, -EBADF (no such cookie), -EBUSY (not taken yet, or already
 * being written), -EINVAL (also ZC_WRITE_DSYNC to a pipe, socket or other
 * special file, which cannot be synced: nothing is written then).
 */
int zc_cookie_write(zc_ctx *ctx, zc_cookie c, int fd, int64_t offset,
		    unsigned flags);

/**
 * Free a cookie without writing it; its bytes are dropped. A cookie whose
 * take or write is still in flight (a take until zc_wait() returns its
 * ZC_EV_TAKEN) is freed when that ends (and no event names it).
 * Returns 0 or -EBADF.
 */
int zc_cookie_free(zc_ctx *ctx, zc_cookie c);

/**
 * Stop (@pause non-zero) or start again (0) receiving @conn's bytes into
 * pieces. While paused, the bytes wait in the kernel's socket buffer and
 * TCP flow control holds the sender back; zc_take() works as usual. An
 * application that moves a stream through cookies pauses while it has as
 * many cookies in flight as it wants, so that the next bytes wait for its
 * next take instead of arriving as DATA events (copies). A receive already
 * in flight may still deliver DATA events after the call. A paused
 * connection reports the peer's EOF or an error only through a take or
 * once started again. Returns 0 or -EBADF (not a connection).
 */
int zc_pause(zc_ctx *ctx, zc_handle conn, int pause);

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

/**
 * Counters. bytes_copied counts payload copied by zcnet's own choice on
 * the receive path: 0 for the uring and socket engines (their one copy,
 * from the kernel's socket buffer into the piece, is the only way they
 * have); with the mmap engine, every byte that was not mapped
 * (bytes_received = bytes_mapped + bytes_copied). Cookie bytes peeked or
 * passed through an O_DIRECT bounce buffer count too.
 */
struct zc_stats {
	uint64_t bytes_received;     /**< payload delivered in DATA events */
	uint64_t bytes_copied;       /**< copied by zcnet on the receive path */
	uint64_t pieces_outstanding; /**< delivered and not yet released */
	uint64_t stalls;             /**< times a receive found no free piece and
	                                  paused until pieces were released */
	uint64_t pieces_total;       /**< context: pieces in the pool (the mmap
	                                  engine's mapped pieces come on top) */
	uint64_t connections;        /**< context: connections open now */
	uint64_t accepted;           /**< context: connections accepted so far */
	uint64_t bytes_taken;        /**< taken into cookies */
	uint64_t bytes_written;      /**< written out of cookies */
	uint64_t cookies_alive;      /**< context: cookies not yet written or freed */
	uint64_t bytes_mapped;       /**< mmap engine: payload delivered as
	                                  mapped pages, not copied */
	uint64_t waits_gathered;     /**< context: waits that gathered data
	                                  for up to zc_config.batch_usec
	                                  (bulk traffic) */
};

/** Statistics of the whole context. Returns 0 or -EINVAL. */
int zc_ctx_stats(const zc_ctx *ctx, struct zc_stats *st);

/**
 * Statistics of one connection (pieces_total, connections and accepted
 * are 0). Returns 0, -EINVAL or -EBADF.
 */
int zc_conn_stats(const zc_ctx *ctx, zc_handle conn, struct zc_stats *st);

/** A static text naming a (negative or positive) errno value. */
const char *zc_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* ZCNET_H */
