/*
 * view.h — a pooler-wide reading of the pool and client tables for reports:
 * the admin console's SHOW POOLS / SHOW SLOTS / SHOW LISTS (in workers) and
 * the master's /metrics and /health. One reading, so that the console and
 * the metrics count the same things the same way.
 */
#ifndef PGSHOAL_VIEW_H
#define PGSHOAL_VIEW_H

#include "pool.h"

struct shm_pool_view {
	/* its clients by state, from the client table (read without locks) */
	int cl_active;    /* linked to a server */
	int cl_idle;      /* logged in, no server, nothing asked */
	int cl_waiting;   /* queued for a server (or for the pool's first login) */
	uint64_t maxwait; /* usec: the longest wait among them */
	/* its servers by state, from the slots' atomic states */
	int sv_active; /* leased to a client */
	int sv_tested; /* leased for a check or a reset, no client */
	int sv_idle;
	int sv_used;  /* idle past server_check_delay: checked before use */
	int sv_login; /* connecting or logging in */
	/* the row's own fields, read under its lock: valid only when row_ok */
	bool row_ok;
	int nservers, nconnecting, nidle, nwaiting, mode, pool_size, reserve_size, max_db, max_user;
	uint64_t last_fail_usec; /* the last failed server login, 0: none since a success */
};

/* How to read a row's own fields: a worker may wait for the lock; the
 * master only tries it (a few times) and does without when it is busy. */
enum shm_view_lock { VIEW_LOCK, VIEW_TRYLOCK };

/* Fill v[0 .. n) for the rows in use and return n (v holds max_pools).
 * cfg: server_check_query/delay, which tell "used" from "idle". */
int shm_view_pools(const struct shm *s, const struct config *cfg, struct shm_pool_view *v,
                   uint64_t now, enum shm_view_lock how);

/* Client rows in use, those still logging in (startup, TLS, password), and
 * admin console sessions. */
struct shm_client_totals {
	int used, login, admin;
};
void shm_view_client_totals(const struct shm *s, struct shm_client_totals *t);

/* The distinct database names of the first n pool rows: first_of[k] is the
 * first row of the k-th name, in table order; returns how many. */
int shm_view_dbs(const struct shm *s, int n, int *first_of);

/* The pool has a logged-in server now, or its last server login did not
 * fail (a row not read under its lock counts as reachable). */
static inline bool shm_view_reachable(const struct shm_pool_view *v)
{
	return v->sv_active + v->sv_tested + v->sv_idle + v->sv_used > 0 || !v->row_ok ||
	       !v->last_fail_usec;
}

#endif
