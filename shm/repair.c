/*
 * repair.c — the master's janitor and repair steps on the pool table. The
 * master never waits on a pool lock: it tries it, or takes it over when the
 * holder is dead, and otherwise comes back on its next tick. Repair rebuilds
 * a pool's counts and idle stack from the slot records, so a worker that died
 * inside a critical section leaves nothing inconsistent behind. A TLS slot
 * dies with its owner (only it held the OpenSSL state), idle or not; the
 * janitor leaves idle TLS slots to their owner, which alone can close them
 * cleanly (worker/server_tls.c).
 */
#include "pool.h"

#include <string.h>

/* Rebuild the derived fields of a locked pool row from its slots. */
static void rebuild_pool(struct shm *s, int pool)
{
	struct shm_pool *row = &s->pools[pool];
	int first = pool * (int)s->hdr->slots_per_pool;

	row->nservers = row->nconnecting = row->nidle = row->nevicting = 0;
	for (int i = first; i < first + (int)s->hdr->slots_per_pool; i++) {
		int st = atomic_load_explicit(&s->slots[i].state, memory_order_relaxed);
		if (st == SLOT_FREE)
			continue;
		row->nservers++;
		if (st == SLOT_CONNECTING)
			row->nconnecting++;
		else if (st == SLOT_IDLE)
			s->idle[first + row->nidle++] = i;
		else if (atomic_load_explicit(&s->slots[i].client, memory_order_relaxed) ==
		         SLOT_CLIENT_EVICTING)
			row->nevicting++;
	}
}

/* Drop the dead worker's clients from the FIFO, keeping the others' order. */
static void drop_waiters(struct shm *s, struct shm_pool *row, int worker)
{
	int prev = -1;
	row->nwaiting = 0;
	memset(row->nwaiting_of, 0, sizeof(row->nwaiting_of));
	for (int i = row->wait_head; i >= 0;) {
		struct shm_client *c = shm_client(s, i);
		int next = c->wait_next;
		if (shm_client_worker(s, i) == worker) {
			c->queued = 0;
			c->wait_next = -1;
			if (prev < 0)
				row->wait_head = next;
			else
				shm_client(s, prev)->wait_next = next;
		} else {
			prev = i;
			row->nwaiting++;
			row->nwaiting_of[shm_client_worker(s, i)]++;
		}
		i = next;
	}
	row->wait_tail = prev;
}

/* Free the slots the dead worker leased or was connecting, and its idle TLS
 * slots (their sockets closed with it). */
static void free_worker_slots(struct shm *s, int pool, int worker, int *close, int max, int *nclose)
{
	struct shm_pool *row = &s->pools[pool];
	int first = pool * (int)s->hdr->slots_per_pool;

	for (int i = first; i < first + (int)s->hdr->slots_per_pool; i++) {
		struct shm_slot *sl = &s->slots[i];
		int st = atomic_load_explicit(&sl->state, memory_order_relaxed);
		bool held = (st == SLOT_ACTIVE || st == SLOT_CONNECTING) &&
		            atomic_load_explicit(&sl->owner, memory_order_relaxed) == worker;
		if (!held && !(st == SLOT_IDLE && sl->tls_owner == worker))
			continue;
		atomic_store_explicit(&sl->state, SLOT_FREE, memory_order_relaxed);
		atomic_store_explicit(&sl->owner, -1, memory_order_relaxed);
		atomic_store_explicit(&sl->client, -1, memory_order_relaxed);
		atomic_fetch_add_explicit(&sl->gen, 1, memory_order_release);
		atomic_fetch_sub_explicit(&s->accounts[row->db_acct].conns, 1,
		                          memory_order_relaxed);
		atomic_fetch_sub_explicit(&s->accounts[row->user_acct].conns, 1,
		                          memory_order_relaxed);
		if (*nclose < max)
			close[(*nclose)++] = i;
	}
}

int shm_pool_repair_worker(struct shm *s, int worker, int *close, int max, int *nclose)
{
	int result = ST_OK;

	*nclose = 0;
	for (int p = 0; p < (int)s->hdr->max_pools; p++) {
		struct shm_pool *row = &s->pools[p];
		if (!atomic_load_explicit(&row->used, memory_order_acquire))
			break;
		if (!shm_mutex_try_repair(&row->lock)) {
			result = ST_AGAIN;
			continue;
		}
		drop_waiters(s, row, worker);
		free_worker_slots(s, p, worker, close, max, nclose);
		rebuild_pool(s, p);
		shm_mutex_unlock(&row->lock);
	}
	if (!shm_mutex_try_repair(&s->workers[worker].inbox_lock))
		return ST_AGAIN;
	s->workers[worker].inbox_head = s->workers[worker].inbox_tail = 0;
	shm_mutex_unlock(&s->workers[worker].inbox_lock);
	return result;
}

int shm_pool_reap_idle(struct shm *s, int pool, uint64_t now, double idle_timeout, double lifetime,
                       int *close, int max)
{
	struct shm_pool *row = &s->pools[pool];
	int32_t *stack = s->idle + pool * (int)s->hdr->slots_per_pool;
	int n = 0;

	if (!shm_mutex_trylock(&row->lock))
		return 0;
	for (int k = row->nidle - 1; k >= 0 && n < max; k--) {
		struct shm_slot *sl = &s->slots[stack[k]];
		/* workers stamp with their own loop-start clock, which may be a
		 * little ahead of ours: compare without wrapping */
		bool idle_out = idle_timeout > 0 && now > sl->idle_since_usec &&
		                now - sl->idle_since_usec > (uint64_t)(idle_timeout * 1e6);
		bool old = lifetime > 0 && now > sl->created_usec &&
		           now - sl->created_usec > (uint64_t)(lifetime * 1e6);
		bool stale = sl->recycle_gen !=
		             atomic_load_explicit(&row->recycle_gen, memory_order_relaxed);
		if ((!idle_out && !old && !stale) || sl->tls_owner >= 0)
			continue;
		close[n++] = stack[k];
		stack[k] = stack[--row->nidle];
		atomic_store_explicit(&sl->state, SLOT_FREE, memory_order_relaxed);
		atomic_fetch_add_explicit(&sl->gen, 1, memory_order_release);
		row->nservers--;
		atomic_fetch_sub_explicit(&s->accounts[row->db_acct].conns, 1,
		                          memory_order_relaxed);
		atomic_fetch_sub_explicit(&s->accounts[row->user_acct].conns, 1,
		                          memory_order_relaxed);
	}
	shm_mutex_unlock(&row->lock);
	return n;
}
