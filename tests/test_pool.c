/*
 * test_pool.c - the pool's bookkeeping (src/pool.h): how regions are
 * carved into pieces, which configurations are refused, and the life of
 * a piece: FREE -> POSTED -> HELD -> POSTED, with stale and forged
 * releases recognised.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pool.h"

/* A base address for regions whose memory is never touched. */
#define FAKE_BASE ((void *)(uintptr_t)0x100000000ull)

static struct zc_config cfg_regions(size_t piece, const struct zc_region *r,
				    unsigned n)
{
	struct zc_config cfg;

	zc_config_init(&cfg);
	cfg.piece_size = piece;
	cfg.regions = r;
	cfg.nregions = n;
	return cfg;
}

static struct zc_config cfg_alloc(size_t piece, size_t pool)
{
	struct zc_config cfg;

	zc_config_init(&cfg);
	cfg.piece_size = piece;
	cfg.pool_size = pool;
	return cfg;
}

static void test_config_init_defaults(void **state)
{
	struct zc_config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	zc_config_init(&cfg);
	assert_int_equal(cfg.engine, ZC_ENGINE_AUTO);
	assert_int_equal(cfg.piece_size, 64 * KiB);
	assert_null(cfg.regions);
	assert_int_equal(cfg.nregions, 0);
	assert_int_equal(cfg.pool_size, 16 * MiB);
	assert_int_equal(cfg.flags, 0);
}

static void test_one_region_carved_tail_unused(void **state)
{
	const size_t piece = 4096;
	size_t len = 10 * piece + 100;
	char *mem = malloc(len);
	struct zc_region reg = { mem, len };
	struct zc_config cfg = cfg_regions(piece, &reg, 1);
	struct zc_pool p;

	assert_non_null(mem);
	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, 10);
	assert_int_equal(p.nfree, 10);
	assert_int_equal(p.held, 0);
	assert_int_equal(p.nregions, 1);
	assert_int_equal(p.regions[0].first, 0);
	assert_int_equal(p.regions[0].count, 10);
	assert_false(p.owns_memory);
	for (uint32_t i = 0; i < 10; i++) {
		assert_ptr_equal(zc_pool_addr(&p, i), mem + i * piece);
		assert_int_equal(p.state[i], PIECE_FREE);
		assert_int_equal(p.gen[i], 0);
	}
	zc_pool_fini(&p);
	free(mem);
}

static void test_odd_alignment_region(void **state)
{
	/* Any alignment is allowed: pieces start at base + k * piece_size. */
	const size_t piece = 1000;
	char *mem = malloc(5 * piece + 3);
	struct zc_region reg = { mem + 3, 5 * piece };
	struct zc_config cfg = cfg_regions(piece, &reg, 1);
	struct zc_pool p;

	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_ptr_equal(zc_pool_addr(&p, i), mem + 3 + i * piece);
	zc_pool_fini(&p);
	free(mem);
}

static void test_several_regions_carved_in_order(void **state)
{
	const size_t piece = 512;
	char *a = malloc(3 * piece + piece / 2);
	char *b = malloc(1 * piece);
	char *c = malloc(7 * piece + piece - 1);
	struct zc_region regs[] = {
		{ a, 3 * piece + piece / 2 }, /* 3 pieces, half a piece unused */
		{ b, 1 * piece },             /* exactly 1 */
		{ c, 7 * piece + piece - 1 }, /* 7, almost a piece unused */
	};
	struct zc_config cfg = cfg_regions(piece, regs, 3);
	struct zc_pool p;
	uint32_t idx;

	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, 11);
	assert_int_equal(p.nregions, 3);
	assert_int_equal(p.regions[0].first, 0);
	assert_int_equal(p.regions[0].count, 3);
	assert_int_equal(p.regions[1].first, 3);
	assert_int_equal(p.regions[1].count, 1);
	assert_int_equal(p.regions[2].first, 4);
	assert_int_equal(p.regions[2].count, 7);
	for (uint32_t i = 0; i < 3; i++)
		assert_ptr_equal(zc_pool_addr(&p, i), a + i * piece);
	assert_ptr_equal(zc_pool_addr(&p, 3), b);
	for (uint32_t i = 4; i < 11; i++)
		assert_ptr_equal(zc_pool_addr(&p, i), c + (i - 4) * piece);

	/* The free stack hands pieces out in index (address) order. */
	for (uint32_t i = 0; i < 11; i++) {
		assert_int_equal(zc_pool_get(&p, &idx), 0);
		assert_int_equal(idx, i);
		assert_int_equal(p.state[idx], PIECE_POSTED);
	}
	assert_int_equal(zc_pool_get(&p, &idx), -ENOBUFS);
	zc_pool_fini(&p);
	free(a);
	free(b);
	free(c);
}

static void test_many_regions_addresses(void **state)
{
	/* Enough regions for the region look-up to take several steps. */
	enum { NREG = 37 };
	struct zc_region regs[NREG];
	uint32_t want = 0;
	struct zc_config cfg;
	struct zc_pool p;
	size_t piece = 64;

	for (unsigned i = 0; i < NREG; i++) {
		regs[i].base = (char *)FAKE_BASE + (uintptr_t)i * 1000000;
		regs[i].len = piece * (1 + i % 5) + i % 7;
	}
	cfg = cfg_regions(piece, regs, NREG);
	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	for (unsigned i = 0; i < NREG; i++) {
		assert_int_equal(p.regions[i].first, want);
		for (uint32_t k = 0; k < 1 + i % 5; k++)
			assert_ptr_equal(zc_pool_addr(&p, want + k),
					 (char *)regs[i].base + k * piece);
		want += 1 + i % 5;
	}
	assert_int_equal(p.npieces, want);
	zc_pool_fini(&p);
}

static void test_pool_allocates_its_memory(void **state)
{
	const size_t piece = 64 * KiB;
	struct zc_config cfg = cfg_alloc(piece, MiB + 100);
	struct zc_pool p;
	char *base;

	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, 16);
	assert_true(p.owns_memory);
	base = zc_pool_addr(&p, 0);
	assert_non_null(base);
	for (uint32_t i = 0; i < 16; i++) {
		char *a = zc_pool_addr(&p, i);

		assert_ptr_equal(a, base + i * piece);
		memset(a, (int)i, piece); /* mapped and writable */
	}
	zc_pool_fini(&p);
}

static void test_largest_piece_size_accepted(void **state)
{
	struct zc_region reg = { FAKE_BASE, GiB + 5 };
	struct zc_config cfg = cfg_regions(GiB, &reg, 1);
	struct zc_pool p;

	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, 1);
	zc_pool_fini(&p);
}

static void test_invalid_configs_refused(void **state)
{
	struct zc_region reg = { FAKE_BASE, 64 * KiB };
	struct zc_region small[] = { { FAKE_BASE, 8 * KiB }, { FAKE_BASE, 100 } };
	struct zc_region nobase = { NULL, 64 * KiB };
	struct zc_config cfg;
	struct zc_pool p;

	cfg = cfg_alloc(0, MiB);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_alloc(GiB + 1, 2 * GiB);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_alloc(SIZE_MAX, SIZE_MAX);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_regions(0, &reg, 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_regions(GiB + 1, &reg, 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);

	/* a pool smaller than one piece */
	cfg = cfg_alloc(64 * KiB, 64 * KiB - 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_alloc(64 * KiB, 0);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	/* a region smaller than one piece, first or later */
	cfg = cfg_regions(64 * KiB + 1, &reg, 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_regions(4 * KiB, small, 2);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	/* regions given but none, or one without memory */
	cfg = cfg_regions(4 * KiB, &reg, 0);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);
	cfg = cfg_regions(4 * KiB, &nobase, 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -EINVAL);

	/* a failed init leaves a pool that fini accepts */
	zc_pool_fini(&p);
}

static void test_too_many_pieces_refused(void **state)
{
	struct zc_region reg = { FAKE_BASE, ZC_MAX_PIECES + 1 };
	struct zc_region two[] = {
		{ FAKE_BASE, ZC_MAX_PIECES / 2 * 64 },
		{ (char *)FAKE_BASE + 4 * MiB, (ZC_MAX_PIECES / 2 + 1) * 64 },
	};
	struct zc_config cfg;
	struct zc_pool p;

	cfg = cfg_alloc(1, ZC_MAX_PIECES + 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -E2BIG);
	cfg = cfg_alloc(4 * KiB, (size_t)4 * KiB * (ZC_MAX_PIECES + 1));
	assert_int_equal(zc_pool_init(&p, &cfg), -E2BIG);
	cfg = cfg_regions(1, &reg, 1);
	assert_int_equal(zc_pool_init(&p, &cfg), -E2BIG);
	cfg = cfg_regions(64, two, 2);
	assert_int_equal(zc_pool_init(&p, &cfg), -E2BIG);

	/* exactly the limit is fine, also when a tail is left over */
	cfg = cfg_alloc(1, ZC_MAX_PIECES);
	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, ZC_MAX_PIECES);
	zc_pool_fini(&p);
	two[1].len = ZC_MAX_PIECES / 2 * 64 + 63;
	cfg = cfg_regions(64, two, 2);
	assert_int_equal(zc_pool_init(&p, &cfg), 0);
	assert_int_equal(p.npieces, ZC_MAX_PIECES);
	zc_pool_fini(&p);
}

static void test_more_regions_than_pieces_allowed(void **state)
{
	/* ZC_MAX_PIECES + 1 regions of one piece each: too many pieces. */
	size_t n = ZC_MAX_PIECES + 1;
	struct zc_region *regs = calloc(n, sizeof(*regs));
	struct zc_config cfg;
	struct zc_pool p;
	uint32_t npieces;
	int over, at;

	assert_non_null(regs);
	for (size_t i = 0; i < n; i++) {
		regs[i].base = (char *)FAKE_BASE + i * 4096;
		regs[i].len = 4096;
	}
	cfg = cfg_regions(4096, regs, (unsigned)n);
	over = zc_pool_init(&p, &cfg);
	cfg.nregions = ZC_MAX_PIECES;
	at = zc_pool_init(&p, &cfg);
	npieces = p.npieces;
	zc_pool_fini(&p);
	free(regs);
	assert_int_equal(over, -E2BIG);
	assert_int_equal(at, 0);
	assert_int_equal(npieces, ZC_MAX_PIECES);
}

static int small_pool(struct zc_pool *p, uint32_t n, size_t piece)
{
	struct zc_config cfg = cfg_alloc(piece, n * piece);

	return zc_pool_init(p, &cfg);
}

static void test_get_put_lifo(void **state)
{
	struct zc_pool p;
	uint32_t a, b, c;

	assert_int_equal(small_pool(&p, 3, 4096), 0);
	assert_int_equal(zc_pool_get(&p, &a), 0);
	assert_int_equal(zc_pool_get(&p, &b), 0);
	assert_int_equal(zc_pool_get(&p, &c), 0);
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(c, 2);
	assert_int_equal(p.nfree, 0);
	assert_int_equal(zc_pool_get(&p, &a), -ENOBUFS);
	zc_pool_put(&p, 1);
	assert_int_equal(p.state[1], PIECE_FREE);
	assert_int_equal(p.nfree, 1);
	assert_int_equal(zc_pool_get(&p, &a), 0);
	assert_int_equal(a, 1);
	assert_int_equal(p.held, 0); /* posted pieces are not held */
	zc_pool_fini(&p);
}

static void test_hand_out_and_take_back(void **state)
{
	struct zc_pool p;
	struct zc_piece pc;
	uint32_t idx, back = 99;

	assert_int_equal(small_pool(&p, 4, 4096), 0);
	assert_int_equal(zc_pool_get(&p, &idx), 0);
	zc_pool_hand_out(&p, idx, 1234, &pc);
	assert_ptr_equal(pc.data, zc_pool_addr(&p, idx));
	assert_int_equal(pc.len, 1234);
	assert_int_equal(p.state[idx], PIECE_HELD);
	assert_int_equal(p.held, 1);
	assert_int_not_equal(p.gen[idx], 0);

	assert_int_equal(zc_pool_take_back(&p, &pc, &back), 0);
	assert_int_equal(back, idx);
	assert_int_equal(p.state[idx], PIECE_POSTED);
	assert_int_equal(p.held, 0);

	/* released twice */
	assert_int_equal(zc_pool_take_back(&p, &pc, &back), -EALREADY);
	assert_int_equal(p.held, 0);
	/* and once more after the engine put it back on the free stack */
	zc_pool_put(&p, idx);
	assert_int_equal(zc_pool_take_back(&p, &pc, &back), -EALREADY);
	assert_int_equal(p.nfree, 4);
	zc_pool_fini(&p);
}

static void test_stale_ref_after_rehandout(void **state)
{
	struct zc_pool p;
	struct zc_piece old, cur;
	uint32_t idx, idx2, back;

	assert_int_equal(small_pool(&p, 1, 4096), 0);
	assert_int_equal(zc_pool_get(&p, &idx), 0);
	zc_pool_hand_out(&p, idx, 100, &old);
	assert_int_equal(zc_pool_take_back(&p, &old, &back), 0);
	zc_pool_put(&p, back);
	assert_int_equal(zc_pool_get(&p, &idx2), 0);
	assert_int_equal(idx2, idx); /* the only piece, handed out again */
	zc_pool_hand_out(&p, idx2, 200, &cur);
	assert_ptr_equal(cur.data, old.data);
	assert_int_not_equal(cur.ref, old.ref);

	/* the old ref names a past hand-out: refused, the piece stays held */
	assert_int_equal(zc_pool_take_back(&p, &old, &back), -EALREADY);
	assert_int_equal(p.state[idx], PIECE_HELD);
	assert_int_equal(p.held, 1);
	assert_int_equal(zc_pool_take_back(&p, &cur, &back), 0);
	assert_int_equal(p.held, 0);
	zc_pool_fini(&p);
}

static void test_forged_pieces_refused(void **state)
{
	struct zc_pool p, q;
	struct zc_piece pc, f, other;
	uint32_t idx, back;
	char local[16];

	assert_int_equal(small_pool(&p, 4, 4096), 0);
	assert_int_equal(small_pool(&q, 4, 4096), 0);
	assert_int_equal(zc_pool_get(&p, &idx), 0);
	zc_pool_hand_out(&p, idx, 4096, &pc);

	assert_int_equal(zc_pool_take_back(&p, NULL, &back), -EINVAL);

	f = pc; /* index past the end */
	f.ref = (pc.ref & ~0xffffffffull) | 4;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f.ref = (pc.ref & ~0xffffffffull) | 0xffffffffu;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f = pc; /* generation 0: never handed out */
	f.ref = pc.ref & 0xffffffffull;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f = pc; /* a generation from the future */
	f.ref = pc.ref + (1ull << 32);
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f = pc; /* a data pointer that is not the piece's */
	f.data = (const char *)pc.data + 1;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f.data = local;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f.data = NULL;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f = pc; /* longer than a piece */
	f.len = 4097;
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	f = pc; /* a piece next to it that was never handed out */
	f.ref = (pc.ref & ~0xffffffffull) | (idx + 1);
	f.data = zc_pool_addr(&p, idx + 1);
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	memset(&f, 0, sizeof(f));
	assert_int_equal(zc_pool_take_back(&p, &f, &back), -EINVAL);
	/* a live piece of another pool with the same index and generation */
	assert_int_equal(zc_pool_get(&q, &idx), 0);
	zc_pool_hand_out(&q, idx, 10, &other);
	assert_int_equal(other.ref, pc.ref);
	assert_int_equal(zc_pool_take_back(&p, &other, &back), -EINVAL);
	assert_int_equal(zc_pool_take_back(&q, &pc, &back), -EINVAL);

	/* none of that disturbed the real pieces */
	assert_int_equal(p.held, 1);
	assert_int_equal(zc_pool_take_back(&p, &pc, &back), 0);
	assert_int_equal(zc_pool_take_back(&q, &other, &back), 0);
	assert_int_equal(p.held, 0);
	assert_int_equal(q.held, 0);
	zc_pool_fini(&p);
	zc_pool_fini(&q);
}

static void test_generation_skips_zero_on_wrap(void **state)
{
	struct zc_pool p;
	struct zc_piece pc;
	uint32_t idx, back;

	assert_int_equal(small_pool(&p, 2, 4096), 0);
	assert_int_equal(zc_pool_get(&p, &idx), 0);
	p.gen[idx] = ZC_POOL_GEN_MAX;
	zc_pool_hand_out(&p, idx, 1, &pc);
	assert_int_equal(p.gen[idx], 1);
	assert_int_equal(pc.ref >> 32, 1);
	assert_int_equal(zc_pool_take_back(&p, &pc, &back), 0);
	/* the largest generation leaves bit 63 of the ref clear */
	assert_int_equal(zc_pool_get(&p, &idx), 0);
	p.gen[idx] = ZC_POOL_GEN_MAX - 1;
	zc_pool_hand_out(&p, idx, 1, &pc);
	assert_int_equal(pc.ref >> 32, ZC_POOL_GEN_MAX);
	assert_int_equal(pc.ref >> 63, 0);
	assert_int_equal(zc_pool_take_back(&p, &pc, &back), 0);
	zc_pool_fini(&p);
}

/* All pieces out and back in a random order, many times over, against
 * a model of each piece's state. */
static void test_random_life_cycle_held_counter(void **state)
{
	enum { N = 64, ROUNDS = 20000 };
	struct zc_pool p;
	struct zc_piece last[N] = { { 0 } }, stale[N];
	bool has_stale[N] = { false };
	uint8_t model[N] = { 0 };
	uint64_t rng = h_test_seed("pool life cycle"), held = 0;

	assert_int_equal(small_pool(&p, N, 256), 0);
	for (int r = 0; r < ROUNDS; r++) {
		uint32_t i = (uint32_t)(h_rand(&rng) % N), idx, back;
		int op = (int)(h_rand(&rng) % 4);

		if (op == 0) { /* the engine posts a free piece */
			int err = zc_pool_get(&p, &idx);
			uint32_t nfree = 0;

			for (uint32_t k = 0; k < N; k++)
				nfree += model[k] == PIECE_FREE;
			assert_int_equal(err, nfree ? 0 : -ENOBUFS);
			if (!err) {
				assert_int_equal(model[idx], PIECE_FREE);
				model[idx] = PIECE_POSTED;
			}
		} else if (op == 1 && model[i] == PIECE_POSTED) {
			if (h_rand(&rng) % 4 == 0) { /* posted, never filled */
				zc_pool_put(&p, i);
				model[i] = PIECE_FREE;
			} else {
				if (last[i].data) {
					stale[i] = last[i];
					has_stale[i] = true;
				}
				zc_pool_hand_out(&p, i, 1 + h_rand(&rng) % 256, &last[i]);
				model[i] = PIECE_HELD;
				held++;
			}
		} else if (op == 2 && model[i] == PIECE_HELD) {
			assert_int_equal(zc_pool_take_back(&p, &last[i], &back), 0);
			assert_int_equal(back, i);
			model[i] = PIECE_POSTED;
			held--;
		} else if (op == 3 && last[i].data) {
			/* a release that must be refused */
			int want = model[i] == PIECE_HELD ? 0 : -EALREADY;

			if (has_stale[i])
				assert_int_equal(zc_pool_take_back(&p, &stale[i], &back),
						 -EALREADY);
			if (want == -EALREADY)
				assert_int_equal(zc_pool_take_back(&p, &last[i], &back),
						 -EALREADY);
		}
		assert_int_equal(p.held, held);
		for (uint32_t k = 0; k < N; k++)
			assert_int_equal(p.state[k], model[k]);
	}
	zc_pool_fini(&p);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_init_defaults),
		cmocka_unit_test(test_one_region_carved_tail_unused),
		cmocka_unit_test(test_odd_alignment_region),
		cmocka_unit_test(test_several_regions_carved_in_order),
		cmocka_unit_test(test_many_regions_addresses),
		cmocka_unit_test(test_pool_allocates_its_memory),
		cmocka_unit_test(test_largest_piece_size_accepted),
		cmocka_unit_test(test_invalid_configs_refused),
		cmocka_unit_test(test_too_many_pieces_refused),
		cmocka_unit_test(test_more_regions_than_pieces_allowed),
		cmocka_unit_test(test_get_put_lifo),
		cmocka_unit_test(test_hand_out_and_take_back),
		cmocka_unit_test(test_stale_ref_after_rehandout),
		cmocka_unit_test(test_forged_pieces_refused),
		cmocka_unit_test(test_generation_skips_zero_on_wrap),
		cmocka_unit_test(test_random_life_cycle_held_counter),
	};

	h_setup(argc, argv, false, 60);
	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
