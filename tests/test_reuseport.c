/*
 * test_reuseport.c - several contexts side by side, one per thread, each
 * listening on the same port with ZC_LISTEN_REUSEPORT: the kernel spreads
 * 300 connections over them, every context gets some, every stream is
 * verified, and every context is destroyed cleanly on its own thread.
 *
 * usage: test_reuseport ENGINE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NTHREADS   3
#define NCONNS     300
#define CONN_BYTES (256 * KiB)

static const char *engine;

struct shard {
	pthread_t tid;
	unsigned index;
	int err;                /* set-up failure, -errno */
	int listening;          /* set (atomically) once it listens */
	struct h_recv r;
	struct zc_stats st;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int port;               /* of the first listener, -errno on failure */
	unsigned ended;         /* connections ended, all shards */
	bool stop;
} shared = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false };

static void publish_port(int port)
{
	pthread_mutex_lock(&shared.lock);
	shared.port = port;
	pthread_cond_broadcast(&shared.cond);
	pthread_mutex_unlock(&shared.lock);
}

static int await_port(void)
{
	int port;

	pthread_mutex_lock(&shared.lock);
	while (shared.port == 0)
		pthread_cond_wait(&shared.cond, &shared.lock);
	port = shared.port;
	pthread_mutex_unlock(&shared.lock);
	return port;
}

static bool all_ended(void)
{
	return __atomic_load_n(&shared.ended, __ATOMIC_ACQUIRE) >= NCONNS ||
	       __atomic_load_n(&shared.stop, __ATOMIC_ACQUIRE);
}

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	uint64_t deadline = h_deadline_ms(90000);
	char addr[32];
	zc_ctx *ctx;
	zc_handle l;
	int port, err;

	/* the context is created on the thread that waits on it */
	err = h_ctx_create(engine, NULL, &ctx);
	if (err) {
		sh->err = err;
		__atomic_store_n(&shared.stop, true, __ATOMIC_RELEASE);
		if (sh->index == 0)
			publish_port(err);
		return NULL;
	}
	if (sh->index == 0) {
		err = zc_listen(ctx, "127.0.0.1:0", ZC_LISTEN_REUSEPORT, &l);
		port = err ? err : zc_local_port(ctx, l);
		publish_port(port);
	} else {
		port = await_port();
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		err = port < 0 ? port : zc_listen(ctx, addr, ZC_LISTEN_REUSEPORT, &l);
	}
	if (err || port < 0) {
		sh->err = err ? err : port;
		__atomic_store_n(&shared.stop, true, __ATOMIC_RELEASE);
		zc_ctx_destroy(ctx);
		return NULL;
	}

	h_recv_init(&sh->r, ctx);
	sh->r.listener = l;
	__atomic_store_n(&sh->listening, 1, __ATOMIC_RELEASE);
	while (!all_ended() && !sh->r.nfail) {
		unsigned before = sh->r.nended;

		if (h_expired(deadline)) {
			h_failf(&sh->r, "timed out with %u of %u connections ended",
				__atomic_load_n(&shared.ended, __ATOMIC_ACQUIRE), NCONNS);
			break;
		}
		if (h_recv_step(&sh->r) < 0)
			break;
		__atomic_add_fetch(&shared.ended, sh->r.nended - before, __ATOMIC_ACQ_REL);
	}
	if (sh->r.nfail)
		__atomic_store_n(&shared.stop, true, __ATOMIC_RELEASE);
	h_check_ctx_stats(&sh->r);
	zc_ctx_stats(ctx, &sh->st);
	zc_ctx_destroy(ctx);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_reuseport_contexts_share_one_port(void **state)
{
	struct shard shards[NTHREADS];
	struct h_sender s = { .nconns = NCONNS, .bytes = CONN_BYTES,
			      .chunk = 64 * KiB };
	uint64_t seeds[NCONNS], got[NCONNS];
	uint64_t rng = h_test_seed("stream seeds");
	unsigned n = 0, eofs = 0;
	int port;

	assert_int_equal(h_raise_nofile(2 * NCONNS + 256), 0);
	for (unsigned i = 0; i < NCONNS; i++)
		seeds[i] = h_rand(&rng);
	memset(shards, 0, sizeof(shards));
	for (unsigned i = 0; i < NTHREADS; i++) {
		shards[i].index = i;
		assert_int_equal(pthread_create(&shards[i].tid, NULL, shard_main,
						&shards[i]), 0);
	}
	port = await_port();
	if (port > 0) {
		/* wait until every shard listens: a connection made before
		 * would all go to the first one */
		for (uint64_t dl = h_deadline_ms(5000); !h_expired(dl);) {
			unsigned listening = 0;

			for (unsigned i = 0; i < NTHREADS; i++)
				listening += __atomic_load_n(&shards[i].listening,
							     __ATOMIC_ACQUIRE);
			if (listening == NTHREADS || all_ended())
				break;
			usleep(1000);
		}
		s.port = (uint16_t)port;
		s.seeds = seeds;
		assert_int_equal(h_sender_start(&s), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(shards[i].tid, NULL);
	h_sender_join(&s);

	assert_true(port > 0);
	h_assert_sender_ok(&s);
	for (unsigned i = 0; i < NTHREADS; i++) {
		struct shard *sh = &shards[i];

		assert_int_equal(sh->err, 0);
		h_assert_recv_ok(&sh->r);
		printf("# context %u: %u connections\n", i, sh->r.naccepted);
		assert_true(sh->r.naccepted > 0);
		assert_int_equal(sh->st.accepted, sh->r.naccepted);
		assert_int_equal(sh->st.connections, 0);
		for (size_t k = 0; k < sh->r.nconns; k++) {
			struct h_conn *c = sh->r.conns[k];

			assert_int_equal(c->bytes, CONN_BYTES);
			assert_false(c->bad);
			assert_true(n < NCONNS);
			got[n++] = c->v.seed;
		}
		eofs += sh->r.neof;
		h_recv_fini(&sh->r, true);
	}
	assert_int_equal(n, NCONNS);
	assert_int_equal(eofs, NCONNS);
	qsort(seeds, NCONNS, sizeof(*seeds), cmp_u64);
	qsort(got, NCONNS, sizeof(*got), cmp_u64);
	for (unsigned i = 0; i < NCONNS; i++)
		assert_int_equal(got[i], seeds[i]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reuseport_contexts_share_one_port),
	};

	engine = h_setup(argc, argv, true, 110);
	return cmocka_run_group_tests_name(engine, tests, NULL, NULL);
}
