/*
 * stats.h — PgBouncer's statistics (SHOW STATS and friends), kept in shared
 * memory as one row of counters per (worker, pool). A row has one writer,
 * its worker, which adds with a relaxed load and store (no lock prefix, no
 * syscall); readers sum a pool's rows over the workers with relaxed loads.
 * A respawned worker continues its predecessor's rows, so totals never go
 * back. The master keeps a snapshot (stats_old) every stats_period for the
 * averages and its periodic log line.
 */
#ifndef PGSHOAL_STATS_H
#define PGSHOAL_STATS_H

#include "shm.h"

/*
 * What counts (the same meaning as PgBouncer's counters):
 *  ASSIGN      a server was linked to a client (a lease that reached it)
 *  XACT        a transaction ended: a ReadyForQuery with status 'I' after
 *              requests were sent, so an autocommit statement is one
 *  QUERY       a request ended: each ReadyForQuery the client asked for
 *              (a simple Query, a FunctionCall, or an extended-protocol
 *              batch up to its Sync), whatever the number of statements in it
 *  RECV, SENT  bytes from clients to servers, from servers to clients
 *  *_TIME      microseconds: first byte sent to the server to the
 *              ReadyForQuery that ends it; WAIT: from asking for a server
 *              (queued, or paused) to getting one
 *  LOGIN       clients that finished logging in
 *  CLIENT_PARSE, SERVER_PARSE, BIND  named prepared statements (issue #7):
 *              Parse messages from clients, Parses pgshoal sent to servers
 *              (theirs rewritten, or re-prepared on another connection), and
 *              Binds of named statements
 *  WAIT_HIST   server assignments by how long the client waited: bucket i
 *              counts waits up to shm_wait_bucket_usec[i], the last one any
 *              longer wait (a Prometheus histogram, made cumulative on read;
 *              its sum is WAIT_TIME, its count ASSIGN)
 */
#define STAT_WAIT_BUCKETS 8
enum shm_stat {
	STAT_ASSIGN,
	STAT_XACT,
	STAT_QUERY,
	STAT_RECV,
	STAT_SENT,
	STAT_XACT_TIME,
	STAT_QUERY_TIME,
	STAT_WAIT_TIME,
	STAT_LOGIN,
	STAT_CLIENT_PARSE,
	STAT_SERVER_PARSE,
	STAT_BIND,
	STAT_WAIT_HIST, /* the first of STAT_WAIT_BUCKETS counters */
	STAT_COUNT = STAT_WAIT_HIST + STAT_WAIT_BUCKETS
};

/* Upper bounds of the wait buckets but the last (which has none). */
extern const uint64_t shm_wait_bucket_usec[STAT_WAIT_BUCKETS - 1];

struct shm_stats {
	atomic_ullong v[STAT_COUNT];
} __attribute__((aligned(CACHELINE)));

/* A sum or an average, private to its reader. */
struct stat_sum {
	uint64_t v[STAT_COUNT];
};

static inline struct shm_stats *shm_stats_row(const struct shm *s, int worker, int pool)
{
	return &s->stats[(size_t)worker * s->hdr->max_pools + (size_t)pool];
}

/* The single writer's add: a plain read-modify-write, never a locked one. */
static inline void shm_stat_add(struct shm_stats *st, enum shm_stat k, uint64_t n)
{
	atomic_store_explicit(&st->v[k], atomic_load_explicit(&st->v[k], memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

/* A server was assigned after a wait of usec (0: none): the wait time and
 * its histogram bucket; the caller counts the assignment (STAT_ASSIGN). */
static inline void shm_stat_wait(struct shm_stats *st, uint64_t usec)
{
	int b = 0;
	while (b < STAT_WAIT_BUCKETS - 1 && usec > shm_wait_bucket_usec[b])
		b++;
	shm_stat_add(st, STAT_WAIT_TIME, usec);
	shm_stat_add(st, (enum shm_stat)(STAT_WAIT_HIST + b), 1);
}

/* A pool's counters summed over every worker. */
void shm_stats_pool_sum(const struct shm *s, int pool, struct stat_sum *out);
/* The counters of database db's pools among the first n rows (every pool
 * when db is NULL), and the master's snapshot of them. */
void shm_stats_db_sum(const struct shm *s, const char *db, int n, struct stat_sum *cur,
                      struct stat_sum *old);
/* The master's snapshot of a pool (read side). */
void shm_stats_pool_old(const struct shm *s, int pool, struct stat_sum *out);
/* The master: store a pool's snapshot. */
void shm_stats_set_old(struct shm *s, int pool, const struct stat_sum *sum);
void stat_sum_add(struct stat_sum *acc, const struct stat_sum *x);
/*
 * PgBouncer's averages between snapshot `old` and `cur`, usec apart:
 * counts and bytes per second; XACT_TIME and QUERY_TIME per transaction
 * and per query; WAIT_TIME per server assignment.
 */
void stat_averages(const struct stat_sum *cur, const struct stat_sum *old, uint64_t usec,
                   struct stat_sum *avg);

#endif
