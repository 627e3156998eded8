/*
 * stats.c — summing the per-(worker, pool) counters of stats.h and the
 * averages over a stats_period. Read by admin sessions in any worker and by
 * the master's periodic stats line; written only through shm_stat_add (the
 * worker owning the row) and shm_stats_set_old (the master). No locks: a
 * sum read while workers add may be a few events behind, never torn.
 */
#include "stats.h"

#include <string.h>

/* 100 us to 5 s: an immediate lease, a short queue, a saturated pool, a
 * paused or unreachable one. */
const uint64_t shm_wait_bucket_usec[STAT_WAIT_BUCKETS - 1] = {100,    1000,    10000,  100000,
                                                              500000, 1000000, 5000000};

void shm_stats_pool_sum(const struct shm *s, int pool, struct stat_sum *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t w = 0; w < s->hdr->nworkers; w++) {
		const struct shm_stats *st = shm_stats_row(s, (int)w, pool);
		for (int k = 0; k < STAT_COUNT; k++)
			out->v[k] += atomic_load_explicit(&st->v[k], memory_order_relaxed);
	}
}

void shm_stats_db_sum(const struct shm *s, const char *db, int n, struct stat_sum *cur,
                      struct stat_sum *old)
{
	struct stat_sum x;

	memset(cur, 0, sizeof(*cur));
	memset(old, 0, sizeof(*old));
	for (int p = 0; p < n; p++) {
		if (db && strcmp(s->pools[p].db, db) != 0)
			continue;
		shm_stats_pool_sum(s, p, &x);
		stat_sum_add(cur, &x);
		shm_stats_pool_old(s, p, &x);
		stat_sum_add(old, &x);
	}
}

void shm_stats_pool_old(const struct shm *s, int pool, struct stat_sum *out)
{
	for (int k = 0; k < STAT_COUNT; k++)
		out->v[k] = atomic_load_explicit(&s->stats_old[pool].v[k], memory_order_relaxed);
}

void shm_stats_set_old(struct shm *s, int pool, const struct stat_sum *sum)
{
	for (int k = 0; k < STAT_COUNT; k++)
		atomic_store_explicit(&s->stats_old[pool].v[k], sum->v[k], memory_order_relaxed);
}

void stat_sum_add(struct stat_sum *acc, const struct stat_sum *x)
{
	for (int k = 0; k < STAT_COUNT; k++)
		acc->v[k] += x->v[k];
}

/* cur - old, never negative (a snapshot may be newer than a racy sum). */
static uint64_t delta(const struct stat_sum *cur, const struct stat_sum *old, int k)
{
	return cur->v[k] > old->v[k] ? cur->v[k] - old->v[k] : 0;
}

void stat_averages(const struct stat_sum *cur, const struct stat_sum *old, uint64_t usec,
                   struct stat_sum *avg)
{
	static const int per_second[] = {STAT_ASSIGN,       STAT_XACT,         STAT_QUERY,
	                                 STAT_RECV,         STAT_SENT,         STAT_LOGIN,
	                                 STAT_CLIENT_PARSE, STAT_SERVER_PARSE, STAT_BIND};
	uint64_t xacts = delta(cur, old, STAT_XACT);
	uint64_t queries = delta(cur, old, STAT_QUERY);
	uint64_t assigns = delta(cur, old, STAT_ASSIGN);

	memset(avg, 0, sizeof(*avg));
	if (usec == 0)
		return;
	for (size_t i = 0; i < ARRAY_LEN(per_second); i++) {
		int k = per_second[i];
		/* d * 1e6 / usec without overflow for any realistic d */
		avg->v[k] = (uint64_t)((double)delta(cur, old, k) * 1e6 / (double)usec);
	}
	if (xacts)
		avg->v[STAT_XACT_TIME] = delta(cur, old, STAT_XACT_TIME) / xacts;
	if (queries)
		avg->v[STAT_QUERY_TIME] = delta(cur, old, STAT_QUERY_TIME) / queries;
	if (assigns)
		avg->v[STAT_WAIT_TIME] = delta(cur, old, STAT_WAIT_TIME) / assigns;
}
