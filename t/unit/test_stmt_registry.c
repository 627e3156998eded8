/*
 * test_stmt_registry.c — shm/stmt_registry.c: the per-slot registry of
 * prepared statements in shared memory (issue #7). Insert and hit, ids, the
 * LRU bound with pinned entries, rollback helpers, DEALLOCATE ALL, the reset
 * when the slot's generation moves, and the registry following its slot
 * across "workers": forked processes that lease the slot through the pool
 * one after the other, as real workers do.
 */
#include "unit.h"
#include "shm/pool.h"
#include "shm/stmt_registry.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BOUND 4
static struct config cfg;
static struct shm S;
static int P;
static int saved_log_level;
static const struct pool_limits LIM = {
    .pool_size = 1, .mode = POOL_TRANSACTION, .login_retry_usec = 15000000};

static void setup(void)
{
	config_defaults(&cfg);
	cfg.workers = 2;
	cfg.max_client_conn = 10;
	cfg.max_pools = 2;
	cfg.max_prepared_statements = BOUND;
	saved_log_level = log_min_level;
	log_min_level = LOG_WARNING;
	memset(&S, 0, sizeof(S));
	CU_ASSERT_FATAL(shm_create(&S, &cfg) == ST_OK);
	CU_ASSERT_EQUAL_FATAL(S.hdr->stmt_cap, BOUND + STMT_SLACK);
	P = shm_pool_find(&S, "app", "web", &LIM);
	CU_ASSERT_FATAL(P >= 0);
}

static void teardown(void)
{
	unit_shm_teardown(&S);
	log_min_level = saved_log_level;
}

/* A distinct fake SHA-256 per n. */
static const uint8_t *H(int n)
{
	static uint8_t h[8][STMT_HASH_LEN];
	uint8_t *p = h[n % 8];
	memset(p, 0, STMT_HASH_LEN);
	p[0] = (uint8_t)n;
	p[31] = (uint8_t)(n * 7 + 1);
	return p;
}

static uint32_t slot_gen(int slot)
{
	return atomic_load(&shm_slot(&S, slot)->gen);
}

static int add_ready(struct shm_stmt_reg *r, int n)
{
	int i = shm_stmt_add(&S, r, H(n));
	CU_ASSERT_FATAL(i >= 0);
	shm_stmt_set_ready(&S, r, i);
	return i;
}

static void test_stmt_registry_insert_hit(void)
{
	struct shm_stmt_reg *r;
	int a, b;
	char name[STMT_NAME_LEN];

	setup();
	r = shm_stmt_reg(&S, 0, slot_gen(0));
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)), -1);
	a = shm_stmt_add(&S, r, H(1));
	CU_ASSERT(a >= 0);
	CU_ASSERT_EQUAL(shm_stmt_at(&S, r, a)->state, STMT_PENDING);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)),
	                a);                        /* a Parse in flight counts: no second one */
	CU_ASSERT_EQUAL(shm_stmt_count(&S, 0), 0); /* SHOW SERVERS counts READY ones */
	shm_stmt_set_ready(&S, r, a);
	CU_ASSERT_EQUAL(shm_stmt_count(&S, 0), 1);
	b = add_ready(r, 2);
	CU_ASSERT_NOT_EQUAL(shm_stmt_at(&S, r, a)->id, shm_stmt_at(&S, r, b)->id);
	shm_stmt_name(shm_stmt_at(&S, r, b)->id, name);
	CU_ASSERT_STRING_EQUAL(name, "pgshoal_2");
	/* a rolled-back Parse leaves no trace */
	shm_stmt_remove(&S, r, a);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)), -1);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(2)), b);
	CU_ASSERT_EQUAL(shm_stmt_count(&S, 0), 1);
	teardown();
}

static void test_stmt_registry_lru_eviction(void)
{
	struct shm_stmt_reg *r;
	int e[BOUND + 1], v;

	setup();
	r = shm_stmt_reg(&S, 0, slot_gen(0));
	for (int n = 0; n < BOUND; n++)
		e[n] = add_ready(r, n);
	CU_ASSERT_TRUE(shm_stmt_full(&S, r));
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 9, 0), e[0]); /* least recently used */
	shm_stmt_touch(&S, r, e[0], 1, 0);
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 1, 1), e[1]);
	/* e[1] is used by group 5 of lease 2, still in flight: not evicted */
	shm_stmt_touch(&S, r, e[1], 2, 5);
	shm_stmt_touch(&S, r, e[0], 2, 5);
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 2, 5), e[2]);
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 2, 6), e[2]); /* group 5 answered: LRU again */
	shm_stmt_touch(&S, r, e[2], 2, 6);
	shm_stmt_touch(&S, r, e[3], 2, 6);
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 2, 5), -1);   /* all pinned: use the slack */
	CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 3, 0), e[1]); /* another lease: pins are old */
	/* evict e[1] for a new one; the eviction is undone when skipped */
	v = e[1];
	{
		uint8_t hash[STMT_HASH_LEN];
		uint32_t id = shm_stmt_at(&S, r, v)->id;
		memcpy(hash, shm_stmt_at(&S, r, v)->hash, STMT_HASH_LEN);
		shm_stmt_remove(&S, r, v);
		e[BOUND] = shm_stmt_add(&S, r, H(BOUND));
		CU_ASSERT(e[BOUND] >= 0);
		CU_ASSERT_EQUAL(r->nused, BOUND);
		shm_stmt_remove(&S, r, e[BOUND]); /* the group failed before our Close */
		CU_ASSERT(shm_stmt_restore(&S, r, hash, id) >= 0);
		CU_ASSERT_EQUAL(shm_stmt_at(&S, r, shm_stmt_find(&S, r, H(1)))->id, id);
		CU_ASSERT_EQUAL(shm_stmt_victim(&S, r, 3, 0), shm_stmt_find(&S, r, H(1)));
	}
	/* the slack: positions past the bound while everything is pinned */
	for (int n = 0; n < STMT_SLACK; n++)
		CU_ASSERT(shm_stmt_add(&S, r, H(100 + n)) >= 0);
	CU_ASSERT_EQUAL(shm_stmt_add(&S, r, H(200)), -1);
	teardown();
}

static void test_stmt_registry_deallocate_all(void)
{
	struct shm_stmt_reg *r;
	int pending;

	setup();
	r = shm_stmt_reg(&S, 0, slot_gen(0));
	add_ready(r, 1);
	add_ready(r, 2);
	pending = shm_stmt_add(&S, r, H(3)); /* sent after the DEALLOCATE ALL */
	r->poisoned = 1;
	shm_stmt_clear_ready(&S, r);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)), -1);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(2)), -1);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(3)), pending);
	CU_ASSERT_EQUAL(r->nused, 1);
	CU_ASSERT_EQUAL(r->poisoned, 0);
	teardown();
}

static void test_stmt_registry_generation_reset(void)
{
	struct shm_stmt_reg *r;
	uint32_t gen;

	setup();
	gen = slot_gen(0);
	r = shm_stmt_reg(&S, 0, gen);
	add_ready(r, 1);
	add_ready(r, 2);
	CU_ASSERT_EQUAL(shm_stmt_count(&S, 0), 2);
	atomic_fetch_add(&shm_slot(&S, 0)->gen, 1); /* closed, recycled, reconnected */
	CU_ASSERT_EQUAL(shm_stmt_count(&S, 0), 0);  /* SHOW SERVERS no longer believes it */
	r = shm_stmt_reg(&S, 0, gen + 1);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)), -1);
	CU_ASSERT_EQUAL(r->nused, 0);
	CU_ASSERT_EQUAL(shm_stmt_at(&S, r, add_ready(r, 3))->id, 1); /* a new connection */
	teardown();
}

/* Child: lease the pool's slot for client ROW of WORKER, check that the
 * registry holds statements [0, have), add [have, have + add) (the bound
 * makes room by evicting the least recently used), release. Exit status
 * says what went wrong. */
static int child(int worker, int have, int add)
{
	int client = worker * (int)S.hdr->clients_per_worker, slot;
	struct shm_handoff h;
	int to, r = shm_pool_lease(&S, P, client, now_usec(), NULL, &slot);
	struct shm_stmt_reg *reg;

	if (r == LEASE_CONNECT && shm_pool_connected(&S, slot, now_usec(), &h, &to))
		r = LEASE_GOT;
	if (r != LEASE_GOT)
		return 10;
	if (atomic_load(&shm_slot(&S, slot)->owner) != worker)
		return 11;
	reg = shm_stmt_reg(&S, slot, slot_gen(slot));
	for (int n = 0; n < have; n++)
		if ((n >= have - BOUND || have <= BOUND) && shm_stmt_find(&S, reg, H(n)) < 0)
			return 12;
	for (int n = have; n < have + add; n++) {
		if (shm_stmt_full(&S, reg)) {
			int v = shm_stmt_victim(&S, reg, 99, 0);
			if (v < 0)
				return 13;
			shm_stmt_remove(&S, reg, v);
		}
		shm_stmt_set_ready(&S, reg, shm_stmt_add(&S, reg, H(n)));
	}
	shm_pool_release(&S, slot, now_usec(), &h, &to);
	return 0;
}

static void run_child(int worker, int have, int add)
{
	int status;
	pid_t pid = fork();

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		alarm(20);
		_exit(child(worker, have, add));
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (WIFEXITED(status) && WEXITSTATUS(status))
		fprintf(stderr, "worker %d child exited %d\n", worker, WEXITSTATUS(status));
}

static void test_stmt_registry_across_workers(void)
{
	int slot = P * (int)SHM_MIN_SLOTS_PER_POOL;
	struct shm_stmt_reg *r;

	setup();
	for (int w = 0; w < 2; w++)
		atomic_store(&shm_client(&S, w * (int)S.hdr->clients_per_worker)->state, CROW_USED);
	run_child(0, 0, 3); /* worker 0 prepares three statements on the pool's one server */
	run_child(1, 3, 3); /* worker 1 gets that server: finds them, adds three (two evicted) */
	run_child(0, 6, 0); /* worker 0 again: sees the last BOUND */
	r = shm_stmt_reg(&S, slot, slot_gen(slot));
	CU_ASSERT_EQUAL(r->nused, BOUND);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(0)), -1);
	CU_ASSERT_EQUAL(shm_stmt_find(&S, r, H(1)), -1);
	CU_ASSERT(shm_stmt_find(&S, r, H(5)) >= 0);
	CU_ASSERT_EQUAL(shm_stmt_count(&S, slot), BOUND);
	teardown();
}

void register_stmt_registry(void)
{
	CU_pSuite s = CU_add_suite("stmt_registry", NULL, NULL);
	ADD_TEST(s, test_stmt_registry_insert_hit);
	ADD_TEST(s, test_stmt_registry_lru_eviction);
	ADD_TEST(s, test_stmt_registry_deallocate_all);
	ADD_TEST(s, test_stmt_registry_generation_reset);
	ADD_TEST(s, test_stmt_registry_across_workers);
}
