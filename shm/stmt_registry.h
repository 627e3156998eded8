/*
 * stmt_registry.h — per server slot, the prepared statements pgshoal has
 * created on that server connection (issue #7). A slot moves between
 * workers across transactions, so its registry lives in shared memory next
 * to it: keyed by the SHA-256 of the statement (query text and parameter
 * types), named "pgshoal_<id>" on the server, bounded by
 * max_prepared_statements with LRU eviction.
 *
 * Ownership: a registry is read and written only by the process that holds
 * its slot (SLOT_ACTIVE with owner = that worker, set under the pool lock),
 * and there is exactly one such holder at a time. The pool lock taken to
 * release a slot and again to lease it (or the inbox lock of a handoff)
 * orders one holder's writes before the next holder's reads, so no lock of
 * its own is needed. The one exception is `ready`, which SHOW SERVERS reads
 * from any process (relaxed, may be stale).
 *
 * A registry belongs to one generation of its slot: a closed, recycled or
 * reconnected slot has a new generation and its holder finds the registry
 * empty (shm_stmt_reg resets it lazily).
 */
#ifndef PGSHOAL_STMT_REGISTRY_H
#define PGSHOAL_STMT_REGISTRY_H

#include "shm.h"

#define STMT_HASH_LEN    32 /* SHA-256: collisions are not a practical concern, so no text is kept */
#define STMT_SLACK       16 /* positions past the bound, for statements pinned by requests in flight */
#define STMT_MAX         10000 /* largest max_prepared_statements (indices are 16-bit) */
#define STMT_NAME_PREFIX "pgshoal_"
#define STMT_NAME_LEN    24 /* "pgshoal_" + a 32-bit id + NUL */

enum stmt_state {
	STMT_FREE = 0,
	STMT_PENDING, /* Parse sent, its ParseComplete not seen yet */
	STMT_READY,   /* prepared on the server */
};

struct shm_stmt {
	uint8_t hash[STMT_HASH_LEN];
	uint32_t id;                 /* the server's name is STMT_NAME_PREFIX + id */
	uint32_t pin_lease;          /* referenced during this lease ... */
	uint32_t pin_grp;            /* ... by this request group of its client */
	uint16_t lru_prev, lru_next; /* index + 1; 0 = none. head = most recently used */
	uint16_t hnext;              /* hash chain, index + 1 */
	uint8_t state;               /* enum stmt_state */
	uint8_t pad;
};

struct shm_stmt_reg {
	uint32_t gen;     /* slot generation it describes; 0 = never used */
	uint32_t next_id; /* last id given out on this connection */
	uint32_t lease;   /* bumped when another client starts using the slot (pins) */
	uint16_t lru_head, lru_tail, free_head; /* index + 1 */
	uint16_t nused;                         /* PENDING + READY */
	uint8_t poisoned; /* a session-mode client held it: DEALLOCATE ALL before trusting it */
	atomic_int ready; /* READY entries: holder writes, SHOW SERVERS reads (relaxed) */
	                  /* then entries[cap] and uint16_t buckets[nbuckets] (index + 1) */
};

/* Bytes per slot for a bound of max (0: no registry at all). */
size_t shm_stmt_stride(int max, uint32_t *cap, uint32_t *nbuckets);

/* The holder's view of slot's registry at generation gen (emptied if it
 * described an older one); NULL when prepared statements are off. */
struct shm_stmt_reg *shm_stmt_reg(const struct shm *s, int slot, uint32_t gen);
static inline struct shm_stmt *shm_stmt_at(const struct shm *s, struct shm_stmt_reg *r, int i)
{
	(void)s;
	return (struct shm_stmt *)(r + 1) + i;
}

/* Index of the statement with this hash (PENDING or READY), or -1. */
int shm_stmt_find(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash);
/* A new PENDING entry with a fresh id, most recently used; -1 when every
 * position (bound + slack) is taken. */
int shm_stmt_add(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash);
/* Put back a READY entry with a known id (an eviction that did not happen). */
int shm_stmt_restore(const struct shm *s, struct shm_stmt_reg *r, const uint8_t *hash, uint32_t id);
void shm_stmt_set_ready(const struct shm *s, struct shm_stmt_reg *r, int i);
void shm_stmt_remove(const struct shm *s, struct shm_stmt_reg *r, int i);
/* Most recently used now; pinned while group `grp` of lease `lease` runs. */
void shm_stmt_touch(const struct shm *s, struct shm_stmt_reg *r, int i, uint32_t lease,
                    uint32_t grp);
/* The bound is reached: PENDING + READY >= max_prepared_statements. */
bool shm_stmt_full(const struct shm *s, const struct shm_stmt_reg *r);
/* Least recently used READY entry not pinned by a group >= first_live of
 * lease `lease`, or -1. */
int shm_stmt_victim(const struct shm *s, struct shm_stmt_reg *r, uint32_t lease,
                    uint32_t first_live);
/* The server dropped every prepared statement (DEALLOCATE ALL, DISCARD
 * ALL): forget the READY ones (PENDING ones were sent after it). */
void shm_stmt_clear_ready(const struct shm *s, struct shm_stmt_reg *r);
/* Statements prepared on slot's current connection (SHOW SERVERS; any process). */
int shm_stmt_count(const struct shm *s, int slot);
/* "pgshoal_<id>" into out (STMT_NAME_LEN bytes); returns its length. */
int shm_stmt_name(uint32_t id, char *out);

#endif
