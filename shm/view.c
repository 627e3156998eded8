/*
 * view.c — the reports' reading of the pool and client tables (view.h).
 * Runs in admin sessions (workers) and in the master's HTTP handler.
 * Invariants: the client table and the slot states are read without locks
 * (a row may change while it is read, which a report tolerates); a pool
 * row's own fields are read under its lock — waited for in a worker, only
 * tried in the master, which must never wait on a pool lock (STYLE.md) and
 * leaves row_ok false when the lock stays busy.
 */
#include "view.h"

#include <sched.h>
#include <string.h>

#define TRYLOCK_ATTEMPTS 4 /* a holder keeps a pool lock for well under a microsecond */

static bool row_in_use(const struct shm_client *r)
{
	return atomic_load_explicit(&r->state, memory_order_acquire) == CROW_USED;
}

static uint64_t since(uint64_t now, uint64_t t)
{
	return t && now > t ? now - t : 0;
}

/* Clients per pool by state, from the shared client table. */
static void count_clients(const struct shm *s, struct shm_pool_view *v, int n, uint64_t now)
{
	for (int i = 0; i < shm_client_count(s); i++) {
		const struct shm_client *r = shm_client(s, i);
		int p = r->pool, st;
		if (!row_in_use(r) || p < 0 || p >= n)
			continue;
		st = atomic_load_explicit(&r->cstate, memory_order_relaxed);
		if (st == CL_ACTIVE) {
			v[p].cl_active++;
		} else if (st == CL_IDLE) {
			v[p].cl_idle++;
		} else if (st == CL_WAITING || st == CL_LOGIN_WAIT) {
			uint64_t w =
			    since(now, atomic_load_explicit(&r->state_usec, memory_order_relaxed));
			v[p].cl_waiting++;
			if (w > v[p].maxwait)
				v[p].maxwait = w;
		}
	}
}

static bool lock_row(struct shm_pool *row, enum shm_view_lock how)
{
	if (how == VIEW_LOCK) {
		shm_mutex_lock(&row->lock);
		return true;
	}
	for (int i = 0; i < TRYLOCK_ATTEMPTS; i++) {
		if (shm_mutex_trylock(&row->lock))
			return true;
		sched_yield();
	}
	return false;
}

/* The slots' states; idle_since is the lock's, so without the lock an idle
 * server counts as idle, not "used". */
static void count_slots(const struct shm *s, const struct config *cfg, int p,
                        struct shm_pool_view *v, uint64_t now)
{
	int per = (int)s->hdr->slots_per_pool;
	uint64_t delay = (uint64_t)(cfg->server_check_delay * 1e6);

	for (int i = p * per; i < (p + 1) * per; i++) {
		const struct shm_slot *sl = shm_slot(s, i);
		switch (atomic_load_explicit(&sl->state, memory_order_relaxed)) {
		case SLOT_ACTIVE:
			if (atomic_load_explicit(&sl->client, memory_order_relaxed) >= 0)
				v->sv_active++;
			else
				v->sv_tested++;
			break;
		case SLOT_IDLE:
			if (v->row_ok && cfg->server_check_query[0] &&
			    since(now, sl->idle_since_usec) > delay)
				v->sv_used++;
			else
				v->sv_idle++;
			break;
		case SLOT_CONNECTING: v->sv_login++; break;
		default: break;
		}
	}
}

static void view_pool(const struct shm *s, const struct config *cfg, int p, struct shm_pool_view *v,
                      uint64_t now, enum shm_view_lock how)
{
	struct shm_pool *row = &s->pools[p];

	v->row_ok = lock_row(row, how);
	if (v->row_ok) {
		v->nservers = row->nservers, v->nconnecting = row->nconnecting,
		v->nidle = row->nidle;
		v->nwaiting = row->nwaiting, v->mode = row->mode, v->pool_size = row->pool_size;
		v->reserve_size = row->reserve_size, v->max_db = row->max_db_conns;
		v->max_user = row->max_user_conns, v->last_fail_usec = row->last_fail_usec;
	}
	count_slots(s, cfg, p, v, now);
	if (v->row_ok)
		shm_mutex_unlock(&row->lock);
}

int shm_view_pools(const struct shm *s, const struct config *cfg, struct shm_pool_view *v,
                   uint64_t now, enum shm_view_lock how)
{
	int n = shm_pool_count(s);

	memset(v, 0, sizeof(*v) * s->hdr->max_pools);
	for (int p = 0; p < n; p++)
		view_pool(s, cfg, p, &v[p], now, how);
	count_clients(s, v, n, now);
	return n;
}

void shm_view_client_totals(const struct shm *s, struct shm_client_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < shm_client_count(s); i++) {
		const struct shm_client *r = shm_client(s, i);
		int st = atomic_load_explicit(&r->cstate, memory_order_relaxed);
		if (!row_in_use(r))
			continue;
		t->used++;
		t->login += st == CL_LOGIN || st == CL_AUTH || st == CL_TLS;
		t->admin += st == CL_ADMIN;
	}
}

int shm_view_dbs(const struct shm *s, int n, int *first_of)
{
	int ndb = 0;
	for (int p = 0; p < n; p++) {
		bool seen = false;
		for (int k = 0; k < ndb && !seen; k++)
			seen = strcmp(s->pools[first_of[k]].db, s->pools[p].db) == 0;
		if (!seen)
			first_of[ndb++] = p;
	}
	return ndb;
}
