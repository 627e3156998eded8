/*
 * test_stats.c — the statistics rows of shm/stats.h: each worker's row is
 * its own, a pool's sum covers every worker and no other pool, the master's
 * snapshot feeds PgBouncer's averages; and the admin switches of shm/ctl.h
 * (pause, disable, kill generation) reach pools through their database
 * account, including pools created after the switch was set.
 */
#include "unit.h"
#include "shm/ctl.h"
#include "shm/stats.h"

#include <string.h>
#include <unistd.h>

static struct shm S;
static const struct pool_limits LIM = {.pool_size = 2, .mode = POOL_TRANSACTION};

static void setup(void)
{
	struct config cfg;
	int saved = log_min_level;

	config_defaults(&cfg);
	cfg.workers = 3;
	cfg.max_client_conn = 10;
	cfg.max_pools = 4;
	log_min_level = LOG_WARNING;
	memset(&S, 0, sizeof(S));
	CU_ASSERT_FATAL(shm_create(&S, &cfg) == ST_OK);
	log_min_level = saved;
}

static void teardown(void)
{
	for (uint32_t w = 0; w < S.hdr->nworkers; w++)
		close(S.workers[w].eventfd);
	shm_destroy(&S);
}

static void test_stats_sum_over_workers(void)
{
	struct stat_sum sum;
	int a, b;

	setup();
	a = shm_pool_find(&S, "app", "web", &LIM);
	b = shm_pool_find(&S, "app", "batch", &LIM);
	CU_ASSERT_FATAL(a >= 0 && b >= 0 && a != b);
	for (int w = 0; w < 3; w++) {
		shm_stat_add(shm_stats_row(&S, w, a), STAT_XACT, (uint64_t)(w + 1));
		shm_stat_add(shm_stats_row(&S, w, a), STAT_XACT_TIME, 100);
	}
	shm_stat_add(shm_stats_row(&S, 1, b), STAT_XACT, 1000);
	shm_stats_pool_sum(&S, a, &sum);
	CU_ASSERT_EQUAL(sum.v[STAT_XACT], 6);
	CU_ASSERT_EQUAL(sum.v[STAT_XACT_TIME], 300);
	CU_ASSERT_EQUAL(sum.v[STAT_QUERY], 0);
	shm_stats_pool_sum(&S, b, &sum);
	CU_ASSERT_EQUAL(sum.v[STAT_XACT], 1000);
	teardown();
}

static void test_stats_averages(void)
{
	struct stat_sum old = {{0}}, cur = {{0}}, avg;

	cur.v[STAT_XACT] = 20;
	cur.v[STAT_XACT_TIME] = 2000;
	cur.v[STAT_QUERY] = 40;
	cur.v[STAT_QUERY_TIME] = 800;
	cur.v[STAT_ASSIGN] = 10;
	cur.v[STAT_WAIT_TIME] = 50;
	cur.v[STAT_RECV] = 1000;
	stat_averages(&cur, &old, 2000000, &avg); /* over 2 s */
	CU_ASSERT_EQUAL(avg.v[STAT_XACT], 10);    /* per second */
	CU_ASSERT_EQUAL(avg.v[STAT_QUERY], 20);
	CU_ASSERT_EQUAL(avg.v[STAT_RECV], 500);
	CU_ASSERT_EQUAL(avg.v[STAT_XACT_TIME], 100); /* per transaction */
	CU_ASSERT_EQUAL(avg.v[STAT_QUERY_TIME], 20); /* per query */
	CU_ASSERT_EQUAL(avg.v[STAT_WAIT_TIME], 5);   /* per assignment */
	old = cur;                                   /* nothing happened since */
	stat_averages(&cur, &old, 1000000, &avg);
	CU_ASSERT_EQUAL(avg.v[STAT_XACT], 0);
	CU_ASSERT_EQUAL(avg.v[STAT_XACT_TIME], 0);
	stat_averages(&cur, &old, 0, &avg);
	CU_ASSERT_EQUAL(avg.v[STAT_QUERY], 0);
}

static void test_stats_ctl_switches(void)
{
	int a, later, acct;
	uint32_t gen;

	setup();
	a = shm_pool_find(&S, "app", "web", &LIM);
	CU_ASSERT_FALSE(shm_ctl_paused(&S, a));
	acct = shm_pool_db_account(&S, "app", false);
	CU_ASSERT_EQUAL_FATAL(acct, S.pools[a].db_acct);
	atomic_fetch_or(&S.accounts[acct].flags, DB_F_PAUSED);
	CU_ASSERT_TRUE(shm_ctl_paused(&S, a));
	/* a switch on a database without pools holds for its first pool */
	CU_ASSERT_EQUAL(shm_pool_db_account(&S, "other", false), -1);
	acct = shm_pool_db_account(&S, "other", true);
	CU_ASSERT_FATAL(acct >= 0);
	atomic_fetch_or(&S.accounts[acct].flags, DB_F_DISABLED);
	later = shm_pool_find(&S, "other", "web", &LIM);
	CU_ASSERT_TRUE(shm_ctl_disabled(&S, later));
	CU_ASSERT_FALSE(shm_ctl_paused(&S, later));
	/* the pooler-wide pause and kill reach every pool */
	gen = shm_ctl_kill_gen(&S, later);
	atomic_fetch_or(&S.hdr->flags, SHM_F_PAUSED);
	atomic_fetch_add(&S.hdr->kill_gen, 1);
	CU_ASSERT_TRUE(shm_ctl_paused(&S, later));
	CU_ASSERT_NOT_EQUAL(shm_ctl_kill_gen(&S, later), gen);
	teardown();
}

void register_stats(void)
{
	CU_pSuite s = CU_add_suite("stats", NULL, NULL);
	ADD_TEST(s, test_stats_sum_over_workers);
	ADD_TEST(s, test_stats_averages);
	ADD_TEST(s, test_stats_ctl_switches);
}
