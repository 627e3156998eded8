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
#include "shm/view.h"

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

/* Each assignment lands in one wait bucket; the buckets sum to the count
 * and their waits to WAIT_TIME. */
static void test_stats_wait_histogram(void)
{
	static const uint64_t waits[] = {0,      100,     101,     999,     20000,
	                                 700000, 5000000, 5000001, 60000000};
	static const uint64_t want[STAT_WAIT_BUCKETS] = {2, 2, 0, 1, 0, 1, 1, 2};
	struct stat_sum sum, old;
	uint64_t total = 0;
	int a;

	setup();
	a = shm_pool_find(&S, "app", "web", &LIM);
	for (size_t i = 0; i < ARRAY_LEN(waits); i++) {
		shm_stat_wait(shm_stats_row(&S, (int)(i % 3), a), waits[i]);
		total += waits[i];
	}
	shm_stats_db_sum(&S, "app", shm_pool_count(&S), &sum, &old);
	for (int b = 0; b < STAT_WAIT_BUCKETS; b++)
		CU_ASSERT_EQUAL(sum.v[STAT_WAIT_HIST + b], want[b]);
	CU_ASSERT_EQUAL(sum.v[STAT_WAIT_TIME], total);
	shm_stats_db_sum(&S, "other", shm_pool_count(&S), &sum, &old);
	CU_ASSERT_EQUAL(sum.v[STAT_WAIT_TIME], 0);
	teardown();
}

/* The reports' view: clients by state per pool, slots by state, and the
 * master's try-lock that does without a busy row. */
static void test_stats_view(void)
{
	struct config cfg;
	struct shm_pool_view v[4];
	struct shm_client_totals t;
	int a, slot, n;

	setup();
	config_defaults(&cfg);
	a = shm_pool_find(&S, "app", "web", &LIM);
	S.clients[0].pool = a;
	atomic_store(&S.clients[0].cstate, CL_WAITING);
	atomic_store(&S.clients[0].state_usec, 1000);
	atomic_store(&S.clients[0].state, CROW_USED);
	S.clients[1].pool = a;
	atomic_store(&S.clients[1].cstate, CL_IDLE);
	atomic_store(&S.clients[1].state, CROW_USED);
	S.clients[2].pool = -1;
	atomic_store(&S.clients[2].cstate, CL_LOGIN);
	atomic_store(&S.clients[2].state, CROW_USED);
	slot = shm_pool_reserve_min(&S, a, 0, 1); /* a server connecting */
	CU_ASSERT_FATAL(slot >= 0);
	n = shm_view_pools(&S, &cfg, v, 5000, VIEW_LOCK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(v[a].cl_waiting, 1);
	CU_ASSERT_EQUAL(v[a].cl_idle, 1);
	CU_ASSERT_EQUAL(v[a].maxwait, 4000);
	CU_ASSERT_EQUAL(v[a].sv_login, 1);
	CU_ASSERT_TRUE(v[a].row_ok);
	CU_ASSERT_TRUE(shm_view_reachable(&v[a]));
	shm_pool_slot_free(&S, slot, atomic_load(&S.slots[slot].gen), 6000, true, "refused");
	shm_view_pools(&S, &cfg, v, 7000, VIEW_TRYLOCK);
	CU_ASSERT_FALSE(shm_view_reachable(&v[a]));
	shm_mutex_lock(&S.pools[a].lock); /* busy: the master does without the row */
	shm_view_pools(&S, &cfg, v, 7000, VIEW_TRYLOCK);
	shm_mutex_unlock(&S.pools[a].lock);
	CU_ASSERT_FALSE(v[a].row_ok);
	CU_ASSERT_EQUAL(v[a].cl_waiting, 1);
	shm_view_client_totals(&S, &t);
	CU_ASSERT_EQUAL(t.used, 3);
	CU_ASSERT_EQUAL(t.login, 1);
	teardown();
}

void register_stats(void)
{
	CU_pSuite s = CU_add_suite("stats", NULL, NULL);
	ADD_TEST(s, test_stats_sum_over_workers);
	ADD_TEST(s, test_stats_averages);
	ADD_TEST(s, test_stats_ctl_switches);
	ADD_TEST(s, test_stats_wait_histogram);
	ADD_TEST(s, test_stats_view);
}
