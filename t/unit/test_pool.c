/*
 * test_pool.c — shm/pool.c and shm/repair.c: leasing, releasing and handing
 * server slots over between workers through the shared pool table. Workers
 * are simulated by client indices from different workers' ranges (client =
 * worker * clients_per_worker + row), so most tests run in one process; the
 * last one forks three "workers" that fight over one pool. Each test builds
 * a fresh segment from config_defaults() with workers = 3, pool_size 2 and a
 * reserve of 1 (SHM_MIN_SLOTS_PER_POOL slots per pool), and unmaps it at the end.
 */
#include "unit.h"
#include "shm/pool.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC 1000000ull
#define T0  (1000 * SEC) /* an arbitrary "now" for the single-process tests */
/* The parent's guard; children get a shorter one so the parent sees them fail. */
#define GUARD_SECS       30
#define CHILD_GUARD_SECS 20

static struct config cfg;
static struct shm S;
static int P; /* the pool most tests use */
static int saved_log_level;
static const struct pool_limits LIM = {.pool_size = 2,
                                       .reserve_size = 1,
                                       .max_db_conns = 0,
                                       .max_user_conns = 0,
                                       .mode = POOL_SESSION,
                                       .login_retry_usec = 15000000};

static void setup(void)
{
	config_defaults(&cfg);
	cfg.workers = 3;
	cfg.max_client_conn = 20;
	cfg.default_pool_size = 2;
	cfg.reserve_pool_size = 1;
	cfg.max_pools = 4;
	saved_log_level = log_min_level;
	log_min_level = LOG_WARNING; /* shm_create's size line */
	memset(&S, 0, sizeof(S));
	CU_ASSERT_FATAL(shm_create(&S, &cfg) == ST_OK);
	CU_ASSERT_EQUAL_FATAL(S.hdr->slots_per_pool, SHM_MIN_SLOTS_PER_POOL);
	CU_ASSERT_EQUAL_FATAL(S.hdr->nworkers, 3);
	P = shm_pool_find(&S, "app", "web", &LIM);
	CU_ASSERT_FATAL(P >= 0);
}

void unit_shm_teardown(struct shm *s)
{
	for (uint32_t w = 0; w < s->hdr->nworkers; w++)
		close(s->workers[w].eventfd);
	shm_destroy(s);
}

static void teardown(void)
{
	unit_shm_teardown(&S);
	log_min_level = saved_log_level;
}

/* Client ROW of WORKER, marked in use as its worker would on accept. */
static int cl(int worker, int row)
{
	int c = worker * (int)S.hdr->clients_per_worker + row;
	struct shm_client *r = shm_client(&S, c);

	CU_ASSERT_EQUAL(shm_client_worker(&S, c), worker);
	atomic_store(&r->state, CROW_USED);
	r->pool = P;
	return c;
}

static struct shm_pool *row(int pool)
{
	return &S.pools[pool];
}

static int slot_state(int slot)
{
	return atomic_load(&shm_slot(&S, slot)->state);
}

static bool in_pool(int pool, int slot)
{
	int first = pool * (int)S.hdr->slots_per_pool;
	return slot >= first && slot < first + (int)S.hdr->slots_per_pool;
}

/* Slots of POOL that are not FREE, counted from the slot records. */
static int count_servers(int pool)
{
	int first = pool * (int)S.hdr->slots_per_pool, n = 0;
	for (int i = first; i < first + (int)S.hdr->slots_per_pool; i++)
		n += slot_state(i) != SLOT_FREE;
	return n;
}

static int lease(int pool, int client, uint64_t now, int *slot)
{
	return shm_pool_lease(&S, pool, client, now, NULL, slot);
}

/* Lease for CLIENT, which must get a slot of its own at once: either an idle
 * one, or a fresh reservation that, once connected, goes to it (it must be
 * the FIFO's only entry). */
static int lease_active(int client)
{
	struct shm_handoff h;
	int slot, to = -1;
	int r = lease(P, client, T0, &slot);

	if (r == LEASE_CONNECT) {
		CU_ASSERT_TRUE(shm_pool_connected(&S, slot, T0, &h, &to));
		CU_ASSERT_EQUAL(h.client, client);
		CU_ASSERT_EQUAL(h.slot, slot);
		CU_ASSERT_EQUAL(to, shm_client_worker(&S, client));
	} else {
		CU_ASSERT_EQUAL(r, LEASE_GOT);
	}
	CU_ASSERT_EQUAL(slot_state(slot), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->client), client);
	return slot;
}

/* Release SLOT; it must go to EXPECT (or idle when EXPECT < 0). */
static void release_to(int slot, int expect, uint64_t now)
{
	struct shm_handoff h = {-1, 0, -1, 0};
	int to = -1;
	bool handed = shm_pool_release(&S, slot, now, &h, &to);

	if (expect < 0) {
		CU_ASSERT_FALSE(handed);
		CU_ASSERT_EQUAL(slot_state(slot), SLOT_IDLE);
		CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->owner), -1);
		CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->client), -1);
		return;
	}
	CU_ASSERT_TRUE(handed);
	CU_ASSERT_EQUAL(h.client, expect);
	CU_ASSERT_EQUAL(h.slot, slot);
	CU_ASSERT_EQUAL(h.slot_gen, atomic_load(&shm_slot(&S, slot)->gen));
	CU_ASSERT_EQUAL(h.client_gen, atomic_load(&shm_client(&S, expect)->gen));
	CU_ASSERT_EQUAL(to, shm_client_worker(&S, expect));
	CU_ASSERT_EQUAL(slot_state(slot), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->client), expect);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->owner), shm_client_worker(&S, expect));
	CU_ASSERT_EQUAL(shm_client(&S, expect)->queued, 0);
}

static void test_pool_lease_connect_then_queue(void)
{
	int a, b, c, s1, s2, s3;

	setup();
	a = cl(0, 0), b = cl(1, 0), c = cl(2, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0, &s1), LEASE_CONNECT);
	CU_ASSERT_TRUE(in_pool(P, s1));
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_CONNECTING);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s1)->owner), 0);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s1)->client), -1);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 1);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 1); /* the connecting client waits too */

	CU_ASSERT_EQUAL(lease(P, b, T0, &s2), LEASE_CONNECT);
	CU_ASSERT_TRUE(in_pool(P, s2));
	CU_ASSERT_NOT_EQUAL(s1, s2);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s2)->owner), 1);

	CU_ASSERT_EQUAL(lease(P, c, T0, &s3), LEASE_QUEUED);
	CU_ASSERT_EQUAL(s3, -1);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 2);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 3);
	CU_ASSERT_EQUAL(count_servers(P), 2);
	teardown();
}

/* A connected slot goes to the oldest waiter, not to whoever connected it. */
static void test_pool_connected_hands_to_fifo_head(void)
{
	struct shm_handoff h;
	int a, b, c, s1, s2, s3, to;

	setup();
	a = cl(0, 0), b = cl(1, 0), c = cl(2, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0 - SEC, &s1), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(P, b, T0, &s2), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(P, c, T0, &s3), LEASE_QUEUED);

	/* Worker 1's connection finishes first: it serves worker 0's client,
	 * who has waited a second longer than worker 1's own. */
	CU_ASSERT_TRUE(shm_pool_connected(&S, s2, T0, &h, &to));
	CU_ASSERT_EQUAL(h.client, a);
	CU_ASSERT_EQUAL(h.slot, s2);
	CU_ASSERT_EQUAL(h.slot_gen, atomic_load(&shm_slot(&S, s2)->gen));
	CU_ASSERT_EQUAL(to, 0);
	CU_ASSERT_EQUAL(slot_state(s2), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s2)->owner), 0);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s2)->client), a);
	CU_ASSERT_EQUAL(shm_slot(&S, s2)->created_usec, T0);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 1);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);
	CU_ASSERT_EQUAL(row(P)->wait_head, b);

	CU_ASSERT_TRUE(shm_pool_connected(&S, s1, T0, &h, &to));
	CU_ASSERT_EQUAL(h.client, b);
	CU_ASSERT_EQUAL(to, 1);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 0);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 1);
	CU_ASSERT_EQUAL(row(P)->wait_head, c);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);

	release_to(s2, c, T0);
	release_to(s1, -1, T0);
	release_to(s2, -1, T0);
	CU_ASSERT_EQUAL(row(P)->nidle, 2);
	CU_ASSERT_EQUAL(row(P)->wait_head, -1);
	CU_ASSERT_EQUAL(row(P)->wait_tail, -1);
	teardown();
}

/* Invariant 2: an idle server is usable by a client on any worker. */
static void test_pool_idle_usable_by_any_worker(void)
{
	int a, b, s, s2;
	uint32_t gen;

	setup();
	a = cl(0, 0), b = cl(2, 5);
	s = lease_active(a);
	gen = atomic_load(&shm_slot(&S, s)->gen);
	release_to(s, -1, T0 + SEC);
	CU_ASSERT_EQUAL(row(P)->nidle, 1);
	CU_ASSERT_EQUAL(shm_slot(&S, s)->idle_since_usec, T0 + SEC);

	CU_ASSERT_EQUAL(lease(P, b, T0 + 2 * SEC, &s2), LEASE_GOT);
	CU_ASSERT_EQUAL(s2, s);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s)->owner), 2);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s)->client), b);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s)->gen), gen); /* same connection */
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 0);
	CU_ASSERT_EQUAL(shm_client(&S, b)->queued, 0);
	teardown();
}

/* With two idle slots, the one this worker holds a socket for is preferred
 * even when it is not on top of the stack. */
static void test_pool_lease_prefers_cached_slot(void)
{
	uint32_t local_gen[4 * SHM_MIN_SLOTS_PER_POOL] = {0};
	int a, b, c, s1, s2, got;

	setup();
	CU_ASSERT_FATAL(shm_slot_count(&S) <= 4 * SHM_MIN_SLOTS_PER_POOL);
	a = cl(0, 0), b = cl(1, 0), c = cl(1, 1);
	s1 = lease_active(a);
	s2 = lease_active(b);
	release_to(s1, -1, T0); /* bottom of the stack */
	release_to(s2, -1, T0); /* top */
	local_gen[s1] = atomic_load(&shm_slot(&S, s1)->gen);
	CU_ASSERT_EQUAL(shm_pool_lease(&S, P, c, T0, local_gen, &got), LEASE_GOT);
	CU_ASSERT_EQUAL(got, s1);
	CU_ASSERT_EQUAL(row(P)->nidle, 1);
	/* the other one is still on the stack and still leasable */
	CU_ASSERT_EQUAL(lease(P, cl(2, 0), T0, &got), LEASE_GOT);
	CU_ASSERT_EQUAL(got, s2);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	teardown();
}

/* Invariant 3: waiters are served oldest first, across workers. */
static void test_pool_fifo_across_workers(void)
{
	int a, b, c, s1, s2, slot;

	setup();
	s1 = lease_active(cl(0, 0));
	s2 = lease_active(cl(1, 0));
	a = cl(0, 1), b = cl(2, 1), c = cl(1, 1);
	CU_ASSERT_EQUAL(lease(P, a, T0 + 1 * SEC, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, b, T0 + 2 * SEC, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, c, T0 + 3 * SEC, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 3);
	CU_ASSERT_EQUAL(shm_client(&S, b)->wait_since_usec, T0 + 2 * SEC);

	release_to(s2, a, T0 + 4 * SEC); /* worker 1's release serves worker 0 */
	release_to(s1, b, T0 + 5 * SEC);
	release_to(s2, c, T0 + 6 * SEC);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 0);
	release_to(s1, -1, T0 + 7 * SEC);
	release_to(s2, -1, T0 + 8 * SEC);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	CU_ASSERT_EQUAL(row(P)->nidle, 2);
	teardown();
}

/* A waiter of the releasing worker that has waited almost as long as the
 * FIFO head (within the fairness window) is served first: no wake-up of
 * another worker, no socket moving. Past the window the head wins. */
static void test_pool_prefers_own_worker_within_window(void)
{
	int a, b, c, s1, slot;

	setup();
	s1 = lease_active(cl(1, 0));
	(void)lease_active(cl(0, 0));
	a = cl(0, 1), b = cl(1, 1), c = cl(1, 2);
	CU_ASSERT_EQUAL(lease(P, a, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, b, T0 + 500, &slot), LEASE_QUEUED); /* 0.5 ms younger */
	CU_ASSERT_EQUAL(lease(P, c, T0 + SEC, &slot), LEASE_QUEUED); /* 1 s younger */
	release_to(s1, b, T0 + 2 * SEC);                             /* worker 1 serves its own b */
	release_to(s1, a, T0 + 3 * SEC); /* c is too young: the head a wins */
	CU_ASSERT_EQUAL(row(P)->nwaiting, 1);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	teardown();
}

/* Random lease / connect / release / free / give-up steps, checking after
 * each that the pool never holds more than pool_size servers and that its
 * counters agree with the slot records. */
#define RND_CLIENTS 12
static void check_counts(int step)
{
	struct shm_pool *r = row(P);
	int first = P * (int)S.hdr->slots_per_pool, nconn = 0, nidle = 0;

	for (int i = first; i < first + (int)S.hdr->slots_per_pool; i++) {
		nconn += slot_state(i) == SLOT_CONNECTING;
		nidle += slot_state(i) == SLOT_IDLE;
	}
	if (count_servers(P) > LIM.pool_size || count_servers(P) != r->nservers ||
	    nconn != r->nconnecting || nidle != r->nidle || (r->nidle > 0 && r->nwaiting > 0))
		fprintf(stderr,
		        "\n  step %d: servers %d/%d connecting %d/%d idle %d/%d waiting %d\n", step,
		        count_servers(P), r->nservers, nconn, r->nconnecting, nidle, r->nidle,
		        r->nwaiting);
	CU_ASSERT(count_servers(P) <= LIM.pool_size);
	CU_ASSERT_EQUAL(count_servers(P), r->nservers);
	CU_ASSERT_EQUAL(nconn, r->nconnecting);
	CU_ASSERT_EQUAL(nidle, r->nidle);
	CU_ASSERT(r->nidle == 0 || r->nwaiting == 0);
}

static void test_pool_never_exceeds_pool_size(void)
{
	int clients[RND_CLIENTS], has[RND_CLIENTS], nqueued;
	unsigned seed = 12345;
	struct shm_handoff h;
	int to;

	setup();
	for (int i = 0; i < RND_CLIENTS; i++) {
		clients[i] = cl(i % 3, i / 3);
		has[i] = -1;
	}
	for (int step = 0; step < 3000; step++) {
		int i = rand_r(&seed) % RND_CLIENTS, c = clients[i], slot = -1;
		struct shm_client *row_c = shm_client(&S, c);
		int op = rand_r(&seed) % 8;
		int first = P * (int)S.hdr->slots_per_pool;
		int k = first + rand_r(&seed) % (int)S.hdr->slots_per_pool;

		if (op <= 2 && has[i] < 0 && !row_c->queued) {
			int r = lease(P, c, T0 + (uint64_t)step, &slot);
			CU_ASSERT(r == LEASE_GOT || r == LEASE_QUEUED || r == LEASE_CONNECT);
			if (r == LEASE_GOT)
				has[i] = slot;
		} else if (op == 3 && has[i] >= 0) {
			if (shm_pool_release(&S, has[i], T0, &h, &to))
				for (int j = 0; j < RND_CLIENTS; j++)
					if (clients[j] == h.client)
						has[j] = h.slot;
			has[i] = -1;
		} else if (op == 4 && slot_state(k) == SLOT_CONNECTING) {
			if (shm_pool_connected(&S, k, T0, &h, &to))
				for (int j = 0; j < RND_CLIENTS; j++)
					if (clients[j] == h.client)
						has[j] = h.slot;
		} else if (op == 5 && row_c->queued) {
			CU_ASSERT_TRUE(shm_pool_dequeue(&S, P, c)); /* client gave up */
		} else if (op == 6 && has[i] >= 0 && rand_r(&seed) % 4 == 0) {
			shm_pool_slot_free(&S, has[i], atomic_load(&S.slots[has[i]].gen), T0, false,
			                   NULL); /* server died */
			has[i] = -1;
		} else if (op == 7) {
			(void)shm_pool_grow(&S, P, i % 3, false, &slot);
		}
		check_counts(step);
		nqueued = 0;
		for (int j = 0; j < RND_CLIENTS; j++) {
			nqueued += shm_client(&S, clients[j])->queued;
			if (has[j] >= 0)
				CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, has[j])->client),
				                clients[j]);
		}
		CU_ASSERT_EQUAL(nqueued, row(P)->nwaiting);
	}
	teardown();
}

/* A lease opens a connection only when the waiters outnumber the
 * connections already coming: a client that gave up leaves its connection
 * to the next waiter. */
static void test_pool_no_extra_connect(void)
{
	struct shm_handoff h;
	int a, b, s1, s2, to;

	setup();
	a = cl(0, 0), b = cl(1, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0, &s1), LEASE_CONNECT);
	CU_ASSERT_TRUE(shm_pool_dequeue(&S, P, a)); /* a gave up */
	CU_ASSERT_EQUAL(lease(P, b, T0, &s2), LEASE_QUEUED);
	CU_ASSERT_EQUAL(s2, -1);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 1, true, &s2), ST_AGAIN);
	CU_ASSERT_TRUE(shm_pool_connected(&S, s1, T0, &h, &to));
	CU_ASSERT_EQUAL(h.client, b);
	CU_ASSERT_EQUAL(to, 1);
	teardown();
}

static void test_pool_grow_uses_reserve(void)
{
	int s1, s2, s3, s4;

	setup();
	CU_ASSERT_EQUAL(lease(P, cl(0, 0), T0, &s1), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(P, cl(1, 0), T0, &s2), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(P, cl(2, 0), T0, &s3), LEASE_QUEUED);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 2, false, &s3), ST_AGAIN);
	CU_ASSERT_EQUAL(s3, -1);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 2, true, &s3), ST_OK);
	CU_ASSERT_TRUE(in_pool(P, s3));
	CU_ASSERT(s3 != s1 && s3 != s2);
	CU_ASSERT_EQUAL(slot_state(s3), SLOT_CONNECTING);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s3)->owner), 2);
	CU_ASSERT_EQUAL(row(P)->nservers, 3);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 3);
	/* Every waiter has a connection coming: no more growth. */
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 2, true, &s4), ST_AGAIN);
	/* Another waiter, but pool_size + reserve is reached. */
	CU_ASSERT_EQUAL(lease(P, cl(2, 1), T0, &s4), LEASE_QUEUED);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 2, true, &s4), ST_AGAIN);
	CU_ASSERT_EQUAL(count_servers(P), 3);
	teardown();
}

static void test_pool_dequeue_from_middle(void)
{
	int a, b, c, d, s1, s2, slot;

	setup();
	s1 = lease_active(cl(0, 0));
	s2 = lease_active(cl(1, 0));
	a = cl(0, 1), b = cl(1, 1), c = cl(2, 1), d = cl(2, 2);
	CU_ASSERT_EQUAL(lease(P, a, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, b, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, c, T0, &slot), LEASE_QUEUED);

	CU_ASSERT_TRUE(shm_pool_dequeue(&S, P, b)); /* middle */
	CU_ASSERT_EQUAL(shm_client(&S, b)->queued, 0);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);
	CU_ASSERT_FALSE(shm_pool_dequeue(&S, P, b)); /* not on it any more */
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);
	CU_ASSERT_TRUE(shm_pool_dequeue(&S, P, c)); /* tail */
	CU_ASSERT_EQUAL(row(P)->wait_tail, a);
	CU_ASSERT_EQUAL(lease(P, d, T0, &slot), LEASE_QUEUED);

	release_to(s1, a, T0);
	release_to(s2, d, T0);
	release_to(s1, -1, T0);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 0);
	CU_ASSERT_EQUAL(row(P)->wait_head, -1);
	CU_ASSERT_EQUAL(row(P)->wait_tail, -1);
	teardown();
}

/* A failed server login fails the waiters and, within server_login_retry,
 * the next leases too. */
static void test_pool_login_failure(void)
{
	struct shm_handoff h;
	char err[64];
	int a, b, s1, s2, slot, to;

	setup();
	a = cl(0, 0), b = cl(1, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0, &s1), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(P, b, T0, &s2), LEASE_CONNECT);

	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0 + SEC, true,
	                   "password authentication failed");
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_FREE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 1);
	/* a server is still coming: nobody is failed yet */
	CU_ASSERT_FALSE(shm_pool_pop_failed_waiter(&S, P, &h, &to));

	shm_pool_slot_free(&S, s2, atomic_load(&S.slots[s2].gen), T0 + SEC, true,
	                   "too many connections");
	CU_ASSERT_EQUAL(row(P)->nservers, 0);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 0);
	shm_pool_last_error(&S, P, err, sizeof(err));
	CU_ASSERT_STRING_EQUAL(err, "too many connections");

	CU_ASSERT_EQUAL(lease(P, cl(2, 0), T0 + 2 * SEC, &slot), LEASE_FAILED);
	CU_ASSERT_EQUAL(slot, -1);
	CU_ASSERT_EQUAL(shm_client(&S, cl(2, 0))->queued, 0);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);

	CU_ASSERT_TRUE(shm_pool_pop_failed_waiter(&S, P, &h, &to));
	CU_ASSERT_EQUAL(h.client, a);
	CU_ASSERT_EQUAL(h.slot, -1);
	CU_ASSERT_EQUAL(to, 0);
	CU_ASSERT_TRUE(shm_pool_pop_failed_waiter(&S, P, &h, &to));
	CU_ASSERT_EQUAL(h.client, b);
	CU_ASSERT_EQUAL(to, 1);
	CU_ASSERT_FALSE(shm_pool_pop_failed_waiter(&S, P, &h, &to));
	CU_ASSERT_EQUAL(row(P)->nwaiting, 0);

	/* After login_retry (15 s) a lease tries again. */
	CU_ASSERT_EQUAL(lease(P, cl(2, 0), T0 + 17 * SEC, &slot), LEASE_CONNECT);
	CU_ASSERT_TRUE(shm_pool_connected(&S, slot, T0 + 18 * SEC, &h, &to));
	CU_ASSERT_EQUAL(row(P)->last_fail_usec, 0);
	teardown();
}

/* A pool that had servers (a restart, a failover) keeps its clients waiting
 * through a failed login, and connects again after server_login_retry. */
static void test_pool_login_failure_after_welcome(void)
{
	struct shm_handoff h;
	int a, s1, slot, to;

	setup();
	shm_pool_set_welcome(&S, P, "S", 1);
	a = cl(0, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0, &s1), LEASE_CONNECT);
	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0 + SEC, true,
	                   "connection refused");
	CU_ASSERT_FALSE(shm_pool_pop_failed_waiter(&S, P, &h, &to)); /* a keeps waiting */
	CU_ASSERT_EQUAL(lease(P, cl(1, 0), T0 + 2 * SEC, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(slot, -1);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);
	teardown();
}

/* The pool's server moved (failover: the master bumped recycle_gen): a
 * login that failed on the old server does not hold clients back, and the
 * master's shm_pool_forget_failure ends a wait that had begun. */
static void test_pool_server_moved(void)
{
	int a, b, s1, s2, slot;

	setup();
	shm_pool_set_welcome(&S, P, "S", 1);
	a = cl(0, 0), b = cl(1, 0);
	CU_ASSERT_EQUAL(lease(P, a, T0, &s1), LEASE_CONNECT);
	atomic_fetch_add(&row(P)->recycle_gen, 1); /* s1 connects to the old server */
	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0 + SEC, true,
	                   "connection refused");
	CU_ASSERT_EQUAL(row(P)->last_fail_usec, 0);
	CU_ASSERT_EQUAL(lease(P, b, T0 + SEC, &s2), LEASE_CONNECT);
	S.slots[s2].recycle_gen =
	    atomic_load(&row(P)->recycle_gen); /* as server_connect() stamps it */
	shm_pool_slot_free(&S, s2, atomic_load(&S.slots[s2].gen), T0 + SEC, true,
	                   "connection refused");
	CU_ASSERT_NOT_EQUAL(row(P)->last_fail_usec, 0); /* the new server failed: wait */
	CU_ASSERT_EQUAL(lease(P, cl(2, 0), T0 + 2 * SEC, &slot), LEASE_QUEUED);
	CU_ASSERT_TRUE(shm_pool_forget_failure(&S, P));
	CU_ASSERT_EQUAL(lease(P, cl(2, 1), T0 + 2 * SEC, &slot), LEASE_CONNECT);
	CU_ASSERT(slot >= 0);
	teardown();
}

/* A holder that learns late that its slot died (an older generation) must
 * not free the slot's next user. */
static void test_pool_slot_free_checks_generation(void)
{
	int s1 = -1;
	uint32_t old;

	setup();
	s1 = lease_active(cl(0, 0));
	old = atomic_load(&S.slots[s1].gen);
	shm_pool_slot_free(&S, s1, old, T0, false, NULL);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_FREE);
	CU_ASSERT_EQUAL(lease_active(cl(1, 0)), s1);      /* the next user gets the slot */
	shm_pool_slot_free(&S, s1, old, T0, false, NULL); /* the late, stale free */
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	teardown();
}

/* max_db_connections is shared by every pool of the database. */
static void test_pool_max_db_connections(void)
{
	struct pool_limits lim = LIM;
	int pa, pb, s1, s2, s3, s4;

	setup();
	lim.max_db_conns = 3;
	pa = shm_pool_find(&S, "shared", "u1", &lim);
	pb = shm_pool_find(&S, "shared", "u2", &lim);
	CU_ASSERT_FATAL(pa >= 0 && pb >= 0 && pa != pb && pa != P && pb != P);
	CU_ASSERT_EQUAL(shm_pool_find(&S, "shared", "u1", &lim), pa);
	CU_ASSERT_EQUAL(row(pa)->db_acct, row(pb)->db_acct);
	CU_ASSERT_NOT_EQUAL(row(pa)->user_acct, row(pb)->user_acct);

	CU_ASSERT_EQUAL(lease(pa, cl(0, 0), T0, &s1), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(pa, cl(1, 0), T0, &s2), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(pb, cl(2, 0), T0, &s3), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(pb, cl(2, 1), T0, &s4), LEASE_QUEUED); /* db at 3 */
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(pa)->db_acct].conns), 3);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, pb, 2, true, &s4), ST_AGAIN);
	CU_ASSERT_EQUAL(row(pb)->nservers, 1);
	/* The other pools of the table are untouched. */
	CU_ASSERT_EQUAL(lease(P, cl(0, 5), T0, &s4), LEASE_CONNECT);

	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0, false, NULL);
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(pa)->db_acct].conns), 2);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, pb, 2, false, &s4), ST_OK);
	CU_ASSERT_TRUE(in_pool(pb, s4));
	CU_ASSERT_EQUAL(row(pb)->nservers, 2);
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(pa)->db_acct].conns), 3);
	teardown();
}

/* max_user_connections likewise across databases. */
static void test_pool_max_user_connections(void)
{
	struct pool_limits lim = LIM;
	int pa, pb, s1, s2;

	setup();
	lim.max_user_conns = 1;
	pa = shm_pool_find(&S, "d1", "same", &lim);
	pb = shm_pool_find(&S, "d2", "same", &lim);
	CU_ASSERT_FATAL(pa >= 0 && pb >= 0);
	CU_ASSERT_EQUAL(row(pa)->user_acct, row(pb)->user_acct);
	CU_ASSERT_EQUAL(lease(pa, cl(0, 0), T0, &s1), LEASE_CONNECT);
	CU_ASSERT_EQUAL(lease(pb, cl(1, 0), T0, &s2), LEASE_QUEUED);
	CU_ASSERT_EQUAL(row(pb)->nservers, 0);
	/* the table is full now (4 rows): a fifth pair gets no row */
	CU_ASSERT(shm_pool_find(&S, "d3", "x", &lim) >= 0);
	CU_ASSERT_EQUAL(shm_pool_find(&S, "d4", "x", &lim), -1);
	teardown();
}

/* Fork a child that takes LOCK and exits without unlocking; reap it. */
static void die_holding(struct shm_mutex *lock)
{
	int status;
	pid_t pid = fork();

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_GUARD_SECS);
		shm_mutex_lock(lock);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(atomic_load(&lock->holder), pid);
}

/* Worker 1 dies holding an ACTIVE slot, a CONNECTING one, waiters at the
 * head, in the middle and at the tail of the FIFO, and the pool lock: repair
 * frees its slots, drops its waiters, keeps the others in order and hands
 * the lock back. */
static void test_pool_repair_dead_worker(void)
{
	struct shm_handoff h = {0, 0, 0, 0}, out[4];
	int close_slots[8], nclose = -1;
	int s0, s1, s2, c, d, e, f, g, slot;
	unsigned prev = alarm(GUARD_SECS);
	uint32_t gen1;

	setup();
	s0 = lease_active(cl(0, 0));
	s1 = lease_active(cl(1, 0));
	gen1 = atomic_load(&shm_slot(&S, s1)->gen);
	c = cl(0, 1), d = cl(1, 1), e = cl(2, 1), f = cl(1, 2), g = cl(1, 3);
	/* FIFO: d(1) c(0) f(1) e(2) g(1) */
	CU_ASSERT_EQUAL(lease(P, d, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, c, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, f, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, e, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, g, T0, &slot), LEASE_QUEUED);
	/* and a reserve connection worker 1 was opening */
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 1, true, &s2), ST_OK);
	CU_ASSERT_EQUAL(row(P)->nservers, 3);
	CU_ASSERT_TRUE(shm_inbox_push(&S, 1, &h));

	die_holding(&row(P)->lock);
	CU_ASSERT_FALSE(shm_mutex_trylock(&row(P)->lock));

	CU_ASSERT_EQUAL(shm_pool_repair_worker(&S, 1, close_slots, 8, &nclose), ST_OK);
	CU_ASSERT_EQUAL(nclose, 2);
	CU_ASSERT((close_slots[0] == s1 && close_slots[1] == s2) ||
	          (close_slots[0] == s2 && close_slots[1] == s1));
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_FREE);
	CU_ASSERT_EQUAL(slot_state(s2), SLOT_FREE);
	CU_ASSERT_NOT_EQUAL(atomic_load(&shm_slot(&S, s1)->gen), gen1);
	CU_ASSERT_EQUAL(slot_state(s0), SLOT_ACTIVE); /* worker 0's lease untouched */
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s0)->client), cl(0, 0));
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 0);
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(P)->db_acct].conns), 1);
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(P)->user_acct].conns), 1);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 2);
	CU_ASSERT_EQUAL(row(P)->wait_head, c);
	CU_ASSERT_EQUAL(shm_client(&S, c)->wait_next, e);
	CU_ASSERT_EQUAL(shm_client(&S, e)->wait_next, -1);
	CU_ASSERT_EQUAL(row(P)->wait_tail, e);
	CU_ASSERT_EQUAL(shm_client(&S, d)->queued, 0);
	CU_ASSERT_EQUAL(shm_client(&S, f)->queued, 0);
	CU_ASSERT_EQUAL(shm_client(&S, g)->queued, 0);
	CU_ASSERT_EQUAL(shm_inbox_pop_all(&S, 1, out, 4), 0);
	/* the lock is free again */
	CU_ASSERT_EQUAL(atomic_load(&row(P)->lock.word), 0);
	CU_ASSERT_TRUE(shm_mutex_trylock(&row(P)->lock));
	shm_mutex_unlock(&row(P)->lock);

	/* The pool goes on: worker 0's release serves c, e gets a new
	 * connection, and a late waiter queues behind e. */
	release_to(s0, c, T0);
	CU_ASSERT_EQUAL(shm_pool_grow(&S, P, 2, false, &slot), ST_OK);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	CU_ASSERT_EQUAL(lease(P, cl(0, 2), T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(row(P)->wait_head, e);
	CU_ASSERT_EQUAL(row(P)->wait_tail, cl(0, 2));
	teardown();
	alarm(prev);
}

/* A pool lock held by a live process: repair says "next tick" and changes
 * nothing. */
static void test_pool_repair_waits_for_live_holder(void)
{
	int close_slots[8], nclose = -1, fds[2], status;
	unsigned prev = alarm(GUARD_SECS);
	pid_t pid;
	char x;
	int s1;

	setup();
	s1 = lease_active(cl(1, 0));
	CU_ASSERT_FATAL(pipe(fds) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		alarm(CHILD_GUARD_SECS);
		shm_mutex_lock(&row(P)->lock);
		if (write(fds[1], "x", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	CU_ASSERT(read(fds[0], &x, 1) == 1);
	close(fds[0]);
	close(fds[1]);
	CU_ASSERT_EQUAL(shm_pool_repair_worker(&S, 1, close_slots, 8, &nclose), ST_AGAIN);
	CU_ASSERT_EQUAL(nclose, 0);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&row(P)->lock.holder), pid);
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	CU_ASSERT_EQUAL(shm_pool_repair_worker(&S, 1, close_slots, 8, &nclose), ST_OK);
	CU_ASSERT_EQUAL(nclose, 1);
	CU_ASSERT_EQUAL(close_slots[0], s1);
	CU_ASSERT_EQUAL(row(P)->nservers, 0);
	teardown();
	alarm(prev);
}

static void test_pool_reap_idle(void)
{
	int close_slots[4], s1, s2;
	uint32_t gen1;

	setup();
	s1 = lease_active(cl(0, 0)); /* created at T0 */
	s2 = lease_active(cl(1, 0));
	release_to(s1, -1, T0 + 10 * SEC);
	release_to(s2, -1, T0 + 15 * SEC);
	gen1 = atomic_load(&shm_slot(&S, s1)->gen);

	/* The janitor never waits: a busy lock means "next tick". */
	shm_mutex_lock(&row(P)->lock);
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 100 * SEC, 1, 0, close_slots, 4), 0);
	shm_mutex_unlock(&row(P)->lock);

	/* idle_timeout 8 s at T0+20: s1 idle 10 s goes, s2 idle 5 s stays */
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 20 * SEC, 8, 0, close_slots, 4), 1);
	CU_ASSERT_EQUAL(close_slots[0], s1);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_FREE);
	CU_ASSERT_NOT_EQUAL(atomic_load(&shm_slot(&S, s1)->gen), gen1);
	CU_ASSERT_EQUAL(slot_state(s2), SLOT_IDLE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(row(P)->nidle, 1);
	CU_ASSERT_EQUAL(atomic_load(&S.accounts[row(P)->db_acct].conns), 1);

	/* lifetime 30 s: s2 (created at T0) is too old at T0+31 */
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 31 * SEC, 0, 30, close_slots, 4), 1);
	CU_ASSERT_EQUAL(close_slots[0], s2);
	CU_ASSERT_EQUAL(row(P)->nservers, 0);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 99 * SEC, 1, 1, close_slots, 4), 0);
	teardown();
}

/* The janitor reads its clock once per pass, so a worker can release (or
 * connect) a slot with a timestamp a little later than the janitor's "now".
 * Such a slot is brand new, not idle for ages. */
static void test_pool_reap_idle_clock_skew(void)
{
	int close_slots[4], s1;

	setup();
	s1 = lease_active(cl(0, 0)); /* created at T0 */
	release_to(s1, -1, T0 + 10 * SEC);
	/* janitor's now is 1 ms before the worker's release time */
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 10 * SEC - 1000, 600, 0, close_slots, 4), 0);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_IDLE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	teardown();

	/* and 1 ms before the slot's creation time (server_lifetime only) */
	setup();
	s1 = lease_active(cl(0, 0)); /* created at T0 */
	release_to(s1, -1, T0);
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 - 1000, 0, 3600, close_slots, 4), 0);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_IDLE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	teardown();
}

/* Likewise a lease whose worker read its clock just before another worker
 * recorded a failed login is within server_login_retry. */
static void test_pool_login_failure_clock_skew(void)
{
	int s1, slot;

	setup();
	CU_ASSERT_EQUAL(lease(P, cl(0, 0), T0, &s1), LEASE_CONNECT);
	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0 + SEC, true,
	                   "password authentication failed");
	CU_ASSERT_EQUAL(lease(P, cl(1, 0), T0 + SEC - 1000, &slot), LEASE_FAILED);
	teardown();
}

static void test_pool_claim_idle(void)
{
	int s1, s2;
	uint32_t gen;

	setup();
	s1 = lease_active(cl(0, 0));
	release_to(s1, -1, T0);
	gen = atomic_load(&shm_slot(&S, s1)->gen);

	CU_ASSERT_FALSE(shm_pool_claim_idle(&S, s1, gen + 1, 2)); /* stale generation */
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_IDLE);
	CU_ASSERT_TRUE(shm_pool_claim_idle(&S, s1, gen, 2));
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s1)->owner), 2);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, s1)->client), -1);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_FALSE(shm_pool_claim_idle(&S, s1, gen, 1)); /* already claimed */

	/* a lease does not get the claimed slot */
	CU_ASSERT_EQUAL(lease(P, cl(1, 0), T0, &s2), LEASE_CONNECT);
	CU_ASSERT_NOT_EQUAL(s2, s1);
	shm_pool_slot_free(&S, s1, atomic_load(&S.slots[s1].gen), T0, false, NULL);
	CU_ASSERT_EQUAL(slot_state(s1), SLOT_FREE);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	teardown();
}

/* Several processes: each "worker" runs cycles of lease, use, release on one
 * pool of two servers. Counts uses of each slot in a shared page to prove a
 * slot is never held by two clients at once. */
#define MP_CHILDREN 3
#define MP_CYCLES   2000
struct mp_page {
	atomic_int users[4 * SHM_MIN_SLOTS_PER_POOL]; /* per slot: clients holding it right now */
	atomic_int active;                            /* slots held right now */
	atomic_int max_active;
	atomic_int errors;
	atomic_int ready, go; /* start barrier, so the children really overlap */
};

static int wait_handed(int client)
{
	int first = P * (int)S.hdr->slots_per_pool;

	for (long spins = 0;; spins++) {
		for (int i = first; i < first + (int)S.hdr->slots_per_pool; i++) {
			struct shm_slot *sl = shm_slot(&S, i);
			if (atomic_load_explicit(&sl->client, memory_order_acquire) == client &&
			    atomic_load_explicit(&sl->state, memory_order_acquire) == SLOT_ACTIVE)
				return i;
		}
		if (spins % 16 == 15)
			sched_yield();
	}
}

static void mp_child(int client, struct mp_page *pg)
{
	struct shm_handoff h;
	int to, slot, n;

	alarm(CHILD_GUARD_SECS);
	atomic_fetch_add(&pg->ready, 1);
	while (!atomic_load(&pg->go))
		sched_yield();
	for (int k = 0; k < MP_CYCLES; k++) {
		int r = shm_pool_lease(&S, P, client, now_usec(), NULL, &slot);
		if (r == LEASE_FAILED)
			_exit(2);
		if (r == LEASE_CONNECT)
			(void)shm_pool_connected(&S, slot, now_usec(), &h, &to);
		if (r != LEASE_GOT)
			slot = wait_handed(client);
		if (atomic_fetch_add(&pg->users[slot], 1) != 0)
			atomic_fetch_add(&pg->errors, 1);
		n = atomic_fetch_add(&pg->active, 1) + 1;
		if (n > atomic_load(&pg->max_active))
			atomic_store(&pg->max_active, n);
		if (k % 7 == 0)
			sched_yield(); /* hold it a moment so others queue */
		atomic_fetch_sub(&pg->active, 1);
		atomic_fetch_sub(&pg->users[slot], 1);
		(void)shm_pool_release(&S, slot, now_usec(), &h, &to);
	}
	_exit(0);
}

static void test_pool_multiprocess_lease_release(void)
{
	struct mp_page *pg;
	pid_t pids[MP_CHILDREN];
	unsigned prev = alarm(GUARD_SECS);
	int ok = 0, first;

	setup();
	pg = mmap(NULL, sizeof(*pg), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_FATAL(pg != MAP_FAILED);
	CU_ASSERT_FATAL(shm_slot_count(&S) <= 4 * SHM_MIN_SLOTS_PER_POOL);
	memset(pg, 0, sizeof(*pg));
	for (int w = 0; w < MP_CHILDREN; w++)
		(void)cl(w, 0);
	for (int w = 0; w < MP_CHILDREN; w++) {
		pids[w] = fork();
		CU_ASSERT_FATAL(pids[w] >= 0);
		if (pids[w] == 0)
			mp_child(cl(w, 0), pg);
	}
	while (atomic_load(&pg->ready) < MP_CHILDREN)
		sched_yield();
	atomic_store(&pg->go, 1);
	for (int w = 0; w < MP_CHILDREN; w++) {
		int status;
		while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR)
			;
		ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	CU_ASSERT_EQUAL(ok, MP_CHILDREN);
	CU_ASSERT_EQUAL(atomic_load(&pg->errors), 0);
	CU_ASSERT(atomic_load(&pg->max_active) <= 2);
	CU_ASSERT(row(P)->nservers <= 2);
	CU_ASSERT(row(P)->nservers >= 1);
	CU_ASSERT_EQUAL(count_servers(P), row(P)->nservers);
	CU_ASSERT_EQUAL(row(P)->nwaiting, 0);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 0);
	CU_ASSERT_EQUAL(row(P)->nidle, row(P)->nservers);
	CU_ASSERT_EQUAL(row(P)->wait_head, -1);
	CU_ASSERT_EQUAL(row(P)->wait_tail, -1);
	CU_ASSERT_EQUAL(atomic_load(&row(P)->lock.word), 0);
	first = P * (int)S.hdr->slots_per_pool;
	for (int i = first; i < first + (int)S.hdr->slots_per_pool; i++)
		CU_ASSERT(slot_state(i) == SLOT_IDLE || slot_state(i) == SLOT_FREE);
	munmap(pg, sizeof(*pg));
	teardown();
	alarm(prev);
}

/* ------------------------------------------------------------- TLS slots */

#define MS 1000ull

/* A slot leased by CLIENT's worker, made a TLS connection of that worker
 * (as worker/server_tls.c marks it after the handshake). */
static int lease_tls(int client)
{
	int slot = lease_active(client);
	shm_slot(&S, slot)->tls_owner = shm_client_worker(&S, client);
	return slot;
}

/* A TLS slot is leased by its owner only: another worker's client gets a
 * connection of its own, the owner's client the idle one. */
static void test_pool_tls_affinity(void)
{
	struct shm_handoff h;
	int s0, s1, b = -1, to, slot;

	setup();
	s0 = lease_tls(cl(0, 0));
	release_to(s0, -1, T0);
	b = cl(1, 0);
	CU_ASSERT_EQUAL(lease(P, b, T0, &s1), LEASE_CONNECT);
	CU_ASSERT_NOT_EQUAL(s1, s0);
	CU_ASSERT_EQUAL(slot_state(s0), SLOT_IDLE);
	CU_ASSERT_EQUAL(lease(P, cl(0, 1), T0, &slot), LEASE_GOT);
	CU_ASSERT_EQUAL(slot, s0);
	/* worker 1's new TLS connection goes to its own waiter */
	shm_slot(&S, s1)->tls_owner = 1;
	CU_ASSERT_EQUAL(shm_pool_connected(&S, s1, T0, &h, &to), RELEASE_HANDED);
	CU_ASSERT_EQUAL(h.client, b);
	CU_ASSERT_EQUAL(to, 1);
	teardown();
}

/* The pool is full of worker 0's idle TLS slots: a client of worker 1 has
 * one claimed for worker 0 to close once it has idled TLS_MOVE_USEC, and
 * the room goes to worker 1. */
static void test_pool_tls_evict_idle(void)
{
	int s0, s1, slot, worker, b, d;

	setup();
	b = cl(1, 0), d = cl(1, 1);
	s0 = lease_tls(cl(0, 0));
	s1 = lease_tls(cl(0, 1));
	release_to(s0, -1, T0);
	release_to(s1, -1, T0);
	/* idle for 1 ms only: its owner may well want it back */
	CU_ASSERT_EQUAL(lease(P, b, T0 + 1 * MS, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(shm_pool_evict(&S, P, 1, T0 + 2 * MS, &slot), ST_AGAIN);
	/* the worker's tick, 60 ms later */
	CU_ASSERT_EQUAL(shm_pool_evict(&S, P, 1, T0 + 60 * MS, &slot), ST_OK);
	CU_ASSERT(slot == s0 || slot == s1);
	CU_ASSERT_EQUAL(slot_state(slot), SLOT_ACTIVE);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->owner), 0);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->client), SLOT_CLIENT_EVICTING);
	CU_ASSERT_EQUAL(row(P)->nevicting, 1);
	/* one waiter, one eviction in flight: nothing more */
	CU_ASSERT_EQUAL(shm_pool_evict(&S, P, 1, T0 + 70 * MS, &worker), ST_AGAIN);
	/* a second waiter: its lease claims the other one */
	CU_ASSERT_EQUAL(lease(P, d, T0 + 80 * MS, &worker), LEASE_EVICT);
	CU_ASSERT_EQUAL(worker, slot == s0 ? s1 : s0);
	CU_ASSERT_EQUAL(row(P)->nevicting, 2);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	/* worker 0 closes the first: the room goes to worker 1 */
	shm_pool_slot_free(&S, slot, atomic_load(&shm_slot(&S, slot)->gen), T0, false, NULL);
	CU_ASSERT_EQUAL(row(P)->nevicting, 1);
	CU_ASSERT_EQUAL(row(P)->nservers, 1);
	CU_ASSERT_EQUAL(shm_pool_grow_for_waiter(&S, P, &slot, &worker), ST_OK);
	CU_ASSERT_EQUAL(worker, 1);
	CU_ASSERT_EQUAL(slot_state(slot), SLOT_CONNECTING);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, slot)->owner), 1);
	CU_ASSERT_EQUAL(shm_slot(&S, slot)->tls_owner, -1);
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	/* two waiters, one connecting, one eviction in flight: covered */
	CU_ASSERT_EQUAL(shm_pool_grow_for_waiter(&S, P, &slot, &worker), ST_AGAIN);
	teardown();
}

/* A released TLS slot whose owner has no waiter moves its room to the
 * worker whose client has waited TLS_MOVE_USEC; not sooner. */
static void test_pool_tls_release_moves(void)
{
	struct shm_handoff h;
	int s0, s1, b, slot, to = -1, gen;

	setup();
	b = cl(1, 0);
	s0 = lease_tls(cl(0, 0));
	s1 = lease_tls(cl(0, 1));
	CU_ASSERT_EQUAL(lease(P, b, T0, &slot), LEASE_QUEUED); /* full, nothing idle */
	release_to(s0, -1, T0 + 10 * MS);                      /* b waited 10 ms: it idles */
	CU_ASSERT_EQUAL(lease(P, cl(0, 2), T0 + 20 * MS, &slot), LEASE_GOT);
	gen = (int)atomic_load(&shm_slot(&S, s0)->gen);
	CU_ASSERT_EQUAL(shm_pool_release(&S, s0, T0 + 60 * MS, &h, &to), RELEASE_MOVED);
	CU_ASSERT_EQUAL(h.client, HANDOFF_OPEN);
	CU_ASSERT_EQUAL(to, 1);
	CU_ASSERT(h.slot >= 0);
	CU_ASSERT_NOT_EQUAL((int)atomic_load(&shm_slot(&S, s0)->gen), gen);
	CU_ASSERT_EQUAL(slot_state(h.slot), SLOT_CONNECTING);
	CU_ASSERT_EQUAL(atomic_load(&shm_slot(&S, h.slot)->owner), 1);
	CU_ASSERT_EQUAL(h.slot_gen, atomic_load(&shm_slot(&S, h.slot)->gen));
	CU_ASSERT_EQUAL(row(P)->nservers, 2);
	CU_ASSERT_EQUAL(row(P)->nconnecting, 1);
	CU_ASSERT_EQUAL(row(P)->wait_head, b); /* served by the new connection */
	shm_slot(&S, h.slot)->tls_owner = 1;
	slot = h.slot;
	CU_ASSERT_EQUAL(shm_pool_connected(&S, slot, T0 + 70 * MS, &h, &to), RELEASE_HANDED);
	CU_ASSERT_EQUAL(h.client, b);
	(void)s1;
	teardown();
}

/* Rooms flow towards a balance: a worker holding as many connections as
 * the owner does not take the owner's, however long its client waited. */
static void test_pool_tls_balance(void)
{
	int s0, b1, a1, slot;

	setup();
	b1 = cl(1, 1), a1 = cl(0, 1);
	s0 = lease_tls(cl(0, 0));
	(void)lease_tls(cl(1, 0));
	CU_ASSERT_EQUAL(lease(P, b1, T0, &slot), LEASE_QUEUED);
	CU_ASSERT_EQUAL(lease(P, a1, T0 + 100 * MS, &slot), LEASE_QUEUED);
	release_to(s0, a1, T0 + 200 * MS);
	CU_ASSERT_EQUAL(row(P)->wait_head, b1);
	CU_ASSERT_EQUAL(row(P)->nwaiting_of[1], 1);
	CU_ASSERT_EQUAL(row(P)->nwaiting_of[0], 0);
	teardown();
}

/* A dead worker's idle TLS slots die with it; the janitor leaves idle TLS
 * slots to their owner (it has no TLS state to close them with). */
static void test_pool_tls_repair_and_reap(void)
{
	int close_slots[4], nclose = -1, s0, s1;

	setup();
	s0 = lease_tls(cl(1, 0));
	s1 = lease_active(cl(1, 1)); /* plain */
	release_to(s0, -1, T0);
	release_to(s1, -1, T0);
	atomic_fetch_add(&row(P)->recycle_gen, 1);
	CU_ASSERT_EQUAL(shm_pool_reap_idle(&S, P, T0 + 1 * SEC, 0, 0, close_slots, 4), 1);
	CU_ASSERT_EQUAL(close_slots[0], s1);
	CU_ASSERT_EQUAL(slot_state(s0), SLOT_IDLE);
	CU_ASSERT_EQUAL(shm_pool_repair_worker(&S, 1, close_slots, 4, &nclose), ST_OK);
	CU_ASSERT_EQUAL(nclose, 1);
	CU_ASSERT_EQUAL(close_slots[0], s0);
	CU_ASSERT_EQUAL(slot_state(s0), SLOT_FREE);
	CU_ASSERT_EQUAL(row(P)->nservers, 0);
	CU_ASSERT_EQUAL(row(P)->nidle, 0);
	teardown();
}

void register_pool(void)
{
	CU_pSuite s = CU_add_suite("pool", NULL, NULL);

	ADD_TEST(s, test_pool_lease_connect_then_queue);
	ADD_TEST(s, test_pool_connected_hands_to_fifo_head);
	ADD_TEST(s, test_pool_idle_usable_by_any_worker);
	ADD_TEST(s, test_pool_lease_prefers_cached_slot);
	ADD_TEST(s, test_pool_fifo_across_workers);
	ADD_TEST(s, test_pool_never_exceeds_pool_size);
	ADD_TEST(s, test_pool_no_extra_connect);
	ADD_TEST(s, test_pool_grow_uses_reserve);
	ADD_TEST(s, test_pool_dequeue_from_middle);
	ADD_TEST(s, test_pool_login_failure);
	ADD_TEST(s, test_pool_login_failure_after_welcome);
	ADD_TEST(s, test_pool_server_moved);
	ADD_TEST(s, test_pool_prefers_own_worker_within_window);
	ADD_TEST(s, test_pool_slot_free_checks_generation);
	ADD_TEST(s, test_pool_max_db_connections);
	ADD_TEST(s, test_pool_max_user_connections);
	ADD_TEST(s, test_pool_repair_dead_worker);
	ADD_TEST(s, test_pool_repair_waits_for_live_holder);
	ADD_TEST(s, test_pool_reap_idle);
	ADD_TEST(s, test_pool_reap_idle_clock_skew);
	ADD_TEST(s, test_pool_login_failure_clock_skew);
	ADD_TEST(s, test_pool_claim_idle);
	ADD_TEST(s, test_pool_tls_affinity);
	ADD_TEST(s, test_pool_tls_evict_idle);
	ADD_TEST(s, test_pool_tls_release_moves);
	ADD_TEST(s, test_pool_tls_balance);
	ADD_TEST(s, test_pool_tls_repair_and_reap);
	ADD_TEST(s, test_pool_multiprocess_lease_release);
}
