/*
 * pool.h — the shared pool table: one row per (database, user), each guarded
 * by its own futex mutex. Leasing, releasing and handing server slots over
 * between workers all go through here; every function keeps its critical
 * section free of syscalls, allocation and logging.
 */
#ifndef PGSHOAL_POOL_H
#define PGSHOAL_POOL_H

#include "shm.h"

struct pool_limits {
	int pool_size, reserve_size, max_db_conns, max_user_conns, mode;
	uint64_t
	    login_retry_usec; /* server_login_retry: no new connect this soon after a failed one */
};

enum lease_result {
	LEASE_GOT,     /* *slot is ACTIVE, leased to the client */
	LEASE_QUEUED,  /* the client is on the FIFO; a handoff will come */
	LEASE_CONNECT, /* queued, and *slot was reserved: the caller connects it */
	LEASE_FAILED,  /* the pool never had a server and its last login failed */
	LEASE_EVICT,   /* queued; *slot, another worker's idle TLS slot, was claimed
	                * for its owner to close (HANDOFF_CLOSE): the room goes to
	                * the worker whose client waited longest */
};

/* What a release (or a new connection) came to. */
enum release_result {
	RELEASE_IDLE = 0, /* onto the idle stack */
	RELEASE_HANDED,   /* leased to h->client of *to_worker */
	RELEASE_MOVED,    /* a TLS slot with no waiter of its owner: freed (its owner
	                   * closes the connection); h->slot >= 0 was reserved for
	                   * *to_worker, whose client waited longest, to open
	                   * (HANDOFF_OPEN) */
};

/* Find the row for (db, user), creating it with lim; -1 if the table is full. */
int shm_pool_find(struct shm *s, const char *db, const char *user, const struct pool_limits *lim);
/* The account of database `db` (admin flags); created if `create`; -1 if none. */
int shm_pool_db_account(struct shm *s, const char *db, bool create);
/* Rows in use: they are taken in order and never given back. */
int shm_pool_count(const struct shm *s);
/* Refresh a row's limits (after a reload). */
void shm_pool_set_limits(struct shm *s, int pool, const struct pool_limits *lim);

/*
 * Lease a server for client `client` of `worker`. local_gen[slot] is the
 * generation this worker has a socket for (0 = none): such idle slots are
 * preferred, since they need no fd from the master.
 */
int shm_pool_lease(struct shm *s, int pool, int client, uint64_t now, const uint32_t *local_gen,
                   int *slot);
/* Waiters beyond the servers being connected: reserve a slot to connect
 * (use_reserve: the reserve pool may be used). ST_OK with *slot, or ST_AGAIN. */
int shm_pool_grow(struct shm *s, int pool, int worker, bool use_reserve, int *slot);

/*
 * Release a leased slot: to the longest-waiting client of any worker
 * (RELEASE_HANDED; *h says which client, *to_worker which worker must be
 * told) or onto the idle stack (RELEASE_IDLE, 0). A TLS slot goes to its
 * owner's clients only, or moves (RELEASE_MOVED, see enum release_result).
 */
int shm_pool_release(struct shm *s, int slot, uint64_t now, struct shm_handoff *h, int *to_worker);
/* A CONNECTING slot logged in: count it, then release it as above. */
int shm_pool_connected(struct shm *s, int slot, uint64_t now, struct shm_handoff *h,
                       int *to_worker);
/* A TLS slot was freed: reserve a slot for the worker of the oldest waiter
 * that no connection in flight covers (a TLS connection serves only its own
 * worker). ST_OK with *slot and *worker, else ST_AGAIN. */
int shm_pool_grow_for_waiter(struct shm *s, int pool, int *slot, int *worker);
/* A client of `worker` waits, the pool is full and idle slots are other
 * workers' TLS connections: claim one for its owner to close, as
 * LEASE_EVICT does. ST_OK with *slot (its owner is shm_slot->owner). */
int shm_pool_evict(struct shm *s, int pool, int worker, uint64_t now, int *slot);
/* A slot's connection is gone (or its login failed: failed = true with err;
 * not counted as a failure for server_login_retry if the pool's server moved
 * since the connect began). Only if the slot is still at generation gen: a
 * holder that learns late that its slot died must not free the slot's next
 * user. */
void shm_pool_slot_free(struct shm *s, int slot, uint32_t gen, uint64_t now, bool failed,
                        const char *err);
/* After a failed login: pop one waiter to fail if the pool has no server. */
bool shm_pool_pop_failed_waiter(struct shm *s, int pool, struct shm_handoff *h, int *to_worker);
void shm_pool_last_error(struct shm *s, int pool, char *buf, size_t len);
/* The master, when the pool's server moved (failover): forget the last
 * failed login, so waiting clients connect to the new server at once, not
 * after server_login_retry. Only tries the lock: false if it was busy. */
bool shm_pool_forget_failure(struct shm *s, int pool);

/* An idle slot whose socket showed an event (the server closed it, most
 * likely): take it off the idle stack for `worker` to close. */
bool shm_pool_claim_idle(struct shm *s, int slot, uint32_t gen, int worker);

/* Take a client off the FIFO; false if it was not on it (a handoff may be
 * in flight to it). */
bool shm_pool_dequeue(struct shm *s, int pool, int client);

/* The pool's welcome ParameterStatus messages, saved from its first server. */
void shm_pool_set_welcome(struct shm *s, int pool, const char *msgs, uint32_t len);
uint32_t shm_pool_get_welcome(struct shm *s, int pool, char *buf, uint32_t cap);

/* SCRAM pass-through keys (32 bytes each) for the pool's user; get returns
 * false when no client has logged in with SCRAM yet. */
void shm_pool_set_scram_keys(struct shm *s, int pool, const uint8_t *client_key,
                             const uint8_t *server_key);
bool shm_pool_get_scram_keys(struct shm *s, int pool, uint8_t *client_key, uint8_t *server_key);

/* md5 pass-through: the pool user's md5 hash ("md5" + 32 hex digits) from
 * auth_query; get copies "" when no client has logged in with one yet. */
void shm_pool_set_md5(struct shm *s, int pool, const char *hash);
void shm_pool_get_md5(struct shm *s, int pool, char *out, size_t cap);

/* Master: a worker died. Free what it held; fill close[] with the slots
 * whose sockets the master must close (up to max). ST_AGAIN if a pool lock
 * was busy: call again on the next tick. */
int shm_pool_repair_worker(struct shm *s, int worker, int *close, int max, int *nclose);
/* Master janitor, min_pool_size: reserve a slot for `worker` to open when
 * the pool holds fewer than min servers (trylock only). -1 if none. */
int shm_pool_reserve_min(struct shm *s, int pool, int worker, int min);

/* Master janitor: take idle slots past their idle timeout or lifetime off the
 * stack and free them (trylock only). */
int shm_pool_reap_idle(struct shm *s, int pool, uint64_t now, double idle_timeout, double lifetime,
                       int *close, int max);

static inline int shm_client_worker(const struct shm *s, int client)
{
	return client / (int)s->hdr->clients_per_worker;
}

#endif
