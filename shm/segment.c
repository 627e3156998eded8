/*
 * segment.c — creating the shared segment, its header, and the small
 * accessors every process uses on it (fake pids, worker inboxes). The master
 * creates the segment before the first fork; all others only map-inherit it.
 */
#include "shm.h"
#include "stats.h"
#include "stmt_registry.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

const char *const shm_param_names[PARAM_COUNT] = {
    "client_encoding",  "DateStyle",     "TimeZone", "standard_conforming_strings",
    "application_name", "IntervalStyle",
};

const char *const slot_state_names[SLOT_STATE_COUNT] = {
    "free",
    "connecting",
    "idle",
    "active",
};

int shm_param_lookup(const char *name)
{
	for (int i = 0; i < PARAM_COUNT; i++)
		if (strcasecmp(name, shm_param_names[i]) == 0)
			return i;
	return -1;
}

static size_t align_up(size_t n)
{
	return (n + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
}

/* Lay the regions out one after another and record the offsets. */
static void plan_layout(struct shm_header *h)
{
	size_t off = align_up(sizeof(*h));
	size_t nslots = (size_t)h->max_pools * h->slots_per_pool;
	size_t nclients = (size_t)h->nworkers * h->clients_per_worker;

	h->off_pools = off;
	off = align_up(off + sizeof(struct shm_pool) * h->max_pools);
	h->off_slots = off;
	off = align_up(off + sizeof(struct shm_slot) * nslots);
	h->off_idle = off;
	off = align_up(off + sizeof(int32_t) * nslots);
	h->off_clients = off;
	off = align_up(off + sizeof(struct shm_client) * nclients);
	h->off_workers = off;
	off = align_up(off + sizeof(struct shm_worker) * h->nworkers);
	h->off_inbox = off;
	off = align_up(off + sizeof(struct shm_handoff) * h->inbox_size * h->nworkers);
	h->off_accounts = off;
	off = align_up(off + sizeof(struct shm_account) * 2 * h->max_pools);
	h->off_targets = off;
	off = align_up(off + sizeof(struct shm_target) * CFG_MAX_DBS);
	h->off_config = off;
	off = align_up(off + sizeof(struct shm_config_snap));
	h->off_stats = off;
	off = align_up(off + sizeof(struct shm_stats) * h->nworkers * h->max_pools);
	h->off_stats_old = off;
	off = align_up(off + sizeof(struct shm_stats) * h->max_pools);
	h->off_stmts = off;
	off = align_up(off + h->stmt_stride * nslots);
	h->total_size = off;
}

static void attach_regions(struct shm *s, char *base)
{
	struct shm_header *h = (struct shm_header *)base;
	s->hdr = h;
	s->pools = (struct shm_pool *)(base + h->off_pools);
	s->slots = (struct shm_slot *)(base + h->off_slots);
	s->idle = (int32_t *)(base + h->off_idle);
	s->clients = (struct shm_client *)(base + h->off_clients);
	s->workers = (struct shm_worker *)(base + h->off_workers);
	s->inbox = (struct shm_handoff *)(base + h->off_inbox);
	s->accounts = (struct shm_account *)(base + h->off_accounts);
	s->targets = (struct shm_target *)(base + h->off_targets);
	s->config = (struct shm_config_snap *)(base + h->off_config);
	s->stats = (struct shm_stats *)(base + h->off_stats);
	s->stats_old = (struct shm_stats *)(base + h->off_stats_old);
	s->stmts = base + h->off_stmts;
}

/* The most server connections one pool can ever hold: twice the largest
 * pool_size + reserve_pool_size in the config, and at least 100, so that a
 * reload can raise pool sizes; beyond that a restart is needed. */
static int max_slots_per_pool(const struct config *cfg)
{
	int most = cfg->default_pool_size + cfg->reserve_pool_size;
	for (int i = 0; i < cfg->ndbs; i++) {
		int n =
		    config_pool_size(cfg, &cfg->dbs[i]) + config_reserve_size(cfg, &cfg->dbs[i]);
		if (n > most)
			most = n;
	}
	return most * 2 > SHM_MIN_SLOTS_PER_POOL ? most * 2 : SHM_MIN_SLOTS_PER_POOL;
}

static void init_records(struct shm *s)
{
	struct shm_header *h = s->hdr;
	int nslots = shm_slot_count(s);

	for (uint32_t p = 0; p < h->max_pools; p++) {
		shm_mutex_init(&s->pools[p].lock);
		s->pools[p].wait_head = s->pools[p].wait_tail = -1;
	}
	for (int i = 0; i < nslots; i++) {
		s->slots[i].pool = i / (int)h->slots_per_pool;
		atomic_store(&s->slots[i].owner, -1);
		atomic_store(&s->slots[i].client, -1);
		atomic_store(&s->slots[i].gen, 1);
	}
	for (int i = 0; i < shm_client_count(s); i++) {
		atomic_store(&s->clients[i].slot, -1);
		atomic_store(&s->clients[i].gen, 1);
		s->clients[i].pool = -1;
		s->clients[i].wait_next = -1;
	}
}

static int create_eventfds(struct shm *s)
{
	for (uint32_t w = 0; w < s->hdr->nworkers; w++) {
		s->workers[w].eventfd = eventfd(0, EFD_NONBLOCK);
		if (s->workers[w].eventfd < 0)
			return ST_ERROR;
		shm_mutex_init(&s->workers[w].inbox_lock);
	}
	return ST_OK;
}

int shm_create(struct shm *s, const struct config *cfg)
{
	struct shm_header plan = {0};
	void *base;

	plan.magic = SHM_MAGIC;
	plan.version = SHM_VERSION;
	plan.sizeof_header = sizeof(struct shm_header);
	plan.sizeof_pool = sizeof(struct shm_pool);
	plan.sizeof_slot = sizeof(struct shm_slot);
	plan.sizeof_client = sizeof(struct shm_client);
	plan.sizeof_worker = sizeof(struct shm_worker);
	/* room for workers a reload may add (max_workers; 0 = just these) */
	plan.nworkers =
	    (uint32_t)(cfg->max_workers > cfg->workers ? cfg->max_workers : cfg->workers);
	plan.max_pools = (uint32_t)cfg->max_pools;
	plan.slots_per_pool = (uint32_t)max_slots_per_pool(cfg);
	/* Any one worker may end up with every client: size each range for all. */
	plan.clients_per_worker = (uint32_t)cfg->max_client_conn + 1;
	plan.max_client_conn = (uint32_t)cfg->max_client_conn;
	plan.inbox_size = plan.clients_per_worker + 16;
	/* registries stay untouched (no memory) until their slot is used */
	plan.stmt_max = (uint32_t)cfg->max_prepared_statements;
	plan.stmt_stride =
	    shm_stmt_stride(cfg->max_prepared_statements, &plan.stmt_cap, &plan.stmt_buckets);
	plan.master_pid = getpid();
	plan.stats_old_usec = now_usec(); /* averages count from the start */
	plan_layout(&plan);

	base =
	    mmap(NULL, plan.total_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		log_error(LOG_ERR, errno, "mmap() of %zu bytes failed", plan.total_size);
		return ST_ERROR;
	}
	memcpy(base, &plan, sizeof(plan));
	attach_regions(s, base);
	shm_mutex_init(&s->hdr->table_lock);
	init_records(s);
	if (create_eventfds(s) != ST_OK) {
		log_error(LOG_ERR, errno, "eventfd() failed");
		return ST_ERROR;
	}
	log_error(LOG_INFO, 0, "shared memory: %zu bytes, %u pools x %u slots, %u workers",
	          plan.total_size, plan.max_pools, plan.slots_per_pool, plan.nworkers);
	return ST_OK;
}

void shm_destroy(struct shm *s)
{
	if (s->hdr)
		munmap(s->hdr, s->hdr->total_size);
	s->hdr = NULL;
}

int shm_slot_count(const struct shm *s)
{
	return (int)(s->hdr->max_pools * s->hdr->slots_per_pool);
}

int shm_client_count(const struct shm *s)
{
	return (int)(s->hdr->nworkers * s->hdr->clients_per_worker);
}

int shm_fake_pid(const struct shm *s, int client)
{
	int w = client / (int)s->hdr->clients_per_worker;
	int row = client % (int)s->hdr->clients_per_worker;
	return ((w + 1) << FAKE_PID_SHIFT) | row;
}

int shm_client_from_fake_pid(const struct shm *s, int32_t pid)
{
	int w = (pid >> FAKE_PID_SHIFT) - 1;
	int row = pid & ((1 << FAKE_PID_SHIFT) - 1);
	if (pid <= 0 || w < 0 || w >= (int)s->hdr->nworkers ||
	    row >= (int)s->hdr->clients_per_worker)
		return -1;
	return w * (int)s->hdr->clients_per_worker + row;
}

bool shm_inbox_push(struct shm *s, int worker, const struct shm_handoff *h)
{
	struct shm_worker *w = &s->workers[worker];
	struct shm_handoff *ring = s->inbox + (size_t)worker * s->hdr->inbox_size;
	bool ok = false;

	shm_mutex_lock(&w->inbox_lock);
	if (w->inbox_tail - w->inbox_head < s->hdr->inbox_size) {
		ring[w->inbox_tail % s->hdr->inbox_size] = *h;
		w->inbox_tail++;
		ok = true;
	}
	shm_mutex_unlock(&w->inbox_lock);
	return ok;
}

int shm_inbox_pop_all(struct shm *s, int worker, struct shm_handoff *out, int max)
{
	struct shm_worker *w = &s->workers[worker];
	struct shm_handoff *ring = s->inbox + (size_t)worker * s->hdr->inbox_size;
	int n = 0;

	shm_mutex_lock(&w->inbox_lock);
	while (n < max && w->inbox_head != w->inbox_tail) {
		out[n++] = ring[w->inbox_head % s->hdr->inbox_size];
		w->inbox_head++;
	}
	shm_mutex_unlock(&w->inbox_lock);
	return n;
}

void shm_worker_wake(struct shm *s, int worker)
{
	uint64_t one = 1;
	if (write(s->workers[worker].eventfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error(LOG_WARNING, errno, "write() to eventfd of worker %d failed", worker);
}

static bool same_addrs(const struct shm_target *t, const struct sockaddr_storage *addrs,
                       const socklen_t *lens, int n)
{
	if (!t->ok || t->naddr != n)
		return false;
	for (int i = 0; i < n; i++)
		if (t->len[i] != lens[i] || memcmp(&t->addr[i], &addrs[i], lens[i]) != 0)
			return false;
	return true;
}

bool shm_target_write(struct shm *s, int db, const char *name, const struct sockaddr_storage *addrs,
                      const socklen_t *lens, int n)
{
	struct shm_target *t = &s->targets[db];
	bool changed;

	if (n > TARGET_MAX_ADDRS)
		n = TARGET_MAX_ADDRS;
	changed = !same_addrs(t, addrs, lens, n) || strcmp(t->name, name) != 0;
	if (!changed)
		return false;
	atomic_fetch_add_explicit(&t->seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	for (int i = 0; i < n; i++) {
		memcpy(&t->addr[i], &addrs[i], lens[i]);
		t->len[i] = lens[i];
	}
	t->naddr = n;
	strlcpy_s(t->name, name, sizeof(t->name));
	t->ok = n > 0;
	t->addr_gen++;
	atomic_fetch_add_explicit(&t->seq, 1, memory_order_release);
	return true;
}

void shm_target_clear(struct shm *s, int db)
{
	struct shm_target *t = &s->targets[db];
	atomic_fetch_add_explicit(&t->seq, 1, memory_order_acq_rel);
	t->ok = 0;
	t->naddr = 0;
	t->name[0] = '\0';
	atomic_fetch_add_explicit(&t->seq, 1, memory_order_release);
}

bool shm_target_read(struct shm *s, int db, const char *name, struct sockaddr_storage *addr,
                     socklen_t *len)
{
	struct shm_target *t = &s->targets[db];
	unsigned seq;
	bool ok;

	do {
		seq = atomic_load_explicit(&t->seq, memory_order_acquire);
		ok = t->ok && t->naddr > 0 && strcmp(t->name, name) == 0;
		if (ok) {
			int i = (int)(atomic_load_explicit(&t->prefer, memory_order_relaxed) %
			              (unsigned)t->naddr);
			*len = t->len[i];
			memcpy(addr, &t->addr[i], sizeof(*addr));
		}
		atomic_thread_fence(memory_order_acquire);
	} while ((seq & 1) || seq != atomic_load_explicit(&t->seq, memory_order_relaxed));
	return ok;
}

void shm_target_next(struct shm *s, int db)
{
	atomic_fetch_add_explicit(&s->targets[db].prefer, 1, memory_order_relaxed);
}

void shm_config_publish(struct shm *s, const struct config *cfg)
{
	struct shm_config_snap *snap = s->config;
	atomic_fetch_add_explicit(&snap->seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	memcpy(&snap->cfg, cfg, sizeof(*cfg));
	snap->gen++;
	atomic_fetch_add_explicit(&snap->seq, 1, memory_order_release);
	atomic_store_explicit(&s->hdr->config_gen, snap->gen, memory_order_release);
}

uint32_t shm_config_copy(struct shm *s, struct config *out)
{
	struct shm_config_snap *snap = s->config;
	unsigned seq;
	uint32_t gen;

	do {
		seq = atomic_load_explicit(&snap->seq, memory_order_acquire);
		memcpy(out, &snap->cfg, sizeof(*out));
		gen = snap->gen;
		atomic_thread_fence(memory_order_acquire);
	} while ((seq & 1) || seq != atomic_load_explicit(&snap->seq, memory_order_relaxed));
	return gen;
}
