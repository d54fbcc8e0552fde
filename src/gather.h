/*
 * gather.h - whether the next wait gathers (zc_config.batch_usec): the
 * heuristic every engine's loop shares; each engine gathers its own way
 * (uring: the kernel's min_wait; epoll: a short sleep before the wait).
 *
 * A wait gathers after a run that brought at least GATHER_BULK bytes of
 * payload; not for a while after a gathering wait that brought less than
 * GATHER_KEEP, which is what request/response traffic looks like (the
 * request came in at once and nothing followed); nor right after the
 * application sent anything: a reply means the peer is likely waiting for
 * it before it sends more, and gathering would only delay the next
 * request. The pause lasts GATHER_COOL_MIN runs and doubles, up to
 * GATHER_COOL_MAX, each time gathering disappoints again.
 */
#ifndef ZCNET_GATHER_H
#define ZCNET_GATHER_H

#include <stdbool.h>
#include <stdint.h>

#define GATHER_BULK (64u << 10)
#define GATHER_KEEP (256u << 10)
#define GATHER_COOL_MIN 16u
#define GATHER_COOL_MAX 4096u

struct zc_gather {
	uint64_t run_bytes; /* payload this run queued for the application */
	bool bulk;          /* the next wait may gather */
	bool gathered;      /* the current run's wait did */
	bool replied;       /* the application sent since the last run */
	unsigned cool;      /* runs left before gathering may start again */
	unsigned cool_next; /* the next pause, GATHER_COOL_MIN..MAX */
};

/* Whether the wait about to start gathers (never unless the engine @may:
 * the wait may block, nothing is known to be ready); if so, it is marked
 * and counted in @waits_gathered. Once per run. */
static inline bool zc_gather_begin(struct zc_gather *g, bool may,
				   uint64_t *waits_gathered)
{
	g->gathered = may && g->bulk && !g->replied;
	if (g->gathered)
		(*waits_gathered)++;
	return g->gathered;
}

/* The run ended: decide about the next wait. */
static inline void zc_gather_end(struct zc_gather *g)
{
	uint64_t run = g->run_bytes;

	if (g->gathered && run < GATHER_KEEP) {
		g->cool = g->cool_next ? g->cool_next : GATHER_COOL_MIN;
		g->cool_next = g->cool * 2 < GATHER_COOL_MAX ? g->cool * 2 : GATHER_COOL_MAX;
	} else if (g->gathered) {
		g->cool_next = GATHER_COOL_MIN;
	}
	if (g->cool)
		g->cool--;
	g->bulk = !g->cool && run >= GATHER_BULK;
	g->run_bytes = 0;
	g->replied = false;
}

#endif
