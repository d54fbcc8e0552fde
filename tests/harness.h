/*
 * harness.h - shared pieces of the zcnet tests: engine configurations,
 * deadlines, loopback peers that send the pattern stream, and a receive
 * loop that checks every event and verifies every byte at delivery.
 *
 * The receive loop never calls cmocka's assert_*() itself (it also runs
 * on threads of their own): it records the first failure in
 * h_recv.fail, and the test checks it with h_assert_recv_ok() once its
 * threads are joined.
 */
#ifndef ZCNET_TEST_HARNESS_H
#define ZCNET_TEST_HARNESS_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "zcnet.h"
#include "pattern.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define GiB (1024ull * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* Set-up, time, randomness                                            */
/* ------------------------------------------------------------------ */

/*
 * Common start of every test program: ignores SIGPIPE, arms alarm(@alarm_s)
 * as the last guard against a hang, and returns argv[1], the engine
 * configuration (exits with a usage message when @need_engine and it is
 * missing or unknown).
 */
const char *h_setup(int argc, char **argv, bool need_engine, unsigned alarm_s);

/* The engine configurations the integration tests run under. */
extern const char *const h_engines[];

/*
 * Fill @cfg for engine configuration @name (one of h_engines): sets engine,
 * flags and batch_usec, keeps the other fields (tests/engine_config.h).
 * Returns 0, or -1 for an unknown name.
 */
int h_engine_config(const char *name, struct zc_config *cfg);

/*
 * Create a context for configuration @name on top of @base (NULL: the
 * defaults) and check that it runs the engine and features asked for.
 * Returns 0, or a negative errno from zc_ctx_create(), or -EPROTO when the
 * context runs something else (the reason is printed).
 */
int h_ctx_create(const char *name, const struct zc_config *base, zc_ctx **out);

/* zc_wait(), again after -EINTR (which zc_wait() may return, e.g. when
 * io_uring task work interrupts a wait). */
int h_wait(zc_ctx *ctx, struct zc_event *evs, unsigned max, int timeout_ms);

/* Whether the word @feature appears in zc_engine_features(@ctx). */
bool h_has_feature(const zc_ctx *ctx, const char *feature);

uint64_t h_now_ms(void);
/* An absolute deadline @ms milliseconds from now, and its test. */
uint64_t h_deadline_ms(uint64_t ms);
bool h_expired(uint64_t deadline);

/* splitmix64 */
uint64_t h_rand(uint64_t *state);
/* A seed for the random choices of a test: $ZC_TEST_SEED or the clock;
 * printed so that a failing run can be repeated. */
uint64_t h_test_seed(const char *what);

/* Raise RLIMIT_NOFILE to at least @need descriptors. 0 or -errno. */
int h_raise_nofile(unsigned need);

/* A 64-bit hash of a buffer (to see that a held piece stayed intact). */
uint64_t h_hash(const void *data, size_t len);

/* ------------------------------------------------------------------ */
/* Peers: plain blocking sockets of the Linux TCP stack                */
/* ------------------------------------------------------------------ */

/* Connect a blocking TCP socket to 127.0.0.1 (AF_INET) or ::1 (AF_INET6)
 * @port, with 60 s send and receive time-outs. fd or -errno. */
int h_peer_connect(int family, uint16_t port);

/* Write pattern bytes [@off, @off + @len) of stream @seed to @fd, using
 * @buf (@bufsize bytes) as scratch. 0 or -errno. */
int h_write_pattern(int fd, uint64_t seed, uint64_t off, uint64_t len,
		    void *buf, size_t bufsize);

/* Whether [::1] can be used here. */
bool h_have_ipv6(void);

/* How a sender ends each of its connections. */
enum h_end {
	H_END_CLOSE = 0, /* close() after the last byte */
	H_END_RESET,     /* SO_LINGER {1, 0} then close(): an RST */
	H_END_READBACK,  /* shutdown(SHUT_WR), read and verify the reply up
			    to EOF, then close() */
};

/*
 * A thread that opens @nconns connections to the loopback @port at once
 * and sends @bytes of pattern on each (stream seeds[i], or seed + i),
 * round robin in @chunk-sized writes, then ends them as @end says.
 */
struct h_sender {
	int family;            /* AF_INET (also when 0) or AF_INET6 */
	uint16_t port;
	unsigned nconns;       /* 0 is taken as 1 */
	uint64_t bytes;        /* per connection */
	const uint64_t *seeds; /* NULL: seed + i */
	uint64_t seed;
	size_t chunk;          /* 0: 256 KiB */
	enum h_end end;
	uint64_t reply_bytes;  /* H_END_READBACK: the reply's expected length */

	/* results, valid after h_sender_join() */
	int err;               /* 0 or -errno */
	char msg[256];         /* what went wrong */
	uint64_t sent;         /* bytes written, all connections */
	uint64_t reply_got;    /* H_END_READBACK: verified reply bytes */

	pthread_t tid;
	bool started;
	int done;              /* set (atomically) when the thread ends */
};

int h_sender_start(struct h_sender *s);
/* Join (aborts the process if the thread has not ended within 120 s).
 * Returns s->err. */
int h_sender_join(struct h_sender *s);
bool h_sender_done(struct h_sender *s);

/* ------------------------------------------------------------------ */
/* A zcnet sender on a thread of its own: zc_send_zerocopy()            */
/* ------------------------------------------------------------------ */

/*
 * Opens a connection with zc_connect_ex(@flags) from a context of its own
 * (engine @engine) and sends @bytes of pattern stream @seed with
 * zc_send_zerocopy() from @nbuf buffers of @chunk bytes, refilling a
 * buffer only after the SEND_DONE events of all its sends. Checks that
 * every send gets exactly one SEND_DONE with its tag and byte count.
 * Then shuts down its side and waits for the receiver to close.
 */
struct h_zsender {
	uint16_t port;
	uint64_t bytes;
	uint64_t seed;
	size_t chunk;          /* 0: 256 KiB */
	unsigned nbuf;         /* 0: 8 */
	unsigned flags;        /* zc_connect_ex() flags, e.g. ZC_PAGE_ALIGNED */
	enum zc_engine_kind engine; /* 0 (auto) is fine */

	/* results, valid after h_zsender_join() */
	int err;
	char msg[256];
	uint64_t sent;         /* bytes taken by zc_send_zerocopy() */
	uint64_t sends;        /* calls that took bytes */
	uint64_t done_events;  /* SEND_DONE events */
	uint64_t done_bytes;
	uint64_t done_copied;  /* of those, with res ZC_SEND_COPIED */
	unsigned max_inflight; /* most sends in flight at once */

	pthread_t tid;
	bool started;
	int done;
};

int h_zsender_start(struct h_zsender *z);
int h_zsender_join(struct h_zsender *z);

#define h_assert_zsender_ok(z)                                           \
	do {                                                             \
		if ((z)->err)                                            \
			fail_msg("zc sender: %s (%d)", (z)->msg, (z)->err); \
	} while (0)

/*
 * bytes_copied as engine configuration @engine allows: 0, or with mmap,
 * whatever was not mapped (bytes_copied + bytes_mapped = bytes_received).
 */
#define h_assert_copied(engine, st)                                          \
	do {                                                                 \
		if (!strcmp((engine), "mmap"))                               \
			assert_int_equal((st).bytes_copied + (st).bytes_mapped, \
					 (st).bytes_received);               \
		else                                                         \
			assert_int_equal((st).bytes_copied, 0);              \
	} while (0)

/* Whether @ctx runs an engine that may copy (and count it): mmap. */
bool h_ctx_may_copy(const zc_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Sending from a zcnet connection                                     */
/* ------------------------------------------------------------------ */

/* Sends pattern stream @seed, @total bytes, on @h with zc_send(). */
struct h_tx {
	zc_handle h;
	uint64_t seed;
	uint64_t total;
	uint64_t off;   /* bytes taken so far */
	bool blocked;   /* a short send: waiting for ZC_EV_WRITABLE */
	unsigned nshort;
	void *buf;
};

/* Send until done or short. 1: all sent; 0: blocked (call again on
 * ZC_EV_WRITABLE); negative errno from zc_send(). */
int h_tx_pump(zc_ctx *ctx, struct h_tx *tx);
void h_tx_fini(struct h_tx *tx);

/* ------------------------------------------------------------------ */
/* The receive loop                                                    */
/* ------------------------------------------------------------------ */

#define H_POLL (-1)

enum h_conn_state { H_OPEN = 0, H_EOF, H_ERROR, H_CLOSED };

/* A connection as the tests see it. */
struct h_conn {
	zc_handle h;
	bool accepted;         /* ZC_EV_ACCEPT seen */
	bool connected;        /* ZC_EV_CONNECTED seen */
	bool outgoing;         /* made by zc_connect() */
	enum h_conn_state state;
	enum h_conn_state end; /* H_EOF or H_ERROR once it ended */
	int err;               /* res of its ZC_EV_ERROR */
	struct pat_verifier v;
	uint64_t bytes;        /* received = the next expected offset */
	uint64_t ndata;        /* DATA events */
	uint64_t held;         /* its pieces held by the test now */
	bool bad;              /* the pattern did not match */
	unsigned user_batch;   /* zc_set_user() was called in this batch */
	void *app;             /* for the test */
};

/* A piece the test holds on to. */
struct h_held {
	struct zc_piece p;
	struct h_conn *c;
	uint64_t hash;
	uint64_t until;        /* for the test: e.g. when to release it */
};

struct h_recv {
	zc_ctx *ctx;

	/* set by the test before use (all optional) */
	zc_handle listener;    /* ACCEPT must name it (0: any) */
	size_t piece_size;     /* no piece may be longer (0: unchecked) */
	const struct zc_region *regions; /* pieces must lie on piece
					    boundaries in these */
	unsigned nregions;
	bool keep_open;        /* leave connections open at EOF / ERROR */
	int wait_ms;           /* zc_wait() time-out per step: 0 is taken
				  as 100, H_POLL as 0 (only look) */
	/* Called for every verified piece; return true to keep it (call
	 * h_hold() then), false to have it released at once. */
	bool (*keep)(struct h_recv *r, struct h_conn *c, const struct zc_piece *p);
	/* Called for every event, after the loop's own checks. */
	void (*on_event)(struct h_recv *r, struct h_conn *c, const struct zc_event *ev);
	/* Called after every zc_wait(). */
	void (*tick)(struct h_recv *r, int nevents);
	void *arg;

	/* state */
	struct h_conn **conns;
	size_t nconns, capconns;
	size_t *tab;           /* open addressing: index + 1 into conns */
	size_t tabcap;
	struct h_held *held;
	size_t nheld, capheld;
	unsigned batch;
	unsigned naccepted, nconnected, neof, nerror, nended, nwritable;
	uint64_t bytes;        /* all DATA events */
	uint64_t nevents;
	unsigned target;       /* for h_recv_until_ended() */
	int nfail;
	char fail[512];        /* the first failure */
};

void h_recv_init(struct h_recv *r, zc_ctx *ctx);
/* Release the pieces still held (unless @ctx_gone) and free everything. */
void h_recv_fini(struct h_recv *r, bool ctx_gone);

/* Record a failure (the first one is kept in r->fail). */
void h_failf(struct h_recv *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One zc_wait() (time-out r->wait_ms) and the checks of its events.
 * Returns the number of events, or a negative errno. */
int h_recv_step(struct h_recv *r);

/* Step until @done(r) is true, a failure is recorded or @timeout_s pass
 * (recorded as a failure). Returns 0 or -1. */
int h_recv_until(struct h_recv *r, bool (*done)(struct h_recv *r),
		 unsigned timeout_s);
/* Step until @n connections have seen EOF or ERROR. */
int h_recv_until_ended(struct h_recv *r, unsigned n, unsigned timeout_s);

/* Track a handle from zc_connect() (and zc_set_user() it). */
struct h_conn *h_recv_add(struct h_recv *r, zc_handle h);
struct h_conn *h_recv_find(struct h_recv *r, zc_handle h);

/* Hold piece @p of @c (from the keep hook) until h_release_held(). */
void h_hold(struct h_recv *r, struct h_conn *c, const struct zc_piece *p,
	    uint64_t until);
/* Release r->held[@i] (checking it is unchanged); the last held piece
 * takes its slot. 0 or the error of zc_release(). */
int h_release_held(struct h_recv *r, size_t i);
void h_release_all(struct h_recv *r);

/* Check the whole context's counters against what the loop saw. */
void h_check_ctx_stats(struct h_recv *r);

#define h_assert_recv_ok(r)                                              \
	do {                                                             \
		if ((r)->nfail)                                          \
			fail_msg("%d failure(s), first: %s", (r)->nfail, \
				 (r)->fail);                             \
	} while (0)

#define h_assert_sender_ok(s)                                            \
	do {                                                             \
		if ((s)->err)                                            \
			fail_msg("sender: %s (%d)", (s)->msg, (s)->err); \
	} while (0)

#endif
