/*
 * pool.c — lease, release and hand over server slots in the shared pool
 * table (pool.h). Runs in every worker and, for janitor and repair steps, in
 * the master (trylock only). Invariants kept here:
 *  - slots of a pool that are not FREE never exceed pool_size (+ reserve
 *    when granted), nor the database's / user's connection limits;
 *  - the waiter FIFO is served oldest first, across all workers;
 *  - a TLS slot (tls_owner >= 0) is leased by its owner worker only, which
 *    alone holds its OpenSSL state; when another worker's client needs the
 *    room, the slot is closed by its owner and the room given to that
 *    worker (see hand_tls and shm_pool_evict);
 *  - critical sections touch shared memory only: no syscall, no allocation,
 *    no logging.
 */
#include "pool.h"

#include <string.h>

static struct shm_pool *pool_row(struct shm *s, int pool)
{
	return &s->pools[pool];
}

static int first_slot(struct shm *s, int pool)
{
	return pool * (int)s->hdr->slots_per_pool;
}

static int32_t *idle_stack(struct shm *s, int pool)
{
	return s->idle + first_slot(s, pool);
}

/* Accounts: one per database name and per user name, under table_lock. */
static int find_account(struct shm *s, int base, const char *name)
{
	int free_row = -1;
	for (int i = 0; i < (int)s->hdr->max_pools; i++) {
		struct shm_account *a = &s->accounts[base + i];
		if (!atomic_load_explicit(&a->used, memory_order_acquire)) {
			if (free_row < 0)
				free_row = i;
		} else if (strcmp(a->name, name) == 0) {
			return base + i;
		}
	}
	if (free_row < 0)
		return -1;
	strlcpy_s(s->accounts[base + free_row].name, name, CFG_NAME_LEN);
	atomic_store_explicit(&s->accounts[base + free_row].used, 1, memory_order_release);
	return base + free_row;
}

static int lookup_pool(struct shm *s, const char *db, const char *user)
{
	for (int p = 0; p < (int)s->hdr->max_pools; p++) {
		struct shm_pool *row = pool_row(s, p);
		if (!atomic_load_explicit(&row->used, memory_order_acquire))
			return -1; /* rows are taken in order and never given back */
		if (strcmp(row->db, db) == 0 && strcmp(row->user, user) == 0)
			return p;
	}
	return -1;
}

int shm_pool_find(struct shm *s, const char *db, const char *user, const struct pool_limits *lim)
{
	int p = lookup_pool(s, db, user);
	if (p >= 0)
		return p;
	shm_mutex_lock(&s->hdr->table_lock);
	p = lookup_pool(s, db, user);
	if (p < 0) {
		for (int i = 0; i < (int)s->hdr->max_pools; i++) {
			struct shm_pool *row = pool_row(s, i);
			if (atomic_load_explicit(&row->used, memory_order_relaxed))
				continue;
			strlcpy_s(row->db, db, CFG_NAME_LEN);
			strlcpy_s(row->user, user, CFG_NAME_LEN);
			row->db_acct = find_account(s, 0, db);
			row->user_acct = find_account(s, (int)s->hdr->max_pools, user);
			if (row->db_acct < 0 || row->user_acct < 0)
				break; /* accounts full (admin flags on databases without pools) */
			shm_pool_set_limits(s, i, lim);
			atomic_store_explicit(&row->used, 1, memory_order_release);
			p = i;
			break;
		}
	}
	shm_mutex_unlock(&s->hdr->table_lock);
	return p;
}

/* The database account for `db` (admin PAUSE/DISABLE/KILL flags live
 * there, so they also hold for pools created later); -1 if none and not
 * `create`, or the table is full. */
int shm_pool_db_account(struct shm *s, const char *db, bool create)
{
	int a = -1;

	for (int i = 0; i < (int)s->hdr->max_pools && a < 0; i++)
		if (atomic_load_explicit(&s->accounts[i].used, memory_order_acquire) &&
		    strcmp(s->accounts[i].name, db) == 0)
			a = i;
	if (a >= 0 || !create)
		return a;
	shm_mutex_lock(&s->hdr->table_lock);
	a = find_account(s, 0, db);
	shm_mutex_unlock(&s->hdr->table_lock);
	return a;
}

int shm_pool_count(const struct shm *s)
{
	int n = 0;
	while (n < (int)s->hdr->max_pools &&
	       atomic_load_explicit(&s->pools[n].used, memory_order_acquire))
		n++;
	return n;
}

void shm_pool_set_limits(struct shm *s, int pool, const struct pool_limits *lim)
{
	struct shm_pool *row = pool_row(s, pool);
	int cap = (int)s->hdr->slots_per_pool;

	shm_mutex_lock(&row->lock);
	row->pool_size = lim->pool_size < cap ? lim->pool_size : cap;
	row->reserve_size = lim->reserve_size;
	row->max_db_conns = lim->max_db_conns;
	row->max_user_conns = lim->max_user_conns;
	row->mode = lim->mode;
	row->login_retry_usec = lim->login_retry_usec;
	shm_mutex_unlock(&row->lock);
}

/* Take one connection from an account if below its limit (0 = unlimited). */
static bool account_take(struct shm *s, int acct, int limit)
{
	atomic_int *c = &s->accounts[acct].conns;
	int v = atomic_load_explicit(c, memory_order_relaxed);
	do {
		if (limit > 0 && v >= limit)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(c, &v, v + 1, memory_order_relaxed,
	                                                memory_order_relaxed));
	return true;
}

static void account_give(struct shm *s, int acct)
{
	atomic_fetch_sub_explicit(&s->accounts[acct].conns, 1, memory_order_relaxed);
}

/* Under lock: the pool lost every server and its last login failed less
 * than server_login_retry ago (clock read before locking). */
static bool login_backoff(const struct shm_pool *row, uint64_t now)
{
	return row->nservers == 0 && row->last_fail_usec &&
	       (now < row->last_fail_usec || now - row->last_fail_usec < row->login_retry_usec);
}

/* Under lock: reserve a FREE slot for `worker` to connect, within limits. */
static int reserve_slot(struct shm *s, int pool, int worker, bool use_reserve)
{
	struct shm_pool *row = pool_row(s, pool);
	int limit = row->pool_size + (use_reserve ? row->reserve_size : 0);
	int cap = (int)s->hdr->slots_per_pool;

	if (limit > cap)
		limit = cap;
	if (row->nservers >= limit)
		return -1;
	if (!account_take(s, row->db_acct, row->max_db_conns))
		return -1;
	if (!account_take(s, row->user_acct, row->max_user_conns)) {
		account_give(s, row->db_acct);
		return -1;
	}
	for (int i = first_slot(s, pool); i < first_slot(s, pool) + cap; i++) {
		struct shm_slot *sl = shm_slot(s, i);
		if (atomic_load_explicit(&sl->state, memory_order_relaxed) != SLOT_FREE)
			continue;
		atomic_store_explicit(&sl->state, SLOT_CONNECTING, memory_order_relaxed);
		atomic_store_explicit(&sl->owner, worker, memory_order_relaxed);
		atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
		sl->tls_owner = -1;
		row->nservers++;
		row->nconnecting++;
		return i;
	}
	account_give(s, row->db_acct);
	account_give(s, row->user_acct);
	return -1;
}

/* A TLS slot serves its owner worker only; a plain one anybody. */
static bool usable_by(const struct shm_slot *sl, int worker)
{
	return sl->tls_owner < 0 || sl->tls_owner == worker;
}

/*
 * A TLS slot serves its owner's clients only. Moving its room to another
 * worker (closing it so that that worker opens a connection of its own)
 * costs a connection, a handshake and a login, and under load the owner's
 * clients come back within microseconds: so a released slot moves only
 * when another worker's client has waited TLS_MOVE_USEC longer than the
 * owner's oldest waiter (move_target), and an idle one is evicted only
 * after idling that long or when the FIFO head has waited that long
 * (evict_idle). That bounds how long a worker without a connection waits
 * behind the others, and keeps moves rare in a steady load (README,
 * "Server TLS").
 */
#define TLS_MOVE_USEC 50000

/* Under lock: take entry k off the pool's idle stack. */
static int take_idle(struct shm *s, struct shm_pool *row, int pool, int k)
{
	int32_t *stack = idle_stack(s, pool);
	int slot = stack[k];
	stack[k] = stack[row->nidle - 1];
	row->nidle--;
	return slot;
}

/*
 * Under lock: pop an idle slot `worker` may use. Best is one this worker
 * used last: its socket is cached and still registered in this worker's
 * epoll, so the lease costs no syscall and wakes no other worker. Next best
 * is one whose socket this worker has cached; else the most recently
 * released. -1 when every idle slot is another worker's TLS connection.
 */
#define IDLE_SCAN 16
static int pop_idle(struct shm *s, int pool, int worker, const uint32_t *local_gen)
{
	struct shm_pool *row = pool_row(s, pool);
	int32_t *stack = idle_stack(s, pool);
	int pick = -1, cached = -1;

	/* bounded: this runs under the pool lock on every lease */
	for (int k = row->nidle - 1; k >= 0 && k >= row->nidle - IDLE_SCAN; k--) {
		struct shm_slot *sl = shm_slot(s, stack[k]);
		if (!usable_by(sl, worker))
			continue;
		if (pick < 0)
			pick = k;
		if (!local_gen)
			break;
		if (local_gen[stack[k]] != atomic_load_explicit(&sl->gen, memory_order_relaxed))
			continue;
		if (sl->last_worker == worker) {
			cached = k;
			break;
		}
		if (cached < 0)
			cached = k;
	}
	/* past the window only when other workers' TLS slots fill it */
	for (int k = row->nidle - IDLE_SCAN - 1; pick < 0 && k >= 0; k--)
		if (usable_by(shm_slot(s, stack[k]), worker))
			pick = k;
	if (pick < 0)
		return -1;
	return take_idle(s, row, pool, cached >= 0 ? cached : pick);
}

static void lease_to(struct shm *s, int slot, int client)
{
	struct shm_slot *sl = shm_slot(s, slot);
	atomic_store_explicit(&sl->state, SLOT_ACTIVE, memory_order_relaxed);
	atomic_store_explicit(&sl->owner, shm_client_worker(s, client), memory_order_relaxed);
	sl->last_worker = shm_client_worker(s, client);
	atomic_store_explicit(&sl->client, client, memory_order_relaxed);
	sl->client_gen = atomic_load_explicit(&shm_client(s, client)->gen, memory_order_relaxed);
}

static void enqueue(struct shm *s, struct shm_pool *row, int client, uint64_t now)
{
	struct shm_client *c = shm_client(s, client);
	if (c->queued)
		return;
	c->queued = 1;
	c->wait_next = -1;
	c->wait_since_usec = now;
	if (row->wait_tail >= 0)
		shm_client(s, row->wait_tail)->wait_next = client;
	else
		row->wait_head = client;
	row->wait_tail = client;
	row->nwaiting++;
	row->nwaiting_of[shm_client_worker(s, client)]++;
}

/* Under lock: take `client` (whose predecessor on the FIFO is prev, -1 for
 * the head) off the FIFO. */
static void unlink_waiter(struct shm *s, struct shm_pool *row, int prev, int client)
{
	struct shm_client *c = shm_client(s, client);
	if (prev < 0)
		row->wait_head = c->wait_next;
	else
		shm_client(s, prev)->wait_next = c->wait_next;
	if (row->wait_tail == client)
		row->wait_tail = prev;
	c->queued = 0;
	c->wait_next = -1;
	row->nwaiting--;
	row->nwaiting_of[shm_client_worker(s, client)]--;
}

static int dequeue_head(struct shm *s, struct shm_pool *row)
{
	int client = row->wait_head;
	if (client >= 0)
		unlink_waiter(s, row, -1, client);
	return client;
}

/*
 * Under lock: the waiter a released server goes to. The FIFO head, unless
 * a client of the releasing worker has waited almost as long (within
 * HANDOFF_FAIRNESS_USEC): that one is served without waking another
 * worker or moving the socket (DESIGN.md: cross-worker handoffs only when
 * the other worker's client has waited longer).
 */
#define HANDOFF_FAIRNESS_USEC 2000
#define HANDOFF_SCAN          64
static int dequeue_for(struct shm *s, struct shm_pool *row, int worker)
{
	int head = row->wait_head, prev = -1, n = 0;
	uint64_t oldest;

	if (head < 0 || worker < 0 || shm_client_worker(s, head) == worker)
		return dequeue_head(s, row);
	oldest = shm_client(s, head)->wait_since_usec;
	for (int i = head; i >= 0 && n < HANDOFF_SCAN;
	     prev = i, i = shm_client(s, i)->wait_next, n++) {
		struct shm_client *c = shm_client(s, i);
		if (c->wait_since_usec > oldest + HANDOFF_FAIRNESS_USEC)
			break;
		if (shm_client_worker(s, i) == worker) {
			unlink_waiter(s, row, prev, i);
			return i;
		}
	}
	return dequeue_head(s, row);
}

/* Per worker: connections it holds or is opening (TLS ones, or any being
 * opened), and of those the ones being opened. */
struct worker_slots {
	uint16_t held[CFG_MAX_WORKERS], opening[CFG_MAX_WORKERS];
};

/* Under lock: count a pool's slots per worker (a scan of the pool's slots:
 * only when a TLS room may move). */
static void count_slots(struct shm *s, int pool, struct worker_slots *ws)
{
	memset(ws, 0, sizeof(*ws));
	for (int i = first_slot(s, pool); i < first_slot(s, pool) + (int)s->hdr->slots_per_pool;
	     i++) {
		struct shm_slot *sl = shm_slot(s, i);
		int st = atomic_load_explicit(&sl->state, memory_order_relaxed);
		int w = st == SLOT_CONNECTING
		            ? atomic_load_explicit(&sl->owner, memory_order_relaxed)
		            : sl->tls_owner;
		if (st == SLOT_FREE || w < 0 || w >= CFG_MAX_WORKERS)
			continue;
		ws->held[w]++;
		ws->opening[w] += st == SLOT_CONNECTING;
	}
}

/*
 * Under lock: the oldest waiter (not of worker `skip`) that no connection
 * being opened covers — a new connection goes to its own worker's oldest
 * waiter, so the k-th waiter of a worker opening k connections is covered.
 * Returns its worker and start of wait, or -1. Uses up ws->opening.
 */
static int first_uncovered(struct shm *s, struct shm_pool *row, int skip, struct worker_slots *ws,
                           uint64_t *since)
{
	int n = 0;
	for (int i = row->wait_head; i >= 0 && n < row->nconnecting + HANDOFF_SCAN;
	     i = shm_client(s, i)->wait_next, n++) {
		int w = shm_client_worker(s, i);
		if (w == skip)
			continue;
		if (ws->opening[w] > 0) {
			ws->opening[w]--;
			continue;
		}
		*since = shm_client(s, i)->wait_since_usec;
		return w;
	}
	return -1;
}

/*
 * Under lock, after the caller could neither pop an idle slot nor reserve
 * one (the pool is full): if waiters remain that no connection in flight
 * covers, and an idle slot is another worker's TLS connection that its
 * owner has not used for TLS_MOVE_USEC (or the FIFO head has waited that
 * long), claim the longest idle such slot for its owner to close
 * (HANDOFF_CLOSE). The room it frees goes to the worker whose client waited longest
 * (shm_pool_grow_for_waiter). -1 if there is nothing to evict.
 */
static int evict_idle(struct shm *s, int pool, int worker, uint64_t now)
{
	struct shm_pool *row = pool_row(s, pool);
	int32_t *stack = idle_stack(s, pool);
	bool head_waited;
	struct shm_slot *sl;
	int slot;

	if (row->nidle == 0 || row->nwaiting <= row->nconnecting + row->nevicting)
		return -1;
	head_waited = now > shm_client(s, row->wait_head)->wait_since_usec + TLS_MOVE_USEC;
	for (int k = 0; k < row->nidle; k++) {
		sl = shm_slot(s, stack[k]);
		if (usable_by(sl, worker) ||
		    (!head_waited && now < sl->idle_since_usec + TLS_MOVE_USEC))
			continue;
		slot = take_idle(s, row, pool, k);
		atomic_store_explicit(&sl->state, SLOT_ACTIVE, memory_order_relaxed);
		atomic_store_explicit(&sl->owner, sl->tls_owner, memory_order_relaxed);
		atomic_store_explicit(&sl->client, SLOT_CLIENT_EVICTING, memory_order_relaxed);
		row->nevicting++;
		return slot;
	}
	return -1;
}

int shm_pool_lease(struct shm *s, int pool, int client, uint64_t now, const uint32_t *local_gen,
                   int *slot)
{
	struct shm_pool *row = pool_row(s, pool);
	int result;

	*slot = -1;
	shm_mutex_lock(&row->lock);
	if (row->nidle > 0 &&
	    (*slot = pop_idle(s, pool, shm_client_worker(s, client), local_gen)) >= 0) {
		lease_to(s, *slot, client);
		result = LEASE_GOT;
	} else if (login_backoff(row, now) && !row->welcome_params_set) {
		result = LEASE_FAILED; /* never reached the server: say so now */
	} else if (login_backoff(row, now)) {
		/* it worked before (a restart, a failover): wait for the retry */
		enqueue(s, row, client, now);
		result = LEASE_QUEUED;
	} else {
		enqueue(s, row, client, now);
		result = LEASE_QUEUED;
		if (row->nwaiting > row->nconnecting) {
			*slot = reserve_slot(s, pool, shm_client_worker(s, client), false);
			if (*slot >= 0)
				result = LEASE_CONNECT;
		}
		/* full, and the idle servers are other workers' TLS connections */
		if (*slot < 0 &&
		    (*slot = evict_idle(s, pool, shm_client_worker(s, client), now)) >= 0)
			result = LEASE_EVICT;
	}
	shm_mutex_unlock(&row->lock);
	return result;
}

int shm_pool_grow(struct shm *s, int pool, int worker, bool use_reserve, int *slot)
{
	struct shm_pool *row = pool_row(s, pool);
	uint64_t now = now_usec();

	*slot = -1;
	shm_mutex_lock(&row->lock);
	if (row->nwaiting > row->nconnecting && !login_backoff(row, now))
		*slot = reserve_slot(s, pool, worker, use_reserve);
	shm_mutex_unlock(&row->lock);
	return *slot >= 0 ? ST_OK : ST_AGAIN;
}

int shm_pool_grow_for_waiter(struct shm *s, int pool, int *slot, int *worker)
{
	struct shm_pool *row = pool_row(s, pool);
	uint64_t now = now_usec(), since;
	struct worker_slots ws;

	*slot = -1;
	shm_mutex_lock(&row->lock);
	if (row->nwaiting > row->nconnecting + row->nevicting && !login_backoff(row, now)) {
		count_slots(s, pool, &ws);
		*worker = first_uncovered(s, row, -1, &ws, &since);
		if (*worker >= 0)
			*slot = reserve_slot(s, pool, *worker, false);
	}
	shm_mutex_unlock(&row->lock);
	return *slot >= 0 ? ST_OK : ST_AGAIN;
}

int shm_pool_evict(struct shm *s, int pool, int worker, uint64_t now, int *slot)
{
	struct shm_pool *row = pool_row(s, pool);

	shm_mutex_lock(&row->lock);
	*slot = evict_idle(s, pool, worker, now);
	shm_mutex_unlock(&row->lock);
	return *slot >= 0 ? ST_OK : ST_AGAIN;
}

int shm_pool_reserve_min(struct shm *s, int pool, int worker, int min)
{
	struct shm_pool *row = pool_row(s, pool);
	int slot = -1;

	if (!shm_mutex_trylock(&row->lock))
		return -1;
	if (row->nservers < min && !(row->last_fail_usec && row->nservers == 0))
		slot = reserve_slot(s, pool, worker, false);
	shm_mutex_unlock(&row->lock);
	return slot;
}

/* Under lock: the slot becomes FREE with a new generation. */
static void free_slot_locked(struct shm *s, struct shm_pool *row, struct shm_slot *sl)
{
	if (atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_CONNECTING)
		row->nconnecting--;
	else if (atomic_load_explicit(&sl->client, memory_order_relaxed) == SLOT_CLIENT_EVICTING)
		row->nevicting--;
	atomic_store_explicit(&sl->state, SLOT_FREE, memory_order_relaxed);
	atomic_store_explicit(&sl->owner, -1, memory_order_relaxed);
	atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sl->gen, 1, memory_order_release);
	row->nservers--;
	account_give(s, row->db_acct);
	account_give(s, row->user_acct);
}

/* Under lock: the slot goes onto the idle stack. */
static void push_idle(struct shm *s, struct shm_pool *row, struct shm_slot *sl, uint64_t now)
{
	atomic_store_explicit(&sl->state, SLOT_IDLE, memory_order_relaxed);
	atomic_store_explicit(&sl->owner, -1, memory_order_relaxed);
	atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
	sl->idle_since_usec = now;
	idle_stack(s, sl->pool)[row->nidle++] = (int32_t)(sl - s->slots);
}

/* Under lock: lease the slot to `client` and describe that in *h. */
static void hand_to(struct shm *s, int slot, int client, struct shm_handoff *h, int *to_worker)
{
	struct shm_slot *sl = shm_slot(s, slot);
	lease_to(s, slot, client);
	h->client = client;
	h->client_gen = sl->client_gen;
	h->slot = slot;
	h->slot_gen = atomic_load_explicit(&sl->gen, memory_order_relaxed);
	*to_worker = shm_client_worker(s, client);
}

/* Under lock: give the slot to the FIFO head, or push it idle. */
static int hand_or_idle(struct shm *s, int slot, uint64_t now, struct shm_handoff *h,
                        int *to_worker)
{
	struct shm_slot *sl = shm_slot(s, slot);
	struct shm_pool *row = pool_row(s, sl->pool);
	int client = dequeue_for(s, row, atomic_load_explicit(&sl->owner, memory_order_relaxed));

	sl->idle_since_usec = now; /* last release, for server_check_delay */
	if (client >= 0) {
		hand_to(s, slot, client, h, to_worker);
		return RELEASE_HANDED;
	}
	push_idle(s, row, sl, now);
	return RELEASE_IDLE;
}

/* Under lock: the owner's oldest waiter (and its predecessor), or -1. */
static int find_owner_waiter(struct shm *s, struct shm_pool *row, int owner, int *prev,
                             uint64_t *since)
{
	*prev = -1;
	if (row->nwaiting_of[owner] == 0)
		return -1;
	for (int i = row->wait_head; i >= 0; *prev = i, i = shm_client(s, i)->wait_next) {
		if (shm_client_worker(s, i) == owner) {
			*since = shm_client(s, i)->wait_since_usec;
			return i;
		}
	}
	return -1;
}

/* Under lock: which worker the room of the owner's released TLS slot moves
 * to, or -1 (it stays). own_since: the owner's oldest waiter's start of
 * wait, or now when it has none. Besides waiting TLS_MOVE_USEC longer, the
 * target must hold fewer connections than the owner: rooms flow towards a
 * balance instead of going round (a worker that got the rooms would serve
 * only its own clients until the others had waited long enough to take
 * them all back). */
static int move_target(struct shm *s, int pool, int owner, uint64_t own_since)
{
	struct shm_pool *row = pool_row(s, pool);
	struct worker_slots ws;
	uint64_t since;
	int w;

	/* the head is the oldest waiter: if even it has not waited that much
	 * longer, nobody has (and nothing needs counting) */
	if (row->wait_head < 0 ||
	    shm_client(s, row->wait_head)->wait_since_usec + TLS_MOVE_USEC >= own_since)
		return -1;
	count_slots(s, pool, &ws);
	if ((w = first_uncovered(s, row, owner, &ws, &since)) < 0 ||
	    since + TLS_MOVE_USEC >= own_since)
		return -1;
	return ws.held[w] < ws.held[owner] ? w : -1;
}

/*
 * Under lock: a released or new TLS slot goes to its owner's oldest waiter,
 * or idles, or its room moves (move_target): the slot is freed (the
 * caller, its owner, closes the connection) and a slot reserved for the
 * worker whose client has waited longest, which *h tells to open it
 * (HANDOFF_OPEN; h->slot = -1 if the pool shrank instead).
 */
static int hand_tls(struct shm *s, int slot, uint64_t now, struct shm_handoff *h, int *to_worker)
{
	struct shm_slot *sl = shm_slot(s, slot);
	struct shm_pool *row = pool_row(s, sl->pool);
	uint64_t own_since = now;
	int prev, client = find_owner_waiter(s, row, sl->tls_owner, &prev, &own_since);
	int target = move_target(s, sl->pool, sl->tls_owner, own_since);

	sl->idle_since_usec = now;
	if (target < 0 && client >= 0) {
		unlink_waiter(s, row, prev, client);
		hand_to(s, slot, client, h, to_worker);
		return RELEASE_HANDED;
	}
	if (target < 0) {
		push_idle(s, row, sl, now);
		return RELEASE_IDLE;
	}
	/* a new one is no longer connecting: free it as held */
	atomic_store_explicit(&sl->state, SLOT_ACTIVE, memory_order_relaxed);
	atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
	free_slot_locked(s, row, sl);
	h->client = HANDOFF_OPEN;
	h->client_gen = 0;
	h->slot = reserve_slot(s, sl->pool, target, false);
	h->slot_gen = h->slot >= 0
	                  ? atomic_load_explicit(&shm_slot(s, h->slot)->gen, memory_order_relaxed)
	                  : 0;
	*to_worker = target;
	return RELEASE_MOVED;
}

static int hand_over(struct shm *s, int slot, uint64_t now, struct shm_handoff *h, int *to_worker)
{
	if (shm_slot(s, slot)->tls_owner >= 0)
		return hand_tls(s, slot, now, h, to_worker);
	return hand_or_idle(s, slot, now, h, to_worker);
}

int shm_pool_release(struct shm *s, int slot, uint64_t now, struct shm_handoff *h, int *to_worker)
{
	struct shm_pool *row = pool_row(s, shm_slot(s, slot)->pool);
	int r;

	shm_mutex_lock(&row->lock);
	r = hand_over(s, slot, now, h, to_worker);
	shm_mutex_unlock(&row->lock);
	return r;
}

int shm_pool_connected(struct shm *s, int slot, uint64_t now, struct shm_handoff *h, int *to_worker)
{
	struct shm_slot *sl = shm_slot(s, slot);
	struct shm_pool *row = pool_row(s, sl->pool);
	int r;

	shm_mutex_lock(&row->lock);
	row->nconnecting--;
	row->last_fail_usec = 0;
	sl->created_usec = now;
	r = hand_over(s, slot, now, h, to_worker);
	shm_mutex_unlock(&row->lock);
	return r;
}

void shm_pool_slot_free(struct shm *s, int slot, uint32_t gen, uint64_t now, bool failed,
                        const char *err)
{
	struct shm_slot *sl = shm_slot(s, slot);
	struct shm_pool *row = pool_row(s, sl->pool);
	bool current, moved;

	shm_mutex_lock(&row->lock);
	current = atomic_load_explicit(&sl->gen, memory_order_relaxed) == gen &&
	          atomic_load_explicit(&sl->state, memory_order_relaxed) != SLOT_FREE;
	/* a login to where the server was before it moved: no reason to wait */
	moved = current &&
	        sl->recycle_gen != atomic_load_explicit(&row->recycle_gen, memory_order_relaxed);
	if (current)
		free_slot_locked(s, row, sl);
	if (failed && !moved) {
		row->last_fail_usec = now ? now : 1;
		strlcpy_s(row->last_error, err ? err : "server login failed",
		          sizeof(row->last_error));
	}
	shm_mutex_unlock(&row->lock);
}

bool shm_pool_pop_failed_waiter(struct shm *s, int pool, struct shm_handoff *h, int *to_worker)
{
	struct shm_pool *row = pool_row(s, pool);
	int client = -1;

	shm_mutex_lock(&row->lock);
	if (row->nservers == 0 && row->last_fail_usec && !row->welcome_params_set)
		client = dequeue_head(s, row);
	shm_mutex_unlock(&row->lock);
	if (client < 0)
		return false;
	h->client = client;
	h->client_gen = atomic_load_explicit(&shm_client(s, client)->gen, memory_order_relaxed);
	h->slot = -1;
	h->slot_gen = 0;
	*to_worker = shm_client_worker(s, client);
	return true;
}

bool shm_pool_forget_failure(struct shm *s, int pool)
{
	struct shm_pool *row = pool_row(s, pool);

	if (!shm_mutex_trylock(&row->lock))
		return false;
	row->last_fail_usec = 0;
	shm_mutex_unlock(&row->lock);
	return true;
}

void shm_pool_last_error(struct shm *s, int pool, char *buf, size_t len)
{
	struct shm_pool *row = pool_row(s, pool);
	shm_mutex_lock(&row->lock);
	strlcpy_s(buf, row->last_error[0] ? row->last_error : "server login failed", len);
	shm_mutex_unlock(&row->lock);
}

bool shm_pool_claim_idle(struct shm *s, int slot, uint32_t gen, int worker)
{
	struct shm_slot *sl = shm_slot(s, slot);
	struct shm_pool *row = pool_row(s, sl->pool);
	int32_t *stack = idle_stack(s, sl->pool);
	bool claimed = false;

	shm_mutex_lock(&row->lock);
	if (atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_IDLE &&
	    atomic_load_explicit(&sl->gen, memory_order_relaxed) == gen) {
		for (int k = 0; k < row->nidle; k++) {
			if (stack[k] != slot)
				continue;
			stack[k] = stack[--row->nidle];
			break;
		}
		atomic_store_explicit(&sl->state, SLOT_ACTIVE, memory_order_relaxed);
		atomic_store_explicit(&sl->owner, worker, memory_order_relaxed);
		atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
		claimed = true;
	}
	shm_mutex_unlock(&row->lock);
	return claimed;
}

bool shm_pool_dequeue(struct shm *s, int pool, int client)
{
	struct shm_pool *row = pool_row(s, pool);
	struct shm_client *c = shm_client(s, client);
	bool found = false;

	shm_mutex_lock(&row->lock);
	for (int prev = -1, i = c->queued ? row->wait_head : -1; i >= 0;
	     prev = i, i = shm_client(s, i)->wait_next) {
		if (i == client) {
			unlink_waiter(s, row, prev, i);
			found = true;
			break;
		}
	}
	c->queued = 0;
	shm_mutex_unlock(&row->lock);
	return found;
}

void shm_pool_set_welcome(struct shm *s, int pool, const char *msgs, uint32_t len)
{
	struct shm_pool *row = pool_row(s, pool);
	if (len > sizeof(row->welcome))
		return;
	shm_mutex_lock(&row->lock);
	if (!row->welcome_params_set) {
		memcpy(row->welcome, msgs, len);
		row->welcome_len = len;
		row->welcome_params_set = 1;
	}
	shm_mutex_unlock(&row->lock);
}

uint32_t shm_pool_get_welcome(struct shm *s, int pool, char *buf, uint32_t cap)
{
	struct shm_pool *row = pool_row(s, pool);
	uint32_t len = 0;
	shm_mutex_lock(&row->lock);
	if (row->welcome_params_set && row->welcome_len <= cap) {
		len = row->welcome_len;
		memcpy(buf, row->welcome, len);
	}
	shm_mutex_unlock(&row->lock);
	return len;
}

void shm_pool_set_scram_keys(struct shm *s, int pool, const uint8_t *client_key,
                             const uint8_t *server_key)
{
	struct shm_pool *row = pool_row(s, pool);
	shm_mutex_lock(&row->lock);
	memcpy(row->scram_client_key, client_key, sizeof(row->scram_client_key));
	memcpy(row->scram_server_key, server_key, sizeof(row->scram_server_key));
	row->scram_keys_set = 1;
	shm_mutex_unlock(&row->lock);
}

bool shm_pool_get_scram_keys(struct shm *s, int pool, uint8_t *client_key, uint8_t *server_key)
{
	struct shm_pool *row = pool_row(s, pool);
	bool set;
	shm_mutex_lock(&row->lock);
	set = row->scram_keys_set != 0;
	if (set) {
		memcpy(client_key, row->scram_client_key, sizeof(row->scram_client_key));
		memcpy(server_key, row->scram_server_key, sizeof(row->scram_server_key));
	}
	shm_mutex_unlock(&row->lock);
	return set;
}

void shm_pool_set_md5(struct shm *s, int pool, const char *hash)
{
	struct shm_pool *row = pool_row(s, pool);
	shm_mutex_lock(&row->lock);
	strlcpy_s(row->md5_hash, hash, sizeof(row->md5_hash));
	shm_mutex_unlock(&row->lock);
}

void shm_pool_get_md5(struct shm *s, int pool, char *out, size_t cap)
{
	struct shm_pool *row = pool_row(s, pool);
	shm_mutex_lock(&row->lock);
	strlcpy_s(out, row->md5_hash, cap);
	shm_mutex_unlock(&row->lock);
}
