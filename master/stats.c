/*
 * stats.c — the master's statistics period: every stats_period seconds it
 * snapshots each pool's counters (summed over the workers, shm/stats.h)
 * into shared memory, so that SHOW STATS_AVERAGES in any worker averages
 * over the last one to two periods as PgBouncer does, and logs PgBouncer's
 * line "stats: N xacts/s, ..." for the period that just ended. Runs in the
 * master's tick; reads counters without locks, never waits.
 */
#include "master.h"
#include "shm/stats.h"

#include <stdlib.h>

static struct stat_sum *newer; /* per pool: the counters at the last period's end */
static uint64_t newer_usec;

static int used_pools(void)
{
	int n = 0;
	while (n < (int)M.shm.hdr->max_pools &&
	       atomic_load_explicit(&M.shm.pools[n].used, memory_order_acquire))
		n++;
	return n;
}

static void log_period(const struct stat_sum *cur, const struct stat_sum *old, uint64_t usec)
{
	struct stat_sum avg;

	stat_averages(cur, old, usec, &avg);
	log_error(LOG_INFO, 0,
	          "stats: %llu xacts/s, %llu queries/s, in %llu B/s, out %llu B/s, xact %llu us, "
	          "query %llu us, "
	          "wait %llu us",
	          (unsigned long long)avg.v[STAT_XACT], (unsigned long long)avg.v[STAT_QUERY],
	          (unsigned long long)avg.v[STAT_RECV], (unsigned long long)avg.v[STAT_SENT],
	          (unsigned long long)avg.v[STAT_XACT_TIME],
	          (unsigned long long)avg.v[STAT_QUERY_TIME],
	          (unsigned long long)avg.v[STAT_WAIT_TIME]);
}

void master_stats_tick(void)
{
	uint64_t now = now_usec();
	struct stat_sum total = {{0}}, total_old = {{0}}, cur;
	int n;

	if (!newer) {
		newer = calloc(M.shm.hdr->max_pools, sizeof(*newer));
		newer_usec = atomic_load(&M.shm.hdr->stats_old_usec);
		if (!newer)
			return;
	}
	if (now - newer_usec < (uint64_t)M.cfg.stats_period * 1000000)
		return;
	n = used_pools();
	for (int p = 0; p < n; p++) {
		shm_stats_pool_sum(&M.shm, p, &cur);
		shm_stats_set_old(&M.shm, p, &newer[p]); /* readers average from here */
		stat_sum_add(&total, &cur);
		stat_sum_add(&total_old, &newer[p]);
		newer[p] = cur;
	}
	atomic_store(&M.shm.hdr->stats_old_usec, newer_usec);
	if (M.cfg.log_stats)
		log_period(&total, &total_old, now - newer_usec);
	newer_usec = now;
}
